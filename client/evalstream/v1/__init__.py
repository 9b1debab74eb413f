"""Generated protobuf and gRPC modules of the ``evalstream.v1`` wire contract.

Built from ``proto/evalstream/v1/*.proto`` by ``scripts/gen_proto.sh``; never edit them by hand.
"""

"""gRPC adapter: protobuf <-> engine types, one error -> status table, the servicer."""

"""Health and reflection through the stock grpc clients."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def test_health_serving_for_server_and_service(server):
    with grpc.insecure_channel(server.target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for service in ("", "evalstream.v1.EvalstreamService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        try:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
            raise AssertionError("unknown service must be NOT_FOUND")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_service(server):
    with grpc.insecure_channel(server.target) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reqs = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="evalstream.v1.EvalstreamService"
            ),
        ]
        replies = list(stub.ServerReflectionInfo(iter(reqs), timeout=5))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {
        "evalstream.v1.EvalstreamService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    files = replies[1].file_descriptor_response.file_descriptor_proto
    assert files and any(b"EvalstreamService" in f for f in files)

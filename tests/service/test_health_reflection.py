"""Health and reflection through the stock grpc clients."""

from __future__ import annotations

import grpc
import pytest
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


GARBAGE = b"\xff\xff\xff\xff\x0f"  # a field tag that no message can hold


def test_health_and_reflection_answer_invalid_argument_to_garbage(server):
    reflect = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    with grpc.insecure_channel(server.target) as ch:
        calls = {
            "Check": lambda: ch.unary_unary("/grpc.health.v1.Health/Check")(GARBAGE, timeout=5),
            "Watch": lambda: next(
                ch.unary_stream("/grpc.health.v1.Health/Watch")(GARBAGE, timeout=5)
            ),
            "Reflection": lambda: next(ch.stream_stream(reflect)(iter([GARBAGE]), timeout=5)),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert info.value.details().startswith(
                "request: expected a valid protobuf message, received bytes that do not parse"
            ), name
        stub = health_pb2_grpc.HealthStub(ch)  # and the servicers answer well-formed requests
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1


def test_a_health_check_whose_request_never_comes_is_closed_after_the_idle_timeout():
    """grpc held a unary call until its request arrived, however long (300 such calls held every
    slot); now the probe's handler reads its request with the idle timeout."""
    import threading

    from evalstream_server.server import ServerThread
    from evalstream_server.settings import Settings

    release = threading.Event()

    def never():  # a client that opened the call and sends nothing
        release.wait(30)
        yield from ()

    check = "/grpc.health.v1.Health/Check"
    with ServerThread(Settings(grpc_port=0, metrics_port=-1, idle_timeout=0.5)) as srv:
        with grpc.insecure_channel(srv.target) as ch:
            try:
                with pytest.raises(grpc.RpcError) as info:
                    next(ch.stream_stream(check)(never(), timeout=10))
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "no message for 0.5 s" in info.value.details()
            finally:
                release.set()
            with pytest.raises(grpc.RpcError) as info:  # closed without a request
                next(ch.stream_stream(check)(iter(()), timeout=10))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == "request: expected one request message, received none"
            stub = health_pb2_grpc.HealthStub(ch)
            assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == 1

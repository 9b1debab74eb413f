"""Every failed call comes back as an ``EvalstreamError`` subclass; tokens and TLS on the wire."""

from __future__ import annotations

import socket
from concurrent import futures

import grpc
import numpy as np
import pytest
from evalstream import (
    AlreadyExistsError,
    EvalClient,
    EvalstreamError,
    InvalidArgumentError,
    InvalidBatchError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from evalstream.v1 import evalstream_service_pb2 as pb

from tests.engine import data


def test_unknown_stream_is_not_found_everywhere(client, name):
    calls = [
        lambda: client.get_stream(name),
        lambda: client.delete_stream(name),
        lambda: client.reset_stream(name),
        lambda: client.report(name),
        lambda: client.curve(name),
        lambda: client.log(name, [0, 1], [0.2, 0.7]),
        lambda: next(client.watch(name, interval=0.1)),
        lambda: client.writer(name),
    ]
    for call in calls:
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.code == "NOT_FOUND" and name in info.value.details
        assert isinstance(info.value, LookupError)


def test_duplicate_stream_and_bad_config(client, name):
    client.create_stream(name, task="binary", classes=["n", "p"])
    with pytest.raises(AlreadyExistsError, match="already exists"):
        client.create_stream(name, task="binary", classes=["n", "p"])
    with pytest.raises(InvalidArgumentError, match="windows") as info:
        client.create_stream(f"{name}-2", task="binary", classes=["n", "p"], windows=["5x"])
    assert info.value.code == "INVALID_ARGUMENT" and isinstance(info.value, ValueError)
    parts = info.value.field_error  # the call's google.rpc.Status detail, in parts
    assert parts is not None and (parts.field, parts.received) == ("config.windows", "'5x'")
    assert info.value.details == f"config.windows: expected {parts.expected}, received '5x'"
    with pytest.raises(AlreadyExistsError) as exists:
        client.create_stream(name, task="binary", classes=["n", "p"])
    assert exists.value.field_error is None  # not about a field
    with pytest.raises(ValueError, match="task"):  # the wire has no such task: refused locally
        client.create_stream(f"{name}-3", task="regression", classes=["n", "p"])
    with pytest.raises(ValueError, match="resolution"):
        client.create_stream(f"{name}-4", task="binary", classes=["n", "p"], resolution="fine")


def test_nan_batch_is_rejected_naming_the_field_and_changes_nothing(client, name):
    y, _, p = data.multiclass(31, counts=(40, 40, 40))
    client.create_stream(name, task="multiclass", classes=["a", "b", "c"])
    client.log(name, y[:60], p[:60])
    bad = p[60:].copy()
    bad[7, 2] = np.nan
    with pytest.raises(InvalidBatchError) as info:
        client.log(name, y[60:], bad)
    err = info.value
    assert err.code == "INVALID_ARGUMENT" and "scores" in err.details and "NaN" in err.details
    assert (err.batch_index, err.rows) == (0, (0, 60))
    (batch,) = err.errors  # the parts of the result's field_error
    assert (batch.field, batch.expected) == ("scores", "finite numbers")
    assert batch.received.startswith("1 NaN and 0 infinite values")
    assert batch.message == f"scores: expected {batch.expected}, received {batch.received}"
    assert err.result.rejected_batches == 1 and err.result.accepted_batches == 0
    assert client.get_stream(name).sample_count == 60
    assert client.log(name, y[60:], p[60:]).accepted_samples == 60  # the number was consumed


def test_partly_rejected_call_says_what_stayed_applied(server, name):
    y, _, p = data.multiclass(32, counts=(100, 100, 100))
    bad = p.copy()
    bad[150, 0] = 2.0  # not a probability: batch 1 of rows 100:200 is refused
    with EvalClient(server.target, max_batch_rows=100) as client:
        client.create_stream(name, task="multiclass", classes=["a", "b", "c"])
        with pytest.raises(InvalidBatchError, match="stay applied") as info:
            client.log(name, y, bad)
        err = info.value
        assert (err.batch_index, err.rows, len(err.errors)) == (1, (100, 200), 1)
        assert (err.result.accepted_batches, err.result.accepted_samples) == (2, 200)
        assert err.result.rejected_samples == 100
        assert client.get_stream(name).sample_count == 200


# -- a stand-in server that records metadata and answers the status codes the real one will --
class _Recorder:
    def __init__(self) -> None:
        self.metadata: list[dict[str, str]] = []

    def get_stream(self, request: pb.GetStreamRequest, context: grpc.ServicerContext):
        self.metadata.append(dict(context.invocation_metadata()))
        codes = {
            "unauth": grpc.StatusCode.UNAUTHENTICATED,
            "denied": grpc.StatusCode.PERMISSION_DENIED,
            "busy": grpc.StatusCode.RESOURCE_EXHAUSTED,
            "broken": grpc.StatusCode.INTERNAL,
        }
        if request.name in codes:
            context.abort(codes[request.name], f"{request.name}: refused")
        response = pb.GetStreamResponse()
        response.stream.config.name = request.name
        return response


def _fake_server(credentials: grpc.ServerCredentials | None = None):
    recorder = _Recorder()
    handler = grpc.method_handlers_generic_handler(
        "evalstream.v1.EvalstreamService",
        {
            "GetStream": grpc.unary_unary_rpc_method_handler(
                recorder.get_stream,
                request_deserializer=pb.GetStreamRequest.FromString,
                response_serializer=pb.GetStreamResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, f"127.0.0.1:{port}", recorder


def test_token_metadata_and_status_mapping():
    server, target, recorder = _fake_server()
    try:
        with EvalClient(target, token="s3cret", timeout=5) as client:
            assert client.get_stream("fine").name == "fine"
            for stream, kind in (
                ("unauth", UnauthenticatedError),
                ("denied", PermissionDeniedError),
                ("busy", ResourceExhaustedError),
                ("broken", EvalstreamError),
            ):
                with pytest.raises(kind, match=f"{stream}: refused"):
                    client.get_stream(stream)
        assert all(m.get("authorization") == "Bearer s3cret" for m in recorder.metadata)
        assert len(recorder.metadata) == 5
    finally:
        server.stop(None)


def test_unreachable_server_is_unavailable():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with EvalClient(f"127.0.0.1:{port}", timeout=5) as client:
        with pytest.raises(UnavailableError) as info:
            client.get_stream("x")
    assert info.value.code == "UNAVAILABLE"

"""Errors for programs: a failed call carries a google.rpc.Status with typed details in the
``grpc-status-details-bin`` trailer; a rejected batch carries its FieldError. Read over the raw
wire with the stock google.rpc messages, as a client in any language would."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2, stream_pb2
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from .conftest import create, ingest, tensor

P = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], dtype=np.float32)
Y = np.array([0, 2], dtype=np.int32)


def _status(info: pytest.ExceptionInfo[grpc.RpcError]) -> status_pb2.Status:
    """The google.rpc.Status of a failed call, decoded from its trailer by hand."""
    raw = [v for k, v in info.value.trailing_metadata() if k == "grpc-status-details-bin"]
    assert len(raw) == 1, info.value.trailing_metadata()
    status = status_pb2.Status.FromString(raw[0])
    assert status.code == info.value.code().value[0]
    assert status.message == info.value.details()
    return status


def _details(status: status_pb2.Status) -> dict[str, any_pb2.Any]:
    return {d.TypeName(): d for d in status.details}


def _unpack(detail: any_pb2.Any, message_type):
    out = message_type()
    assert detail.Unpack(out)
    return out


@pytest.fixture(scope="module")
def stub_with_stream(stub):
    create(stub, "details", windows=("5m",))
    return stub


def test_a_bad_field_carries_bad_request_and_field_error(stub_with_stream):
    cfg = stream_pb2.StreamConfig(name="no-kind", task=stream_pb2.TASK_MULTICLASS, classes=["a"])
    with pytest.raises(grpc.RpcError) as info:
        stub_with_stream.CreateStream(pb.CreateStreamRequest(config=cfg))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = _details(_status(info))
    assert set(details) == {"google.rpc.BadRequest", "evalstream.v1.FieldError"}
    (violation,) = _unpack(
        details["google.rpc.BadRequest"], error_details_pb2.BadRequest
    ).field_violations
    assert violation.field == "config.score_kind"
    parts = _unpack(details["evalstream.v1.FieldError"], ingest_pb2.FieldError)
    assert parts.field == "config.score_kind"
    assert parts.received == "SCORE_KIND_UNSPECIFIED"
    assert violation.description == f"expected {parts.expected}, received {parts.received}"
    assert info.value.details() == f"{parts.field}: {violation.description}"


def test_an_unknown_window_names_the_windows(stub_with_stream):
    with pytest.raises(grpc.RpcError) as info:
        stub_with_stream.GetReport(pb.GetReportRequest(stream="details", window="13m"))
    parts = _unpack(_details(_status(info))["evalstream.v1.FieldError"], ingest_pb2.FieldError)
    assert (parts.field, parts.expected, parts.received) == (
        "window",
        'one of "cumulative", "5m"',
        '"13m"',
    )
    assert info.value.details() == 'window: expected one of "cumulative", "5m", received "13m"'


def test_an_unknown_stream_carries_resource_info(stub_with_stream):
    with pytest.raises(grpc.RpcError) as info:
        stub_with_stream.GetReport(pb.GetReportRequest(stream="nowhere"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    details = _details(_status(info))
    resource = _unpack(details["google.rpc.ResourceInfo"], error_details_pb2.ResourceInfo)
    assert (resource.resource_type, resource.resource_name) == ("evalstream.v1.Stream", "nowhere")


def test_a_limit_carries_quota_failure(stub_with_stream):
    cfg = stream_pb2.StreamConfig(
        name="many-windows",
        task=stream_pb2.TASK_BINARY,
        classes=["n", "p"],
        score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
        windows=[f"{i}m" for i in range(1, 20)],
    )
    with pytest.raises(grpc.RpcError) as info:
        stub_with_stream.CreateStream(pb.CreateStreamRequest(config=cfg))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = _details(_status(info))
    quota = _unpack(details["google.rpc.QuotaFailure"], error_details_pb2.QuotaFailure)
    assert quota.violations[0].subject == "config.windows"
    parts = _unpack(details["evalstream.v1.FieldError"], ingest_pb2.FieldError)
    assert (parts.field, parts.expected, parts.received) == ("config.windows", "at most 8", "19")


def test_rejected_batches_carry_their_field_error(stub_with_stream):
    wide = np.full((2, 4), 0.25, np.float32)
    reqs = [
        pb.IngestRequest(
            stream="details", producer_id="fe", sequence=1, scores=tensor(wide), labels=tensor(Y)
        ),
        pb.IngestRequest(  # a resend of the rejected batch: DUPLICATE with the original error
            stream="details", producer_id="fe", sequence=1, scores=tensor(wide), labels=tensor(Y)
        ),
        pb.IngestRequest(
            stream="details", producer_id="fe", sequence=5, scores=tensor(P), labels=tensor(Y)
        ),
        pb.IngestRequest(stream="missing", scores=tensor(P), labels=tensor(Y)),
    ]
    (shape, again, gap, missing), _ = ingest(stub_with_stream, reqs)
    assert shape.field_error == ingest_pb2.FieldError(
        field="scores.shape",
        expected="[N, 3] (one column per class of this TASK_MULTICLASS stream)",
        received="[2, 4]",
    )
    assert (
        shape.error_message == "scores.shape: expected [N, 3] (one column per class of this "
        "TASK_MULTICLASS stream), received [2, 4]"
    )
    assert again.status == ingest_pb2.BATCH_STATUS_DUPLICATE
    assert again.original_status == ingest_pb2.BATCH_STATUS_REJECTED
    assert again.field_error == shape.field_error and again.error_message == shape.error_message
    assert (gap.field_error.field, gap.field_error.expected, gap.field_error.received) == (
        "sequence",
        "2 for producer 'fe'",
        "5",
    )
    assert gap.field_error.hint.startswith("a gap")
    assert missing.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert not missing.HasField("field_error")


def test_an_oversized_batch_names_the_limit(stub_with_stream):
    big = np.zeros((120_000, 3), np.float32)
    req = pb.IngestRequest(
        stream="details", scores=tensor(big), labels=tensor(np.zeros(120_000, np.int32))
    )
    (r,), _ = ingest(stub_with_stream, [req])
    assert r.field_error == ingest_pb2.FieldError(
        field="message bytes", expected=f"at most {1 << 20}", received=str(req.ByteSize())
    )


def test_reflection_v1_is_served(server):
    """grpc.reflection.v1 (same messages as v1alpha, new package) answers list and describe."""
    from grpc_reflection.v1alpha import reflection_pb2

    with grpc.insecure_channel(server.target) as ch:
        call = ch.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        reqs = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="evalstream.v1.EvalstreamService"
            ),
        ]
        replies = list(call(iter(reqs), timeout=5))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {
        "evalstream.v1.EvalstreamService",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
    files = replies[1].file_descriptor_response.file_descriptor_proto
    assert any(b"EvalstreamService" in f for f in files)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"windows": ["5m", "300s"]}, "config.windows"),
        ({"thresholds": [1.5]}, "config.thresholds"),
        ({"resolution": stream_pb2.Resolution(binned={"mantissa_bits": 99})}, None),
        ({"classes": ["n", "n"]}, "config.classes"),
    ],
)
def test_config_errors_name_the_request_field(stub_with_stream, config, field):
    """StreamSpec's argument names become the StreamConfig field paths of the wire."""
    base = {
        "name": "cfg-error",
        "task": stream_pb2.TASK_BINARY,
        "classes": ["n", "p"],
        "score_kind": stream_pb2.SCORE_KIND_PROBABILITIES,
    }
    cfg = stream_pb2.StreamConfig(**{**base, **config})
    with pytest.raises(grpc.RpcError) as info:
        stub_with_stream.CreateStream(pb.CreateStreamRequest(config=cfg))
    parts = _unpack(_details(_status(info))["evalstream.v1.FieldError"], ingest_pb2.FieldError)
    expected = field or "config.resolution.binned.mantissa_bits"
    assert parts.field == expected and info.value.details().startswith(f"{expected}: expected ")

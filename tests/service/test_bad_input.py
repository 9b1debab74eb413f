"""Every bad input: the right gRPC code, a message naming the field, expected and received, and
no state change."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2, stream_pb2, tensor_pb2

from .conftest import create, ingest, tensor

P = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], dtype=np.float32)
Y = np.array([0, 2], dtype=np.int32)


def _n(stub, name):
    return json.loads(stub.GetReport(pb.GetReportRequest(stream=name)).report_json)["n_samples"]


@pytest.fixture(scope="module")
def streams(stub):
    create(stub, "mc")
    create(stub, "ml", task="multilabel", classes=("x", "y"))
    ok = pb.IngestRequest(
        stream="mc", producer_id="seed", sequence=1, scores=tensor(P), labels=tensor(Y)
    )
    ingest(stub, [ok])
    return stub


BAD = [
    (
        "nan scores",
        "mc",
        np.array([[np.nan, 0.5, 0.5], [0.6, 0.2, 0.2]], np.float32),
        Y,
        None,
        "scores",
        "NaN",
    ),
    (
        "inf scores",
        "mc",
        np.array([[np.inf, 0.5, 0.5], [0.6, 0.2, 0.2]], np.float32),
        Y,
        None,
        "scores",
        "infinite",
    ),
    (
        "column count",
        "mc",
        np.full((2, 4), 0.25, np.float32),
        Y,
        None,
        "scores.shape",
        "expected [N, 3] (one column per class of this TASK_MULTICLASS stream), received [2, 4]",
    ),
    ("label range", "mc", P, np.array([0, 7], np.int32), None, "labels", "[0, 2]"),
    (
        "multi-hot on multiclass",
        "mc",
        P,
        np.array([[1, 0, 1], [0, 1, 0]], np.uint8),
        None,
        "labels.dtype",
        "expected DATA_TYPE_INT32 or DATA_TYPE_INT64 (class indices of a TASK_MULTICLASS stream), "
        "received DATA_TYPE_UINT8",
    ),
    (
        "indices on multilabel",
        "ml",
        np.array([[0.1, 0.9], [0.8, 0.2]], np.float32),
        np.array([0, 1], np.int32),
        None,
        "labels.dtype",
        "expected DATA_TYPE_UINT8 or DATA_TYPE_BOOL (a multi-hot matrix of a TASK_MULTILABEL "
        "stream), received DATA_TYPE_INT32",
    ),
    (
        "rows not summing to 1",
        "mc",
        np.array([[0.5, 0.5, 0.5], [0.6, 0.2, 0.2]], np.float32),
        Y,
        None,
        "scores",
        "logits",
    ),
    ("negative weights", "mc", P, Y, np.array([1.0, -1.0]), "sample_weight", "non-negative"),
    (
        "empty batch",
        "mc",
        np.zeros((0, 3), np.float32),
        np.zeros(0, np.int32),
        None,
        "labels",
        "at least 1",
    ),
    (
        "length mismatch",
        "mc",
        P,
        np.array([0, 1, 2], np.int32),
        None,
        "labels",
        "expected 2 rows, one per row of scores, received 3 rows",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_batches_are_rejected_with_the_field_and_change_nothing(streams, case):
    _, stream, scores, labels, weights, field, word = case
    before = _n(streams, stream)
    req = pb.IngestRequest(
        stream=stream,
        producer_id=f"bad-{case[0]}",
        sequence=1,
        scores=tensor(scores),
        labels=tensor(labels),
    )
    if weights is not None:
        req.sample_weight.CopyFrom(tensor(weights))
    results, totals = ingest(streams, [req])
    assert len(results) == 1
    r = results[0]
    assert r.status == ingest_pb2.BATCH_STATUS_REJECTED
    assert r.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert r.error_message.startswith(f"{field}: expected ")
    assert word in r.error_message and "received" in r.error_message
    assert r.expected_sequence == 2  # a content rejection consumes its sequence number
    assert totals.rejected_batches == 1 and totals.accepted_samples == 0
    assert _n(streams, stream) == before


def test_bytes_that_are_not_the_declared_dtype_and_shape(streams):
    bad = tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[2, 3], data=b"\x00" * 20)
    req = pb.IngestRequest(
        stream="mc", producer_id="dtype", sequence=1, scores=bad, labels=tensor(Y)
    )
    (r,), _ = ingest(streams, [req])
    assert r.status == ingest_pb2.BATCH_STATUS_REJECTED
    assert (
        "scores.data: expected 24 bytes for DATA_TYPE_FLOAT32 shape [2, 3], received 20 bytes"
        in r.error_message
    )
    req = pb.IngestRequest(
        stream="mc",
        producer_id="dtype2",
        sequence=1,
        labels=tensor(Y),
        scores=tensor_pb2.Tensor(dtype=0, shape=[2, 3], data=P.tobytes()),
    )
    (r,), _ = ingest(streams, [req])
    assert "scores.dtype" in r.error_message and "DATA_TYPE_UNSPECIFIED" in r.error_message


def test_unknown_stream_is_not_found_and_consumes_nothing(streams):
    req = pb.IngestRequest(
        stream="nope", producer_id="x", sequence=1, scores=tensor(P), labels=tensor(Y)
    )
    (r,), _ = ingest(streams, [req])
    assert r.error_code == grpc.StatusCode.NOT_FOUND.value[0] and "nope" in r.error_message
    with pytest.raises(grpc.RpcError) as info:
        streams.GetReport(pb.GetReportRequest(stream="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_existing_stream_name_is_already_exists(streams):
    with pytest.raises(grpc.RpcError) as info:
        create(streams, "mc")
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "mc" in info.value.details()


def test_undeclared_task_or_score_kind_is_invalid(streams):
    cfg = stream_pb2.StreamConfig(
        name="nokind", task=stream_pb2.TASK_MULTICLASS, classes=["a", "b"]
    )
    with pytest.raises(grpc.RpcError) as info:
        streams.CreateStream(pb.CreateStreamRequest(config=cfg))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "config.score_kind" in info.value.details()


def test_oversized_message_is_a_rejected_batch_and_the_call_goes_on(streams):
    big = np.zeros((120_000, 3), np.float32)  # 1.4 MiB > the 1 MiB limit of this server
    reqs = [
        pb.IngestRequest(
            stream="mc",
            producer_id="big",
            sequence=1,
            scores=tensor(big),
            labels=tensor(np.zeros(120_000, np.int32)),
        ),
        pb.IngestRequest(
            stream="mc", producer_id="big", sequence=2, scores=tensor(P), labels=tensor(Y)
        ),
    ]
    size = reqs[0].ByteSize()
    (r, ok), _ = ingest(streams, reqs)
    assert r.status == ingest_pb2.BATCH_STATUS_REJECTED
    assert r.error_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert r.error_message == f"message bytes: limit {1 << 20}, received {size}"
    assert r.expected_sequence == 2  # consumed, as every batch that can never be accepted
    assert ok.status == ingest_pb2.BATCH_STATUS_ACCEPTED
    assert _n(streams, "mc") == 4
    _reset(streams, "mc")


def test_message_past_twice_the_limit_ends_the_call(streams):
    huge = np.zeros((180_000, 3), np.float32)  # 2.1 MiB: gRPC refuses it unread
    req = pb.IngestRequest(stream="mc", scores=tensor(huge), labels=tensor(np.zeros(180_000)))
    with pytest.raises(grpc.RpcError) as info:
        ingest(streams, [req])
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _n(streams, "mc") == 2


def _reset(stub, name):
    """Put ``name`` back to its seeded state: the seed's 2 samples."""
    stub.ResetStream(pb.ResetStreamRequest(name=name))
    seed = pb.IngestRequest(stream=name, scores=tensor(P), labels=tensor(Y))
    ingest(stub, [seed])
    assert _n(stub, name) == 2


def test_too_many_rows_is_resource_exhausted_per_batch(streams):
    rows = 20001
    scores = np.tile(P[:1], (rows, 1))
    req = pb.IngestRequest(
        stream="mc",
        producer_id="rows",
        sequence=1,
        scores=tensor(scores),
        labels=tensor(np.zeros(rows, np.int32)),
    )
    (r,), _ = ingest(streams, [req])
    assert r.error_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert "batch rows: limit 20000, received 20001" in r.error_message


@pytest.mark.parametrize("method", ["GetReport", "CreateStream", "GetStream", "ListStreams"])
def test_protobuf_garbage_is_invalid_argument_not_internal(server, method):
    with grpc.insecure_channel(server.target) as ch:
        call = ch.unary_unary(f"/evalstream.v1.EvalstreamService/{method}")
        with pytest.raises(grpc.RpcError) as info:
            call(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "protobuf" in info.value.details()


def test_protobuf_garbage_on_the_ingest_stream(server, streams):
    with grpc.insecure_channel(server.target) as ch:
        call = ch.stream_stream("/evalstream.v1.EvalstreamService/Ingest")
        with pytest.raises(grpc.RpcError) as info:
            list(call(iter([b"\x22\x05garbage-not-a-tensor"]), timeout=10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _n(streams, "mc") == 2


def test_exactly_once_duplicates_and_gaps(streams):
    create(streams, "seq")
    reqs = [
        pb.IngestRequest(
            stream="seq", producer_id="p", sequence=s, scores=tensor(P), labels=tensor(Y)
        )
        for s in (1, 2, 2, 1, 5, 3)
    ]
    results, totals = ingest(streams, reqs)
    status = [r.status for r in results]
    assert status == [
        ingest_pb2.BATCH_STATUS_ACCEPTED,
        ingest_pb2.BATCH_STATUS_ACCEPTED,
        ingest_pb2.BATCH_STATUS_DUPLICATE,
        ingest_pb2.BATCH_STATUS_DUPLICATE,
        ingest_pb2.BATCH_STATUS_REJECTED,
        ingest_pb2.BATCH_STATUS_ACCEPTED,
    ]
    assert results[2].original_status == ingest_pb2.BATCH_STATUS_ACCEPTED
    assert results[4].error_code == grpc.StatusCode.OUT_OF_RANGE.value[0]
    assert results[4].expected_sequence == 3 and "gap" in results[4].error_message
    assert totals.accepted_samples == 6 and totals.duplicate_batches == 2
    assert _n(streams, "seq") == 6


def test_unknown_window_is_invalid_argument(streams):
    with pytest.raises(grpc.RpcError) as info:
        streams.GetReport(pb.GetReportRequest(stream="mc", window="13m"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "window" in info.value.details()

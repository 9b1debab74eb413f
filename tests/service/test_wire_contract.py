"""The proto's dtype and shape tables, enforced over the raw wire (generated stubs only, no
client), and every per-batch problem answered as a REJECTED result in the wire's words.

Each case names what the proto says (IngestRequest.scores / labels / sample_weight, Task) and
checks that the server refuses the rest with the field, the expected and the received value
spelled as the proto spells them, that readable batches report their rows, and that nothing was
counted."""

from __future__ import annotations

import json
import re

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2, tensor_pb2

from .conftest import create, ingest

T = tensor_pb2
N = 5
RNG = np.random.default_rng(15)
P3 = RNG.dirichlet(np.ones(3), N).astype("<f4")
Y3 = RNG.integers(0, 3, N).astype("<i4")


def raw(dtype: int, array: np.ndarray, numpy_dtype: str) -> T.Tensor:
    """A Tensor of ``array`` cast to ``numpy_dtype`` and labelled ``dtype``, built by hand."""
    a = np.ascontiguousarray(array, dtype=numpy_dtype)
    return T.Tensor(dtype=dtype, shape=list(a.shape), data=a.tobytes())


F32 = raw(T.DATA_TYPE_FLOAT32, P3, "<f4")
I32 = raw(T.DATA_TYPE_INT32, Y3, "<i4")


def _n(stub, name: str) -> int:
    return json.loads(stub.GetReport(pb.GetReportRequest(stream=name)).report_json)["n_samples"]


@pytest.fixture(scope="module")
def wire(stub):
    create(stub, "w-mc")
    create(stub, "w-bin", task="binary", classes=("ok", "bad"))
    create(stub, "w-ml", task="multilabel", classes=("x", "y", "z"))
    return stub


# (case, stream, scores, labels, weights, error message, rows reported)
TABLE = [
    (
        "unspecified scores dtype",
        "w-mc",
        T.Tensor(dtype=T.DATA_TYPE_UNSPECIFIED, shape=[N, 3], data=P3.tobytes()),
        I32,
        None,
        "scores.dtype: expected DATA_TYPE_FLOAT32, DATA_TYPE_FLOAT16 or DATA_TYPE_FLOAT64 "
        "(scores are floating point), received DATA_TYPE_UNSPECIFIED",
        0,
    ),
    (
        "uint8 scores",
        "w-ml",
        raw(T.DATA_TYPE_UINT8, np.ones((N, 3)), "u1"),
        raw(T.DATA_TYPE_UINT8, np.ones((N, 3)), "u1"),
        None,
        "scores.dtype: expected DATA_TYPE_FLOAT32, DATA_TYPE_FLOAT16 or DATA_TYPE_FLOAT64 "
        "(scores are floating point), received DATA_TYPE_UINT8",
        0,
    ),
    (
        "int64 scores",
        "w-bin",
        raw(T.DATA_TYPE_INT64, np.ones(N), "<i8"),
        raw(T.DATA_TYPE_INT32, np.ones(N), "<i4"),
        None,
        "scores.dtype: expected DATA_TYPE_FLOAT32, DATA_TYPE_FLOAT16 or DATA_TYPE_FLOAT64 "
        "(scores are floating point), received DATA_TYPE_INT64",
        0,
    ),
    (
        "bool scores",
        "w-bin",
        raw(T.DATA_TYPE_BOOL, np.ones(N), "?"),
        raw(T.DATA_TYPE_INT32, np.ones(N), "<i4"),
        None,
        "scores.dtype: expected DATA_TYPE_FLOAT32, DATA_TYPE_FLOAT16 or DATA_TYPE_FLOAT64 "
        "(scores are floating point), received DATA_TYPE_BOOL",
        0,
    ),
    (
        "float32 labels",
        "w-mc",
        F32,
        raw(T.DATA_TYPE_FLOAT32, Y3, "<f4"),
        None,
        "labels.dtype: expected DATA_TYPE_INT32 or DATA_TYPE_INT64 (class indices of a "
        "TASK_MULTICLASS stream), received DATA_TYPE_FLOAT32",
        N,
    ),
    (
        "multiclass labels [N, 1]",
        "w-mc",
        F32,
        raw(T.DATA_TYPE_INT32, Y3[:, None], "<i4"),
        None,
        "labels.shape: expected [N] (class indices of a TASK_MULTICLASS stream), received [5, 1]",
        N,
    ),
    (
        "binary scores [N, 1]",
        "w-bin",
        raw(T.DATA_TYPE_FLOAT32, np.full((N, 1), 0.5), "<f4"),
        raw(T.DATA_TYPE_INT32, np.ones(N), "<i4"),
        None,
        "scores.shape: expected [N] or [N, 2] (the positive class's score, or one column per "
        "class of a TASK_BINARY stream), received [5, 1]",
        N,
    ),
    (
        "wrong width",
        "w-mc",
        raw(T.DATA_TYPE_FLOAT32, np.full((N, 4), 0.25), "<f4"),
        I32,
        None,
        "scores.shape: expected [N, 3] (one column per class of this TASK_MULTICLASS stream), "
        "received [5, 4]",
        N,
    ),
    (
        "float16 weights",
        "w-mc",
        F32,
        I32,
        raw(T.DATA_TYPE_FLOAT16, np.ones(N), "<f2"),
        "sample_weight.dtype: expected DATA_TYPE_FLOAT32 or DATA_TYPE_FLOAT64 (one weight per "
        "row), received DATA_TYPE_FLOAT16",
        N,
    ),
    (
        "weights of another length",
        "w-mc",
        F32,
        I32,
        raw(T.DATA_TYPE_FLOAT64, np.ones(N + 1), "<f8"),
        "sample_weight: expected 5 rows, one per row of scores, received 6 rows",
        N,
    ),
    (
        "NaN scores",
        "w-mc",
        raw(T.DATA_TYPE_FLOAT32, np.where(np.eye(N, 3) > 0, np.nan, P3), "<f4"),
        I32,
        None,
        "scores: expected finite numbers, received 3 NaN and 0 infinite values (first at index "
        "[0, 0])",
        N,
    ),
    (
        "label out of range",
        "w-mc",
        F32,
        raw(T.DATA_TYPE_INT64, np.full(N, 3), "<i8"),
        None,
        "labels: expected class indices in [0, 2], received 5 out of range, e.g. [3]",
        N,
    ),
    (
        "logits sent as probabilities",
        "w-ml",
        raw(T.DATA_TYPE_FLOAT32, np.full((N, 3), 2.5), "<f4"),
        raw(T.DATA_TYPE_BOOL, np.ones((N, 3)), "?"),
        None,
        "scores: expected probabilities in [0, 1], received values in [2.5, 2.5] (create the "
        "stream with SCORE_KIND_LOGITS if these are logits)",
        N,
    ),
    (
        "rows not summing to 1",
        "w-mc",
        raw(T.DATA_TYPE_FLOAT64, np.full((N, 3), 0.5), "<f8"),
        I32,
        None,
        "scores: expected probability rows that sum to 1 (tolerance 1.0e-03), received 5 rows "
        "that do not (row 0 sums to 1.5) (create the stream with SCORE_KIND_LOGITS if these are "
        "logits)",
        N,
    ),
    (
        "multi-hot values",
        "w-ml",
        raw(T.DATA_TYPE_FLOAT32, np.full((N, 3), 0.5), "<f4"),
        raw(T.DATA_TYPE_UINT8, np.full((N, 3), 2), "u1"),
        None,
        "labels: expected multi-hot values 0 or 1, received values [2]",
        N,
    ),
]

# Python's words that must never reach the wire.
PYTHON_WORDS = re.compile(r"y_true|y_score|scores='|\(n, |\['")


@pytest.mark.parametrize("case", TABLE, ids=[c[0] for c in TABLE])
def test_the_dtype_and_shape_tables_are_enforced_in_wire_words(wire, case):
    name, stream, scores, labels, weights, message, rows = case
    before = _n(wire, stream)
    req = pb.IngestRequest(
        stream=stream, producer_id=f"table-{name}", sequence=1, scores=scores, labels=labels
    )
    if weights is not None:
        req.sample_weight.CopyFrom(weights)
    (r,), totals = ingest(wire, [req])
    assert r.status == ingest_pb2.BATCH_STATUS_REJECTED
    assert r.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert r.error_message == message
    assert not PYTHON_WORDS.search(r.error_message)
    assert r.samples == rows and totals.rejected_samples == rows
    assert r.expected_sequence == 2  # consumed: it can never be accepted
    assert _n(wire, stream) == before


def test_what_the_tables_allow_is_accepted(wire):
    """Every dtype and shape the proto lists, on the matching task."""
    y_bin = RNG.integers(0, 2, N)
    p_bin = RNG.random(N)
    ml = (RNG.random((N, 3)) < 0.5).astype("u1")
    accepted = [
        ("w-mc", F32, I32),
        ("w-mc", raw(T.DATA_TYPE_FLOAT16, P3, "<f2"), raw(T.DATA_TYPE_INT64, Y3, "<i8")),
        ("w-mc", raw(T.DATA_TYPE_FLOAT64, P3, "<f8"), I32),
        ("w-bin", raw(T.DATA_TYPE_FLOAT32, p_bin, "<f4"), raw(T.DATA_TYPE_INT32, y_bin, "<i4")),
        (
            "w-bin",
            raw(T.DATA_TYPE_FLOAT64, np.c_[1 - p_bin, p_bin], "<f8"),
            raw(T.DATA_TYPE_INT64, y_bin, "<i8"),
        ),
        (
            "w-ml",
            raw(T.DATA_TYPE_FLOAT32, RNG.random((N, 3)), "<f4"),
            raw(T.DATA_TYPE_UINT8, ml, "u1"),
        ),
        (
            "w-ml",
            raw(T.DATA_TYPE_FLOAT16, RNG.random((N, 3)), "<f2"),
            raw(T.DATA_TYPE_BOOL, ml, "?"),
        ),
    ]
    before = {s: _n(wire, s) for s in ("w-mc", "w-bin", "w-ml")}
    reqs = [pb.IngestRequest(stream=s, scores=sc, labels=lb) for s, sc, lb in accepted]
    reqs[0].sample_weight.CopyFrom(raw(T.DATA_TYPE_FLOAT32, np.ones(N), "<f4"))
    results, totals = ingest(wire, reqs)
    assert [r.status for r in results] == [ingest_pb2.BATCH_STATUS_ACCEPTED] * len(accepted), [
        r.error_message for r in results
    ]
    assert totals.accepted_samples == N * len(accepted)
    for s, n in before.items():
        assert _n(wire, s) == n + N * sum(a[0] == s for a in accepted)


def test_unsequenced_rejections_report_their_rows_too(wire):
    req = pb.IngestRequest(
        stream="w-mc", scores=F32, labels=raw(T.DATA_TYPE_INT32, np.full(N, 9), "<i4")
    )
    unreadable = pb.IngestRequest(
        stream="w-mc",
        scores=T.Tensor(dtype=T.DATA_TYPE_FLOAT32, shape=[N, 3], data=b"x"),
        labels=I32,
    )
    (r, u), totals = ingest(wire, [req, unreadable])
    assert (r.status, r.samples, r.expected_sequence) == (ingest_pb2.BATCH_STATUS_REJECTED, N, 0)
    assert (u.status, u.samples) == (ingest_pb2.BATCH_STATUS_REJECTED, 0)
    assert u.error_message.startswith("scores.data: expected 60 bytes")
    assert totals.rejected_samples == N


def test_a_sequence_without_producer_id_is_a_rejected_batch_and_the_call_goes_on(wire):
    before = _n(wire, "w-mc")
    reqs = [
        pb.IngestRequest(stream="w-mc", producer_id="np", sequence=1, scores=F32, labels=I32),
        pb.IngestRequest(stream="w-mc", producer_id="", sequence=2, scores=F32, labels=I32),
        pb.IngestRequest(stream="w-mc", producer_id="np", sequence=2, scores=F32, labels=I32),
    ]
    results, totals = ingest(wire, reqs)
    assert [r.status for r in results] == [
        ingest_pb2.BATCH_STATUS_ACCEPTED,
        ingest_pb2.BATCH_STATUS_REJECTED,
        ingest_pb2.BATCH_STATUS_ACCEPTED,
    ]
    bad = results[1]
    assert bad.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert bad.error_message == (
        "producer_id: expected a non-empty producer_id when sequence is set (sequence 0 sends "
        "unsequenced), received an empty producer_id with sequence 2"
    )
    assert bad.expected_sequence == 0 and bad.samples == N  # no producer: nothing consumed
    assert (totals.accepted_batches, totals.rejected_batches) == (2, 1)
    assert _n(wire, "w-mc") == before + 2 * N


def test_ids_and_kinds_speak_the_wire(wire):
    preds = pb.IngestRequest(
        stream="w-mc", kind=pb.RECORD_KIND_PREDICTIONS, ids=["a", "b"], scores=F32
    )
    labels = pb.IngestRequest(stream="w-mc", kind=pb.RECORD_KIND_LABELS, ids=["a"], labels=I32)
    (p, lb), _ = ingest(wire, [preds, labels])
    assert p.error_message == "ids: expected 5 ids, one per row of scores, received 2 ids"
    assert lb.error_message == "ids: expected 5 ids, one per row of labels, received 1 ids"
    assert (p.samples, lb.samples) == (N, N)


def test_an_oversized_unary_request_is_resource_exhausted_in_words(wire):
    big = raw(T.DATA_TYPE_FLOAT32, np.full((100_000, 3), 1 / 3), "<f4")  # 1.2 MB > 1 MiB
    req = pb.LogPredictionsRequest(stream="w-mc", ids=["x"], scores=big)
    with pytest.raises(grpc.RpcError) as info:
        wire.LogPredictions(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == f"message bytes: limit {1 << 20}, received {req.ByteSize()}"

"""Predictions now, labels later, through the client and the wire: random order and batches, labels
that never come and labels for strangers, a server restart in between, exactly-once replays, the
unary RPCs, and bad input that names its field and changes nothing."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream import EvalClient
from evalstream.errors import InvalidBatchError
from evalstream.text import format_report
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2, tensor_pb2
from evalstream.v1.evalstream_service_pb2_grpc import EvalstreamServiceStub

from .conftest import ServerThread

CLASSES = ["cat", "dog", "eel", "fox"]


def _data(seed: int, n: int):
    rng = np.random.default_rng(seed)
    y = rng.choice(4, n, p=[0.55, 0.25, 0.15, 0.05])
    logits = rng.normal(size=(n, 4)) * 2
    logits[np.arange(n), y] += 2.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p.astype(np.float32)


def _assert_sklearn(report, y, p) -> None:
    d = report.to_dict()
    assert d["n_samples"] == len(y)
    assert d["roc_auc"]["macro"]["value"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", labels=range(4)), abs=1e-12
    )
    assert d["roc_auc"]["weighted"]["value"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="weighted", labels=range(4)),
        abs=1e-12,
    )
    pred = p.argmax(axis=1)
    assert d["accuracy"]["value"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert d["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=range(4)).tolist()
    for avg in ("macro", "weighted"):
        assert d["recall"][avg]["value"] == pytest.approx(
            skm.recall_score(y, pred, average=avg, labels=range(4), zero_division=0), abs=1e-12
        )


def test_shuffled_predictions_and_labels_equal_sklearn_on_the_joined_pairs(client, name):
    client.create_stream(name, "multiclass", CLASSES, resolution="exact", windows=["1h"])
    rng = np.random.default_rng(1)
    y, p = _data(1, 5000)
    ids = np.array([f"req-{i:05d}" for i in range(5000)], dtype=object)
    order = rng.permutation(5000)
    added = 0
    for part in np.array_split(order, 6):
        added += client.log_predictions(name, ids[part], p[part]).added
    assert added == 5000
    arrive = rng.permutation(5000)[:3800]  # 1200 labels never arrive
    label_ids = np.r_[ids[arrive], np.array(["ghost-1", "ghost-2"], dtype=object)]
    label_y = np.r_[y[arrive], [0, 1]]
    shuffle = rng.permutation(len(label_ids))
    totals = {"matched": 0, "unknown": 0}
    for part in np.array_split(shuffle, 5):
        names = np.array(CLASSES)[label_y[part]]  # class names go through too
        r = client.log_labels(name, label_ids[part], names)
        totals["matched"] += r.matched
        totals["unknown"] += r.unknown
    assert totals == {"matched": 3800, "unknown": 2}
    _assert_sklearn(client.report(name), y[arrive], p[arrive])
    _assert_sklearn(client.report(name, window="1h"), y[arrive], p[arrive])
    report = client.report(name)
    status = report.label_status()
    assert (status["pending"], status["matched"], status["unknown"]) == (1200, 3800, 2)
    assert report.labelled_share() == pytest.approx(3800 / 5000)
    shares = np.bincount(p.argmax(axis=1), minlength=4) / 5000
    assert report.predicted_prevalence() == pytest.approx(dict(zip(CLASSES, shares, strict=True)))
    assert report.prior_shift() is None  # the cumulative window is the default reference
    assert report.label_delay("p99") is not None
    text = format_report(report.to_dict())
    assert "awaiting labels 1200  joined 3800  unknown 2" in text
    assert "labelled 3800 of 5000 predictions (76.0%)" in text


def test_a_restart_between_predictions_and_labels_loses_nothing(tmp_path, name):
    y, p = _data(2, 3000)
    ids = [f"id-{i}" for i in range(3000)]
    first = ServerThread(data_dir=str(tmp_path))
    try:
        with EvalClient(first.target, producer_id="recorder") as c:
            c.create_stream(name, "multiclass", CLASSES, resolution="exact")
            c.log_predictions(name, ids[:2000], p[:2000])
            c.log_labels(name, ids[:500], y[:500])
            c.log_predictions(name, ids[2000:], p[2000:])
    finally:
        first.stop()
    second = ServerThread(data_dir=str(tmp_path))
    try:
        with EvalClient(second.target) as c:
            before = c.report(name).to_dict()
            assert before["n_samples"] == 500
            assert before["labels"]["stream"]["pending"] == 2500
            r = c.log_labels(name, ids[500:] + ids[:10], np.r_[y[500:], y[:10]])
            assert (r.matched, r.duplicate_ids) == (2500, 10)
            _assert_sklearn(c.report(name), y, p)
            assert c.report(name).to_dict()["label_free"]["n_predictions"] == 3000
        # the same producer replaying its calls after the restart is answered DUPLICATE
        with EvalClient(second.target, producer_id="recorder") as c:
            r = c.log_predictions(name, ids[:2000], p[:2000])
            assert (r.duplicate_batches, r.accepted_batches, r.added) == (1, 0, 0)
            assert c.report(name).to_dict()["label_free"]["n_predictions"] == 3000
    finally:
        second.stop()


def test_the_unary_rpcs_and_their_exactly_once_replies(server, client, name):
    client.create_stream(name, "binary", ["neg", "pos"], resolution="exact")
    stub = EvalstreamServiceStub(grpc.insecure_channel(server.target))
    scores = np.array([0.9, 0.2, 0.7, 0.4], dtype=np.float32)
    req = pb.LogPredictionsRequest(
        stream=name,
        producer_id="unary",
        sequence=1,
        ids=["a", "b", "c", "d"],
        scores=tensor_pb2.Tensor(
            dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[4], data=scores.tobytes()
        ),
    )
    first = stub.LogPredictions(req).result
    assert first.status == ingest_pb2.BATCH_STATUS_ACCEPTED
    assert (first.join.added, first.expected_sequence) == (4, 2)
    again = stub.LogPredictions(req).result  # a retry of the same sequence
    assert again.status == ingest_pb2.BATCH_STATUS_DUPLICATE
    assert again.join.added == 4  # the original counts, applied once
    labels = np.array([1, 0, 0, 1, 1], dtype=np.int32)
    lab = stub.LogLabels(
        pb.LogLabelsRequest(
            stream=name,
            producer_id="unary",
            sequence=2,
            ids=["a", "b", "c", "d", "zzz"],
            labels=tensor_pb2.Tensor(
                dtype=tensor_pb2.DATA_TYPE_INT32, shape=[5], data=labels.tobytes()
            ),
        )
    ).result
    assert (lab.join.matched, lab.join.unknown) == (4, 1)
    d = client.report(name).to_dict()
    assert d["roc_auc"]["binary"]["value"] == pytest.approx(
        skm.roc_auc_score(labels[:4], scores), abs=1e-12
    )


def test_bad_input_names_the_field_and_changes_nothing(server, client, name):
    client.create_stream(name, "multiclass", CLASSES)
    stub = EvalstreamServiceStub(grpc.insecure_channel(server.target))
    ok_scores = np.full((2, 4), 0.25, np.float32)
    t = tensor_pb2.Tensor(
        dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=[2, 4], data=ok_scores.tobytes()
    )
    lab = tensor_pb2.Tensor(dtype=tensor_pb2.DATA_TYPE_INT32, shape=[2], data=b"\0" * 8)
    cases = [
        (
            pb.IngestRequest(stream=name, ids=["a"], scores=t, kind=pb.RECORD_KIND_PREDICTIONS),
            "ids",  # 2 score rows for 1 id
        ),
        (pb.IngestRequest(stream=name, ids=["a", "b"], scores=t, labels=lab), "ids"),
        (
            pb.IngestRequest(
                stream=name, ids=["a", "b"], scores=t, labels=lab, kind=pb.RECORD_KIND_PREDICTIONS
            ),
            "labels",
        ),
        (
            pb.IngestRequest(stream=name, ids=["a", "b"], scores=t, kind=pb.RECORD_KIND_LABELS),
            "scores",
        ),
        (pb.IngestRequest(stream=name, ids=["a", "b"], scores=t, kind=9), "kind"),
    ]
    for req, field in cases:
        (result,) = [r for response in stub.Ingest(iter([req])) for r in response.results]
        assert result.status == ingest_pb2.BATCH_STATUS_REJECTED, field
        assert result.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert result.error_message.startswith(f"{field}:"), result.error_message
        assert "expected" in result.error_message and "received" in result.error_message
    with pytest.raises(ValueError, match="ids: expected 2 ids"):
        client.log_predictions(name, ["only-one"], ok_scores)
    with pytest.raises(InvalidBatchError, match="scores: expected probability rows"):
        client.log_predictions(name, ["x", "y"], np.full((2, 4), 0.5, np.float32))
    d = client.report(name).to_dict()
    assert d["label_free"]["n_predictions"] == 0
    assert d["labels"]["stream"]["predictions"] == 0

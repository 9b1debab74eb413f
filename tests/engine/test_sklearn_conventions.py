"""sklearn's conventions where they are easy to get wrong: samples AP of rows without a positive,
top-k ties, classes present only with weight 0 and the micro average's zero divisions. Every
expected value is sklearn's, computed here."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream_server.engine import State, StreamEngine, StreamSpec
from evalstream_server.engine.report import build_report


def _sk(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(*a, **k))


def _multilabel(seed: int, n: int, L: int = 5):
    """Rare labels: many rows without any positive."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, L)) < np.array([0.3, 0.15, 0.1, 0.05, 0.02])[:L]).astype(np.int64)
    p = 1 / (1 + np.exp(-(rng.normal(size=(n, L)) * 2 + (2 * Y - 1))))
    return Y, p.astype(np.float32)


@pytest.mark.parametrize("resolution", ["bins", "exact"])
@pytest.mark.parametrize("weighted", [False, True])
def test_samples_average_precision_scores_rows_without_a_positive_zero(resolution, weighted):
    Y, p = _multilabel(0, 3000)
    assert (Y.sum(axis=1) == 0).mean() > 0.4
    w = np.random.default_rng(1).integers(0, 4, len(Y)).astype(float) if weighted else None
    eng = StreamEngine(StreamSpec(task="multilabel", classes=tuple("abcde"), resolution=resolution))
    for start in range(0, len(Y), 700):
        sl = slice(start, start + 700)
        eng.update(Y[sl], p[sl], sample_weight=None if w is None else w[sl])
    leaf = eng.report()["average_precision"]["samples"]
    want = _sk(skm.average_precision_score, Y, p, average="samples", sample_weight=w)
    assert leaf["value"] == pytest.approx(want, abs=1e-12)
    assert "score 0" in leaf["reason"]


def test_samples_average_precision_toy_rows():
    # one row with a positive ranked first (AP 1), one without a positive (AP 0)
    Y = np.array([[1, 0, 0], [0, 0, 0]])
    p = np.array([[0.9, 0.2, 0.1], [0.3, 0.6, 0.5]], dtype=np.float32)
    eng = StreamEngine(StreamSpec(task="multilabel", classes=("a", "b", "c")))
    eng.update(Y, p)
    want = _sk(skm.average_precision_score, Y, p, average="samples")
    assert want == 0.5
    assert eng.report()["average_precision"]["samples"]["value"] == want


def _tie_scores() -> tuple[np.ndarray, np.ndarray]:
    # the scores of sklearn's test_top_k_accuracy_score_ties, each row scaled to sum to 1
    # (scaling keeps every tie a tie)
    raw = np.array([[5, 5, 7, 0], [1, 5, 5, 5], [0, 0, 3, 3], [1, 1, 1, 1]], dtype=np.float64)
    return np.array([0, 1, 2, 3]), (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("resolution", ["bins", "exact"])
def test_top_k_accuracy_breaks_ties_as_sklearn_and_accuracy_keeps_argmax(resolution):
    y, p = _tie_scores()
    eng = StreamEngine(
        StreamSpec(task="multiclass", classes=tuple("abcd"), resolution=resolution, top_k=3)
    )
    eng.update(y, p)
    rep = eng.report()
    for k in (1, 2, 3):
        want = _sk(skm.top_k_accuracy_score, y, p, k=k, labels=[0, 1, 2, 3])
        assert rep["top_k_accuracy"][str(k)]["value"] == want, k
    assert rep["top_k_accuracy"]["1"]["value"] == 0.25
    assert rep["accuracy"]["value"] == skm.accuracy_score(y, p.argmax(axis=1)) == 0.5


def test_client_top_k_one_reads_the_report():
    from evalstream import Report

    y, p = _tie_scores()
    eng = StreamEngine(StreamSpec(task="multiclass", classes=tuple("abcd"), top_k=2))
    eng.update(y, p)
    rep = Report(eng.report())
    assert rep.top_k_accuracy_score(1) == _sk(skm.top_k_accuracy_score, y, p, k=1)
    assert rep.accuracy_score() == 0.5


@pytest.mark.parametrize("resolution", ["bins", "exact"])
def test_classes_present_only_with_weight_zero_count_in_macro_averages(resolution):
    y = np.array([0, 0, 1, 2])
    p = np.array(
        [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]], dtype=np.float32
    )
    w = np.array([1.0, 1.0, 0.0, 0.0])
    pred = p.argmax(axis=1)
    eng = StreamEngine(StreamSpec(task="multiclass", classes=tuple("abc"), resolution=resolution))
    eng.update(y[:2], p[:2], sample_weight=w[:2])
    eng.update(y[2:], p[2:], sample_weight=w[2:])
    rep = eng.report()
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        for avg in ("macro", "weighted", "micro"):
            want = _sk(fn, y, pred, average=avg, sample_weight=w, zero_division=0)
            assert rep[name][avg]["value"] == pytest.approx(want, abs=1e-12), (name, avg)
        leaf = rep[name]["per_class"]["c"]
        assert leaf["value"] == 0.0 and leaf["zero_division"], leaf
        assert "absent" not in leaf["reason"]
    assert rep["balanced_accuracy"]["value"] == _sk(
        skm.balanced_accuracy_score, y, pred, sample_weight=w
    )


def test_binary_class_present_only_with_weight_zero():
    y = np.array([0, 0, 1])
    p = np.array([[0.2], [0.3], [0.9]], dtype=np.float32)
    w = np.array([1.0, 1.0, 0.0])
    eng = StreamEngine(StreamSpec(task="binary", classes=("ok", "bad")))
    eng.update(y, p, sample_weight=w)
    rep = eng.report()
    pred = (p[:, 0] >= 0.5).astype(int)
    want = _sk(skm.f1_score, y, pred, average="macro", sample_weight=w, zero_division=0)
    assert want == 0.5
    assert rep["f1"]["macro"]["value"] == want


def test_zero_weight_presence_survives_merge_and_bytes():
    y = np.array([0, 1, 2, 0])
    p = np.eye(3, dtype=np.float32)[[0, 0, 2, 0]]
    w = np.array([1.0, 0.0, 1.0, 1.0])
    spec = StreamSpec(task="multiclass", classes=tuple("abc"))
    a, b = StreamEngine(spec), StreamEngine(spec)
    a.update(y[:2], p[:2], sample_weight=w[:2])
    b.update(y[2:], p[2:], sample_weight=w[2:])
    merged = a.state().merge(b.state())
    again = State.from_bytes(merged.to_bytes())
    pred = p.argmax(axis=1)
    want = _sk(skm.recall_score, y, pred, average="macro", sample_weight=w, zero_division=0)
    assert build_report(again)["recall"]["macro"]["value"] == pytest.approx(want, abs=1e-12)


def test_micro_prf_on_all_negative_multilabel_is_sklearns_zero_with_a_true_reason():
    Y = np.zeros((6, 3), dtype=np.int64)
    p = np.full((6, 3), 0.1, dtype=np.float32)
    eng = StreamEngine(StreamSpec(task="multilabel", classes=tuple("abc")))
    eng.update(Y, p)
    rep = eng.report()
    pred = (p >= 0.5).astype(int)
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        leaf = rep[name]["micro"]
        assert leaf["value"] == _sk(fn, Y, pred, average="micro", zero_division=0) == 0.0
        assert leaf["zero_division"] is True
        assert "no samples" not in leaf["reason"] and "zero_division=0" in leaf["reason"]


def test_micro_prf_without_samples_says_so():
    rep = StreamEngine(StreamSpec(task="multilabel", classes=tuple("abc"))).report()
    assert rep["f1"]["micro"] == {"value": None, "reason": "no samples in this window"}


def test_reasons_tell_weight_zero_from_no_samples():
    spec = StreamSpec(task="multiclass", classes=tuple("abc"))
    empty = StreamEngine(spec).report()
    assert empty["accuracy"]["reason"] == "no samples in this window"
    eng = StreamEngine(spec)
    eng.update(np.array([0, 1]), np.eye(3, dtype=np.float32)[[0, 1]], sample_weight=np.zeros(2))
    rep = eng.report()
    for key in ("accuracy", "log_loss", "brier_score", "expected_calibration_error"):
        assert rep[key] == {"value": None, "reason": "every sample in this window has weight 0"}
    assert rep["top_k_accuracy"]["1"]["reason"] == "every sample in this window has weight 0"
    assert rep["roc_auc"]["per_class"]["a"]["reason"] == (
        "no samples of positive weight in this window"
    )

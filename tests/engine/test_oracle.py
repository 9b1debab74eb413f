"""The engine against sklearn, after every batch, for every task and average.

Exact resolution must equal sklearn to 1e-12; the binned default must hold sklearn's exact value
inside its guaranteed bounds (and be within 1e-5 on peaky data), with threshold metrics exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import StreamEngine, StreamSpec

from . import data
from .oracle import compare_report, expected


def _feed_and_check(
    spec, y, scores, p32, weights=None, n_batches=6, seed=0, binned=False, every=True
):
    rng = np.random.default_rng(seed)
    eng = StreamEngine(spec)
    parts = data.splits(rng, len(y), n_batches)
    classes = list(spec.classes)
    total = 0
    for i, sl in enumerate(parts):
        w = None if weights is None else weights[sl]
        eng.update(y[sl], scores[sl], sample_weight=w)
        if every or i == len(parts) - 1:
            end = sl.stop
            exp = expected(
                spec.task,
                y[:end],
                p32[:end],
                None if weights is None else weights[:end],
                thresholds=spec.thresholds or None,
                k_max=spec.k_max,
            )
            total += compare_report(eng.report(), exp, classes, binned)
    return eng, total


@pytest.mark.parametrize("resolution", ["exact", "bins"])
def test_multiclass_imbalanced_peaky_every_prefix(resolution):
    y, _, p32 = data.multiclass(1)
    spec = StreamSpec(
        task="multiclass", classes=("cat", "dog", "eel"), resolution=resolution, top_k=3
    )
    _, checked = _feed_and_check(spec, y, p32, p32, binned=resolution == "bins")
    assert checked > 100


def test_multiclass_binned_auc_error_small_on_peaky_data():
    y, _, p32 = data.multiclass(2, scale=8.0)
    eng = StreamEngine(StreamSpec(task="multiclass", classes=("a", "b", "c")))
    for sl in data.splits(np.random.default_rng(2), len(y), 8):
        eng.update(y[sl], p32[sl])
    rep = eng.report()
    exp = expected("multiclass", y, p32)
    for avg in ("macro", "weighted", "micro", "ovo_macro", "ovo_weighted"):
        want = exp[f"roc_auc.{avg}"]
        assert abs(rep["roc_auc"][avg]["value"] - want) <= 1e-5, avg
        assert rep["roc_auc"][avg]["upper"] - rep["roc_auc"][avg]["lower"] < 2e-3


def test_multiclass_ties_missing_class_and_weights_exact():
    y, _, p32 = data.multiclass(3, counts=(3000, 0, 800, 200), tie_decimals=2)
    w = np.random.default_rng(3).integers(1, 5, len(y)).astype(float) / 4
    spec = StreamSpec(task="multiclass", classes=("a", "b", "c", "d"), resolution="exact")
    eng, checked = _feed_and_check(spec, y, p32, p32, weights=w, n_batches=4)
    rep = eng.report()
    assert rep["roc_auc"]["per_class"]["b"]["value"] is None
    assert "no positive" in rep["roc_auc"]["per_class"]["b"]["reason"]
    assert rep["roc_auc"]["macro"]["n_defined"] == 3
    assert checked > 50


def test_multiclass_ties_binned_bounds_hold():
    y, _, p32 = data.multiclass(4, counts=(2000, 3000, 500), tie_decimals=3)
    spec = StreamSpec(task="multiclass", classes=("a", "b", "c"), resolution="bins:3")
    _feed_and_check(spec, y, p32, p32, binned=True, n_batches=3)


def test_multiclass_logits_match_softmax_float32():
    y, logits, _ = data.multiclass(5, counts=(1500, 3000, 4500))
    p32 = data.softmax(logits).astype(np.float32)
    spec = StreamSpec(
        task="multiclass", classes=("a", "b", "c"), scores="logits", resolution="exact"
    )
    _feed_and_check(spec, y, logits, p32, n_batches=3, every=False)


def test_multiclass_single_class_window():
    y = np.zeros(50, dtype=np.int64)
    p = np.tile(np.array([[0.7, 0.2, 0.1]], dtype=np.float32), (50, 1))
    p[::2] = [0.2, 0.7, 0.1]
    spec = StreamSpec(task="multiclass", classes=("a", "b", "c"), resolution="exact")
    eng, _ = _feed_and_check(spec, y, p, p, n_batches=2)
    rep = eng.report()
    assert rep["roc_auc"]["macro"]["value"] is None
    assert rep["roc_auc"]["ovo_macro"]["value"] is None
    # one true class: MCC divides by zero (sklearn returns 0.0); we say undefined and why
    assert rep["matthews_corrcoef"]["value"] is None
    assert "sklearn returns 0.0" in rep["matthews_corrcoef"]["reason"]


@pytest.mark.parametrize("resolution", ["exact", "bins"])
def test_binary_every_prefix(resolution):
    y, _, p32 = data.binary(6)
    spec = StreamSpec(task="binary", classes=("ok", "fraud"), resolution=resolution)
    _feed_and_check(spec, y, p32, p32, binned=resolution == "bins")


def test_binary_two_columns_logits_and_threshold():
    y, logits, _ = data.binary(7, n_neg=3000, n_pos=400)
    two = np.stack([np.zeros_like(logits), logits], axis=1)
    p32 = (1 / (1 + np.exp(-logits))).astype(np.float32)
    spec = StreamSpec(task="binary", scores="logits", thresholds=(0.3,), resolution="exact")
    _feed_and_check(spec, y, two, p32, n_batches=3)


def test_binary_weighted():
    y, _, p32 = data.binary(8, n_neg=4000, n_pos=300)
    w = np.random.default_rng(8).random(len(y)) * 3
    spec = StreamSpec(task="binary", resolution="exact")
    _feed_and_check(spec, y, p32, p32, weights=w, n_batches=3, every=False)


@pytest.mark.parametrize("resolution", ["exact", "bins"])
def test_multilabel_every_prefix(resolution):
    Y, _, p32 = data.multilabel(9, n=1500)
    spec = StreamSpec(
        task="multilabel",
        classes=tuple("abcde"),
        resolution=resolution,
        thresholds=(0.5, 0.4, 0.3, 0.5, 0.2),
    )
    _feed_and_check(spec, Y, p32, p32, binned=resolution == "bins", n_batches=4)


def test_multilabel_weighted_logits_and_absent_label():
    Y, logits, _ = data.multilabel(10, n=2000, L=4, prevalence=(0.4, 0.2, 0.0, 0.1))
    p32 = (1 / (1 + np.exp(-logits))).astype(np.float32)
    w = np.random.default_rng(10).integers(0, 4, len(Y)).astype(float)
    spec = StreamSpec(task="multilabel", classes=tuple("abcd"), scores="logits", resolution="exact")
    eng, _ = _feed_and_check(spec, Y, logits, p32, weights=w, n_batches=3, every=False)
    rep = eng.report()
    assert rep["roc_auc"]["per_class"]["c"]["value"] is None
    assert rep["average_precision"]["macro"]["n_defined"] == 3
    assert rep["recall"]["per_class"]["c"]["zero_division"] is True
    assert rep["recall"]["per_class"]["c"]["value"] == 0.0


def test_expected_calibration_error_matches_numpy():
    y, _, p32 = data.multiclass(11, counts=(400, 900, 1300))
    eng = StreamEngine(StreamSpec(task="multiclass", classes=("a", "b", "c"), calibration_bins=10))
    eng.update(y, p32)
    conf = p32.max(axis=1).astype(np.float64)
    hit = p32.argmax(axis=1) == y
    b = np.minimum((conf * 10).astype(int), 9)
    want = sum(abs(hit[b == k].sum() - conf[b == k].sum()) for k in range(10)) / len(y)
    assert eng.report()["expected_calibration_error"]["value"] == pytest.approx(want, abs=1e-12)


def test_imbalance_section_matches_numpy():
    y, _, p32 = data.multiclass(12, counts=(100, 1000, 4000))
    eng = StreamEngine(StreamSpec(task="multiclass", classes=("a", "b", "c")))
    eng.update(y, p32)
    rep = eng.report()
    imb = rep["imbalance"]
    n = len(y)
    for i, c in enumerate("abc"):
        assert imb["support"][c]["value"] == (y == i).sum()
        assert imb["prevalence"][c]["value"] == pytest.approx((y == i).mean(), abs=1e-15)
        assert imb["predicted_prevalence"]["argmax"][c]["value"] == pytest.approx(
            (p32.argmax(1) == i).mean(), abs=1e-15
        )
        assert imb["predicted_prevalence"]["mean_probability"][c]["value"] == pytest.approx(
            p32[:, i].astype(np.float64).sum() / n, rel=1e-12
        )
    assert imb["imbalance_ratio"]["value"] == pytest.approx(40.0)
    gap = rep["roc_auc"]["micro"]["value"] - rep["roc_auc"]["macro"]["value"]
    assert imb["micro_macro_auc_gap"]["value"] == pytest.approx(gap, abs=1e-15)


@pytest.mark.parametrize("resolution", ["exact", "bins"])
def test_curves_match_sklearn(resolution):
    import sklearn.metrics as skm

    y, _, p32 = data.binary(13, n_neg=3000, n_pos=500)
    eng = StreamEngine(StreamSpec(task="binary", classes=("n", "p"), resolution=resolution))
    eng.update(y, p32)
    roc = eng.curve("roc", "p", max_points=0)
    pr = eng.curve("pr", "p", max_points=0)
    if resolution == "exact":
        fpr, tpr, thr = skm.roc_curve(y, p32, drop_intermediate=False)
        np.testing.assert_allclose(roc["x"], fpr, atol=1e-15)
        np.testing.assert_allclose(roc["y"], tpr, atol=1e-15)
        np.testing.assert_allclose(roc["thresholds"][1:], thr[1:], atol=0)
        prec, rec, thr = skm.precision_recall_curve(y, p32)
        np.testing.assert_allclose(pr["y"], prec, atol=1e-15)
        np.testing.assert_allclose(pr["x"], rec, atol=1e-15)
    else:
        # binned curves: every point is a point of sklearn's curve at the bin edge threshold
        fpr, tpr = np.array(roc["x"]), np.array(roc["y"])
        for t, f, r in list(zip(roc["thresholds"], fpr, tpr, strict=True))[1:40]:
            pred = p32 >= np.float32(t)
            assert f == pytest.approx(pred[y == 0].mean(), abs=1e-12)
            assert r == pytest.approx(pred[y == 1].mean(), abs=1e-12)
    thin = eng.curve("roc", "p", max_points=25)
    assert len(thin["x"]) <= 25 and thin["x"][0] == 0.0 and thin["x"][-1] == 1.0

"""95% intervals cover the population value about 95% of the time (seeded simulation).

The population values come from sklearn on one large sample of the same model; each replicate
is a small stream through the engine, and its report's ``ci95`` either holds the population
value or not. With R replicates the coverage has a standard error of about
``sqrt(0.95 * 0.05 / R)``; the accepted band is 93% to 97%.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream_server.engine import StreamEngine, StreamSpec, build_report

K = 3
PREVALENCE = np.array([0.2, 0.3, 0.5])
CLASSES = ("a", "b", "c")


def _draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels, softmax scores of noisy logits with the true class shifted up."""
    y = rng.choice(K, n, p=PREVALENCE)
    z = rng.normal(size=(n, K)) * 1.5
    z[np.arange(n), y] += 1.5
    p = np.exp(z)
    return y, (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@functools.cache
def _population() -> dict[str, float]:
    """sklearn on 300,000 samples of the model (its own error is ~30x below a replicate's)."""
    y, p = _draw(np.random.default_rng(2024), 300_000)
    onehot = np.eye(K, dtype=int)[y]
    pred = p.argmax(axis=1)
    out = {
        "roc_auc.macro": skm.roc_auc_score(y, p, multi_class="ovr", average="macro"),
        "roc_auc.weighted": skm.roc_auc_score(y, p, multi_class="ovr", average="weighted"),
        "roc_auc.micro": skm.roc_auc_score(onehot.ravel(), p.ravel()),
        "roc_auc.per_class.a": skm.roc_auc_score(onehot[:, 0], p[:, 0]),
    }
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        for avg in ("macro", "micro"):
            out[f"{name}.{avg}"] = fn(y, pred, average=avg)
        out[f"{name}.per_class.a"] = fn(y, pred, average=None)[0]
    return {k: float(v) for k, v in out.items()}


def _leaf(report: dict, path: str) -> dict:
    node = report
    for part in path.split("."):
        node = node[part]
    return node


@pytest.mark.slow
def test_average_intervals_cover_the_population_value():
    pop = _population()
    rng = np.random.default_rng(7)
    R, n = 800, 300
    hits = dict.fromkeys(pop, 0)
    spec = StreamSpec(task="multiclass", classes=CLASSES, resolution="exact")
    for _ in range(R):
        y, p = _draw(rng, n)
        eng = StreamEngine(spec)
        eng.update(y, p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = eng.report()
        for path, value in pop.items():
            low, high = _leaf(report, path)["ci95"]
            hits[path] += low <= value <= high
    coverage = {k: v / R for k, v in hits.items()}
    assert all(0.93 <= c <= 0.97 for c in coverage.values()), coverage


def test_binned_averages_carry_bounds_and_exact_ones_an_interval():
    y, p = _draw(np.random.default_rng(3), 2000)
    binned = StreamEngine(StreamSpec(task="multiclass", classes=CLASSES))
    exact = StreamEngine(StreamSpec(task="multiclass", classes=CLASSES, resolution="exact"))
    for eng in (binned, exact):
        eng.update(y, p)
    rb, re = binned.report(), exact.report()
    for avg in ("macro", "weighted", "micro"):
        assert "ci95" not in rb["roc_auc"][avg] and "lower" in rb["roc_auc"][avg]
        low, high = re["roc_auc"][avg]["ci95"]
        assert low < re["roc_auc"][avg]["value"] < high
    for metric in ("precision", "recall", "f1"):  # from the confusion counts: both resolutions
        for avg in ("macro", "micro"):
            assert rb[metric][avg]["ci95"] == re[metric][avg]["ci95"]
    from evalstream import Report

    assert Report(re).ci95("roc_auc", "macro") == tuple(re["roc_auc"]["macro"]["ci95"])
    # the light report (the exporter's) computes no interval
    assert "ci95" not in build_report(exact.state(), intervals=False)["roc_auc"]["macro"]


def test_the_histogram_does_not_determine_the_macro_auc_variance():
    """Two multilabel streams with the same per-label (positives, all) histograms: the second
    pairs each label's (label, score) with other samples' values of the other labels. The
    binned ranking counts are equal, the cross-label covariance is not, so the macro AUC's
    variance differs: a binned state cannot give it (engine/intervals.py)."""
    rng = np.random.default_rng(11)
    n, L = 4000, 3
    base = rng.normal(size=n)  # a per-sample difficulty shared by the labels: correlation
    Y = (rng.random((n, L)) < 0.3).astype(np.int64)
    logits = base[:, None] + rng.normal(size=(n, L)) * 0.5 + 1.2 * (2 * Y - 1)
    p = (1 / (1 + np.exp(-logits))).astype(np.float32)
    Y2, p2 = Y.copy(), p.copy()
    for c in range(1, L):  # move whole (label, score) pairs of a column between samples
        order = rng.permutation(n)
        Y2[:, c], p2[:, c] = Y[order, c], p[order, c]
    reports = []
    for labels, scores in ((Y, p), (Y2, p2)):
        pair = []
        for resolution in ("bins", "exact"):
            eng = StreamEngine(
                StreamSpec(task="multilabel", classes=tuple("xyz"), resolution=resolution)
            )
            eng.update(labels, scores)
            pair.append(eng)
        reports.append(pair)
    (b1, e1), (b2, e2) = reports
    for key in ("pos", "all"):
        np.testing.assert_array_equal(b1.state().counts[key], b2.state().counts[key])
    assert b1.report()["roc_auc"]["macro"] == b2.report()["roc_auc"]["macro"]

    def width(eng: StreamEngine) -> float:
        low, high = eng.report()["roc_auc"]["macro"]["ci95"]
        return high - low

    assert width(e1) > 1.15 * width(e2)  # shared difficulty: positively correlated labels

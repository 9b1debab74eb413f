"""The shaded bands of the ROC and precision-recall figures (``figures.roc_band``,
``figures.pr_band``) contain sklearn's curve on the raw scores: every point of ``roc_curve`` and
``precision_recall_curve`` lies in a box of the band drawn from a binned stream's thinned curve."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream import figures
from evalstream_server.engine import StreamEngine, StreamSpec
from sklearn.metrics import precision_recall_curve, roc_curve

TOL = 1e-12


def _inside(px: np.ndarray, py: np.ndarray, bx: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Indices of (px, py) points in no box [bx[i], bx[i+1]] x [lo[i], hi[i]]."""
    out = []
    for k, (x, y) in enumerate(zip(px, py, strict=True)):
        boxes = np.flatnonzero((bx[:-1] <= x + TOL) & (x - TOL <= bx[1:]))
        if not any(lo[i] - TOL <= y <= hi[i] + TOL for i in boxes):
            out.append(k)
    return out


@pytest.mark.parametrize("max_points", [40, 200])
def test_bands_contain_sklearns_raw_curves(max_points):
    rng = np.random.default_rng(21)
    n, k = 6000, 4
    y = rng.choice(k, n, p=[0.55, 0.25, 0.15, 0.05])
    z = rng.normal(0, 1, (n, k))
    z[np.arange(n), y] += 1.2
    p = np.exp(2 * z)
    p /= p.sum(axis=1, keepdims=True)
    p32 = p.astype(np.float32)
    engine = StreamEngine(StreamSpec(task="multiclass", classes=("a", "b", "c", "d")))
    engine.update(y, p32)
    report = engine.report(curves=True, max_points=max_points)
    for c, name in enumerate(report["classes"]):
        truth, score = y == c, p32[:, c].astype(np.float64)
        roc = report["curves"]["roc"][name]
        bx, lo, hi = figures.roc_band(figures._arr(roc["x"]), figures._arr(roc["y"]))
        fpr, tpr, _ = roc_curve(truth, score)
        assert _inside(fpr, tpr, bx, lo, hi) == [], name
        pr = report["curves"]["pr"][name]
        bx, lo, hi = figures.pr_band(figures._arr(pr["x"]), figures._arr(pr["y"]), pr["thresholds"])
        precision, recall, _ = precision_recall_curve(truth, score)
        keep = slice(0, -1)  # sklearn's last point (recall 0, precision 1) is no threshold
        assert _inside(recall[keep], precision[keep], bx, lo, hi) == [], name
        # the band is not the whole square: it tells something
        assert np.mean(hi - lo) < 0.2

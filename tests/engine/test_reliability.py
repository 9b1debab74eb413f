"""The report's ``reliability`` section (the reliability diagram's numbers) against
``sklearn.calibration.calibration_curve`` on the same float32 scores, and its ECE."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import StreamEngine, StreamSpec
from sklearn.calibration import calibration_curve


def _run(task: str, y: np.ndarray, p: np.ndarray, classes: tuple[str, ...]) -> dict:
    engine = StreamEngine(StreamSpec(task=task, classes=classes))
    for start in range(0, len(y), 700):  # several batches: the bins add up
        engine.update(y[start : start + 700], p[start : start + 700])
    return engine.report()


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_reliability_bins_equal_sklearn_calibration_curve(task):
    rng = np.random.default_rng(11)
    n = 5000
    if task == "binary":
        y = (rng.random(n) < 0.3).astype(int)
        pos = np.clip(0.25 + 0.4 * y + rng.normal(0, 0.2, n), 0.001, 0.999)
        p = np.c_[1 - pos, pos]
        report = _run(task, y, p, ("no", "yes"))
        conf = p[:, 1].astype(np.float32).astype(np.float64)
        hit = y
    else:
        y = rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05])
        p = rng.dirichlet(np.ones(4), n)
        p[np.arange(n), y] += rng.random(n)
        p /= p.sum(axis=1, keepdims=True)
        report = _run(task, y, p, ("a", "b", "c", "d"))
        p32 = p.astype(np.float32)
        conf = p32.max(axis=1).astype(np.float64)
        hit = (p32.argmax(axis=1) == y).astype(int)
    rel = report["reliability"]
    nb = len(rel["weights"])
    assert nb == 15 and np.allclose(rel["edges"], np.linspace(0, 1, nb + 1))
    true, pred = calibration_curve(hit, conf, n_bins=nb, strategy="uniform")
    filled = [i for i, w in enumerate(rel["weights"]) if w > 0]
    np.testing.assert_allclose([rel["observed"][i] for i in filled], true, atol=1e-12)
    np.testing.assert_allclose([rel["confidence"][i] for i in filled], pred, atol=1e-6)
    counts = np.bincount(np.minimum((conf * nb).astype(int), nb - 1), minlength=nb)
    assert rel["weights"] == counts.tolist()
    assert all(rel["observed"][i] is None for i in range(nb) if i not in filled)
    w = np.asarray(rel["weights"], dtype=float)
    gap = sum(w[i] * abs(rel["observed"][i] - rel["confidence"][i]) for i in filled) / w.sum()
    assert report["expected_calibration_error"]["value"] == pytest.approx(gap, abs=1e-12)

"""Metrics of thresholded predictions, from confusion counts, with sklearn's definitions.

All functions take weighted counts (float64). Undefined values come back as ``None`` with a reason;
precision, recall and F-scores follow sklearn's ``zero_division=0`` and say so.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "prf_from_counts",
    "wilson",
    "f1_interval",
    "mcc",
    "cohen_kappa",
    "balanced_accuracy",
]

_Z95 = 1.959963984540054


def prf_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1 (zero_division=0) and flags for the zero divisions."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    pred = tp + fp
    true = tp + fn
    f_den = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(true > 0, tp / true, 0.0)
        f1 = np.where(f_den > 0, 2 * tp / f_den, 0.0)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "precision_zero_division": pred <= 0,
        "recall_zero_division": true <= 0,
        "f1_zero_division": f_den <= 0,
    }


def wilson(successes: float, trials: float) -> list[float] | None:
    """Wilson score interval (95%) for a proportion; ``None`` without trials."""
    if trials <= 0:
        return None
    z2 = _Z95 * _Z95
    phat = successes / trials
    centre = (phat + z2 / (2 * trials)) / (1 + z2 / trials)
    half = _Z95 * math.sqrt(max(phat * (1 - phat) / trials + z2 / (4 * trials * trials), 0.0))
    half /= 1 + z2 / trials
    return [max(0.0, centre - half), min(1.0, centre + half)]


def f1_interval(tp: float, fp: float, fn: float) -> list[float] | None:
    """95% interval for F1 = 2J / (1 + J): Wilson on the Jaccard index J = tp / (tp + fp + fn),
    mapped through the monotone transform."""
    ci = wilson(tp, tp + fp + fn)
    if ci is None:
        return None
    return [2 * j / (1 + j) for j in ci]


def mcc(cm: np.ndarray) -> float | None:
    """Matthews correlation from a K x K confusion matrix (sklearn's multiclass formula).

    ``None`` where sklearn would divide by zero (it returns 0.0 there)."""
    t_sum = cm.sum(axis=1)
    p_sum = cm.sum(axis=0)
    n_correct = float(np.trace(cm))
    n = float(cm.sum())
    cov_ytyp = n_correct * n - float(t_sum @ p_sum)
    cov_ypyp = n * n - float(p_sum @ p_sum)
    cov_ytyt = n * n - float(t_sum @ t_sum)
    if cov_ypyp * cov_ytyt == 0:
        return None
    return cov_ytyp / math.sqrt(cov_ytyt * cov_ypyp)


def cohen_kappa(cm: np.ndarray) -> float | None:
    """Cohen's kappa (unweighted) from a confusion matrix; ``None`` when undefined."""
    n = float(cm.sum())
    if n <= 0:
        return None
    expected = np.outer(cm.sum(axis=1), cm.sum(axis=0)) / n
    off = ~np.eye(cm.shape[0], dtype=bool)
    denom = float(expected[off].sum())
    if denom == 0:
        return None
    return 1.0 - float(cm[off].sum()) / denom


def balanced_accuracy(cm: np.ndarray) -> float | None:
    """Mean recall over classes that occur in the labels (sklearn's ``balanced_accuracy_score``)."""
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return None
    return float(np.mean(np.diag(cm)[present] / support[present]))

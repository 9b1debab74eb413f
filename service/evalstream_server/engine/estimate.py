"""Estimated performance from predictions alone: confidence-based performance estimation.

If scores are calibrated, a prediction scored ``s`` is of class ``j`` with probability ``s_j``,
so the expected confusion counts and the expected score histograms of positives and negatives
follow from the predictions alone. Here each window's predictions are counted in ``pred_hist``
(coarse bins, ``pred_bins``) and weighed at query time by a calibration map per column, learnt
from the labelled samples of the stream's reference window (``calibrate.py``).

* Multiclass: ``E[c, j] = sum_b pred_hist[c, j, b] q_j(b)`` for predictions of class ``c``, then
  scaled so that each predicted class keeps its count (one-vs-rest maps need not sum to 1 per
  prediction). Binary and multilabel: per label, positives expected in each (predicted side, bin).
* ROC AUC and AP: each column's histogram of all predictions split into ``q`` positives and
  ``1 - q`` negatives per bin, through the same ranking formulas as the realized metrics.
* Intervals: the 2.5 % and 97.5 % quantiles of each metric over ``DRAWS`` label sets drawn from
  the calibrated probabilities (sums of Bernoulli draws per cell, by their normal approximation;
  in multiclass the misses of a predicted class shared multinomially, also normal, in proportion
  to the expected counts), each draw under a calibration map
  drawn within the sampling error of the reference's counts (``Calibration.draw``), with a fixed
  seed: the same counts give the same report. They are the spread of the realized value if the
  calibration holds, not the error of a shifted calibration (``judged`` shows that once labels
  come).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .calibrate import Calibration
from .confusion import prf_from_counts
from .ranking import ap_stats, auc_stats
from .state import State

__all__ = ["DRAWS", "JUDGE_MIN_LABELLED_SHARE", "Estimate", "estimate", "judge"]

DRAWS = 200  # label sets drawn for the intervals
_SEED = 16
# Estimated and realized metrics are compared only when at least this share of the window's
# predictions carry their label (the estimate covers every prediction, the realized value only
# the labelled ones).
JUDGE_MIN_LABELLED_SHARE = 0.95
_METRICS = ("precision", "recall", "f1")
_RANKING = ("roc_auc", "average_precision")


class Estimate:
    """Point values (from the expected counts) and ``DRAWS`` drawn values of every metric.

    Attributes
    ----------
    point, draws : dict
        ``metric -> average -> array``: per class arrays (C,) and (DRAWS, C); averages scalars
        and (DRAWS,).
    confusion : ndarray
        Expected confusion counts: (K, K) rows true, columns predicted (binary: negative,
        positive); multilabel (L, 2, 2) as sklearn's ``multilabel_confusion_matrix``.
    support : ndarray
        Expected samples of each class (C,), or of the positive class per label.
    """

    def __init__(self) -> None:
        self.point: dict[str, dict[str, Any]] = {}
        self.draws: dict[str, dict[str, Any]] = {}
        self.confusion = np.zeros(0)
        self.support = np.zeros(0)


def _sum_positives(rng: np.random.Generator, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(DRAWS,) positives among the cells' counts ``n`` (B,), each sample positive with its
    cell's probability ``p`` (DRAWS, B): the sum of independent Bernoulli draws, by its normal
    approximation (mean ``sum n p``, variance ``sum n p (1 - p)``)."""
    mean = p @ n
    var = (p * (1.0 - p)) @ n
    return np.asarray(mean + np.sqrt(var) * rng.standard_normal(mean.shape))


def _cell_positives(rng: np.random.Generator, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(DRAWS, *n.shape) positives per cell, normal with each cell's binomial mean and variance
    (the ranking metrics sum over many cells; 30x cheaper than numpy's binomial draws)."""
    sd = np.sqrt(n * p * (1.0 - p))
    return np.asarray(n * p + sd * rng.standard_normal(p.shape))


def _spread(rng: np.random.Generator, total: np.ndarray, share: np.ndarray) -> np.ndarray:
    """(DRAWS, J) a multinomial split of ``total`` (DRAWS,) in proportions ``share`` (J,), by
    its normal approximation: covariance ``total (diag(share) - share share^T)``."""
    root = np.sqrt(share)
    z = rng.standard_normal((total.size, share.size))
    centred = z * root - np.outer(z @ root, share)
    return np.asarray(total[:, None] * share + np.sqrt(np.maximum(total, 0.0))[:, None] * centred)


def _prf_averages(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, out: dict[str, Any]) -> None:
    """Per class and macro, weighted, micro precision, recall and F1 (last axis: classes)."""
    per = prf_from_counts(tp, fp, fn)
    support = tp + fn
    total = support.sum(axis=-1)
    micro = prf_from_counts(tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1))
    for m in _METRICS:
        with np.errstate(divide="ignore", invalid="ignore"):
            weighted = np.where(total > 0, (per[m] * support).sum(axis=-1) / total, np.nan)
        out[m] = {
            "per_class": per[m],
            "macro": per[m].mean(axis=-1),
            "weighted": weighted,
            "micro": micro[m],
        }


def _multiclass_counts(h: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected (true, predicted) counts and the per predicted class scale of ``q``."""
    K = h.shape[0]
    raw = np.einsum("cjb,jb->cj", h, q)  # predictions of class c: expected true class j
    n_pred = h[np.arange(K), np.arange(K)].sum(axis=1)
    total = raw.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(total > 0, n_pred / total, 0.0)
    expected = raw * scale[:, None]
    empty = (total <= 0) & (n_pred > 0)  # no calibrated mass at all: count them as right
    expected[empty, empty.nonzero()[0]] = n_pred[empty]
    return expected.T, scale


def _multiclass_draws(
    rng: np.random.Generator,
    h: np.ndarray,
    q: np.ndarray,
    expected: np.ndarray,
    scale: np.ndarray,
) -> np.ndarray:
    """(DRAWS, K, K) confusion matrices drawn from the calibrated probabilities ``q`` (DRAWS,
    K, B)."""
    K = h.shape[0]
    out = np.zeros((q.shape[0], K, K))
    for c in range(K):
        top = h[c, c]
        occupied = np.flatnonzero(top)
        if occupied.size == 0:
            continue
        p = np.clip(q[:, c, occupied] * scale[c], 0.0, 1.0)
        hits = _sum_positives(rng, top[occupied], p)
        out[:, c, c] = hits
        if K > 1:
            others = np.delete(np.arange(K), c)
            share = expected[others, c]
            share = share / share.sum() if share.sum() > 0 else np.full(K - 1, 1.0 / (K - 1))
            out[:, others, c] = _spread(rng, top.sum() - hits, share)
    return out


def _labelwise_draws(
    rng: np.random.Generator, h: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, ...]:
    """(DRAWS, C) true positives, false positives, false negatives drawn per label (``q``:
    (DRAWS, C, B))."""
    C = h.shape[0]
    tp, fp, fn = (np.zeros((q.shape[0], C)) for _ in range(3))
    for c in range(C):
        for side, hit, miss in ((1, tp, fp), (0, fn, None)):
            cells = h[c, side]
            occupied = np.flatnonzero(cells)
            if occupied.size == 0:
                continue
            pos = _sum_positives(rng, cells[occupied], q[:, c, occupied])
            hit[:, c] = pos
            if miss is not None:
                miss[:, c] = cells.sum() - pos
    return tp, fp, fn


def _ranking(
    rng: np.random.Generator,
    all_: np.ndarray,
    q: np.ndarray,
    qd: np.ndarray,
    unit: float,
    point: dict[str, Any],
    draws: dict[str, Any],
) -> None:
    """Estimated ROC AUC and AP per column (rows of ``all_``, (C, B)): expected and drawn
    positives per coarse bin, then their averages."""
    occupied = np.flatnonzero(all_.any(axis=0))
    a, qq = all_[:, occupied], q[:, occupied]
    C = a.shape[0]
    atomic = np.zeros(occupied.size, dtype=bool)
    pos, neg = a * qq, a * (1.0 - qq)
    dpos = _cell_positives(rng, a[None], qd[:, :, occupied])  # (DRAWS, C, B)
    dneg = a[None] - dpos

    def ap(p: np.ndarray, n: np.ndarray) -> np.ndarray:
        return ap_stats(p, n, atomic, bounds=False, unit=unit)["value"]

    def auc(p: np.ndarray, n: np.ndarray) -> np.ndarray:
        return auc_stats(p, n, atomic)["value"]

    for name, fn, spread in (("roc_auc", auc, auc), ("average_precision", ap, _ap_ties)):
        value = fn(pos, neg)
        # AP's draws take the tie-group value (no digamma: 5x cheaper), moved by the point's
        # difference between the two
        shift = value - spread(pos, neg) if spread is not fn else 0.0
        R, B = qd.shape[0], occupied.size
        flat = spread(dpos.reshape(R * C, B), dneg.reshape(R * C, B)) if R else np.zeros(0)
        drawn = flat.reshape(R, C) + shift
        point[name] = _rank_averages(value, pos.sum(axis=1))
        # The columns' draws cannot be joined per prediction (the histogram is per column), and
        # their errors correlate positively (a sample of class b scored high for a lowers both
        # AUCs): averages take the columns' draws in rank order, a conservative coupling.
        coupled = np.sort(np.where(np.isfinite(drawn), drawn, np.nan), axis=0)
        draws[name] = _rank_averages(coupled, np.sort(dpos.sum(axis=2), axis=0))
        draws[name]["per_class"] = drawn
        if C > 1:
            pooled = fn(pos.sum(axis=0)[None], neg.sum(axis=0)[None])[0]
            point[name]["micro"] = pooled
            move = pooled - spread(pos.sum(axis=0)[None], neg.sum(axis=0)[None])[0]
            draws[name]["micro"] = spread(dpos.sum(axis=1), dneg.sum(axis=1)) + move


def _ap_ties(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision per row with each bin a tie group (sklearn's value on tied scores)."""
    p, n = pos[:, ::-1], neg[:, ::-1]
    above_pos = np.cumsum(p, axis=1) - p
    above_all = np.cumsum(p + n, axis=1) - p - n
    P = p.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(p + n != 0, p * (above_pos + p) / (above_all + p + n), 0.0)
        return np.asarray(np.where(P > 0, step.sum(axis=1) / P, np.nan))


def _rank_averages(values: np.ndarray, support: np.ndarray) -> dict[str, Any]:
    """Per column values and their macro (defined columns) and weighted (by positives) means."""
    defined = np.isfinite(values)
    v = np.where(defined, values, 0.0)
    n_def = defined.sum(axis=-1)
    w = np.where(defined, support, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        macro = np.where(n_def > 0, v.sum(axis=-1) / n_def, np.nan)
        weighted = np.where(w.sum(axis=-1) > 0, (v * w).sum(axis=-1) / w.sum(axis=-1), np.nan)
    return {"per_class": values, "macro": macro, "weighted": weighted}


def estimate(state: State, calibration: Calibration, draws: int = DRAWS) -> Estimate:
    """Estimated metrics of ``state``'s predictions under ``calibration`` (a dense state), with
    ``draws`` label sets drawn for the intervals (0: values alone)."""
    spec = state.spec
    h = state.values("pred_hist")
    q = calibration.probabilities
    rng = np.random.default_rng(_SEED)
    qd = calibration.draw(rng, draws)
    out = Estimate()
    unit = 1.0
    n_pred, w_pred = state.counts["pred_n"]
    if n_pred > 0 and w_pred > 0:
        unit = float(w_pred / n_pred)
    if spec.task == "multiclass":
        cm, scale = _multiclass_counts(h, q)
        drawn = _multiclass_draws(rng, h, qd, cm, scale)
        out.confusion = cm
        out.support = cm.sum(axis=1)
        tp = np.diagonal(cm)
        _prf_averages(tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp, out.point)
        dtp = np.diagonal(drawn, axis1=1, axis2=2)
        _prf_averages(dtp, drawn.sum(axis=1) - dtp, drawn.sum(axis=2) - dtp, out.draws)
        total = cm.sum()
        out.point["accuracy"] = {"value": tp.sum() / total if total > 0 else np.nan}
        out.draws["accuracy"] = {"value": dtp.sum(axis=1) / max(total, 1e-300)}
        all_ = h.sum(axis=0)
    else:
        pos_side = (h * q[:, None, :]).sum(axis=2)  # (C, 2): expected positives per side
        n_side = h.sum(axis=2)
        tp, fn = pos_side[:, 1], pos_side[:, 0]
        fp, tn = n_side[:, 1] - tp, n_side[:, 0] - fn
        dtp, dfp, dfn = _labelwise_draws(rng, h, qd)
        dtn = n_side[:, 0][None] - dfn
        if spec.task == "binary":
            # two classes, as the realized binary report: negative and positive
            tp2, fp2, fn2 = (
                np.array([tn[0], tp[0]]),
                np.array([fn[0], fp[0]]),
                np.array([fp[0], fn[0]]),
            )
            _prf_averages(tp2, fp2, fn2, out.point)
            d = np.stack
            _prf_averages(
                d([dtn[:, 0], dtp[:, 0]], axis=1),
                d([dfn[:, 0], dfp[:, 0]], axis=1),
                d([dfp[:, 0], dfn[:, 0]], axis=1),
                out.draws,
            )
            for m in _METRICS:
                out.point[m]["binary"] = out.point[m]["per_class"][1]
                out.draws[m]["binary"] = out.draws[m]["per_class"][:, 1]
            total = n_side.sum()
            out.point["accuracy"] = {"value": (tp[0] + tn[0]) / total if total > 0 else np.nan}
            out.draws["accuracy"] = {"value": (dtp[:, 0] + dtn[:, 0]) / max(total, 1e-300)}
            out.confusion = np.array([[tn[0], fp[0]], [fn[0], tp[0]]])
            out.support = np.array([tn[0] + fp[0], tp[0] + fn[0]])
        else:
            _prf_averages(tp, fp, fn, out.point)
            _prf_averages(dtp, dfp, dfn, out.draws)
            out.confusion = np.stack([np.stack([tn, fp], -1), np.stack([fn, tp], -1)], 1)
            out.support = tp + fn
        all_ = h.sum(axis=1)
    _ranking(rng, all_, q, qd, unit, out.point, out.draws)
    if spec.task == "binary":
        for name in _RANKING:
            out.point[name] = {"binary": out.point[name]["per_class"][0]}
            out.draws[name] = {"binary": out.draws[name]["per_class"][:, 0]}
    return out


def _finite(x: Any) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None


def interval(draws: np.ndarray) -> list[float] | None:
    """The central 95 % of the defined draws (None when too few are defined)."""
    d = np.asarray(draws, dtype=np.float64)
    d = np.sort(d[np.isfinite(d)])  # np.quantile's linear interpolation, without its overhead
    if d.size == 0 or d.size < np.size(draws) // 2:
        return None
    at = np.array([0.025, 0.975]) * (d.size - 1)
    low = np.floor(at).astype(np.int64)
    high = np.minimum(low + 1, d.size - 1)
    lo, hi = d[low] + (d[high] - d[low]) * (at - low)
    return [float(lo), float(hi)]


def judge(estimated: float | None, realized: float | None) -> dict[str, Any] | None:
    """``estimated``, ``realized`` and the absolute error (None when either is undefined)."""
    if estimated is None or realized is None:
        return None
    return {
        "estimated": estimated,
        "realized": realized,
        "abs_error": abs(estimated - realized),
    }

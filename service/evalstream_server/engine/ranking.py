"""Ranking metrics of binary problems given as per-bin positive and negative counts.

Every function takes ``pos`` and ``neg`` of shape (R, B): R binary problems over B bins in ascending
score order, ``atomic``, a boolean mask broadcastable to (R, B) of bins that hold a single score
value, and ``slope``, the density slopes inside mixed bins (``within.slopes``; None: none). With
one bin per distinct score (the exact resolution) the results equal sklearn's to float rounding:
the only error of the binned layout is quantisation, and the bounds enclose it. Inside a mixed bin
the point values take the order that the neighbouring bins' densities imply (``within.py``); the
bounds take every order.
"""

from __future__ import annotations

import numpy as np

from .intervals import logit_interval
from .within import Slopes, dense, negatives_above, pair_share, slopes

__all__ = ["auc_stats", "ap_stats", "roc_points", "pr_points", "digamma", "thin_indices"]


def auc_stats(
    pos: np.ndarray, neg: np.ndarray, atomic: np.ndarray, slope: Slopes | None = None
) -> dict[str, np.ndarray]:
    """ROC AUC, its guaranteed bounds and the DeLong variance, per row.

    Returns a dict of (R,) arrays: ``value``, ``lower``, ``upper``, ``variance``, ``ci_low``,
    ``ci_high`` (DeLong's variance, the interval on the logit scale: ``logit_interval``), ``P``,
    ``N``. Rows without positives or without negatives get NaN. A positive and a negative of the
    same bin count ``share`` (``within.pair_share``: 1/2 in a tie group, 1/2 plus the density
    slopes' term in a mixed bin) in the value and the placements, 0 and 1 in the bounds.
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    P = pos.sum(axis=1)
    N = neg.sum(axis=1)
    neg_cum = np.cumsum(neg, axis=1)
    neg_below = neg_cum - neg
    wins = np.einsum("rb,rb->r", pos, neg_below)
    ties = pos * neg
    ties_atomic = np.where(atomic, ties, 0.0).sum(axis=1)
    ties_other = ties.sum(axis=1) - ties_atomic
    share = pair_share(slope, pos.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = np.where((P > 0) & (N > 0), P * N, np.nan)
        value = (wins + np.sum(share * ties, axis=1)) / denom
        lower = (wins + 0.5 * ties_atomic) / denom
        upper = lower + ties_other / denom
        # DeLong structural components from bins (DESIGN §3.3)
        v10 = (neg_below + share * neg) / N[:, None]
        pos_above = P[:, None] - np.cumsum(pos, axis=1)
        v01 = (pos_above + share * pos) / P[:, None]
        s10 = np.einsum("rb,rb->r", pos, (v10 - value[:, None]) ** 2) / (P - 1)
        s01 = np.einsum("rb,rb->r", neg, (v01 - value[:, None]) ** 2) / (N - 1)
        variance = s10 / P + s01 / N
    ci_low, ci_high = logit_interval(value, np.sqrt(np.maximum(variance, 0.0)))
    return {
        "value": value,
        "lower": np.minimum(lower, value),
        "upper": np.maximum(upper, value),
        "variance": variance,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "P": P,
        "N": N,
    }


def digamma(x: np.ndarray) -> np.ndarray:
    """The digamma function for x > 0 (recurrence up to 8, then the asymptotic series)."""
    x = np.array(x, dtype=np.float64, copy=True)
    acc = np.zeros_like(x)
    for _ in range(8):
        small = x < 8.0
        if not small.any():
            break
        acc -= np.where(small, 1.0 / np.where(small, x, 1.0), 0.0)
        x = np.where(small, x + 1.0, x)
    inv = 1.0 / x
    inv2 = inv * inv
    series = inv2 * (1 / 12 - inv2 * (1 / 120 - inv2 * (1 / 252 - inv2 * (1 / 240 - inv2 / 132))))
    return np.asarray(acc + np.log(x) - 0.5 * inv - series, dtype=np.float64)


def ap_stats(
    pos: np.ndarray,
    neg: np.ndarray,
    atomic: np.ndarray,
    bounds: bool = True,
    unit: float = 1.0,
    slope: Slopes | None = None,
) -> dict[str, np.ndarray]:
    """Average precision (sklearn's step definition), with guaranteed bounds, per row.

    Counts may be weighted: ``pos``, ``neg`` are weight sums, and ``unit`` is the mean weight of
    one sample (``weight_total / n_samples``; 1 for unweighted streams). Multiplying every weight
    by a constant changes no result.

    ``a`` and ``c`` are the positive and the total weight in higher bins. An atomic bin is a true
    tie group: its positives all see precision ``(a + p) / (c + p + n)``, exactly as sklearn.
    Within a non-atomic bin the order of the scores is unknown. With ``x`` the positive weight
    ranked so far inside the bin, a positive sees a precision between ``(a + x) / (c + n + x)``
    (every negative of the bin above it) and ``(a + p) / (c + p)`` (every positive of the bin
    first, none of its negatives), both increasing in ``x``; so, for any weights:

    * upper bound ``p (a + p) / (c + p)``;
    * lower bound ``integral_0^p (a + x) / (m + x) dx = p - (m - a) log(1 + p / m)``, ``m = c + n``
      (each positive's precision is at least the integrand over the weight it covers);
    * the point value assumes the bin's positives and negatives interleave at random, in units of
      ``unit``: the k-th of ``p / unit`` positives sits at ``k (p + n + u) / (p + u)`` on average,
      so it sees precision ``(a + k u) / (c + beta k u)``, ``beta = (p + n + u) / (p + u)``. That
      sum has a closed form in digamma; on peaky softmax scores it was 35x to 120x closer to
      sklearn's value on the raw scores than the tie-group value (bench: ``bench/truth.py``).
      Where the neighbouring bins give the bin's density slopes (``within.py``), the negatives
      above the k-th positive are ``n h(k / (p + 1))`` instead of ``n k / (p + 1)``: the
      difference of the two sums is added, integrated over k by Gauss-Legendre. Each bin's point
      value is kept between its bounds.
    """
    u = float(unit) if unit > 0 else 1.0
    pos = np.asarray(pos, dtype=np.float64)
    bent = dense(slope, pos.shape)
    pos = pos[:, ::-1]
    neg = np.asarray(neg, dtype=np.float64)[:, ::-1]
    atom = np.broadcast_to(atomic, pos.shape)[:, ::-1]
    P = pos.sum(axis=1)
    a = np.cumsum(pos, axis=1) - pos
    c = np.cumsum(pos + neg, axis=1) - pos - neg
    has = pos > 0
    need = has & ~atom  # non-atomic bins holding positives: the digamma work is only there
    with np.errstate(divide="ignore", invalid="ignore"):
        tie = np.where(has, pos * (a + pos) / (c + pos + neg), 0.0)
        point = tie.copy()
        up = np.where(atom, tie, np.where(has, pos * (a + pos) / (c + pos), 0.0))
        low = tie.copy()
        if need.any():
            # in units of one mean sample: the same numbers for any common scale of the weights
            pp, aa, cc, nn = pos[need] / u, a[need] / u, c[need] / u, neg[need] / u
            beta = (pp + nn + 1.0) / (pp + 1.0)
            cb = cc / beta
            sums = (pp + (aa - cb) * (digamma(cb + pp + 1.0) - digamma(cb + 1.0))) / beta
            if bent is not None:
                sums += _sloped_order(
                    pp, nn, aa, cc, bent[0][:, ::-1][need], bent[1][:, ::-1][need]
                )
            point[need] = u * sums
            if bounds or bent is not None:
                pw, aw, mw = pos[need], a[need], (c + neg)[need]
                # m == 0: the top bin without negatives, every precision is 1 (a = 0 there)
                ratio = np.where(mw > 0, pw / np.where(mw > 0, mw, 1.0), 0.0)
                low[need] = pw - (mw - aw) * np.log1p(ratio)
            if bent is not None:  # the even spread lies between the bounds; a bent one, kept so
                point[need] = np.clip(point[need], low[need], up[need])
        denom = np.where(P > 0, P, np.nan)
        value = point.sum(axis=1) / denom
        if not bounds:  # the point value only (the exporter's light report)
            return {"value": value, "P": P}
        lower = low.sum(axis=1) / denom
        upper = up.sum(axis=1) / denom
    return {
        "value": value,
        "lower": np.minimum(lower, value),
        "upper": np.maximum(upper, value),
        "P": P,
    }


# 4 nodes: within 6e-12 of 16 on the bench's flat and peaky data at 1M, at half the cost of 8
_NODES, _NODE_WEIGHTS = np.polynomial.legendre.leggauss(4)


def _sloped_order(
    p: np.ndarray, n: np.ndarray, a: np.ndarray, c: np.ndarray, a_pos: np.ndarray, a_neg: np.ndarray
) -> np.ndarray:
    """What the density slopes add to a mixed bin's AP sum, in units of one sample (1-D arrays
    over bins): ``sum_k (a + k) (1 / (c + k + n h(x_k)) - 1 / (c + k + n x_k))``, ``x_k = k / (p +
    1)``, ``h = within.negatives_above``, as an integral over k in [1/2, p + 1/2]."""
    sloped = (a_pos != 0) | (a_neg != 0)
    out = np.zeros(p.shape)
    if not sloped.any():
        return out
    p, n, a, c = p[sloped, None], n[sloped, None], a[sloped, None], c[sloped, None]
    k = 0.5 + 0.5 * p * (_NODES[None, :] + 1.0)
    x = k / (p + 1.0)
    h = negatives_above(x, a_pos[sloped, None], a_neg[sloped, None])
    term = (a + k) * (1.0 / (c + k + n * h) - 1.0 / (c + k + n * x))
    out[sloped] = 0.5 * p[:, 0] * (term @ _NODE_WEIGHTS)
    return out


def thin_indices(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` indices into ``range(n)`` spread evenly, first and last kept."""
    if max_points <= 0 or n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max(max_points, 2))).astype(np.int64))


def roc_points(
    pos: np.ndarray, neg: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of one problem (1-D arrays), like ``sklearn.metrics.roc_curve`` with
    ``drop_intermediate=False``: ``(fpr, tpr, thresholds)``, thresholds descending, the first
    ``inf``. ``edges[b]`` is the smallest score of bin ``b``."""
    keep = (pos + neg) > 0
    p, n, t = pos[keep][::-1], neg[keep][::-1], np.asarray(edges, dtype=np.float64)[keep][::-1]
    tps = np.concatenate([[0.0], np.cumsum(p)])
    fps = np.concatenate([[0.0], np.cumsum(n)])
    with np.errstate(divide="ignore", invalid="ignore"):
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
    return fpr, tpr, np.concatenate([[np.inf], t])


def pr_points(
    pos: np.ndarray, neg: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve of one problem, like ``sklearn.metrics.precision_recall_curve``:
    ``(precision, recall, thresholds)`` with thresholds ascending and the final point ``(1, 0)``
    that has no threshold."""
    keep = (pos + neg) > 0
    p, n, t = pos[keep][::-1], neg[keep][::-1], np.asarray(edges, dtype=np.float64)[keep][::-1]
    tps = np.cumsum(p)
    fps = np.cumsum(n)
    if tps.size == 0:
        return np.array([1.0]), np.array([0.0]), np.array([])
    precision = tps / (tps + fps)
    recall = tps / tps[-1] if tps[-1] > 0 else np.ones_like(tps)
    return (
        np.concatenate([precision[::-1], [1.0]]),
        np.concatenate([recall[::-1], [0.0]]),
        t[::-1],
    )


def pairwise_auc(
    hist: np.ndarray, atomic: np.ndarray, span: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """All one-vs-one AUCs ``A(i|j)`` at once from the (true class, column, bin) histogram.

    ``A(i|j)`` scores column i, positives class i (``hist[i, i]``), negatives class j
    (``hist[j, i]``). Returns (K, K) arrays ``value``, ``lower``, ``upper`` (NaN on the diagonal
    and where a class is absent). One cumulative sum and three contractions over the histogram:
    about 20x faster than K(K-1) separate problems. Same-bin pairs count as in ``auc_stats``.
    """
    hist = np.asarray(hist, dtype=np.float64)
    K = hist.shape[0]
    idx = np.arange(K)
    pos = hist[idx, idx, :]  # (K, B)
    # wins(i|j) = sum_b neg_ji[b] * (positives of i above b): the cumulative sum runs over (K, B)
    # instead of the whole (K, K, B) histogram
    pos_above = pos.sum(axis=1, keepdims=True) - np.cumsum(pos, axis=1)
    wins = np.einsum("ib,jib->ij", pos_above, hist)
    ties = np.einsum("ib,jib->ij", pos, hist)
    ties_atomic = np.einsum("ib,jib->ij", pos * atomic, hist)
    # same-bin pairs: one half each, and the slopes' term where estimated (problems (j, i, :):
    # negatives class j, column i)
    shared = 0.5 * ties
    slope = slopes(pos[None, :, :], hist, atomic, span)
    if slope is not None:
        at, a_pos, a_neg = slope.at, slope.a_pos, slope.a_neg
        B = hist.shape[2]
        row, b = np.divmod(at, B)  # row = j K + i
        term = pos.reshape(-1)[row % K * B + b] * hist.reshape(-1)[at] * (a_pos - a_neg) / 12.0
        shared += np.bincount(row, weights=term, minlength=K * K).reshape(K, K).T
    P = pos.sum(axis=1)
    N = hist.sum(axis=2).T  # N[i, j] = samples of class j (scored in column i)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = np.where((P[:, None] > 0) & (N > 0), P[:, None] * N, np.nan)
        value = (wins + shared) / denom
        lower = (wins + 0.5 * ties_atomic) / denom
        upper = lower + (ties - ties_atomic) / denom
    value[idx, idx] = lower[idx, idx] = upper[idx, idx] = np.nan
    return {"value": value, "lower": np.minimum(lower, value), "upper": np.maximum(upper, value)}

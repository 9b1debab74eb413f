"""95% intervals of averaged metrics: macro, weighted and micro ROC AUC, macro P/R/F1.

An average of per-class metrics varies with every class's metric *and* with their covariances:
one sample is a positive of one class and a negative of every other, scored in every column.
Treating classes as independent undercovers (DESIGN §3.3 measured 84% for a nominal 95%). Both
intervals here linearise the average around the data (the delta method, written as per-sample
influence values) and sum the squared influence of each sample over all classes at once, so the
covariances come in without being written down.

ROC AUC (DeLong, in influence form). For one binary problem with positive weight ``P``, negative
weight ``N`` and AUC ``A``, a positive sample ``k`` has placement ``V10(k)`` (the weighted share
of negatives scored below it, ties counting one half) and a negative sample ``V01(k)`` (the share
of positives above it). ``A`` moves, to first order, by

    psi(k) = (V10(k) - A) / P   if k is a positive,    (V01(k) - A) / N   if a negative,

per unit of ``k``'s weight (``sum_k w_k psi(k) = 0``). For class ``c`` (one-vs-rest, column
``c``) this gives ``psi_c(k)``; then, per sample,

* macro: ``phi(k) = mean_c psi_c(k)`` over the defined classes;
* weighted (class weights ``S_c / S``, ``S_c`` the weighted support): ``phi(k) = sum_c (S_c / S)
  psi_c(k) + sum_c y_kc (A_c - A_w) / S`` (the second term: the class shares vary too);
* micro: ``psi`` of the pooled (sample, column) items, summed over the sample's columns.

and ``Var = sum_k w_k**2 phi(k)**2`` (scale-free in the weights; with unit weights DeLong's
variance up to its ``n - 1`` corrections). ``sum_k psi_c(k) psi_d(k)`` is the DeLong covariance
of classes ``c`` and ``d``: it needs, per sample, the placements in *both* columns.

The histogram alone cannot give these covariances. The binned (class, column, bin) histogram
holds each column's distribution per true class, not how a sample's columns go together: two
streams with the same histogram can have different covariances
(``tests/engine/test_interval_coverage.py`` builds such a pair). Of ``Cov(psi_c, psi_d)`` the
histogram gives the part between classes and not the part within a class, which on softmax
scores is large (a sample that scores high in its own column scores low in the others): in the
coverage test's model (K = 3, 600 samples, 2000 replicates) the interval from the histogram's
part alone covered 86%. An earlier design kept additive pair counts of coarse score groups for
1 sample in 16 (98% of the exact variance, 94-95% coverage, but 46k cells a state at K = 10 and
5-8% of ingest).

Binned states therefore keep a row sample (``row_sample``): the 64 distinct rows of smallest
hash, with each column's bin and the label, mergeable like the counts.
``sampled_average_auc_intervals`` takes each term's variance from the histograms (exact, as the
per-class intervals) and only the correlations between terms from the sample: ``D R D``. With
every row in the sample and one score a bin it is the exact resolution's interval; measured
coverage 93-97% (``bench/interval_coverage.py``).

Precision, recall and F1 of multilabel streams need the same per-sample view (labels of one
sample are correlated): in the exact resolution each sample's influence is summed over its labels
(``average_prf_intervals``), with the per-label influences below written per label's 2x2 cells;
micro pools the labels' counts. Binned multilabel states keep per-label counts only: no ``ci95``.

Precision, recall and F1 (multiclass and binary). The confusion matrix is multinomial: sample
``k`` lands in cell ``(i, j)`` (true, predicted). Per class, with ``R_c`` and ``C_c`` the row and
column shares of the weight and ``t_c`` the diagonal share, the influence of a sample in cell
``(i, j)`` is

    precision_c: [j = c] ([i = c] - precision_c) / C_c
    recall_c:    [i = c] ([j = c] - recall_c) / R_c
    F1_c:        (2 [i = j = c] - F1_c ([i = c] + [j = c])) / (R_c + C_c)

(0 for a class whose value is a zero division). The macro influence is the mean over the classes
sklearn averages, and ``Var = sum_ij pi_ij phi_ij**2 / n`` with ``pi`` the weighted cell shares
and ``n`` the number of samples (the counts do not keep squared weights). Micro precision, recall
and F1 of a multiclass or binary stream are the accuracy, a proportion of samples: Wilson, as
per-class precision and recall.

Every interval is symmetric on the logit scale (``logit_interval``), so it stays in [0, 1].
"""

from __future__ import annotations

import numpy as np

from .confusion import wilson
from .within import Slopes, pair_share

__all__ = [
    "auc_influence",
    "influence_of_counts",
    "logit_interval",
    "average_auc_intervals",
    "sampled_average_auc_intervals",
    "sampled_average_auc_variances",
    "average_prf_intervals",
    "macro_prf_intervals",
    "macro_prf_variances",
    "micro_prf_interval",
]

_Z95 = 1.959963984540054


def auc_influence(
    scores: np.ndarray, positive: np.ndarray, weights: np.ndarray
) -> tuple[float, np.ndarray]:
    """AUC and per-item influence ``psi`` of one binary problem (1-D arrays of equal length).

    Returns ``(nan, zeros)`` without positive or without negative weight."""
    w = np.asarray(weights, dtype=np.float64)
    uniq, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=np.where(positive, w, 0.0), minlength=uniq.size)
    neg = np.bincount(inverse, weights=np.where(positive, 0.0, w), minlength=uniq.size)
    return influence_of_counts(pos, neg, inverse, positive)


def influence_of_counts(
    pos: np.ndarray, neg: np.ndarray, index: np.ndarray, positive: np.ndarray
) -> tuple[float, np.ndarray]:
    """``auc_influence`` from the problem's counts per distinct value (ascending), each item's
    value ``index`` and whether it is a positive."""
    P, N = float(pos.sum()), float(neg.sum())
    if P <= 0 or N <= 0:
        return float("nan"), np.zeros(len(index))
    v10 = (np.cumsum(neg) - 0.5 * neg) / N  # negatives below, ties one half
    v01 = (P - np.cumsum(pos) + 0.5 * pos) / P  # positives above, ties one half
    A = float(pos @ v10) / P
    psi = np.where(positive, (v10[index] - A) / P, (v01[index] - A) / N)
    return A, psi


def _half_width(phi: np.ndarray, weights: np.ndarray) -> float:
    return _Z95 * float(np.sqrt(np.sum((weights * phi) ** 2)))


def logit_interval(value: np.ndarray, se: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of values in [0, 1] with standard errors ``se``, symmetric on the logit
    scale (delta method: the logit's standard error is ``se / (v (1 - v))``), so it stays inside
    [0, 1] and widens towards the near bound. Near 1 (a good classifier's AUC of a rare class)
    the plain ``value +- 1.96 se`` covered 0.85-0.91 in simulation where this covered 0.91-0.94.
    Values of exactly 0 or 1 get the plain interval, clipped; NaN stays NaN."""
    v = np.asarray(value, dtype=np.float64)
    se = np.asarray(se, dtype=np.float64)
    inside = (v > 0) & (v < 1)
    safe = np.where(inside, v, 0.5)
    centre = np.log(safe / (1 - safe))
    half = _Z95 * se / (safe * (1 - safe))
    with np.errstate(over="ignore"):
        low = 1 / (1 + np.exp(half - centre))
        high = 1 / (1 + np.exp(-centre - half))
    low = np.where(inside, low, np.clip(v - _Z95 * se, 0.0, 1.0))
    high = np.where(inside, high, np.clip(v + _Z95 * se, 0.0, 1.0))
    return low, high


def _interval(value: float, half: float) -> list[float]:
    """The logit-scale interval of ``value`` whose normal half-width is ``half``."""
    low, high = logit_interval(np.array(value), np.array(half / _Z95))
    return [float(low), float(high)]


def average_auc_intervals(
    onehot: np.ndarray,
    weights: np.ndarray,
    columns: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    micro: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> dict[str, list[float] | None]:
    """ci95 of the macro, weighted and micro one-vs-rest ROC AUC from per-sample data.

    ``onehot`` (n, C) bool: sample ``k`` is a positive of column ``c``; ``weights`` (n,);
    ``columns``: per column ``(pos, neg, index)``, the counts per distinct score and each
    sample's score index; ``micro``: the same for the (sample, column) items, sample-major.
    A ``None`` interval where the average is undefined."""
    n, C = onehot.shape
    w = np.asarray(weights, dtype=np.float64)
    values = np.full(C, np.nan)
    psi = np.zeros((n, C))
    for c, (pos, neg, index) in enumerate(columns):
        values[c], psi[:, c] = influence_of_counts(pos, neg, index, onehot[:, c])
    defined = ~np.isnan(values)
    out: dict[str, list[float] | None] = {"macro": None, "weighted": None, "micro": None}
    if defined.any():
        macro = float(values[defined].mean())
        out["macro"] = _interval(macro, _half_width(psi[:, defined].mean(axis=1), w))
        support = w @ onehot[:, defined]
        S = float(support.sum())
        if S > 0:
            share = support / S
            A_w = float(share @ values[defined])
            phi = psi[:, defined] @ share + onehot[:, defined] @ (values[defined] - A_w) / S
            out["weighted"] = _interval(A_w, _half_width(phi, w))
    A_micro, psi_micro = influence_of_counts(*micro, onehot.ravel())
    if not np.isnan(A_micro):
        out["micro"] = _interval(A_micro, _half_width(psi_micro.reshape(n, C).sum(axis=1), w))
    return out


def _bin_placements(
    pos: np.ndarray, neg: np.ndarray, slope: Slopes | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of (R, B) bin counts: ``v10``, ``v01`` per bin, the AUC, ``P`` and ``N`` (NaN
    AUC where a row lacks positives or negatives). Same-bin pairs count as in
    ``ranking.auc_stats`` (``within.pair_share``; 1/2 without ``slope``)."""
    P, N = pos.sum(axis=1), neg.sum(axis=1)
    ok = (P > 0) & (N > 0)
    Ps, Ns = np.where(ok, P, 1.0)[:, None], np.where(ok, N, 1.0)[:, None]
    share = pair_share(slope, pos.shape)
    v10 = (np.cumsum(neg, axis=1) - (1.0 - share) * neg) / Ns
    v01 = (P[:, None] - np.cumsum(pos, axis=1) + share * pos) / Ps
    A = np.where(ok, np.einsum("rb,rb->r", pos, v10) / Ps[:, 0], np.nan)
    return v10, v01, A, P, N


def _psi_of_bins(
    v10: np.ndarray, v01: np.ndarray, A: np.ndarray, P: np.ndarray, N: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The influence ``psi`` of a positive and of a negative in each bin, (R, B) each (0 on
    undefined rows)."""
    ok = ~np.isnan(A)
    A0 = np.where(ok, A, 0.0)[:, None]
    Ps, Ns = np.where(ok, P, 1.0)[:, None], np.where(ok, N, 1.0)[:, None]
    return (
        np.where(ok[:, None], (v10 - A0) / Ps, 0.0),
        np.where(ok[:, None], (v01 - A0) / Ns, 0.0),
    )


def sampled_average_auc_variances(
    pos: np.ndarray,
    neg: np.ndarray,
    onehot: np.ndarray,
    index: np.ndarray,
    wsq: np.ndarray,
    unit: float,
    slope: Slopes | None = None,
    micro_slope: Slopes | None = None,
) -> dict[str, tuple[float, float]]:
    """The macro, weighted and micro one-vs-rest ROC AUC of a binned state and the variances of
    their estimates: ``{"macro": (value, variance), "weighted": .., "micro": ..}``, ``(nan,
    nan)`` where undefined or where the rows cannot give the correlations.

    ``pos``, ``neg`` (C, B): each column's positive and negative weight per bin (one bin axis
    for every column); ``onehot``, ``index`` (r, C): the rows' positives and bins, ``wsq`` (r,)
    the squared weight each row stands for: the row sample (``row_sample``), or every row of a
    state that keeps them; ``unit``: the mean weight of a sample; ``slope``, ``micro_slope``:
    the density slopes inside mixed bins of the columns and of the pooled problem
    (``within.slopes``), for the same-bin pairs' share as in ``ranking.auc_stats`` (without
    them each pair counts one half).

    The covariance of the per-sample influences is written ``D R D``. ``D``: each term's
    standard deviation from the histograms, ``Var_c = unit * sum_b (pos_b psi_pos_b**2 +
    neg_b psi_neg_b**2)`` (``sum_k w_k**2 psi_c(k)**2`` exactly for equal weights; for the micro
    average the pooled problem's ``psi`` over column ``c``'s items). ``R``: the correlations of
    the terms across one sample's columns, from the rows (their second moments weighted by
    ``wsq``). The weighted average's class-share term ``sum_c y_c (A_c - A_w) / S`` is not a
    function of one column's bins: its variance is the rows', scaled by the ratio of the
    histograms' to the rows' per-class variances. ``compare.py`` takes the variance of a
    difference of two independent states' averages as the sum of these."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    r, C = index.shape
    nan = (float("nan"), float("nan"))
    out = {"macro": nan, "weighted": nan, "micro": nan}
    if r < 2:
        return out
    u = float(unit) if unit > 0 else 1.0
    cols = np.arange(C)[None, :]
    v10, v01, A, P, N = _bin_placements(pos, neg, slope)
    psi_pos, psi_neg = _psi_of_bins(v10, v01, A, P, N)
    var_cols = u * np.einsum("cb,cb->c", pos, psi_pos**2) + u * np.einsum(
        "cb,cb->c", neg, psi_neg**2
    )
    psi = np.where(onehot, psi_pos[cols, index], psi_neg[cols, index])  # (r, C)
    mv10, mv01, mA, mP, mN = _bin_placements(
        pos.sum(axis=0)[None], neg.sum(axis=0)[None], micro_slope
    )
    mpos, mneg = _psi_of_bins(mv10, mv01, mA, mP, mN)
    var_micro = u * (pos @ mpos[0] ** 2 + neg @ mneg[0] ** 2)  # (C,): column c's items
    psi_micro = np.where(onehot, mpos[0][index], mneg[0][index])
    defined = ~np.isnan(A)
    m = int(defined.sum())
    S = float(P[defined].sum())
    A_w = float(P[defined] @ A[defined]) / S if S > 0 else 0.0
    share_term = onehot[:, defined] @ (A[defined] - A_w) / S if S > 0 else np.zeros(r)
    X = np.concatenate([psi[:, defined], share_term[:, None], psi_micro], axis=1)
    M = X.T @ (X * wsq[:, None])  # the rows' second moments
    sample_var = np.diag(M).copy()
    seen = float(sample_var[:m].sum())
    scale = float(var_cols[defined].sum()) / seen if seen > 0 else 0.0
    var = np.concatenate([var_cols[defined], [scale * sample_var[m]], var_micro])
    sd = np.sqrt(np.maximum(sample_var, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        R = np.where(np.outer(sd, sd) > 0, M / np.outer(sd, sd), 0.0)
    np.fill_diagonal(R, 1.0)  # a term the rows never saw vary: taken as uncorrelated
    D = np.sqrt(np.maximum(var, 0.0))
    cov = R * np.outer(D, D)

    def variance(vector: np.ndarray) -> float:
        return max(float(vector @ cov @ vector), 0.0)

    size = X.shape[1]
    if m > 0 and seen > 0:
        macro = np.zeros(size)
        macro[:m] = 1.0 / m
        out["macro"] = (float(A[defined].mean()), variance(macro))
        if S > 0:
            weighted = np.zeros(size)
            weighted[:m] = P[defined] / S
            weighted[m] = 1.0
            out["weighted"] = (A_w, variance(weighted))
    if not np.isnan(mA[0]) and np.any(sample_var[m + 1 :] > 0):
        micro = np.zeros(size)
        micro[m + 1 :] = 1.0
        out["micro"] = (float(mA[0]), variance(micro))
    return out


def sampled_average_auc_intervals(
    pos: np.ndarray,
    neg: np.ndarray,
    onehot: np.ndarray,
    index: np.ndarray,
    wsq: np.ndarray,
    unit: float,
    slope: Slopes | None = None,
    micro_slope: Slopes | None = None,
) -> dict[str, list[float] | None]:
    """ci95 of the macro, weighted and micro one-vs-rest ROC AUC of a binned state (arguments
    and variances: ``sampled_average_auc_variances``); ``None`` where undefined."""
    out: dict[str, list[float] | None] = {}
    for avg, (value, var) in sampled_average_auc_variances(
        pos, neg, onehot, index, wsq, unit, slope, micro_slope
    ).items():
        out[avg] = None if np.isnan(var) else _interval(value, _Z95 * float(np.sqrt(var)))
    return out


def macro_prf_variances(
    cm: np.ndarray, n_samples: float, averaged: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Macro precision, recall and F1 and their delta-method variances from a (K, K) weighted
    confusion matrix (rows true); ``averaged`` marks the classes the macro average runs over.
    NaN where undefined (no weight, fewer than 2 samples or no class averaged)."""
    cm = np.asarray(cm, dtype=np.float64)
    W = float(cm.sum())
    names = ("precision", "recall", "f1")
    if W <= 0 or n_samples < 2 or not averaged.any():
        return dict.fromkeys(names, (float("nan"), float("nan")))
    K = cm.shape[0]
    pi = cm / W
    R, C, t = pi.sum(axis=1), pi.sum(axis=0), np.diag(pi)
    eye = np.eye(K)
    m = int(averaged.sum())
    out: dict[str, tuple[float, float]] = {}
    for name in names:
        den = {"precision": C, "recall": R, "f1": R + C}[name]
        ok = averaged & (den > 0)  # a zero division is 0 whatever the counts near here: no term
        safe = np.where(ok, den, 1.0)
        value = np.where(ok, (2 * t if name == "f1" else t) / safe, 0.0)
        scale = np.where(ok, 1.0 / safe, 0.0)
        # phi[i, j]: the influence of a sample in cell (i, j) on the sum of the class values
        if name == "precision":  # class j: [j = c] ([i = c] - precision_c) / C_c
            phi = (eye - value[None, :]) * scale[None, :]
        elif name == "recall":  # class i: [i = c] ([j = c] - recall_c) / R_c
            phi = (eye - value[:, None]) * scale[:, None]
        else:  # (2 [i = j = c] - F1_c ([i = c] + [j = c])) / (R_c + C_c), summed over c
            own = value * scale
            phi = 2 * eye * scale[None, :] - own[:, None] - own[None, :]
        phi /= m
        var = float(pi.ravel() @ (phi.ravel() ** 2)) / n_samples
        out[name] = (float(value[averaged].mean()), max(var, 0.0))
    return out


def macro_prf_intervals(
    cm: np.ndarray, n_samples: int, averaged: np.ndarray
) -> dict[str, list[float] | None]:
    """ci95 of macro precision, recall and F1 from a (K, K) weighted confusion matrix (rows
    true), by the delta method; ``averaged`` marks the classes the macro average runs over."""
    out: dict[str, list[float] | None] = {}
    for name, (value, var) in macro_prf_variances(cm, n_samples, averaged).items():
        out[name] = None if np.isnan(var) else _interval(value, _Z95 * np.sqrt(var))
    return out


def micro_prf_interval(cm: np.ndarray, n_samples: int) -> list[float] | None:
    """ci95 of micro precision = recall = F1 of a multiclass or binary stream: the accuracy,
    Wilson on ``n_samples`` (the weighted share of correct samples times the sample count)."""
    W = float(np.asarray(cm).sum())
    if W <= 0 or n_samples <= 0:
        return None
    return wilson(float(np.trace(cm)) / W * n_samples, float(n_samples))


def average_prf_intervals(
    truth: np.ndarray, pred: np.ndarray, weights: np.ndarray
) -> dict[str, dict[str, list[float] | None]]:
    """ci95 of the macro and micro precision, recall and F1 over the columns of per-sample
    (n, C) bool ``truth`` and ``pred`` (every column averaged, as sklearn's multilabel)."""
    y = np.asarray(truth, dtype=np.float64)
    q = np.asarray(pred, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    tp, n_pred, n_true = w @ (y * q), w @ q, w @ y

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)

    def influence(value: np.ndarray, den: np.ndarray, per_sample: np.ndarray) -> np.ndarray:
        return np.where(den > 0, per_sample / np.where(den > 0, den, 1.0), 0.0)

    out: dict[str, dict[str, list[float] | None]] = {}
    if w.sum() <= 0:
        return {m: {"macro": None, "micro": None} for m in ("precision", "recall", "f1")}
    for scope in ("macro", "micro"):
        if scope == "micro":  # one pooled problem
            tp_s, np_s, nt_s = (
                tp.sum(keepdims=True),
                n_pred.sum(keepdims=True),
                n_true.sum(keepdims=True),
            )
        else:
            tp_s, np_s, nt_s = tp, n_pred, n_true
        prec, rec = ratio(tp_s, np_s), ratio(tp_s, nt_s)
        f1 = ratio(2 * tp_s, np_s + nt_s)
        # per-sample influence on each column (micro: the sample's cells summed first)
        terms = {
            "precision": (prec, np_s, q * (y - prec)),
            "recall": (rec, nt_s, y * (q - rec)),
            "f1": (f1, np_s + nt_s, 2 * y * q - f1 * (y + q)),
        }
        for name, (value, den, cell) in terms.items():
            if scope == "micro":
                cell = cell.sum(axis=1, keepdims=True)
            phi = influence(value, den, cell).mean(axis=1)
            ci = _interval(float(value.mean()), _half_width(phi, w))
            out.setdefault(name, {})[scope] = None if (den <= 0).all() else ci
    return out

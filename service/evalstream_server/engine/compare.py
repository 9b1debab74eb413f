"""Changes that are real: a window against a reference, per headline metric, with a test.

``compare(window, reference, relation)`` takes two states of the same stream layout and returns
the difference (window minus reference) of ROC AUC (per class, macro, weighted, micro), recall,
precision and F1 (per class, macro, micro), each with its standard error, a 95% interval, a
two-sided z test against zero and, across classes, Benjamini-Hochberg adjusted p-values
(``q_value``; ``significant`` is ``q_value <= alpha`` for classes and ``p_value <= alpha`` for an
average, one test each). Average precision comes as a difference without a test: the counts give
no variance for it.

Dependence, which decides the variance of a difference:

* ``relation="rest"``: ``reference`` contains ``window`` (the cumulative view, or a longer window
  of the same stream). The two overlap, so the comparison is made against ``reference - window``
  (the rest), which shares no sample with the window: the two estimates are independent.
* ``relation="independent"``: disjoint samples (another period, another stream on other traffic).
* ``relation="paired"``: another model scored on the same traffic (a challenger). The counts keep
  no per-sample pairing, and neither do the row samples (a row's key hashes its scores, which
  differ between the two models, so the two samples hold different rows): the covariance of the
  two models' estimates cannot be estimated, and the variance is that of independent samples.
  Two models' errors on the same samples are usually positively correlated, which makes the
  true variance of the difference smaller: the test is then conservative (it rejects less often
  than ``alpha``); with negatively correlated errors it would not be.

Variances, per side, from the counts (binned or exact states alike; an exact state's scores are
binned with the default layout first):

* per-class AUC: DeLong's variance from the bins (``auc_stats``); each side's values are its
  report's: tie groups (bins that held one value) stepped, the other same-bin pairs shared by
  the density slopes (``within.slopes``), as the report's binned view does;
* macro, weighted and micro AUC: the classes' AUCs are dependent (one sample is a positive of
  one class and a negative of the others, and the K items of the micro average are one sample's
  columns). The variance is the report's (``intervals.sampled_average_auc_variances``, the same
  function that gives the averages' ``ci95``): each term's variance from the bins, the
  correlations across one sample's columns from rows of the state: every row while the state
  keeps them (exact resolution, or small), else its row sample (``row_sample``: 64 rows). For
  ``relation="rest"`` the rest's rows are the reference's less the window's: with both states'
  rows kept, exactly the rest's rows; else the reference's sample less the window's rows, which
  is the rest's own bottom-k sample with fewer rows (a row of the reference's sample that is in
  the window is in the window's sample too). The weighted average's class shares vary too.
  A state with neither (one written before the row sample) falls back to the bounds
  ``|cov(c, d)| <= sd_c sd_d`` (the variance of a weighted mean at most ``(sum_c w_c sd_c)**2``;
  weighted: the shares taken as fixed) and, for micro, K times the pooled DeLong variance:
  conservative;
* recall, precision, F1 per class, macro (multiclass, binary) and micro (multiclass: the
  accuracy): the delta method on the multinomial confusion matrix (``intervals.py``), scaled by
  the number of samples per unit of weight; multilabel macro and micro by the same bounds as AUC.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from .counting import single_valued
from .errors import InvalidInputError, quoted
from .intervals import macro_prf_variances, sampled_average_auc_variances
from .layout import BinLayout
from .ranking import ap_stats, auc_stats
from .row_sample import occupied_index, row_keys
from .spec import StreamSpec, parse_duration
from .state import State
from .views import Moments, moments_of
from .within import Slopes, slopes, with_moments

__all__ = [
    "RELATIONS",
    "benjamini_hochberg",
    "check_request",
    "compare",
    "compare_reference",
    "subtract",
]
CUMULATIVE = "cumulative"  # as engine/stream.py (which imports the report modules)

RELATIONS = ("rest", "independent", "paired")
_Z95 = 1.959963984540054
_ADDITIVE = ("n", "confusion", "label_counts", "hist", "pos", "all")

# The rows that give the correlations across classes: keys (distinct, ascending), positives
# (r, C) bool, bins (r, C) and the summed squared weights (r,) of the rows a key stands for.
Rows = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class _Side:
    """What a comparison reads from one state: per-column positives and all per bin, the
    confusion counts, the number of samples and the weight."""

    def __init__(
        self,
        task: str,
        pos: np.ndarray,
        every: np.ndarray,
        atomic: np.ndarray,
        cm: np.ndarray | None,
        label_counts: np.ndarray | None,
        n: float,
        W: float,
        rows: Rows | None = None,
        span: np.ndarray | None = None,
        moments: Moments | None = None,
    ) -> None:
        self.task, self.pos, self.neg, self.atomic = task, pos, np.maximum(every - pos, 0.0), atomic
        self.cm, self.label_counts, self.n, self.W = cm, label_counts, n, W
        self.rows = rows
        self.span = span  # (2, B) each bin's score interval (within.slopes)
        self.moments = moments  # positions inside the bins (views.moments_of); None: not kept
        self._slopes: tuple[Slopes | None, Slopes | None] | None = None

    def slopes(self) -> tuple[Slopes | None, Slopes | None]:
        """The density slopes inside mixed bins of the columns and of the pooled (micro)
        problem, so that same-bin pairs count as in the report (``ranking.auc_stats``);
        computed once, after ``compare`` has dropped the empty bins."""
        if self._slopes is None:
            pooled = (self.pos.sum(0, keepdims=True), self.neg.sum(0, keepdims=True))
            columns = slopes(self.pos, self.neg, self.atomic, self.span)
            micro = slopes(*pooled, self.atomic, self.span)
            if self.moments is not None:  # as the report's binned view (views.Problem.slope)
                s_pos, s_neg, band = self.moments
                columns = with_moments(columns, self.pos, self.neg, self.atomic, *self.moments)
                micro = with_moments(micro, *pooled, self.atomic, s_pos.sum(0), s_neg.sum(0), band)
            self._slopes = (columns, micro)
        return self._slopes

    @property
    def per_weight(self) -> float:
        """Samples per unit of weight (1 for unweighted streams)."""
        return self.n / self.W if self.W > 0 else 1.0


def _rows(state: State, layout: BinLayout, every_row: bool) -> Rows | None:
    """Every row of ``state`` (``every_row``: it keeps them), else its row sample (None when it
    keeps none), binned with ``layout``; identical rows as one, their squared weights summed."""
    multiclass = state.spec.task == "multiclass"
    if every_row:
        assert state.exact is not None
        labels, scores, weights = state.exact.arrays()
        labels = labels.astype(np.int64) if multiclass else np.asarray(labels, dtype=bool)
        keys, first, inverse = np.unique(
            row_keys(labels, scores), return_index=True, return_inverse=True
        )
        wsq = np.bincount(inverse.ravel(), weights=weights**2, minlength=keys.size)
        C = scores.shape[1]
        labels = labels[first]
        onehot = labels[:, None] == np.arange(C)[None, :] if multiclass else labels
        return keys, onehot, layout.bin_of(scores[first]).astype(np.int64), wsq
    sample = state.sample
    if sample is None or sample.size == 0:
        return None
    onehot, bins, wsq = sample.rows()
    return sample.keys[: sample.size].copy(), onehot, bins, wsq.astype(np.float64)


def _rest_rows(whole: Rows | None, part: Rows | None) -> Rows | None:
    """The rows of ``whole`` less those of ``part`` (contained in ``whole``): by key, the squared
    weights subtracted (a key left with none, up to float32 rounding, goes)."""
    if whole is None or part is None:
        return None
    keys, onehot, bins, wsq = whole
    at = np.minimum(np.searchsorted(part[0], keys), max(part[0].size - 1, 0))
    hit = part[0][at] == keys if part[0].size else np.zeros(keys.size, dtype=bool)
    left = wsq - np.where(hit, part[3][at], 0.0)
    keep = left > 1e-6 * wsq
    return keys[keep], onehot[keep], bins[keep], left[keep]


def _side(state: State, rows: str | None = None) -> _Side:
    """A state's side of a comparison; ``rows``: ``"all"`` (every row, which the state keeps),
    ``"sample"`` (its row sample) or None (no rows)."""
    state = state.as_float()
    spec, c = state.spec, state.counts
    layout = BinLayout(spec.resolution.mantissa_bits if spec.resolution.kind == "bins" else 5)
    atomic = layout.atomic
    if "score_range" in c:  # tie groups: bins that held one value (as the report's views)
        atomic = atomic | single_valued(c["score_range"])
    if "hist" in c:
        K = c["hist"].shape[0]
        idx = np.arange(K)
        pos, every = c["hist"][idx, idx, :], c["hist"].sum(axis=0)
    elif "pos" in c:
        pos, every = c["pos"], c["all"]
    else:  # exact resolution: bin the kept scores with the default layout
        assert state.exact is not None
        labels, scores, weights = state.exact.arrays()
        C, B = scores.shape[1], layout.n_bins
        onehot = labels[:, None] == np.arange(C)[None, :] if spec.task == "multiclass" else labels
        bins = layout.bin_of(scores)
        pos, every = np.zeros((C, B)), np.zeros((C, B))
        for j in range(C):
            every[j] = np.bincount(bins[:, j], weights=weights, minlength=B)
            pos[j] = np.bincount(bins[:, j], weights=weights * onehot[:, j], minlength=B)
    return _Side(
        spec.task,
        np.asarray(pos, dtype=np.float64),
        np.asarray(every, dtype=np.float64),
        atomic,
        c.get("confusion") if spec.task == "multiclass" else None,
        c.get("label_counts"),
        float(c["n"][0]),
        float(c["n"][1]),
        None if rows is None else _rows(state, layout, rows == "all"),
        layout.spans,
        moments_of(state) if spec.resolution.kind == "bins" else None,
    )


def _row_source(state: State, part: State | None = None) -> str | None:
    """Where the correlations of ``state``'s averages come from: every row when it keeps them,
    else its row sample (none for binary: no average). ``part``: a state contained in ``state``
    that will be taken out; its keys come out of the reference's rows, so every row only when
    ``part`` keeps its rows too (a row sample is the bottom of the keys: the part's sample holds
    every part row among the reference's sample, not among all its rows)."""
    if state.spec.task == "binary":
        return None
    keeps = state.exact is not None and (part is None or part.exact is not None)
    return "all" if keeps else "sample"


def subtract(whole: State, part: State) -> _Side:
    """The counts (and rows) of ``whole`` less those of ``part`` (``part`` contained in
    ``whole``)."""
    return _less(_side(whole, _row_source(whole, part)), _side(part, _row_source(part)))


def _less(a: _Side, b: _Side) -> _Side:
    every_a, every_b = a.pos + a.neg, b.pos + b.neg
    return _Side(
        a.task,
        np.maximum(a.pos - b.pos, 0.0),
        np.maximum(every_a - every_b, 0.0),
        a.atomic,
        None if a.cm is None or b.cm is None else np.maximum(a.cm - b.cm, 0.0),
        None
        if a.label_counts is None or b.label_counts is None
        else np.maximum(a.label_counts - b.label_counts, 0.0),
        max(a.n - b.n, 0.0),
        max(a.W - b.W, 0.0),
        _rest_rows(a.rows, b.rows),
        a.span,
        None
        if a.moments is None or b.moments is None
        else (a.moments[0] - b.moments[0], a.moments[1] - b.moments[1], a.moments[2]),
    )


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out[order] = np.minimum(ranked, 1.0)
    return out


def _test(d: float, var: float, alpha: float) -> dict[str, Any]:
    """The leaf of one difference: value, standard error, interval, z, two-sided p."""
    if not (math.isfinite(d) and math.isfinite(var)):
        return {"value": None, "reason": "undefined in the window or the reference"}
    se = math.sqrt(max(var, 0.0))
    out: dict[str, Any] = {"value": d, "se": se, "ci95": [d - _Z95 * se, d + _Z95 * se]}
    if se > 0:
        z = d / se
        out["z"] = z
        out["p_value"] = math.erfc(abs(z) / math.sqrt(2.0))
        out["significant"] = out["p_value"] <= alpha
    else:
        out["reason"] = "no sampling variance (every value at its bound)"
    return out


def _ranking(a: _Side, b: _Side) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    return (
        auc_stats(a.pos, a.neg, a.atomic, a.slopes()[0]),
        auc_stats(b.pos, b.neg, b.atomic, b.slopes()[0]),
    )


def _cells(s: _Side) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class tp, fp, fn (weighted)."""
    if s.cm is not None:
        tp = np.diag(s.cm).astype(np.float64)
        return tp, s.cm.sum(axis=0) - tp, s.cm.sum(axis=1) - tp
    assert s.label_counts is not None
    lc = s.label_counts
    return lc[:, 3].astype(np.float64), lc[:, 1].astype(np.float64), lc[:, 2].astype(np.float64)


def _prf(s: _Side) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-class (value, variance) of recall, precision and F1 (NaN where undefined)."""
    tp, fp, fn = _cells(s)
    k = s.per_weight
    with np.errstate(divide="ignore", invalid="ignore"):
        support, pred, den = tp + fn, tp + fp, 2 * tp + fp + fn
        r = np.where(support > 0, tp / support, np.nan)
        p = np.where(pred > 0, tp / pred, np.nan)
        f = np.where(den > 0, 2 * tp / den, np.nan)
        out = {
            "recall": (r, r * (1 - r) / (support * k)),
            "precision": (p, p * (1 - p) / (pred * k)),
            "f1": (f, (tp * (2 - 2 * f) ** 2 + (fp + fn) * f**2) / (den**2 * k)),
        }
    return out


def _bounded_mean(values: np.ndarray, var: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted mean and the Cauchy-Schwarz bound of its variance over defined entries (for
    states without rows, and multilabel P/R/F1)."""
    ok = ~np.isnan(values) & ~np.isnan(var)
    if not ok.any() or w[ok].sum() <= 0:
        return math.nan, math.nan
    ww = w[ok] / w[ok].sum()
    return float(ww @ values[ok]), float(ww @ np.sqrt(np.maximum(var[ok], 0.0))) ** 2


def _auc_averages(s: _Side, stats: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """(value, variance) of the macro, weighted and micro AUC of one side: the report's
    covariance (``intervals.sampled_average_auc_variances``) from the side's rows; the bounds
    where it has none (or too few to give the correlations)."""
    out: dict[str, tuple[float, float]] = {}
    slope, micro_slope = s.slopes()
    if s.rows is not None:
        _, onehot, index, wsq = s.rows
        unit = s.W / s.n if s.n > 0 else 1.0
        got = sampled_average_auc_variances(
            s.pos, s.neg, onehot, index, wsq, unit, slope, micro_slope
        )
        out = {avg: pair for avg, pair in got.items() if not math.isnan(pair[1])}
    K = s.pos.shape[0]
    if "macro" not in out:
        out["macro"] = _bounded_mean(stats["value"], stats["variance"], np.ones(K))
    if "weighted" not in out:
        out["weighted"] = _bounded_mean(stats["value"], stats["variance"], _support(s))
    if "micro" not in out:
        pooled = auc_stats(
            s.pos.sum(0, keepdims=True), s.neg.sum(0, keepdims=True), s.atomic, micro_slope
        )
        out["micro"] = (float(pooled["value"][0]), K * float(pooled["variance"][0]))
    return out


def _family(
    names: list[str],
    a_vals: np.ndarray,
    a_var: np.ndarray,
    b_vals: np.ndarray,
    b_var: np.ndarray,
    alpha: float,
) -> dict[str, Any]:
    """Per-class leaves of one metric with BH q-values across the classes."""
    leaves = []
    for i in range(len(names)):
        leaf = _test(float(a_vals[i] - b_vals[i]), float(a_var[i] + b_var[i]), alpha)
        if leaf["value"] is not None:
            leaf["window"], leaf["reference"] = float(a_vals[i]), float(b_vals[i])
        leaves.append(leaf)
    q = benjamini_hochberg(np.array([lf.get("p_value", np.nan) for lf in leaves]))
    for leaf, qv in zip(leaves, q, strict=True):
        if not math.isnan(qv):
            leaf["q_value"] = float(qv)
            leaf["significant"] = bool(qv <= alpha)
    return dict(zip(names, leaves, strict=True))


def _average(a: tuple[float, float], b: tuple[float, float], alpha: float) -> dict[str, Any]:
    leaf = _test(a[0] - b[0], a[1] + b[1], alpha)
    if leaf["value"] is not None:
        leaf["window"], leaf["reference"] = a[0], b[0]
    return leaf


def _support(s: _Side) -> np.ndarray:
    return np.asarray(s.pos.sum(axis=1), dtype=np.float64)


def compare(
    window: State,
    reference: State,
    relation: str = "rest",
    alpha: float = 0.05,
    average_precision: bool = True,
) -> dict[str, Any]:
    """The ``compare`` document of ``window`` against ``reference`` (see the module doc).
    ``average_precision=False`` leaves out the AP differences (untested figures the exporter
    does not need; they are the costliest part)."""
    if relation not in RELATIONS:
        raise ValueError(f"relation: expected one of {list(RELATIONS)}, received {relation!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a number in (0, 1), received {alpha!r}")
    spec = window.spec
    if relation == "rest":
        a = _side(window, _row_source(window))
        b = _less(_side(reference, _row_source(reference, window)), a)
    else:
        a, b = _side(window, _row_source(window)), _side(reference, _row_source(reference))
    if a.pos.shape != b.pos.shape:
        raise ValueError(
            f"reference: expected the window's layout {a.pos.shape}, received {b.pos.shape}"
        )
    # bins empty on both sides change no figure: drop them once (most of the layout's bins)
    occupied = np.flatnonzero((a.pos + a.neg + b.pos + b.neg).any(axis=0))
    for side in (a, b):
        side.pos, side.neg = side.pos[:, occupied], side.neg[:, occupied]
        side.atomic = np.asarray(side.atomic)[occupied]
        if side.span is not None:
            side.span = side.span[:, occupied]
        if side.moments is not None:
            s_pos, s_neg, band = side.moments
            side.moments = (s_pos[:, occupied], s_neg[:, occupied], band[occupied])
        if side.rows is not None:
            keys, onehot, bins, wsq = side.rows
            index, keep = occupied_index(occupied, bins)
            side.rows = keys[keep], onehot[keep], index[keep], wsq[keep]
    names = [spec.classes[1]] if spec.task == "binary" else list(spec.classes)
    out: dict[str, Any] = {
        "relation": relation,
        "alpha": alpha,
        "n_samples": {"window": int(round(a.n)), "reference": int(round(b.n))},
        "assumption": {
            "rest": "the reference less the window: disjoint samples, independent estimates",
            "independent": "disjoint samples: independent estimates",
            "paired": (
                "the same traffic scored by two models; variances as for independent samples, "
                "conservative when the two models' errors are positively correlated"
            ),
        }[relation],
    }
    if a.n <= 0 or b.n <= 0:
        out["reason"] = "no samples in the window" if a.n <= 0 else "no samples in the reference"
        return out
    # ROC AUC
    sa, sb = _ranking(a, b)
    auc: dict[str, Any] = {
        "per_class": _family(names, sa["value"], sa["variance"], sb["value"], sb["variance"], alpha)
    }
    if spec.task != "binary":  # the two sides are independent: their variances add
        avg_a, avg_b = _auc_averages(a, sa), _auc_averages(b, sb)
        for avg in ("macro", "weighted", "micro"):
            auc[avg] = _average(avg_a[avg], avg_b[avg], alpha)
    out["roc_auc"] = auc
    if average_precision:  # the difference only
        unit_a = a.W / a.n
        unit_b = b.W / b.n
        pa = ap_stats(a.pos, a.neg, a.atomic, bounds=False, unit=unit_a)["value"]
        pb = ap_stats(b.pos, b.neg, b.atomic, bounds=False, unit=unit_b)["value"]
        why = "no variance of average precision from counts: the difference only, no test"
        ap: dict[str, Any] = {
            "per_class": {
                n: _diff_only(float(pa[i]), float(pb[i]), why) for i, n in enumerate(names)
            }
        }
        if spec.task != "binary":
            ap["macro"] = _diff_only(_nanmean(pa), _nanmean(pb), why)
        out["average_precision"] = ap
    # recall, precision, F1
    prf_a, prf_b = _prf(a), _prf(b)
    pick = slice(1, 2) if spec.task == "binary" and a.cm is not None else slice(None)
    for metric in ("recall", "precision", "f1"):
        (va, wa), (vb, wb) = prf_a[metric], prf_b[metric]
        group: dict[str, Any] = {
            "per_class": _family(names, va[pick], wa[pick], vb[pick], wb[pick], alpha)
        }
        if spec.task != "binary":
            group["macro"] = _average(_macro(a, metric, va, wa), _macro(b, metric, vb, wb), alpha)
            group["micro"] = _average(_micro(a, metric), _micro(b, metric), alpha)
        out[metric] = group
    return out


def _nanmean(x: np.ndarray) -> float:
    ok = ~np.isnan(x)
    return float(x[ok].mean()) if ok.any() else math.nan


def _diff_only(a: float, b: float, why: str) -> dict[str, Any]:
    if not (math.isfinite(a) and math.isfinite(b)):
        return {"value": None, "reason": "undefined in the window or the reference"}
    return {"value": a - b, "window": a, "reference": b, "reason": why}


def _macro(s: _Side, metric: str, v: np.ndarray, var: np.ndarray) -> tuple[float, float]:
    """Macro (value, variance) over the classes defined on this side: the multinomial delta
    method for a confusion matrix, the Cauchy-Schwarz bound for multilabel."""
    if s.cm is not None:
        averaged = (s.cm.sum(axis=0) + s.cm.sum(axis=1)) > 0
        value, variance = macro_prf_variances(s.cm, s.n, averaged)[metric]
        return value, variance
    return _bounded_mean(v, var, np.ones(v.shape))


def _micro(s: _Side, metric: str) -> tuple[float, float]:
    tp, fp, fn = _cells(s)
    if s.cm is not None:  # multiclass: micro precision = recall = F1 = accuracy
        W = float(s.cm.sum())
        if W <= 0 or s.n <= 0:
            return math.nan, math.nan
        acc = float(tp.sum()) / W
        return acc, acc * (1 - acc) / s.n
    T, FP, FN = float(tp.sum()), float(fp.sum()), float(fn.sum())
    K = len(tp)
    one = _Side(s.task, s.pos[:1], s.pos[:1], s.atomic, None, None, s.n, s.W)
    one.label_counts = np.array([[0.0, FP, FN, T]])
    v, var = _prf(one)[metric]
    return float(v[0]), K * float(var[0])  # the pooled labels of a sample: the K bound


def compare_reference(window_names: list[str], window: str) -> str:
    """The reference the exporter compares ``window`` with: the next longer declared window
    (``"5m"`` against the rest of ``"1h"``), the cumulative state for the longest."""
    seconds = parse_duration(window)
    longer = sorted((parse_duration(w), w) for w in window_names if w != CUMULATIVE and w != window)
    for s, name in longer:
        if s > seconds:
            return name
    return CUMULATIVE


def check_request(
    window: str,
    window_spec: StreamSpec,
    reference_window: str,
    reference_spec: StreamSpec,
    same_stream: bool,
    relation: str,
    alpha: float,
) -> tuple[str, float]:
    """Validate a comparison request in the wire's words; returns ``(relation, alpha)`` with
    the defaults filled in (``"rest"`` for the same stream, else ``"independent"``; 0.05).

    The same stream's windows always overlap (each holds the latest samples), so the only
    relation there is ``"rest"``, against a reference that contains the window."""
    relation = relation or ("rest" if same_stream else "independent")
    if relation not in RELATIONS:
        raise InvalidInputError("relation", f"one of {quoted(RELATIONS)}", json.dumps(relation))
    if same_stream and relation != "rest":
        raise InvalidInputError(
            "relation",
            '"rest" for two windows of the same stream (they overlap)',
            json.dumps(relation),
        )
    if not same_stream and relation == "rest":
        raise InvalidInputError(
            "relation", '"independent" or "paired" for another stream', '"rest"'
        )
    alpha = alpha or 0.05
    if not (0.0 < alpha < 1.0):
        raise InvalidInputError("alpha", "a number in (0, 1), or 0 for 0.05", repr(alpha))
    if same_stream:
        longer = reference_window == CUMULATIVE or (
            window != CUMULATIVE and parse_duration(reference_window) > parse_duration(window)
        )
        if not longer:
            raise InvalidInputError(
                "reference_window",
                f'"cumulative" or a window longer than {json.dumps(window)} of the same stream',
                json.dumps(reference_window),
            )
    for what, a, b in (
        ("task", window_spec.task, reference_spec.task),
        ("classes", list(window_spec.classes), list(reference_spec.classes)),
    ):
        if a != b:
            raise InvalidInputError(
                "reference_stream", f"a stream with the {what} {json.dumps(a)}", json.dumps(b)
            )
    return relation, alpha

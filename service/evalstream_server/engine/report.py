"""The canonical report: one JSON-ready dict, the contract every interface returns.

Every leaf is ``{"value": float | None, ...}``; undefined values are ``None`` with a ``reason``.
AUC leaves carry guaranteed ``lower``/``upper`` bounds (the exact AUC of the unbinned scores lies
inside), per-class and binary AUC a DeLong ``ci95``; precision and recall a Wilson ``ci95``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from . import confusion as cf
from .counting import single_valued
from .errors import InvalidInputError, quoted
from .estimate_report import estimated_section
from .intervals import (
    average_auc_intervals,
    average_prf_intervals,
    macro_prf_intervals,
    micro_prf_interval,
    sampled_average_auc_intervals,
)
from .labelfree import label_free_section, labels_section, predicted_prevalence
from .layout import BinLayout
from .ranking import ap_stats, auc_stats, pr_points, roc_points, thin_indices
from .state import State, small_rows, window_rows
from .thresholds import ThresholdGoals, thresholds_section
from .views import Problem, ScoreView, view_of

__all__ = ["build_report", "curve", "REPORT_VERSION"]

Leaf = dict[str, Any]  # {"value": ..., "reason"?: ..., ...}
Stats = dict[str, np.ndarray]  # per-problem arrays of a ranking metric (value, bounds, P, N)
REPORT_VERSION = 2  # 2: label_free and labels sections; predictions awaiting labels count
_BOUND_SLACK = 1e-12  # float rounding: keep the guaranteed bounds guaranteed


def _num(x: float | int | np.floating | None) -> float | int | None:
    if x is None:
        return None
    if isinstance(x, int | np.integer) and not isinstance(x, bool):
        return int(x)
    x = float(x)
    return None if math.isnan(x) else x


def _leaf(
    value: float | None, reason: str | None = None, note: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A report leaf. ``reason`` explains a ``None`` value; ``note`` qualifies a defined one."""
    out: dict[str, Any] = {"value": _num(value)}
    if out["value"] is None:
        out["reason"] = reason or "undefined"
    elif note:
        out["reason"] = note
    for k, v in extra.items():
        if v is not None:
            out[k] = v
    return out


def _whole(x: float) -> float | int:
    return int(round(x)) if float(x).is_integer() else float(x)


def _stack(problems: list[Problem], fn: Callable[[Problem], Stats]) -> Stats:
    parts = [fn(p) for p in problems]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# -- ranking groups --------------------------------------------------------------------------
def _rank_leaf(stats: Stats, i: int, with_ci: bool, reason: str) -> Leaf:
    v = _num(stats["value"][i])
    if v is None:
        return _leaf(None, reason)
    extra: dict[str, Any] = {}
    if "lower" in stats:
        extra["lower"] = max(0.0, float(stats["lower"][i]) - _BOUND_SLACK)
        extra["upper"] = min(1.0, float(stats["upper"][i]) + _BOUND_SLACK)
    if with_ci and "ci_low" in stats and not math.isnan(stats["ci_low"][i]):
        extra["ci95"] = [float(stats["ci_low"][i]), float(stats["ci_high"][i])]
    return _leaf(v, **extra)


def _average_leaf(stats: Stats, weights: np.ndarray, names: list[str], what: str) -> Leaf:
    value = stats["value"]
    defined = ~np.isnan(value)
    n_defined, n_total = int(defined.sum()), len(names)
    w = np.where(defined, weights, 0.0)
    if n_defined == 0 or w.sum() <= 0:
        return _leaf(None, f"no {what} is defined in this window", n_defined=0, n_classes=n_total)
    w = w / w.sum()
    bounds: dict[str, float] = {}
    if "lower" in stats:
        bounds["lower"] = max(0.0, float(np.nansum(stats["lower"] * w)) - _BOUND_SLACK)
        bounds["upper"] = min(1.0, float(np.nansum(stats["upper"] * w)) + _BOUND_SLACK)
    out = _leaf(float(np.nansum(value * w)), n_defined=n_defined, n_classes=n_total, **bounds)  # type: ignore[arg-type]
    if n_defined < n_total:
        missing = [names[i] for i in np.flatnonzero(~defined)][:20]
        out["reason"] = f"averaged over {n_defined} of {n_total} {what}s; undefined: {missing}"
    return out


def _no_weight(state: State) -> str:
    """Why a figure divided by the window's weight is null: no samples, or only weight 0."""
    if state.n_samples > 0:
        return "every sample in this window has weight 0"
    return "no samples in this window"


def _undefined_reason(P: float, N: float) -> str:
    if P <= 0 and N <= 0:
        return "no samples of positive weight in this window"
    if P <= 0:
        return "no positive samples in this window"
    return "no negative samples in this window"


def _per_class_rank(stats: Stats, names: list[str], with_ci: bool) -> dict[str, Leaf]:
    return {
        name: _rank_leaf(
            stats,
            i,
            with_ci,
            _undefined_reason(stats["P"][i], stats.get("N", np.ones_like(stats["P"]))[i]),
        )
        for i, name in enumerate(names)
    }


def _ovo(view: ScoreView, K: int, names: list[str], support: np.ndarray) -> dict[str, Leaf]:
    if not view.has_ovo:
        reason = (
            "one-vs-one needs the full (class, column, bin) state; this stream has more "
            "classes than ovo_class_limit and keeps one-vs-rest state only"
        )
        return {"ovo_macro": _leaf(None, reason), "ovo_weighted": _leaf(None, reason)}
    pairs = [(i, j) for i in range(K) for j in range(i + 1, K)]
    mat = view.ovo_matrix(K)
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    m = len(pairs)
    pair = {k: 0.5 * (mat[k][a, b] + mat[k][b, a]) for k in ("value", "lower", "upper")}
    weights = np.array([support[i] + support[j] for i, j in pairs], dtype=np.float64)
    labels = [f"{names[i]}|{names[j]}" for i, j in pairs]
    macro = _average_leaf(pair, np.ones(m), labels, "class pair")
    weighted = _average_leaf(pair, weights, labels, "class pair")
    return {"ovo_macro": macro, "ovo_weighted": weighted}


def _ranking_groups(
    state: State, view: ScoreView, names: list[str], support: np.ndarray, intervals: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = state.spec
    # the mean weight of a sample: AP's within-bin estimate counts in these units
    unit = state.weight_total / state.n_samples if state.n_samples > 0 else 1.0

    def auc_of(p: Problem) -> Stats:
        return auc_stats(p.pos, p.neg, p.atomic, p.slope)

    def ap_of(p: Problem) -> Stats:
        return ap_stats(p.pos, p.neg, p.atomic, bounds=intervals, unit=unit, slope=p.slope)

    ovr_auc = _stack(view.ovr(), auc_of)
    ovr_ap = _stack(view.ovr(), ap_of)
    micro = view.micro()
    micro_auc = auc_of(micro)
    micro_ap = ap_of(micro)
    ovr_ap["N"] = ovr_auc["N"]
    micro_ap["N"] = micro_auc["N"]
    if spec.task == "binary":
        return (
            {
                "binary": _rank_leaf(
                    ovr_auc, 0, True, _undefined_reason(ovr_auc["P"][0], ovr_auc["N"][0])
                )
            },
            {
                "binary": _rank_leaf(
                    ovr_ap, 0, False, _undefined_reason(ovr_ap["P"][0], ovr_ap["N"][0])
                )
            },
        )
    auc: dict[str, Any] = {"per_class": _per_class_rank(ovr_auc, names, True)}
    ap: dict[str, Any] = {"per_class": _per_class_rank(ovr_ap, names, False)}
    ones = np.ones(len(names))
    what = "class" if spec.task == "multiclass" else "label"
    auc["macro"] = _average_leaf(ovr_auc, ones, names, what)
    auc["weighted"] = _average_leaf(ovr_auc, support, names, what)
    auc["micro"] = _rank_leaf(
        micro_auc, 0, False, _undefined_reason(micro_auc["P"][0], micro_auc["N"][0])
    )
    ap["macro"] = _average_leaf(ovr_ap, ones, names, what)
    ap["weighted"] = _average_leaf(ovr_ap, support, names, what)
    ap["micro"] = _rank_leaf(
        micro_ap, 0, False, _undefined_reason(micro_ap["P"][0], micro_ap["N"][0])
    )
    placed = view.placements() if intervals else None
    if placed is not None:  # cross-class covariances need each sample's columns (intervals.py)
        onehot, _, weights = view.per_sample() or (None, None, None)
        assert onehot is not None and weights is not None
        ovr, (micro_problem, micro_index) = placed
        columns = [(p.pos[0], p.neg[0], index) for p, index in ovr]
        micro_counts = (micro_problem.pos[0], micro_problem.neg[0], micro_index)
        for avg, ci in average_auc_intervals(onehot, weights, columns, micro_counts).items():
            if ci is not None and auc[avg]["value"] is not None:
                auc[avg]["ci95"] = ci
    sampled = view.sampled_rows() if intervals else None
    if sampled is not None:  # binned: the covariances across classes from the row sample
        (problem,) = view.ovr()
        for avg, ci in sampled_average_auc_intervals(
            problem.pos, problem.neg, *sampled, unit, problem.slope, micro.slope
        ).items():
            if ci is not None and auc[avg]["value"] is not None:
                auc[avg]["ci95"] = ci
    if spec.task == "multiclass":
        auc.update(_ovo(view, len(names), names, support))
    else:
        auc["samples"] = _samples_auc(state)
        ap["samples"] = _samples_ap(state)
    return auc, ap


def _samples_auc(state: State) -> Leaf:
    """Mean per-sample ROC AUC over the samples whose labels are not all equal (sklearn's AUC of
    such a sample is nan, and so is its mean)."""
    total, weight = state.counts["samples_auc"]
    if weight <= 0:
        return _leaf(None, "no sample has both positive and negative labels")
    note = None
    if weight < state.weight_total:
        note = "averaged over samples whose labels are not all equal"
    return _leaf(total / weight, note=note, weight_defined=_whole(weight))


def _samples_ap(state: State) -> Leaf:
    """sklearn's ``average_precision_score(average="samples")``: the weighted mean of every
    sample's own AP, a sample without a positive label scoring 0."""
    total, weight = state.counts["samples_ap"]
    W = state.weight_total
    if W <= 0:
        return _leaf(None, _no_weight(state))
    note = None
    if weight < W:
        note = "samples without a positive label score 0, as sklearn"
    return _leaf(total / W, note=note, weight_with_positive=_whole(weight))


# -- threshold groups ------------------------------------------------------------------------
def _prf_groups(
    tp: np.ndarray,
    fp: np.ndarray,
    fn: np.ndarray,
    names: list[str],
    averages_over: np.ndarray,
    intervals: bool = True,
    n_samples: int = 1,
    average_ci: dict[str, dict[str, list[float] | None]] | None = None,
) -> dict[str, dict[str, Any]]:
    """precision / recall / f1 groups with per-class, macro, weighted and micro leaves.

    ``averages_over`` marks the classes sklearn's macro/weighted include (its ``labels``);
    without samples (sklearn raises) the averages are null. ``average_ci`` holds the ``ci95``
    of the macro and micro averages by metric (``_average_prf_ci``)."""
    prf = cf.prf_from_counts(tp, fp, fn)
    average_ci = average_ci or {}
    support = tp + fn
    out: dict[str, dict[str, Any]] = {}
    for metric in ("precision", "recall", "f1"):
        per_class: dict[str, Leaf] = {}
        for i, name in enumerate(names):
            if not averages_over[i]:
                per_class[name] = _leaf(None, "class absent from labels and predictions")
                continue
            zd = bool(prf[f"{metric}_zero_division"][i])
            if not intervals:
                ci = None
            elif metric == "precision":
                ci = cf.wilson(tp[i], tp[i] + fp[i])
            elif metric == "recall":
                ci = cf.wilson(tp[i], tp[i] + fn[i])
            else:
                ci = cf.f1_interval(tp[i], fp[i], fn[i])
            reason = None
            if zd:
                reason = {
                    "precision": "no predicted samples of positive weight",
                    "recall": "no true samples of positive weight",
                    "f1": "no true and no predicted samples of positive weight",
                }[metric]
                reason += "; zero_division=0 as sklearn"
            per_class[name] = _leaf(
                float(prf[metric][i]), note=reason, ci95=ci, zero_division=True if zd else None
            )
        values = prf[metric][averages_over]
        group: dict[str, Any] = {"per_class": per_class}
        if values.size and n_samples > 0:
            group["macro"] = _leaf(
                float(values.mean()),
                n_classes=int(values.size),
                ci95=average_ci.get(metric, {}).get("macro"),
            )
            sw = support[averages_over]
            group["weighted"] = _leaf(
                float((values * sw).sum() / sw.sum()) if sw.sum() > 0 else 0.0,
                note=None if sw.sum() > 0 else "no true samples; zero_division=0 as sklearn",
            )
        else:
            group["macro"] = _leaf(None, "no samples in this window")
            group["weighted"] = _leaf(None, "no samples in this window")
        TP, FP, FN = tp[averages_over].sum(), fp[averages_over].sum(), fn[averages_over].sum()
        micro = cf.prf_from_counts(np.array([TP]), np.array([FP]), np.array([FN]))
        if not values.size or n_samples <= 0:
            group["micro"] = _leaf(None, "no samples in this window")
        elif micro[f"{metric}_zero_division"][0]:
            what = {
                "precision": "no positive predictions",
                "recall": "no positive labels",
                "f1": "no positive labels and no positive predictions",
            }[metric]
            group["micro"] = _leaf(
                0.0,
                note=f"{what} of positive weight in any class; zero_division=0 as sklearn",
                zero_division=True,
            )
        else:
            group["micro"] = _leaf(
                float(micro[metric][0]), ci95=average_ci.get(metric, {}).get("micro")
            )
        out[metric] = group
    return out


def _average_prf_ci(
    state: State, view: ScoreView, cm: np.ndarray | None, averaged: np.ndarray, intervals: bool
) -> dict[str, dict[str, list[float] | None]]:
    """ci95 of macro and micro precision, recall and F1: from the confusion matrix (multiclass,
    binary) or from per-sample labels and predictions (multilabel, exact resolution only)."""
    if not intervals:
        return {}
    if cm is not None:
        macro = macro_prf_intervals(cm, state.n_samples, averaged)
        micro = micro_prf_interval(cm, state.n_samples)
        return {m: {"macro": macro[m], "micro": micro} for m in macro}
    samples = view.per_sample()
    if samples is None:
        return {}
    truth, scores, weights = samples
    pred = scores >= np.asarray(state.spec.thresholds, dtype=np.float32)
    return average_prf_intervals(truth, pred, weights)


def _multilabel_cm(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray
) -> list[list[list[float | int]]]:
    return [
        [[_whole(tn[i]), _whole(fp[i])], [_whole(fn[i]), _whole(tp[i])]] for i in range(len(tp))
    ]


def _calibration(state: State) -> Leaf:
    cal = state.counts["calibration"]
    W = cal[0].sum()
    if W <= 0:
        return _leaf(None, _no_weight(state))
    kind = "top-label" if state.spec.task == "multiclass" else "positive-probability"
    return _leaf(
        float(np.abs(cal[2] - cal[1]).sum() / W), n_bins=int(cal.shape[1]), definition=kind
    )


def _reliability(state: State) -> dict[str, Any]:
    """The reliability diagram's numbers: per equal-width confidence bin the weight, the mean
    confidence and the observed hit rate (null in an empty bin); their weighted gap is the ECE."""
    cal = state.counts["calibration"]
    nb = int(cal.shape[1])
    w = cal[0]
    filled = w > 0
    safe = np.where(filled, w, 1.0)
    return {
        "definition": "top-label" if state.spec.task == "multiclass" else "positive-probability",
        "edges": [i / nb for i in range(nb + 1)],
        "weights": [_whole(v) for v in w.tolist()],
        "confidence": [_num(v) if f else None for v, f in zip(cal[1] / safe, filled, strict=True)],
        "observed": [_num(v) if f else None for v, f in zip(cal[2] / safe, filled, strict=True)],
    }


def _imbalance(
    state: State, support: np.ndarray, names: list[str], W: float, auc: dict[str, Any]
) -> dict[str, Any]:
    with np.errstate(divide="ignore", invalid="ignore"):
        prevalence = support / W if W > 0 else np.full(len(names), np.nan)
    empty = _no_weight(state)
    out: dict[str, Any] = {
        "support": {n: _leaf(_whole(support[i])) for i, n in enumerate(names)},
        "prevalence": {n: _leaf(prevalence[i], empty) for i, n in enumerate(names)},
        # every prediction of the window, labelled or still awaiting its label
        "predicted_prevalence": predicted_prevalence(state),
    }
    if W <= 0:
        out["imbalance_ratio"] = _leaf(None, empty)
    elif support.min() <= 0:
        absent = [names[i] for i in np.flatnonzero(support <= 0)][:20]
        out["imbalance_ratio"] = _leaf(
            None, f"classes with no samples of positive weight in this window: {absent}"
        )
    else:
        out["imbalance_ratio"] = _leaf(float(support.max() / support.min()))
    micro = auc.get("micro", {}).get("value")
    macro = auc.get("macro", {}).get("value")
    if micro is None or macro is None:
        out["micro_macro_auc_gap"] = _leaf(
            None,
            "needs both micro and macro ROC AUC"
            if "micro" in auc
            else "binary streams have one AUC",
        )
    else:
        out["micro_macro_auc_gap"] = _leaf(micro - macro)
    return out


def _cells(cm: np.ndarray, W: float, zero_weight_seen: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-class support, predicted count, tp, fp, fn, tn, and which classes sklearn's default
    ``labels`` would include: present in the labels or the predictions, whatever their weights
    (``zero_weight_seen`` counts the samples of weight 0 by true and by predicted class)."""
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).copy()
    fp, fn = predicted - tp, support - tp
    tn = W - tp - fp - fn
    present = (support > 0) | (predicted > 0) | (zero_weight_seen > 0).any(axis=0)
    return support, predicted, tp, fp, fn, tn, present


def _confusion_scalars(cm: np.ndarray, W: float, empty: str) -> dict[str, dict[str, Any]]:
    """Accuracy, balanced accuracy, MCC, Cohen's kappa and Hamming loss of a confusion matrix
    (``empty``: the reason of the figures that divide by ``W`` when it is 0)."""
    acc = float(np.trace(cm) / W) if W > 0 else None
    return {
        "accuracy": _leaf(acc, empty),
        "balanced_accuracy": _leaf(cf.balanced_accuracy(cm), empty),
        "matthews_corrcoef": _leaf(
            cf.mcc(cm), "undefined: labels or predictions hold a single class (sklearn returns 0.0)"
        ),
        "cohen_kappa": _leaf(cf.cohen_kappa(cm), "undefined: expected disagreement is 0"),
        "hamming_loss": _leaf(1 - acc if acc is not None else None, empty),
    }


def build_report(
    state: State,
    window: str = "cumulative",
    curves: bool = False,
    max_points: int = 200,
    intervals: bool = True,
    reference: State | None = None,
    labels: dict[str, Any] | None = None,
    threshold_goals: ThresholdGoals | None = None,
) -> dict[str, Any]:
    """The canonical report of ``state`` (see the README for the schema).

    ``reference`` is the state of the stream's prior reference window (``label_free.prior_shift``
    measures against it; None when ``state`` is that window). ``labels`` is the stream's join
    table status (``StreamEngine.label_status``), reported under ``labels.stream``.

    ``intervals=False`` leaves out the AP bounds and the Wilson intervals (every value is the
    same): the Prometheus exporter exports values only and saves that work on every scrape."""
    state = state.as_float()
    spec = state.spec
    c = state.counts
    names = list(spec.classes)
    W = state.weight_total
    view = view_of(state)
    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "stream": spec.name,
        "task": spec.task,
        "classes": names,
        "window": window,
        "n_samples": state.n_samples,
        "weight_total": W,
        "resolution": _resolution_info(state, window),
    }
    na = "not defined for {} streams"
    if spec.task == "multiclass":
        cm = c["confusion"]
        support, predicted, tp, fp, fn, tn, present = _cells(cm, W, c["zero_weight_seen"])
        auc, ap = _ranking_groups(state, view, names, support, intervals)
        report.update(
            _prf_groups(
                tp,
                fp,
                fn,
                names,
                present,
                intervals,
                state.n_samples,
                _average_prf_ci(state, view, cm, present, intervals),
            )
        )
        report.update(_confusion_scalars(cm, W, _no_weight(state)))
        # rank counts order tied scores as sklearn's top_k_accuracy_score (the higher class
        # index first), so "1" can differ from accuracy (argmax: the lower index) on ties
        rank_cum = np.cumsum(c["rank"])
        report["top_k_accuracy"] = {
            str(k): _leaf(float(rank_cum[k - 1] / W) if W > 0 else None, _no_weight(state))
            for k in range(1, spec.k_max + 1)
        }
        report["log_loss"] = _leaf(c["log_loss"][0] / W if W > 0 else None, _no_weight(state))
        scale = 0.5 if len(names) < 3 else 1.0
        report["brier_score"] = _leaf(
            scale * c["brier"][0] / W if W > 0 else None, _no_weight(state)
        )
        report["confusion_matrix"] = [[_whole(v) for v in row] for row in cm]
        report["imbalance"] = _imbalance(state, support, names, W, auc)
    else:
        lc = c["label_counts"]
        tn_l, fp_l, fn_l, tp_l = lc[:, 0], lc[:, 1], lc[:, 2], lc[:, 3]
        if spec.task == "binary":
            cm = np.array([[tn_l[0], fp_l[0]], [fn_l[0], tp_l[0]]])
            support, predicted, tp, fp, fn, tn, present = _cells(cm, W, c["zero_weight_seen"])
            auc, ap = _ranking_groups(state, view, names, support, intervals)
            groups = _prf_groups(
                tp,
                fp,
                fn,
                names,
                present,
                intervals,
                state.n_samples,
                _average_prf_ci(state, view, cm, present, intervals),
            )
            pos = names[1]
            for metric, group in groups.items():
                leaf = dict(group["per_class"][pos])
                if leaf["value"] is None:  # sklearn's binary average always reports the class
                    z = cf.prf_from_counts(tp[1:], fp[1:], fn[1:])[metric][0]
                    leaf = _leaf(
                        float(z),
                        note="no true and no predicted positives; zero_division=0 as sklearn",
                    )
                group["binary"] = leaf
            report.update(groups)
            report.update(_confusion_scalars(cm, W, _no_weight(state)))
            report["top_k_accuracy"] = {}
            report["log_loss"] = _leaf(c["log_loss"][0] / W if W > 0 else None, _no_weight(state))
            report["brier_score"] = _leaf(c["brier"][0] / W if W > 0 else None, _no_weight(state))
            report["confusion_matrix"] = [[_whole(v) for v in row] for row in cm]
            report["imbalance"] = _imbalance(state, support, names, W, auc)
        else:
            support = tp_l + fn_l
            tp, fp, fn, tn = tp_l, fp_l, fn_l, tn_l
            auc, ap = _ranking_groups(state, view, names, support, intervals)
            every = np.ones(len(names), dtype=bool)
            groups = _prf_groups(
                tp,
                fp,
                fn,
                names,
                every,
                intervals,
                state.n_samples,
                _average_prf_ci(state, view, None, every, intervals),
            )
            prf = c["samples_prf"]
            for i, metric in enumerate(("precision", "recall", "f1")):
                groups[metric]["samples"] = _leaf(prf[i] / W if W > 0 else None, _no_weight(state))
            report.update(groups)
            report["accuracy"] = _leaf(
                prf[3] / W if W > 0 else None,
                _no_weight(state),
                definition="subset accuracy",
            )
            for key in ("balanced_accuracy", "matthews_corrcoef", "cohen_kappa"):
                report[key] = _leaf(None, na.format("multilabel") + " (sklearn raises)")
            report["hamming_loss"] = _leaf(
                prf[4] / (W * len(names)) if W > 0 else None, _no_weight(state)
            )
            report["top_k_accuracy"] = {}
            for key in ("log_loss", "brier_score"):
                report[key] = _leaf(
                    None,
                    na.format("multilabel") + "; see per-label AUC and expected_calibration_error",
                )
            report["confusion_matrix"] = None
            report["imbalance"] = _imbalance(state, support, names, W, auc)
        if spec.task == "binary":  # one 2x2 per class, as sklearn's (2, 2, 2)
            report["multilabel_confusion_matrix"] = _multilabel_cm(tp, fp, fn, tn)
        else:
            report["multilabel_confusion_matrix"] = _multilabel_cm(tp_l, fp_l, fn_l, tn_l)
    if spec.task == "multiclass":
        report["multilabel_confusion_matrix"] = _multilabel_cm(tp, fp, fn, tn)
    report["support"] = {
        "per_class": report["imbalance"]["support"],
        "total": _leaf(_whole(W)),
    }
    report["roc_auc"] = auc
    report["average_precision"] = ap
    report["expected_calibration_error"] = _calibration(state)
    report["reliability"] = _reliability(state)
    report["label_free"] = label_free_section(
        state, reference, report["imbalance"]["predicted_prevalence"]
    )
    report["labels"] = labels_section(state, labels)
    if intervals:  # the exporter's light report leaves the advice out
        report["thresholds"] = _thresholds(state, view, report, threshold_goals or ThresholdGoals())
    report["estimated"] = estimated_section(state, reference, report, intervals=intervals)
    if curves:
        report["curves"] = _all_curves(state, view, max_points)
    return report


def _thresholds(
    state: State, view: ScoreView, report: dict[str, Any], goals: ThresholdGoals
) -> dict[str, Any]:
    """The ``thresholds`` section (engine/thresholds.py) from the one-vs-rest problems."""
    names = list(state.spec.classes)
    rows = [
        (p.pos[r], p.neg[r], p.edges, np.broadcast_to(p.atomic, p.pos.shape)[r])
        for p in view.ovr()
        for r in range(p.pos.shape[0])
    ]
    binary = state.spec.task == "binary"
    current = report["f1"]["binary" if binary else "macro"]
    return thresholds_section(
        state.spec.task, [names[1]] if binary else names, rows, current, goals
    )


def _resolution_info(state: State, window: str) -> dict[str, Any]:
    r = state.spec.resolution
    if r.kind == "exact":
        return {"kind": "exact", "max_samples": r.max_samples, "exact": True}
    # exact while small: this view's metrics come from its raw rows until it passes its cap (a
    # stream's, or a window ring's: the rows of every bucket it holds)
    cap = small_rows() if window in ("", "cumulative") else window_rows()
    kept = state.exact.n if state.exact is not None else cap
    layout = BinLayout(r.mantissa_bits)
    out: dict[str, Any] = {
        "kind": "bins",
        "mantissa_bits": r.mantissa_bits,
        "n_bins": layout.n_bins,
        "exact": state.is_exact,
        "exact_rows_left": max(cap - kept, 0),
        "exact_cap": cap,
    }
    score_range = state.counts.get("score_range")
    if score_range is not None:
        # Tie groups: occupied bins that hold one score value (atomic in the layout, or one value
        # seen in the cumulative state), stepped exactly as sklearn steps tied scores; the others
        # are estimated within the bin.
        c = state.counts
        hist = c["hist"] if "hist" in c else c["all"]
        occupied = np.asarray(hist.reshape(-1, hist.shape[-1]).any(axis=0))
        single = (layout.atomic | single_valued(score_range)) & occupied
        out["tie_groups"] = {
            "single_valued_bins": int(single.sum()),
            "mixed_bins": int((occupied & ~single).sum()),
        }
    return out


def _problem_rows(state: State, view: ScoreView) -> dict[str, tuple[np.ndarray, ...]]:
    """1-D (pos, neg, edges) per curve target: each class (or the positive class) and micro."""
    names = list(state.spec.classes)
    out: dict[str, tuple[np.ndarray, ...]] = {}
    row = 0
    targets = [names[1]] if state.spec.task == "binary" else names
    for prob in view.ovr():
        for r in range(prob.pos.shape[0]):
            out[targets[row]] = (prob.pos[r], prob.neg[r], prob.edges)
            row += 1
    if state.spec.task != "binary":
        m = view.micro()
        out["micro"] = (m.pos[0], m.neg[0], m.edges)
    return out


def _curve_dict(kind: str, rows: tuple[np.ndarray, ...], max_points: int) -> dict[str, Any]:
    pos, neg, edges = rows
    if kind == "roc":
        x, y, t = roc_points(pos, neg, edges)
        idx = thin_indices(x.size, max_points)
        return {
            "x_name": "fpr",
            "y_name": "tpr",
            "x": _list(x[idx]),
            "y": _list(y[idx]),
            "thresholds": _list(t[idx]),
        }
    precision, recall, t = pr_points(pos, neg, edges)
    idx = thin_indices(precision.size, max_points)
    t_full = np.concatenate([t, [np.nan]])
    return {
        "x_name": "recall",
        "y_name": "precision",
        "x": _list(recall[idx]),
        "y": _list(precision[idx]),
        "thresholds": _list(t_full[idx]),
    }


def _list(a: np.ndarray) -> list[float | None]:
    """JSON-safe floats: non-finite values (sklearn's leading ``inf`` threshold) become null."""
    return [float(v) if math.isfinite(v) else None for v in a.tolist()]


def _all_curves(state: State, view: ScoreView, max_points: int) -> dict[str, Any]:
    rows = _problem_rows(state, view)
    return {
        kind: {name: _curve_dict(kind, r, max_points) for name, r in rows.items()}
        for kind in ("roc", "pr")
    }


def curve(state: State, kind: str, target: str, max_points: int = 200) -> dict[str, Any]:
    """One ROC (``kind='roc'``) or precision-recall (``'pr'``) curve for a class name or
    ``'micro'``. Points are thinned to at most ``max_points``."""
    if kind not in ("roc", "pr"):
        raise InvalidInputError("kind", "'roc' or 'pr'", repr(kind))
    state = state.as_float()
    rows = _problem_rows(state, view_of(state))
    if target not in rows:
        raise InvalidInputError("class_name", f"one of {quoted(rows)}", json.dumps(target))
    return _curve_dict(kind, rows[target], max_points)

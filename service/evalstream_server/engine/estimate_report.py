"""``report["estimated"]``: metrics estimated from the window's predictions alone, and, once the
labels came, judged against the realized metrics of the same report.

Leaves follow the realized metrics' names and averages (``precision.macro``, ``roc_auc.binary``,
...): ``value`` (from the expected counts), ``ci95`` (the spread of the realized value if labels
were drawn from the calibrated probabilities; ``estimate.py``) and ``n_predictions`` (the
predictions the estimate rests on: every prediction of the window, labelled or not).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .calibrate import Calibration, fit_calibration
from .estimate import DRAWS, JUDGE_MIN_LABELLED_SHARE, estimate, interval, judge
from .state import State

__all__ = ["ESTIMATED_METRICS", "estimated_section"]

ESTIMATED_METRICS = (
    "precision",
    "recall",
    "f1",
    "accuracy",
    "roc_auc",
    "average_precision",
)
_DEFINITION = (
    "expected from the predictions' scores weighted by calibrated probabilities "
    "(confidence-based performance estimation)"
)
_CI = "central 95% of the metric over label sets drawn from the calibrated probabilities"


def _num(x: Any) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None


def _leaf(point: Any, draws: Any, n: int, reason: str) -> dict[str, Any]:
    value = _num(point)
    if value is None:
        return {"value": None, "reason": reason, "n_predictions": n}
    out: dict[str, Any] = {"value": value, "n_predictions": n}
    ci = interval(draws)
    if ci is not None:
        out["ci95"] = ci
    return out


def _group(
    point: dict[str, Any], draws: dict[str, Any], names: list[str], n: int, reason: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for avg, value in point.items():
        if avg == "per_class":
            out["per_class"] = {
                name: _leaf(value[i], column, n, reason)
                for i, (name, column) in enumerate(zip(names, draws[avg].T, strict=True))
            }
        else:
            out[avg] = _leaf(value, draws[avg], n, reason)
    return out


def _calibration_info(cal: Calibration, reference: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "method": cal.method,
        "reference": reference,
        "labelled": cal.labelled,
        "definition": "class-wise expected calibration error on the reference's labelled "
        "samples, in the estimate's coarse score bins (after: in sample)",
    }
    if cal.method == "raw":
        reason = f"no labelled samples in the reference window {reference!r}"
        out["reason"] = reason + ": the raw scores are taken as calibrated probabilities"
        out["ece_before"] = {"value": None, "reason": reason}
        out["ece_after"] = {"value": None, "reason": reason}
    else:
        out["ece_before"] = {"value": cal.ece_before}
        out["ece_after"] = {"value": cal.ece_after}
    return out


def _judged(est: dict[str, Any], report: dict[str, Any], share: float | None) -> dict[str, Any]:
    """Estimated beside realized, leaf by leaf, where the window is labelled enough."""
    out: dict[str, Any] = {
        "labelled_share": share,
        "min_labelled_share": JUDGE_MIN_LABELLED_SHARE,
    }
    if share is None or share < JUDGE_MIN_LABELLED_SHARE:
        out["reason"] = (
            f"fewer than {JUDGE_MIN_LABELLED_SHARE:.0%} of the window's predictions are labelled"
        )
        return out
    for metric in ESTIMATED_METRICS:
        e, r = est.get(metric), report.get(metric)
        if not isinstance(e, dict) or not isinstance(r, dict):
            continue
        if "value" in e:
            j = judge(e.get("value"), r.get("value"))
            if j is not None:
                out[metric] = j
            continue
        group: dict[str, Any] = {}
        for avg, leaf in e.items():
            if avg == "per_class":
                per = {
                    name: judge(
                        leaf[name].get("value"),
                        (r.get("per_class") or {}).get(name, {}).get("value"),
                    )
                    for name in leaf
                }
                per = {k: v for k, v in per.items() if v is not None}
                if per:
                    group["per_class"] = per
            else:
                j = judge(leaf.get("value"), (r.get(avg) or {}).get("value"))
                if j is not None:
                    group[avg] = j
        if group:
            out[metric] = group
    return out


def estimated_section(
    state: State,
    reference: State | None,
    report: dict[str, Any],
    method: str = "isotonic",
    intervals: bool = True,
) -> dict[str, Any]:
    """The ``estimated`` section of ``state``'s report (``report``: its realized metrics).

    ``reference`` is the state of the stream's reference window (its labelled samples give the
    calibration map); None when this window is the reference: its own labelled samples then.
    ``intervals=False`` leaves out the ``ci95`` (no label sets drawn: the exporter's reports)."""
    spec = state.spec
    names = list(spec.classes)
    ref_name = spec.prior_reference if reference is not None else report.get("window", "")
    cal = fit_calibration(reference if reference is not None else state, spec.n_columns, method)
    n = int(round(state.counts["pred_n"][0]))
    out: dict[str, Any] = {
        "definition": _DEFINITION,
        "n_predictions": n,
        "calibration": _calibration_info(cal, ref_name),
        "interval": {"level": 0.95, "draws": DRAWS if intervals else 0, "definition": _CI},
    }
    if n == 0:
        reason = "no predictions in this window"
        for metric in ESTIMATED_METRICS:
            out[metric] = {"value": None, "reason": reason, "n_predictions": 0}
        return out
    est = estimate(state, cal, DRAWS if intervals else 0)
    reason = "undefined for the expected counts"
    for metric in ESTIMATED_METRICS:
        if metric not in est.point:
            out[metric] = {
                "value": None,
                "reason": "not estimated for multilabel streams (needs the joint label rows)",
                "n_predictions": n,
            }
        elif "value" in est.point[metric]:
            out[metric] = _leaf(est.point[metric]["value"], est.draws[metric]["value"], n, reason)
        else:
            col_names = names[1:] if spec.task == "binary" else names
            if metric in ("precision", "recall", "f1") and spec.task == "binary":
                col_names = names
            out[metric] = _group(est.point[metric], est.draws[metric], col_names, n, reason)
    support = est.support
    total = float(support.sum()) if spec.task != "multilabel" else float(state.counts["pred_n"][1])
    out["prevalence"] = {
        name: _leaf(support[i] / total if total > 0 else np.nan, draws=[], n=n, reason=reason)
        for i, name in enumerate(names)
    }
    cm = est.confusion
    out["confusion_matrix"] = np.round(cm, 6).tolist()
    share = (report.get("labels") or {}).get("labelled_share", {}).get("value")
    out["judged"] = _judged(out, report, share)
    return out

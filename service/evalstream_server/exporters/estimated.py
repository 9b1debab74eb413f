"""Series of the estimated metrics (report section ``estimated``) and of their error once the
labels came (``estimated.judged``).

Per stream and window: ``evalstream_estimated_<metric>{average}`` beside the realized
``evalstream_<metric>{average}``, ``evalstream_estimated_class_<metric>{class}``,
``evalstream_estimated_accuracy``, ``evalstream_estimated_class_prevalence_ratio{class}``, the
calibration error of the reference (``evalstream_estimation_calibration_error{stage}``), and, for
windows whose predictions are labelled, ``evalstream_estimation_abs_error{metric, average}`` and
``evalstream_class_estimation_abs_error{metric, class}``. Undefined values are left out.
"""

from __future__ import annotations

from typing import Any

from .families import TenantFamilies

__all__ = ["estimated_series"]

_METRICS = ("roc_auc", "average_precision", "f1", "precision", "recall")
_AVERAGES = ("micro", "macro", "weighted", "binary")
_HELP = {
    "roc_auc": "ROC AUC",
    "average_precision": "Average precision",
    "f1": "F1 score",
    "precision": "Precision",
    "recall": "Recall",
}


def _value(leaf: Any) -> float | None:
    return leaf.get("value") if isinstance(leaf, dict) else None


def estimated_series(
    g: TenantFamilies, stream: str, window: str, report: dict[str, Any], classes: list[str]
) -> None:
    """The estimated metrics' gauges of one window's report."""
    est = report.get("estimated")
    if not est or not est.get("n_predictions"):
        return
    lw = ["stream", "window"]
    key = [stream, window]
    for metric in _METRICS:
        group = est.get(metric) or {}
        by_avg = g.gauge(
            f"estimated_{metric}",
            f"{_HELP[metric]} estimated from the window's predictions alone, by average",
            [*lw, "average"],
        )
        for avg in _AVERAGES:
            v = _value(group.get(avg))
            if v is not None:
                by_avg.add_metric([*key, avg], v)
        per = group.get("per_class")
        if per:
            fam = g.gauge(
                f"estimated_class_{metric}",
                f"Per-class {_HELP[metric].lower()} estimated from the window's predictions alone",
                [*lw, "class"],
            )
            for c in classes:
                v = _value(per.get(c))
                if v is not None:
                    fam.add_metric([*key, c], v)
    v = _value(est.get("accuracy"))
    if v is not None:
        g.gauge(
            "estimated_accuracy", "Accuracy estimated from the window's predictions alone", lw
        ).add_metric(key, v)
    prevalence = g.gauge(
        "estimated_class_prevalence_ratio",
        "Expected share of the class among the window's samples, from the predictions alone",
        [*lw, "class"],
    )
    for c in classes:
        v = _value((est.get("prevalence") or {}).get(c))
        if v is not None:
            prevalence.add_metric([*key, c], v)
    cal = est["calibration"]
    ece = g.gauge(
        "estimation_calibration_error",
        "Class-wise expected calibration error of the reference window's labelled samples, "
        "raw (stage=before) and through the calibration map of the estimate (stage=after)",
        [*lw, "stage"],
    )
    for stage in ("before", "after"):
        v = _value(cal.get(f"ece_{stage}"))
        if v is not None:
            ece.add_metric([*key, stage], v)
    _judged(g, key, est.get("judged") or {}, classes)


def _judged(g: TenantFamilies, key: list[str], judged: dict[str, Any], classes: list[str]) -> None:
    lw = ["stream", "window"]
    error = g.gauge(
        "estimation_abs_error",
        "Absolute difference of the estimated and the realized metric, in windows whose "
        "predictions are labelled",
        [*lw, "metric", "average"],
    )
    by_class = g.gauge(
        "class_estimation_abs_error",
        "Absolute difference of the estimated and the realized per-class metric, in windows "
        "whose predictions are labelled",
        [*lw, "metric", "class"],
    )
    acc = judged.get("accuracy")
    if acc:
        error.add_metric([*key, "accuracy", ""], acc["abs_error"])
    for metric in _METRICS:
        group = judged.get(metric) or {}
        for avg in _AVERAGES:
            if avg in group:
                error.add_metric([*key, metric, avg], group[avg]["abs_error"])
        per = group.get("per_class") or {}
        for c in classes:
            if c in per:
                by_class.add_metric([*key, metric, c], per[c]["abs_error"])

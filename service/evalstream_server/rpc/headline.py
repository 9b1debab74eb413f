"""The canonical report's headline figures as typed messages (``ReportHeadline``): a copy of the
numbers at the same places of the report dict, nothing computed."""

from __future__ import annotations

from typing import Any

from evalstream.v1 import report_pb2

__all__ = ["headline"]

_GROUPS = ("roc_auc", "average_precision", "precision", "recall", "f1")
_AVERAGES = ("macro", "weighted", "micro", "samples", "binary", "ovo_macro", "ovo_weighted")
_SCALARS = (
    "accuracy",
    "balanced_accuracy",
    "matthews_corrcoef",
    "cohen_kappa",
    "log_loss",
    "brier_score",
    "expected_calibration_error",
)


def _figure(leaf: dict[str, Any], out: report_pb2.Figure) -> None:
    if leaf.get("value") is not None:
        out.value = leaf["value"]
    out.reason = leaf.get("reason", "")
    for key in ("lower", "upper"):
        if leaf.get(key) is not None:
            setattr(out, key, leaf[key])
    if leaf.get("ci95") is not None:
        out.ci95_low, out.ci95_high = leaf["ci95"]
    out.n_defined = leaf.get("n_defined", 0)
    out.n_classes = leaf.get("n_classes", 0)


def headline(report: dict[str, Any]) -> report_pb2.ReportHeadline:
    """The ``ReportHeadline`` of a canonical report dict."""
    out = report_pb2.ReportHeadline(
        n_samples=report["n_samples"], weight_total=report["weight_total"]
    )
    for name, leaf in report["support"]["per_class"].items():
        out.support[name] = leaf["value"]
    for group in _GROUPS:
        src, dst = report[group], getattr(out, group)
        for name, leaf in src.get("per_class", {}).items():
            _figure(leaf, dst.per_class[name])
        for average in _AVERAGES:
            if average in src:
                _figure(src[average], getattr(dst, average))
    for scalar in _SCALARS:
        _figure(report[scalar], getattr(out, scalar))
    return out

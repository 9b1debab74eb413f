"""``Estimated``: the metrics a window's report estimates from its predictions alone.

The report's ``estimated`` section (the server computes it: expected confusion counts and score
histograms under calibrated probabilities) holds the realized metrics' names and averages. This
module only looks them up, with the realized methods' parameters: ``estimated("f1",
average="macro")`` answers as ``f1_score(average="macro")`` would once the labels came.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Estimated", "ESTIMATED_METRICS", "METRIC_ALIASES"]

ESTIMATED_METRICS = ("precision", "recall", "f1", "accuracy", "roc_auc", "average_precision")
# sklearn's function names for the report's metrics (Report.metric takes them too)
METRIC_ALIASES = {
    "roc_auc_score": "roc_auc",
    "auc": "roc_auc",
    "average_precision_score": "average_precision",
    "ap": "average_precision",
    "precision_score": "precision",
    "recall_score": "recall",
    "f1_score": "f1",
}
_ALIASES = {**METRIC_ALIASES, "accuracy_score": "accuracy"}
_RANKING = ("roc_auc", "average_precision")


class Estimated:
    """A view of ``report["estimated"]``.

    Parameters
    ----------
    section : dict
        The report's ``estimated`` section.
    task : str
        The stream's task (binary streams answer ``"binary"`` for the ranking metrics).
    """

    def __init__(self, section: dict[str, Any], task: str) -> None:
        self._d = section
        self._task = task

    @property
    def n_predictions(self) -> int:
        """Predictions the estimates rest on (every prediction of the window)."""
        return int(self._d["n_predictions"])

    @property
    def calibration(self) -> dict[str, Any]:
        """How the scores were calibrated: ``method`` (``"isotonic"``, ``"histogram"``, or
        ``"raw"`` without labelled reference samples), ``reference``, ``labelled``, and the
        calibration error of the reference before and after (``ece_before``, ``ece_after``)."""
        return dict(self._d["calibration"])

    def leaf(self, metric: str, average: str | None = "default") -> dict[str, Any]:
        """The report leaf of ``metric`` (a realized metric's name) at ``average`` (an average,
        a class name, or ``"default"``: macro for ranking metrics, binary for the others on
        binary streams, macro otherwise)."""
        name = _ALIASES.get(metric, metric)
        if name not in ESTIMATED_METRICS:
            raise ValueError(f"metric: expected one of {ESTIMATED_METRICS}, got {metric!r}")
        group: dict[str, Any] = self._d[name]
        if name == "accuracy" or "value" in group:
            return group
        if average == "default":
            average = "binary" if self._task == "binary" else "macro"
        if self._task == "binary" and name in _RANKING:
            average = "binary"  # binary streams ignore average, as sklearn
        if average in group and average != "per_class":
            leaf: dict[str, Any] = group[average]
            return leaf
        per = group.get("per_class", {})
        if average in per:
            leaf = per[average]
            return leaf
        options = sorted(k for k in group if k != "per_class") + sorted(per)
        raise ValueError(f"average: expected one of {options}, got {average!r}")

    def value(self, metric: str, average: str | None = "default") -> Any:
        """The estimate (None where undefined); ``average=None``: a dict by class."""
        if average is None:
            group = self._d[_ALIASES.get(metric, metric)]
            if "per_class" not in group:
                raise ValueError(f"{metric}: no per-class estimates for {self._task} streams")
            return {k: v.get("value") for k, v in group["per_class"].items()}
        return self.leaf(metric, average).get("value")

    def interval(self, metric: str, average: str | None = "default") -> tuple[float, float] | None:
        """The 95% sampling interval of the estimate (None where the report has none)."""
        ci = self.leaf(metric, average).get("ci95")
        return None if ci is None else (ci[0], ci[1])

    def error(self, metric: str, average: str | None = "default") -> float | None:
        """``|estimated - realized|`` once the window is labelled (None before)."""
        name = _ALIASES.get(metric, metric)
        judged = self._d.get("judged", {}).get(name)
        if not judged:
            return None
        if "abs_error" in judged:
            return float(judged["abs_error"])
        if average == "default":
            average = "binary" if self._task == "binary" else "macro"
        node = judged.get(average) or judged.get("per_class", {}).get(average)
        return None if node is None else float(node["abs_error"])

"""``Report``: the canonical report of one window, answered with scikit-learn's names.

The server computes every number; a ``Report`` only looks them up. Its methods take sklearn's
parameters (``average``, ``multi_class``, ``k``) and refuse the combinations sklearn refuses, with
sklearn's wording. Undefined values (the AUC of a class with no positives in the window, say) are
``None``, never NaN and never a silent 0; the canonical dict says why in the leaf's ``reason``.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from .estimated import METRIC_ALIASES as _METRIC_ALIASES
from .estimated import Estimated
from .text import classification_report, format_report

__all__ = ["Report", "Curve"]

_Metric = float | dict[str, float | None] | None  # a value, a dict by class, or undefined
_AVERAGES = (None, "micro", "macro", "weighted", "samples", "binary")
_TARGET = {"multiclass": "multiclass", "multilabel": "multilabel-indicator", "binary": "binary"}


@dataclass(frozen=True, eq=False)
class Curve:
    """One ROC or precision-recall curve, as ``GetCurve`` returns it.

    Points are in sklearn's order: ROC as ``roc_curve`` returns them (``thresholds[0]`` is
    ``inf``), precision-recall as ``precision_recall_curve`` (one threshold fewer than points).

    Attributes
    ----------
    stream, window : str
    kind : {"roc", "pr"}
    class_name : str
        A class name, or ``"micro"`` for the pooled (sample, class) items.
    x, y : ndarray
        ROC: false and true positive rates; PR: recall and precision.
    thresholds : ndarray
        Score thresholds on the probability scale.
    x_name, y_name : str
        ``"fpr"``/``"tpr"`` or ``"recall"``/``"precision"``.
    """

    stream: str
    window: str
    kind: str
    class_name: str
    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray
    x_name: str
    y_name: str

    def as_sklearn(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fpr, tpr, thresholds)`` like ``roc_curve``, or ``(precision, recall, thresholds)``
        like ``precision_recall_curve``."""
        if self.kind == "roc":
            return self.x, self.y, self.thresholds
        return self.y, self.x, self.thresholds


class Report:
    """The canonical report of one stream window, with sklearn-named accessors.

    Parameters
    ----------
    data : dict
        The canonical report (``GetReportResponse.report_json`` parsed).
    generated_time : datetime, optional
        When the server computed it.

    Notes
    -----
    Every metric method returns a float, or ``None`` where the value is undefined in this window
    (not NaN). Methods for metrics a task does not have (``confusion_matrix`` of a multilabel
    stream, say) raise ``ValueError`` as sklearn does.
    """

    def __init__(self, data: dict[str, Any], generated_time: datetime | None = None) -> None:
        self._d = data
        self.generated_time = generated_time

    @classmethod
    def from_json(cls, text: str, generated_time: datetime | None = None) -> Report:
        return cls(json.loads(text), generated_time)

    # -- identity ------------------------------------------------------------------------------
    @property
    def stream(self) -> str:
        return str(self._d.get("stream", ""))

    @property
    def window(self) -> str:
        return str(self._d.get("window", "cumulative"))

    @property
    def task(self) -> str:
        return str(self._d["task"])

    @property
    def classes(self) -> list[str]:
        return list(self._d["classes"])

    @property
    def n_samples(self) -> int:
        return int(self._d["n_samples"])

    @property
    def weight_total(self) -> float:
        return float(self._d.get("weight_total", self.n_samples))

    @property
    def resolution(self) -> dict[str, Any]:
        return dict(self._d.get("resolution", {}))

    def to_dict(self) -> dict[str, Any]:
        """The canonical report (a deep copy)."""
        return copy.deepcopy(self._d)

    def leaf(self, path: str | Sequence[str]) -> dict[str, Any]:
        """The leaf at ``path``: ``"roc_auc.per_class.cat"`` or ``("roc_auc", "per_class",
        "cat")``. Dotted paths also resolve class names that contain dots."""
        parts = path.split(".") if isinstance(path, str) else list(path)
        node: Any = self._d
        i = 0
        while i < len(parts):
            if not isinstance(node, dict):
                raise KeyError(f"{path!r}: {'.'.join(parts[:i])} is not a group")
            for j in range(len(parts), i, -1):  # longest key first: names may hold dots
                key = ".".join(parts[i:j])
                if key in node:
                    node, i = node[key], j
                    break
            else:
                raise KeyError(
                    f"{path!r}: no key {parts[i]!r} under {'.'.join(parts[:i]) or 'the report'}; "
                    f"keys: {sorted(node)[:20]}"
                )
        return copy.deepcopy(node)

    # -- ranking metrics -----------------------------------------------------------------------
    def roc_auc_score(self, average: str | None = "macro", multi_class: str = "ovr") -> _Metric:
        """ROC AUC as ``sklearn.metrics.roc_auc_score``.

        Parameters
        ----------
        average : {"macro", "weighted", "micro", "samples"} or None
            Binary streams ignore it (as sklearn). None gives a dict keyed by class name.
            ``"samples"`` is for multilabel streams only.
        multi_class : {"ovr", "ovo"}
            Multiclass streams only: one-vs-rest or one-vs-one (Hand & Till); ``"ovo"`` takes
            ``"macro"`` or ``"weighted"``.
        """
        group = self._d["roc_auc"]
        if self.task == "binary":
            return _value(group["binary"])
        if self.task == "multiclass":
            if multi_class not in ("ovr", "ovo"):
                raise ValueError(
                    f"multi_class must be in ('ovo', 'ovr'), got {multi_class!r}; a multiclass "
                    "stream needs one of them"
                )
            if multi_class == "ovo":
                if average not in ("macro", "weighted"):
                    raise ValueError(
                        f"average must be one of ('macro', 'weighted') for multi_class='ovo', "
                        f"got {average!r}"
                    )
                return _value(group[f"ovo_{average}"])
            allowed: tuple[str | None, ...] = ("macro", "weighted", "micro", None)
        else:
            allowed = ("macro", "weighted", "micro", "samples", None)
        return self._ranked(group, average, allowed, "roc_auc_score")

    def average_precision_score(self, average: str | None = "macro") -> _Metric:
        """Average precision as ``sklearn.metrics.average_precision_score`` (binary streams
        ignore ``average``; ``"samples"`` is multilabel only; None gives a dict by class)."""
        group = self._d["average_precision"]
        if self.task == "binary":
            return _value(group["binary"])
        allowed: tuple[str | None, ...] = ("macro", "weighted", "micro", None)
        if self.task == "multilabel":
            allowed += ("samples",)
        return self._ranked(group, average, allowed, "average_precision_score")

    def _ranked(
        self,
        group: dict[str, Any],
        average: str | None,
        allowed: tuple[str | None, ...],
        name: str,
    ) -> _Metric:
        if average not in allowed:
            raise ValueError(
                f"{name}: average must be one of {allowed} for {self.task} streams, got {average!r}"
            )
        if average is None:
            return {k: _value(v) for k, v in group["per_class"].items()}
        return _value(group[average])

    # -- threshold metrics ---------------------------------------------------------------------
    def precision_score(self, average: str | None = "binary") -> _Metric:
        """Precision as ``sklearn.metrics.precision_score`` (``zero_division=0``).

        ``average`` is one of ``"binary"`` (the default, binary streams only), ``"micro"``,
        ``"macro"``, ``"weighted"``, ``"samples"`` (multilabel) or None (a dict by class).
        """
        return self._prf("precision", average)

    def recall_score(self, average: str | None = "binary") -> _Metric:
        """Recall as ``sklearn.metrics.recall_score``; ``average`` as in ``precision_score``."""
        return self._prf("recall", average)

    def f1_score(self, average: str | None = "binary") -> _Metric:
        """F1 as ``sklearn.metrics.f1_score``; ``average`` as in ``precision_score``."""
        return self._prf("f1", average)

    def _prf(self, metric: str, average: str | None) -> _Metric:
        if average not in _AVERAGES:
            raise ValueError(f"average has to be one of {_AVERAGES}, got {average!r}")
        group = self._d[metric]
        if average == "binary" and self.task != "binary":
            options = [None, "micro", "macro", "weighted"]
            if self.task == "multilabel":
                options.append("samples")
            raise ValueError(
                f"Target is {_TARGET[self.task]} but average='binary'. Please choose another "
                f"average setting, one of {options}."
            )
        if average == "samples" and self.task != "multilabel":
            raise ValueError(
                "Sample-based precision, recall, fscore is not meaningful outside multilabel "
                "classification. See the accuracy_score instead."
            )
        if average is None:
            return {k: _value(v) for k, v in group["per_class"].items()}
        return _value(group[average])

    # -- estimated from predictions alone (section ``estimated``) --------------------------------
    def estimated(self, metric: str, average: str | None = "default") -> Any:
        """A metric estimated from the window's predictions alone, by the realized metric's name
        (``"f1"``, ``"recall_score"``, ``"roc_auc"``, ``"accuracy"``, ...) and ``average`` (an
        average, a class name, None for a dict by class; default: macro, binary for the
        threshold metrics of a binary stream). None where undefined."""
        return self.estimation.value(metric, average)

    @property
    def estimation(self) -> Estimated:
        """The ``estimated`` section: values, intervals (``interval``), calibration and, once
        labelled, the error against the realized values (``error``)."""
        return Estimated(self._d["estimated"], self.task)

    def accuracy_score(self) -> float | None:
        """Accuracy (multilabel: subset accuracy, as sklearn)."""
        return _value(self._d["accuracy"])

    def balanced_accuracy_score(self) -> float | None:
        return self._scalar("balanced_accuracy", "balanced_accuracy_score", ("multilabel",))

    def matthews_corrcoef(self) -> float | None:
        """MCC; None where sklearn divides by zero (it returns 0.0 there)."""
        return self._scalar("matthews_corrcoef", "matthews_corrcoef", ("multilabel",))

    def cohen_kappa_score(self) -> float | None:
        return self._scalar("cohen_kappa", "cohen_kappa_score", ("multilabel",))

    def hamming_loss(self) -> float | None:
        return _value(self._d["hamming_loss"])

    def log_loss(self) -> float | None:
        return self._scalar("log_loss", "log_loss", ("multilabel",))

    def brier_score_loss(self) -> float | None:
        return self._scalar("brier_score", "brier_score_loss", ("multilabel",))

    def expected_calibration_error(self) -> float | None:
        return _value(self._d["expected_calibration_error"])

    def top_k_accuracy_score(self, k: int = 2) -> float | None:
        """Top-k accuracy as ``sklearn.metrics.top_k_accuracy_score`` (multiclass streams, k up
        to the stream's ``top_k``)."""
        if self.task != "multiclass":
            raise ValueError(
                f"top_k_accuracy_score: defined for multiclass streams, not {self.task}"
            )
        table = self._d.get("top_k_accuracy") or {}
        if str(k) in table:
            return _value(table[str(k)])
        if k == 1:  # older reports had no "1": accuracy (argmax breaks ties the other way)
            return self.accuracy_score()
        if k >= len(self.classes):  # sklearn: a perfect score, with a warning
            return 1.0 if self.weight_total else None
        largest = max((int(x) for x in table), default=1)
        raise ValueError(
            f"k: expected 1 to {largest} (the stream's top_k), got {k}; create the stream with "
            "a larger top_k"
        )

    # -- label-free figures and label latency ---------------------------------------------------
    def predicted_prevalence(self, kind: str | None = None) -> dict[str, float | None]:
        """Share of the window's predictions per class, labelled or awaiting labels: ``kind``
        ``"argmax"`` (multiclass default), ``"thresholded"`` (binary and multilabel default) or
        ``"mean_probability"``."""
        table = self._d["imbalance"]["predicted_prevalence"]
        key = kind or ("argmax" if self.task == "multiclass" else "thresholded")
        if key not in table:
            raise ValueError(f"kind: expected one of {sorted(table)}, received {kind!r}")
        return {c: _value(leaf) for c, leaf in table[key].items()}

    def prior_shift(self) -> float | None:
        """Population stability index of the predicted class shares against the stream's
        prior reference window (None for the reference itself)."""
        return _value(self._d["label_free"]["prior_shift"]["psi"])

    def low_confidence_share(self) -> float | None:
        return _value(self._d["label_free"]["confidence"]["low_confidence_share"])

    def labelled_share(self) -> float | None:
        """Labelled samples per prediction in the window (both by prediction time)."""
        return _value(self._d["labels"]["labelled_share"])

    def label_delay(self, quantile: str = "p50") -> float | None:
        """Seconds from prediction to label of the pairs joined by id: ``"mean"``, ``"p50"``,
        ``"p90"`` or ``"p99"`` (quantiles interpolated in the delay histogram)."""
        return _value(self._d["labels"]["delay_seconds"][quantile])

    def label_status(self) -> dict[str, Any]:
        """Stream-wide join table figures (not windowed): ``pending`` predictions, and counters
        ``matched``, ``unknown``, ``expired_labels``, ``duplicate_labels``, ``expired``,
        ``evicted``, ``duplicate_ids`` since the stream was created or reset."""
        return dict(self._d["labels"]["stream"])

    def confusion_matrix(self) -> np.ndarray:
        """The (n_classes, n_classes) matrix, rows true and columns predicted classes (float when
        sample weights were logged)."""
        cm = self._d.get("confusion_matrix")
        if cm is None:
            raise ValueError(
                f"confusion_matrix: {_TARGET[self.task]} is not supported; use "
                "multilabel_confusion_matrix()"
            )
        return np.asarray(cm)

    def multilabel_confusion_matrix(self) -> np.ndarray:
        """(n_labels, 2, 2) matrices ``[[tn, fp], [fn, tp]]`` as sklearn's (binary streams: the
        positive class only)."""
        return np.asarray(self._d["multilabel_confusion_matrix"])

    def classification_report(self, digits: int = 3) -> str:
        """Text like ``sklearn.metrics.classification_report``, with ROC AUC and AP columns."""
        return classification_report(self._d, digits)

    def _scalar(self, key: str, name: str, not_for: tuple[str, ...]) -> float | None:
        if self.task in not_for:
            reason = self._d.get(key, {}).get("reason", "")
            raise ValueError(f"{name} is not defined for {self.task} streams ({reason})")
        return _value(self._d[key])

    # -- curves, bounds, intervals -------------------------------------------------------------
    def roc_curve(self, cls: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fpr, tpr, thresholds)`` of class ``cls`` (default: the positive class of a binary
        stream, ``"micro"`` otherwise), from a report fetched with ``curves=True``."""
        d = self._curve("roc", cls)
        t = np.array([np.inf if v is None else v for v in d["thresholds"]], dtype=np.float64)
        return _arr(d["x"]), _arr(d["y"]), t

    def precision_recall_curve(
        self, cls: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(precision, recall, thresholds)`` as ``precision_recall_curve`` (one threshold
        fewer than points), from a report fetched with ``curves=True``."""
        d = self._curve("pr", cls)
        t = list(d["thresholds"])
        if t and t[-1] is None:
            t = t[:-1]  # the last point (recall 0, precision 1) has no threshold
        return _arr(d["y"]), _arr(d["x"]), _arr(t)

    def _curve(self, kind: str, cls: str | None) -> dict[str, Any]:
        curves = self._d.get("curves")
        if not curves:
            raise ValueError(
                "this report has no curves: fetch it with client.report(stream, curves=True), "
                "or ask for one curve with client.curve(stream, kind, class_name)"
            )
        name = cls if cls is not None else (self.classes[1] if self.task == "binary" else "micro")
        table = curves[kind]
        if name not in table:
            raise KeyError(f"cls: expected one of {list(table)}, got {name!r}")
        curve: dict[str, Any] = table[name]
        return curve

    def bounds(
        self, metric: str = "roc_auc", average: str | None = "macro"
    ) -> tuple[float | None, float | None]:
        """Guaranteed ``(lower, upper)`` bounds of a ranking metric: the exact value on the
        unbinned scores lies inside. ``average`` is an average (``"macro"``, ``"weighted"``,
        ``"micro"``, ``"ovo_macro"``, ...) or a class name; binary streams ignore it.
        ``(None, None)`` where the value is undefined."""
        node = self._ranking_leaf(metric, average)
        if node.get("value") is None:
            return None, None
        if "lower" not in node:
            raise ValueError(f"{metric}/{average} carries no bounds")
        return node["lower"], node["upper"]

    def ci95(self, metric: str = "roc_auc", cls: str | None = None) -> tuple[float, float] | None:
        """The 95% interval of a per-class (or binary) value: DeLong for ROC AUC, Wilson for
        precision and recall; ``cls`` may also name an average (``"macro"``, ``"micro"``,
        ``"weighted"``) that carries one. None where the report has none."""
        metric = _METRIC_ALIASES.get(metric, metric)
        group = self._d[metric]
        if cls is None:
            if "binary" not in group:
                raise ValueError(
                    f"cls: name a class of {self.classes[:10]} for a {self.task} stream"
                )
            node = group["binary"]
        elif cls in group.get("per_class", {}):
            node = group["per_class"][cls]
        elif cls in group:
            node = group[cls]
        else:
            raise KeyError(f"cls: expected a class of {self.classes[:10]}, got {cls!r}")
        ci = node.get("ci95")
        return None if ci is None else (ci[0], ci[1])

    def _ranking_leaf(self, metric: str, average: str | None) -> dict[str, Any]:
        metric = _METRIC_ALIASES.get(metric, metric)
        if metric not in ("roc_auc", "average_precision"):
            raise ValueError(
                f"metric: expected 'roc_auc' or 'average_precision' (only ranking metrics carry "
                f"bounds), got {metric!r}"
            )
        group: dict[str, Any] = self._d[metric]
        leaf: dict[str, Any]
        if self.task == "binary":
            leaf = group["binary"]
        elif average in group and average != "per_class":
            leaf = group[average]
        elif average is not None and average in group.get("per_class", {}):
            leaf = group["per_class"][average]
        else:
            keys = [k for k in group if k != "per_class"]
            raise KeyError(f"average: expected one of {keys} or a class name, got {average!r}")
        return leaf

    # -- threshold advice ----------------------------------------------------------------------
    def best_threshold(self, metric: str = "f1", cls: str | None = None) -> dict[str, Any]:
        """The threshold (predict ``cls`` when its score >= threshold) that maximises ``metric``
        (``"f1"``, or ``"fbeta"`` when the report was asked for another beta), with the
        precision, recall and F1 it gives (``value`` and ``ci95``), ``value_upper`` (the best any
        threshold on the raw scores can reach), ``optimum_within`` and ``max_distance`` (how far
        the exact optimum can be: the bin resolution). ``threshold`` is None with a ``reason``
        when the class has no positives. ``cls`` defaults to a binary stream's positive class."""
        key = {"f1": "best_f1", "fbeta": "best_fbeta"}.get(metric)
        if key is None:
            raise ValueError(f"metric: expected 'f1' or 'fbeta', got {metric!r}")
        entry = self._threshold_entry(cls)
        if key not in entry:
            beta = self._d["thresholds"]["goals"]["beta"]
            raise ValueError(f"metric: this report's advice is for beta = {beta}, got {metric!r}")
        advice: dict[str, Any] = entry[key]
        return advice

    def threshold_for(
        self,
        recall: float | None = None,
        precision: float | None = None,
        cls: str | None = None,
    ) -> dict[str, Any]:
        """The threshold that keeps recall >= ``recall`` with the best precision, or precision
        >= ``precision`` with the best recall (give one), for class ``cls``; the same fields as
        ``best_threshold``. The floors come from the stream's goals (the report's
        ``thresholds.goals``); ``threshold`` is None with a ``reason`` when none reaches it."""
        if (recall is None) == (precision is None):
            raise ValueError("give one of recall= or precision=")
        kind = "recall_floor" if recall is not None else "precision_floor"
        floor = float(recall if recall is not None else precision)  # type: ignore[arg-type]
        table: dict[str, Any] = self._threshold_entry(cls)[kind]
        for key, advice in table.items():
            if abs(float(key) - float(floor)) <= 1e-12:
                found: dict[str, Any] = advice
                return found
        raise KeyError(
            f"{kind.split('_')[0]}: this report holds the floors {[float(k) for k in table]}, "
            f"got {floor!r} (build the report with ThresholdGoals naming it)"
        )

    def _threshold_entry(self, cls: str | None) -> dict[str, Any]:
        section = self._d.get("thresholds")
        if section is None:
            raise ValueError("this report has no thresholds section (a server before issue 18)")
        table: dict[str, Any] = section["per_class"]
        if cls is None:
            if self.task != "binary":
                raise ValueError(
                    f"cls: name a class of {self.classes[:10]} for a {self.task} stream"
                )
            cls = self.classes[1]
        if cls not in table:
            raise KeyError(f"cls: expected one of {list(table)[:10]}, got {cls!r}")
        entry: dict[str, Any] = table[cls]
        return entry

    def __str__(self) -> str:
        return format_report(self._d)

    def _repr_html_(self) -> str:
        """Jupyter's view: the headline table and the figures (with matplotlib, the ``plots``
        extra), each with the numbers it draws. ROC and PR curves need a report fetched with
        ``curves=True``."""
        from .htmlreport import notebook_html

        return notebook_html(self._d, f"r{uuid.uuid4().hex[:8]}")

    def to_html(self, definition: dict[str, Any] | None = None) -> str:
        """This window as one self-contained HTML page (no network, no script)."""
        from .htmlreport import report_page

        return report_page([self._d], definition)

    def __repr__(self) -> str:
        return (
            f"Report(stream={self.stream!r}, window={self.window!r}, task={self.task!r}, "
            f"n_samples={self.n_samples})"
        )


def _value(leaf: dict[str, Any]) -> float | None:
    value: float | None = leaf.get("value")
    return value


def _arr(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

"""Stream specification: the task, classes, score kind, windows and resolution, declared up front.

The task is never guessed from the data (guessing is how Keras' AUC silently reports a micro value
for multilabel targets): a stream says what it is when it is created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import InvalidInputError, quoted
from .layout import MAX_MANTISSA_BITS, MIN_MANTISSA_BITS

__all__ = [
    "Resolution",
    "StreamSpec",
    "TASKS",
    "SCORE_KINDS",
    "parse_duration",
    "format_duration",
]

TASKS = ("binary", "multiclass", "multilabel")
SCORE_KINDS = ("probabilities", "logits")
Task = Literal["binary", "multiclass", "multilabel"]
ScoreKind = Literal["probabilities", "logits"]

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_PENDING_LIMIT = 10_000_000  # predictions awaiting labels, per stream
# Equal-width bins of the calibration error: past a few hundred most bins of a stream hold
# nothing; 30 million took 1.4 GiB at the first report (issue 13).
MAX_CALIBRATION_BINS = 10_000
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def parse_duration(text: str) -> int:
    """Parse ``"30s"``, ``"5m"``, ``"1h"`` or ``"7d"`` into whole seconds."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or int(match.group(1)) <= 0:
        raise InvalidInputError(
            "windows",
            "durations such as '30s', '5m', '1h', '7d' (a positive integer and a unit)",
            repr(text),
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest exact spelling of a duration in seconds (``3600`` -> ``"1h"``)."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Resolution:
    """How scores are kept: binned (bounded memory) or exact (raw float32, capped).

    Parameters
    ----------
    kind : {"bins", "exact"}
    mantissa_bits : int
        For ``bins``: mantissa bits per octave (default 5, 4772 bins).
    max_samples : int
        For ``exact``: the most samples kept; ingesting past it raises ``CapacityError``.
    """

    kind: Literal["bins", "exact"] = "bins"
    mantissa_bits: int = 5
    max_samples: int = 1_000_000

    def __post_init__(self) -> None:
        if self.kind not in ("bins", "exact"):
            raise InvalidInputError("resolution", "'bins' or 'exact'", repr(self.kind))
        m = self.mantissa_bits
        if not isinstance(m, int) or not MIN_MANTISSA_BITS <= m <= MAX_MANTISSA_BITS:
            raise InvalidInputError(
                "resolution.mantissa_bits",
                f"an integer in [{MIN_MANTISSA_BITS}, {MAX_MANTISSA_BITS}]",
                repr(m),
            )
        if not isinstance(self.max_samples, int) or self.max_samples < 1:
            raise InvalidInputError(
                "resolution.max_samples", "a positive integer", repr(self.max_samples)
            )

    @classmethod
    def parse(cls, text: str | Resolution | None) -> Resolution:
        """Parse ``"bins"``, ``"bins:6"``, ``"exact"`` or ``"exact:200000"``."""
        if text is None:
            return cls()
        if isinstance(text, Resolution):
            return text
        kind, _, arg = str(text).partition(":")
        try:
            if kind == "bins":
                return cls("bins", mantissa_bits=int(arg) if arg else 5)
            if kind == "exact":
                return cls("exact", max_samples=int(arg) if arg else 1_000_000)
        except ValueError as exc:
            if isinstance(exc, InvalidInputError):
                raise
        raise InvalidInputError(
            "resolution",
            "'bins', 'bins:<mantissa bits>', 'exact' or 'exact:<max samples>'",
            repr(text),
        )

    def __str__(self) -> str:
        if self.kind == "bins":
            return f"bins:{self.mantissa_bits}"
        return f"exact:{self.max_samples}"


@dataclass(frozen=True)
class StreamSpec:
    """Everything that fixes the layout of a stream's state.

    Parameters
    ----------
    task : {"binary", "multiclass", "multilabel"}
    classes : tuple of str
        Class names (multiclass, K >= 2), label names (multilabel, L >= 1), or the negative and
        the positive class names (binary, exactly 2; default ``("0", "1")``).
    scores : {"probabilities", "logits"}
        Logits get softmax (multiclass) or sigmoid (binary, multilabel) in float64, then float32.
    windows : tuple of str
        Sliding time windows such as ``("5m", "1h")``; the cumulative state always exists.
    thresholds : tuple of float
        Per-label decision thresholds (binary: one; multilabel: one per label or one for all).
        A sample is predicted positive when ``score >= threshold``. Default 0.5.
    resolution : Resolution
    ovo_class_limit : int
        Above this many classes only the one-vs-rest state is kept (OvO unavailable).
    top_k : int
        Largest k for ``top_k_accuracy`` (multiclass).
    calibration_bins : int
        Equal-width confidence bins for the expected calibration error.
    window_buckets : int
        Buckets per sliding window: a window slides in steps of ``window / window_buckets``.
    probability_tolerance : float
        Probability rows (multiclass) must sum to 1 within this tolerance.
    low_confidence : float
        A prediction whose confidence (the top probability; binary and multilabel: the
        probability of the predicted side, ``max(p, 1 - p)`` per label) is below this is counted
        as low-confidence in the label-free figures. Default 0.6.
    prior_reference : str
        The window that prior shift is measured against: ``"cumulative"`` (default) or one of
        ``windows`` (normally the longest, e.g. ``"7d"`` for a ``"1h"`` window).
    pending_retention : int
        Seconds a prediction logged without its label waits for it (``log_predictions``); older
        ones expire and are counted. Default 7 days.
    max_pending : int
        Most predictions awaiting labels per stream; past it the oldest are evicted and
        counted. Default 100,000.
    name : str
        The stream's name (reported, not part of the layout).
    """

    task: Task
    classes: tuple[str, ...] = ()
    scores: ScoreKind = "probabilities"
    windows: tuple[str, ...] = ()
    thresholds: tuple[float, ...] = ()
    resolution: Resolution = field(default_factory=Resolution)
    ovo_class_limit: int = 32
    top_k: int = 5
    calibration_bins: int = 15
    window_buckets: int = 12
    probability_tolerance: float = 1e-3
    low_confidence: float = 0.6
    prior_reference: str = "cumulative"
    pending_retention: int = 7 * 86400
    max_pending: int = 100_000
    name: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise InvalidInputError("task", f"one of {list(TASKS)}", repr(self.task))
        if self.scores not in SCORE_KINDS:
            raise InvalidInputError("scores", f"one of {list(SCORE_KINDS)}", repr(self.scores))
        classes = tuple(str(c) for c in self.classes)
        if self.task == "binary" and not classes:
            classes = ("0", "1")
        object.__setattr__(self, "classes", classes)
        minimum = {"binary": 2, "multiclass": 2, "multilabel": 1}[self.task]
        if self.task == "binary" and len(classes) != 2:
            raise InvalidInputError(
                "classes",
                "exactly 2 names for a binary stream (negative, positive)",
                f"{len(classes)} names",
            )
        if len(classes) < minimum:
            raise InvalidInputError(
                "classes",
                f"at least {minimum} names for a {self.task} stream",
                f"{len(classes)} names",
            )
        if len(set(classes)) != len(classes):
            dupes = sorted({c for c in classes if classes.count(c) > 1})
            raise InvalidInputError("classes", "unique names", f"duplicates {dupes}")
        if "micro" in classes and self.task != "binary":
            raise InvalidInputError(
                "classes", "names other than 'micro' (it names the pooled curve)", "'micro'"
            )
        for c in classes:
            if not c or len(c) > 128:
                raise InvalidInputError("classes", "names of 1 to 128 characters", repr(c))
        windows = tuple(str(w) for w in self.windows)
        seconds = [parse_duration(w) for w in windows]
        if len(set(seconds)) != len(seconds):
            raise InvalidInputError("windows", "distinct durations", quoted(windows))
        object.__setattr__(self, "windows", tuple(format_duration(s) for s in seconds))
        object.__setattr__(self, "resolution", Resolution.parse(self.resolution))
        object.__setattr__(self, "thresholds", self._checked_thresholds())
        for name, low in (
            ("ovo_class_limit", 2),
            ("top_k", 1),
            ("window_buckets", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise InvalidInputError(name, f"an integer >= {low}", repr(value))
        for name, low, high in (
            ("calibration_bins", 1, MAX_CALIBRATION_BINS),
            ("pending_retention", 1, 366 * 86400),
            ("max_pending", 1, MAX_PENDING_LIMIT),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise InvalidInputError(name, f"an integer in [{low}, {high}]", repr(value))
        if not 0 < float(self.low_confidence) <= 1:
            raise InvalidInputError(
                "low_confidence", "a number in (0, 1]", repr(self.low_confidence)
            )
        object.__setattr__(self, "low_confidence", float(self.low_confidence))
        reference = str(self.prior_reference or "cumulative")
        if reference != "cumulative":
            reference = format_duration(parse_duration(reference))
            if reference not in self.windows:
                raise InvalidInputError(
                    "prior_reference",
                    f'"cumulative" or one of the windows {quoted(self.windows)}',
                    repr(self.prior_reference),
                )
        object.__setattr__(self, "prior_reference", reference)
        if not 0 < self.probability_tolerance < 1:
            raise InvalidInputError(
                "probability_tolerance", "a number in (0, 1)", repr(self.probability_tolerance)
            )
        if self.name and not _NAME.match(self.name):
            raise InvalidInputError(
                "name", "1 to 128 characters from letters, digits and . _ -", repr(self.name)
            )

    def _checked_thresholds(self) -> tuple[float, ...]:
        n_out = {"binary": 1, "multiclass": 0, "multilabel": len(self.classes)}[self.task]
        raw = tuple(float(t) for t in self.thresholds)
        if self.task == "multiclass":
            if raw:
                raise InvalidInputError(
                    "thresholds",
                    "none for a multiclass stream (the prediction is the argmax)",
                    f"{len(raw)} values",
                )
            return ()
        if not raw:
            raw = (0.5,)
        if len(raw) == 1:
            raw = raw * n_out
        if len(raw) != n_out:
            raise InvalidInputError("thresholds", f"1 or {n_out} values", f"{len(raw)} values")
        for t in raw:
            if not 0.0 <= t <= 1.0:
                raise InvalidInputError("thresholds", "values in [0, 1]", repr(t))
        return raw

    # -- derived layout -------------------------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_columns(self) -> int:
        """Score columns kept in state: 1 for binary, K or L otherwise."""
        return 1 if self.task == "binary" else len(self.classes)

    @property
    def full_ovo(self) -> bool:
        """Whether the (true class, column, bin) histogram is kept (multiclass, K <= limit)."""
        return self.task == "multiclass" and self.n_classes <= self.ovo_class_limit

    @property
    def k_max(self) -> int:
        """Largest top-k tracked (multiclass): at most K - 1 (k = K is always 1)."""
        return min(self.top_k, self.n_classes - 1) if self.task == "multiclass" else 0

    @property
    def window_seconds(self) -> tuple[int, ...]:
        return tuple(parse_duration(w) for w in self.windows)

    def layout_key(self) -> tuple[object, ...]:
        """What must match for two states to merge."""
        return (
            self.task,
            self.classes,
            str(self.resolution),
            self.full_ovo,
            self.thresholds,
            self.k_max,
            self.calibration_bins,
            self.low_confidence,
        )

    def with_name(self, name: str) -> StreamSpec:
        return replace(self, name=name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task": self.task,
            "classes": list(self.classes),
            "scores": self.scores,
            "windows": list(self.windows),
            "thresholds": list(self.thresholds),
            "resolution": str(self.resolution),
            "ovo_class_limit": self.ovo_class_limit,
            "top_k": self.top_k,
            "calibration_bins": self.calibration_bins,
            "window_buckets": self.window_buckets,
            "probability_tolerance": self.probability_tolerance,
            "low_confidence": self.low_confidence,
            "prior_reference": self.prior_reference,
            "pending_retention": self.pending_retention,
            "max_pending": self.max_pending,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError("spec", f"keys among {sorted(known)}", f"unknown {unknown}")
        kwargs = dict(data)
        for key in ("classes", "windows", "thresholds"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

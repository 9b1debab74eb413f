"""Stream configurations to the wire, and ``StreamInfo`` back to plain Python types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .v1 import stream_pb2

__all__ = ["StreamInfo", "stream_config", "TASKS", "SCORE_KINDS"]

TASKS = {
    "binary": stream_pb2.TASK_BINARY,
    "multiclass": stream_pb2.TASK_MULTICLASS,
    "multilabel": stream_pb2.TASK_MULTILABEL,
}
SCORE_KINDS = {
    "probabilities": stream_pb2.SCORE_KIND_PROBABILITIES,
    "logits": stream_pb2.SCORE_KIND_LOGITS,
}
_TASK_NAMES = {v: k for k, v in TASKS.items()}
_SCORE_NAMES = {v: k for k, v in SCORE_KINDS.items()}


@dataclass(frozen=True)
class StreamInfo:
    """A stream as the server holds it: its effective config (server defaults filled in) and
    counters. Mirrors ``evalstream.v1.StreamInfo`` with Python types.

    Attributes
    ----------
    name, task, scores : str
        ``task`` is ``"binary"``, ``"multiclass"`` or ``"multilabel"``; ``scores`` is
        ``"probabilities"`` or ``"logits"``.
    classes, windows, thresholds : tuple
    resolution : str
        ``"bins:<mantissa bits>"`` or ``"exact:<max samples>"``.
    ovo_class_limit, top_k, calibration_bins : int
    low_confidence : float
    prior_reference : str
    pending_retention : float
        Seconds a prediction waits for its label (``log_predictions``).
    max_pending : int
    sample_count : int
        Samples in the cumulative state since creation or the last reset.
    ovo_available : bool
    create_time : datetime
        Timezone-aware (UTC).
    update_time : datetime or None
        When the last batch was accepted; None if none was since creation or the last reset.
    """

    name: str
    task: str
    classes: tuple[str, ...]
    scores: str
    windows: tuple[str, ...]
    thresholds: tuple[float, ...]
    resolution: str
    ovo_class_limit: int
    top_k: int
    calibration_bins: int
    low_confidence: float
    prior_reference: str
    pending_retention: float
    max_pending: int
    sample_count: int
    ovo_available: bool
    create_time: datetime
    update_time: datetime | None

    @classmethod
    def from_proto(cls, msg: stream_pb2.StreamInfo) -> StreamInfo:
        c = msg.config
        kind = c.resolution.WhichOneof("kind")
        if kind == "exact":
            resolution = f"exact:{c.resolution.exact.max_samples}"
        else:
            resolution = f"bins:{c.resolution.binned.mantissa_bits}"
        return cls(
            name=c.name,
            task=_TASK_NAMES.get(c.task, "unspecified"),
            classes=tuple(c.classes),
            scores=_SCORE_NAMES.get(c.score_kind, "unspecified"),
            windows=tuple(c.windows),
            thresholds=tuple(c.thresholds),
            resolution=resolution,
            ovo_class_limit=int(c.ovo_class_limit),
            top_k=int(c.top_k),
            calibration_bins=int(c.calibration_bins),
            low_confidence=float(c.low_confidence),
            prior_reference=c.prior_reference,
            pending_retention=c.pending_retention.ToNanoseconds() / 1e9,
            max_pending=int(c.max_pending),
            sample_count=int(msg.sample_count),
            ovo_available=bool(msg.ovo_available),
            create_time=msg.create_time.ToDatetime(tzinfo=UTC),
            update_time=msg.update_time.ToDatetime(tzinfo=UTC)
            if msg.HasField("update_time")
            else None,
        )


def stream_config(
    name: str,
    task: str,
    classes: Sequence[str],
    scores: str = "probabilities",
    windows: Sequence[str] = (),
    thresholds: Sequence[float] | float = (),
    resolution: str = "bins",
    ovo_class_limit: int | None = None,
    top_k: int | None = None,
    calibration_bins: int | None = None,
    low_confidence: float | None = None,
    prior_reference: str | None = None,
    pending_retention: float | None = None,
    max_pending: int | None = None,
) -> stream_pb2.StreamConfig:
    """A ``StreamConfig`` message. Only what the wire cannot carry is refused here (an unknown
    task or score kind, a resolution string that does not parse); the server checks the rest."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {list(TASKS)}, received {task!r}")
    if scores not in SCORE_KINDS:
        raise ValueError(f"scores: expected one of {list(SCORE_KINDS)}, received {scores!r}")
    if isinstance(classes, str):
        raise ValueError(f"classes: expected a sequence of class names, received {classes!r}")
    if isinstance(windows, str):
        windows = (windows,)
    if isinstance(thresholds, int | float):
        thresholds = (float(thresholds),)
    config = stream_pb2.StreamConfig(
        name=name,
        task=TASKS[task],
        classes=[str(c) for c in classes],
        score_kind=SCORE_KINDS[scores],
        windows=list(windows),
        thresholds=[float(t) for t in thresholds],
        ovo_class_limit=ovo_class_limit or 0,
        top_k=top_k or 0,
        calibration_bins=calibration_bins or 0,
        low_confidence=low_confidence or 0.0,
        prior_reference=prior_reference or "",
        max_pending=max_pending or 0,
    )
    if pending_retention is not None:
        config.pending_retention.FromNanoseconds(int(round(float(pending_retention) * 1e9)))
    config.resolution.CopyFrom(_resolution(resolution))
    return config


def _resolution(text: str) -> stream_pb2.Resolution:
    kind, _, arg = str(text).partition(":")
    out = stream_pb2.Resolution()
    try:
        number = int(arg) if arg else 0
    except ValueError:
        number = -1
    if kind in ("bins", "exact") and number >= 0:
        if kind == "bins":
            out.binned.mantissa_bits = number
        else:
            out.exact.max_samples = number
        return out
    raise ValueError(
        "resolution: expected 'bins', 'bins:<mantissa bits>', 'exact' or "
        f"'exact:<max samples>', received {text!r}"
    )

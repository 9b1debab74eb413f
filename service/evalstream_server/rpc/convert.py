"""Protobuf messages <-> engine types. Conversion and checks only; no maths."""

from __future__ import annotations

import math
from typing import Any

from evalstream.v1 import curve_pb2, stream_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from ..engine import InvalidInputError, Resolution, StreamSpec
from ..store import StreamRecord

__all__ = [
    "DEFAULT_EXACT_MAX_SAMPLES",
    "DEFAULT_MANTISSA_BITS",
    "spec_from_config",
    "config_from_spec",
    "stream_info",
    "curve_message",
    "timestamp",
    "seconds",
]

DEFAULT_MANTISSA_BITS = 5  # Resolution.Binned.mantissa_bits 0: 4772 bins
DEFAULT_EXACT_MAX_SAMPLES = 1_000_000  # Resolution.Exact.max_samples 0
_TASKS = {
    stream_pb2.TASK_BINARY: "binary",
    stream_pb2.TASK_MULTICLASS: "multiclass",
    stream_pb2.TASK_MULTILABEL: "multilabel",
}
_SCORES = {
    stream_pb2.SCORE_KIND_PROBABILITIES: "probabilities",
    stream_pb2.SCORE_KIND_LOGITS: "logits",
}


def spec_from_config(c: stream_pb2.StreamConfig, max_classes: int) -> StreamSpec:
    """A StreamSpec from a StreamConfig; zero and empty fields take the server defaults.
    ``InvalidInputError`` names the field of the request (``config.windows``)."""
    try:
        return _spec(c, max_classes)
    except InvalidInputError as exc:  # StreamSpec names its own arguments: give the wire's
        raise _config_field(exc) from None


def _spec(c: stream_pb2.StreamConfig, max_classes: int) -> StreamSpec:
    if c.task not in _TASKS:
        raise InvalidInputError(
            "config.task",
            "TASK_BINARY, TASK_MULTICLASS or TASK_MULTILABEL",
            stream_pb2.Task.Name(c.task) if c.task in stream_pb2.Task.values() else str(c.task),
        )
    if c.score_kind not in _SCORES:
        raise InvalidInputError(
            "config.score_kind",
            "SCORE_KIND_PROBABILITIES or SCORE_KIND_LOGITS (declared, never guessed)",
            stream_pb2.ScoreKind.Name(c.score_kind)
            if c.score_kind in stream_pb2.ScoreKind.values()
            else str(c.score_kind),
        )
    if len(c.classes) > max_classes:
        raise InvalidInputError(
            "config.classes", f"at most {max_classes} classes", f"{len(c.classes)}"
        )
    which = c.resolution.WhichOneof("kind")
    if which == "exact":
        resolution = Resolution(
            "exact", max_samples=int(c.resolution.exact.max_samples) or DEFAULT_EXACT_MAX_SAMPLES
        )
    else:
        bits = c.resolution.binned.mantissa_bits if which == "binned" else 0
        resolution = Resolution("bins", mantissa_bits=int(bits) or DEFAULT_MANTISSA_BITS)
    kwargs: dict[str, Any] = {}
    if c.ovo_class_limit:
        kwargs["ovo_class_limit"] = int(c.ovo_class_limit)
    if c.top_k:
        kwargs["top_k"] = int(c.top_k)
    if c.calibration_bins:
        kwargs["calibration_bins"] = int(c.calibration_bins)
    if c.low_confidence:
        kwargs["low_confidence"] = float(c.low_confidence)
    if c.prior_reference:
        kwargs["prior_reference"] = c.prior_reference
    if c.HasField("pending_retention"):
        retention = c.pending_retention.ToNanoseconds() / 1e9
        if retention != int(retention) or retention <= 0:
            raise InvalidInputError(
                "config.pending_retention", "a positive whole number of seconds", f"{retention}s"
            )
        kwargs["pending_retention"] = int(retention)
    if c.max_pending:
        kwargs["max_pending"] = int(c.max_pending)
    return StreamSpec(
        task=_TASKS[c.task],
        classes=tuple(c.classes),
        scores=_SCORES[c.score_kind],
        windows=tuple(c.windows),
        thresholds=tuple(c.thresholds),
        resolution=resolution,
        name=c.name,
        **kwargs,
    )


# StreamSpec's argument -> its StreamConfig field, where the names differ
_CONFIG_FIELDS = {
    "scores": "score_kind",
    "resolution.mantissa_bits": "resolution.binned.mantissa_bits",
    "resolution.max_samples": "resolution.exact.max_samples",
}


def _config_field(exc: InvalidInputError) -> InvalidInputError:
    """``exc`` naming the field of CreateStreamRequest (``config.windows``) instead of
    StreamSpec's argument (``windows``)."""
    if exc.field.startswith("config."):
        return exc
    field = "config." + _CONFIG_FIELDS.get(exc.field, exc.field)
    return type(exc)(field, exc.expected, exc.received, exc.hint)


def config_from_spec(spec: StreamSpec) -> stream_pb2.StreamConfig:
    inv_task = {v: k for k, v in _TASKS.items()}
    inv_scores = {v: k for k, v in _SCORES.items()}
    c = stream_pb2.StreamConfig(
        name=spec.name,
        task=inv_task[spec.task],
        classes=list(spec.classes),
        score_kind=inv_scores[spec.scores],
        windows=list(spec.windows),
        thresholds=list(spec.thresholds),
        ovo_class_limit=spec.ovo_class_limit,
        top_k=spec.top_k,
        calibration_bins=spec.calibration_bins,
        low_confidence=spec.low_confidence,
        prior_reference=spec.prior_reference,
        max_pending=spec.max_pending,
    )
    c.pending_retention.FromSeconds(spec.pending_retention)
    if spec.resolution.kind == "exact":
        c.resolution.exact.max_samples = spec.resolution.max_samples
    else:
        c.resolution.binned.mantissa_bits = spec.resolution.mantissa_bits
    return c


def timestamp(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(round(t * 1e9)))
    return ts


def seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def stream_info(record: StreamRecord) -> stream_pb2.StreamInfo:
    info = stream_pb2.StreamInfo(
        config=config_from_spec(record.spec),
        create_time=timestamp(record.create_time),
        sample_count=record.engine.cumulative.n_samples,
        ovo_available=record.spec.full_ovo,
    )
    if record.update_time is not None:
        info.update_time.CopyFrom(timestamp(record.update_time))
    return info


def curve_message(d: dict[str, Any], kind: int, target: str) -> curve_pb2.Curve:
    def num(v: float | None, missing: float) -> float:
        return missing if v is None else float(v)

    roc = kind == curve_pb2.CURVE_KIND_ROC
    return curve_pb2.Curve(
        kind=kind,
        class_name=target,
        x=[num(v, math.nan) for v in d["x"]],
        y=[num(v, math.nan) for v in d["y"]],
        # JSON nulls: ROC's leading threshold is +inf (as sklearn); PR's last point has none (NaN)
        # PR curves have one threshold fewer than points (as sklearn)
        thresholds=[
            num(v, math.inf if i == 0 and roc else math.nan)
            for i, v in enumerate(d["thresholds"] if roc else d["thresholds"][:-1])
        ],
        x_name=d["x_name"],
        y_name=d["y_name"],
    )

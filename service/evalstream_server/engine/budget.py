"""The most memory a stream can ever take, computed from its definition alone.

A server admits a stream only if this worst case fits its budgets (``--max-stream-memory``,
``--max-server-memory``), so memory is bounded before any work is accepted, whatever producers
send. The figure follows the structures that hold a stream (tested against their measured
``nbytes`` filled to the worst case, ``tests/engine/test_budget.py``):

* the cumulative state, dense: every count field of ``field_shapes`` in float64;
* per window, the ring's buckets (``WindowRing.max_buckets``, or fewer when the server's clock
  skew bound keeps stamps closer): the open bucket dense, the others as sparse entries (an int32
  or int64 index and a float64 value per non-zero cell, so a full bucket costs 1.5x its dense
  form), plus the window's cached sum, dense;
* two dense copies while a report is built (the window's state and its prior reference);
* for the exact resolution, the raw rows up to ``max_samples``: in the cumulative state, in each
  window's buckets and cached sum, and in a report's two copies;
* the join table of predictions awaiting labels at ``max_pending`` (``PendingPredictions``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .counting import field_shapes
from .pending import PendingPredictions
from .spec import StreamSpec

__all__ = ["MemoryEstimate", "worst_case_memory", "format_bytes"]

_REPORT_COPIES = 2  # a report's window state and its prior-reference state
_DEFAULT_MANTISSA_BITS = 5


@dataclass(frozen=True)
class MemoryEstimate:
    """A stream's worst-case memory in bytes, by part.

    Attributes
    ----------
    state : int
        One dense state (every count field).
    fields : dict
        Bytes of each count field in one dense state.
    dense_copies : int
        Dense states held at once: the cumulative state, each window's open bucket and cached
        sum, and a report's copies.
    sparse_buckets : int
        Closed window buckets, each at most ``sparse_bucket`` bytes.
    sparse_bucket : int
    exact : int
        Raw rows of the exact resolution, every copy.
    pending : int
        Predictions awaiting labels, and the ids of those already joined or expired.
    """

    state: int
    fields: dict[str, int]
    dense_copies: int
    sparse_buckets: int
    sparse_bucket: int
    exact: int
    pending: int

    @property
    def counts(self) -> int:
        """Bytes of every count array (dense states and sparse buckets)."""
        return self.state * self.dense_copies + self.sparse_bucket * self.sparse_buckets

    @property
    def total(self) -> int:
        return self.counts + self.exact + self.pending

    def blamed_field(self, spec: StreamSpec, limit: int) -> str:
        """The config field to change to need less than ``limit``: the state's largest field
        when the state and a report's copies alone pass it, else the largest other part."""
        alone = self.state * (1 + _REPORT_COPIES)
        if alone > limit or not (spec.windows or self.exact or self.pending):
            return _state_field(spec, max(self.fields, key=lambda k: self.fields[k]))
        parts = {
            "windows": self.counts - alone,
            "resolution.max_samples": self.exact,
            "max_pending": self.pending,
        }
        return max(parts, key=lambda k: parts[k])

    def describe(self) -> str:
        """The parts in words, largest field first."""
        top = sorted(self.fields.items(), key=lambda kv: -kv[1])[:2]
        state = ", ".join(f"{k} {format_bytes(v)}" for k, v in top)
        words = [
            f"{self.dense_copies} dense states of {format_bytes(self.state)} ({state})",
        ]
        if self.sparse_buckets:
            words.append(
                f"{self.sparse_buckets} window buckets of up to {format_bytes(self.sparse_bucket)}"
            )
        if self.exact:
            words.append(f"exact rows {format_bytes(self.exact)}")
        if self.pending:
            words.append(f"pending predictions {format_bytes(self.pending)}")
        return " + ".join(words)


def format_bytes(n: int | float) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _state_field(spec: StreamSpec, biggest: str) -> str:
    """The config field that sizes the count field ``biggest``."""
    if biggest == "calibration":
        return "calibration_bins"
    if biggest in ("hist", "pos", "all"):
        if spec.resolution.mantissa_bits > _DEFAULT_MANTISSA_BITS:
            return "resolution.mantissa_bits"
        return "ovo_class_limit" if biggest == "hist" else "classes"
    return "classes"


def _buckets_held(spec: StreamSpec, seconds: int, max_skew: float | None) -> int:
    """Most buckets a window's ring holds: its span, and the future buckets stamps may reach."""
    n = max(1, min(spec.window_buckets, seconds))
    ahead = n
    if max_skew is not None:
        ahead = min(n, math.ceil(max(max_skew, 0.0) / (seconds / n)) + 1)
    return n + ahead


def worst_case_memory(spec: StreamSpec, max_skew: float | None = None) -> MemoryEstimate:
    """The most memory ``spec``'s stream can take, in bytes, by part.

    Parameters
    ----------
    spec : StreamSpec
    max_skew : float, optional
        The seconds a batch's time may lie ahead of the server clock (the server's
        ``max_clock_skew``); None counts one window span ahead, the engine's own bound.
    """
    fields: dict[str, int] = {}
    sparse = 0
    for name, shape in field_shapes(spec).items():
        size = math.prod(shape)
        fields[name] = 8 * size
        sparse += size * (8 + (4 if size < 2**31 else 8))  # State.to_sparse: index + value
    state = sum(fields.values())
    held = [_buckets_held(spec, s, max_skew) for s in spec.window_seconds]
    dense_copies = 1 + _REPORT_COPIES + 2 * len(held)  # cumulative, reports, open + cached sum
    exact = 0
    if spec.resolution.kind == "exact":
        C = spec.n_columns
        label = 8 if spec.task == "multiclass" else C  # int64 class index, or a bool row
        row = label + 4 * C + 8  # + float32 scores + float64 weight
        copies = 1 + _REPORT_COPIES + 2 * len(held)  # as the dense states
        exact = copies * spec.resolution.max_samples * row
    pending = PendingPredictions.worst_case_nbytes(spec.n_columns, spec.max_pending)
    return MemoryEstimate(
        state=state,
        fields=fields,
        dense_copies=dense_copies,
        sparse_buckets=sum(h - 1 for h in held),
        sparse_bucket=sparse,
        exact=exact,
        pending=pending,
    )

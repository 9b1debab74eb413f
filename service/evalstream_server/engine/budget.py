"""The most memory a stream can ever take, computed from its definition alone.

A server admits a stream only if this worst case fits its budgets (``--max-stream-memory``,
``--max-server-memory``), so memory is bounded before any work is accepted, whatever producers
send. The figure follows the structures that hold a stream, per count cell (tested against their
measured ``nbytes`` filled to the worst case, ``tests/engine/test_budget.py``):

* the cumulative state: small fields float64 (the score range float32, the cumulative state
  only); a score histogram cell float64 (once a weighted
  batch widened it), or a uint16 low part with a carry, which ``State`` widens to float64 before
  the carry costs more: at most 8 bytes a cell either way;
* per window, the buckets its ring holds (``WindowRing.max_buckets``, or fewer when the server's
  clock skew bound keeps stamps closer): closed buckets packed (``packed``: a histogram cell as a
  one- or two-byte column and a value of up to 8 bytes, each row's id and run length, the small
  fields as index and value), the open bucket (``open_bucket``: dense small fields, compacted
  entries of an int32 index and a value, and staged deltas up to its compaction threshold);
* the two dense float64 states a report builds (the window's sum and its prior reference);
* the raw rows (``state.exact_row_bytes``, weighted) up to ``max_samples`` in the exact resolution
  (in the cumulative state, each window's buckets and a report's two copies); in bins (exact while
  small) up to ``SMALL_ROWS`` in the cumulative state and a report's copies, ``WINDOW_ROWS`` in
  each window's ring;
* in each of these states and buckets, a binned multiclass or multilabel state's row sample
  (``row_sample``: ``SAMPLE_ROWS`` rows of a key, each column's bin, the label and a weight);
* the join table of predictions awaiting labels at ``max_pending`` (``PendingPredictions``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .counting import CUMULATIVE_ONLY, FIELD_DTYPES, SCATTER_FIELDS, field_shapes
from .open_bucket import COMPACT_AFTER
from .pending import PendingPredictions
from .row_sample import SAMPLE_ROWS, has_sample, sample_row_bytes
from .spec import StreamSpec
from .state import exact_row_bytes, small_rows, window_rows

__all__ = ["MemoryEstimate", "worst_case_memory", "format_bytes"]

_REPORT_COPIES = 2  # a report's window state and its prior-reference state
_DEFAULT_MANTISSA_BITS = 5


@dataclass(frozen=True)
class MemoryEstimate:
    """A stream's worst-case memory in bytes, by part.

    Attributes
    ----------
    fields : dict
        Bytes of each count field in one dense float64 state.
    cumulative, windows, reports, exact, pending : int
        The cumulative state, every window's buckets, a report's dense copies, the raw rows of
        the exact resolution or of a small binned stream (every copy), and the join table.
    buckets : int
        Buckets held by all windows together.
    """

    fields: dict[str, int]
    cumulative: int
    windows: int
    reports: int
    exact: int
    pending: int
    buckets: int

    @property
    def state(self) -> int:
        """Bytes of one dense float64 state."""
        return sum(self.fields.values())

    @property
    def total(self) -> int:
        return self.cumulative + self.windows + self.reports + self.exact + self.pending

    @property
    def fixed(self) -> int:
        """What the definition alone fixes: the cumulative state and a report's copies. The
        rest (window buckets, exact rows, the join table) grows with the data, up to its part
        of ``total``; a server charges it as it grows (``budget.MemoryLedger``)."""
        return self.cumulative + self.reports

    def blamed_field(self, spec: StreamSpec, limit: int) -> str:
        """The config field to change to need less than ``limit``: the state's largest field
        when the cumulative state and a report's copies alone pass it, else the largest other
        part."""
        alone = self.cumulative + self.reports
        if alone > limit or not (spec.windows or self.exact or self.pending):
            return _state_field(spec, max(self.fields, key=lambda k: self.fields[k]))
        parts = {"windows": self.windows, "max_pending": self.pending}
        if spec.resolution.kind == "exact":  # in bins the rows stop at SMALL_ROWS
            parts["resolution.max_samples"] = self.exact
        return max(parts, key=lambda k: parts[k])

    def describe(self) -> str:
        """The parts in words, largest field first."""
        top = sorted(self.fields.items(), key=lambda kv: -kv[1])[:2]
        fields = ", ".join(f"{k} {format_bytes(v)}" for k, v in top)
        words = [
            f"cumulative state {format_bytes(self.cumulative)} ({fields} as float64)",
            f"report copies {format_bytes(self.reports)}",
        ]
        if self.buckets:
            words.append(f"{self.buckets} window buckets {format_bytes(self.windows)}")
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
    if biggest in SCATTER_FIELDS:
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


def _packed_cells_bytes(shape: tuple[int, ...]) -> int:
    """The most a closed bucket's ``PackedCells`` of a histogram of ``shape`` take (all cells
    non-zero, 8-byte values)."""
    n_cols, cells = shape[-1], math.prod(shape)
    own = (1 if n_cols <= 2**8 else 2) * cells + 8 * cells + 16 * math.prod(shape[:-1])
    if n_cols <= 2**8:
        return own
    return min(own, 9 * cells + 16 * math.ceil(cells / 2**8))


def worst_case_memory(spec: StreamSpec, max_skew: float | None = None) -> MemoryEstimate:
    """The most memory ``spec``'s stream can take, in bytes, by part.

    Parameters
    ----------
    spec : StreamSpec
    max_skew : float, optional
        The seconds a batch's time may lie ahead of the server clock (the server's
        ``max_clock_skew``); None counts one window span ahead, the engine's own bound.
    """
    shapes = field_shapes(spec)
    itemsize = {n: np.dtype(FIELD_DTYPES.get(n, np.float64)).itemsize for n in shapes}
    fields = {name: itemsize[name] * math.prod(shape) for name, shape in shapes.items()}
    hist = {n: s for n, s in shapes.items() if n in SCATTER_FIELDS}
    cells = sum(math.prod(s) for s in hist.values())  # histogram cells
    small = sum(math.prod(s) for n, s in shapes.items() if n not in SCATTER_FIELDS)
    sample = SAMPLE_ROWS * sample_row_bytes(spec) if has_sample(spec) else 0
    # float64 (the score range float32), the histograms compact or widened before passing it
    small_bytes = sum(v for n, v in fields.items() if n not in SCATTER_FIELDS)
    cumulative = small_bytes + cells * 8 + sample
    # window buckets leave out the cumulative-only fields (the bins' score range)
    n_kept = sum(1 for n in shapes if n in CUMULATIVE_ONLY and n not in SCATTER_FIELDS)
    small_window = small - sum(
        math.prod(s) for n, s in shapes.items() if n in CUMULATIVE_ONLY and n not in SCATTER_FIELDS
    )
    # a closed bucket: per cell a column and a value (at most 8 bytes); per row its id and run
    # length (at most 4 bytes each) in each of two groups (cells holding 1, the others): rows of
    # the field's own (a uint8 column up to 256 bins, else uint16), or of 256 cells (a uint8
    # column) when that packs smaller, so at most the smaller of the two; the small fields as an
    # index (uint16 while the small fields span at most 2**16 cells, else int32) and a value,
    # with the fields' bounds
    small_index = 2 if small_window <= 2**16 else 4
    n_small_fields = len(shapes) - len(hist) - n_kept
    # window buckets keep the histograms but not the cumulative-only moments
    in_buckets = {n: s for n, s in hist.items() if n not in CUMULATIVE_ONLY}
    bucket_cells = sum(math.prod(s) for s in in_buckets.values())
    closed = sum(_packed_cells_bytes(s) for s in in_buckets.values())
    closed += (small_index + 8) * small_window + 8 * (n_small_fields + 1)
    closed += sample
    # the open bucket: dense small fields, compacted entries (int32 index, value up to 8 bytes),
    # and staged deltas (int64 index and float64 weight a cell) until they pass the threshold
    staged = 16 * max(COMPACT_AFTER, bucket_cells) if bucket_cells else 0
    opened = 8 * small_window + 12 * bucket_cells + staged + sample
    held = [_buckets_held(spec, s, max_skew) for s in spec.window_seconds]
    windows = sum(opened + (h - 1) * closed for h in held)
    reports = _REPORT_COPIES * (8 * cells + small_bytes + sample)
    row = exact_row_bytes(spec.n_columns, spec.task == "multiclass")
    if spec.resolution.kind == "exact":  # cumulative, a report's copies, each window's buckets
        exact = (1 + _REPORT_COPIES + len(held)) * spec.resolution.max_samples * row
    else:  # the cumulative state's, each ring's (a window's sum: no more), a report's copies
        exact = (small_rows() * (1 + _REPORT_COPIES) + window_rows() * len(held)) * row
    pending = PendingPredictions.worst_case_nbytes(spec.n_columns, spec.max_pending)
    return MemoryEstimate(
        fields=fields,
        cumulative=cumulative,
        windows=windows,
        reports=reports,
        exact=exact,
        pending=pending,
        buckets=sum(held),
    )

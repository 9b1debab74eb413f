"""Mergeable stream state: additive count arrays, plus raw scores (exact resolution or small).

Raw rows (``ExactScores``) are kept by every exact-resolution state, and by a binned state while it
holds at most ``SMALL_ROWS`` samples ("exact while small"): below that cap its metrics come from
the rows, as in the exact resolution; the first batch or merge that passes it drops the rows for
good and the counts (always kept) answer. ``State.join_rows`` is the one place of that rule.

The score histograms (``counting.SCATTER_FIELDS``) of an unweighted state are kept compact:
uint16 low parts and a carry of the cells that wrapped (``compact``), a quarter of float64's
memory and exact for any count. A weighted batch widens the field to float64. Readers that do
arithmetic on the counts take ``State.dense()``, whose fields are all float64.

The merge contract (tested with Hypothesis): merging two states equals having fed one state the
other's batches; merge is commutative and associative (exactly, for integer counts); batch order and
batch split never change a state; ``State.from_bytes(s.to_bytes()) == s``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import compact
from .batch import Batch
from .counting import (
    ADDED_FIELDS,
    FIELD_DTYPES,
    MAX_FIELDS,
    RANGE_MIXED,
    SCATTER_FIELDS,
    Delta,
    RangeDelta,
    Scatter,
    ScatterMax,
    compute_delta,
    field_shapes,
    normalise_range,
)
from .errors import CapacityError, IncompatibleStateError, InvalidInputError
from .packed import PackedCells, PackedFields
from .row_sample import RowSample, has_sample
from .spec import StreamSpec

__all__ = [
    "State",
    "ExactScores",
    "SparseCounts",
    "SMALL_ROWS",
    "WINDOW_ROWS",
    "exact_row_bytes",
    "small_rows",
    "window_rows",
]

_MAGIC = b"EVSTATE\x00"
_VERSION = 1

# Samples a binned state keeps as raw rows before it turns into bins alone: 4,096 rows are 164 KiB
# at K = 10 unweighted (41 bytes a row: ten float32 scores and a uint8 label; 49 weighted). A
# window's ring of buckets keeps at most WINDOW_ROWS in all: a window that holds rows in steady
# state costs them on top of its buckets' counts (bench/exact_small.py, README).
SMALL_ROWS = 4096
WINDOW_ROWS = 1024


def small_rows() -> int:
    """``SMALL_ROWS`` as it is now (tests lower it to cross the cap with few samples)."""
    return SMALL_ROWS


def window_rows() -> int:
    """A window ring's cap: ``WINDOW_ROWS``, and never more than ``SMALL_ROWS``."""
    return min(WINDOW_ROWS, SMALL_ROWS)


def _label_dtype(n_columns: int, multiclass: bool) -> np.dtype:
    """How ``ExactScores`` keeps labels: the smallest unsigned class index, or a bool row."""
    if not multiclass:
        return np.dtype(bool)
    return np.dtype(np.uint8 if n_columns <= 256 else np.uint16 if n_columns <= 65536 else np.int64)


def exact_row_bytes(n_columns: int, multiclass: bool, weighted: bool = True) -> int:
    """Bytes of one row kept by ``ExactScores`` (label, float32 scores, float64 weight)."""
    label = _label_dtype(n_columns, multiclass).itemsize * (1 if multiclass else n_columns)
    return label + 4 * n_columns + (8 if weighted else 0)


@dataclass
class ExactScores:
    """Raw float32 scores with their labels and weights, in chunks.

    A batch is copied in (a row is ``exact_row_bytes``: labels as the smallest unsigned class
    index, no weights kept for an unweighted batch), so the rows hold no batch buffer alive."""

    n_columns: int
    multiclass: bool
    labels: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    weights: list[np.ndarray | None] = field(default_factory=list)  # None: every weight 1
    n: int = 0

    def append(self, batch: Batch) -> None:
        self.labels.append(
            np.array(batch.labels, dtype=_label_dtype(self.n_columns, self.multiclass))
        )
        self.scores.append(np.array(batch.scores, dtype=np.float32))
        w = batch.weights
        self.weights.append(None if w is None else np.array(w, dtype=np.float64))
        self.n += batch.n

    def extend(self, other: ExactScores) -> None:
        self.labels.extend(other.labels)
        self.scores.extend(other.scores)
        self.weights.extend(other.weights)
        self.n += other.n

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All samples as ``(labels, scores, weights)``, compacted into one chunk."""
        if len(self.scores) != 1:
            C = self.n_columns
            lab_dtype = _label_dtype(C, self.multiclass)
            lab_shape = (0,) if self.multiclass else (0, C)
            if any(w is not None for w in self.weights):
                runs = zip(self.weights, self.scores, strict=True)
                weights: np.ndarray | None = np.concatenate(
                    [np.ones(s.shape[0]) if w is None else w for w, s in runs]
                )
            else:
                weights = None
            self.labels = [
                np.concatenate(self.labels) if self.labels else np.zeros(lab_shape, lab_dtype)
            ]
            self.scores = [
                np.concatenate(self.scores) if self.scores else np.zeros((0, C), np.float32)
            ]
            self.weights = [weights]
        w = self.weights[0]
        return self.labels[0], self.scores[0], np.ones(self.n) if w is None else w

    def copy(self) -> ExactScores:
        out = ExactScores(self.n_columns, self.multiclass)
        out.extend(self)
        return out

    @property
    def nbytes(self) -> int:
        parts = (self.labels, self.scores, self.weights)
        return sum(a.nbytes for part in parts for a in part if a is not None)


Entries = tuple[np.ndarray, np.ndarray]  # flat indices of non-zero cells, their values


@dataclass
class SparseCounts:
    """Non-zero entries of a state's count arrays (closed window buckets are kept this way):
    the histograms packed by row (``PackedCells``), the small fields together (``PackedFields``).
    """

    cells: dict[str, PackedCells]
    small: PackedFields
    exact: ExactScores | None
    sample: RowSample | None = None  # the bucket's row sample (``row_sample``)

    @classmethod
    def pack(
        cls,
        entries: dict[str, Entries],
        shapes: dict[str, tuple[int, ...]],
        exact: ExactScores | None,
        sample: RowSample | None = None,
    ) -> SparseCounts:
        """Entries of every field, packed (``sample``: a copy trimmed to its rows)."""
        cells = {
            name: PackedCells(idx, values, shapes[name][-1])
            for name, (idx, values) in entries.items()
            if name in SCATTER_FIELDS
        }
        small = {name: e for name, e in entries.items() if name not in SCATTER_FIELDS}
        sizes = {name: int(np.prod(shapes[name])) for name in small}
        if sample is not None:
            kept = RowSample(sample.spec, max(sample.size, 1))
            kept.merge_from(sample)
            sample = kept
        return cls(cells, PackedFields(small, sizes), exact, sample)

    def items(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(field, flat indices, values)`` of every field."""
        out = self.small.unpack()
        out += [(name, *c.unpack()) for name, c in self.cells.items()]
        return out

    @property
    def nbytes(self) -> int:
        total = self.small.nbytes + sum(c.nbytes for c in self.cells.values())
        total += self.sample.nbytes if self.sample is not None else 0
        return total + (self.exact.nbytes if self.exact is not None else 0)


class State:
    """Counts for one stream over some set of batches.

    Parameters
    ----------
    spec : StreamSpec
        Fixes the layout; see ``StreamSpec.layout_key``.
    """

    def __init__(self, spec: StreamSpec, wide: bool = False) -> None:
        self.spec = spec
        self.counts: dict[str, np.ndarray] = {
            name: np.zeros(
                shape,
                np.uint16
                if name in SCATTER_FIELDS and not wide
                else FIELD_DTYPES.get(name, np.float64),
            )
            for name, shape in field_shapes(spec).items()
        }
        # Wraps of the uint16 cells that passed 65,535, per compact field (see ``compact``).
        self.carry: dict[str, compact.Carry] = {}
        # Raw rows: always in the exact resolution; in bins while the state is small (None once
        # it passed SMALL_ROWS, or when its rows were never kept: then the counts answer).
        self.exact: ExactScores | None = ExactScores(spec.n_columns, spec.task == "multiclass")
        # rows for the intervals of binned averages (``row_sample``)
        self.sample: RowSample | None = RowSample(spec) if has_sample(spec) else None

    # -- compact fields ------------------------------------------------------------------------
    def is_compact(self, name: str) -> bool:
        return self.counts[name].dtype == np.uint16

    def _widen(self, name: str) -> np.ndarray:
        """Turn a compact field into float64 for good (a weighted batch arrived)."""
        if self.is_compact(name):
            self.counts[name] = compact.widen(self.counts[name], self.carry.pop(name, {}))
        return self.counts[name]

    def values(self, name: str) -> np.ndarray:
        """Field ``name`` as float64 (a new array for a compact field, else the field itself)."""
        arr = self.counts[name]
        if arr.dtype == np.uint16:
            return compact.widen(arr, self.carry.get(name, {}))
        return arr

    def _add_field(self, name: str, d: np.ndarray | Scatter | ScatterMax) -> None:
        arr = self.counts[name]
        if name in MAX_FIELDS:  # float64, merged by maximum (then normalised)
            if isinstance(d, RangeDelta):
                d.add_to(arr)  # normalised by the delta
            elif isinstance(d, ScatterMax):
                d.add_to(arr)
                normalise_range(arr)
            else:
                np.maximum(arr, np.asarray(d), out=arr)
                normalise_range(arr)
            return
        assert not isinstance(d, ScatterMax)
        if arr.dtype == np.uint16:
            if isinstance(d, Scatter) and d.weights is None:
                compact.add_unit_cells(arr, self.carry.setdefault(name, {}), d.index)
                self._check_carry(name)
                return
            if not isinstance(d, Scatter) and compact.add_dense(
                arr, self.carry.setdefault(name, {}), np.asarray(d)
            ):
                self._check_carry(name)
                return
            arr = self._widen(name)
        if isinstance(d, Scatter):
            d.add_to(arr)
        else:
            arr += d

    def _check_carry(self, name: str) -> None:
        """Widen a field whose carry costs more than float64 cells would add (6 bytes a cell), so
        a compact field never takes more than 8 bytes a cell: its worst case is float64's."""
        carry = self.carry.get(name)
        if carry and compact.CARRY_ENTRY_BYTES * len(carry) > 6 * self.counts[name].size:
            self._widen(name)

    def _add_entries(self, name: str, idx: np.ndarray, values: np.ndarray) -> None:
        """Add ``values`` at distinct flat cells ``idx`` (their maximum, for MAX_FIELDS)."""
        arr = self.counts[name]
        if name in MAX_FIELDS:
            flat = arr.ravel()
            flat[idx] = np.maximum(flat[idx], values)
            normalise_range(arr)
            return
        if arr.dtype == np.uint16:
            if values.dtype.kind == "u" or compact.integral(values):
                compact.add_counts(arr, self.carry.setdefault(name, {}), idx, values)
                self._check_carry(name)
                return
            arr = self._widen(name)
        arr.ravel()[idx] += values

    def dense(self) -> State:
        """A copy whose count fields are all float64 (what the metric code reads; the score range
        stays float32, its bit patterns)."""
        out = State.__new__(State)
        out.spec = self.spec
        out.counts = {
            k: v.copy() if v.dtype != np.uint16 else self.values(k) for k, v in self.counts.items()
        }
        out.carry = {}
        out.exact = self.exact.copy() if self.exact is not None else None
        out.sample = self.sample.copy() if self.sample is not None else None
        return out

    def as_float(self) -> State:
        """``self`` when every field is float64 already, else ``dense()``."""
        if any(v.dtype == np.uint16 for v in self.counts.values()):
            return self.dense()
        return self

    # -- ingest -------------------------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(round(self.counts["n"][0]))

    @property
    def weight_total(self) -> float:
        return float(self.counts["n"][1])

    def check_capacity(self, n_more: int) -> None:
        """Raise ``CapacityError`` if ``n_more`` samples would not fit (exact resolution; a binned
        state turns into bins instead)."""
        if self.spec.resolution.kind != "exact" or self.exact is None:
            return
        if self.exact.n + n_more > self.spec.resolution.max_samples:
            cap = self.spec.resolution.max_samples
            raise CapacityError(
                "y_score",
                f"at most {cap} samples in total for an exact-resolution stream",
                f"{self.exact.n} kept + {n_more} in this batch",
                "use the binned resolution (bounded memory) or raise max_samples",
            )

    def add_delta(self, delta: Delta, batch: Batch | None = None) -> None:
        """Add counts computed by ``compute_delta`` (fields it lacks stay as they are); exact
        states also keep ``batch`` (a delta of predictions alone comes without one)."""
        if batch is not None:
            self.join_rows(batch)
        if self.sample is not None and batch is not None:
            self.sample.add(batch)
        counts = self.counts
        for name, d in delta.items():
            arr = counts[name]
            # the common case inline (a dozen small fields a batch): a dense delta into float64
            if type(d) is np.ndarray and arr.dtype.char == "d" and name not in MAX_FIELDS:
                arr += d
            else:
                self._add_field(name, d)

    @property
    def is_exact(self) -> bool:
        """Whether the metrics come from raw rows (exact resolution, or a binned state below
        ``SMALL_ROWS``)."""
        return self.exact is not None

    @property
    def rows_until_bins(self) -> int | None:
        """Samples a binned state may still take before it turns into bins (0 once it has);
        None in the exact resolution."""
        if self.spec.resolution.kind == "exact":
            return None
        return 0 if self.exact is None else SMALL_ROWS - self.exact.n

    def to_bins(self) -> None:
        """Drop the raw rows of a binned state for good (its counts answer from now on)."""
        if self.spec.resolution.kind != "exact":
            self.exact = None

    def join_rows(self, rows: Batch | ExactScores | None) -> None:
        """Add raw rows (a batch, or another part's rows; None: that part kept counts only).

        The exact resolution keeps every row up to ``max_samples`` (``CapacityError`` past it).
        A binned state keeps them while it holds at most ``SMALL_ROWS`` samples, and turns into
        bins when a part without rows joins or the total passes the cap: raw rows are kept iff
        every part kept them and together they are at most the cap (whatever the merge order)."""
        if self.exact is None:
            return
        if self.spec.resolution.kind == "exact":
            if rows is None:
                return
            self.check_capacity(rows.n)
        elif rows is None or self.exact.n + rows.n > SMALL_ROWS:
            self.exact = None
            return
        if isinstance(rows, Batch):
            self.exact.append(rows)
        else:
            self.exact.extend(rows)

    def update(self, batch: Batch) -> None:
        """Count one validated batch."""
        self.check_capacity(batch.n)
        self.add_delta(compute_delta(self.spec, batch), batch)

    # -- merge ---------------------------------------------------------------------------------
    def _check_compatible(self, other: State) -> None:
        a, b = self.spec, other.spec
        for what, left, right in (
            ("task", a.task, b.task),
            ("classes", list(a.classes), list(b.classes)),
            ("resolution", str(a.resolution), str(b.resolution)),
            ("ovo layout", a.full_ovo, b.full_ovo),
            ("thresholds", list(a.thresholds), list(b.thresholds)),
            ("top_k", a.k_max, b.k_max),
            ("calibration_bins", a.calibration_bins, b.calibration_bins),
            ("low_confidence", a.low_confidence, b.low_confidence),
        ):
            if left != right:
                raise IncompatibleStateError(repr(left), repr(right), what)

    def merge_from(self, other: State) -> State:
        """Add ``other`` into this state in place; returns ``self``."""
        self._check_compatible(other)
        self.join_rows(other.exact)
        if self.sample is not None and other.sample is not None:
            self.sample.merge_from(other.sample)
        for name, arr in other.counts.items():
            if name in MAX_FIELDS:
                np.maximum(self.counts[name], arr, out=self.counts[name])
                normalise_range(self.counts[name])
            elif arr.dtype == np.uint16:
                self._add_entries(name, *compact.nonzero_values(arr, other.carry.get(name, {})))
            elif self.is_compact(name) and compact.integral(arr):
                self._add_field(name, arr)
            else:
                self._widen(name)
                self.counts[name] += arr
        return self

    def merge(self, other: State) -> State:
        """A new state holding both ``self`` and ``other``."""
        return self.copy().merge_from(other)

    def copy(self) -> State:
        out = State.__new__(State)
        out.spec = self.spec
        out.counts = {k: v.copy() for k, v in self.counts.items()}
        out.carry = {k: dict(v) for k, v in self.carry.items()}
        out.exact = self.exact.copy() if self.exact is not None else None
        out.sample = self.sample.copy() if self.sample is not None else None
        return out

    def reset(self) -> None:
        fresh = State(self.spec)
        self.counts = fresh.counts
        self.carry = {}
        self.exact = fresh.exact
        if self.sample is not None:
            self.sample.clear()

    # -- sparse form (window buckets) ----------------------------------------------------------
    def to_sparse(self) -> SparseCounts:
        entries: dict[str, Entries] = {}
        for name, arr in self.counts.items():
            if arr.dtype == np.uint16:
                entries[name] = compact.nonzero_values(arr, self.carry.get(name, {}))
                continue
            flat = arr.ravel()
            idx = np.flatnonzero(flat)
            index = idx.astype(np.int32) if flat.size < 2**31 else idx
            entries[name] = (index, flat[idx])
        exact = self.exact.copy() if self.exact is not None else None
        if exact is not None:
            exact.arrays()
        shapes = {k: v.shape for k, v in self.counts.items()}
        return SparseCounts.pack(entries, shapes, exact, self.sample)

    def add_sparse(self, sparse: SparseCounts) -> None:
        for name, idx, values in sparse.items():
            self._add_entries(name, idx, values)
        self.join_rows(sparse.exact)
        if self.sample is not None and sparse.sample is not None:
            self.sample.merge_from(sparse.sample)

    @classmethod
    def from_sparse(cls, spec: StreamSpec, sparse: SparseCounts) -> State:
        out = cls(spec)
        out.add_sparse(sparse)
        return out

    # -- equality and bytes --------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        if self.spec.layout_key() != other.spec.layout_key():
            return False
        if any(not np.array_equal(self.values(k), other.values(k)) for k in self.counts):
            return False
        if self.sample != other.sample:
            return False
        if self.exact is None or other.exact is None:
            return self.exact is None and other.exact is None
        a, b = self.exact.arrays(), other.exact.arrays()
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    __hash__ = None  # type: ignore[assignment]

    @property
    def nbytes(self) -> int:
        total = sum(v.nbytes for v in self.counts.values())
        total += compact.CARRY_ENTRY_BYTES * sum(len(c) for c in self.carry.values())
        total += self.sample.nbytes if self.sample is not None else 0
        return total + (self.exact.nbytes if self.exact is not None else 0)

    def to_bytes(self) -> bytes:
        """Versioned binary form: magic, version, JSON header (spec and layout), raw arrays."""
        arrays = [np.ascontiguousarray(self.values(k), dtype="<f8") for k in self.counts]
        header: dict[str, Any] = {
            "spec": self.spec.to_dict(),
            "fields": [[k, list(v.shape)] for k, v in self.counts.items()],
            "exact": None,
        }
        if self.exact is not None:
            labels, scores, weights = self.exact.arrays()
            header["exact"] = {"n": int(scores.shape[0])}
            arrays += [
                np.ascontiguousarray(labels, dtype="<i8" if self.exact.multiclass else "u1"),
                np.ascontiguousarray(scores, dtype="<f4"),
                np.ascontiguousarray(weights, dtype="<f8"),
            ]
        if self.sample is not None:
            header["sample"] = self.sample.size
            arrays += self.sample.arrays()
        head = json.dumps(header, separators=(",", ":")).encode()
        parts = [_MAGIC, struct.pack("<II", _VERSION, len(head)), head]
        parts += [a.tobytes() for a in arrays]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> State:
        """Inverse of ``to_bytes``; raises ``InvalidInputError`` on anything else."""
        view = memoryview(data)
        if bytes(view[:8]) != _MAGIC or len(view) < 16:
            raise InvalidInputError("state", "bytes written by State.to_bytes", "another format")
        version, head_len = struct.unpack("<II", view[8:16])
        if version != _VERSION:
            raise InvalidInputError("state", f"format version {_VERSION}", f"version {version}")
        try:
            header = json.loads(bytes(view[16 : 16 + head_len]))
            spec = StreamSpec.from_dict(header["spec"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError("state", "a valid header", f"{exc}") from exc
        state = cls(spec)
        offset = 16 + head_len
        expected = {k: list(v.shape) for k, v in state.counts.items()}
        written = {k: s for k, s in header["fields"]}
        # States written before the label-free fields existed load with those fields at zero.
        if any(expected.get(k) != s for k, s in written.items()) or (
            set(expected) - set(written) - set(ADDED_FIELDS)
        ):
            raise InvalidInputError("state", f"fields {expected}", f"{header['fields']}")

        def take(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
            nonlocal offset
            count = int(np.prod(shape))
            size = np.dtype(dtype).itemsize * count
            if offset + size > len(view):
                raise InvalidInputError("state", "complete array data", "truncated bytes")
            arr = np.frombuffer(view[offset : offset + size], dtype=dtype).reshape(shape)
            offset += size
            return arr.astype(dtype.lstrip("<"), copy=True)

        for name, shape in header["fields"]:
            values = take("<f8", tuple(shape)).astype(np.float64)
            if state.is_compact(name) and compact.integral(values):
                state._add_field(name, values)  # integer counts load compact
            else:
                state.counts[name] = values.astype(FIELD_DTYPES.get(name, np.float64))
        if "score_range" in state.counts and "score_range" not in written:
            # written before bins knew their score range: every occupied bin may be mixed
            state.counts["score_range"][:, _occupied_bins(state)] = RANGE_MIXED
        if "score_range" in state.counts:
            normalise_range(state.counts["score_range"])
        if header.get("exact") is None:
            state.to_bins()  # binned, written without rows (past the cap, or before they were kept)
        if state.exact is not None:
            n = int((header.get("exact") or {}).get("n", 0))
            C = spec.n_columns
            multiclass = state.exact.multiclass
            labels = take("<i8" if multiclass else "u1", (n,) if multiclass else (n, C))
            scores = take("<f4", (n, C)).astype(np.float32)
            weights = take("<f8", (n,))
            if n:
                state.exact.append(
                    Batch(
                        labels.astype(np.int64) if multiclass else labels.astype(bool),
                        scores,
                        None if bool(np.all(weights == 1.0)) else weights,
                    )
                )
        if state.sample is not None:  # states written before the sample existed have none
            read_sample(state.sample, int(header.get("sample") or 0), take, "state")
        if offset != len(view):
            raise InvalidInputError("state", f"{offset} bytes", f"{len(view)} bytes")
        return state


def read_sample(
    sample: RowSample, n: int, take: Callable[[str, tuple[int, ...]], np.ndarray], what: str
) -> None:
    """Load ``n`` sampled rows written by ``RowSample.arrays`` through ``take(dtype, shape)``."""
    if not 0 <= n <= sample.capacity:
        raise InvalidInputError(what, f"at most {sample.capacity} sampled rows", str(n))
    parts = [take(dtype, (n, *row)) for dtype, row in sample.dtypes()]
    try:
        sample.load(*parts)
    except ValueError as exc:
        raise InvalidInputError(what, f"a row sample with {exc}", "other values") from exc


def _occupied_bins(state: State) -> np.ndarray:
    """Bins holding any sample in any column of a binned state (boolean, shape (B,))."""
    c = state.counts
    hist = c["hist"] if "hist" in c else c["all"]
    return np.asarray(hist.reshape(-1, hist.shape[-1]).any(axis=0))

"""A small deterministic sample of rows, for the ci95 of binned averages (``intervals.py``).

The binned histograms give each class's DeLong variance but not how one sample's columns go
together, which the macro, weighted and micro AUC's variance needs (``intervals.py``). A
``RowSample`` keeps up to ``SAMPLE_ROWS`` distinct rows (each column's bin and the label) of a
state: the rows whose 64-bit hash of (scores, label) is smallest (a bottom-k sample). Identical
rows share a hash and are kept once, with the sum of their squared weights, so a stream with
many repeated rows still samples many different ones. Rows of weight 0 change no metric and
are left out.

Merge keeps the smallest hashes of both samples (summing the squared weights of a hash both
hold): the bottom-k of a union is within the union of the bottom-k's, so a merged sample equals
the sample of the merged rows, whatever the batch split, order and grouping (exactly, for
integer weights). A window's sample (the sum of its buckets) is therefore the one a stream fed
only that window's rows would keep. Its size is fixed: ``SAMPLE_ROWS * row_bytes`` a state,
allocated with the state.

Every kept row stands for the same share of the distinct rows, so the sample's sums, scaled by
one common factor, estimate the state's sums over rows; the report uses only ratios of them
(correlations), and takes the variances themselves from the histograms.
"""

from __future__ import annotations

import functools

import numpy as np

from . import fastcount
from .batch import Batch
from .layout import BinLayout
from .spec import StreamSpec

__all__ = [
    "SAMPLE_ROWS",
    "RowSample",
    "row_keys",
    "key_constants",
    "remember_keys",
    "sample_row_bytes",
    "has_sample",
    "occupied_index",
    "batch_entries",
]

# 64 rows (2.1 KiB a state at K = 10: 33 bytes a row). Measured (bench/interval_coverage.py):
# the intervals cover 93-97% from 32 rows on; the width's spread against the exact resolution's
# narrows with the rows (multilabel with correlated labels, 5th-95th percentile of the ratio:
# 0.87-1.15 at 64 rows, 0.91-1.13 at 128, 0.92-1.09 at 256). The memory: cumulative + 5m + 1h
# at K = 10 keeps about 20 states (the 1.5 MiB a stream target of bench/fleet.py).
SAMPLE_ROWS = 64

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (xor-shift, multiply, xor-shift), element-wise on uint64."""
    h = h ^ (h >> np.uint64(32))
    h = h * _MIX1
    return np.asarray(h ^ (h >> np.uint64(29)), dtype=np.uint64)


@functools.lru_cache(maxsize=64)
def _constants(n: int, salt: int) -> np.ndarray:
    """``n`` odd 64-bit multipliers, fixed for good (stored keys must not change)."""
    base = (np.arange(n, dtype=np.uint64) + np.uint64(1 + 1000 * salt)) * _GOLDEN
    out = _mix(_mix(base) * _MIX2) | np.uint64(1)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=64)
def _all_constants(C: int, multiclass: bool) -> np.ndarray:
    """The constants of ``row_keys`` in one array, as the compiled kernel takes them: the score
    words', the odd last column's, then the label's (one, or one a column)."""
    parts = [_constants(C // 2, 0)] if C // 2 else []
    if C % 2:
        parts.append(_constants(1, 3))
    parts.append(_constants(1, 1) if multiclass else _constants(C, 2))
    out = np.concatenate(parts)
    out.setflags(write=False)
    return out


def key_constants(spec: StreamSpec) -> np.ndarray | None:
    """The constants ``row_keys`` multiplies a row's words by, for the counting kernels to key
    the rows in their pass (``remember_keys``); None for a spec whose states keep no sample."""
    if not has_sample(spec):
        return None
    return _all_constants(spec.n_columns, spec.task == "multiclass")


def remember_keys(batch: Batch, keys: np.ndarray) -> None:
    """Keep ``row_keys`` of ``batch``, computed by a counting kernel, for ``batch_keys``."""
    object.__setattr__(batch, "_row_keys", keys)


def row_keys(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's float32 scores and label, (n,) uint64; equal rows, equal keys.

    The scores' bits, two float32 columns to a 64-bit word, times odd constants, summed with
    wrapping (one integer matrix product), plus the label's share, then mixed."""
    s = np.ascontiguousarray(scores, dtype=np.float32)
    n, C = s.shape
    lab = np.asarray(labels)
    fast = fastcount.row_keys(s, lab, _all_constants(C, lab.ndim == 1))
    if fast is not None:
        return fast
    with np.errstate(over="ignore"):
        pairs = C // 2
        h = np.zeros(n, np.uint64)
        if pairs:
            words = s[:, : 2 * pairs] if C % 2 else s
            h = np.ascontiguousarray(words).view(np.uint64) @ _constants(pairs, 0)
        if C % 2:
            h = h + s[:, -1].view(np.uint32).astype(np.uint64) * _constants(1, 3)[0]
        if lab.ndim == 1:  # a class index
            h = h + lab.astype(np.uint64) * _constants(1, 1)[0]
        else:  # a multi-hot row
            h = h + lab.astype(np.uint64) @ _constants(C, 2)
        return _mix(h)


def batch_keys(batch: Batch) -> np.ndarray:
    """``row_keys`` of a batch, computed once: the cumulative state and each window's bucket
    take the same batch (kept on the batch object, which is frozen otherwise)."""
    keys = batch.__dict__.get("_row_keys")
    if keys is None:
        keys = row_keys(batch.labels, batch.scores)
        remember_keys(batch, keys)
    return np.asarray(keys)


def occupied_index(occupied: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows' (r, C) ``bins`` as indices into ``occupied`` (the ascending bins a reader keeps),
    and which rows have every bin there (all of them, unless the counts were edited)."""
    top = max(int(occupied[-1]) if occupied.size else -1, int(bins.max()) if bins.size else -1)
    lookup = np.full(top + 1, -1, dtype=np.int64)
    lookup[occupied] = np.arange(occupied.size)
    index = lookup[bins]
    return np.maximum(index, 0), np.asarray((index >= 0).all(axis=1), dtype=bool)


Entries = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # keys, bins, labels, wsq
_FEW = 8  # entries a full sample takes one by one (RowSample._insert_few) instead of by a sort
# candidate rows per kept row past which a full sample takes the batch's own sample (one sort)
# instead of the candidates one by one
_MANY = 4


def _batch_entries(batch: Batch, spec: StreamSpec, capacity: int) -> Entries:
    """The batch's own sample: its ``capacity`` distinct rows of positive weight with the
    smallest keys, ascending, with their bins, labels and summed squared weights. A state takes
    at most ``capacity`` rows of a batch, all among these, so the cumulative state and each
    window's bucket share them: computed once, kept on the batch object (frozen otherwise)."""
    cached = batch.__dict__.get("_row_entries")
    if cached is not None and cached[0] == (spec.resolution.mantissa_bits, capacity):
        return cached[1]  # type: ignore[no-any-return]
    keys = batch_keys(batch)
    w = batch.weights
    idx = np.arange(batch.n) if w is None else np.flatnonzero(w > 0)
    if idx.size > 4 * capacity:  # the smallest keys first, in linear time
        cut = np.partition(keys[idx], capacity - 1)[capacity - 1]
        smallest = idx[keys[idx] <= cut]
        if np.unique(keys[smallest]).size >= capacity:  # else repeated rows: take them all
            idx = smallest
    uniq, first, inverse = np.unique(keys[idx], return_index=True, return_inverse=True)
    sq = np.ones(idx.size) if w is None else np.asarray(w, np.float64)[idx] ** 2
    wsq = np.bincount(inverse.ravel(), weights=sq, minlength=uniq.size)
    take = min(uniq.size, capacity)
    rows = idx[first[:take]]
    bins = _bins(spec, batch.scores[rows])
    entries = (uniq[:take], bins, np.asarray(batch.labels)[rows], wsq[:take])
    object.__setattr__(batch, "_row_entries", ((spec.resolution.mantissa_bits, capacity), entries))
    return entries


def _bins(spec: StreamSpec, scores: np.ndarray) -> np.ndarray:
    """The bins of a few rows' scores (``BinLayout.bin_of``; compiled when the kernel is on)."""
    m = spec.resolution.mantissa_bits
    fast = fastcount.bins(scores, m)
    return fast if fast is not None else BinLayout(m).bin_of(scores)


def _few_distinct(
    keys: np.ndarray, idx: np.ndarray, w: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique``'s distinct keys (ascending), first row and summed squared weight of the
    rows ``idx`` (a few), in Python: the same arrays, without its sorts."""
    first: dict[int, int] = {}
    wsq: dict[int, float] = {}
    weights = None if w is None else np.asarray(w, np.float64)[idx].tolist()
    for j, (row, key) in enumerate(zip(idx.tolist(), keys[idx].tolist(), strict=True)):
        sq = 1.0 if weights is None else weights[j] ** 2
        if key in first:
            wsq[key] += sq
        else:
            first[key], wsq[key] = row, sq
    uniq = sorted(first)
    return (
        np.array(uniq, dtype=np.uint64),
        np.array([first[k] for k in uniq], dtype=np.int64),
        np.array([wsq[k] for k in uniq], dtype=np.float64),
    )


def batch_entries(batch: Batch, spec: StreamSpec) -> Entries:
    """``(keys, bins, labels, wsq)`` of the batch's own sample of ``SAMPLE_ROWS`` rows: what an
    empty ``RowSample`` keeps of it (the Redis store sends these, ``store/redis_rows.py``)."""
    return _batch_entries(batch, spec, SAMPLE_ROWS)


def has_sample(spec: StreamSpec) -> bool:
    """Binned multiclass and multilabel states keep a sample (binary has no average)."""
    return spec.resolution.kind == "bins" and spec.task in ("multiclass", "multilabel")


def _bin_dtype(spec: StreamSpec) -> type[np.unsignedinteger]:
    return np.uint16 if spec.resolution.mantissa_bits <= 8 else np.uint32  # 38,148 bins at 8


def _label_dtype(spec: StreamSpec) -> type[np.unsignedinteger]:
    K = spec.n_columns
    return np.uint8 if K <= 2**8 else (np.uint16 if K <= 2**16 else np.uint32)


def sample_row_bytes(spec: StreamSpec) -> int:
    """Bytes of one sampled row: key, each column's bin, the label, the squared weight."""
    C = spec.n_columns
    label = np.dtype(_label_dtype(spec)).itemsize if spec.task == "multiclass" else C
    return 8 + np.dtype(_bin_dtype(spec)).itemsize * C + label + 4


class RowSample:
    """Up to ``capacity`` distinct rows of a state, those of the smallest ``row_keys``.

    Arrays are allocated at full capacity; the first ``size`` rows, in ascending key order,
    are the sample. ``wsq`` is the sum of the squared weights of the rows an entry stands for.
    """

    __slots__ = ("spec", "capacity", "multiclass", "size", "keys", "bins", "labels", "wsq")

    def __init__(self, spec: StreamSpec, capacity: int = SAMPLE_ROWS) -> None:
        self.spec = spec
        self.capacity = capacity
        C = spec.n_columns
        self.multiclass = spec.task == "multiclass"
        self.size = 0
        # one allocation, the arrays views of it in falling alignment (a state's sample lives as
        # long as the state: one block instead of four keeps the heap less fragmented)
        bins_dtype = np.dtype(_bin_dtype(spec))
        label_dtype = np.dtype(_label_dtype(spec) if self.multiclass else bool)
        label_shape = (capacity,) if self.multiclass else (capacity, C)
        sizes = [8 * capacity, 4 * capacity, bins_dtype.itemsize * capacity * C]
        sizes.append(label_dtype.itemsize * int(np.prod(label_shape)))
        block = np.zeros(sum(sizes), np.uint8)
        at = np.cumsum([0, *sizes])
        self.keys = block[at[0] : at[1]].view(np.uint64)
        self.wsq = block[at[1] : at[2]].view(np.float32)
        self.bins = block[at[2] : at[3]].view(bins_dtype).reshape(capacity, C)
        self.labels = block[at[3] : at[4]].view(label_dtype).reshape(label_shape)

    # -- adding rows ---------------------------------------------------------------------------
    def add(self, batch: Batch) -> None:
        """Offer a batch's rows (those of positive weight)."""
        if batch.n == 0:
            return
        keys = batch_keys(batch)
        cap = self.capacity
        idx = None
        if self.size == cap and batch.weights is None and self._insert_compiled(batch, keys):
            return
        if self.size == cap:  # full: only rows up to the largest kept key can enter
            idx = (keys <= self.keys[cap - 1]).nonzero()[0]  # few, in a long stream
        if idx is None or idx.size > _MANY * cap:  # the batch's own sample, shared by the states
            self._merge(*_batch_entries(batch, self.spec, cap))
            return
        w = batch.weights
        if w is not None:
            idx = idx[w[idx] > 0]
        if idx.size == 0:
            return
        if idx.size <= _FEW:  # the common case in a long stream: a few rows, without sorts
            uniq, rows, wsq = _few_distinct(keys, idx, w)
        else:
            uniq, first, inverse = np.unique(keys[idx], return_index=True, return_inverse=True)
            sq = np.ones(idx.size) if w is None else np.asarray(w, np.float64)[idx] ** 2
            wsq = np.bincount(inverse.ravel(), weights=sq, minlength=uniq.size)
            rows = idx[first]
        bins = _bins(self.spec, batch.scores[rows])
        self._merge(uniq, bins, np.asarray(batch.labels)[rows], wsq)

    def _insert_compiled(self, batch: Batch, keys: np.ndarray) -> bool:
        """An unweighted batch into a full sample in one compiled pass (``fastcount``), the
        arrays the numpy path leaves; False (nothing done) when that kernel does not apply."""
        return fastcount.sample_insert(
            self.keys,
            self.wsq,
            self.bins,
            self.labels,
            keys,
            batch.scores,
            np.asarray(batch.labels),
            self.spec.resolution.mantissa_bits,
            _MANY * self.capacity,  # more candidates: add's sort, as above
        )

    def merge_from(self, other: RowSample) -> None:
        n = other.size
        self._merge(other.keys[:n], other.bins[:n], other.labels[:n], other.wsq[:n])

    def _merge(
        self, keys: np.ndarray, bins: np.ndarray, labels: np.ndarray, wsq: np.ndarray
    ) -> None:
        """Keep the smallest distinct keys of ``self`` and the given entries (distinct keys,
        ascending)."""
        n, cap = self.size, self.capacity
        if n == cap:  # full: only keys up to the largest kept one can enter
            keys = keys[: int(np.searchsorted(keys, self.keys[n - 1], side="right"))]
        m = keys.size
        if m == 0:
            return
        if n == 0:
            take = min(m, cap)
            self.keys[:take], self.bins[:take] = keys[:take], bins[:take]
            self.labels[:take], self.wsq[:take] = labels[:take], wsq[:take]
            self.size = take
            return
        if n == cap and m <= _FEW:
            self._insert_few(keys, bins, labels, wsq)
            return
        all_keys = np.concatenate([self.keys[:n], keys])
        order = np.argsort(all_keys, kind="stable")
        ordered = all_keys[order]
        all_wsq = np.concatenate([self.wsq[:n], wsq])[order]
        starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        take = min(starts.size, cap)
        if starts.size < ordered.size:  # a key both hold: one entry, squared weights summed
            all_wsq = np.add.reduceat(all_wsq, starts)
            order = order[starts]
        src = order[:take]
        all_bins = np.concatenate([self.bins[:n], bins.astype(self.bins.dtype, copy=False)])
        all_labels = np.concatenate([self.labels[:n], labels.astype(self.labels.dtype, copy=False)])
        self.keys[:take] = all_keys[src]
        self.bins[:take] = all_bins[src]
        self.labels[:take] = all_labels[src]
        self.wsq[:take] = all_wsq[:take]
        self.size = take

    def _insert_few(
        self, keys: np.ndarray, bins: np.ndarray, labels: np.ndarray, wsq: np.ndarray
    ) -> None:
        """``_merge`` into a full sample of a few entries (the common case in a long stream):
        each inserted in place, the largest kept entry dropped, a key already kept summing the
        squared weights (the same arrays as the sort-based merge, without its dozen calls)."""
        cap = self.capacity
        for j in range(keys.size):  # ascending: an entry past the largest kept key ends it
            k = keys[j]
            if k > self.keys[cap - 1]:
                return
            at = int(np.searchsorted(self.keys, k))
            if self.keys[at] == k:
                self.wsq[at] = np.float64(self.wsq[at]) + wsq[j]
                continue
            for arr, value in ((self.keys, k), (self.bins, bins[j]), (self.labels, labels[j])):
                arr[at + 1 :] = arr[at:-1]  # numpy copies overlapping slices correctly
                arr[at] = value
            self.wsq[at + 1 :] = self.wsq[at:-1]
            self.wsq[at] = wsq[j]

    # -- reading -------------------------------------------------------------------------------
    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(onehot, bins, wsq)`` of the kept rows: (r, C) bool positives per column, (r, C)
        bin indices, (r,) sums of squared weights."""
        n, C = self.size, self.bins.shape[1]
        if self.multiclass:
            onehot = self.labels[:n, None].astype(np.int64) == np.arange(C)[None, :]
        else:
            onehot = self.labels[:n].copy()
        return onehot, self.bins[:n].astype(np.int64), self.wsq[:n].copy()

    def copy(self) -> RowSample:
        out = RowSample(self.spec, self.capacity)
        out.merge_from(self)
        return out

    def clear(self) -> None:
        self.size = 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RowSample):
            return NotImplemented
        n = self.size
        return (
            n == other.size
            and np.array_equal(self.keys[:n], other.keys[:n])
            and np.array_equal(self.bins[:n], other.bins[:n])
            and np.array_equal(self.labels[:n], other.labels[:n])
            and np.array_equal(self.wsq[:n], other.wsq[:n])
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.bins.nbytes + self.labels.nbytes + self.wsq.nbytes

    # -- bytes ---------------------------------------------------------------------------------
    def dtypes(self) -> list[tuple[str, tuple[int, ...]]]:
        """``(little-endian dtype, shape of one row)`` of each array of ``arrays``."""
        C = self.bins.shape[1]
        label: tuple[str, tuple[int, ...]] = ("u1", (C,))  # a multi-hot row of bools
        if self.multiclass:  # a class index
            label = (np.dtype(self.labels.dtype).newbyteorder("<").str, ())
        return [
            ("<u8", ()),
            (np.dtype(self.bins.dtype).newbyteorder("<").str, (C,)),
            label,
            ("<f4", ()),
        ]

    def arrays(self) -> list[np.ndarray]:
        """The kept rows as little-endian arrays (keys, bins, labels, squared weights)."""
        n = self.size
        parts: list[np.ndarray] = [self.keys, self.bins, self.labels, self.wsq]
        return [
            np.ascontiguousarray(a[:n], dtype=dtype)
            for a, (dtype, _) in zip(parts, self.dtypes(), strict=True)
        ]

    def load(self, keys: np.ndarray, bins: np.ndarray, labels: np.ndarray, wsq: np.ndarray) -> None:
        """Set the sample from ``arrays``' contents (read back from bytes); checks them."""
        keys = np.asarray(keys, dtype=np.uint64)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        C = self.bins.shape[1]
        n_bins = BinLayout(self.spec.resolution.mantissa_bits).n_bins
        high = C if self.multiclass else 2
        problems = [
            (keys.size > self.capacity, f"at most {self.capacity} rows"),
            (bool(np.any(keys[1:] == keys[:-1])), "distinct keys"),
            (bins.size > 0 and int(bins.max()) >= n_bins, f"bins below {n_bins}"),
            (labels.size > 0 and int(labels.max()) >= high, f"labels below {high}"),
            (bool(np.any(~(wsq > 0))), "squared weights above 0"),
        ]
        for bad, expected in problems:
            if bad:
                raise ValueError(expected)
        self.size = 0
        self._merge(keys, bins[order], labels[order], wsq[order])

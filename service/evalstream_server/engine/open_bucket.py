"""The newest bucket of a sliding window, kept without a dense histogram.

A window's newest bucket takes the writes. Held as a dense state it would cost as much as the
cumulative state (K * K * B histogram cells) for every window of every stream, although a bucket
sees few samples. Here the small fields are dense and the histogram deltas of the batches are
staged as they come (the ``Scatter`` index arrays of ``compute_delta``, shared with the other
windows fed the same batch), then compacted into sorted non-zero entries once they outgrow the
entries already compacted (and when the bucket closes). Memory follows the samples the bucket
holds, not the layout.

A replay (a durable store's recovery, ``StreamEngine.replaying``) stages up to the bucket's whole
layout instead (``max(COMPACT_AFTER, cells)``, the most the memory budget already counts for the
staged deltas): compacting every time the staged cells outgrow the compacted ones cost a sort per
replayed batch once a busy bucket's entries stopped growing (1 M samples replayed in 3.3 s
instead of 0.2 s).
"""

from __future__ import annotations

import numpy as np

from .batch import Batch
from .counting import (
    CUMULATIVE_ONLY,
    SCATTER_FIELDS,
    Delta,
    Scatter,
    ScatterMax,
    field_shapes,
)
from .packed import smallest_unsigned
from .row_sample import RowSample, has_sample
from .spec import StreamSpec
from .state import Entries, ExactScores, SparseCounts, State

__all__ = ["OpenBucket", "COMPACT_AFTER"]

# Staged cells compacted at once at least (below this, staging is cheaper than sorting).
COMPACT_AFTER = 1 << 15
# Staged and held cells, times this, at least a field's size: compacted by a dense sum, not a sort.
_DENSE_SHARE = 16


def _merge(parts: list[Entries]) -> Entries:
    """Sum entries ``(flat cells, values)`` into sorted distinct cells (integer counts stay
    integers: float64 sums are exact below 2**53)."""
    idx = np.concatenate([p[0] for p in parts])
    values = np.concatenate([p[1].astype(np.float64) for p in parts])
    cells, inverse = np.unique(idx, return_inverse=True)
    total = np.bincount(inverse, weights=values, minlength=cells.size)
    if all(p[1].dtype.kind == "u" for p in parts):
        return cells.astype(np.int32), smallest_unsigned(total.astype(np.uint64))
    return cells.astype(np.int32), total


def _merge_dense(parts: list[Scatter | Entries], size: int) -> Entries:
    """``_merge`` by summing into a dense float64 field of ``size`` cells: linear in the cells
    and the staged indices, where ``_merge`` sorts (cheaper once the parts are a good share of
    the field). Cells summing to 0 are left out."""
    total = np.zeros(size)
    integer = True
    for p in parts:
        if isinstance(p, Scatter):
            p.add_to(total)
            integer = integer and p.weights is None
        else:
            total[p[0]] += p[1]  # an entry's cells are distinct
            integer = integer and p[1].dtype.kind == "u"
    cells = np.flatnonzero(total)
    values = total[cells]
    if integer:
        return cells.astype(np.int32), smallest_unsigned(values.astype(np.uint64))
    return cells.astype(np.int32), values


class OpenBucket:
    """A window bucket taking writes: dense small fields, staged then sparse histograms."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        shapes = field_shapes(spec)
        # the bins' score range is the cumulative state's alone (counting.CUMULATIVE_ONLY)
        self.small = {
            k: np.zeros(v)
            for k, v in shapes.items()
            if k not in SCATTER_FIELDS and k not in CUMULATIVE_ONLY
        }
        self.shapes = {
            k: v for k, v in shapes.items() if k in SCATTER_FIELDS and k not in CUMULATIVE_ONLY
        }
        self.entries: dict[str, Entries] = {}
        self.staged: dict[str, list[Scatter | Entries]] = {}
        self.n_staged = 0
        self.cells = sum(int(np.prod(v)) for v in self.shapes.values())
        # raw rows: in the exact resolution, and in bins while the ring keeps them (WindowRing)
        self.exact: ExactScores | None = ExactScores(spec.n_columns, spec.task == "multiclass")
        self.sample: RowSample | None = RowSample(spec) if has_sample(spec) else None

    @classmethod
    def restore(cls, spec: StreamSpec, sparse: SparseCounts) -> OpenBucket:
        """An open bucket holding ``sparse`` (read back from storage)."""
        out = cls(spec)
        for name, idx, values in sparse.items():
            if name in out.shapes:
                out.entries[name] = (idx.astype(np.int32), values)
            elif name in CUMULATIVE_ONLY:
                continue
            else:
                out.small[name].ravel()[idx] += values
        if sparse.exact is not None and out.exact is not None:
            out.exact.extend(sparse.exact)
        elif spec.resolution.kind != "exact":
            out.exact = None  # a binned bucket written without rows: bins
        if out.sample is not None and sparse.sample is not None:
            out.sample.merge_from(sparse.sample)
        return out

    def add_delta(self, delta: Delta, batch: Batch | None = None, bulk: bool = False) -> None:
        """Count ``delta``; ``bulk`` (a replay) stages up to the whole layout before compacting."""
        if self.exact is not None and batch is not None:
            self.exact.append(batch)
        if self.sample is not None and batch is not None:
            self.sample.add(batch)
        for name, d in delta.items():
            if name in CUMULATIVE_ONLY:
                continue
            assert not isinstance(d, ScatterMax)
            if name not in self.shapes:
                assert not isinstance(d, Scatter)
                self.small[name] += d
                continue
            if isinstance(d, Scatter):
                self.staged.setdefault(name, []).append(d)
                self.n_staged += d.index.size
            else:
                cells = np.flatnonzero(d)
                values = d.ravel()[cells]
                if np.all(values == np.floor(values)) and np.all(values >= 0):
                    values = values.astype(np.uint64)
                self.staged.setdefault(name, []).append((cells.astype(np.int32), values))
                self.n_staged += cells.size
        held = self.cells if bulk else sum(i.size for i, _ in self.entries.values())
        if self.n_staged > max(COMPACT_AFTER, held):
            self.compact()

    def compact(self) -> None:
        """Fold the staged deltas into the sorted entries."""
        if not self.staged:
            return
        for name, staged in self.staged.items():
            held = [self.entries[name]] if name in self.entries else []
            size = int(np.prod(self.shapes[name]))
            n = sum(s.index.size if isinstance(s, Scatter) else s[0].size for s in staged)
            if _DENSE_SHARE * (n + sum(h[0].size for h in held)) >= size:
                self.entries[name] = _merge_dense([*staged, *held], size)
                continue
            parts = [s.cells() if isinstance(s, Scatter) else s for s in staged]
            self.entries[name] = _merge(parts + held)
        self.staged.clear()
        self.n_staged = 0

    def to_sparse(self) -> SparseCounts:
        """The bucket as non-zero entries (what a closed bucket keeps)."""
        self.compact()
        out: dict[str, Entries] = {}
        for name, arr in self.small.items():
            flat = arr.ravel()
            idx = np.flatnonzero(flat)
            out[name] = (idx.astype(np.int32), flat[idx])
        for name in self.shapes:
            empty = (np.zeros(0, np.int32), np.zeros(0, np.uint16))
            out[name] = self.entries.get(name, empty)
        exact = self.exact.copy() if self.exact is not None else None
        if exact is not None:
            exact.arrays()
        shapes = {**{k: v.shape for k, v in self.small.items()}, **self.shapes}
        return SparseCounts.pack(out, shapes, exact, self.sample)

    def add_into(self, state: State) -> None:
        """Add this bucket's counts into ``state`` (float64 fields: a query's sum)."""
        for name, arr in self.small.items():
            state.counts[name] += arr
        for name, (idx, values) in self.entries.items():
            state.counts[name].ravel()[idx] += values
        for name, staged in self.staged.items():
            target = state.counts[name]
            for s in staged:
                if isinstance(s, Scatter):
                    s.add_to(target)
                else:
                    target.ravel()[s[0]] += s[1]
        state.join_rows(self.exact)
        if state.sample is not None and self.sample is not None:
            state.sample.merge_from(self.sample)

    @property
    def nbytes(self) -> int:
        total = sum(a.nbytes for a in self.small.values())
        total += sum(i.nbytes + v.nbytes for i, v in self.entries.values())
        for staged in self.staged.values():
            for s in staged:
                if isinstance(s, Scatter):
                    total += s.index.nbytes + (0 if s.weights is None else s.weights.nbytes)
                else:
                    total += s[0].nbytes + s[1].nbytes
        total += self.sample.nbytes if self.sample is not None else 0
        return total + (self.exact.nbytes if self.exact is not None else 0)

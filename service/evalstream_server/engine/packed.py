"""Non-zero cells of a (rows, bins) histogram packed for a closed window bucket.

A closed bucket keeps only its non-zero histogram cells. As flat int32 indices and float64 values
that is 12 bytes a cell; a window of busy buckets then costs more than the dense state it avoids.
Sorted cells are packed by row instead: each non-empty row once (its id and its cell count), each
cell as its bin (uint16, as B < 65,536 for every default layout; uint8 for the 63 bins of
``pred_hist``) and its value in the smallest unsigned type that holds the bucket's counts (usually
uint8): 3 bytes a cell (2 in ``pred_hist``). Weighted values
stay float64. Cells holding exactly 1 (most of them) keep no value at all. Unpacking gives back
the exact cells and values.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PackedCells", "PackedFields", "smallest_unsigned"]


def smallest_unsigned(values: np.ndarray) -> np.ndarray:
    """Integer ``values`` (non-negative) in the narrowest unsigned dtype that holds them."""
    top = int(values.max()) if values.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values.astype(np.uint64)


def _column_dtype(n_cols: int) -> type[np.unsignedinteger]:
    """The narrowest unsigned type of a column id (uint8 for the 63 bins of ``pred_hist``)."""
    if n_cols <= 2**8:
        return np.uint8
    return np.uint16 if n_cols <= 2**16 else np.uint32


def _pack_rows(index: np.ndarray, n_cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted flat cells as (non-empty rows, cells per row, column of each cell), each in the
    narrowest unsigned type that holds it (a bucket has some hundred rows: uint8 or uint16)."""
    row_of = index // n_cols
    rows, runs = np.unique(row_of, return_counts=True)
    cols = (index - row_of * n_cols).astype(_column_dtype(n_cols))
    return smallest_unsigned(rows), smallest_unsigned(runs), cols


def _unpack_rows(rows: np.ndarray, runs: np.ndarray, cols: np.ndarray, n_cols: int) -> np.ndarray:
    out: np.ndarray = np.repeat(rows.astype(np.int64) * n_cols, runs.astype(np.int64)) + cols
    return out


class PackedCells:
    """Sorted distinct flat cells of an array whose last axis has ``n_cols`` entries.

    Integer counts are split in two groups: the cells holding exactly 1 (most cells of a bucket:
    89 % of a busy 5-minute bucket at K = 10) keep only their column, the others their column and
    value. Float values (weighted streams) are one group with float64 values.

    The flat cells are cut into rows of ``width`` cells: the array's own rows (``n_cols``), or,
    when the last axis is longer than 256 and that packs smaller, rows of 256 cells, whose
    columns take one byte (a busy bucket's cells crowd into few such rows).
    """

    __slots__ = ("n_cols", "ones", "others", "values")

    def __init__(self, index: np.ndarray, values: np.ndarray, n_cols: int) -> None:
        index = np.asarray(index, dtype=np.int64)
        if values.dtype.kind in "ui":
            one = values == 1
            ones, index, values = index[one], index[~one], smallest_unsigned(values[~one])
        else:
            ones = index[:0]
        best: tuple[int, int] | None = None
        for width in (n_cols, 2**8) if n_cols > 2**8 else (n_cols,):
            packs = (_pack_rows(ones, width), _pack_rows(index, width))
            size = sum(a.nbytes for pack in packs for a in pack)
            if best is None or size < best[0]:
                best = (size, width)
                self.n_cols = width
                self.ones, self.others = packs
        self.values = values

    def unpack(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat indices (int64) and values (the cells holding 1 first)."""
        ones = _unpack_rows(*self.ones, self.n_cols)
        others = _unpack_rows(*self.others, self.n_cols)
        if not ones.size:
            return others, self.values
        values = np.concatenate([np.ones(ones.size, self.values.dtype), self.values])
        return np.concatenate([ones, others]), values

    @property
    def nbytes(self) -> int:
        packs = sum(a.nbytes for pack in (self.ones, self.others) for a in pack)
        return packs + self.values.nbytes


class PackedFields:
    """Non-zero entries of several small fields as two index/value array pairs: integer counts
    in the narrowest unsigned type, other sums in float64 (a bucket has some twenty small fields:
    one array pair each would cost more in object headers than data)."""

    __slots__ = ("names", "bounds", "groups")

    def __init__(self, fields: dict[str, tuple[np.ndarray, np.ndarray]], sizes: dict[str, int]):
        self.names = tuple(fields)
        offsets = np.cumsum([0, *(sizes[n] for n in self.names)])
        self.bounds = offsets.astype(np.int64)
        if fields:
            parts = [
                np.asarray(i, np.int64) + o
                for (i, _), o in zip(fields.values(), offsets[:-1], strict=True)
            ]
            index = np.concatenate(parts)
            values = np.concatenate([np.asarray(v, np.float64) for _, v in fields.values()])
        else:
            index, values = np.zeros(0, np.int64), np.zeros(0)
        whole = (values >= 0) & (values == np.floor(values)) & (values < 2**32)
        dtype = np.uint16 if offsets[-1] <= 2**16 else np.int32
        self.groups = (
            (index[whole].astype(dtype), smallest_unsigned(values[whole].astype(np.uint64))),
            (index[~whole].astype(dtype), values[~whole]),
        )

    def unpack(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(field, flat indices, values)`` of each field (values float64)."""
        out = []
        for index, values in self.groups:
            cut = np.searchsorted(index, self.bounds)
            for i, name in enumerate(self.names):
                lo, hi = cut[i], cut[i + 1]
                if hi > lo:
                    idx = index[lo:hi].astype(np.int64) - self.bounds[i]
                    out.append((name, idx, values[lo:hi].astype(np.float64)))
        return out

    @property
    def nbytes(self) -> int:
        total = int(self.bounds.nbytes)
        return total + sum(int(i.nbytes + v.nbytes) for i, v in self.groups)

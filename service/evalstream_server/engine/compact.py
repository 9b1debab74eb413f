"""Compact histogram counts: unweighted score histograms as 16-bit low parts and a carry.

The (class, column, bin) histograms are most of a state (K * K * B cells: 477,200 at K = 10). In an
unweighted stream every cell is a non-negative integer, and almost every cell stays small, so a
cell is kept as its low 16 bits (``uint16``, 2 bytes instead of float64's 8) plus, for the few
cells that passed 65,535, the number of times they wrapped (``carry``: flat index -> wraps). The
value of a cell is ``low + 65536 * wraps``: exact for any count. A weighted batch widens the field
to float64 for good (weights are real-valued), and so does a carry that would cost more than the
float64 cells (``State._check_carry``): a field never takes more than 8 bytes a cell.

These functions act on one field's ``(low, carry)`` pair; ``State`` decides which fields use them.
"""

from __future__ import annotations

import numpy as np

from . import fastcount

__all__ = [
    "CARRY_ENTRY_BYTES",
    "WRAP",
    "add_counts",
    "add_dense",
    "add_unit_cells",
    "carry_add",
    "integral",
    "nonzero_values",
    "widen",
]

WRAP = 1 << 16
# Memory of one carried cell in the dict (key, value and slot; measured with tracemalloc).
CARRY_ENTRY_BYTES = 100

Carry = dict[int, int]


def carry_add(carry: Carry, cells: np.ndarray, wraps: np.ndarray | None = None) -> None:
    """Add ``wraps`` (default one per entry) to the carry of ``cells``."""
    if cells.size == 0:
        return
    if wraps is None:
        cells, wraps = np.unique(cells, return_counts=True)
    for cell, w in zip(cells.tolist(), wraps.tolist(), strict=True):
        carry[cell] = carry.get(cell, 0) + int(w)


def add_unit_cells(low: np.ndarray, carry: Carry, index: np.ndarray) -> None:
    """``+1`` at every entry of ``index`` (flat cells, repeats allowed)."""
    wrapped = fastcount.count16(low, index)
    if wrapped is not None:
        carry_add(carry, wrapped)
        return
    cells, n = np.unique(index.reshape(-1), return_counts=True)
    add_counts(low, carry, cells, n)


def add_counts(low: np.ndarray, carry: Carry, cells: np.ndarray, values: np.ndarray) -> None:
    """Add non-negative integer ``values`` at distinct flat ``cells``."""
    flat = low.reshape(-1)
    total = flat[cells].astype(np.uint64) + np.asarray(values).astype(np.uint64)
    flat[cells] = (total & np.uint64(WRAP - 1)).astype(np.uint16)
    high = total >> np.uint64(16)
    over = np.flatnonzero(high)
    if over.size:
        carry_add(carry, np.asarray(cells)[over].astype(np.int64), high[over].astype(np.int64))


def add_dense(low: np.ndarray, carry: Carry, values: np.ndarray) -> bool:
    """Add a dense delta of ``low``'s shape if its values are all non-negative integers (the
    compact form holds them; unsigned integer deltas are, float deltas are checked); returns
    whether it did (else nothing changed)."""
    v = np.asarray(values)
    if v.dtype.kind != "u":
        if not integral(v):
            return False
    v = v.astype(np.uint64, copy=False)
    got = fastcount.add16(low, v)
    if got is None:
        cells = np.flatnonzero(v)
        add_counts(low, carry, cells, v.reshape(-1)[cells])
        return True
    cells, wraps = got
    carry_add(carry, cells, wraps)
    return True


def nonzero_values(low: np.ndarray, carry: Carry) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices (int32, or int64 past 2**31 cells) and values (the smallest unsigned dtype
    that holds them) of the non-zero cells."""
    flat = low.reshape(-1)
    if not carry:
        idx = np.flatnonzero(flat)
        index = idx.astype(np.int32) if flat.size < 2**31 else idx
        return index, flat[idx]
    cells = np.fromiter(carry.keys(), dtype=np.int64, count=len(carry))
    wraps = np.fromiter(carry.values(), dtype=np.uint64, count=len(carry))
    idx = np.union1d(np.flatnonzero(flat), cells)
    values = flat[idx].astype(np.uint64)
    values[np.searchsorted(idx, cells)] += wraps * np.uint64(WRAP)
    index = idx.astype(np.int32) if flat.size < 2**31 else idx
    dtype = np.uint32 if int(values.max()) < 2**32 else np.uint64
    return index, values.astype(dtype)


def widen(low: np.ndarray, carry: Carry) -> np.ndarray:
    """The counts as float64 (exact below 2**53)."""
    out = low.astype(np.float64)
    if carry:
        flat = out.reshape(-1)
        for cell, wraps in carry.items():
            flat[cell] += float(wraps) * WRAP
    return out


def integral(values: np.ndarray) -> bool:
    """Whether float ``values`` are all non-negative integers (they fit the compact form)."""
    v = np.asarray(values)
    if v.dtype.kind in "ui":
        return bool(v.size == 0 or v.min() >= 0)
    return bool(np.all(v >= 0) and np.all(v == np.floor(v)) and np.all(v < 2.0**53))

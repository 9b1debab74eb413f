"""The coarse score layout of the predictions' own histogram (``pred_hist``).

Estimated metrics (``estimate.py``) weigh each prediction's scores by a calibration map learnt
per bin, so the predictions are binned too, in every window. At the stream's full layout that
histogram would cost as much again as the labelled one; this layout keeps 4 bins per binary
octave (the mirrored float32 layout at ``mantissa_bits=2``) between ``OCTAVE_BELOW`` and
``1 - OCTAVE_BELOW``, one bin per octave out to ``TAIL`` and ``1 - TAIL``, and one bin for each
tail: 63 bins. Softmax scores of the classes not predicted mostly sit low, in wide bins, so a
window's buckets hold few distinct cells per prediction.

The layout nests in every mirrored layout with ``mantissa_bits >= 2`` (a fine bin lies inside
one coarse bin), so labelled histograms coarsen onto it exactly, from each fine bin's lower edge.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from .layout import BinLayout

__all__ = [
    "N_PRED_BINS",
    "PRED_FINE_BITS",
    "TAIL",
    "pred_bin_of",
    "pred_bin_of_fine",
    "pred_fine_table",
    "pred_bin_edges",
    "pred_bin_centres",
]

PRED_FINE_BITS = 2  # the mirrored layout the coarse one is grouped from
TAIL = 2.0**-16  # scores below TAIL (above 1 - TAIL) share one bin
OCTAVE_BELOW = 2.0**-6  # between TAIL and this (and mirrored), one bin per binary octave
_FINE = BinLayout(PRED_FINE_BITS)


def _cell(edge: float) -> tuple[str, float]:
    """What a fine bin of lower edge ``edge`` is grouped by."""
    q = 1.0 - edge
    if edge < TAIL:
        return ("low tail", 0.0)
    if edge < OCTAVE_BELOW:
        return ("low octave", math.floor(math.log2(edge)))
    if q <= TAIL:  # the fine bin holds q = 1 - p up to q (its largest) and below
        return ("high tail", 0.0)
    if q <= OCTAVE_BELOW:
        return ("high octave", math.floor(math.log2(q)))
    return ("fine", edge)


@cache
def _table() -> tuple[np.ndarray, np.ndarray]:
    """Coarse bin of each ``_FINE`` bin, and each coarse bin's lower edge."""
    edges = _FINE.lower_edges.astype(np.float64)
    table = np.zeros(edges.size, dtype=np.int32)
    lower = [float(edges[0])]
    previous = _cell(float(edges[0]))
    for i in range(1, edges.size):
        cell = _cell(float(edges[i]))
        if cell != previous:
            lower.append(float(edges[i]))
            previous = cell
        table[i] = len(lower) - 1
    table.flags.writeable = False
    out = np.array(lower)
    out.flags.writeable = False
    return table, out


N_PRED_BINS = int(_table()[1].size)


def pred_fine_table() -> np.ndarray:
    """Coarse bin (int32, read-only) of each bin of ``BinLayout(PRED_FINE_BITS)``."""
    table: np.ndarray = _table()[0]
    return table


def pred_bin_of(p: np.ndarray) -> np.ndarray:
    """Coarse bins (int32, the shape of ``p``) of float32 probabilities in [0, 1]."""
    table: np.ndarray = _table()[0]
    return np.asarray(table[_FINE.bin_of(p)], dtype=np.int32)


@cache
def pred_bin_of_fine(mantissa_bits: int) -> np.ndarray:
    """Coarse bin (int32) of each bin of the mirrored layout with ``mantissa_bits`` (>= 2): the
    layouts nest, so a fine bin's lower edge names its coarse bin, and a score's coarse bin is
    this table at the fine bin the counting kernel already computed (no second ``bin_of``)."""
    if mantissa_bits < 2:
        raise ValueError(f"mantissa_bits must be >= 2 to nest, got {mantissa_bits}")
    edges = BinLayout(mantissa_bits).lower_edges.astype(np.float32)
    out = np.asarray(_table()[0][_FINE.bin_of(edges)], dtype=np.int32)
    out.flags.writeable = False
    return out


def pred_bin_edges() -> np.ndarray:
    """Lower edge of each coarse bin (read-only); the last bin ends at 1 inclusive."""
    lower: np.ndarray = _table()[1]
    return lower


@cache
def pred_bin_centres() -> np.ndarray:
    """Midpoint of each coarse bin: the raw score a bin stands for (ECE before calibration)."""
    lower = pred_bin_edges()
    upper = np.append(lower[1:], 1.0)
    out: np.ndarray = (lower + upper) / 2
    out.flags.writeable = False
    return out

"""Score bin layouts: mirrored float32 bit patterns, and the exact (one bin per value) map.

The binned layout (DESIGN §3.2) maps a float32 probability ``p`` to an integer bin with integer
operations only, so every machine and every replica bins identically:

* ``p == 0`` -> bin 0 (bin 1 is never used; it keeps the arithmetic below branch-free);
* ``0 < p < 0.5`` -> ``2 + (bits(p) >> s)`` with ``s = 23 - m``: ``2**m`` bins per binary octave,
  so resolution is relative to ``p`` (log-like near 0);
* ``p >= 0.5`` -> mirrored on ``q = 1 - p`` (exact in float32 there, Sterbenz):
  ``B - 2 - ((bits(q) >> s) - (103 << m))``, log-like in ``1 - p`` near 1;
* ``p == 1`` -> bin ``B - 1``; ``B = 4 + 149 * 2**m``.

A bin is *atomic* when at most one float32 value can land in it (0, 1, 0.5 and the finest bins next
to 1): pairs tied there are true ties, exactly as sklearn counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

__all__ = ["BinLayout", "MIN_MANTISSA_BITS", "MAX_MANTISSA_BITS"]

MIN_MANTISSA_BITS = 0
MAX_MANTISSA_BITS = 12
_HALF_BITS = np.uint32(0x3F000000)  # bits of float32 0.5
_Q_MIN_EXPONENT = 103  # 1 - p for the largest float32 p < 1 is 2**-24: biased exponent 103


@dataclass(frozen=True)
class BinLayout:
    """Mirrored float32 bit-pattern bins with ``mantissa_bits`` bits kept per octave.

    Parameters
    ----------
    mantissa_bits : int
        Mantissa bits kept (``m``); ``n_bins = 4 + 149 * 2**m``. Default 5 (4772 bins).
    """

    mantissa_bits: int = 5

    def __post_init__(self) -> None:
        m = self.mantissa_bits
        if not isinstance(m, int | np.integer) or not MIN_MANTISSA_BITS <= m <= MAX_MANTISSA_BITS:
            raise ValueError(
                f"mantissa_bits: expected an integer in [{MIN_MANTISSA_BITS}, "
                f"{MAX_MANTISSA_BITS}], received {m!r}"
            )

    @property
    def n_bins(self) -> int:
        return 4 + 149 * (1 << self.mantissa_bits)

    @property
    def _shift(self) -> int:
        return 23 - self.mantissa_bits

    @property
    def half_bin(self) -> int:
        """The bin that holds exactly 0.5 (the first bin of the upper half)."""
        return self.n_bins - 2 - (126 - _Q_MIN_EXPONENT << self.mantissa_bits)

    def bin_of(self, p: np.ndarray) -> np.ndarray:
        """Map float32 probabilities in [0, 1] (any shape) to int32 bin indices."""
        p = np.ascontiguousarray(p, dtype=np.float32)
        s = np.int32(self._shift)
        n = self.n_bins
        bits = p.view(np.int32)  # non-negative for p in [0, 1]
        low = (bits >> s) + np.int32(2)
        q = np.float32(1.0) - p
        high = np.int32(n - 2 + (_Q_MIN_EXPONENT << self.mantissa_bits)) - (q.view(np.int32) >> s)
        out = np.where(bits < np.int32(_HALF_BITS), low, high)
        # p == 0 and p == 1 are the only values the arithmetic above misplaces
        out[bits <= 0] = 0  # 0.0, and -0.0 (sign bit set: negative as int32)
        out[bits == np.int32(0x3F800000)] = n - 1
        return out

    @property
    def atomic(self) -> np.ndarray:
        """Boolean mask of bins that can hold at most one distinct float32 value (read-only)."""
        return _atomic(self.mantissa_bits)

    @property
    def lower_edges(self) -> np.ndarray:
        """Smallest float32 score of each bin, as float64 (``score >= edge`` selects the bin).

        Bins no float32 can reach (bin 1, some bins next to 1) get the next reachable bin's edge.
        Read-only.
        """
        return _lower_edges(self.mantissa_bits)

    @property
    def spans(self) -> np.ndarray:
        """(2, n_bins) float64: the lowest and highest real score of each bin's interval
        (``[lo, hi)`` below 0.5, ``(lo, hi]`` above; zero width for 0, 1 and the bins no float32
        reaches). Neighbouring bins share an end. Read-only."""
        return _spans(self.mantissa_bits)

    def describe(self) -> str:
        return f"bins(mantissa_bits={self.mantissa_bits}, n_bins={self.n_bins})"


def _n_bins(m: int) -> int:
    return 4 + 149 * (1 << m)


@cache
def _atomic(m: int) -> np.ndarray:
    n = _n_bins(m)
    mask = np.zeros(n, dtype=bool)
    half_bin = n - 2 - ((126 - _Q_MIN_EXPONENT) << m)
    mask[[0, 1, n - 1, half_bin]] = True
    # Next to 1, q = 1 - p is a multiple of 2**-24: the octave with biased exponent e holds
    # 2**(e - 103) such values, at most one per bin while e - 103 <= m.
    n_atomic_upper = (m + 1) << m
    mask[n - 1 - n_atomic_upper : n - 1] = True
    mask.flags.writeable = False
    return mask


@cache
def _lower_edges(m: int) -> np.ndarray:
    n, s = _n_bins(m), 23 - m
    half_bin = n - 2 - ((126 - _Q_MIN_EXPONENT) << m)
    edges = np.full(n, np.nan)
    edges[0] = 0.0
    edges[n - 1] = 1.0
    # Lower half: bin 2 + k starts at the float32 whose bits are k << s (bin 2: first denormal).
    k = np.arange(half_bin - 2, dtype=np.uint32)
    low = (k << np.uint32(s)).view(np.float32).astype(np.float64)
    low[0] = float(np.nextafter(np.float32(0), np.float32(1)))
    edges[2:half_bin] = low
    # Upper half: bin n - 2 - u holds q = 1 - p in [q_lo, q_hi); reachable q are j * 2**-24. The
    # smallest p of the bin is 1 - (largest reachable q below q_hi), if that q is >= q_lo.
    u = np.arange(half_bin - (n - 2), 1, dtype=np.int64) * -1  # u for bins half_bin .. n-2
    base = (u + (_Q_MIN_EXPONENT << m)).astype(np.uint32)
    q_lo = (base << np.uint32(s)).view(np.float32).astype(np.float64)
    q_hi = ((base + np.uint32(1)) << np.uint32(s)).view(np.float32).astype(np.float64)
    j = np.minimum(np.ceil(q_hi * 2.0**24) - 1, 2.0**23)  # q <= 0.5
    reach = j * 2.0**-24 >= q_lo
    upper = np.where(reach, 1.0 - j * 2.0**-24, np.nan)
    edges[half_bin : n - 1] = upper
    # Unreachable bins take the next reachable bin's edge (they never hold a score).
    idx = np.where(np.isnan(edges), n - 1, np.arange(n))
    idx = np.minimum.accumulate(idx[::-1])[::-1]
    out = edges[idx]
    out.flags.writeable = False
    return out


@cache
def _spans(m: int) -> np.ndarray:
    n, s = _n_bins(m), 23 - m
    half_bin = n - 2 - ((126 - _Q_MIN_EXPONENT) << m)
    out = np.zeros((2, n))
    out[:, n - 1] = 1.0
    # Lower half: bin 2 + k holds the float32 whose bits are in [k << s, (k + 1) << s).
    k = np.arange(half_bin - 2 + 1, dtype=np.uint32)
    ends = (k << np.uint32(s)).view(np.float32).astype(np.float64)
    out[0, 2:half_bin] = ends[:-1]
    out[1, 2:half_bin] = ends[1:]
    # Upper half: bin n - 2 - u holds q = 1 - p in [q_lo, q_hi) (half_bin: q = 0.5 alone).
    u = np.arange(half_bin - (n - 2), 1, dtype=np.int64) * -1  # u for bins half_bin .. n-2
    base = (u + (_Q_MIN_EXPONENT << m)).astype(np.uint32)
    q_lo = (base << np.uint32(s)).view(np.float32).astype(np.float64)
    q_hi = ((base + np.uint32(1)) << np.uint32(s)).view(np.float32).astype(np.float64)
    out[0, half_bin : n - 1] = 1.0 - q_hi
    out[1, half_bin : n - 1] = 1.0 - q_lo
    out[:, half_bin] = 0.5
    out.flags.writeable = False
    return out

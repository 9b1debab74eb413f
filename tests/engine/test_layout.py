"""The mirrored float32 bit-pattern layout: monotone, 0.5 an edge, atomic bins truly atomic."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import BinLayout


def _all_float32(lo_bits: int, hi_bits: int, step: int = 1) -> np.ndarray:
    return np.arange(lo_bits, hi_bits, step, dtype=np.uint32).view(np.float32)


@pytest.mark.parametrize("m", [0, 3, 5, 8])
def test_monotone_over_every_float32_in_unit_interval(m):
    layout = BinLayout(m)
    # [0.5, 1]: every float32 (2**23 + 1 values). [0, 0.5): every 101st bit pattern, plus 512
    # patterns on both sides of every octave boundary (where the bin arithmetic changes).
    upper = _all_float32(0x3F000000, 0x3F800001)
    around = (np.arange(0, 126, dtype=np.int64)[:, None] << 23) + np.arange(-256, 256)
    around = around[(around >= 0) & (around < 0x3F000000)].astype(np.uint32)
    strided = np.arange(0, 0x3F000000, 101, dtype=np.uint32).view(np.float32)
    for values in (strided, around.view(np.float32), upper):
        bins = layout.bin_of(values)
        assert (np.diff(bins) >= 0).all()
        assert bins.min() >= 0 and bins.max() < layout.n_bins
    assert layout.bin_of(np.float32([0.0]))[0] == 0
    assert layout.bin_of(np.float32([1.0]))[0] == layout.n_bins - 1
    below_half = np.nextafter(np.float32(0.5), np.float32(0))
    assert layout.bin_of(np.float32([below_half]))[0] < layout.bin_of(np.float32([0.5]))[0]


def test_default_has_4772_bins_and_half_is_its_own_bin():
    layout = BinLayout()
    assert layout.n_bins == 4772
    assert layout.bin_of(np.float32([0.5]))[0] == layout.half_bin
    assert layout.atomic[layout.half_bin]


@pytest.mark.parametrize("m", [2, 5, 7])
def test_atomic_bins_hold_one_value_and_edges_are_first_values(m):
    layout = BinLayout(m)
    upper = _all_float32(0x3F000000, 0x3F800001)
    bins = layout.bin_of(upper)
    counts = np.bincount(bins, minlength=layout.n_bins)
    assert (counts[layout.atomic] <= 1).all()
    first = np.flatnonzero(np.diff(bins, prepend=-1))
    np.testing.assert_array_equal(layout.lower_edges[bins[first]], upper[first].astype(float))
    lower = _all_float32(1, 0x3F000000, 4099)
    lb = layout.bin_of(lower)
    assert (layout.lower_edges[lb] <= lower.astype(float)).all()
    assert (np.diff(layout.lower_edges) >= 0).all()


def test_integer_only_binning_is_platform_independent():
    # The same bit patterns give the same bins regardless of how the floats were produced.
    values = np.float32([1e-30, 1e-7, 0.1, 0.25, 0.75, 0.999, 0.9999999])
    again = values.view(np.uint32).copy().view(np.float32)
    np.testing.assert_array_equal(BinLayout().bin_of(values), BinLayout().bin_of(again))


def test_bad_mantissa_bits_is_a_clear_error():
    with pytest.raises(ValueError, match="mantissa_bits"):
        BinLayout(40)


def test_negative_zero_is_bin_zero():
    layout = BinLayout()
    assert layout.bin_of(np.float32([-0.0, 0.0]))[0] == 0

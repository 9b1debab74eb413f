"""The order of the scores inside a mixed bin, estimated from the neighbouring bins' counts.

A bin that held several score values keeps counts only: how its positives and negatives are
ordered inside it is not stored. Counting every positive-negative pair of the bin as one half (and
interleaving the bin's positives and negatives at random for AP) is right when both classes are
spread evenly over the bin. For continuous scores they are not: the class densities slope, and
across every bin in the same direction (the positives' share grows with the score), which biased
binned AUC by one or two standard errors of the within-bin order on flat softmax scores.

The model: inside bin ``b`` each class's density is linear, ``f(t) = 1 + a (t - 1/2)`` over the
bin's relative position ``t`` in [0, 1], ``a`` the relative slope (``|a| <= 2`` keeps it
non-negative). ``a`` is the density's derivative at the bin's centre times its width over its
density, the densities being count / width of the bin and its two neighbours (the 3-point
derivative on unequal spacing: bins widen at octave edges). Then, exactly for linear densities,

* a positive ``X`` and a negative ``Y`` of the bin: ``P(X > Y) = 1/2 + (a_pos - a_neg) / 12``
  (``pair_share``);
* the positives above depth ``s`` from the top are the share ``F(s) = s + a s (1 - s) / 2``, so
  the negatives ranked above the positive at quantile ``x`` of the bin's positives are the share
  ``h(x) = F_neg(F_pos^-1(x))`` of the bin's negatives (``negatives_above``); ``h(x) = x`` when
  the slopes are equal.

The slopes are estimated only where the bin and both neighbours in the layout hold positives and
negatives and more than one value (no tie group: those are exact; no empty neighbour); elsewhere
they are 0, which is the even spread. The estimate is of the expected order inside the bin: the
realised order of the bin's samples varies around it (with ``p`` positives and ``n`` negatives the
pair count has a standard deviation of ``sqrt(p n (p + n + 1) / 12)``), and nothing kept in the
counts tells it (``bench/truth.py`` prints that floor).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Slopes", "slopes", "pair_share", "dense", "negatives_above", "with_moments"]

_MAX_SLOPE = 2.0  # a linear density over the bin stays non-negative


class Slopes(NamedTuple):
    """``at``: the flat index (into the problems' (..., B) shape, C order) of every bin given a
    slope, ``a_pos``, ``a_neg``: the relative slopes of its positives and of its negatives there.
    ``share_at``, ``share``: bins whose same-bin pair share comes from the samples' positions
    inside the bin (``with_moments``), which take precedence over the slopes' in ``pair_share``
    (AP keeps the slopes)."""

    at: np.ndarray
    a_pos: np.ndarray
    a_neg: np.ndarray
    share_at: np.ndarray | None = None
    share: np.ndarray | None = None


def with_moments(
    slope: Slopes | None,
    pos: np.ndarray,
    neg: np.ndarray,
    atomic: np.ndarray,
    s_pos: np.ndarray,
    s_neg: np.ndarray,
    band: np.ndarray,
) -> Slopes | None:
    """``slope`` with the pair shares of the mixed bins of ``band`` that the moments give.

    ``s_pos``, ``s_neg``: per bin of the (..., B) problems, the (weighted) sums of the positives'
    and the negatives' positions inside the bin, in bin widths, ascending with the score (any
    common origin); ``band`` (B,): bins whose moments were kept. The Mann-Whitney count of the
    bin's pairs is, to its Hajek projection, ``p n / 2 + n S_pos - p S_neg``: the share of pairs
    with the positive above is ``1/2 + S_pos / p - S_neg / n`` (the mean positive's position
    less the mean negative's), kept in [0, 1]. The projection's error is the order of the
    samples beyond their positions: ``1 / (p + n + 1)`` of the pair count's variance. AP's
    within-bin interleaving (``dense``) takes slopes with that pair share there: their
    difference ``12 (share - 1/2)``, their sum the neighbours' (0 where none), each kept in
    [-2, 2] (flat scores at 1M, K = 10: AP 3.1e-5 -> 3.3e-6 from sklearn)."""
    shape = np.broadcast_shapes(np.shape(pos), np.shape(neg))
    pos = np.broadcast_to(np.asarray(pos, dtype=np.float64), shape)
    neg = np.broadcast_to(np.asarray(neg, dtype=np.float64), shape)
    ok = (pos > 0) & (neg > 0) & ~np.broadcast_to(atomic, shape) & np.broadcast_to(band, shape)
    at = np.flatnonzero(ok)
    if at.size == 0:
        return slope
    p, n = pos.reshape(-1)[at], neg.reshape(-1)[at]
    sp = np.broadcast_to(s_pos, shape).reshape(-1)[at]
    sn = np.broadcast_to(s_neg, shape).reshape(-1)[at]
    share = np.clip(0.5 + sp / p - sn / n, 0.0, 1.0)
    # AP's interleaving takes the same order: slopes whose pair share is the moments' (a_pos -
    # a_neg = 12 (share - 1/2)), their sum (the bin's common density slope) kept
    bent = dense(slope, shape) or (np.zeros(shape), np.zeros(shape))
    a_pos, a_neg = bent[0].reshape(-1), bent[1].reshape(-1)
    common, apart = a_pos[at] + a_neg[at], 12.0 * (share - 0.5)
    a_pos[at] = np.clip(0.5 * (common + apart), -_MAX_SLOPE, _MAX_SLOPE)
    a_neg[at] = np.clip(0.5 * (common - apart), -_MAX_SLOPE, _MAX_SLOPE)
    kept = np.flatnonzero((a_pos != 0) | (a_neg != 0))
    return Slopes(kept, a_pos[kept], a_neg[kept], at, share)


def slopes(
    pos: np.ndarray, neg: np.ndarray, atomic: np.ndarray, span: np.ndarray | None
) -> Slopes | None:
    """Relative density slopes of positives and negatives, where they are estimated.

    ``pos``, ``neg``: counts broadcastable to one (..., B) shape (problems over B bins in
    ascending score order); ``atomic`` (B,): tie groups; ``span`` (2, B): the lowest and highest
    score of each bin's interval (``BinLayout.spans`` at the bins the problems keep): bins are
    neighbours in the layout when one's upper end is the next one's lower end. None (one bin per
    value: the exact view) gives None; so does a problem set where no bin gets a slope.
    """
    if span is None:
        return None
    shape = np.broadcast_shapes(np.shape(pos), np.shape(neg))
    B = shape[-1]
    if B < 3:
        return None
    lo, hi = np.asarray(span[0], dtype=np.float64), np.asarray(span[1], dtype=np.float64)
    mixed = (pos > 0) & (neg > 0) & ~np.asarray(atomic, dtype=bool)
    adjacent = (hi[:-2] == lo[1:-1]) & (hi[1:-1] == lo[2:]) & (hi[1:-1] > lo[1:-1])
    ok = mixed[..., 1:-1] & mixed[..., :-2] & mixed[..., 2:] & adjacent
    row, mid = np.divmod(np.flatnonzero(ok), B - 2)
    if mid.size == 0:
        return None
    b = mid + 1
    at = row * B + b
    # The 3-point derivative of the density (count / width) on unequal spacing, times the
    # bin's width, over its density: a relative slope. Per middle bin, the weights of the
    # three counts (computed over the B bins once, then gathered).
    width = np.where(hi > lo, hi - lo, 1.0)
    centre = 0.5 * (lo + hi)
    hm, hp = np.diff(centre)[:-1], np.diff(centre)[1:]
    w = width[1:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        k_lo = (-hp / (hm * (hm + hp)) * w * w / width[:-2])[mid]
        k_mid = ((hp - hm) / (hm * hp) * w)[mid]
        k_hi = (hm / (hp * (hm + hp)) * w * w / width[2:])[mid]
    out = []
    for count in (pos, neg):
        flat = np.broadcast_to(np.asarray(count, dtype=np.float64), shape).reshape(-1)
        a = (k_lo * flat[at - 1] + k_hi * flat[at + 1]) / flat[at] + k_mid
        out.append(np.clip(a, -_MAX_SLOPE, _MAX_SLOPE))
    return Slopes(at, out[0], out[1])


def pair_share(slope: Slopes | None, shape: tuple[int, ...]) -> np.ndarray:
    """``P(X > Y)`` for a positive ``X`` and a negative ``Y`` of the same bin, per bin of a
    (..., B) ``shape``: ``1/2 + (a_pos - a_neg) / 12`` (in [1/6, 5/6]) where a slope is
    estimated, 1/2 elsewhere; the moments' share where they give one (``with_moments``)."""
    if slope is None:
        return np.broadcast_to(0.5, shape)
    out = np.full(shape, 0.5)
    out.reshape(-1)[slope.at] += (slope.a_pos - slope.a_neg) / 12.0
    if slope.share_at is not None and slope.share is not None:
        out.reshape(-1)[slope.share_at] = slope.share
    return out


def dense(slope: Slopes | None, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """``(a_pos, a_neg)`` as arrays of ``shape`` (0 where no slope is estimated)."""
    if slope is None or slope.at.size == 0:
        return None
    out = np.zeros(shape), np.zeros(shape)
    out[0].reshape(-1)[slope.at] = slope.a_pos
    out[1].reshape(-1)[slope.at] = slope.a_neg
    return out


def negatives_above(x: np.ndarray, a_pos: np.ndarray, a_neg: np.ndarray) -> np.ndarray:
    """The share of a bin's negatives ranked above the positive at quantile ``x`` (from the top)
    of the bin's positives: ``h(x) = F_neg(F_pos^-1(x))``, ``F(s) = s + a s (1 - s) / 2``."""
    b = 1.0 + 0.5 * a_pos
    # F_pos(s) = x solved for s in [0, 1], written without the cancellation at a_pos -> 0
    s = 2.0 * x / (b + np.sqrt(np.maximum(b * b - 2.0 * a_pos * x, 0.0)))
    return np.asarray(s + 0.5 * a_neg * s * (1.0 - s), dtype=np.float64)

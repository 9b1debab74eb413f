"""Binary problems (positives and negatives per bin) extracted from a state.

A ``Problem`` stacks R binary problems over a common bin axis. The binned view returns one Problem
for all classes at once (vectorised); the exact view maps each problem's own distinct scores to
bins (one bin per value, every bin atomic), so it returns one Problem per row. Either way the
ranking code in ``ranking.py`` is the same: only the bin map differs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .counting import MOMENT_BITS, moment_band, single_valued
from .layout import BinLayout
from .ranking import auc_stats, pairwise_auc
from .row_sample import occupied_index
from .state import State
from .within import Slopes, slopes, with_moments

__all__ = ["Problem", "ScoreView", "view_of", "Moments", "moments_of"]

Moments = tuple[np.ndarray, np.ndarray, np.ndarray]
"""``(s_pos, s_neg, band)``: per (column, bin) the weighted sums of the positives' and the
negatives' positions inside the bin (in bin widths, ascending with the score), and the (B,) bins
whose moments are kept (``counting.moment_delta``)."""


def moments_of(state: State) -> Moments | None:
    """The within-bin moments of a binned state over the whole layout, or None when it keeps
    none or when they do not cover every sample it counted (a state, bucket or snapshot written
    before the moments existed, merged with newer ones): partial moments are never used."""
    c = state.counts
    if "moment" not in c or not c["n"][0] > 0 or c["moment_n"][0] != c["n"][0]:
        return None
    m = state.spec.resolution.mantissa_bits
    layout = BinLayout(m)
    first, width = moment_band(m)
    bins = np.arange(first, first + width)
    # the upper half's positions run from the bin's high end (its bins follow 1 - p)
    sign = np.where(bins > layout.half_bin, -1.0, 1.0) / float(1 << MOMENT_BITS)
    mom = state.values("moment")
    C = mom.shape[1]
    s_all, s_pos = np.zeros((C, layout.n_bins)), np.zeros((C, layout.n_bins))
    s_all[:, first : first + width] = mom[0] * sign
    s_pos[:, first : first + width] = mom[1] * sign
    band = np.zeros(layout.n_bins, dtype=bool)
    band[first : first + width] = True
    return s_pos, s_all - s_pos, band


@dataclass(frozen=True)
class Problem:
    pos: np.ndarray  # (R, B)
    neg: np.ndarray  # (R, B)
    atomic: np.ndarray  # broadcastable to (R, B)
    edges: np.ndarray  # (B,) smallest score of each bin
    span: np.ndarray | None = None  # (2, B) each bin's score interval; None: one bin per value
    moments: Moments | None = None  # on the problem's bins (``moments_of``); None: not kept

    @functools.cached_property
    def slope(self) -> Slopes | None:
        """The density slopes inside mixed bins (``within.slopes``), and the pair shares of the
        bins whose moments are kept (``within.with_moments``), computed once a problem."""
        slope = slopes(self.pos, self.neg, self.atomic, self.span)
        if self.moments is None:
            return slope
        return with_moments(slope, self.pos, self.neg, self.atomic, *self.moments)


class ScoreView:
    """Interface: ``ovr()``, ``micro()``, ``ovo(pairs)`` return lists of Problems whose rows,
    concatenated, follow the classes (or the given ordered pairs)."""

    def ovr(self) -> list[Problem]:
        raise NotImplementedError

    def micro(self) -> Problem:
        raise NotImplementedError

    def ovo(self, pairs: list[tuple[int, int]]) -> list[Problem]:
        """Rows for ordered pairs (i, j): positives are class i, negatives class j, scored by
        column i."""
        raise NotImplementedError

    @property
    def has_ovo(self) -> bool:
        raise NotImplementedError

    def per_sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(onehot, scores, weights)`` of every sample: (n, C) bool positives per column,
        (n, C) float32 scores, (n,) weights; None when the state keeps counts only."""
        return None

    def placements(
        self,
    ) -> tuple[list[tuple[Problem, np.ndarray]], tuple[Problem, np.ndarray]] | None:
        """Exact views: the one-vs-rest and micro problems with each item's bin; else None."""
        return None

    def sampled_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Binned views with a row sample (``row_sample``): ``(onehot, index, wsq)``, the
        sampled rows' positives and bins as indices into ``ovr()``'s one Problem's bin axis, and
        their squared weights; else None."""
        return None

    def ovo_matrix(self, K: int) -> dict[str, np.ndarray]:
        """(K, K) arrays ``value``, ``lower``, ``upper`` of ``A(i|j)`` (NaN where undefined)."""
        pairs = [(i, j) for i in range(K) for j in range(K) if i != j]
        parts = [auc_stats(p.pos, p.neg, p.atomic, p.slope) for p in self.ovo(pairs)]
        out = {}
        for key in ("value", "lower", "upper"):
            m = np.full((K, K), np.nan)
            flat = np.concatenate([p[key] for p in parts])
            for (i, j), v in zip(pairs, flat, strict=True):
                m[i, j] = v
            out[key] = m
        return out


class _BinnedView(ScoreView):
    def __init__(self, state: State) -> None:
        layout = BinLayout(state.spec.resolution.mantissa_bits)
        c = state.counts
        # A bin is a tie group when only one float32 value can land in it (the layout) or when
        # every score counted in it has been one value (its score range): sklearn steps such a
        # bin as one threshold, and so do the ranking formulas.
        self._atomic = layout.atomic
        if "score_range" in c:
            self._atomic = self._atomic | single_valued(c["score_range"])
        self._edges = layout.lower_edges
        hist = c.get("hist")
        self._hist: np.ndarray | None
        # Bins empty in every column change no metric: drop them once, up front (most of the
        # 4772 bins are empty for typical score distributions).
        if hist is not None:
            K = hist.shape[0]
            column_totals = hist.sum(axis=0)  # (K, B): all samples scored by each column
            occupied = np.flatnonzero(column_totals.any(axis=0))
            # take, not fancy indexing: its result is C-contiguous, which the contractions over
            # the histogram (pairwise_auc) run 8x faster on at K = 32
            self._hist = hist.take(occupied, axis=2)
            idx = np.arange(K)
            self._pos = self._hist[idx, idx, :]
            self._neg = np.maximum(column_totals.take(occupied, axis=1) - self._pos, 0.0)
        else:
            occupied = np.flatnonzero(c["all"].any(axis=0))
            self._hist = None
            self._pos = c["pos"].take(occupied, axis=1)
            self._neg = np.maximum(c["all"].take(occupied, axis=1) - self._pos, 0.0)
        self._atomic = self._atomic[occupied]
        self._edges = self._edges[occupied]
        self._span = layout.spans[:, occupied]
        self._occupied = occupied
        self._sample = state.sample
        kept = moments_of(state)
        self._moments: Moments | None = None
        if kept is not None:
            s_pos, s_neg, band = kept
            self._moments = (s_pos[:, occupied], s_neg[:, occupied], band[occupied])

    def sampled_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if self._sample is None or self._sample.size == 0:
            return None
        onehot, bins, wsq = self._sample.rows()
        index, keep = occupied_index(self._occupied, bins)
        return onehot[keep], index[keep], wsq[keep]

    @property
    def has_ovo(self) -> bool:
        return self._hist is not None

    @functools.cached_property
    def _ovr(self) -> Problem:  # one object a view: its slopes are computed once
        return Problem(self._pos, self._neg, self._atomic, self._edges, self._span, self._moments)

    @functools.cached_property
    def _micro(self) -> Problem:
        pooled = None
        if self._moments is not None:  # the columns' items pooled: their positions add up
            s_pos, s_neg, band = self._moments
            pooled = (s_pos.sum(axis=0, keepdims=True), s_neg.sum(axis=0, keepdims=True), band)
        return Problem(
            self._pos.sum(axis=0, keepdims=True),
            self._neg.sum(axis=0, keepdims=True),
            self._atomic,
            self._edges,
            self._span,
            pooled,
        )

    def ovr(self) -> list[Problem]:
        return [self._ovr]

    def micro(self) -> Problem:
        return self._micro

    def ovo_matrix(self, K: int) -> dict[str, np.ndarray]:
        if self._hist is None:
            raise ValueError("one-vs-one needs the full histogram")
        return pairwise_auc(self._hist, self._atomic, self._span)


def _exact_problem(values: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> Problem:
    return _exact_problem_and_index(values, positive, weights)[0]


def _exact_problem_and_index(
    values: np.ndarray, positive: np.ndarray, weights: np.ndarray
) -> tuple[Problem, np.ndarray]:
    """The problem with one bin per distinct value, and each value's bin."""
    uniq, inverse = np.unique(values, return_inverse=True)
    total = np.bincount(inverse, weights=weights, minlength=uniq.size)
    pos = np.bincount(inverse, weights=np.where(positive, weights, 0.0), minlength=uniq.size)
    neg = np.maximum(total - pos, 0.0)
    problem = Problem(pos[None, :], neg[None, :], np.ones(1, dtype=bool), uniq.astype(np.float64))
    return problem, inverse


class _ExactView(ScoreView):
    def __init__(self, state: State) -> None:
        assert state.exact is not None
        self._labels, self._scores, self._weights = state.exact.arrays()
        self._multiclass = state.exact.multiclass
        # a binned stream reports one-vs-one when its layout has it, raw rows or not
        self._ovo = self._multiclass and (
            state.spec.resolution.kind == "exact" or state.spec.full_ovo
        )

    @property
    def has_ovo(self) -> bool:
        return self._ovo

    def per_sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        C = self._scores.shape[1]
        if self._multiclass:
            onehot = self._labels[:, None] == np.arange(C)[None, :]
        else:
            onehot = np.asarray(self._labels, dtype=bool)
        return onehot, self._scores, self._weights

    def _positive(self, c: int) -> np.ndarray:
        return self._labels == c if self._multiclass else self._labels[:, c]

    @functools.cached_property
    def _ovr(self) -> list[tuple[Problem, np.ndarray]]:
        C = self._scores.shape[1]
        return [
            _exact_problem_and_index(self._scores[:, c], self._positive(c), self._weights)
            for c in range(C)
        ]

    @functools.cached_property
    def _micro(self) -> tuple[Problem, np.ndarray]:
        onehot, scores, weights = self.per_sample()
        C = scores.shape[1]
        return _exact_problem_and_index(scores.ravel(), onehot.ravel(), np.repeat(weights, C))

    def ovr(self) -> list[Problem]:
        return [problem for problem, _ in self._ovr]

    def micro(self) -> Problem:
        return self._micro[0]

    def placements(self) -> tuple[list[tuple[Problem, np.ndarray]], tuple[Problem, np.ndarray]]:
        """The one-vs-rest problems and the micro problem, each with every item's bin (the
        sample's index for a column; sample-major items for micro), computed once a view."""
        return self._ovr, self._micro

    def ovo_matrix(self, K: int) -> dict[str, np.ndarray]:
        """``A(i|j)`` of every ordered pair from one sort per column (not one per pair): the
        weight of each class at each distinct score of column i gives ``A(i|j)`` for every j.
        One bin per value, so the bounds are the value."""
        value = np.full((K, K), np.nan)
        labels = self._labels.astype(np.int64)
        w = self._weights
        for i in range(K):
            uniq, inv = np.unique(self._scores[:, i], return_inverse=True)
            U = uniq.size
            per = np.bincount(labels * U + inv.ravel(), weights=w, minlength=K * U).reshape(K, U)
            total = per.sum(axis=1)
            # weight of class i above class j's samples, ties counted half, for every j
            wins = (np.cumsum(per, axis=1) - 0.5 * per) @ per[i]
            with np.errstate(divide="ignore", invalid="ignore"):
                row = wins / (total[i] * total)
            ok = (total > 0) & (total[i] > 0)
            ok[i] = False
            value[i, ok] = row[ok]
        return {"value": value, "lower": value.copy(), "upper": value.copy()}

    def ovo(self, pairs: list[tuple[int, int]]) -> list[Problem]:
        out = []
        for i, j in pairs:
            mask = (self._labels == i) | (self._labels == j)
            out.append(
                _exact_problem(self._scores[mask, i], self._labels[mask] == i, self._weights[mask])
            )
        return out


def view_of(state: State) -> ScoreView:
    """The score view that matches the state's resolution."""
    state = state.as_float()
    if state.exact is not None:
        return _ExactView(state)
    return _BinnedView(state)

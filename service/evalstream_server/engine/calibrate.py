"""Calibration maps per column, fitted at query time from a reference window's labelled counts.

The labelled histograms of the reference window (positives and all samples per column and bin,
whatever the stream's resolution) are coarsened onto the predictions' layout (``pred_bins``) and
fitted per column, either by histogram binning (each bin's positive share) or by isotonic
regression (pool adjacent violators over the bins, weighted by their counts): no raw score is
kept. Bins the reference never saw take the fitted value of the nearest bin below it (above it,
below the first seen bin). Without labelled reference samples the map is the raw score (each
bin's midpoint) and the report says so.

The expected calibration error is class-wise (each column's bins, pooled over columns, weighted
by samples), in the coarse bins, on the reference's labelled samples: ``ece_before`` with the raw
scores (bin midpoints), ``ece_after`` with the fitted map (in sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .pred_bins import N_PRED_BINS, pred_bin_centres, pred_bin_of
from .state import State
from .views import view_of

__all__ = ["METHODS", "Calibration", "fit_calibration", "isotonic", "labelled_counts"]

METHODS = ("isotonic", "histogram")


@dataclass(frozen=True)
class Calibration:
    """Calibrated probability per column and coarse bin, and where it came from.

    Attributes
    ----------
    probabilities : ndarray
        (C, N_PRED_BINS) calibrated probability that a sample is positive for the column.
    method : str
        ``"isotonic"``, ``"histogram"`` or ``"raw"`` (no labelled reference samples).
    labelled : int
        Labelled reference samples the map was learnt from.
    ece_before, ece_after : float or None
        Class-wise expected calibration error on the reference, raw and calibrated.
    standard_error : ndarray
        (C, N_PRED_BINS) binomial standard error of each fitted probability from the reference
        samples of its bin (0 for the raw map and for bins the reference never saw).
    """

    probabilities: np.ndarray
    method: str
    labelled: int
    ece_before: float | None = None
    ece_after: float | None = None
    standard_error: np.ndarray = field(default_factory=lambda: np.zeros((0, N_PRED_BINS)))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, C, N_PRED_BINS) maps drawn around the fitted one within its standard error."""
        q = self.probabilities
        if not self.standard_error.any():
            return np.broadcast_to(q, (n, *q.shape))
        noise = rng.standard_normal((n, *q.shape)) * self.standard_error
        return np.asarray(np.clip(q + noise, 0.0, 1.0))


def labelled_counts(state: State) -> tuple[np.ndarray, np.ndarray]:
    """``(positives, samples)`` per column and coarse bin, (C, N_PRED_BINS) each, of the
    labelled samples of ``state`` (binned or exact resolution)."""
    if state.exact is not None:  # the raw rows: binned directly (a view sorts every column)
        labels, scores, weights = state.exact.arrays()
        n, C = scores.shape
        bins = pred_bin_of(scores)
        if state.exact.multiclass:
            positive = labels[:, None] == np.arange(C)
        else:
            positive = labels
        pos = (
            np.stack(
                [
                    np.bincount(bins[positive[:, c], c], weights[positive[:, c]], N_PRED_BINS)
                    for c in range(C)
                ]
            )
            if n
            else np.zeros((C, N_PRED_BINS))
        )
        total = (
            np.stack([np.bincount(bins[:, c], weights, N_PRED_BINS) for c in range(C)])
            if n
            else np.zeros((C, N_PRED_BINS))
        )
        return pos, total
    view = view_of(state)
    pos_rows, all_rows = [], []
    for problem in view.ovr():
        bins = pred_bin_of(problem.edges.astype(np.float32))
        for r in range(problem.pos.shape[0]):
            pos, neg = problem.pos[r], problem.neg[r]
            pos_rows.append(np.bincount(bins, weights=pos, minlength=N_PRED_BINS))
            all_rows.append(np.bincount(bins, weights=pos + neg, minlength=N_PRED_BINS))
    return np.array(pos_rows), np.array(all_rows)


def isotonic(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit of ``y`` with weights ``w > 0`` (pool adjacent
    violators)."""
    values: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        values.append(yi)
        weights.append(wi)
        sizes.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            wt = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / wt
            weights[-2] = wt
            sizes[-2] += sizes[-1]
            del values[-1], weights[-1], sizes[-1]
    return np.repeat(np.array(values), sizes)


def _fill(seen: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """Fitted values at the seen bins spread to every bin (nearest seen bin below, else above)."""
    idx = np.flatnonzero(seen)
    where = np.searchsorted(idx, np.arange(seen.size), side="right") - 1
    return fitted[np.maximum(where, 0)]


def _ece(rate: np.ndarray, prob: np.ndarray, total: np.ndarray) -> float | None:
    n = float(total.sum())
    return float((total * np.abs(rate - prob)).sum() / n) if n > 0 else None


def fit_calibration(
    reference: State | None, n_columns: int, method: str = "isotonic"
) -> Calibration:
    """The calibration map of each column from ``reference``'s labelled samples."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, received {method!r}")
    raw = np.broadcast_to(pred_bin_centres(), (n_columns, N_PRED_BINS)).copy()
    if reference is None or reference.weight_total <= 0:
        return Calibration(raw, "raw", 0)
    pos, total = labelled_counts(reference)
    q = raw.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(total > 0, pos / total, 0.0)
    se = np.zeros_like(q)
    for c in range(n_columns):
        seen = total[c] > 0
        if not seen.any():
            continue  # this column's map stays raw
        y, w = rate[c, seen], total[c, seen]
        fitted = isotonic(y, w) if method == "isotonic" else y
        q[c] = _fill(seen, fitted)
        se[c] = np.where(seen, np.sqrt(q[c] * (1 - q[c]) / np.maximum(total[c], 1.0)), 0.0)
    return Calibration(
        q,
        method,
        reference.n_samples,
        ece_before=_ece(rate, raw, total),
        ece_after=_ece(rate, q, total),
        standard_error=se,
    )

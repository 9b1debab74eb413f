"""The ingest kernel: turn one validated batch into additive count arrays (a *delta*).

Every field of a delta merges by addition (DESIGN §3.1). Integer counts are exact in float64 up to
2**53; weights make them real-valued sums. The large score histograms are not materialised per
batch: their delta is a ``Scatter`` (flat indices and weights) that each target state applies with
``np.add.at`` (or the compiled ``fastcount.scatter_add``), which touches only the batch's cells. A
dense per-batch histogram (``np.bincount`` with ``minlength``, then a float conversion and a
full-array add) measured 30x slower at K = 10.

``compute_delta`` hands batches to the compiled kernel (``fastcount``) when it was built, and to
``numpy_delta`` when it was not; both give the same counts (tests/engine/test_fastcount.py).
"""

from __future__ import annotations

import functools

import numpy as np

from . import fastcount
from .batch import Batch
from .layout import BinLayout
from .pred_bins import N_PRED_BINS, pred_bin_of, pred_bin_of_fine
from .row_sample import key_constants, remember_keys
from .spec import StreamSpec

__all__ = [
    "ADDED_FIELDS",
    "CONFIDENCE_BINS",
    "MAX_FIELDS",
    "CUMULATIVE_ONLY",
    "TAKEN_FROM_CUMULATIVE",
    "FIELD_DTYPES",
    "DELAY_EDGES",
    "LOG_EPS",
    "SCATTER_FIELDS",
    "Delta",
    "Scatter",
    "ScatterMax",
    "RangeDelta",
    "compute_delta",
    "confidence_of",
    "delay_delta",
    "field_shapes",
    "numpy_delta",
    "prediction_delta",
    "zero_weight_delta",
    "range_scatter",
    "single_valued",
    "MOMENT_OCTAVES",
    "MOMENT_BITS",
    "moment_band",
    "moment_delta",
    "normalise_range",
]

# Probabilities are float32: clip like sklearn's log_loss does for float32 input.
LOG_EPS = float(np.finfo(np.float32).eps)
_ROW_CHUNK_CELLS = 1 << 22  # bounds the (rows, L, L) comparison tensors of the samples metrics


SCATTER_FIELDS = ("hist", "pos", "all", "pred_hist", "moment")
CONFIDENCE_BINS = 20  # equal-width confidence bins on [0, 1] of the label-free histogram
# Upper edges (seconds) of the label delay histogram; a last bin takes longer delays. The same
# edges are the ``le`` buckets of the exported Prometheus histogram.
DELAY_EDGES = (
    0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 43200, 86400,
    172800, 345600, 604800, 1209600, 2592000,
)  # fmt: skip
# Fields added after format 1 (older states load with them at zero; ``score_range`` is then
# filled as "mixed" wherever the histogram has counts, see ``State.from_bytes``).
ADDED_FIELDS = ("pred_n", "pred_class", "pred_prob", "pred_conf", "pred_conf_sum", "pred_low",
                "delay", "delay_sum", "zero_weight_seen",
                "score_range", "pred_hist", "moment", "moment_n")  # fmt: skip
# Fields that merge by elementwise maximum instead of addition (empty cells are 0 either way).
MAX_FIELDS = ("score_range",)
# Fields kept in the cumulative state only (window buckets drop them; see above and
# ``field_shapes``' moments). A window's state takes the cumulative state's score range
# (``TAKEN_FROM_CUMULATIVE``); its moments stay zero, so its ranking metrics use the slopes.
CUMULATIVE_ONLY = (*MAX_FIELDS, "moment", "moment_n")
TAKEN_FROM_CUMULATIVE = MAX_FIELDS
# The bins' score range is part of the binned resolution: a bin that has only ever held one
# float32 value is a tie group in sklearn's sense, stepped as one threshold by the ranking formulas
# (``views``). It is kept in the cumulative state alone (2 B float32 cells, 37 KiB at the default
# 4772 bins, whatever the number of classes): window buckets leave it out (``CUMULATIVE_ONLY``) and
# a window's state takes the cumulative one's, which holds every sample any window holds, so a bin
# single-valued there is single-valued in every window (a window may see a bin mixed that is
# single-valued in its own samples: its estimate and bounds stay those of a mixed bin).
#
# Per bin b, as float32 bit patterns (positive floats order as their bits, so the elementwise
# maximum of the floats is that of the bits, and float64 holds them exactly): score_range[0, b]
# has the bits v of the largest score, score_range[1, b] the bits _RANGE_TOP - v of the smallest.
# Empty: (0, 0); one value v: (v, _RANGE_TOP - v); mixed: both RANGE_MIXED (normalise_range).
# (A score 0.0 has bits 0 and reads as empty: its bin holds no other value, atomic in the layout.)
_RANGE_TOP = 0x7F7FFFFF  # bits of the largest finite float32
RANGE_MIXED = np.float32(np.finfo(np.float32).max)  # both entries: several values seen
# Fields whose cells are not float64 (the others are, or compact uint16 histograms).
FIELD_DTYPES: dict[str, type] = {"score_range": np.float32}


class Scatter:
    """A delta given as flat indices and weights (``None``: each index counts 1).

    Index ``j`` carries ``weights[j // repeat]``: ``repeat`` cells per sample share its weight.
    """

    __slots__ = ("index", "weights", "repeat")

    def __init__(self, index: np.ndarray, weights: np.ndarray | None, repeat: int = 1) -> None:
        self.index = index
        self.weights = weights
        self.repeat = repeat

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """The delta as sorted distinct flat cells and their values (uint32 counts without
        weights, float64 sums with them)."""
        index = self.index.reshape(-1)
        if self.weights is None:
            cells, n = np.unique(index, return_counts=True)
            return cells, n.astype(np.uint32)
        w = self.weights if self.repeat == 1 else np.repeat(self.weights, self.repeat)
        cells, inverse = np.unique(index, return_inverse=True)
        return cells, np.bincount(inverse, weights=w, minlength=cells.size)

    def add_to(self, target: np.ndarray) -> None:
        if fastcount.scatter_add(target, self.index, self.weights, self.repeat):
            return
        w = self.weights
        if w is not None and self.repeat != 1:
            w = np.repeat(w, self.repeat)
        flat = target.view()
        flat.shape = (-1,)  # raises instead of silently adding into a copy (non-contiguous)
        np.add.at(flat, self.index.reshape(-1), 1.0 if w is None else w)

    def dense(self, shape: tuple[int, ...]) -> np.ndarray:
        out = np.zeros(shape)
        self.add_to(out)
        return out


class ScatterMax:
    """A delta of a maximum-merged field: ``target.flat[index] = max(target.flat[index], values)``
    (``np.maximum.at``: about 2 ns a cell, 0.1 ms for a 4096 x 10 batch)."""

    __slots__ = ("index", "values")

    def __init__(self, index: np.ndarray, values: np.ndarray) -> None:
        self.index = index
        self.values = values

    def add_to(self, target: np.ndarray) -> None:
        flat = target.view()
        flat.shape = (-1,)  # raises instead of silently updating a copy (non-contiguous)
        np.maximum.at(flat, self.index, self.values)

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """The delta as sorted distinct flat cells and their maxima."""
        cells, inverse = np.unique(self.index, return_inverse=True)
        top = np.zeros(cells.size)
        np.maximum.at(top, inverse, self.values)
        return cells, top

    def dense(self, shape: tuple[int, ...]) -> np.ndarray:
        out = np.zeros(shape)
        self.add_to(out)
        return out


# A batch's counts by field: dense arrays, and Scatter deltas for the score histograms.
Delta = dict[str, np.ndarray | Scatter | ScatterMax]


class RangeDelta(ScatterMax):
    """The ``score_range`` delta of a batch as the compiled kernels write it: the batch's own
    (2, B) float32 range (``own``, what ``normalise_range`` describes), joined into a state as
    one maximum. Its ``index`` and ``values`` (the ``ScatterMax`` form, which the Redis store's
    flat log reads: at most 2 B entries a batch) are built only when read."""

    __slots__ = ("own", "mantissa_bits", "_pair")

    def __init__(self, own: np.ndarray, mantissa_bits: int) -> None:
        self.own = own
        self.mantissa_bits = mantissa_bits
        self._pair: tuple[np.ndarray, np.ndarray] | None = None

    def _scatter(self) -> tuple[np.ndarray, np.ndarray]:
        if self._pair is None:
            flat = self.own.reshape(-1)
            index = np.flatnonzero(flat).astype(np.int32)
            self._pair = (index, flat[index].astype(np.float64))
        return self._pair

    @property
    def index(self) -> np.ndarray:  # type: ignore[override]
        return self._scatter()[0]

    @property
    def values(self) -> np.ndarray:  # type: ignore[override]
        return self._scatter()[1]

    def add_to(self, target: np.ndarray) -> None:
        if target.dtype == np.float32:
            # non-negative float32 bit patterns order as their values: the join is the maximum,
            # then normalised
            if fastcount.range_join(target, self.own):
                return
            np.maximum(target, self.own.reshape(target.shape), out=target)
        else:
            super().add_to(target)
        normalise_range(target.reshape(2, -1))


def range_scatter(scores: np.ndarray, mantissa_bits: int) -> ScatterMax:
    """The ``score_range`` delta of float32 ``scores`` (n, C) in numpy (the kernels' fallback):
    two entries a score, its bits as the high end and their complement as the low end."""
    layout = BinLayout(mantissa_bits)
    flat = np.ascontiguousarray(scores, dtype=np.float32).reshape(-1)
    bins = layout.bin_of(flat)
    bits = flat.view(np.int32) & np.int32(0x7FFFFFFF)  # -0.0 counts as 0.0
    index = np.concatenate([bins, bins + np.int32(layout.n_bins)])
    low = (np.int32(_RANGE_TOP) - bits).view(np.float32)
    return ScatterMax(index, np.concatenate([bits.view(np.float32), low]).astype(np.float64))


def _range_bits(score_range: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two rows of a (2, B) ``score_range`` (float32, or float64 holding float32 values) as
    uint32 bit patterns (non-negative float32: the sum of the two rows fits)."""
    bits = np.asarray(score_range, dtype=np.float32).view(np.uint32)
    return bits[0], bits[1]


def normalise_range(score_range: np.ndarray) -> None:
    """Write every mixed bin of a (2, B) ``score_range`` as ``RANGE_MIXED`` in both entries, in
    place. Each bin then reads empty (0, 0), one value or mixed whatever the batches, their order
    and split, or the merges that built it: the elementwise maximum followed by this is the join
    of those three states (associative and commutative), and equal states are equal arrays."""
    high, low = _range_bits(score_range)
    top = np.uint32(_RANGE_TOP)
    # bins newly mixed: those written as mixed already (high == top) need no write
    mixed = (high != 0) & (high + low != top) & (high != top)
    if mixed.any():
        score_range[:, mixed] = RANGE_MIXED


def single_valued(score_range: np.ndarray) -> np.ndarray:
    """Bins known to hold one score value (a (2, B) ``score_range``; False where empty)."""
    high, low = _range_bits(score_range)
    top = np.uint32(_RANGE_TOP)
    return np.asarray((high != 0) & (low != 0) & (high + low == top), dtype=bool)


# The within-bin moments (``moment``): the bins of scores in [2**-(J + 1), 1 - 2**-(J + 1)], J =
# MOMENT_OCTAVES (the 2 J octaves around 0.5: 2 J 2**m + 1 bins, 257 at the default 5 bits), and a
# score's position inside its bin to MOMENT_BITS bits (the top bits of the mantissa below the
# bin's; of 1 - p's in the upper half, where bins follow 1 - p). Measured on flat softmax scores
# at 1M, K = 10 (bench/truth.py): J = 3 left 1.05e-5 on one seed of six, J = 4 at most 2.5e-6;
# 4 bits against 18 changed the error by under 1e-6 and keep a bucket's cell sums in one byte.
MOMENT_OCTAVES = 4
MOMENT_BITS = 4


@functools.cache
def moment_band(mantissa_bits: int) -> tuple[int, int]:
    """``(first bin, number of bins)`` of the moments' band in the layout of ``mantissa_bits``."""
    half = BinLayout(mantissa_bits).half_bin
    reach = MOMENT_OCTAVES << mantissa_bits
    return half - reach, 2 * reach + 1


def moment_delta(spec: StreamSpec, batch: Batch) -> Delta:
    """The ``moment`` and ``moment_n`` delta of a labelled batch (binned resolution): each
    in-band score's position ``t`` (MOMENT_BITS bits, 0 at the bin's low end in the lower half,
    at its high end in the upper half, where the bins follow ``1 - p``) times its weight, at its
    (column, band bin) in row 0, and in row 1 when the sample is the column's positive."""
    m = spec.resolution.mantissa_bits
    scores = batch.scores
    n, C = scores.shape
    counted = np.array([float(n)])
    labels = batch.labels
    if spec.task != "multiclass":
        labels = labels.astype(bool, copy=False)
    layout = BinLayout(m)
    first, width = moment_band(m)
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    labels = np.asarray(labels)
    flat = scores.reshape(-1)
    bits = flat.view(np.int32)
    edge = np.float32(2.0 ** -(MOMENT_OCTAVES + 1))
    top = np.float32(1.0) - edge
    at = np.flatnonzero((bits >= edge.view(np.int32)) & (bits <= top.view(np.int32)))
    b = bits[at]
    upper = b >= np.int32(0x3F000000)
    q = (np.float32(1.0) - flat[at]).view(np.int32)
    s = np.int32(23 - m)
    low = np.int32((1 << (23 - m)) - 1)
    t = (np.where(upper, q, b) & low) >> np.int32(23 - m - MOMENT_BITS)
    high_bin = np.int32(layout.n_bins - 2 + (103 << m)) - (q >> s)
    band = np.where(upper, high_bin, (b >> s) + np.int32(2)) - np.int32(first)
    row, col = np.divmod(at, C)
    if spec.task == "multiclass":
        positive = labels[row] == col
    else:
        positive = labels.reshape(-1)[at]
    cell = col * width + band
    values = t.astype(np.float64)
    if batch.weights is not None:
        values *= batch.weights[row]
    size = C * width
    out = np.empty((2, C, width))
    out[0] = np.bincount(cell, weights=values, minlength=size).reshape(C, width)
    out[1] = np.bincount(cell[positive], weights=values[positive], minlength=size).reshape(C, width)
    return {"moment": out, "moment_n": counted}


def field_shapes(spec: StreamSpec) -> dict[str, tuple[int, ...]]:
    """Name and shape of every additive field for ``spec`` (the state's layout)."""
    C, K = spec.n_columns, spec.n_classes
    binned = spec.resolution.kind == "bins"
    B = BinLayout(spec.resolution.mantissa_bits).n_bins if binned else 0
    shapes: dict[str, tuple[int, ...]] = {
        "n": (2,),  # sample count, weight total
        "prob_sum": (C,),
        "calibration": (3, spec.calibration_bins),  # weight, weighted confidence, weighted hits
    }
    if spec.task == "multiclass":
        if binned and spec.full_ovo:
            shapes["hist"] = (K, K, B)
        elif binned:
            shapes["pos"] = (K, B)
            shapes["all"] = (K, B)
        shapes["confusion"] = (K, K)
        shapes["rank"] = (max(spec.k_max, 1),)
        shapes["log_loss"] = (1,)
        shapes["brier"] = (1,)
    else:
        if binned:
            shapes["pos"] = (C, B)
            shapes["all"] = (C, B)
        shapes["label_counts"] = (C, 4)  # tn, fp, fn, tp at the label's threshold
        if spec.task == "binary":
            shapes["log_loss"] = (1,)
            shapes["brier"] = (1,)
        else:
            # weighted sums of per-sample precision, recall, f1, subset hits, label mismatches
            shapes["samples_prf"] = (5,)
            shapes["samples_auc"] = (2,)  # sum of per-sample AUC, weight of defined samples
            shapes["samples_ap"] = (2,)
    # Last, so that the offsets of the fields above stay those of states written before them
    # (the Redis store's flat layout). Label-free figures: every prediction, labelled or awaiting
    # its label, counted once.
    shapes["pred_n"] = (2,)  # predictions, their weight
    shapes["pred_class"] = (C,)  # weight predicted per column (multiclass argmax, else thresholded)
    shapes["pred_prob"] = (C,)  # weighted probability sums
    shapes["pred_conf"] = (CONFIDENCE_BINS,)  # weighted confidence histogram (per label cell)
    shapes["pred_conf_sum"] = (1,)
    shapes["pred_low"] = (1,)  # weight below spec.low_confidence
    # Label delay of the pairs joined by id (labels sent after their predictions).
    shapes["delay"] = (len(DELAY_EDGES) + 1,)
    shapes["delay_sum"] = (1,)
    if spec.task != "multilabel":
        # Samples of weight 0 per class: rows 0 (true class) and 1 (predicted class). sklearn's
        # macro averages include every class present in the labels or predictions, whatever
        # their weights; the weighted confusion matrix cannot tell those classes apart.
        shapes["zero_weight_seen"] = (2, spec.n_classes)
    if binned:
        # largest and smallest score per bin over every column (MAX_FIELDS, CUMULATIVE_ONLY,
        # FIELD_DTYPES): 2 B float32 cells, 37 KiB at the default 4772 bins, whatever K
        shapes["score_range"] = (2, B)
    # Every prediction's scores on the coarse layout, by what was predicted: multiclass
    # (predicted class, column, bin); binary and multilabel (column, predicted side: below or at
    # the threshold and above, bin). Estimated metrics weigh these cells by calibrated
    # probabilities (``estimate.py``).
    Bc = N_PRED_BINS  # the coarse layout of ``pred_bins``
    shapes["pred_hist"] = (C, C, Bc) if spec.task == "multiclass" else (C, 2, Bc)
    if binned:
        # Where each score sits inside its bin, summed per (column, bin) over a band of the
        # coarse middle bins: row 0 every sample, row 1 the column's positives (``moment_delta``),
        # and the samples whose moments were counted (``views`` trusts the moments only when
        # that equals the state's sample count: a state fed before the moments existed falls
        # back to the density slopes). Last, so that the fields above keep their offsets.
        shapes["moment"] = (2, C, moment_band(spec.resolution.mantissa_bits)[1])
        shapes["moment_n"] = (1,)
    return shapes


def _w(batch: Batch) -> np.ndarray:
    return batch.weights if batch.weights is not None else np.ones(batch.n)


def compute_delta(spec: StreamSpec, batch: Batch, predictions: bool = True) -> Delta:
    """Counts contributed by ``batch``: dense arrays shaped as ``field_shapes(spec)``, and
    ``Scatter`` deltas for the score histograms.

    ``predictions=False`` leaves out the label-free fields: for pairs joined by id, whose
    predictions were counted when they were logged."""
    if not fastcount.enabled():
        out = numpy_delta(spec, batch)
    elif spec.task == "multiclass":
        out = _fast_multiclass_delta(spec, batch, predictions)
    else:
        out = _fast_labelwise_delta(spec, batch, predictions)
    if spec.resolution.kind == "bins" and "score_range" not in out:  # the numpy kernel
        out["score_range"] = range_scatter(batch.scores, spec.resolution.mantissa_bits)
    if spec.resolution.kind == "bins" and "moment" not in out:
        out.update(moment_delta(spec, batch))
    if predictions and "pred_hist" not in out:
        fine = None
        if spec.resolution.kind == "bins":
            cells = out["hist"] if "hist" in out else out["all"]
            assert isinstance(cells, Scatter)
            fine = cells.index
        out.update(
            prediction_delta(spec, batch.scores, batch.weights, labelled=out, fine_index=fine)
        )
    if spec.task != "multilabel" and batch.weights is not None:
        out.update(zero_weight_delta(spec, batch))
    return out


def zero_weight_delta(spec: StreamSpec, batch: Batch) -> Delta:
    """``zero_weight_seen`` of a weighted batch (empty when no weight is 0: the common case)."""
    assert batch.weights is not None
    zero = batch.weights == 0
    if not zero.any():
        return {}
    scores, labels = batch.scores[zero], batch.labels[zero]
    if spec.task == "multiclass":
        truth, pred = labels, np.argmax(scores, axis=1)
    else:
        truth = labels[:, 0].astype(np.int64)
        pred = (scores[:, 0] >= np.float32(spec.thresholds[0])).astype(np.int64)
    K = spec.n_classes
    return {
        "zero_weight_seen": np.stack(
            [np.bincount(truth, minlength=K), np.bincount(pred, minlength=K)]
        ).astype(np.float64)
    }


def confidence_of(spec: StreamSpec, scores: np.ndarray) -> np.ndarray:
    """Per-prediction confidence in float64: the top probability (multiclass), else the
    probability of the predicted side of each label, ``max(p, 1 - p)``, shape (n, C)."""
    if spec.task == "multiclass":
        top = scores[:, 0].copy()
        for j in range(1, scores.shape[1]):  # column by column: 7x faster than max(axis=1)
            np.maximum(top, scores[:, j], out=top)
        return top.astype(np.float64)
    p = scores.astype(np.float64)
    return np.maximum(p, 1.0 - p)


def prediction_delta(
    spec: StreamSpec,
    scores: np.ndarray,
    weights: np.ndarray | None = None,
    labelled: Delta | None = None,
    fine_index: np.ndarray | None = None,
) -> Delta:
    """The label-free fields of predictions (float32 probabilities, shape (n, C)).

    ``fine_index``: the labelled histogram's cell index of every score (row-major, ``n * C``
    cells whose remainder by the layout's bin count is the score's bin), when the caller has it;
    the coarse ``pred_hist`` bins are then read from it instead of binning the scores again.

    ``labelled`` is the delta of the same rows as a labelled batch: its sample count, probability
    sums and confusion counts already hold ``pred_n``, ``pred_prob`` and ``pred_class``, so only
    the confidence fields are computed (labelled ingest pays about 20 % for the label-free
    figures instead of 2x; bench/delayed_labels.py)."""
    n, C = scores.shape
    w = np.ones(n) if weights is None else weights
    if labelled is not None:
        pred_n = np.asarray(labelled["n"], dtype=np.float64)
        prob = np.asarray(labelled["prob_sum"], dtype=np.float64)
        if spec.task == "multiclass":
            pred_class = np.asarray(labelled["confusion"]).sum(axis=0)
        else:
            counts = np.asarray(labelled["label_counts"])
            pred_class = counts[:, 1] + counts[:, 3]  # fp + tp: predicted positive
    else:
        pred_n = np.array([float(n), float(w.sum())])
        if spec.task == "multiclass":
            pred = np.argmax(scores, axis=1)
            pred_class = np.bincount(pred, weights=weights, minlength=C).astype(np.float64)
        else:
            hit = scores >= np.asarray(spec.thresholds, dtype=np.float32)
            pred_class = (w @ hit) if weights is not None else hit.sum(axis=0).astype(np.float64)
        if weights is not None:
            prob = w @ scores.astype(np.float64)
        else:
            prob = scores.sum(axis=0, dtype=np.float64)
    cell_w = w if spec.task == "multiclass" else np.repeat(w, C)
    conf = confidence_of(spec, scores).ravel()
    cbin = np.minimum((conf * CONFIDENCE_BINS).astype(np.int64), CONFIDENCE_BINS - 1)
    low = conf < spec.low_confidence
    return {
        "pred_hist": _pred_hist_delta(spec, scores, weights, fine_index),
        "pred_n": pred_n.copy(),
        "pred_class": np.asarray(pred_class, dtype=np.float64),
        "pred_prob": prob.copy(),
        "pred_conf": np.bincount(cbin, weights=cell_w, minlength=CONFIDENCE_BINS).astype(
            np.float64
        ),
        "pred_conf_sum": np.array([float(cell_w @ conf)]),
        "pred_low": np.array([float(cell_w[low].sum())]),
    }


def _pred_hist_delta(
    spec: StreamSpec,
    scores: np.ndarray,
    weights: np.ndarray | None,
    fine_index: np.ndarray | None = None,
) -> Scatter:
    """The ``pred_hist`` cells of float32 ``scores`` (n, C): one per score, row-major."""
    n, C = scores.shape
    Bc = np.int32(N_PRED_BINS)
    m = spec.resolution.mantissa_bits
    if (
        fine_index is not None
        and fine_index.size == n * C
        and spec.resolution.kind == "bins"
        and m >= 2
    ):
        table = pred_bin_of_fine(m)
        bins = table[fine_index.reshape(n, C) % np.int32(table.size)]
    else:
        bins = pred_bin_of(scores)  # (n, C) int32
    if spec.task == "multiclass":
        pred = np.argmax(scores, axis=1).astype(np.int32)
        index = (pred[:, None] * np.int32(C) + np.arange(C, dtype=np.int32)) * Bc + bins
    else:
        side = (scores >= np.asarray(spec.thresholds, dtype=np.float32)).astype(np.int32)
        index = (np.arange(C, dtype=np.int32) * 2 + side) * Bc + bins
    return Scatter(index.reshape(-1), weights, C)


def delay_delta(delays: np.ndarray) -> Delta:
    """Histogram of label delays in seconds (bin i: ``DELAY_EDGES[i-1] < d <= DELAY_EDGES[i]``)."""
    d = np.maximum(np.asarray(delays, dtype=np.float64), 0.0)
    index = np.searchsorted(np.asarray(DELAY_EDGES, dtype=np.float64), d, side="left")
    return {
        "delay": np.bincount(index, minlength=len(DELAY_EDGES) + 1).astype(np.float64),
        "delay_sum": np.array([float(d.sum())]),
    }


def _fast_multiclass_delta(spec: StreamSpec, batch: Batch, predictions: bool = False) -> Delta:
    """The compiled kernel's counts of a multiclass batch; with ``predictions``, the label-free
    fields of the same rows too, from the same pass (``prediction_delta``'s values)."""
    binned = spec.resolution.kind == "bins"
    counts = fastcount.multiclass_counts(
        batch.scores,
        batch.labels,
        batch.weights,
        mantissa_bits=spec.resolution.mantissa_bits if binned else None,
        full_ovo=spec.full_ovo,
        rank_len=max(spec.k_max, 1),
        top_k=spec.k_max > 0,
        calibration_bins=spec.calibration_bins,
        log_eps=LOG_EPS,
        predictions=(CONFIDENCE_BINS, spec.low_confidence) if predictions else None,
        key_constants=key_constants(spec),
        moments=(MOMENT_OCTAVES, MOMENT_BITS) if binned else None,
    )
    _remember_keys(batch, counts)
    out: Delta = {k: v for k, v in counts.items() if k not in _KERNEL_OUTPUTS}
    K, w = spec.n_classes, batch.weights
    if binned:
        index = counts["index"]
        if spec.full_ovo:
            out["hist"] = Scatter(index, w, K)
        else:
            out["all"] = Scatter(index, w, K)
            out["pos"] = Scatter(counts["pos_index"], w)
    if predictions:
        out.update(_kernel_label_free(counts, w, K, np.asarray(counts["confusion"]).sum(axis=0)))
    return _with_kernel_fields(out, spec, counts)


def _remember_keys(batch: Batch, counts: dict[str, np.ndarray]) -> None:
    """Keep the row sample's keys a kernel computed in its pass on the batch (``batch_keys``
    reads them instead of hashing the rows a second time)."""
    if "row_keys" in counts:
        remember_keys(batch, counts["row_keys"])


def _with_kernel_fields(out: Delta, spec: StreamSpec, counts: dict[str, np.ndarray]) -> Delta:
    """``out`` with the batch's own score range and the moments the kernel wrote (binned
    layouts; an unweighted batch's moments as the integers they are, as ``moment_delta``)."""
    if "moment" in counts:
        mom = counts["moment"]
        out["moment"] = mom  # an unweighted batch's as uint64 (fastcount)
        out["moment_n"] = np.array([float(counts["n"][0])])
    if "score_range" in counts:
        out["score_range"] = RangeDelta(counts["score_range"], spec.resolution.mantissa_bits)
    return out


def _kernel_label_free(
    counts: dict[str, np.ndarray], w: np.ndarray | None, C: int, pred_class: np.ndarray
) -> Delta:
    """The label-free fields of a labelled batch from a kernel's counts: its sample count,
    probability sums and predicted classes (``pred_class``) are its counts' (see
    ``prediction_delta``), the rest the kernel counted from the same pass."""
    tot = counts["pred_conf_tot"]
    if "pred_index" in counts:  # each score's cell (many classes)
        pred_hist: np.ndarray | Scatter = Scatter(counts["pred_index"], w, C)
    else:  # the dense counts; an unweighted batch's as uint64 (fastcount), which a compact
        pred_hist = counts["pred_hist"]  # state adds as they are
    return {
        "pred_hist": pred_hist,
        "pred_n": np.array(counts["n"], dtype=np.float64),
        "pred_class": np.asarray(pred_class, dtype=np.float64),
        "pred_prob": np.array(counts["prob_sum"], dtype=np.float64),
        "pred_conf": counts["pred_conf"],
        "pred_conf_sum": tot[0:1].copy(),
        "pred_low": tot[1:2].copy(),
    }


def _fast_labelwise_delta(spec: StreamSpec, batch: Batch, predictions: bool = False) -> Delta:
    """The compiled kernel's counts of a binary or multilabel batch (and, with
    ``predictions``, its label-free fields), as ``_fast_multiclass_delta``."""
    binned = spec.resolution.kind == "bins"
    counts = fastcount.labelwise_counts(
        batch.scores,
        batch.labels,
        batch.weights,
        thresholds=spec.thresholds,
        mantissa_bits=spec.resolution.mantissa_bits if binned else None,
        binary=spec.task == "binary",
        calibration_bins=spec.calibration_bins,
        log_eps=LOG_EPS,
        predictions=(CONFIDENCE_BINS, spec.low_confidence) if predictions else None,
        key_constants=key_constants(spec),
        moments=(MOMENT_OCTAVES, MOMENT_BITS) if binned else None,
    )
    _remember_keys(batch, counts)
    out: Delta = {k: v for k, v in counts.items() if k not in _KERNEL_OUTPUTS}
    C = spec.n_columns
    if binned:
        out["all"] = Scatter(counts["all_index"], batch.weights, C)
        out["pos"] = Scatter(counts["pos_index"], counts.get("pos_weights"))
    if predictions:
        tally = np.asarray(counts["label_counts"])
        out.update(_kernel_label_free(counts, batch.weights, C, tally[:, 1] + tally[:, 3]))
    return _with_kernel_fields(out, spec, counts)


# what the kernels return besides dense count fields: cells and label-free sums, turned into
# fields above
_KERNEL_OUTPUTS = (
    "index",
    "pos_index",
    "all_index",
    "pos_weights",
    "score_range",
    "pred_hist",
    "pred_index",
    "pred_conf",
    "pred_conf_tot",
    "row_keys",
    "moment",
)


def numpy_delta(spec: StreamSpec, batch: Batch) -> Delta:
    """``compute_delta`` in numpy alone (every task; the reference for the compiled kernel)."""
    shapes = field_shapes(spec)
    w = batch.weights
    weights = _w(batch)
    scores = batch.scores
    n, C = scores.shape
    out: Delta = {"n": np.array([float(n), float(weights.sum())])}
    out["prob_sum"] = (
        weights @ scores.astype(np.float64)
        if w is not None
        else scores.sum(axis=0, dtype=np.float64)
    )
    binned = spec.resolution.kind == "bins"
    if binned:
        layout = BinLayout(spec.resolution.mantissa_bits)
        B = layout.n_bins
        bins = layout.bin_of(scores)
    if spec.task == "multiclass":
        K = C
        labels = batch.labels
        rows = np.arange(n)
        if binned:
            wk = None if w is None else np.repeat(w, K)
            if "hist" in shapes:  # int32 indices: K * K * B < 2**31 for every allowed layout
                lab = labels.astype(np.int32)
                flat = lab[:, None] * np.int32(K * B) + np.arange(0, K * B, B, dtype=np.int32)
                flat += bins
                out["hist"] = Scatter(flat.ravel(), wk)
            else:
                col = np.arange(0, K * B, B, dtype=np.int32) + bins
                out["all"] = Scatter(col.ravel(), wk)
                out["pos"] = Scatter(col[rows, labels], w)
        pred = np.argmax(scores, axis=1)
        out["confusion"] = _count(labels * K + pred, w, K * K).reshape(K, K)
        true_score = scores[rows, labels]
        top_score = scores[rows, pred]
        k_len = shapes["rank"][0]
        if spec.k_max:
            above = (scores > true_score[:, None]).sum(axis=1)
            tied_after = ((scores == true_score[:, None]) & (np.arange(K) > labels[:, None])).sum(
                axis=1
            )
            rank = above + tied_after  # sklearn's stable argsort, reversed, puts later ties first
            keep = rank < k_len
            out["rank"] = _count(rank[keep], None if w is None else w[keep], k_len)
        else:
            out["rank"] = np.zeros(k_len)
        p_true = np.clip(true_score.astype(np.float64), LOG_EPS, 1 - LOG_EPS)
        out["log_loss"] = np.array([float(weights @ -np.log(p_true))])
        sq = np.einsum("ij,ij->i", scores, scores, dtype=np.float64)
        sq += 1.0 - 2.0 * true_score.astype(np.float64)
        out["brier"] = np.array([float(weights @ sq)])
        confidence = top_score.astype(np.float64)
        hits = (pred == labels).astype(np.float64)
    else:
        labels = batch.labels  # bool (n, C)
        if binned:
            col = np.arange(0, C * B, B, dtype=np.int32) + bins
            wc = None if w is None else np.repeat(w, C)
            out["all"] = Scatter(col.ravel(), wc)
            pos_w = None if w is None else np.broadcast_to(w[:, None], (n, C))[labels]
            out["pos"] = Scatter(col[labels], pos_w)
        thresholds = np.asarray(spec.thresholds, dtype=np.float64)
        pred = scores >= thresholds.astype(np.float32)
        cell = np.arange(C) * 4 + labels * 2 + pred
        wc = None if w is None else np.repeat(w, C)
        out["label_counts"] = _count(cell.ravel(), wc, C * 4).reshape(C, 4)
        p = scores.astype(np.float64)
        y = labels.astype(np.float64)
        if spec.task == "binary":
            pc = np.clip(p[:, 0], LOG_EPS, 1 - LOG_EPS)
            ll = -(y[:, 0] * np.log(pc) + (1 - y[:, 0]) * np.log1p(-pc))
            out["log_loss"] = np.array([float(weights @ ll)])
            out["brier"] = np.array([float(weights @ (y[:, 0] - p[:, 0]) ** 2)])
        else:
            out.update(_samples_sums(scores, labels, pred, weights))
        confidence = p.ravel()
        hits = y.ravel()
        weights = np.repeat(weights, C)
    nb = spec.calibration_bins
    cbin = np.minimum((confidence * nb).astype(np.int64), nb - 1)
    out["calibration"] = np.stack(
        [
            np.bincount(cbin, weights=weights, minlength=nb),
            np.bincount(cbin, weights=weights * confidence, minlength=nb),
            np.bincount(cbin, weights=weights * hits, minlength=nb),
        ]
    )
    return out


def _count(index: np.ndarray, weights: np.ndarray | None, size: int) -> np.ndarray:
    counts = np.bincount(index, weights=weights, minlength=size)
    return counts.astype(np.float64, copy=False)


def _samples_sums(
    scores: np.ndarray, labels: np.ndarray, pred: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Weighted sums of the per-sample metrics behind sklearn's ``average='samples'``."""
    tp = (pred & labels).sum(axis=1).astype(np.float64)
    n_pred = pred.sum(axis=1)
    n_true = labels.sum(axis=1)
    fp = n_pred - tp
    fn = n_true - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, tp / n_pred, 0.0)
        recall = np.where(n_true > 0, tp / n_true, 0.0)
        denom = 2 * tp + fp + fn
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    subset = (pred == labels).all(axis=1)
    mismatches = (pred != labels).sum(axis=1)
    prf = np.array(
        [
            weights @ precision,
            weights @ recall,
            weights @ f1,
            weights @ subset,
            weights @ mismatches,
        ]
    )
    n, L = scores.shape
    auc_sum = auc_w = ap_sum = ap_w = 0.0
    step = max(1, _ROW_CHUNK_CELLS // (L * L))
    for start in range(0, n, step):
        s = scores[start : start + step]
        y = labels[start : start + step]
        ww = weights[start : start + step]
        n_pos = y.sum(axis=1)
        # cmp[i, a, b] = 1 if s[a] > s[b], 0.5 if tied, 0 otherwise
        gt = s[:, :, None] > s[:, None, :]
        eq = s[:, :, None] == s[:, None, :]
        pair = y[:, :, None] & ~y[:, None, :]
        wins = (gt & pair).sum(axis=(1, 2)) + 0.5 * (eq & pair).sum(axis=(1, 2))
        n_pairs = n_pos * (L - n_pos)
        ok = n_pairs > 0
        auc_sum += float(ww[ok] @ (wins[ok] / n_pairs[ok]))
        auc_w += float(ww[ok].sum())
        # AP of a row: mean over its positives l of (#positives >= s_l) / (#labels >= s_l)
        ge = ~gt  # ge[i, a, b] = s[b] >= s[a]
        n_ge = ge.sum(axis=2)
        n_pos_ge = (ge & y[:, None, :]).sum(axis=2)
        has = n_pos > 0
        prec = np.where(y, n_pos_ge / np.maximum(n_ge, 1), 0.0).sum(axis=1)
        ap_sum += float(ww[has] @ (prec[has] / n_pos[has]))
        ap_w += float(ww[has].sum())
    return {
        "samples_prf": prf.astype(np.float64),
        "samples_auc": np.array([auc_sum, auc_w]),
        "samples_ap": np.array([ap_sum, ap_w]),
    }

"""The optional compiled ingest kernel (``_fastcount``, plain C built at install time).

``counting.compute_delta`` uses it when it is importable and switched on, and the numpy kernel
(``counting.numpy_delta``) otherwise; both give the same counts (tested field by field). The kernel
makes one pass over a batch instead of some twenty numpy passes (and, for multilabel streams, no
(n, L, L) comparison tensors), and adds histogram cells into a state with a plain loop instead of
``np.add.at``.

Beside the two counting kernels it has the one-pass helpers around them: ``count16`` and
``add16`` (compact 16-bit counts with their carries), ``range_join`` (a batch's score range into a
state's), ``row_keys``, ``bins`` and ``sample_insert`` (the row sample), and ``row_sums``
(validation). Each declines, doing nothing, when the kernel is off or the arrays are not in its
form, and the numpy path then does the same work (tested equal).

Without a C compiler at install time the extension is skipped (the build treats it as optional)
and ``available()`` is False. ``EVALSTREAM_FASTCOUNT=0`` in the environment, or the ``disabled()``
context, switches it off.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

from .layout import BinLayout
from .pred_bins import N_PRED_BINS, PRED_FINE_BITS, pred_bin_of_fine, pred_fine_table

__all__ = [
    "available",
    "enabled",
    "disabled",
    "multiclass_counts",
    "labelwise_counts",
    "scatter_add",
    "count16",
    "row_keys",
]

_kernel: ModuleType | None
try:
    _kernel = importlib.import_module(f"{__package__}._fastcount")
except ImportError:  # built without a compiler: the numpy kernel does the work
    _kernel = None

_switched_on = os.environ.get("EVALSTREAM_FASTCOUNT", "1").strip().lower() not in (
    "0",
    "false",
    "no",
    "off",
)


def available() -> bool:
    """Whether the compiled kernel was built and imports."""
    return _kernel is not None


def enabled() -> bool:
    """Whether ``compute_delta`` uses the compiled kernel now."""
    return _kernel is not None and _switched_on


def _kernel_target(target: np.ndarray, dtype: type[np.generic]) -> bool:
    """Whether the kernel is on and may write ``target`` (C-contiguous, writeable, ``dtype``)."""
    return (
        enabled() and target.dtype == dtype and target.flags.c_contiguous and target.flags.writeable
    )


@contextmanager
def disabled() -> Iterator[None]:
    """Use the numpy kernel inside this block (tests and benchmarks compare the two)."""
    global _switched_on
    before = _switched_on
    _switched_on = False
    try:
        yield
    finally:
        _switched_on = before


class _LabelFree:
    """The label-free arguments both counting kernels take (``counting.prediction_delta``'s
    fields and the batch's own score range) for ``n_cells`` scores and a ``pred_hist`` of
    ``pred_shape`` rows, and their outputs once the kernel has run. The kernel adds into
    ``pred_hist``'s dense counts when it has no more cells than the batch has scores (few
    classes: zeroing and adding them costs less than a cell a score), else it writes each
    score's cell (``pred_index``)."""

    __slots__ = ("args", "outputs")

    def __init__(
        self,
        n_cells: int,
        pred_shape: tuple[int, int],
        mantissa_bits: int | None,
        predictions: tuple[int, float] | None,
    ) -> None:
        score_range = pred_hist = pred_index = pred_table = conf_hist = conf_tot = None
        pred_m, low_conf = -1, 1.0
        if mantissa_bits is not None:
            score_range = np.zeros((2, BinLayout(mantissa_bits).n_bins), dtype=np.float32)
        if predictions is not None:
            conf_bins, low_conf = predictions
            if pred_shape[0] * pred_shape[1] * N_PRED_BINS <= n_cells:
                pred_hist = np.zeros((*pred_shape, N_PRED_BINS))
            else:
                pred_index = np.empty(n_cells, dtype=np.int32)
            if mantissa_bits is not None and mantissa_bits >= 2:  # the coarse layout nests
                pred_table = pred_bin_of_fine(mantissa_bits)
            else:
                pred_m, pred_table = PRED_FINE_BITS, pred_fine_table()
            conf_hist = np.zeros(conf_bins)
            conf_tot = np.zeros(2)
        self.args = (
            pred_hist if pred_hist is not None else pred_index,
            pred_table,
            pred_m,
            N_PRED_BINS,
            score_range,
            conf_hist,
            low_conf,
            conf_tot,
        )
        self.outputs = {
            name: arr
            for name, arr in (
                ("score_range", score_range),
                ("pred_hist", pred_hist),
                ("pred_index", pred_index),
                ("pred_conf", conf_hist),
                ("pred_conf_tot", conf_tot),
            )
            if arr is not None
        }


class _Keys:
    """The row sample's keys (``row_sample.row_keys``) both counting kernels compute in their
    pass when given the constants (``row_sample.key_constants``): ``row_keys`` (n,) uint64."""

    __slots__ = ("args", "outputs")

    def __init__(self, n: int, constants: np.ndarray | None) -> None:
        out = None if constants is None else np.empty(n, dtype=np.uint64)
        self.args = (out, constants)
        self.outputs = {} if out is None else {"row_keys": out}


class _Moments:
    """The within-bin moments (``counting.moment_delta``) both counting kernels add in their
    pass when given ``(octaves, bits)`` and a histogram: ``moment`` (2, C, width), float64 sums
    of a weighted batch, uint64 of an unweighted one (whole numbers, which a compact state adds
    as they are)."""

    __slots__ = ("args", "outputs")

    def __init__(
        self, C: int, mantissa_bits: int | None, moments: tuple[int, int] | None, weighted: bool
    ) -> None:
        self.args: tuple[object, ...] = ()
        self.outputs: dict[str, np.ndarray] = {}
        if moments is not None and mantissa_bits is not None:
            octaves, bits = moments
            shape = (2, C, 2 * (octaves << mantissa_bits) + 1)
            out = np.zeros(shape, np.float64 if weighted else np.uint64)
            self.args = (out, octaves, bits)
            self.outputs = {"moment": out}


def multiclass_counts(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None,
    *,
    mantissa_bits: int | None,
    full_ovo: bool,
    rank_len: int,
    top_k: bool,
    calibration_bins: int,
    log_eps: float,
    predictions: tuple[int, float] | None = None,
    key_constants: np.ndarray | None = None,
    moments: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Counts of one validated multiclass batch in one pass.

    Returns the dense fields of ``counting.field_shapes`` (``n``, ``prob_sum``, ``calibration``,
    ``confusion``, ``rank``, ``log_loss``, ``brier``) and, when ``mantissa_bits`` is not None,
    the int32 histogram cells: ``index`` (n * K, row-major) into the (K, K, B) histogram
    (``full_ovo``) or into ``ALL`` (K, B), ``pos_index`` (n,) into ``POS`` (K, B) and the
    batch's own ``score_range`` ((2, B) float32, ``counting.RangeDelta``'s form).

    ``predictions``: ``(confidence bins, low-confidence threshold)`` to count the label-free
    fields of the same rows too (``counting.prediction_delta``): ``pred_hist`` (the
    (K, K, bins) float64 counts) or ``pred_index`` (n * K int32 cells: ``_LabelFree`` says
    which), ``pred_conf`` and ``pred_conf_tot`` (the weighted top
    probability and the weight below the threshold). ``key_constants``: the row sample's
    (``row_sample.key_constants``), to have the rows' keys as ``row_keys`` from the same pass.
    """
    assert _kernel is not None, "fastcount.multiclass_counts without the compiled kernel"
    n, K = scores.shape
    binned = mantissa_bits is not None
    index = np.empty(n * K, dtype=np.int32) if binned else None
    pos_index = np.empty(n, dtype=np.int32) if binned and not full_ovo else None
    label_free = _LabelFree(n * K, (K, K), mantissa_bits, predictions)
    keys = _Keys(n, key_constants)
    band = _Moments(K, mantissa_bits, moments, weights is not None)
    confusion = np.zeros((K, K))
    rank = np.zeros(rank_len)
    calibration = np.zeros((3, calibration_bins))
    prob_sum = np.zeros(K)
    totals = np.zeros(3)  # weight total, log loss, Brier
    _kernel.multiclass(
        np.ascontiguousarray(scores, dtype=np.float32),
        np.ascontiguousarray(labels, dtype=np.int64),
        None if weights is None else np.ascontiguousarray(weights, dtype=np.float64),
        K,
        -1 if mantissa_bits is None else mantissa_bits,
        full_ovo,
        top_k,
        log_eps,
        index,
        pos_index,
        confusion,
        rank,
        calibration,
        prob_sum,
        totals,
        *label_free.args,
        *keys.args,
        *band.args,
    )
    out = {
        "n": np.array([float(n), totals[0]]),
        "prob_sum": prob_sum,
        "calibration": calibration,
        "confusion": confusion,
        "rank": rank,
        "log_loss": totals[1:2].copy(),
        "brier": totals[2:3].copy(),
    }
    if index is not None:
        out["index"] = index
    if pos_index is not None:
        out["pos_index"] = pos_index
    out.update(label_free.outputs)
    out.update(keys.outputs)
    out.update(band.outputs)
    if weights is None:
        _as_counts(out)
    return out


def labelwise_counts(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None,
    *,
    thresholds: tuple[float, ...],
    mantissa_bits: int | None,
    binary: bool,
    calibration_bins: int,
    log_eps: float,
    predictions: tuple[int, float] | None = None,
    key_constants: np.ndarray | None = None,
    moments: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Counts of one validated binary or multilabel batch in one pass.

    Returns the dense fields of ``counting.field_shapes`` and, when ``mantissa_bits`` is not
    None, the int32 cells ``all_index`` (n * C, row-major) into ``ALL`` (C, B) and
    ``pos_index`` into ``POS`` (C, B): the cells of the positive entries in row-major order,
    with their weights in ``pos_weights`` for a weighted batch, and the batch's own
    ``score_range``. ``predictions``: as ``multiclass_counts`` (the confidence is the
    probability of the predicted side, ``max(p, 1 - p)``); ``key_constants`` too.
    """
    assert _kernel is not None, "fastcount.labelwise_counts without the compiled kernel"
    n, C = scores.shape
    binned = mantissa_bits is not None
    all_index = np.empty(n * C, dtype=np.int32) if binned else None
    pos_index = np.empty(n * C, dtype=np.int32) if binned else None
    pos_weights = np.empty(n * C) if binned and weights is not None else None
    label_counts = np.zeros((C, 4))
    calibration = np.zeros((3, calibration_bins))
    prob_sum = np.zeros(C)
    totals = np.zeros(3)  # weight total, log loss, Brier
    samples = None if binary else np.zeros(9)
    label_free = _LabelFree(n * C, (C, 2), mantissa_bits, predictions)
    keys = _Keys(n, key_constants)
    band = _Moments(C, mantissa_bits, moments, weights is not None)
    n_pos = _kernel.labelwise(
        np.ascontiguousarray(scores, dtype=np.float32),
        np.ascontiguousarray(labels, dtype=bool),
        None if weights is None else np.ascontiguousarray(weights, dtype=np.float64),
        np.asarray(thresholds, dtype=np.float64).astype(np.float32),
        -1 if mantissa_bits is None else mantissa_bits,
        binary,
        not binary,
        log_eps,
        all_index,
        pos_index,
        pos_weights,
        label_counts,
        calibration,
        prob_sum,
        totals,
        samples,
        *label_free.args,
        *keys.args,
        *band.args,
    )
    out = {
        "n": np.array([float(n), totals[0]]),
        "prob_sum": prob_sum,
        "calibration": calibration,
        "label_counts": label_counts,
    }
    if binary:
        out["log_loss"] = totals[1:2].copy()
        out["brier"] = totals[2:3].copy()
    else:
        assert samples is not None
        out["samples_prf"] = samples[:5].copy()
        out["samples_auc"] = samples[5:7].copy()
        out["samples_ap"] = samples[7:9].copy()
    if all_index is not None and pos_index is not None:
        out["all_index"] = all_index
        out["pos_index"] = pos_index[:n_pos]
        if pos_weights is not None:
            out["pos_weights"] = pos_weights[:n_pos]
    out.update(label_free.outputs)
    out.update(keys.outputs)
    out.update(band.outputs)
    if weights is None:
        _as_counts(out)
    return out


def _as_counts(out: dict[str, np.ndarray]) -> None:
    """An unweighted batch's dense ``pred_hist`` counts, which the kernels turn into uint64 in
    their own memory (whole numbers: a compact state adds them as they are)."""
    if "pred_hist" in out:
        out["pred_hist"] = out["pred_hist"].view(np.uint64)


def scatter_add(
    target: np.ndarray, index: np.ndarray, weights: np.ndarray | None, repeat: int = 1
) -> bool:
    """``target.flat[index[j]] += weights[j // repeat]`` (1 without weights), like ``np.add.at``.

    Returns False, doing nothing, when the kernel is off or the arrays are not in its form
    (C-contiguous float64 target, int32 index); the caller then uses ``np.add.at``.
    """
    if (
        not _kernel_target(target, np.float64)
        or index.dtype != np.int32
        or (weights is not None and weights.dtype != np.float64)
    ):
        return False
    assert _kernel is not None
    _kernel.scatter_add(
        target,
        np.ascontiguousarray(index),
        None if weights is None else np.ascontiguousarray(weights),
        repeat,
    )
    return True


def count16(target: np.ndarray, index: np.ndarray) -> np.ndarray | None:
    """``target.flat[index[j]] += 1`` on a uint16 array of low bits; returns the cells that
    wrapped from 65535 to 0 (one entry per wrap, int32), or None, doing nothing, when the kernel
    is off or the arrays are not in its form (C-contiguous uint16 target, int32 index)."""
    if not _kernel_target(target, np.uint16) or index.dtype != np.int32:
        return None
    assert _kernel is not None
    flat = np.ascontiguousarray(index).reshape(-1)
    wrapped = np.empty(flat.size, dtype=np.int32)
    n = _kernel.count16(target, flat, wrapped)
    return wrapped[:n].copy()


def add16(target: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``target += values`` on a uint16 array of low bits and uint64 counts of its shape (a
    dense delta); returns the cells that passed 65,535 and how many times they wrapped (int64
    arrays), or None, doing nothing, when the kernel is off or the arrays are not in its form."""
    if (
        not _kernel_target(target, np.uint16)
        or values.dtype != np.uint64
        or values.shape != target.shape
    ):
        return None
    assert _kernel is not None
    cells = np.empty(target.size, dtype=np.int64)
    wraps = np.empty(target.size, dtype=np.int64)
    n = _kernel.add16(target, np.ascontiguousarray(values), cells, wraps)
    return cells[:n].copy(), wraps[:n].copy()


def bins(scores: np.ndarray, mantissa_bits: int) -> np.ndarray | None:
    """``BinLayout(mantissa_bits).bin_of`` of float32 ``scores`` (any shape) in one compiled
    pass, the same int32 bins; None, doing nothing, when the kernel is off or the scores are not
    float32 (a few rows' bins cost a dozen numpy calls otherwise)."""
    if not enabled() or scores.dtype != np.float32:
        return None
    assert _kernel is not None
    out = np.empty(scores.shape, dtype=np.int32)
    _kernel.bins(out, np.ascontiguousarray(scores), mantissa_bits)
    return out


def sample_insert(
    keys: np.ndarray,
    wsq: np.ndarray,
    bins: np.ndarray,
    labels: np.ndarray,
    batch_keys: np.ndarray,
    scores: np.ndarray,
    batch_labels: np.ndarray,
    mantissa_bits: int,
    limit: int,
) -> bool:
    """An unweighted multiclass batch's rows into a full ``row_sample.RowSample`` (its
    ``keys``, ``wsq``, ``bins`` and ``labels``, in place) in one compiled pass, the arrays its
    numpy path leaves; returns False, changing nothing, when the kernel is off, the arrays are
    not in its form (uint16 bins, uint8 labels, float32 scores, int64 class indices), more than
    ``limit`` rows could enter, or a squared weight could pass 2**23."""
    if not (
        _kernel_target(keys, np.uint64)
        and _kernel_target(wsq, np.float32)
        and _kernel_target(bins, np.uint16)
        and _kernel_target(labels, np.uint8)
        and labels.ndim == 1
        and batch_keys.dtype == np.uint64
        and scores.dtype == np.float32
        and batch_labels.dtype == np.int64
        and batch_labels.ndim == 1
    ):
        return False
    assert _kernel is not None
    entered = _kernel.sample_insert(
        keys,
        wsq,
        bins,
        labels,
        np.ascontiguousarray(batch_keys),
        np.ascontiguousarray(scores),
        np.ascontiguousarray(batch_labels),
        mantissa_bits,
        limit,
    )
    return bool(entered >= 0)


# Columns up to which row_sums is compiled for each count and beats numpy's float64 copy and
# matrix-vector product (4096 rows: 14 against 18 us at 10 columns; at 12 columns, the generic
# loop, 24 against 16; at 100, 266 against 114).
ROW_SUMS_MAX_COLUMNS = 11


def row_sums(scores: np.ndarray) -> np.ndarray | None:
    """Each row's float64 sum of a 2-D float32 score batch in one compiled pass (validation's
    check that probability rows sum to 1); None, doing nothing, when the kernel is off, the
    scores are not a C-contiguous float32 matrix or have more than ``ROW_SUMS_MAX_COLUMNS``."""
    if (
        not enabled()
        or scores.dtype != np.float32
        or scores.ndim != 2
        or not 0 < scores.shape[1] <= ROW_SUMS_MAX_COLUMNS
        or not scores.flags.c_contiguous
    ):
        return None
    assert _kernel is not None
    sums = np.empty(scores.shape[0])
    _kernel.row_sums(sums, scores, scores.shape[1])
    return sums


def range_join(target: np.ndarray, own: np.ndarray) -> bool:
    """Join a batch's own (2, B) float32 score range into a state's ``target`` in place, as
    ``np.maximum`` then ``counting.normalise_range`` do, in one compiled pass; returns False,
    doing nothing, when the kernel is off or the arrays are not in its form."""
    if not _kernel_target(target, np.float32) or own.dtype != np.float32 or own.size != target.size:
        return False
    assert _kernel is not None
    _kernel.range_join(target, np.ascontiguousarray(own))
    return True


def row_keys(scores: np.ndarray, labels: np.ndarray, constants: np.ndarray) -> np.ndarray | None:
    """``row_sample.row_keys`` of float32 ``scores`` (n, C) and ``labels`` (int64 class indices
    (n,) or a bool multi-hot (n, C)) in one compiled pass, the same values; ``constants``: the
    uint64 multipliers of the score words, the odd last column, then the label's. Returns None,
    doing nothing, when the kernel is off or the arrays are not in its form."""
    if (
        not enabled()
        or scores.dtype != np.float32
        or scores.ndim != 2
        or constants.dtype != np.uint64
        or labels.dtype not in (np.int64, np.bool_)
        or labels.shape[0] != scores.shape[0]
        or (labels.ndim == 2) != (labels.dtype == np.bool_)
    ):
        return None
    assert _kernel is not None
    out = np.empty(scores.shape[0], dtype=np.uint64)
    lab = np.ascontiguousarray(labels)
    multiclass = lab.ndim == 1
    _kernel.row_keys(
        out,
        np.ascontiguousarray(scores),
        scores.shape[1],
        np.ascontiguousarray(constants),
        lab if multiclass else None,
        None if multiclass else lab,
    )
    return out

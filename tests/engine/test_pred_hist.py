"""The predictions' coarse histogram (``pred_hist``) of a labelled batch is read from the fine bins
the counting kernel already computed; it must equal the one a predictions-only batch of the same
scores gets by binning the scores itself (``pred_bin_of``), for every task, layout and kernel."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import fastcount
from evalstream_server.engine.batch import make_batch
from evalstream_server.engine.counting import compute_delta, field_shapes, prediction_delta
from evalstream_server.engine.pred_bins import pred_bin_of, pred_bin_of_fine
from evalstream_server.engine.spec import Resolution, StreamSpec

from .data import softmax


def _scores(rng: np.random.Generator, n: int, C: int, rows_sum_to_one: bool) -> np.ndarray:
    p = softmax(rng.normal(scale=5.0, size=(n, C))).astype(np.float32)
    if rows_sum_to_one:  # one-hot (exact 0 and 1), two tied halves, a deep tail next to 1
        p[0] = 0.0
        p[0, 0] = 1.0
        p[1] = 0.0
        p[1, :2] = 0.5
        p[2] = np.float32(2.0**-20)
        p[2, 0] = np.float32(1.0) - np.float32(2.0**-20) * (C - 1)
    else:  # 0, 1, a tie at 0.5, a deep tail, and one just below 1
        p[:4] = np.float32([0.0, 1.0, 0.5, 2.0**-20])[:, None]
        p[4, 0] = np.float32(1.0) - np.float32(2.0**-20)
    return p


def _case(task: str, rng: np.random.Generator, n: int, mantissa_bits: int):
    res = Resolution("bins", mantissa_bits=mantissa_bits)
    if task == "multiclass":
        spec = StreamSpec("multiclass", classes=tuple("abcdefg"), resolution=res)
        p = _scores(rng, n, 7, True)
        return spec, rng.integers(0, 7, n), p
    if task == "multilabel":
        spec = StreamSpec("multilabel", classes=tuple("abcde"), resolution=res)
        p = _scores(rng, n, 5, False)
        return spec, (rng.random((n, 5)) < 0.3).astype(np.int64), p
    spec = StreamSpec("binary", resolution=res)
    p = _scores(rng, n, 2, False)[:, 1]
    return spec, rng.integers(0, 2, n), p


@pytest.mark.parametrize("kernel", ["compiled", "numpy"])
@pytest.mark.parametrize("mantissa_bits", [2, 5, 7])
@pytest.mark.parametrize("task", ["multiclass", "multilabel", "binary"])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_labelled_batch_counts_the_same_pred_hist_as_its_predictions_alone(
    task, mantissa_bits, kernel, weighted
):
    if kernel == "compiled" and not fastcount.enabled():
        pytest.skip("the compiled kernel is not built here")
    rng = np.random.default_rng(mantissa_bits * 7 + len(task) + weighted)
    spec, y, p = _case(task, rng, 600, mantissa_bits)
    w = rng.random(600) * 3 if weighted else None
    batch = make_batch(spec, y, p, w)
    if kernel == "numpy":
        with fastcount.disabled():
            labelled = compute_delta(spec, batch)
    else:
        labelled = compute_delta(spec, batch)
    alone = prediction_delta(spec, batch.scores, batch.weights)
    a, b = labelled["pred_hist"], alone["pred_hist"]
    shape = field_shapes(spec)["pred_hist"]
    # the compiled kernel gives dense counts, numpy the cells: the same sums, added in row order
    dense = [x if isinstance(x, np.ndarray) else x.dense(shape) for x in (a, b)]
    np.testing.assert_array_equal(dense[0], dense[1])
    if kernel == "numpy":
        np.testing.assert_array_equal(a.index, b.index)


@pytest.mark.parametrize("mantissa_bits", [2, 3, 5, 8])
def test_the_fine_to_coarse_table_bins_every_fine_edge_as_pred_bin_of(mantissa_bits):
    from evalstream_server.engine.layout import BinLayout

    layout = BinLayout(mantissa_bits)
    edges = layout.lower_edges.astype(np.float32)
    table = pred_bin_of_fine(mantissa_bits)
    np.testing.assert_array_equal(table[layout.bin_of(edges)], pred_bin_of(edges))
    # and the largest float32 inside each fine bin (just below the next edge) lands in the same
    inner = np.nextafter(edges[1:], np.float32(0.0))
    np.testing.assert_array_equal(table[layout.bin_of(inner)], pred_bin_of(inner))


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "binary"])
def test_a_labelled_batch_does_not_bin_its_scores_a_second_time(task, monkeypatch):
    """The labelled path reads the coarse bins from the kernel's fine bins (the cost this saves was
    about a third of a K = 10 update): binning the scores again would fail here."""
    from evalstream_server.engine import counting

    rng = np.random.default_rng(3)
    spec, y, p = _case(task, rng, 300, 5)
    batch = make_batch(spec, y, p)

    def refuse(_scores):
        raise AssertionError("pred_bin_of called for a labelled binned batch")

    monkeypatch.setattr(counting, "pred_bin_of", refuse)
    got = compute_delta(spec, batch)["pred_hist"]
    counted = got.sum() if isinstance(got, np.ndarray) else got.index.size  # compiled, numpy
    assert counted == p.size

"""The compiled ingest kernel (``fastcount``) against the numpy kernel, field by field.

Counts (histograms, confusion, ranks, calibration; with any weights) must be bit-identical: both
kernels add them one sample after another. Sums that numpy forms with BLAS or pairwise summation
(log loss, Brier, probability sums, the weight total) must agree to 1e-12 relative. Without the
compiled kernel (or with ``EVALSTREAM_FASTCOUNT=0``) the comparisons are skipped and only the
fallback is checked.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from evalstream_server.engine import BinLayout, State, StreamEngine, StreamSpec, compact, fastcount
from evalstream_server.engine.batch import make_batch
from evalstream_server.engine.counting import (
    ADDED_FIELDS,
    Scatter,
    compute_delta,
    field_shapes,
    normalise_range,
    numpy_delta,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

needs_kernel = pytest.mark.skipif(
    not fastcount.enabled(),
    reason="the compiled kernel was not built (no C compiler) or EVALSTREAM_FASTCOUNT=0",
)
FLOAT_FIELDS = (
    "log_loss",
    "brier",
    "prob_sum",
    "samples_prf",
    "samples_auc",
    "samples_ap",
    "pred_prob",  # the probability sums again (labelled batches share them)
    "pred_conf_sum",
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- data ------------------------------------------------------------------------------------
def _rows(rng: np.random.Generator, n: int, K: int, kind: str) -> np.ndarray:
    """float32 probability rows of one ``kind``."""
    if n == 0:
        return np.zeros((0, K), np.float32)
    if kind == "peaky":  # softmax of wide logits: exact 0s and 1s from float32 underflow
        z = rng.normal(0.0, rng.uniform(1.0, 40.0), (n, K))
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    if kind == "tied":  # multiples of 1/8: ties everywhere, exact 0, 0.5 and 1
        counts = rng.multinomial(8, rng.dirichlet(np.full(K, 0.5)), n)
        return (counts / 8.0).astype(np.float32)
    if kind == "onehot":
        return np.eye(K, dtype=np.float32)[rng.integers(0, K, n)]
    if kind == "half":  # both sides of the 0.5 bin edge, and the float32 next to 1
        below = np.nextafter(np.float32(0.5), np.float32(0))
        top = np.nextafter(np.float32(1), np.float32(0))
        choices = np.array(
            [[0.5, 0.5], [below, np.float32(1) - below], [top, np.float32(1) - top]],
            dtype=np.float32,
        )
        out = np.zeros((n, K), np.float32)
        pick = choices[rng.integers(0, len(choices), n)]
        cols = np.stack([rng.permutation(K)[:2] for _ in range(n)])
        out[np.arange(n)[:, None], cols] = pick
        return out
    return rng.dirichlet(np.full(K, rng.uniform(0.05, 2.0)), n).astype(np.float32)


KINDS = ("peaky", "tied", "onehot", "half", "smooth")


def _batch_data(seed: int, n: int, K: int, weights: str):
    rng = np.random.default_rng(seed)
    kind = rng.choice(len(KINDS), n)  # a mix of kinds, row by row
    p = np.empty((n, K), np.float32)
    for i, name in enumerate(KINDS):
        rows = kind == i
        p[rows] = _rows(rng, int(rows.sum()), K, name)
    y = rng.integers(0, K, n)
    w = {
        "none": None,
        "integer": rng.integers(0, 5, n).astype(np.float64),
        "float": rng.exponential(1.0, n) * (rng.random(n) < 0.9),
    }[weights]
    return y, p, w


def _dense(value, shape):
    return value.dense(shape) if isinstance(value, Scatter) else value


def _assert_same_delta(spec: StreamSpec, fast: dict, ref: dict, float_weights: bool) -> None:
    """Counts bit-identical (both kernels add them one sample after another, in order); the
    sums that numpy forms with BLAS or pairwise summation equal to 1e-12."""
    # the kernels count labelled batches; the label-free fields and the score range are compared
    # on their own (test_kernel_counts_the_label_free_fields_and_score_range_as_numpy), the delay
    # and zero-weight fields are numpy's alone (compute_delta adds them itself)
    shapes = {k: v for k, v in field_shapes(spec).items() if k not in ADDED_FIELDS}
    fast = {k: v for k, v in fast.items() if k not in ADDED_FIELDS}
    assert set(fast) == set(ref) == set(shapes)
    for name, shape in shapes.items():
        a, b = fast[name], ref[name]
        if isinstance(b, Scatter):  # the same cells, sample by sample, with the same weights
            assert isinstance(a, Scatter), name
            np.testing.assert_array_equal(a.index.reshape(-1), b.index.reshape(-1), err_msg=name)
            wa = None if a.weights is None else np.repeat(a.weights, a.repeat)
            wb = None if b.weights is None else np.repeat(b.weights, b.repeat)
            assert (wa is None) == (wb is None), name
            if wa is not None:
                np.testing.assert_array_equal(wa, wb, err_msg=name)
            continue
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape == shape, name
        if name in FLOAT_FIELDS or (name == "n" and float_weights):
            # Brier sums sum_c s_c**2 + 1 - 2 s_true per sample: terms of size 1 that cancel
            # on confident rows, so its error is relative to the weight, not to the result
            atol = 1e-12 * float(ref["n"][1]) if name == "brier" else 0.0
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=atol, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def _spec(K: int, ovo_limit: int, resolution: str, top_k: int, cal_bins: int) -> StreamSpec:
    return StreamSpec(
        task="multiclass",
        classes=tuple(f"c{i}" for i in range(K)),
        ovo_class_limit=ovo_limit,
        resolution=resolution,
        top_k=top_k,
        calibration_bins=cal_bins,
    )


# -- the kernel against numpy ----------------------------------------------------------------
@needs_kernel
@SETTINGS
@given(
    K=st.integers(2, 40),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    weights=st.sampled_from(["none", "integer", "float"]),
    ovo_limit=st.integers(2, 40),
    resolution=st.sampled_from(["bins", "bins:0", "bins:3", "bins:8", "exact"]),
    top_k=st.integers(1, 8),
    cal_bins=st.integers(1, 30),
)
def test_kernel_counts_what_numpy_counts(
    K, n, seed, weights, ovo_limit, resolution, top_k, cal_bins
):
    spec = _spec(K, ovo_limit, resolution, top_k, cal_bins)
    y, p, w = _batch_data(seed, n, K, weights)
    batch = make_batch(spec, y, p, w)
    assert fastcount.enabled()
    fast = compute_delta(spec, batch, predictions=False)
    ref = numpy_delta(spec, batch)
    _assert_same_delta(spec, fast, ref, float_weights=weights == "float")


@needs_kernel
@SETTINGS
@given(
    K=st.integers(2, 40),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    weights=st.sampled_from(["none", "integer", "float"]),
    ovo_limit=st.integers(2, 40),
    resolution=st.sampled_from(["bins", "bins:0", "bins:1", "bins:2", "bins:8", "exact"]),
    low=st.sampled_from([0.3, 0.6, 1.0]),
    ties=st.booleans(),
)
def test_kernel_counts_the_label_free_fields_and_score_range_as_numpy(
    K, n, seed, weights, ovo_limit, resolution, low, ties
):
    """The multiclass kernel counts a labelled batch's ``pred_hist``, confidence fields and own
    score range in its one pass; numpy's ``prediction_delta`` and ``RangeDelta`` are the oracle
    (the same cells with the same weights, the same range bit for bit, sums to 1e-12)."""
    spec = StreamSpec(
        task="multiclass",
        classes=tuple(f"c{i}" for i in range(K)),
        ovo_class_limit=ovo_limit,
        resolution=resolution,
        low_confidence=low,
    )
    y, p, w = _batch_data(seed, n, K, weights)
    if ties:  # repeated values: single-valued bins, equal top scores
        p = np.round(p * 8) / 8
        p[:, 0] = 1.0 - p[:, 1:].sum(axis=1)
        p = np.clip(p, 0.0, 1.0)
        p /= p.sum(axis=1, keepdims=True)
    batch = make_batch(spec, y, p.astype(np.float32), w)
    fast = compute_delta(spec, batch)
    with fastcount.disabled():
        ref = compute_delta(spec, batch)
    _assert_same_label_free(spec, fast, ref, batch.scores.size)


@needs_kernel
@SETTINGS
@given(
    K=st.integers(2, 12),
    seed=st.integers(0, 2**32 - 1),
    weights=st.sampled_from(["none", "integer"]),
    ovo_limit=st.sampled_from([2, 32]),
    cuts=st.lists(st.integers(1, 199), max_size=5),
)
def test_engine_states_are_bit_identical_with_integer_weights(K, seed, weights, ovo_limit, cuts):
    """Whole engines, windows included, fed the same batches by either kernel."""
    spec = StreamSpec(
        task="multiclass",
        classes=tuple(f"c{i}" for i in range(K)),
        ovo_class_limit=ovo_limit,
        resolution="bins:3",
        windows=("1m",),
    )
    y, p, w = _batch_data(seed, 200, K, weights)
    edges = [0, *sorted(set(cuts)), 200]
    engines = {}
    for mode in ("fast", "numpy"):
        eng = StreamEngine(spec, clock=lambda: 1000.0)
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            if b <= a:
                continue
            args = (y[a:b], p[a:b], None if w is None else w[a:b])
            if mode == "fast":
                eng.update(*args, timestamp=990.0 + k)
            else:
                with fastcount.disabled():
                    eng.update(*args, timestamp=990.0 + k)
        engines[mode] = eng
    for window in ("cumulative", "1m"):
        a, b = (engines[m].state(window) for m in ("fast", "numpy"))
        for name, arr in a.counts.items():
            if name in FLOAT_FIELDS:
                atol = 1e-12 * b.weight_total if name == "brier" else 0.0
                np.testing.assert_allclose(arr, b.counts[name], rtol=1e-12, atol=atol, err_msg=name)
            else:
                np.testing.assert_array_equal(arr, b.counts[name], err_msg=name)


@needs_kernel
@SETTINGS
@given(
    task=st.sampled_from(["binary", "multilabel"]),
    L=st.integers(1, 14),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    weights=st.sampled_from(["none", "integer", "float"]),
    resolution=st.sampled_from(["bins", "bins:0", "bins:4", "exact"]),
    cal_bins=st.integers(1, 30),
)
def test_labelwise_kernel_counts_what_numpy_counts(task, L, n, seed, weights, resolution, cal_bins):
    spec, batch = _labelwise_batch(task, L, n, seed, weights, resolution, cal_bins)
    fast = compute_delta(spec, batch, predictions=False)
    ref = numpy_delta(spec, batch)
    _assert_same_delta(spec, fast, ref, float_weights=weights == "float")


def _labelwise_batch(task, L, n, seed, weights, resolution, cal_bins, low=0.6):
    rng = np.random.default_rng(seed)
    L = 1 if task == "binary" else L
    thresholds = tuple(float(t) for t in rng.choice([0.0, 0.25, 0.5, 0.7, 1.0, rng.random()], L))
    spec = StreamSpec(
        task=task,
        classes=("0", "1") if task == "binary" else tuple(f"l{i}" for i in range(L)),
        thresholds=thresholds,
        resolution=resolution,
        calibration_bins=cal_bins,
        low_confidence=low,
    )
    # scores: smooth, on the thresholds, exact 0 and 1, both sides of 0.5, ties
    pool = np.array([0.0, 1.0, 0.5, np.nextafter(np.float32(0.5), np.float32(0)), 0.125, 0.7])
    p = rng.random((n, L)).astype(np.float32)
    special = rng.random((n, L)) < rng.random()
    p[special] = rng.choice(np.concatenate([pool, thresholds]), int(special.sum()))
    y = rng.random((n, L)) < rng.choice([0.0, 0.05, 0.5, 0.95, 1.0])
    y[rng.random(n) < 0.1] = True  # whole rows positive, and (below) negative
    y[rng.random(n) < 0.1] = False
    _, _, w = _batch_data(seed, n, 2, weights)
    labels = y[:, 0].astype(int) if task == "binary" else y.astype(int)
    return spec, make_batch(spec, labels, p[:, 0] if task == "binary" else p, w)


def _assert_same_label_free(spec: StreamSpec, fast: dict, ref: dict, batch_cells: int) -> None:
    """The label-free fields and the score range of two deltas of one labelled batch: the same
    cells with the same weights, the same range bit for bit, sums to 1e-12."""
    names = [k for k in ADDED_FIELDS if k in ref and k != "zero_weight_seen"]
    binned = spec.resolution.kind == "bins"
    assert "pred_hist" in names and binned == ("score_range" in names)
    assert set(names) <= set(fast)
    for name in names:
        a, b = fast[name], ref[name]
        if name == "score_range":
            B = BinLayout(spec.resolution.mantissa_bits).n_bins
            # joined into an empty range as a state joins them (the maximum, then normalised)
            ta, tb = np.zeros((2, B), np.float32), np.zeros((2, B), np.float32)
            for delta, target in ((a, ta), (b, tb)):
                delta.add_to(target)
                normalise_range(target)
            np.testing.assert_array_equal(ta.view(np.uint32), tb.view(np.uint32))
            da, db = a.dense((2, B)), b.dense((2, B))  # the entries the Redis store logs
            normalise_range(da)
            normalise_range(db)
            np.testing.assert_array_equal(da, db)
        elif name == "pred_hist":
            # the kernel adds each score's weight into the dense counts, row by row, when they
            # are no more cells than the batch's scores, else gives each score's cell as numpy
            # does: the same sums, added in the same order, bit for bit
            shape = field_shapes(spec)[name]
            dense_form = int(np.prod(shape)) <= batch_cells
            assert isinstance(b, Scatter) and isinstance(a, np.ndarray) == dense_form
            np.testing.assert_array_equal(_dense(a, shape), b.dense(shape), err_msg=name)
        elif isinstance(b, Scatter):
            assert isinstance(a, Scatter)
            np.testing.assert_array_equal(a.index.reshape(-1), b.index.reshape(-1), err_msg=name)
            wa = None if a.weights is None else np.repeat(a.weights, a.repeat)
            wb = None if b.weights is None else np.repeat(b.weights, b.repeat)
            np.testing.assert_array_equal(wa, wb, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0, err_msg=name)


@needs_kernel
@SETTINGS
@given(
    task=st.sampled_from(["binary", "multilabel"]),
    L=st.integers(1, 14),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    weights=st.sampled_from(["none", "integer", "float"]),
    resolution=st.sampled_from(["bins", "bins:0", "bins:1", "bins:2", "bins:4", "exact"]),
    low=st.sampled_from([0.3, 0.6, 1.0]),
)
def test_labelwise_kernel_counts_the_label_free_fields_and_score_range_as_numpy(
    task, L, n, seed, weights, resolution, low
):
    spec, batch = _labelwise_batch(task, L, n, seed, weights, resolution, 10, low)
    fast = compute_delta(spec, batch)
    with fastcount.disabled():
        ref = compute_delta(spec, batch)
    _assert_same_label_free(spec, fast, ref, batch.scores.size)


@needs_kernel
@pytest.mark.parametrize("m", [0, 5, 12])
@pytest.mark.parametrize("K", [1, 16])  # the scalar row loop, and the vectorised one
def test_bins_match_bin_of_on_every_edge_and_a_sweep_of_float32(m, K):
    """One-vs-rest cells of column c are ``c * B + bin``: the kernel's bins, read back."""
    one = 0x3F800000
    edges = [0, 1, 2, one, 0x3F000000]
    for e in range(1, 127):  # each octave's first and last patterns
        edges += [e << 23, (e << 23) - 1]
    near = np.concatenate([np.arange(max(0, c - 300), min(one, c + 300) + 1) for c in edges])
    sweep = np.arange(0, one + 1, 4099)  # a stride co-prime to 2**k: every mantissa position
    bits = np.unique(np.concatenate([near, sweep])).astype(np.uint32)
    bits = np.concatenate([bits, np.zeros(-bits.size % K, np.uint32)])
    p = bits.view(np.float32)
    layout = BinLayout(m)
    n = p.size // K
    index = np.empty(p.size, np.int32)
    pos = np.empty(n, np.int32)
    out = [np.zeros(K * K), np.zeros(1), np.zeros(3), np.zeros(K), np.zeros(3)]
    fastcount._kernel.multiclass(
        *(p, np.zeros(n, np.int64), None, K, m, False, False, 1e-7, index, pos, *out),
        *(None, None, -1, 1, None, None, 1.0, None),  # no label-free fields
    )
    cells = index.reshape(n, K) - np.arange(K, dtype=np.int32) * layout.n_bins
    np.testing.assert_array_equal(cells.ravel(), layout.bin_of(p))
    np.testing.assert_array_equal(pos, layout.bin_of(p[::K]))
    # fastcount.bins, the same function on its own (a few rows of the row sample)
    got = fastcount.bins(p.reshape(n, K), m)
    assert got is not None and got.shape == (n, K)
    np.testing.assert_array_equal(got.ravel(), layout.bin_of(p))


@needs_kernel
@pytest.mark.parametrize("bad", [-0.5, 1.5, np.nan, np.inf])
def test_bins_refuses_a_score_outside_0_1(bad):
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        fastcount.bins(np.array([0.25, bad], np.float32), 5)
    with pytest.raises(ValueError, match="mantissa_bits: expected 0 to 12, received 13"):
        fastcount.bins(np.array([0.25], np.float32), 13)
    assert fastcount.bins(np.array([0.25]), 5) is None  # float64: the numpy path's


@needs_kernel
def test_negative_zero_counts_as_zero():
    """-0.0 passes validation; the kernel bins it with 0.0 (bin 0), ties it with 0.0 and never
    writes outside the histogram."""
    spec = _spec(3, 32, "bins", 2, 10)
    p = np.array([[1.0, -0.0, 0.0], [-0.0, 1.0, 0.0], [0.5, 0.5, -0.0]], np.float32)
    y = np.array([0, 2, 2])
    fast = compute_delta(spec, make_batch(spec, y, p), predictions=False)
    ref = numpy_delta(spec, make_batch(spec, y, np.abs(p)))
    _assert_same_delta(spec, fast, ref, float_weights=False)


@needs_kernel
def test_bad_rows_raise_and_leave_nothing_behind():
    kernel = fastcount._kernel
    out = [np.empty(6, np.int32), None, np.zeros(9), np.zeros(2), np.zeros(30), np.zeros(3)]
    out.append(np.zeros(3))
    out += [None, None, -1, 1, None, None, 1.0, None]  # no label-free fields
    p = np.full((2, 3), 1 / 3, np.float32)
    with pytest.raises(ValueError, match="labels"):
        kernel.multiclass(p, np.array([0, 3]), None, 3, 5, True, True, 1e-7, *out)
    for bad in (np.nan, -0.25, 1.5):
        q = p.copy()
        q[1, 2] = bad
        with pytest.raises(ValueError, match="scores"):
            kernel.multiclass(q, np.array([0, 1]), None, 3, 5, True, True, 1e-7, *out)
    with pytest.raises(TypeError, match="float32"):
        kernel.multiclass(
            p.astype(np.float64), np.array([0, 1]), None, 3, 5, True, True, 1e-7, *out
        )
    with pytest.raises(ValueError, match="items"):
        kernel.multiclass(p, np.array([0, 1, 2]), None, 3, 5, True, True, 1e-7, *out)


# -- scatter ----------------------------------------------------------------------------------
@needs_kernel
@SETTINGS
@given(
    size=st.integers(1, 5000),
    n=st.integers(0, 400),
    repeat=st.integers(1, 6),
    weighted=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_scatter_add_is_np_add_at(size, n, repeat, weighted, seed):
    rng = np.random.default_rng(seed)
    index = rng.integers(0, size, n * repeat).astype(np.int32)
    weights = rng.normal(size=n) if weighted else None
    target = rng.normal(size=size)
    expected = target.copy()
    np.add.at(expected, index, 1.0 if weights is None else np.repeat(weights, repeat))
    assert fastcount.scatter_add(target, index, weights, repeat)
    np.testing.assert_array_equal(target, expected)  # same values, same order: bit-identical


@needs_kernel
def test_scatter_add_checks_every_index_before_adding():
    target = np.zeros((2, 3))
    for bad in ([0, 6], [-1, 2]):
        with pytest.raises(ValueError, match="cells"):
            fastcount.scatter_add(target, np.array(bad, np.int32), None)
        assert not target.any()
    # not the kernel's form (int64 index, strided target): declined, np.add.at does it
    assert not fastcount.scatter_add(target, np.array([1, 2]), None)
    assert not fastcount.scatter_add(target[:, ::2], np.array([1], np.int32), None)
    Scatter(np.array([1, 5, 5], np.int64), np.array([1.0, 2.0, 0.5])).add_to(target)
    np.testing.assert_array_equal(target, [[0, 1, 0], [0, 0, 2.5]])


def test_scatter_repeat_falls_back_to_numpy():
    with fastcount.disabled():
        target = np.zeros(4)
        Scatter(np.array([0, 1, 1, 3], np.int32), np.array([2.0, 5.0]), repeat=2).add_to(target)
        np.testing.assert_array_equal(target, [2, 7, 0, 5])


# -- switching -------------------------------------------------------------------------------
def test_disabled_uses_numpy_and_restores():
    before = fastcount.enabled()
    spec = _spec(3, 32, "bins", 2, 10)
    batch = make_batch(spec, [0, 1], [[0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    with fastcount.disabled():
        assert not fastcount.enabled()
        state = State(spec)
        state.update(batch)
    assert fastcount.enabled() == before
    assert state.counts["confusion"][0, 2] == 1 and state.counts["confusion"][1, 1] == 1


def test_environment_switches_the_kernel_off():
    code = "from evalstream_server.engine import fastcount as f; print(f.available(), f.enabled())"
    env = {**os.environ, "EVALSTREAM_FASTCOUNT": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(fastcount.available()), "False"]


@needs_kernel
def test_each_in_place_kernel_takes_its_own_target_form_and_declines_the_others():
    """scatter_add (float64) and count16 (uint16) write in place only into a
    C-contiguous, writeable target of their own dtype; anything else is declined (the numpy
    path does it), so a wrong check could not hide behind the fallback's equal results."""
    index = np.array([0, 1, 1], np.int32)

    def forms(dtype, shape):
        good = np.zeros(shape, dtype)
        read_only = np.zeros(shape, dtype)
        read_only.flags.writeable = False
        strided = np.zeros((shape[0], shape[1] * 2), dtype)[:, ::2]
        other = np.zeros(shape, np.float64 if dtype != np.float64 else np.float32)
        return good, (read_only, strided, other)

    good, bad = forms(np.float64, (2, 3))
    assert fastcount.scatter_add(good, index, None)
    assert good.ravel().tolist() == [1, 2, 0, 0, 0, 0]
    assert not any(fastcount.scatter_add(t, index, None) for t in bad)
    good, bad = forms(np.uint16, (2, 3))
    assert fastcount.count16(good, index) is not None
    assert good.ravel().tolist() == [1, 2, 0, 0, 0, 0]
    assert all(fastcount.count16(t, index) is None for t in bad)


@needs_kernel
@SETTINGS
@given(
    size=st.integers(1, 300),
    n=st.integers(0, 3000),
    start=st.integers(0, 65535),
    seed=st.integers(0, 2**32 - 1),
)
def test_count16_counts_low_bits_and_reports_every_wrap(size, n, start, seed):
    """``count16`` against int64 counts: the low 16 bits, and one wrap entry per passage of 65536
    (a uint16 target started near its top wraps often)."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, size, n).astype(np.int32)
    target = np.full(size, start, np.uint16)
    wrapped = fastcount.count16(target, index)
    assert wrapped is not None
    exact = np.full(size, start, np.int64)
    np.add.at(exact, index, 1)
    np.testing.assert_array_equal(target, exact % 65536)
    np.testing.assert_array_equal(np.bincount(wrapped, minlength=size), exact // 65536)


@needs_kernel
@pytest.mark.parametrize("bad", [-1, 7, 2**31 - 1])
def test_count16_checks_every_index_before_adding(bad):
    target = np.zeros(7, np.uint16)
    index = np.array([0, 1, bad, 2], np.int32)
    with pytest.raises(
        ValueError, match=rf"cells in \[0, 7\), received {min(bad, 0)} to {max(bad, 2)}"
    ):
        fastcount.count16(target, index)
    assert not target.any()  # nothing added


@needs_kernel
@SETTINGS
@given(
    size=st.integers(1, 400),
    start=st.sampled_from([0, 1, 65_000, 65_535]),
    big=st.sampled_from([3, 70_000, 2**40]),
    seed=st.integers(0, 2**32 - 1),
)
def test_add16_adds_dense_counts_as_the_numpy_path(size, start, big, seed):
    """``add16`` (a dense integral delta into uint16 low parts) against the numpy path of
    ``compact.add_dense`` and against int64 sums: the same low bits and the same carry."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, big, size).astype(np.float64)
    values[rng.random(size) < 0.5] = 0.0
    low = rng.integers(start, 65_536, size).astype(np.uint16)
    exact = low.astype(np.int64) + values.astype(np.int64)
    got: dict[str, tuple[np.ndarray, dict]] = {}
    for kernel in ("compiled", "numpy"):
        target, carry = low.copy(), {}
        with contextlib.nullcontext() if kernel == "compiled" else fastcount.disabled():
            assert compact.add_dense(target, carry, values)
        got[kernel] = (target, carry)
    for target, carry in got.values():
        np.testing.assert_array_equal(target, exact % 65_536)
        wraps = np.zeros(size, np.int64)
        wraps[list(carry)] = list(carry.values())
        np.testing.assert_array_equal(wraps, exact // 65_536)
    assert got["compiled"][1] == got["numpy"][1]


@needs_kernel
@SETTINGS
@given(
    m=st.sampled_from([0, 2, 5]),
    n=st.integers(0, 60),
    values=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
)
def test_range_join_is_the_maximum_then_normalised(m, n, values, seed):
    """``range_join`` (a batch's own range into a state's, one compiled pass) against
    ``np.maximum`` then ``normalise_range``, on ranges the kernel writes: few distinct values
    (0.0 and 1.0 among them) make bins empty, single-valued and mixed, in either argument."""
    rng = np.random.default_rng(seed)
    pool = np.concatenate([[0.0, 1.0, 0.5], rng.random(values)]).astype(np.float32)
    spec = StreamSpec(task="multiclass", classes=("a", "b", "c"), resolution=f"bins:{m}")

    def own_range(rows):
        p = rng.choice(pool, (rows, 3)).astype(np.float32)
        p[:, 2] = np.float32(1.0) - p[:, 0] - p[:, 1]
        ok = p[:, 2] >= 0
        if not ok.any():  # an empty range
            return np.zeros((2, BinLayout(m).n_bins), np.float32)
        batch = make_batch(spec, np.zeros(int(ok.sum()), np.int64), p[ok])
        return compute_delta(spec, batch)["score_range"].own

    target = own_range(n)
    own = own_range(rng.integers(0, 60))
    expected = target.copy()
    np.maximum(expected, own, out=expected)
    normalise_range(expected)
    assert fastcount.range_join(target, own)
    np.testing.assert_array_equal(target.view(np.uint32), expected.view(np.uint32))


@needs_kernel
@SETTINGS
@given(n=st.integers(0, 200), K=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_row_sums_are_numpys_float64_row_sums(n, K, seed):
    """``row_sums`` (validation's check that rows sum to 1, one compiled pass; each column count
    to 11 compiled on its own) against numpy's float64 sums: float32 terms are exact in any order
    unless their exponents differ widely, so to the rounding of another order."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((n, K)) * 10.0 ** rng.integers(-30, 3, (n, K))).astype(np.float32)
    sums = fastcount.row_sums(a)
    if K > fastcount.ROW_SUMS_MAX_COLUMNS:  # numpy's product is faster there: declined
        assert sums is None
        sums = np.empty(n)
        fastcount._kernel.row_sums(sums, a, K)  # the generic loop, still right
    assert sums is not None and sums.shape == (n,)
    ref = a.astype(np.float64)
    bound = 4 * K * np.finfo(np.float64).eps * np.abs(ref).sum(axis=1)
    assert np.all(np.abs(sums - ref.sum(axis=1)) <= bound)
    assert fastcount.row_sums(a.astype(np.float64)) is None  # numpy's product
    assert K == 1 or n < 2 or fastcount.row_sums(a[:, ::2]) is None  # not contiguous


@pytest.mark.parametrize("bad", [0.5, -1.0, np.nan, np.inf, 2.0**53, -(2.0**60)])
@pytest.mark.parametrize("kernel", ["compiled", "numpy"])
def test_add_dense_refuses_a_delta_that_is_not_counts_and_adds_nothing(bad, kernel):
    if kernel == "compiled" and not fastcount.enabled():
        pytest.skip("the compiled kernel is not built here")
    low = np.array([1, 2, 3, 65_535], np.uint16)
    values = np.array([1.0, 70_000.0, bad, 1.0])
    carry: dict[int, int] = {}
    with contextlib.nullcontext() if kernel == "compiled" else fastcount.disabled():
        assert not compact.add_dense(low, carry, values)
    np.testing.assert_array_equal(low, [1, 2, 3, 65_535])
    assert carry == {}
    # -0.0 is a zero count
    assert compact.add_dense(low, carry, np.array([-0.0, 0.0, 1.0, 1.0]))
    np.testing.assert_array_equal(low, [1, 2, 4, 0])
    assert carry == {3: 1}


@needs_kernel
@pytest.mark.parametrize("case", ["confident", "near_one", "mixed", "tiny", "half"])
def test_kernel_log_loss_keeps_its_relative_precision_on_confident_rows(case):
    """The kernel sums an unweighted batch's log loss by groups of rows (one log a group): on
    rows whose loss is tiny (true-class probability at 1 - eps, the clip, or just under 1) the
    sum still equals the correctly rounded sum of each row's loss to 1e-13 (a plain product
    of the probabilities would lose up to 1e-9 there)."""
    rng = np.random.default_rng(5)
    n, K = 4099, 3
    eps = np.float32(np.finfo(np.float32).eps)
    if case == "confident":
        top = np.full(n, 1 - eps, np.float32)  # the clip itself
    elif case == "near_one":
        top = (1 - rng.random(n) * 1e-3).astype(np.float32)
    elif case == "mixed":
        top = rng.choice([1 - eps, 0.9999, 0.5, 0.3, 1e-6], n).astype(np.float32)
    elif case == "tiny":
        top = rng.choice([1e-30, 1e-9, 1e-7, 2e-7], n).astype(np.float32)
    else:
        top = np.full(n, 0.5, np.float32)
    p = np.zeros((n, K), np.float32)
    p[:, 0] = top
    p[:, 1] = 1 - top  # a row of probabilities, the true class 0
    y = np.zeros(n, np.int64)
    spec = StreamSpec(task="multiclass", classes=("a", "b", "c"))
    got = compute_delta(spec, make_batch(spec, y, p))["log_loss"][0]
    pt = np.clip(top.astype(np.float64), float(eps), 1 - float(eps))
    want = math.fsum(-math.log(v) for v in pt)
    assert got == pytest.approx(want, rel=1e-13, abs=0)

"""The row sample of binned states (engine/row_sample.py): the distinct rows of smallest key,
whatever the split, merge and storage; bounded memory; carried by every persisted form."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import (
    State,
    StreamEngine,
    StreamSpec,
    fastcount,
    make_batch,
    row_sample,
)
from evalstream_server.engine.bucket_bytes import bucket_from_bytes, bucket_to_bytes
from evalstream_server.engine.counting import compute_delta
from evalstream_server.engine.errors import InvalidInputError
from evalstream_server.engine.layout import BinLayout
from evalstream_server.engine.row_sample import SAMPLE_ROWS, row_keys

SPEC = StreamSpec(task="multiclass", classes=("a", "b", "c"))


def _rows(seed: int, n: int, repeats: int = 1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    s = rng.dirichlet([1, 1, 1], n).astype(np.float32)
    return np.repeat(y, repeats), np.repeat(s, repeats, axis=0)


def test_the_sample_is_the_distinct_rows_of_smallest_key_with_their_squared_weights():
    """Oracle: a plain-Python pass over the rows (a dict of key -> row and weight**2)."""
    y, s = _rows(1, 700, repeats=3)  # every row three times, in three batches below
    w = np.random.default_rng(2).integers(1, 5, y.size) / 2.0
    state = State(SPEC)
    for part in np.array_split(np.arange(y.size), 3):
        state.update(make_batch(SPEC, y[part], s[part], w[part]))
    keys = row_keys(y, s)
    expected: dict[int, list] = {}
    for k, label, scores, weight in zip(keys.tolist(), y, s, w, strict=True):
        entry = expected.setdefault(k, [label, scores, 0.0])
        entry[2] += weight**2
    smallest = sorted(expected)[:SAMPLE_ROWS]
    sample = state.sample
    assert sample is not None and sample.size == SAMPLE_ROWS
    assert sample.keys[: sample.size].tolist() == smallest
    onehot, bins, wsq = sample.rows()
    layout = BinLayout(SPEC.resolution.mantissa_bits)
    for i, k in enumerate(smallest):
        label, scores, total = expected[k]
        assert onehot[i].tolist() == [c == label for c in range(3)]
        assert bins[i].tolist() == layout.bin_of(scores).tolist()
        assert wsq[i] == pytest.approx(total, rel=1e-12)


def test_rows_of_weight_zero_are_not_sampled_and_distinct_rows_have_distinct_keys():
    y, s = _rows(3, 20_000)
    keys = row_keys(y, s)
    assert (
        np.unique(keys).size == np.unique(np.column_stack([y, s.view(np.uint32)]), axis=0).shape[0]
    )
    state = State(SPEC)
    w = np.zeros(y.size)
    w[:10] = 1.0
    state.update(make_batch(SPEC, y, s, w))
    assert state.sample is not None and state.sample.size == 10
    assert set(state.sample.keys[:10].tolist()) == set(keys[:10].tolist())


def test_sample_memory_is_fixed_and_counted():
    state = State(SPEC)
    before = state.nbytes
    y, s = _rows(4, 5000)
    state.update(make_batch(SPEC, y, s))
    assert state.nbytes == before
    assert state.sample is not None and state.sample.size == SAMPLE_ROWS
    assert state.sample.nbytes == SAMPLE_ROWS * (8 + 2 * 3 + 1 + 4)  # key, bins, label, w**2


def test_binary_and_exact_states_keep_no_sample():
    assert State(StreamSpec(task="binary")).sample is None
    assert (
        State(StreamSpec(task="multiclass", classes=("a", "b"), resolution="exact")).sample is None
    )
    assert State(StreamSpec(task="multilabel", classes=("x", "y"))).sample is not None


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_the_sample_survives_state_bucket_and_engine_bytes(task):
    classes = ("a", "b", "c")
    spec = StreamSpec(task=task, classes=classes, windows=("1h",))
    rng = np.random.default_rng(5)
    n = 300
    if task == "multiclass":
        y, s = rng.integers(0, 3, n), rng.dirichlet([1, 1, 1], n).astype(np.float32)
    else:
        y, s = (rng.random((n, 3)) < 0.4).astype(int), rng.random((n, 3)).astype(np.float32)
    engine = StreamEngine(spec, clock=lambda: 1_000_000.0)
    engine.update(y, s)
    state = engine.state()
    assert state.sample is not None and state.sample.size == SAMPLE_ROWS
    assert State.from_bytes(state.to_bytes()).sample == state.sample
    assert bucket_from_bytes(spec, bucket_to_bytes(state.to_sparse())).sample == state.sample
    from evalstream_server.engine import engine_from_bytes, engine_to_bytes

    again = engine_from_bytes(engine_to_bytes(engine), clock=lambda: 1_000_000.0)
    assert again.state("1h").sample == engine.state("1h").sample == state.sample
    assert again.report()["roc_auc"]["macro"]["ci95"] == engine.report()["roc_auc"]["macro"]["ci95"]


def test_a_state_written_before_the_sample_loads_with_an_empty_one():
    """The header of older states has no "sample" and no sample arrays follow."""
    import json
    import struct

    state = State(SPEC)
    y, s = _rows(6, 100)
    state.update(make_batch(SPEC, y, s))
    raw = state.to_bytes()
    head_len = struct.unpack("<I", raw[12:16])[0]
    header = json.loads(raw[16 : 16 + head_len])
    n = header.pop("sample")
    tail = sum(np.dtype(d).itemsize * int(np.prod((n, *row))) for d, row in state.sample.dtypes())
    head = json.dumps(header, separators=(",", ":")).encode()
    old = raw[:12] + struct.pack("<I", len(head)) + head + raw[16 + head_len : len(raw) - tail]
    loaded = State.from_bytes(old)
    assert loaded.sample is not None and loaded.sample.size == 0
    assert np.array_equal(loaded.counts["hist"], state.dense().counts["hist"])
    # no rows sampled: the binned averages keep their bounds and carry no interval
    from evalstream_server.engine import build_report

    loaded.to_bins()  # past its raw rows
    assert "ci95" not in build_report(loaded)["roc_auc"]["macro"]


def test_damaged_sample_bytes_are_refused_naming_the_state():
    state = State(SPEC)
    y, s = _rows(7, 100)
    state.update(make_batch(SPEC, y, s))
    raw = bytearray(state.to_bytes())
    n = state.sample.size
    # the labels (a byte a row) sit before the squared weights (float32) at the end
    labels_at = len(raw) - 4 * n - n
    raw[labels_at] = 7  # class 7 of 3
    with pytest.raises(InvalidInputError, match="state.*labels below 3"):
        State.from_bytes(bytes(raw))


@pytest.mark.parametrize("multiclass", [True, False])
def test_compiled_row_keys_equal_the_numpy_keys(multiclass: bool) -> None:
    """The compiled hash (``fastcount.row_keys``) gives the very keys of the numpy one, which
    stored samples hold: every column count (odd and even), -0.0, both label forms."""
    if not fastcount.available():
        pytest.skip("compiled kernel not built")
    rng = np.random.default_rng(7)
    for C in range(1, 12):
        scores = rng.random((301, C)).astype(np.float32)
        scores[::7] = -0.0
        scores[1::11] = 1.0
        labels = rng.integers(0, C, 301) if multiclass else rng.random((301, C)) < 0.4
        compiled = fastcount.row_keys(scores, labels, row_sample._all_constants(C, multiclass))
        assert compiled is not None
        with fastcount.disabled():
            assert (
                fastcount.row_keys(scores, labels, row_sample._all_constants(C, multiclass)) is None
            )
            reference = row_keys(labels, scores)
        assert compiled.dtype == np.uint64
        np.testing.assert_array_equal(compiled, reference)
        np.testing.assert_array_equal(row_keys(labels, scores), reference)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("seed", range(40))
def test_a_few_entries_into_a_full_sample_as_the_sorting_merge(task, seed, monkeypatch):
    """``_insert_few`` (a full sample takes a few entries one by one) leaves the arrays the
    sort-based merge leaves: the smallest distinct keys, kept rows first on equal keys, their
    squared weights summed, float32 rounding included."""
    rng = np.random.default_rng(seed)
    spec = SPEC if task == "multiclass" else StreamSpec(task="multilabel", classes=("a", "b", "c"))
    cap = int(rng.integers(1, 12))
    kept = np.sort(rng.choice(2**20, cap, replace=False)).astype(np.uint64)
    m = int(rng.integers(1, row_sample._FEW + 1))
    pool = np.concatenate([kept, rng.integers(0, 2**20 + 5, 3 * m).astype(np.uint64)])
    new = np.unique(rng.choice(pool, m))  # some equal to kept keys, some past the largest
    samples = []
    for few in (row_sample._FEW, 0):  # 0: every entry through the sort
        monkeypatch.setattr(row_sample, "_FEW", few)
        s = row_sample.RowSample(spec, capacity=cap)
        r2 = np.random.default_rng(seed + 1000)  # the same entries for both

        def labels(k, r2=r2):
            return r2.integers(0, 3, k) if task == "multiclass" else r2.random((k, 3)) < 0.5

        s._merge(kept, r2.integers(0, 4000, (cap, 3)), labels(cap), r2.random(cap) * 3)
        s._merge(
            new, r2.integers(0, 4000, (new.size, 3)), labels(new.size), r2.random(new.size) * 3
        )
        samples.append(s)
    fast, sort = samples
    assert fast == sort
    np.testing.assert_array_equal(fast.wsq.view(np.uint32), sort.wsq.view(np.uint32))


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_counting_kernels_key_the_rows_as_row_keys(task, weighted):
    """Both counting kernels hash the rows in their pass (the batch keeps the keys for the
    sample): the very keys of the numpy ``row_keys``, odd and even column counts, -0.0."""
    if not fastcount.available():
        pytest.skip("compiled kernel not built")
    rng = np.random.default_rng(11)
    for C in (2, 3, 10, 11, 16):
        classes = tuple(f"c{i}" for i in range(C))
        spec = StreamSpec(task=task, classes=classes)
        scores = rng.dirichlet(np.ones(C), 257).astype(np.float32)
        scores[::9] = 0.0
        scores[::9, 1] = 1.0
        scores[::9, 0] = -0.0  # a row of probabilities still
        if task == "multiclass":
            labels = rng.integers(0, C, 257)
        else:
            scores = rng.random((257, C)).astype(np.float32)
            labels = (rng.random((257, C)) < 0.3).astype(int)
        w = rng.random(257) * 2 if weighted else None
        batch = make_batch(spec, labels, scores, w)
        compute_delta(spec, batch)
        kept = batch.__dict__.get("_row_keys")
        assert kept is not None, "the kernel keyed the rows"
        with fastcount.disabled():
            np.testing.assert_array_equal(kept, row_keys(batch.labels, batch.scores))


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("seed", range(20))
def test_a_few_rows_into_a_full_sample_as_through_unique(task, seed, monkeypatch):
    """A full sample offered a batch whose few candidate rows repeat (``_few_distinct``, no
    sort) keeps what the ``np.unique`` path keeps: keys, bins, labels, summed squared weights."""
    rng = np.random.default_rng(seed)
    spec = SPEC if task == "multiclass" else StreamSpec(task="multilabel", classes=("a", "b", "c"))
    C = spec.n_columns

    def batch(n, low_weight, repeat=False):
        p = rng.dirichlet(np.ones(C), n).astype(np.float32)
        y = rng.integers(0, C, n) if task == "multiclass" else (rng.random((n, C)) < 0.5) * 1
        if repeat:  # every row three times
            p, y = np.repeat(p, 3, axis=0), np.repeat(y, 3, axis=0)
        w = None if seed % 2 else rng.integers(low_weight, 4, len(p)).astype(float)
        return make_batch(spec, y, p, w)

    first, later = batch(20, 0), batch(2, 1, repeat=True)  # 6 rows, at most _FEW
    cap = int(rng.integers(4, 12))
    calls: list[int] = []
    few_distinct = row_sample._few_distinct
    monkeypatch.setattr(row_sample, "_few_distinct", lambda *a: calls.append(1) or few_distinct(*a))
    samples = []
    for few in (row_sample._FEW, 0):
        monkeypatch.setattr(row_sample, "_FEW", few)
        s = row_sample.RowSample(spec, capacity=cap)
        with fastcount.disabled():  # the numpy paths (the compiled one: the next test)
            s.add(first)
            s.add(later)
        samples.append(s)
    fast, slow = samples
    assert fast.size == slow.size
    for name in ("keys", "bins", "labels", "wsq"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    later_keys = row_keys(later.labels, later.scores)
    if fast.size == cap and np.any(np.isin(later_keys, fast.keys)):
        assert calls, "a full sample took the batch's rows one by one"


@pytest.mark.parametrize("seed", range(30))
def test_the_compiled_insert_leaves_the_numpy_paths_sample(seed):
    """``fastcount.sample_insert`` (an unweighted multiclass batch into a full sample, one
    compiled pass) against the numpy paths on the same stream: batches of distinct rows, of
    repeated rows (a kept key's squared weight grows) and of rows past the largest kept key; the
    arrays equal after every batch, and the compiled path taken once the sample is full."""
    if not fastcount.available():
        pytest.skip("compiled kernel not built")
    rng = np.random.default_rng(seed)
    K = int(rng.integers(2, 12))
    spec = StreamSpec(task="multiclass", classes=tuple(f"c{i}" for i in range(K)))
    cap = int(rng.integers(1, 20))
    compiled, numpy_path = row_sample.RowSample(spec, cap), row_sample.RowSample(spec, cap)
    taken = 0
    for _ in range(12):
        n = int(rng.integers(1, 300))
        p = rng.dirichlet(np.ones(K), n).astype(np.float32)
        p[rng.random(n) < 0.1] = np.eye(K, dtype=np.float32)[0]  # exact 0 and 1
        y = rng.integers(0, K, n)
        if rng.random() < 0.5:  # repeated rows
            p, y = np.repeat(p, 3, axis=0), np.repeat(y, 3)
        batch = make_batch(spec, y, p)
        if compiled.size == cap and compiled._insert_compiled(batch, row_sample.batch_keys(batch)):
            taken += 1
        else:  # not full yet, or too many candidates: add's numpy path
            compiled.add(batch)
        with fastcount.disabled():
            numpy_path.add(batch)
        assert compiled == numpy_path
        np.testing.assert_array_equal(compiled.wsq.view(np.uint32), numpy_path.wsq.view(np.uint32))
    assert taken, "the compiled insert ran"


def test_the_compiled_insert_declines_past_its_bounds_and_changes_nothing():
    """``sample_insert`` declines, leaving the sample as it was, when more rows could enter than
    its limit, or when a kept squared weight could pass 2**23 (float32 sums stop being exact at
    2**24); ``RowSample.add`` then takes its numpy path, which adds the batch as without the
    kernel."""
    if not fastcount.available():
        pytest.skip("compiled kernel not built")
    rng = np.random.default_rng(5)
    spec = StreamSpec(task="multiclass", classes=("a", "b", "c"))

    def batch(n):
        return make_batch(
            spec, rng.integers(0, 3, n), rng.dirichlet(np.ones(3), n).astype(np.float32)
        )

    full = row_sample.RowSample(spec, 4)
    full.add(batch(50))
    assert full.size == 4
    for heavy, offered in ((False, batch(2000)), (True, batch(1))):
        s = row_sample.RowSample(spec, 4)
        s.merge_from(full)
        if heavy:  # a kept row that stands for 2**23 rows
            s.wsq[0] = np.float32(2.0**23)
        before = [a.copy() for a in (s.keys, s.wsq, s.bins, s.labels)]
        assert not s._insert_compiled(offered, row_sample.batch_keys(offered))
        for a, b in zip((s.keys, s.wsq, s.bins, s.labels), before, strict=True):
            np.testing.assert_array_equal(a, b)
        reference = s.copy()
        reference.wsq[: s.size] = s.wsq[: s.size]
        with fastcount.disabled():
            reference.add(offered)
        s.add(offered)
        assert s == reference

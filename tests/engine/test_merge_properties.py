"""The merge contract, with Hypothesis: merging equals feeding; merge commutes and associates;
batch order and batch split never change a state; bytes round-trip. Binned states keep raw rows
while small (``state.SMALL_ROWS``): the tests also run with a cap that their samples cross, and
a state keeps its rows iff it holds at most the cap, whatever the split and merge order."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
from evalstream_server.engine import IncompatibleStateError, State, StreamSpec, make_batch
from evalstream_server.engine import state as state_module
from hypothesis import given, settings
from hypothesis import strategies as st

SPECS = {
    "multiclass": StreamSpec(task="multiclass", classes=("a", "b", "c"), resolution="bins:3"),
    "multiclass_ovr": StreamSpec(
        task="multiclass", classes=("a", "b", "c"), resolution="bins:3", ovo_class_limit=2
    ),
    "binary": StreamSpec(task="binary", resolution="bins:4"),
    "multilabel": StreamSpec(task="multilabel", classes=("x", "y", "z"), resolution="bins:2"),
    "exact": StreamSpec(task="multiclass", classes=("a", "b", "c"), resolution="exact"),
}
FLOAT_FIELDS = (
    "log_loss",
    "brier",
    "prob_sum",
    "calibration",
    "samples_prf",
    "samples_auc",
    "samples_ap",
    "pred_prob",
    "pred_conf_sum",
    "delay_sum",
)


@contextlib.contextmanager
def small_cap(rows: int | None) -> Iterator[None]:
    """``state.SMALL_ROWS`` set to ``rows`` (None: the default) for the block."""
    old = state_module.SMALL_ROWS
    state_module.SMALL_ROWS = old if rows is None else rows
    try:
        yield
    finally:
        state_module.SMALL_ROWS = old


CAPS = st.sampled_from([None, 1, 40, 150])  # the default (4,096: never crossed here) or crossed


def _expect_rows(state: State, n: int) -> None:
    """A state fed ``n`` samples keeps raw rows iff exact, or binned with n <= the cap."""
    keeps = state.spec.resolution.kind == "exact" or n <= state_module.SMALL_ROWS
    assert (state.exact is not None) == keeps
    assert state.exact is None or state.exact.n == n


def _data(kind: str, seed: int, n: int, weighted: bool):
    rng = np.random.default_rng(seed)
    spec = SPECS[kind]
    if spec.task == "multilabel":
        y = (rng.random((n, 3)) < 0.4).astype(int)
        s = rng.random((n, 3)).astype(np.float32)
    elif spec.task == "binary":
        y = rng.integers(0, 2, n)
        s = np.round(rng.random(n), 2).astype(np.float32)
    else:
        y = rng.integers(0, 3, n)
        s = rng.dirichlet([0.3, 0.3, 0.3], n).astype(np.float32)
        s[rng.random(n) < 0.1] = np.eye(3, dtype=np.float32)[0]
    # dyadic weights keep float sums exact, so equality can be exact
    w = rng.integers(0, 8, n) / 4.0 if weighted else None
    return spec, y, s, w


def _state(spec, y, s, w, parts) -> State:
    state = State(spec)
    for sl in parts:
        if sl.stop <= sl.start:
            continue
        state.update(make_batch(spec, y[sl], s[sl], None if w is None else w[sl]))
    return state


def _assert_same(a: State, b: State) -> None:
    for name, arr in a.counts.items():
        if name in FLOAT_FIELDS:  # float sums depend on addition order in the last bits
            np.testing.assert_allclose(arr, b.counts[name], rtol=1e-12, atol=1e-9, err_msg=name)
        else:
            np.testing.assert_array_equal(arr, b.counts[name], err_msg=name)
    assert (a.exact is None) == (b.exact is None)  # raw rows kept by both or neither
    if a.exact is not None:
        rows = []
        for st in (a, b):
            lab, sc, w = st.exact.arrays()
            m = np.column_stack([sc.astype(float), lab.reshape(len(lab), -1).astype(float), w])
            rows.append(m[np.lexsort(m.T[::-1])] if len(m) else m)
        np.testing.assert_array_equal(rows[0], rows[1])
    assert a.sample == b.sample  # the same distinct rows of smallest key (dyadic weights: exact)


def _cuts(draw_list, n):
    cuts = sorted({c for c in draw_list if 0 < c < n})
    edges = [0, *cuts, n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


ENGINE = settings(max_examples=40)  # on top of the suite profile (tests/conftest.py)


@ENGINE
@given(
    kind=st.sampled_from(list(SPECS)),
    seed=st.integers(0, 2**16),
    n=st.integers(2, 300),
    weighted=st.booleans(),
    cuts=st.lists(st.integers(1, 299), max_size=6),
    order_seed=st.integers(0, 2**16),
    cap=CAPS,
)
def test_any_split_and_order_give_the_same_state(kind, seed, n, weighted, cuts, order_seed, cap):
    spec, y, s, w = _data(kind, seed, n, weighted)
    with small_cap(cap):
        whole = _state(spec, y, s, w, [slice(0, n)])
        parts = _cuts(cuts, n)
        np.random.default_rng(order_seed).shuffle(parts)
        split = _state(spec, y, s, w, parts)
        _expect_rows(whole, n)
    _assert_same(whole, split)


@ENGINE
@given(
    kind=st.sampled_from(list(SPECS)),
    seed=st.integers(0, 2**16),
    n=st.integers(3, 200),
    weighted=st.booleans(),
    c1=st.integers(1, 199),
    c2=st.integers(1, 199),
    cap=CAPS,
)
def test_merge_equals_feeding_and_is_commutative_and_associative(
    kind, seed, n, weighted, c1, c2, cap
):
    spec, y, s, w = _data(kind, seed, n, weighted)
    a_end, b_end = sorted((min(c1, n - 1), min(c2, n - 1)))
    pa, pb, pc = slice(0, a_end), slice(a_end, b_end), slice(b_end, n)
    with small_cap(cap):
        A, B, C = (_state(spec, y, s, w, [p]) for p in (pa, pb, pc))
        fed = _state(spec, y, s, w, [pa, pb, pc])
        _expect_rows(fed, n)
        _assert_same(A.merge(B).merge(C), fed)
        _assert_same(A.merge(B), B.merge(A))
        _assert_same(A.merge(B).merge(C), A.merge(B.merge(C)))
        _assert_same(A.merge(C).merge(B), C.merge(B.merge(A)))
    if not weighted and spec.resolution.kind == "bins":
        # integer counts: exactly equal, not only close
        assert A.merge(B).counts["n"].tolist() == B.merge(A).counts["n"].tolist()


@ENGINE
@given(
    kind=st.sampled_from(list(SPECS)),
    seed=st.integers(0, 2**16),
    n=st.integers(0, 150),
    weighted=st.booleans(),
    cap=CAPS,
)
def test_bytes_round_trip(kind, seed, n, weighted, cap):
    spec, y, s, w = _data(kind, seed, max(n, 1), weighted)
    with small_cap(cap):
        state = _state(spec, y, s, w, [slice(0, n)] if n else [])
        again = State.from_bytes(state.to_bytes())
    assert (again.exact is None) == (state.exact is None)
    assert again == state
    assert again.spec.layout_key() == spec.layout_key()


def test_merge_refuses_incompatible_states_naming_both():
    a = State(StreamSpec(task="multiclass", classes=("a", "b", "c")))
    b = State(StreamSpec(task="multiclass", classes=("a", "b", "d")))
    with pytest.raises(IncompatibleStateError, match=r"classes.*'c'.*'d'"):
        a.merge(b)
    c = State(StreamSpec(task="multiclass", classes=("a", "b", "c"), resolution="bins:4"))
    with pytest.raises(IncompatibleStateError, match="resolution.*bins:5.*bins:4"):
        a.merge(c)
    with pytest.raises(IncompatibleStateError, match="task"):
        State(StreamSpec(task="binary")).merge(
            State(StreamSpec(task="multilabel", classes=("0", "1")))
        )


def test_from_bytes_rejects_other_formats_and_truncation():
    from evalstream_server.engine import InvalidInputError

    state = State(SPECS["binary"])
    raw = state.to_bytes()
    with pytest.raises(InvalidInputError, match="state"):
        State.from_bytes(b"not a state at all")
    with pytest.raises(InvalidInputError, match="truncated|bytes"):
        State.from_bytes(raw[:-10])


def test_state_memory_is_independent_of_sample_count():
    spec = StreamSpec(task="multiclass", classes=tuple("abcdefghij"))
    state = State(spec)
    rng = np.random.default_rng(0)
    before = state.nbytes
    for _ in range(5):
        y = rng.integers(0, 10, 4096)
        s = rng.dirichlet(np.ones(10), 4096).astype(np.float32)
        state.update(make_batch(spec, y, s))
    assert state.nbytes == before

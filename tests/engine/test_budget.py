"""The worst-case memory of a stream (engine.budget) against the measured ``nbytes`` of its real
structures filled to the worst case: every count cell non-zero in the cumulative state, in every
bucket a window ring can hold and in its cached sum, raw rows up to their caps (the exact
resolution's max_samples; in bins, exact while small, SMALL_ROWS in the cumulative state and a
report's copies, WINDOW_ROWS in a ring), every row sample full, and a join table full of the
longest ids."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import StreamEngine, StreamSpec
from evalstream_server.engine.batch import MAX_ID_LENGTH, Batch
from evalstream_server.engine.budget import format_bytes, worst_case_memory
from evalstream_server.engine.counting import Scatter
from evalstream_server.engine.open_bucket import COMPACT_AFTER, OpenBucket
from evalstream_server.engine.pending import PendingPredictions
from evalstream_server.engine.state import SMALL_ROWS, WINDOW_ROWS, State


def _rows(spec: StreamSpec, rows: int) -> Batch:
    C = spec.n_columns
    labels = np.zeros(rows, np.int64) if spec.task == "multiclass" else np.zeros((rows, C), bool)
    return Batch(labels, np.zeros((rows, C), np.float32), np.ones(rows))


def _full(spec: StreamSpec, value: float, rows: int = 0, wide: bool = True) -> State:
    """A state whose every count cell holds ``value`` (and ``rows`` exact rows)."""
    state = State(spec, wide=wide)
    for name, arr in state.counts.items():
        if (
            arr.dtype == np.uint16
        ):  # compact, every cell past 65,535: widened (the carry costs more)
            cells = np.arange(arr.size, dtype=np.int64)
            state._add_entries(name, cells, np.full(arr.size, 70_000, np.uint64))
        else:
            arr[...] = value
    if state.exact is not None and rows:
        state.exact.append(_rows(spec, rows))
    if state.sample is not None:  # a full row sample: distinct rows (distinct keys)
        n = state.sample.capacity
        C = spec.n_columns
        scores = np.arange(n * C, dtype=np.float32).reshape(n, C) / (n * C)
        labels = _rows(spec, n).labels
        state.sample.add(Batch(labels, scores, np.full(n, value)))
        assert state.sample.size == n
    return state


def _measured(spec: StreamSpec, max_skew: float | None) -> int:
    """Bytes held by a stream of ``spec`` filled to its worst case, measured on the structures."""
    now = 1_000_000.0
    engine = StreamEngine(spec, clock=lambda: now)
    # raw rows: up to max_samples in the exact resolution, SMALL_ROWS in bins (exact while small)
    cap = spec.resolution.max_samples if spec.resolution.kind == "exact" else SMALL_ROWS
    ring_cap = cap if spec.resolution.kind == "exact" else WINDOW_ROWS  # a ring's rows in all
    # the cumulative state: compact with every histogram cell carried, or widened to float64
    engine.cumulative = max(_full(spec, 1.5, cap, wide=False), _full(spec, 1.5, cap), key=_size)
    total = engine.cumulative.nbytes
    full = _full(spec, 2.5)  # float values: a packed cell keeps a column and a float64
    for ring in engine.windows.values():
        current = ring.bucket_of(now)
        ahead = ring.n_buckets
        if max_skew is not None:
            ahead = min(ahead, int(np.ceil(max_skew / ring.width)) + 1)
        ids = list(range(current - ring.n_buckets + 1, current + ahead + 1))
        for bid in ids:
            ring.restore_bucket(bid, full, is_open=bid == ids[-1])
        opened = ring.buckets()[ids[-1]]
        assert isinstance(opened, OpenBucket)
        # staged cells up to the compaction threshold (weighted: an index and a weight each)
        cells = sum(i.size for i, _ in opened.entries.values())
        n = max(COMPACT_AFTER, cells)
        for name in list(opened.shapes)[:1]:  # none in the exact resolution
            size = int(np.prod(opened.shapes[name]))
            index = np.arange(n, dtype=np.int64) % size
            opened.add_delta({name: Scatter(index, np.ones(n))})
            assert opened.n_staged == n  # not compacted yet
        if cap:  # the window's buckets hold every raw row (one ring keeps at most the cap)
            opened.exact = State(spec).exact
            assert opened.exact is not None
            opened.exact.append(_rows(spec, ring_cap))
        assert len(ring.buckets()) == len(ids)
        total += ring.nbytes
    report = 2 * _full(spec, 1.5, cap).nbytes  # a report's state and prior-reference copies
    pending = PendingPredictions(spec.n_columns, spec.max_pending, 86400.0)
    longest = ["\U0010ffff" * (MAX_ID_LENGTH - 8) + f"{i:08d}" for i in range(2 * spec.max_pending)]
    rows = np.zeros((spec.max_pending, spec.n_columns), np.float32)
    pending.add(longest[: spec.max_pending], rows, now, now)  # awaiting labels
    plan = pending.plan(longest[: spec.max_pending])
    pending.take(plan, spec.max_pending, now)  # joined: tombstones
    pending.add(longest[spec.max_pending :], rows, now, now)  # and a full table again
    assert len(pending) == spec.max_pending
    return total + report + pending.nbytes


def _size(state: State) -> int:
    return state.nbytes


SPECS = {
    "multiclass OvO, 2 windows": dict(
        task="multiclass", classes=list("abcd"), windows=("5m", "1h"), resolution="bins:2"
    ),
    "multiclass OvR": dict(
        task="multiclass", classes=list("abcdef"), ovo_class_limit=3, windows=("1m",)
    ),
    "binary, skew-bound future": dict(task="binary", windows=("30s", "1h"), calibration_bins=40),
    "multilabel": dict(task="multilabel", classes=list("xyz"), windows=("10m",), window_buckets=5),
    "exact": dict(task="multiclass", classes=list("abc"), resolution="exact:3000", windows=("1h",)),
}


@pytest.mark.parametrize("max_skew", [None, 300.0])
@pytest.mark.parametrize("kw", SPECS.values(), ids=SPECS.keys())
def test_worst_case_equals_the_measured_structures(kw, max_skew):
    spec = StreamSpec(name="s", max_pending=300, **kw)
    estimate = worst_case_memory(spec, max_skew)
    measured = _measured(spec, max_skew)
    # the estimate bounds what was measured, and is no more than 3% above it
    assert measured <= estimate.total <= 1.03 * measured, (
        format_bytes(measured),
        format_bytes(estimate.total),
        estimate.describe(),
    )


def test_the_field_named_is_the_one_that_asks_for_the_memory():
    gib = 1 << 30
    k32 = [f"c{i}" for i in range(32)]
    cases = [
        (dict(task="multiclass", classes=k32, resolution="bins:12"), "resolution.mantissa_bits"),
        (
            dict(task="multiclass", classes=[str(i) for i in range(1000)], ovo_class_limit=1000),
            "ovo_class_limit",
        ),
        (dict(task="binary", resolution=f"exact:{2**62}"), "resolution.max_samples"),
        (dict(task="multiclass", classes=k32, windows=("5m", "1h", "1d", "7d")), "windows"),
        (dict(task="binary", max_pending=10_000_000), "max_pending"),
    ]
    for kw, field in cases:
        spec = StreamSpec(**kw)
        estimate = worst_case_memory(spec, 300.0)
        assert estimate.total > gib and estimate.blamed_field(spec, gib) == field, kw

"""Exact while small: the default (binned) resolution keeps raw rows while a state holds at most
``state.SMALL_ROWS`` samples, and a window's ring of buckets at most ``state.WINDOW_ROWS``. Below
the cap every leaf equals sklearn to 1e-12 (tests/engine/oracle.py); past it the counts answer,
as bins always did."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import StreamEngine, StreamSpec, build_report
from evalstream_server.engine import state as state_module
from evalstream_server.engine.bucket_bytes import bucket_from_bytes, bucket_to_bytes
from evalstream_server.engine.open_bucket import OpenBucket
from evalstream_server.engine.state import SMALL_ROWS, WINDOW_ROWS, State
from evalstream_server.engine.stream import engine_from_bytes, engine_to_bytes

from .oracle import compare_report, expected
from .test_merge_properties import small_cap

CLASSES = {"binary": ("neg", "pos"), "multiclass": tuple("abcd"), "multilabel": tuple("xyz")}
T0 = 1_800_000_000.0


def _draw(task: str, rng: np.random.Generator, n: int, weighted: bool = False):
    """Continuous float32 scores (nearby values share a bin), some labels, optional weights."""
    if task == "multiclass":
        y = rng.integers(0, 4, n)
        logits = rng.normal(size=(n, 4))
        logits[np.arange(n), y] += 1.0
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    elif task == "multilabel":
        y = (rng.random((n, 3)) < 0.4).astype(int)
        p = 1 / (1 + np.exp(-(rng.normal(size=(n, 3)) + 1.2 * (2 * y - 1))))
    else:
        y = rng.integers(0, 2, n)
        p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * (2 * y - 1))))
    w = rng.random(n) * 2 if weighted else None
    return y, p.astype(np.float32), w


def _spec(task: str, **kw) -> StreamSpec:
    return StreamSpec(task=task, classes=CLASSES[task], **kw)


def _sklearn(spec: StreamSpec, y, p, w) -> dict:
    p2 = p.reshape(len(y), -1)
    return expected(spec.task, y, p2, w, k_max=spec.k_max)


@pytest.mark.parametrize(
    ("task", "weighted"),
    [("binary", False), ("multiclass", False), ("multiclass", True), ("multilabel", True)],
)
def test_a_window_of_a_few_hundred_samples_equals_sklearn(task, weighted):
    rng = np.random.default_rng(31)
    now = [T0]
    spec = _spec(task, windows=("5m",))
    eng = StreamEngine(spec, clock=lambda: now[0])
    old = _draw(task, rng, SMALL_ROWS + 2000, weighted)  # the past: the cumulative passes the cap
    eng.update(*old)
    now[0] += 900  # and the window leaves it
    y, p, w = _draw(task, rng, 300, weighted)
    for sl in (slice(0, 120), slice(120, 300)):  # two batches, in two buckets
        eng.update(y[sl], p[sl], None if w is None else w[sl])
        now[0] += 40
    report = eng.report("5m")
    assert report["resolution"]["exact"] is True
    assert report["resolution"]["exact_rows_left"] == WINDOW_ROWS - 300  # a ring's cap
    checked = compare_report(report, _sklearn(spec, y, p, w), list(CLASSES[task]), binned=False)
    assert checked > 10
    cumulative = eng.report()
    assert cumulative["resolution"]["exact"] is False
    assert cumulative["resolution"]["exact_rows_left"] == 0


@pytest.mark.parametrize(
    ("task", "cap"),
    [("binary", SMALL_ROWS), ("multiclass", SMALL_ROWS), ("multilabel", 400)],  # the oracle's
)  # per-sample multilabel metrics loop in Python: a lower cap keeps that case fast
def test_a_stream_crossing_the_cap_mid_batch_is_right_on_both_sides(task, cap):
    with small_cap(cap):
        _cross_the_cap(task)


def _cross_the_cap(task: str) -> None:
    SMALL_ROWS = state_module.SMALL_ROWS  # noqa: N806 - the cap of this run
    rng = np.random.default_rng(7)
    spec = _spec(task)
    y, p, w = _draw(task, rng, SMALL_ROWS + 200, weighted=task == "multiclass")
    first = SMALL_ROWS - 100  # then a batch of 300 that passes the cap
    eng = StreamEngine(spec)
    eng.update(y[:first], p[:first], None if w is None else w[:first])
    below = eng.report()
    assert below["resolution"]["exact"] is True and below["resolution"]["exact_rows_left"] == 100
    wf = None if w is None else w[:first]
    compare_report(below, _sklearn(spec, y[:first], p[:first], wf), list(CLASSES[task]), False)
    eng.update(y[first:], p[first:], None if w is None else w[first:])
    above = eng.report()
    assert above["resolution"]["exact"] is False and above["resolution"]["exact_rows_left"] == 0
    assert eng.cumulative.exact is None  # the rows are gone for good: bounded memory
    # past the cap the report is the bins' (the counts of every sample, rows or not) ...
    counts_only = State(spec)
    counts_only.to_bins()
    for sl in (slice(0, first), slice(first, None)):
        counts_only.update(eng.validate(y[sl], p[sl], None if w is None else w[sl]))
    binned = build_report(counts_only)
    assert {k: v for k, v in above.items() if k != "labels"} == {
        k: v
        for k, v in binned.items()
        if k != "labels"  # the engine's adds its join figures
    }
    # ... whose ranking bounds contain sklearn's value and whose other leaves equal it
    compare_report(above, _sklearn(spec, y, p, w), list(CLASSES[task]), binned=True)


def test_states_turn_into_bins_on_merge_past_the_cap():
    spec = _spec("multiclass")
    rng = np.random.default_rng(3)
    y, p, _ = _draw("multiclass", rng, 3000)
    a, b = State(spec), State(spec)
    a.update(spec_batch := StreamEngine(spec).validate(y[:2000], p[:2000]))
    b.update(StreamEngine(spec).validate(y[2000:], p[2000:]))
    assert a.merge(b).exact is not None and a.merge(b).exact.n == 3000  # 3,000 <= the cap
    assert a.merge(b).merge(a).exact is None  # 5,000 > the cap
    binned = State(spec)
    binned.to_bins()
    assert a.merge(binned).exact is None  # a part without rows: bins
    assert spec_batch.n == 2000


def test_a_ring_never_keeps_more_than_the_cap_and_windows_are_exact_iff_it_can_be():
    """Random batches and stamps with a cap of 60 rows: the ring's rows never pass the cap, and
    whenever the window says it is exact, every leaf equals sklearn on the window's samples."""
    rng = np.random.default_rng(2026)
    spec = _spec("binary", windows=("1m",), window_buckets=6)
    now = [T0]
    eng = StreamEngine(spec, clock=lambda: now[0])
    ring = eng.windows["1m"]
    seen: list[tuple[int, np.ndarray, np.ndarray]] = []  # (bucket, labels, scores)
    exact_checks = 0
    with small_cap(60):
        for _ in range(70):
            now[0] += float(rng.choice([1.0, 5.0, 20.0, 45.0]))
            n = int(rng.integers(1, 30))
            y, p, _ = _draw("binary", rng, n)
            t = now[0] - float(rng.choice([0.0, 0.0, 15.0]))  # some late batches
            eng.update(y, p, timestamp=t)
            seen.append((ring.bucket_of(t), y, p))
            kept = 0
            for bucket in ring.buckets().values():
                kept += bucket.exact.n if bucket.exact is not None else 0
            assert kept <= 60
            current = ring.bucket_of(now[0])
            live = [(yy, pp) for b, yy, pp in seen if current - ring.n_buckets < b <= current]
            report = eng.report("1m")
            n_live = sum(len(yy) for yy, _ in live)
            assert report["n_samples"] == n_live
            if n_live > 60:
                assert report["resolution"]["exact"] is False
            if report["resolution"]["exact"]:
                yy = np.concatenate([yy for yy, _ in live])
                pp = np.concatenate([pp for _, pp in live])
                compare_report(report, _sklearn(spec, yy, pp, None), list(spec.classes), False)
                exact_checks += 1
    assert exact_checks > 10  # the window was exact often enough for this to test something


def test_rows_survive_snapshots_and_old_snapshots_load_as_bins():
    rng = np.random.default_rng(5)
    spec = _spec("multiclass", windows=("5m", "1h"))
    now = [T0]
    eng = StreamEngine(spec, clock=lambda: now[0])
    y, p, w = _draw("multiclass", rng, 500, weighted=True)
    eng.update(y[:300], p[:300], w[:300])
    now[0] += 200
    eng.update(y[300:], p[300:], w[300:])
    again = engine_from_bytes(engine_to_bytes(eng), clock=lambda: now[0])
    for window in ("cumulative", "5m", "1h"):
        assert again.report(window) == eng.report(window), window
        assert again.report(window)["resolution"]["exact"] is True
    compare_report(again.report("1h"), _sklearn(spec, y, p, w), list(CLASSES["multiclass"]), False)
    # the open bucket keeps taking rows after a restore
    again.update(y[:10], p[:10], w[:10])
    assert (
        again.report("5m")["resolution"]["exact_rows_left"] == WINDOW_ROWS - 510
    )  # 5m holds both batches and these
    # written before binned states kept rows (no rows in the header): bins, as they were
    old = eng.cumulative.copy()
    old.to_bins()
    assert State.from_bytes(old.to_bytes()).exact is None
    sparse = OpenBucket.restore(spec, old.to_sparse()).to_sparse()
    assert sparse.exact is None and bucket_from_bytes(spec, bucket_to_bytes(sparse)).exact is None
    assert bucket_from_bytes(spec, bucket_to_bytes(eng.cumulative.to_sparse())).exact is not None


def test_the_exact_view_keeps_the_binned_layout_one_vs_one():
    """A binned stream above ovo_class_limit reports no one-vs-one AUC, rows or not (its report
    keeps its shape as the stream grows past the cap)."""
    spec = _spec("multiclass", ovo_class_limit=3)
    eng = StreamEngine(spec)
    y, p, _ = _draw("multiclass", np.random.default_rng(0), 100)
    eng.update(y, p)
    report = eng.report()
    assert report["resolution"]["exact"] is True
    assert report["roc_auc"]["ovo_macro"]["value"] is None


def test_the_cap_is_read_when_used():
    """``small_cap`` (the tests' lever) changes what states keep."""
    spec = _spec("binary")
    with small_cap(5):
        state = State(spec)
        y, p, _ = _draw("binary", np.random.default_rng(1), 6)
        state.update(StreamEngine(spec).validate(y, p))
        assert state.exact is None and state_module.SMALL_ROWS == 5
    assert state_module.SMALL_ROWS == SMALL_ROWS


def test_the_exact_one_vs_one_matrix_equals_the_pairwise_problems():
    """``_ExactView.ovo_matrix`` (one sort per column) against the generic per-pair problems, on
    weighted tied scores with a class absent and one seen with weight 0 only."""
    from evalstream_server.engine.views import ScoreView, view_of

    rng = np.random.default_rng(9)
    K, n = 5, 700
    y = rng.choice([0, 1, 2, 4], n)  # class 3 absent
    p = np.round(rng.dirichlet(np.ones(K), n), 2).astype(np.float32)  # many ties
    w = rng.integers(0, 4, n) / 2.0
    w[y == 4] = 0.0  # class 4 only with weight 0
    spec = StreamSpec(task="multiclass", classes=tuple("abcde"), probability_tolerance=0.1)
    for resolution in ("exact", "bins"):
        state = State(StreamSpec(**{**spec.to_dict(), "resolution": resolution}))
        state.update(StreamEngine(state.spec).validate(y, p, w))
        view = view_of(state)
        fast, generic = view.ovo_matrix(K), ScoreView.ovo_matrix(view, K)
        for key in ("value", "lower", "upper"):
            np.testing.assert_allclose(fast[key], generic[key], rtol=0, atol=1e-13, err_msg=key)
        assert np.isnan(fast["value"][3]).all() and np.isnan(fast["value"][:, 4]).all()

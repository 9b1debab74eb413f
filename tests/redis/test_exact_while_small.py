"""Exact while small on the Redis store (``store/redis_rows.py``): replicas keep a stream's raw rows
(and each window bucket's) beside its counts while under the caps of the embedded stores
(``state.SMALL_ROWS``, ``state.window_rows()``), and the row sample of binned states, so a stream
moved from one server to replicas reports the same numbers. Oracles: sklearn (``tests/engine/
oracle.py``) and the in-memory store fed the same batches at the same times."""

from __future__ import annotations

import time

import numpy as np
import pytest
from evalstream_server.engine import (
    CUMULATIVE,
    StreamSpec,
    build_report,
    make_batch,
    make_label_batch,
    make_prediction_batch,
)
from evalstream_server.engine import state as state_module
from evalstream_server.store import MemoryStore
from evalstream_server.store.redis_store import RedisStore

from ..engine import test_sklearn_cases as sklearn_cases
from ..engine.oracle import compare_report, expected, leaf
from ..engine.test_merge_properties import small_cap
from .conftest import CLASSES, RedisServer, counted, make_batches


def _store(url: str, clock, **options) -> RedisStore:
    """A replica without its background flusher: the tests decide when batches are committed."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return RedisStore.from_url(f"{url}?{query}" if query else url, clock=clock, background=False)


def _weights(rng: np.random.Generator, n: int, weighted: bool):
    return rng.uniform(0.1, 3.0, n) if weighted else None


def _sklearn(spec: StreamSpec, y, p, w) -> dict:
    return expected(spec.task, y, p.reshape(len(y), -1), w, k_max=spec.k_max)


def _same_report(got: dict, want: dict, weighted: bool = False) -> None:
    """Equal reports, every number to 1e-12: float sums of the counts (log loss, weights) are
    added in the order of a Redis log, the memory store adds them batch by batch (the counts
    themselves: ``test_store._assert_same``)."""
    _close(counted(got), counted(want), "")


def _close(got, want, path: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), path
        for k in want:
            _close(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-14), path
    else:
        assert got == want, path


class _Feed:
    """Two replicas and an in-memory store fed the same batches at the same (test) times."""

    def __init__(self, url: str, spec: StreamSpec, **options) -> None:
        # now, 25 s aligned: bucket keys expire on Redis's clock, so the test clock starts at it
        self.now = [float(int(time.time()) // 25 * 25)]
        clock = lambda: self.now[0]  # noqa: E731
        self.spec = spec
        self.replicas = [_store(url, clock, **options), _store(url, clock, **options)]
        self.memory = MemoryStore(clock=clock)
        self.replicas[0].create(spec)
        self.memory.create(spec)
        self.seq = {0: 0, 1: 0}

    def send(self, y, p, w=None, replica: int = 0, flush: bool = True) -> None:
        """A batch from the producer of ``replica`` (each replica has its own)."""
        self.seq[replica] += 1
        seq, producer = self.seq[replica], f"P{replica}"
        batch = make_batch(self.spec, y, p, w)
        store = self.replicas[replica]
        assert store.ingest("s", producer, seq, batch, None).status == "accepted"
        self.memory.ingest("s", producer, seq, batch, None)
        if flush:
            store.flush()

    def reports(self, window: str) -> tuple[list[dict], dict]:
        return [r.report("s", window) for r in self.replicas], self.memory.report("s", window)

    def close(self) -> None:
        for r in self.replicas:
            r.close()


@pytest.mark.parametrize(
    ("task", "weighted", "n"),
    [("binary", False, 900), ("multiclass", False, 900), ("multiclass", True, 900)]
    + [("multilabel", True, 300)],  # the oracle loops over multilabel samples in Python
)
def test_two_replicas_report_sklearn_on_a_small_stream(redis_server, task, weighted, n):
    """Batches through two replicas: both report every leaf as sklearn does to 1e-12 on the union
    (the cumulative state and a window of two buckets), and exactly the in-memory store's report."""
    spec = StreamSpec(task=task, classes=CLASSES[task], windows=("5m",), name="s")
    feed = _Feed(redis_server.url, spec)
    rng = np.random.default_rng(5)
    try:
        ys, ps, ws = [], [], []
        for i, (y, p) in enumerate(make_batches(task, 6, n // 6, seed=21)):
            w = _weights(rng, len(y), weighted)
            feed.send(y, p, w, replica=i % 2)
            ys.append(y), ps.append(p), ws.append(w)
            feed.now[0] += 13.0  # across two buckets of the 5m window
        y, p = np.concatenate(ys), np.concatenate(ps)
        w = np.concatenate(ws) if weighted else None
        for window in (CUMULATIVE, "5m"):
            (ra, rb), want = feed.reports(window)
            for got in (ra, rb):
                assert got["resolution"]["exact"] is True
                assert got["resolution"]["exact_rows_left"] == got["resolution"]["exact_cap"] - n
                checked = compare_report(got, _sklearn(spec, y, p, w), list(CLASSES[task]), False)
                assert checked > 10
                _same_report(got, want, weighted)
    finally:
        feed.close()


def test_a_duplicate_batch_after_a_failover_adds_no_rows(redis_server):
    """A producer fails over from replica a (which counted three batches, not yet committed) to
    b, which commits all five; a's commit then finds them taken: skipped, and no row is added
    twice. The rows equal the data sent once."""
    spec = StreamSpec(task="multiclass", classes=CLASSES["multiclass"], windows=("5m",), name="s")
    feed = _Feed(redis_server.url, spec)
    a, b = feed.replicas
    try:
        batches = make_batches("multiclass", 5, 120, seed=8)
        for seq, (y, p) in enumerate(batches[:3], 1):  # counted by a, not yet committed
            assert a.ingest("s", "P", seq, make_batch(spec, y, p), None).status == "accepted"
        for seq, (y, p) in enumerate(batches, 1):  # the producer failed over to b
            batch = make_batch(spec, y, p)
            assert b.ingest("s", "P", seq, batch, None).status == "accepted"
            feed.memory.ingest("s", "P", seq, batch, None)
        b.flush()
        a.flush()
        assert a.stats["skipped"] == 3
        dup = a.ingest("s", "P", 2, None, None)  # and a resend is answered, adding nothing
        assert dup.status == "duplicate"
        a.flush()
        y = np.concatenate([y for y, _ in batches])
        p = np.concatenate([p for _, p in batches])
        for window in (CUMULATIVE, "5m"):
            (ra, rb), want = feed.reports(window)
            for got in (ra, rb):
                assert got["resolution"]["exact_rows_left"] == got["resolution"]["exact_cap"] - 600
                compare_report(got, _sklearn(spec, y, p, None), list(CLASSES["multiclass"]), False)
                _same_report(got, want)
    finally:
        feed.close()


def test_a_failed_commit_adds_no_rows(redis_server):
    """A commit Redis refuses (its producer sequence conflicts: a reset forgot the producer)
    appends neither counts nor rows."""
    spec = StreamSpec(task="binary", classes=CLASSES["binary"], name="s")
    feed = _Feed(redis_server.url, spec)
    a, b = feed.replicas
    try:
        (y, p), (y2, p2) = make_batches("binary", 2, 150, seed=3)
        feed.send(y, p)
        assert a.ingest("s", "P0", 2, make_batch(spec, y2, p2), None).status == "accepted"
        b.reset("s", forget_producers=True)  # a's buffered batch 2 now follows no sequence
        a.flush()
        assert a.stats["dropped"] == 1
        r = redis_server.client()
        assert not r.exists(a.keys.of("s", "cum:rows"))
        got = b.report("s", CUMULATIVE)
        assert got["resolution"]["exact"] is True and got["roc_auc"]["binary"]["value"] is None
    finally:
        feed.close()


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_the_cap_passed_turns_every_replica_to_bins_and_a_reset_back(redis_server, task):
    """With the cap at 300 samples: below it every replica answers from the rows; the commit that
    passes it drops them for good (the rows key keeps its 16-byte header), and every replica
    answers from the counts, as the in-memory store does. A reset makes the stream exact again
    (the replica that left rows out of its commits, expecting them dropped, sends them)."""
    spec = StreamSpec(task=task, classes=CLASSES[task], name="s")
    with small_cap(300):
        feed = _Feed(redis_server.url, spec)
        a, b = feed.replicas
        r = redis_server.client()
        rows_key = a.keys.of("s", "cum:rows")
        try:
            batches = make_batches(task, 6, 100, seed=4)
            for i, (y, p) in enumerate(batches[:3]):
                feed.send(y, p, replica=i % 2)
            (got_a, got_b), want = feed.reports(CUMULATIVE)
            assert got_a["resolution"]["exact"] is got_b["resolution"]["exact"] is True
            held = r.strlen(rows_key)
            for i, (y, p) in enumerate(batches[3:]):
                feed.send(y, p, replica=i % 2)
                (got_a, got_b), want = feed.reports(CUMULATIVE)
                assert want["resolution"]["exact"] is False
                for got in (got_a, got_b):
                    assert got["resolution"]["exact"] is False
                    _same_report(got, want)
            assert r.strlen(rows_key) == 16 < held  # dropped: bounded memory
            assert a.keys.of("s", "cum") in a.buffer.dropped  # a leaves the rows out now
            b.reset("s")
            feed.memory.reset("s")
            y, p = batches[0]
            feed.send(y, p, replica=0)  # a expected the rows dropped: Redis asks for them
            for got in feed.reports(CUMULATIVE)[0]:
                assert got["resolution"]["exact"] is True
                compare_report(got, _sklearn(spec, y, p, None), list(CLASSES[task]), False)
                _same_report(got, feed.memory.report("s", CUMULATIVE))
        finally:
            feed.close()


def test_window_buckets_turn_to_bins_past_the_rings_cap_and_back(redis_server):
    """A 5m window (12 buckets of 25 s) with its ring's cap at 300: its buckets keep rows while
    the ring holds at most 300 samples; the batch that passes the cap drops every bucket's rows
    (the buckets of predictions alone too); once those buckets left the window, new buckets keep
    rows again. At every step both replicas report what the in-memory store reports."""
    spec = StreamSpec(task="multiclass", classes=CLASSES["multiclass"], windows=("5m",), name="s")
    with small_cap(300):
        assert state_module.window_rows() == 300
        feed = _Feed(redis_server.url, spec)
        try:
            batches = iter(make_batches("multiclass", 40, 60, seed=6))
            steps = [(0, 1), (1, 1), (0, 1), (1, 3), (0, 1)]  # (replica, batches) 25 s apart
            exact = []
            for replica, count in steps * 3:
                for _ in range(count):
                    feed.send(*next(batches), replica=replica)
                (got_a, got_b), want = feed.reports("5m")
                _same_report(got_a, want)
                _same_report(got_b, want)
                exact.append(want["resolution"]["exact"])
                feed.now[0] += 25.0
            assert exact[:3] == [True] * 3 and not all(exact[3:])  # passed: bins
            feed.now[0] += 400.0  # the window has left the heavy buckets
            y, p = next(batches)
            feed.send(y, p, replica=1)
            (got_a, got_b), want = feed.reports("5m")
            assert want["resolution"]["exact"] is True
            for got in (got_a, got_b):
                compare_report(got, _sklearn(spec, y, p, None), list(CLASSES["multiclass"]), False)
                _same_report(got, want)
        finally:
            feed.close()


def test_a_stream_written_before_rows_stays_binned(redis_server):
    """Counts in Redis without their rows (what replicas before exact while small wrote: no rows
    key) never claim exact: the report is the in-memory store's from counts alone, and stays so
    when new batches add rows beside the old counts."""
    spec = StreamSpec(task="binary", classes=CLASSES["binary"], windows=("5m",), name="s")
    feed = _Feed(redis_server.url, spec)
    a, b = feed.replicas
    r = redis_server.client()
    try:
        batches = make_batches("binary", 3, 100, seed=9)
        feed.send(*batches[0])
        assert b.report("s", CUMULATIVE)["resolution"]["exact"] is True  # with its rows
        for key in r.scan_iter(match="evalstream:[{]s[}]:*"):
            if key.endswith((b":rows", b":smp")):
                r.delete(key)  # the layout written before this change
        for i, (y, p) in enumerate(batches[1:]):
            for window in (CUMULATIVE, "5m"):
                state, ref, labels = feed.memory.report_context("s", window)
                for part in (state, ref):
                    if part is not None:
                        part.to_bins()
                want = build_report(state, window=window, reference=ref, labels=labels)
                fresh = _store(redis_server.url, lambda: feed.now[0])  # nothing cached
                try:
                    got = fresh.report("s", window)
                finally:
                    fresh.close()
                assert got["resolution"]["exact"] is False
                _same_report(got, want)
            feed.send(y, p, replica=i % 2)
    finally:
        feed.close()


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
def test_binned_averages_carry_the_ci95_of_the_memory_store(redis_server, task):
    """Past the rows, the macro, weighted and micro ROC AUC of a binned stream carry a ci95 from
    the row sample (``engine/row_sample.py``): the same as the in-memory store's, whatever the
    replica, commit grouping and compaction of the sample logs."""
    spec = StreamSpec(task=task, classes=CLASSES[task], windows=("1h",), name="s")
    feed = _Feed(redis_server.url, spec, compact_bytes=4096)
    a, b = feed.replicas
    try:
        for i, (y, p) in enumerate(make_batches(task, 24, 250, seed=12)):
            feed.send(y, p, replica=i % 2, flush=i % 3 == 2)
            feed.now[0] += 60.0
        a.flush()
        b.flush()
        for store in (a, b):
            store.compactor.run_due()  # the sample logs grew past 8 samples' worth
        assert a.stats["compactions"] + b.stats["compactions"] > 0
        for window in (CUMULATIVE, "1h"):
            (got_a, got_b), want = feed.reports(window)
            assert want["resolution"]["exact"] is False
            for got in (got_a, got_b):
                for avg in ("macro", "weighted", "micro"):
                    assert "ci95" in got["roc_auc"][avg]
                _same_report(got, want)
    finally:
        feed.close()


def test_compaction_keeps_a_small_stream_exact(redis_server):
    """Compacting the count log (and the sample log) leaves the rows consistent with the counts:
    still exact, still the in-memory store's report."""
    spec = StreamSpec(task="multiclass", classes=CLASSES["multiclass"], name="s")
    feed = _Feed(redis_server.url, spec)
    a, _ = feed.replicas
    try:
        for i, (y, p) in enumerate(make_batches("multiclass", 10, 50, seed=2)):
            feed.send(y, p, replica=i % 2)
        assert a.compact("s", a.keys.of("s", "cum"))
        a.compact("s", a.keys.of("s", "cum:smp"))
        fresh = _store(redis_server.url, lambda: feed.now[0])
        try:
            got = fresh.report("s", CUMULATIVE)
            state = fresh.state("s", CUMULATIVE)
            # the replica's cache of merged states (bounded by cache_bytes) charges the rows
            assert state.exact is not None and state.exact.n == 500
            assert fresh.reads.cache._bytes >= state.exact.nbytes + state.sample.nbytes
        finally:
            fresh.close()
        assert got["resolution"]["exact"] is True
        _same_report(got, feed.memory.report("s", CUMULATIVE))
    finally:
        feed.close()


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.mark.parametrize("name", list(sklearn_cases._MAKERS))
def test_sklearn_own_cases_through_two_replicas(shared_redis, name):
    """scikit-learn's own metric test cases (``tests/engine/test_sklearn_cases.py``: their
    inputs and seeds), half of each through one replica and half through another, in the
    default (binned) resolution: every leaf of the oracle equals sklearn to 1e-12 on both
    replicas, ranking leaves included, as the engine's does."""
    case = sklearn_cases._case(name)
    C = case.p.shape[1]
    classes = ["neg", "pos"] if case.task == "binary" else [f"c{i}" for i in range(C)]
    stream = f"case{list(sklearn_cases._MAKERS).index(name)}"
    spec = StreamSpec(task=case.task, classes=tuple(classes), top_k=case.top_k, name=stream)
    a, b = (_store(shared_redis.url, time.time) for _ in range(2))
    try:
        a.create(spec)
        half = len(case.y) // 2 or 1
        for store, sl in ((a, slice(0, half)), (b, slice(half, None))):
            if len(case.y[sl]):
                w = None if case.w is None else case.w[sl]
                batch = make_batch(spec, case.y[sl], case.p[sl], w)
                assert store.ingest(stream, "", 0, batch, None).status == "accepted"
                store.flush()
        want = sklearn_cases._expected_of(name)
        for store in (a, b):
            report = store.report(stream, CUMULATIVE)
            assert report["resolution"]["exact"] is True
            wrong = []
            for path, value in want.items():
                if path in ("confusion_matrix", "multilabel_confusion_matrix"):
                    if not np.array_equal(np.asarray(report[path], float), np.asarray(value)):
                        wrong.append(path)
                    continue
                got = leaf(report, path, classes)["value"]
                if value is None or got is None:
                    if (value is None) != (got is None):
                        wrong.append(f"{path}: {got} vs sklearn {value}")
                    continue
                tol = sklearn_cases._LOSS_RTOL * abs(value) + 1e-9
                if path not in ("log_loss", "brier_score"):
                    tol = sklearn_cases.TOL
                if abs(got - value) > tol:
                    wrong.append(f"{path}: {got} vs sklearn {value}")
            assert wrong == []
    finally:
        a.close()
        b.close()


def test_joined_pairs_keep_rows_below_the_cap_and_after_a_reset(redis_server):
    """Delayed labels: pairs joined on another replica than their predictions keep raw rows while
    the stream is under the cap (300 here), as the in-memory store's; past it the rows go and the
    joining replica leaves them out of its next commits; after a reset its first commit finds
    them needed, sends them, and the stream is exact again."""
    spec = StreamSpec(task="multiclass", classes=CLASSES["multiclass"], windows=("5m",), name="s")
    with small_cap(300):
        feed = _Feed(redis_server.url, spec)
        a, b = feed.replicas
        seq = {"P": 0, "L": 0}

        def send(store, producer, record):
            seq[producer] += 1
            got = store.ingest("s", producer, seq[producer], record, None)
            assert got == feed.memory.ingest("s", producer, seq[producer], record, None)

        def rounds(start: int, count: int, seed: int) -> None:
            for k, (y, p) in enumerate(make_batches("multiclass", count, 100, seed=seed)):
                ids = [f"r{start + k}-{i}" for i in range(len(y))]
                send(a, "P", make_prediction_batch(spec, ids, p))
                send(b, "L", make_label_batch(spec, ids, y))
                feed.now[0] += 10.0

        try:
            rounds(0, 2, seed=30)
            for window in (CUMULATIVE, "5m"):
                (got_a, got_b), want = feed.reports(window)
                assert want["resolution"]["exact"] is True
                _same_report(got_a, want)
                _same_report(got_b, want)
            rounds(2, 3, seed=31)  # 500 pairs: past the cap
            assert b.keys.of("s", "cum") in b.buffer.dropped
            for got in feed.reports(CUMULATIVE)[0]:
                assert got["resolution"]["exact"] is False
                _same_report(got, feed.memory.report("s", CUMULATIVE))
            a.reset("s", forget_producers=True)
            feed.memory.reset("s", forget_producers=True)
            seq.update(P=0, L=0)
            rounds(5, 1, seed=32)  # b left the rows out: Redis asks for them
            assert b.keys.of("s", "cum") not in b.buffer.dropped
            for window in (CUMULATIVE, "5m"):
                (got_a, got_b), want = feed.reports(window)
                assert want["resolution"]["exact"] is True
                _same_report(got_a, want)
                _same_report(got_b, want)
        finally:
            feed.close()

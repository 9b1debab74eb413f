"""Delayed labels on the Redis store: predictions on one replica, their labels on others, against
one in-memory store fed the same records as the oracle (counts, windows, outcomes and the join
table's status); the same label batch through two replicas at once joins once; the table's keys
are bounded, expire, and go with a reset or a delete; a replica killed and Redis restarted (AOF)
between predictions and labels lose nothing."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream import EvalClient
from evalstream_server.engine import (
    CUMULATIVE,
    StreamSpec,
    make_label_batch,
    make_prediction_batch,
)
from evalstream_server.server import ServerThread
from evalstream_server.store import MemoryStore
from evalstream_server.store.redis_store import RedisStore

from .conftest import CLASSES, RedisServer, ReplicaProcess, make_batches, replica_settings
from .test_exact_while_small import _same_report
from .test_store import _assert_same

WINDOWS = (CUMULATIVE, "2m", "1h")


def _store(url: str, clock) -> RedisStore:
    return RedisStore.from_url(url, clock=clock, background=False)


class _Both:
    """A Redis replica and the oracle fed the same record with the same sequence number."""

    def __init__(self, memory: MemoryStore) -> None:
        self.memory = memory
        self.seq: dict[str, int] = {}

    def send(self, store: RedisStore, producer: str, record, ts=None):
        seq = self.seq[producer] = self.seq.get(producer, 0) + 1
        assert store.expected_sequence("s", producer) == seq
        got = store.ingest("s", producer, seq, record, ts)
        want = self.memory.ingest("s", producer, seq, record, ts)
        assert got == want, (got, want)
        return got


def _check(stores, memory: MemoryStore) -> list[bool]:
    """Counts, reports (joined pairs keep raw rows while small, as in the memory store) and the
    join table's status of every replica against the memory store; whether each view is exact."""
    want_status = memory.get("s").engine.label_status()
    exact = []
    for store in stores:
        for window in WINDOWS:
            _assert_same(store.state("s", window), memory.state("s", window), False)
            want = memory.report("s", window)
            _same_report(store.report("s", window), want)
            exact.append(want["resolution"]["exact"])
        assert store.label_status("s") == want_status
    return exact


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_labels_on_other_replicas_equal_one_memory_store(redis_server, task):
    now = [float(int(time.time()))]
    clock = lambda: now[0]  # noqa: E731
    spec = StreamSpec(
        task=task,
        classes=CLASSES[task],
        windows=WINDOWS[1:],
        name="s",
        max_pending=700,
        pending_retention=900,
    )
    a, b, c = (_store(redis_server.url, clock) for _ in range(3))
    memory = MemoryStore(clock=clock)
    both = _Both(memory)
    a.create(spec)
    memory.create(spec)
    rng = np.random.default_rng({"binary": 1, "multiclass": 2, "multilabel": 3}[task])
    data = make_batches(task, 4, 300, seed=40)
    y = np.concatenate([d[0] for d in data])
    p = np.concatenate([d[1] for d in data])
    n = len(y)
    ids = np.array([f"r{i}" for i in range(n)], dtype=object)
    try:
        # predictions on a: random batches, stamped now or earlier (outside 2m, outside 1h),
        # repeated ids within and across batches; 1200 rows into a table of 700 evicts some
        order = rng.permutation(n)
        for k, part in enumerate(np.array_split(order, 8)):
            part = np.r_[part, part[:3]] if k % 3 == 1 else part
            if k == 5:
                part = np.r_[part, order[:4]]
            ts = now[0] - float(rng.choice([0, 0, 300, 5000]))
            both.send(a, "P", make_prediction_batch(spec, ids[part].tolist(), p[part]), ts)
            now[0] += 20
        _check((a, b), memory)
        # labels on b and c: shuffled, strangers and repeats, some never sent
        labelled = rng.permutation(n)[: int(0.8 * n)]
        label_ids = [*ids[labelled].tolist(), *(f"nobody-{i}" for i in range(15))]
        label_ids += ids[labelled[:20]].tolist()
        label_y = np.concatenate([y[labelled], y[:15], y[labelled[:20]]])
        perm = rng.permutation(len(label_ids))
        parts = np.array_split(perm, 6)
        for k, part in enumerate(parts[:4]):
            batch = make_label_batch(spec, [label_ids[i] for i in part], label_y[part])
            both.send((b, c)[k % 2], f"L{k % 2}", batch)
            now[0] += 30
        # the same batch through b and c: b reads, c joins the rows first, b's commit finds them
        # gone, reads again and counts its labels as duplicates
        batch = make_label_batch(spec, [label_ids[i] for i in parts[4]], label_y[parts[4]])
        read = b.join._labels
        raced = []

        def racing(cached, record, at):
            out = read(cached, record, at)
            if not raced:
                raced.append(both.send(c, "L1", batch))
            return out

        b.join._labels = racing
        second = both.send(b, "L0", batch)
        assert raced[0].join["matched"] > 0 and second.join["matched"] == 0
        assert second.join["duplicate"] >= raced[0].join["matched"]
        assert b.stats["join_conflicts"] >= 1
        assert any(_check((a, b, c), memory))  # joined pairs' rows: exact while small
        now[0] += 1000  # past the retention: the rest expire, their labels count as expired
        batch = make_label_batch(spec, [label_ids[i] for i in parts[5]], label_y[parts[5]])
        assert both.send(c, "L1", batch).join["expired"] > 0
        _check((a, b, c), memory)
        status = a.label_status("s")
        assert status["evicted"] > 0 and status["expired"] > 0 and status["pending"] == 0
        assert status["predictions"] == status["matched"] + status["expired"] + status["evicted"]
    finally:
        for store in (a, b, c):
            store.close()


def test_the_join_table_is_bounded_expires_and_goes_with_reset_and_delete(redis_server):
    now = [float(int(time.time()))]
    clock = lambda: now[0]  # noqa: E731
    spec = StreamSpec(task="binary", name="s", max_pending=5, pending_retention=50)
    a = _store(redis_server.url, clock)
    memory = MemoryStore(clock=clock)
    both = _Both(memory)
    r = redis_server.client()
    pend, pq, done, dq, jc = a.keys.join("s")
    try:
        a.create(spec)
        memory.create(spec)
        score = np.linspace(0.1, 0.9, 8)
        both.send(a, "P", make_prediction_batch(spec, [f"k{i}" for i in range(8)], score))
        assert (r.hlen(pend), r.zcard(pq), r.hlen(done), r.zcard(dq)) == (5, 5, 3, 3)
        assert all(0 < r.ttl(key) <= 50 + 60 for key in (pend, pq, done, dq))
        res = both.send(a, "L", make_label_batch(spec, ["k0", "k1", "k6", "k7"], [0, 1, 1, 0]))
        assert (res.join["matched"], res.join["expired"]) == (2, 2)
        both.send(a, "P", make_prediction_batch(spec, [f"m{i}" for i in range(9)], np.full(9, 0.3)))
        assert r.hlen(pend) == 5 and r.hlen(done) == 5 == r.zcard(dq)  # tombstones bounded
        assert a.label_status("s") == memory.get("s").engine.label_status()
        # a producer that failed over while its batch was being committed: the other replica's
        # check passed before the commit, its commit finds the number taken: DUPLICATE, with the
        # join counts recorded by the first
        b = _store(redis_server.url, clock)
        try:
            late = make_label_batch(spec, ["k2", "nobody"], [1, 0])
            first = both.send(a, "F", late)
            b.sequences.expected = lambda name, producer: 1  # its read came before a's commit
            again = b.ingest("s", "F", 1, late, None)
            assert (again.status, again.original_status, again.join) == (
                "duplicate",
                "accepted",
                first.join,
            )
        finally:
            b.close()
        # Redis dropped the untouched table (its TTL): what was pending counts as expired
        before = a.label_status("s")
        r.delete(pend, pq)
        after = a.label_status("s")
        assert (after["pending"], after["expired"]) == (0, before["expired"] + 5)
        a.reset("s")
        assert not r.exists(pend, pq, done, dq, jc)
        assert a.label_status("s")["predictions"] == 0
        both.send(a, "P", make_prediction_batch(spec, ["x"], [0.4]))
        a.delete("s")
        assert not r.keys("*{s}*")
    finally:
        a.close()


def test_a_replica_killed_and_redis_restarted_between_predictions_and_labels(tmp_path):
    server = RedisServer(tmp_path / "redis", aof=True, fsync="always").start()
    url = server.url + "?flush_interval=0.02"
    first = ReplicaProcess(url)
    second = None
    y, p = make_batches("multiclass", 1, 2000, seed=51)[0]
    ids = [f"t{i}" for i in range(len(y))]
    try:
        first.start()
        with EvalClient(first.target, timeout=10) as client:
            client.create_stream("k", "multiclass", CLASSES["multiclass"])
            for part in np.array_split(np.arange(len(y)), 4):
                res = client.log_predictions("k", [ids[i] for i in part], p[part])
                assert res.added == len(part)
        first.kill9()  # acknowledged predictions are in Redis, not in the replica
        server.kill9()
        server.start()  # same port and directory: replays the AOF
        second = ServerThread(replica_settings(url)).start()
        rng = np.random.default_rng(5)
        labelled = rng.permutation(len(y))[:1500]
        with EvalClient(second.target, timeout=10, retry_deadline=30) as client:
            res = client.log_labels("k", [ids[i] for i in labelled], y[labelled])
            assert (res.matched, res.unknown, res.expired) == (1500, 0, 0)
            report = client.report("k")
        rep = report.to_dict()
        assert rep["n_samples"] == 1500
        np.testing.assert_array_equal(
            rep["confusion_matrix"],
            skm.confusion_matrix(y[labelled], p[labelled].argmax(1), labels=range(4)),
        )
        status = rep["labels"]["stream"]
        assert (status["pending"], status["matched"], status["predictions"]) == (500, 1500, 2000)
    finally:
        first.stop()
        if second is not None:
            second.stop()
        server.stop()

"""The Redis store against the in-memory store as the oracle: replicas on one Redis, fed the same
batches between them, hold exactly the counts of one memory store fed all of them; and the
exactly-once corner cases of commits (a failover race, a reset or delete while batches wait)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from evalstream_server.engine import CUMULATIVE, InvalidInputError, StreamSpec, make_batch
from evalstream_server.store import MemoryStore, NotFoundError
from evalstream_server.store.redis_buffer import Commit
from evalstream_server.store.redis_store import RedisStore
from evalstream_server.store.sparse_log import decode_log, encode_chunk, reduce_parts

from .conftest import CLASSES, make_batches

_WHOLE_FIELDS = {"n", "confusion", "rank", "label_counts", "hist", "pos", "all"}


def _store(url: str, clock, **options) -> RedisStore:
    """A replica without its background flusher: the tests decide when batches are committed."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return RedisStore.from_url(f"{url}?{query}" if query else url, clock=clock, background=False)


def _assert_same(got, want, weighted: bool) -> None:
    assert got.counts.keys() == want.counts.keys()
    for name, arr in want.counts.items():
        if name in _WHOLE_FIELDS and not weighted:
            np.testing.assert_array_equal(got.counts[name], arr, err_msg=name)
        else:
            np.testing.assert_allclose(got.counts[name], arr, rtol=1e-9, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("weighted", [False, True])
def test_replicas_hold_the_counts_of_one_memory_store(redis_server, task, weighted):
    t0 = float(int(time.time()))
    now = [t0]
    clock = lambda: now[0]  # noqa: E731
    spec = StreamSpec(task=task, classes=CLASSES[task], windows=("2m", "1h"), name="s")
    # tiny chunks and compaction thresholds: every commit is staged, logs get compacted
    a = _store(redis_server.url, clock, chunk_bytes=1024, compact_bytes=4096)
    b = _store(redis_server.url, clock, chunk_bytes=1 << 20, compact_bytes=4096)
    memory = MemoryStore(clock=clock)
    a.create(spec)
    memory.create(spec)
    rng = np.random.default_rng(7)
    home = {"p0": a, "p1": b, "p2": a}  # a producer moves only once its batches are acked
    try:
        for i, (y, p) in enumerate(make_batches(task, 40, 300, seed=3)):
            w = rng.uniform(0.1, 3.0, y.shape[0]) if weighted else None
            batch = make_batch(spec, y, p, w)
            now[0] = t0 + 7.0 * i  # walks across window buckets; some batches arrive late
            ts = now[0] - float(rng.choice([0, 0, 30, 200, 5000]))
            producer = f"p{i % 3}"
            store = home[producer]
            seq = store.expected_sequence("s", producer)
            assert store.ingest("s", producer, seq, batch, ts).status == "accepted"
            memory.ingest("s", producer, seq, batch, ts)
            if rng.random() < 0.4:  # acknowledged: the producer may move to the other replica
                store.flush()
                home[producer] = (a, b)[int(rng.integers(2))]
        a.flush()
        b.flush()
        for store in (a, b):
            store.compact("s", store.keys.of("s", "cum"))
        for window in (CUMULATIVE, "2m", "1h", "60m"):
            want = memory.state("s", window)
            for store in (a, b):
                _assert_same(store.state("s", window), want, weighted)
        assert a.stats["compactions"] + b.stats["compactions"] > 0
        assert not redis_server.client().keys("*stage*")  # staged payloads are cleaned up
        assert a.get("s").engine.n_batches == 40
    finally:
        a.close()
        b.close()


def test_a_batch_committed_by_another_replica_is_skipped_not_counted_twice(redis_server):
    spec = StreamSpec(task="binary", name="s")
    a, b = _store(redis_server.url, time.time), _store(redis_server.url, time.time)
    memory = MemoryStore()
    try:
        a.create(spec)
        memory.create(spec)
        batches = [make_batch(spec, y, p) for y, p in make_batches("binary", 5, 50, seed=1)]
        for seq, batch in enumerate(batches[:3], 1):  # counted by a, not yet committed
            assert a.ingest("s", "P", seq, batch, None).status == "accepted"
        for seq, batch in enumerate(batches, 1):  # the producer failed over to b
            assert b.ingest("s", "P", seq, batch, None).status == "accepted"
            memory.ingest("s", "P", seq, batch, None)
        b.flush()
        a.flush()  # a's commit conflicts; split per batch, each is found committed already
        assert a.stats["conflicts"] == 1 and a.stats["skipped"] == 3
        _assert_same(a.state("s", CUMULATIVE), memory.state("s", CUMULATIVE), False)
        assert a.expected_sequence("s", "P") == 6
        dup = a.ingest("s", "P", 2, None, None)
        assert (dup.status, dup.original_status, dup.samples) == ("duplicate", "accepted", 50)
    finally:
        a.close()
        b.close()


def test_a_replica_with_a_stale_view_answers_from_redis(redis_server):
    spec = StreamSpec(task="binary", name="s")
    a, b = _store(redis_server.url, time.time), _store(redis_server.url, time.time)
    try:
        a.create(spec)
        batch = make_batch(spec, *make_batches("binary", 1, 20, seed=2)[0])
        assert a.ingest("s", "P", 1, batch, None).status == "accepted"
        a.flush()
        for seq in (2, 3):
            assert b.ingest("s", "P", seq, batch, None).status == "accepted"
        b.flush()
        # back on a: a's buffer is empty, so it asks Redis
        assert a.expected_sequence("s", "P") == 4
        gap = a.ingest("s", "P", 9, None, None)
        assert (gap.status, gap.error_code, gap.expected_sequence) == ("rejected", 11, 4)
        rejected = a.ingest("s", "P", 4, InvalidInputError("scores", "x", "y"), None)
        assert rejected.status == "rejected"  # a content rejection consumes its number
        a.flush()
        dup = b.ingest("s", "P", 4, None, None)
        assert (dup.status, dup.original_status) == ("duplicate", "rejected")
        assert b.expected_sequence("s", "P") == 5
        assert b.state("s", CUMULATIVE).n_samples == 60
    finally:
        a.close()
        b.close()


def test_reset_forgetting_producers_while_batches_wait_drops_them(redis_server):
    spec = StreamSpec(task="binary", name="s")
    a, b = _store(redis_server.url, time.time), _store(redis_server.url, time.time)
    try:
        a.create(spec)
        batch = make_batch(spec, *make_batches("binary", 1, 20, seed=2)[0])
        for seq in (1, 2, 3, 4):
            a.ingest("s", "P", seq, batch, None)
            if seq == 2:
                a.flush()
        b.reset("s", forget_producers=True)
        a.flush()  # 3 and 4 are ordered before the reset: counted, then forgotten with it
        assert a.state("s", CUMULATIVE).n_samples == 0
        assert a.stats["dropped"] == 2
        assert a.expected_sequence("s", "P") == 1
        a.ingest("s", "P", 1, batch, None)
        a.flush()
        assert b.state("s", CUMULATIVE).n_samples == 20
        b.reset("s")  # keeps the producers
        assert b.state("s", CUMULATIVE).n_samples == 0 and a.expected_sequence("s", "P") == 2
    finally:
        a.close()
        b.close()


def _count_calls(store: RedisStore, script: str) -> list[int]:
    """Count the runs of ``script`` by ``store`` (one element, updated in place)."""
    count = [0]
    call = store.conn.call

    def counted(what, name, keys, args):
        count[0] += name == script
        return call(what, name, keys, args)

    store.conn.call = counted
    return count


def test_ingest_trusts_the_sequence_its_caller_read(redis_server):
    spec = StreamSpec(task="binary", name="s")
    a = _store(redis_server.url, time.time)
    try:
        a.create(spec)
        batch = make_batch(spec, *make_batches("binary", 1, 20, seed=2)[0])
        reads = _count_calls(a, "producer")
        for seq in (1, 2, 3):  # what the servicer does: read once, then ingest with it
            expected = a.expected_sequence("s", "P")
            assert expected == seq
            assert a.ingest("s", "P", seq, batch, None, expected=expected).status == "accepted"
            a.flush()  # this replica buffers nothing now: the next read goes to Redis
        assert reads[0] == 3
        dup = a.ingest("s", "P", 2, batch, None, expected=4)  # not the expected: Redis decides
        assert (dup.status, dup.expected_sequence, reads[0]) == ("duplicate", 4, 4)
        assert a.ingest("s", "P", 4, batch, None).status == "accepted"  # no value: reads
        assert reads[0] == 5
        stale = a.ingest("s", "P", 4, batch, None, expected=4)  # buffered here: the buffer wins
        assert (stale.status, stale.original_status) == ("duplicate", "accepted")
        a.flush()
        assert a.state("s", CUMULATIVE).n_samples == 80
    finally:
        a.close()


def test_a_reset_after_the_callers_read_is_caught_by_the_commit(redis_server):
    spec = StreamSpec(task="binary", name="s")
    a, b = _store(redis_server.url, time.time), _store(redis_server.url, time.time)
    try:
        a.create(spec)
        batch = make_batch(spec, *make_batches("binary", 1, 20, seed=2)[0])
        for seq in (1, 2):
            a.ingest("s", "P", seq, batch, None)
        a.flush()
        expected = a.expected_sequence("s", "P")
        b.reset("s", forget_producers=True)  # between the servicer's read and its ingest
        assert a.ingest("s", "P", 3, batch, None, expected=expected).status == "accepted"
        a.flush()  # the commit script sees producer P forgotten: batch 3 is dropped
        assert a.stats["dropped"] == 1
        assert b.state("s", CUMULATIVE).n_samples == 0
        assert a.expected_sequence("s", "P") == 1
    finally:
        a.close()
        b.close()


def test_delete_while_batches_wait_recreates_nothing(redis_server):
    spec = StreamSpec(task="binary", windows=("5m",), name="s")
    a, b = _store(redis_server.url, time.time), _store(redis_server.url, time.time)
    try:
        a.create(spec)
        batch = make_batch(spec, *make_batches("binary", 1, 20, seed=2)[0])
        a.ingest("s", "P", 1, batch, None)
        b.delete("s")
        a.flush()
        assert a.names() == [] and redis_server.client().keys("*{s}*") == []
        with pytest.raises(NotFoundError):
            a.state("s", CUMULATIVE)
        b.create(spec.with_name("s"))
        assert a.expected_sequence("s", "P") == 1
    finally:
        a.close()
        b.close()


def test_unsequenced_commit_sent_twice_counts_once(redis_server):
    spec = StreamSpec(task="binary", name="s")
    a = _store(redis_server.url, time.time)
    try:
        a.create(spec)
        batch = make_batch(spec, *make_batches("binary", 1, 20, seed=2)[0])
        a.ingest("s", "", 0, batch, None)
        buffer = a.buffer
        with a.lock:  # what a flush does, with the reply of its first send lost
            ((stream, uid), (cells, max_cells, entries)) = buffer._open.popitem()
            commit = Commit(stream, uid, entries, cells, max_cells)
            commit.build()
            commit.number = 99
            first = buffer._send([commit])
            again = buffer._send([commit])
        assert first[0][0] == b"ok" and again[0] == [b"done"]
        assert a.state("s", CUMULATIVE).n_samples == 20
    finally:
        a.close()


def test_exact_resolution_is_refused(redis_server):
    a = _store(redis_server.url, time.time)
    try:
        with pytest.raises(InvalidInputError, match="bins"):
            a.create(StreamSpec(task="binary", resolution="exact", name="s"))
    finally:
        a.close()


def test_compaction_keeps_appends_made_after_its_read(redis_server):
    spec = StreamSpec(task="binary", name="s")
    a, b = _store(redis_server.url, time.time), _store(redis_server.url, time.time)
    memory = MemoryStore()
    r = redis_server.client()

    def fresh_state():  # what Redis holds, read by a replica with nothing cached
        c = _store(redis_server.url, time.time)
        try:
            return c.state("s", CUMULATIVE)
        finally:
            c.close()

    try:
        a.create(spec)
        memory.create(spec)
        batches = [make_batch(spec, y, p) for y, p in make_batches("binary", 6, 100, seed=4)]
        for seq, batch in enumerate(batches, 1):
            memory.ingest("s", "P", seq, batch, None)
        for seq, batch in enumerate(batches[:3], 1):
            a.ingest("s", "P", seq, batch, None)
            a.flush()
        key = a.keys.of("s", "cum")
        seen = {}
        call = a.conn.call

        def append_before_the_compact_script(what, name, keys, args):
            if name == "compact":  # RedisStore.compact has read the log: b appends meanwhile
                for seq, batch in enumerate(batches[3:], 4):
                    b.ingest("s", "P", seq, batch, None)
                    b.flush()
                seen.update(state=fresh_state(), length=r.strlen(key), call=(keys, args))
            return call(what, name, keys, args)

        a.conn.call = append_before_the_compact_script
        assert a.compact("s", key)
        a.conn.call = call
        assert seen and r.strlen(key) < seen["length"]  # the log got shorter
        after = fresh_state()
        _assert_same(after, seen["state"], False)  # the same state before and after
        _assert_same(after, memory.state("s", CUMULATIVE), False)  # the appends are kept
        _assert_same(b.state("s", CUMULATIVE), after, False)
        assert a.stats["compactions"] == 1
        assert a.conn.call("compact", "compact", *seen["call"]) == 0  # stale epoch: refused
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("seed", range(5))
def test_sparse_chunks_round_trip(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.choice([50, 70_000, 5_000_000]))
    n = int(rng.integers(1, 3000))
    idx = rng.integers(0, size, n)
    kind = seed % 3
    values = (
        rng.integers(1, [300, 70_000, 5_000_000_000][kind], n).astype(np.float64)
        if seed < 3
        else rng.normal(0, 5, n)
    )
    want = np.bincount(idx, weights=values, minlength=size)
    parts = [(idx[: n // 2], values[: n // 2]), (idx[n // 2 :], values[n // 2 :])]
    got_idx, got_values = reduce_parts(parts, size)
    log = encode_chunk(got_idx, got_values) + encode_chunk(got_idx, got_values)
    dense, listed = decode_log(log, size)
    np.testing.assert_allclose(dense, 2 * want, rtol=1e-12, atol=1e-9)
    assert listed == 2 * got_idx.size
    with pytest.raises(ValueError, match="sparse log"):
        decode_log(log[:-1], size)


def test_a_stamp_beyond_one_window_span_is_refused_like_the_embedded_store(redis_server):
    """A producer stamping batches far in the future: refused (its number consumed) by Redis
    replicas exactly as by the memory store, so no window key is written past one span ahead."""
    clock = FakeTime(float(int(time.time())))  # Redis expires window keys on its own clock
    spec = StreamSpec(task="binary", windows=("1m",), window_buckets=6, name="s")
    a, oracle = _store(redis_server.url, clock), MemoryStore(clock=clock)
    try:
        for store in (a, oracle):
            store.create(spec)
        batch = make_batch(spec, [0, 1], [0.2, 0.9])
        outcomes = {}
        for store in (a, oracle):
            outcomes[store] = [
                store.ingest("s", "p", i, batch, clock.t + 30.0 * i) for i in range(1, 5)
            ]
        a.flush()
        got, want = outcomes[a], outcomes[oracle]
        assert (
            [o.status for o in got]
            == [o.status for o in want]
            == ["accepted"] * 2 + ["rejected"] * 2
        )
        assert got[2].error_code == want[2].error_code == 3  # INVALID_ARGUMENT
        assert "window '1m'" in got[2].error_message
        assert a.expected_sequence("s", "p") == 5
        keys = [k for k in redis_server.client().keys("*") if b"win" in k]
        assert len(keys) <= 2 * 6
        clock.t += 60.0
        _assert_same(a.state("s", "1m"), oracle.state("s", "1m"), weighted=False)
    finally:
        a.close()


class FakeTime:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_producer_ids_are_bounded_in_length_and_number(redis_server):
    from evalstream_server.store.producers import ProducerLimits

    spec = StreamSpec(task="binary", name="s")
    a = _store(redis_server.url, time.time)
    a.producer_limits = ProducerLimits(max_per_stream=2)
    try:
        a.create(spec)
        batch = make_batch(spec, [0, 1], [0.2, 0.9])
        long = a.ingest("s", "p" * 129, 1, batch, None)
        assert (long.status, long.error_code) == ("rejected", 3)
        assert long.error_message.startswith("producer_id: expected 1 to 128 characters")
        for producer in ("a", "b"):
            assert a.ingest("s", producer, 1, batch, None).status == "accepted"
        a.flush()
        third = a.ingest("s", "c", 1, batch, None)
        assert (third.status, third.error_code) == ("rejected", 8)
        assert "limit 2, received 3" in third.error_message
        a.flush()
        assert a.expected_sequence("s", "c") == 1  # not recorded
        assert redis_server.client().hlen(a.keys.of("s", "prod")) == 2
        assert a.state("s", CUMULATIVE).n_samples == 4
    finally:
        a.close()


def test_idle_producers_are_forgotten_after_the_retention(redis_server):
    """As in the memory and durable stores (tests/store/test_producers.py): a producer silent for
    the retention is forgotten when a new producer arrives, its last sequence, its outcomes and
    its time with it, and starts again at 1. Before, the Redis store kept every producer until
    the stream was reset: a bounded stream refused new producers forever."""
    from evalstream_server.store.producers import ProducerLimits

    clock = FakeTime(1_700_000_000.0)
    spec = StreamSpec(task="binary", name="s")
    a = _store(redis_server.url, clock)
    a.producer_limits = ProducerLimits(max_per_stream=3, retention=3600.0)
    r = redis_server.client()
    try:
        a.create(spec)
        batch = make_batch(spec, [0, 1], [0.2, 0.9])
        for producer in ("a", "b", "c"):
            assert a.ingest("s", producer, 1, batch, None).status == "accepted"
            a.flush()
            clock.t += 600.0
        assert a.ingest("s", "b", 2, batch, None).status == "accepted"  # b's last: +1800
        a.flush()
        refused = a.ingest("s", "d", 1, batch, None)
        assert (refused.status, refused.error_code) == ("rejected", 8)
        assert a.ingest("s", "a", 2, batch, None).status == "accepted"  # known ones go on
        a.flush()
        clock.t += 3000.0  # c's last batch (+1200) is 3600 s old now; b's (+1800) is not
        assert a.ingest("s", "d", 1, batch, None).status == "accepted"
        a.flush()
        assert {k.decode() for k in r.hkeys(a.keys.of("s", "prod"))} == {"a", "b", "d"}
        assert not [f for f in r.hkeys(a.keys.of("s", "out")) if f.startswith(b"c\n")]
        assert {m.decode() for m in r.zrange(a.keys.of("s", "seen"), 0, -1)} == {"a", "b", "d"}
        assert a.expected_sequence("s", "c") == 1  # c starts again at 1
        assert a.expected_sequence("s", "b") == 3
        assert a.ingest("s", "c", 1, batch, None).status == "rejected"  # full again: a, b, d
        assert a.state("s", CUMULATIVE).n_samples == 2 * 6
        a.reset("s", forget_producers=True)
        assert r.zcard(a.keys.of("s", "seen")) == 0
        a.delete("s")
        assert not r.exists(a.keys.of("s", "seen"))
    finally:
        a.close()

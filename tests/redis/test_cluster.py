"""Redis Cluster (``--store redis+cluster://h1:p1,h2:p2,h3:p3/0``): a real three-master cluster,
two replicas on it, producers on both; streams spread over the masters' slots. Reports equal
sklearn on the union and the in-memory store; create, list, delete, reset and compaction work
with every script in one slot."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from evalstream.v1 import ingest_pb2
from evalstream_server.engine import CUMULATIVE, StreamSpec, make_batch
from evalstream_server.server import ServerThread
from evalstream_server.store import MemoryStore, NotFoundError
from evalstream_server.store.base import LimitExceededError
from evalstream_server.store.redis_store import RedisStore
from redis.cluster import RedisCluster

from .conftest import (
    CLASSES,
    counted,
    create_stream,
    ingest,
    make_batches,
    memory_report,
    replica_settings,
    request,
    stub_for,
)
from .test_replicas import _check_against_sklearn, _report

ACCEPTED = ingest_pb2.BATCH_STATUS_ACCEPTED
STREAMS = {"alpha": "binary", "beta": "multiclass", "gamma": "multilabel", "delta": "binary"}


def _slots_by_master(cluster) -> set[int]:
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    try:
        return {client.get_node_from_key(f"evalstream:{{{name}}}:meta").port for name in STREAMS}
    finally:
        client.close()


def test_two_replicas_on_a_cluster_report_sklearn(redis_cluster):
    assert len(_slots_by_master(redis_cluster)) >= 2  # the streams live on several masters
    url = redis_cluster.url + "?flush_interval=0.02"
    replicas = [ServerThread(replica_settings(url)).start() for _ in range(2)]
    try:
        targets = [r.target for r in replicas]
        _, first = stub_for(targets[0])
        for name, task in STREAMS.items():
            create_stream(first, name, task, windows=["1h"])
        now = time.time()
        data = {
            name: make_batches(task, 12, 300, seed=i)
            for i, (name, task) in enumerate(STREAMS.items())
        }
        stamps = [now - 7200 if i % 3 == 0 else now - 5 for i in range(12)]
        jobs = [
            (name, f"p{j}", targets[j % 2], range(j, 12, 4)) for name in STREAMS for j in range(4)
        ]

        def produce(job) -> list:
            name, producer, target, mine = job
            channel, stub = stub_for(target)
            with channel:
                reqs = [
                    request(name, producer, seq, *data[name][i], event_time=stamps[i])
                    for seq, i in enumerate(mine, 1)
                ]
                return ingest(stub, reqs)

        with ThreadPoolExecutor(8) as pool:
            for results in pool.map(produce, jobs):
                assert [r.status for r in results] == [ACCEPTED] * len(results)
        recent = [t > now - 3600 for t in stamps]
        for name, task in STREAMS.items():
            y = np.concatenate([b[0] for b in data[name]])
            p = np.concatenate([b[1] for b in data[name]])
            ry = np.concatenate([b[0] for b, r in zip(data[name], recent, strict=True) if r])
            rp = np.concatenate([b[1] for b, r in zip(data[name], recent, strict=True) if r])
            reports = []
            for target in targets:
                channel, stub = stub_for(target)
                with channel:
                    cum, win = _report(stub, name), _report(stub, name, "1h")
                _check_against_sklearn(task, cum, y, p)
                _check_against_sklearn(task, win, ry, rp)
                reports.append((cum, win))
            assert reports[0] == reports[1]
    finally:
        for srv in replicas:
            srv.stop()


def test_create_list_delete_reset_compact_on_a_cluster(redis_cluster):
    now = [float(int(time.time()))]
    clock = lambda: now[0]  # noqa: E731
    url = redis_cluster.url + "?compact_bytes=1024"
    a = RedisStore.from_url(url, clock=clock, background=False, max_streams=3)
    b = RedisStore.from_url(url, clock=clock, background=False, max_streams=3)
    memory = MemoryStore(clock=clock)
    assert a.keys.cluster and isinstance(a.client, RedisCluster)
    try:
        specs = {
            n: StreamSpec(task=t, classes=CLASSES[t], windows=("2m",), name=n)
            for n, t in list(STREAMS.items())[:3]
        }
        for spec in specs.values():
            a.create(spec)
            memory.create(spec)
        assert b.names() == sorted(specs)
        with pytest.raises(LimitExceededError):
            b.create(StreamSpec(task="binary", classes=CLASSES["binary"], name="delta"))
        assert b.names() == sorted(specs)  # the refused name is not left in the registry
        for i, (name, spec) in enumerate(specs.items()):
            for k, (y, p) in enumerate(make_batches(spec.task, 8, 200, seed=20 + i)):
                store = (a, b)[k % 2]
                batch = make_batch(spec, y, p, None)
                seq = store.expected_sequence(name, "p")
                assert store.ingest(name, "p", seq, batch, now[0]).status == "accepted"
                memory.ingest(name, "p", seq, batch, now[0])
                store.flush()
            assert a.compact(name, a.keys.of(name, "cum"))  # ids counter in the stream's slot
            for window in (CUMULATIVE, "2m"):
                want = counted(memory_report(memory, name, window))
                assert counted(a.report(name, window)) == want
                assert counted(b.report(name, window)) == want
        a.reset("beta", forget_producers=True)
        memory.reset("beta", forget_producers=True)
        want = counted(memory_report(memory, "beta", CUMULATIVE))
        assert counted(b.report("beta", CUMULATIVE)) == want
        b.delete("gamma")
        with pytest.raises(NotFoundError):
            a.delete("gamma")
        assert a.names() == ["alpha", "beta"]
        uid_before = a.catalogue.cached("alpha").uid
        a.delete("alpha")
        a.create(specs["alpha"])
        assert a.catalogue.cached("alpha", fresh=True).uid != uid_before  # ids are never reused
        client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
        try:
            assert not [k for k in client.keys("*{gamma}*") if not k.endswith(b":ids")]
        finally:
            client.close()
    finally:
        a.close()
        b.close()


def test_a_seed_list_with_a_dead_seed_still_connects(redis_cluster):
    dead = "127.0.0.1:1"
    url = redis_cluster.url.replace("redis+cluster://", f"redis+cluster://{dead},")
    store = RedisStore.from_url(url, background=False)
    try:
        assert store.names() == []
    finally:
        store.close()
    with pytest.raises(ValueError, match="database 0"):
        RedisStore.from_url(redis_cluster.url[:-1] + "3", background=False)


def test_predictions_and_labels_across_replicas_on_a_cluster(redis_cluster):
    """Predictions through one replica, labels through the other, on streams whose slots lie on
    different masters: the join table lives in each stream's slot; it goes with the stream."""
    from evalstream import EvalClient

    url = redis_cluster.url + "?flush_interval=0.02"
    replicas = [ServerThread(replica_settings(url)).start() for _ in range(2)]
    try:
        names = {"alpha": "binary", "beta": "multiclass"}
        assert len({_master(redis_cluster, n) for n in names}) == 2
        rng = np.random.default_rng(4)
        for i, (name, task) in enumerate(names.items()):
            y, p = make_batches(task, 1, 600, seed=60 + i)[0]
            ids = [f"{name}-{k}" for k in range(len(y))]
            with EvalClient(replicas[0].target) as client:
                client.create_stream(name, task, CLASSES[task])
                assert client.log_predictions(name, ids, p).added == 600
            labelled = rng.permutation(600)[:450]
            with EvalClient(replicas[1].target) as client:
                res = client.log_labels(name, [ids[k] for k in labelled], y[labelled])
                assert (res.matched, res.unknown, res.duplicate_ids) == (450, 0, 0)
            for replica in replicas:
                channel, stub = stub_for(replica.target)
                with channel:
                    rep = _report(stub, name)
                _check_against_sklearn(task, rep, y[labelled], p[labelled])
                assert (rep["labels"]["stream"]["pending"], rep["labels"]["labelled"]) == (150, 450)
        with EvalClient(replicas[1].target) as client:
            client.delete_stream("beta")
        client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
        try:
            assert not [k for k in client.keys("*{beta}*") if not k.endswith(b":ids")]
            assert client.exists("evalstream:{alpha}:pend")
        finally:
            client.close()
    finally:
        for replica in replicas:
            replica.stop()


def _master(cluster, name: str) -> int:
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    try:
        return client.get_node_from_key(f"evalstream:{{{name}}}:meta").port
    finally:
        client.close()

"""Failures: a replica killed with ``kill -9`` mid-stream (its producer fails over to another
replica with the same producer id and sequences), Redis killed and restarted with AOF
``appendfsync always``, and Redis unreachable. Nothing acknowledged is lost, nothing is counted
twice, and what cannot be answered fails with UNAVAILABLE."""

from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream import EvalClient
from evalstream.errors import UnavailableError
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2
from evalstream_server.server import ServerThread

from .conftest import (
    RedisServer,
    ReplicaProcess,
    create_stream,
    ingest,
    make_batches,
    replica_settings,
    request,
    stub_for,
)

OK = (ingest_pb2.BATCH_STATUS_ACCEPTED, ingest_pb2.BATCH_STATUS_DUPLICATE)


def _report(stub, stream: str, window: str = "cumulative") -> dict:
    reply = stub.GetReport(pb.GetReportRequest(stream=stream, window=window), timeout=30)
    return json.loads(reply.report_json)


def _assert_multiclass(rep: dict, y: np.ndarray, p: np.ndarray) -> None:
    assert rep["n_samples"] == len(y)
    np.testing.assert_array_equal(
        rep["confusion_matrix"], skm.confusion_matrix(y, p.argmax(1), labels=range(4))
    )
    auc = skm.roc_auc_score(y, p.astype(np.float64), multi_class="ovr", average="macro")
    node = rep["roc_auc"]["macro"]
    assert node["lower"] - 1e-12 <= auc <= node["upper"] + 1e-12


def test_replica_killed_mid_stream_its_producer_fails_over(redis_server):
    url = redis_server.url + "?flush_interval=0.02"
    a, b = ReplicaProcess(url), ReplicaProcess(url)
    try:
        a.start()
        b.start()
        ch_a, stub_a = stub_for(a.target)
        ch_b, stub_b = stub_for(b.target)
        create_stream(stub_a, "k9", "multiclass")
        mine = make_batches("multiclass", 80, 500, seed=11)
        theirs = make_batches("multiclass", 40, 500, seed=12)
        other = threading.Thread(  # a second producer on b all along
            target=lambda: ingest(
                stub_b, [request("k9", "Q", s, *theirs[s - 1]) for s in range(1, 41)]
            )
        )
        other.start()
        acked: set[int] = set()
        # killed a few milliseconds after the 25th ack, while the stream goes on: the batches in
        # flight then were counted, committed, acknowledged or not, in every combination
        killer = threading.Timer(np.random.default_rng().uniform(0.002, 0.03), a.kill9)
        try:
            reqs = (request("k9", "P", s, *mine[s - 1]) for s in range(1, 81))
            for resp in stub_a.Ingest(reqs, timeout=60):
                for r in resp.results:
                    assert r.status in OK, r
                    acked.add(r.sequence)
                if len(acked) >= 25 and not killer.is_alive() and a.proc.poll() is None:
                    killer.start()
        except grpc.RpcError as exc:
            assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), exc
        killer.join()
        ch_a.close()
        assert 25 <= len(acked) < 80
        unacked = [s for s in range(1, 81) if s not in acked]
        results = ingest(stub_b, [request("k9", "P", s, *mine[s - 1]) for s in unacked])
        assert [r.sequence for r in results] == unacked
        assert all(r.status in OK for r in results), results
        again = ingest(stub_b, [request("k9", "P", s, *mine[s - 1]) for s in range(1, 81)])
        assert {r.status for r in again} == {ingest_pb2.BATCH_STATUS_DUPLICATE}
        other.join(timeout=60)
        y = np.concatenate([d[0] for d in mine + theirs])
        p = np.concatenate([d[1] for d in mine + theirs])
        rep_b = _report(stub_b, "k9")
        _assert_multiclass(rep_b, y, p)
        a.start()  # a restarted replica reads the same merged state
        with grpc.insecure_channel(a.target) as ch:
            from evalstream.v1 import evalstream_service_pb2_grpc as rpc

            assert _report(rpc.EvalstreamServiceStub(ch), "k9") == rep_b
        ch_b.close()
    finally:
        a.stop()
        b.stop()


def test_redis_killed_and_restarted_with_aof_always_loses_nothing(tmp_path):
    server = RedisServer(tmp_path / "redis", aof=True, fsync="always").start()
    replica = None
    try:
        replica = ServerThread(replica_settings(server.url + "?flush_interval=0.02")).start()
        data = make_batches("multiclass", 40, 300, seed=21)
        with EvalClient(replica.target, retry_deadline=60, timeout=10) as client:
            client.create_stream("aof", "multiclass", ["a", "b", "c", "d"])
            for y, p in data[:15]:
                assert client.log("aof", y, p).accepted_batches == 1
            restarted = threading.Event()

            def bounce() -> None:
                server.kill9()
                time.sleep(0.5)
                server.start()  # same port and directory: replays the AOF
                restarted.set()

            bouncer = threading.Thread(target=bounce)
            bouncer.start()
            met_outage = 0
            for y, p in data[15:]:  # the first of these meet the outage and are retried
                met_outage += not restarted.is_set()
                result = client.log("aof", y, p)
                assert result.accepted_batches + result.duplicate_batches == 1
            bouncer.join(timeout=30)
            assert restarted.is_set() and met_outage >= 1
            report = client.report("aof")
            producer = client.producer_id
        y = np.concatenate([d[0] for d in data])
        p = np.concatenate([d[1] for d in data])
        assert report.n_samples == len(y)
        channel, stub = stub_for(replica.target)
        with channel:
            _assert_multiclass(_report(stub, "aof"), y, p)
            # exactly-once survived too: acknowledged sequences are duplicates now
            results = ingest(stub, [request("aof", producer, s, *data[s - 1]) for s in (3, 20, 40)])
            assert [r.status for r in results] == [ingest_pb2.BATCH_STATUS_DUPLICATE] * 3
            assert [r.original_status for r in results] == [ingest_pb2.BATCH_STATUS_ACCEPTED] * 3
    finally:
        if replica is not None:
            replica.stop()
        server.stop()


def test_redis_unreachable_ingest_unavailable_queries_answer_stale_then_fail(redis_server):
    url = redis_server.url + "?flush_interval=0.02&max_stale=2"
    replica = ServerThread(replica_settings(url)).start()
    channel, stub = stub_for(replica.target)
    try:
        create_stream(stub, "u", "multiclass", windows=["1h"])
        data = make_batches("multiclass", 3, 200, seed=31)
        ingest(stub, [request("u", "P", s, *data[s - 1]) for s in (1, 2)])
        fresh = _report(stub, "u")
        assert fresh["n_samples"] == 400 and "staleness" not in fresh
        redis_server.kill9()
        with pytest.raises(grpc.RpcError) as err:
            ingest(stub, [request("u", "P", 3, *data[2])])
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "redis" in err.value.details()
        stale = _report(stub, "u")  # the last merged state, with its age
        assert stale["n_samples"] == 400
        assert stale["staleness"]["age_seconds"] >= 0 and "redis" in stale["staleness"]["reason"]
        with pytest.raises(grpc.RpcError) as err:  # never merged here: nothing to answer from
            _report(stub, "u", "1h")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        time.sleep(2.2)
        with pytest.raises(grpc.RpcError) as err:  # older than max_stale: fails clearly
            _report(stub, "u")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "younger than 2 s" in err.value.details()
        with EvalClient(replica.target, retry_deadline=1.0, timeout=5) as client:
            with pytest.raises(UnavailableError):  # the client retried until its deadline
                client.log("u", *data[2])
    finally:
        channel.close()
        replica.stop()

"""Three replicas on one Redis, producers spread over them: every replica answers sklearn on the
union of the data, for every task, cumulative and windowed; streams, sequences and outcomes are
shared; each stream is exported to Prometheus by exactly one live replica, the replicas share
the streams, and a replica that leaves hands its share over."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2, stream_pb2
from evalstream_server.engine import StreamSpec
from evalstream_server.exporters import EvalstreamCollector
from evalstream_server.store.redis_store import RedisStore
from prometheus_client import CollectorRegistry, generate_latest

from .conftest import create_stream, ingest, make_batches, request, stub_for

ACCEPTED = ingest_pb2.BATCH_STATUS_ACCEPTED
DUPLICATE = ingest_pb2.BATCH_STATUS_DUPLICATE
REJECTED = ingest_pb2.BATCH_STATUS_REJECTED


def _report(stub, stream: str, window: str = "cumulative") -> dict:
    reply = stub.GetReport(pb.GetReportRequest(stream=stream, window=window), timeout=30)
    return json.loads(reply.report_json)


def _check_against_sklearn(task: str, rep: dict, y: np.ndarray, p: np.ndarray) -> None:
    """Threshold metrics exactly; AUC inside the report's guaranteed bounds."""
    assert rep["n_samples"] == len(y)
    if task == "multiclass":
        np.testing.assert_array_equal(
            rep["confusion_matrix"], skm.confusion_matrix(y, p.argmax(1), labels=range(4))
        )
        auc = skm.roc_auc_score(y, p.astype(np.float64), multi_class="ovr", average="macro")
        node = rep["roc_auc"]["macro"]
    elif task == "binary":
        np.testing.assert_array_equal(
            rep["confusion_matrix"], skm.confusion_matrix(y, (p >= 0.5).astype(int))
        )
        auc = skm.roc_auc_score(y, p.astype(np.float64))
        node = rep["roc_auc"]["binary"]
    else:
        np.testing.assert_array_equal(
            rep["multilabel_confusion_matrix"], skm.multilabel_confusion_matrix(y, p >= 0.5)
        )
        auc = skm.roc_auc_score(y, p.astype(np.float64), average="macro")
        node = rep["roc_auc"]["macro"]
    assert node["lower"] - 1e-12 <= auc <= node["upper"] + 1e-12, (auc, node)
    assert abs(rep["accuracy"]["value"] - _accuracy(task, y, p)) < 1e-12


def _accuracy(task: str, y, p) -> float:
    if task == "multiclass":
        return skm.accuracy_score(y, p.argmax(1))
    if task == "binary":
        return skm.accuracy_score(y, p >= 0.5)
    return skm.accuracy_score(y, p >= 0.5)  # subset accuracy


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_every_replica_reports_sklearn_on_the_union(replicas, task):
    now = time.time()
    batches = make_batches(
        task, 36, 400, seed={"binary": 1, "multiclass": 2, "multilabel": 3}[task]
    )
    # a third of the batches happened two hours ago: in the cumulative state, not the window
    stamps = [now - 7200 if i % 3 == 0 else now - 5 for i in range(len(batches))]
    targets = [r.target for r in replicas]
    _, first = stub_for(targets[0])
    create_stream(first, "s", task, windows=["1h"])
    producers = {f"p{i}": (targets[i % 3], list(range(i, len(batches), 6))) for i in range(6)}

    def produce(producer: str) -> list:
        target, mine = producers[producer]
        channel, stub = stub_for(target)
        with channel:
            reqs = [
                request("s", producer, seq, *batches[i], event_time=stamps[i])
                for seq, i in enumerate(mine, 1)
            ]
            return ingest(stub, reqs)

    with ThreadPoolExecutor(len(producers)) as pool:
        for results in pool.map(produce, producers):
            assert [r.status for r in results] == [ACCEPTED] * len(results)
    y = np.concatenate([b[0] for b in batches])
    p = np.concatenate([b[1] for b in batches])
    recent = np.concatenate(
        [np.full(len(b[0]), t > now - 3600) for b, t in zip(batches, stamps, strict=True)]
    )
    reports = []
    for target in targets:
        channel, stub = stub_for(target)
        with channel:
            cum, win = _report(stub, "s"), _report(stub, "s", "1h")
        _check_against_sklearn(task, cum, y, p)
        _check_against_sklearn(task, win, y[recent], p[recent])
        reports.append((cum, win))
    assert all(r == reports[0] for r in reports)  # the same merged state on every replica


def test_streams_are_shared_by_every_replica(replicas):
    stubs = [stub_for(r.target) for r in replicas]
    try:
        (_, a), (_, b), (_, c) = stubs
        create_stream(a, "shared", "binary")
        assert b.GetStream(pb.GetStreamRequest(name="shared")).stream.config.name == "shared"
        assert [s.config.name for s in c.ListStreams(pb.ListStreamsRequest()).streams] == ["shared"]
        with pytest.raises(grpc.RpcError) as err:
            create_stream(c, "shared", "binary")
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        c.DeleteStream(pb.DeleteStreamRequest(name="shared"))
        with pytest.raises(grpc.RpcError) as err:
            a.GetReport(pb.GetReportRequest(stream="shared"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        for channel, _ in stubs:
            channel.close()


def test_exact_resolution_is_refused_with_invalid_argument(replicas):
    channel, stub = stub_for(replicas[0].target)
    with channel, pytest.raises(grpc.RpcError) as err:
        create_stream(
            stub,
            "raw",
            "binary",
            resolution=stream_pb2.Resolution(exact=stream_pb2.Resolution.Exact()),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resolution" in err.value.details() and "bins" in err.value.details()


def test_predictions_on_one_replica_labels_on_the_others(replicas):
    """Predictions through replica A; labels through B and C, shuffled, some never sent, some
    for unknown ids, some repeated, and the same batch through B and C at once under two
    producer ids: every replica reports sklearn on exactly the joined pairs (windowed by the
    prediction's time), the join counters are right, and nothing is joined twice."""
    from evalstream import EvalClient

    y, p = make_batches("multiclass", 1, 1500, seed=31)[0]
    n = len(y)
    ids = np.array([f"q{i}" for i in range(n)], dtype=object)
    old = np.arange(n) < 500  # predicted two hours ago: in the cumulative state, not in 1h
    targets = [r.target for r in replicas]
    with EvalClient(targets[0]) as client:
        client.create_stream("dl", "multiclass", ["a", "b", "c", "d"], windows=["1h"])
        res = client.log_predictions("dl", ids[old].tolist(), p[old], timestamp=time.time() - 7200)
        assert (res.added, res.duplicate_ids) == (500, 0)
        assert client.log_predictions("dl", ids[~old].tolist(), p[~old]).added == 1000
        assert client.log_predictions("dl", ids[:10].tolist(), p[:10]).duplicate_ids == 10
    rng = np.random.default_rng(8)
    labelled = rng.permutation(n)[:1200]  # 300 never get a label
    first, second, race = labelled[:600], labelled[600:1100], labelled[1100:]
    sends = [
        (targets[1], [*ids[first].tolist(), *(f"stranger-{i}" for i in range(20))],
         np.r_[y[first], np.zeros(20, np.int32)]),
        (targets[2], [*ids[second].tolist(), *ids[first[:30]].tolist()],
         np.r_[y[second], y[first[:30]]]),
    ]  # fmt: skip
    for target, label_ids, label_y in sends:
        perm = rng.permutation(len(label_ids))
        with EvalClient(target, max_batch_rows=97) as client:
            client.log_labels("dl", [label_ids[i] for i in perm], label_y[perm])

    def racer(target: str):
        with EvalClient(target) as client:  # a fresh producer id each
            return client.log_labels("dl", ids[race].tolist(), y[race])

    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(racer, targets[1:]))
    assert sum(r.matched for r in got) == len(race)  # joined once across replicas
    assert sum(r.duplicate_ids for r in got) == len(race)
    reports = []
    recent = labelled[labelled >= 500]
    for target in targets:
        channel, stub = stub_for(target)
        with channel:
            cum, win = _report(stub, "dl"), _report(stub, "dl", "1h")
        _check_against_sklearn("multiclass", cum, y[labelled], p[labelled])
        _check_against_sklearn("multiclass", win, y[recent], p[recent])
        status = cum["labels"]["stream"]
        assert {k: v for k, v in status.items() if k != "oldest_pending_age_seconds"} == {
            "pending": 300,
            "max_pending": 100_000,
            "retention_seconds": 7 * 86400,
            "predictions": n,
            "duplicate_ids": 10,
            "labels": 1200 + 20 + 30 + len(race),
            "matched": 1200,
            "unknown": 20,
            "expired_labels": 0,
            "duplicate_labels": 30 + len(race),
            "expired": 0,
            "evicted": 0,
        }
        assert cum["label_free"]["n_predictions"] == n
        assert win["label_free"]["n_predictions"] == 1000
        for rep in (cum, win):
            rep["labels"]["stream"].pop("oldest_pending_age_seconds")
        reports.append((cum, win))
    assert all(r == reports[0] for r in reports)
    # the replica whose share holds the stream exports its join table; the others export nothing
    scrapes = [_exported(r.store, ("evalstream_predictions_pending", "evalstream_labels_total"))
               for r in replicas]  # fmt: skip
    exporting = [s for s in scrapes if s]
    assert len(exporting) == 1
    assert exporting[0]['evalstream_predictions_pending{stream="dl",tenant=""}'] == 300
    assert exporting[0]['evalstream_labels_total{outcome="matched",stream="dl",tenant=""}'] == 1200
    assert exporting[0]['evalstream_labels_total{outcome="unknown",stream="dl",tenant=""}'] == 20


def test_sequences_and_outcomes_are_shared(replicas):
    stubs = [stub_for(r.target) for r in replicas]
    try:
        (_, a), (_, b), (_, c) = stubs
        create_stream(a, "seq", "multiclass")
        data = make_batches("multiclass", 5, 100, seed=9)
        got = ingest(a, [request("seq", "P", s, *data[s - 1]) for s in (1, 2, 3)])
        assert [r.status for r in got] == [ACCEPTED] * 3
        (dup,) = ingest(b, [request("seq", "P", 2, *data[1])])
        assert (dup.status, dup.original_status, dup.samples) == (DUPLICATE, ACCEPTED, 100)
        (gap,) = ingest(c, [request("seq", "P", 5, *data[4])])
        assert (gap.status, gap.error_code, gap.expected_sequence) == (
            REJECTED,
            grpc.StatusCode.OUT_OF_RANGE.value[0],
            4,
        )
        y, p = data[3]
        (bad,) = ingest(b, [request("seq", "P", 4, y, p[:, :3])])  # wrong width: consumed
        assert (bad.status, bad.error_code) == (
            REJECTED,
            grpc.StatusCode.INVALID_ARGUMENT.value[0],
        )
        (again,) = ingest(c, [request("seq", "P", 4, y, p)])
        assert (again.status, again.original_status) == (DUPLICATE, REJECTED)
        (last,) = ingest(a, [request("seq", "P", 5, *data[4])])
        assert last.status == ACCEPTED and last.expected_sequence == 6
        assert _report(c, "seq")["n_samples"] == 400
    finally:
        for channel, _ in stubs:
            channel.close()


def _exported(
    store,
    prefixes: tuple[str, ...] = (
        "evalstream_samples_total",
        "evalstream_class_true_positives_total",
    ),
) -> dict[str, float]:
    registry = CollectorRegistry(auto_describe=False)
    # every report computed on this scrape: with the default 1 s budget a loaded machine left
    # the last streams' report series out of a scrape (their counters stay), which read as a
    # replica not exporting its share
    registry.register(EvalstreamCollector(store, scrape_budget=math.inf))
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith(prefixes):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


def _redis_ms(client) -> int:
    """Redis's clock in milliseconds (the announcements' expiry times are on it)."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _series_per_stream(scrapes: list[dict[str, float]]) -> Counter:
    """How many replicas exported each stream's ``evalstream_samples_total``."""
    found = (series for scrape in scrapes for series in scrape)
    return Counter(
        series.split('stream="')[1].split('"')[0]
        for series in found
        if series.startswith("evalstream_samples_total")
    )


def test_replicas_share_the_export_and_hand_it_over(redis_server):
    """Each stream's series come from exactly one replica, every replica exports a share, sums
    across replicas are the totals; a replica that joins takes streams only from the others, one
    that stops (close) or crashes (stops announcing) hands its share to the live ones."""
    names = [f"s{i:02d}" for i in range(12)]
    url = redis_server.url
    lease = 3600  # seconds: no announcement expires during the test unless the test expires it
    stores = [  # fixed ids: the shares are the same on every run
        RedisStore.from_url(url, replica=f"replica-{i}", background=False, lease_seconds=lease)
        for i in range(2)
    ]
    crashing: RedisStore | None = None
    tp = {}
    try:
        for k, name in enumerate(names):
            spec = StreamSpec(name=name, task="binary", classes=("neg", "pos"))
            stores[0].create(spec)
            y, p = make_batches("binary", 1, 100 + k, seed=k)[0]
            batch = stores[0].get(name).engine.validate(y, p, None)
            stores[k % 2].ingest(name, "P", 1, batch, None)
            tp[name] = int(((p >= 0.5) & (y == 1)).sum())
        for store in stores:
            store.flush()

        def check(live: list[RedisStore]) -> list[dict[str, float]]:
            scrapes = [_exported(s) for s in live]
            assert _series_per_stream(scrapes) == dict.fromkeys(names, 1)
            assert all(scrapes), "a live replica exports no stream"
            summed: dict[str, float] = {}
            for scrape in scrapes:
                for series, value in scrape.items():
                    summed[series] = summed.get(series, 0.0) + value
            for k, name in enumerate(names):
                assert summed[f'evalstream_samples_total{{stream="{name}",tenant=""}}'] == 100 + k
                cls = f'class="pos",stream="{name}",tenant=""'
                assert summed[f"evalstream_class_true_positives_total{{{cls}}}"] == tp[name]
            return scrapes

        two = check(stores)
        # A crash is a replica that stops announcing: its announcement expires lease_seconds
        # after the last one, on Redis's clock. The test once waited out a 0.3 s lease in real
        # time, which raced the scrapes of the joined check below (under load one replica saw
        # the newcomer expired while the newcomer still exported its share: a stream exported
        # twice). Now every lease outlasts the test, the lease's length is checked on Redis's
        # clock, and the crash moves the newcomer's expiry to Redis's present.
        client, replicas = stores[0].conn.client, stores[0].conn.keys.replicas
        started = _redis_ms(client)
        crashing = RedisStore.from_url(
            url, replica="replica-2", background=False, lease_seconds=lease
        )
        announced = client.zscore(replicas, "replica-2")
        assert started + lease * 1000 <= announced <= _redis_ms(client) + lease * 1000
        three = check([*stores, crashing])  # joined: it announced itself when it started
        for before, after in zip(two, three, strict=False):
            assert set(after) <= set(before)  # the newcomer took streams from the others only
        # `crashing` stops announcing, and its announcement's lease runs out
        assert client.zadd(replicas, {"replica-2": _redis_ms(client)}, xx=True, ch=True) == 1
        check(stores)
        stores[0].close()  # graceful: leaves the set at once
        (alone,) = check(stores[1:])
        assert len(alone) == len(two[0]) + len(two[1])
    finally:
        for store in [*stores, crashing]:
            if store is not None:
                store.close()

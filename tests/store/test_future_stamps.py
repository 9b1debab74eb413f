"""A producer stamping batches in the future cannot brick the durable store (issue 13, item 1).

The reproduction, scaled down: on a K = 10 stream with a 1h window, one-row batches stamped 10
minutes apart into the future, then ordinary batches, with periodic snapshots. Before the fix every
future bucket was kept (and snapshotted dense) until SQLite refused the blob and every stream of
the server answered UNAVAILABLE, also after a restart.
"""

from __future__ import annotations

import re
import time

import grpc
import numpy as np
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import ingest_pb2, stream_pb2
from evalstream_server.engine import State, StreamSpec
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from evalstream_server.store.durable import DurableStore
from google.protobuf.timestamp_pb2 import Timestamp

from ..engine.test_merge_properties import _assert_same
from ..service.conftest import create, ingest, tensor

K = 10
FUTURE = 50  # the issue sent 350
BINS_2 = stream_pb2.Resolution(binned=stream_pb2.Resolution.Binned(mantissa_bits=2))
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]


def _stamp(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


def _batch(rng, name: str, seq: int, rows: int, t: float | None = None) -> pb.IngestRequest:
    y = rng.integers(0, K, rows).astype(np.int32)
    p = rng.dirichlet(np.ones(K), rows).astype(np.float32)
    req = pb.IngestRequest(
        stream=name, producer_id="p", sequence=seq, scores=tensor(p), labels=tensor(y)
    )
    if t is not None:
        req.event_time.CopyFrom(_stamp(t))
    return req


def _flood_the_future(tmp_path, skew: float) -> tuple[list, list, DurableStore]:
    store = DurableStore(tmp_path, snapshot_every=10)
    srv = ServerThread(
        Settings(grpc_port=0, metrics_port=-1, max_clock_skew=skew), store=store
    ).start()
    try:
        with grpc.insecure_channel(srv.target) as ch:
            stub = rpc.EvalstreamServiceStub(ch)
            classes = [f"c{i}" for i in range(K)]
            for name in ("victim", "bystander"):
                create(stub, name, classes=classes, windows=["1h"], resolution=BINS_2)
            rng = np.random.default_rng(13)
            now = time.time()
            future = [_batch(rng, "victim", i, 1, now + 600.0 * i) for i in range(1, FUTURE + 1)]
            hostile, _ = ingest(stub, future)
            ordinary = [_batch(rng, "victim", FUTURE + i, 500) for i in range(1, 31)]
            ordinary += [_batch(rng, "bystander", i, 500) for i in range(1, 31)]
            after, _ = ingest(stub, ordinary)
            ring = store.get("victim").engine.windows["1h"]
            assert len(ring.buckets()) <= ring.max_buckets == 24
    finally:
        srv.stop()  # closes the store: a final snapshot of every stream
    return hostile, after, store


def test_future_batches_beyond_the_skew_are_refused_naming_event_time(tmp_path):
    hostile, after, _ = _flood_the_future(tmp_path, skew=300.0)
    assert all(r.status == ingest_pb2.BATCH_STATUS_REJECTED for r in hostile)
    first = hostile[0]
    assert first.error_code == INVALID_ARGUMENT
    assert first.error_message.startswith("event_time: expected a time at most 300 s after")
    assert re.search(r"received \d+\.\d{3} \((599|600)\.\d{3} s ahead\)", first.error_message)
    # a refused batch consumes its number, like any invalid batch: the producer goes on
    assert all(r.status == ingest_pb2.BATCH_STATUS_ACCEPTED for r in after)
    again = DurableStore(tmp_path)
    assert again.state("victim", "cumulative").n_samples == 30 * 500
    assert again.state("bystander", "1h").n_samples == 30 * 500
    again.close()


def test_without_a_skew_bound_a_window_still_keeps_at_most_one_span_ahead(tmp_path):
    """With the skew setting out of the way the ring's own bound holds: one span (an hour) of
    future buckets is kept, the rest refused; snapshots stay small and a restart restores the
    same state."""
    hostile, after, store = _flood_the_future(tmp_path, skew=1e9)
    statuses = [r.status for r in hostile]
    assert statuses[:6] == [ingest_pb2.BATCH_STATUS_ACCEPTED] * 6
    assert set(statuses[6:]) == {ingest_pb2.BATCH_STATUS_REJECTED}
    assert "window '1h' (3600 s)" in hostile[6].error_message
    assert hostile[6].error_message.startswith("event_time: expected")
    assert all(r.status == ingest_pb2.BATCH_STATUS_ACCEPTED for r in after)
    dense = len(State(store.get("victim").spec).to_bytes())  # one state's bytes (float64)
    again = DurableStore(tmp_path)
    (blob,) = again._db.execute("SELECT engine FROM snapshots WHERE stream = 'victim'").fetchone()
    assert len(blob) < (1 + 24 + 1) * dense  # cumulative and at most 24 buckets
    assert again.state("victim", "cumulative").n_samples == 6 + 30 * 500
    _assert_same(again.state("victim", "cumulative"), store.get("victim").engine.cumulative)
    again.close()


def test_a_snapshot_holds_each_bucket_as_its_entries_not_its_dense_state():
    """Busy windows of a wide stream: every bucket was written dense (the state's full size),
    so a few windows at K = 32 passed SQLite's one-gigabyte blob limit. Now a bucket costs what
    it holds, and the engine reads back the same windows."""
    from evalstream_server.engine import StreamEngine
    from evalstream_server.engine.stream import engine_from_bytes, engine_to_bytes

    spec = StreamSpec(
        task="multiclass",
        classes=[f"c{i}" for i in range(16)],
        windows=("5m", "1h", "1d"),
        resolution="bins:3",
        name="wide",
    )
    clock = [1_000_000.0]
    engine = StreamEngine(spec, clock=lambda: clock[0])
    rng = np.random.default_rng(2)
    # a batch every 2 hours, then every 5 minutes, then every 25 s: each window's buckets busy
    for step, count in ((7200.0, 11), (300.0, 11), (25.0, 12)):
        for _ in range(count):
            clock[0] += step
            engine.update(rng.integers(0, 16, 50), rng.dirichlet(np.ones(16), 50))
    buckets = sum(len(r.buckets()) for r in engine.windows.values())
    dense = State(spec, wide=True).nbytes  # the float64 state, as the cumulative one is written
    blob = engine_to_bytes(engine)
    assert buckets >= 30 and len(blob) < 2 * dense  # dense buckets: 30 times the state more
    again = engine_from_bytes(blob, clock=lambda: clock[0])
    for window in ("cumulative", "5m", "1h", "1d"):
        _assert_same(again.state(window), engine.state(window))


def test_predictions_stamped_beyond_the_skew_are_refused_too(tmp_path):
    store = DurableStore(tmp_path)
    with ServerThread(Settings(grpc_port=0, metrics_port=-1), store=store) as srv:
        with grpc.insecure_channel(srv.target) as ch:
            stub = rpc.EvalstreamServiceStub(ch)
            create(stub, "p", task="binary", classes=("n", "y"), windows=["1h"])
            scores = tensor(np.array([0.2, 0.9], np.float32))
            ahead, near = (
                pb.LogPredictionsRequest(
                    stream="p",
                    producer_id="p",
                    sequence=seq,
                    ids=[f"a{seq}", f"b{seq}"],
                    scores=scores,
                    event_time=_stamp(time.time() + lead),
                )
                for seq, lead in ((1, 301.0), (2, 200.0))
            )
            refused = stub.LogPredictions(ahead).result
            assert refused.error_code == INVALID_ARGUMENT
            assert refused.error_message.startswith("event_time: expected a time at most 300 s")
            assert stub.LogPredictions(near).result.status == ingest_pb2.BATCH_STATUS_ACCEPTED
        assert store.label_status("p")["pending"] == 2  # only the second batch's predictions


def test_a_snapshot_larger_than_sqlites_limit_is_skipped_not_fatal(tmp_path, caplog):
    """A stream whose engine outgrows SQLite's value limit (a wide stream with full window
    buckets; here the limit is lowered instead) keeps its log rather than failing the commit
    that would have stopped the store for every stream."""
    import sqlite3

    store = DurableStore(tmp_path, snapshot_every=3)
    store.create(StreamSpec(task="multiclass", classes=list("abcd"), windows=("1h",), name="big"))
    store.create(StreamSpec(task="binary", name="small"))
    store._db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)  # the big engine is ~600 kB
    rng = np.random.default_rng(1)
    for seq in range(1, 8):
        for name, k in (("big", 4), ("small", 2)):
            y = rng.integers(0, k, 40)
            s = rng.dirichlet(np.ones(k), 40) if k > 2 else rng.random(40)
            batch = store.get(name).engine.validate(y, s)
            assert store.ingest(name, "p", seq, batch, None).status == "accepted"
        store.flush()  # a failed commit would raise here and stop the store
    assert store.broken is None and "snapshot skipped" in caplog.text
    want = {n: store.state(n, "cumulative") for n in ("big", "small")}
    store._simulate_crash()
    again = DurableStore(tmp_path)
    for name, state in want.items():
        _assert_same(again.state(name, "cumulative"), state)
    again.close()

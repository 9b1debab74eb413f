"""``EvalClient.writer``: buffered background logging, bounded memory, errors surfacing later."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream import InvalidBatchError, NotFoundError

from tests.engine import data

CLASSES = ["a", "b", "c"]
JOIN = 20.0  # seconds: every wait in these tests is bounded


def _check_equals_sklearn(client, name, y, p):
    rep = client.report(name)
    assert rep.n_samples == len(y)
    p64 = p.astype(np.float64)
    for avg in ("macro", "weighted", "micro"):
        want = skm.roc_auc_score(y, p64, multi_class="ovr", average=avg)
        assert rep.roc_auc_score(average=avg) == pytest.approx(want, abs=1e-12)
    assert rep.roc_auc_score(multi_class="ovo") == pytest.approx(
        skm.roc_auc_score(y, p64, multi_class="ovo"), abs=1e-12
    )
    pred = p.argmax(axis=1)
    assert rep.f1_score(average="macro") == pytest.approx(
        skm.f1_score(y, pred, average="macro"), abs=1e-12
    )
    np.testing.assert_array_equal(rep.confusion_matrix(), skm.confusion_matrix(y, pred))


def test_many_small_logs_then_exit(client, name):
    y, _, p = data.multiclass(21, counts=(1000, 2000, 3000))
    client.create_stream(name, task="multiclass", classes=CLASSES, resolution="exact")
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(y)), size=399, replace=False))
    pieces = np.split(np.arange(len(y)), cuts)
    with client.writer(name, flush_rows=512, flush_interval=0.05) as w:
        for idx in pieces:
            w.log(y[idx], p[idx])
    result = w.result
    assert result.accepted_samples == len(y) and result.rejected_batches == 0
    assert 1 < result.accepted_batches < len(pieces)  # rows were gathered into batches
    _check_equals_sklearn(client, name, y, p)


def test_tiny_buffer_blocks_log_but_loses_nothing(server, client, name):
    y, _, p = data.multiclass(22, counts=(300, 300, 400))
    client.create_stream(name, task="multiclass", classes=CLASSES, resolution="exact")
    w = client.writer(name, max_buffer_rows=50, flush_rows=20, flush_interval=10.0)
    done = threading.Event()
    peak = []

    def produce() -> None:
        for i in range(0, len(y), 10):
            w.log(y[i : i + 10], p[i : i + 10])
            peak.append(w.buffered_rows)
        done.set()

    producer = threading.Thread(target=produce)
    with server.paused():  # no acknowledgement comes back while the server is paused
        producer.start()
        assert not done.wait(0.3), "log should block once 50 rows wait for acknowledgement"
        assert w.buffered_rows == 50
        with pytest.raises(TimeoutError, match="room in the buffer"):
            w.log(y[:5], p[:5], timeout=0.05)
    producer.join(JOIN)
    assert done.is_set() and max(peak) <= 50
    result = w.close(timeout=JOIN)
    assert result.accepted_samples == len(y)
    _check_equals_sklearn(client, name, y, p)


def test_flush_waits_for_acknowledgement_and_interval_sends_stragglers(client, name):
    y, _, p = data.multiclass(23, counts=(10, 10, 10))
    client.create_stream(name, task="multiclass", classes=CLASSES)
    with client.writer(name, flush_rows=1000, flush_interval=0.05) as w:
        w.log(y[:10], p[:10])
        assert w.flush(timeout=JOIN).accepted_samples == 10
        assert client.get_stream(name).sample_count == 10
        w.log(y[10:], p[10:].astype(np.float16))  # another dtype: a batch of its own
        deadline = time.monotonic() + JOIN
        while client.get_stream(name).sample_count < 30 and time.monotonic() < deadline:
            time.sleep(0.01)  # the interval sends them without a flush
        assert client.get_stream(name).sample_count == 30


def test_rejected_batch_surfaces_on_the_next_call_and_writing_goes_on(client, name):
    y, _, p = data.multiclass(24, counts=(20, 20, 20))
    client.create_stream(name, task="multiclass", classes=CLASSES)
    bad = p[:10].copy()
    bad[4, 0] = np.nan
    w = client.writer(name, flush_rows=10, flush_interval=0.05)
    w.log(y[:10], p[:10])
    w.log(y[:10], bad)
    with pytest.raises(InvalidBatchError, match="scores") as info:
        w.flush(timeout=JOIN)
    assert info.value.rows == (10, 20) and info.value.code == "INVALID_ARGUMENT"
    w.log(y[10:], p[10:])
    result = w.close(timeout=JOIN)
    assert (result.accepted_samples, result.rejected_samples) == (60, 10)
    assert client.get_stream(name).sample_count == 60


def test_writer_of_a_missing_or_deleted_stream(client, name):
    with pytest.raises(NotFoundError):
        client.writer(name)
    client.create_stream(name, task="binary", classes=["n", "p"])
    w = client.writer(name, flush_rows=5, flush_interval=0.05)
    w.log([0, 1, 0, 1, 1], [0.1, 0.8, 0.3, 0.6, 0.9])
    w.flush(timeout=JOIN)
    client.delete_stream(name)
    w.log([0, 1, 0, 1, 1], [0.1, 0.8, 0.3, 0.6, 0.9])
    with pytest.raises(NotFoundError):
        w.flush(timeout=JOIN)
    with pytest.raises(NotFoundError):  # the writer stopped for good
        w.log([0], [0.5])
    with pytest.raises(NotFoundError):
        w.close(timeout=JOIN)
    w.close(timeout=JOIN)  # idempotent


def test_a_writer_whose_call_the_server_closed_for_idleness_goes_on():
    """The server closes an Ingest call that sent nothing for --idle-timeout (UNAVAILABLE); the
    writer opens a new one for its next rows: nothing is lost or counted twice."""
    from evalstream import EvalClient

    from .conftest import ServerThread

    server = ServerThread(idle_timeout=0.3)
    try:
        y, _, p = data.multiclass(5, counts=(300, 300, 300))
        with EvalClient(server.target) as client:
            client.create_stream("idle", task="multiclass", classes=CLASSES, resolution="exact")
            with client.writer("idle", flush_rows=100, flush_interval=0.05) as w:
                w.log(y[:450], p[:450])
                w.flush(timeout=JOIN)
                calls = w._generation  # bumped twice per Ingest call the writer opens
                time.sleep(1.0)  # the server closes the idle call meanwhile (more than once)
                assert w._generation >= calls + 2, "the server did not close the idle call"
                w.log(y[450:], p[450:])
            assert w.result.accepted_samples == len(y) and w.result.rejected_batches == 0
            _check_equals_sklearn(client, "idle", y, p)
    finally:
        server.stop()

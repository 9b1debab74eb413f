"""``Writer.log_predictions`` and ``Writer.log_labels``: predictions from a serving loop, labels
later, through the writer's bounded buffer and exactly-once delivery, across a server restart."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream import EvalClient, InvalidBatchError
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2
from evalstream.writer import Writer

from .conftest import ServerThread

CLASSES = ["cat", "dog", "eel", "fox"]
JOIN = 20.0  # seconds: every wait in these tests is bounded


def _data(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, probabilities and ids of very different lengths (1 to 200 characters)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(4, n, p=[0.55, 0.25, 0.15, 0.05])
    logits = rng.normal(size=(n, 4)) * 2
    logits[np.arange(n), y] += 2.0
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pad = rng.integers(0, 190, n)
    ids = np.array([f"r{i}-" + "x" * int(k) for i, k in enumerate(pad)], dtype=object)
    return y, p.astype(np.float32), ids


def _assert_sklearn(client: EvalClient, stream: str, y: np.ndarray, p: np.ndarray) -> None:
    d = client.report(stream).to_dict()
    assert d["n_samples"] == len(y)
    want = skm.roc_auc_score(y, p, multi_class="ovr", labels=range(4))
    assert d["roc_auc"]["macro"]["value"] == pytest.approx(want, abs=1e-12)
    pred = p.argmax(axis=1)
    assert d["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=range(4)).tolist()


def test_predictions_then_shuffled_labels_through_a_writer(client, name):
    client.create_stream(name, "multiclass", CLASSES, resolution="exact")
    y, p, ids = _data(1, 3000)
    rng = np.random.default_rng(1)
    with client.writer(name, flush_rows=256, flush_interval=0.05) as w:
        for part in np.array_split(rng.permutation(3000), 40):
            w.log_predictions(ids[part], p[part])
        assert w.flush(timeout=JOIN).added == 3000
        arrive = rng.permutation(3000)[:2200]  # 800 labels never come
        for part in np.array_split(arrive, 30):
            w.log_labels(ids[part], np.array(CLASSES)[y[part]])  # class names map too
        w.log_labels(["ghost"], [0])
        w.log_predictions(ids[:5], p[:5])  # ids seen before: ignored, counted
        w.log_labels(ids[arrive[:3]], y[arrive[:3]])  # second labels: counted, not joined
    r = w.result
    assert (r.added, r.matched, r.unknown, r.duplicate_ids) == (3000, 2200, 1, 8)
    assert r.rejected_batches == 0 and r.accepted_samples == 3000 + 2200 + 1 + 5 + 3
    _assert_sklearn(client, name, y[arrive], p[arrive])
    d = client.report(name).to_dict()
    assert d["label_free"]["n_predictions"] == 3000
    assert d["labels"]["stream"]["pending"] == 800


def test_one_writer_mixes_labelled_rows_predictions_and_labels_in_order(client, name):
    client.create_stream(name, "multiclass", CLASSES, resolution="exact")
    y, p, ids = _data(2, 600)
    with client.writer(name, flush_rows=1000, flush_interval=10.0) as w:
        for i in range(0, 600, 50):  # each label right after its prediction, then labelled rows
            w.log_predictions(ids[i : i + 50], p[i : i + 50])
            w.log_labels(ids[i : i + 50], y[i : i + 50])
            w.log(y[i : i + 50], p[i : i + 50])
    r = w.result
    assert (r.added, r.matched, r.unknown) == (600, 600, 0)  # no label overtook its prediction
    assert r.accepted_batches == 36  # kinds never share a batch
    _assert_sklearn(client, name, np.r_[y, y], np.r_[p, p])


def test_a_rejected_batch_of_predictions_surfaces_and_the_writer_goes_on(client, name):
    client.create_stream(name, "multiclass", CLASSES)
    _, p, ids = _data(3, 20)
    bad = p[:10].copy()
    bad[3] = 0.5  # rows that do not sum to 1
    w = client.writer(name, flush_rows=10, flush_interval=0.05)
    w.log_predictions(ids[:10], bad)
    with pytest.raises(InvalidBatchError, match="scores") as info:
        w.flush(timeout=JOIN)
    assert info.value.rows == (0, 10)
    w.log_predictions(ids[10:], p[10:])
    assert w.close(timeout=JOIN).added == 10
    with pytest.raises(ValueError, match="ids: expected 3 ids"):
        client.writer(name).log_predictions(["a"], p[:3])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_writer_rides_out_a_server_restart_between_and_during_predictions(tmp_path, name):
    n = 4000
    y, p, ids = _data(4, n)
    port = _free_port()
    server = ServerThread(grpc_port=port, data_dir=str(tmp_path))
    try:
        with EvalClient(f"127.0.0.1:{port}") as client:
            client.create_stream(name, "multiclass", CLASSES, resolution="exact")
            w = client.writer(name, flush_rows=100, flush_interval=0.02)
            errors: list[BaseException] = []
            half = threading.Event()

            def produce() -> None:  # a serving loop: small batches, never waiting
                try:
                    for i in range(0, n, 20):
                        w.log_predictions(ids[i : i + 20], p[i : i + 20], timeout=JOIN)
                        if i == n // 2:
                            half.set()
                        time.sleep(0.001)
                except BaseException as exc:  # noqa: BLE001 - asserted below
                    errors.append(exc)

            producer = threading.Thread(target=produce)
            producer.start()
            assert half.wait(JOIN)
            # An abrupt stop while rows are buffered and a batch is usually in flight: the writer
            # resends it after the restart (the server answers DUPLICATE if it was applied).
            server.stop(grace=0)
            time.sleep(0.3)
            server = ServerThread(grpc_port=port, data_dir=str(tmp_path))
            producer.join(JOIN)
            assert not producer.is_alive() and not errors, errors
            assert w.flush(timeout=JOIN).added == n  # the original counts of resent batches

            server.stop()  # a restart between predictions and labels
            server = ServerThread(grpc_port=port, data_dir=str(tmp_path))
            w.log_labels(ids, y)
            r = w.close(timeout=JOIN)
            assert (r.added, r.matched, r.unknown, r.duplicate_ids) == (n, n, 0, 0)
            assert r.rejected_batches == 0
            d = client.report(name).to_dict()
            assert d["label_free"]["n_predictions"] == n  # exactly once
            assert d["labels"]["stream"]["pending"] == 0
            _assert_sklearn(client, name, y, p)
    finally:
        server.stop()


def test_batches_of_ids_of_different_lengths_stay_within_the_message_size():
    sent: list[pb.IngestRequest] = []

    def ingest(requests):
        for req in requests:
            sent.append(req)
            r = ingest_pb2.BatchResult(
                sequence=req.sequence,
                status=ingest_pb2.BATCH_STATUS_ACCEPTED,
                expected_sequence=req.sequence + 1,
            )
            yield pb.IngestResponse(results=[r])

    message_bytes = 4096
    w = Writer(
        ingest, "s", "p", flush_rows=10_000, flush_interval=10.0, message_bytes=message_bytes
    )
    short = [f"{i}" for i in range(2000)]  # about 4 + 3 + 4 bytes a row
    long = [f"{i}-" + "y" * 250 for i in range(100)]  # about 4 + 3 + 253 bytes a row
    w.log_predictions(short[:1000], np.full(1000, 0.5, np.float32))
    w.log_predictions(long, np.full(100, 0.5, np.float32))
    w.log_predictions(short[1000:], np.full(1000, 0.5, np.float32))
    assert w.close(timeout=JOIN).accepted_samples == 2100
    assert [i for req in sent for i in req.ids] == short[:1000] + long + short[1000:]
    # Ids are sized by their mean length per logged call: a batch may pass the target a little
    # (the server's limit is 4 times it), never by the 25 times that a budget reckoned with the
    # short ids only would allow for the long ones.
    for req in sent:
        payload = len(req.scores.data) + sum(len(i) + 3 for i in req.ids)
        assert payload <= 1.25 * message_bytes or len(req.ids) == 1, payload

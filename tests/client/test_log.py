"""``EvalClient.log``: split into messages, wire dtypes, event times, exactly-once numbering."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream import EvalClient, LogResult
from evalstream.tensors import MESSAGE_BYTES

from tests.engine import data


def _softmax_rows(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    z = rng.normal(size=(n, k)) * 4
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def test_large_log_is_split_into_messages_and_arrives_complete(client, name):
    rng = np.random.default_rng(0)
    n, k = 300_000, 10
    p = _softmax_rows(rng, n, k)
    y = rng.integers(0, k, n)
    client.create_stream(name, task="multiclass", classes=[f"c{i}" for i in range(k)])

    result = client.log(name, y, p)

    row_bytes = k * 4 + 4  # float32 scores, int32 label
    assert result.accepted_batches == math.ceil(n / (MESSAGE_BYTES // row_bytes)) > 1
    assert result.accepted_samples == n and result.rejected_batches == 0
    assert client.get_stream(name).sample_count == n
    rep = client.report(name)
    assert rep.n_samples == n
    assert rep.accuracy_score() == skm.accuracy_score(y, p.argmax(axis=1))


def test_inputs_lists_dtypes_weights_and_class_names(client, name):
    y, _, p32 = data.binary(3, n_neg=600, n_pos=200)
    w = np.random.default_rng(1).random(y.size) * 3
    client.create_stream(name, task="binary", classes=["neg", "pos"], resolution="exact")
    half = y.size // 2
    # lists, bool labels, float64 scores, float weights; then int64 labels, float16 scores
    client.log(name, y[:half].astype(bool).tolist(), p32[:half].astype(np.float64), w[:half])
    p16 = p32[half:].astype(np.float16)
    client.log(name, y[half:].astype(np.int64), p16, w[half:])
    scores = np.concatenate([p32[:half], p16.astype(np.float32)]).astype(np.float64)
    rep = client.report(name)
    assert rep.roc_auc_score() == pytest.approx(
        skm.roc_auc_score(y, scores, sample_weight=w), abs=1e-12
    )
    assert rep.weight_total == pytest.approx(w.sum())

    other = f"{name}-names"
    client.create_stream(other, task="multiclass", classes=["cat", "dog", "eel"])
    names = np.array(["cat", "dog", "eel"])[[0, 2, 1, 1]]
    p = np.eye(3, dtype=np.float32)[[0, 2, 1, 0]]
    assert client.log(other, names, p).accepted_samples == 4
    np.testing.assert_array_equal(
        client.report(other).confusion_matrix(), [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    )
    with pytest.raises(ValueError, match="unknown names"):
        client.log(other, ["cat", "cow"], p[:2])


def test_refuses_early_what_the_wire_cannot_carry(client):
    missing = "no-such-stream-needed"  # refused before any RPC: the stream need not exist
    p = np.full((4, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="y_score.*2-D"):
        client.log(missing, [0, 1, 0, 1], np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="y_true.*rows"):
        client.log(missing, [0, 1, 0], p)
    with pytest.raises(ValueError, match="whole numbers"):
        client.log(missing, [0.0, 0.5, 1.0, 1.0], p)
    with pytest.raises(ValueError, match="whole numbers"):
        client.log(missing, [0.0, np.nan, 1.0, 1.0], p)
    with pytest.raises(ValueError, match="sample_weight"):
        client.log(missing, [0, 1, 0, 1], p, sample_weight=[1.0, 2.0])
    assert client.log(missing, [], np.zeros((0, 2))) == LogResult()


def test_event_time_places_rows_in_windows(client, name):
    client.create_stream(name, task="binary", classes=["n", "p"], windows=["1h"])
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.9, 0.4, 0.6])
    client.log(name, y, p, timestamp=time.time() - 3 * 3600)  # outside the hour
    client.log(name, y, p, timestamp=datetime.now(UTC) - timedelta(minutes=1))
    assert client.report(name).n_samples == 8
    assert client.report(name, window="1h").n_samples == 4


def test_replay_with_the_same_producer_id_counts_once(server, client, name):
    y, _, p = data.multiclass(5, counts=(300, 300, 400))
    client.create_stream(name, task="multiclass", classes=["a", "b", "c"])
    with EvalClient(server.target, producer_id="job-42", max_batch_rows=256) as first:
        sent = first.log(name, y, p)
    assert sent.accepted_batches == 4
    with EvalClient(server.target, producer_id="job-42", max_batch_rows=256) as again:
        replay = again.log(name, y, p)
        assert (replay.accepted_batches, replay.duplicate_batches) == (0, 4)
        more = again.log(name, y[:10], p[:10])  # then it carries on numbering
        assert more.accepted_batches == 1
    assert client.get_stream(name).sample_count == len(y) + 10


def test_numbering_resyncs_when_the_server_forgot_the_producer(server, client, name):
    y, _, p = data.multiclass(6, counts=(200, 200, 200))
    client.create_stream(name, task="multiclass", classes=["a", "b", "c"])
    client.log(name, y, p)
    client.log(name, y, p)
    with EvalClient(server.target) as other:  # another client clears the producers' numbers
        other.reset_stream(name, forget_producers=True)
    result = client.log(name, y, p)  # this client expects 3; the server expects 1 again
    assert (result.accepted_batches, result.rejected_batches, result.errors) == (1, 0, [])
    assert client.get_stream(name).sample_count == len(y)

    client.delete_stream(name)  # the same client deletes and recreates: numbering restarts
    client.create_stream(name, task="multiclass", classes=["a", "b", "c"])
    assert client.log(name, y, p).accepted_samples == len(y)


def test_concurrent_logs_to_one_stream_from_threads(client, name):
    client.create_stream(name, task="binary", classes=["n", "p"])
    rng = np.random.default_rng(2)
    results: list[LogResult] = []

    def work() -> None:
        for _ in range(10):
            results.append(client.log(name, rng.integers(0, 2, 50), rng.random(50)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 40 and all(r.accepted_batches == 1 for r in results)
    assert client.get_stream(name).sample_count == 2000

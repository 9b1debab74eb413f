"""Producer ids are bounded (issue 13, item 9): their length, how many a stream remembers, and for
how long after their last batch, in the memory and the durable store (the Redis store:
tests/redis/test_store.py). Before, every id was kept forever whatever its length."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import ingest_pb2
from evalstream_server.engine import StreamSpec
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from evalstream_server.store import MemoryStore
from evalstream_server.store.durable import DurableStore
from evalstream_server.store.producers import ProducerLimits

from ..service.conftest import create, ingest, tensor

INVALID_ARGUMENT, RESOURCE_EXHAUSTED = 3, 8


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def _store(kind: str, tmp_path, clock):
    if kind == "memory":
        return MemoryStore(clock=clock)
    return DurableStore(tmp_path, clock=clock)


@pytest.mark.parametrize("kind", ["memory", "durable"])
def test_a_producer_id_longer_than_128_characters_is_refused_and_not_kept(kind, tmp_path):
    store = _store(kind, tmp_path, Clock())
    store.create(StreamSpec(task="binary", name="s"))
    batch = store.get("s").engine.validate([0, 1], [0.2, 0.9])
    long_id = "p" * 129
    out = store.ingest("s", long_id, 1, batch, None)
    assert (out.status, out.error_code) == ("rejected", INVALID_ARGUMENT)
    assert out.error_message == "producer_id: expected 1 to 128 characters, received 129 characters"
    assert long_id not in store.get("s").producers and store.expected_sequence("s", long_id) == 1
    assert store.ingest("s", "p" * 128, 1, batch, None).status == "accepted"
    assert store.state("s", "cumulative").n_samples == 2
    store.close()


@pytest.mark.parametrize("kind", ["memory", "durable"])
def test_a_stream_remembers_a_bounded_number_of_producers_for_a_bounded_time(kind, tmp_path):
    clock = Clock()
    store = _store(kind, tmp_path, clock)
    store.producer_limits = ProducerLimits(max_per_stream=3, retention=3600.0)
    store.create(StreamSpec(task="binary", name="s"))
    batch = store.get("s").engine.validate([0, 1], [0.2, 0.9])
    for producer in ("a", "b", "c"):
        assert store.ingest("s", producer, 1, batch, None).status == "accepted"
        clock.t += 600.0
    refused = store.ingest("s", "d", 1, batch, None)
    assert (refused.status, refused.error_code) == ("rejected", RESOURCE_EXHAUSTED)
    assert refused.error_message.startswith("producer_id: producers remembered per stream")
    assert "limit 3, received 4" in refused.error_message
    assert "d" not in store.get("s").producers  # nothing recorded, its number not consumed
    assert store.ingest("s", "a", 2, batch, None).status == "accepted"  # known ones go on
    start = clock.t - 1800.0
    clock.t = start + 4400.0  # b (last batch at +600) is over an hour silent: forgotten
    assert store.ingest("s", "d", 1, batch, None).status == "accepted"
    assert set(store.get("s").producers) == {"a", "c", "d"}
    assert store.expected_sequence("s", "b") == 1  # b starts again at 1
    assert store.state("s", "cumulative").n_samples == 2 * 5
    if kind == "durable":  # the forgetting and the last-batch times survive a restart
        store.flush()
        store._simulate_crash()
        store = DurableStore(tmp_path, clock=clock)
        store.producer_limits = ProducerLimits(max_per_stream=3, retention=3600.0)
        assert set(store.get("s").producers) == {"a", "c", "d"}
        clock.t = start + 5400.0  # an hour after a's (+1800) and c's (+1200) last batches
        assert store.ingest("s", "e", 1, batch, None).status == "accepted"
        assert set(store.get("s").producers) == {"d", "e"}
    store.close()


def test_max_producers_over_grpc(tmp_path):
    settings = Settings(grpc_port=0, metrics_port=-1, max_producers=2)
    y = np.array([0, 1], np.int32)
    s = np.array([0.2, 0.9], np.float32)
    with ServerThread(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)
        create(stub, "s", task="binary", classes=("n", "p"))
        reqs = [
            pb.IngestRequest(
                stream="s", producer_id=p, sequence=1, scores=tensor(s), labels=tensor(y)
            )
            for p in ("a", "b", "c", "x" * 129)
        ]
        results, _ = ingest(stub, reqs)
    assert [r.status for r in results[:2]] == [ingest_pb2.BATCH_STATUS_ACCEPTED] * 2
    assert results[2].error_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert results[3].error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "producer_id" in results[2].error_message and "producer_id" in results[3].error_message


def test_a_forgotten_producer_goes_on_through_the_client():
    """The Python client answers the gap of a forgotten producer by renumbering from 1: nothing
    is lost or counted twice."""
    import time

    from evalstream import EvalClient

    settings = Settings(grpc_port=0, metrics_port=-1, producer_retention=0.5)
    with ServerThread(settings) as srv:
        with EvalClient(srv.target, producer_id="a") as a, EvalClient(srv.target) as b:
            a.create_stream("s", task="binary", classes=["n", "p"])
            assert a.log("s", [0, 1, 1], [0.2, 0.9, 0.7]).accepted_samples == 3
            time.sleep(0.6)
            b.log("s", [0], [0.1])  # a new producer: a, silent past the retention, is forgotten
            assert "a" not in srv.store.get("s").producers
            result = a.log("s", [1, 0], [0.8, 0.3])  # sequence 2: a gap, renumbered to 1
            assert result.accepted_samples == 2
            assert a.get_stream("s").sample_count == 3 + 1 + 2

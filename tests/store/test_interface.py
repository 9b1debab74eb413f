"""``Store`` is the interface the servicer and the exporter use: a store that implements only its
abstract methods (no ``MemoryStore`` underneath) serves the collector and the servicer's calls."""

from __future__ import annotations

from typing import Any

import numpy as np
from evalstream_server.engine import Batch, State, StreamSpec
from evalstream_server.exporters import EvalstreamCollector
from evalstream_server.store import (
    BatchOutcome,
    MemoryStore,
    Store,
    StoreUnavailableError,
    StreamRecord,
)
from evalstream_server.store.base import Record
from prometheus_client import CollectorRegistry, generate_latest


class Forwarding(Store):
    """Implements the abstract methods of ``Store`` by forwarding them, and ``label_status`` (the
    optional hook of a store with a join table); nothing else."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def create(self, spec: StreamSpec, tenant: str = "") -> StreamRecord:
        return self.inner.create(spec, tenant)

    def get(self, name: str) -> StreamRecord:
        return self.inner.get(name)

    def names(self) -> list[str]:
        return self.inner.names()

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def reset(self, name: str, forget_producers: bool = False) -> StreamRecord:
        return self.inner.reset(name, forget_producers)

    def ingest(
        self,
        name: str,
        producer_id: str,
        sequence: int,
        batch: Record | Exception | None,
        timestamp: float | None,
        *,
        expected: int | None = None,
    ) -> BatchOutcome:
        return self.inner.ingest(name, producer_id, sequence, batch, timestamp, expected=expected)

    def expected_sequence(self, name: str, producer_id: str) -> int:
        return self.inner.expected_sequence(name, producer_id)

    def state(self, name: str, window: str) -> State:
        return self.inner.state(name, window)

    def report(
        self, name: str, window: str, curves: bool = False, max_points: int = 200
    ) -> dict[str, Any]:
        return self.inner.report(name, window, curves, max_points)

    def curve(
        self, name: str, window: str, kind: str, target: str, max_points: int = 200
    ) -> dict[str, Any]:
        return self.inner.curve(name, window, kind, target, max_points)

    def label_status(self, name: str) -> dict[str, Any] | None:
        return self.inner.label_status(name)


def _fed(store: Store) -> Store:
    rng = np.random.default_rng(5)
    for name in ("a", "b"):
        spec = StreamSpec(name=name, task="multiclass", classes=("x", "y", "z"), windows=("5m",))
        store.create(spec)
        y = rng.choice(3, 500, p=[0.6, 0.3, 0.1]).astype(np.int32)
        p = rng.dirichlet([1, 1, 1], 500).astype(np.float32)
        store.ingest(name, "p", 1, Batch(labels=y, scores=p, weights=None), 1000.0)
    return store


def _exposition(store: Store) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EvalstreamCollector(store))
    return generate_latest(registry)


def test_the_exporter_needs_only_the_store_interface():
    clock = lambda: 1010.0  # noqa: E731
    memory = _fed(MemoryStore(clock=clock))
    forwarding = _fed(Forwarding(MemoryStore(clock=clock)))
    assert [r.name for r in forwarding.records()] == ["a", "b"]
    text = _exposition(forwarding)
    assert b'evalstream_samples_total{stream="b",tenant=""} 500.0' in text
    assert text == _exposition(memory)


def test_store_unavailable_is_a_store_type():
    from evalstream_server.rpc.errors import status_for

    code, message = status_for(StoreUnavailableError("redis unreachable"))
    assert code.name == "UNAVAILABLE" and "redis unreachable" in message


def test_the_memory_store_runs_calls_inline_on_the_event_loop_thread():
    import asyncio
    import threading

    async def where() -> tuple[int, int]:
        return threading.get_ident(), await MemoryStore().run(threading.get_ident)

    loop_thread, ran_on = asyncio.run(where())
    assert ran_on == loop_thread

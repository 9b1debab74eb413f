"""Read side of the Redis store: the local face of a shared stream, and merged states kept briefly.

``SharedEngine`` is what a ``StreamRecord`` of the Redis store carries: it validates batches and
names the windows like a ``StreamEngine``, but its counts live in Redis, so ``cumulative`` and
``state()`` read the merged state through the store.

``MergedCache`` keeps the last merged state of each (stream, window) with the Redis version it was
read at. A query revalidates it with one small read (the version), so a cached state is never
served stale while Redis answers; when Redis does not answer, it is the "last merged state" that
queries fall back to, with its age.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..engine import (
    CUMULATIVE,
    InvalidInputError,
    State,
    StreamEngine,
    StreamSpec,
    UnknownWindowError,
    parse_duration,
)
from ..engine.windows import WindowRing

__all__ = ["SharedEngine", "MergedCache", "Merged"]


class SharedEngine(StreamEngine):
    """A stream's engine whose counts are in Redis (validation and window names stay local).

    Parameters
    ----------
    spec : StreamSpec
    key : str
        The store's key of the stream (``stream_key``).
    clock : callable
        The store's wall clock.
    state_of : callable
        ``state_of(name, window)``: the merged state, read from Redis by the store.
    status_of : callable
        ``status_of(name)``: the join table's status, read from Redis by the store.
    n_batches : int
        Batches accepted by every replica, as last read.
    """

    def __init__(
        self,
        spec: StreamSpec,
        key: str,
        clock: Callable[[], float],
        state_of: Callable[[str, str], State],
        status_of: Callable[[str], dict[str, Any]],
        n_batches: int = 0,
    ) -> None:
        # StreamEngine.__init__ would allocate a cumulative state that is never used here.
        self.spec = spec
        self.key = key
        self.clock = clock
        self.windows = {
            name: WindowRing(spec, parse_duration(name), spec.window_buckets)
            for name in spec.windows
        }
        self.last_ingest_time = None
        self._state_of = state_of
        self._status_of = status_of
        self.n_batches = n_batches  # by every replica, as of the last read of the metadata
        self.version = ""  # type: ignore[assignment]  # "uid:ver": changes with every commit

    @property
    def cumulative(self) -> State:  # type: ignore[override]
        """The merged cumulative state (read from Redis)."""
        return self._state_of(self.key, CUMULATIVE)

    def ring(self, window: str) -> WindowRing | None:
        """The ring of ``window`` (None for the cumulative state); accepts "60m" for "1h"."""
        if window in ("", CUMULATIVE):
            return None
        ring = self.windows.get(window)
        if ring is None:
            try:
                ring = next(r for r in self.windows.values() if r.seconds == parse_duration(window))
            except (StopIteration, InvalidInputError):
                raise UnknownWindowError(window, self.window_names()) from None
        return ring

    def state(self, window: str = CUMULATIVE, now: float | None = None) -> State:
        return self._state_of(self.key, window)

    def label_status(self, now: float | None = None) -> dict[str, Any]:
        """The join table's status, read from Redis (``RedisStore.label_status``)."""
        return self._status_of(self.key)

    def ingest(self, *args: object, **kwargs: object) -> int:
        raise TypeError("a shared stream counts batches through RedisStore.ingest")

    def reset(self) -> None:
        raise TypeError("a shared stream is reset through RedisStore.reset")

    @property
    def nbytes(self) -> int:
        return 0


@dataclass
class Merged:
    """One merged state and where it came from."""

    uid: str
    ver: str
    bucket: int  # the newest bucket it covers (0 for the cumulative state)
    state: State
    read_at: float  # wall clock of the last read that confirmed it

    @property
    def nbytes(self) -> int:
        return self.state.nbytes


class MergedCache:
    """Merged states by (stream, window), least recently used first out past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], Merged] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Merged | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, str], item: Merged) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = item
            self._bytes += item.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def forget(self, stream: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == stream]:
                self._bytes -= self._items.pop(key).nbytes

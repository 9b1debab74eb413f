"""What WatchReport calls share: one computation of a report per change, and a per-tenant cap.

Fifty watchers of one stream at the minimum interval used to compute fifty reports per interval
(curves included), starving every other call. ``SharedReports`` keys a computed answer on the
stream, the request's options and ``store.report_version`` (the engine's version and the window's
time bucket): a watcher whose stream did not change since the last computation gets that answer
again, whoever computed it. ``Watchers`` caps the WatchReport calls a tenant holds open.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..store import LimitExceededError, StreamRecord
from ..store.base import report_version

__all__ = ["SharedReports", "Watchers"]

T = TypeVar("T")


class SharedReports:
    """Answers computed once per change of a stream's report and handed to every watcher.

    An entry lives while a watcher of its key does (``watching``). Thread-safe: with the Redis
    store the computations run in the store's thread pool; two watchers racing on the same change
    may both compute it (the answer is the same), never a stale one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[tuple[Any, ...], Any]] = {}
        self._watchers: dict[Hashable, int] = {}
        self.computed = 0  # computations so far (tests and benchmarks read it)

    @contextmanager
    def watching(self, key: Hashable) -> Iterator[None]:
        """Hold ``key``'s entry while the block runs; the last watcher to leave drops it."""
        with self._lock:
            self._watchers[key] = self._watchers.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._watchers[key] - 1
                if left:
                    self._watchers[key] = left
                else:
                    del self._watchers[key]
                    self._entries.pop(key, None)

    def get(self, key: Hashable, record: StreamRecord, window: str, compute: Callable[[], T]) -> T:
        """``compute()``'s answer for ``key``, computed again only when ``record``'s report of
        ``window`` changed since (the version is read before computing: a change during the
        computation makes the next ``get`` compute again)."""
        version = report_version(record, window)
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self.computed += 1
            if key in self._watchers:
                self._entries[key] = (version, value)
        return value


class Watchers:
    """WatchReport calls open per tenant, at most ``limit`` each (0 = no limit)."""

    def __init__(self, limit: int = 0) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        """One open watch of ``tenant`` while the block runs (``LimitExceededError`` past the
        limit: nothing is held)."""
        with self._lock:
            held = self.open.get(tenant, 0)
            if self.limit and held >= self.limit:
                raise LimitExceededError("watchers per tenant", self.limit, held + 1)
            self.open[tenant] = held + 1
        try:
            yield
        finally:
            with self._lock:
                left = self.open[tenant] - 1
                if left:
                    self.open[tenant] = left
                else:
                    del self.open[tenant]

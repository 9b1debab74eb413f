"""Shared store: replicas keep every stream's counts in Redis and merge their deltas atomically.

``evalstream serve --store redis://HOST:PORT/DB`` (or ``rediss://``); docs/replicas.md. The promise:

- **An acknowledgement means the delta is in Redis.** A batch is counted into a local buffer;
  ``flush()`` (the servicer calls it before acknowledging) sends each stream's buffered batches as
  one commit script that checks every producer sequence and appends the summed non-zero counts in
  one atomic step. A background thread also flushes every ``flush_interval`` seconds.
- **Exactly once across replicas.** Before a batch is counted, its sequence is checked against
  Redis (or against this replica's own buffered batches of that producer); the commit checks again.
  A batch another replica committed meanwhile (a producer that failed over) is skipped; duplicates
  and gaps are answered from Redis, with the recorded outcome.
- **Queries read Redis**: every batch acknowledged before a query started is in its answer, on
  every replica. A merged state is cached with the stream's version and revalidated with one small
  read. When Redis does not answer, queries get the last merged state with its age (the report's
  ``staleness``) for up to ``max_stale`` seconds, then ``UNAVAILABLE``; ingestion answers
  ``UNAVAILABLE`` at once and clients retry.

This module holds the store's setup, Redis error handling, flushing, compaction and close; stream
definitions are ``redis_streams``, ingestion ``redis_ingest``, queries ``redis_queries``, URL
parsing ``redis_url``. Counts are packed sparse logs (``sparse_log``); keys and scripts are in
``redis_scripts``. The exact resolution (raw scores) is refused: it is not additive counts.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import redis
from redis.cluster import RedisCluster

from .base import NotFoundError, Store, StoreUnavailableError
from .producers import ProducerLimits
from .redis_commits import CommitBuffer
from .redis_export import ExportShare
from .redis_ingest import IngestMixin
from .redis_join import JoinMixin
from .redis_queries import QueryMixin
from .redis_reads import MergedCache
from .redis_scripts import Keys, Scripts
from .redis_streams import CachedStream, StreamsMixin
from .redis_url import client_from_url
from .sparse_log import decode_log, encode_chunk

__all__ = ["RedisStore"]

log = logging.getLogger("evalstream.store.redis")
T = TypeVar("T")


class RedisStore(StreamsMixin, IngestMixin, JoinMixin, QueryMixin, Store):
    """Streams whose state lives in Redis, shared by every replica pointed at it.

    Parameters
    ----------
    client : redis.Redis
    prefix : str
        Key prefix (several deployments can share one Redis).
    flush_interval : float
        Longest a counted batch waits in the local buffer when nobody calls ``flush``.
    chunk_bytes : int
        Commits larger than this are staged in chunks of this size first.
    compact_bytes : int
        A log longer than this (and than twice its last compacted size) gets compacted.
    max_stale : float
        With Redis unreachable, queries answer from a merged state at most this old.
    meta_ttl : float
        Stream definitions read from Redis are reused this long.
    export : {"shard", "all", "none"}
        Which streams ``records()`` lists to the Prometheus collector: this replica's share of
        them (default: each stream is exported by one live replica, ``redis_export``), every
        stream, or none.
    lease_seconds : float
        A replica that stops announcing itself (a crash) hands its share over after this long.
    max_pending_bytes : int
        Past this much buffered data (Redis unreachable), ingestion answers UNAVAILABLE.
    cache_bytes : int
        Memory for cached merged states.
    replica : str, optional
        This replica's id (default: random); ids of live replicas must differ.
    threads : int
        Calls from the event loop (``run``) wait on Redis in a pool of this many threads; more
        concurrent calls queue there, and the event loop stays free.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        max_streams: int = 1000,
        clock: Callable[[], float] = time.time,
        prefix: str = "evalstream",
        flush_interval: float = 0.05,
        chunk_bytes: int = 4 << 20,
        compact_bytes: int = 1 << 20,
        max_stale: float = 300.0,
        meta_ttl: float = 1.0,
        export: str = "shard",
        lease_seconds: float = 30.0,
        max_pending_bytes: int = 256 << 20,
        cache_bytes: int = 256 << 20,
        threads: int = 16,
        replica: str | None = None,
        background: bool = True,
    ) -> None:
        if export not in ("shard", "all", "none"):
            raise ValueError(f"export: expected 'shard', 'all' or 'none', received {export!r}")
        self.client = client
        self.max_streams = max_streams
        self.clock = clock
        self.producer_limits = ProducerLimits()  # the server sets its own (--max-producers)
        self.keys = Keys(prefix, cluster=isinstance(client, RedisCluster))
        self.flush_interval = flush_interval
        self.chunk_bytes = max(1024, chunk_bytes)
        self.compact_bytes = compact_bytes
        self.max_stale = max_stale
        self.meta_ttl = meta_ttl
        self.export = export
        self.lease_seconds = lease_seconds
        self.max_pending_bytes = max_pending_bytes
        self.replica = replica or uuid.uuid4().hex[:16]
        self.scripts = Scripts()
        self.share = ExportShare(self._call, self.keys.replicas, self.replica, lease_seconds)
        self.stats = {"commits": 0, "conflicts": 0, "skipped": 0, "dropped": 0, "compactions": 0}
        self.stats["join_conflicts"] = 0  # join commits that found the table changed: retried
        self._join_status: dict[str, tuple[str, dict[str, Any]]] = {}  # last read, per stream
        self._lock = threading.RLock()
        self._records: dict[str, CachedStream] = {}
        self._buffer = CommitBuffer(self)
        self._cache = MergedCache(cache_bytes)
        self._compacted: dict[str, int] = {}  # key -> size after its last compaction
        self._due: dict[str, str] = {}  # key -> stream, logs to compact
        self._down_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="evalstream-redis")
        self._announced = -float("inf")  # monotonic time of the last export share announcement
        try:
            self.scripts.load(client)
            self._announce()
        except (redis.RedisError, StoreUnavailableError) as exc:  # answer UNAVAILABLE meanwhile
            log.warning("redis unreachable at start", extra={"error": str(exc)})
        if background:
            self._thread = threading.Thread(
                target=self._background, name="evalstream-redis-flush", daemon=True
            )
            self._thread.start()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStore:
        """A store for ``redis://[[user]:password@]host[:port][/db][?option=value...]``
        (``rediss://`` for TLS). Options of this class (``prefix``, ``flush_interval``...) are
        taken from the query; the rest go to ``redis.Redis.from_url``."""
        client, options = client_from_url(url)
        return cls(client, **{**options, **kwargs})

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in this store's thread pool (with the caller's context variables): every
        call may wait on Redis, and the event loop must not."""
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    # -- Redis calls ---------------------------------------------------------------------------
    @contextmanager
    def redis_errors(self, what: str) -> Iterator[None]:
        """Map Redis failures to ``StoreUnavailableError`` (UNAVAILABLE); fail fast for a moment
        after one, so a dead Redis does not stall every call for its connect timeout."""
        if time.monotonic() < self._down_until:
            raise StoreUnavailableError(f"redis unreachable ({what}); retry shortly")
        try:
            yield
        except redis.exceptions.NoScriptError:
            raise
        except redis.RedisError as exc:
            if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                self._down_until = time.monotonic() + 0.2
            else:
                log.error("redis refused %s", what, exc_info=exc)
            raise StoreUnavailableError(f"redis unavailable during {what}: {exc}") from exc

    def _call(self, what: str, name: str, keys: list[str], args: list[Any]) -> Any:
        with self.redis_errors(what):
            return self.scripts.call(self.client, name, keys, args)

    # -- flush: buffered batches -> Redis ------------------------------------------------------
    def flush(self) -> None:
        """Commit every buffered batch; raises ``StoreUnavailableError`` if Redis did not confirm
        them all (they stay buffered, and the next flush sends them again: commits are
        idempotent)."""
        with self._lock:
            self._buffer.flush()

    # -- background: flush and compaction ------------------------------------------------------
    def note_log_length(self, stream: str, key: str, length: int) -> None:
        """Schedule a compaction of ``key`` once it outgrew twice its last compacted size."""
        if length > max(self.compact_bytes, 2 * self._compacted.get(key, 0)):
            self._due[key] = stream

    def _background(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                if self._buffer.busy:
                    self.flush()
                self._compact_due()
                if time.monotonic() - self._announced >= self.lease_seconds / 3:
                    self._announce()
            except StoreUnavailableError:
                pass  # the next round retries; ingestion reports it meanwhile
            except Exception:  # noqa: BLE001 - the thread must survive
                log.exception("background flush failed")

    def _announce(self) -> None:
        """Keep this replica in the export share (``redis_export``)."""
        if self.export == "shard":
            self.share.live()
        self._announced = time.monotonic()

    def _compact_due(self) -> None:
        while self._due:
            key, stream = self._due.popitem()
            self.compact(stream, key)

    def compact(self, stream: str, key: str) -> bool:
        """Replace a log by one chunk of its sum (appends made meanwhile are kept)."""
        try:
            layout = self._cached(stream).layout
        except NotFoundError:
            return False
        meta = self.keys.of(stream, "meta")
        epoch, data = self._call("compaction read", "read_log", [meta, key], [])
        if not data:
            return False
        dense, _ = decode_log(data, layout.size, layout.max_cells)
        nz = np.nonzero(dense != 0)[0]
        chunk = encode_chunk(nz, dense[nz])
        self._compacted[key] = len(chunk)
        if len(chunk) >= len(data):
            return False
        done = self._call(
            "compaction",
            "compact",
            [meta, key, self.keys.ids_for(stream)],
            [epoch, len(data), chunk],
        )
        self.stats["compactions"] += int(done)
        return bool(done)

    def close(self) -> None:
        """Stop the background thread, commit what is buffered, hand the export share over."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.flush()
        except StoreUnavailableError:
            log.error("closing with batches not in Redis (they were never acknowledged)")
        try:
            self.share.leave()
        except StoreUnavailableError:
            pass
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

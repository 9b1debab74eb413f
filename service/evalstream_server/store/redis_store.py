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

``RedisStore`` is a facade over parts with one job each, built here and given what they use:

- ``redis_connection``: the client, keys and scripts (``redis_scripts``), one failure policy;
- ``redis_catalogue``: stream definitions (create, look up, list, delete, reset);
- ``redis_commits``: the commit buffer, batches counted here until a flush commits them
  (``redis_buffer``: one batch's entry, one stream's commit);
- ``redis_sequences``: producer sequences, duplicates and gaps;
- ``redis_ingest``: a batch checked, then buffered or joined;
- ``redis_join``: the join table of predictions awaiting labels;
- ``redis_queries``: merged reads, reports and curves (``redis_reads``: the merged states kept
  between reads, and ``SharedEngine``, the engine face of a stream whose counts are in Redis);
- ``redis_compaction``: logs replaced by their sum in the background;
- ``redis_export``: this replica's share of the Prometheus export.

URL parsing is ``redis_url``; counts are packed sparse logs (``sparse_log``). The exact resolution
(raw scores) is refused: it is not additive counts.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import redis

from ..engine import State, StreamSpec
from ..engine.thresholds import ThresholdGoals
from .base import BatchOutcome, Record, Store, StoreUnavailableError, StreamRecord
from .producers import ProducerLimits
from .redis_catalogue import StreamCatalogue
from .redis_commits import CommitBuffer
from .redis_compaction import Compactor
from .redis_connection import Client, RedisConnection
from .redis_export import ExportShare
from .redis_ingest import Ingestion
from .redis_join import JoinTable
from .redis_migrate import migrate_tenant_keys
from .redis_queries import MergedReads
from .redis_reads import MergedCache, SharedEngine
from .redis_scripts import Keys
from .redis_sequences import Sequences
from .redis_url import client_from_url

__all__ = ["RedisStore"]

log = logging.getLogger("evalstream.store.redis")
T = TypeVar("T")
_EXPORT = ("shard", "all", "none")


class RedisStore(Store):
    """Streams whose state lives in Redis, shared by every replica pointed at it.

    Parameters
    ----------
    client : redis.Redis or RedisCluster
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
    threads : int
        Calls from the event loop (``run``) wait on Redis in a pool of this many threads; more
        concurrent calls queue there, and the event loop stays free.
    replica : str, optional
        This replica's id (default: random); ids of live replicas must differ.
    """

    def __init__(
        self,
        client: Client,
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
        if export not in _EXPORT:
            raise ValueError(f"export: expected 'shard', 'all' or 'none', received {export!r}")
        self.clock = clock
        self.export = export
        self.flush_interval = flush_interval
        self.lease_seconds = lease_seconds
        self.replica = replica or uuid.uuid4().hex[:16]
        self.stats = dict.fromkeys(
            ("commits", "conflicts", "skipped", "dropped", "compactions", "join_conflicts"), 0
        )
        self.lock = threading.RLock()  # guards the commit buffer; one producer check and count
        self.conn = RedisConnection(client, prefix)
        cache = MergedCache(cache_bytes)
        self.catalogue = StreamCatalogue(
            self.conn,
            cache,
            self._engine,
            clock=clock,
            max_streams=max_streams,
            meta_ttl=meta_ttl,
        )
        self.compactor = Compactor(
            self.conn, lambda name: self.catalogue.cached(name).layout, compact_bytes, self.stats
        )
        self.buffer = CommitBuffer(
            self.conn, self.replica, chunk_bytes, self.stats, self.compactor.note_length
        )
        self.sequences = Sequences(self.conn, self.catalogue, self.buffer)
        self.join = JoinTable(
            self.conn,
            self.catalogue,
            self.buffer,
            self.sequences,
            self.compactor.note_length,
            clock=clock,
            replica=self.replica,
            stats=self.stats,
        )
        self.ingestion = Ingestion(
            self.conn,
            self.catalogue,
            self.buffer,
            self.sequences,
            self.join,
            self.lock,
            clock=clock,
            max_pending_bytes=max_pending_bytes,
        )
        self.reads = MergedReads(
            self.conn,
            self.catalogue,
            self.compactor,
            cache,
            self.join.label_status,
            clock=clock,
            max_stale=max_stale,
        )
        self.share = ExportShare(
            self.conn.call, self.conn.keys.replicas, self.replica, lease_seconds
        )
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="evalstream-redis")
        self._announced = -float("inf")  # monotonic time of the last export share announcement
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self.conn.load_scripts()
            migrate_tenant_keys(self.conn.client, self.conn.keys)  # data from before tenants
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

    def _engine(self, spec: StreamSpec, key: str, n_batches: int) -> SharedEngine:
        return SharedEngine(spec, key, self.clock, self.state, self.label_status, n_batches)

    @property
    def client(self) -> Client:
        return self.conn.client

    @property
    def keys(self) -> Keys:
        return self.conn.keys

    @property
    def producer_limits(self) -> ProducerLimits:
        """Producer ids' length and how many a stream remembers (the server sets its own)."""
        return self.ingestion.producer_limits

    @producer_limits.setter
    def producer_limits(self, limits: ProducerLimits) -> None:
        self.ingestion.producer_limits = limits

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in this store's thread pool (with the caller's context variables): every
        call may wait on Redis, and the event loop must not."""
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    # -- streams -------------------------------------------------------------------------------
    def create(self, spec: StreamSpec, tenant: str = "") -> StreamRecord:
        return self.catalogue.create(spec, tenant)

    def get(self, name: str) -> StreamRecord:
        return self.catalogue.get(name)

    def names(self) -> list[str]:
        return self.catalogue.names()

    def delete(self, name: str) -> None:
        self.catalogue.delete(name)

    def reset(self, name: str, forget_producers: bool = False) -> StreamRecord:
        record = self.catalogue.reset(name, forget_producers)
        if forget_producers:
            with self.lock:
                self.buffer.forget_producers(name)
        return record

    # -- ingest --------------------------------------------------------------------------------
    def expected_sequence(self, name: str, producer_id: str) -> int:
        with self.lock:
            return self.sequences.expected(name, producer_id)

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
        return self.ingestion.ingest(
            name, producer_id, sequence, batch, timestamp, expected=expected
        )

    def flush(self) -> None:
        """Commit every buffered batch; raises ``StoreUnavailableError`` if Redis did not confirm
        them all (they stay buffered, and the next flush sends them again: commits are
        idempotent)."""
        with self.lock:
            self.buffer.flush()

    # -- queries -------------------------------------------------------------------------------
    def state(self, name: str, window: str) -> State:
        return self.reads.state(name, window)

    def report_context(
        self, name: str, window: str
    ) -> tuple[State, State | None, dict[str, Any] | None]:
        return self.reads.report_context(name, window)

    def label_status(self, name: str) -> dict[str, Any]:
        return self.join.label_status(name)

    def report(
        self,
        name: str,
        window: str,
        curves: bool = False,
        max_points: int = 200,
        threshold_goals: ThresholdGoals | None = None,
    ) -> dict[str, Any]:
        return self.reads.report(name, window, curves, max_points, threshold_goals)

    def curve(
        self, name: str, window: str, kind: str, target: str, max_points: int = 200
    ) -> dict[str, Any]:
        return self.reads.curve(name, window, kind, target, max_points)

    def records(self) -> list[StreamRecord]:
        """Streams for the Prometheus collector: this replica's share (``redis_export``), every
        stream with ``export=all``, none with ``export=none`` or without Redis."""
        if self.export == "none":
            return []
        try:
            names = self.names()
            if self.export == "shard":
                names = self.share.mine(names)
        except StoreUnavailableError:
            return []
        out = []
        for name in names:
            try:
                out.append(self.get(name))
            except (KeyError, StoreUnavailableError):  # deleted meanwhile, or no Redis
                continue
        return out

    def compact(self, stream: str, key: str) -> bool:
        """Replace the log ``key`` of ``stream`` by one chunk of its sum (``Compactor``)."""
        return self.compactor.compact(stream, key)

    # -- background: flush, compaction, export share --------------------------------------------
    def _background(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                if self.buffer.busy:
                    self.flush()
                self.compactor.run_due()
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
        self.conn.close()

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

Counts are packed sparse logs (``sparse_log``); keys and scripts are in ``redis_scripts``. The
exact resolution (raw scores) is refused: it is not additive counts.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..engine import CUMULATIVE, Batch, InvalidInputError, State, StreamSpec, build_report, curve
from ..engine.counting import compute_delta
from .base import (
    AlreadyExistsError,
    BatchOutcome,
    LimitExceededError,
    NotFoundError,
    Store,
    StreamRecord,
)
from .durable import StoreUnavailableError
from .redis_buffer import Entry, decode_outcome, outcome_field
from .redis_commits import CommitBuffer
from .redis_reads import Merged, MergedCache, SharedEngine
from .redis_scripts import Keys, Scripts
from .sparse_log import FlatLayout, decode_log, encode_chunk

__all__ = ["RedisStore"]

log = logging.getLogger("evalstream.store.redis")
_INVALID_ARGUMENT, _RESOURCE_EXHAUSTED, _OUT_OF_RANGE = 3, 8, 11
_SEQ_READ_REUSE = 0.005  # the servicer asks twice per batch, back to back
_OPTIONS: dict[str, Callable[[str], Any]] = {
    "prefix": str,
    "flush_interval": float,
    "chunk_bytes": int,
    "compact_bytes": int,
    "max_stale": float,
    "meta_ttl": float,
    "export": str,
    "lease_seconds": float,
    "max_pending_bytes": int,
    "cache_bytes": int,
    "timeout": float,
}


class _Cached:
    __slots__ = ("record", "uid", "layout", "read_at")

    def __init__(self, record: StreamRecord, uid: str, read_at: float) -> None:
        self.record, self.uid, self.read_at = record, uid, read_at
        self.layout = FlatLayout(record.spec)


class RedisStore(Store):
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
    export : {"lease", "all", "none"}
        Which replica's ``records()`` lists streams to the Prometheus collector: the holder of a
        lease in Redis (default: exactly one replica exports, so sums across replicas hold),
        every replica, or none.
    lease_seconds : float
    max_pending_bytes : int
        Past this much buffered data (Redis unreachable), ingestion answers UNAVAILABLE.
    cache_bytes : int
        Memory for cached merged states.
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
        export: str = "lease",
        lease_seconds: float = 30.0,
        max_pending_bytes: int = 256 << 20,
        cache_bytes: int = 256 << 20,
        background: bool = True,
    ) -> None:
        if export not in ("lease", "all", "none"):
            raise ValueError(f"export: expected 'lease', 'all' or 'none', received {export!r}")
        self.client = client
        self.max_streams = max_streams
        self.clock = clock
        self.keys = Keys(prefix)
        self.flush_interval = flush_interval
        self.chunk_bytes = max(1024, chunk_bytes)
        self.compact_bytes = compact_bytes
        self.max_stale = max_stale
        self.meta_ttl = meta_ttl
        self.export = export
        self.lease_seconds = lease_seconds
        self.max_pending_bytes = max_pending_bytes
        self.replica = uuid.uuid4().hex[:16]
        self.scripts = Scripts()
        self.stats = {"commits": 0, "conflicts": 0, "skipped": 0, "dropped": 0, "compactions": 0}
        self._lock = threading.RLock()
        self._records: dict[str, _Cached] = {}
        self._seq_read: tuple[tuple[str, str], str, int, float] | None = None
        self._buffer = CommitBuffer(self)
        self._cache = MergedCache(cache_bytes)
        self._compacted: dict[str, int] = {}  # key -> size after its last compaction
        self._due: dict[str, str] = {}  # key -> stream, logs to compact
        self._down_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self.scripts.load(client)
        except redis.RedisError as exc:  # start anyway: answer UNAVAILABLE until Redis is back
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
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"store: expected a redis:// or rediss:// URL, received {url!r}")
        ours, theirs = {}, []
        for key, value in parse_qsl(parts.query):
            if key in _OPTIONS:
                try:
                    ours[key] = _OPTIONS[key](value)
                except ValueError:
                    raise ValueError(f"store: option {key}={value!r} is not valid") from None
            else:
                theirs.append((key, value))
        timeout = float(ours.pop("timeout", 5.0))
        client = redis.Redis.from_url(
            urlunsplit(parts._replace(query=urlencode(theirs))),
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 2.0),
            retry=Retry(NoBackoff(), 1),  # one reconnect; the gRPC client retries beyond that
        )
        return cls(client, **{**ours, **kwargs})

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

    # -- streams -------------------------------------------------------------------------------
    def create(self, spec: StreamSpec, tenant: str = "") -> StreamRecord:
        if not spec.name:
            raise InvalidInputError("config.name", "a stream name", "an empty name")
        if spec.resolution.kind == "exact":
            raise InvalidInputError(
                "config.resolution",
                "a binned resolution ('bins' or 'bins:<m>') on a server with a Redis store",
                f"'{spec.resolution}'",
                "raw scores are not additive counts and are not shared between replicas; use "
                "bins (bounded error, reported bounds) or a single server with --data-dir",
            )
        k = self.keys
        token = uuid.uuid4().hex
        res = self._call(
            "create",
            "create",
            [k.streams, k.of(spec.name, "meta"), k.ids],
            [
                spec.name,
                json.dumps(spec.to_dict()),
                tenant,
                repr(self.clock()),
                self.max_streams,
                token,
            ],
        )
        status = _text(res[0])
        if status == "exists" and _text(res[1]) != token:
            raise AlreadyExistsError(spec.name)
        if status == "limit":
            raise LimitExceededError("streams", self.max_streams, int(res[1]) + 1)
        with self._lock:
            self._records.pop(spec.name, None)
            self._cache.forget(spec.name)
        return self.get(spec.name)

    def get(self, name: str) -> StreamRecord:
        return self._cached(name).record

    def _cached(self, name: str, fresh: bool = False) -> _Cached:
        with self._lock:
            cached = self._records.get(name)
        now = time.monotonic()
        if cached is not None and not fresh and now - cached.read_at < self.meta_ttl:
            return cached
        try:
            with self.redis_errors("stream lookup"):
                meta = self.client.hgetall(self.keys.of(name, "meta"))
        except StoreUnavailableError:
            if cached is not None:
                return cached  # queries may still answer from the last merged state
            raise
        if not meta:
            with self._lock:
                self._records.pop(name, None)
            raise NotFoundError(name)
        m = {_text(a): _text(b) for a, b in meta.items()}
        with self._lock:
            cached = self._records.get(name)
            if cached is not None and cached.uid == m["uid"]:
                self._refresh(cached, m.get("batches", "0"), m.get("update_time", ""), m["ver"])
                cached.read_at = now
                return cached
            spec = StreamSpec.from_dict(json.loads(m["spec"]))
            engine = SharedEngine(spec, self, int(m.get("batches", "0")))
            record = StreamRecord(spec, engine, float(m["create_time"]), tenant=m["tenant"])
            cached = _Cached(record, m["uid"], now)
            self._refresh(cached, m.get("batches", "0"), m.get("update_time", ""), m["ver"])
            self._records[name] = cached
            self._cache.forget(name)
            return cached

    @staticmethod
    def _refresh(cached: _Cached, batches: str, update_time: str, ver: str) -> None:
        engine = cached.record.engine
        assert isinstance(engine, SharedEngine)
        engine._n_batches = int(batches or 0)
        engine.version = f"{cached.uid}:{ver}"
        cached.record.update_time = float(update_time) if update_time else None

    def names(self) -> list[str]:
        with self.redis_errors("list streams"):
            return sorted(_text(n) for n in self.client.smembers(self.keys.streams))

    def delete(self, name: str) -> None:
        k = self.keys
        keys = [k.streams, *(k.of(name, w) for w in ("meta", "prod", "out", "commits", "cum"))]
        if not self._call("delete", "delete", [*keys, k.of(name, "buckets")], [name]):
            raise NotFoundError(name)
        with self._lock:
            self._records.pop(name, None)
            self._cache.forget(name)

    def reset(self, name: str, forget_producers: bool = False) -> StreamRecord:
        k = self.keys
        keys = [k.of(name, w) for w in ("meta", "prod", "out", "cum", "buckets")]
        if not self._call("reset", "reset", [*keys, k.ids], [int(forget_producers)]):
            raise NotFoundError(name)
        with self._lock:
            if forget_producers:
                for key in [key for key in self._buffer.chain if key[0] == name]:
                    del self._buffer.chain[key]
            self._seq_read = None
        return self._cached(name, fresh=True).record

    # -- ingest --------------------------------------------------------------------------------
    def expected_sequence(self, name: str, producer_id: str) -> int:
        with self._lock:
            return self._expected(name, producer_id)

    def _expected(self, name: str, producer: str) -> int:
        key = (name, producer)
        if key in self._buffer.chain:
            return self._buffer.chain[key] + 1
        slot = self._seq_read
        uid = self._cached(name).uid
        if (
            slot
            and slot[0] == key
            and slot[1] == uid
            and time.monotonic() - slot[3] < _SEQ_READ_REUSE
        ):
            return slot[2] + 1
        last = self._read_producer(name, producer)
        self._seq_read = (key, uid, last, time.monotonic())
        return last + 1

    def _read_producer(self, name: str, producer: str) -> int:
        """The producer's last sequence in Redis; checks that the stream is the one cached."""
        cached = self._cached(name)
        k = self.keys
        uid, last = self._call(
            "sequence check", "producer", [k.of(name, "meta"), k.of(name, "prod")], [producer]
        )
        if uid is None:
            self._records.pop(name, None)
            raise NotFoundError(name)
        if _text(uid) != cached.uid:
            self._records.pop(name, None)
            raise StoreUnavailableError(
                f"stream {name!r} was deleted and created again meanwhile; retry the batch"
            )
        return int(last or 0)

    def ingest(
        self,
        name: str,
        producer_id: str,
        sequence: int,
        batch: Batch | Exception | None,
        timestamp: float | None,
    ) -> BatchOutcome:
        cached = self._cached(name)
        with self._lock:
            if sequence:
                if not producer_id:
                    raise InvalidInputError(
                        "producer_id", "a producer id with a sequence", "an empty producer id"
                    )
                if sequence != self._expected(name, producer_id) or batch is None:
                    answer = self._resolve(name, producer_id, sequence, batch is not None)
                    if answer is not None:
                        return answer
            if batch is None:
                raise ValueError("a batch is needed for the expected sequence number")
            self._seq_read = None
            now = self.clock()
            entry = self._entry(cached, producer_id, sequence, batch, timestamp, now)
            if not sequence and entry.outcome.status == "rejected":
                return entry.outcome  # consumes nothing
            if self._buffer.pending_bytes + entry.nbytes > self.max_pending_bytes:
                raise StoreUnavailableError(
                    f"the local buffer holds {self._buffer.pending_bytes} bytes not yet in Redis "
                    f"(limit {self.max_pending_bytes}); retry once Redis answers"
                )
            self._buffer.add(name, cached.uid, cached.layout.size, entry)
            outcome = entry.outcome
            if sequence:
                outcome = replace(outcome, expected_sequence=sequence + 1)
            return outcome

    def _entry(
        self,
        cached: _Cached,
        producer: str,
        sequence: int,
        batch: Batch | Exception,
        timestamp: float | None,
        now: float,
    ) -> Entry:
        if isinstance(batch, Exception):
            code = (
                _RESOURCE_EXHAUSTED if isinstance(batch, LimitExceededError) else _INVALID_ARGUMENT
            )
            outcome = BatchOutcome("rejected", error_code=code, error_message=str(batch))
            return Entry(producer, sequence, outcome, [], [], now)
        t = now if timestamp is None else float(timestamp)
        if not math.isfinite(t):
            err = InvalidInputError("timestamp", "a finite number of seconds", repr(timestamp))
            outcome = BatchOutcome("rejected", error_code=_INVALID_ARGUMENT, error_message=str(err))
            return Entry(producer, sequence, outcome, [], [], now)
        spec = cached.record.spec
        name = spec.name
        targets = [(self.keys.of(name, "cum"), 0)]
        engine = cached.record.engine
        for ring in engine.windows.values():
            current = max(ring.bucket_of(now), ring.bucket_of(t))
            bid = ring.bucket_of(t)
            if bid <= current - ring.n_buckets:
                continue  # older than the window, as WindowRing.add
            expireat = math.ceil((bid + ring.n_buckets + 1) * ring.width)
            targets.append((self.keys.bucket(name, ring.seconds, bid), expireat))
        parts = cached.layout.parts(compute_delta(spec, batch))
        return Entry(
            producer, sequence, BatchOutcome("accepted", samples=batch.n), parts, targets, now
        )

    def _resolve(self, name: str, producer: str, seq: int, have_batch: bool) -> BatchOutcome | None:
        """Answer a sequence that is not the locally expected one, from Redis (authoritative).
        None: it is the expected one after all, and the caller has the batch."""
        key = (name, producer)
        last = self._read_producer(name, producer)
        mine = {
            e.seq: e for e in self._buffer.entries(name) if e.producer == producer and e.seq > last
        }
        top = last
        while top + 1 in mine:
            top += 1
        if top > last:
            self._buffer.chain[key] = top
        else:
            self._buffer.chain.pop(key, None)
        self._seq_read = None
        if seq <= top:
            if seq <= last:
                with self.redis_errors("outcome lookup"):
                    raw = self.client.hget(self.keys.of(name, "out"), outcome_field(producer, seq))
                seen = decode_outcome(raw)
            else:
                seen = mine[seq].outcome
            return BatchOutcome(
                "duplicate",
                samples=seen.samples if seen else 0,
                expected_sequence=top + 1,
                original_status=seen.status if seen else "accepted",
                error_code=seen.error_code if seen else 0,
                error_message=seen.error_message if seen else "",
            )
        if seq == top + 1:
            if have_batch:
                return None
            raise StoreUnavailableError(
                f"sequence {seq} of producer {producer!r} is the expected one (another replica "
                "advanced it); resend the batch"
            )
        return BatchOutcome(
            "rejected",
            error_code=_OUT_OF_RANGE,
            expected_sequence=top + 1,
            error_message=f"sequence: expected {top + 1} for producer {producer!r}, received "
            f"{seq} (a gap: batches {top + 1}..{seq - 1} were never acknowledged; resend them)",
        )

    # -- flush: buffered batches -> Redis ------------------------------------------------------
    def flush(self) -> None:
        """Commit every buffered batch; raises ``StoreUnavailableError`` if Redis did not confirm
        them all (they stay buffered, and the next flush sends them again: commits are
        idempotent)."""
        with self._lock:
            self._buffer.flush()

    # -- queries -------------------------------------------------------------------------------
    def state(self, name: str, window: str) -> State:
        return self._merged(name, window)[0]

    def _merged(
        self, name: str, window: str, retry: bool = True
    ) -> tuple[State, float | None, str]:
        """``(state, age, reason)``: age is None for a state confirmed by Redis just now."""
        cached = self._cached(name)
        engine = cached.record.engine
        assert isinstance(engine, SharedEngine)
        ring = engine.ring(window)
        now = self.clock()
        k = self.keys
        if ring is None:
            ck, bucket, logs = (name, CUMULATIVE), 0, [k.of(name, "cum")]
        else:
            bucket = ring.bucket_of(now)
            ck = (name, str(ring.seconds))
            logs = [
                k.bucket(name, ring.seconds, b)
                for b in range(bucket - ring.n_buckets + 1, bucket + 1)
            ]
        hit = self._cache.get(ck)
        usable = hit is not None and hit.uid == cached.uid and hit.bucket == bucket
        try:
            res = self._call(
                "query", "read", [k.of(name, "meta"), *logs], [hit.ver if usable and hit else ""]
            )
        except StoreUnavailableError as exc:
            if hit is not None and hit.uid == cached.uid and now - hit.read_at <= self.max_stale:
                return hit.state.copy(), max(0.0, now - hit.read_at), str(exc)
            raise StoreUnavailableError(
                f"{exc}; no merged state of {name!r} ({window or CUMULATIVE}) younger than "
                f"{self.max_stale:g} s to answer from"
            ) from exc
        if not res:
            with self._lock:
                self._records.pop(name, None)
            raise NotFoundError(name)
        uid, ver = _text(res[0]), _text(res[1])
        if uid != cached.uid:
            with self._lock:
                self._records.pop(name, None)
            if retry:
                return self._merged(name, window, retry=False)
            raise StoreUnavailableError(f"stream {name!r} was re-created meanwhile; retry")
        with self._lock:
            self._refresh(cached, _text(res[2]), _text(res[3]), ver)
        if len(res) == 4 and hit is not None:
            hit.read_at = now
            return hit.state.copy(), None, ""
        size = cached.layout.size
        total = np.zeros(size)
        for key, data in zip(logs, res[4:], strict=True):
            if not data:
                continue
            dense, listed = decode_log(data, size)
            total += dense
            if len(data) > self.compact_bytes and listed > 2 * np.count_nonzero(dense):
                self._due[key] = name
        state = cached.layout.state(total)
        self._cache.put(ck, Merged(uid, ver, bucket, state, now))
        return state.copy(), None, ""

    def report(
        self, name: str, window: str, curves: bool = False, max_points: int = 200
    ) -> dict[str, Any]:
        state, age, reason = self._merged(name, window)
        out = build_report(state, window=window or CUMULATIVE, curves=curves, max_points=max_points)
        if age is not None:
            out["staleness"] = {"age_seconds": round(age, 3), "reason": reason}
        return out

    def curve(
        self, name: str, window: str, kind: str, target: str, max_points: int = 200
    ) -> dict[str, Any]:
        return curve(self.state(name, window), kind, target, max_points)

    def records(self) -> list[StreamRecord]:
        """Streams for the Prometheus collector: all of them on the replica holding the export
        lease, none elsewhere (so series summed across replicas count each stream once)."""
        if self.export == "none" or (self.export == "lease" and not self.holds_export_lease()):
            return []
        out = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except NotFoundError:
                continue
        return out

    def holds_export_lease(self) -> bool:
        """Take or renew the export lease; False when another replica holds it, or no Redis."""
        try:
            ms = int(self.lease_seconds * 1000)
            return bool(
                self._call("export lease", "lease", [self.keys.exporter], [self.replica, ms])
            )
        except StoreUnavailableError:
            return False

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
            except StoreUnavailableError:
                pass  # the next round retries; ingestion reports it meanwhile
            except Exception:  # noqa: BLE001 - the thread must survive
                log.exception("background flush failed")

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
        dense, _ = decode_log(data, layout.size)
        nz = np.nonzero(dense != 0)[0]
        chunk = encode_chunk(nz, dense[nz])
        self._compacted[key] = len(chunk)
        if len(chunk) >= len(data):
            return False
        done = self._call(
            "compaction", "compact", [meta, key, self.keys.ids], [epoch, len(data), chunk]
        )
        self.stats["compactions"] += int(done)
        return bool(done)

    def close(self) -> None:
        """Stop the background thread, commit what is buffered, give the export lease back."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.flush()
        except StoreUnavailableError:
            log.error("closing with batches not in Redis (they were never acknowledged)")
        try:
            self._call("release lease", "release", [self.keys.exporter], [self.replica])
        except StoreUnavailableError:
            pass
        self.client.close()


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)

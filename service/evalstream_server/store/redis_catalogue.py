"""The Redis store's stream catalogue: stream definitions in Redis, read back and kept briefly.

Create, look up (a definition read from Redis is reused ``meta_ttl`` seconds), list, delete and
reset streams. A looked-up stream is a ``CachedStream``: its ``StreamRecord`` (whose engine is a
``SharedEngine``: counts stay in Redis), its ``uid`` (a new one when the stream is re-created, so
nothing prepared for the old stream is applied to the new one) and its flat count layout. Keys and
scripts are in ``redis_scripts``; what differs on a Redis Cluster in ``redis_cluster``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable

from ..engine import InvalidInputError, StreamSpec
from .base import (
    AlreadyExistsError,
    LimitExceededError,
    NotFoundError,
    StoreUnavailableError,
    StreamRecord,
    stream_key,
)
from .redis_cluster import create_in_cluster, delete_in_cluster, names_in_cluster
from .redis_connection import RedisConnection, text
from .redis_reads import MergedCache, SharedEngine
from .redis_rows import companions
from .sparse_log import FlatLayout

__all__ = ["CachedStream", "StreamCatalogue"]

EngineFactory = Callable[[StreamSpec, str, int], SharedEngine]  # (spec, key, batches)


class CachedStream:
    """A stream definition read from Redis: its record, its uid (changes when re-created), its
    flat count layout, and when it was read (``time.monotonic``)."""

    __slots__ = ("record", "uid", "layout", "read_at")

    def __init__(self, record: StreamRecord, uid: str, read_at: float) -> None:
        self.record, self.uid, self.read_at = record, uid, read_at
        self.layout = FlatLayout(record.spec)

    @property
    def engine(self) -> SharedEngine:
        engine = self.record.engine
        assert isinstance(engine, SharedEngine)
        return engine

    def refresh(self, batches: str, update_time: str, ver: str) -> None:
        """What the last read of the stream's metadata said (its version changes with every
        commit and reset)."""
        self.engine.n_batches = int(batches or 0)
        self.engine.version = f"{self.uid}:{ver}"  # type: ignore[assignment]
        self.record.update_time = float(update_time) if update_time else None


class StreamCatalogue:
    """Stream definitions of one Redis store.

    Parameters
    ----------
    conn : RedisConnection
    cache : MergedCache
        The merged states of the store's reads: a stream created or deleted drops its own.
    make_engine : callable
        ``make_engine(spec, key, batches)``: the ``SharedEngine`` of a stream read from Redis.
    clock : callable
        Wall clock (a stream's creation time).
    max_streams : int
    meta_ttl : float
        Seconds a definition read from Redis is reused.
    """

    def __init__(
        self,
        conn: RedisConnection,
        cache: MergedCache,
        make_engine: EngineFactory,
        *,
        clock: Callable[[], float],
        max_streams: int,
        meta_ttl: float,
    ) -> None:
        self.conn = conn
        self.cache = cache
        self.make_engine = make_engine
        self.clock = clock
        self.max_streams = max_streams
        self.meta_ttl = meta_ttl
        self._lock = threading.Lock()
        self._streams: dict[str, CachedStream] = {}

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
        key = stream_key(tenant, spec.name)
        if self.conn.keys.cluster:
            create_in_cluster(self.conn, spec, tenant, self.max_streams, self.clock())
        else:
            self._create(key, spec, tenant)
        self.forget(key)
        return self.get(key)

    def _create(self, key: str, spec: StreamSpec, tenant: str) -> None:
        k = self.conn.keys
        token = uuid.uuid4().hex  # tells a retried create whose reply was lost from a taken name
        definition = json.dumps(spec.to_dict())
        res = self.conn.call(
            "create",
            "create",
            [k.streams, k.of(key, "meta"), k.ids],
            [key, definition, tenant, repr(self.clock()), self.max_streams, token],
        )
        status = text(res[0])
        if status == "exists" and text(res[1]) != token:
            raise AlreadyExistsError(key)
        if status == "limit":
            raise LimitExceededError("streams", self.max_streams, int(res[1]) + 1)

    def get(self, name: str) -> StreamRecord:
        return self.cached(name).record

    def cached(self, name: str, fresh: bool = False) -> CachedStream:
        """The stream ``name``, read from Redis unless read less than ``meta_ttl`` ago (or, with
        Redis unreachable, as last read: queries may still answer from a merged state)."""
        with self._lock:
            cached = self._streams.get(name)
        now = time.monotonic()
        if cached is not None and not fresh and now - cached.read_at < self.meta_ttl:
            return cached
        try:
            with self.conn.errors("stream lookup"):
                meta = self.conn.client.hgetall(self.conn.keys.of(name, "meta"))
        except StoreUnavailableError:
            if cached is not None:
                return cached
            raise
        if not meta:
            self.forget(name)
            raise NotFoundError(name)
        m = {text(a): text(b) for a, b in meta.items()}
        with self._lock:
            cached = self._streams.get(name)
            if cached is None or cached.uid != m["uid"]:  # new, or deleted and created again
                spec = StreamSpec.from_dict(json.loads(m["spec"]))
                engine = self.make_engine(spec, name, int(m.get("batches", "0")))
                record = StreamRecord(spec, engine, float(m["create_time"]), tenant=m["tenant"])
                cached = CachedStream(record, m["uid"], now)
                self._streams[name] = cached
                self.cache.forget(name)
            cached.refresh(m.get("batches", "0"), m.get("update_time", ""), m["ver"])
            cached.read_at = now
            return cached

    def forget(self, name: str) -> None:
        """Drop what is cached of ``name`` (it was deleted or re-created meanwhile)."""
        with self._lock:
            self._streams.pop(name, None)
        self.cache.forget(name)

    def names(self) -> list[str]:
        if self.conn.keys.cluster:
            return names_in_cluster(self.conn)
        with self.conn.errors("list streams"):
            return sorted(text(n) for n in self.conn.client.smembers(self.conn.keys.streams))

    def delete(self, name: str) -> None:
        k = self.conn.keys
        if k.cluster:
            delete_in_cluster(self.conn, name)
        else:
            keys = [k.streams, *(k.of(name, w) for w in ("meta", "prod", "out", "commits"))]
            keys += [k.of(name, "cum"), k.of(name, "buckets"), *k.join(name), k.of(name, "seen")]
            keys += companions(k.of(name, "cum"))
            if not self.conn.call("delete", "delete", keys, [name]):
                raise NotFoundError(name)
        self.forget(name)

    def reset(self, name: str, forget_producers: bool = False) -> StreamRecord:
        k = self.conn.keys
        keys = [k.of(name, w) for w in ("meta", "prod", "out", "cum", "buckets")]
        keys += [k.ids_for(name), k.of(name, "seen"), *k.join(name), *companions(k.of(name, "cum"))]
        if not self.conn.call("reset", "reset", keys, [int(forget_producers)]):
            raise NotFoundError(name)
        return self.cached(name, fresh=True).record

"""Stream definitions of the Redis store: create, look up (cached ``meta_ttl`` seconds), list,
delete and reset. A mixin of ``RedisStore`` (``redis_store``); keys and scripts are in
``redis_scripts``."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import redis

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
from .redis_reads import MergedCache, SharedEngine
from .redis_scripts import Keys
from .sparse_log import FlatLayout

__all__ = ["CachedStream", "StreamsMixin", "text"]


def text(value: Any) -> str:
    """A Redis reply as ``str`` (``""`` for nil)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


class CachedStream:
    """A stream definition read from Redis: its record, its uid (changes when re-created), its
    flat count layout, and when it was read."""

    __slots__ = ("record", "uid", "layout", "read_at")

    def __init__(self, record: StreamRecord, uid: str, read_at: float) -> None:
        self.record, self.uid, self.read_at = record, uid, read_at
        self.layout = FlatLayout(record.spec)


class StreamsMixin:
    """Create, get, list, delete and reset streams (the ``Store`` methods on definitions)."""

    client: redis.Redis
    keys: Keys
    clock: Any
    max_streams: int
    meta_ttl: float
    _lock: threading.RLock
    _records: dict[str, CachedStream]
    _cache: MergedCache
    _buffer: Any

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
        key = stream_key(tenant, spec.name)
        if k.cluster:
            create_in_cluster(self, spec, tenant)
            with self._lock:
                self._records.pop(key, None)
                self._cache.forget(key)
            return self.get(key)
        token = uuid.uuid4().hex
        res = self._call(
            "create",
            "create",
            [k.streams, k.of(key, "meta"), k.ids],
            [
                key,
                json.dumps(spec.to_dict()),
                tenant,
                repr(self.clock()),
                self.max_streams,
                token,
            ],
        )
        status = text(res[0])
        if status == "exists" and text(res[1]) != token:
            raise AlreadyExistsError(key)
        if status == "limit":
            raise LimitExceededError("streams", self.max_streams, int(res[1]) + 1)
        with self._lock:
            self._records.pop(key, None)
            self._cache.forget(key)
        return self.get(key)

    def get(self, name: str) -> StreamRecord:
        return self._cached(name).record

    def _cached(self, name: str, fresh: bool = False) -> CachedStream:
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
        m = {text(a): text(b) for a, b in meta.items()}
        with self._lock:
            cached = self._records.get(name)
            if cached is not None and cached.uid == m["uid"]:
                self._refresh(cached, m.get("batches", "0"), m.get("update_time", ""), m["ver"])
                cached.read_at = now
                return cached
            spec = StreamSpec.from_dict(json.loads(m["spec"]))
            engine = SharedEngine(spec, self, int(m.get("batches", "0")), key=name)
            record = StreamRecord(spec, engine, float(m["create_time"]), tenant=m["tenant"])
            cached = CachedStream(record, m["uid"], now)
            self._refresh(cached, m.get("batches", "0"), m.get("update_time", ""), m["ver"])
            self._records[name] = cached
            self._cache.forget(name)
            return cached

    @staticmethod
    def _refresh(cached: CachedStream, batches: str, update_time: str, ver: str) -> None:
        engine = cached.record.engine
        assert isinstance(engine, SharedEngine)
        engine._n_batches = int(batches or 0)
        engine.version = f"{cached.uid}:{ver}"
        cached.record.update_time = float(update_time) if update_time else None

    def names(self) -> list[str]:
        if self.keys.cluster:
            return names_in_cluster(self)
        with self.redis_errors("list streams"):
            return sorted(text(n) for n in self.client.smembers(self.keys.streams))

    def delete(self, name: str) -> None:
        k = self.keys
        keys = [k.streams, *(k.of(name, w) for w in ("meta", "prod", "out", "commits", "cum"))]
        if k.cluster:
            delete_in_cluster(self, name)
        elif not self._call(
            "delete", "delete", [*keys, k.of(name, "buckets"), *k.join(name)], [name]
        ):
            raise NotFoundError(name)
        with self._lock:
            self._records.pop(name, None)
            self._cache.forget(name)

    def reset(self, name: str, forget_producers: bool = False) -> StreamRecord:
        k = self.keys
        keys = [k.of(name, w) for w in ("meta", "prod", "out", "cum", "buckets")]
        keys += [k.ids_for(name), *k.join(name)]
        if not self._call("reset", "reset", keys, [int(forget_producers)]):
            raise NotFoundError(name)
        with self._lock:
            if forget_producers:
                for key in [key for key in self._buffer.chain if key[0] == name]:
                    del self._buffer.chain[key]
        return self._cached(name, fresh=True).record

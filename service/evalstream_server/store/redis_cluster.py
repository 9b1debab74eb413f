"""Redis Cluster: the steps of the Redis store that touch more than one hash slot.

Every Lua script touches keys of one slot: a stream's keys share the hash tag ``{stream}``, its
id/epoch counter is ``P:{stream}:ids`` (kept when the stream is deleted, so a re-created stream
never reuses an id or an epoch), the set of live replicas is one key. Only the stream registry
``P:streams`` (a set, in its own slot) is updated outside the scripts, in this order:

- **create**: ``SADD`` the name, run ``create_slot`` (meta and ids, in the stream's slot), ``SADD``
  again. The second ``SADD`` comes after the stream exists, so it survives a delete racing with
  it (below); a replica that dies between steps leaves at most a registry entry without a stream,
  which ``names`` ignores. The limit on streams is checked against the registry's size read
  before the script: racing creates can pass it by their number.
- **delete**: run ``delete_slot`` (every key of the stream, bucket logs included), ``SREM`` the
  name, then check whether the stream exists again (created meanwhile) and ``SADD`` it back if so.
  Every step is idempotent; a replica that dies between them leaves a registry entry without a
  stream, ignored by ``names`` and removed by the next delete.
- **names**: the registry, filtered by ``EXISTS`` of each stream's meta.
- **commits**: one script per stream, sent one by one (``redis-py`` refuses scripts in cluster
  pipelines); each is atomic and idempotent as on one Redis.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis

from ..engine import StreamSpec
from .base import AlreadyExistsError, LimitExceededError, NotFoundError, stream_key
from .redis_connection import RedisConnection, text
from .redis_rows import companions

__all__ = ["create_in_cluster", "delete_in_cluster", "names_in_cluster", "send_one_by_one"]


def create_in_cluster(
    conn: RedisConnection, spec: StreamSpec, tenant: str, max_streams: int, now: float
) -> None:
    k = conn.keys
    key = stream_key(tenant, spec.name)
    token = uuid.uuid4().hex
    with conn.errors("create"):
        conn.client.sadd(k.streams, key)
        count = int(conn.client.scard(k.streams)) - 1  # the registry holds this name now
    res = conn.call(
        "create",
        "create_slot",
        [k.of(key, "meta"), k.ids_for(key)],
        [key, json.dumps(spec.to_dict()), tenant, repr(now), max_streams] + [token, max(0, count)],
    )
    status = text(res[0])
    if status == "limit":
        _forget_if_absent(conn, key)
        raise LimitExceededError("streams", max_streams, int(res[1]) + 1)
    with conn.errors("create"):
        conn.client.sadd(k.streams, key)
    if status == "exists" and text(res[1]) != token:
        raise AlreadyExistsError(key)


def delete_in_cluster(conn: RedisConnection, name: str) -> None:
    k = conn.keys
    keys = [k.of(name, w) for w in ("meta", "prod", "out", "commits", "cum", "buckets")]
    keys += [*k.join(name), k.of(name, "seen"), *companions(k.of(name, "cum"))]
    deleted = conn.call("delete", "delete_slot", keys, [])
    _forget_if_absent(conn, name)
    if not deleted:
        raise NotFoundError(name)


def _forget_if_absent(conn: RedisConnection, name: str) -> None:
    """``SREM`` the name, then put it back if the stream exists (a create raced with us)."""
    k = conn.keys
    with conn.errors("delete"):
        conn.client.srem(k.streams, name)
        if conn.client.exists(k.of(name, "meta")):
            conn.client.sadd(k.streams, name)


def names_in_cluster(conn: RedisConnection) -> list[str]:
    k = conn.keys
    with conn.errors("list streams"):
        listed = sorted(text(n) for n in conn.client.smembers(k.streams))
        return [n for n in listed if conn.client.exists(k.of(n, "meta"))]


def send_one_by_one(conn: RedisConnection, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
    """Commit scripts one at a time; a failure is returned in its place (as a pipeline's
    ``execute(raise_on_error=False)`` does), a connection failure is raised."""
    out: list[Any] = []
    for keys, args in calls:
        try:
            out.append(conn.scripts.call(conn.client, "commit", keys, args))
        except (redis.ConnectionError, redis.TimeoutError):
            raise
        except redis.RedisError as exc:
            out.append(exc)
    return out

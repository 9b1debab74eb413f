"""Redis data written before stream names were per tenant: a tenant's stream ``fraud`` was filed
under ``P:{fraud}:*``; it is now under ``P:{team-a/fraud}:*`` (``stream_key``). ``RedisStore``
moves such streams when it starts.

On one Redis a stream moves in one script (atomic: a replica sees it under the old keys or the
new ones, never half). On a Redis Cluster the old and the new keys lie in different slots: every
key is copied (``DUMP``/``RESTORE`` with its expiry) and then deleted, the stream's metadata last,
so a replica that dies midway leaves the stream under its old name, and the next start finishes
the move. Migrate a cluster with the older replicas stopped.
"""

from __future__ import annotations

import logging
from typing import Any

from .base import stream_key

__all__ = ["migrate_tenant_keys"]

log = logging.getLogger("evalstream.store")

# The per-stream keys besides the window bucket logs and their rows and samples (listed in
# ``buckets``); ``meta`` last. ``ids`` exists on a cluster only (the stream's id and epoch
# counter, in its slot).
_SUFFIXES = (
    "prod", "out", "seen", "commits", "cum", "cum:rows", "cum:smp", "pend", "pq", "done", "dq",
    "jc", "ids", "buckets", "meta",
)  # fmt: skip

# ARGV: registry, old prefix "P:{name}:", new prefix "P:{key}:", name, key, suffixes...
_MOVE = """
local registry, old, new = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', old .. 'meta') == 0 then return 0 end
if redis.call('EXISTS', new .. 'meta') == 1 then return -1 end
local zset = old .. 'buckets'
local moved = {}
local listed = redis.call('ZRANGE', zset, 0, -1, 'WITHSCORES')
for i = 1, #listed, 2 do
  local member, score = listed[i], listed[i + 1]
  local target = new .. string.sub(member, #old + 1)
  if redis.call('EXISTS', member) == 1 then redis.call('RENAME', member, target) end
  moved[#moved + 1] = score
  moved[#moved + 1] = target
end
for k = 6, #ARGV do
  if redis.call('EXISTS', old .. ARGV[k]) == 1 then
    redis.call('RENAME', old .. ARGV[k], new .. ARGV[k])
  end
end
if #moved > 0 then
  redis.call('DEL', new .. 'buckets')
  redis.call('ZADD', new .. 'buckets', unpack(moved))
end
redis.call('SREM', registry, ARGV[4])
redis.call('SADD', registry, ARGV[5])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def migrate_tenant_keys(client: Any, keys: Any) -> int:
    """Move every tenant's stream still filed under its bare name; the number moved."""
    moved = 0
    for name in sorted(_text(n) for n in client.smembers(keys.streams)):
        if "/" in name:
            continue
        tenant = _text(client.hget(keys.of(name, "meta"), "tenant") or b"")
        if not tenant:
            continue  # the open server's streams keep their bare names
        key = stream_key(tenant, name)
        old, new = keys.of(name, ""), keys.of(key, "")
        if keys.cluster:
            done = _copy_across_slots(client, keys, name, key, old, new)
        else:
            done = client.eval(_MOVE, 0, keys.streams, old, new, name, key, *_SUFFIXES)
        if int(done) == -1:
            raise RuntimeError(
                f"redis: stream {name!r} of tenant {tenant!r} is filed both under its old key "
                f"{old}* and its new one {new}*; expected one (remove the stale one by hand)"
            )
        moved += int(done)
    if moved:
        log.info("redis stream keys migrated to tenant/name", extra={"streams": moved})
    return moved


def _copy_across_slots(client: Any, keys: Any, name: str, key: str, old: str, new: str) -> int:
    if client.exists(new + "meta"):
        if any(client.exists(old + s) for s in _SUFFIXES if s != "meta"):
            return -1
        client.sadd(keys.streams, key)  # a move that stopped after its last copy: finish it
        client.delete(old + "meta")
        client.srem(keys.streams, name)
        return 1
    buckets = [(_text(m), s) for m, s in client.zrange(old + "buckets", 0, -1, withscores=True)]
    sources = [m for m, _ in buckets] + [old + s for s in _SUFFIXES]
    for source in sources:  # "meta" last: until it moves, the stream is where it was
        dumped = client.dump(source)
        if dumped is None:
            continue
        target = new + source[len(old) :]
        ttl = max(0, int(client.pttl(source)))
        client.restore(target, ttl, dumped, replace=True)
        if source == old + "buckets" and buckets:
            client.delete(target)
            client.zadd(target, {new + m[len(old) :]: s for m, s in buckets})
        if source != old + "meta":
            client.delete(source)
    client.sadd(keys.streams, key)
    client.delete(old + "meta")
    client.srem(keys.streams, name)
    return 1

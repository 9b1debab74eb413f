"""Key layout and server-side Lua scripts of the Redis store.

Every change to shared state is one script, so it is atomic: a commit checks the producer
sequences *and* appends the counts in one step, and a replica that dies between two scripts
leaves nothing half-applied. Keys of one stream share the hash tag ``{name}``.

Keys (``P`` is the prefix, default ``evalstream``)::

    P:streams                  SET     stream names
    P:ids                      STRING  counter: stream ids and log epochs (on a Redis Cluster
                                       P:{s}:ids, one per stream: ``redis_cluster``)
    P:replicas                 ZSET    live replica id -> when its announcement expires (ms,
                                       Redis's clock): who shares the export (``redis_export``)
    P:{s}:meta                 HASH    spec, tenant, create_time, uid, epoch, ver, batches,
                                       update_time
    P:{s}:prod                 HASH    producer -> last consumed sequence
    P:{s}:out                  HASH    "producer\\nseq" -> recorded outcome (last 4096/producer)
    P:{s}:seen                 ZSET    producer -> time of its last committed batch (seconds):
                                       one idle for the producer retention is forgotten
    P:{s}:commits              HASH    replica id -> last commit number applied (idempotence)
    P:{s}:cum                  STRING  sparse log of the cumulative counts
    P:{s}:w:<seconds>:<bucket> STRING  sparse log of one window bucket (EXPIREAT its end)
    <log>:rows, <log>:smp      STRING  beside each log above: its raw rows while small and its
                                       row sample (``redis_rows``; a bucket's expire with it)
    P:{s}:w:<seconds>:ring     HASH    a window's buckets: samples and rows kept (``redis_rows``)
    P:{s}:buckets              ZSET    bucket key (and its rows and sample keys) -> expiry (reset
                                       and delete find them here)
    P:{s}:stage:<replica>:<n>  STRING  a large commit's payload, staged in chunks (EXPIRE 600)
    P:{s}:pend pq done dq jc           the join table of delayed labels (``redis_join_scripts``)

``uid`` names one incarnation of a stream (a commit for a deleted or re-created stream is
refused); ``epoch`` changes whenever a log's prefix is rewritten (compaction, reset), so a
compaction never replaces bytes it did not read; ``ver`` changes with every commit and reset, so a
replica revalidates a cached merged state with one small read.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster

from .redis_join_scripts import JOIN_SOURCES
from .redis_rows import ROWS_LUA

__all__ = ["Keys", "Scripts"]


class Keys:
    """Key names for one prefix."""

    def __init__(self, prefix: str, cluster: bool = False) -> None:
        self.prefix = prefix
        self.cluster = cluster
        self.streams = f"{prefix}:streams"
        self.ids = f"{prefix}:ids"
        self.replicas = f"{prefix}:replicas"

    def ids_for(self, stream: str) -> str:
        """The counter of ``stream``'s ids and epochs: one shared key on one Redis; on a cluster a
        key in the stream's slot, kept when the stream is deleted (so a re-created stream never
        reuses an id or an epoch)."""
        return self.of(stream, "ids") if self.cluster else self.ids

    def of(self, stream: str, what: str) -> str:
        return f"{self.prefix}:{{{stream}}}:{what}"

    def bucket(self, stream: str, seconds: int, bucket: int) -> str:
        return self.of(stream, f"w:{seconds}:{bucket}")

    def stage(self, stream: str, replica: str, number: int) -> str:
        return self.of(stream, f"stage:{replica}:{number}")

    def join(self, stream: str) -> list[str]:
        """The join table of delayed labels: ``pend pq done dq jc`` (``redis_join_scripts``)."""
        return [self.of(stream, w) for w in ("pend", "pq", "done", "dq", "jc")]


# KEYS: meta prod out commits buckets stage seen target...
# ARGV: uid replica number now n_batches mode inline n_entries, then per sequenced entry
#       (producer, seq, outcome field, outcome, trim field); then per target (offset, length,
#       expireat or 0, rows offset, rows length, samples, sample offset, sample length, rows cap,
#       current bucket, buckets: 0 for the cumulative log). Rows of length 0 with samples > 0 were
#       left out by the replica (it expects them dropped): {'rows'} if they are needed.
# Reply: {'ok', length of each target log..., 1/0 rows kept of each target..., length of each
#        target's sample log...}, {'done'}, {'gone'}, {'conflict', producer, last, seq}, {'rows'}
_COMMIT = (
    ROWS_LUA
    + """
local meta, prod, out, commits, zset, stage = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if redis.call('HGET', meta, 'uid') ~= ARGV[1] then
  if ARGV[6] == 'staged' then redis.call('DEL', stage) end
  return {'gone'}
end
if tonumber(redis.call('HGET', commits, ARGV[2]) or '0') >= tonumber(ARGV[3]) then
  if ARGV[6] == 'staged' then redis.call('DEL', stage) end
  return {'done'}
end
local n = tonumber(ARGV[8])
local seen = {}
for k = 0, n - 1 do
  local p, seq = ARGV[9 + 5 * k], tonumber(ARGV[10 + 5 * k])
  local last = seen[p] or tonumber(redis.call('HGET', prod, p) or '0')
  if last ~= seq - 1 then return {'conflict', p, tostring(last), tostring(seq)} end
  seen[p] = seq
end
local function data(off, len)
  if len == 0 then return '' end
  if ARGV[6] == 'inline' then return string.sub(ARGV[7], off + 1, off + len) end
  return redis.call('GETRANGE', stage, off, off + len - 1)
end
local first = 9 + 5 * n
local function arg(t, j) return tonumber(ARGV[first + 11 * (t - 8) + j]) end
for t = 8, #KEYS do  -- the rows first, without writing: left-out rows may be needed
  local nrows = arg(t, 5)
  if nrows > 0 or arg(t, 10) > 0 then  -- rows, or a window bucket (the ring lists it)
    local rows = false
    if arg(t, 4) > 0 then rows = data(arg(t, 3), arg(t, 4)) end
    if not rows_plan(KEYS[t], rows, nrows, arg(t, 8), arg(t, 9), arg(t, 10), arg(t, 2)) then
      if ARGV[6] == 'staged' then redis.call('DEL', stage) end
      return {'rows'}
    end
  end
end
for k = 0, n - 1 do
  local i = 9 + 5 * k
  redis.call('HSET', prod, ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[7], ARGV[4], ARGV[i])
  redis.call('HSET', out, ARGV[i + 2], ARGV[i + 3])
  if ARGV[i + 4] ~= '' then redis.call('HDEL', out, ARGV[i + 4]) end
end
rows_apply(zset)
local lengths, kept, samples = {'ok'}, {}, {}
for t = 8, #KEYS do
  local exp = arg(t, 2)
  lengths[#lengths + 1] = redis.call('APPEND', KEYS[t], data(arg(t, 0), arg(t, 1)))
  if exp > 0 then
    redis.call('EXPIREAT', KEYS[t], exp)
    redis.call('ZADD', zset, exp, KEYS[t])
  end
  kept[#kept + 1] = rows_kept(KEYS[t])
  samples[#samples + 1] = sample_append(KEYS[t], data(arg(t, 6), arg(t, 7)), exp, zset)
end
for _, v in ipairs(kept) do lengths[#lengths + 1] = v end
for _, v in ipairs(samples) do lengths[#lengths + 1] = v end
local now = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. math.floor(now))
redis.call('HINCRBY', meta, 'batches', ARGV[5])
if now > tonumber(redis.call('HGET', meta, 'update_time') or '0') then
  redis.call('HSET', meta, 'update_time', ARGV[4])
end
redis.call('HINCRBY', meta, 'ver', 1)
redis.call('HSET', commits, ARGV[2], ARGV[3])
if ARGV[6] == 'staged' then redis.call('DEL', stage) end
return lengths
"""
)

# KEYS: streams meta ids   ARGV: name spec tenant create_time max_streams token
# (the token tells a retried create whose first reply was lost from a name already taken)
_CREATE = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'exists', redis.call('HGET', KEYS[2], 'token') or ''}
end
local count = redis.call('SCARD', KEYS[1])
if count >= tonumber(ARGV[5]) then return {'limit', tostring(count)} end
local uid = redis.call('INCR', KEYS[3])
local epoch = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], 'spec', ARGV[2], 'tenant', ARGV[3], 'create_time', ARGV[4],
           'uid', uid, 'epoch', epoch, 'ver', 0, 'batches', 0, 'token', ARGV[6])
redis.call('SADD', KEYS[1], ARGV[1])
return {'ok', tostring(uid)}
"""

# Cluster: one slot per script. KEYS: meta ids   ARGV: name spec tenant create_time max_streams
# token count (the registry's size, read before: the limit is approximate under racing creates)
_CREATE_SLOT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists', redis.call('HGET', KEYS[1], 'token') or ''}
end
if tonumber(ARGV[7]) >= tonumber(ARGV[5]) then return {'limit', ARGV[7]} end
local uid = redis.call('INCR', KEYS[2])
local epoch = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'spec', ARGV[2], 'tenant', ARGV[3], 'create_time', ARGV[4],
           'uid', uid, 'epoch', epoch, 'ver', 0, 'batches', 0, 'token', ARGV[6])
return {'ok', tostring(uid)}
"""

# Cluster: KEYS: meta prod out commits cum buckets, then the join table's keys and the others
# (the registry entry is removed after)
_DELETE_SLOT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, k in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do redis.call('DEL', k) end
for k = 1, #KEYS do redis.call('DEL', KEYS[k]) end
return 1
"""

# KEYS: streams meta prod out commits cum buckets, then the join table's keys and the others
# ARGV: name
_DELETE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
for _, k in ipairs(redis.call('ZRANGE', KEYS[7], 0, -1)) do redis.call('DEL', k) end
for k = 2, #KEYS do redis.call('DEL', KEYS[k]) end
redis.call('SREM', KEYS[1], ARGV[1])
return 1
"""

# KEYS: meta prod out cum buckets ids seen, then the join table's keys and the cumulative log's
# rows and sample keys
# ARGV: forget_producers (0/1)
_RESET = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, k in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do redis.call('DEL', k) end
redis.call('DEL', KEYS[4], KEYS[5])
for k = 8, #KEYS do redis.call('DEL', KEYS[k]) end
if ARGV[1] == '1' then redis.call('DEL', KEYS[2], KEYS[3], KEYS[7]) end
redis.call('HSET', KEYS[1], 'epoch', redis.call('INCR', KEYS[6]), 'batches', 0)
redis.call('HINCRBY', KEYS[1], 'ver', 1)
return 1
"""

# KEYS: meta target...   ARGV: cached ver ('' for none)
# Returns {} for a missing stream, {uid, ver, batches, update_time} when ARGV[1] is current,
# else the same four followed by every target's log, its raw rows and its row sample
# (``redis_rows``: the companion keys of a log share its hash tag).
_READ = """
local m = redis.call('HMGET', KEYS[1], 'uid', 'ver', 'batches', 'update_time')
if not m[1] then return {} end
local out = {m[1], m[2], m[3] or '0', m[4] or ''}
if m[2] == ARGV[1] then return out end
for k = 2, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[k]) or ''
  out[#out + 1] = redis.call('GET', KEYS[k] .. ':rows') or ''
  out[#out + 1] = redis.call('GET', KEYS[k] .. ':smp') or ''
end
return out
"""

# KEYS: meta key   Returns {epoch, log}
_READ_LOG = """
return {redis.call('HGET', KEYS[1], 'epoch') or '', redis.call('GET', KEYS[2]) or ''}
"""

# KEYS: meta key ids   ARGV: epoch, length read, compacted bytes
_COMPACT = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
local n = redis.call('STRLEN', KEYS[2])
local read = tonumber(ARGV[2])
if n < read then return 0 end
local tail = ''
if n > read then tail = redis.call('GETRANGE', KEYS[2], read, n - 1) end
redis.call('SET', KEYS[2], ARGV[3] .. tail, 'KEEPTTL')
redis.call('HSET', KEYS[1], 'epoch', redis.call('INCR', KEYS[3]))
return 1
"""

# KEYS: meta prod out seen   ARGV: uid, idle limit (seconds: forget the producers whose last
# batch is this old or older), now, outcomes kept per producer
# Forgets idle producers: their last sequence, outcomes and time. A producer without a time
# (written before times were kept) gets ``now``. Returns the number forgotten, -1 for a stream
# that is gone.
_FORGET_IDLE = """
if redis.call('HGET', KEYS[1], 'uid') ~= ARGV[1] then return -1 end
if redis.call('HLEN', KEYS[2]) > redis.call('ZCARD', KEYS[4]) then
  for _, p in ipairs(redis.call('HKEYS', KEYS[2])) do
    if not redis.call('ZSCORE', KEYS[4], p) then redis.call('ZADD', KEYS[4], ARGV[3], p) end
  end
end
local idle = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[2])
for _, p in ipairs(idle) do
  local last = tonumber(redis.call('HGET', KEYS[2], p) or '0')
  for seq = math.max(last - tonumber(ARGV[4]) + 1, 1), last do
    redis.call('HDEL', KEYS[3], p .. '\\n' .. seq)
  end
  redis.call('HDEL', KEYS[2], p)
  redis.call('ZREM', KEYS[4], p)
end
return #idle
"""

# KEYS: meta prod   ARGV: producer   Returns {uid or false, last or false}
_PRODUCER = """
return {redis.call('HGET', KEYS[1], 'uid'), redis.call('HGET', KEYS[2], ARGV[1])}
"""

# KEYS: replicas   ARGV: replica, ttl ms   Announces the replica until now + ttl (Redis's clock),
# drops expired ones; returns every live replica id
_ANNOUNCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS: replicas   ARGV: replica
_LEAVE = """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

_SOURCES = {
    "commit": _COMMIT,
    "create": _CREATE,
    "create_slot": _CREATE_SLOT,
    "delete_slot": _DELETE_SLOT,
    "delete": _DELETE,
    "reset": _RESET,
    "read": _READ,
    "read_log": _READ_LOG,
    "compact": _COMPACT,
    "producer": _PRODUCER,
    "forget_idle": _FORGET_IDLE,
    "announce": _ANNOUNCE,
    "leave": _LEAVE,
    **JOIN_SOURCES,
}


class Scripts:
    """The scripts by name, called with ``EVALSHA`` (loaded again after a Redis restart)."""

    def __init__(self) -> None:
        self.sha = {name: _sha1(src) for name, src in _SOURCES.items()}

    def load(self, client: redis.Redis | RedisCluster) -> None:
        for src in _SOURCES.values():
            client.script_load(src)

    def call(
        self, client: redis.Redis | RedisCluster, name: str, keys: list[str], args: list[Any]
    ) -> Any:
        """Run one script now; loads the scripts once if Redis lost them (a restart)."""
        try:
            return client.evalsha(self.sha[name], len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self.load(client)
            return client.evalsha(self.sha[name], len(keys), *keys, *args)

    def queue(self, pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
        """Add one script call to a pipeline (``NoScriptError`` comes back in its results)."""
        pipe.evalsha(self.sha[name], len(keys), *keys, *args)


def _sha1(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

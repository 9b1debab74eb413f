"""Lua scripts of delayed labels on the Redis store: the join table of predictions awaiting labels.

The table of one stream is five keys in the stream's hash slot (``Keys.join``)::

    P:{s}:pend  HASH  id -> row: arrival time, prediction time (float64 each), scores (float32)
    P:{s}:pq    ZSET  id -> insertion number (the table's arrival order: eviction and expiry
                      take the lowest first)
    P:{s}:done  HASH  id -> "kind:when" tombstone (1 joined, 2 expired or evicted)
    P:{s}:dq    ZSET  id -> insertion number of the tombstone (the oldest go first)
    P:{s}:jc    HASH  the JOIN_COUNTERS since creation or reset, and "pending" (the table's size
                      at its last change)

Insertion numbers come from the meta hash's ``jorder`` counter, which a reset keeps: a number read
before a reset never names a row inserted after it. The rules are those of
``engine.pending.PendingPredictions``, run here on the table in Redis:

- every operation first expires (``expire``): rows that arrived more than the retention ago, oldest
  first, stopping at the first younger one; tombstones older than the retention or past
  ``max_pending``. The four table keys also get ``EXPIRE`` retention + 60 s at every change: a table
  left alone that long holds nothing alive, and the next operation counts the rows Redis dropped
  (the ``pending`` field) as expired.
- ``join_predict`` stores the predictions whose id is neither pending nor a tombstone (the first
  row of an id repeated in the batch), evicting the oldest rows past ``max_pending``; the replica
  sends the presence it assumed for every distinct id and the delta of the rows it took as new, and
  the script refuses (``conflict``, with the presence it found) if Redis disagrees.
- ``join_read`` returns the insertion number and row of every pending id of a label batch;
  ``join_label`` checks that each row the replica joined is still pending under the number it read
  (else ``conflict``: another replica joined it, or it expired), takes them out, writes their
  tombstones and classifies the other labels (duplicate, expired, unknown) itself.

Both commits check the stream's uid, the producer sequence and the replica's commit number, and
append the delta to the cumulative and window logs exactly as the ``commit`` script does, with
the joined pairs' raw rows and row sample (``redis_rows``), in the same run: the table change,
the counts, the rows and the sequence are one atomic step.
"""

from __future__ import annotations

import struct

from .redis_rows import ROWS_LUA

__all__ = ["JOIN_SOURCES", "TTL_MARGIN", "pack_ids"]

TTL_MARGIN = 60  # seconds past the retention that an untouched table's keys live


def pack_ids(ids: list[str]) -> bytes:
    """Ids as one argument: each one's UTF-8 bytes after their length (big-endian uint16), so a
    4096-row batch is one string for Redis instead of 4096 arguments (3x less client time)."""
    parts = []
    for key in ids:
        raw = key.encode()
        parts.append(struct.pack(">H", len(raw)) + raw)
    return b"".join(parts)


# T: the table's keys. Functions shared by every join script.
_PRELUDE = """
-- ids packed end to end, each after its byte length as a big-endian uint16 (pack_ids)
local function unpack_ids(blob)
  local out, pos, len = {}, 1, 0
  while pos <= #blob do
    len, pos = struct.unpack('>H', blob, pos)
    out[#out + 1] = string.sub(blob, pos, pos + len - 1)
    pos = pos + len
  end
  return out
end

-- one variadic command per 4000 arguments (unpack's stack limit); replies concatenated
local function bulk(cmd, key, args)
  local out = {}
  for i = 1, #args, 4000 do
    local part = redis.call(cmd, key, unpack(args, i, math.min(i + 3999, #args)))
    if type(part) == 'table' then
      for k = 1, #part do out[#out + 1] = part[k] end
    end
  end
  return out
end

local function order(T, k) return redis.call('HINCRBY', T.meta, 'jorder', k) end

-- tombstones of kind 1 (joined) or 2 (expired, evicted) for distinct ids, in list order
local function tombs(T, list, kind, now_s)
  if #list == 0 then return end
  local top, value = order(T, #list), kind .. ':' .. now_s
  local h, z = {}, {}
  for j, id in ipairs(list) do
    h[#h + 1], h[#h + 2] = id, value
    z[#z + 1], z[#z + 2] = top - #list + j, id
  end
  bulk('HSET', T.done, h)
  bulk('ZADD', T.dq, z)
end

local function trim(T, max)
  local extra = redis.call('ZCARD', T.dq) - max
  if extra > 0 then
    local popped, gone = redis.call('ZPOPMIN', T.dq, extra), {}
    for i = 1, #popped, 2 do gone[#gone + 1] = popped[i] end
    bulk('HDEL', T.done, gone)
  end
end

local function expire(T, now, now_s, retention, max)
  if redis.call('EXISTS', T.pq) == 0 or redis.call('EXISTS', T.pend) == 0 then
    local left = tonumber(redis.call('HGET', T.jc, 'pending') or '0')
    if left > 0 then
      redis.call('HINCRBY', T.jc, 'expired', left)
      redis.call('HSET', T.jc, 'pending', 0)
    end
    redis.call('DEL', T.pq, T.pend)
  end
  if redis.call('EXISTS', T.dq) == 0 or redis.call('EXISTS', T.done) == 0 then
    redis.call('DEL', T.dq, T.done)
  end
  local limit = now - retention
  local dead, start, stop = {}, 0, false
  while not stop do
    local heads = redis.call('ZRANGE', T.pq, start, start + 255)
    if #heads == 0 then break end
    local rows = redis.call('HMGET', T.pend, unpack(heads))
    for k = 1, #heads do
      if rows[k] and struct.unpack('<d', rows[k]) >= limit then stop = true break end
      dead[#dead + 1] = heads[k]
    end
    start = start + 256
  end
  if #dead > 0 then
    bulk('ZREM', T.pq, dead)
    bulk('HDEL', T.pend, dead)
    tombs(T, dead, 2, now_s)
    redis.call('HINCRBY', T.jc, 'expired', #dead)
    redis.call('HSET', T.jc, 'pending', redis.call('ZCARD', T.pq))
  end
  local count, gone = redis.call('ZCARD', T.dq), {}
  start, stop = 0, false
  while not stop do
    local heads = redis.call('ZRANGE', T.dq, start, start + 255)
    if #heads == 0 then break end
    local values = redis.call('HMGET', T.done, unpack(heads))
    for k = 1, #heads do
      local v = values[k]
      if v and tonumber(string.sub(v, 3)) >= limit and count <= max then stop = true break end
      gone[#gone + 1] = heads[k]
      count = count - 1
    end
    start = start + 256
  end
  if #gone > 0 then
    bulk('ZREM', T.dq, gone)
    bulk('HDEL', T.done, gone)
  end
  return #dead
end

local function keep(T, ttl)
  for _, k in ipairs({T.pend, T.pq, T.done, T.dq}) do redis.call('EXPIRE', k, ttl) end
  redis.call('HSET', T.jc, 'pending', redis.call('ZCARD', T.pq))
end
"""

# Commits. KEYS: meta prod out commits buckets pend pq done dq jc seen target...
# ARGV: 1 uid, 2 replica, 3 commit number, 4 now, 5 retention, 6 max_pending, 7 ttl,
#       8 producer ('' unsequenced), 9 seq, 10 outcome field, 11 trimmed outcome field or '',
#       12 payload, 13 number of targets, then per target (offset, length, expireat, rows offset,
#       rows length, samples, sample offset, sample length, rows cap, current bucket, buckets) as
#       in the ``commit`` script, then the operation's arguments. Reply: {'ok', five join counts,
#       each target's log length..., 1/0 rows kept..., sample log length...}, or {'rows'} (rows
#       left out are needed: nothing but expiry written) and the other refusals.
_COMMIT_HEAD = """
local T = {meta = KEYS[1], pend = KEYS[6], pq = KEYS[7], done = KEYS[8], dq = KEYS[9],
           jc = KEYS[10]}
if redis.call('HGET', KEYS[1], 'uid') ~= ARGV[1] then return {'gone'} end
if tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0') >= tonumber(ARGV[3]) then
  return {'done'}
end
if ARGV[8] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[2], ARGV[8]) or '0')
  if last ~= tonumber(ARGV[9]) - 1 then return {'seq', tostring(last)} end
end
local now_s = ARGV[4]
local now, retention, max, ttl = tonumber(now_s), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local n_targets = tonumber(ARGV[13])
local a = 14 + 11 * n_targets
expire(T, now, now_s, retention, max)
local function arg(t, j) return tonumber(ARGV[14 + 11 * (t - 1) + j]) end
local function data(off, len) return string.sub(ARGV[12], off + 1, off + len) end
for t = 1, n_targets do  -- the rows first, before the operation writes: left-out rows may be needed
  if arg(t, 5) > 0 or arg(t, 10) > 0 then
    local rows = false
    if arg(t, 4) > 0 then rows = data(arg(t, 3), arg(t, 4)) end
    if not rows_plan(KEYS[11 + t], rows, arg(t, 5), arg(t, 8), arg(t, 9), arg(t, 10), arg(t, 2))
    then
      return {'rows'}
    end
  end
end

local function finish(counts, rows)
  local outcome = string.format('["a",%d,[%d,%d,%d,%d,%d]]', rows, counts[1], counts[2],
                                counts[3], counts[4], counts[5])
  if ARGV[8] ~= '' then
    redis.call('HSET', KEYS[2], ARGV[8], ARGV[9])
    redis.call('ZADD', KEYS[11], now_s, ARGV[8])
    redis.call('HSET', KEYS[3], ARGV[10], outcome)
    if ARGV[11] ~= '' then redis.call('HDEL', KEYS[3], ARGV[11]) end
  end
  local reply = {'ok', counts[1], counts[2], counts[3], counts[4], counts[5]}
  rows_apply(KEYS[5])
  local kept, samples = {}, {}
  for t = 1, n_targets do
    local key, exp = KEYS[11 + t], arg(t, 2)
    reply[#reply + 1] = redis.call('APPEND', key, data(arg(t, 0), arg(t, 1)))
    if exp > 0 then
      redis.call('EXPIREAT', key, exp)
      redis.call('ZADD', KEYS[5], exp, key)
    end
    kept[#kept + 1] = rows_kept(key)
    samples[#samples + 1] = sample_append(key, data(arg(t, 6), arg(t, 7)), exp, KEYS[5])
  end
  for _, v in ipairs(kept) do reply[#reply + 1] = v end
  for _, v in ipairs(samples) do reply[#reply + 1] = v end
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. math.floor(now))
  redis.call('HINCRBY', KEYS[1], 'batches', 1)
  if now > tonumber(redis.call('HGET', KEYS[1], 'update_time') or '0') then
    redis.call('HSET', KEYS[1], 'update_time', now_s)
  end
  redis.call('HINCRBY', KEYS[1], 'ver', 1)
  redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
  return reply
end
"""

# Operation arguments: rows in the batch, the distinct ids (packed), a string of one presence
# flag per distinct id ('1': pending or a tombstone), the row size, then the rows of the distinct
# ids flagged '0' end to end, in order (the first row of each new id). Reply: {'ok', added, 0, 0, 0,
# duplicate, log lengths...} or {'conflict', flags found}.
_PREDICT = """
local rows, ids, want = tonumber(ARGV[a]), unpack_ids(ARGV[a + 1]), ARGV[a + 2]
local d = #ids
if #want ~= d then
  return redis.error_reply('join_predict: ' .. #want .. ' presence flags for ' .. d .. ' ids')
end
local scores, stones = bulk('ZMSCORE', T.pq, ids), bulk('HMGET', T.done, ids)
local found, bad = {}, false
for j = 1, d do
  found[j] = (scores[j] or stones[j]) and '1' or '0'
  if found[j] ~= string.sub(want, j, j) then bad = true end
end
if bad then return {'conflict', table.concat(found)} end
local new = {}
for j = 1, d do
  if found[j] == '0' then new[#new + 1] = ids[j] end
end
local k = #new
redis.call('HINCRBY', T.jc, 'duplicate_ids', rows - k)
redis.call('HINCRBY', T.jc, 'predictions', k)
local first = 1
if k > max then  -- more new rows than the table holds: the first ones are evicted on arrival
  local early = {}
  for j = 1, k - max do early[j] = new[j] end
  tombs(T, early, 2, now_s)
  redis.call('HINCRBY', T.jc, 'evicted', k - max)
  first = k - max + 1
end
local overflow = redis.call('ZCARD', T.pq) + (k - first + 1) - max
if overflow > 0 then  -- the oldest pending rows make room
  local popped, gone = redis.call('ZPOPMIN', T.pq, overflow), {}
  for i = 1, #popped, 2 do gone[#gone + 1] = popped[i] end
  bulk('HDEL', T.pend, gone)
  tombs(T, gone, 2, now_s)
  redis.call('HINCRBY', T.jc, 'evicted', #gone)
end
if k >= first then
  local top = order(T, k - first + 1)
  local base = top - (k - first + 1)
  local size, blob = tonumber(ARGV[a + 3]), ARGV[a + 4]
  local h, z = {}, {}
  for j = first, k do
    h[#h + 1], h[#h + 2] = new[j], string.sub(blob, (j - 1) * size + 1, j * size)
    z[#z + 1], z[#z + 2] = base + j - first + 1, new[j]
  end
  bulk('HSET', T.pend, h)
  bulk('ZADD', T.pq, z)
end
trim(T, max)
keep(T, ttl)
return finish({k, 0, 0, 0, rows - k}, rows)
"""

# Operation arguments: the batch's ids (packed), then per row the insertion number read by
# join_read ('' for a row the replica did not join), each followed by a comma, in one string. Reply:
# {'ok', 0, matched, unknown, expired, duplicate, log lengths...} or {'conflict'}.
_LABEL = """
local ids = unpack_ids(ARGV[a])
local n = #ids
local tokens = {}
for token in string.gmatch(ARGV[a + 1], '([^,]*),') do tokens[#tokens + 1] = token end
if #tokens ~= n then
  return redis.error_reply('join_label: ' .. #tokens .. ' insertion numbers for ' .. n .. ' ids')
end
local scores, stones = bulk('ZMSCORE', T.pq, ids), bulk('HMGET', T.done, ids)
local taken, joined = {}, {}
local unknown, expired, dup = 0, 0, 0
for j = 1, n do
  local id, token = ids[j], tokens[j]
  if token ~= '' then
    if taken[id] or scores[j] ~= token then return {'conflict'} end
    taken[id] = true
    joined[#joined + 1] = id
  elseif taken[id] then
    dup = dup + 1
  elseif scores[j] then
    return {'conflict'}
  else
    local v = stones[j]
    if not v then unknown = unknown + 1
    elseif string.sub(v, 1, 1) == '1' then dup = dup + 1
    else expired = expired + 1 end
  end
end
if #joined > 0 then
  bulk('ZREM', T.pq, joined)
  bulk('HDEL', T.pend, joined)
  tombs(T, joined, 1, now_s)
end
trim(T, max)
redis.call('HINCRBY', T.jc, 'labels', n)
redis.call('HINCRBY', T.jc, 'matched', #joined)
redis.call('HINCRBY', T.jc, 'unknown', unknown)
redis.call('HINCRBY', T.jc, 'expired_labels', expired)
redis.call('HINCRBY', T.jc, 'duplicate_labels', dup)
keep(T, ttl)
return finish({0, #joined, unknown, expired, dup}, n)
"""

# KEYS: meta pend pq done dq jc   ARGV: uid now retention max ids (packed)
# Reply: {} for a stream that is gone, else {'ok', per id its insertion number if pending ('' if
# not) followed by a comma, the rows of the pending ids end to end in the same order}.
_READ = """
local T = {meta = KEYS[1], pend = KEYS[2], pq = KEYS[3], done = KEYS[4], dq = KEYS[5],
           jc = KEYS[6]}
if redis.call('HGET', KEYS[1], 'uid') ~= ARGV[1] then return {} end
expire(T, tonumber(ARGV[2]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
local ids = unpack_ids(ARGV[5])
local scores, tokens, found = bulk('ZMSCORE', T.pq, ids), {}, {}
for j = 1, #ids do
  if scores[j] then
    tokens[j] = scores[j] .. ','
    found[#found + 1] = ids[j]
  else
    tokens[j] = ','
  end
end
local rows = bulk('HMGET', T.pend, found)
for j = 1, #rows do rows[j] = rows[j] or '' end
return {'ok', table.concat(tokens), table.concat(rows)}
"""

# KEYS: meta pend pq done dq jc   ARGV: uid now retention max
# Reply: {} for a stream that is gone, else {pending, the oldest row's first 8 bytes (its arrival
# time) or '', then the counters as field, value pairs}.
_STATUS = """
local T = {meta = KEYS[1], pend = KEYS[2], pq = KEYS[3], done = KEYS[4], dq = KEYS[5],
           jc = KEYS[6]}
if redis.call('HGET', KEYS[1], 'uid') ~= ARGV[1] then return {} end
expire(T, tonumber(ARGV[2]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
local out = {redis.call('ZCARD', T.pq), ''}
local head = redis.call('ZRANGE', T.pq, 0, 0)
if #head > 0 then out[2] = string.sub(redis.call('HGET', T.pend, head[1]) or '', 1, 8) end
for _, v in ipairs(redis.call('HGETALL', T.jc)) do out[#out + 1] = v end
return out
"""

JOIN_SOURCES = {
    "join_predict": _PRELUDE + ROWS_LUA + _COMMIT_HEAD + _PREDICT,
    "join_label": _PRELUDE + ROWS_LUA + _COMMIT_HEAD + _LABEL,
    "join_read": _PRELUDE + _READ,
    "join_status": _PRELUDE + _STATUS,
}

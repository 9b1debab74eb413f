"""Exact while small on the Redis store: the raw rows and the row sample beside each count log.

The embedded stores keep a binned stream's raw float32 rows while it holds at most
``state.SMALL_ROWS`` samples (a window's ring of buckets: ``state.window_rows()``), and a row
sample (``engine/row_sample.py``) for the ``ci95`` of the binned averages. Here every count log
``K`` (the cumulative log, or one window bucket's) has two companion keys, written by the same
commit script as the counts (``redis_scripts``, ``redis_join_scripts``: one atomic step, so a
batch skipped as a duplicate or a failed commit adds no rows):

``K:rows``  STRING  a 16-byte header, ``<dd``: the samples committed to ``K`` and 1.0 if their
                    rows are kept (else 0.0: dropped for good), then the kept rows end to end
                    (``row_dtype``: label, float32 scores, float64 weight; 49 bytes at K = 10).
``K:smp``   STRING  chunks of row-sample records appended by each commit (``sample_dtype``);
                    a read keeps the distinct keys of smallest hash (``RowSample``), compaction
                    (``redis_compaction``) replaces the chunks by that merge.

The script appends rows while the key (the cumulative log) or the window's ring (the buckets
``cur - n + 1 .. cur + n`` at the commit's time, as ``WindowRing`` counts them; their sample
counts and kept flags in one hash per window, ``P:{s}:w:<seconds>:ring``) stays within its cap;
the commit that passes it drops the rows of the key, or of every bucket of the ring, for good:
``State.join_rows``'s rule. A replica whose last commit found a key's rows dropped leaves them
out of its next commits (``CommitBuffer.dropped``); the script answers ``rows`` if they are
needed after all (a reset since), before writing anything.

A reader trusts a key's rows only when its header says kept and the rows, the header and the
count log's sample count (field ``n``) agree: a log written before rows were kept (or by an older
replica) has samples without rows and stays binned.
"""

from __future__ import annotations

import functools

import numpy as np

from ..engine import Batch, StreamSpec
from ..engine.row_sample import RowSample, batch_entries, has_sample
from ..engine.state import ExactScores

__all__ = [
    "HEADER_BYTES",
    "ROWS_LUA",
    "row_dtype",
    "pack_rows",
    "unpack_rows",
    "sample_dtype",
    "pack_sample",
    "merge_samples",
    "rows_key",
    "sample_key",
    "companions",
    "batch_sample",
]

HEADER_BYTES = 16


def rows_key(log_key: str) -> str:
    return f"{log_key}:rows"


def sample_key(log_key: str) -> str:
    return f"{log_key}:smp"


def companions(log_key: str) -> list[str]:
    """The rows and sample keys of a log (reset and delete remove them with it)."""
    return [rows_key(log_key), sample_key(log_key)]


def _label_field(task: str, C: int) -> tuple[str, tuple[int, ...]]:
    if task != "multiclass":
        return "u1", (C,)  # a row of bools
    return ("u1" if C <= 2**8 else "<u2" if C <= 2**16 else "<i8"), ()


def row_dtype(spec: StreamSpec) -> np.dtype:
    """One raw row as the script stores it: label, float32 scores, float64 weight."""
    return _row_dtype(spec.task, spec.n_columns)


@functools.lru_cache(maxsize=64)
def _row_dtype(task: str, n_columns: int) -> np.dtype:
    label, shape = _label_field(task, n_columns)
    return np.dtype([("y", label, shape), ("s", "<f4", (n_columns,)), ("w", "<f8")])


def pack_rows(spec: StreamSpec, batch: Batch) -> bytes:
    """The batch's rows, packed end to end (``row_dtype``)."""
    out = np.empty(batch.n, row_dtype(spec))
    out["y"] = batch.labels
    out["s"] = batch.scores
    out["w"] = 1.0 if batch.weights is None else batch.weights
    return out.tobytes()


def unpack_rows(spec: StreamSpec, blob: bytes, n_samples: int) -> ExactScores | None:
    """The rows of a ``K:rows`` value whose count log holds ``n_samples`` samples, or None when
    they are not all there (dropped past the cap, or never written: the log answers as bins)."""
    multiclass = spec.task == "multiclass"
    rows = ExactScores(spec.n_columns, multiclass)
    if len(blob) < HEADER_BYTES:
        return rows if n_samples == 0 else None  # no rows key: only right with no samples
    n, kept = np.frombuffer(blob[:HEADER_BYTES], "<f8")
    dtype = row_dtype(spec)
    body = len(blob) - HEADER_BYTES
    if kept != 1.0 or body % dtype.itemsize or body // dtype.itemsize != n or n != n_samples:
        return None
    if n == 0:
        return rows
    arr = np.frombuffer(blob, dtype, offset=HEADER_BYTES)
    labels = arr["y"].astype(np.int64) if multiclass else arr["y"].astype(bool)
    w = arr["w"]
    weights = None if bool(np.all(w == 1.0)) else w.astype(np.float64)
    rows.append(Batch(labels=labels, scores=np.ascontiguousarray(arr["s"]), weights=weights))
    return rows


def sample_dtype(spec: StreamSpec) -> np.dtype:
    """One row-sample record (``RowSample.dtypes``: key, bins, label, summed squared weight)."""
    key = (spec.task, spec.n_columns, spec.resolution.mantissa_bits)
    dtype = _SAMPLE_DTYPES.get(key)
    if dtype is None:
        names = ("k", "b", "y", "q")
        parts = RowSample(spec, 1).dtypes()
        dtype = np.dtype([(n, dt, shape) for n, (dt, shape) in zip(names, parts, strict=True)])
        _SAMPLE_DTYPES[key] = dtype
    return dtype


_SAMPLE_DTYPES: dict[tuple[str, int, int], np.dtype] = {}


def pack_sample(sample: RowSample | None) -> bytes:
    """A sample's records end to end (``sample_dtype``)."""
    if sample is None or sample.size == 0:
        return b""
    arrays = sample.arrays()
    out = np.empty(sample.size, sample_dtype(sample.spec))
    for name, arr in zip(("k", "b", "y", "q"), arrays, strict=True):
        out[name] = arr
    return out.tobytes()


def merge_samples(spec: StreamSpec, blobs: list[bytes], into: RowSample | None = None) -> RowSample:
    """The row sample of the rows behind every record of ``blobs``: the ``SAMPLE_ROWS`` distinct
    keys of smallest hash, a key's squared weights summed over its records (``RowSample``'s merge,
    whatever the chunking). Raises ``ValueError`` on bytes that are not whole records."""
    out = into if into is not None else RowSample(spec)
    dtype = sample_dtype(spec)
    data = b"".join(blobs)
    if len(data) % dtype.itemsize:
        raise ValueError(f"row sample: {len(data)} bytes, not whole {dtype.itemsize}-byte records")
    recs = np.frombuffer(data, dtype)
    if recs.size == 0:
        return out
    keys, first, inverse = np.unique(recs["k"], return_index=True, return_inverse=True)
    wsq = np.bincount(inverse.ravel(), weights=recs["q"].astype(np.float64), minlength=keys.size)
    take = min(keys.size, out.capacity)
    pick = first[:take]
    out.load(keys[:take], recs["b"][pick], recs["y"][pick], wsq[:take].astype(np.float32))
    return out


def batch_sample(spec: StreamSpec, batch: Batch) -> bytes:
    """The records of the batch's own row sample (what ``RowSample.add`` keeps of it in an empty
    sample; empty for a spec without one: binary, exact), without allocating a ``RowSample``:
    that costs more than the sample of a small batch."""
    if not has_sample(spec) or batch.n == 0:
        return b""
    keys, bins, labels, wsq = batch_entries(batch, spec)
    out = np.empty(keys.size, sample_dtype(spec))
    out["k"], out["b"], out["y"], out["q"] = keys, bins, labels, wsq
    return out.tobytes()


# Shared by the commit scripts (``redis_scripts._COMMIT``, ``redis_join_scripts``). ``rows_plan``
# decides, without writing, what adding rows to a log key does; ``rows_apply`` writes every
# decision. A plan that needs rows the replica left out (it expected them dropped: a reset since)
# returns false, before anything is written, and the replica sends them. A window's ring keeps
# its buckets' sample counts and kept flags in one hash, ``<window prefix>ring`` (bucket id ->
# 2 x samples + kept; "e" -> its expiry, that of its newest bucket), so a commit reads the ring
# with one call; a log whose rows are dropped is not written again.
ROWS_LUA = """
local R_head, R_order, R_data, R_exp, R_kept = {}, {}, {}, {}, {}
local R_rings, R_ring_order = {}, {}

local function rows_set(rk, n, kept, exp)
  if not R_head[rk] then R_order[#R_order + 1] = rk end
  R_head[rk] = {n, kept}
  if exp and exp > 0 then R_exp[rk] = exp end
end

-- the ring of a window bucket's log K: its hash, the bucket's id, the fields read
local function ring_of(K, cur, nb, exp)
  local prefix, bid = string.match(K, '^(.*:)(%-?%d+)$')
  local hk = prefix .. 'ring'
  local ring = R_rings[hk]
  if not ring then
    ring = {fields = {}, changed = {}, stale = {}, prefix = prefix, exp = 0, expires = 0}
    local flat = redis.call('HGETALL', hk)
    for i = 1, #flat, 2 do
      local b, v = tonumber(flat[i]), tonumber(flat[i + 1])
      if flat[i] == 'e' then ring.expires = v  -- the hash's own expiry
      elseif b <= cur - nb then ring.stale[#ring.stale + 1] = flat[i]  -- left the window
      else ring.fields[b] = {math.floor(v / 2), v % 2} end
    end
    R_rings[hk] = ring
    R_ring_order[#R_ring_order + 1] = hk
  end
  if exp > ring.exp then ring.exp = exp end
  return ring, tonumber(bid)
end

-- K: a log key; rows: the packed rows or false (left out); nrows: samples (0: predictions alone);
-- cap; cur, nb: the ring (current bucket, buckets) of a window bucket, nb = 0 for the cumulative
-- log; exp: K's expiry (0: none)
local function rows_plan(K, rows, nrows, cap, cur, nb, exp)
  local rk = K .. ':rows'
  if nb == 0 then  -- the cumulative log: its header
    if nrows == 0 then return true end
    local n, kept = 0, 1
    local h = redis.call('GETRANGE', rk, 0, 15)
    if #h == 16 then n, kept = struct.unpack('<dd', h) end
    if kept == 0 then R_kept[K] = 0 return true end  -- dropped for good: nothing to write
    if n + nrows > cap then
      R_kept[K] = 0
      rows_set(rk, n + nrows, 0, exp)
    else
      if not rows then return false end
      rows_set(rk, n + nrows, 1, exp)
      R_data[rk] = (R_data[rk] or '') .. rows
    end
    return true
  end
  local ring, bid = ring_of(K, cur, nb, exp)
  local f = ring.fields[bid]
  if not f then  -- a new bucket (as the engine's ring, it keeps rows unless this passes the cap)
    f = {0, 1}
    ring.fields[bid] = f
    ring.changed[bid] = true
  end
  if nrows == 0 then return true end
  local total = nrows
  for b, g in pairs(ring.fields) do
    if b > cur - nb and b <= cur + nb then total = total + g[1] end
  end
  local kept = f[2]
  if total > cap then  -- past the ring's cap: every bucket's rows go for good
    for b, g in pairs(ring.fields) do
      if g[2] == 1 and b > cur - nb and b <= cur + nb then
        g[2] = 0
        ring.changed[b] = true
        if b ~= bid then rows_set(ring.prefix .. string.format('%d', b) .. ':rows', g[1], 0) end
      end
    end
    if kept == 1 then rows_set(rk, f[1] + nrows, 0, exp) end
    kept = 0
  elseif kept == 1 then
    if not rows then return false end
    rows_set(rk, f[1] + nrows, 1, exp)
    R_data[rk] = (R_data[rk] or '') .. rows
  end
  f[1], f[2] = f[1] + nrows, kept
  ring.changed[bid] = true
  R_kept[K] = kept
  return true
end

-- writes every planned header and row and the rings; a key created here expires with its log
-- (exp, or the log's entry in the buckets zset) and is listed there, so reset and delete find it
local function rows_apply(zset)
  for _, rk in ipairs(R_order) do
    local s = R_head[rk]
    local head = struct.pack('<dd', s[1], s[2])
    local new
    if s[2] == 1 then
      local data = R_data[rk] or ''
      redis.call('SETRANGE', rk, 0, head)
      new = redis.call('APPEND', rk, data) == 16 + #data
    else  -- dropped now: the header alone
      new = redis.call('EXISTS', rk) == 0
      redis.call('SET', rk, head, 'KEEPTTL')
    end
    if new then
      local exp = R_exp[rk] or tonumber(redis.call('ZSCORE', zset, string.sub(rk, 1, -6)))
      if exp and exp > 0 then
        redis.call('EXPIREAT', rk, exp)
        redis.call('ZADD', zset, exp, rk)
      end
    end
  end
  for _, hk in ipairs(R_ring_order) do
    local ring, h = R_rings[hk], {}
    for b, _ in pairs(ring.changed) do
      local g = ring.fields[b]
      h[#h + 1], h[#h + 2] = string.format('%d', b), 2 * g[1] + g[2]
    end
    if #h > 0 then redis.call('HSET', hk, unpack(h)) end
    if #ring.stale > 0 then redis.call('HDEL', hk, unpack(ring.stale)) end
    if ring.exp > ring.expires then  -- lives as long as its last bucket
      redis.call('HSET', hk, 'e', ring.exp)
      redis.call('EXPIREAT', hk, ring.exp)
      redis.call('ZADD', zset, ring.exp, hk)
    end
  end
end

local function rows_kept(K)
  return R_kept[K] or 1
end

local function sample_append(K, data, exp, zset)
  if #data == 0 then return 0 end
  local sk = K .. ':smp'
  local len = redis.call('APPEND', sk, data)
  if len == #data and exp > 0 then  -- created now
    redis.call('EXPIREAT', sk, exp)
    redis.call('ZADD', zset, exp, sk)
  end
  return len
end
"""

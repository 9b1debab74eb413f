"""Delayed labels on the Redis store: predictions awaiting labels in a join table in Redis.

Any replica takes predictions and any replica takes their labels. The table (``Keys.join``,
``redis_join_scripts``) lives in the stream's hash slot; the rules are those of the embedded
store's ``PendingPredictions``. Each batch of predictions or labels is one optimistic
transaction, run at once (not buffered):

1. this replica's buffered batches are committed first (``flush``), so the producer's sequences
   reach Redis in order;
2. labels: ``join_read`` expires what is due and returns the row and insertion number of every
   pending id of the batch. Predictions skip the read: the first try assumes every id is new;
3. the replica computes the delta exactly as the engine does (``prediction_delta`` of the new
   rows; ``compute_delta`` of the joined pairs without the label-free fields, with their label
   delay, in the window bucket of each prediction's time);
4. one commit script checks the stream, the producer sequence and that Redis still agrees with
   what the delta was computed from (for labels: every joined row still pending under the
   insertion number read; no other id of the batch pending; for predictions: the presence of
   every id), then changes the table, appends the delta, records the sequence and its outcome
   (with the join counts) in the same run. If Redis disagrees (another replica joined a row, a
   prediction arrived, a row expired) nothing but expiry is written and the replica reads again
   and retries (at most ``_MAX_TRIES`` times).

So a label joins its prediction once across all replicas: of two replicas joining the same row,
the second finds it gone and counts its label as a duplicate. An acknowledgement means the change
is in Redis, as for labelled batches.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np

from ..engine import Batch, LabelBatch, PredictionBatch
from ..engine.counting import compute_delta, delay_delta, prediction_delta
from ..engine.pending import JOIN_COUNTERS
from ..engine.row_sample import has_sample
from ..engine.state import small_rows, window_rows
from ..engine.windows import WindowRing
from .base import OUTCOME_MEMORY, BatchOutcome, NotFoundError, StoreUnavailableError
from .redis_buffer import JOIN_FIELDS, outcome_field
from .redis_catalogue import CachedStream, StreamCatalogue
from .redis_commits import CommitBuffer
from .redis_connection import RedisConnection, text
from .redis_join_scripts import TTL_MARGIN, pack_ids
from .redis_rows import batch_sample, pack_rows, sample_key
from .redis_scripts import Keys
from .redis_sequences import Sequences
from .sparse_log import encode_chunk, reduce_parts

__all__ = ["JoinTable", "window_target"]

_MAX_TRIES = 8  # commits that found Redis changed since the read: retried this often
_ROW_HEAD = struct.Struct("<dd")  # arrival time, prediction time

# key, expireat (0: never), delta, joined pairs or None (shared objects share a chunk), the ring's
# current bucket and size (0, 0: the cumulative log)
Target = tuple[str, int, Any, Batch | None, int, int]


def window_target(
    keys: Keys, stream: str, ring: WindowRing, t: float, now: float
) -> tuple[str, int] | None:
    """``(bucket key, expireat)`` of what is stamped ``t`` in ``ring`` at ``now``, or None when it
    is older than the window (``WindowRing.live_bucket``, the rule of ``WindowRing.add``)."""
    bid = ring.live_bucket(t, now)
    if bid is None:
        return None
    expireat = math.ceil((bid + ring.n_buckets + 1) * ring.width)
    return keys.bucket(stream, ring.seconds, bid), expireat


class JoinTable:
    """Ingest of predictions and labels (``join``) and the table's status (``label_status``).

    Parameters
    ----------
    conn : RedisConnection
    catalogue : StreamCatalogue
    buffer : CommitBuffer
        Flushed before each join commit (sequences reach Redis in order); gives commit numbers.
    sequences : Sequences
        Answers a sequence another replica took meanwhile.
    note_length : callable
        ``note_length(stream, key, length)`` after each append (``Compactor.note_length``).
    clock : callable
    replica : str
    stats : dict
        The store's counters (``commits``, ``join_conflicts``).
    """

    def __init__(
        self,
        conn: RedisConnection,
        catalogue: StreamCatalogue,
        buffer: CommitBuffer,
        sequences: Sequences,
        note_length: Callable[[str, str, int], None],
        *,
        clock: Callable[[], float],
        replica: str,
        stats: dict[str, int],
    ) -> None:
        self.conn = conn
        self.keys = conn.keys
        self.catalogue = catalogue
        self.buffer = buffer
        self.sequences = sequences
        self.note_length = note_length
        self.clock = clock
        self.replica = replica
        self.stats = stats
        self._status: dict[str, tuple[str, dict[str, Any]]] = {}  # last read, per stream

    # -- ingest --------------------------------------------------------------------------------
    def join(
        self,
        cached: CachedStream,
        producer: str,
        seq: int,
        batch: PredictionBatch | LabelBatch,
        timestamp: float | None,
        now: float,
    ) -> BatchOutcome:
        """Store predictions or join labels in one atomic commit (called under the store lock,
        with the sequence checked)."""
        self.buffer.flush()
        name = cached.record.name
        flags: str | None = None  # predictions: presence of each distinct id, as Redis says
        for _ in range(_MAX_TRIES):
            if isinstance(batch, PredictionBatch):
                t = now if timestamp is None else float(timestamp)
                script = "join_predict"
                targets, op_args = self._predictions(cached, batch, t, now, flags)
            else:
                script = "join_label"
                targets, op_args = self._labels(cached, batch, now)
            res, sent = self._commit(cached, script, producer, seq, now, targets, op_args)
            status = text(res[0])
            if status == "ok":
                self.stats["commits"] += 1
                n = len(sent)
                lengths, kept, samples = res[6 : 6 + n], res[6 + n : 6 + 2 * n], res[6 + 2 * n :]
                for (key, expireat), length, on, smp in zip(
                    sent, lengths, kept, samples, strict=True
                ):
                    self.note_length(name, key, int(length))
                    if int(smp):
                        self.note_length(name, sample_key(key), int(smp))
                    if int(on):  # the next commits leave dropped rows out (redis_rows)
                        self.buffer.dropped.pop(key, None)
                    else:
                        self.buffer.dropped[key] = expireat
                join = dict(zip(JOIN_FIELDS, map(int, res[1:6]), strict=True))
                return BatchOutcome(
                    "accepted", samples=batch.n, join=join, expected_sequence=seq + 1 if seq else 0
                )
            if status == "gone":
                self._gone(name)
            if status == "rows":  # rows left out are needed (a reset since): send them
                for key, _ in sent:
                    self.buffer.dropped.pop(key, None)
                continue
            if status == "seq":  # another replica took this number meanwhile, or a reset
                answer = self.sequences.resolve(name, producer, seq, True)
                if answer is not None:
                    return answer
                continue
            if status == "done":  # cannot happen: every try takes a new commit number
                raise StoreUnavailableError(f"join commit of {name!r} answered 'done'; retry")
            self.stats["join_conflicts"] += 1
            if isinstance(batch, PredictionBatch):
                flags = text(res[1])
        raise StoreUnavailableError(
            f"stream {name!r}: the join table kept changing under this batch ({_MAX_TRIES} "
            "tries); retry"
        )

    def _gone(self, name: str) -> None:
        """The stream was deleted (NotFoundError) or re-created (retry) since it was read."""
        self.catalogue.forget(name)
        self.catalogue.cached(name)
        raise StoreUnavailableError(f"stream {name!r} was re-created meanwhile; retry the batch")

    def _predictions(
        self,
        cached: CachedStream,
        batch: PredictionBatch,
        t: float,
        now: float,
        flags: str | None,
    ) -> tuple[list[Target], list[Any]]:
        spec = cached.record.spec
        ids = batch.ids
        distinct = list(dict.fromkeys(ids))
        if flags is None:  # first try: every id is new
            flags = "0" * len(distinct)
        if "1" not in flags and len(distinct) == len(ids):
            keep = np.arange(len(ids))
        else:
            present = {key for key, f in zip(distinct, flags, strict=True) if f == "1"}
            seen: set[str] = set()
            rows = []
            for i, key in enumerate(ids):
                if key not in present and key not in seen:
                    seen.add(key)
                    rows.append(i)
            keep = np.asarray(rows, dtype=np.int64)
        scores = np.ascontiguousarray(batch.scores[keep], dtype="<f4")
        table = np.empty(len(keep), dtype=_row_dtype(spec.n_columns))
        table["a"], table["t"], table["s"] = now, t, scores
        targets: list[Target] = []
        if keep.size:
            delta = prediction_delta(spec, scores)
            targets.append((self.keys.of(cached.record.name, "cum"), 0, delta, None, 0, 0))
            for ring in cached.record.engine.windows.values():
                where = window_target(self.keys, cached.record.name, ring, t, now)
                if where is not None:
                    targets.append((*where, delta, None, ring.bucket_of(now), ring.n_buckets))
        size = table.dtype.itemsize
        return targets, [batch.n, pack_ids(distinct), flags, size, table.tobytes()]

    def _labels(
        self, cached: CachedStream, batch: LabelBatch, now: float
    ) -> tuple[list[Target], list[Any]]:
        spec = cached.record.spec
        name = cached.record.name  # the store's key (stream_key)
        ids = batch.ids
        distinct = list(dict.fromkeys(ids))
        res = self.conn.call(
            "join read",
            "join_read",
            [self.keys.of(name, "meta"), *self.keys.join(name)],
            [
                cached.uid,
                repr(now),
                repr(float(spec.pending_retention)),
                spec.max_pending,
                pack_ids(distinct),
            ],
        )
        if not res:
            self._gone(name)
        read = text(res[1]).split(",")[:-1]
        table = _unpack_rows(res[2], spec.n_columns, sum(1 for t in read if t))
        found: dict[str, tuple[str, int]] = {}  # pending id -> (insertion number, row in table)
        for key, token in zip(distinct, read, strict=True):
            if token:
                found[key] = (token, len(found))
        tokens = [""] * len(ids)
        rows: list[int] = []
        at: list[int] = []
        taken: set[str] = set()
        for i, key in enumerate(ids):  # the first label of a pending id joins it
            hit = found.get(key)
            if hit is not None and key not in taken:
                taken.add(key)
                tokens[i] = hit[0]
                rows.append(i)
                at.append(hit[1])
        targets: list[Target] = []
        if rows:
            picked = table[np.asarray(at)]
            times = picked["t"].astype(np.float64)
            scores = np.ascontiguousarray(picked["s"], dtype=np.float32)
            labels = batch.labels[np.asarray(rows)]
            joined = Batch(labels=labels, scores=scores, weights=None)
            delta = compute_delta(spec, joined, predictions=False)
            delta.update(delay_delta(now - times))
            targets.append((self.keys.of(name, "cum"), 0, delta, joined, 0, 0))
            for ring in cached.record.engine.windows.values():
                targets += self._by_bucket(cached, ring, joined, delta, times, now)
        return targets, [pack_ids(ids), "".join(f"{t}," for t in tokens)]

    def _by_bucket(
        self,
        cached: CachedStream,
        ring: WindowRing,
        joined: Batch,
        delta: dict[str, Any],
        times: np.ndarray,
        now: float,
    ) -> list[Target]:
        """Joined pairs in ``ring``, each in the bucket of its prediction's time (as the engine's
        ``StreamEngine._add_by_bucket``)."""
        spec = cached.record.spec
        buckets = np.floor(times / ring.width)
        current = ring.bucket_of(now)
        if (buckets == buckets[0]).all():
            where = window_target(self.keys, cached.record.name, ring, float(times.max()), now)
            return [] if where is None else [(*where, delta, joined, current, ring.n_buckets)]
        out: list[Target] = []
        for bid in np.unique(buckets):
            rows = np.flatnonzero(buckets == bid)
            latest = float(times[rows].max())
            where = window_target(self.keys, cached.record.name, ring, latest, now)
            if where is None:
                continue
            part = Batch(labels=joined.labels[rows], scores=joined.scores[rows], weights=None)
            sub = compute_delta(spec, part, predictions=False)
            sub.update(delay_delta(now - times[rows]))
            out.append((*where, sub, part, current, ring.n_buckets))
        return out

    def _commit(
        self,
        cached: CachedStream,
        script: str,
        producer: str,
        seq: int,
        now: float,
        targets: list[Target],
        op_args: list[Any],
    ) -> tuple[Any, list[tuple[str, int]]]:
        """Run the commit script; returns its reply and the log keys it appended to (with their
        expiry)."""
        spec = cached.record.spec
        name = cached.record.name  # the store's key (stream_key)
        k = self.keys
        chunks: list[bytes] = []
        placed: dict[int, tuple[int, int]] = {}
        rows_at: dict[int, tuple[int, int]] = {}
        sample_at: dict[int, tuple[int, int]] = {}
        sent: list[tuple[str, list[int]]] = []
        offset = 0

        def place(chunk: bytes) -> tuple[int, int]:
            nonlocal offset
            chunks.append(chunk)
            offset += len(chunk)
            return offset - len(chunk), len(chunk)

        for key, expireat, delta, pairs, current, buckets in targets:
            if id(delta) not in placed:  # keys fed the same delta share one chunk
                idx, values = reduce_parts(
                    cached.layout.parts(delta), cached.layout.size, cached.layout.max_cells
                )
                placed[id(delta)] = place(encode_chunk(idx, values))
            start, length = placed[id(delta)]
            if not length:
                continue
            rows, samples = (0, 0), (0, 0)
            n_rows = 0 if pairs is None else pairs.n
            cap = window_rows() if buckets else small_rows()
            dropped = key in self.buffer.dropped  # its last commit dropped them: left out
            if pairs is not None and n_rows <= cap and not dropped:  # raw rows (redis_rows)
                if id(pairs) not in rows_at:
                    rows_at[id(pairs)] = place(pack_rows(spec, pairs))
                rows = rows_at[id(pairs)]
            if pairs is not None and has_sample(spec):
                if id(pairs) not in sample_at:
                    sample_at[id(pairs)] = place(batch_sample(spec, pairs))
                samples = sample_at[id(pairs)]
            sent.append(
                (key, [start, length, expireat, *rows, n_rows, *samples, cap, current, buckets])
            )
        trim = seq - OUTCOME_MEMORY
        args: list[Any] = [
            cached.uid,
            self.replica,
            self.buffer.next_number(),
            repr(now),
            repr(float(spec.pending_retention)),
            spec.max_pending,
            int(spec.pending_retention) + TTL_MARGIN,
            producer if seq else "",
            seq,
            outcome_field(producer, seq) if seq else "",
            outcome_field(producer, trim) if seq and trim > 0 else "",
            b"".join(chunks),
            len(sent),
        ]
        for _key, target_args in sent:
            args += target_args
        logs = [(key, target_args[2]) for key, target_args in sent]
        keys = [k.of(name, w) for w in ("meta", "prod", "out", "commits", "buckets")]
        keys += [*k.join(name), k.of(name, "seen"), *(key for key, _ in logs)]
        res = self.conn.call("join commit", script, keys, args + op_args)
        return res, logs

    # -- status --------------------------------------------------------------------------------
    def label_status(self, name: str, retry: bool = True) -> dict[str, Any]:
        """The join table's status, as ``StreamEngine.label_status`` (expires what is due). With
        Redis unreachable: the last status this replica read, else a reason."""
        cached = self.catalogue.cached(name)
        spec = cached.record.spec
        now = self.clock()
        try:
            res = self.conn.call(
                "join status",
                "join_status",
                [self.keys.of(name, "meta"), *self.keys.join(name)],
                [cached.uid, repr(now), repr(float(spec.pending_retention)), spec.max_pending],
            )
        except StoreUnavailableError as exc:
            last = self._status.get(name)
            if last is not None and last[0] == cached.uid:
                return dict(last[1])
            why = "the join table of predictions awaiting labels is unreachable"
            return {"reason": f"{why}: {exc}"}
        if not res:
            self.catalogue.forget(name)
            if retry:
                return self.label_status(name, retry=False)
            raise NotFoundError(name)
        oldest = struct.unpack("<d", res[1][:8])[0] if len(res[1]) >= 8 else None
        fields = {text(a): int(b) for a, b in zip(res[2::2], res[3::2], strict=True)}
        status = {
            "pending": int(res[0]),
            "oldest_pending_age_seconds": None if oldest is None else max(now - oldest, 0.0),
            "max_pending": spec.max_pending,
            "retention_seconds": spec.pending_retention,
            **{c: fields.get(c, 0) for c in JOIN_COUNTERS},
        }
        self._status[name] = (cached.uid, status)
        return dict(status)


def _row_dtype(n_columns: int) -> np.dtype:
    """A pending row: arrival time, prediction time (float64), scores (float32)."""
    return np.dtype([("a", "<f8"), ("t", "<f8"), ("s", "<f4", (n_columns,))])


def _unpack_rows(blob: bytes, n_columns: int, n: int) -> np.ndarray:
    """``n`` pending rows read from Redis, end to end in ``blob``."""
    dtype = _row_dtype(n_columns)
    if len(blob) != n * dtype.itemsize:
        raise StoreUnavailableError(
            f"join table: {len(blob)} bytes for {n} pending rows, expected {n * dtype.itemsize} "
            f"({n_columns} float32 scores a row); written by another version?"
        )
    return np.frombuffer(blob, dtype=dtype)

"""Ingestion into the Redis store: producer sequences checked against Redis (authoritative) and
this replica's buffered batches, batches turned into buffered commit entries, and the answers to
duplicates and gaps. A mixin of ``RedisStore`` (``redis_store``); commits are ``redis_commits``."""

from __future__ import annotations

import math
import threading
from dataclasses import replace

import redis

from ..engine import Batch, InvalidInputError, LabelBatch, PredictionBatch
from ..engine.counting import compute_delta
from .base import (
    BatchOutcome,
    NotFoundError,
    Record,
    StoreUnavailableError,
    duplicate_outcome,
    gap_outcome,
    rejected_outcome,
)
from .producers import ProducerLimits
from .redis_buffer import Entry, decode_outcome, outcome_field
from .redis_commits import CommitBuffer
from .redis_join import window_target
from .redis_scripts import Keys
from .redis_streams import CachedStream, text

__all__ = ["IngestMixin"]


class IngestMixin:
    """``expected_sequence`` and ``ingest`` (batches wait in the commit buffer until a flush)."""

    client: redis.Redis
    keys: Keys
    max_pending_bytes: int
    _lock: threading.RLock
    _records: dict[str, CachedStream]
    _buffer: CommitBuffer
    producer_limits: ProducerLimits

    def expected_sequence(self, name: str, producer_id: str) -> int:
        with self._lock:
            return self._expected(name, producer_id)

    def _expected(self, name: str, producer: str) -> int:
        """The sequence this replica expects from ``producer``: the one after its own buffered
        batches, else Redis's."""
        last = self._buffer.chain.get((name, producer))
        if last is not None:
            return last + 1
        return self._read_producer(name, producer) + 1

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
        if text(uid) != cached.uid:
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
        batch: Record | Exception | None,
        timestamp: float | None,
        *,
        expected: int | None = None,
    ) -> BatchOutcome:
        cached = self._cached(name)
        with self._lock:
            if sequence:
                if not producer_id:
                    raise InvalidInputError(
                        "producer_id", "a producer id with a sequence", "an empty producer id"
                    )
                error = self.producer_limits.id_error(producer_id)
                if error is not None:
                    return rejected_outcome(error)  # nothing recorded, no number consumed
                if batch is not None and (
                    expected is None or (name, producer_id) in self._buffer.chain
                ):  # no value read by the caller, or batches buffered here (they come first)
                    expected = self._expected(name, producer_id)
                if batch is not None and expected == 1 and sequence == 1:
                    full = self._producers_full(name)
                    if full is not None:
                        return full
                if batch is None or sequence != expected:  # _resolve asks Redis
                    answer = self._resolve(name, producer_id, sequence, batch is not None)
                    if answer is not None:
                        return answer
            if batch is None:
                raise ValueError("a batch is needed for the expected sequence number")
            now = self.clock()
            if isinstance(batch, Batch | PredictionBatch):
                try:  # a time the windows would not keep (WindowRing.live_bucket)
                    cached.record.engine.event_time(timestamp, now)
                except InvalidInputError as err:
                    batch = err
            if isinstance(batch, LabelBatch) or (
                isinstance(batch, PredictionBatch)
                and (timestamp is None or math.isfinite(timestamp))
            ):  # joined by id: one atomic commit now (redis_join)
                return self._join(cached, producer_id, sequence, batch, timestamp, now)
            entry = self._entry(cached, producer_id, sequence, batch, timestamp, now)
            if not sequence and entry.outcome.status == "rejected":
                return entry.outcome  # consumes nothing
            if self._buffer.pending_bytes + entry.nbytes > self.max_pending_bytes:
                raise StoreUnavailableError(
                    f"the local buffer holds {self._buffer.pending_bytes} bytes not yet in Redis "
                    f"(limit {self.max_pending_bytes}); retry once Redis answers"
                )
            self._buffer.add(name, cached.uid, cached.layout.size, entry, cached.layout.max_cells)
            outcome = entry.outcome
            if sequence:
                outcome = replace(outcome, expected_sequence=sequence + 1)
            return outcome

    def _producers_full(self, name: str) -> BatchOutcome | None:
        """The refusal of a new producer when the stream remembers as many as it may (checked
        per replica against Redis's count: replicas admitting new producers at the same moment
        may pass the bound by one each)."""
        with self.redis_errors("producer count"):
            kept = int(self.client.hlen(self.keys.of(name, "prod")))
        full = self.producer_limits.full_error(kept)
        return None if full is None else rejected_outcome(full)

    def _entry(
        self,
        cached: CachedStream,
        producer: str,
        sequence: int,
        batch: Record | Exception,
        timestamp: float | None,
        now: float,
    ) -> Entry:
        if isinstance(batch, Exception):
            return Entry(producer, sequence, rejected_outcome(batch), [], [], now)
        t = now if timestamp is None else float(timestamp)
        if not math.isfinite(t):  # labelled batches and predictions
            err = InvalidInputError("timestamp", "a finite number of seconds", repr(timestamp))
            return Entry(producer, sequence, rejected_outcome(err), [], [], now)
        if not isinstance(batch, Batch):
            raise TypeError(f"predictions and labels are committed by _join, not {type(batch)}")
        spec = cached.record.spec
        name = cached.record.name  # the store's key (stream_key)
        targets = [(self.keys.of(name, "cum"), 0)]
        for ring in cached.record.engine.windows.values():
            where = window_target(self.keys, name, ring, t, now)
            if where is not None:  # else older than the window (WindowRing.live_bucket)
                targets.append(where)
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
        if seq <= top:
            if seq <= last:
                with self.redis_errors("outcome lookup"):
                    raw = self.client.hget(self.keys.of(name, "out"), outcome_field(producer, seq))
                seen = decode_outcome(raw)
            else:
                seen = mine[seq].outcome
            return duplicate_outcome(seen, top)
        if seq == top + 1:
            if have_batch:
                return None
            raise StoreUnavailableError(
                f"sequence {seq} of producer {producer!r} is the expected one (another replica "
                "advanced it); resend the batch"
            )
        return gap_outcome(producer, top, seq)

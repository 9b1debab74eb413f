"""Ingestion into the Redis store: a batch checked against its producer's sequence
(``redis_sequences``), then counted into this replica's commit buffer (``redis_commits``), which a
flush sends to Redis before the acknowledgement; predictions and labels go to the join table at
once (``redis_join``)."""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable
from dataclasses import replace

from ..engine import Batch, InvalidInputError, LabelBatch, PredictionBatch
from ..engine.counting import compute_delta
from ..engine.state import small_rows
from .base import OUTCOME_MEMORY, BatchOutcome, Record, StoreUnavailableError, rejected_outcome
from .producers import ProducerLimits
from .redis_buffer import Entry, Target
from .redis_catalogue import CachedStream, StreamCatalogue
from .redis_commits import CommitBuffer
from .redis_connection import RedisConnection
from .redis_join import JoinTable, window_target
from .redis_rows import batch_sample, pack_rows
from .redis_sequences import Sequences

__all__ = ["Ingestion"]


class Ingestion:
    """``RedisStore.ingest``: sequence check, then the commit buffer or the join table.

    Parameters
    ----------
    conn, catalogue, buffer, sequences, join
        The store's parts.
    lock : threading.RLock
        The store lock: it guards the buffer, and makes a producer's check and count one step.
    clock : callable
    max_pending_bytes : int
        Past this much buffered data (Redis unreachable), ingestion answers UNAVAILABLE.

    Attributes
    ----------
    producer_limits : ProducerLimits
        Producer ids' length and how many a stream remembers (the server sets its own).
    """

    def __init__(
        self,
        conn: RedisConnection,
        catalogue: StreamCatalogue,
        buffer: CommitBuffer,
        sequences: Sequences,
        join: JoinTable,
        lock: threading.RLock,
        *,
        clock: Callable[[], float],
        max_pending_bytes: int,
    ) -> None:
        self.conn = conn
        self.catalogue = catalogue
        self.buffer = buffer
        self.sequences = sequences
        self.join = join
        self.lock = lock
        self.clock = clock
        self.max_pending_bytes = max_pending_bytes
        self.producer_limits = ProducerLimits()

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
        cached = self.catalogue.cached(name)
        with self.lock:
            if sequence:
                if not producer_id:
                    raise InvalidInputError(
                        "producer_id", "a producer id with a sequence", "an empty producer id"
                    )
                error = self.producer_limits.id_error(producer_id)
                if error is not None:
                    return rejected_outcome(error)  # nothing recorded, no number consumed
                if batch is not None and (
                    expected is None or (name, producer_id) in self.buffer.chain
                ):  # no value read by the caller, or batches buffered here (they come first)
                    expected = self.sequences.expected(name, producer_id)
                if batch is not None and expected == 1 and sequence == 1:
                    full = self._producers_full(name)
                    if full is not None:
                        return full
                if batch is None or sequence != expected:  # answered from Redis
                    answer = self.sequences.resolve(name, producer_id, sequence, batch is not None)
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
                return self.join.join(cached, producer_id, sequence, batch, timestamp, now)
            entry = self._entry(cached, producer_id, sequence, batch, timestamp, now)
            if not sequence and entry.outcome.status == "rejected":
                return entry.outcome  # consumes nothing
            if self.buffer.pending_bytes + entry.nbytes > self.max_pending_bytes:
                raise StoreUnavailableError(
                    f"the local buffer holds {self.buffer.pending_bytes} bytes not yet in Redis "
                    f"(limit {self.max_pending_bytes}); retry once Redis answers"
                )
            self.buffer.add(name, cached.uid, cached.layout.size, entry, cached.layout.max_cells)
            outcome = entry.outcome
            if sequence:
                outcome = replace(outcome, expected_sequence=sequence + 1)
            return outcome

    def _producers_full(self, name: str) -> BatchOutcome | None:
        """The refusal of a new producer when the stream remembers as many as it may once the
        idle ones are forgotten (as the memory store does; checked per replica against Redis's
        count: replicas admitting new producers at the same moment may pass the bound by one
        each)."""
        k = self.conn.keys
        limits = self.producer_limits
        self.conn.call(
            "forget idle producers",
            "forget_idle",
            [k.of(name, w) for w in ("meta", "prod", "out", "seen")],
            [
                self.catalogue.cached(name).uid,
                repr(self.clock() - limits.retention),
                repr(self.clock()),
                OUTCOME_MEMORY,
            ],
        )
        with self.conn.errors("producer count"):
            kept = int(self.conn.client.hlen(k.of(name, "prod")))
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
            raise TypeError(
                f"predictions and labels are committed by JoinTable.join, not {type(batch)}"
            )
        spec = cached.record.spec
        name = cached.record.name  # the store's key (stream_key)
        targets: list[Target] = [(self.conn.keys.of(name, "cum"), 0, 0, 0)]
        for ring in cached.record.engine.windows.values():
            where = window_target(self.conn.keys, name, ring, t, now)
            if where is not None:  # else older than the window (WindowRing.live_bucket)
                targets.append((*where, ring.bucket_of(now), ring.n_buckets))
        parts = cached.layout.parts(compute_delta(spec, batch))
        outcome = BatchOutcome("accepted", samples=batch.n)
        # raw rows while small (redis_rows): none past every cap (the commit drops them anyway)
        rows = functools.partial(pack_rows, spec, batch) if batch.n <= small_rows() else None
        held = batch.scores.nbytes + batch.labels.nbytes
        held += 0 if batch.weights is None else batch.weights.nbytes
        sample = batch_sample(spec, batch)
        return Entry(
            producer, sequence, outcome, parts, targets, now, batch.n, rows, held, sample, spec
        )

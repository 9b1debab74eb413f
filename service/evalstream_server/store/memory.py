"""In-memory store: the state lives in this process (the durable store extends it)."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

from ..engine import (
    CapacityError,
    InvalidInputError,
    LabelBatch,
    PredictionBatch,
    State,
    StreamEngine,
    StreamSpec,
    build_report,
)
from ..engine.thresholds import ThresholdGoals
from .base import (
    OUTCOME_MEMORY,
    RESOURCE_EXHAUSTED,
    AlreadyExistsError,
    BatchOutcome,
    ExportedStream,
    LimitExceededError,
    NotFoundError,
    Record,
    Store,
    StreamRecord,
    duplicate_outcome,
    error_detail,
    gap_outcome,
    rejected_outcome,
    same_window,
    stream_key,
)
from .producers import ProducerLimits

__all__ = ["MemoryStore", "OUTCOME_MEMORY", "MemoryCharges"]


class MemoryCharges(Protocol):
    """A server's memory ledger as the store sees it (``budget.MemoryLedger``)."""

    def track(self, key: str, tenant: str, spec: StreamSpec, growing: int = 0) -> None: ...

    def forget(self, key: str) -> None: ...

    def keys(self) -> set[str]: ...

    def settle(self, key: str, growing: int) -> None: ...

    def admit(self, key: str, need: int, field: str) -> None: ...


class MemoryStore(Store):
    """Streams in a dict, one lock per store (engine updates are short and CPU-bound).

    Parameters
    ----------
    max_streams : int
        Creating more streams raises ``LimitExceededError``.
    clock : callable
        Wall clock in seconds, shared with the engines' windows.
    """

    def __init__(self, max_streams: int = 1000, clock: Callable[[], float] = time.time) -> None:
        self.max_streams = max_streams
        self.clock = clock
        self.producer_limits = ProducerLimits()  # the server sets its own (--max-producers)
        self._streams: dict[str, StreamRecord] = {}
        self._lock = threading.RLock()
        self.memory_ledger: MemoryCharges | None = None  # the server's (``charge_memory``)

    def charge_memory(self, ledger: MemoryCharges) -> None:
        """Charge every stream, and from now on every batch, to ``ledger`` (the server's memory
        budget): a batch that would pass it is rejected with RESOURCE_EXHAUSTED, unapplied."""
        with self._lock:
            self.memory_ledger = ledger
            self._recharge()

    def _recharge(self) -> None:
        """Under the lock: charge the streams as they are now (after a load: a roll-back)."""
        ledger = self.memory_ledger
        if ledger is None:
            return
        for key in ledger.keys() - self._streams.keys():
            ledger.forget(key)
        for key, record in self._streams.items():
            ledger.track(key, record.tenant, record.spec, record.engine.growing_nbytes)

    # -- streams -------------------------------------------------------------------------------
    def create(self, spec: StreamSpec, tenant: str = "") -> StreamRecord:
        if not spec.name:
            raise InvalidInputError("config.name", "a stream name", "an empty name")
        key = stream_key(tenant, spec.name)
        with self._lock:
            if key in self._streams:
                raise AlreadyExistsError(key)
            self._check_writable()
            if len(self._streams) >= self.max_streams:
                raise LimitExceededError("streams", self.max_streams, len(self._streams) + 1)
            record = StreamRecord(
                spec, StreamEngine(spec, clock=self.clock), self.clock(), tenant=tenant
            )
            self._streams[key] = record
            self._on_create(record)
            if self.memory_ledger is not None:
                self.memory_ledger.track(key, tenant, spec)
            return record

    def get(self, name: str) -> StreamRecord:
        with self._lock:
            try:
                return self._streams[name]
            except KeyError:
                raise NotFoundError(name) from None

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._streams)

    def delete(self, name: str) -> None:
        with self._lock:
            if name not in self._streams:
                raise NotFoundError(name)
            self._check_writable()
            del self._streams[name]
            self._on_delete(name)
            if self.memory_ledger is not None:
                self.memory_ledger.forget(name)

    def reset(self, name: str, forget_producers: bool = False) -> StreamRecord:
        with self._lock:
            record = self.get(name)
            self._check_writable()
            record.engine.reset()
            if forget_producers:
                record.producers.clear()
                record.producer_seen.clear()
                record.outcomes.clear()
            self._on_reset(record, forget_producers)
            if self.memory_ledger is not None:
                self.memory_ledger.settle(name, record.engine.growing_nbytes)
            return record

    # -- ingest --------------------------------------------------------------------------------
    def expected_sequence(self, name: str, producer_id: str) -> int:
        with self._lock:
            return self.get(name).producers.get(producer_id, 0) + 1

    def ingest(
        self,
        name: str,
        producer_id: str,
        sequence: int,
        batch: Record | Exception | None,
        timestamp: float | None,
        *,
        expected: int | None = None,  # unused: the check under the lock is free and atomic
    ) -> BatchOutcome:
        with self._lock:
            record = self.get(name)
            if sequence:
                if not producer_id:
                    raise InvalidInputError(
                        "producer_id", "a producer id with a sequence", "an empty producer id"
                    )
                refused = self._admit_producer(record, producer_id, self.clock())
                if refused is not None:
                    return refused
                last = record.producers.get(producer_id, 0)
                if sequence <= last:
                    seen = record.outcomes.get(producer_id, {}).get(sequence)
                    return duplicate_outcome(seen, last)
                if sequence > last + 1:
                    return gap_outcome(producer_id, last, sequence)
            now = self.clock()
            if batch is None:
                raise ValueError("a batch is needed for the expected sequence number")
            self._check_writable()
            outcome = self._apply(record, batch, timestamp, now)
            if sequence:
                record.producers[producer_id] = sequence
                record.producer_seen[producer_id] = now
                book = record.outcomes.setdefault(producer_id, {})
                book[sequence] = outcome
                if len(book) > OUTCOME_MEMORY:
                    for old in sorted(book)[: len(book) - OUTCOME_MEMORY]:
                        del book[old]
                outcome = BatchOutcome(**{**outcome.__dict__, "expected_sequence": sequence + 1})
            self._on_ingest(record, producer_id, sequence, batch, timestamp, now, outcome)
            return outcome

    def _admit_producer(
        self, record: StreamRecord, producer_id: str, now: float
    ) -> BatchOutcome | None:
        """The refusal of a sequenced batch from ``producer_id`` (nothing recorded, no number
        consumed), or None: its id is too long, or it is new and the stream remembers as many
        producers as it may once the idle ones are forgotten (``producers``)."""
        limits = self.producer_limits
        error = limits.id_error(producer_id)
        if error is not None:
            return rejected_outcome(error)
        if producer_id in record.producers:
            return None
        idle = limits.idle(record.producer_seen, now)
        if idle:
            self._check_writable()
            for producer in idle:
                record.producers.pop(producer, None)
                record.outcomes.pop(producer, None)
                del record.producer_seen[producer]
            self._on_forget(record, idle)
        full = limits.full_error(len(record.producers))
        return None if full is None else rejected_outcome(full)

    def _apply(
        self, record: StreamRecord, batch: Record | Exception, timestamp: float | None, now: float
    ) -> BatchOutcome:
        if isinstance(batch, Exception):
            return rejected_outcome(batch)
        join = None
        ledger = self.memory_ledger
        key = record.name
        admit = None if ledger is None else functools.partial(ledger.admit, key)
        try:
            if isinstance(batch, PredictionBatch):
                join = asdict(
                    record.engine.ingest_predictions(batch, timestamp, now=now, admit=admit)
                )
            elif isinstance(batch, LabelBatch):
                join = asdict(record.engine.ingest_labels(batch, now=now, admit=admit))
            else:
                record.engine.ingest(batch, timestamp, now=now, admit=admit)
        except (CapacityError, LimitExceededError) as exc:  # exact rows' cap, memory budget
            return BatchOutcome(
                "rejected",
                error_code=RESOURCE_EXHAUSTED,
                error_message=str(exc),
                error_detail=error_detail(exc),
            )
        except InvalidInputError as exc:  # e.g. a time its windows would not keep
            return rejected_outcome(exc)
        if ledger is not None:
            ledger.settle(key, record.engine.growing_nbytes)
        record.update_time = now
        return BatchOutcome("accepted", samples=batch.n, join=join)

    # -- queries -------------------------------------------------------------------------------
    def state(self, name: str, window: str) -> State:
        with self._lock:
            return self.get(name).engine.state(window)

    def report_context(
        self, name: str, window: str
    ) -> tuple[State, State | None, dict[str, Any] | None]:
        with self._lock:
            engine = self.get(name).engine
            state = engine.state(window)
            reference = engine.spec.prior_reference
            ref = None if same_window(window, reference) else engine.state(reference)
            return state, ref, engine.label_status()

    def label_status(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self.get(name).engine.label_status()

    def report(
        self,
        name: str,
        window: str,
        curves: bool = False,
        max_points: int = 200,
        threshold_goals: ThresholdGoals | None = None,
    ) -> dict[str, Any]:
        state, reference, labels = self.report_context(name, window)
        return build_report(
            state,
            window=window or "cumulative",
            curves=curves,
            max_points=max_points,
            reference=reference,
            labels=labels,
            threshold_goals=threshold_goals,
        )

    def curve(
        self, name: str, window: str, kind: str, target: str, max_points: int = 200
    ) -> dict[str, Any]:
        from ..engine import curve

        return curve(self.state(name, window), kind, target, max_points)

    def records(self) -> list[StreamRecord]:
        with self._lock:
            return list(self._streams.values())

    def export_records(self) -> list[ExportedStream]:
        with self._lock:  # no batch applies while the counters are read
            return [ExportedStream.of(r) for r in self._streams.values()]

    # -- hooks for the durable store -----------------------------------------------------------
    def _check_writable(self) -> None:
        """Called under the lock before a change; raises when the store refuses writes."""

    def _on_create(self, record: StreamRecord) -> None:
        """Called under the lock after a stream is created."""

    def _on_delete(self, name: str) -> None:
        """Called under the lock after a stream is deleted."""

    def _on_forget(self, record: StreamRecord, producers: list[str]) -> None:
        """Called under the lock after idle ``producers`` of a stream were forgotten."""

    def _on_reset(self, record: StreamRecord, forget_producers: bool) -> None:
        """Called under the lock after a stream is reset."""

    def _on_ingest(
        self,
        record: StreamRecord,
        producer_id: str,
        sequence: int,
        batch: Record | Exception,
        timestamp: float | None,
        now: float,
        outcome: BatchOutcome,
    ) -> None:
        """Called under the lock after a batch was applied or rejected."""

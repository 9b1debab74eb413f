"""The store interface: streams, exactly-once ingest, snapshots for queries and exporters.

A store owns every stream's engine and the last sequence of every (stream, producer). The durable
and the shared stores implement the same interface, so the RPC layer and the exporter never know
which one they talk to.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from ..engine import (
    CUMULATIVE,
    Batch,
    InvalidInputError,
    LabelBatch,
    PredictionBatch,
    State,
    StreamEngine,
    StreamSpec,
)
from ..engine.spec import parse_duration
from ..engine.thresholds import ThresholdGoals

Record = Batch | PredictionBatch | LabelBatch  # what one sequenced ingest carries

__all__ = [
    "INVALID_ARGUMENT",
    "OUTCOME_MEMORY",
    "OUT_OF_RANGE",
    "RESOURCE_EXHAUSTED",
    "AlreadyExistsError",
    "BatchOutcome",
    "ExportedStream",
    "LimitExceededError",
    "NotFoundError",
    "RejectedBatch",
    "Store",
    "StoreUnavailableError",
    "StreamRecord",
    "duplicate_outcome",
    "error_detail",
    "gap_outcome",
    "rejected_outcome",
    "report_version",
    "split_key",
    "stream_key",
]

Status = Literal["accepted", "duplicate", "rejected"]
T = TypeVar("T")

OUTCOME_MEMORY = 4096  # recorded outcomes every store keeps per producer for duplicate answers

# The gRPC status codes (``grpc.StatusCode.X.value[0]``) a store records in the outcome of a
# rejected batch; plain ints, so the store layer does not import grpc.
INVALID_ARGUMENT = 3  # the batch is invalid
RESOURCE_EXHAUSTED = 8  # the batch exceeds a limit
OUT_OF_RANGE = 11  # the sequence leaves a gap


def stream_key(tenant: str, name: str) -> str:
    """The key a store files a tenant's stream under: ``tenant/name`` (the name alone for the
    tenant ``""`` of an open server, so data written before tenants had names of their own keeps
    its keys). Stream names never hold ``/`` (``StreamSpec``) and tenant names never hold ``/``
    (``auth.load_tokens``), so two tenants' streams never share a key."""
    return f"{tenant}/{name}" if tenant else name


def split_key(key: str) -> tuple[str, str]:
    """``(tenant, name)`` of a ``stream_key``."""
    tenant, _, name = key.rpartition("/")
    return tenant, name


class NotFoundError(KeyError):
    """No stream of that name (for the caller: another tenant's stream is one it does not
    have, and the message names only the stream, as the caller spelt it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"stream {split_key(name)[1]!r} not found")

    def __str__(self) -> str:
        return str(self.args[0])


class AlreadyExistsError(ValueError):
    """A stream of that name exists."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"stream {split_key(name)[1]!r} already exists; delete it first or pick another name"
        )


class StoreUnavailableError(RuntimeError):
    """The store cannot do this now (its disk or its Redis failed); the call may be retried
    (gRPC ``UNAVAILABLE``). Nothing was counted."""


def _number(x: float) -> str:
    """Whole numbers in full (a byte count of 1920042, not 1.92004e+06), others as ``%g``."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


class LimitExceededError(RuntimeError):
    """A configured limit (streams, rows, rate) would be exceeded; retry later or ask less."""

    def __init__(
        self, what: str, limit: float, received: float, retry_after: float | None = None
    ) -> None:
        self.what = what
        self.limit = limit
        self.received = received
        self.retry_after = retry_after
        msg = f"{what}: limit {_number(limit)}, received {_number(received)}"
        if retry_after is not None:
            msg += f"; retry after {retry_after:.3f} s"
        super().__init__(msg)


class RejectedBatch(Exception):
    """A sequenced batch that failed validation, passed to ``Store.ingest`` in place of the batch:
    the validation ``error`` and the rows the batch had (``samples``; 0 when it could not be read
    far enough to tell). It still consumes its sequence number."""

    def __init__(self, error: Exception, samples: int = 0) -> None:
        super().__init__(str(error))
        self.error = error
        self.samples = samples


@dataclass(frozen=True)
class BatchOutcome:
    """What happened to one sequenced batch (recorded, so a duplicate gets the same answer)."""

    status: Status
    samples: int = 0
    error_code: int = 0  # a gRPC status code (INVALID_ARGUMENT, ...); 0 = OK
    error_message: str = ""
    expected_sequence: int = 0
    original_status: Status | None = None
    join: dict[str, int] | None = None  # predictions and labels: the JoinCounts of the batch
    # rejected: error_message in parts (field, expected, received, hint), None when not about a
    # field; a plain dict so every store can record it as JSON
    error_detail: dict[str, str] | None = None


def error_detail(exc: BaseException) -> dict[str, str] | None:
    """The parts of a field's error: an ``InvalidInputError``'s own, a limit's name, bound and
    received amount; None for other errors."""
    if isinstance(exc, InvalidInputError):
        return {
            "field": exc.field,
            "expected": exc.expected,
            "received": exc.received,
            "hint": exc.hint,
        }
    if isinstance(exc, LimitExceededError):
        return {
            "field": exc.what,
            "expected": f"at most {_number(exc.limit)}",
            "received": _number(exc.received),
            "hint": "" if exc.retry_after is None else f"retry after {exc.retry_after:.3f} s",
        }
    return None


def duplicate_outcome(seen: BatchOutcome | None, last: int) -> BatchOutcome:
    """The answer to a batch whose sequence was counted already, ``last`` being the producer's
    last sequence: the first answer ``seen`` repeated (None when no longer recorded: it was
    accepted)."""
    return BatchOutcome(
        "duplicate",
        samples=seen.samples if seen else 0,
        expected_sequence=last + 1,
        original_status=seen.status if seen else "accepted",
        error_code=seen.error_code if seen else 0,
        error_message=seen.error_message if seen else "",
        join=seen.join if seen else None,
        error_detail=seen.error_detail if seen else None,
    )


def gap_outcome(producer: str, last: int, sequence: int) -> BatchOutcome:
    """The answer to ``sequence`` of ``producer`` when its last sequence is ``last`` and
    ``sequence > last + 1``: rejected without consuming a number."""
    exc = InvalidInputError(
        "sequence",
        f"{last + 1} for producer {producer!r}",
        f"{sequence}",
        f"a gap: batches {last + 1}..{sequence - 1} were never acknowledged; resend them",
    )
    return BatchOutcome(
        "rejected",
        error_code=OUT_OF_RANGE,
        expected_sequence=last + 1,
        error_message=str(exc),
        error_detail=error_detail(exc),
    )


def rejected_outcome(exc: Exception) -> BatchOutcome:
    """The outcome of a batch that failed validation (``exc``, or a ``RejectedBatch`` that also
    carries the batch's rows): a limit is RESOURCE_EXHAUSTED, anything else INVALID_ARGUMENT."""
    samples = 0
    if isinstance(exc, RejectedBatch):
        samples, exc = exc.samples, exc.error
    code = RESOURCE_EXHAUSTED if isinstance(exc, LimitExceededError) else INVALID_ARGUMENT
    return BatchOutcome(
        "rejected",
        samples=samples,
        error_code=code,
        error_message=str(exc),
        error_detail=error_detail(exc),
    )


@dataclass
class StreamRecord:
    """A stream's definition, engine and producer bookkeeping."""

    spec: StreamSpec
    engine: StreamEngine
    create_time: float
    update_time: float | None = None
    tenant: str = ""  # owner; other tenants have a stream of this name or none
    producers: dict[str, int] = field(default_factory=dict)  # producer -> last sequence
    producer_seen: dict[str, float] = field(default_factory=dict)  # producer -> its last batch
    outcomes: dict[str, dict[int, BatchOutcome]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The key the store files the stream under (``stream_key``); ``spec.name`` is the name
        its tenant gave it."""
        return stream_key(self.tenant, self.spec.name)


@dataclass(frozen=True)
class ExportedStream:
    """A stream and its per-stream counters as one scrape exports them (``export_records``):
    read together, so they do not move while the scrape computes its reports."""

    record: StreamRecord
    samples: float
    batches: int
    update_time: float | None

    @classmethod
    def of(cls, record: StreamRecord) -> ExportedStream:
        engine = record.engine
        return cls(record, engine.cumulative.n_samples, engine.n_batches, record.update_time)


class Store(abc.ABC):
    """Interface every store implements. Methods are thread-safe."""

    clock: Callable[[], float] = time.time  # the server clock that windows slide with
    producer_limits: Any  # producers.ProducerLimits: how many producers a stream remembers

    @abc.abstractmethod
    def create(self, spec: StreamSpec, tenant: str = "") -> StreamRecord:
        """Create ``tenant``'s stream ``spec.name``, filed under ``stream_key(tenant, name)``;
        every other method takes that key."""

    @abc.abstractmethod
    def get(self, name: str) -> StreamRecord: ...

    @abc.abstractmethod
    def names(self) -> list[str]:
        """Every stream's key (``stream_key``), sorted."""

    @abc.abstractmethod
    def delete(self, name: str) -> None: ...

    @abc.abstractmethod
    def reset(self, name: str, forget_producers: bool = False) -> StreamRecord: ...

    @abc.abstractmethod
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
        """Count ``batch`` exactly once for ``(producer_id, sequence)``.

        ``batch`` is a labelled ``Batch``, a ``PredictionBatch`` (predictions awaiting labels)
        or a ``LabelBatch`` (labels for earlier predictions); stores that cannot keep
        predictions awaiting labels reject the last two.

        ``batch`` may be ``None`` when the sequence is not the expected one: a duplicate or a
        gap is answered without the data.

        ``batch`` may be the validation error of a rejected batch: it still consumes its
        sequence number (so the producer does not stall) and its outcome is recorded.

        ``expected`` is the producer's expected sequence as the caller just read it with
        ``expected_sequence`` (the servicer does, once per batch). A store whose read is a round
        trip (Redis) trusts it to tell the expected sequence from a duplicate or a gap instead of
        reading again; its commit re-checks the sequence atomically. A store that checks under
        its own lock at no cost (memory, durable) checks there: that check is what makes a batch
        count once."""

    @abc.abstractmethod
    def expected_sequence(self, name: str, producer_id: str) -> int: ...

    def records(self) -> list[StreamRecord]:
        """The streams this server exports to Prometheus: every stream, unless the store shares
        them with other replicas (then this replica's share, so each series is exported once)."""
        out = []
        for name in self.names():
            try:
                out.append(self.get(name))
            except NotFoundError:  # deleted meanwhile
                continue
        return out

    def export_records(self) -> list[ExportedStream]:
        """``records`` with their per-stream counters read at one moment, committed data only:
        what a scrape exports (a batch applied meanwhile is left for the next scrape)."""
        return [ExportedStream.of(r) for r in self.records()]

    @abc.abstractmethod
    def state(self, name: str, window: str) -> State:
        """A snapshot of a window's state, safe to use without locks."""

    @abc.abstractmethod
    def report(
        self,
        name: str,
        window: str,
        curves: bool = False,
        max_points: int = 200,
        threshold_goals: ThresholdGoals | None = None,
    ) -> dict[str, Any]: ...

    @abc.abstractmethod
    def curve(
        self, name: str, window: str, kind: str, target: str, max_points: int = 200
    ) -> dict[str, Any]: ...

    def report_context(
        self, name: str, window: str
    ) -> tuple[State, State | None, dict[str, Any] | None]:
        """What a report of ``window`` needs: its state, the state of the stream's prior
        reference (None when ``window`` is the reference) and the join table's status (None
        where the store keeps no predictions awaiting labels)."""
        state = self.state(name, window)
        reference = self.get(name).spec.prior_reference
        ref = None if same_window(window, reference) else self.state(name, reference)
        return state, ref, self.label_status(name)

    def label_status(self, name: str) -> dict[str, Any] | None:
        """The stream's join table of predictions awaiting labels, as
        ``StreamEngine.label_status`` (None where the store keeps none)."""
        return None

    def flush(self) -> None:  # noqa: B027 - optional hook
        """Make every batch ingested so far durable (acks are sent after this returns)."""

    async def flush_async(self) -> None:
        """``flush`` for the event loop (stores that commit may do it off the loop thread)."""
        await self.run(self.flush)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, work that calls this store, awaited from the event loop. Stores whose
        calls never wait on the network (memory, durable: short CPU-bound steps under a lock)
        run it inline; a store whose calls wait on a server (Redis) runs it in a bounded thread
        pool, so a stalled server delays only the calls that need it, not health checks."""
        return fn(*args)

    async def settle_async(self) -> None:  # noqa: B027 - optional hook
        """Before a query: make sure it shows committed data only (stores that apply a batch
        before committing it commit, or roll back, what was applied so far)."""

    def writable(self) -> bool:
        """Whether writes are accepted now (the health check's answer for writes); a store whose
        writes failed may probe its storage here."""
        return True

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (files, connections)."""


def same_window(a: str, b: str) -> bool:
    a, b = a or CUMULATIVE, b or CUMULATIVE
    if CUMULATIVE in (a, b):
        return a == b
    return parse_duration(a) == parse_duration(b)


def report_version(record: StreamRecord, window: str) -> tuple[Any, ...]:
    """What a report of ``record``'s ``window`` depends on besides the clock: the engine's
    version, the window's time bucket and the bucket of its prior reference (a sliding reference
    moves on its own; a cumulative one only changes with the version). Equal versions, equal
    reports: caches of reports (the exporter's, WatchReport's) key on it."""
    engine = record.engine
    reference = record.spec.prior_reference
    now = engine.clock()
    buckets = []
    for name in (window, None if same_window(window, reference) else reference):
        ring = _ring(engine, name)
        buckets.append(ring.bucket_of(now) if ring is not None else None)
    return (id(engine), engine.version, *buckets)


def _ring(engine: StreamEngine, window: str | None) -> Any:
    """The window ring of ``window`` (None for the cumulative state or no window)."""
    if window is None or same_window(window, CUMULATIVE):
        return None
    ring = engine.windows.get(window)
    if ring is None:  # an equivalent spelling ("60m" for "1h")
        ring = next((r for n, r in engine.windows.items() if same_window(n, window)), None)
    return ring

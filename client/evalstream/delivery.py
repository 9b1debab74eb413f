"""The client's one delivery state machine: exactly-once delivery of the sequenced batches of one
producer on one stream, shared by ``EvalClient.log`` (``ingest.deliver``, a fixed set of batches)
and ``Writer`` (a long-lived stream fed from a buffer).

Sequence numbers follow the service's rules (``evalstream/v1/ingest.proto``): per (stream,
producer) they start at 1 and go up by one per batch. A batch consumed its number exactly when the
server's ``expected_sequence`` is past it. From that rule (``Delivery``):

- results come back in sequence order, one per batch (anything else is the server's error);
- a call that breaks (``UNAVAILABLE``) is retried, resending the batches that got no result with
  the same numbers: a batch applied before the break comes back DUPLICATE with its original
  outcome, so nothing is counted twice;
- a batch refused without consuming its number (a gap after the server forgot this producer, a
  transient refusal) and every batch after it are renumbered from the server's
  ``expected_sequence`` and resent;
- a batch refused for its content consumed its number and is reported, never resent;
- a stream that is not there for this caller (NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED)
  stops the delivery.

Giving up is one rule for both: ``MAX_ROUNDS`` calls in a row that settle no batch, where the
calls that fail because the server is unreachable count only once ``retry_deadline`` seconds have
passed without progress (until then they reconnect with exponential backoff, capped at 1 s).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from .errors import EvalstreamError, code_name
from .v1 import evalstream_service_pb2 as pb
from .v1 import ingest_pb2

__all__ = [
    "MAX_ROUNDS",
    "BatchError",
    "Delivery",
    "LogResult",
    "Sent",
    "backoff",
    "classify",
    "retry_call",
    "retry_delay",
]

MAX_ROUNDS = 5


def _number(code: grpc.StatusCode) -> int:
    """The number of a status code, as ``BatchResult.error_code`` carries it."""
    number: int = code.value[0]
    return number


_NOT_FOUND = _number(grpc.StatusCode.NOT_FOUND)
_OUT_OF_RANGE = _number(grpc.StatusCode.OUT_OF_RANGE)  # a sequence gap
_REFUSED = frozenset(
    _number(c)
    for c in (
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    )
)
_RETRY_CALL = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class BatchError:
    """One batch the server rejected.

    Attributes
    ----------
    batch_index : int
        Position of the batch in its ``log`` call (in a writer: since the writer opened).
    rows : tuple of int
        ``(start, stop)`` of the batch's rows in the call's arrays (in a writer: since it opened).
    sequence : int
        The batch's sequence number.
    code : str
        ``grpc.StatusCode`` name, e.g. ``"INVALID_ARGUMENT"``.
    message : str
        The server's reason, naming the field, the expected and the received.
    field, expected, received, hint : str
        ``message`` in parts (the result's ``field_error``): the field's path in the wire's
        names (``"scores.shape"``, ``"labels"``), what the server accepts there and what it
        received; empty when the refusal is not about a field.
    """

    batch_index: int
    rows: tuple[int, int]
    sequence: int
    code: str
    message: str
    field: str = ""
    expected: str = ""
    received: str = ""
    hint: str = ""


@dataclass
class LogResult:
    """What became of the batches of one ``log`` call (or of a writer so far).

    Attributes
    ----------
    accepted_batches, accepted_samples : int
        Batches (and their rows) applied to the stream by this call.
    duplicate_batches : int
        Batches whose sequence number the server had consumed already (a replay with the same
        ``producer_id``): nothing applied.
    rejected_batches, rejected_samples : int
        Batches refused; they changed no state. ``errors`` says why.
    errors : list of BatchError
        The rejected batches, and (only in the error of a call that failed for good) batches
        sent but never acknowledged, whose outcome is unknown.
    added : int
        ``log_predictions``: predictions stored to await their labels.
    matched, unknown, expired : int
        ``log_labels``: labels joined with their prediction, labels for ids no prediction had,
        and labels whose prediction had expired or been evicted.
    duplicate_ids : int
        ``log_predictions``: rows ignored because their id was seen before; ``log_labels``:
        second labels for an id already joined.
    """

    accepted_batches: int = 0
    accepted_samples: int = 0
    duplicate_batches: int = 0
    rejected_batches: int = 0
    rejected_samples: int = 0
    errors: list[BatchError] = field(default_factory=list)
    added: int = 0
    matched: int = 0
    unknown: int = 0
    expired: int = 0
    duplicate_ids: int = 0

    def add(
        self,
        kind: str,
        rows: tuple[int, int],
        error: BatchError | None = None,
        join: ingest_pb2.JoinCounts | None = None,
    ) -> None:
        n = rows[1] - rows[0]
        if kind == "accepted":
            self.accepted_batches += 1
            self.accepted_samples += n
            if join is not None:
                self.added += join.added
                self.matched += join.matched
                self.unknown += join.unknown
                self.expired += join.expired
                self.duplicate_ids += join.duplicate
        elif kind == "duplicate":
            self.duplicate_batches += 1
        else:
            self.rejected_batches += 1
            self.rejected_samples += n
            if error is not None:
                self.errors.append(error)


def classify(r: ingest_pb2.BatchResult, resent: bool) -> str:
    """``accepted``, ``duplicate``, ``rejected`` (final), ``refused`` (the stream is not there
    for this caller: NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED; nothing to resend) or
    ``retry`` (refused without consuming its number: resend from ``r.expected_sequence``).

    ``resent``: the batch went out before in a call that broke before its result came back, so a
    DUPLICATE answer is that earlier delivery, and its original outcome is the real one."""
    if r.status == ingest_pb2.BATCH_STATUS_ACCEPTED:
        return "accepted"
    if r.status == ingest_pb2.BATCH_STATUS_DUPLICATE:
        if resent and r.original_status == ingest_pb2.BATCH_STATUS_ACCEPTED:
            return "accepted"
        if resent and r.original_status == ingest_pb2.BATCH_STATUS_REJECTED:
            return "rejected"
        return "duplicate"
    if r.sequence == 0 or r.expected_sequence > r.sequence:
        return "rejected"  # consumed its number: never resend
    if r.error_code in _REFUSED or r.expected_sequence == 0:
        return "refused"
    return "retry"


def retry_call(failure: grpc.RpcError) -> bool:
    """Whether an Ingest call that failed with ``failure`` is worth opening again (the connection
    broke or the server is restarting), resending what it left unacknowledged."""
    return failure.code() in _RETRY_CALL


def backoff(attempt: int) -> float:
    """Seconds to wait before the next attempt: 0.1, 0.2, 0.4, ... capped at 1."""
    return min(0.05 * 2.0**attempt, 1.0)


def retry_delay(r: ingest_pb2.BatchResult, attempt: int) -> float:
    """Seconds to wait before resending after ``r`` asked for it: the server's ``retry_after``
    for a rate limit, nothing for a gap (the server only forgot this producer), else backoff."""
    if r.HasField("retry_after"):
        nanos: int = r.retry_after.ToNanoseconds()
        return nanos / 1e9
    return 0.0 if r.error_code == _OUT_OF_RANGE else backoff(attempt)


@dataclass
class Sent:
    """A batch with its sequence number, awaiting its result.

    ``index`` and ``rows`` place it in its ``log`` call (in a writer: since the writer opened);
    ``request`` is its message when the owner keeps it (a writer), else built at each send."""

    index: int
    rows: tuple[int, int]
    sequence: int
    request: pb.IngestRequest | None = None
    sent: bool = False  # handed to gRPC in the current call
    resent: bool = False  # handed to gRPC in a call that broke before its result came back


class Delivery:
    """The state of one producer's delivery on one stream (not thread-safe: its owner locks).

    Parameters
    ----------
    first_sequence : int
        The number of the next batch.
    retry_deadline : float
        Seconds without progress while the server is unreachable before its failed calls count
        towards ``MAX_ROUNDS``.
    clock : callable
        Monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        first_sequence: int,
        retry_deadline: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inflight: deque[Sent] = deque()  # in sequence order
        self.next_sequence = first_sequence
        self.result = LogResult()
        self.refused: ingest_pb2.BatchResult | None = None  # the first refusal: delivery stops
        self.last_retry: ingest_pb2.BatchResult | None = None
        self.attempt = 0  # paces the backoff
        self.stalled = 0  # calls in a row that counted towards giving up
        self.retry_deadline = retry_deadline
        self._clock = clock
        self._give_up_at = clock() + retry_deadline
        self._cursor = 0  # the batch the next result of this call is for
        self._settled = 0
        self._retry: ingest_pb2.BatchResult | None = None

    def add(self, index: int, rows: tuple[int, int]) -> Sent:
        """A new batch, numbered next."""
        batch = Sent(index, rows, self.next_sequence)
        self.next_sequence += 1
        self.inflight.append(batch)
        return batch

    def begin_call(self) -> None:
        """A new Ingest call resends every batch in flight, in order."""
        self._cursor = self._settled = 0
        self._retry = None
        for batch in self.inflight:
            batch.sent = False

    def on_result(self, r: ingest_pb2.BatchResult) -> tuple[str, Sent, BatchError | None]:
        """Settle the batch ``r`` answers: ``(kind, batch, error)``, kind as ``classify``. A
        ``retry`` batch stays in flight; the others leave it and count in ``result``."""
        if self._cursor >= len(self.inflight) or r.sequence != self.inflight[self._cursor].sequence:
            expected = (
                self.inflight[self._cursor].sequence if self._cursor < len(self.inflight) else None
            )
            raise EvalstreamError(
                "INTERNAL",
                f"Ingest: result for sequence {r.sequence} where {expected} was expected; the "
                "server broke the in-order acknowledgement contract",
            )
        batch = self.inflight[self._cursor]
        kind = classify(r, batch.resent)
        if kind == "retry":
            self._retry = self._retry or r
            self.last_retry = r
            self._cursor += 1
            return kind, batch, None
        del self.inflight[self._cursor]
        self._settled += 1
        error = None
        if kind in ("rejected", "refused"):
            parts = r.field_error
            error = BatchError(
                batch.index,
                batch.rows,
                batch.sequence,
                code_name(r.error_code),
                r.error_message,
                parts.field,
                parts.expected,
                parts.received,
                parts.hint,
            )
        if kind == "refused" and self.refused is None:
            self.refused = r
        join = r.join if r.HasField("join") else None
        self.result.add("rejected" if kind == "refused" else kind, batch.rows, error, join)
        return kind, batch, error

    @property
    def retry(self) -> ingest_pb2.BatchResult | None:
        """The first result of this call that asked for a resend (None if none did)."""
        return self._retry

    def end_call(self, failure: grpc.RpcError | None, waiting: bool) -> float | None:
        """After a call ended (``failure``: the error that ended it early): renumber or mark what
        is in flight, then the seconds to wait before the next call, or None to give up (a
        refusal, a failure not worth retrying, or ``MAX_ROUNDS`` stalled calls). ``waiting``:
        rows are still unacknowledged (an idle writer never gives up)."""
        retry = self._retry
        if retry is not None:
            # The server's numbering is behind ours (it forgot this producer, or refused a batch
            # without consuming it): every batch from there on is unapplied, renumber them.
            sequence = retry.expected_sequence
            for batch in self.inflight:
                batch.sequence = sequence
                batch.resent = False
                if batch.request is not None:
                    batch.request = _renumbered(batch.request, sequence)
                sequence += 1
            self.next_sequence = sequence
        elif failure is not None:
            for batch in self.inflight:
                if batch.sent:
                    batch.resent = True  # outcome unknown: a DUPLICATE answer will tell
        if self.refused is not None or (failure is not None and not retry_call(failure)):
            return None
        now = self._clock()
        if self._settled:
            self.attempt = self.stalled = 0
            self._give_up_at = now + self.retry_deadline
        else:
            self.attempt += 1
            if not waiting:
                self.stalled = 0
            elif failure is None or now >= self._give_up_at:
                # Unreachable (restart, dropped connection): the deadline bounds those rounds,
                # not their count, so the rounds after the server is back (a renumbering after a
                # gap) still have their own budget.
                self.stalled += 1
        if self.stalled >= MAX_ROUNDS:
            return None
        return retry_delay(retry, self.attempt) if retry is not None else backoff(self.attempt)


def _renumbered(request: pb.IngestRequest, sequence: int) -> pb.IngestRequest:
    out = pb.IngestRequest()
    out.CopyFrom(request)  # the old message may still be in the hands of the ended call
    out.sequence = sequence
    return out

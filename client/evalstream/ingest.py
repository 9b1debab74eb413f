"""Exactly-once delivery of one ``log`` call's rows over one ``Ingest`` stream.

Sequence numbers follow the service's rules (``evalstream/v1/ingest.proto``): per (stream,
producer) they start at 1 and go up by one per batch. A batch consumed its number exactly when the
server's ``expected_sequence`` is past it. From that rule:

- a call that breaks (``UNAVAILABLE``) is retried, resending the batches that got no result with
  the same numbers: a batch applied before the break comes back DUPLICATE with its original
  outcome, so nothing is counted twice;
- a batch refused without consuming its number (a gap after the server forgot this producer, a
  transient refusal) is renumbered from the server's ``expected_sequence`` and resent, with the
  batches after it;
- a batch refused for its content consumed its number and is reported, never resent.

Rounds are bounded (``MAX_ROUNDS``); what is still undelivered then is reported as an error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import grpc

from .errors import (
    EvalstreamError,
    InvalidBatchError,
    code_name,
    error_for,
    error_from_rpc,
)
from .tensors import Rows
from .v1 import evalstream_service_pb2 as pb
from .v1 import ingest_pb2

__all__ = [
    "BatchError",
    "LogResult",
    "Sequences",
    "deliver",
    "classify",
    "make_request",
    "retry_call",
    "MAX_ROUNDS",
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
    """

    batch_index: int
    rows: tuple[int, int]
    sequence: int
    code: str
    message: str


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


class Sequences:
    """The next sequence number per stream for one producer id (thread-safe)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, stream: str) -> int:
        with self._lock:
            return self._next.get(stream, 1)

    def set(self, stream: str, value: int) -> None:
        with self._lock:
            self._next[stream] = value

    def forget(self, stream: str) -> None:
        with self._lock:
            self._next.pop(stream, None)


def make_request(
    stream: str, producer_id: str, sequence: int, rows: Rows, event_time: Any = None
) -> pb.IngestRequest:
    """One IngestRequest carrying ``rows``."""
    scores, labels, weights = rows.tensors()
    req = pb.IngestRequest(
        stream=stream,
        producer_id=producer_id,
        sequence=sequence,
        kind=cast(pb.RecordKind, rows.kind),  # an int: the stubs type the enum as a class
    )
    for name, t in (("scores", scores), ("labels", labels), ("sample_weight", weights)):
        if t is not None:
            getattr(req, name).CopyFrom(t)
    if rows.ids is not None:
        req.ids.extend(rows.ids.tolist())
    if event_time is not None:
        req.event_time.CopyFrom(event_time)
    return req


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


def deliver(
    ingest: Callable[[Iterator[pb.IngestRequest]], Iterable[pb.IngestResponse]],
    stream: str,
    producer_id: str,
    rows: Rows,
    rows_per_message: int,
    sequences: Sequences,
    event_time: Any = None,
    retry_deadline: float = 60.0,
    remap: Callable[[], Rows] | None = None,
) -> LogResult:
    """Send ``rows`` in messages of ``rows_per_message`` rows; return once each has an outcome.

    ``ingest`` opens one Ingest call on a request iterator and returns its response iterator.
    Raises ``InvalidBatchError`` (after the call) if batches were rejected for their content,
    ``NotFoundError`` for an unknown stream, and the mapped error of a call that failed for good.
    The returned or raised error's ``result`` holds the totals either way. Gives up after
    ``MAX_ROUNDS`` calls in a row that settled no batch, or, while the server is unreachable
    (a dropped connection, a restart), once ``retry_deadline`` seconds have passed: until then it
    reconnects with exponential backoff (capped at 1 s) and resends what is unacknowledged.

    ``remap`` converts the call's input again (to as many rows) from fresh stream metadata. It is
    called at most once, when the server answers a sequence gap: it no longer knows this producer
    on this stream, so the stream may have been deleted and created again (with other classes:
    labels mapped from class names with the old ones would be wrong). The gap consumed nothing,
    so the batches are resent converted again.
    """
    give_up_at = time.monotonic() + retry_deadline
    n = rows.n
    spans = [(a, min(a + rows_per_message, n)) for a in range(0, n, rows_per_message)]
    result = LogResult()
    first = sequences.get(stream)
    seq = {i: first + i for i in range(len(spans))}
    sequences.set(stream, first + len(spans))
    pending = list(range(len(spans)))
    resent: set[int] = set()  # sent in a call that broke before their result came
    refused: list[ingest_pb2.BatchResult] = []
    failure: grpc.RpcError | None = None
    last_retry: ingest_pb2.BatchResult | None = None
    stalled = attempt = 0
    while pending and stalled < MAX_ROUNDS and not refused:
        order = list(pending)
        results, n_sent, failure = _one_call(
            ingest, stream, producer_id, rows, spans, order, seq, event_time
        )
        retry: list[int] = []
        retry_result: ingest_pb2.BatchResult | None = None
        settled = 0
        for i, r in zip(order, results, strict=False):
            if r.sequence != seq[i]:
                raise EvalstreamError(
                    "INTERNAL",
                    f"Ingest: result for sequence {r.sequence} where {seq[i]} was expected; the "
                    "server broke the in-order acknowledgement contract",
                )
            kind = classify(r, i in resent)
            if kind == "retry":
                retry.append(i)
                retry_result = retry_result or r
                last_retry = r
                continue
            settled += 1
            err = None
            if kind in ("rejected", "refused"):
                err = BatchError(i, spans[i], seq[i], code_name(r.error_code), r.error_message)
                if kind == "refused":
                    refused.append(r)
            join = r.join if r.HasField("join") else None
            result.add("rejected" if kind == "refused" else kind, spans[i], err, join)
        resent.update(order[len(results) : n_sent])  # outcome unknown
        if failure is not None and not retry_call(failure):
            raise _with_result(error_from_rpc(failure), result)
        pending = sorted(retry + order[len(results) :])
        attempt = 0 if settled else attempt + 1  # paces the backoff
        if settled:
            stalled = 0
        elif failure is not None and pending:
            # Unreachable (restart, dropped connection): the deadline bounds these rounds, not
            # their count, so the rounds after the server is back (a renumbering after a gap)
            # still have their own budget.
            if time.monotonic() >= give_up_at:
                stalled += 1
        else:
            stalled += 1
        if refused:
            if refused[0].error_code == _NOT_FOUND:  # no stream, so no numbering either
                sequences.forget(stream)
        elif retry_result is not None:
            if remap is not None and retry_result.error_code == _OUT_OF_RANGE:
                try:
                    rows, remap = remap(), None
                except EvalstreamError as exc:  # e.g. NOT_FOUND: the stream went away meanwhile
                    raise _with_result(exc, result) from None
                if rows.n != n:
                    raise ValueError(
                        f"remap: expected {n} rows, as many as the call has, received {rows.n}"
                    )
            # The server's numbering is behind ours (it forgot this producer, or refused a batch
            # without consuming it): every batch from there on is unapplied, renumber them.
            for k, i in enumerate(pending):
                seq[i] = retry_result.expected_sequence + k
                resent.discard(i)
            sequences.set(stream, retry_result.expected_sequence + len(pending))
            if pending and stalled < MAX_ROUNDS:
                time.sleep(retry_delay(retry_result, attempt))
        elif pending and stalled < MAX_ROUNDS:
            time.sleep(backoff(attempt))
    if refused:
        raise _with_result(error_for(refused[0].error_code, refused[0].error_message), result)
    if pending:
        for i in pending:
            if failure is not None or last_retry is None:
                code = failure.code().name if failure is not None else "UNAVAILABLE"
                text = (
                    "no acknowledgement, so the batch may or may not have been applied"
                    if i in resent
                    else "not sent: the calls failed before it"
                )
                if failure is not None and failure.details():
                    text += f" ({failure.details()})"
                result.errors.append(BatchError(i, spans[i], seq[i], code, text))
            else:  # refused without consuming its number every time: not applied
                code, text = code_name(last_retry.error_code), last_retry.error_message
                result.add("rejected", spans[i], BatchError(i, spans[i], seq[i], code, text))
        last = result.errors[-1]
        text = f"{len(pending)} batches undelivered after {MAX_ROUNDS} attempts: {last.message}"
        raise _with_result(error_for(last.code, text), result)
    if result.errors:
        raise InvalidBatchError(result.errors, result)
    return result


def _with_result(err: EvalstreamError, result: LogResult) -> EvalstreamError:
    err.result = result
    return err


def _one_call(
    ingest: Callable[[Iterator[pb.IngestRequest]], Iterable[pb.IngestResponse]],
    stream: str,
    producer_id: str,
    rows: Rows,
    spans: list[tuple[int, int]],
    order: list[int],
    seq: dict[int, int],
    event_time: Any,
) -> tuple[list[ingest_pb2.BatchResult], int, grpc.RpcError | None]:
    """Send the batches ``order`` over one Ingest call. Returns their results in order, how many
    requests were handed to gRPC, and the error that ended the call early (None if none).

    Once a batch comes back refused without consuming its number, the batches after it can only
    be refused as gaps: stop sending them (those already in flight come back as gaps)."""
    lock = threading.Lock()
    halt = False
    sent = 0

    def requests() -> Iterator[pb.IngestRequest]:
        nonlocal sent
        for i in order:
            with lock:  # once halted, nothing more counts as sent
                if halt:
                    return
                sent += 1
            a, b = spans[i]
            yield make_request(stream, producer_id, seq[i], rows.slice(a, b), event_time)

    results: list[ingest_pb2.BatchResult] = []
    failure = None
    try:
        for response in ingest(requests()):
            results.extend(response.results)
            if any(_unconsumed(r) for r in response.results):
                with lock:
                    halt = True
    except grpc.RpcError as exc:
        failure = exc
    with lock:
        halt = True
        n_sent = sent
    return results[: len(order)], n_sent, failure


def _unconsumed(r: ingest_pb2.BatchResult) -> bool:
    return (
        r.status == ingest_pb2.BATCH_STATUS_REJECTED
        and r.sequence > 0
        and r.expected_sequence <= r.sequence
    )

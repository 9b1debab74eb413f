"""Exactly-once delivery of one ``log`` call's rows over ``Ingest`` calls: the rows cut into
batches and handed to the client's one delivery state machine (``delivery.Delivery``, shared with
``Writer``), which says what each result means, what to resend under which number, and when to
give up. This module adds what is particular to a ``log`` call: its rows known in advance, its
producer's numbering kept across calls (``Sequences``), and the conversion of its input again
when the server no longer knows the producer (``remap``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import grpc

from .delivery import MAX_ROUNDS, BatchError, Delivery, LogResult, classify, retry_call
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

__all__ = [  # BatchError, LogResult, classify, retry_call and MAX_ROUNDS: from .delivery
    "BatchError",
    "LogResult",
    "Sequences",
    "deliver",
    "classify",
    "make_request",
    "retry_call",
    "MAX_ROUNDS",
]

_NOT_FOUND: int = grpc.StatusCode.NOT_FOUND.value[0]
_OUT_OF_RANGE: int = grpc.StatusCode.OUT_OF_RANGE.value[0]  # a gap: the server forgot us


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
    The returned or raised error's ``result`` holds the totals either way. Gives up as
    ``Delivery`` says: after ``MAX_ROUNDS`` calls in a row that settled no batch, the calls that
    found the server unreachable counting only once ``retry_deadline`` seconds passed without
    progress (until then it reconnects with exponential backoff, capped at 1 s).

    ``remap`` converts the call's input again (to as many rows) from fresh stream metadata. It is
    called at most once, when the server answers a sequence gap: it no longer knows this producer
    on this stream, so the stream may have been deleted and created again (with other classes:
    labels mapped from class names with the old ones would be wrong). The gap consumed nothing,
    so the batches are resent converted again.
    """
    n = rows.n
    delivery = Delivery(sequences.get(stream), retry_deadline)
    for i, a in enumerate(range(0, n, rows_per_message)):
        delivery.add(i, (a, min(a + rows_per_message, n)))
    sequences.set(stream, delivery.next_sequence)
    failure: grpc.RpcError | None = None
    while delivery.inflight:
        delivery.begin_call()
        results, failure = _one_call(ingest, stream, producer_id, rows, delivery, event_time)
        for r in results:
            delivery.on_result(r)
        retry = delivery.retry
        wait = delivery.end_call(failure, waiting=bool(delivery.inflight))
        if failure is not None and not retry_call(failure):
            raise _with_result(error_from_rpc(failure), delivery.result)
        if delivery.refused is not None:
            refused = delivery.refused
            if refused.error_code == _NOT_FOUND:  # no stream, so no numbering either
                sequences.forget(stream)
            raise _with_result(
                error_for(refused.error_code, refused.error_message), delivery.result
            )
        if retry is not None:
            sequences.set(stream, delivery.next_sequence)
            if remap is not None and retry.error_code == _OUT_OF_RANGE:
                try:
                    rows, remap = remap(), None
                except EvalstreamError as exc:  # e.g. NOT_FOUND: the stream went away meanwhile
                    raise _with_result(exc, delivery.result) from None
                if rows.n != n:
                    raise ValueError(
                        f"remap: expected {n} rows, as many as the call has, received {rows.n}"
                    )
        if wait is None:
            break
        if delivery.inflight:
            time.sleep(wait)
    result = delivery.result
    if delivery.inflight:
        last_retry = delivery.last_retry
        for b in delivery.inflight:
            if failure is not None or last_retry is None:
                code = failure.code().name if failure is not None else "UNAVAILABLE"
                text = (
                    "no acknowledgement, so the batch may or may not have been applied"
                    if b.resent
                    else "not sent: the calls failed before it"
                )
                if failure is not None and failure.details():
                    text += f" ({failure.details()})"
                result.errors.append(BatchError(b.index, b.rows, b.sequence, code, text))
            else:  # refused without consuming its number every time: not applied
                code, text = code_name(last_retry.error_code), last_retry.error_message
                result.add("rejected", b.rows, BatchError(b.index, b.rows, b.sequence, code, text))
        last = result.errors[-1]
        text = (
            f"{len(delivery.inflight)} batches undelivered after {MAX_ROUNDS} attempts: "
            f"{last.message}"
        )
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
    delivery: Delivery,
    event_time: Any,
) -> tuple[list[ingest_pb2.BatchResult], grpc.RpcError | None]:
    """Send the batches in flight over one Ingest call. Returns their results in order and the
    error that ended the call early (None if none); the batches handed to gRPC are marked sent.

    Once a batch comes back refused without consuming its number, the batches after it can only
    be refused as gaps: stop sending them (those already in flight come back as gaps)."""
    lock = threading.Lock()
    halt = False
    order = list(delivery.inflight)

    def requests() -> Iterator[pb.IngestRequest]:
        for batch in order:
            with lock:  # once halted, nothing more counts as sent
                if halt:
                    return
                batch.sent = True
            a, b = batch.rows
            yield make_request(stream, producer_id, batch.sequence, rows.slice(a, b), event_time)

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
    return results[: len(order)], failure


def _unconsumed(r: ingest_pb2.BatchResult) -> bool:
    return (
        r.status == ingest_pb2.BATCH_STATUS_REJECTED
        and r.sequence > 0
        and r.expected_sequence <= r.sequence
    )

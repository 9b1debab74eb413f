"""``Writer``: continuous logging from a serving loop over one long-lived Ingest stream.

``log`` (labelled rows), ``log_predictions`` (predictions whose labels come later) and
``log_labels`` (their labels) append rows to a bounded buffer and return; a background thread
cuts batches of ``flush_rows`` rows (or whatever waited ``flush_interval`` seconds) and streams
them with sequence numbers of the writer's own producer id. Rows count against
``max_buffer_rows`` until the server acknowledged them, so memory stays bounded when the server
is slow or away: the ``log`` calls then block. Errors of the background thread are raised by
the next ``log`` call, ``flush`` or ``close``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any

import grpc

from .delivery import BatchError, Delivery, LogResult, Sent
from .errors import EvalstreamError, InvalidBatchError, code_name, error_for, error_from_rpc
from .ingest import make_request
from .tensors import MAX_BATCH_ROWS, MESSAGE_BYTES, Rows, concat_rows, id_rows, to_rows
from .v1 import evalstream_service_pb2 as pb
from .v1 import ingest_pb2

__all__ = ["Writer"]


class Writer:
    """Buffered, background logging to one stream; create it with ``EvalClient.writer``.

    Use it as a context manager (``with client.writer("s") as w: ... w.log(y, p)``): leaving the
    block flushes and stops it. Thread-safe: several threads may ``log`` at once.

    Predictions whose labels come later go through the same buffer and delivery:
    ``w.log_predictions(ids, y_score)`` at inference time, ``w.log_labels(ids, y_true)`` when the
    labels arrive (from the same writer, another one or ``EvalClient.log_labels``). Rows are sent
    in the order they were logged, so a label logged after its prediction on one writer reaches
    the server after it. Rows of different kinds or dtypes travel in separate batches.

    Memory is bounded: at most ``max_buffer_rows`` rows are held (buffered, or sent and not yet
    acknowledged); ``log`` blocks while the buffer is full (the background thread then sends
    without waiting for ``flush_interval``).

    A batch the server rejects (bad data) does not stop the writer: the next ``log``, ``flush`` or
    ``close`` raises ``InvalidBatchError`` for it once (that call itself buffers nothing). A
    failure the writer cannot recover from (the stream was deleted, the server stayed away past
    ``retry_deadline`` seconds and ``MAX_ROUNDS`` calls: ``delivery.Delivery``, the rule ``log``
    follows too) stops it, and every later call raises that error.
    """

    def __init__(
        self,
        ingest: Callable[[Iterator[pb.IngestRequest]], Iterable[pb.IngestResponse]],
        stream: str,
        producer_id: str,
        classes: Sequence[str] = (),
        max_buffer_rows: int = 65536,
        flush_rows: int = 4096,
        flush_interval: float = 1.0,
        message_bytes: int = MESSAGE_BYTES,
        max_batch_rows: int = MAX_BATCH_ROWS,
        retry_deadline: float = 60.0,
    ) -> None:
        for name, value in (("max_buffer_rows", max_buffer_rows), ("flush_rows", flush_rows)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, received {value!r}")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval: expected seconds > 0, received {flush_interval!r}")
        self.stream = stream
        self.producer_id = producer_id
        self.max_buffer_rows = max_buffer_rows
        self.flush_rows = min(flush_rows, max_buffer_rows)
        self.flush_interval = float(flush_interval)
        self._ingest = ingest
        self._classes = tuple(classes)
        self._message_bytes = message_bytes
        self._max_batch_rows = max_batch_rows
        self._cond = threading.Condition()
        self._unsent: deque[Rows] = deque()
        self._unsent_since: float | None = None
        self._delivery = Delivery(1, retry_deadline)  # batches in flight, totals, giving up
        # Three row counters, each only growing, with logged >= taken >= finished; what is
        # buffered (_unsent_rows) and what counts against max_buffer_rows (_held) derive from them.
        self._logged = 0  # rows taken by log()
        self._taken = 0  # rows cut into batches
        self._finished = 0  # rows whose batch has a final outcome
        self._flush_upto = 0  # rows to send now, without waiting
        self._waiters = 0  # log() calls waiting for room
        self._n_batches = 0
        self._generation = 0
        self._closing = False
        self._closed = False
        self._unreported: list[BatchError] = []
        self._fatal: EvalstreamError | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"evalstream-writer-{stream}", daemon=True
        )
        self._thread.start()

    # -- public --------------------------------------------------------------------------------
    def log(
        self, y_true: Any, y_score: Any, sample_weight: Any = None, timeout: float | None = None
    ) -> None:
        """Append rows to the buffer; blocks while it is full.

        The arrays are copied, so the caller may reuse them at once. ``timeout`` bounds the wait
        for room (``TimeoutError``; rows already buffered by this call stay buffered).
        """
        self._append(to_rows(y_true, y_score, sample_weight, self._classes, copy=True), timeout)

    def log_predictions(self, ids: Any, y_score: Any, timeout: float | None = None) -> None:
        """Append predictions whose labels come later, one id per row (as
        ``EvalClient.log_predictions``); blocks while the buffer is full.

        They are placed in the windows of the server's clock when their batch arrives (at most
        about ``flush_interval`` after this call while the server keeps up). ``result.added`` and
        ``result.duplicate_ids`` count what became of them. ``timeout`` as in ``log``.
        """
        self._append(id_rows(ids, y_score=y_score, copy=True), timeout)

    def log_labels(self, ids: Any, y_true: Any, timeout: float | None = None) -> None:
        """Append the labels of predictions logged earlier (as ``EvalClient.log_labels``; class
        names map with the classes the stream had when the writer opened); blocks while the
        buffer is full. ``result.matched``, ``unknown``, ``expired`` and ``duplicate_ids`` count
        what became of them. ``timeout`` as in ``log``.
        """
        self._append(id_rows(ids, y_true=y_true, classes=self._classes, copy=True), timeout)

    def _append(self, rows: Rows, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        start = 0
        with self._cond:
            self._raise_pending()
            if self._closing:
                raise RuntimeError(f"writer for stream {self.stream!r} is closed")
            while start < rows.n:
                room = self.max_buffer_rows - self._held
                if room <= 0:
                    self._waiters += 1
                    self._cond.notify_all()
                    try:
                        self._wait(
                            deadline,
                            f"room in the buffer ({start} of {rows.n} rows "
                            "of this call were buffered)",
                        )
                    finally:
                        self._waiters -= 1
                    self._raise_fatal()
                    continue
                take = min(room, rows.n - start)
                self._unsent.append(rows.slice(start, start + take))
                self._logged += take
                if self._unsent_since is None:
                    self._unsent_since = time.monotonic()
                start += take
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> LogResult:
        """Send everything logged so far and wait until the server acknowledged it; return the
        writer's totals. Raises errors of the background thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            target = self._logged
            self._flush_upto = max(self._flush_upto, target)
            self._cond.notify_all()
            while self._finished < target and self._fatal is None:
                self._wait(deadline, f"acknowledgements ({self._finished} of {target} rows)")
            self._raise_pending()
            return self.result

    def close(self, timeout: float | None = None) -> LogResult:
        """Flush, stop the background thread and return the totals. Idempotent."""
        with self._cond:
            if self._closed:
                return self.result
            self._closing = True
            self._flush_upto = self._logged
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(
                f"writer for stream {self.stream!r}: not all rows acknowledged within "
                f"{timeout} s ({self._finished} of {self._logged})"
            )
        with self._cond:
            self._closed = True
            self._raise_pending()
            return self.result

    @property
    def result(self) -> LogResult:
        """Totals so far (a copy)."""
        with self._cond:
            result = self._delivery.result
            return replace(result, errors=list(result.errors))

    @property
    def buffered_rows(self) -> int:
        """Rows held now: buffered, or sent and not yet acknowledged."""
        with self._cond:
            return self._held

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:  # do not hide the body's exception behind a close error
            self.close()
        except Exception as close_error:  # noqa: BLE001
            exc.add_note(f"also, closing the evalstream writer failed: {close_error}")

    # -- row accounting (hold self._cond) -------------------------------------------------------
    @property
    def _held(self) -> int:
        """Rows buffered or in flight: bounded by ``max_buffer_rows``."""
        return self._logged - self._finished

    @property
    def _unsent_rows(self) -> int:
        """Rows logged and not yet cut into a batch."""
        return self._logged - self._taken

    # -- caller side helpers (hold self._cond) -------------------------------------------------
    def _wait(self, deadline: float | None, what: str) -> None:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(f"writer for stream {self.stream!r}: timed out waiting for {what}")
        self._cond.wait(remaining)

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _raise_pending(self) -> None:
        self._raise_fatal()
        if self._unreported:
            errors, self._unreported = self._unreported, []
            raise InvalidBatchError(errors, self.result, where="writer")

    # -- background ----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - e.g. the client's channel was closed
            with self._cond:
                self._fail(EvalstreamError("CANCELLED", f"writer stopped: {exc!r}"))

    def _loop(self) -> None:
        delivery = self._delivery
        while True:
            with self._cond:
                if self._fatal is not None or (self._closing and self._held == 0):
                    return
                self._generation += 1
                generation = self._generation
                delivery.begin_call()
                resend = list(delivery.inflight)
            call = self._ingest(self._requests(generation, resend))
            failure: grpc.RpcError | None = None
            retry: ingest_pb2.BatchResult | None = None
            try:
                for response in call:
                    retry = self._on_results(response.results)
                    if retry is not None:
                        call.cancel()  # type: ignore[attr-defined]
                        break
            except grpc.RpcError as exc:
                failure = exc
            with self._cond:
                self._generation += 1  # releases this call's request iterator
                self._cond.notify_all()
                if self._fatal is not None:
                    return
                wait = delivery.end_call(failure, waiting=self._held > 0)
                if failure is None and retry is None and self._closing and self._held == 0:
                    return
                if wait is None:
                    if failure is not None:
                        error = error_from_rpc(failure)
                    elif retry is not None:
                        error = EvalstreamError(code_name(retry.error_code), retry.error_message)
                    else:
                        error = EvalstreamError(
                            "UNAVAILABLE", "Ingest ended before every batch was acknowledged"
                        )
                    self._fail(error)
                    return
            time.sleep(wait)

    def _fail(self, error: EvalstreamError) -> None:
        """Stop for good (holds self._cond)."""
        result = self._delivery.result
        error.result = replace(result, errors=list(result.errors))
        self._fatal = error
        self._cond.notify_all()

    def _requests(self, generation: int, resend: list[Sent]) -> Iterator[pb.IngestRequest]:
        """The request iterator of one Ingest call (grpc runs it on its own thread)."""
        for b in resend:
            with self._cond:
                if self._generation != generation:
                    return
                b.sent = True
                request = b.request
            assert request is not None
            yield request
        while True:
            with self._cond:
                while True:
                    if self._generation != generation or self._fatal is not None:
                        return
                    batch = self._take()
                    if batch is not None:
                        batch.sent = True
                        break
                    if self._closing and self._unsent_rows == 0:
                        return  # half-close: the server acknowledges the rest and ends
                    wait = 1.0
                    if self._unsent_since is not None:
                        due = self._unsent_since + self.flush_interval - time.monotonic()
                        wait = min(wait, max(due, 0.001))
                    self._cond.wait(wait)
            assert batch.request is not None
            yield batch.request

    def _take(self) -> Sent | None:
        """Cut the next batch from the buffer if one is due (holds self._cond)."""
        if self._unsent_rows == 0:
            return None
        now = time.monotonic()
        due = (
            self._unsent_rows >= self.flush_rows
            or self._closing
            or self._waiters > 0
            or self._taken < self._flush_upto
            or (self._unsent_since is not None and now - self._unsent_since >= self.flush_interval)
        )
        if not due:
            return None
        head = self._unsent[0]
        limit = min(self.flush_rows, self._max_batch_rows)
        budget = self._message_bytes  # the parts' row sizes differ where their ids do
        parts: list[Rows] = []
        count = 0
        while self._unsent and count < limit and self._unsent[0].signature == head.signature:
            r = self._unsent[0]
            row_bytes = max(r.row_bytes, 1)
            need = min(limit - count, budget // row_bytes)
            if need <= 0:
                if count:
                    break
                need = 1  # a row larger than a message still goes, alone
            if r.n <= need:
                parts.append(self._unsent.popleft())
                need = r.n
            else:
                parts.append(r.slice(0, need))
                self._unsent[0] = r.slice(need, r.n)
            count += need
            budget -= need * row_bytes
        start = self._taken
        self._taken += count
        if self._unsent_rows == 0:
            self._unsent_since = None
        batch = self._delivery.add(self._n_batches, (start, start + count))
        batch.request = make_request(
            self.stream, self.producer_id, batch.sequence, concat_rows(parts)
        )
        self._n_batches += 1
        return batch

    def _on_results(
        self, results: Iterable[ingest_pb2.BatchResult]
    ) -> ingest_pb2.BatchResult | None:
        """Settle acknowledged batches; return the first result that asks for a resend (None if
        none did)."""
        with self._cond:
            try:
                for r in results:
                    try:
                        kind, batch, error = self._delivery.on_result(r)
                    except EvalstreamError as exc:  # results out of order
                        self._fail(exc)
                        return None
                    if kind == "retry":
                        return r
                    if kind == "refused":
                        self._fail(error_for(r.error_code, r.error_message))
                        return None
                    if error is not None:
                        self._unreported.append(error)
                    self._finished += batch.rows[1] - batch.rows[0]
                return None
            finally:
                self._cond.notify_all()

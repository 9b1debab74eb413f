"""Record forwarded responses as predictions, off the request path.

The request path only calls ``submit`` (an append to a bounded intake queue; it never raises
and never waits). Two daemon threads do the rest:

- the *parser* turns each intake entry into score rows (``outputs.decode_scores``) and row ids
  (``ids.row_ids``) and adds them to the ``PredictionBuffer`` (at most ``max_buffer_rows`` rows;
  what does not fit is dropped and counted);
- the *sender* takes ready chunks, oldest first, and calls the sink,
  ``sink(stream, ids, y_score, timestamp=...)`` (``EvalClient.log_predictions``: exactly once
  with one producer id). A transient failure (evalstream unreachable, overloaded) puts the
  unacknowledged rows back at the front and retries with backoff; a refusal (unknown stream,
  bad rows, no permission) drops them and counts them.

Retried rows keep their ids: the client resends what it has no acknowledgement for, and evalstream
counts a prediction id once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
from evalstream.errors import InvalidBatchError
from tritonclient.grpc import service_pb2

from .buffer import Chunk, PredictionBuffer
from .ids import row_ids, valid_ids
from .metrics import ProxyMetrics
from .outputs import OutputError, decode_scores
from .routes import ModelRoute

__all__ = ["Recorder", "Sink", "TRANSIENT_CODES"]

log = logging.getLogger("evalstream.proxy")

Sink = Callable[..., Any]
# Codes after which the same rows may succeed later: keep them buffered. OUT_OF_RANGE is a
# sequence gap (evalstream restarted or forgot this producer): the client renumbers on the next
# call; rows refused for their content come back as InvalidBatchError instead.
TRANSIENT_CODES = frozenset(
    {
        "UNAVAILABLE",
        "OUT_OF_RANGE",
        "DEADLINE_EXCEEDED",
        "CANCELLED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "INTERNAL",
        "UNKNOWN",
    }
)
_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.05, 2.0
_IDLE_S = 0.1  # the parser sleeps this long at most when nothing arrives (a submit wakes it)


class _Entry(NamedTuple):
    route: ModelRoute | None  # None: a streamed response, routed by its model name
    request_id: str | None
    timestamp: float  # unix seconds the request arrived
    arrived: float  # time.monotonic() of the same moment
    raw: bytes  # ModelInferResponse, or ModelStreamInferResponse when route is None
    times: dict[str, float] | None = None  # streamed: arrival of each request id


class Recorder:
    """Buffer forwarded responses and send their rows to evalstream in the background.

    Parameters
    ----------
    sink : callable
        ``sink(stream, ids, y_score, timestamp=unix_seconds)``, returning an object with
        ``rejected_samples`` (an ``evalstream.LogResult``) or None.
    routes : mapping of str to ModelRoute
        By model name, for streamed responses.
    metrics : ProxyMetrics
    max_buffer_rows : int
        Rows buffered at most (parsed, unsent or in flight).
    batch_rows : int
        Rows per ``sink`` call at most.
    flush_interval : float
        Seconds a chunk stays open for more rows; also the timestamp resolution.
    max_intake : int
        Unparsed responses queued at most.
    """

    def __init__(
        self,
        sink: Sink,
        routes: Mapping[str, ModelRoute],
        metrics: ProxyMetrics,
        *,
        max_buffer_rows: int = 100_000,
        batch_rows: int = 4096,
        flush_interval: float = 0.05,
        max_intake: int = 4096,
    ) -> None:
        if max_buffer_rows < 1 or batch_rows < 1 or max_intake < 1 or flush_interval <= 0:
            raise ValueError(
                "recorder: expected max_buffer_rows, batch_rows, max_intake >= 1 and "
                f"flush_interval > 0, received {max_buffer_rows}, {batch_rows}, {max_intake}, "
                f"{flush_interval}"
            )
        self.sink = sink
        self.routes = dict(routes)
        self.metrics = metrics
        self.buffer = PredictionBuffer(max_buffer_rows, batch_rows, flush_interval)
        self.max_intake = max_intake
        self._intake: deque[_Entry] = deque()
        self._closing = threading.Event()
        self._abandon = threading.Event()
        # The parser waits for work instead of polling: a wake-up every few milliseconds took
        # the GIL from the event loop that forwards requests.
        self._work = threading.Event()
        self._send_poll = min(flush_interval / 4, 0.02)
        self._parser = threading.Thread(target=self._parse_loop, name="proxy-parser", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="proxy-sender", daemon=True)
        self._last_warning: dict[tuple[str, str], float] = {}
        metrics.buffer_rows.set_function(lambda: self.buffer.rows)

    # -- request path --------------------------------------------------------------------------
    def submit(self, route: ModelRoute, request_id: str, timestamp: float, raw: bytes) -> None:
        """Queue one ModelInferResponse for recording under ``request_id``. Never raises."""
        self._enqueue(_Entry(route, request_id, timestamp, time.monotonic(), raw))

    def submit_streamed(self, timestamp: float, raw: bytes, times: dict[str, float]) -> None:
        """Queue one ModelStreamInferResponse, routed and identified by its own fields; its time
        is ``times.pop(id)`` (the request's arrival), else ``timestamp``."""
        self._enqueue(_Entry(None, None, timestamp, time.monotonic(), raw, times))

    def _enqueue(self, entry: _Entry) -> None:
        try:
            if len(self._intake) < self.max_intake and not self._closing.is_set():
                self._intake.append(entry)
                if not self._work.is_set():
                    self._work.set()
                return
            reason = "shutdown" if self._closing.is_set() else "buffer_full"
            parsed = self._decode(entry)  # only to count what is dropped
            if parsed is not None:
                self.metrics.drop(parsed[0].stream, reason, len(parsed[1]))
        except Exception:  # never fail the request that is being answered
            log.exception("recording a response failed")

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Recorder:
        self._parser.start()
        self._sender.start()
        return self

    def close(self, timeout: float = 5.0) -> int:
        """Stop taking responses, send what is buffered for up to ``timeout`` seconds, and
        return the rows that were still unsent then (counted as dropped, reason shutdown)."""
        self._closing.set()
        self._work.set()
        deadline = time.monotonic() + timeout
        if self._parser.is_alive():
            self._parser.join(max(0.0, deadline - time.monotonic()))
        if self._sender.is_alive():
            self._sender.join(max(0.0, deadline - time.monotonic()))
        self._abandon.set()
        left = 0
        while self._intake:
            parsed = self._decode(self._intake.popleft())
            if parsed is not None:
                self.metrics.drop(parsed[0].stream, "shutdown", len(parsed[1]))
                left += len(parsed[1])
        for chunk in self.buffer.drain():
            self.metrics.drop(chunk.stream, "shutdown", chunk.rows)
            left += chunk.rows
        return left

    def idle(self) -> bool:
        """Nothing queued, buffered or in flight."""
        return not self._intake and self.buffer.rows == 0

    # -- parser thread -------------------------------------------------------------------------
    def _decode(self, entry: _Entry) -> tuple[ModelRoute, list[str], np.ndarray, float] | None:
        """Route, row ids, scores and time of an entry; None (counted) when it cannot be
        recorded."""
        route, request_id, timestamp = entry.route, entry.request_id, entry.timestamp
        if route is None:
            streamed = service_pb2.ModelStreamInferResponse.FromString(entry.raw)
            if streamed.error_message or not streamed.HasField("infer_response"):
                return None
            response = streamed.infer_response
            route = self.routes.get(response.model_name)
            if route is None:
                return None
            request_id = response.id
            if not request_id:
                self.metrics.drop(route.stream, "no_id", 1)
                return None
            if entry.times is not None:
                timestamp = entry.times.pop(request_id, timestamp)
        else:
            response = service_pb2.ModelInferResponse.FromString(entry.raw)
        try:
            scores = decode_scores(response, route.output)
        except OutputError as exc:
            self.metrics.drop(route.stream, "bad_output", 1)
            self._warn(route.stream, "bad_output", str(exc))
            return None
        assert request_id is not None
        ids = row_ids(request_id, len(scores))
        if not valid_ids(ids):
            self.metrics.drop(route.stream, "bad_id", len(ids))
            self._warn(route.stream, "bad_id", f"request id {request_id[:300]!r} is too long")
            return None
        return route, ids, scores, timestamp

    def _parse_loop(self) -> None:
        while True:
            if not self._intake:
                if self._closing.is_set():
                    return
                self._work.clear()
                if not self._intake:  # checked again after the clear: no submit is missed
                    self._work.wait(_IDLE_S)
                continue
            entry = self._intake.popleft()
            try:
                parsed = self._decode(entry)
            except Exception:  # a malformed upstream answer: count nothing, keep going
                log.exception("could not parse a response for recording")
                continue
            if parsed is None:
                continue
            route, ids, scores, timestamp = parsed
            if not self.buffer.add(route.stream, timestamp, entry.arrived, ids, scores):
                self.metrics.drop(route.stream, "buffer_full", len(ids))

    # -- sender thread -------------------------------------------------------------------------
    def _send_loop(self) -> None:
        backoff = 0.0
        while not self._abandon.is_set():
            closing = self._closing.is_set()
            chunk = self.buffer.take(time.monotonic(), everything=closing)
            if chunk is None:
                if closing and not self._parser.is_alive() and self.buffer.empty():
                    return
                time.sleep(self._send_poll)
                continue
            if self._send(chunk):
                backoff = 0.0
            else:
                backoff = min(max(backoff * 2, _BACKOFF_MIN_S), _BACKOFF_MAX_S)
                self._abandon.wait(backoff)

    def _send(self, chunk: Chunk) -> bool:
        """One sink call; True unless rows went back to the buffer for a retry."""
        stream = chunk.stream
        try:
            result = self.sink(stream, chunk.ids, chunk.scores(), timestamp=chunk.timestamp)
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            return self._failed(chunk, exc)
        rejected = int(getattr(result, "rejected_samples", 0) or 0)
        duplicate = int(getattr(result, "duplicate_ids", 0) or 0)
        self.metrics.record(stream, chunk.rows - rejected - duplicate)
        self.metrics.drop(stream, "rejected", rejected)
        self.metrics.drop(stream, "duplicate_id", duplicate)
        self.buffer.release(chunk.rows)
        return True

    def _failed(self, chunk: Chunk, exc: Exception) -> bool:
        stream = chunk.stream
        code = str(getattr(exc, "code", "") or type(exc).__name__)
        self.metrics.send_errors.labels(stream=stream, code=code).inc()
        result = getattr(exc, "result", None)
        transient = code in TRANSIENT_CODES or isinstance(exc, ConnectionError | TimeoutError)
        if isinstance(exc, InvalidBatchError) or not transient:
            # Refused: resending the same rows fails the same way. An InvalidBatchError's other
            # batches were applied.
            rejected = chunk.rows
            if isinstance(exc, InvalidBatchError) and result is not None:
                rejected = int(result.rejected_samples)
                self.metrics.record(stream, chunk.rows - rejected)
            self.metrics.drop(stream, "rejected", rejected)
            self.buffer.release(chunk.rows)
            self._warn(stream, code, f"evalstream refused {rejected} rows: {exc}")
            return True
        unsent = chunk
        if result is not None and result.errors:  # resend only what has no acknowledgement
            spans = sorted({e.rows for e in result.errors})
            unsent = chunk.subset(spans)
        self.metrics.record(stream, chunk.rows - unsent.rows)
        self.buffer.release(chunk.rows - unsent.rows)
        if self._abandon.is_set():
            self.metrics.drop(stream, "shutdown", unsent.rows)
            self.buffer.release(unsent.rows)
        else:
            self.buffer.put_back(unsent)
        self._warn(stream, code, f"evalstream unavailable, {self.buffer.rows} rows buffered: {exc}")
        return False

    def _warn(self, stream: str, kind: str, message: str) -> None:
        """Log at most one warning per stream and kind every 10 s."""
        now = time.monotonic()
        key = (stream, kind)
        if now - self._last_warning.get(key, -1e9) >= 10.0:
            self._last_warning[key] = now
            log.warning(" ".join(message.split()), extra={"stream": stream})

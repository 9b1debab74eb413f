"""``EvalClient``: the Python client of the evalstream service over a synchronous gRPC channel."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import numpy as np
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from .errors import error_from_rpc
from .ingest import LogResult, Sequences, deliver
from .report import Curve, Report
from .streams import StreamInfo, stream_config
from .tensors import MAX_BATCH_ROWS, MESSAGE_BYTES, Rows, UnknownClassError, id_rows, to_rows
from .v1 import curve_pb2
from .v1 import evalstream_service_pb2 as pb
from .v1.evalstream_service_pb2_grpc import EvalstreamServiceStub
from .writer import Writer

__all__ = ["EvalClient"]

MAX_SEND_BYTES = 4 * 1024 * 1024  # the server's default receive limit
MAX_RECEIVE_BYTES = 64 * 1024 * 1024  # reports with curves can be large
_CURVE_KINDS = {
    "roc": curve_pb2.CURVE_KIND_ROC,
    "pr": curve_pb2.CURVE_KIND_PRECISION_RECALL,
    "precision_recall": curve_pb2.CURVE_KIND_PRECISION_RECALL,
}


class EvalClient:
    """Client of an evalstream server. Thread-safe; a context manager; ``close()`` when done.

    Parameters
    ----------
    target : str
        ``"host:port"`` of the server.
    token : str, optional
        Sent as ``authorization: Bearer <token>`` metadata on every call.
    tls : bool, dict or object, optional
        None or False: plaintext. True: TLS with the system's root certificates. A dict (or an
        object with these attributes) of PEM bytes ``root_certificates``, ``certificate_chain``
        and ``private_key`` (the last two for mutual TLS), and optionally ``server_name`` to
        check the server's certificate against another name than the target's host.
    timeout : float
        Deadline in seconds of each unary call. An Ingest call of ``log`` gets ``timeout`` plus
        one second per MiB it sends; ``watch`` and writers have none.
    producer_id : str, optional
        The producer id of exactly-once delivery; default a fresh UUID4 per client. Sequence
        numbers start at 1 per (client, stream). A client created again with the same id that
        logs the same data in the same order replays idempotently: the server answers DUPLICATE
        for what it had applied.
    max_batch_rows : int
        Most rows per message (the server's ``max_batch_rows``).
    options : sequence of (str, value)
        Extra gRPC channel options.
    """

    def __init__(
        self,
        target: str,
        token: str | None = None,
        tls: Any = None,
        timeout: float = 30.0,
        *,
        producer_id: str | None = None,
        max_batch_rows: int = MAX_BATCH_ROWS,
        options: Sequence[tuple[str, Any]] = (),
        retry_deadline: float = 60.0,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.producer_id = producer_id or str(uuid.uuid4())
        self.max_batch_rows = max_batch_rows
        self.retry_deadline = retry_deadline
        self._channel = _channel(target, tls, options)
        self._stub = EvalstreamServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        self._sequences = Sequences()
        # Each stream's classes, to map class names to indices without a GetStream per call.
        # Dropped by this client's create/delete/reset of the stream; refreshed when names are
        # unknown or when the server no longer knows this producer (see _named_rows).
        self._classes: dict[str, tuple[str, ...]] = {}
        self._classes_guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._writer_ids = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close the channel; calls in flight fail with ``UnavailableError``."""
        self._channel.close()

    def __enter__(self) -> EvalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EvalClient(target={self.target!r}, producer_id={self.producer_id!r})"

    def _unary(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    # -- streams -------------------------------------------------------------------------------
    def create_stream(
        self,
        name: str,
        task: str,
        classes: Sequence[str],
        scores: str = "probabilities",
        windows: Sequence[str] = (),
        thresholds: Sequence[float] | float = (),
        resolution: str = "bins",
        ovo_class_limit: int | None = None,
        top_k: int | None = None,
        calibration_bins: int | None = None,
        *,
        low_confidence: float | None = None,
        prior_reference: str | None = None,
        pending_retention: float | None = None,
        max_pending: int | None = None,
    ) -> StreamInfo:
        """Create a stream; return it with the server's defaults filled in.

        Parameters
        ----------
        name : str
            1 to 128 characters from ``[A-Za-z0-9._-]``.
        task : {"binary", "multiclass", "multilabel"}
            Declared, never guessed from the data.
        classes : sequence of str
            Class names (binary: the negative, then the positive class).
        scores : {"probabilities", "logits"}
        windows : sequence of str
            Sliding windows besides the cumulative state, e.g. ``("5m", "1h")``.
        thresholds : float or sequence of float
            Decision thresholds of binary and multilabel streams (default 0.5).
        resolution : str
            ``"bins"`` (bounded memory, AUC and AP within guaranteed bounds), ``"bins:<m>"``
            (``m`` mantissa bits), ``"exact"`` (sklearn's values, memory linear in the samples)
            or ``"exact:<max samples>"``.
        ovo_class_limit, top_k, calibration_bins : int, optional
            None takes the server default.
        low_confidence : float, optional
            Label-free figures: predictions less confident than this count as low-confidence
            (default 0.6).
        prior_reference : str, optional
            The window prior shift is measured against: ``"cumulative"`` (default) or one of
            ``windows``.
        pending_retention : float, optional
            Seconds a prediction from ``log_predictions`` waits for its label (default 7 days).
        max_pending : int, optional
            Most predictions awaiting labels (default 100,000); the oldest are evicted past it.

        Raises
        ------
        AlreadyExistsError, InvalidArgumentError
        """
        config = stream_config(
            name, task, classes, scores, windows, thresholds, resolution,
            ovo_class_limit, top_k, calibration_bins,
            low_confidence, prior_reference, pending_retention, max_pending,
        )  # fmt: skip
        response = self._unary(self._stub.CreateStream, pb.CreateStreamRequest(config=config))
        self._sequences.forget(name)  # a new stream knows no producer
        self._forget_classes(name)
        return StreamInfo.from_proto(response.stream)

    def get_stream(self, name: str) -> StreamInfo:
        """One stream. Raises ``NotFoundError``."""
        response = self._unary(self._stub.GetStream, pb.GetStreamRequest(name=name))
        return StreamInfo.from_proto(response.stream)

    def list_streams(self, page_size: int = 0) -> list[StreamInfo]:
        """Every stream in name order (follows the pages; ``page_size`` 0 = server default)."""
        out: list[StreamInfo] = []
        token, seen = "", set()
        while True:
            request = pb.ListStreamsRequest(page_size=page_size, page_token=token)
            response = self._unary(self._stub.ListStreams, request)
            out.extend(StreamInfo.from_proto(s) for s in response.streams)
            token = response.next_page_token
            if not token or token in seen:  # a repeated token would loop forever
                return out
            seen.add(token)

    def delete_stream(self, name: str) -> None:
        """Delete a stream with its state. Raises ``NotFoundError``."""
        self._unary(self._stub.DeleteStream, pb.DeleteStreamRequest(name=name))
        self._sequences.forget(name)
        self._forget_classes(name)

    def reset_stream(self, name: str, forget_producers: bool = False) -> StreamInfo:
        """Clear a stream's counts, keeping its config. ``forget_producers`` also clears the
        producers' sequence numbers (this client then numbers from 1 again)."""
        request = pb.ResetStreamRequest(name=name, forget_producers=forget_producers)
        response = self._unary(self._stub.ResetStream, request)
        self._forget_classes(name)
        if forget_producers:
            self._sequences.forget(name)
        return StreamInfo.from_proto(response.stream)

    # -- ingest --------------------------------------------------------------------------------
    def log(
        self,
        stream: str,
        y_true: Any,
        y_score: Any,
        sample_weight: Any = None,
        timestamp: float | datetime | None = None,
    ) -> LogResult:
        """Send labelled scores; return once every batch has been acknowledged.

        Rows are split into messages of at most about 1 MiB and streamed over one Ingest call,
        each batch with this client's ``(producer_id, sequence)`` (exactly once: a broken call is
        retried without double counting).

        Parameters
        ----------
        stream : str
        y_true : array-like
            Class indices (or class names) of shape (n,) for binary and multiclass streams,
            multi-hot rows of shape (n, L) for multilabel streams.
        y_score : array-like
            Shape (n,) or (n, 2) (binary), (n, K) (multiclass), (n, L) (multilabel). Sent as
            float32 (float16 input as float16).
        sample_weight : array-like of shape (n,), optional
        timestamp : float or datetime, optional
            The event time of every row (unix seconds; a naive datetime is local time, as
            ``datetime.timestamp`` reads it). Default: the server's clock.

        Returns
        -------
        LogResult

        Raises
        ------
        InvalidBatchError
            After the call completed, if the server rejected batches for their content. Other
            batches of the same call may have been accepted and stay applied: the error says
            which rows were rejected, and ``error.result`` holds the call's totals.
        NotFoundError
            No such stream.
        ValueError
            Before sending anything, for what the wire cannot carry (arrays of more than two
            dimensions, non-integer labels, arrays of different lengths).
        """

        def convert(classes: Sequence[str] | None) -> Rows:
            return to_rows(y_true, y_score, sample_weight, classes=classes)

        return self._deliver(stream, convert, _named(y_true), _timestamp(timestamp))

    def log_predictions(
        self,
        stream: str,
        ids: Any,
        y_score: Any,
        timestamp: float | datetime | None = None,
    ) -> LogResult:
        """Send predictions whose labels come later, one id per row.

        They count at once in the label-free figures (predicted prevalence, confidence, prior
        shift) and wait on the server, up to the stream's ``pending_retention`` and
        ``max_pending``, for ``log_labels`` with the same ids; each joined pair is then counted
        in the windows of ``timestamp``. Exactly once, like ``log``. Rows whose id the stream
        has seen before are ignored and counted in ``result.duplicate_ids``.

        Parameters
        ----------
        stream : str
        ids : sequence of str
            1 to 256 characters each, unique per stream (request ids, for instance).
        y_score : array-like
            As in ``log``.
        timestamp : float or datetime, optional
            When the predictions were made (default: the server's clock).

        Returns
        -------
        LogResult
            ``added`` and ``duplicate_ids`` say what became of the rows.
        """
        rows = id_rows(ids, y_score=y_score)
        return self._deliver(stream, lambda _: rows, False, _timestamp(timestamp))

    def log_labels(self, stream: str, ids: Any, y_true: Any) -> LogResult:
        """Send the true labels of predictions logged earlier with ``log_predictions``.

        Each label joins the pending prediction of its id. Labels for ids the stream never saw
        (or forgot past its bounds), for expired predictions and second labels for an id are
        counted (``result.unknown``, ``result.expired``, ``result.duplicate_ids``), never joined.

        Parameters
        ----------
        stream : str
        ids : sequence of str
        y_true : array-like
            As in ``log`` (class names are mapped to indices).

        Returns
        -------
        LogResult
            ``matched`` labels were joined and counted.
        """

        def convert(classes: Sequence[str] | None) -> Rows:
            return id_rows(ids, y_true=y_true, classes=classes)

        return self._deliver(stream, convert, _named(y_true), None)

    def _deliver(
        self,
        stream: str,
        convert: Callable[[Sequence[str] | None], Rows],
        named: bool,
        event_time: Timestamp | None,
    ) -> LogResult:
        """Convert (with the stream's classes if ``named``) and deliver one call's rows."""
        remap: Callable[[], Rows] | None = None
        if named:
            rows = self._named_rows(stream, convert)

            def remap() -> Rows:
                return convert(self._fetch_classes(stream))

        else:
            rows = convert(None)
        if rows.n == 0:
            return LogResult()
        per_message = rows.rows_per_message(MESSAGE_BYTES, self.max_batch_rows)
        deadline = self.timeout + rows.n * rows.row_bytes / 2**20

        def ingest(requests: Iterator[pb.IngestRequest]) -> Iterable[pb.IngestResponse]:
            calls: Iterable[pb.IngestResponse] = self._stub.Ingest(
                requests, timeout=deadline, metadata=self._metadata
            )
            return calls

        with self._lock(stream):  # one call at a time per stream keeps the numbering in order
            return deliver(
                ingest,
                stream,
                self.producer_id,
                rows,
                per_message,
                self._sequences,
                event_time,
                retry_deadline=self.retry_deadline,
                remap=remap,
            )

    def _named_rows(self, stream: str, convert: Callable[[Sequence[str] | None], Rows]) -> Rows:
        """Rows whose class names are mapped with the cached classes of ``stream``.

        The cached list is used only once this client has numbered batches on the stream: a
        stream deleted and created again since (by anyone) then answers the next batch with a
        sequence gap, and ``deliver`` maps the names again (``remap``) before resending. Names
        unknown to the cached list fetch it again once."""
        with self._classes_guard:
            cached = self._classes.get(stream)
        if cached is None or self._sequences.get(stream) == 1:
            return convert(self._fetch_classes(stream))
        try:
            return convert(cached)
        except UnknownClassError:
            return convert(self._fetch_classes(stream))

    def _fetch_classes(self, stream: str) -> tuple[str, ...]:
        classes = self.get_stream(stream).classes
        with self._classes_guard:
            self._classes[stream] = classes
        return classes

    def _forget_classes(self, stream: str) -> None:
        with self._classes_guard:
            self._classes.pop(stream, None)

    def writer(
        self,
        stream: str,
        max_buffer_rows: int = 65536,
        flush_rows: int = 4096,
        flush_interval: float = 1.0,
    ) -> Writer:
        """A background writer for continuous logging from a serving loop (see ``Writer``).

        ``w.log(y_true, y_score)`` (and ``w.log_predictions(ids, y_score)``,
        ``w.log_labels(ids, y_true)`` for labels that come later) appends to a buffer of at most
        ``max_buffer_rows`` rows (bounded memory: it blocks while the buffer is full); a
        background thread sends batches every ``flush_rows`` rows or ``flush_interval`` seconds
        over one long-lived Ingest stream, with its own producer id. ``flush()`` waits for the
        acknowledgements; ``close()`` (or leaving the ``with`` block) flushes and stops. Raises
        ``NotFoundError`` now if the stream does not exist.
        """
        info = self.get_stream(stream)

        def ingest(requests: Iterator[pb.IngestRequest]) -> Iterable[pb.IngestResponse]:
            calls: Iterable[pb.IngestResponse] = self._stub.Ingest(
                requests, metadata=self._metadata
            )
            return calls

        return Writer(
            ingest,
            stream,
            f"{self.producer_id}/writer-{next(self._writer_ids)}",
            classes=info.classes,
            max_buffer_rows=max_buffer_rows,
            flush_rows=flush_rows,
            flush_interval=flush_interval,
            max_batch_rows=self.max_batch_rows,
            retry_deadline=self.retry_deadline,
        )

    def _lock(self, stream: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(stream, threading.Lock())

    # -- queries -------------------------------------------------------------------------------
    def report(
        self,
        stream: str,
        window: str = "cumulative",
        curves: bool = False,
        max_curve_points: int = 200,
        recall_floors: Sequence[float] = (),
        precision_floors: Sequence[float] = (),
        beta: float | None = None,
    ) -> Report:
        """The report of one window (``"cumulative"`` or one of the stream's windows);
        ``curves=True`` includes the ROC and PR curves for ``Report.roc_curve``.
        ``recall_floors``, ``precision_floors`` and ``beta`` set the goals of the threshold
        advice (``Report.threshold_for``, ``Report.best_threshold``) for this query; empty or
        None: the server's defaults (floors 0.8, 0.9, 0.95; F1)."""
        request = pb.GetReportRequest(
            stream=stream,
            window=window,
            include_curves=curves,
            max_curve_points=max_curve_points,
            recall_floors=list(recall_floors),
            precision_floors=list(precision_floors),
            beta=beta or 0.0,
        )
        response = self._unary(self._stub.GetReport, request)
        return Report.from_json(response.report_json, _datetime(response.generated_time))

    def compare(
        self,
        stream: str,
        window: str,
        reference_window: str = "cumulative",
        reference_stream: str | None = None,
        relation: str | None = None,
        alpha: float = 0.05,
    ) -> dict[str, Any]:
        """``window`` of ``stream`` against a reference: by default the rest of the cumulative
        state (the cumulative state less the window); ``reference_window`` may name a longer
        window of the same stream, or, with ``reference_stream``, a window of another stream
        (``relation`` ``"independent"``, the default there, or ``"paired"``: another model on
        the same traffic). Returns the comparison document: per metric and average the
        difference (window minus reference) with ``se``, ``ci95``, ``z``, ``p_value``,
        ``significant``, and per class ``q_value`` (Benjamini-Hochberg across the classes)."""
        request = pb.CompareRequest(
            stream=stream,
            window=window,
            reference_window=reference_window,
            reference_stream=reference_stream or "",
            relation=relation or "",
            alpha=alpha,
        )
        response = self._unary(self._stub.Compare, request)
        doc: dict[str, Any] = json.loads(response.comparison_json)
        doc["stream"], doc["window"] = response.stream, response.window
        doc["reference"] = {
            "stream": response.reference_stream,
            "window": response.reference_window,
        }
        return doc

    def watch(
        self,
        stream: str,
        window: str = "cumulative",
        interval: float | None = 5.0,
        curves: bool = False,
        max_curve_points: int = 200,
    ) -> Iterator[Report]:
        """Reports now and then every ``interval`` seconds (None: the server's default), until
        the generator is closed (the call is cancelled then). Raises ``NotFoundError`` when the
        stream goes away."""
        request = pb.WatchReportRequest(
            stream=stream, window=window, include_curves=curves, max_curve_points=max_curve_points
        )
        if interval:  # None or 0: leave it unset, the server's default
            request.interval.CopyFrom(
                Duration(seconds=int(interval), nanos=int(round(interval % 1 * 1e9)))
            )
        call = self._stub.WatchReport(request, metadata=self._metadata)
        try:
            for response in call:
                yield Report.from_json(response.report_json, _datetime(response.generated_time))
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None
        finally:
            call.cancel()

    def curve(
        self,
        stream: str,
        kind: str = "roc",
        class_name: str | None = None,
        window: str = "cumulative",
        max_points: int = 200,
    ) -> Curve:
        """One ROC (``kind="roc"``) or precision-recall (``"pr"``) curve of a class, or of
        ``"micro"`` (default for multiclass and multilabel; binary: the positive class)."""
        if kind not in _CURVE_KINDS:
            raise ValueError(f"kind: expected 'roc' or 'pr', received {kind!r}")
        request = pb.GetCurveRequest(
            stream=stream,
            window=window,
            kind=_CURVE_KINDS[kind],
            class_name=class_name or "",
            max_points=max_points,
        )
        response = self._unary(self._stub.GetCurve, request)
        c = response.curve
        x, y = np.array(c.x, dtype=np.float64), np.array(c.y, dtype=np.float64)
        thresholds = np.array(c.thresholds, dtype=np.float64)
        is_roc = c.kind == curve_pb2.CURVE_KIND_ROC
        if (
            not is_roc
            and thresholds.size == x.size
            and thresholds.size
            and np.isnan(thresholds[-1])
        ):
            thresholds = thresholds[:-1]  # the last PR point (recall 0) has no threshold
        return Curve(
            stream=response.stream,
            window=response.window,
            kind="roc" if is_roc else "pr",
            class_name=c.class_name,
            x=x,
            y=y,
            thresholds=thresholds,
            x_name=c.x_name,
            y_name=c.y_name,
        )


def _channel(target: str, tls: Any, options: Sequence[tuple[str, Any]]) -> grpc.Channel:
    opts = [
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        # reconnect quickly after a server restart (grpc's default backoff grows to 120 s)
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        *options,
    ]
    if not tls:
        return grpc.insecure_channel(target, options=opts)
    if tls is True:
        return grpc.secure_channel(target, grpc.ssl_channel_credentials(), options=opts)

    def get(key: str) -> bytes | None:
        value = tls.get(key) if isinstance(tls, Mapping) else getattr(tls, key, None)
        return value.encode() if isinstance(value, str) else value

    credentials = grpc.ssl_channel_credentials(
        root_certificates=get("root_certificates"),
        private_key=get("private_key"),
        certificate_chain=get("certificate_chain"),
    )
    server_name = get("server_name")
    if server_name:
        opts.append(("grpc.ssl_target_name_override", server_name.decode()))
    return grpc.secure_channel(target, credentials, options=opts)


def _named(y_true: Any) -> bool:
    """Whether ``y_true`` holds class names rather than indices."""
    return np.asarray(y_true).dtype.kind in "USO"


def _timestamp(value: float | datetime | None) -> Timestamp | None:
    if value is None:
        return None
    seconds = value.timestamp() if isinstance(value, datetime) else float(value)
    ts = Timestamp()
    ts.FromNanoseconds(int(round(seconds * 1e9)))
    return ts


def _datetime(ts: Timestamp) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None

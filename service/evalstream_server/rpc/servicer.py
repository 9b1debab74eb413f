"""The EvalstreamService servicer: converts messages and delegates to the store.

Requests arrive as raw bytes and are parsed here, so protobuf garbage is answered with
INVALID_ARGUMENT (grpc's own deserializer would answer INTERNAL).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from evalstream.v1 import (
    curve_pb2,
    ingest_pb2,
    report_pb2,
)
from evalstream.v1 import (
    evalstream_service_pb2 as pb,
)
from google.protobuf.message import Message

from ..admission import Admission
from ..auth import Authenticator
from ..budget import MemoryBudget, MemoryLedger
from ..engine import InvalidInputError, StreamSpec
from ..engine.batch import LOGITS_HINT
from ..engine.compare import check_request, compare
from ..engine.thresholds import ThresholdGoals
from ..quotas import TenantQuotas
from ..ratelimit import RateLimiter
from ..store import (
    BatchOutcome,
    LimitExceededError,
    NotFoundError,
    RejectedBatch,
    Store,
    StreamRecord,
    split_key,
    stream_key,
)
from . import convert, tensor_rules
from .errors import status_for
from .headline import headline
from .reading import next_raw
from .server_info import server_info
from .status_details import field_error, status_metadata
from .watch import SharedReports, Watchers

__all__ = ["EvalstreamServicer", "ServiceLimits", "SERVICE_NAME", "method_handlers", "TENANT"]

log = logging.getLogger("evalstream.rpc")
TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")
SERVICE_NAME = "evalstream.v1.EvalstreamService"
_STATUS = {
    "accepted": ingest_pb2.BATCH_STATUS_ACCEPTED,
    "duplicate": ingest_pb2.BATCH_STATUS_DUPLICATE,
    "rejected": ingest_pb2.BATCH_STATUS_REJECTED,
}


R = TypeVar("R")


def _in_store(body: Callable[[EvalstreamServicer, Any, Any], R]) -> Callable[..., Any]:
    """An RPC whose body calls the store synchronously, run by ``Store.run``: inline on the
    memory store, in the Redis store's thread pool (a stalled Redis must not stall the event
    loop, and with it health checks and every other call)."""

    @functools.wraps(body)
    async def rpc(self: EvalstreamServicer, req: Any, ctx: Any) -> R:
        return await self.store.run(body, self, req, ctx)

    return rpc


def _query(body: Callable[[EvalstreamServicer, Any, Any], R]) -> Callable[..., Any]:
    """``_in_store`` for a query: it shows committed data only, so it first waits for the
    commit of what was applied before it (off the event loop; a no-op on stores that commit
    before they apply)."""

    @functools.wraps(body)
    async def rpc(self: EvalstreamServicer, req: Any, ctx: Any) -> R:
        await self.store.settle_async()
        return await self.store.run(body, self, req, ctx)

    return rpc


class _Kind:
    """RecordKind values."""

    LABELLED = pb.RECORD_KIND_LABELLED
    PREDICTIONS = pb.RECORD_KIND_PREDICTIONS
    LABELS = pb.RECORD_KIND_LABELS


@dataclass(frozen=True)
class ServiceLimits:
    max_batch_rows: int = 65536
    max_message_bytes: int = 4 * 1024 * 1024  # an Ingest batch past it is REJECTED
    max_classes: int = 1000
    max_windows: int = 8
    max_curve_points: int = 10000
    min_watch_interval: float = 0.1
    max_clock_skew: float = 300.0  # seconds a batch's event_time may lie ahead of the server
    default_watch_interval: float = 5.0  # WatchReport's interval when the request has none
    default_curve_points: int = 200  # points per curve when the request says 0
    default_page_size: int = 100  # ListStreams' page when the request says 0


class EvalstreamServicer:
    """Implements every RPC of ``evalstream.v1.EvalstreamService`` on a ``Store``."""

    def __init__(
        self,
        store: Store,
        limits: ServiceLimits | None = None,
        rate_limiter: RateLimiter | None = None,
        quotas: TenantQuotas | None = None,
        budget: MemoryBudget | None = None,
        ledger: MemoryLedger | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or ServiceLimits()
        self.rate_limiter = rate_limiter or RateLimiter()
        self.quotas = quotas or TenantQuotas()
        self.budget = budget or MemoryBudget()
        self.ledger = ledger  # what the store's streams hold (None: their fixed parts count)
        self._admitting = threading.Lock()
        self.reports = SharedReports()  # WatchReport: one computation per change
        self.watchers = Watchers(self.quotas.watchers)

    @staticmethod
    def _key(name: str) -> str:
        """The store's key of the calling tenant's stream ``name``: names are per tenant, so
        another tenant's stream of that name is not even looked at (NOT_FOUND, as for a name
        nobody uses, on the same path)."""
        return stream_key(TENANT.get(), name)

    def _record(self, name: str) -> StreamRecord:
        """The calling tenant's stream ``name`` (``NotFoundError`` if it has none)."""
        return self.store.get(self._key(name))

    # -- streams -------------------------------------------------------------------------------
    @_in_store
    def CreateStream(self, req: pb.CreateStreamRequest, ctx) -> pb.CreateStreamResponse:
        if len(req.config.windows) > self.limits.max_windows:
            raise LimitExceededError(
                "config.windows", self.limits.max_windows, len(req.config.windows)
            )
        spec = convert.spec_from_config(req.config, self.limits.max_classes)
        tenant = TENANT.get()
        with self._admitting:  # check and create as one (Redis runs calls on threads)
            specs = self._specs()
            ours = [sp for t, sp in specs if t == tenant]
            self.quotas.check_streams(tenant, len(ours))
            if self.ledger is not None:  # fixed parts, and growing parts as they are
                in_use, tenant_in_use = self.ledger.total(), self.ledger.tenant_total(tenant)
            else:
                in_use = self.budget.in_use(sp for _, sp in specs)
                tenant_in_use = self.budget.in_use(ours)
            self.budget.check(spec, in_use, tenant_in_use)  # before any allocation
            record = self.store.create(spec, tenant=tenant)
        log.info("stream created", extra={"stream": spec.name, "task": spec.task})
        return pb.CreateStreamResponse(stream=convert.stream_info(record))

    def _specs(self) -> list[tuple[str, StreamSpec]]:
        """The tenant and definition of every stream of the server."""
        specs = []
        for key in self.store.names():
            try:
                specs.append((split_key(key)[0], self.store.get(key).spec))
            except NotFoundError:  # deleted meanwhile
                continue
        return specs

    @_query
    def GetStream(self, req: pb.GetStreamRequest, ctx) -> pb.GetStreamResponse:
        return pb.GetStreamResponse(stream=convert.stream_info(self._record(req.name)))

    @_query
    def ListStreams(self, req: pb.ListStreamsRequest, ctx) -> pb.ListStreamsResponse:
        size = req.page_size or self.limits.default_page_size
        names = [n for n in self._names(TENANT.get()) if n > req.page_token]
        page = names[:size]
        out = pb.ListStreamsResponse()
        for name in page:
            try:
                out.streams.append(convert.stream_info(self._record(name)))
            except NotFoundError:  # deleted meanwhile
                continue
        if len(names) > size:
            out.next_page_token = page[-1]
        return out

    def _names(self, tenant: str) -> list[str]:
        """The names of ``tenant``'s streams, sorted (from the store's keys alone)."""
        return sorted(name for t, name in map(split_key, self.store.names()) if t == tenant)

    @_in_store
    def DeleteStream(self, req: pb.DeleteStreamRequest, ctx) -> pb.DeleteStreamResponse:
        self.store.delete(self._key(req.name))
        self.rate_limiter.forget(TENANT.get(), req.name)
        log.info("stream deleted", extra={"stream": req.name})
        return pb.DeleteStreamResponse()

    @_in_store
    def ResetStream(self, req: pb.ResetStreamRequest, ctx) -> pb.ResetStreamResponse:
        record = self.store.reset(self._key(req.name), forget_producers=req.forget_producers)
        return pb.ResetStreamResponse(stream=convert.stream_info(record))

    # -- ingest --------------------------------------------------------------------------------
    def _one_batch(self, req: pb.IngestRequest, size: int = 0) -> ingest_pb2.BatchResult:
        """The result of one batch; ``size`` is its message's length in bytes (0: unknown)."""
        result = ingest_pb2.BatchResult(
            stream=req.stream, producer_id=req.producer_id, sequence=req.sequence
        )
        try:
            record = self._record(req.stream)
        except NotFoundError as exc:
            return _reject(result, exc)
        batch: Any
        kind = req.kind or _Kind.LABELLED
        if req.sequence and not req.producer_id:  # no producer: no number to consume
            exc = InvalidInputError(
                "producer_id",
                "a non-empty producer_id when sequence is set (sequence 0 sends unsequenced)",
                f"an empty producer_id with sequence {req.sequence}",
            )
            return _reject(result, exc, self._rows(req, kind, record))
        expected = 0  # the producer's expected sequence: asked once per batch
        if req.sequence:
            expected = self.store.expected_sequence(record.name, req.producer_id)
            if req.sequence != expected:  # duplicate or gap: answered without reading the data
                outcome = self.store.ingest(
                    record.name, req.producer_id, req.sequence, None, None, expected=expected
                )
                return _fill(result, outcome)
        ts = convert.seconds(req.event_time) if req.HasField("event_time") else None
        try:
            if size > self.limits.max_message_bytes:
                raise LimitExceededError("message bytes", self.limits.max_message_bytes, size)
            batch = self._decode(req, kind, record)
            if ts is not None and kind != _Kind.LABELS:  # labels count at their prediction's time
                skew = self.limits.max_clock_skew
                record.engine.event_time(ts, self.store.clock(), skew, field="event_time")
        except (InvalidInputError, LimitExceededError) as exc:
            wire = _wire_words(exc)
            rows = self._rows(req, kind, record)
            if not req.sequence:  # unsequenced: nothing to consume, just reject
                return _reject(result, wire, rows)
            batch = RejectedBatch(wire, rows)
        if not isinstance(batch, Exception) and self._rate_limited(
            req, record, batch.n, expected, result
        ):
            return result
        outcome = self.store.ingest(
            record.name, req.producer_id, req.sequence, batch, ts, expected=expected or None
        )
        return _fill(result, outcome)

    def _rows(self, req: pb.IngestRequest, kind: int, record: StreamRecord) -> int:
        """Rows of a rejected batch, 0 when it could not be read far enough to tell."""
        field = "labels" if kind == _Kind.LABELS else "scores"
        tensor = req.labels if kind == _Kind.LABELS else req.scores
        return tensor_rules.readable_rows(tensor, field, record.spec, self.limits.max_batch_rows)

    def _decode(self, req: pb.IngestRequest, kind: int, record: StreamRecord) -> Any:
        """The validated batch of one request (``InvalidInputError`` names what is wrong).

        The dtype and shape table of the proto is checked here in the wire's words; the engine
        then checks the values."""
        rows = self.limits.max_batch_rows
        spec = record.spec
        if len(req.ids) > rows:
            raise LimitExceededError("batch rows (ids)", rows, len(req.ids))
        if kind == _Kind.LABELLED:
            if req.ids:
                raise InvalidInputError(
                    "ids",
                    "no ids in a labelled batch (ids go with RECORD_KIND_PREDICTIONS or "
                    "RECORD_KIND_LABELS)",
                    f"{len(req.ids)} ids",
                )
            scores = tensor_rules.scores(req.scores, spec, rows)
            labels = tensor_rules.labels(req.labels, spec, rows)
            tensor_rules.check_rows("labels", labels.shape[0], "scores", scores.shape[0])
            weights = None
            if req.HasField("sample_weight"):
                weights = tensor_rules.weights(req.sample_weight, rows)
                tensor_rules.check_rows(
                    "sample_weight", weights.shape[0], "scores", scores.shape[0]
                )
            return record.engine.validate(labels, scores, weights)
        if kind not in (_Kind.PREDICTIONS, _Kind.LABELS):
            raise InvalidInputError(
                "kind",
                "RECORD_KIND_LABELLED, RECORD_KIND_PREDICTIONS or RECORD_KIND_LABELS",
                str(req.kind),
            )
        name = pb.RecordKind.Name(kind)
        absent = ("labels",) if kind == _Kind.PREDICTIONS else ("scores",)
        for field in (*absent, "sample_weight"):
            if req.HasField(field):  # type: ignore[arg-type]
                raise InvalidInputError(field, f"no {field} in a batch of kind {name}", "a tensor")
        if kind == _Kind.PREDICTIONS:
            scores = tensor_rules.scores(req.scores, spec, rows)
            tensor_rules.check_rows("ids", len(req.ids), "scores", scores.shape[0])
            return record.engine.validate_predictions(list(req.ids), scores)
        labels = tensor_rules.labels(req.labels, spec, rows)
        tensor_rules.check_rows("ids", len(req.ids), "labels", labels.shape[0])
        return record.engine.validate_labels(list(req.ids), labels)

    def _rate_limited(
        self,
        req: pb.IngestRequest,
        record: StreamRecord,
        n: int,
        expected: int,
        result: ingest_pb2.BatchResult,
    ) -> bool:
        """Fill ``result`` and return True if the batch must wait (its number is not consumed).
        Only batches carrying the expected number get here: duplicates and gaps were answered
        before the data was read, and are never charged."""
        wait = self.rate_limiter.admit(record.tenant, req.stream, n)
        if wait <= 0:
            return False
        result.status = ingest_pb2.BATCH_STATUS_REJECTED
        result.samples = n
        result.error_code = grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        result.error_message = (
            f"ingest rate: limit reached for stream {req.stream!r}; retry "
            f"after {wait:.3f} s with the same sequence number"
        )
        result.expected_sequence = expected
        result.retry_after.FromNanoseconds(int(wait * 1e9))
        return True

    async def Ingest(
        self, requests: AsyncIterator[pb.IngestRequest | tuple[pb.IngestRequest, int]], ctx
    ) -> AsyncIterator[pb.IngestResponse]:
        """Apply batches as they arrive; acknowledge them coalesced, in order."""
        queue: asyncio.Queue[ingest_pb2.BatchResult | None] = asyncio.Queue()
        totals = pb.IngestResponse()

        async def read() -> None:
            try:
                async for item in requests:  # requests, or (request, message bytes) pairs
                    req, size = item if isinstance(item, tuple) else (item, 0)
                    queue.put_nowait(await self.store.run(self._one_batch, req, size))
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            done = False
            while not done:
                first = await queue.get()
                pending = [first]
                while not queue.empty():
                    pending.append(queue.get_nowait())
                out = pb.IngestResponse()
                for item in pending:
                    if item is None:
                        done = True
                        continue
                    out.results.append(item)
                    _count(totals, item)
                if not out.results and not done:
                    continue
                await self.store.flush_async()  # acks wait for durability (group commit)
                for field in (
                    "accepted_batches",
                    "duplicate_batches",
                    "rejected_batches",
                    "accepted_samples",
                    "rejected_samples",
                ):
                    setattr(out, field, getattr(totals, field))
                if out.results or done:
                    yield out
            await reader  # re-raise a failed read (bad message: the call fails)
        finally:
            if not reader.done():
                reader.cancel()

    async def _unary_batch(
        self,
        req: pb.LogPredictionsRequest | pb.LogLabelsRequest,
        kind: int,
        fields: tuple[str, ...],
    ) -> ingest_pb2.BatchResult:
        """One batch of a unary RPC, as the Ingest batch of ``kind`` carrying ``fields``."""
        batch = pb.IngestRequest(
            stream=req.stream,
            producer_id=req.producer_id,
            sequence=req.sequence,
            ids=req.ids,
            kind=kind,
        )
        for name in fields:
            if req.HasField(name):  # type: ignore[arg-type]
                getattr(batch, name).CopyFrom(getattr(req, name))
        result = await self.store.run(self._one_batch, batch)
        await self.store.flush_async()  # the answer waits for durability, as Ingest's acks
        return result

    async def LogPredictions(self, req: pb.LogPredictionsRequest, ctx) -> pb.LogPredictionsResponse:
        result = await self._unary_batch(req, _Kind.PREDICTIONS, ("scores", "event_time"))
        return pb.LogPredictionsResponse(result=result)

    async def LogLabels(self, req: pb.LogLabelsRequest, ctx) -> pb.LogLabelsResponse:
        return pb.LogLabelsResponse(result=await self._unary_batch(req, _Kind.LABELS, ("labels",)))

    # -- queries -------------------------------------------------------------------------------
    def _report_json(
        self,
        stream: str,
        window: str,
        curves: bool,
        max_points: int,
        goals: ThresholdGoals | None = None,
    ) -> tuple[str, report_pb2.ReportHeadline]:
        """The canonical report as JSON text, and its headline figures typed."""
        key = self._record(stream).name
        points = min(max_points or self.limits.default_curve_points, self.limits.max_curve_points)
        report = self.store.report(
            key, window or "cumulative", curves=curves, max_points=points, threshold_goals=goals
        )
        return json.dumps(report, allow_nan=False, separators=(",", ":")), headline(report)

    async def GetReport(self, req: pb.GetReportRequest, ctx) -> pb.GetReportResponse:
        window = req.window or "cumulative"
        await self.store.settle_async()  # queries show committed data only
        goals = None
        if req.recall_floors or req.precision_floors or req.beta:
            default = ThresholdGoals()
            goals = ThresholdGoals(
                beta=req.beta or 1.0,
                recall_floors=tuple(req.recall_floors) or tuple(default.recall_floors),
                precision_floors=tuple(req.precision_floors) or tuple(default.precision_floors),
            )
        text, typed = await self.store.run(
            self._report_json, req.stream, window, req.include_curves, req.max_curve_points, goals
        )
        return pb.GetReportResponse(
            stream=req.stream,
            window=window,
            report_json=text,
            headline=typed,
            generated_time=convert.timestamp(time.time()),
        )

    @_query
    def Compare(self, req: pb.CompareRequest, ctx) -> pb.CompareResponse:
        window = req.window or "cumulative"
        reference_window = req.reference_window or "cumulative"
        reference_stream = req.reference_stream or req.stream
        record, reference = self._record(req.stream), self._record(reference_stream)
        relation, alpha = check_request(
            window,
            record.spec,
            reference_window,
            reference.spec,
            record.name == reference.name,
            req.relation,
            req.alpha,
        )
        doc = compare(
            self.store.state(record.name, window),
            self.store.state(reference.name, reference_window),
            relation,
            alpha,
        )
        return pb.CompareResponse(
            stream=req.stream,
            window=window,
            reference_stream=reference_stream,
            reference_window=reference_window,
            generated_time=convert.timestamp(time.time()),
            comparison_json=json.dumps(doc, allow_nan=False, separators=(",", ":")),
        )

    @_query
    def GetCurve(self, req: pb.GetCurveRequest, ctx) -> pb.GetCurveResponse:
        window = req.window or "cumulative"
        record = self._record(req.stream)
        kind = req.kind or curve_pb2.CURVE_KIND_ROC
        if kind not in (curve_pb2.CURVE_KIND_ROC, curve_pb2.CURVE_KIND_PRECISION_RECALL):
            raise InvalidInputError(
                "kind", "CURVE_KIND_ROC or CURVE_KIND_PRECISION_RECALL", str(req.kind)
            )
        target = req.class_name or (
            record.spec.classes[1] if record.spec.task == "binary" else "micro"
        )
        points = min(
            req.max_points or self.limits.default_curve_points, self.limits.max_curve_points
        )
        d = self.store.curve(
            record.name, window, "roc" if kind == curve_pb2.CURVE_KIND_ROC else "pr", target, points
        )
        return pb.GetCurveResponse(
            stream=req.stream,
            window=window,
            generated_time=convert.timestamp(time.time()),
            curve=convert.curve_message(d, kind, target),
        )

    async def GetServerInfo(
        self, req: pb.GetServerInfoRequest, ctx: grpc.aio.ServicerContext
    ) -> pb.GetServerInfoResponse:
        return server_info(self.limits)

    async def WatchReport(
        self, req: pb.WatchReportRequest, ctx
    ) -> AsyncIterator[pb.WatchReportResponse]:
        window = req.window or "cumulative"
        interval = (
            req.interval.seconds + req.interval.nanos / 1e9 if req.HasField("interval") else 0.0
        )
        # zero means the server default; shorter intervals are raised to the minimum
        interval = (
            self.limits.default_watch_interval
            if interval <= 0
            else max(interval, self.limits.min_watch_interval)
        )
        record = await self.store.run(self._record, req.stream)
        points = min(
            req.max_curve_points or self.limits.default_curve_points, self.limits.max_curve_points
        )
        key = (record.name, window, req.include_curves, points)
        with self.watchers.hold(TENANT.get()), self.reports.watching(key):
            while True:
                await self.store.settle_async()
                text, typed = await self.store.run(self._watched_report, key, req.stream)
                yield pb.WatchReportResponse(
                    stream=req.stream,
                    window=window,
                    report_json=text,
                    headline=typed,
                    generated_time=convert.timestamp(time.time()),
                )
                await asyncio.sleep(interval)

    def _watched_report(
        self, key: tuple[str, str, bool, int], stream: str
    ) -> tuple[str, report_pb2.ReportHeadline]:
        """A watched report, shared by every watcher of ``key`` and computed again only when the
        stream's report changed (``SharedReports``)."""
        _, window, curves, points = key
        record = self._record(stream)  # a stream deleted meanwhile ends the watch: NOT_FOUND
        return self.reports.get(
            key, record, window, lambda: self._report_json(stream, window, curves, points)
        )


def _fill(result: ingest_pb2.BatchResult, outcome: BatchOutcome) -> ingest_pb2.BatchResult:
    result.status = _STATUS[outcome.status]
    result.samples = outcome.samples
    result.error_code = outcome.error_code
    result.error_message = outcome.error_message
    result.expected_sequence = outcome.expected_sequence
    if outcome.original_status:
        result.original_status = _STATUS[outcome.original_status]
    if outcome.join is not None:
        result.join.CopyFrom(ingest_pb2.JoinCounts(**outcome.join))
    if outcome.error_detail is not None:
        result.field_error.CopyFrom(ingest_pb2.FieldError(**outcome.error_detail))
    return result


def _reject(
    result: ingest_pb2.BatchResult, exc: BaseException, rows: int = 0
) -> ingest_pb2.BatchResult:
    """``result`` as REJECTED for ``exc``, consuming no sequence number."""
    code, message = status_for(exc)
    result.status = ingest_pb2.BATCH_STATUS_REJECTED
    result.samples = rows
    result.error_code = code.value[0]
    result.error_message = message
    parts = field_error(exc)
    if parts is not None:
        result.field_error.CopyFrom(parts)
    return result


def _count(totals: pb.IngestResponse, r: ingest_pb2.BatchResult) -> None:
    if r.status == ingest_pb2.BATCH_STATUS_ACCEPTED:
        totals.accepted_batches += 1
        totals.accepted_samples += r.samples
    elif r.status == ingest_pb2.BATCH_STATUS_DUPLICATE:
        totals.duplicate_batches += 1
    else:
        totals.rejected_batches += 1
        totals.rejected_samples += r.samples


_WIRE_FIELDS = {"y_score": "scores", "y_true": "labels"}
_WIRE_HINTS = {LOGITS_HINT: "create the stream with SCORE_KIND_LOGITS if these are logits"}


def _wire_words(exc: Exception) -> Exception:
    """Engine errors name the Python arguments and options; on the wire the fields are scores
    and labels and the options are enum values."""
    if isinstance(exc, InvalidInputError) and (
        exc.field in _WIRE_FIELDS or exc.hint in _WIRE_HINTS
    ):
        field = _WIRE_FIELDS.get(exc.field, exc.field)
        return type(exc)(field, exc.expected, exc.received, _WIRE_HINTS.get(exc.hint, exc.hint))
    return exc


# -- registration with raw-bytes parsing ------------------------------------------------------
_METHODS: dict[str, tuple[str, type[Message]]] = {
    "CreateStream": ("unary_unary", pb.CreateStreamRequest),
    "GetStream": ("unary_unary", pb.GetStreamRequest),
    "ListStreams": ("unary_unary", pb.ListStreamsRequest),
    "DeleteStream": ("unary_unary", pb.DeleteStreamRequest),
    "ResetStream": ("unary_unary", pb.ResetStreamRequest),
    "Ingest": ("stream_stream", pb.IngestRequest),
    "LogPredictions": ("unary_unary", pb.LogPredictionsRequest),
    "LogLabels": ("unary_unary", pb.LogLabelsRequest),
    "GetReport": ("unary_unary", pb.GetReportRequest),
    "GetCurve": ("unary_unary", pb.GetCurveRequest),
    "WatchReport": ("unary_stream", pb.WatchReportRequest),
    "GetServerInfo": ("unary_unary", pb.GetServerInfoRequest),
    "Compare": ("unary_unary", pb.CompareRequest),
}


async def _abort(ctx: grpc.aio.ServicerContext, exc: BaseException) -> None:
    code, message = status_for(exc)
    trailer: tuple[tuple[str, str | bytes], ...] = ()
    if isinstance(exc, LimitExceededError) and exc.retry_after is not None:
        trailer = (("retry-after-ms", str(int(exc.retry_after * 1000))),)
    if code != grpc.StatusCode.INTERNAL:  # details of an unknown error stay in the log
        trailer += status_metadata(exc, code, message)
    await ctx.abort(code, message, trailer)


def method_handlers(
    servicer: EvalstreamServicer,
    authenticator: Authenticator | None = None,
    admission: Admission | None = None,
    idle_timeout: float = 0.0,
) -> grpc.GenericRpcHandler:
    """A generic handler whose methods authenticate, admit and then parse the raw request bytes
    themselves.

    Every method is registered as request-streaming (on the wire a unary request is a stream of
    one message): the handler then runs as soon as the call's metadata arrives, so a call is
    authenticated and admitted (``Admission``) before its request is read, and a client that
    never sends its request is refused or timed out instead of holding the call."""
    handlers = {}
    for name, (kind, req_type) in _METHODS.items():
        impl = getattr(servicer, name)
        handlers[name] = _wrap(
            kind,
            req_type,
            impl,
            authenticator or Authenticator({}),
            servicer.limits.max_message_bytes,
            admission or Admission(),
            idle_timeout,
        )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def _wrap(
    kind, req_type, impl, auth: Authenticator, max_bytes: int, admission: Admission, idle: float
):
    def parse(raw: bytes) -> Message:
        return req_type.FromString(raw)

    def parse_one(raw: bytes) -> Message:
        """A unary request; past the size limit the call fails (an Ingest batch is rejected)."""
        if len(raw) > max_bytes:
            raise LimitExceededError("message bytes", max_bytes, len(raw))
        return parse(raw)

    def authenticate(ctx) -> str:
        tenant = auth.tenant(ctx.invocation_metadata())
        TENANT.set(tenant)
        return tenant

    async def one_message(ctx) -> Message:
        raw = await next_raw(ctx, idle)
        if raw is None:
            raise InvalidInputError("request", "one request message", "none")
        return parse_one(raw)

    async def failed(ctx, exc: Exception) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        await _abort(ctx, exc)

    ser = lambda m: m.SerializeToString()  # noqa: E731

    if kind == "unary_unary":

        async def unary(_requests, ctx):
            try:
                with admission.call(authenticate(ctx)):
                    return await impl(await one_message(ctx), ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - mapped by the table
                await failed(ctx, exc)

        return grpc.stream_unary_rpc_method_handler(unary, response_serializer=ser)

    if kind == "unary_stream":

        async def unary_stream(_requests, ctx):
            try:
                with admission.call(authenticate(ctx)):
                    async for item in impl(await one_message(ctx), ctx):
                        yield item
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                await failed(ctx, exc)

        return grpc.stream_stream_rpc_method_handler(unary_stream, response_serializer=ser)

    async def stream_stream(_requests, ctx):
        async def parsed():
            while (raw := await next_raw(ctx, idle)) is not None:
                yield parse(raw), len(raw)  # the size: a batch past the limit is rejected

        try:
            with admission.call(authenticate(ctx)):
                async for item in impl(parsed(), ctx):
                    yield item
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            await failed(ctx, exc)

    return grpc.stream_stream_rpc_method_handler(stream_stream, response_serializer=ser)

"""The gRPC side: serve ``inference.GRPCInferenceService`` by forwarding every call upstream.

Every method of the service is forwarded as raw bytes (identity serializers), so an answer is
byte for byte what the inference server sent: unary methods (``ModelInfer``, ``ServerLive``,
``ModelMetadata``, ``ModelConfig``, ``RepositoryIndex``, ... and methods this tritonclient does
not know yet) as one call each, ``ModelStreamInfer`` as a bidirectional stream. With each call go
the caller's metadata (less the transport's own headers), its deadline, and back the server's
initial and trailing metadata, or its error (status code, details, trailing metadata).

``ModelInfer`` and ``ModelStreamInfer`` of a routed model also record: a request without an
``id`` gets one before it is forwarded (``ids.new_request_id``), the answer carries it, and the
response goes to the ``Recorder`` (a queue append; parsing and sending happen off this path).
Requests of other models are forwarded untouched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import grpc

from .ids import new_request_id
from .metrics import ProxyMetrics
from .recorder import Recorder
from .routes import ModelRoute
from .wire import WireError, read_name_and_id, with_id

__all__ = ["SERVICE", "Forwarder", "forwardable"]

log = logging.getLogger("evalstream.proxy")

SERVICE = "inference.GRPCInferenceService"
_PREFIX = f"/{SERVICE}/"
_INFER = "ModelInfer"
_STREAM_INFER = "ModelStreamInfer"
# Set by each hop's transport itself; forwarding them would duplicate or contradict it.
_HOP_HEADERS = frozenset({"user-agent", "te", "content-type", "host", "connection"})
_NO_DEADLINE_S = 1e8  # grpc reports a call without deadline as ~infinite time remaining
_MAX_STREAM_TIMES = 65536


def forwardable(metadata: Sequence[tuple[str, Any]] | None) -> tuple[tuple[str, Any], ...]:
    """``metadata`` without pseudo-headers (``:authority``), ``grpc-*`` and hop headers."""
    if not metadata:
        return ()
    return tuple(
        (key, value)
        for key, value in metadata
        if not key.startswith((":", "grpc-")) and key not in _HOP_HEADERS
    )


def _timeout(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE_S:
        return None
    return max(remaining, 0.0)


class Forwarder(grpc.GenericRpcHandler):
    """The generic handler of a proxy server (``server.add_generic_rpc_handlers``).

    Parameters
    ----------
    channel : grpc.aio.Channel
        To the inference server.
    routes : mapping of str to ModelRoute
        Models to record, by name.
    recorder : Recorder
    metrics : ProxyMetrics
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        routes: Mapping[str, ModelRoute],
        recorder: Recorder,
        metrics: ProxyMetrics,
    ) -> None:
        self.channel = channel
        self.routes = dict(routes)
        self.recorder = recorder
        self.metrics = metrics
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}

    # -- dispatch ------------------------------------------------------------------------------
    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        if isinstance(method, bytes):
            method = method.decode("utf-8", "replace")
        handler = self._handlers.get(method)
        if handler is None and method.startswith(_PREFIX):
            handler = self._handlers[method] = self._build(method)
        return handler  # None: UNIMPLEMENTED, for other services

    def _build(self, method: str) -> grpc.RpcMethodHandler:
        name = method[len(_PREFIX) :]
        if name == _STREAM_INFER:
            upstream_stream = self.channel.stream_stream(method)

            async def stream(requests, context):
                async for response in self._stream_infer(upstream_stream, requests, context):
                    yield response

            return grpc.stream_stream_rpc_method_handler(stream)
        upstream = self.channel.unary_unary(method)
        if name == _INFER:

            async def infer(request: bytes, context) -> bytes:
                return await self._infer(upstream, request, context)

            return grpc.unary_unary_rpc_method_handler(infer)

        async def unary(request: bytes, context) -> bytes:
            return await self._forward(name, upstream, request, context)

        return grpc.unary_unary_rpc_method_handler(unary)

    # -- unary ---------------------------------------------------------------------------------
    async def _forward(self, name: str, upstream, request: bytes, context) -> bytes:
        call = upstream(
            request,
            metadata=forwardable(context.invocation_metadata()),
            timeout=_timeout(context),
        )
        try:
            response = await call
        except grpc.aio.AioRpcError as exc:
            self.metrics.count_request(name, exc.code().name)
            await context.abort(
                exc.code(), exc.details() or "", forwardable(exc.trailing_metadata())
            )
            raise  # abort raises; this is for the type checker
        self.metrics.count_request(name, "OK")
        initial = forwardable(await call.initial_metadata())
        if initial:
            await context.send_initial_metadata(initial)
        trailing = forwardable(await call.trailing_metadata())
        if trailing:
            context.set_trailing_metadata(trailing)
        return response

    def _prepare(self, request: bytes) -> tuple[ModelRoute | None, str, bytes, bool]:
        """Route, id, the request to forward (with an id when it had none), and whether the id
        is the proxy's. Malformed or unrouted requests go on untouched and unrecorded."""
        if not self.routes:
            return None, "", request, False
        try:
            model, request_id = read_name_and_id(request)
        except WireError:
            return None, "", request, False  # the inference server will answer the error
        route = self.routes.get(model)
        if route is None or request_id:
            return route, request_id, request, False
        request_id = new_request_id()
        return route, request_id, with_id(request, request_id), True

    async def _infer(self, upstream, request: bytes, context) -> bytes:
        arrived = time.time()
        route, request_id, request, generated = self._prepare(request)
        response = await self._forward(_INFER, upstream, request, context)
        if route is not None:
            try:
                if generated and read_name_and_id(response)[1] != request_id:
                    response = with_id(response, request_id)  # the server did not echo it
            except WireError:
                return response  # not a response the proxy can read: answer it, record nothing
            self.recorder.submit(route, request_id, arrived, response)
        return response

    # -- bidirectional stream ------------------------------------------------------------------
    async def _stream_infer(self, upstream, request_iterator, context) -> AsyncIterator[bytes]:
        call = upstream(
            metadata=forwardable(context.invocation_metadata()), timeout=_timeout(context)
        )
        times: dict[str, float] = {}  # request id -> arrival, for the recorder

        async def pump() -> None:
            try:
                async for request in request_iterator:
                    arrived = time.time()
                    route, request_id, request, _ = self._prepare(request)
                    if route is not None and len(times) < _MAX_STREAM_TIMES:
                        times[request_id] = arrived
                    await call.write(request)
                await call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError) as exc:
                # The upstream call ended; the response side reports how.
                log.debug("ModelStreamInfer: stopped forwarding requests: %r", exc)

        writer = asyncio.ensure_future(pump())
        try:
            async for response in call:
                if self.routes:
                    self.recorder.submit_streamed(time.time(), response, times)
                yield response
        except grpc.aio.AioRpcError as exc:
            self.metrics.count_request(_STREAM_INFER, exc.code().name)
            await context.abort(
                exc.code(), exc.details() or "", forwardable(exc.trailing_metadata())
            )
        finally:
            writer.cancel()
        self.metrics.count_request(_STREAM_INFER, "OK")
        trailing = forwardable(await call.trailing_metadata())
        if trailing:
            context.set_trailing_metadata(trailing)

"""The stock health and reflection servicers, read as the API is: a request that does not parse
is INVALID_ARGUMENT, and a client that never sends one is closed after the idle timeout.

The evalstream service parses its raw request bytes itself (``servicer.method_handlers``). The
stock servicers are registered with grpc's deserializers, whose failure grpc answers with UNKNOWN,
and as unary-request handlers, which grpc holds until the request arrives, however long that is.
``ParsedRequests`` re-registers each such handler request-streaming on raw bytes: it reads the
request with ``reading.next_raw`` (the idle timeout), parses it (DecodeError: INVALID_ARGUMENT in
the words of ``errors.status_for``) and calls the servicer's own behaviour with the message.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from ..admission import IdleCallError
from ..engine import InvalidInputError
from .errors import status_for
from .reading import next_raw

__all__ = ["ParsedRequests"]


class ParsedRequests(grpc.aio.ServerInterceptor):
    """Server interceptor: every handler with a request deserializer is re-registered on raw
    bytes, request-streaming, reading with ``idle_timeout`` (seconds; 0 = no timeout)."""

    def __init__(self, idle_timeout: float = 0.0) -> None:
        self.idle_timeout = idle_timeout

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler  # unknown method, or one that parses its own bytes
        return _on_raw_bytes(handler, self.idle_timeout)


def _on_raw_bytes(handler: grpc.RpcMethodHandler, idle: float) -> grpc.RpcMethodHandler:
    parse = handler.request_deserializer
    ser = handler.response_serializer

    async def answer(result: Any, ctx: grpc.aio.ServicerContext) -> Any:
        """The original behaviour's answer: awaited, or streamed with ``ctx.write``."""
        if inspect.isasyncgen(result):
            async for item in result:
                await ctx.write(item)
            return None
        return await result

    async def requests(ctx: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        while (raw := await next_raw(ctx, idle)) is not None:
            yield parse(raw)

    if handler.request_streaming:
        behaviour = handler.stream_unary or handler.stream_stream

        async def call(ctx: grpc.aio.ServicerContext) -> Any:
            return await answer(behaviour(requests(ctx), ctx), ctx)

    else:
        behaviour = handler.unary_unary or handler.unary_stream

        async def call(ctx: grpc.aio.ServicerContext) -> Any:
            raw = await next_raw(ctx, idle)
            if raw is None:
                raise InvalidInputError("request", "one request message", "none")
            return await answer(behaviour(parse(raw), ctx), ctx)

    async def run(_requests: object, ctx: grpc.aio.ServicerContext) -> Any:
        try:
            return await call(ctx)
        except (DecodeError, InvalidInputError, IdleCallError) as exc:
            code, message = status_for(exc)
            await ctx.abort(code, message)

    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(run, response_serializer=ser)
    return grpc.stream_unary_rpc_method_handler(run, response_serializer=ser)

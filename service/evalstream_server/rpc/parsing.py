"""Requests that do not parse are INVALID_ARGUMENT on every service of the server.

The evalstream service parses its raw request bytes itself (``servicer.method_handlers``). The
stock health and reflection servicers are registered with grpc's deserializers, whose failure
grpc answers with UNKNOWN; ``ParsedRequests`` re-registers such handlers on raw bytes and parses
them in the handler, so a request that is not the method's message is answered INVALID_ARGUMENT
(the words of ``errors.status_for``) and the servicer never sees it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from .errors import status_for

__all__ = ["ParsedRequests"]


class ParsedRequests(grpc.aio.ServerInterceptor):
    """Server interceptor: every handler with a request deserializer gets it applied inside the
    handler instead, a failure answered INVALID_ARGUMENT."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler  # unknown method, or one that parses its own bytes
        return _on_raw_bytes(handler)


def _on_raw_bytes(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    parse = handler.request_deserializer
    ser = handler.response_serializer

    async def refuse(ctx: grpc.aio.ServicerContext, exc: DecodeError) -> None:
        code, message = status_for(exc)
        await ctx.abort(code, message)

    async def answer(result: Any, ctx: grpc.aio.ServicerContext) -> Any:
        """The original behaviour's answer: awaited, or streamed with ``ctx.write``."""
        if inspect.isasyncgen(result):
            async for item in result:
                await ctx.write(item)
            return None
        return await result

    if not handler.request_streaming:
        behaviour = handler.unary_unary or handler.unary_stream

        async def one(raw: bytes, ctx: grpc.aio.ServicerContext) -> Any:
            try:
                request = parse(raw)
            except DecodeError as exc:
                await refuse(ctx, exc)
            return await answer(behaviour(request, ctx), ctx)

        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(one, response_serializer=ser)
        return grpc.unary_unary_rpc_method_handler(one, response_serializer=ser)

    behaviour = handler.stream_unary or handler.stream_stream

    async def many(raw_iter: AsyncIterator[bytes], ctx: grpc.aio.ServicerContext) -> Any:
        async def parsed() -> AsyncIterator[Any]:
            async for raw in raw_iter:
                yield parse(raw)

        try:
            return await answer(behaviour(parsed(), ctx), ctx)
        except DecodeError as exc:
            await refuse(ctx, exc)

    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(many, response_serializer=ser)
    return grpc.stream_unary_rpc_method_handler(many, response_serializer=ser)

"""Reading request messages with an idle timeout, for handlers registered request-streaming.

Every handler of the server is registered request-streaming (on the wire a unary request is a
stream of one message), so it runs when the call's metadata arrives and reads its request itself:
a client that never sends it, or stops sending, is closed after the idle timeout
(``IdleCallError``: UNAVAILABLE) instead of holding the call.
"""

from __future__ import annotations

import asyncio

import grpc

from ..admission import IdleCallError

__all__ = ["next_raw"]


async def next_raw(ctx: grpc.aio.ServicerContext, idle: float) -> bytes | None:
    """The next request message's bytes; None at the end of the request stream;
    ``IdleCallError`` after ``idle`` seconds without one (0: wait for ever)."""
    if idle <= 0:
        raw = await ctx.read()
    else:
        # Not wait_for: cancelling a pending read leaves the call unable to send its status.
        read = asyncio.ensure_future(ctx.read())
        await asyncio.wait((read,), timeout=idle)
        if not read.done():
            read.add_done_callback(_retrieve)  # it ends when the call is closed
            raise IdleCallError(idle)
        raw = read.result()
    return None if raw is grpc.aio.EOF else raw


def _retrieve(task: asyncio.Future[object]) -> None:
    """Collect the outcome of an abandoned read (so asyncio does not log it as lost)."""
    if not task.cancelled():
        task.exception()

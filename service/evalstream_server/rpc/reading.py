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
    ``IdleCallError`` after ``idle`` seconds without one (0: wait for ever).

    The read is awaited directly and a timer cancels the reading task if it fires first: a
    timer per message costs microseconds, a task per message (``wait_for``) measurably more."""
    if idle <= 0:
        raw = await ctx.read()
    else:
        task = asyncio.current_task()
        assert task is not None
        fired: list[bool] = []

        def expire() -> None:
            fired.append(True)
            task.cancel()

        timer = asyncio.get_running_loop().call_later(idle, expire)
        try:
            raw = await ctx.read()
        except asyncio.CancelledError:
            if fired:  # our timer, not a cancellation from outside
                task.uncancel()
                raise IdleCallError(idle) from None
            raise
        finally:
            timer.cancel()
    return None if raw is grpc.aio.EOF else raw

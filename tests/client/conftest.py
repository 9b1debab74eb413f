"""A real evalstream server on 127.0.0.1 in a background thread with its own asyncio loop.

One server serves the whole session (it starts in a few ms, but a session-wide one keeps the
tests independent of start-up costs); each test uses its own stream names. ``ServerThread.paused``
blocks the server's event loop, so a test can hold back acknowledgements deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator

import pytest
from evalstream import EvalClient
from evalstream_server.server import start_server
from evalstream_server.settings import Settings

START_TIMEOUT = 30.0


class ServerThread:
    """``grpc_port`` 0 picks a free port; a fixed one lets a test restart a server at the same
    address (with the same ``data_dir``) under a client that stays connected."""

    def __init__(self, grpc_port: int = 0, **settings: object) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="evalstream-test-server")
        self.thread.start()
        config = Settings(
            host="127.0.0.1", grpc_port=grpc_port, metrics_port=-1, log_level="WARNING", **settings
        )
        try:
            self.running = self._call(start_server(config))
        except BaseException:
            self._end_loop()
            raise
        self.target = self.running.target

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(START_TIMEOUT)

    @contextlib.contextmanager
    def paused(self, limit: float = 20.0) -> Iterator[None]:
        """Block the server's event loop (no request is read, no ack sent) inside the block."""
        entered, release = threading.Event(), threading.Event()

        def block() -> None:
            entered.set()
            release.wait(limit)  # bounded even if the test forgets to leave the block

        self.loop.call_soon_threadsafe(block)
        assert entered.wait(START_TIMEOUT)
        try:
            yield
        finally:
            release.set()

    def stop(self, grace: float = 1.0) -> None:
        """Stop; calls still open after ``grace`` seconds are cancelled (0: at once, so batches
        read and applied may lose their acknowledgement)."""
        try:
            self._call(self.running.stop(grace=grace))
        finally:
            self._end_loop()

    def _end_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(START_TIMEOUT)
        self.loop.close()


@pytest.fixture(scope="session")
def server() -> Iterator[ServerThread]:
    s = ServerThread()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def client(server: ServerThread) -> Iterator[EvalClient]:
    with EvalClient(server.target, timeout=30.0) as c:
        yield c


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A stream name of its own for each test."""
    base = request.node.name.replace("[", "-").replace("]", "")
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in base)
    return f"{safe[:80]}-{uuid.uuid4().hex[:8]}"

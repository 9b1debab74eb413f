"""The durable store's writer thread: one SQLite connection, one open transaction, group commit.

Statements are queued by the store (under its lock, in the order it applied the changes) and run
on this thread inside one open transaction; a commit request commits everything queued before it,
so concurrent requests share one commit (and one fsync).

A failed statement or commit (a full disk, an I/O error) rolls the transaction back and *breaks*
the writer: statements queued after it are dropped (their changes were never committed) and
commits fail at once, until the store has reloaded its memory from the database and calls
``resume``. ``failures`` counts the breaks, so the store can tell that its memory is ahead of disk.

Every commit also stores its number (``meta.commits``) and, once SQLite has committed it, writes
it to the commit ledger before the waiters are answered, so every acknowledged commit is in the
ledger (``ledger.py``).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .checksums import row_crc
from .ledger import Ledger

__all__ = ["Writer"]

log = logging.getLogger("evalstream.store")


class Writer(threading.Thread):
    """Owns the SQLite connection after recovery (every use of it goes through this thread)."""

    def __init__(self, db: sqlite3.Connection, ledger: Ledger, commits: int) -> None:
        super().__init__(name="evalstream-sqlite-writer", daemon=True)
        self.db = db
        self.ledger = ledger
        self.commits = commits  # the number of the last commit (``meta.commits``)
        self.queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.broken: BaseException | None = None
        self.failures = 0  # transactions lost to a failed statement or commit, ever
        self.seen = 0  # statements taken from the queue (run or dropped), in queue order
        self.committed = 0  # ``seen`` at the last successful commit
        self.failed_bytes = 0  # bytes of blobs in the transaction that failed last
        self._tx_bytes = 0
        self._in_tx = False

    def put(self, op: tuple[Any, ...]) -> None:
        self.queue.put(op)

    def commit(self) -> Future[Any]:
        fut: Future[Any] = Future()
        if self.broken is not None:
            fut.set_exception(sqlite3.OperationalError(f"store broken: {self.broken}"))
        else:
            self.queue.put(("commit", fut))
        return fut

    def call(self, fn: Callable[[sqlite3.Connection], Any]) -> Future[Any]:
        """Run ``fn(connection)`` on this thread, after everything queued so far (broken or not:
        reloading memory from the database and probing the disk go through here)."""
        fut: Future[Any] = Future()
        self.queue.put(("call", fut, fn))
        return fut

    def resume(self) -> None:
        """Accept statements again, from the next one queued (those queued before are still
        dropped); returns once the writer has resumed, so the next ``put`` is run."""
        self.call(self._resume).result()

    def _resume(self, db: sqlite3.Connection) -> None:
        self.broken = None

    def stop(self, commit: bool) -> None:
        fut: Future[Any] = Future()
        self.queue.put(("stop", fut, commit))
        if self.is_alive():
            fut.result(timeout=60)
            self.join(timeout=60)

    def run(self) -> None:
        waiting: list[Future[Any]] = []
        # an op met during a group commit, handled right after it
        carried: tuple[Any, ...] | None = None
        while True:
            op, carried = (carried, None) if carried is not None else (self.queue.get(), None)
            kind = op[0]
            if kind == "stop":
                if self._in_tx and not op[2]:
                    self._in_tx = False  # closing the connection discards the transaction
                op[1].set_result(None)
                return
            if kind == "call":
                _run_call(op[1], op[2], self.db)
                continue
            if self.broken is not None:
                if kind == "sql":
                    self.seen += 1
                elif kind == "commit":
                    _settle(op[1], sqlite3.OperationalError(f"store broken: {self.broken}"))
                continue
            try:
                if kind == "sql":
                    self._execute(op)
                    continue
                waiting.append(op[1])
                # group commit: take whatever else is already queued into this transaction
                while True:
                    try:
                        nxt = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt[0] == "sql":
                        self._execute(nxt)
                    elif nxt[0] == "commit":
                        waiting.append(nxt[1])
                    else:
                        carried = nxt  # a stop or a call: handle after this commit
                        break
                if self._in_tx:
                    self.db.execute(
                        "UPDATE meta SET value = ? WHERE key = 'commits'", (self.commits + 1,)
                    )
                    self.db.execute("COMMIT")
                    self._in_tx = False
                    self.commits += 1
                    self._record(self.commits)
                self.committed = self.seen
                self._tx_bytes = 0
                for fut in waiting:
                    _settle(fut)
            except sqlite3.Error as exc:  # memory is ahead of disk now: the store reloads it
                self._fail(exc)
                for fut in waiting:
                    _settle(fut, exc)
            waiting = []

    def _execute(self, op: tuple[Any, ...]) -> None:
        self.seen += 1
        if not self._in_tx:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
        params = op[2]
        if op[3] is not None:  # a row of a checksummed table: its CRC-32 goes last
            params = (*params, row_crc(op[3], params))
        self._tx_bytes += sum(
            memoryview(p).nbytes for p in params if isinstance(p, bytes | memoryview)
        )
        self.db.execute(op[1], params)

    def _record(self, commit: int) -> None:
        try:
            self.ledger.write(commit, time.time())
        except OSError:  # the commit is durable; the ledger lags, which start-up accepts
            log.exception("commit ledger not written", extra={"commit": commit})

    def _fail(self, exc: sqlite3.Error) -> None:
        if self.db.in_transaction:  # SQLite may or may not have rolled back already
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("rollback after a failed commit failed")
        self._in_tx = False
        self.failed_bytes, self._tx_bytes = self._tx_bytes, 0
        self.broken = exc
        self.failures += 1
        log.critical("commit failed; writes refused until the disk accepts them", exc_info=exc)


def _run_call(
    fut: Future[Any], fn: Callable[[sqlite3.Connection], Any], db: sqlite3.Connection
) -> None:
    if not fut.set_running_or_notify_cancel():
        return
    try:
        fut.set_result(fn(db))
    except BaseException as exc:  # noqa: BLE001 - handed to the caller
        fut.set_exception(exc)


def _settle(fut: Future[Any], exc: BaseException | None = None) -> None:
    """Resolve a commit future, unless its waiter gave up on it: an Ingest call cancelled at
    shutdown cancels its ``flush_async`` future, and resolving a cancelled future raises, which
    must not kill the writer thread (every later commit, ``close()`` included, would wait on a
    dead thread)."""
    if fut.set_running_or_notify_cancel():
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)

"""The durable store's writer thread: one SQLite connection, one open transaction, group commit.

Statements are queued by the store (under its lock, in the order it applied the changes) and run
on this thread inside one open transaction; a commit request commits everything queued before it,
so concurrent requests share one commit (and one fsync).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from concurrent.futures import Future

__all__ = ["Writer"]

log = logging.getLogger("evalstream.store")


class Writer(threading.Thread):
    """Owns the SQLite connection after recovery: runs queued statements in one open
    transaction and commits on request. A commit request also covers everything queued before
    it, so concurrent requests share one commit (group commit)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        super().__init__(name="evalstream-sqlite-writer", daemon=True)
        self.db = db
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.broken: BaseException | None = None
        self._in_tx = False

    def put(self, op: tuple) -> None:
        self.queue.put(op)

    def commit(self) -> Future:
        fut: Future = Future()
        if self.broken is not None:
            fut.set_exception(sqlite3.OperationalError(f"store broken: {self.broken}"))
        else:
            self.queue.put(("commit", fut))
        return fut

    def stop(self, commit: bool) -> None:
        fut: Future = Future()
        self.queue.put(("stop", fut, commit))
        if self.is_alive():
            fut.result(timeout=60)
            self.join(timeout=60)

    def run(self) -> None:
        waiting: list[Future] = []
        while True:
            op = self.queue.get()
            kind = op[0]
            if kind == "stop":
                if self._in_tx and not op[2]:
                    self._in_tx = False  # closing the connection discards the transaction
                op[1].set_result(None)
                return
            if self.broken is not None:
                if kind == "commit":
                    _settle(op[1], sqlite3.OperationalError(f"store broken: {self.broken}"))
                continue
            try:
                if kind == "sql":
                    if not self._in_tx:
                        self.db.execute("BEGIN IMMEDIATE")
                        self._in_tx = True
                    self.db.execute(op[1], op[2])
                    continue
                waiting.append(op[1])
                # group commit: take whatever else is already queued into this transaction
                while True:
                    try:
                        nxt = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt[0] == "sql":
                        if not self._in_tx:
                            self.db.execute("BEGIN IMMEDIATE")
                            self._in_tx = True
                        self.db.execute(nxt[1], nxt[2])
                    elif nxt[0] == "commit":
                        waiting.append(nxt[1])
                    else:
                        self.queue.put(nxt)  # a stop: handle after this commit
                        break
                if self._in_tx:
                    self.db.execute("COMMIT")
                    self._in_tx = False
                for fut in waiting:
                    _settle(fut)
            except sqlite3.Error as exc:  # fail-stop: memory is ahead of disk now
                self.broken = exc
                log.critical("commit failed; refusing further work", exc_info=exc)
                for fut in waiting:
                    _settle(fut, exc)
            waiting = []


def _settle(fut: Future, exc: BaseException | None = None) -> None:
    """Resolve a commit future, unless its waiter gave up on it: an Ingest call cancelled at
    shutdown cancels its ``flush_async`` future, and resolving a cancelled future raises, which
    must not kill the writer thread (every later commit, ``close()`` included, would wait on a
    dead thread)."""
    if fut.set_running_or_notify_cancel():
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)

"""Durable embedded store: SQLite in WAL mode under ``--data-dir``.

The promise (README, "Durability"): a batch is acknowledged only after the transaction holding
its counts *and* its producer sequence has committed. Every accepted batch is appended to a log
table; the producer's last sequence and the batch's outcome are written in the same transaction,
so after ``kill -9`` a restart replays exactly the acknowledged batches, and a retried batch is
answered as a duplicate instead of being counted twice. Many batches share one commit (group
commit: the Ingest call commits once per burst of arrivals, before it acknowledges them).
Periodic snapshots of each stream's engine (cumulative state and window buckets) bound what
recovery replays; the log rows a snapshot covers are deleted in the snapshot's transaction.

With ``synchronous=FULL`` (default) a commit is fsynced: an acknowledged batch also survives a
power loss. ``synchronous=NORMAL`` survives process crashes only.

Queries show committed data only: a query reads under the lock, then commits what was applied up
to its read (usually the commit already in flight) without holding the lock, so batches keep
being applied meanwhile; if that commit fails, it reads again. A failed commit (a full disk) rolls
back: memory is loaded again from the database, so nothing unacknowledged is ever shown, and
writes are refused until a probe commit of the failed transaction's size succeeds (retried with
a back-off, also by the server's health check), so the store recovers by itself when space
returns.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..engine import (
    State,
    StreamSpec,
    engine_from_bytes,
    engine_to_bytes,
)
from ..engine.stream import StreamEngine
from .base import BatchOutcome, ExportedStream, Record, StoreUnavailableError, StreamRecord
from .batch_rows import encode_record, replay_row
from .checksums import COLUMNS
from .dir_lock import DataDirLock
from .integrity import DB_NAME, DataDirError, check_data_dir, committed_count
from .ledger import Ledger
from .memory import OUTCOME_MEMORY, MemoryStore
from .sqlite_schema import SCHEMA, migrate
from .sqlite_writer import Writer

__all__ = ["DurableStore", "StoreUnavailableError"]

_T = TypeVar("_T")
_READ_TRIES = 3  # reads of a query whose commit failed, before it reads the rolled-back memory

log = logging.getLogger("evalstream.store")


class DurableStore(MemoryStore):
    """``MemoryStore`` whose every change is logged to SQLite before it is acknowledged.

    Parameters
    ----------
    data_dir : str or Path
    snapshot_every : int
        Snapshot a stream after this many logged batches (bounds recovery time).
    synchronous : {"FULL", "NORMAL"}
    """

    def __init__(
        self,
        data_dir: str | Path,
        max_streams: int = 1000,
        clock: Callable[[], float] = time.time,
        snapshot_every: int = 2000,
        synchronous: str = "FULL",
    ) -> None:
        super().__init__(max_streams=max_streams, clock=clock)
        self.path = Path(data_dir) / DB_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.snapshot_every = snapshot_every
        self._dir_lock = DataDirLock(self.path.parent)
        self._dir_lock.acquire()
        try:
            self._open(synchronous)
        except BaseException:
            self._dir_lock.release()
            raise
        log.info(
            "recovered",
            extra={
                "streams": len(self._streams),
                "replayed_batches": self._replayed,
                "seconds": round(self.recovery_seconds, 4),
                "path": str(self.path),
            },
        )

    def _open(self, synchronous: str) -> None:
        """Check the data dir, open and migrate the database, load every stream."""
        findings = check_data_dir(self.path.parent)  # read-only: before anything is written
        if findings:
            raise DataDirError(self.path.parent, findings)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # 64 KiB pages: a batch's scores are one ~160 KiB blob; with the default 4 KiB pages its
        # overflow chain made inserts 2.7x slower (measured). Takes effect on a new database.
        self._db.execute("PRAGMA page_size=65536")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(SCHEMA)
        migrate(self._db)
        self._ledger = Ledger(self.path.parent)
        commits = committed_count(self._db)
        if self._ledger.read() is None:  # a new data dir, or one written before the ledger
            self._ledger.reset(commits, time.time())
        started = time.perf_counter()
        self._replayed = self._load(self._db)
        self.recovery_seconds = time.perf_counter() - started
        self._writer = Writer(self._db, self._ledger, commits)
        self._writer.start()
        self._queued = 0  # statements queued, in the writer's numbering (``Writer.seen``)
        self._settled = 0  # statements queued before the last roll-back (dropped or committed)
        self._reloaded = 0  # ``Writer.failures`` when memory was last loaded from the database
        self._backoff = _MIN_BACKOFF
        self._retry_at = 0.0
        self._closed = False  # the writer is stopped: nothing may wait on it any more

    @property
    def broken(self) -> BaseException | None:
        return self._writer.broken

    # -- transactions --------------------------------------------------------------------------
    def _put(self, table: str, values: tuple[Any, ...]) -> None:
        """Queue the row ``values`` (``checksums.COLUMNS[table]``) of ``table``, with its
        checksum (computed by the writer thread, off the event loop)."""
        self._exec(_PUT[table], values, checksum=table)

    def _exec(self, sql: str, params: tuple[Any, ...] = (), checksum: str | None = None) -> None:
        """Queue a statement for the writer thread (it runs in the open transaction); with
        ``checksum``, the CRC-32 of the row of that table is appended to ``params``.

        Every write checks ``writable`` before it changes memory. The writer thread runs the
        statements as they are queued, so one of this very write's may fail there (a full disk)
        before the write has queued the rest: they are queued anyway (the broken writer drops
        them) and the failure shows where a write is acknowledged, at the commit (``flush``),
        which rolls memory back. Raising here instead made a write's outcome depend on the
        threads' timing: the ingest raised when the writer had already run its batch's row, and
        returned for the flush to fail when it had not."""
        self._queued += 1
        self._writer.put(("sql", sql, params, checksum))

    def flush(self) -> None:
        """Commit everything queued so far and wait for it (one fsync with FULL durability);
        nothing to do when everything queued is committed or was rolled back."""
        if not self._dirty():
            return
        try:
            self._writer.commit().result()
        except sqlite3.Error as exc:
            self._failed()
            raise StoreUnavailableError(str(exc)) from exc

    async def flush_async(self) -> None:
        """``flush`` without blocking the event loop: batches keep arriving (and are applied and
        queued) while the commit's fsync runs, so the next commit carries all of them."""
        import asyncio

        if not self._dirty():
            return
        try:
            await asyncio.wrap_future(self._writer.commit())
        except sqlite3.Error as exc:
            self._failed()
            raise StoreUnavailableError(str(exc)) from exc

    async def settle_async(self) -> None:
        """Before a query: commit what was applied so far, or roll it back if that fails."""
        if self._dirty():
            try:
                await self.flush_async()
            except StoreUnavailableError:
                pass  # rolled back: the query shows what is committed

    # -- failed commits: roll back, refuse writes, probe, resume -------------------------------
    def _dirty(self) -> bool:
        return self._queued > max(self._writer.committed, self._settled)

    def _committed(self, read: Callable[[], _T]) -> _T:
        """``read()`` (under the lock) of committed data only, without holding the lock through
        a commit: read, then commit what was applied up to the read; if that commit fails,
        memory was rolled back to the last good commit: read again."""
        for _ in range(_READ_TRIES):
            with self._lock:
                if self._closed:
                    return read()
                self._roll_back()  # a failed commit since: committed data only
                # a statement may fail on the writer thread at any moment: a failure counted
                # after this (even during the read) sends the query round again
                failures = self._writer.failures
                value = read()
                mark = self._queued
            if self._writer.committed < mark:
                try:
                    self.flush()  # commits what the read saw (and what came after it)
                except StoreUnavailableError:
                    continue  # rolled back: what the read saw is not all committed
            if self._writer.failures == failures:  # no commit failed (and rolled back) since
                return value
        with self._lock:  # writes are refused after a failed commit: memory stays committed
            if not self._closed:
                self._roll_back()
            return read()

    def _failed(self) -> None:
        with self._lock:
            self._roll_back()

    def _roll_back(self) -> None:
        """Under the lock: after a failed commit memory is ahead of disk by every change since
        the last good commit; load every stream again from the database (committed data only).
        """
        failures = self._writer.failures
        if failures == self._reloaded:
            return
        started = time.perf_counter()
        self._writer.call(self._load).result()  # after the dropped statements: FIFO
        self._recharge()  # the memory budget charges the streams as loaded
        self._reloaded, self._settled = failures, self._queued
        self._retry_at = time.monotonic() + self._backoff
        log.warning(
            "rolled back to the last commit",
            extra={"seconds": round(time.perf_counter() - started, 4), "path": str(self.path)},
        )

    def _check_writable(self) -> None:
        if not self.writable():
            raise StoreUnavailableError(
                f"{self.path}: writes refused since a commit failed ({self._writer.broken}); the "
                f"store retries by itself in {max(self._retry_at - time.monotonic(), 0):.1f} s"
            )

    def writable(self) -> bool:
        """True when writes are accepted. After a failed commit: False until a probe commit of
        the failed transaction's size succeeds; probed when the back-off has passed (0.5 s,
        doubling to 30 s)."""
        with self._lock:
            if self._closed:
                return False
            if self._writer.broken is None:
                return True
            self._roll_back()
            if time.monotonic() < self._retry_at:
                return False
            size = min(max(self._writer.failed_bytes, 1 << 16), 1 << 26)
            try:
                self._writer.call(lambda db: _probe(db, size)).result()
            except sqlite3.Error as exc:
                self._backoff = min(2 * self._backoff, _MAX_BACKOFF)
                self._retry_at = time.monotonic() + self._backoff
                log.warning("write probe failed", extra={"error": str(exc), "bytes": size})
                return False
            self._writer.resume()
            self._backoff = _MIN_BACKOFF
            log.warning("writes accepted again", extra={"path": str(self.path)})
            return True

    # -- queries: committed data only ----------------------------------------------------------
    def state(self, name: str, window: str) -> State:
        return self._committed(lambda: MemoryStore.state(self, name, window))

    def report_context(
        self, name: str, window: str
    ) -> tuple[State, State | None, dict[str, Any] | None]:
        return self._committed(lambda: MemoryStore.report_context(self, name, window))

    def label_status(self, name: str) -> dict[str, Any] | None:
        return self._committed(lambda: MemoryStore.label_status(self, name))

    def records(self) -> list[StreamRecord]:
        return self._committed(lambda: MemoryStore.records(self))

    def export_records(self) -> list[ExportedStream]:
        return self._committed(lambda: MemoryStore.export_records(self))

    # -- hooks ---------------------------------------------------------------------------------
    def _on_create(self, record: StreamRecord) -> None:
        self._put(
            "streams",
            (record.name, json.dumps(record.spec.to_dict()), record.create_time, record.tenant),
        )
        self.flush()

    def _on_delete(self, name: str) -> None:
        for table in ("streams", "producers", "outcomes", "batches", "snapshots"):
            column = "name" if table == "streams" else "stream"
            self._exec(f"DELETE FROM {table} WHERE {column} = ?", (name,))  # noqa: S608
        self._since_snapshot.pop(name, None)
        self.flush()

    def _on_forget(self, record: StreamRecord, producers: list[str]) -> None:
        for producer in producers:
            for table in ("producers", "outcomes"):
                self._exec(
                    f"DELETE FROM {table} WHERE stream = ? AND producer = ?",  # noqa: S608
                    (record.name, producer),
                )

    def _on_reset(self, record: StreamRecord, forget_producers: bool) -> None:
        if forget_producers:
            self._exec("DELETE FROM producers WHERE stream = ?", (record.name,))
            self._exec("DELETE FROM outcomes WHERE stream = ?", (record.name,))
        self._snapshot(record)
        self.flush()

    def _on_ingest(
        self,
        record: StreamRecord,
        producer_id: str,
        sequence: int,
        batch: Record | Exception,
        timestamp: float | None,
        now: float,
        outcome: BatchOutcome,
    ) -> None:
        if outcome.status == "accepted" and not isinstance(batch, Exception):
            kind, ids, labels, scores, weights = encode_record(batch)
            bid = self._next_batch_id
            self._next_batch_id += 1
            self._put(
                "batches",
                (bid, record.name, timestamp, now, batch.n, labels, scores, weights, kind, ids),
            )
            self._last_batch_id[record.name] = bid
            self._since_snapshot[record.name] = self._since_snapshot.get(record.name, 0) + 1
        if sequence:
            self._put("producers", (record.name, producer_id, sequence, now))
            self._put(
                "outcomes", (record.name, producer_id, sequence, json.dumps(outcome.__dict__))
            )
        if self._since_snapshot.get(record.name, 0) >= self.snapshot_every:
            self._snapshot(record)

    # -- snapshots and recovery ----------------------------------------------------------------
    def _snapshot(self, record: StreamRecord) -> None:
        """Queue the engine and the deletion of the log rows it covers: one transaction (the
        rows it covers were queued before it, so they commit with it or earlier)."""
        upto = self._last_batch_id.get(record.name, 0)
        blob = engine_to_bytes(record.engine)
        limit = self._db.getlimit(sqlite3.SQLITE_LIMIT_LENGTH)
        if len(blob) > limit:
            # SQLite refuses a value this long: the commit would fail and stop the store for
            # every stream. Keep this stream's log instead (recovery replays it) and say so.
            log.warning(
                "snapshot skipped: the engine is larger than SQLite's value limit",
                extra={"stream": record.name, "bytes": len(blob), "limit": limit},
            )
            self._since_snapshot[record.name] = 0  # try again after as many batches
            return
        self._put("snapshots", (record.name, upto, blob, record.update_time, self.clock()))
        self._exec("DELETE FROM batches WHERE stream = ? AND id <= ?", (record.name, upto))
        for producer, last in record.producers.items():
            self._exec(
                "DELETE FROM outcomes WHERE stream = ? AND producer = ? AND seq <= ?",
                (record.name, producer, last - OUTCOME_MEMORY),
            )
        self._since_snapshot[record.name] = 0

    def _load(self, db: sqlite3.Connection) -> int:
        """Load every stream from the database (start-up, roll-back); the number of batches
        replayed on top of the snapshots."""
        self._streams = {}
        self._since_snapshot: dict[str, int] = {}
        self._last_batch_id: dict[str, int] = {}
        replayed = self._recover(db)
        # Batch ids only grow: a snapshot deletes the rows it covers, so the next id must also be
        # above every snapshot's mark, or a later replay would skip the new rows.
        self._next_batch_id = 1 + int(
            db.execute(
                "SELECT MAX(COALESCE((SELECT MAX(id) FROM batches), 0), "
                "COALESCE((SELECT MAX(batch_id) FROM snapshots), 0))"
            ).fetchone()[0]
        )
        return replayed

    def _recover(self, db: sqlite3.Connection) -> int:
        replayed = 0
        rows = db.execute("SELECT name, spec, create_time, tenant FROM streams").fetchall()
        for name, spec_json, create_time, tenant in rows:
            spec = StreamSpec.from_dict(json.loads(spec_json))
            engine = StreamEngine(spec, clock=self.clock)
            snap = db.execute(
                "SELECT batch_id, engine, update_time FROM snapshots WHERE stream = ?", (name,)
            ).fetchone()
            after, update_time = 0, None
            if snap is not None:
                after, blob, update_time = snap
                engine = engine_from_bytes(blob, clock=self.clock)
            record = StreamRecord(spec, engine, create_time, update_time=update_time, tenant=tenant)
            last_id = after
            with engine.replaying():
                for bid, *row in db.execute(
                    "SELECT id, ts, now, n, labels, scores, weights, kind, ids FROM batches "
                    "WHERE stream = ? AND id > ? ORDER BY id",
                    (name, after),
                ):
                    replay_row(engine, spec, tuple(row))
                    record.update_time = row[1]
                    last_id = bid
                    replayed += 1
            self._last_batch_id[name] = last_id
            self._since_snapshot[name] = replayed
            for producer, last, seen in db.execute(
                "SELECT producer, last_seq, seen FROM producers WHERE stream = ?", (name,)
            ):
                record.producers[producer] = int(last)
                record.producer_seen[producer] = float(seen) or self.clock()
            for producer, seq, outcome in db.execute(
                "SELECT producer, seq, outcome FROM outcomes WHERE stream = ?", (name,)
            ):
                record.outcomes.setdefault(producer, {})[int(seq)] = BatchOutcome(
                    **json.loads(outcome)
                )
            self._streams[name] = record
        return replayed

    def close(self) -> None:
        """Commit, snapshot every stream (fast next start), stop the writer, close."""
        with self._lock:
            if self._closed:
                return
            if self.broken is None:
                try:
                    for record in self._streams.values():
                        if self._since_snapshot.get(record.name, 0):
                            self._snapshot(record)
                    self.flush()
                except (sqlite3.Error, StoreUnavailableError):
                    log.exception("final snapshot failed; the log still holds every batch")
            self._writer.stop(commit=False)
            self._closed = True
            self._db.close()
            self._ledger.close()
            self._dir_lock.release()

    def _simulate_crash(self) -> None:
        """Tests: lose everything not yet committed, as ``kill -9`` would."""
        self._writer.stop(commit=False)
        self._closed = True
        self._db.close()
        self._ledger.close()
        self._dir_lock.release()  # as the OS does when the process dies

    @property
    def size_bytes(self) -> int:
        return sum(os.path.getsize(p) for p in self.path.parent.glob("evalstream.db*"))


_PUT = {  # the statement that stores a row of each checksummed table (the crc last)
    table: f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}, crc) "  # noqa: S608
    f"VALUES ({', '.join('?' * (len(columns) + 1))})"
    for table, columns in COLUMNS.items()
}
_MIN_BACKOFF, _MAX_BACKOFF = 0.5, 30.0  # seconds between write probes after a failed commit


def _probe(db: sqlite3.Connection, size: int) -> None:
    """Commit ``size`` bytes (and delete them): can the disk take a transaction that large?"""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('write_probe', zeroblob(?))", (size,))
        db.execute("COMMIT")
    except sqlite3.Error:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("DELETE FROM meta WHERE key = 'write_probe'")

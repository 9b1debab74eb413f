"""Salvage what is intact in a damaged durable data dir into a clean one, saying what was dropped.

Prometheus' TSDB repairs a WAL by truncating it at the first bad record; a stream's log here is
its snapshot followed by its batches in id order, so the same rule applies per stream:

- a stream whose definition row is damaged is dropped with everything it owns;
- a damaged snapshot drops the stream's counts (the snapshot and every batch logged after it:
  they are deltas on top of it); the definition and the producer sequences are kept, so the
  stream goes on from zero counts;
- a damaged batch row drops that batch and every later batch of its stream;
- a damaged producer or outcome row is dropped (that producer starts again at sequence 1);
- rows of streams that do not exist are dropped;
- commits lost with a damaged WAL are gone: the report says how many.

Producers' sequence numbers stay consumed by dropped batches: resending one is answered
"duplicate", so dropped samples are lost, never counted twice. The damaged files are moved, not
deleted, to ``damaged-<stamp>/`` inside the data dir.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checksums import COLUMNS, row_crc
from .dir_lock import DataDirLock
from .integrity import DB_NAME, WAL_NAME, Finding, check_data_dir, connect_read_only
from .ledger import LEDGER_NAME

__all__ = ["RepairReport", "repair"]

_DEFAULTS = {"seen": 0.0, "kind": 0, "ids": None, "tenant": ""}  # columns older formats lack


@dataclass
class RepairReport:
    """What ``repair`` found, kept and dropped, and where the damaged files went."""

    findings: list[Finding]
    kept: dict[str, int] = field(default_factory=dict)  # table -> rows kept
    dropped: list[str] = field(default_factory=list)  # one line per thing dropped
    moved_to: Path | None = None


@dataclass
class _Row:
    values: tuple[Any, ...]
    crc: int | None
    good: bool


def repair(data_dir: Path, stamp: str) -> RepairReport:
    """Salvage ``data_dir`` in place (nothing is done when it is intact)."""
    lock = DataDirLock(data_dir)
    lock.acquire()  # refuses while a server runs on the data dir
    try:
        return _repair(data_dir, stamp)
    finally:
        lock.release()


def _repair(data_dir: Path, stamp: str) -> RepairReport:
    findings = check_data_dir(data_dir)
    report = RepairReport(findings)
    if not findings:
        return report
    rows, unreadable = _read(data_dir / DB_NAME)
    report.dropped += unreadable
    kept = _choose(rows, report.dropped)
    for finding in findings:
        if finding.file == WAL_NAME or "empty (0 bytes)" in finding.what:
            report.dropped.append(f"lost before the repair: {finding.what}")
    fresh = data_dir / f"repaired-{stamp}"
    _write(fresh, kept)
    report.kept = {table: len(kept[table]) for table in COLUMNS}
    report.moved_to = data_dir / f"damaged-{stamp}"
    report.moved_to.mkdir()
    for name in (DB_NAME, WAL_NAME, DB_NAME + "-shm", LEDGER_NAME):
        if (data_dir / name).exists():
            shutil.move(data_dir / name, report.moved_to / name)
    for name in (DB_NAME, LEDGER_NAME):
        shutil.move(fresh / name, data_dir / name)
    shutil.rmtree(fresh)
    return report


def _read(db_file: Path) -> tuple[dict[str, list[_Row]], list[str]]:
    """Every readable row of each table, checked against its checksum."""
    rows: dict[str, list[_Row]] = {table: [] for table in COLUMNS}
    unreadable: list[str] = []
    if not db_file.exists() or db_file.stat().st_size == 0:
        return rows, unreadable
    db = connect_read_only(db_file)
    try:
        for table, columns in COLUMNS.items():
            try:
                present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                if not present:
                    continue
                wanted = [c if c in present else "NULL" for c in columns]
                crc = "crc" if "crc" in present else "NULL"
                order = " ORDER BY id" if table == "batches" else ""
                sql = f"SELECT {', '.join(wanted)}, {crc} FROM {table}{order}"  # noqa: S608
                for row in db.execute(sql):
                    values = tuple(
                        _DEFAULTS.get(c) if c not in present else v
                        for c, v in zip(columns, row[:-1], strict=True)
                    )
                    stored = row[-1]
                    good = crc == "NULL" or stored == row_crc(table, values)
                    rows[table].append(_Row(values, stored, good))
            except sqlite3.DatabaseError as exc:
                unreadable.append(
                    f"table {table}: unreadable after {len(rows[table])} rows ({exc}); the "
                    "rest of it"
                )
    finally:
        db.close()
    return rows, unreadable


def _choose(rows: dict[str, list[_Row]], dropped: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows to keep, per table; appends a line to ``dropped`` for everything left out."""
    kept: dict[str, list[tuple[Any, ...]]] = {table: [] for table in COLUMNS}
    streams: set[str] = set()
    for row in rows["streams"]:
        name = row.values[0]
        if row.good:
            streams.add(name)
            kept["streams"].append(row.values)
        else:
            dropped.append(f"stream {name!r}: its definition is damaged; the stream and all "
                           "its rows are dropped")  # fmt: skip
    no_counts: set[str] = set()
    for row in rows["snapshots"]:
        name, upto, blob = row.values[0], row.values[1], row.values[2]
        if name not in streams:
            continue
        if row.good:
            kept["snapshots"].append(row.values)
        else:
            no_counts.add(name)
            dropped.append(f"stream {name!r}: its snapshot (batches up to id {upto}, "
                           f"{len(blob)} bytes) is damaged; its counts are dropped and start "
                           "again from zero")  # fmt: skip
    cut: dict[str, int] = {}  # stream -> id of its first damaged batch
    lost: dict[str, list[int]] = {}  # stream -> [batches, samples] dropped
    for row in rows["batches"]:
        bid, name, n = row.values[0], row.values[1], int(row.values[4])
        if name not in streams:
            continue
        if not row.good and name not in cut:
            cut[name] = bid
        if name in cut or name in no_counts:
            counts = lost.setdefault(name, [0, 0])
            counts[0] += 1
            counts[1] += n
        else:
            kept["batches"].append(row.values)
    for name, first in cut.items():
        batches, samples = lost[name]
        dropped.append(f"stream {name!r}: batch id {first} is damaged; it and every later batch "
                       f"of the stream are dropped ({batches} batches, {samples} samples); their "
                       "sequence numbers stay consumed")  # fmt: skip
    for name in no_counts - set(cut):
        if name in lost:
            batches, samples = lost[name]
            dropped.append(f"stream {name!r}: {batches} batches ({samples} samples) logged "
                           "after the damaged snapshot are dropped with it")  # fmt: skip
    for table in ("producers", "outcomes"):
        for row in rows[table]:
            name, producer = row.values[0], row.values[1]
            if name not in streams:
                continue
            if row.good:
                kept[table].append(row.values)
            else:
                what = (
                    "sequence" if table == "producers" else f"outcome of sequence {row.values[2]}"
                )
                dropped.append(f"stream {name!r}: the {what} of producer {producer!r} is "
                               "damaged and dropped")  # fmt: skip
    orphans = sum(
        1
        for table in ("producers", "outcomes", "batches", "snapshots")
        for row in rows[table]
        if row.values[0 if table != "batches" else 1] not in streams
    )
    if orphans:
        dropped.append(f"{orphans} rows of streams that are not kept")
    return kept


def _write(fresh: Path, kept: dict[str, list[tuple[Any, ...]]]) -> None:
    """A new data dir holding ``kept`` (with checksums and a ledger at commit 0)."""
    from .durable import DurableStore

    DurableStore(fresh).close()  # the schema, the format and the ledger of a new data dir
    db = sqlite3.connect(fresh / DB_NAME, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    for table, columns in COLUMNS.items():
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}, crc) "  # noqa: S608
            f"VALUES ({', '.join('?' * (len(columns) + 1))})"
        )
        for values in kept[table]:
            params: tuple[Any, ...] = (*values, row_crc(table, values))
            db.execute(sql, params)
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()

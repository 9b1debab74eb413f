"""The durable store's tables, and how a database written by an older version is brought up to
them (at start-up, before anything else is written).

Every migration is idempotent and keyed on what the old layout lacks: the ``kind`` and ``ids``
of delayed labels, the producers' ``seen`` times, per-tenant stream keys, and the row checksums
(``crc``), whose migration adopts the rows as they are (nothing can vouch for them, but from then
on any change to them is found).
"""

from __future__ import annotations

import logging
import sqlite3

from .base import stream_key
from .checksums import COLUMNS, row_crc

__all__ = ["SCHEMA", "add_checksums", "has_checksums", "migrate"]

log = logging.getLogger("evalstream.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, create_time REAL NOT NULL,
    tenant TEXT NOT NULL DEFAULT '', crc INTEGER);
CREATE TABLE IF NOT EXISTS producers (
    stream TEXT NOT NULL, producer TEXT NOT NULL, last_seq INTEGER NOT NULL,
    seen REAL NOT NULL DEFAULT 0, crc INTEGER, PRIMARY KEY (stream, producer));
CREATE TABLE IF NOT EXISTS outcomes (
    stream TEXT NOT NULL, producer TEXT NOT NULL, seq INTEGER NOT NULL, outcome TEXT NOT NULL,
    crc INTEGER, PRIMARY KEY (stream, producer, seq));
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, ts REAL, now REAL NOT NULL,
    n INTEGER NOT NULL, labels BLOB NOT NULL, scores BLOB NOT NULL, weights BLOB,
    kind INTEGER NOT NULL DEFAULT 0, ids TEXT, crc INTEGER);
CREATE INDEX IF NOT EXISTS batches_by_stream ON batches (stream, id);
CREATE TABLE IF NOT EXISTS snapshots (
    stream TEXT PRIMARY KEY, batch_id INTEGER NOT NULL, engine BLOB NOT NULL,
    update_time REAL, time REAL NOT NULL, crc INTEGER);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
INSERT OR IGNORE INTO meta VALUES ('commits', 0);
"""


def has_checksums(db: sqlite3.Connection) -> bool:
    """Whether the database is of the checksummed format (older ones are migrated)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
    return "crc" in columns


def migrate(db: sqlite3.Connection) -> None:
    """Bring a database written by an older version up to ``SCHEMA`` (after it ran)."""
    producers = {row[1] for row in db.execute("PRAGMA table_info(producers)")}
    if "seen" not in producers:  # before producers were forgotten: seen at recovery
        db.execute("ALTER TABLE producers ADD COLUMN seen REAL NOT NULL DEFAULT 0")
    columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
    if "kind" not in columns:  # before delayed labels: every logged batch was labelled
        db.execute("ALTER TABLE batches ADD COLUMN kind INTEGER NOT NULL DEFAULT 0")
        db.execute("ALTER TABLE batches ADD COLUMN ids TEXT")
    # Before stream names were per tenant a tenant's stream was filed under its bare name;
    # now under ``tenant/name`` (``stream_key``), in one transaction over every table.
    old = db.execute(
        "SELECT name, tenant FROM streams WHERE tenant != '' AND instr(name, '/') = 0"
    ).fetchall()
    if old:
        db.execute("BEGIN IMMEDIATE")
        for name, tenant in old:
            key = stream_key(tenant, name)
            db.execute("UPDATE streams SET name = ? WHERE name = ?", (key, name))
            for table in ("producers", "outcomes", "batches", "snapshots"):
                db.execute(
                    f"UPDATE {table} SET stream = ? WHERE stream = ?",  # noqa: S608
                    (key, name),
                )
        db.execute("COMMIT")
        log.info("stream keys migrated to tenant/name", extra={"streams": len(old)})
    if not has_checksums(db):
        rows = add_checksums(db)
        log.info("checksums added to the rows of an older data dir", extra={"rows": rows})


def add_checksums(db: sqlite3.Connection) -> int:
    """Add and fill the ``crc`` column of every checksummed table; the number of rows."""
    rows = 0
    db.execute("BEGIN IMMEDIATE")
    try:
        for table, columns in COLUMNS.items():
            db.execute(f"ALTER TABLE {table} ADD COLUMN crc INTEGER")
            select = f"SELECT {', '.join(columns)} FROM {table} WHERE rowid = ?"  # noqa: S608
            # one row at a time: a table of logged batches can be larger than memory
            for (rowid,) in db.execute(f"SELECT rowid FROM {table}").fetchall():  # noqa: S608
                values = db.execute(select, (rowid,)).fetchone()
                crc = row_crc(table, values)
                db.execute(f"UPDATE {table} SET crc = ? WHERE rowid = ?", (crc, rowid))  # noqa: S608
                rows += 1
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return rows

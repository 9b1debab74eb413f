"""The durable store's integrity check: is every acknowledged commit there, and is every row the
one that was written?

Three layers, each naming the file and what is wrong:

1. SQLite's own structure (``PRAGMA quick_check``) of ``evalstream.db``.
2. The commit ledger (``ledger.py``): a database holding fewer commits than were acknowledged lost
   some: its WAL (``evalstream.db-wal``) was deleted, truncated or damaged (SQLite ignores every
   frame from the first bad one on), or the database itself was emptied or replaced.
3. Row checksums (``checksums.py``): a stored batch, snapshot, stream definition, producer
   sequence or outcome that does not match its CRC-32 was altered after it was written.

The check only reads (``check`` takes a read-only connection), so ``evalstream verify`` can run
on a data dir without changing it and the evidence survives for ``evalstream repair``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .checksums import COLUMNS, row_crc
from .ledger import LEDGER_NAME, Ledger
from .sqlite_schema import has_checksums

__all__ = [
    "DB_NAME",
    "DataDirError",
    "Finding",
    "check",
    "check_data_dir",
    "committed_count",
    "connect_read_only",
    "has_checksums",
]

DB_NAME = "evalstream.db"
WAL_NAME = DB_NAME + "-wal"


@dataclass(frozen=True)
class Finding:
    """One thing wrong in a data dir: the file, where in it, and what."""

    file: str
    what: str
    table: str | None = None
    row: str | None = None  # the row's key, as the table names it
    stream: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.table is not None:
            where = f"table {self.table}"
            if self.row is not None:
                where += f", row {self.row}"
            if self.stream is not None:
                where += f" (stream {self.stream!r})"
            where += ": "
        return f"{self.file}: {where}{self.what}"


class DataDirError(RuntimeError):
    """A damaged data dir: the store refuses to start on it."""

    def __init__(self, data_dir: Path, findings: list[Finding]) -> None:
        self.data_dir = data_dir
        self.findings = findings
        shown = "\n".join(f"  {f}" for f in findings[:10])
        more = f"\n  ... and {len(findings) - 10} more" if len(findings) > 10 else ""
        super().__init__(
            f"data dir {data_dir} is damaged ({len(findings)} problem"
            f"{'s' if len(findings) != 1 else ''}); refusing to start:\n{shown}{more}\n"
            f"`evalstream verify --data-dir {data_dir}` reports what is intact; "
            f"`evalstream repair --data-dir {data_dir}` keeps it and sets the rest aside"
        )


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot change the database (nor checkpoint and delete its WAL)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)


def committed_count(db: sqlite3.Connection) -> int:
    """``meta.commits``: the number of the last commit the database holds (0 without one)."""
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'commits'").fetchone()
    except sqlite3.DatabaseError:
        return 0
    return int(row[0]) if row is not None else 0


def check_data_dir(data_dir: Path) -> list[Finding]:
    """Everything wrong with the data dir (nothing when it holds no database yet)."""
    db_file = data_dir / DB_NAME
    if not db_file.exists():
        acknowledged = Ledger(data_dir).read()
        if acknowledged:
            return [Finding(DB_NAME, f"missing but {LEDGER_NAME} records commit {acknowledged}")]
        return []
    wal = data_dir / WAL_NAME
    wal_bytes = wal.stat().st_size if wal.exists() else 0  # before SQLite creates one
    db = connect_read_only(db_file)
    try:
        return check(db, data_dir, wal_bytes)
    finally:
        db.close()


def check(db: sqlite3.Connection, data_dir: Path, wal_bytes: int) -> list[Finding]:
    """Everything wrong with the data dir whose database ``db`` is open (read-only);
    ``wal_bytes`` is the size its WAL had before it was opened (0: absent)."""
    findings = _structure(db)
    if findings:
        return findings  # rows of a malformed database are not worth reading
    findings += _ledger(db, data_dir, wal_bytes)
    if has_checksums(db):
        for table in COLUMNS:
            findings += _rows(db, table)
    return findings


def _structure(db: sqlite3.Connection) -> list[Finding]:
    try:
        rows = [r[0] for r in db.execute("PRAGMA quick_check(20)")]
    except sqlite3.DatabaseError as exc:
        return [Finding(DB_NAME, f"not a readable SQLite database ({exc})")]
    if rows == ["ok"]:
        return []
    return [Finding(DB_NAME, f"SQLite finds the file damaged: {r}") for r in rows]


def _ledger(db: sqlite3.Connection, data_dir: Path, wal_bytes: int) -> list[Finding]:
    ledger = Ledger(data_dir)
    if ledger.damaged():
        what = (
            "damaged: neither of its two slots passes its checksum, so whether acknowledged "
            "commits are missing cannot be told"
        )
        return [Finding(LEDGER_NAME, what)]
    acknowledged = ledger.read()
    held = committed_count(db)
    if acknowledged is None or held >= acknowledged:
        return []
    if (data_dir / DB_NAME).stat().st_size == 0:
        what = f"empty (0 bytes) but commit {acknowledged} was acknowledged ({LEDGER_NAME})"
        return [Finding(DB_NAME, what)]
    missing = acknowledged - held
    what = (
        f"the database holds commit {held} but commit {acknowledged} was acknowledged "
        f"({LEDGER_NAME}): {missing} acknowledged commit{'s are' if missing != 1 else ' is'} "
        "missing; "
    )
    if not wal_bytes:
        what += "the WAL was deleted, or the database replaced by an older copy"
        return [Finding(WAL_NAME, "missing or empty: " + what)]
    what += (
        "the WAL was truncated or damaged (SQLite ignores every frame from the first bad one on)"
    )
    return [Finding(WAL_NAME, what)]


_KEYS = {
    "streams": ("name",),
    "producers": ("stream", "producer"),
    "outcomes": ("stream", "producer", "seq"),
    "batches": ("id",),
    "snapshots": ("stream",),
}


def _rows(db: sqlite3.Connection, table: str) -> list[Finding]:
    columns = COLUMNS[table]
    stream_at = columns.index("name" if table == "streams" else "stream")
    key_at = [columns.index(k) for k in _KEYS[table]]
    findings = []
    cursor = db.execute(f"SELECT {', '.join(columns)}, crc FROM {table}")  # noqa: S608
    for row in cursor:
        values, stored = row[:-1], row[-1]
        if stored is not None and row_crc(table, values) == stored:
            continue
        key = ", ".join(f"{_KEYS[table][i]}={values[k]!r}" for i, k in enumerate(key_at))
        what = (
            "no checksum" if stored is None else "checksum mismatch: altered after it was written"
        )
        findings.append(Finding(DB_NAME, what, table, key, str(values[stream_at])))
    return findings

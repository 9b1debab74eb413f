"""``evalstream verify`` and ``evalstream repair``: an operator's view of a durable data dir.

``verify`` reads only (a read-only SQLite connection: it neither checkpoints nor deletes the
WAL) and exits 0 when the data dir is intact, 1 when it is damaged, 2 when there is none.
``repair`` keeps what is intact (``store.repair``), moves the damaged files aside, says exactly
what was dropped, and checks the result; run both with the server stopped.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path
from typing import TextIO

from .store.dir_lock import DataDirBusyError
from .store.integrity import (
    DB_NAME,
    check_data_dir,
    committed_count,
    connect_read_only,
    has_checksums,
)
from .store.ledger import LEDGER_NAME, Ledger

__all__ = ["verify", "repair"]


def verify(data_dir: Path, out: TextIO = sys.stdout) -> int:
    if not (data_dir / DB_NAME).exists() and Ledger(data_dir).read() is None:
        print(f"evalstream verify: no {DB_NAME} in {data_dir}", file=sys.stderr)
        return 2
    findings = check_data_dir(data_dir)
    print(f"data dir {data_dir}", file=out)
    print(f"  {_inventory(data_dir)}", file=out)
    for finding in findings:
        print(f"  DAMAGED {finding}", file=out)
    if not findings:
        print("intact", file=out)
        return 0
    print(
        f"damaged: {len(findings)} problem{'s' if len(findings) != 1 else ''}; "
        f"`evalstream repair --data-dir {data_dir}` keeps what is intact",
        file=out,
    )
    return 1


def repair(data_dir: Path, out: TextIO = sys.stdout) -> int:
    from .store.repair import repair as salvage

    if not (data_dir / DB_NAME).exists() and Ledger(data_dir).read() is None:
        print(f"evalstream repair: no {DB_NAME} in {data_dir}", file=sys.stderr)
        return 2
    try:
        report = salvage(data_dir, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    except DataDirBusyError as exc:
        print(f"evalstream repair: {exc}", file=sys.stderr)
        return 1
    if not report.findings:
        print(f"data dir {data_dir} is intact; nothing to repair", file=out)
        return 0
    print(f"data dir {data_dir}: {len(report.findings)} problems", file=out)
    for finding in report.findings:
        print(f"  DAMAGED {finding}", file=out)
    kept = ", ".join(f"{n} {table}" for table, n in report.kept.items())
    print(f"kept: {kept}", file=out)
    for line in report.dropped:
        print(f"  DROPPED {line}", file=out)
    print(f"the damaged files are in {report.moved_to}", file=out)
    left = check_data_dir(data_dir)
    if left:  # a repair must leave a data dir that starts
        for finding in left:
            print(f"  STILL DAMAGED {finding}", file=out)
        return 1
    print("repaired: the data dir is intact and the server can start on it", file=out)
    return 0


def _inventory(data_dir: Path) -> str:
    """What the database holds, in a line (read-only)."""
    db_file = data_dir / DB_NAME
    if not db_file.exists() or db_file.stat().st_size == 0:
        return f"{DB_NAME}: {'missing' if not db_file.exists() else 'empty'}"
    db = connect_read_only(db_file)
    try:
        counts = []
        for table in ("streams", "producers", "batches", "snapshots"):
            try:
                n = db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
            except sqlite3.DatabaseError:
                n = "?"
            counts.append(f"{n} {table if table != 'batches' else 'logged batches'}")
        held = committed_count(db)
        checksummed = has_checksums(db)
    except sqlite3.DatabaseError as exc:
        return f"{DB_NAME}: unreadable ({exc})"
    finally:
        db.close()
    ledger = Ledger(data_dir).read()
    acknowledged = "no ledger" if ledger is None else f"{LEDGER_NAME}: commit {ledger}"
    line = f"{DB_NAME}: {', '.join(counts)}; commit {held} ({acknowledged})"
    if not checksummed:
        line += "; written before row checksums: its rows cannot be checked until the next start"
        line += " adds them"
    return line

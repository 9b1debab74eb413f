"""Bring a durable store's database written by an older version up to the checksummed format.

A data dir written before row checksums has no ``crc`` column and no commit ledger. Its rows are
adopted as they are (nothing can vouch for them, but from here on any change to them is found):
one transaction adds the column and stores each row's checksum.
"""

from __future__ import annotations

import sqlite3

from .checksums import COLUMNS, row_crc

__all__ = ["add_checksums"]


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

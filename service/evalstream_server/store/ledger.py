"""The commit ledger: the number of the last commit the durable store acknowledged, kept outside
SQLite.

SQLite's WAL cannot tell a crash from damage: frames after a torn or altered one are ignored, a
deleted or truncated WAL is simply absent, and in each case the database opens without a word,
short of commits that were acknowledged. Every commit also writes its number into the database
(``meta.commits``) and, once SQLite has committed it, into this file (``evalstream.ledger``). At
start-up a database holding fewer commits than the ledger lost acknowledged data: refused.

The file is written with ``pwrite`` and no fsync (it costs no extra flush): it survives a process
crash (the page cache keeps it), and after a power loss it can only lag the database (with
``synchronous=FULL`` SQLite's fsync precedes the write), which is accepted. Two 32-byte slots are
written in turn, each with its own CRC-32, so a torn write leaves the previous number readable.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

__all__ = ["Ledger", "LEDGER_NAME"]

LEDGER_NAME = "evalstream.ledger"
_SLOT = struct.Struct("<4sIQd4xI")  # magic, version, commit, unix time, pad, crc of the rest
_MAGIC, _VERSION = b"ESLG", 1


class Ledger:
    """``data_dir/evalstream.ledger``."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / LEDGER_NAME
        self._fd: int | None = None

    def read(self) -> int | None:
        """The last commit recorded, or None without a readable ledger (absent, or both slots
        damaged)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        best = None
        for offset in (0, _SLOT.size):
            chunk = data[offset : offset + _SLOT.size]
            if len(chunk) < _SLOT.size:
                continue
            magic, version, commit, _when, crc = _SLOT.unpack(chunk)
            if magic == _MAGIC and version == _VERSION and crc == zlib.crc32(chunk[:-4]):
                best = commit if best is None else max(best, commit)
        return best

    def damaged(self) -> bool:
        """Whether the file holds bytes but no valid slot (a 0-byte file was never written: a
        crash right after creating it)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        return size > 0 and self.read() is None

    def write(self, commit: int, when: float) -> None:
        """Record ``commit`` (in the slot of its parity)."""
        os.pwrite(self._open(), _slot(commit, when), (commit % 2) * _SLOT.size)

    def reset(self, commit: int, when: float) -> None:
        """Both slots at ``commit``, fsynced (a new, migrated or repaired store)."""
        fd = self._open()
        os.pwrite(fd, _slot(commit, when) * 2, 0)
        os.ftruncate(fd, 2 * _SLOT.size)
        os.fsync(fd)

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _slot(commit: int, when: float) -> bytes:
    body = _SLOT.pack(_MAGIC, _VERSION, commit, when, 0)[:-4]
    return body + struct.pack("<I", zlib.crc32(body))

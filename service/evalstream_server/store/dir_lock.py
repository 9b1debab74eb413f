"""One process at a time on a data dir: an exclusive ``flock`` on ``evalstream.lock``.

Two servers on one data dir would each keep their own memory of the same database and count each
other's batches never or twice; ``evalstream repair`` under a running server would move its files
away. The operating system releases the lock when the process ends, ``kill -9`` included, so a
crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["DataDirBusyError", "DataDirLock", "LOCK_NAME"]

LOCK_NAME = "evalstream.lock"


class DataDirBusyError(RuntimeError):
    """Another process holds the data dir."""


class DataDirLock:
    """``data_dir/evalstream.lock``, held from ``acquire`` to ``release``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 100, 0).decode(errors="replace").strip() or "unknown pid"
            os.close(fd)
            raise DataDirBusyError(
                f"data dir {self.path.parent} is in use by another evalstream process "
                f"({holder}); stop it first (one process per data dir)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

"""A one-line progress display with samples per second, for jobs that feed a stream."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["ProgressLine"]


class ProgressLine:
    """Progress of ``total`` samples on a text stream (stderr by default).

    On a terminal the line is redrawn in place with ``\\r`` at most every ``interval`` seconds
    (default 0.1); elsewhere (a log file, CI) one line is written every ``interval`` seconds
    (default 5). ``finish`` always writes the final figures.
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        stream: TextIO | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty()) if callable(isatty) else False
        self.interval = interval if interval is not None else (0.1 if self.tty else 5.0)
        self._clock = clock
        self._start = clock()
        self._last = self._start
        self._width = 0
        self.done = 0

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    @property
    def rate(self) -> float:
        """Samples per second so far."""
        elapsed = self.elapsed
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, done: int) -> None:
        self.done = done
        now = self._clock()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self.line())

    def finish(self, done: int | None = None) -> None:
        if done is not None:
            self.done = done
        self._write(self.line())
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def line(self) -> str:
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return (
            f"{self.label}{self.done}/{self.total} samples{share}  "
            f"{self.rate:,.0f} samples/s  {self.elapsed:.1f} s"
        )

    def _write(self, text: str) -> None:
        if self.tty:  # pad over the tail of a longer previous line
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

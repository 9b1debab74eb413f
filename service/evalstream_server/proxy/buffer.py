"""The bounded buffer of prediction rows waiting for evalstream, in chunks per stream.

A chunk is what one ``log_predictions`` call sends: rows of one stream whose requests arrived
within ``max_age`` seconds of the chunk's first one, at most ``batch_rows`` rows, all of one
width. The chunk's timestamp is its first request's arrival, so a prediction's recorded time is
at most ``max_age`` early, however long evalstream was away. Rows count against ``max_rows``
from when they are added until they are acknowledged (or dropped); a response that does not fit
is refused whole (the newest rows are the ones dropped).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Chunk", "PredictionBuffer"]


@dataclass
class Chunk:
    """Rows of one stream for one ``log_predictions`` call.

    Attributes
    ----------
    stream : str
    timestamp : float
        Unix seconds: when the proxy received the first request of the chunk.
    opened : float
        ``time.monotonic()`` at the same moment (the chunk's age).
    ids : list of str
    parts : list of ndarray
        Score rows, (n, K) or (n,); one array once ``scores()`` was called.
    rows : int
    """

    stream: str
    timestamp: float
    opened: float
    ids: list[str] = field(default_factory=list)
    parts: list[np.ndarray] = field(default_factory=list)
    rows: int = 0

    @property
    def width(self) -> tuple[int, ...]:
        return self.parts[0].shape[1:] if self.parts else ()

    def scores(self) -> np.ndarray:
        if len(self.parts) != 1:
            self.parts = [np.concatenate(self.parts)]
        return self.parts[0]

    def subset(self, spans: list[tuple[int, int]]) -> Chunk:
        """The rows ``[a, b)`` of each span, as a new chunk with the same time."""
        scores = self.scores()
        keep = np.concatenate([np.arange(a, b) for a, b in spans]) if spans else np.arange(0)
        ids = [self.ids[i] for i in keep]
        return Chunk(self.stream, self.timestamp, self.opened, ids, [scores[keep]], len(ids))


class PredictionBuffer:
    """Chunks per stream, oldest first, at most ``max_rows`` rows in all (thread-safe)."""

    def __init__(self, max_rows: int, batch_rows: int, max_age: float) -> None:
        self.max_rows = max_rows
        self.batch_rows = batch_rows
        self.max_age = max_age
        self._lock = threading.Lock()
        self._chunks: dict[str, deque[Chunk]] = {}
        self._rows = 0  # buffered plus in flight

    @property
    def rows(self) -> int:
        return self._rows

    def add(
        self, stream: str, timestamp: float, now: float, ids: list[str], scores: np.ndarray
    ) -> bool:
        """Append one response's rows; False (nothing added) when they do not fit."""
        n = len(ids)
        with self._lock:
            if self._rows + n > self.max_rows:
                return False
            queue = self._chunks.setdefault(stream, deque())
            last = queue[-1] if queue else None
            if (
                last is None
                or last.rows + n > self.batch_rows
                or now - last.opened >= self.max_age
                or last.width != scores.shape[1:]
            ):
                last = Chunk(stream, timestamp, now)
                queue.append(last)
            last.ids.extend(ids)
            last.parts.append(scores)
            last.rows += n
            self._rows += n
            return True

    def take(self, now: float, everything: bool = False) -> Chunk | None:
        """Remove and return the oldest chunk that is ready to send, or None.

        Ready: a newer chunk follows it, it is full, it is ``max_age`` old, or ``everything``.
        Its rows stay counted until ``release``.
        """
        with self._lock:
            best: deque[Chunk] | None = None
            for queue in self._chunks.values():
                if not queue:
                    continue
                head = queue[0]
                ready = (
                    everything
                    or len(queue) > 1
                    or head.rows >= self.batch_rows
                    or now - head.opened >= self.max_age
                )
                if ready and (best is None or head.timestamp < best[0].timestamp):
                    best = queue
            return best.popleft() if best is not None else None

    def put_back(self, chunk: Chunk) -> None:
        """Return an unsent (part of a) chunk to the front of its stream, and release the rest:
        call ``release(rows)`` for rows that left the buffer first."""
        if chunk.rows:
            with self._lock:
                self._chunks.setdefault(chunk.stream, deque()).appendleft(chunk)

    def release(self, rows: int) -> None:
        """Rows acknowledged or dropped: they no longer count against ``max_rows``."""
        with self._lock:
            self._rows -= rows

    def drain(self) -> list[Chunk]:
        """Remove every chunk (shutdown); their rows are released."""
        with self._lock:
            chunks = [c for queue in self._chunks.values() for c in queue]
            self._chunks.clear()
            self._rows -= sum(c.rows for c in chunks)
            return chunks

    def empty(self) -> bool:
        with self._lock:
            return not any(self._chunks.values())

"""Compaction of the Redis store's logs: a log that grew is replaced by one chunk of its sum.

Commits append chunks to a stream's logs (``sparse_log``); a log that outgrew twice its last
compacted size (and ``compact_bytes``), or that reads found mostly cancelling out, is scheduled,
and the store's background thread compacts it: read the log and its epoch, sum it, then one
script replaces the bytes read by the sum and keeps whatever was appended meanwhile. A compaction
that lost a race (a reset or another compaction changed the epoch) is refused.

A log's row sample (``K:smp``, ``redis_rows``) grows by one chunk of at most ``SAMPLE_ROWS``
records a commit; past ``_SAMPLE_CHUNKS`` chunks' worth it is compacted the same way into the
merged sample (the distinct rows of smallest hash: merging a prefix first changes nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from ..engine.row_sample import SAMPLE_ROWS
from .base import NotFoundError
from .redis_connection import RedisConnection
from .redis_rows import merge_samples, pack_sample, sample_dtype
from .sparse_log import FlatLayout, decode_log, encode_chunk

_SAMPLE_CHUNKS = 8  # a sample log is compacted past this many full samples' bytes

__all__ = ["Compactor"]


class Compactor:
    """Logs due for compaction, and the compaction itself.

    Parameters
    ----------
    conn : RedisConnection
    layout_of : callable
        ``layout_of(stream)``: the stream's flat count layout (``NotFoundError`` if deleted).
    compact_bytes : int
        Logs shorter than this are left alone.
    stats : dict
        The store's counters (``compactions``).
    """

    def __init__(
        self,
        conn: RedisConnection,
        layout_of: Callable[[str], FlatLayout],
        compact_bytes: int,
        stats: dict[str, int],
    ) -> None:
        self.conn = conn
        self.layout_of = layout_of
        self.compact_bytes = compact_bytes
        self.stats = stats
        self._lock = threading.Lock()
        self._compacted: dict[str, int] = {}  # key -> size after its last compaction
        self._due: dict[str, str] = {}  # key -> stream

    def note_length(self, stream: str, key: str, length: int) -> None:
        """A commit left ``key`` ``length`` bytes long: due once it outgrew twice its last
        compacted size."""
        floor = self.compact_bytes
        if key.endswith(":smp"):
            try:
                spec = self.layout_of(stream).spec
            except NotFoundError:
                return
            floor = _SAMPLE_CHUNKS * SAMPLE_ROWS * sample_dtype(spec).itemsize
        with self._lock:
            if length > max(floor, 2 * self._compacted.get(key, 0)):
                self._due[key] = stream

    def note_read(self, stream: str, key: str, length: int, listed: int, total: np.ndarray) -> None:
        """A read decoded ``key`` (``length`` bytes listing ``listed`` cells that sum to
        ``total``): due when it is long and mostly cancels out."""
        if length > self.compact_bytes and listed > 2 * np.count_nonzero(total):
            with self._lock:
                self._due[key] = stream

    def run_due(self) -> None:
        """Compact every log that is due (the store's background thread)."""
        while True:
            with self._lock:
                if not self._due:
                    return
                key, stream = self._due.popitem()
            self.compact(stream, key)

    def compact(self, stream: str, key: str) -> bool:
        """Replace the log ``key`` of ``stream`` by one chunk of its sum (appends made meanwhile
        are kept); False when there was nothing to gain or the compaction lost a race."""
        try:
            layout = self.layout_of(stream)
        except NotFoundError:
            return False
        meta = self.conn.keys.of(stream, "meta")
        epoch, data = self.conn.call("compaction read", "read_log", [meta, key], [])
        if not data:
            return False
        if key.endswith(":smp"):
            chunk = pack_sample(merge_samples(layout.spec, [data]))
        else:
            dense, _ = decode_log(data, layout.size, layout.max_cells)
            nz = np.nonzero(dense != 0)[0]
            chunk = encode_chunk(nz, dense[nz])
        with self._lock:
            self._compacted[key] = len(chunk)
        if len(chunk) >= len(data):
            return False
        done = self.conn.call(
            "compaction",
            "compact",
            [meta, key, self.conn.keys.ids_for(stream)],
            [epoch, len(data), chunk],
        )
        self.stats["compactions"] += int(done)
        return bool(done)

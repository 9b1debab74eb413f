"""A stream's engine: the cumulative state plus its sliding windows, fed batch by batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .batch import Batch, make_batch
from .counting import compute_delta
from .errors import InvalidInputError, UnknownWindowError
from .report import build_report, curve
from .spec import StreamSpec, parse_duration
from .state import State
from .windows import WindowRing

__all__ = ["StreamEngine", "CUMULATIVE"]

CUMULATIVE = "cumulative"


class StreamEngine:
    """Cumulative state and sliding windows of one stream.

    Parameters
    ----------
    spec : StreamSpec
    clock : callable, optional
        Returns the current time in seconds (default ``time.time``); batches without their own
        timestamp are stamped with it, and windows slide with it.

    Examples
    --------
    >>> import numpy as np
    >>> from evalstream_server.engine import StreamEngine, StreamSpec
    >>> eng = StreamEngine(StreamSpec(task="binary"))
    >>> eng.update(np.array([0, 1, 1, 0]), np.array([0.1, 0.8, 0.6, 0.3]))
    4
    >>> eng.report()["roc_auc"]["binary"]["value"]
    1.0
    """

    def __init__(self, spec: StreamSpec, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.clock = clock
        self.cumulative = State(spec)
        self.windows = {
            name: WindowRing(spec, parse_duration(name), spec.window_buckets)
            for name in spec.windows
        }
        self.n_batches = 0
        self.version = 0  # changes with every ingest and reset (caches key on it)
        self.last_ingest_time: float | None = None

    def validate(self, y_true: Any, y_score: Any, sample_weight: Any = None) -> Batch:
        """Check a batch without counting it (raises ``InvalidInputError``)."""
        return make_batch(self.spec, y_true, y_score, sample_weight)

    def ingest(self, batch: Batch, timestamp: float | None = None, now: float | None = None) -> int:
        """Count a validated batch stamped ``timestamp`` (default: now). Returns its size.

        ``now`` overrides the clock (replaying a log reproduces the windows exactly)."""
        now = self.clock() if now is None else now
        t = now if timestamp is None else float(timestamp)
        if not np.isfinite(t):
            raise InvalidInputError("timestamp", "a finite number of seconds", repr(timestamp))
        self.cumulative.check_capacity(batch.n)
        delta = compute_delta(self.spec, batch)
        self.cumulative.add_delta(delta, batch)
        for ring in self.windows.values():
            ring.add(delta, batch, t, now)
        self.n_batches += 1
        self.version += 1
        self.last_ingest_time = now
        return batch.n

    def update(
        self, y_true: Any, y_score: Any, sample_weight: Any = None, timestamp: float | None = None
    ) -> int:
        """Validate and count one batch; nothing changes if it is rejected."""
        return self.ingest(self.validate(y_true, y_score, sample_weight), timestamp)

    def window_names(self) -> list[str]:
        return [CUMULATIVE, *self.windows]

    def state(self, window: str = CUMULATIVE, now: float | None = None) -> State:
        """A copy of the state of ``window`` (``"cumulative"`` or a declared window)."""
        if window in ("", CUMULATIVE):
            return self.cumulative.copy()
        ring = self.windows.get(window)
        if ring is None:
            try:  # accept equivalent spellings: "60m" for "1h"
                ring = next(r for r in self.windows.values() if r.seconds == parse_duration(window))
            except (StopIteration, InvalidInputError):
                raise UnknownWindowError(window, self.window_names()) from None
        return ring.state(self.clock() if now is None else now)

    def report(
        self,
        window: str = CUMULATIVE,
        curves: bool = False,
        max_points: int = 200,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The canonical report for ``window``."""
        name = window or CUMULATIVE
        return build_report(
            self.state(name, now), window=name, curves=curves, max_points=max_points
        )

    def curve(
        self,
        kind: str,
        target: str,
        window: str = CUMULATIVE,
        max_points: int = 200,
        now: float | None = None,
    ) -> dict[str, Any]:
        return curve(self.state(window, now), kind, target, max_points)

    def reset(self) -> None:
        """Forget every sample (cumulative and windows); the spec stays."""
        self.cumulative.reset()
        for ring in self.windows.values():
            ring.reset()
        self.n_batches = 0
        self.version += 1

    @property
    def nbytes(self) -> int:
        return self.cumulative.nbytes + sum(r.nbytes for r in self.windows.values())


_ENGINE_MAGIC = b"EVENGINE"
_ENGINE_VERSION = 1


def _pack(parts: list[bytes]) -> bytes:
    import struct

    return b"".join(struct.pack("<Q", len(p)) + p for p in parts)


def _unpack(data: bytes) -> list[bytes]:
    import struct

    out, offset = [], 0
    while offset < len(data):
        if offset + 8 > len(data):
            raise InvalidInputError("engine", "complete length-prefixed parts", "truncated bytes")
        (size,) = struct.unpack_from("<Q", data, offset)
        offset += 8
        if offset + size > len(data):
            raise InvalidInputError("engine", f"a part of {size} bytes", "truncated bytes")
        out.append(data[offset : offset + size])
        offset += size
    return out


def engine_to_bytes(engine: StreamEngine) -> bytes:
    """Serialise the cumulative state, every window bucket and the counters (versioned)."""
    import json

    from .state import SparseCounts

    header = {
        "version": _ENGINE_VERSION,
        "n_batches": engine.n_batches,
        "last_ingest_time": engine.last_ingest_time,
        "windows": {},
    }
    parts: list[bytes] = [engine.cumulative.to_bytes()]
    for name, ring in engine.windows.items():
        entries = []
        for bid, bucket in sorted(ring.buckets().items()):
            state = (
                State.from_sparse(engine.spec, bucket)
                if isinstance(bucket, SparseCounts)
                else bucket
            )
            entries.append([bid, len(parts), bid == ring._open])
            parts.append(state.to_bytes())
        header["windows"][name] = entries
    head = json.dumps(header).encode()
    return _ENGINE_MAGIC + _pack([head, *parts])


def engine_from_bytes(data: bytes, clock: Callable[[], float] = time.time) -> StreamEngine:
    """Inverse of ``engine_to_bytes``."""
    import json

    if data[:8] != _ENGINE_MAGIC:
        raise InvalidInputError("engine", "bytes written by engine_to_bytes", "another format")
    head, *parts = _unpack(data[8:])
    header = json.loads(head)
    if header.get("version") != _ENGINE_VERSION:
        raise InvalidInputError(
            "engine", f"version {_ENGINE_VERSION}", f"version {header.get('version')}"
        )
    cumulative = State.from_bytes(parts[0])
    engine = StreamEngine(cumulative.spec, clock=clock)
    engine.cumulative = cumulative
    engine.n_batches = int(header["n_batches"])
    engine.last_ingest_time = header["last_ingest_time"]
    for name, entries in header["windows"].items():
        ring = engine.windows.get(name)
        if ring is None:
            raise InvalidInputError("engine", f"windows {list(engine.windows)}", repr(name))
        for bid, index, is_open in entries:
            state = State.from_bytes(parts[index])
            ring.restore_bucket(int(bid), state, bool(is_open))
    return engine

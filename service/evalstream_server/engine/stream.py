"""A stream's engine: the cumulative state plus its sliding windows, fed batch by batch."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .batch import (
    Batch,
    LabelBatch,
    PredictionBatch,
    make_batch,
    make_label_batch,
    make_prediction_batch,
)
from .counting import (
    CUMULATIVE_ONLY,
    SCATTER_FIELDS,
    TAKEN_FROM_CUMULATIVE,
    Delta,
    Scatter,
    compute_delta,
    delay_delta,
    prediction_delta,
)
from .errors import InvalidInputError, UnknownWindowError
from .pending import PendingPredictions
from .report import build_report, curve
from .spec import StreamSpec, parse_duration
from .state import State, exact_row_bytes
from .windows import WindowRing

__all__ = ["StreamEngine", "CUMULATIVE", "JoinCounts", "Admit"]

CUMULATIVE = "cumulative"
# Called with the most bytes a batch can add to a stream's growing parts, before the batch
# changes anything; raises to refuse it (a server's memory budget: ``budget.MemoryLedger``).
Admit = Callable[[int, str], None]


@dataclass(frozen=True)
class JoinCounts:
    """What one batch of predictions or labels did to the join table.

    Attributes
    ----------
    added : int
        Predictions stored to await their labels.
    matched : int
        Labels joined with their prediction (each pair counted once, in the window of the
        prediction's time).
    unknown, expired, duplicate : int
        Labels for ids never seen, for expired or evicted predictions, and for ids already
        labelled; for predictions, ``duplicate`` counts ids already seen (ignored).
    """

    added: int = 0
    matched: int = 0
    unknown: int = 0
    expired: int = 0
    duplicate: int = 0


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
        self.pending = PendingPredictions(spec.n_columns, spec.max_pending, spec.pending_retention)

    @contextmanager
    def replaying(self) -> Iterator[None]:
        """Replay logged batches in this block: each window's open bucket stages its deltas up to
        its whole layout before compacting them (``OpenBucket.add_delta``'s ``bulk``), instead of
        whenever they outgrow its compacted cells."""
        for ring in self.windows.values():
            ring.bulk = True
        try:
            yield
        finally:
            for ring in self.windows.values():
                ring.bulk = False

    def validate(self, y_true: Any, y_score: Any, sample_weight: Any = None) -> Batch:
        """Check a batch without counting it (raises ``InvalidInputError``)."""
        return make_batch(self.spec, y_true, y_score, sample_weight)

    def ingest(
        self,
        batch: Batch,
        timestamp: float | None = None,
        now: float | None = None,
        admit: Admit | None = None,
    ) -> int:
        """Count a validated batch stamped ``timestamp`` (default: now). Returns its size.

        ``now`` overrides the clock (replaying a log reproduces the windows exactly); ``admit``
        is asked about the batch's growth before anything changes (``Admit``)."""
        now = self.clock() if now is None else now
        t = self.event_time(timestamp, now)
        self.cumulative.check_capacity(batch.n)
        delta = compute_delta(self.spec, batch)
        if admit is not None:
            admit(self._growth(delta, batch.n, len(self.windows)), "windows")
        self.cumulative.add_delta(delta, batch)
        for ring in self.windows.values():
            ring.add(delta, batch, t, now)
        self.n_batches += 1
        self.version += 1
        self.last_ingest_time = now
        return batch.n

    def event_time(
        self,
        timestamp: float | None,
        now: float,
        max_skew: float | None = None,
        field: str = "timestamp",
    ) -> float:
        """The time a batch stamped ``timestamp`` (None: ``now``) is counted at.

        Raises ``InvalidInputError`` naming ``field`` for a stamp that is not finite, that lies
        more than ``max_skew`` seconds after ``now`` (None: no such bound), or that lies more than
        a window's span after ``now`` (its ring would not keep it: ``WindowRing.live_bucket``).
        """
        t = now if timestamp is None else float(timestamp)
        if not np.isfinite(t):
            raise InvalidInputError(field, "a finite number of seconds", repr(timestamp))
        if max_skew is not None and t - now > max_skew:
            raise InvalidInputError(
                field,
                f"a time at most {max_skew:g} s after the server clock ({now:.3f})",
                f"{t:.3f} ({t - now:.3f} s ahead)",
                "fix the producer's clock or send the batch without its own time",
            )
        for name, ring in self.windows.items():
            if ring.too_far_ahead(t, now):
                raise InvalidInputError(
                    field,
                    f"a time at most one span of the window {name!r} ({ring.seconds} s) after "
                    f"the server clock ({now:.3f})",
                    f"{t:.3f} ({t - now:.3f} s ahead)",
                    "fix the producer's clock or send the batch without its own time",
                )
        return t

    def update(
        self, y_true: Any, y_score: Any, sample_weight: Any = None, timestamp: float | None = None
    ) -> int:
        """Validate and count one batch; nothing changes if it is rejected."""
        return self.ingest(self.validate(y_true, y_score, sample_weight), timestamp)

    # -- delayed labels ------------------------------------------------------------------------
    def validate_predictions(self, ids: Any, y_score: Any) -> PredictionBatch:
        return make_prediction_batch(self.spec, ids, y_score)

    def validate_labels(self, ids: Any, y_true: Any) -> LabelBatch:
        return make_label_batch(self.spec, ids, y_true)

    def ingest_predictions(
        self,
        batch: PredictionBatch,
        timestamp: float | None = None,
        now: float | None = None,
        admit: Admit | None = None,
    ) -> JoinCounts:
        """Count predictions in the label-free figures and keep them awaiting their labels.

        Rows whose id is pending or was seen before are ignored (counted as duplicates).
        ``admit`` as in ``ingest``."""
        now = self.clock() if now is None else now
        t = self.event_time(timestamp, now)
        self.pending.expire(now)  # as at any later time: changes nothing a query could see
        if admit is not None:
            grow = self.pending.growth_bound(batch.ids) + self._growth({}, 0, len(self.windows))
            admit(grow, "max_pending")
        keep = self.pending.add(batch.ids, batch.scores, t, now)
        added = int(keep.sum())
        if added:
            scores = batch.scores if added == batch.n else batch.scores[keep]
            delta = prediction_delta(self.spec, scores)
            self.cumulative.add_delta(delta)
            for ring in self.windows.values():
                ring.add(delta, None, t, now)
        self._changed(now)
        return JoinCounts(added=added, duplicate=batch.n - added)

    def ingest_labels(
        self, batch: LabelBatch, now: float | None = None, admit: Admit | None = None
    ) -> JoinCounts:
        """Join labels with their pending predictions by id and count the pairs, each in the
        windows of its prediction's time, with its label delay. Raises ``CapacityError``
        (nothing changed) if an exact-resolution stream cannot keep the pairs. ``admit`` as in
        ``ingest``."""
        now = self.clock() if now is None else now
        self.pending.expire(now)
        plan = self.pending.plan(batch.ids)
        m = len(plan.ids)
        if m:
            self.cumulative.check_capacity(m)
            scores, times = self.pending.rows_of(plan)
            joined = Batch(labels=batch.labels[plan.rows], scores=scores, weights=None)
            delta = compute_delta(self.spec, joined, predictions=False)
            delta.update(delay_delta(now - times))
            if admit is not None:  # each pair in its prediction's bucket; a tombstone each
                buckets = max(
                    (int(np.unique(r.buckets_of(times)).size) for r in self.windows.values()),
                    default=0,
                )
                grow = self._growth(delta, m, buckets * len(self.windows))
                admit(grow + m * self.pending.TOMBSTONE_BYTES, "windows")
            self.cumulative.add_delta(delta, joined)
            for ring in self.windows.values():
                self._add_by_bucket(ring, joined, delta, times, now)
        self.pending.take(plan, batch.n, now)
        self._changed(now)
        return JoinCounts(
            matched=m, unknown=plan.unknown, expired=plan.expired, duplicate=plan.duplicate
        )

    def _growth(self, delta: Delta, n: int, new_buckets: int) -> int:
        """The most bytes counting ``delta`` of ``n`` rows can add to the windows (its staged
        histogram deltas in each, up to ``new_buckets`` buckets opened or closed) and to the
        exact rows (the cumulative state's and each window's)."""
        staged = 0
        for name, d in delta.items():
            if name in CUMULATIVE_ONLY:  # the windows leave them out
                continue
            if isinstance(d, Scatter):
                staged += d.index.nbytes + (0 if d.weights is None else d.weights.nbytes)
            elif name in SCATTER_FIELDS and isinstance(d, np.ndarray):
                staged += 16 * d.size  # compacted to entries of a cell index and a value
        total = staged * len(self.windows) + new_buckets * self._bucket_bytes
        # raw rows: the exact resolution's, or a small binned stream's (exact while small)
        row = exact_row_bytes(self.spec.n_columns, self.spec.task == "multiclass")
        return total + n * row * (1 + len(self.windows))

    @functools.cached_property
    def _bucket_bytes(self) -> int:
        """The most a bucket costs before any histogram cell: its dense small fields while open,
        then packed with an index each when closed, and the arrays' headers."""
        small = sum(
            int(np.prod(a.shape)) for k, a in self.cumulative.counts.items()
            if k not in SCATTER_FIELDS
        )  # fmt: skip
        return 24 * small + 512 * len(self.cumulative.counts)

    @property
    def growing_nbytes(self) -> int:
        """Bytes held by the parts of the stream that grow with its data: every window's buckets,
        the join table, the cumulative state's exact rows (a server's memory budget charges
        these as they are, ``budget.MemoryLedger``; the rest is fixed by the definition)."""
        windows = sum(r.nbytes for r in self.windows.values())
        exact = self.cumulative.exact.nbytes if self.cumulative.exact is not None else 0
        return windows + self.pending.nbytes + exact

    def _add_by_bucket(
        self, ring: WindowRing, joined: Batch, delta: Delta, times: np.ndarray, now: float
    ) -> None:
        """Add joined pairs to a window, each in the bucket of its prediction's time."""
        buckets = ring.buckets_of(times)
        first = buckets[0]
        if (buckets == first).all():
            ring.add(delta, joined, float(times.max()), now)
            return
        for bid in np.unique(buckets):
            rows = np.flatnonzero(buckets == bid)
            t = float(times[rows].max())
            if ring.live_bucket(t, now) is None:
                continue  # older than the window: no delta to compute
            part = Batch(labels=joined.labels[rows], scores=joined.scores[rows], weights=None)
            sub = compute_delta(self.spec, part, predictions=False)
            sub.update(delay_delta(now - times[rows]))
            ring.add(sub, part, t, now)

    def _changed(self, now: float) -> None:
        self.n_batches += 1
        self.version += 1
        self.last_ingest_time = now

    def label_status(self, now: float | None = None) -> dict[str, Any]:
        """Stream-wide join figures: counters since creation or reset, and what is pending."""
        now = self.clock() if now is None else now
        if self.pending.expire(now):
            self.version += 1
        oldest = self.pending.oldest_arrival()
        return {
            "pending": len(self.pending),
            "oldest_pending_age_seconds": None if oldest is None else max(now - oldest, 0.0),
            "max_pending": self.spec.max_pending,
            "retention_seconds": self.spec.pending_retention,
            **self.pending.counters,
        }

    def window_names(self) -> list[str]:
        return [CUMULATIVE, *self.windows]

    def state(self, window: str = CUMULATIVE, now: float | None = None) -> State:
        """A copy of the state of ``window`` (``"cumulative"`` or a declared window), its fields
        float64."""
        if window in ("", CUMULATIVE):
            return self.cumulative.dense()
        ring = self.windows.get(window)
        if ring is None:
            try:  # accept equivalent spellings: "60m" for "1h"
                ring = next(r for r in self.windows.values() if r.seconds == parse_duration(window))
            except (StopIteration, InvalidInputError):
                raise UnknownWindowError(window, self.window_names()) from None
        out = ring.state(self.clock() if now is None else now)
        for name in TAKEN_FROM_CUMULATIVE:
            # the bins' score range: the cumulative state holds every sample the window holds,
            # so a bin that held one value there held it in the window too
            if name in out.counts:
                out.counts[name][...] = self.cumulative.counts[name]
        return out

    def report(
        self,
        window: str = CUMULATIVE,
        curves: bool = False,
        max_points: int = 200,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The canonical report for ``window``."""
        name = window or CUMULATIVE
        now = self.clock() if now is None else now
        return build_report(
            self.state(name, now),
            window=name,
            curves=curves,
            max_points=max_points,
            reference=self.reference_state(name, now),
            labels=self.label_status(now),
        )

    def reference_state(self, window: str, now: float | None = None) -> State | None:
        """The state prior shift of ``window`` is measured against (None for the reference
        itself)."""
        reference = self.spec.prior_reference
        name = window or CUMULATIVE
        if name == reference or (
            name != CUMULATIVE
            and reference != CUMULATIVE
            and parse_duration(name) == parse_duration(reference)
        ):
            return None
        return self.state(reference, now)

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
        self.pending.reset()
        self.n_batches = 0
        self.version += 1

    @property
    def nbytes(self) -> int:
        windows = sum(r.nbytes for r in self.windows.values())
        return self.cumulative.nbytes + windows + self.pending.nbytes


_ENGINE_MAGIC = b"EVENGINE"
# 2 added the pending predictions, 3 wrote buckets as their entries (1 and 2 still load)
_ENGINE_VERSION = 3


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

    from .bucket_bytes import bucket_to_bytes
    from .state import SparseCounts

    header: dict[str, Any] = {
        "version": _ENGINE_VERSION,
        "n_batches": engine.n_batches,
        "last_ingest_time": engine.last_ingest_time,
        "windows": {},
    }
    parts: list[bytes] = [engine.cumulative.to_bytes()]
    for name, ring in engine.windows.items():
        entries = []
        for bid, bucket in sorted(ring.buckets().items()):
            sparse = bucket if isinstance(bucket, SparseCounts) else bucket.to_sparse()
            entries.append([bid, len(parts), bid == ring.open_bucket])
            parts.append(bucket_to_bytes(sparse))  # its entries: a dense bucket costs the state
        header["windows"][name] = entries
    header["pending"] = len(parts)
    parts.append(engine.pending.to_bytes())
    head = json.dumps(header).encode()
    return _ENGINE_MAGIC + _pack([head, *parts])


def engine_from_bytes(data: bytes, clock: Callable[[], float] = time.time) -> StreamEngine:
    """Inverse of ``engine_to_bytes``."""
    import json

    from .bucket_bytes import bucket_from_bytes

    if data[:8] != _ENGINE_MAGIC:
        raise InvalidInputError("engine", "bytes written by engine_to_bytes", "another format")
    head, *parts = _unpack(data[8:])
    header = json.loads(head)
    if header.get("version") not in (1, 2, _ENGINE_VERSION):
        raise InvalidInputError(
            "engine", f"version 1 to {_ENGINE_VERSION}", f"version {header.get('version')}"
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
            state = bucket_from_bytes(engine.spec, parts[index])
            ring.restore_bucket(int(bid), state, bool(is_open))
    if "pending" in header:
        engine.pending.restore(parts[header["pending"]])
    return engine

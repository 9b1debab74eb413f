"""Sliding time windows: a ring of time buckets per window, each bucket a state.

A window of duration D with N buckets covers the buckets ``(now_bucket - N, now_bucket]`` of width
``D / N``: it slides in steps of ``D / N``. The newest bucket takes the writes as an
``OpenBucket`` (dense small fields, staged and compacted histogram cells); older buckets are kept
as their non-zero entries, since most bins of a bucket are empty. No bucket holds a dense
histogram. The window's state is the sum of its live buckets, computed at query time into a fresh
float64 state and not kept (callers cache what they derive from it, such as the exported report),
so it equals an engine fed only that window's batches (tested).

A batch stamped in the future gets its own bucket and becomes visible when its time comes, but
only up to one window span ahead: the ring holds the buckets ``(now_bucket - N, now_bucket + N]``
and never more, so its memory is bounded whatever producers stamp (``StreamEngine`` refuses a
stamp further ahead with an error instead of dropping it).

Exact while small (binned resolution): the buckets keep their raw rows while the ring holds at most
``WINDOW_ROWS`` samples in all; the batch that passes the cap drops every bucket's rows, and the
buckets opened later keep theirs again while the ring is back under the cap. So the ring's rows
never pass the cap, and the window's sum is exact iff every bucket it sums kept its rows (within
one window span of the last time the ring passed the cap).
"""

from __future__ import annotations

import math

import numpy as np

from .batch import Batch
from .counting import CUMULATIVE_ONLY, Delta
from .open_bucket import OpenBucket
from .spec import StreamSpec
from .state import SparseCounts, State, window_rows

__all__ = ["WindowRing"]


class WindowRing:
    """One sliding window of ``seconds`` split into ``n_buckets`` buckets."""

    def __init__(self, spec: StreamSpec, seconds: int, n_buckets: int) -> None:
        self.spec = spec
        self.seconds = seconds
        self.n_buckets = max(1, min(n_buckets, seconds))
        self.width = seconds / self.n_buckets
        self._buckets: dict[int, OpenBucket | SparseCounts] = {}
        self._open: int | None = None  # id of the bucket taking the writes
        self.bulk = False  # a replay: the open bucket stages more before compacting
        self._rows: dict[int, int] = {}  # labelled samples of each bucket held

    def bucket_of(self, t: float) -> int:
        return math.floor(t / self.width)

    def buckets_of(self, times: np.ndarray) -> np.ndarray:
        """``bucket_of`` of each time (int64)."""
        return np.floor(np.asarray(times, dtype=np.float64) / self.width).astype(np.int64)

    @property
    def max_buckets(self) -> int:
        """The most buckets the ring ever holds: its span and as much again ahead of now."""
        return 2 * self.n_buckets

    def live_bucket(self, t: float, now: float) -> int | None:
        """The bucket a batch stamped ``t`` is counted in at ``now``, or None when it is older
        than the window (a bucket the window has left) or more than one span in the future (a
        stamp in the nearer future has its own bucket)."""
        bid = self.bucket_of(t)
        current = self.bucket_of(now)
        if bid <= current - self.n_buckets or bid > current + self.n_buckets:
            return None
        return bid

    def too_far_ahead(self, t: float, now: float) -> bool:
        """Whether ``t`` lies more than one span after ``now`` (the ring would not keep it)."""
        return self.bucket_of(t) > self.bucket_of(now) + self.n_buckets

    def _evict(self, current: int) -> None:
        oldest = current - self.n_buckets
        for bid in [b for b in self._buckets if b <= oldest]:
            del self._buckets[bid]
            self._rows.pop(bid, None)
            if bid == self._open:
                self._open = None

    def add(self, delta: Delta, batch: Batch | None, t: float, now: float) -> bool:
        """Count a batch stamped ``t``; returns False if the ring does not keep it (older than the
        window, or more than one span ahead: ``live_bucket``)."""
        self._evict(self.bucket_of(now))
        bid = self.live_bucket(t, now)
        if bid is None:
            return False
        # the bins' score range lives in the cumulative state alone (counting.CUMULATIVE_ONLY)
        delta = {k: v for k, v in delta.items() if k not in CUMULATIVE_ONLY}
        keep_rows = self._count_rows(bid, batch)
        bucket = self._buckets.get(bid)
        if isinstance(bucket, OpenBucket):
            bucket.add_delta(delta, batch, self.bulk)
            return True
        if bucket is None and (self._open is None or bid > self._open):
            if self._open is not None:
                opened = self._buckets[self._open]
                assert isinstance(opened, OpenBucket)
                self._buckets[self._open] = opened.to_sparse()
            fresh = OpenBucket(self.spec)
            if not keep_rows:
                fresh.exact = None
            fresh.add_delta(delta, batch, self.bulk)
            self._buckets[bid] = fresh
            self._open = bid
            return True
        # A late batch for an older bucket: rebuild that bucket's sparse form (rare path).
        state = State.from_sparse(self.spec, bucket) if bucket is not None else State(self.spec)
        if not keep_rows:
            state.to_bins()
        state.add_delta(delta, batch)
        self._buckets[bid] = state.to_sparse()
        return True

    def _count_rows(self, bid: int, batch: Batch | None) -> bool:
        """Count ``batch``'s samples in bucket ``bid``; whether the ring still keeps raw rows
        (binned: at most WINDOW_ROWS in all; when passed, every bucket's rows go)."""
        if batch is None:
            return True
        self._rows[bid] = self._rows.get(bid, 0) + batch.n
        if self.spec.resolution.kind == "exact" or sum(self._rows.values()) <= window_rows():
            return True
        for bucket in self._buckets.values():
            bucket.exact = None
        return False

    def state(self, now: float) -> State:
        """The window's state at time ``now`` (a fresh object the caller may keep); its
        cumulative-only fields (``counting.CUMULATIVE_ONLY``) are zero: ``StreamEngine.state``
        fills them from the cumulative state."""
        current = self.bucket_of(now)
        self._evict(current)
        total = State(self.spec, wide=True)
        for bid in sorted(self._buckets):
            if bid > current:
                continue  # stamped in the future: visible once its time comes
            bucket = self._buckets[bid]
            if isinstance(bucket, OpenBucket):
                bucket.add_into(total)
            else:
                total.add_sparse(bucket)
        return total

    def restore_bucket(self, bid: int, state: State, is_open: bool) -> None:
        """Put back a bucket read from storage (the open one takes writes again); its
        cumulative-only fields are dropped."""
        kept = [n for n in CUMULATIVE_ONLY if n in state.counts and state.counts[n].any()]
        if kept:
            state = state.copy()
            for name in kept:
                state.counts[name][...] = 0
        self._rows[bid] = state.n_samples
        if is_open:
            self._buckets[bid] = OpenBucket.restore(self.spec, state.to_sparse())
            self._open = bid
        else:
            self._buckets[bid] = state.to_sparse()

    def reset(self) -> None:
        self._buckets.clear()
        self._rows.clear()
        self._open = None

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self._buckets.values())

    def buckets(self) -> dict[int, OpenBucket | SparseCounts]:
        return dict(self._buckets)

    @property
    def open_bucket(self) -> int | None:
        """Id of the bucket taking the writes (None before the first write)."""
        return self._open

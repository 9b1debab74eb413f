"""Predictions awaiting their labels: the bounded join table behind delayed labels.

``log_predictions`` puts rows here under their ids; ``log_labels`` takes them out again and the
engine counts each joined pair in the window of its prediction's time. The table is bounded in
time (``spec.pending_retention`` seconds after a prediction arrived) and in size
(``spec.max_pending``; past it the oldest prediction is evicted). Ids that left the table are
remembered as tombstones, under the same bounds, so that a second label for a joined id is a
*duplicate*, a label for an expired prediction is *expired*, and anything else is *unknown*; a
prediction whose id is pending or remembered is a duplicate id and is ignored. Nothing is counted
twice.

Every operation takes ``now`` from its caller: a durable store replays its log with the logged
times and gets the same table. Expiry only depends on ``now``, so expiring early (a query) and
expiring at the next operation leave the same table.
"""

from __future__ import annotations

import json
import struct
import sys
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .batch import MAX_ID_LENGTH
from .errors import InvalidInputError

__all__ = ["PendingPredictions", "PlannedJoin", "JOIN_COUNTERS"]

_JOINED, _EXPIRED = 1, 2
# Bytes of an id's entry besides its string, measured with tracemalloc: the ordered dict's slot
# and order link with the slot number (pending), or with the (kind, time) tuple (tombstone).
_ENTRY_BYTES, _TOMBSTONE_BYTES = 120, 190
_MAGIC = b"EVPEND\x00\x01"
# Stream-wide counters since the stream was created or reset.
JOIN_COUNTERS = (
    "predictions",  # predictions logged with a new id (= pending + matched + expired + evicted)
    "duplicate_ids",  # predictions ignored: their id was pending or seen before
    "labels",  # label rows received
    "matched",  # labels joined with their prediction
    "unknown",  # labels for ids never seen (or forgotten past the bounds)
    "expired_labels",  # labels whose prediction had expired or been evicted
    "duplicate_labels",  # labels for ids already labelled
    "expired",  # predictions that expired unlabelled (retention)
    "evicted",  # predictions evicted unlabelled (max_pending)
)


@dataclass
class PlannedJoin:
    """What ``take`` would do with a batch of label ids, computed without changing anything."""

    rows: np.ndarray  # indices into the label batch of the rows that match a pending prediction
    slots: np.ndarray  # their slots in the table
    unknown: int = 0
    expired: int = 0
    duplicate: int = 0
    ids: list[str] = field(default_factory=list)  # the matched ids, in row order


class PendingPredictions:
    """Score rows awaiting labels, keyed by id, in arrival order.

    Parameters
    ----------
    n_columns : int
        Width of a score row.
    max_pending : int
    retention : float
        Seconds after its arrival that a prediction expires.
    """

    TOMBSTONE_BYTES = _TOMBSTONE_BYTES + sys.getsizeof("\U0010ffff" * MAX_ID_LENGTH)

    def __init__(self, n_columns: int, max_pending: int, retention: float) -> None:
        self.n_columns = n_columns
        self.max_pending = max_pending
        self.retention = float(retention)
        self._slot: OrderedDict[str, int] = OrderedDict()  # id -> slot, oldest arrival first
        self._done: OrderedDict[str, tuple[int, float]] = OrderedDict()  # id -> (kind, time)
        self._scores = np.zeros((0, n_columns), dtype=np.float32)
        self._time = np.zeros(0)  # prediction (event) time
        self._arrival = np.zeros(0)  # when it arrived: expiry runs on this
        self._free: list[int] = []
        self._id_bytes = 0  # sys.getsizeof of every id held, pending or remembered (nbytes)
        self.counters = dict.fromkeys(JOIN_COUNTERS, 0)

    def __len__(self) -> int:
        return len(self._slot)

    # -- bounds --------------------------------------------------------------------------------
    def expire(self, now: float) -> int:
        """Expire predictions that arrived more than ``retention`` ago; returns how many."""
        limit = now - self.retention
        n = 0
        while self._slot:
            key, slot = next(iter(self._slot.items()))
            if self._arrival[slot] >= limit:
                break
            # stamped with the moment it expired, not with when this ran: expiring on a query
            # or at the next operation (a replay) leaves the same tombstones
            self._drop_oldest(_EXPIRED, float(self._arrival[slot]) + self.retention)
            n += 1
        self.counters["expired"] += n
        while self._done:
            key, (_, when) = next(iter(self._done.items()))
            if when >= limit and len(self._done) <= self.max_pending:
                break
            self._done.popitem(last=False)
            self._id_bytes -= sys.getsizeof(key)
        return n

    def _drop_oldest(self, kind: int, now: float) -> None:
        key, slot = self._slot.popitem(last=False)
        self._free.append(slot)
        self._id_bytes -= sys.getsizeof(key)
        self._tombstone(key, kind, now)

    def _tombstone(self, key: str, kind: int, now: float) -> None:
        if key not in self._done:
            self._id_bytes += sys.getsizeof(key)
        self._done[key] = (kind, now)
        self._done.move_to_end(key)
        self._trim_done()

    def _trim_done(self) -> None:
        while len(self._done) > self.max_pending:
            key, _ = self._done.popitem(last=False)
            self._id_bytes -= sys.getsizeof(key)

    def _take_slots(self, k: int) -> np.ndarray:
        slots = np.array(self._free[len(self._free) - k :][::-1], dtype=np.int64)
        del self._free[len(self._free) - k :]
        return slots

    def _grow(self, need: int) -> None:
        size = len(self._arrival)
        if len(self._free) >= need:
            return
        new = min(max(2 * size, size + need - len(self._free), 1024), self.max_pending)
        if new <= size:
            return
        self._scores = np.concatenate(
            [self._scores, np.zeros((new - size, self.n_columns), np.float32)]
        )
        self._time = np.concatenate([self._time, np.zeros(new - size)])
        self._arrival = np.concatenate([self._arrival, np.zeros(new - size)])
        self._free.extend(range(new - 1, size - 1, -1))

    # -- predictions -----------------------------------------------------------------------------
    def add(self, ids: list[str], scores: np.ndarray, t: float, now: float) -> np.ndarray:
        """Store the rows whose id is new; returns the boolean mask of the rows stored."""
        unique = set(ids)
        clash = unique & self._slot.keys() | unique & self._done.keys()
        if len(unique) == len(ids) and not clash:  # the common case, checked with set algebra
            keep = np.ones(len(ids), dtype=bool)
        else:
            keep = np.zeros(len(ids), dtype=bool)
            seen: set[str] = set()
            for i, key in enumerate(ids):
                if key not in clash and key not in seen:
                    seen.add(key)
                    keep[i] = True
        n_new = int(keep.sum())
        self.counters["duplicate_ids"] += len(ids) - n_new
        # every new row is a logged prediction, even one evicted on arrival below, so that
        # predictions = pending + matched + expired + evicted
        self.counters["predictions"] += n_new
        if not n_new:
            return keep
        rows = np.flatnonzero(keep)
        if n_new > self.max_pending:  # more new rows than the table holds: the oldest go
            evict_now = n_new - self.max_pending
            for i in rows[:evict_now]:
                self._tombstone(ids[i], _EXPIRED, now)
            self.counters["evicted"] += evict_now
            rows = rows[evict_now:]
        overflow = len(self._slot) + len(rows) - self.max_pending
        for _ in range(max(overflow, 0)):
            self._drop_oldest(_EXPIRED, now)
        self.counters["evicted"] += max(overflow, 0)
        self._grow(len(rows))
        slots = self._take_slots(len(rows))
        self._scores[slots] = scores[rows]
        self._time[slots] = t
        self._arrival[slots] = now
        kept = ids if len(rows) == len(ids) else [ids[i] for i in rows.tolist()]
        self._slot.update(zip(kept, slots.tolist(), strict=True))
        self._id_bytes += sum(map(sys.getsizeof, kept))
        return keep

    # -- labels ----------------------------------------------------------------------------------
    def plan(self, ids: list[str]) -> PlannedJoin:
        """Which label rows join, and how the others are counted (changes nothing)."""
        get = self._slot.get
        found = [get(key) for key in ids]
        if len(set(ids)) == len(ids) and None not in found:  # every label joins: the common case
            return PlannedJoin(
                np.arange(len(ids), dtype=np.int64),
                np.asarray(found, dtype=np.int64),
                ids=list(ids),
            )
        rows, slots, matched_ids = [], [], []
        unknown = expired = duplicate = 0
        taken: set[str] = set()
        for i, (key, slot) in enumerate(zip(ids, found, strict=True)):
            if slot is not None and key not in taken:
                taken.add(key)
                rows.append(i)
                slots.append(slot)
                matched_ids.append(key)
                continue
            done = self._done.get(key)
            if key in taken or (done is not None and done[0] == _JOINED):
                duplicate += 1
            elif done is not None:
                expired += 1
            else:
                unknown += 1
        return PlannedJoin(
            np.asarray(rows, dtype=np.int64),
            np.asarray(slots, dtype=np.int64),
            unknown,
            expired,
            duplicate,
            matched_ids,
        )

    def rows_of(self, plan: PlannedJoin) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, prediction times)`` of the planned matches."""
        return self._scores[plan.slots].copy(), self._time[plan.slots].copy()

    def take(self, plan: PlannedJoin, n_labels: int, now: float) -> None:
        """Remove the planned matches (they are now joined) and count the batch."""
        pop = self._slot.pop
        for key in plan.ids:
            pop(key)
        self._free.extend(plan.slots.tolist())
        # joined ids were pending, so none is a tombstone yet: they append in order (each id's
        # string moves from the pending entries to the tombstones: _id_bytes is unchanged)
        self._done.update(zip(plan.ids, [(_JOINED, now)] * len(plan.ids), strict=True))
        self._trim_done()
        c = self.counters
        c["labels"] += n_labels
        c["matched"] += len(plan.ids)
        c["unknown"] += plan.unknown
        c["expired_labels"] += plan.expired
        c["duplicate_labels"] += plan.duplicate

    def reset(self) -> None:
        self.__init__(self.n_columns, self.max_pending, self.retention)  # type: ignore[misc]

    @staticmethod
    def worst_case_nbytes(n_columns: int, max_pending: int) -> int:
        """``nbytes`` of a full table: ``max_pending`` predictions awaiting labels and as many
        tombstones, every id of the longest length in 4-byte characters."""
        longest = sys.getsizeof("\U0010ffff" * MAX_ID_LENGTH)
        row = 4 * n_columns + 8 + 8  # score row, prediction time, arrival time
        per_id = row + longest + _ENTRY_BYTES + longest + _TOMBSTONE_BYTES
        return max_pending * per_id

    @property
    def nbytes(self) -> int:
        """An estimate: the arrays, each id string and its dict entries (bench/delayed_labels.py
        compares it with tracemalloc). Kept up to date as ids come and go: O(1)."""
        entries = _ENTRY_BYTES * len(self._slot) + _TOMBSTONE_BYTES * len(self._done)
        arrays = self._scores.nbytes + self._time.nbytes + self._arrival.nbytes
        return arrays + self._id_bytes + entries

    def growth_bound(self, ids: list[str]) -> int:
        """The most ``nbytes`` can grow by adding predictions ``ids`` (each new, with its
        entry and its arrays' share, and the arrays grown to hold them); changes nothing."""
        if not ids:
            return 0
        per_row = 4 * self.n_columns + 16
        longest = max(map(sys.getsizeof, ids))
        n = min(len(ids), self.max_pending)
        size = len(self._arrival)
        grown = 0
        if len(self._free) < n:  # _grow: at most doubling, at most max_pending
            grown = min(max(2 * size, size + n - len(self._free), 1024), self.max_pending) - size
        # evicted predictions become tombstones (up to max_pending of them are remembered)
        return n * (longest + _ENTRY_BYTES + _TOMBSTONE_BYTES) + max(grown, 0) * per_row

    def oldest_arrival(self) -> float | None:
        if not self._slot:
            return None
        return float(self._arrival[next(iter(self._slot.values()))])

    # -- bytes -----------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        slots = np.fromiter(self._slot.values(), dtype=np.int64, count=len(self._slot))
        head = {
            "ids": list(self._slot),
            "done": [[k, kind, when] for k, (kind, when) in self._done.items()],
            "counters": self.counters,
        }
        blob = json.dumps(head, separators=(",", ":")).encode()
        parts = [
            np.ascontiguousarray(self._scores[slots], dtype="<f4").tobytes(),
            np.ascontiguousarray(self._time[slots], dtype="<f8").tobytes(),
            np.ascontiguousarray(self._arrival[slots], dtype="<f8").tobytes(),
        ]
        return _MAGIC + struct.pack("<Q", len(blob)) + blob + b"".join(parts)

    def restore(self, data: bytes) -> None:
        """Load what ``to_bytes`` wrote into this (empty) table."""
        if data[:8] != _MAGIC:
            raise InvalidInputError("pending", "bytes written by to_bytes", "another format")
        (size,) = struct.unpack_from("<Q", data, 8)
        head = json.loads(data[16 : 16 + size])
        ids: list[str] = head["ids"]
        n, C = len(ids), self.n_columns
        offset = 16 + size
        expected = offset + n * (4 * C + 16)
        if len(data) != expected:
            raise InvalidInputError("pending", f"{expected} bytes", f"{len(data)} bytes")
        scores = np.frombuffer(data, "<f4", n * C, offset).reshape(n, C)
        offset += 4 * n * C
        times = np.frombuffer(data, "<f8", n, offset)
        arrival = np.frombuffer(data, "<f8", n, offset + 8 * n)
        self.reset()
        self._grow(n)
        slots = self._take_slots(n)
        self._scores[slots] = scores
        self._time[slots] = times
        self._arrival[slots] = arrival
        self._slot = OrderedDict(zip(ids, slots.tolist(), strict=True))
        self._done = OrderedDict((k, (int(kind), float(when))) for k, kind, when in head["done"])
        self._id_bytes = sum(map(sys.getsizeof, self._slot)) + sum(map(sys.getsizeof, self._done))
        self.counters.update({k: int(v) for k, v in head["counters"].items()})

"""The Redis store's local buffer: batches counted here, waiting for the commit that acks them.

An ``Entry`` is one sequenced (or unsequenced) batch: its outcome, its counts as flat-index parts
and the keys they go to (the cumulative log and one bucket per window). A ``Commit`` is what one
flush sends for one stream: the entries' counts summed per key and packed into one payload, and
the producer sequences the commit script checks before it appends anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .base import OUTCOME_MEMORY, BatchOutcome
from .redis_scripts import Keys
from .sparse_log import MaxCells, Part, encode_chunk, reduce_parts

__all__ = [
    "Entry",
    "Commit",
    "JOIN_FIELDS",
    "encode_outcome",
    "decode_outcome",
    "outcome_field",
]


@dataclass
class Entry:
    """One batch counted locally, not yet in Redis."""

    producer: str  # "" with seq 0: unsequenced
    seq: int
    outcome: BatchOutcome
    parts: list[Part]  # empty for a rejected batch (it only consumes its number)
    targets: list[tuple[str, int]]  # (key, expireat; 0 = never)
    now: float

    @property
    def nbytes(self) -> int:
        return sum(i.nbytes + (0 if v is None else v.nbytes) for i, v in self.parts) + 200


@dataclass
class _Target:
    key: str
    offset: int
    length: int
    expireat: int


@dataclass
class Commit:
    """One stream's entries, sent by one commit script call (atomic in Redis)."""

    stream: str
    uid: str
    entries: list[Entry]
    size: int  # cells of the stream's flat layout
    max_cells: MaxCells = None  # its cells that merge by maximum
    number: int = 0  # this replica's commit number, set when first sent (idempotence)
    payload: bytes = b""
    targets: list[_Target] = field(default_factory=list)
    cells: int = 0  # non-zero cells carried

    def build(self) -> None:
        """Sum the entries' parts per target key and pack them (once)."""
        if self.targets or not any(e.parts for e in self.entries):
            return
        by_key: dict[str, tuple[list[int], int]] = {}
        for i, entry in enumerate(self.entries):
            for key, expireat in entry.targets:
                members, _ = by_key.setdefault(key, ([], expireat))
                members.append(i)
        chunks: list[bytes] = []
        # keys fed by the same batches (the cumulative log and the current bucket of each
        # window, usually) share one chunk of the payload: summed and sent once
        placed: dict[tuple[int, ...], tuple[int, int]] = {}
        offset = 0
        for key, (members, expireat) in by_key.items():
            group = tuple(members)
            if group not in placed:
                parts = [p for i in group for p in self.entries[i].parts]
                idx, values = reduce_parts(parts, self.size, self.max_cells)
                chunk = encode_chunk(idx, values)
                self.cells += int(idx.size)
                placed[group] = (offset, len(chunk))
                chunks.append(chunk)
                offset += len(chunk)
            start, length = placed[group]
            if length:
                self.targets.append(_Target(key, start, length, expireat))
        self.payload = b"".join(chunks)

    @property
    def accepted(self) -> int:
        return sum(1 for e in self.entries if e.outcome.status == "accepted")

    def script_call(self, keys: Keys, replica: str, staged: bool) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the commit script (see ``redis_scripts``)."""
        s = self.stream
        names = [
            keys.of(s, "meta"),
            keys.of(s, "prod"),
            keys.of(s, "out"),
            keys.of(s, "commits"),
            keys.of(s, "buckets"),
            keys.stage(s, replica, self.number),
            keys.of(s, "seen"),
            *(t.key for t in self.targets),
        ]
        now = max(e.now for e in self.entries)
        sequenced = [e for e in self.entries if e.seq]
        args: list[Any] = [
            self.uid,
            replica,
            self.number,
            repr(now),
            self.accepted,
            "staged" if staged else "inline",
            b"" if staged else self.payload,
            len(sequenced),
        ]
        for e in sequenced:
            trim = e.seq - OUTCOME_MEMORY
            args += [
                e.producer,
                e.seq,
                outcome_field(e.producer, e.seq),
                encode_outcome(e.outcome),
                outcome_field(e.producer, trim) if trim > 0 else "",
            ]
        for t in self.targets:
            args += [t.offset, t.length, t.expireat]
        return names, args


def outcome_field(producer: str, seq: int) -> str:
    return f"{producer}\n{seq}"


# the join counts of predictions and labels, in the order the join scripts write them
JOIN_FIELDS = ("added", "matched", "unknown", "expired", "duplicate")


def encode_outcome(outcome: BatchOutcome) -> str:
    if outcome.status == "accepted":
        if outcome.join is not None:
            counts = [int(outcome.join.get(k, 0)) for k in JOIN_FIELDS]
            return json.dumps(["a", outcome.samples, counts])
        return json.dumps(["a", outcome.samples])
    return json.dumps(
        ["r", outcome.samples, outcome.error_code, outcome.error_message, outcome.error_detail]
    )


def decode_outcome(raw: bytes | str | None) -> BatchOutcome | None:
    """An outcome written by ``encode_outcome`` or a join script (accepted predictions and
    labels carry their join counts: ``["a", samples, [added, matched, ...]]``)."""
    if raw is None:
        return None
    data = json.loads(raw)
    if data[0] == "a":
        join = None
        if len(data) > 2:
            join = dict(zip(JOIN_FIELDS, map(int, data[2]), strict=True))
        return BatchOutcome("accepted", samples=int(data[1]), join=join)
    return BatchOutcome(  # written before error_detail: four items
        "rejected",
        samples=int(data[1]),
        error_code=int(data[2]),
        error_message=str(data[3]),
        error_detail=data[4] if len(data) > 4 else None,
    )

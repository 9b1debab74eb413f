"""The Redis store's local buffer: batches counted here, waiting for the commit that acks them.

An ``Entry`` is one sequenced (or unsequenced) batch: its outcome, its counts as flat-index parts,
its raw rows and row sample (``redis_rows``: exact while small) and the keys they go to (the
cumulative log and one bucket per window). A ``Commit`` is what one flush sends for one stream:
the entries' counts summed per key and packed into one payload with their rows and merged sample,
and the producer sequences the commit script checks before it appends anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from ..engine import StreamSpec
from ..engine.state import small_rows, window_rows
from .base import OUTCOME_MEMORY, BatchOutcome
from .redis_rows import merge_samples, pack_sample
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


# A target of an entry: (log key, expireat or 0 for never, current bucket, buckets of the ring;
# both 0 for the cumulative log)
Target = tuple[str, int, int, int]


@dataclass
class Entry:
    """One batch counted locally, not yet in Redis."""

    producer: str  # "" with seq 0: unsequenced
    seq: int
    outcome: BatchOutcome
    parts: list[Part]  # empty for a rejected batch (it only consumes its number)
    targets: list[Target]
    now: float
    n_rows: int = 0  # samples of the batch (its rows count against the caps)
    # the batch's raw rows, packed when a commit sends them (None: more than any cap); a commit
    # leaves them out once the key's rows are dropped, so most batches are never packed
    rows: Callable[[], bytes] | None = None
    rows_bytes: int = 0  # what the batch behind ``rows`` holds
    sample: bytes = b""  # the records of the batch's own row sample (``redis_rows``)
    spec: StreamSpec | None = None  # the stream's (a commit merges its batches' samples)

    @property
    def nbytes(self) -> int:
        parts = sum(i.nbytes + (0 if v is None else v.nbytes) for i, v in self.parts)
        return parts + self.rows_bytes + len(self.sample) + 200


@dataclass
class _Target:
    key: str
    offset: int
    length: int
    expireat: int
    current: int = 0  # the ring's current bucket and size (0, 0: the cumulative log)
    buckets: int = 0
    n_rows: int = 0
    rows_offset: int = 0
    rows_length: int = 0  # 0 with n_rows > 0: left out (expected dropped)
    sample_offset: int = 0
    sample_length: int = 0

    @property
    def cap(self) -> int:
        return window_rows() if self.buckets else small_rows()


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

    def build(self, dropped: Collection[str] = ()) -> None:
        """Sum the entries' parts per target key and pack them with their rows and merged row
        sample (once); rows are left out for a key in ``dropped`` (its last commit said its rows
        were dropped) or past its cap."""
        if self.targets or not any(e.parts for e in self.entries):
            return
        by_key: dict[str, tuple[list[int], Target]] = {}
        for i, entry in enumerate(self.entries):
            for where in entry.targets:
                members, _ = by_key.setdefault(where[0], ([], where))
                members.append(i)
                by_key[where[0]] = (members, max(by_key[where[0]][1], where, key=_current))
        chunks: list[bytes] = []
        offset = 0

        def place(chunk: bytes) -> tuple[int, int]:
            nonlocal offset
            chunks.append(chunk)
            offset += len(chunk)
            return offset - len(chunk), len(chunk)

        # keys fed by the same batches (the cumulative log and the current bucket of each
        # window, usually) share one chunk of the payload: summed and sent once
        placed: dict[tuple[int, ...], tuple[int, int]] = {}
        rows_at: dict[tuple[int, ...], tuple[int, int]] = {}
        sample_at: dict[tuple[int, ...], tuple[int, int]] = {}
        for key, (members, (_, expireat, current, buckets)) in by_key.items():
            group = tuple(members)
            if group not in placed:
                parts = [p for i in group for p in self.entries[i].parts]
                idx, values = reduce_parts(parts, self.size, self.max_cells)
                self.cells += int(idx.size)
                placed[group] = place(encode_chunk(idx, values))
            start, length = placed[group]
            if not length:
                continue
            target = _Target(key, start, length, expireat, current, buckets)
            target.n_rows = sum(self.entries[i].n_rows for i in group)
            rows = [self.entries[i].rows for i in group]
            if target.n_rows and key not in dropped and target.n_rows <= target.cap:
                if all(r is not None for r in rows):
                    if group not in rows_at:
                        rows_at[group] = place(b"".join(r() for r in rows if r is not None))
                    target.rows_offset, target.rows_length = rows_at[group]
            samples = [self.entries[i].sample for i in group if self.entries[i].sample]
            if samples:
                if group not in sample_at:
                    records = samples[0]
                    spec = self.entries[group[0]].spec
                    if len(samples) > 1 and spec is not None:  # the smallest keys of them all
                        records = pack_sample(merge_samples(spec, samples))
                    elif len(samples) > 1:
                        records = b"".join(samples)  # merged when read
                    sample_at[group] = place(records)
                target.sample_offset, target.sample_length = sample_at[group]
            self.targets.append(target)
        self.payload = b"".join(chunks)

    def rebuild(self) -> None:
        """Forget the packed payload (``build`` packs it again, rows included)."""
        self.targets = []
        self.payload = b""
        self.cells = 0

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
            args += [t.offset, t.length, t.expireat, t.rows_offset, t.rows_length, t.n_rows]
            args += [t.sample_offset, t.sample_length, t.cap, t.current, t.buckets]
        return names, args


def _current(target: Target) -> int:
    """A key's target taken from its latest entry (the ring's current bucket at its time)."""
    return target[2]


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

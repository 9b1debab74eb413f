"""Buffered batches and the commits that move them into Redis (the Redis store's write path).

Batches counted by a replica wait here, per stream, until a flush. A flush seals each stream's
batches into one ``Commit`` and sends every commit in one pipeline; each is one atomic script run
(``redis_scripts``) that checks the producer sequences and appends the summed counts. Outcomes:

- ``ok``: applied; ``done``: applied by an earlier send whose reply was lost (commit numbers make
  a resend harmless, even for unsequenced batches);
- ``gone``: the stream was deleted or re-created after the batches were counted: they are dropped
  (ordered before the delete);
- ``conflict``: a sequence does not follow Redis's. The commit is split into one commit per batch,
  sent again in order: a batch whose sequence Redis already has was committed by another replica
  (a producer that failed over resent it there) and is skipped; a batch behind a gap belongs to a
  producer that a reset forgot meanwhile and is dropped (ordered before the reset).

A commit whose reply never came (Redis unreachable) stays queued with its number and goes first in
the next flush; the flush raises ``StoreUnavailableError``, so no acknowledgement is sent for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis

from .base import StoreUnavailableError
from .redis_buffer import Commit, Entry
from .redis_cluster import send_one_by_one
from .sparse_log import MaxCells

if TYPE_CHECKING:
    from .redis_store import RedisStore

__all__ = ["CommitBuffer"]

log = logging.getLogger("evalstream.store.redis")
_STAGE_TTL = 600  # seconds a staged payload of a dead replica lingers
_MAX_ROUNDS = 8  # a conflict splits a commit once; more rounds would mean a bug


class CommitBuffer:
    """Batches counted by one replica and not yet confirmed by Redis (guarded by the store lock).

    Attributes
    ----------
    chain : dict
        ``(stream, producer) -> last buffered sequence``: the next sequence this replica expects
        from a producer it holds buffered batches of.
    pending_bytes : int
        Memory held by buffered batches.
    """

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.chain: dict[tuple[str, str], int] = {}
        self.pending_bytes = 0
        # (stream, uid) -> (cells, max-merged cells, entries)
        self._open: dict[tuple[str, str], tuple[int, MaxCells, list[Entry]]] = {}
        self._queue: list[Commit] = []  # sealed, sent at least once or about to be
        self._numbers = iter(range(1, 2**62))

    def add(
        self, stream: str, uid: str, cells: int, entry: Entry, max_cells: MaxCells = None
    ) -> None:
        self._open.setdefault((stream, uid), (cells, max_cells, []))[2].append(entry)
        self.pending_bytes += entry.nbytes
        if entry.seq:
            self.chain[(stream, entry.producer)] = entry.seq

    def entries(self, stream: str) -> Iterator[Entry]:
        """Every buffered batch of ``stream``, oldest first."""
        for commit in self._queue:
            if commit.stream == stream:
                yield from commit.entries
        for (name, _uid), (_cells, _max, entries) in self._open.items():
            if name == stream:
                yield from entries

    def next_number(self) -> int:
        """A commit number of this replica (a join commit sent outside the buffer takes one)."""
        return next(self._numbers)

    @property
    def busy(self) -> bool:
        return bool(self._open or self._queue)

    def flush(self) -> None:
        for (stream, uid), (cells, max_cells, entries) in self._open.items():
            self._queue.append(Commit(stream, uid, entries, cells, max_cells))
        self._open = {}
        for _ in range(_MAX_ROUNDS):
            if not self._queue:
                return
            self._round()
        raise StoreUnavailableError("commits kept conflicting; retry")

    def _round(self) -> None:
        batch = self._queue
        for commit in batch:
            commit.build()
            if not commit.number:
                commit.number = next(self._numbers)
        results = self._send(batch)
        queue: list[Commit] = []
        refused = None
        for commit, res in zip(batch, results, strict=True):
            if isinstance(res, redis.exceptions.NoScriptError):  # Redis restarted: not run
                queue.append(commit)
                continue
            if isinstance(res, Exception):  # refused before it ran: resend under a new number
                commit.number = 0
                queue.append(commit)
                refused = res
                continue
            status = _text(res[0])
            if status in ("ok", "done"):
                self._confirmed(commit, [int(n) for n in res[1:]] if status == "ok" else [])
            elif status == "gone":
                self._drop(commit, "the stream was deleted (or re-created) after it was counted")
            elif len(commit.entries) > 1:
                self.store.stats["conflicts"] += 1
                queue += [
                    Commit(commit.stream, commit.uid, [e], commit.size, commit.max_cells)
                    for e in commit.entries
                ]
            else:
                producer, last, seq = _text(res[1]), int(res[2]), int(res[3])
                if last >= seq:  # another replica committed this very batch
                    self.store.stats["skipped"] += 1
                    self._drop(commit, "")
                else:
                    self._drop(
                        commit, f"producer {producer!r} was forgotten; restarts at {last + 1}"
                    )
        self._queue = queue
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            self.store.scripts.load(self.store.client)
        if refused is not None:
            log.error("redis refused a commit", exc_info=refused)
            raise StoreUnavailableError(f"redis refused a commit: {refused}")

    def _send(self, commits: list[Commit]) -> list[Any]:
        """One pipeline of commit scripts (large payloads staged in chunks first)."""
        store = self.store
        size = store.chunk_bytes
        staged = [c for c in commits if len(c.payload) > size]
        with store.redis_errors("commit"):
            if staged:
                pipe = store.client.pipeline(transaction=False)
                for c in staged:
                    key = store.keys.stage(c.stream, store.replica, c.number)
                    pipe.delete(key)
                    for start in range(0, len(c.payload), size):
                        pipe.append(key, c.payload[start : start + size])
                    pipe.expire(key, _STAGE_TTL)
                pipe.execute()
            calls = [c.script_call(store.keys, store.replica, c in staged) for c in commits]
            if store.keys.cluster:
                return send_one_by_one(store, calls)
            pipe = store.client.pipeline(transaction=False)
            for keys, args in calls:
                store.scripts.queue(pipe, "commit", keys, args)
            return list(pipe.execute(raise_on_error=False))

    def _confirmed(self, commit: Commit, lengths: list[int]) -> None:
        self.store.stats["commits"] += 1
        self._release(commit)
        for target, length in zip(commit.targets, lengths, strict=False):
            self.store.note_log_length(commit.stream, target.key, length)

    def _drop(self, commit: Commit, why: str) -> None:
        if why:
            self.store.stats["dropped"] += len(commit.entries)
            log.warning(
                "buffered batches not committed",
                extra={"stream": commit.stream, "batches": len(commit.entries), "why": why},
            )
        self._release(commit)

    def _release(self, commit: Commit) -> None:
        for e in commit.entries:
            self.pending_bytes -= e.nbytes
            key = (commit.stream, e.producer)
            if e.seq and self.chain.get(key) == e.seq:
                del self.chain[key]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""Buffered batches and the commits that move them into Redis (the Redis store's write path).

Batches counted by a replica wait here, per stream, until a flush. A flush seals each stream's
batches into one ``Commit`` and sends every commit in one pipeline; each is one atomic script run
(``redis_scripts``) that checks the producer sequences and appends the summed counts. Outcomes:

- ``ok``: applied; ``done``: applied by an earlier send whose reply was lost (commit numbers make
  a resend harmless, even for unsequenced batches);
- ``gone``: the stream was deleted or re-created after the batches were counted: they are dropped
  (ordered before the delete);
- ``rows``: the commit left out raw rows of a key it expected dropped past its cap
  (``redis_rows``), and they are needed (a reset since): sent again with them;
- ``conflict``: a sequence does not follow Redis's. The commit is split into one commit per batch,
  sent again in order: a batch whose sequence Redis already has was committed by another replica
  (a producer that failed over resent it there) and is skipped; a batch behind a gap belongs to a
  producer that a reset forgot meanwhile and is dropped (ordered before the reset).

A commit whose reply never came (Redis unreachable) stays queued with its number and goes first in
the next flush; the flush raises ``StoreUnavailableError``, so no acknowledgement is sent for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import redis

from .base import StoreUnavailableError
from .redis_buffer import Commit, Entry
from .redis_cluster import send_one_by_one
from .redis_connection import RedisConnection, text
from .redis_rows import sample_key
from .sparse_log import MaxCells

__all__ = ["CommitBuffer"]

log = logging.getLogger("evalstream.store.redis")
_STAGE_TTL = 600  # seconds a staged payload of a dead replica lingers
_MAX_ROUNDS = 8  # a conflict splits a commit once; more rounds would mean a bug


class CommitBuffer:
    """Batches counted by one replica and not yet confirmed by Redis (guarded by the store lock).

    Parameters
    ----------
    conn : RedisConnection
    replica : str
        This replica's id (commit numbers are per replica).
    chunk_bytes : int
        Commits larger than this are staged in chunks of this size first.
    stats : dict
        The store's counters (``commits``, ``conflicts``, ``skipped``, ``dropped``).
    note_length : callable
        ``note_length(stream, key, length)`` after each append (``Compactor.note_length``).

    Attributes
    ----------
    chain : dict
        ``(stream, producer) -> last buffered sequence``: the next sequence this replica expects
        from a producer it holds buffered batches of.
    pending_bytes : int
        Memory held by buffered batches.
    """

    def __init__(
        self,
        conn: RedisConnection,
        replica: str,
        chunk_bytes: int,
        stats: dict[str, int],
        note_length: Callable[[str, str, int], None],
    ) -> None:
        self.conn = conn
        self.replica = replica
        self.chunk_bytes = max(1024, chunk_bytes)
        self.stats = stats
        self.note_length = note_length
        self.chain: dict[tuple[str, str], int] = {}
        self.pending_bytes = 0
        # (stream, uid) -> (cells, max-merged cells, entries)
        self._open: dict[tuple[str, str], tuple[int, MaxCells, list[Entry]]] = {}
        self._queue: list[Commit] = []  # sealed, sent at least once or about to be
        self._numbers = iter(range(1, 2**62))
        # log keys whose last commit said their raw rows were dropped past the cap, with their
        # expiry: their rows are left out of commits (the script checks it; ``redis_rows``)
        self.dropped: dict[str, int] = {}

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

    def forget_producers(self, stream: str) -> None:
        """A reset forgot the producers of ``stream``: this replica's chains of it go too."""
        for key in [key for key in self.chain if key[0] == stream]:
            del self.chain[key]

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
            commit.build(self.dropped.keys())
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
            status = text(res[0])
            if status in ("ok", "done"):
                self._confirmed(commit, [int(n) for n in res[1:]] if status == "ok" else [])
            elif status == "rows":  # left-out rows are needed: send them
                for target in commit.targets:
                    self.dropped.pop(target.key, None)
                commit.rebuild()
                queue.append(commit)
            elif status == "gone":
                self._drop(commit, "the stream was deleted (or re-created) after it was counted")
            elif len(commit.entries) > 1:
                self.stats["conflicts"] += 1
                queue += [
                    Commit(commit.stream, commit.uid, [e], commit.size, commit.max_cells)
                    for e in commit.entries
                ]
            else:
                producer, last, seq = text(res[1]), int(res[2]), int(res[3])
                if last >= seq:  # another replica committed this very batch
                    self.stats["skipped"] += 1
                    self._drop(commit, "")
                else:
                    self._drop(
                        commit, f"producer {producer!r} was forgotten; restarts at {last + 1}"
                    )
        self._queue = queue
        if any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
            self.conn.load_scripts()
        if refused is not None:
            log.error("redis refused a commit", exc_info=refused)
            raise StoreUnavailableError(f"redis refused a commit: {refused}")

    def _send(self, commits: list[Commit]) -> list[Any]:
        """One pipeline of commit scripts (large payloads staged in chunks first)."""
        conn = self.conn
        size = self.chunk_bytes
        staged = [c for c in commits if len(c.payload) > size]
        with conn.errors("commit"):
            if staged:
                pipe = conn.client.pipeline(transaction=False)
                for c in staged:
                    key = conn.keys.stage(c.stream, self.replica, c.number)
                    pipe.delete(key)
                    for start in range(0, len(c.payload), size):
                        pipe.append(key, c.payload[start : start + size])
                    pipe.expire(key, _STAGE_TTL)
                pipe.execute()
            calls = [c.script_call(conn.keys, self.replica, c in staged) for c in commits]
            if conn.keys.cluster:
                return send_one_by_one(conn, calls)
            pipe = conn.client.pipeline(transaction=False)
            for keys, args in calls:
                conn.scripts.queue(pipe, "commit", keys, args)
            return list(pipe.execute(raise_on_error=False))

    def _confirmed(self, commit: Commit, reply: list[int]) -> None:
        """``reply``: each target's log length, whether its rows are kept, its sample log's
        length (empty for a commit applied earlier)."""
        self.stats["commits"] += 1
        self._release(commit)
        n = len(commit.targets)
        if len(reply) != 3 * n:
            return
        for target, length, kept, samples in zip(
            commit.targets, reply[:n], reply[n : 2 * n], reply[2 * n :], strict=True
        ):
            self.note_length(commit.stream, target.key, length)
            if samples:
                self.note_length(commit.stream, sample_key(target.key), samples)
            if kept:
                self.dropped.pop(target.key, None)
            else:
                self.dropped[target.key] = target.expireat
        if len(self.dropped) > 4096:  # buckets' keys expire: forget those
            now = max(e.now for e in commit.entries)
            self.dropped = {k: t for k, t in self.dropped.items() if not t or t > now}

    def _drop(self, commit: Commit, why: str) -> None:
        if why:
            self.stats["dropped"] += len(commit.entries)
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

"""Producer sequences on the Redis store: Redis is authoritative, this replica's buffered batches
come first.

A producer's next sequence is the one after its batches buffered here (not yet committed), else
the one after its last sequence in Redis. A sequence that is not the expected one is answered from
Redis: a duplicate gets its recorded outcome, a gap the expected number. The commit scripts check
every sequence again atomically, so what this part reads only has to be right most of the time.
"""

from __future__ import annotations

from .base import BatchOutcome, NotFoundError, StoreUnavailableError, duplicate_outcome, gap_outcome
from .redis_buffer import decode_outcome, outcome_field
from .redis_catalogue import StreamCatalogue
from .redis_commits import CommitBuffer
from .redis_connection import RedisConnection, text

__all__ = ["Sequences"]


class Sequences:
    """Expected sequences and the answers to duplicates and gaps (called under the store lock,
    which guards the buffer)."""

    def __init__(
        self, conn: RedisConnection, catalogue: StreamCatalogue, buffer: CommitBuffer
    ) -> None:
        self.conn = conn
        self.catalogue = catalogue
        self.buffer = buffer

    def expected(self, name: str, producer: str) -> int:
        """The sequence this replica expects from ``producer``: the one after its own buffered
        batches, else Redis's."""
        last = self.buffer.chain.get((name, producer))
        if last is not None:
            return last + 1
        return self.last_in_redis(name, producer) + 1

    def last_in_redis(self, name: str, producer: str) -> int:
        """The producer's last sequence in Redis; checks that the stream is the one cached."""
        cached = self.catalogue.cached(name)
        k = self.conn.keys
        uid, last = self.conn.call(
            "sequence check", "producer", [k.of(name, "meta"), k.of(name, "prod")], [producer]
        )
        if uid is None:
            self.catalogue.forget(name)
            raise NotFoundError(name)
        if text(uid) != cached.uid:
            self.catalogue.forget(name)
            raise StoreUnavailableError(
                f"stream {name!r} was deleted and created again meanwhile; retry the batch"
            )
        return int(last or 0)

    def resolve(self, name: str, producer: str, seq: int, have_batch: bool) -> BatchOutcome | None:
        """Answer a sequence that is not the locally expected one, from Redis (authoritative).
        None: it is the expected one after all, and the caller has the batch."""
        key = (name, producer)
        last = self.last_in_redis(name, producer)
        mine = {
            e.seq: e for e in self.buffer.entries(name) if e.producer == producer and e.seq > last
        }
        top = last
        while top + 1 in mine:
            top += 1
        if top > last:
            self.buffer.chain[key] = top
        else:
            self.buffer.chain.pop(key, None)
        if seq <= top:
            if seq <= last:
                with self.conn.errors("outcome lookup"):
                    raw = self.conn.client.hget(
                        self.conn.keys.of(name, "out"), outcome_field(producer, seq)
                    )
                seen = decode_outcome(raw)
            else:
                seen = mine[seq].outcome
            return duplicate_outcome(seen, top)
        if seq == top + 1:
            if have_batch:
                return None
            raise StoreUnavailableError(
                f"sequence {seq} of producer {producer!r} is the expected one (another replica "
                "advanced it); resend the batch"
            )
        return gap_outcome(producer, top, seq)

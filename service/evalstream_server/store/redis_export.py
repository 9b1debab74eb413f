"""Which replica exports which stream to Prometheus: each live replica exports its share.

Replicas announce themselves in ``P:replicas``, a sorted set of replica ids scored by the time
their announcement expires (Redis's clock, so the replicas' clocks do not matter), at every scrape
and every third of ``lease_seconds`` in the background. A stream is exported by the live replica
with the highest ``hash(replica, stream)`` (rendezvous hashing): every replica derives the same
owner from the same set; a replica that joins takes about 1/n of the streams and moves no others;
one that leaves (``close``: at once; a crash: when its announcement expires) hands only its own
streams to the others. A Prometheus scraping every replica then sees each stream's series once,
all of them from one instance (so rules that join a stream's series on their labels still match),
sums across instances hold, and each replica computes the reports of its share only.

While the set changes, replicas scraped at different moments may disagree for one scrape
interval: a stream can be exported twice (``max without (instance)`` is exact then) or not at
all in that interval, as with any handover.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["ExportShare", "owner"]

Call = Callable[[str, str, list[str], list[Any]], Any]  # (what, script, keys, args) -> reply


def _score(replica: str, stream: str) -> int:
    digest = hashlib.blake2b(f"{replica}\n{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(stream: str, replicas: Iterable[str]) -> str:
    """The replica of ``replicas`` that exports ``stream`` (the same on every replica)."""
    return max(replicas, key=lambda r: (_score(r, stream), r))


class ExportShare:
    """This replica's membership in ``P:replicas`` and its share of the streams.

    Parameters
    ----------
    call : callable
        Runs one of the store's scripts: ``call(what, script, keys, args)``.
    key : str
        The set of live replicas (``Keys.replicas``).
    replica : str
        This replica's id.
    ttl : float
        Seconds an announcement lives: a replica that stops announcing (a crash) hands its
        streams over after this long.
    """

    def __init__(self, call: Call, key: str, replica: str, ttl: float) -> None:
        self.call, self.key, self.replica, self.ttl = call, key, replica, ttl

    def live(self) -> list[str]:
        """Announce this replica; every live replica's id (this one included)."""
        ms = max(1, int(self.ttl * 1000))
        reply = self.call("export share", "announce", [self.key], [self.replica, ms])
        return [r.decode() if isinstance(r, bytes) else str(r) for r in reply]

    def mine(self, streams: Iterable[str]) -> list[str]:
        """The streams this replica exports (announcing it)."""
        replicas = self.live()
        return [s for s in streams if owner(s, replicas) == self.replica]

    def leave(self) -> None:
        """Hand this replica's streams over at once (graceful stop)."""
        self.call("export share", "leave", [self.key], [self.replica])

"""The Redis store's connection: the client, the key layout, the scripts, and one failure policy.

Every part of the store talks to Redis through ``RedisConnection``: ``call`` runs one script
(``redis_scripts``) and ``errors`` wraps other commands. Both turn Redis failures into
``StoreUnavailableError`` (gRPC ``UNAVAILABLE``: the caller may retry) and, after a connection
failure, fail fast for a moment, so a dead Redis does not stall every call for its connect
timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.cluster import RedisCluster

from .base import StoreUnavailableError
from .redis_scripts import Keys, Scripts

__all__ = ["Client", "RedisConnection", "text"]

log = logging.getLogger("evalstream.store.redis")
Client = redis.Redis | RedisCluster
_FAIL_FAST = 0.2  # seconds after a connection failure during which calls fail at once


def text(value: Any) -> str:
    """A Redis reply as ``str`` (``""`` for nil)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisConnection:
    """One Redis (or Redis Cluster) client with the store's keys and scripts.

    Parameters
    ----------
    client : redis.Redis or RedisCluster
    prefix : str
        Key prefix (several deployments can share one Redis).
    """

    def __init__(self, client: Client, prefix: str) -> None:
        self.client = client
        self.keys = Keys(prefix, cluster=isinstance(client, RedisCluster))
        self.scripts = Scripts()
        self._down_until = 0.0

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Map Redis failures during ``what`` to ``StoreUnavailableError``."""
        if time.monotonic() < self._down_until:
            raise StoreUnavailableError(f"redis unreachable ({what}); retry shortly")
        try:
            yield
        except redis.exceptions.NoScriptError:
            raise
        except redis.RedisError as exc:
            if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                self._down_until = time.monotonic() + _FAIL_FAST
            else:
                log.error("redis refused %s", what, exc_info=exc)
            raise StoreUnavailableError(f"redis unavailable during {what}: {exc}") from exc

    def call(self, what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run one script of ``redis_scripts`` (named ``script``) for ``what``."""
        with self.errors(what):
            return self.scripts.call(self.client, script, keys, args)

    def load_scripts(self) -> None:
        """Load every script (at start, and after Redis lost them in a restart)."""
        self.scripts.load(self.client)

    def close(self) -> None:
        self.client.close()

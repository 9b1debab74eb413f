"""``--store redis://...`` URLs: the store's own options are taken from the query string, the rest
(``ssl_ca_certs``, ``password``...) go to ``redis.Redis.from_url``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["OPTIONS", "client_from_url"]

OPTIONS: dict[str, Callable[[str], Any]] = {
    "prefix": str,
    "flush_interval": float,
    "chunk_bytes": int,
    "compact_bytes": int,
    "max_stale": float,
    "meta_ttl": float,
    "export": str,
    "lease_seconds": float,
    "max_pending_bytes": int,
    "cache_bytes": int,
    "timeout": float,
}


def client_from_url(url: str) -> tuple[redis.Redis, dict[str, Any]]:
    """``(client, store options)`` for ``redis://[[user]:password@]host[:port][/db][?...]``
    (``rediss://`` for TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"store: expected a redis:// or rediss:// URL, received {url!r}")
    ours, theirs = {}, []
    for key, value in parse_qsl(parts.query):
        if key in OPTIONS:
            try:
                ours[key] = OPTIONS[key](value)
            except ValueError:
                raise ValueError(f"store: option {key}={value!r} is not valid") from None
        else:
            theirs.append((key, value))
    timeout = float(ours.pop("timeout", 5.0))
    client = redis.Redis.from_url(
        urlunsplit(parts._replace(query=urlencode(theirs))),
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 2.0),
        retry=Retry(NoBackoff(), 1),  # one reconnect; the gRPC client retries beyond that
    )
    return client, ours

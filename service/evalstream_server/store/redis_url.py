"""``--store redis://...`` URLs: the store's own options are taken from the query string, the rest
(``ssl_ca_certs``, ``password``...) go to ``redis.Redis.from_url``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
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
    "threads": int,
    "timeout": float,
}


def client_from_url(url: str) -> tuple[redis.Redis | RedisCluster, dict[str, Any]]:
    """``(client, store options)`` for ``redis://[[user]:password@]host[:port][/db][?...]``
    (``rediss://`` for TLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "redis+cluster", "rediss+cluster"):
        raise ValueError(
            "store: expected a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL, "
            f"received {url!r}"
        )
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
    if parts.scheme.endswith("+cluster"):
        return _cluster(parts, theirs, timeout), ours
    client = redis.Redis.from_url(
        urlunsplit(parts._replace(query=urlencode(theirs))),
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 2.0),
        retry=Retry(NoBackoff(), 1),  # one reconnect; the gRPC client retries beyond that
    )
    return client, ours


def _cluster(parts: SplitResult, query: list[tuple[str, str]], timeout: float) -> RedisCluster:
    """``redis+cluster://[user:password@]host:port,host:port[/0][?...]``: the hosts are seeds
    (any reachable one gives the slot map); ``rediss+cluster://`` for TLS."""
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"store: a Redis Cluster has only database 0, received {parts.path!r}")
    nodes = []
    for seed in hosts.split(","):
        host, _, port = seed.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"store: expected host:port seeds, received {seed!r}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))  # type: ignore[no-untyped-call]
    kwargs: dict[str, Any] = dict(query)
    if userinfo:
        user, _, password = userinfo.partition(":")
        kwargs.update(username=unquote(user) or None, password=unquote(password) or None)
    if parts.scheme.startswith("rediss"):
        kwargs["ssl"] = True
    return RedisCluster(
        startup_nodes=nodes,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 2.0),
        **kwargs,
    )

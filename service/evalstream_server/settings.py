"""Server settings: one object, built from flags or ``EVALSTREAM_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    """Everything ``evalstream serve`` can be told. Each field ``x`` also reads ``EVALSTREAM_X``.

    Message sizes are set on purpose: clients split batches at about 1 MiB, the server accepts up
    to ``max_receive_bytes`` (4 MiB, like MLServer), and answers up to ``max_send_bytes`` (reports
    with curves can be large).
    """

    host: str = "127.0.0.1"
    grpc_port: int = 50051
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464  # 0 picks a free port; -1 disables the /metrics endpoint
    # /metrics access (required beyond loopback): bearer tokens (one a line) and/or TLS with
    # client certificates signed by metrics_client_ca
    metrics_token_file: str = ""
    metrics_tls_cert: str = ""
    metrics_tls_key: str = ""
    metrics_client_ca: str = ""
    data_dir: str = ""  # durable SQLite store here; empty = in-memory only
    store: str = ""  # redis://, rediss:// or redis+cluster:// URL: state shared by replicas
    durability: str = "full"  # full: acks survive power loss; normal: process crashes only
    max_receive_bytes: int = 4 * 1024 * 1024
    max_send_bytes: int = 64 * 1024 * 1024
    max_streams: int = 1000
    max_streams_per_tenant: int = 0  # streams one tenant may have; 0 = only max_streams
    max_classes: int = 1000
    max_windows: int = 8
    max_batch_rows: int = 65536
    max_class_series: int = 100  # classes per stream that get per-class Prometheus series
    # > 0: recompute changed reports in the background every this many seconds and serve them
    # on /metrics (values up to about that old; bounds the scrape time of many busy streams);
    # 0: compute on each scrape; -1 (default): on each scrape until a scrape runs out of its
    # budget, then every 10 s in the background (exporters.prometheus.AUTO_REFRESH)
    metrics_refresh: float = -1.0
    # seconds of report computation one scrape may spend (without metrics_refresh); past them,
    # changed windows are served as last computed and the next scrape goes on from there
    metrics_scrape_budget: float = 1.0
    max_window_series: int = 100  # windows per stream that get series (cumulative first)
    # authenticated calls in flight; further ones get RESOURCE_EXHAUSTED (health and
    # reflection are not counted; calls without a valid token never hold a slot)
    max_concurrent_rpcs: int = 256
    max_calls_per_tenant: int = 128  # calls of one tenant in flight; 0 = only the above
    max_watchers_per_tenant: int = 16  # WatchReport calls one tenant holds open; 0 = no quota
    min_watch_interval: float = 1.0  # shorter WatchReport intervals are raised to this
    idle_timeout: float = 120.0  # close a call whose client sends nothing this long; 0 = never
    stream_rate: float = 0.0  # samples per second per stream; 0 = unlimited
    tenant_rate: float = 0.0  # samples per second per tenant; 0 = unlimited
    rate_burst_seconds: float = 2.0  # a bucket holds this many seconds of its rate
    # a batch's event_time may lie at most this many seconds after the server clock
    max_clock_skew: float = 300.0
    # CreateStream refuses a stream whose worst-case memory (engine.budget) passes this many
    # bytes; max_server_memory (0: this machine's memory, or its cgroup's limit) bounds what all
    # streams hold: their fixed parts at CreateStream, what grows as it grows (a batch that would
    # pass it is refused: budget.MemoryLedger)
    max_stream_memory: int = 4 << 30
    # producers a stream remembers for exactly-once; one silent this long is forgotten
    max_producers: int = 10_000
    producer_retention: float = 7 * 86400.0
    max_server_memory: int = 0
    max_tenant_memory: int = 0  # the same for one tenant's streams together (0: no quota)
    token_file: str = ""  # lines of tenant:token; EVALSTREAM_TOKENS adds more
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""  # set: clients must present a certificate it signed (mTLS)
    shutdown_grace: float = 10.0
    log_level: str = "INFO"
    log_format: str = "json"  # json or text

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"EVALSTREAM_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _parse(kind: object, raw: str, name: str) -> object:
    text = str(kind)
    try:
        if text == "int":
            return int(raw)
        if text == "float":
            return float(raw)
    except ValueError:
        raise ValueError(
            f"EVALSTREAM_{name.upper()}: expected a {text}, received {raw!r}"
        ) from None
    return raw

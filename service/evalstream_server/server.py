"""Build and run the server: gRPC (grpc.aio) with health and reflection, plus /metrics.

A server is constructed, not global: ``await start_server(settings)`` returns a ``RunningServer``
with the bound ports, so tests bind port 0 and own the lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from .admission import Admission
from .auth import Authenticator, load_tokens, server_credentials
from .budget import MemoryBudget, MemoryLedger, machine_memory
from .exporters import EvalstreamCollector
from .exporters.http import MetricsAccess, start_metrics_server
from .quotas import TenantQuotas
from .ratelimit import RateLimiter
from .reflection import enable_reflection
from .rpc.parsing import ParsedRequests
from .rpc.servicer import SERVICE_NAME, EvalstreamServicer, ServiceLimits, method_handlers
from .settings import Settings
from .store import MemoryStore, Store
from .store.producers import ProducerLimits

__all__ = ["RunningServer", "ServerThread", "start_server", "serve_forever", "build_store"]

log = logging.getLogger("evalstream.server")


def build_store(settings: Settings) -> Store:
    """The Redis store for a ``redis://``, ``rediss://`` or ``redis+cluster://`` URL, else the
    durable SQLite store under ``data_dir``, or in-memory state without one."""
    if settings.store:
        if settings.data_dir:
            raise ValueError("store: --store and --data-dir exclude each other; pick one")
        from .store.redis_store import RedisStore

        return RedisStore.from_url(settings.store, max_streams=settings.max_streams)
    if settings.data_dir:
        from .store.durable import DurableStore

        return DurableStore(
            settings.data_dir,
            max_streams=settings.max_streams,
            synchronous=settings.durability.upper(),
        )
    return MemoryStore(max_streams=settings.max_streams)


@dataclass
class RunningServer:
    settings: Settings
    store: Store
    grpc_server: grpc.aio.Server
    grpc_port: int
    metrics_port: int | None
    health: health.aio.HealthServicer
    registry: CollectorRegistry
    _metrics_httpd: object | None = None
    collector: EvalstreamCollector | None = None
    _write_watch: asyncio.Task | None = None
    authenticator: Authenticator | None = None
    servicer: EvalstreamServicer | None = None

    @property
    def target(self) -> str:
        host = self.settings.host
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"{host}:{self.grpc_port}"

    async def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown: report NOT_SERVING, drain RPCs for ``grace`` seconds, close."""
        grace = self.settings.shutdown_grace if grace is None else grace
        if self._write_watch is not None:
            self._write_watch.cancel()
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(grace)
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()  # type: ignore[attr-defined]
            self._metrics_httpd.server_close()  # type: ignore[attr-defined]
        if self.collector is not None:
            self.collector.stop()
        self.store.close()
        log.info("server stopped")


async def start_server(settings: Settings, store: Store | None = None) -> RunningServer:
    """Start gRPC (and /metrics unless ``metrics_port == -1``); return the running server."""
    _check_protobuf_backend()
    store = store if store is not None else build_store(settings)
    store.producer_limits = ProducerLimits(settings.max_producers, settings.producer_retention)
    options = [
        # twice the limit: the servicer answers a message past max_receive_bytes itself, in
        # words (an Ingest batch is REJECTED and the call goes on); past this, gRPC ends the call
        ("grpc.max_receive_message_length", 2 * settings.max_receive_bytes),
        ("grpc.max_send_message_length", settings.max_send_bytes),
        ("grpc.so_reuseport", 0),
    ]
    # No gRPC-level limit on concurrent calls: it would count calls before they are
    # authenticated; ``Admission`` counts authenticated calls only.
    server = grpc.aio.server(options=options, interceptors=[ParsedRequests(settings.idle_timeout)])
    limits = ServiceLimits(
        max_batch_rows=settings.max_batch_rows,
        max_message_bytes=settings.max_receive_bytes,
        max_classes=settings.max_classes,
        max_windows=settings.max_windows,
        max_clock_skew=settings.max_clock_skew,
        min_watch_interval=settings.min_watch_interval,
    )
    limiter = RateLimiter(settings.stream_rate, settings.tenant_rate, settings.rate_burst_seconds)
    authenticator = Authenticator(
        load_tokens(settings.token_file), source=lambda: load_tokens(settings.token_file)
    )
    quotas = TenantQuotas(
        streams=settings.max_streams_per_tenant,
        calls=settings.max_calls_per_tenant,
        watchers=settings.max_watchers_per_tenant,
    )
    budget = MemoryBudget(
        per_stream=settings.max_stream_memory,
        per_server=settings.max_server_memory or machine_memory(),
        max_skew=settings.max_clock_skew,
        per_tenant=settings.max_tenant_memory,
    )
    charge_memory = getattr(store, "charge_memory", None)  # stores holding engines in-process
    ledger = MemoryLedger(budget) if charge_memory is not None else None
    if charge_memory is not None:
        charge_memory(ledger)
    servicer = EvalstreamServicer(store, limits, limiter, quotas, budget, ledger)
    admission = Admission(settings.max_concurrent_rpcs, quotas)
    server.add_generic_rpc_handlers(
        (method_handlers(servicer, authenticator, admission, settings.idle_timeout),)
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(
        server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    )
    address = f"{_bracket(settings.host)}:{settings.grpc_port}"
    if settings.tls_cert or settings.tls_key:
        if not (settings.tls_cert and settings.tls_key):
            raise ValueError("tls: expected both --tls-cert and --tls-key, received one")
        creds = server_credentials(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        port = server.add_secure_port(address, creds)
    else:
        if settings.tls_client_ca:
            raise ValueError("tls: --tls-client-ca needs --tls-cert and --tls-key")
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC to {settings.host}:{settings.grpc_port}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    registry = CollectorRegistry(auto_describe=False)
    collector = EvalstreamCollector(
        store,
        settings.max_class_series,
        settings.metrics_refresh,
        settings.metrics_scrape_budget,
        settings.max_window_series,
    )
    registry.register(collector)
    if settings.metrics_port >= 0:
        collector.start()  # the background refresh: metrics_refresh > 0, or when auto needs it
    httpd, metrics_port = None, None
    if settings.metrics_port >= 0:
        try:
            httpd, metrics_port = start_metrics_server(
                settings.metrics_host,
                settings.metrics_port,
                registry,
                token_file=settings.metrics_token_file,
                tls_cert=settings.metrics_tls_cert,
                tls_key=settings.metrics_tls_key,
                client_ca=settings.metrics_client_ca,
                exposition=collector.exposition,
            )
        except BaseException:  # refused (unprotected, bad TLS files) or the port is taken
            collector.stop()
            await server.stop(0)
            store.close()
            raise
    log.info(
        "serving",
        extra={
            "grpc": f"{settings.host}:{port}",
            "tls": bool(settings.tls_cert),
            "mtls": bool(settings.tls_client_ca),
            "tokens": authenticator.enabled,
            "metrics": f"{settings.metrics_host}:{metrics_port}",
        },
    )
    watch = asyncio.create_task(_watch_writes(store, health_servicer))
    return RunningServer(
        settings,
        store,
        server,
        port,
        metrics_port,
        health_servicer,
        registry,
        httpd,
        collector,
        watch,
        authenticator,
        servicer,
    )


WRITE_CHECK_SECONDS = 0.5


async def _watch_writes(store: Store, health_servicer: health.aio.HealthServicer) -> None:
    """Keep the service's health status equal to whether the store accepts writes.

    ``""`` (the process) stays SERVING: queries still work and restarting does not free a disk.
    ``evalstream.v1.EvalstreamService`` turns NOT_SERVING while writes fail (a full disk), and
    SERVING again once the store's probe commit succeeds (``Store.writable`` probes)."""
    serving = True
    while True:
        await asyncio.sleep(WRITE_CHECK_SECONDS)
        try:
            ok = await asyncio.to_thread(store.writable)
        except Exception:  # noqa: BLE001 - a failing check is a failing store
            log.exception("write check failed")
            ok = False
        if ok != serving:
            serving = ok
            status = health_pb2.HealthCheckResponse
            await health_servicer.set(SERVICE_NAME, status.SERVING if ok else status.NOT_SERVING)
            log.warning("writes " + ("accepted again" if ok else "failing: NOT_SERVING"))


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _check_protobuf_backend() -> None:
    from google.protobuf.internal import api_implementation

    kind = api_implementation.Type()
    if kind == "python":
        raise RuntimeError(
            "protobuf runs on its pure-Python backend (PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="
            "python?); it is 10-100x slower at parsing batches. Unset that variable or install "
            "the protobuf wheel for this platform (upb backend)."
        )


async def serve_forever(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads the tokens."""
    running = await start_server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload_tokens, running)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace})
    await running.stop()


def reload_tokens(running: RunningServer) -> None:
    """SIGHUP: read the token file (and ``EVALSTREAM_TOKENS``) and the metrics token file again.
    Calls in flight finish; the next call or scrape is judged by the new tokens (a removed one
    stops working). A file that does not load is logged and the tokens in use are kept."""
    assert running.authenticator is not None
    try:
        count = running.authenticator.reload()
    except (OSError, ValueError) as exc:
        log.error("tokens not reloaded; the previous ones stay in use", extra={"error": str(exc)})
    else:
        log.info("tokens reloaded", extra={"tokens": count})
    access = getattr(running._metrics_httpd, "get_app", lambda: None)()
    if isinstance(access, MetricsAccess) and access.token_file:
        try:
            count = access.reload()
        except (OSError, ValueError) as exc:
            log.error(
                "metrics tokens not reloaded; the previous ones stay in use",
                extra={"error": str(exc)},
            )
        else:
            log.info("metrics tokens reloaded", extra={"tokens": count})


class ServerThread:
    """Run a server on its own event loop in a background thread (demo, tests, notebooks).

    Examples
    --------
    >>> with ServerThread(Settings(grpc_port=0, metrics_port=-1)) as srv:  # doctest: +SKIP
    ...     print(srv.target)
    """

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        import threading

        self.settings = settings
        self._store = store
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="evalstream-server", daemon=True
        )
        self.running: RunningServer | None = None

    def start(self) -> ServerThread:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(start_server(self.settings, self._store), self._loop)
        self.running = fut.result(timeout=30)
        return self

    @property
    def target(self) -> str:
        assert self.running is not None
        return self.running.target

    @property
    def metrics_port(self) -> int | None:
        assert self.running is not None
        return self.running.metrics_port

    @property
    def store(self) -> Store:
        assert self.running is not None
        return self.running.store

    def stop(self, grace: float = 1.0) -> None:
        if self.running is not None:
            fut = asyncio.run_coroutine_threadsafe(self.running.stop(grace), self._loop)
            fut.result(timeout=grace + 30)
            self.running = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        # The loop is left to the garbage collector: closing it while grpc's poller thread still
        # holds its file descriptor logs a spurious EBADF.

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

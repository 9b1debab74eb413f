"""Build and run a proxy: settings in, a running proxy with its bound port out.

``start_proxy(settings)`` creates or checks the routed streams (``create.py``, with
``settings.create``), then starts the gRPC server (grpc.aio, TLS when configured: ``tls.py``),
the channel to the inference server, the recorder's threads and the /metrics endpoint;
``RunningProxy.stop()`` shuts down in order: stop taking calls and drain those in flight
(``shutdown_grace``), flush the recorder (``flush_timeout``, what is left is counted as
dropped), close the channels. ``ProxyThread`` runs one on its own event loop for tests,
benchmarks and notebooks; ``serve_proxy_forever`` is the CLI's, until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import start_http_server

from .create import create_streams
from .forwarder import Forwarder
from .metrics import ProxyMetrics
from .recorder import Recorder, Sink
from .routes import ModelRoute
from .tls import ClientTLS, ServerTLS

__all__ = [
    "ProxySettings",
    "RunningProxy",
    "ProxyThread",
    "start_proxy",
    "serve_proxy_forever",
    "split_host_port",
    "client_sink",
]

log = logging.getLogger("evalstream.proxy")

# Never a lower message limit than the inference server's (Triton takes up to 2 GiB).
_MESSAGE_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]
# Reconnect to a restarted inference server within a second (grpc's default backoff reaches 120 s).
_UPSTREAM_OPTIONS = [
    *_MESSAGE_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def split_host_port(flag: str, text: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:port"`` for IPv6) as ``(host, port)``; a ValueError naming
    ``flag`` otherwise."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{flag}: expected HOST:PORT with a port 0..65535, received {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class ProxySettings:
    """What a proxy needs; defaults are the CLI's.

    Attributes
    ----------
    triton : str
        ``HOST:PORT`` of the inference server's gRPC.
    target : str
        ``HOST:PORT`` of evalstream.
    routes : mapping of str to ModelRoute
        Models to record, by name (``routes.parse_routes``).
    listen : str
        ``HOST:PORT`` to serve on (port 0: any free one).
    metrics_host, metrics_port : str, int
        The proxy's /metrics (port -1: off, 0: any free one).
    max_buffer_rows, batch_rows, flush_interval
        The recorder's bounds (see ``Recorder``).
    retry_deadline : float
        Seconds one ``log_predictions`` call keeps retrying an unreachable evalstream before
        the rows go back to the buffer (a dead evalstream never stalls the sender for long).
    flush_timeout : float
        Seconds to send what is buffered at shutdown.
    shutdown_grace : float
        Seconds calls in flight get to finish at shutdown.
    token : str, optional
        evalstream bearer token.
    create : bool
        At start-up, check each routed stream against its model's metadata and create the
        missing ones (``create.create_streams``); a stream that does not fit stops the start.
    tasks, classes, scores : mapping by model name
        Of created streams: the task (default: binary for one output column, else
        multiclass), the class names (default ``"0"`` to ``"K-1"``), and what the output holds
        (``"logits"`` or ``"probabilities"``, default logits). Checked against existing streams.
    windows : tuple of str
        Windows of created streams (``("5m", "1h")``).
    connect_timeout : float
        Seconds ``create`` waits for the inference server and each model to be ready.
    target_tls, triton_tls : ClientTLS
        TLS to evalstream and to the inference server (default: plaintext).
    listen_tls : ServerTLS
        TLS served to applications (default: plaintext).
    """

    triton: str
    target: str
    routes: Mapping[str, ModelRoute] = field(default_factory=dict)
    listen: str = "127.0.0.1:8011"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9465
    max_buffer_rows: int = 100_000
    batch_rows: int = 4096
    flush_interval: float = 0.05
    retry_deadline: float = 2.0
    flush_timeout: float = 10.0
    shutdown_grace: float = 5.0
    token: str | None = None
    create: bool = False
    tasks: Mapping[str, str] = field(default_factory=dict)
    classes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    scores: Mapping[str, str] = field(default_factory=dict)
    windows: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    target_tls: ClientTLS = field(default_factory=lambda: ClientTLS("target"))
    triton_tls: ClientTLS = field(default_factory=lambda: ClientTLS("triton"))
    listen_tls: ServerTLS = field(default_factory=ServerTLS)


def client_sink(
    target: str, token: str | None, retry_deadline: float, tls: Any = None
) -> tuple[Sink, Any]:
    """``EvalClient.log_predictions`` of a new client (one producer id for this proxy), and the
    client (to close). ``tls`` is ``EvalClient``'s (``ClientTLS.pem()``)."""
    from evalstream import EvalClient

    client = EvalClient(
        target,
        token=token,
        tls=tls,
        timeout=max(5.0, retry_deadline),
        producer_id=f"triton-proxy-{uuid.uuid4()}",
        retry_deadline=retry_deadline,
    )
    log_predictions = getattr(client, "log_predictions", None)
    if log_predictions is None:
        client.close()
        raise RuntimeError(
            "evalstream client: expected EvalClient.log_predictions (delayed labels), received "
            "a client without it (upgrade the evalstream package)"
        )
    return log_predictions, client


@dataclass
class RunningProxy:
    settings: ProxySettings
    server: grpc.aio.Server
    channel: grpc.aio.Channel
    recorder: Recorder
    metrics: ProxyMetrics
    port: int
    metrics_port: int | None
    _client: Any = None
    _httpd: Any = None

    @property
    def address(self) -> str:
        host, _ = split_host_port("listen", self.settings.listen)
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    async def stop(self, grace: float | None = None, flush_timeout: float | None = None) -> int:
        """Stop taking calls, let those in flight finish, flush; return rows left unsent."""
        grace = self.settings.shutdown_grace if grace is None else grace
        flush = self.settings.flush_timeout if flush_timeout is None else flush_timeout
        await self.server.stop(grace)
        left = await asyncio.get_running_loop().run_in_executor(None, self.recorder.close, flush)
        await self.channel.close()
        if self._client is not None:
            self._client.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        log.info("proxy stopped", extra={"unsent_rows": left})
        return left


async def start_proxy(settings: ProxySettings, sink: Sink | None = None) -> RunningProxy:
    """Start a proxy; ``sink`` defaults to ``EvalClient(settings.target).log_predictions``."""
    host, port = split_host_port("--listen", settings.listen)
    split_host_port("--triton", settings.triton)
    # Read every TLS file before anything starts: a bad one is an argument error.
    server_credentials = settings.listen_tls.credentials()
    upstream_credentials = settings.triton_tls.credentials()
    target_tls = settings.target_tls.pem()
    if settings.create:
        split_host_port("--target", settings.target)
        await asyncio.get_running_loop().run_in_executor(None, create_streams, settings)
    client = None
    if sink is None:
        split_host_port("--target", settings.target)
        sink, client = client_sink(
            settings.target, settings.token, settings.retry_deadline, target_tls
        )
    metrics = ProxyMetrics()
    recorder = Recorder(
        sink,
        settings.routes,
        metrics,
        max_buffer_rows=settings.max_buffer_rows,
        batch_rows=settings.batch_rows,
        flush_interval=settings.flush_interval,
    )
    if upstream_credentials is None:
        channel = grpc.aio.insecure_channel(settings.triton, options=_UPSTREAM_OPTIONS)
    else:
        channel = grpc.aio.secure_channel(
            settings.triton, upstream_credentials, options=_UPSTREAM_OPTIONS
        )
    server = grpc.aio.server(options=[*_MESSAGE_OPTIONS, ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((Forwarder(channel, settings.routes, recorder, metrics),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if server_credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, server_credentials)
    if bound == 0:
        await channel.close()
        if client is not None:
            client.close()
        raise OSError(f"--listen: could not bind {settings.listen}")
    recorder.start()
    await server.start()
    httpd, metrics_port = None, None
    if settings.metrics_port >= 0:
        httpd, _ = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=metrics.registry
        )
        metrics_port = httpd.server_port
    log.info(
        "proxy serving",
        extra={
            "listen": f"{host}:{bound}",
            "triton": settings.triton,
            "target": settings.target,
            "tls": {
                "listen": settings.listen_tls.enabled,
                "listen_mtls": bool(settings.listen_tls.client_ca),
                "triton": settings.triton_tls.enabled,
                "target": settings.target_tls.enabled,
            },
            "models": {m: r.stream for m, r in settings.routes.items()},
            "metrics": f"{settings.metrics_host}:{metrics_port}",
        },
    )
    return RunningProxy(
        settings, server, channel, recorder, metrics, bound, metrics_port, client, httpd
    )


async def serve_proxy_forever(settings: ProxySettings, ready: Any = None) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; return rows left unsent.
    ``ready(running)`` is called once serving."""
    running = await start_proxy(settings)
    if ready is not None:
        ready(running)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("proxy shutting down", extra={"flush_timeout_s": settings.flush_timeout})
    return await running.stop()


class ProxyThread:
    """A proxy on its own event loop in a background thread (tests, benchmarks, notebooks)."""

    def __init__(self, settings: ProxySettings, sink: Sink | None = None) -> None:
        self.settings = settings
        self._sink = sink
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="evalstream-proxy", daemon=True
        )
        self.running: RunningProxy | None = None

    def start(self) -> ProxyThread:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(start_proxy(self.settings, self._sink), self._loop)
        try:
            self.running = fut.result(timeout=30 + self.settings.connect_timeout)
        except BaseException:
            self.stop()  # the loop and its thread; nothing else was started
            raise
        return self

    @property
    def address(self) -> str:
        assert self.running is not None
        return self.running.address

    @property
    def recorder(self) -> Recorder:
        assert self.running is not None
        return self.running.recorder

    @property
    def metrics(self) -> ProxyMetrics:
        assert self.running is not None
        return self.running.metrics

    def stop(self, grace: float = 1.0, flush_timeout: float | None = None) -> int:
        left = 0
        if self.running is not None:
            fut = asyncio.run_coroutine_threadsafe(
                self.running.stop(grace, flush_timeout), self._loop
            )
            left = fut.result(timeout=grace + (flush_timeout or self.settings.flush_timeout) + 30)
            self.running = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        return left

    def __enter__(self) -> ProxyThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

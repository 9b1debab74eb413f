"""The ``/metrics`` HTTP endpoint, optionally guarded by a bearer token and/or TLS with client
certificates.

Series name tenants and their streams, so on an address others can reach the endpoint should
require one of the two: ``--metrics-token-file`` (the scraper sends ``Authorization: Bearer
<token>``; Prometheus' ``authorization.credentials_file``) or ``--metrics-tls-cert/-key`` with
``--metrics-client-ca`` (the scraper presents a certificate that CA signed; Prometheus'
``tls_config``). ``start_metrics_server`` refuses a non-loopback address with neither.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

__all__ = ["MetricsAccess", "start_metrics_server", "load_metrics_tokens"]

log = logging.getLogger("evalstream.exporter")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A refused TLS handshake (no or a wrong client certificate) ends here: not an error of
        the server, and a scan would fill the log."""
        log.debug("metrics request failed", exc_info=True, extra={"client": str(client_address)})


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        """Scrapes are not logged (one line per scrape would drown the service's own)."""


def load_metrics_tokens(path: str) -> list[bytes]:
    """The bearer tokens in ``path`` (one a line, ``#`` comments), at least 16 characters each."""
    tokens = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(line) < 16:
            raise ValueError(
                f"{path}:{n}: expected a metrics token of at least 16 characters, "
                f"received {len(line)}"
            )
        tokens.append(line.encode())
    if not tokens:
        raise ValueError(f"{path}: expected at least one metrics token, received none")
    return tokens


class MetricsAccess:
    """WSGI middleware: answer 401 unless the request carries one of ``tokens`` as a bearer
    token (every token compared in constant time; no tokens: every request passes)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], tokens: list[bytes]) -> None:
        self.app, self.tokens = app, tokens

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if self.tokens and not self._allowed(environ.get("HTTP_AUTHORIZATION", "")):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
            )
            return [b"/metrics: expected 'Authorization: Bearer <token>' with a metrics token\n"]
        return self.app(environ, start_response)

    def _allowed(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        presented = token.strip().encode()
        found = False
        for known in self.tokens:  # no early exit: constant time in the match
            found |= hmac.compare_digest(presented, known)
        return scheme.lower() == "bearer" and found


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:  # "" and 0.0.0.0 (every interface) are not loopback
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def start_metrics_server(
    host: str,
    port: int,
    registry: CollectorRegistry,
    token_file: str = "",
    tls_cert: str = "",
    tls_key: str = "",
    client_ca: str = "",
) -> tuple[WSGIServer, int]:
    """Serve ``registry`` on ``http(s)://host:port/metrics`` from a daemon thread; returns the
    server and its port. Refuses (``ValueError``) an address beyond loopback with neither a
    token file nor client certificates, and half a TLS configuration."""
    tokens = load_metrics_tokens(token_file) if token_file else []
    if bool(tls_cert) != bool(tls_key) or (client_ca and not tls_cert):
        raise ValueError(
            "metrics tls: expected --metrics-tls-cert and --metrics-tls-key together (and both "
            "with --metrics-client-ca), received "
            + ", ".join(
                n for n, v in (("cert", tls_cert), ("key", tls_key), ("client CA", client_ca)) if v
            )
        )
    if not _loopback(host) and not tokens and not client_ca:
        raise ValueError(
            f"metrics: --metrics-host {host} is reachable beyond this machine, and /metrics "
            "names every tenant and stream; expected --metrics-token-file or "
            "--metrics-client-ca (docs/operations.md, 'Metrics access'), received neither"
        )
    app = MetricsAccess(make_wsgi_app(registry), tokens)
    kind = _Server6 if ":" in host else _Server
    httpd = make_server(host.strip("[]"), port, app, kind, handler_class=_QuietHandler)
    if tls_cert:
        from ..auth import check_key_pair

        check_key_pair(tls_cert, tls_key, "--metrics-tls-cert", "--metrics-tls-key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(tls_cert, tls_key)
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        # the handshake runs in the request's thread, not in accept (a slow client stalls only
        # its own request)
        httpd.socket = context.wrap_socket(
            httpd.socket, server_side=True, do_handshake_on_connect=False
        )
    thread = threading.Thread(target=httpd.serve_forever, name="evalstream-metrics", daemon=True)
    thread.start()
    return httpd, httpd.server_port

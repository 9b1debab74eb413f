"""The ``/metrics`` HTTP endpoint, optionally guarded by a bearer token and/or TLS with client
certificates.

Series name tenants and their streams, so on an address others can reach the endpoint should
require one of the two: ``--metrics-token-file`` (the scraper sends ``Authorization: Bearer
<token>``; Prometheus' ``authorization.credentials_file``) or ``--metrics-tls-cert/-key`` with
``--metrics-client-ca`` (the scraper presents a certificate that CA signed; Prometheus'
``tls_config``). ``start_metrics_server`` refuses a non-loopback address with neither.

What it serves is the collector's kept text (``EvalstreamCollector.exposition``, joined per
scrape) in the text format 0.0.4, which every Prometheus accepts (it offers OpenMetrics first,
text/plain next): ``prometheus_client``'s own app would format every sample on every scrape. A
client that accepts only OpenMetrics, or asks for some families (``name[]``), gets
``prometheus_client``'s answer from the registry. Compression, when accepted, is gzip at level 1:
about 12x smaller on this text for a fraction of level 9's time.
"""

from __future__ import annotations

import gzip
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
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import CollectorRegistry

__all__ = ["MetricsAccess", "metrics_app", "start_metrics_server", "load_metrics_tokens"]

GZIP_LEVEL = 1

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
    token (every token compared in constant time; no tokens: every request passes). With
    ``token_file``, ``reload`` reads the tokens again (SIGHUP)."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], tokens: list[bytes], token_file: str = ""
    ) -> None:
        self.app, self.tokens, self.token_file = app, tokens, token_file

    def reload(self) -> int:
        """Read ``token_file`` again and use it from the next scrape on (a file that does not
        load raises and keeps the tokens in use); the number of tokens."""
        if not self.token_file:
            return 0
        self.tokens = load_metrics_tokens(self.token_file)  # one assignment: old or new set
        return len(self.tokens)

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
        for known in self.tokens:  # no early exit: constant time in the match (one list read)
            found |= hmac.compare_digest(presented, known)
        return scheme.lower() == "bearer" and found


def _takes_text(accept: str) -> bool:
    """Whether an Accept header allows the text format (empty: anything goes)."""
    if not accept.strip():
        return True
    kinds = [part.split(";")[0].strip() for part in accept.split(",")]
    return any(k in ("text/plain", "text/*", "*/*") for k in kinds)


def metrics_app(
    exposition: Callable[[], bytes], registry: CollectorRegistry
) -> Callable[..., Iterable[bytes]]:
    """A WSGI app serving ``exposition()`` (the fallback: ``make_wsgi_app(registry)``)."""
    fallback = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        params = parse_qs(environ.get("QUERY_STRING", ""))
        if (
            environ.get("PATH_INFO") == "/favicon.ico"
            or "name[]" in params
            or not _takes_text(environ.get("HTTP_ACCEPT", ""))
        ):
            return fallback(environ, start_response)  # type: ignore[no-any-return]
        body = exposition()
        headers = [("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "").lower():
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    return app


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
    exposition: Callable[[], bytes] | None = None,
) -> tuple[WSGIServer, int]:
    """Serve ``exposition()`` (None: ``registry``) on ``http(s)://host:port/metrics`` from a
    daemon thread; returns the server and its port. Refuses (``ValueError``) an address beyond
    loopback with neither a token file nor client certificates, and half a TLS configuration."""
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
    inner = make_wsgi_app(registry) if exposition is None else metrics_app(exposition, registry)
    app = MetricsAccess(inner, tokens, token_file)
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

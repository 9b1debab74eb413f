"""Bearer tokens mapped to tenants, and TLS / mutual TLS server credentials.

Tokens come from a file (one ``tenant:token`` per line, optionally followed by
``expires=<ISO 8601 time with a zone>``; ``#`` comments) or the environment
(``EVALSTREAM_TOKENS="team-a:secret1,team-b:secret2"``, no expiry). Every configured token is
compared with ``hmac.compare_digest`` on every call, so the time taken does not depend on which
token (or how much of one) matched. With no tokens configured the service is open and every
caller is the tenant ``""``. ``Authenticator.reload`` (SIGHUP in ``evalstream serve``) swaps the
whole set at once: calls in flight keep going, the next call sees the new set.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

__all__ = [
    "Authenticator",
    "AuthError",
    "Token",
    "check_key_pair",
    "load_tokens",
    "server_credentials",
]

log = logging.getLogger("evalstream.auth")
_TENANT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class AuthError(Exception):
    """Authentication or authorisation failed; ``code`` is the gRPC status to answer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class Token:
    """What a bearer token stands for: its tenant, and until when (Unix time; None = always)."""

    tenant: str
    expires: float | None = None


def _expiry(text: str, where: str) -> float:
    key, sep, value = text.partition("=")
    try:
        if key != "expires" or not sep:
            raise ValueError
        when = datetime.fromisoformat(value)
        if when.tzinfo is None:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{where}: expected 'expires=<ISO 8601 time with a zone>' after the token "
            f"(2027-01-31T00:00:00Z), received {text[:40]!r}"
        ) from None
    return when.timestamp()


def load_tokens(path: str = "", env: str | None = None) -> dict[str, Token]:
    """``{token: Token}`` from a token file and/or an ``EVALSTREAM_TOKENS`` value."""
    entries: list[tuple[str, str, float | None]] = []
    if path:
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            tenant, sep, rest = line.partition(":")
            token, *options = rest.split() or [""]
            if not sep or not tenant.strip() or not token or len(options) > 1:
                raise ValueError(
                    f"{path}:{n}: expected 'tenant:token [expires=<time>]', received {line[:40]!r}"
                )
            expires = _expiry(options[0], f"{path}:{n}") if options else None
            entries.append((tenant.strip(), token, expires))
    text = os.environ.get("EVALSTREAM_TOKENS", "") if env is None else env
    for item in filter(None, (p.strip() for p in text.split(","))):
        tenant, sep, token = item.partition(":")
        if not sep or not tenant or not token:
            raise ValueError("EVALSTREAM_TOKENS: expected 'tenant:token[,tenant:token...]'")
        entries.append((tenant, token, None))
    tokens: dict[str, Token] = {}
    for tenant, token, expires in entries:
        if not _TENANT.match(tenant):  # a tenant name is part of the keys its streams live under
            raise ValueError(
                f"tenant {tenant[:70]!r}: expected 1 to 64 characters from letters, digits "
                "and . _ -"
            )
        if len(token) < 16:
            raise ValueError(
                f"token of tenant {tenant!r}: expected at least 16 characters, "
                f"received {len(token)}"
            )
        tokens[token] = Token(tenant, expires)
    return tokens


class Authenticator:
    """Maps the ``authorization: Bearer <token>`` metadata of a call to a tenant.

    Parameters
    ----------
    tokens : mapping
        ``{token: Token}`` (or ``{token: tenant}``).
    source : callable, optional
        Reads the tokens again (``reload``), e.g. ``lambda: load_tokens(path)``.
    clock : callable
        Unix time, to judge expiry.
    """

    def __init__(
        self,
        tokens: Mapping[str, Token | str],
        source: Callable[[], Mapping[str, Token | str]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.clock = clock
        self.tokens = self._encoded(tokens)

    @staticmethod
    def _encoded(tokens: Mapping[str, Token | str]) -> list[tuple[bytes, Token]]:
        return [(k.encode(), v if isinstance(v, Token) else Token(v)) for k, v in tokens.items()]

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def reload(self) -> int:
        """Read the tokens again from ``source`` and use them from the next call on (one
        assignment: a call sees the old set or the new one, never a mix). A failed read raises
        and keeps the old set. Returns how many tokens are configured."""
        if self.source is None:
            raise RuntimeError("tokens: no source to reload them from")
        tokens = self._encoded(self.source())
        if bool(tokens) != bool(self.tokens):
            raise ValueError(
                "tokens: a reload cannot turn authentication on or off (restart for that); "
                f"expected {'some' if self.tokens else 'no'} tokens, received {len(tokens)}"
            )
        self.tokens = tokens
        return len(tokens)

    def tenant(self, metadata: tuple[Any, ...] | list[Any] | None) -> str:
        tokens = self.tokens  # one read: a reload meanwhile does not mix two sets
        if not tokens:
            return ""
        value = ""
        for key, val in metadata or ():
            if key.lower() == "authorization":
                value = val if isinstance(val, str) else val.decode()
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError(
                grpc.StatusCode.UNAUTHENTICATED,
                "authorization: expected 'Bearer <token>' metadata, received "
                + ("none" if not value else f"a {scheme or 'malformed'} value"),
            )
        found: Token | None = None
        presented = token.strip().encode()
        for known, entry in tokens:  # no early exit: constant time in the match
            if hmac.compare_digest(presented, known):
                found = entry
        if found is None:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "authorization: unknown token")
        if found.expires is not None and self.clock() >= found.expires:
            ended = datetime.fromtimestamp(found.expires, UTC).isoformat()
            raise AuthError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"authorization: token expired at {ended}; ask for a new one",
            )
        return found.tenant


def check_key_pair(
    cert: str, key: str, cert_flag: str = "--tls-cert", key_flag: str = "--tls-key"
) -> None:
    """Refuse (``ValueError`` naming both files) a certificate and key that cannot be read or
    do not belong together; gRPC would only say "Failed to bind to address"."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(
                f"tls: the private key {key_flag} {key} does not match the certificate "
                f"{cert_flag} {cert}; expected the key the certificate was issued for"
            ) from None
        reason = exc.reason if isinstance(exc, ssl.SSLError) else exc.strerror
        raise ValueError(
            f"tls: expected a PEM certificate chain in {cert_flag} {cert} and its PEM private "
            f"key in {key_flag} {key}; reading them failed ({reason or exc})"
        ) from None


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """TLS credentials; with ``client_ca`` clients must present a certificate it signed (mTLS)."""
    check_key_pair(cert, key)
    pair = (Path(key).read_bytes(), Path(cert).read_bytes())
    if client_ca:
        return grpc.ssl_server_credentials(
            [pair], root_certificates=Path(client_ca).read_bytes(), require_client_auth=True
        )
    return grpc.ssl_server_credentials([pair])

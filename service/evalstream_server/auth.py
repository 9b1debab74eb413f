"""Bearer tokens mapped to tenants, and TLS / mutual TLS server credentials.

Tokens come from a file (one ``tenant:token`` per line, ``#`` comments) or the environment
(``EVALSTREAM_TOKENS="team-a:secret1,team-b:secret2"``). Every configured token is compared with
``hmac.compare_digest`` on every call, so the time taken does not depend on which token (or how
much of one) matched. With no tokens configured the service is open and every caller is the
tenant ``""``.
"""

from __future__ import annotations

import hmac
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["Authenticator", "AuthError", "check_key_pair", "load_tokens", "server_credentials"]

_TENANT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class AuthError(Exception):
    """Authentication or authorisation failed; ``code`` is the gRPC status to answer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        super().__init__(message)


def load_tokens(path: str = "", env: str | None = None) -> dict[str, str]:
    """``{token: tenant}`` from a token file and/or an ``EVALSTREAM_TOKENS`` value."""
    pairs: list[tuple[str, str]] = []
    if path:
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            tenant, sep, token = line.partition(":")
            if not sep or not tenant.strip() or not token.strip():
                raise ValueError(f"{path}:{n}: expected 'tenant:token', received {line[:40]!r}")
            pairs.append((tenant.strip(), token.strip()))
    text = os.environ.get("EVALSTREAM_TOKENS", "") if env is None else env
    for item in filter(None, (p.strip() for p in text.split(","))):
        tenant, sep, token = item.partition(":")
        if not sep or not tenant or not token:
            raise ValueError("EVALSTREAM_TOKENS: expected 'tenant:token[,tenant:token...]'")
        pairs.append((tenant, token))
    tokens: dict[str, str] = {}
    for tenant, token in pairs:
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
        tokens[token] = tenant
    return tokens


@dataclass(frozen=True)
class Authenticator:
    """Maps the ``authorization: Bearer <token>`` metadata of a call to a tenant."""

    tokens: dict[str, str]

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def tenant(self, metadata: tuple | list | None) -> str:
        if not self.tokens:
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
        found = ""
        presented = token.strip().encode()
        for known, tenant in self.tokens.items():  # no early exit: constant time in the match
            if hmac.compare_digest(presented, known.encode()):
                found = tenant
        if not found:
            raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "authorization: unknown token")
        return found


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

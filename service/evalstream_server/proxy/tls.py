"""TLS of the proxy's three connections, from PEM files named on the command line.

- to evalstream (``--target-ca``, ``--target-cert``, ``--target-key``): ``ClientTLS.pem()`` is the
  ``tls`` dict ``EvalClient`` takes;
- to the inference server (``--triton-ca``, ``--triton-cert``, ``--triton-key``):
  ``ClientTLS.credentials()`` for the forwarding channel and ``tritonclient``;
- on ``--listen`` (``--tls-cert``, ``--tls-key``, ``--tls-client-ca`` for mutual TLS):
  ``ServerTLS.credentials()``.

A client side with only a CA trusts that CA; with a certificate and key it also presents them
(mutual TLS); with a certificate and key and no CA it trusts the system's roots. Files are read
once, at start-up; a missing or unreadable one is an error naming its flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["ClientTLS", "ServerTLS", "TLSError"]


class TLSError(ValueError):
    """A TLS option that cannot be used, named as flag, expected and received."""

    def __init__(self, flag: str, expected: str, received: str) -> None:
        self.flag = flag
        self.expected = expected
        self.received = received
        super().__init__(f"{flag}: expected {expected}, received {received}")


def _read(flag: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TLSError(flag, "a readable PEM file", f"{path!r} ({exc.strerror})") from None
    if b"-----BEGIN " not in data:
        raise TLSError(flag, "a PEM file (-----BEGIN ...)", f"{path!r}, {len(data)} bytes without")
    return data


def _pair(prefix: str, cert: str, key: str) -> None:
    if bool(cert) != bool(key):
        given, missing = ("cert", "key") if cert else ("key", "cert")
        raise TLSError(
            f"--{prefix}-{missing}",
            f"a file with --{prefix}-{given} (a certificate and its private key go together)",
            f"--{prefix}-{given} alone",
        )


@dataclass(frozen=True)
class ClientTLS:
    """TLS of an outgoing connection. All empty: plaintext.

    Attributes
    ----------
    prefix : str
        The flags' prefix, for errors: ``"target"`` or ``"triton"``.
    ca : str
        PEM file of the CA that signed the server's certificate ("": the system's roots).
    cert, key : str
        PEM files of the proxy's own certificate and key, for mutual TLS (both or neither).
    """

    prefix: str
    ca: str = ""
    cert: str = ""
    key: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.ca or self.cert or self.key)

    def check(self) -> None:
        """Raise ``TLSError`` for a certificate without its key (or the other way round) or a
        file that cannot be read."""
        self.pem()

    def pem(self) -> dict[str, bytes] | None:
        """``EvalClient``'s ``tls`` argument: PEM bytes by name; None when TLS is off."""
        if not self.enabled:
            return None
        _pair(self.prefix, self.cert, self.key)
        out = {}
        if self.ca:
            out["root_certificates"] = _read(f"--{self.prefix}-ca", self.ca)
        if self.cert:
            out["certificate_chain"] = _read(f"--{self.prefix}-cert", self.cert)
            out["private_key"] = _read(f"--{self.prefix}-key", self.key)
        return out

    def credentials(self) -> grpc.ChannelCredentials | None:
        """``grpc.ssl_channel_credentials`` of the files; None when TLS is off."""
        pem = self.pem()
        return None if pem is None else grpc.ssl_channel_credentials(**pem)


@dataclass(frozen=True)
class ServerTLS:
    """TLS served on ``--listen``. All empty: plaintext.

    Attributes
    ----------
    cert, key : str
        PEM files of the proxy's server certificate and key (both or neither).
    client_ca : str
        PEM file of a CA: callers must present a certificate it signed (mutual TLS).
    """

    cert: str = ""
    key: str = ""
    client_ca: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.key or self.client_ca)

    def credentials(self) -> grpc.ServerCredentials | None:
        """``grpc.ssl_server_credentials`` of the files; None when TLS is off."""
        if not self.enabled:
            return None
        if not (self.cert and self.key):
            _pair("tls", self.cert, self.key)
            raise TLSError(
                "--tls-client-ca",
                "--tls-cert and --tls-key with it (mutual TLS is TLS first)",
                "--tls-client-ca alone",
            )
        pair = (_read("--tls-key", self.key), _read("--tls-cert", self.cert))
        if self.client_ca:
            return grpc.ssl_server_credentials(
                [pair],
                root_certificates=_read("--tls-client-ca", self.client_ca),
                require_client_auth=True,
            )
        return grpc.ssl_server_credentials([pair])

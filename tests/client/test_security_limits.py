"""The client against a real server with tokens, tenants, mutual TLS and ingest rate limits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from evalstream import (
    EvalClient,
    NotFoundError,
    UnauthenticatedError,
    UnavailableError,
)

from .conftest import ServerThread

TOKEN_A = "token-of-team-a-0123456789"
TOKEN_B = "token-of-team-b-0123456789"
JOIN = 20.0


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with two tenants and a per-stream rate of 20k samples/s (burst 2k)."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text(f"team-a:{TOKEN_A}\nteam-b:{TOKEN_B}\n")
    s = ServerThread(token_file=str(tokens), stream_rate=20_000.0, rate_burst_seconds=0.1)
    try:
        yield s
    finally:
        s.stop()


def test_tokens_and_tenants(guarded, name):
    with EvalClient(guarded.target, token=TOKEN_A) as a, EvalClient(guarded.target) as anon:
        a.create_stream(name, task="binary", classes=["n", "p"])
        assert a.log(name, [0, 1], [0.2, 0.9]).accepted_samples == 2
        with pytest.raises(UnauthenticatedError, match="authorization"):
            anon.get_stream(name)
        with pytest.raises(UnauthenticatedError):
            anon.log(name, [0, 1], [0.2, 0.9])
    with EvalClient(guarded.target, token=TOKEN_B) as b:
        with pytest.raises(NotFoundError, match=f"stream '{name}' not found"):
            b.report(name)  # A's stream is, to B, a name nobody uses
        with pytest.raises(NotFoundError) as info:  # refused per batch, not resent
            b.log(name, [0, 1], [0.2, 0.9])
        assert info.value.result.rejected_batches == 1
        assert name not in {s.name for s in b.list_streams()}
    with EvalClient(guarded.target, token="not-a-known-token-at-all") as bad:
        with pytest.raises(UnauthenticatedError, match="unknown token"):
            bad.list_streams()


def test_rate_limited_batches_wait_and_are_resent(guarded, name):
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 8000), rng.random(8000)
    with EvalClient(guarded.target, token=TOKEN_A, max_batch_rows=500) as a:
        a.create_stream(name, task="binary", classes=["n", "p"])
        result = a.log(name, y, p)  # 16 batches; the bucket holds 4 of them
        assert (result.accepted_batches, result.rejected_batches) == (16, 0)
        with a.writer(name, flush_rows=500, flush_interval=0.05) as w:
            for i in range(0, 6000, 250):
                w.log(y[i : i + 250], p[i : i + 250])
        assert w.result.accepted_samples == 6000 and w.result.rejected_batches == 0
        assert a.get_stream(name).sample_count == 14_000


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _certificates(tmp: Path) -> dict[str, Path]:
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=evalstream-test-ca", cwd=tmp)  # fmt: skip
    (tmp / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who in ("server", "client"):
        _openssl("req", *key, "-keyout", f"{who}.key", "-out", f"{who}.csr",
                 "-subj", f"/CN={who}", cwd=tmp)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{who}.pem", "-days", "1", "-extfile", "san.ext",
                 cwd=tmp)  # fmt: skip
    return {p.name: p for p in tmp.iterdir()}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_mutual_tls(tmp_path, name):
    files = _certificates(tmp_path)
    server = ServerThread(
        tls_cert=str(files["server.pem"]),
        tls_key=str(files["server.key"]),
        tls_client_ca=str(files["ca.pem"]),
    )
    pem = {k: v.read_bytes() for k, v in files.items() if v.suffix in (".pem", ".key")}
    try:
        tls = {
            "root_certificates": pem["ca.pem"],
            "certificate_chain": pem["client.pem"],
            "private_key": pem["client.key"],
        }
        with EvalClient(server.target, tls=tls, timeout=10) as client:
            client.create_stream(name, task="binary", classes=["n", "p"])
            assert client.log(name, [0, 1], [0.3, 0.8]).accepted_samples == 2
            with pytest.raises(NotFoundError):
                client.get_stream(f"{name}-missing")
        no_cert = {"root_certificates": pem["ca.pem"]}
        with EvalClient(server.target, tls=no_cert, timeout=10) as client:
            with pytest.raises(UnavailableError):  # the server wants a client certificate
                client.get_stream(name)
        with EvalClient(server.target, timeout=10) as plaintext:
            with pytest.raises(UnavailableError):
                plaintext.get_stream(name)
    finally:
        server.stop()

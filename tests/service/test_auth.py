"""TLS, mutual TLS, bearer tokens and tenant isolation: each accepted and refused case."""

from __future__ import annotations

import subprocess

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import ingest_pb2, stream_pb2
from evalstream_server.auth import load_tokens
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import tensor

TOKEN_A = "team-a-token-0123456789"
TOKEN_B = "team-b-token-9876543210"


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client", "rogue"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
    for name in ("server", "client"):
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    _openssl(
        "x509",
        "-req",
        "-in",
        "rogue.csr",
        "-signkey",
        "rogue.key",
        "-days",
        "2",
        "-out",
        "rogue.pem",
        cwd=d,
    )  # self-signed: not trusted by the server
    return d


def _cfg(name: str) -> pb.CreateStreamRequest:
    return pb.CreateStreamRequest(
        config=stream_pb2.StreamConfig(
            name=name, task=stream_pb2.TASK_BINARY, score_kind=stream_pb2.SCORE_KIND_PROBABILITIES
        )
    )


def _health(channel) -> int:
    return (
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    )


def test_tls_accepts_trusting_clients_and_refuses_plaintext(certs):
    settings = Settings(
        grpc_port=0,
        metrics_port=-1,
        tls_cert=str(certs / "server.pem"),
        tls_key=str(certs / "server.key"),
    )
    with ServerThread(settings) as srv:
        creds = grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes())
        with grpc.secure_channel(srv.target, creds) as ch:
            assert _health(ch) == health_pb2.HealthCheckResponse.SERVING
            rpc.EvalstreamServiceStub(ch).CreateStream(_cfg("tls"))
        with grpc.insecure_channel(srv.target) as ch, pytest.raises(grpc.RpcError) as info:
            _health(ch)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate_signed_by_the_ca(certs):
    settings = Settings(
        grpc_port=0,
        metrics_port=-1,
        tls_cert=str(certs / "server.pem"),
        tls_key=str(certs / "server.key"),
        tls_client_ca=str(certs / "ca.pem"),
    )
    ca = (certs / "ca.pem").read_bytes()
    with ServerThread(settings) as srv:
        good = grpc.ssl_channel_credentials(
            ca, (certs / "client.key").read_bytes(), (certs / "client.pem").read_bytes()
        )
        with grpc.secure_channel(srv.target, good) as ch:
            assert _health(ch) == health_pb2.HealthCheckResponse.SERVING
        for creds in (
            grpc.ssl_channel_credentials(ca),
            grpc.ssl_channel_credentials(
                ca, (certs / "rogue.key").read_bytes(), (certs / "rogue.pem").read_bytes()
            ),
        ):
            with grpc.secure_channel(srv.target, creds) as ch, pytest.raises(grpc.RpcError) as info:
                _health(ch)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.fixture(scope="module")
def tenants(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokens"
    path.write_text(f"# tenant:token\nteam-a:{TOKEN_A}\nteam-b:{TOKEN_B}\n")
    with ServerThread(Settings(grpc_port=0, metrics_port=-1, token_file=str(path))) as srv:
        yield srv


def _stub(srv, token: str | None):
    ch = grpc.insecure_channel(srv.target)
    meta = (("authorization", f"Bearer {token}"),) if token else ()
    return ch, rpc.EvalstreamServiceStub(ch), meta


def test_tokens_are_required_and_checked(tenants):
    ch, stub, _ = _stub(tenants, None)
    with ch:
        with pytest.raises(grpc.RpcError) as info:
            stub.ListStreams(pb.ListStreamsRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Bearer" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            stub.ListStreams(
                pb.ListStreamsRequest(),
                timeout=5,
                metadata=(("authorization", "Bearer not-a-known-token-xxxx"),),
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            stub.ListStreams(
                pb.ListStreamsRequest(),
                timeout=5,
                metadata=(("authorization", f"Basic {TOKEN_A}"),),
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # health stays open for probes
        assert _health(ch) == health_pb2.HealthCheckResponse.SERVING


def test_token_file_errors_are_clear(tmp_path):
    bad = tmp_path / "tokens"
    bad.write_text("no-colon-here\n")
    with pytest.raises(ValueError, match="tenant:token"):
        load_tokens(str(bad), env="")
    with pytest.raises(ValueError, match="at least 16"):
        load_tokens("", env="team:short")


def test_rate_limit_answers_resource_exhausted_with_retry_after_and_keeps_the_sequence():
    settings = Settings(grpc_port=0, metrics_port=-1, stream_rate=1000, rate_burst_seconds=1.0)
    with ServerThread(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)
        stub.CreateStream(_cfg("limited"))
        rows = 800
        y = np.zeros(rows, np.int32)
        s = np.full(rows, 0.3, np.float32)
        reqs = [
            pb.IngestRequest(
                stream="limited", producer_id="p", sequence=q, scores=tensor(s), labels=tensor(y)
            )
            for q in (1, 2)
        ]
        results = [r for resp in stub.Ingest(iter(reqs), timeout=10) for r in resp.results]
        assert results[0].status == ingest_pb2.BATCH_STATUS_ACCEPTED
        limited = results[1]
        assert limited.status == ingest_pb2.BATCH_STATUS_REJECTED
        assert limited.error_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        wait = limited.retry_after.ToNanoseconds() / 1e9
        assert 0.4 < wait <= 1.0 and "retry after" in limited.error_message
        assert limited.expected_sequence == 2  # not consumed: resend with the same number
        import time

        time.sleep(wait + 0.05)
        again = [r for resp in stub.Ingest(iter(reqs[1:]), timeout=10) for r in resp.results]
        assert again[0].status == ingest_pb2.BATCH_STATUS_ACCEPTED


def _scrape(url: str, headers: dict | None = None, context=None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_require_the_bearer_token_when_one_is_set(tmp_path):
    tokens = tmp_path / "metrics-tokens"
    tokens.write_text("# scrapers\nscrape-token-0123456789\n")
    settings = Settings(grpc_port=0, metrics_port=0, metrics_token_file=str(tokens))
    with ServerThread(settings) as srv:
        rpc.EvalstreamServiceStub(grpc.insecure_channel(srv.target)).CreateStream(_cfg("m"))
        url = f"http://127.0.0.1:{srv.metrics_port}/metrics"
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            status, body = _scrape(url, headers)
            assert status == 401 and "evalstream_" not in body
        status, body = _scrape(url, {"Authorization": "Bearer scrape-token-0123456789"})
        assert status == 200
        assert 'evalstream_samples_total{stream="m",tenant=""} 0.0' in body


def test_metrics_beyond_loopback_without_protection_are_refused():
    import asyncio

    from evalstream_server.server import start_server

    settings = Settings(grpc_port=0, metrics_host="0.0.0.0", metrics_port=0)
    with pytest.raises(ValueError, match="--metrics-host 0.0.0.0 is reachable beyond"):
        asyncio.run(start_server(settings))


def test_metrics_over_tls_require_a_client_certificate_signed_by_the_ca(certs):
    import ssl

    settings = Settings(
        grpc_port=0,
        metrics_host="0.0.0.0",  # allowed: client certificates protect it
        metrics_port=0,
        metrics_tls_cert=str(certs / "server.pem"),
        metrics_tls_key=str(certs / "server.key"),
        metrics_client_ca=str(certs / "ca.pem"),
    )
    with ServerThread(settings) as srv:
        url = f"https://127.0.0.1:{srv.metrics_port}/metrics"
        good = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        good.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
        assert _scrape(url, context=good)[0] == 200
        for key in (None, "rogue"):
            bad = ssl.create_default_context(cafile=str(certs / "ca.pem"))
            if key:
                bad.load_cert_chain(str(certs / f"{key}.pem"), str(certs / f"{key}.key"))
            with pytest.raises(OSError):  # the handshake is refused (URLError, SSLError, reset)
                _scrape(url, context=bad)


def test_a_key_that_does_not_match_its_certificate_is_named_with_both_files(certs):
    import asyncio

    from evalstream_server.server import start_server

    cert, key = certs / "server.pem", certs / "client.key"
    settings = Settings(grpc_port=0, metrics_port=-1, tls_cert=str(cert), tls_key=str(key))
    with pytest.raises(ValueError) as info:
        asyncio.run(start_server(settings))
    assert str(info.value) == (
        f"tls: the private key --tls-key {key} does not match the certificate --tls-cert {cert}; "
        "expected the key the certificate was issued for"
    )


def test_tokens_in_a_file_expire_and_reload_keeps_the_old_set_on_a_bad_file(tmp_path):
    from evalstream_server.auth import Authenticator, AuthError

    path = tmp_path / "tokens"
    path.write_text(f"team-a:{TOKEN_A} expires=2030-01-01T00:00:00Z\nteam-b:{TOKEN_B}\n")
    now = [1893455999.0]  # one second before 2030-01-01T00:00:00Z
    auth = Authenticator(load_tokens(str(path), env=""), lambda: load_tokens(str(path), env=""),
                         clock=lambda: now[0])  # fmt: skip
    meta_a = (("authorization", f"Bearer {TOKEN_A}"),)
    assert auth.tenant(meta_a) == "team-a"
    now[0] += 1
    with pytest.raises(AuthError) as info:
        auth.tenant(meta_a)
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert (
        str(info.value)
        == "authorization: token expired at 2030-01-01T00:00:00+00:00; ask for a new one"
    )
    assert auth.tenant((("authorization", f"Bearer {TOKEN_B}"),)) == "team-b"  # no expiry
    path.write_text(f"team-b:{TOKEN_B} expires=soon\n")
    with pytest.raises(ValueError, match=r"tokens:1: expected 'expires=<ISO 8601 time"):
        auth.reload()
    assert auth.tenant((("authorization", f"Bearer {TOKEN_B}"),)) == "team-b"  # kept
    path.write_text(f"team-b:{TOKEN_B} expires=2030-01-01T00:00:00\n")  # no zone
    with pytest.raises(ValueError, match="with a zone"):
        auth.reload()

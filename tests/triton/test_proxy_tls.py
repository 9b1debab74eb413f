"""TLS on the proxy's three connections: to evalstream (``--target-ca``, mutual with
``--target-cert``/``--target-key``), served to applications (``--tls-cert``/``--tls-key``,
mutual with ``--tls-client-ca``), and to the inference server (``--triton-ca``...), the last
through a second proxy serving TLS in front of MLServer (MLServer here runs plaintext)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from evalstream import EvalClient, EvalstreamError
from evalstream_server.cli import main
from evalstream_server.proxy import (
    ClientTLS,
    ProxySettings,
    ProxyThread,
    ServerTLS,
    parse_routes,
    row_ids,
)
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from tritonclient.utils import InferenceServerException

EVAL_PATH = Path(__file__).resolve().parents[2] / "deploy/triton/digits_eval.npz"
ROWS = 5


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    with np.load(EVAL_PATH) as data:
        return data["inputs"][:ROWS]


class Sink:
    """Keeps the rows ``log_predictions`` would send."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def __call__(self, stream, ids, y_score, timestamp=None):
        self.ids += list(ids)


def _settings(triton: str, target: str = "127.0.0.1:1", **kw) -> ProxySettings:
    return ProxySettings(
        triton=triton,
        target=target,
        routes=parse_routes([kw.pop("model", "digits_cnn=digits")]),
        listen="127.0.0.1:0",
        metrics_port=-1,
        flush_timeout=5.0,
        **kw,
    )


def _logits(x: np.ndarray, url: str, request_id: str = "", **tls) -> np.ndarray:
    client = grpcclient.InferenceServerClient(url, **tls)
    try:
        tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("digits_cnn", [tensor], request_id=request_id, client_timeout=10)
        return result.as_numpy("logits")
    finally:
        client.close()


@pytest.fixture(scope="module")
def direct(mlserver, x) -> np.ndarray:
    return _logits(x, mlserver.grpc_url)


# -- proxy -> evalstream ------------------------------------------------------------------------


def _evalstream(pki, client_ca: bool = False) -> ServerThread:
    settings = Settings(
        host="127.0.0.1",
        grpc_port=0,
        metrics_port=-1,
        tls_cert=pki.path("server.crt"),
        tls_key=pki.path("server.key"),
        tls_client_ca=pki.path("ca.crt") if client_ca else "",
    )
    return ServerThread(settings).start()


def test_proxy_to_evalstream_over_tls_with_a_ca(mlserver, pki, x, direct) -> None:
    server = _evalstream(pki)
    try:
        tls = ClientTLS("target", ca=pki.path("ca.crt"))
        settings = _settings(
            mlserver.grpc_url, server.target, model="digits_cnn=tls", create=True, target_tls=tls
        )
        proxy = ProxyThread(settings).start()  # the real sink: EvalClient over TLS
        try:
            np.testing.assert_array_equal(_logits(x, proxy.address, "t-1"), direct)
        finally:
            assert proxy.stop() == 0  # every row acknowledged over TLS
        with EvalClient(server.target, tls={"root_certificates": pki.read("ca.crt")}) as client:
            assert client.get_stream("tls").task == "multiclass"  # created by --create
            labels = direct.argmax(axis=1)
            assert client.log_labels("tls", row_ids("t-1", ROWS), labels).matched == ROWS
            assert client.report("tls").accuracy_score() == 1.0
        # A CA that did not sign evalstream's certificate: the start fails, nothing is served.
        rogue = ClientTLS("target", ca=pki.path("rogue.crt"))
        with pytest.raises(EvalstreamError):
            ProxyThread(
                _settings(mlserver.grpc_url, server.target, create=True, target_tls=rogue)
            ).start()
    finally:
        server.stop()


def test_proxy_to_evalstream_over_mutual_tls(mlserver, pki) -> None:
    server = _evalstream(pki, client_ca=True)
    try:
        mutual = ClientTLS(
            "target", pki.path("ca.crt"), pki.path("client.crt"), pki.path("client.key")
        )
        settings = _settings(
            mlserver.grpc_url, server.target, model="digits_cnn=mtls", create=True,
            target_tls=mutual,
        )  # fmt: skip
        ProxyThread(settings).start().stop()
        ca = {"root_certificates": pki.read("ca.crt")}
        tls = {
            **ca,
            "certificate_chain": pki.read("client.crt"),
            "private_key": pki.read("client.key"),
        }
        with EvalClient(server.target, tls=tls) as client:
            assert client.get_stream("mtls").classes == tuple(str(i) for i in range(10))
        # Without a client certificate evalstream refuses the connection.
        one_way = ClientTLS("target", ca=pki.path("ca.crt"))
        with pytest.raises(EvalstreamError):
            ProxyThread(
                _settings(mlserver.grpc_url, server.target, create=True, target_tls=one_way)
            ).start()
    finally:
        server.stop()


# -- applications -> proxy ------------------------------------------------------------------------


def test_serving_tls_on_listen(mlserver, pki, x, direct) -> None:
    sink = Sink()
    listen = ServerTLS(pki.path("server.crt"), pki.path("server.key"))
    proxy = ProxyThread(_settings(mlserver.grpc_url, listen_tls=listen), sink=sink).start()
    try:
        got = _logits(x, proxy.address, "s-1", ssl=True, root_certificates=pki.path("ca.crt"))
        np.testing.assert_array_equal(got, direct)
        with pytest.raises(InferenceServerException):  # plaintext to a TLS port
            _logits(x, proxy.address)
    finally:
        assert proxy.stop() == 0
    assert sink.ids == row_ids("s-1", ROWS)


def test_mutual_tls_on_listen(mlserver, pki, x, direct) -> None:
    listen = ServerTLS(pki.path("server.crt"), pki.path("server.key"), pki.path("ca.crt"))
    proxy = ProxyThread(_settings(mlserver.grpc_url, listen_tls=listen), sink=Sink()).start()
    ca = pki.path("ca.crt")
    try:
        got = _logits(
            x, proxy.address, ssl=True, root_certificates=ca,
            private_key=pki.path("client.key"), certificate_chain=pki.path("client.crt"),
        )  # fmt: skip
        np.testing.assert_array_equal(got, direct)
        with pytest.raises(InferenceServerException):  # no client certificate
            _logits(x, proxy.address, ssl=True, root_certificates=ca)
        with pytest.raises(InferenceServerException):  # one the CA did not sign
            _logits(
                x, proxy.address, ssl=True, root_certificates=ca,
                private_key=pki.path("rogue.key"), certificate_chain=pki.path("rogue.crt"),
            )  # fmt: skip
    finally:
        proxy.stop()


# -- proxy -> inference server --------------------------------------------------------------------


def test_proxy_to_the_inference_server_over_tls(mlserver, pki, x, direct) -> None:
    """front (plaintext) -> tls_server (serves TLS) -> MLServer: the front's --triton-ca."""
    listen = ServerTLS(pki.path("server.crt"), pki.path("server.key"))
    tls_server = ProxyThread(
        _settings(mlserver.grpc_url, model="other=unused", listen_tls=listen), sink=Sink()
    ).start()
    evalstream = ServerThread(Settings(host="127.0.0.1", grpc_port=0, metrics_port=-1)).start()
    try:
        upstream = ClientTLS("triton", ca=pki.path("ca.crt"))
        sink = Sink()
        settings = _settings(
            tls_server.address, evalstream.target, model="digits_cnn=upstream-tls", create=True,
            triton_tls=upstream,
        )  # fmt: skip
        front = ProxyThread(settings, sink=sink).start()  # --create read the metadata over TLS
        try:
            np.testing.assert_array_equal(_logits(x, front.address, "u-1"), direct)
        finally:
            assert front.stop() == 0
        assert sink.ids == row_ids("u-1", ROWS)
        with EvalClient(evalstream.target) as client:
            assert client.get_stream("upstream-tls").task == "multiclass"
        # Plaintext to the TLS server: forwarded calls fail UNAVAILABLE, answered as errors.
        plain = ProxyThread(_settings(tls_server.address), sink=Sink()).start()
        try:
            with pytest.raises(InferenceServerException, match="UNAVAILABLE"):
                _logits(x, plain.address)
        finally:
            plain.stop()
    finally:
        evalstream.stop()
        tls_server.stop()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target-cert", "c.pem"], "--target-key: expected a file with --target-cert"),
        (["--triton-key", "k.pem"], "--triton-cert: expected a file with --triton-key"),
        (["--tls-client-ca", "ca.pem"], "--tls-client-ca: expected --tls-cert and --tls-key"),
        (["--target-ca", "/nonexistent.pem"], "--target-ca: expected a readable PEM file"),
        (["--tls-cert", "{pki}/server.ext", "--tls-key", "{pki}/server.key"], "a PEM file"),
    ],
)
def test_cli_refuses_bad_tls_options(argv, message, pki, capsys) -> None:
    argv = [a.replace("{pki}", str(pki.directory)) for a in argv]
    base = ["triton-proxy", "--triton", "127.0.0.1:1", "--model", "digits_cnn=d"]
    assert main([*base, *argv]) == 2
    assert message in capsys.readouterr().err

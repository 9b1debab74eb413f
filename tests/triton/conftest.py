"""Live KServe V2 inference servers for the Triton tests, both serving ``digits_cnn``.

* ``triton``: NVIDIA's own Triton Inference Server 2.51, from PyPI's ``nvidia-pytriton`` wheel,
  on the CPU (``tests/triton/realtriton.py``, DESIGN.md §6), serving the Python-backend variant of
  the model (``deploy/triton/python_repository``) beside a model that fails to load, with
  ``--strict-readiness=true``: the server is "not ready" while ``digits_cnn`` is, as in a real
  repository where one model is broken.
* ``mlserver``: MLServer 1.7.1, the second V2 server, serving the onnxruntime repository
  ``deploy/triton/model_repository/digits_cnn`` through ``deploy/mlserver/onnx_runtime.py``.
* ``v2server``: each of the two in turn, for the tests that must hold on both.

Both run from venvs under ``.tools`` that ``bash scripts/install-tools.sh`` creates.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from evalstream.errors import UnavailableError

ROOT = Path(__file__).resolve().parents[2]
MLSERVER_VENV = ROOT / ".tools/mlserver-venv"
MODEL_DIR = ROOT / "deploy/triton/model_repository/digits_cnn"
EVAL_PATH = ROOT / "deploy/triton/digits_eval.npz"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class V2Server:
    """A running V2-protocol inference server.

    Attributes
    ----------
    grpc_url : str
        ``"127.0.0.1:PORT"``, as ``tritonclient.grpc.InferenceServerClient(url=...)`` takes it.
    http_url : str
        ``"http://127.0.0.1:PORT"`` (MLServer's REST endpoint; V2 over HTTP).
    model_name : str
        The served model, ``"digits_cnn"``.
    model_dir : Path
        The Triton model directory it serves (``config.pbtxt``, ``1/model.onnx``).
    python : Path
        The MLServer venv's interpreter, which has onnxruntime.
    log_path : Path
        The server's combined stdout and stderr.
    kind : {"mlserver", "triton"}
        Which server it is, for the few answers that differ (Triton serves ``ModelConfig``, so
        ``max_batch_size`` is known; its error texts are its own).
    """

    grpc_url: str
    http_url: str
    model_name: str
    model_dir: Path
    python: Path
    log_path: Path
    kind: str = "mlserver"


def _load_write_settings():
    # deploy/ is not a package: load the helper by path.
    path = ROOT / "deploy/mlserver/write_settings.py"
    spec = importlib.util.spec_from_file_location("_evalstream_mlserver_settings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_settings


def free_port() -> int:
    """A loopback port nothing listens on now (for servers the tests start and dead ends)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _ready(url: str, model: str) -> bool:
    # A fresh channel per probe: a reused one backs off (up to minutes) after refused connects.
    client = grpcclient.InferenceServerClient(url)
    try:
        return client.is_server_live(client_timeout=2) and client.is_model_ready(
            model, client_timeout=2
        )
    except Exception:  # not listening yet, or the model still loading
        return False
    finally:
        client.close()


def _wait_ready(proc: subprocess.Popen, url: str, model: str) -> str | None:
    """Poll until the server is live and the model ready; say why not otherwise."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode} before {model!r} was ready"
        if _ready(url, model):
            return None
        time.sleep(0.2)
    return f"did not report {model!r} ready within {START_TIMEOUT_S:.0f} s"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it and its children), SIGKILL after a timeout."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:  # children that outlived their parent are still in its group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _start(settings_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str, str]:
    grpc_port, http_port = free_port(), free_port()
    _load_write_settings()(
        settings_dir, grpc_port=grpc_port, http_port=http_port, model_dir=MODEL_DIR
    )
    # MLSERVER_* variables would override settings.json (pydantic settings): drop them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER")}
    env["PYTHONUNBUFFERED"] = "1"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(MLSERVER_VENV / "bin/mlserver"), "start", str(settings_dir)],
            cwd=settings_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so _stop reaches its children
        )
    return proc, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"


@pytest.fixture(scope="session")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[V2Server]:
    """Start MLServer on free loopback ports, wait until ``digits_cnn`` is ready, stop it after."""
    if not (MLSERVER_VENV / "bin/mlserver").is_file():
        pytest.fail(
            f"MLServer is not installed ({MLSERVER_VENV.relative_to(ROOT)}/bin/mlserver is "
            "missing): run `bash scripts/install-tools.sh`",
            pytrace=False,
        )
    settings_dir = tmp_path_factory.mktemp("mlserver")
    log_path = settings_dir / "mlserver.log"
    # Ports are picked free, then bound by MLServer: retry if another process took one between.
    for attempt in range(3):
        proc, grpc_url, http_url = _start(settings_dir, log_path)
        failure = _wait_ready(proc, grpc_url, "digits_cnn")
        if failure is None:
            break
        _stop(proc)
        if "address already in use" in _log_tail(log_path).lower() and attempt < 2:
            continue
        pytest.fail(f"MLServer {failure}; log {log_path}:\n{_log_tail(log_path)}", pytrace=False)
    try:
        yield V2Server(
            grpc_url=grpc_url,
            http_url=http_url,
            model_name="digits_cnn",
            model_dir=MODEL_DIR,
            python=MLSERVER_VENV / "bin/python",
            log_path=log_path,
        )
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[V2Server]:
    """NVIDIA Triton on free loopback ports: ``digits_cnn`` ready, the server not ready (a
    second model fails to load on purpose, ``--strict-readiness=true``)."""
    from . import realtriton

    if not realtriton.installed():
        pytest.fail(
            "Triton is not installed (.tools/triton is missing): "
            "run `bash scripts/install-tools.sh`",
            pytrace=False,
        )
    server = realtriton.start(tmp_path_factory.mktemp("triton"), broken=True)
    try:
        yield V2Server(
            grpc_url=server.grpc_url,
            http_url=server.http_url,
            model_name=server.model_name,
            model_dir=server.repository / server.model_name,
            python=realtriton.TRITON_VENV / "bin/python",
            log_path=server.log_path,
            kind="triton",
        )
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["triton", "mlserver"])
def v2server(request: pytest.FixtureRequest) -> V2Server:
    """Triton, then MLServer: for what must hold on every V2 server."""
    return request.getfixturevalue(request.param)


@dataclass(frozen=True)
class PKI:
    """Throwaway certificates in ``directory`` (PEM): ``ca.crt`` signs ``server.crt`` (for
    127.0.0.1 and localhost) and ``client.crt``; ``rogue.crt`` is self-signed (trusted by none).
    Each ``*.crt`` has its ``*.key``."""

    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def read(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()


def make_pki(directory: Path) -> PKI:
    """The CA, server and client certificates, made with ``openssl`` as
    ``tests/redis/conftest.py::make_tls_certs`` makes its CA and server certificate (that module
    skips itself without redis-server, so it is not imported here), plus a client certificate
    for mutual TLS and a self-signed rogue one."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (directory / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    new_key = ["req", "-new", "-nodes", "-newkey", "rsa:2048"]
    steps = [
        ["req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "ca.key"]
        + ["-out", "ca.crt", "-days", "2", "-subj", "/CN=evalstream proxy test CA"],
        new_key + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key"]
        + ["-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext"],
        new_key + ["-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=proxy client"],
        ["x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key"]
        + ["-CAcreateserial", "-out", "client.crt", "-days", "2", "-extfile", "client.ext"],
        ["req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "rogue.key"]
        + ["-out", "rogue.crt", "-days", "2", "-subj", "/CN=rogue"],
    ]
    for step in steps:
        subprocess.run([openssl, *step], cwd=directory, check=True, capture_output=True, timeout=60)
    return PKI(directory)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that run the CLI in-process: ``configure_logging`` points the ``evalstream``
    loggers at this test's captured stderr, which is closed after it; put them back."""
    import logging

    logger = logging.getLogger("evalstream")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def _evalstream_server():
    from evalstream_server.server import ServerThread
    from evalstream_server.settings import Settings

    return ServerThread(Settings(host="127.0.0.1", grpc_port=0, metrics_port=-1)).start()


@pytest.fixture(scope="module")
def evalstream_per_v2server(v2server):
    """An evalstream server per V2 server and module, so each server's run starts empty (a
    module whose tests take ``v2server`` makes it its ``evalstream_target``)."""
    server = _evalstream_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def evalstream_target():
    """An in-process evalstream server on a free loopback port, one per test module."""
    server = _evalstream_server()
    try:
        yield server
    finally:
        server.stop()


WAIT_S = 10.0


def wait_for(predicate, what: str, timeout: float = WAIT_S) -> None:
    """Poll ``predicate`` every 10 ms until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"not within {timeout} s: {what}")


class FakeSink:
    """Keeps what ``log_predictions`` would send; ``down`` plays an unreachable evalstream."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], np.ndarray, float]] = []
        self.down = False
        self.failures = 0
        self.lock = threading.Lock()

    def __call__(self, stream, ids, y_score, timestamp=None):
        if self.down:
            self.failures += 1
            raise UnavailableError("UNAVAILABLE", "failed to connect to all addresses")
        with self.lock:
            self.calls.append((stream, list(ids), np.array(y_score), timestamp))

    @property
    def ids(self) -> list[str]:
        with self.lock:
            return [i for call in self.calls for i in call[1]]

    def scores(self) -> np.ndarray:
        with self.lock:
            return np.concatenate([call[2] for call in self.calls])


def start_proxy(triton: str, sink, models=("digits_cnn=digits",), **kw):
    """A running ``ProxyThread`` in front of ``triton`` recording into ``sink`` (a ``FakeSink``),
    its evalstream target unreachable (the sink stands in for it)."""
    from evalstream_server.proxy import ProxySettings, ProxyThread, parse_routes

    settings = ProxySettings(
        triton=triton,
        target="127.0.0.1:1",
        routes=parse_routes(models),
        listen="127.0.0.1:0",
        metrics_port=-1,
        flush_timeout=kw.pop("flush_timeout", 5.0),
        **kw,
    )
    return ProxyThread(settings, sink=sink).start()

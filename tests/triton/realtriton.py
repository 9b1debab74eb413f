"""NVIDIA's own Triton Inference Server for the tests, started from ``.tools/triton``.

``bash scripts/install-tools.sh`` (``scripts/tools.d/triton.sh``) installs the ``tritonserver``
binary of PyPI's ``nvidia-pytriton`` wheel with its Python backend; it serves the digits CNN of
``deploy/triton/python_repository`` (a Python-backend ``model.py`` running the ONNX file with
onnxruntime: the wheel has no onnxruntime backend). What it needs to start on a CPU-only machine
is DESIGN.md §6: the wheel's libraries and the interpreter's ``LIBDIR`` on ``LD_LIBRARY_PATH``,
the tools venv first on ``PATH`` (the backend stub takes its Python from there), a shared-memory
prefix of its own per server, no GPU metrics and no pinned memory, loopback ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import tritonclient.grpc as grpcclient

ROOT = Path(__file__).resolve().parents[2]
TRITON_HOME = ROOT / ".tools/triton"
TRITON_VENV = ROOT / ".tools/triton-venv"
PYTHON_REPOSITORY = ROOT / "deploy/triton/python_repository"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

# A model whose initialize() fails: Triton loads the rest and (with --strict-readiness=true)
# reports the server not ready while it serves the ready models.
_BROKEN_CONFIG = """name: "broken"
backend: "python"
max_batch_size: 8
input [ { name: "x", data_type: TYPE_FP32, dims: [ 2 ] } ]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 2 ] } ]
"""
_BROKEN_MODEL = """class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("this model fails to load on purpose (evalstream tests)")
"""


def installed() -> bool:
    return (TRITON_HOME / "bin/tritonserver").exists() and (TRITON_VENV / ".installed").is_file()


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_repository(directory: Path, *, broken: bool = False) -> Path:
    """A model repository in ``directory``: the digits CNN (Python backend), and with
    ``broken`` a second model that fails to load."""
    repo = directory / "models"
    shutil.copytree(PYTHON_REPOSITORY, repo, symlinks=False)  # the model.onnx link, resolved
    if broken:
        (repo / "broken/1").mkdir(parents=True)
        (repo / "broken/config.pbtxt").write_text(_BROKEN_CONFIG)
        (repo / "broken/1/model.py").write_text(_BROKEN_MODEL)
    return repo


@dataclass
class RealTriton:
    """A running ``tritonserver``; ``grpc_url`` is ``127.0.0.1:PORT``."""

    grpc_url: str
    http_url: str
    repository: Path
    log_path: Path
    argv: list[str]
    env: dict[str, str]
    model_name: str = "digits_cnn"
    proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        """Start the process (again), appending to the same log."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() reaches the backend stubs
            )

    def log_tail(self, n: int = 40) -> str:
        return _tail(self.log_path, n)

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator stops it (Triton unloads its models, then exits)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                return
        try:  # the backend stubs are children in its group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def restart(self) -> str | None:
        """Stop it and start it again on the same ports and repository; None once ready, else
        why not."""
        self.stop()
        self.spawn()
        return wait_ready(self)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(TRITON_HOME / "lib"), libdir, env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["PATH"] = os.pathsep.join((str(TRITON_VENV / "bin"), env.get("PATH", "")))
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def start(
    directory: Path,
    *,
    broken: bool = False,
    explicit: bool = False,
    wait_model: bool = True,
) -> RealTriton:
    """Start Triton on free loopback ports serving ``make_repository(directory, broken=...)``;
    wait until it answers and ``digits_cnn`` is ready (``wait_model``). ``explicit``: model
    control mode ``explicit`` with ``digits_cnn`` loaded at start (the tests load and unload)."""
    repo = make_repository(directory, broken=broken)
    log_path = directory / "tritonserver.log"
    last = ""
    for _ in range(3):  # a picked port can be taken before Triton binds it
        grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
        argv = [
            str(TRITON_HOME / "bin/tritonserver"),
            f"--model-repository={repo}",
            f"--backend-directory={TRITON_HOME / 'backends'}",
            f"--backend-config=python,shm-region-prefix-name=evs{uuid.uuid4().hex[:12]}",
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            "--strict-readiness=true",
            "--exit-on-error=false",  # keep serving the ready models when one fails to load
            "--exit-timeout-secs=10",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={grpc_port}",
            "--http-address=127.0.0.1",
            f"--http-port={http_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={metrics_port}",
            "--log-verbose=0",
        ]
        if explicit:
            argv += ["--model-control-mode=explicit", "--load-model=digits_cnn"]
        server = RealTriton(
            grpc_url=f"127.0.0.1:{grpc_port}",
            http_url=f"http://127.0.0.1:{http_port}",
            repository=repo,
            log_path=log_path,
            argv=argv,
            env=_env(),
        )
        server.spawn()
        failure = wait_ready(server, wait_model=wait_model)
        if failure is None:
            return server
        last = failure
        server.stop()
        if "address already in use" not in server.log_tail().lower():
            break
    raise RuntimeError(f"tritonserver {last}; log {log_path}:\n{_tail(log_path)}")


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def wait_ready(server: RealTriton, *, wait_model: bool = True) -> str | None:
    """Poll until Triton is live (and ``digits_cnn`` ready); say why not otherwise."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc is None or server.proc.poll() is not None:
            code = None if server.proc is None else server.proc.returncode
            return f"exited with code {code} before it was ready"
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            if client.is_server_live(client_timeout=2) and (
                not wait_model or client.is_model_ready(server.model_name, client_timeout=2)
            ):
                return None
        except Exception:  # not listening yet
            pass
        finally:
            client.close()
        time.sleep(0.2)
    return f"did not report {server.model_name!r} ready within {START_TIMEOUT_S:.0f} s"

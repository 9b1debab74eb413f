"""The two distributions, built as wheels with ``python -m build`` and installed into a clean
virtual environment: the client (``evalstream-client``) brings grpcio, protobuf and numpy only,
imports and logs to a live server without tritonclient, redis or prometheus-client; the server
(``evalstream``) depends on it and does not ship the ``evalstream`` package a second time."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DEPS = {"grpcio", "protobuf", "numpy"}

pytestmark = pytest.mark.slow


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _wheel(project: Path, dist: Path) -> Path:
    _run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(project),
        ]
    )
    (wheel,) = dist.glob("*.whl")
    return wheel


def _requires(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip()


@pytest.fixture(scope="module")
def client_wheel(tmp_path_factory) -> Path:
    return _wheel(ROOT / "client", tmp_path_factory.mktemp("client-dist"))


def test_the_client_wheel_requires_grpcio_protobuf_numpy_only(client_wheel):
    required = [r for r in _requires(client_wheel) if "extra ==" not in r]
    assert {_name(r) for r in required} == CLIENT_DEPS
    # the figures of Report._repr_html_ are an extra: pip install 'evalstream-client[plots]'
    extras = [r for r in _requires(client_wheel) if "extra ==" in r]
    assert {(_name(r), r.split("extra ==")[1].strip(" '\"")) for r in extras} == {
        ("matplotlib", "plots")
    }
    assert client_wheel.name.endswith("-py3-none-any.whl")  # pure Python: no compiler needed
    with zipfile.ZipFile(client_wheel) as z:
        names = z.namelist()
    assert "evalstream/v1/report.schema.json" in names and "evalstream/py.typed" in names
    assert not [n for n in names if n.startswith("evalstream_server/")]


def test_the_server_wheel_depends_on_the_client_and_ships_the_service_only(tmp_path):
    wheel = _wheel(ROOT, tmp_path)
    assert "evalstream-client==0.1.0" in _requires(wheel)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert any(n.startswith("evalstream_server/") for n in names)
    assert not [n for n in names if n.startswith("evalstream/")]


_SCRIPT = """
import importlib.util, json, sys
import numpy as np
from evalstream import EvalClient
absent = [m for m in ("tritonclient", "redis", "prometheus_client", "evalstream_server")
          if importlib.util.find_spec(m) is not None]
data = np.load(sys.argv[2])
client = EvalClient(sys.argv[1])
client.create_stream("wheel", task="binary", classes=["ok", "bad"], resolution="exact")
client.log("wheel", data["y"], data["p"])
report = client.report("wheel")
try:
    client.create_stream("bad", task="binary", classes=["ok", "bad"], windows=["5x"])
except ValueError as exc:  # InvalidArgumentError, its google.rpc.Status read without googleapis
    field = exc.field_error.field
print(json.dumps({"present": absent, "n": report.n_samples, "auc": report.roc_auc_score(),
                  "field": field}))
"""


def test_the_client_installs_alone_and_logs_to_a_server(client_wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(client_wheel)])
    listed = json.loads(_run([py, "-m", "pip", "list", "--format", "json"]).stdout)
    installed = {p["name"].lower().replace("_", "-") for p in listed} - {"pip", "setuptools"}
    shown = _run([py, "-m", "pip", "show", *sorted(CLIENT_DEPS)]).stdout.splitlines()
    theirs = {  # what grpcio, protobuf and numpy bring themselves (grpcio: typing-extensions)
        name.strip().lower()
        for line in shown
        if line.startswith("Requires:")
        for name in line.split(":", 1)[1].split(",")
        if name.strip()
    }
    assert installed == {"evalstream-client", *CLIENT_DEPS, *theirs}, installed

    rng = np.random.default_rng(5)
    y = (rng.random(3000) < 0.2).astype(int)
    p = np.clip(0.3 * y + rng.random(3000) * 0.7, 0, 1).astype(np.float32)
    np.savez(tmp_path / "data.npz", y=y, p=p)
    server = ServerThread(Settings(host="127.0.0.1", grpc_port=0, metrics_port=-1)).start()
    try:
        run = _run([py, "-c", _SCRIPT, server.target, str(tmp_path / "data.npz")], cwd=tmp_path)
    finally:
        server.stop()
    out = json.loads(run.stdout)
    assert out["present"] == []
    assert out["field"] == "config.windows"
    assert out["n"] == 3000
    assert out["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)

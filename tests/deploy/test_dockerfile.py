"""The Dockerfile: hadolint-clean, pinned, multi-stage, non-root, and a health check that works.

No container engine exists in CI, so the image is never built here; these checks are what can be
verified without one. The HEALTHCHECK one-liner is run for real against a gRPC health server.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")


def _one(dockerfile: list[tuple[str, str]], instruction: str) -> str:
    values = [args for ins, args in dockerfile if ins == instruction]
    assert len(values) == 1, f"expected one {instruction}, found {values}"
    return values[0]


def test_hadolint_is_clean(hadolint, run_tool):
    run_tool(hadolint, "--no-color", "--failure-threshold", "info", REPO / "Dockerfile")


def test_base_image_is_pinned_and_build_is_multi_stage(dockerfile):
    args = dict(a.split("=", 1) for ins, a in dockerfile if ins == "ARG" and "=" in a)
    assert PINNED_PYTHON.match(args["PYTHON_IMAGE"]), args
    stages = [a for ins, a in dockerfile if ins == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    runs = "\n".join(a for ins, a in dockerfile if ins == "RUN")
    # Installed the way the Makefile installs it, with every dependency pinned.
    assert re.search(r"pip install .*-c constraints\.txt \./client \.$", runs, re.M), runs
    copies = [a for ins, a in dockerfile if ins == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies


def test_runtime_user_ports_entrypoint_and_data_volume(dockerfile):
    user = _one(dockerfile, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user
    assert set(_one(dockerfile, "EXPOSE").split()) == {"50051", "9464"}
    assert json.loads(_one(dockerfile, "ENTRYPOINT")) == ["evalstream"]
    cmd = json.loads(_one(dockerfile, "CMD"))
    assert cmd[:3] == ["serve", "--host", "0.0.0.0"]
    assert json.loads(_one(dockerfile, "VOLUME")) == ["/var/lib/evalstream"]
    assert cmd[cmd.index("--data-dir") + 1] == "/var/lib/evalstream"


@pytest.fixture(scope="module")
def healthcheck_code(dockerfile) -> str:
    options, _, command = _one(dockerfile, "HEALTHCHECK").partition("CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"], argv
    assert "--timeout=" in options and "--start-period=" in options
    assert "127.0.0.1:50051" in argv[2]
    return argv[2]


@pytest.fixture
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(grace=None)


def _run_healthcheck(code: str, port: int) -> subprocess.CompletedProcess[str]:
    code = code.replace("127.0.0.1:50051", f"127.0.0.1:{port}")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )


def test_healthcheck_passes_only_while_serving(healthcheck_code, health_server):
    servicer, port = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    serving = _run_healthcheck(healthcheck_code, port)
    assert serving.returncode == 0, serving.stderr
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert _run_healthcheck(healthcheck_code, port).returncode != 0


def test_healthcheck_fails_without_a_server(healthcheck_code):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert _run_healthcheck(healthcheck_code, port).returncode != 0


def test_dockerignore_keeps_only_what_the_build_copies(dockerfile):
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allowlist: exclude everything, then re-include"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = []
    for ins, args in dockerfile:
        if ins == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    assert {s.rstrip("/") for s in sources} == included
    for source in sources:
        assert (REPO / source).exists(), source

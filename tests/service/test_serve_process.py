"""``evalstream serve`` as a real process: env and flags, health, SIGTERM drains and exits 0."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import yaml
from evalstream_server.cli import build_parser
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_serving(target: str, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < end:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise AssertionError(f"server at {target} never became SERVING")


def test_serve_reads_env_and_flags_and_stops_gracefully_on_sigterm(tmp_path):
    grpc_port, metrics_port = _free_port(), _free_port()
    env = dict(os.environ, EVALSTREAM_GRPC_PORT=str(grpc_port), EVALSTREAM_LOG_FORMAT="json")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evalstream_server.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--metrics-port",
            str(metrics_port),
            "--data-dir",
            str(tmp_path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_serving(f"127.0.0.1:{grpc_port}")
        import urllib.request

        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
        assert body is not None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    msgs = [line["msg"] for line in lines]
    assert "serving" in msgs and "shutting down" in msgs and "server stopped" in msgs
    serving = next(line for line in lines if line["msg"] == "serving")
    assert serving["grpc"] == f"127.0.0.1:{grpc_port}"


def test_container_command_lines_parse_with_the_real_cli():
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd_line = next(line for line in dockerfile.splitlines() if line.startswith("CMD ["))
    args = json.loads(cmd_line[len("CMD ") :])
    ns = build_parser().parse_args(args)
    assert ns.grpc_port == 50051 and ns.metrics_host == "0.0.0.0"
    sts = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy/k8s/statefulset.yaml").read_text())
        if d and d.get("kind") == "StatefulSet"
    )
    container = sts["spec"]["template"]["spec"]["containers"][0]
    k8s_args = [a if not a.startswith("$(") else "1" for a in container["args"]]
    build_parser().parse_args(k8s_args)
    assert "--grpc-port" in container["args"]


@pytest.mark.parametrize("bad", ["--grpc-port=abc", "--log-format=xml"])
def test_bad_flags_fail_fast(bad):
    proc = subprocess.run(
        [sys.executable, "-m", "evalstream_server.cli", "serve", bad],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "error" in proc.stderr, shlex.join(proc.args)


def test_refuses_to_start_on_the_pure_python_protobuf_backend():
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalstream_server.cli",
            "serve",
            "--grpc-port",
            "0",
            "--metrics-port",
            "-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "pure-Python backend" in proc.stderr and "Traceback" not in proc.stderr


def test_sighup_reloads_tokens_without_draining_calls_in_flight(tmp_path):
    """A token removed from the file stops working after SIGHUP; a call it opened before goes on
    (nothing is drained); the server keeps serving and still stops cleanly on SIGTERM."""
    import threading

    import numpy as np
    from evalstream.v1 import evalstream_service_pb2 as pb
    from evalstream.v1 import evalstream_service_pb2_grpc as rpc
    from evalstream.v1 import ingest_pb2, stream_pb2

    from .conftest import tensor

    token_a, token_b = "team-a-token-0123456789", "team-b-token-0123456789"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"team-a:{token_a}\nteam-b:{token_b}\n")
    scrape_tokens = tmp_path / "metrics-tokens"
    scrape_tokens.write_text("scrape-token-old-0123456789\n")
    port, metrics_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalstream_server.cli", "serve", "--grpc-port", str(port),
         "--metrics-port", str(metrics_port), "--metrics-token-file", str(scrape_tokens),
         "--token-file", str(tokens)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    meta = {t: (("authorization", f"Bearer {t}"),) for t in (token_a, token_b)}
    try:
        _wait_serving(f"127.0.0.1:{port}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = rpc.EvalstreamServiceStub(ch)
            config = stream_pb2.StreamConfig(
                name="s",
                task=stream_pb2.TASK_BINARY,
                score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
            )
            stub.CreateStream(pb.CreateStreamRequest(config=config), metadata=meta[token_b])
            y, p = np.array([0, 1], np.int32), np.array([0.2, 0.9], np.float32)
            second = threading.Event()

            def batches():
                for seq in (1, 2):
                    if seq == 2:
                        assert second.wait(30)
                    yield pb.IngestRequest(
                        stream="s", producer_id="p", sequence=seq, scores=tensor(p),
                        labels=tensor(y),
                    )  # fmt: skip

            in_flight = stub.Ingest(batches(), metadata=meta[token_b], timeout=60)
            first = next(in_flight)  # batch 1 acknowledged: the call is open
            assert first.results[0].status == ingest_pb2.BATCH_STATUS_ACCEPTED
            assert _scrape_status(metrics_port, "scrape-token-old-0123456789") == 200
            tokens.write_text(f"team-a:{token_a}\n")  # team B's token removed
            scrape_tokens.write_text("scrape-token-new-0123456789\n")  # the scrape token rotated
            proc.send_signal(signal.SIGHUP)
            end = time.monotonic() + 20
            while True:  # the reload is asynchronous: wait until B is refused
                try:
                    stub.ListStreams(pb.ListStreamsRequest(), metadata=meta[token_b], timeout=5)
                except grpc.RpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                    assert exc.details() == "authorization: unknown token"
                    break
                assert time.monotonic() < end, "token B still works after SIGHUP"
                time.sleep(0.05)
            second.set()  # the call B opened before the reload goes on
            results = [r for resp in in_flight for r in resp.results]
            assert [r.status for r in results] == [ingest_pb2.BATCH_STATUS_ACCEPTED]
            assert proc.poll() is None  # SIGHUP did not stop the server
            assert _scrape_status(metrics_port, "scrape-token-old-0123456789") == 401
            assert _scrape_status(metrics_port, "scrape-token-new-0123456789") == 200
            stub.ListStreams(pb.ListStreamsRequest(), metadata=meta[token_a], timeout=5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "tokens reloaded" in err


def _scrape_status(port: int, token: str) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)

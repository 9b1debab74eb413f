"""A real ``redis-server`` per test on a free loopback port and a temporary directory, replicas of
evalstream on it (in-process ``ServerThread``s or ``evalstream serve`` subprocesses), and the data
helpers the tests share. Every process a fixture starts is stopped by it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import redis
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import stream_pb2
from evalstream_server.engine import build_report
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..service.conftest import tensor

REDIS_SERVER = shutil.which("redis-server")
if REDIS_SERVER is None:
    pytest.skip(
        "redis-server is not installed (scripts/install-tools.sh installs it)",
        allow_module_level=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """``redis-server`` on 127.0.0.1, persistence off unless ``aof`` (then ``appendfsync``)."""

    def __init__(
        self, directory: Path, aof: bool = False, fsync: str = "always", tls: Path | None = None
    ) -> None:
        self.dir, self.aof, self.fsync, self.tls = directory, aof, fsync, tls
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls / 'ca.crt'}"
        return f"redis://127.0.0.1:{self.port}/0"

    def _tls_args(self) -> list[str]:
        """TLS only (``--port 0``), with the certificates of ``make_tls_certs`` in ``self.tls``."""
        if self.tls is None:
            return ["--port", str(self.port)]
        tls = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
        tls += ["--tls-cert-file", str(self.tls / "server.crt")]
        tls += ["--tls-key-file", str(self.tls / "server.key")]
        return tls + ["--tls-ca-cert-file", str(self.tls / "ca.crt")]

    def start(self) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [REDIS_SERVER, *self._tls_args(), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.dir), "--save", "", "--logfile", str(self.dir / "redis.log")]
        args += ["--appendonly", "yes" if self.aof else "no", "--appendfsync", self.fsync]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client(socket_connect_timeout=0.5)
        end = time.monotonic() + 15
        try:
            while time.monotonic() < end:
                try:
                    if client.ping():
                        return self
                except redis.exceptions.BusyLoadingError:
                    time.sleep(0.02)
                except redis.ConnectionError:
                    if self.proc.poll() is not None:
                        break
                    time.sleep(0.02)
        finally:
            client.close()
        log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
        raise AssertionError(f"redis-server did not start on port {self.port}:\n{log}")

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def client(self, **kw) -> redis.Redis:
        if self.tls is not None:
            kw.update(ssl=True, ssl_ca_certs=str(self.tls / "ca.crt"))
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)


def make_tls_certs(directory: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 (SAN IP:127.0.0.1) signed by it, made
    with ``openssl`` in ``directory``: ``ca.crt``, ``server.crt``, ``server.key``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    steps = [
        ["req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "ca.key"]
        + ["-out", "ca.crt", "-days", "2", "-subj", "/CN=evalstream test CA"],
        ["req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "server.key"]
        + ["-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key"]
        + ["-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext"],
    ]
    for step in steps:
        subprocess.run([openssl, *step], cwd=directory, check=True, capture_output=True, timeout=60)
    return directory


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def replica_settings(url: str, **kw) -> Settings:
    return Settings(host="127.0.0.1", grpc_port=0, metrics_port=-1, store=url, **kw)


@pytest.fixture
def replicas(redis_server):
    """Three in-process replicas on one Redis (flush interval 20 ms)."""
    url = redis_server.url + "?flush_interval=0.02"
    started = []
    try:
        for _ in range(3):
            started.append(ServerThread(replica_settings(url)).start())
        yield started
    finally:
        for srv in started:
            srv.stop()


class ReplicaProcess:
    """``evalstream serve --store URL`` as a subprocess (for kill -9)."""

    def __init__(self, url: str) -> None:
        self.url, self.port = url, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ReplicaProcess:
        cmd = [sys.executable, "-m", "evalstream_server.cli", "serve", "--host", "127.0.0.1"]
        cmd += ["--grpc-port", str(self.port), "--metrics-port", "-1", "--store", self.url]
        cmd += ["--log-level", "WARNING"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 30
        with grpc.insecure_channel(self.target) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < end:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return self
                except grpc.RpcError:
                    if self.proc.poll() is not None:
                        break
                    time.sleep(0.05)
        raise AssertionError("replica did not start")

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()


# -- data and RPC helpers ---------------------------------------------------------------------
TASKS = {
    "binary": stream_pb2.TASK_BINARY,
    "multiclass": stream_pb2.TASK_MULTICLASS,
    "multilabel": stream_pb2.TASK_MULTILABEL,
}
CLASSES = {
    "binary": ["neg", "pos"],
    "multiclass": ["a", "b", "c", "d"],
    "multilabel": ["x", "y", "z"],
}


def make_batches(task: str, n_batches: int, rows: int, seed: int) -> list[tuple[np.ndarray, ...]]:
    """Imbalanced, peaky, seeded (labels, scores) batches for ``task``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        if task == "binary":
            y = (rng.random(rows) < 0.2).astype(np.int32)
            p = np.clip(rng.beta(0.5, 2.0, rows) + 0.3 * y, 0, 1).astype(np.float32)
        elif task == "multiclass":
            y = rng.choice(4, rows, p=[0.55, 0.25, 0.15, 0.05]).astype(np.int32)
            z = rng.normal(0, 1, (rows, 4))
            z[np.arange(rows), y] += 1.5
            z = np.exp(3 * z - (3 * z).max(axis=1, keepdims=True))
            p = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
        else:
            y = (rng.random((rows, 3)) < [0.5, 0.2, 0.05]).astype(np.uint8)
            p = np.clip(rng.beta(0.7, 1.5, (rows, 3)) + 0.35 * y, 0, 1).astype(np.float32)
        out.append((y, p))
    return out


def create_stream(stub, name: str, task: str, windows=(), **kw):
    cfg = stream_pb2.StreamConfig(
        name=name,
        task=TASKS[task],
        classes=CLASSES[task],
        windows=list(windows),
        score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
        **kw,
    )
    return stub.CreateStream(pb.CreateStreamRequest(config=cfg))


def request(stream: str, producer: str, seq: int, y, p, event_time: float | None = None):
    req = pb.IngestRequest(
        stream=stream, producer_id=producer, sequence=seq, scores=tensor(p), labels=tensor(y)
    )
    if event_time is not None:
        req.event_time.FromNanoseconds(int(event_time * 1e9))
    return req


def ingest(stub, requests, timeout: float = 30):
    """Every BatchResult of one Ingest call, in order."""
    results = []
    for resp in stub.Ingest(iter(list(requests)), timeout=timeout):
        results.extend(resp.results)
    return results


def stub_for(target: str):
    channel = grpc.insecure_channel(target)
    return channel, rpc.EvalstreamServiceStub(channel)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster node")


class RedisClusterServers:
    """Three ``redis-server --cluster-enabled yes`` masters on free loopback ports, joined with
    ``redis-cli --cluster create`` (no replicas); ``url`` is a ``redis+cluster://`` seed list."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.dir = directory
        self.ports = [cluster_port() for _ in range(masters)]
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports) + "/0"

    def start(self) -> RedisClusterServers:
        for port in self.ports:
            d = self.dir / str(port)
            d.mkdir(parents=True, exist_ok=True)
            args = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d)]
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf")]
            args += ["--save", "", "--appendonly", "no", "--logfile", str(d / "redis.log")]
            self.procs.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in self.ports:
            self._wait(lambda c: c.ping(), port, "start")
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is not installed")
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
        subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in self.ports:
            self._wait(_cluster_ok, port, "cluster_state:ok")
        return self

    def _wait(self, check, port: int, what: str) -> None:
        client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
        end = time.monotonic() + 30
        try:
            while time.monotonic() < end:
                try:
                    if check(client):
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        raise AssertionError(f"cluster node {port} did not reach {what!r}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _cluster_ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER INFO")
    if isinstance(info, dict):
        return info.get("cluster_state") == "ok"
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


@pytest.fixture
def redis_cluster(tmp_path):
    servers = RedisClusterServers(tmp_path / "cluster")
    try:
        yield servers.start()
    finally:
        servers.stop()


def counted(report: dict) -> dict:
    """A report whose ``labels.stream`` (the join table of predictions awaiting labels, kept in
    Redis like in the embedded stores) has no ``oldest_pending_age_seconds``: it moves with each
    replica's clock. The rest, counters, raw rows (exact while small) and the row sample's
    ``ci95`` included, is compared."""
    out = dict(report)
    status = report["labels"]["stream"]
    assert "pending" in status, status
    out["labels"] = {
        **report["labels"],
        "stream": {k: v for k, v in status.items() if k != "oldest_pending_age_seconds"},
    }
    return out


def memory_report(memory, name: str, window: str) -> dict:
    """The embedded store's report of a stream: a Redis stream's equals it (counts, raw rows while
    small and the row sample, ``store/redis_rows.py``)."""
    state, reference, labels = memory.report_context(name, window)
    return build_report(state, window=window or "cumulative", reference=reference, labels=labels)

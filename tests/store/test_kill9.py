"""Kill loop: ``kill -9`` the server at random moments while a producer streams; at the end the
report equals sklearn on the data sent once: nothing acknowledged lost, nothing counted twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import grpc
import numpy as np
import sklearn.metrics as skm
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import ingest_pb2, stream_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..service.conftest import tensor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evalstream_server.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--grpc-port",
                str(self.port),
                "--metrics-port",
                "-1",
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        end = time.monotonic() + 30
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < end:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise AssertionError("server did not start")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def test_kill_dash_nine_loses_nothing_acknowledged_and_counts_nothing_twice(tmp_path):
    rng = np.random.default_rng(42)
    n_batches, rows, K = 120, 500, 3
    ys = [rng.choice(K, rows, p=[0.6, 0.3, 0.1]).astype(np.int32) for _ in range(n_batches)]
    ps = [rng.dirichlet(np.ones(K) * 0.5, rows).astype(np.float32) for _ in range(n_batches)]
    server = Server(tmp_path, _free_port())
    server.start()
    target = f"127.0.0.1:{server.port}"
    with grpc.insecure_channel(target) as ch:
        rpc.EvalstreamServiceStub(ch).CreateStream(
            pb.CreateStreamRequest(
                config=stream_pb2.StreamConfig(
                    name="k9",
                    task=stream_pb2.TASK_MULTICLASS,
                    classes=["a", "b", "c"],
                    score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
                    resolution=stream_pb2.Resolution(exact=stream_pb2.Resolution.Exact()),
                )
            )
        )
    kill_after = sorted(rng.choice(np.arange(10, n_batches - 10), size=4, replace=False))
    acked: set[int] = set()
    kills = 0
    next_seq = 1
    deadline = time.monotonic() + 240
    while len(acked) < n_batches and time.monotonic() < deadline:
        # a few batches per call, so that the kills land between calls and inside them
        unacked = [s for s in range(1, n_batches + 1) if s not in acked][:8]
        try:
            with grpc.insecure_channel(target) as ch:
                stub = rpc.EvalstreamServiceStub(ch)

                def requests(unacked=unacked):
                    for seq in unacked:
                        i = seq - 1
                        yield pb.IngestRequest(
                            stream="k9",
                            producer_id="prod",
                            sequence=seq,
                            scores=tensor(ps[i]),
                            labels=tensor(ys[i]),
                        )

                for resp in stub.Ingest(requests(), timeout=30):
                    for r in resp.results:
                        assert r.status in (
                            ingest_pb2.BATCH_STATUS_ACCEPTED,
                            ingest_pb2.BATCH_STATUS_DUPLICATE,
                        ), r
                        acked.add(r.sequence)
                        next_seq = max(next_seq, r.sequence + 1)
                    if kills < len(kill_after) and len(acked) >= kill_after[kills]:
                        server.kill9()
                        kills += 1
                        server.start()
                        break
        except grpc.RpcError as exc:
            assert exc.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.CANCELLED,
                grpc.StatusCode.UNKNOWN,
                grpc.StatusCode.INTERNAL,
            ), exc
            time.sleep(0.1)
    assert kills == 4 and len(acked) == n_batches
    server.kill9()  # one more crash after the last ack
    server.start()
    try:
        with grpc.insecure_channel(target) as ch:
            rep = json.loads(
                rpc.EvalstreamServiceStub(ch)
                .GetReport(pb.GetReportRequest(stream="k9"))
                .report_json
            )
    finally:
        server.stop()
    y = np.concatenate(ys)
    p = np.concatenate(ps)
    assert rep["n_samples"] == len(y)
    np.testing.assert_array_equal(
        np.array(rep["confusion_matrix"]), skm.confusion_matrix(y, p.argmax(1))
    )
    want = skm.roc_auc_score(y, p.astype(np.float64), multi_class="ovr", average="macro")
    assert abs(rep["roc_auc"]["macro"]["value"] - want) < 1e-12

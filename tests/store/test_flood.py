"""Flood: many producers faster than the server. The server's peak RSS stays under a stated bound
(HTTP/2 flow control pushes back on the senders), every batch is acknowledged, none is dropped."""

from __future__ import annotations

import json
import threading
import time

import grpc
import numpy as np
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import stream_pb2

from ..service.conftest import tensor
from .test_kill9 import Server, _free_port

PRODUCERS = 8
BATCHES = 60
ROWS = 4096
K = 10
RSS_BOUND_MIB = 300  # stated bound (README); measured about 145 MiB for 320 MiB of payload sent


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_flood_is_slowed_not_dropped_and_memory_stays_bounded(tmp_path):
    server = Server(tmp_path, _free_port())
    server.start()
    target = f"127.0.0.1:{server.port}"
    rng = np.random.default_rng(5)
    y = rng.integers(0, K, ROWS).astype(np.int32)
    p = rng.dirichlet(np.ones(K), ROWS).astype(np.float32)
    payload = (tensor(p), tensor(y))
    try:
        with grpc.insecure_channel(target) as ch:
            rpc.EvalstreamServiceStub(ch).CreateStream(
                pb.CreateStreamRequest(
                    config=stream_pb2.StreamConfig(
                        name="flood",
                        task=stream_pb2.TASK_MULTICLASS,
                        classes=[f"c{i}" for i in range(K)],
                        score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
                    )
                )
            )
        baseline = _peak_rss_mib(server.proc.pid)
        accepted = [0] * PRODUCERS
        send_seconds = [0.0] * PRODUCERS
        errors: list[BaseException] = []

        def producer(i: int) -> None:
            def requests():
                for seq in range(1, BATCHES + 1):
                    yield pb.IngestRequest(
                        stream="flood",
                        producer_id=f"p{i}",
                        sequence=seq,
                        scores=payload[0],
                        labels=payload[1],
                    )

            try:
                start = time.perf_counter()
                with grpc.insecure_channel(target) as ch:
                    for resp in rpc.EvalstreamServiceStub(ch).Ingest(requests(), timeout=240):
                        accepted[i] = resp.accepted_samples
                send_seconds[i] = time.perf_counter() - start
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=producer, args=(i,)) for i in range(PRODUCERS)]
        wall = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        wall = time.perf_counter() - wall
        assert not errors, errors
        total = PRODUCERS * BATCHES * ROWS
        assert accepted == [BATCHES * ROWS] * PRODUCERS  # nothing dropped
        peak = _peak_rss_mib(server.proc.pid)
        with grpc.insecure_channel(target) as ch:
            rep = json.loads(
                rpc.EvalstreamServiceStub(ch)
                .GetReport(pb.GetReportRequest(stream="flood"))
                .report_json
            )
        assert rep["n_samples"] == total
        print(
            f"\nflood: {total} samples from {PRODUCERS} producers in {wall:.1f} s "
            f"({total / wall / 1e6:.2f} M samples/s); server RSS peak {peak:.0f} MiB "
            f"(baseline {baseline:.0f} MiB)"
        )
        assert peak < RSS_BOUND_MIB, f"peak RSS {peak:.0f} MiB >= {RSS_BOUND_MIB} MiB"
        # slowed, not dropped: the senders took as long as the server needed (they could not
        # push 8 x 60 x 160 KiB faster than it was consumed)
        assert min(send_seconds) > 0.3 * wall
    finally:
        server.stop()

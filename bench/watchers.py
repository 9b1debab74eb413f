"""WatchReport watchers against an unrelated call: ``GetStream`` latency and the server's CPU while
50 watchers poll at the 0.1 s minimum with curves (issue 13 item 8: it was 0.8 ms idle, 1.4 s
with them).

* **no watchers** (the named reference): ``GetStream`` of an idle stream, 300 calls.
* **50 watchers, one stream**: the same calls while 50 ``WatchReport`` calls (interval 0.1 s,
  ``include_curves``) watch one stream of 100,000 samples (K = 10, windows 5m and 1h) that a
  producer feeds a batch every 0.5 s. Watchers of one stream share one report computation per
  change (``rpc.watch.SharedReports``).
* **50 watchers, 50 streams**: 50 watchers of 50 such streams, one each (only the first is fed):
  no two share a key, so each stream's report is computed for its own watcher, once, and served
  again until that stream changes.

The watchers run in a subprocess of their own (``--watch``), so their parsing does not compete
with the measured calls for this process's GIL; the server is ``evalstream serve`` in its own.
Server CPU is the share of one core its process used during the measurement.

Run: ``python bench/watchers.py [--quick]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1.evalstream_service_pb2_grpc import EvalstreamServiceStub
from google.protobuf.duration_pb2 import Duration

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import fmt_ratio, fmt_seconds, machine_line, markdown_table, percentile  # noqa: E402
from service_ingest import start_evalstream  # noqa: E402

HEADER = [
    "what (GetStream of an idle stream)",
    "p50",
    "p99",
    "server CPU",
    "watch reports/s",
    "÷ no watchers (p50)",
]
K = 10
CLASSES = [f"c{i}" for i in range(K)]


def _tensor(a: np.ndarray):
    from evalstream.v1 import tensor_pb2

    dtype = {"float32": tensor_pb2.DATA_TYPE_FLOAT32, "int32": tensor_pb2.DATA_TYPE_INT32}
    return tensor_pb2.Tensor(dtype=dtype[a.dtype.name], shape=list(a.shape), data=a.tobytes())


def _create(stub: EvalstreamServiceStub, name: str) -> None:
    from evalstream.v1 import stream_pb2

    config = stream_pb2.StreamConfig(
        name=name,
        task=stream_pb2.TASK_MULTICLASS,
        classes=CLASSES,
        score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
        windows=["5m", "1h"],
    )
    stub.CreateStream(pb.CreateStreamRequest(config=config), timeout=10)


def _batch(name: str, rows: int, seq: int) -> pb.IngestRequest:
    rng = np.random.default_rng(seq)
    y = rng.choice(K, rows, p=np.r_[0.5, np.full(K - 1, 0.5 / (K - 1))]).astype(np.int32)
    logits = rng.normal(size=(rows, K)) + 3 * np.eye(K)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return pb.IngestRequest(
        stream=name,
        producer_id="p",
        sequence=seq,
        scores=_tensor(p.astype(np.float32)),
        labels=_tensor(y),
    )


def _feed(stub: EvalstreamServiceStub, name: str, samples: int, first_seq: int = 1) -> int:
    reqs = [_batch(name, 4096, first_seq + i) for i in range(max(1, samples // 4096))]
    for _ in stub.Ingest(iter(reqs), timeout=120):
        pass
    return first_seq + len(reqs)


def _measure(stub: EvalstreamServiceStub, server, calls: int) -> tuple[list[float], float]:
    times = []
    cpu0, t0 = server.cpu_seconds(), time.perf_counter()
    for _ in range(calls):
        started = time.perf_counter()
        stub.GetStream(pb.GetStreamRequest(name="idle"), timeout=60)
        times.append(time.perf_counter() - started)
        time.sleep(0.01)
    return times, (server.cpu_seconds() - cpu0) / (time.perf_counter() - t0)


def _watch_main(target: str, streams: list[str], watchers: int) -> None:
    """The watchers' process: ``watchers`` WatchReport calls spread over ``streams``, until
    stdin closes."""
    import asyncio

    received = [0]

    async def one(stub, name: str) -> None:
        every = Duration(nanos=10**8)
        req = pb.WatchReportRequest(stream=name, include_curves=True, interval=every)
        async for _ in stub.WatchReport(req):
            received[0] += 1

    async def main() -> None:
        async with grpc.aio.insecure_channel(target) as ch:
            stub = EvalstreamServiceStub(ch)
            tasks = [
                asyncio.ensure_future(one(stub, streams[i % len(streams)])) for i in range(watchers)
            ]
            await asyncio.to_thread(sys.stdin.readline)  # the measurement starts
            start, count = time.perf_counter(), received[0]
            await asyncio.to_thread(sys.stdin.read)  # and ends
            rate = (received[0] - count) / (time.perf_counter() - start)
            for t in tasks:
                t.cancel()
        print(f"{rate:.1f}", flush=True)

    asyncio.run(main())


def _with_watchers(target: str, streams: list[str], watchers: int) -> subprocess.Popen:
    argv = [sys.executable, str(Path(__file__).resolve()), "--watch", target, str(watchers)]
    proc = subprocess.Popen([*argv, *streams], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    time.sleep(2.0)  # every watcher has its first report
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    return proc


def run(samples: int, watchers: int, calls: int) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="evalstream-watchers-"))
    extra = ["--min-watch-interval", "0.1", "--max-watchers-per-tenant", str(watchers)]
    # 51 streams' worst cases (windows, pending table) pass this machine's memory on paper; the
    # run holds a few hundred MiB
    extra += ["--max-server-memory", str(64 << 30)]
    server = start_evalstream("evalstream", log_dir, *extra)
    rows = []
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = EvalstreamServiceStub(ch)
            names = [f"w{i:02d}" for i in range(watchers)]
            for name in ["idle", *names]:
                _create(stub, name)
            for name in names:
                _feed(stub, name, samples)
            stop = threading.Event()
            seq = {"w00": samples // 4096 + 1}

            def producer() -> None:  # the shared stream changes every 0.5 s
                while not stop.wait(0.5):
                    seq["w00"] = _feed(stub, "w00", 4096, seq["w00"])

            feeder = threading.Thread(target=producer, daemon=True)
            feeder.start()
            reference, ref_cpu = _measure(stub, server, calls)
            results = [("no watchers", reference, ref_cpu, "-")]
            for label, streams in (
                (f"{watchers} watchers, one stream (shared)", names[:1]),
                (f"{watchers} watchers, {watchers} streams (one each)", names),
            ):
                proc = _with_watchers(server.target, streams, watchers)
                try:
                    times, cpu = _measure(stub, server, calls)
                finally:
                    out, _ = proc.communicate(timeout=30)
                results.append((label, times, cpu, out.decode().strip() or "-"))
            stop.set()
            feeder.join(timeout=30)
        base = percentile(reference, 50)
        for label, times, cpu, rate in results:
            p50 = percentile(times, 50)
            rows.append(
                [label, fmt_seconds(p50), fmt_seconds(percentile(times, 99)), f"{cpu:.0%}",
                 rate, fmt_ratio(p50 / base)]
            )  # fmt: skip
    finally:
        server.stop()
        shutil.rmtree(log_dir, ignore_errors=True)
    print(machine_line({"samples per stream": f"{samples:,}", "watchers": str(watchers)}))
    print()
    print(markdown_table(HEADER, rows))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--watch":
        _watch_main(sys.argv[2], sys.argv[4:], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = parser.parse_args()
    if args.quick:
        run(samples=8192, watchers=5, calls=30)
    else:
        run(samples=100_000, watchers=50, calls=300)


if __name__ == "__main__":
    main()

"""Soak: producers, watchers, scrapes and faults at once against one ``evalstream serve``.

For a bounded time (120 s; ``--quick``: 8 s) one durable server takes at once:

* producers streaming large sequenced batches (``--rows`` rows at K = 10: 65,536 rows are a
  2.9 MiB message) into two streams with windows 5m and 1h, resending what was not acknowledged
  after a failure;
* watchers (``WatchReport`` at the 0.1 s minimum) and a ``/metrics`` scrape every 0.5 s;
* faults: batches stamped in the future, garbage bytes, configs asking for huge memory,
  overlong and ever-new producer ids, and (not in ``--quick``) one ``kill -9`` and restart of
  the server half-way, the producers reconnecting to the new one.

It prints the server's peak RSS (VmHWM, the largest of the server processes) against the
computed budget (the idle server's RSS plus the streams' worst cases, ``engine.budget``), the
samples acknowledged against the samples counted (equal: nothing acknowledged lost, nothing
counted twice), and the latency of an unrelated call (``GetStream`` of another stream) under the
load against the same call on the idle server, measured first in the same run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream.v1 import evalstream_service_pb2 as pb  # noqa: E402
from evalstream.v1 import evalstream_service_pb2_grpc as rpc  # noqa: E402
from evalstream.v1 import ingest_pb2, stream_pb2, tensor_pb2  # noqa: E402
from evalstream_server.engine import StreamSpec  # noqa: E402
from evalstream_server.engine.budget import worst_case_memory  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402
from harness import (  # noqa: E402
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    markdown_table,
    percentile,
    quick_parser,
)
from service_ingest import ServerProcess, start_evalstream  # noqa: E402

K = 10
CLASSES = [f"c{i}" for i in range(K)]
WINDOWS = ["5m", "1h"]
STREAMS = ["soak-a", "soak-b"]
UNRELATED = "unrelated"
PER_CALL = 4  # batches per Ingest call
ACCEPTED = ingest_pb2.BATCH_STATUS_ACCEPTED
DUPLICATE = ingest_pb2.BATCH_STATUS_DUPLICATE


def _tensor(a: np.ndarray, dtype: int) -> tensor_pb2.Tensor:
    a = np.ascontiguousarray(a)
    return tensor_pb2.Tensor(dtype=dtype, shape=list(a.shape), data=a.tobytes())


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Soak:
    """What the threads share: the current server, the end, and what they counted."""

    server: ServerProcess
    end: float
    peak: int = 0
    acked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    latencies: list[float] = field(default_factory=list)
    watched: int = 0
    scrapes: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def running(self) -> bool:
        return time.monotonic() < self.end

    def fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] = self.faults.get(kind, 0) + 1


def _create(
    stub: rpc.EvalstreamServiceStub, name: str, classes: list[str] = CLASSES, **kw: object
) -> None:
    cfg = stream_pb2.StreamConfig(
        name=name,
        task=stream_pb2.TASK_MULTICLASS,
        classes=classes,
        score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
        **kw,  # type: ignore[arg-type]
    )
    stub.CreateStream(pb.CreateStreamRequest(config=cfg), timeout=30)


def producer(soak: Soak, i: int, payload: tuple[tensor_pb2.Tensor, tensor_pb2.Tensor]) -> None:
    """Sequenced batches into one stream; after a failure, resend from the first unacknowledged
    (the server answers the ones it had counted as duplicates)."""
    stream, rows = STREAMS[i % len(STREAMS)], payload[0].shape[0]
    acked, seq = 0, 1  # sequences 1..acked are acknowledged
    while soak.running():
        first = acked + 1
        reqs = [
            pb.IngestRequest(
                stream=stream, producer_id=f"p{i}", sequence=s, scores=payload[0], labels=payload[1]
            )
            for s in range(first, first + PER_CALL)
        ]
        try:
            with grpc.insecure_channel(soak.server.target) as ch:
                for resp in rpc.EvalstreamServiceStub(ch).Ingest(iter(reqs), timeout=120):
                    for r in resp.results:
                        ok = r.status == ACCEPTED or (
                            r.status == DUPLICATE and r.original_status == ACCEPTED
                        )
                        if ok and r.sequence == acked + 1:
                            acked += 1
                            if r.status == ACCEPTED or r.sequence >= seq:
                                with soak.lock:
                                    soak.acked[stream] += rows
                        elif not ok:
                            soak.errors.append(f"p{i} seq {r.sequence}: {r.error_message}")
                            return
            seq = max(seq, acked + 1)
        except grpc.RpcError:
            time.sleep(0.2)  # the server restarts: reconnect and resend


def watcher(soak: Soak) -> None:
    req = pb.WatchReportRequest(stream=STREAMS[0], window="5m")
    req.interval.FromNanoseconds(100_000_000)
    while soak.running():
        try:
            with grpc.insecure_channel(soak.server.target) as ch:
                for _ in rpc.EvalstreamServiceStub(ch).WatchReport(req, timeout=5):
                    with soak.lock:
                        soak.watched += 1
                    if not soak.running():
                        return
        except grpc.RpcError:
            time.sleep(0.2)


def scraper(soak: Soak) -> None:
    while soak.running():
        port = soak.server.metrics_port
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
                r.read()
            soak.scrapes += 1
        except OSError:
            pass
        time.sleep(0.5)


def unrelated_latency(soak: Soak, out: list[float], until: float) -> None:
    """GetStream of a stream nobody writes, every 50 ms, until ``until``."""
    while time.monotonic() < until:
        try:
            with grpc.insecure_channel(soak.server.target) as ch:
                stub = rpc.EvalstreamServiceStub(ch)
                while time.monotonic() < until:
                    t0 = time.perf_counter()
                    stub.GetStream(pb.GetStreamRequest(name=UNRELATED), timeout=30)
                    out.append(time.perf_counter() - t0)
                    time.sleep(0.05)
        except grpc.RpcError:
            time.sleep(0.2)


def faults(soak: Soak, rng: np.random.Generator) -> None:
    """Hostile and broken calls, one every 0.25 s; each must be refused, none may harm."""
    y = _tensor(np.zeros(1, np.int32), tensor_pb2.DATA_TYPE_INT32)
    p = _tensor(np.full((1, K), 1 / K, np.float32), tensor_pb2.DATA_TYPE_FLOAT32)
    n = 0
    while soak.running():
        n += 1
        try:
            with grpc.insecure_channel(soak.server.target) as ch:
                stub = rpc.EvalstreamServiceStub(ch)
                kind = n % 4
                if kind == 0:  # stamped 10 minutes per batch into the future
                    req = pb.IngestRequest(
                        stream=STREAMS[1], producer_id="future", sequence=n, scores=p, labels=y
                    )
                    req.event_time.CopyFrom(Timestamp(seconds=int(time.time()) + 600 * n))
                    (resp,) = [r for m in stub.Ingest(iter([req]), timeout=10) for r in m.results]
                    if resp.status == ACCEPTED:
                        soak.errors.append("a batch stamped in the future was accepted")
                    soak.fault("future event_time")
                elif kind == 1:  # huge memory: K = 32 at 12 mantissa bits, 4.9 GB a state
                    bits = stream_pb2.Resolution.Binned(mantissa_bits=12)
                    wide = [f"w{i}" for i in range(32)]
                    try:
                        _create(
                            stub, f"huge-{n}", wide, resolution=stream_pb2.Resolution(binned=bits)
                        )
                        soak.errors.append("a config for huge memory was accepted")
                    except grpc.RpcError as exc:
                        if exc.code() not in (
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            grpc.StatusCode.UNAVAILABLE,  # the server is restarting
                        ):
                            soak.errors.append(f"a huge config answered {exc.code()}")
                    soak.fault("huge config")
                elif kind == 2:  # overlong and ever-new producer ids
                    pid = ("x" * 200) if n % 8 == 2 else f"ephemeral-{n}"
                    req = pb.IngestRequest(
                        stream=UNRELATED, producer_id=pid, sequence=1, scores=p, labels=y
                    )
                    list(stub.Ingest(iter([req]), timeout=10))
                    soak.fault("producer ids")
                else:  # garbage bytes where a request belongs
                    call = ch.unary_unary("/evalstream.v1.EvalstreamService/GetReport")
                    try:
                        call(bytes(rng.integers(0, 256, 64, dtype=np.uint8)), timeout=10)
                    except grpc.RpcError as exc:
                        if exc.code() == grpc.StatusCode.INTERNAL:
                            soak.errors.append("garbage answered INTERNAL")
                    soak.fault("garbage bytes")
        except grpc.RpcError:
            pass
        time.sleep(0.25)


def kill_and_restart(soak: Soak, data_dir: Path, log_dir: Path, extra: list[str]) -> None:
    """``kill -9`` the server half-way and start it again on the same data dir."""
    time.sleep(max(soak.end - time.monotonic(), 0) / 2)
    old = soak.server
    soak.peak = max(soak.peak, _peak_rss(old.proc.pid))
    os.kill(old.proc.pid, signal.SIGKILL)
    old.proc.wait(timeout=30)
    soak.server = start_evalstream(
        "soak-restarted", log_dir, "--data-dir", str(data_dir), *extra, metrics=True
    )
    soak.fault("kill -9 and restart")


def run(seconds: float, producers: int, watchers: int, rows: int, restart: bool) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, rows).astype(np.int32)
    s = rng.dirichlet(np.ones(K) * 0.3, rows).astype(np.float32)
    payload = (
        _tensor(s, tensor_pb2.DATA_TYPE_FLOAT32),
        _tensor(y, tensor_pb2.DATA_TYPE_INT32),
    )
    tmp = Path(tempfile.mkdtemp(prefix="evalstream-soak-"))
    extra = ["--max-stream-memory", str(2 << 30)]
    # the watchers poll at 0.1 s, all of one tenant: below the defaults' floor (1 s) and cap (16)
    extra += ["--min-watch-interval", "0.1", "--max-watchers-per-tenant", str(max(watchers, 1))]
    server = start_evalstream("soak", tmp, "--data-dir", str(tmp / "data"), *extra, metrics=True)
    soak = Soak(server, end=0.0)
    try:
        with grpc.insecure_channel(server.target) as ch:
            stub = rpc.EvalstreamServiceStub(ch)
            for name in STREAMS:
                _create(stub, name, windows=WINDOWS)
            _create(stub, UNRELATED)
        idle_rss = _rss(server.proc.pid)
        specs = [StreamSpec(task="multiclass", classes=CLASSES, windows=WINDOWS)] * len(STREAMS)
        specs.append(StreamSpec(task="multiclass", classes=CLASSES))
        budget = idle_rss + sum(worst_case_memory(sp, 300.0).total for sp in specs)
        idle: list[float] = []
        unrelated_latency(soak, idle, time.monotonic() + min(2.0, seconds / 4))
        soak.end = time.monotonic() + seconds
        loaded: list[float] = []
        threads = [
            threading.Thread(target=producer, args=(soak, i, payload)) for i in range(producers)
        ]
        threads += [threading.Thread(target=watcher, args=(soak,)) for _ in range(watchers)]
        threads += [
            threading.Thread(target=scraper, args=(soak,)),
            threading.Thread(target=faults, args=(soak, rng)),
            threading.Thread(target=unrelated_latency, args=(soak, loaded, soak.end)),
        ]
        if restart:
            threads.append(
                threading.Thread(target=kill_and_restart, args=(soak, tmp / "data", tmp, extra))
            )
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 300)
        soak.peak = max(soak.peak, _peak_rss(soak.server.proc.pid))
        counted = {}
        with grpc.insecure_channel(soak.server.target) as ch:
            stub = rpc.EvalstreamServiceStub(ch)
            for name in STREAMS:
                rep = stub.GetReport(pb.GetReportRequest(stream=name), timeout=60)
                counted[name] = json.loads(rep.report_json)["n_samples"]
    finally:
        soak.server.stop()
    acked, total = sum(soak.acked.values()), sum(counted.values())
    print(
        f"\n# Soak, {seconds:.0f} s: {producers} producers x {rows} rows "
        f"({fmt_bytes(rows * (4 * K + 4))} messages), {watchers} watchers, a scrape every 0.5 s, "
        f"faults {sum(soak.faults.values())}\n"
    )
    print(machine_line() + "\n")
    rows_out = [
        ["server peak RSS (VmHWM)", fmt_bytes(soak.peak),
         f"computed budget {fmt_bytes(budget)}", fmt_ratio(soak.peak / budget)],
        ["samples acknowledged / counted", f"{acked:,} / {total:,}",
         "equal" if acked == total else "DIFFER", "-"],
        ["GetStream of another stream, p50", fmt_seconds(percentile(loaded, 50)),
         f"idle {fmt_seconds(percentile(idle, 50))}",
         fmt_ratio(percentile(loaded, 50) / percentile(idle, 50))],
        ["GetStream of another stream, p99", fmt_seconds(percentile(loaded, 99)),
         f"idle {fmt_seconds(percentile(idle, 99))}",
         fmt_ratio(percentile(loaded, 99) / percentile(idle, 99))],
        ["watch reports / scrapes", f"{soak.watched:,} / {soak.scrapes:,}", "-", "-"],
    ]  # fmt: skip
    rows_out += [
        [f"fault: {k}", f"{v}", "survived" if "kill" in k else "refused", "-"]
        for k, v in sorted(soak.faults.items())
    ]
    print(markdown_table(["what", "measured", "reference in the same run", "ratio"], rows_out))
    if soak.errors or acked != total:
        print("\nFAILED:", *soak.errors[:10], sep="\n  ")
        sys.exit(1)


def main() -> None:
    parser = quick_parser(__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--producers", type=int, default=8)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--rows", type=int, default=65536)
    args = parser.parse_args()
    if args.quick:
        run(8.0, producers=2, watchers=4, rows=8192, restart=False)
    else:
        run(args.seconds, args.producers, args.watchers, args.rows, restart=True)


if __name__ == "__main__":
    main()

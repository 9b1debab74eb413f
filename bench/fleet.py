"""A fleet on one service: N streams x (cumulative + 5m + 1h), memory and scrapes.

* **The server** (a subprocess of this script, ``--serve``): ``start_server`` on the in-memory store
  with a simulated clock. Before it serves, N multiclass streams (K classes, windows 5m and 1h)
  are fed ``--per-hour`` samples an hour each (batches of 500 imbalanced peaky softmax rows) over
  2.5 simulated hours, so both windows have rotated more than twice. While it serves, a thread
  keeps ingesting (``--ingest-rate`` samples/s of real time, round robin over the streams, the
  clock advancing at the same per-stream rate), so every stream changes between scrapes; the
  exporter's background refresh (``--metrics-refresh``, 10 s; 0 computes on the scrape within its
  1 s budget) computes the reports. Scrapes are timed once every window has been computed.
* **RSS per stream**: the server's RSS (``/proc``) after feeding and after the scrapes, minus the
  RSS of the same server with no stream, over N.
* **Scrape**: ``GET /metrics`` with ``Accept-Encoding: gzip`` and Prometheus' Accept header,
  back to back while ingest runs; p50 and p99.
* **prometheus_client reference** (the named reference of the ratio): the series of this very
  exposition set once in a fresh ``prometheus_client`` registry (Gauge, Counter) served by its own
  ``start_http_server`` from a subprocess (``bench/scrape.py --reference-server``), scraped the
  same way: what serving the same series costs when they are prebuilt.
* **GetReport** p50 (``EvalClient.report`` of random streams and windows) and the **ingest rate**
  of the server's thread while nothing scrapes and while scrapes run back to back (from
  ``evalstream_samples_total``).

Run: ``python bench/fleet.py [--quick] [--streams 100,300,1000] [--classes 10,100]``. Keep RSS in
mind: K = 100 costs about 2 MiB a stream (its (K, B) histograms), so 1,000 streams at K = 100 need
about 2.5 GiB.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream import EvalClient  # noqa: E402
from harness import (  # noqa: E402
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    markdown_table,
    median,
    percentile,
)
from service_ingest import ServerProcess, start_process  # noqa: E402

HEADER = [
    "streams x K",
    "RSS per stream (fed / scraped)",
    "scrape p50",
    "scrape p99",
    "reference p50 / p99",
    "÷ reference (p50)",
    "GetReport p50",
    "ingest idle / while scraping",
    "series (per stream)",
]
ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
ROWS = 500
WINDOWS = ("5m", "1h")
START = 1_800_000_000.0


# -- the server -----------------------------------------------------------------------------
class SimClock:
    """Simulated seconds, moved on by the feeding code."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _batches(K: int, seed: int, n: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    prior = np.geomspace(1.0, 0.05, K)
    prior /= prior.sum()
    out = []
    for _ in range(n):
        y = rng.choice(K, ROWS, p=prior)
        logits = rng.normal(size=(ROWS, K)) * 4
        logits[np.arange(ROWS), y] += 4
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        out.append((y, (p / p.sum(axis=1, keepdims=True)).astype(np.float32)))
    return out


def _serve(args: argparse.Namespace) -> None:
    from evalstream_server.allocator import tune_allocator
    from evalstream_server.engine import StreamSpec
    from evalstream_server.server import ServerThread
    from evalstream_server.settings import Settings
    from evalstream_server.store import MemoryStore

    tune_allocator()  # as `evalstream serve` does
    clock = SimClock(START)
    store = MemoryStore(max_streams=max(args.serve_streams, 1), clock=clock)
    names = [f"s{i:04d}" for i in range(args.serve_streams)]
    classes = [f"c{j}" for j in range(args.classes_k)]
    for name in names:
        store.create(StreamSpec(task="multiclass", name=name, classes=classes, windows=WINDOWS))
    seq = dict.fromkeys(names, 0)
    batches = []
    if names:
        engine = store.get(names[0]).engine
        batches = [engine.validate(y, p) for y, p in _batches(args.classes_k, 7)]
    step = ROWS * 3600.0 / args.per_hour  # simulated seconds between a stream's batches

    def feed_one(i: int) -> None:
        name = names[i % len(names)]
        seq[name] += 1
        store.ingest(name, "bench", seq[name], batches[seq[name] % len(batches)], None)
        clock.t += step / len(names)

    for i in range(int(2.5 * 3600 / step) * len(names)):  # 2.5 simulated hours
        feed_one(i)
    fed = sum(seq.values()) * ROWS
    settings = Settings(
        host="127.0.0.1",
        grpc_port=0,
        metrics_host="127.0.0.1",
        metrics_port=0,
        max_streams=max(args.serve_streams, 1),
        **({} if args.metrics_refresh is None else {"metrics_refresh": args.metrics_refresh}),
    )
    server = ServerThread(settings, store).start()
    stop = threading.Event()

    def ingest_loop() -> None:
        i, started = 0, time.perf_counter()
        while names and not stop.is_set():
            feed_one(i)
            i += 1
            ahead = i * ROWS / args.ingest_rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)

    threading.Thread(target=ingest_loop, daemon=True).start()
    info = {
        "msg": "serving",
        "grpc": server.target,
        "metrics": f"127.0.0.1:{server.metrics_port}",
        "fed": fed,
        "refresh": settings.metrics_refresh,
    }
    print(json.dumps(info), file=sys.stderr, flush=True)
    threading.Event().wait()


# -- the driver -----------------------------------------------------------------------------
def rss(proc: ServerProcess) -> int:
    with open(f"/proc/{proc.proc.pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def scrape(port: int) -> tuple[float, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Accept-Encoding": "gzip", "Accept": ACCEPT},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as resp:
        body = resp.read()
        took = time.perf_counter() - started
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
    return took, body


def samples_total(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("evalstream_samples_total{")
    )


def start_fleet(n: int, K: int, args: argparse.Namespace, log_dir: Path) -> ServerProcess:
    argv = [
        sys.executable, __file__, "--serve", "--serve-streams", str(n), "--classes-k", str(K),
        "--per-hour", str(args.per_hour), "--ingest-rate", str(args.ingest_rate),
    ]  # fmt: skip
    if args.metrics_refresh is not None:
        argv += ["--metrics-refresh", str(args.metrics_refresh)]
    return start_process(f"fleet-{n}-{K}", argv, log_dir, timeout=1800)


def run_one(n: int, K: int, args: argparse.Namespace, log_dir: Path, base_rss: int) -> list[str]:
    server = start_fleet(n, K, args, log_dir)
    ref = None
    try:
        port = server.metrics_port
        assert port is not None
        fed_rss = rss(server)
        first, text = scrape(port)  # computes what the refresh has not reached, for 1 s
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:  # until every window was computed once
            time.sleep(2.0)
            if "evalstream_exporter_stale_windows 0.0" in scrape(port)[1].decode():
                break
        times = [scrape(port)[0] for _ in range(args.scrapes)]
        after_rss = rss(server)
        last = scrape(port)[1].decode()
        series = sum(1 for line in last.splitlines() if line and not line.startswith("#"))
        # the reference: the same series prebuilt in a prometheus_client registry
        path = log_dir / f"exposition-{n}-{K}.txt"
        path.write_text(last)
        scrape_py = Path(__file__).resolve().parent / "scrape.py"
        argv = [sys.executable, str(scrape_py), "--reference-server", str(path)]
        ref = start_process(f"reference-{n}-{K}", argv, log_dir, timeout=600)
        assert ref.metrics_port is not None
        ref_times = [scrape(ref.metrics_port)[0] for _ in range(args.scrapes)]
        ref.stop()
        ref = None
        # GetReport of random streams and windows
        rng = random.Random(3)
        client = EvalClient(server.target)
        report_times = []
        for _ in range(args.reports):
            stream = f"s{rng.randrange(n):04d}"
            window = rng.choice(("cumulative", *WINDOWS))
            started = time.perf_counter()
            client.report(stream, window=window)
            report_times.append(time.perf_counter() - started)
        client.close()

        # the ingest thread's rate with nobody scraping, then while scraping back to back
        def counted() -> tuple[float, float]:  # (time, samples) right after a scrape
            started = time.perf_counter()
            took, body = scrape(port)
            return started + took / 2, samples_total(body.decode())

        t0, s0 = counted()
        time.sleep(args.window_s)
        t1, s1 = counted()
        while time.perf_counter() - t1 < args.window_s:
            scrape(port)
        t2, s2 = counted()
        idle_rate = (s1 - s0) / (t1 - t0)
        busy_rate = (s2 - s1) / (t2 - t1)
    finally:
        server.stop()
        if ref is not None:
            ref.stop()
    p50, p99 = median(times), percentile(times, 99)
    r50, r99 = median(ref_times), percentile(ref_times, 99)
    return [
        f"{n:,} x {K}",
        f"{fmt_bytes((fed_rss - base_rss) / max(n, 1))} / "
        f"{fmt_bytes((after_rss - base_rss) / max(n, 1))}",
        fmt_seconds(p50),
        fmt_seconds(p99),
        f"{fmt_seconds(r50)} / {fmt_seconds(r99)}",
        fmt_ratio(p50 / r50),
        fmt_seconds(median(report_times)),
        f"{idle_rate / 1e3:,.0f}k / {busy_rate / 1e3:,.0f}k samples/s",
        f"{series:,} ({series / max(n, 1):,.0f}); first scrape {fmt_seconds(first)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 streams, K = 10")
    parser.add_argument("--streams", default="100,300,1000")
    parser.add_argument("--classes", default="10")
    parser.add_argument("--per-hour", type=int, default=20_000, help="samples a stream an hour")
    parser.add_argument("--ingest-rate", type=float, default=50_000, help="samples/s, serving")
    parser.add_argument("--metrics-refresh", type=float, default=10.0, help="0: on each scrape")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--reports", type=int, default=30)
    parser.add_argument(
        "--settle",
        type=float,
        default=600.0,
        help="most seconds to wait for every window's first report",
    )
    parser.add_argument("--window-s", type=float, default=5.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-streams", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--classes-k", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args)
        return
    if args.quick:
        args.streams, args.classes, args.per_hour = "20", "10", 4000
        args.scrapes, args.reports, args.settle, args.window_s = 3, 3, 30.0, 1.0
    configs = [(int(n), int(k)) for k in args.classes.split(",") for n in args.streams.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="evalstream-fleet-") as tmp:
        log_dir = Path(tmp)
        empty = start_fleet(0, 10, args, log_dir)
        scrape(empty.metrics_port or 0)
        base_rss = rss(empty)
        empty.stop()
        for n, K in configs:
            rows.append(run_one(n, K, args, log_dir, base_rss))
            print(markdown_table(HEADER, rows[-1:]), flush=True)
    print()
    print("# evalstream fleet: memory and scrapes of N streams (cumulative + 5m + 1h)")
    print(machine_line({"per stream": f"{args.per_hour:,} samples/h", "ROWS": str(ROWS)}))
    print(f"empty server RSS {fmt_bytes(base_rss)}; ingest thread {args.ingest_rate:,.0f}/s")
    print(markdown_table(HEADER, rows))


if __name__ == "__main__":
    main()

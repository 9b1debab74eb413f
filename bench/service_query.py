"""Report query latency over gRPC on 127.0.0.1: ``GetReport`` through ``EvalClient.report`` after
1M samples (K = 10), against the engine computing the same report in this process.

* **evalstream**: ``evalstream serve`` (in-memory store) as a subprocess; one multiclass stream
  with windows ``["5m", "1h"]`` fed 1,000,000 samples with ``EvalClient.log`` (messages of 4096
  rows, imbalanced labels, peaky float32 scores). Then, over 300 interleaved repeats:
  ``EvalClient.report`` of the cumulative state and of the ``"5m"`` window (server report +
  ``json.dumps`` + transport + ``Report.from_json``), the same ``GetReport`` on a bare stub
  (no client-side parse), one report with curves, and ``GetStream`` (the round-trip floor of a
  unary call on this machine).
* **engine in this process** (the named reference of the ratio): ``StreamEngine.report`` of an
  engine fed the same batches here, for the same window. The ratio is what the service path adds
  on top of computing the report.
* ``Report.from_json`` alone on the cumulative report's text: the client's parse time.

Run: ``python bench/service_query.py [--quick]``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from evalstream import EvalClient, Report
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1.evalstream_service_pb2_grpc import EvalstreamServiceStub

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream_server.engine import StreamEngine, StreamSpec  # noqa: E402
from harness import (  # noqa: E402
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    make_workload,
    markdown_table,
    percentile,
)
from service_ingest import ROWS, K, engine_kernel, start_evalstream  # noqa: E402

HEADER = ["query (K = 10)", "path", "p50", "p99", "÷ engine in-process (p50)", "notes"]
WINDOWS = ("5m", "1h")
STREAM = "query"


def measure(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall times of each of ``fns``, called in turn ``repeats`` times (interleaved)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def run(n: int, repeats: int) -> list[list[str]]:
    wl = make_workload(n, K, seed=4, batch=ROWS)
    classes = [f"c{i}" for i in range(K)]
    engine = StreamEngine(StreamSpec(task="multiclass", classes=tuple(classes), windows=WINDOWS))
    for y, p in wl.batches():
        engine.update(y, p)

    tmp = Path(tempfile.mkdtemp(prefix="evalstream-bench-query-"))
    srv = start_evalstream("evalstream-query", tmp)
    try:
        options = [("grpc.max_receive_message_length", 64 << 20)]
        with (
            EvalClient(srv.target, max_batch_rows=ROWS) as client,
            grpc.insecure_channel(srv.target, options=options) as channel,
        ):
            client.create_stream(STREAM, "multiclass", classes, windows=WINDOWS)
            assert client.log(STREAM, wl.labels, wl.scores).accepted_samples == n
            stub = EvalstreamServiceStub(channel)

            def raw(window: str) -> pb.GetReportResponse:
                return stub.GetReport(pb.GetReportRequest(stream=STREAM, window=window))

            text = {w: raw(w).report_json for w in ("cumulative", "5m")}
            with_curves = client.report(STREAM, curves=True)
            curves_bytes = len(
                stub.GetReport(
                    pb.GetReportRequest(stream=STREAM, include_curves=True)
                ).report_json.encode()
            )
            # the service and the engine agree (same batches, same formulas)
            served = Report.from_json(text["cumulative"])
            assert served.n_samples == n == engine.report()["n_samples"]
            assert (
                served.roc_auc_score(average="macro")
                == engine.report()["roc_auc"]["macro"]["value"]
            )
            assert with_curves.n_samples == n

            fns: dict[str, Callable[[], object]] = {
                "engine cumulative": lambda: engine.report(),
                "engine 5m": lambda: engine.report("5m"),
                "client cumulative": lambda: client.report(STREAM),
                "client 5m": lambda: client.report(STREAM, "5m"),
                "stub cumulative": lambda: raw("cumulative"),
                "stub 5m": lambda: raw("5m"),
                "client curves": lambda: client.report(STREAM, curves=True),
                "parse": lambda: Report.from_json(text["cumulative"]),
                "get_stream": lambda: client.get_stream(STREAM),
            }
            for fn in fns.values():  # warm-up
                fn()
            times = measure(fns, repeats)
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    p50 = {k: percentile(v, 50) for k, v in times.items()}
    p99 = {k: percentile(v, 99) for k, v in times.items()}

    def row(query: str, path: str, key: str, ref: str | None, note: str) -> list[str]:
        ratio = fmt_ratio(p50[key] / p50[ref]) if ref else "-"
        return [query, path, fmt_seconds(p50[key]), fmt_seconds(p99[key]), ratio, note]

    cum_b, w5_b = len(text["cumulative"].encode()), len(text["5m"].encode())
    return [
        row("full report, cumulative", "engine in this process: `StreamEngine.report()`",
            "engine cumulative", "engine cumulative", "named reference"),
        row("full report, cumulative", "**evalstream** `EvalClient.report(stream)`",
            "client cumulative", "engine cumulative", f"report_json {fmt_bytes(cum_b)}"),
        row("full report, cumulative", "  bare stub `GetReport` (no client parse)",
            "stub cumulative", "engine cumulative", "server + transport"),
        row('full report, window "5m"', 'engine in this process: `StreamEngine.report("5m")`',
            "engine 5m", "engine 5m", "named reference; sums the window's buckets"),
        row('full report, window "5m"', '**evalstream** `EvalClient.report(stream, "5m")`',
            "client 5m", "engine 5m", f"report_json {fmt_bytes(w5_b)}"),
        row('full report, window "5m"', '  bare stub `GetReport(window="5m")`',
            "stub 5m", "engine 5m", "server + transport"),
        row("full report + curves (200 points)", "`EvalClient.report(stream, curves=True)`",
            "client curves", "engine cumulative", f"report_json {fmt_bytes(curves_bytes)}"),
        row("client parse only", "`Report.from_json` of the cumulative report", "parse", None,
            "in this process"),
        row("round-trip floor", "`EvalClient.get_stream` (unary `GetStream`)", "get_stream",
            None, "smallest unary call"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small N, few repeats")
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    n, repeats = (ROWS * 8, 5) if args.quick else (args.samples, args.repeats)
    print(machine_line({"grpcio": grpc.__version__, "engine kernel": engine_kernel()}))
    print(
        f"\n# Report latency over 127.0.0.1, K={K}, windows {list(WINDOWS)}, {n:,} samples, "
        f"p50 and p99 of {repeats} interleaved repeats; the server is a subprocess\n"
    )
    print(markdown_table(HEADER, run(n, repeats)))


if __name__ == "__main__":
    main()

"""``/metrics`` scrape time of ``evalstream serve`` with 100 streams x 10 classes, each with
windows ``["5m", "1h"]`` and data, against a ``prometheus_client`` registry that exports the
same series, in the same run.

* **evalstream**: ``evalstream serve`` as a subprocess with ``/metrics`` on a free port; 100
  multiclass streams (K = 10, windows 5m and 1h), 8192 samples each (imbalanced labels, peaky
  float32 scores) sent with ``EvalClient.log``. A scrape is an HTTP GET of ``/metrics`` (plain, and
  with ``Accept-Encoding: gzip`` as Prometheus sends it). The custom collector computes every
  window's report at scrape time.
* **prometheus_client reference** (the named reference of the ratio): the series of this very
  exposition (same names, labels and values) set once with ``Gauge.labels(...).set`` and
  ``Counter.labels(...).inc`` in a fresh registry, served by ``prometheus_client``'s own
  ``start_http_server`` (as evalstream's is) from a subprocess of this script. Scraping it costs
  what formatting and serving the same series costs when the values are already computed, so the
  ratio is what computing on scrape adds. Its ``Gauge.set`` pass over every series is timed too
  (in this process): the update cost an exporter that pushes values on ingest would pay instead.
* **the same numbers over gRPC**: ``GetReport`` for every stream and window (300 calls, one bare
  stub): what a client asking for the same reports pays.
* In this process, on a store fed the same batches: ``generate_latest`` of a registry holding
  ``EvalstreamCollector``, split into ``collect()``, its ``build_report`` calls, and the text
  format alone. When a scrape takes a second or more (and with ``--profile`` or ``--quick``) a
  cProfile of ``generate_latest`` is printed.

Run: ``python bench/scrape.py [--quick] [--profile]``. ``--reference-server`` is internal.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import grpc
import prometheus_client
from evalstream import EvalClient
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1.evalstream_service_pb2_grpc import EvalstreamServiceStub
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream_server.engine import StreamSpec, build_report  # noqa: E402
from evalstream_server.exporters import EvalstreamCollector  # noqa: E402
from evalstream_server.store import MemoryStore  # noqa: E402
from harness import (  # noqa: E402
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    make_workload,
    markdown_table,
    median,
    percentile,
)
from service_ingest import (  # noqa: E402
    ROWS,
    K,
    ServerProcess,
    engine_kernel,
    start_evalstream,
    start_process,
)

HEADER = ["what (one scrape or sweep)", "p50", "p99", "÷ reference (p50)", "notes"]
WINDOWS = ("5m", "1h")
PER_STREAM = 8192


# -- the same series in a prometheus_client registry -----------------------------------------
def registry_from_exposition(text: str) -> tuple[CollectorRegistry, Callable[[], None]]:
    """A fresh registry exporting the series of ``text`` (Gauge and Counter with the same names,
    labels and values), and a function that sets every series again with ``Gauge.set``."""
    prometheus_client.disable_created_metrics()  # evalstream's counters have no _created
    registry = CollectorRegistry(auto_describe=False)
    gauges: list[tuple[Gauge, tuple[str, ...], float]] = []
    for fam in text_string_to_metric_families(text):
        labels = list(fam.samples[0].labels) if fam.samples else []
        if fam.type == "histogram":  # the same series as gauges, one per sample name
            by_name: dict[str, list] = {}
            for s in fam.samples:
                by_name.setdefault(s.name, []).append(s)
            for name, samples in by_name.items():
                metric = Gauge(name, fam.documentation, list(samples[0].labels), registry=registry)
                for s in samples:
                    key = tuple(s.labels.values())
                    metric.labels(*key).set(s.value)
                    gauges.append((metric, key, s.value))
            continue
        if fam.type == "counter":
            metric = Counter(fam.name, fam.documentation, labels, registry=registry)
            for s in fam.samples:
                metric.labels(*s.labels.values()).inc(s.value)
        else:
            metric = Gauge(fam.name, fam.documentation, labels, registry=registry)
            for s in fam.samples:
                key = tuple(s.labels.values())
                (metric.labels(*key) if key else metric).set(s.value)
                gauges.append((metric, key, s.value))

    def set_all() -> None:
        for metric, key, value in gauges:
            (metric.labels(*key) if key else metric).set(value)

    return registry, set_all


def _reference_main(path: str) -> None:
    registry, _ = registry_from_exposition(Path(path).read_text())
    httpd, _thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    info = {"msg": "serving", "grpc": "", "metrics": f"127.0.0.1:{httpd.server_port}"}
    print(json.dumps(info), file=sys.stderr, flush=True)
    threading.Event().wait()


# -- helpers ---------------------------------------------------------------------------------
def scrape(port: int, gzipped: bool = False) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(req, timeout=120) as resp:
        body = resp.read()
        assert (resp.headers.get("Content-Encoding") == "gzip") == gzipped
    return body


def series_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


def _spec(name: str) -> StreamSpec:
    return StreamSpec(
        task="multiclass", classes=tuple(f"c{i}" for i in range(K)), windows=WINDOWS, name=name
    )


def _where(file: str, line: int) -> str:
    return f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else "(C)"


def _package(file: str) -> str:
    """The part of the code a profiled function belongs to, for the summary by package."""
    parts = Path(file).parts
    for name in ("engine", "exporters", "store"):
        if "evalstream_server" in parts and name in parts:
            return f"evalstream_server/{name}"
    for name in ("prometheus_client", "numpy", "json"):
        if name in parts:
            return name
    return "built-ins (C: numpy ufuncs, str, ...)" if file == "~" else "other Python"


def profile_tables(fn: Callable[[], object], top: int) -> str:
    """cProfile of one call of ``fn``: top functions by cumulative and by own time, and own time
    summed per package."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    st = pstats.Stats(prof, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    total = max(sum(v[2] for v in st.values()), max(v[3] for v in st.values()))
    out = [f"profiled total: {fmt_seconds(total)} (cProfile slows Python code down)"]

    def table(key: int, title: str, skip_c: bool) -> str:
        rows = []
        items = sorted(st.items(), key=lambda kv: kv[1][key], reverse=True)
        for (file, line, func), (_cc, nc, tt, ct, _callers) in items:
            if skip_c and file == "~":
                continue
            share = 100 * (ct if key == 3 else tt) / total
            rows.append([f"`{func}`", _where(file, line), str(nc), fmt_seconds(tt),
                         fmt_seconds(ct), f"{share:.0f}%"])  # fmt: skip
            if len(rows) == top:
                break
        head = [title, "where", "calls", "own time", "cumulative", "share"]
        return markdown_table(head, rows)

    out.append(table(3, "function (by cumulative time)", skip_c=True))
    out.append(table(2, "function (by own time)", skip_c=False))
    by_pkg: dict[str, float] = {}
    for (file, _line, _func), v in st.items():
        by_pkg[_package(file)] = by_pkg.get(_package(file), 0.0) + v[2]
    pkg_rows = [
        [pkg, fmt_seconds(t), f"{100 * t / total:.0f}%"]
        for pkg, t in sorted(by_pkg.items(), key=lambda kv: kv[1], reverse=True)
    ]
    out.append(markdown_table(["own time summed by package", "time", "share"], pkg_rows))
    return "\n\n".join(out)


class _Fixed:
    """A collector answering families collected before: formatting without computing."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self) -> list:
        return self.families


# -- the run ---------------------------------------------------------------------------------
def run(n_streams: int, repeats: int, profile: bool) -> None:
    wl = make_workload(n_streams * PER_STREAM, K, seed=5, batch=ROWS)
    names = [f"stream-{i:03d}" for i in range(n_streams)]
    parts = {
        name: (wl.labels[i * PER_STREAM : (i + 1) * PER_STREAM],
               wl.scores[i * PER_STREAM : (i + 1) * PER_STREAM])
        for i, name in enumerate(names)
    }  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="evalstream-bench-scrape-"))
    servers: list[ServerProcess] = []
    try:
        srv = start_evalstream("evalstream-scrape", tmp, metrics=True)
        servers.append(srv)
        port = srv.metrics_port
        assert port is not None
        with (
            EvalClient(srv.target, max_batch_rows=ROWS) as client,
            grpc.insecure_channel(srv.target) as channel,
        ):
            for name, (y, p) in parts.items():
                client.create_stream(name, "multiclass", [f"c{i}" for i in range(K)],
                                     windows=WINDOWS)  # fmt: skip
                client.log(name, y, p)
            text = scrape(port).decode()
            exposition = tmp / "exposition.txt"
            exposition.write_text(text)
            ref = start_process(
                "prometheus-client-reference",
                [sys.executable, str(Path(__file__).resolve()), "--reference-server",
                 str(exposition)],
                tmp,
            )  # fmt: skip
            servers.append(ref)
            ref_port = ref.metrics_port
            assert ref_port is not None
            ref_text = scrape(ref_port).decode()
            stub = EvalstreamServiceStub(channel)

            def json_sweep() -> None:
                for name in names:
                    for window in ("cumulative", *WINDOWS):
                        stub.GetReport(pb.GetReportRequest(stream=name, window=window))

            _, set_all = registry_from_exposition(text)
            fns: dict[str, Callable[[], object]] = {
                "evalstream": lambda: scrape(port),
                "evalstream gzip": lambda: scrape(port, True),
                "reference": lambda: scrape(ref_port),
                "reference gzip": lambda: scrape(ref_port, True),
                "gauge set": set_all,
                "json": json_sweep,
            }
            sizes = {
                "evalstream gzip": len(scrape(port, True)),
                "reference gzip": len(scrape(ref_port, True)),
            }
            times: dict[str, list[float]] = {k: [] for k in fns}
            # "evalstream changed": one small batch lands in every stream before the scrape (not
            # timed), so every report is recomputed; the plain rows scrape idle streams, whose
            # reports the collector keeps until their engine or window bucket changes.
            fns["evalstream changed"] = lambda: scrape(port)
            times["evalstream changed"] = []
            tick = {name: (y[:64], p[:64]) for name, (y, p) in parts.items()}
            for r in range(repeats):
                for key, fn in fns.items():
                    if key == "evalstream changed":
                        for name, (ty, tp) in tick.items():
                            client.log(name, ty, tp)
                    t0 = time.perf_counter()
                    fn()
                    times[key].append(time.perf_counter() - t0)
                print(f"repeat {r + 1}/{repeats} done", file=sys.stderr)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    # In this process: the same store, the collector's parts, and the profile.
    store = MemoryStore()
    for name, (y, p) in parts.items():
        store.create(_spec(name))
        engine = store.get(name).engine
        for a in range(0, y.shape[0], ROWS):
            engine.update(y[a : a + ROWS], p[a : a + ROWS])
    collector = EvalstreamCollector(store)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    def reports_only() -> None:
        for rec in store.records():
            for window in rec.engine.window_names():
                build_report(store.state(rec.spec.name, window), window=window)

    formatted = CollectorRegistry(auto_describe=False)
    formatted.register(_Fixed(list(collector.collect())))  # type: ignore[arg-type]
    local = {
        "generate": lambda: generate_latest(registry),
        "collect": lambda: list(collector.collect()),
        "reports": reports_only,
        "format": lambda: generate_latest(formatted),
    }
    local_times: dict[str, list[float]] = {k: [] for k in local}
    for _ in range(max(1, min(3, repeats))):
        for key, fn in local.items():
            t0 = time.perf_counter()
            fn()
            local_times[key].append(time.perf_counter() - t0)
    # Background refresh (`--metrics-refresh`): every stream changes, one sweep recomputes the
    # reports off the scrape, and the scrape serves them.
    refreshed = EvalstreamCollector(store, refresh_interval=3600.0)
    ref_registry = CollectorRegistry(auto_describe=False)
    ref_registry.register(refreshed)
    refreshed.start()
    try:
        refreshed.wait_for_sweep(0, timeout=600)
        local_times["refreshed"], local_times["sweep"] = [], []
        for _ in range(max(1, min(3, repeats))):
            for rec in store.records():
                rec.engine.update(wl.labels[:64], wl.scores[:64])
            t0 = time.perf_counter()
            refreshed.sweep()
            local_times["sweep"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            generate_latest(ref_registry)
            local_times["refreshed"].append(time.perf_counter() - t0)
    finally:
        refreshed.stop()
    best = {k: min(v) for k, v in local_times.items()}

    p50 = {k: percentile(v, 50) for k, v in times.items()}
    p99 = {k: percentile(v, 99) for k, v in times.items()}
    n_series, ref_series = series_count(text), series_count(ref_text)
    per_stream = n_series / n_streams
    n_reports = n_streams * (1 + len(WINDOWS))

    def row(what: str, key: str, note: str, ref: str | None = "reference") -> list[str]:
        ratio = fmt_ratio(p50[key] / p50[ref]) if ref else "-"
        return [what, fmt_seconds(p50[key]), fmt_seconds(p99[key]), ratio, note]

    rows = [
        row("**evalstream** `GET /metrics`, every stream changed since the last scrape",
            "evalstream changed", "every report recomputed (the collector's light report)"),
        row("evalstream `GET /metrics`, idle streams", "evalstream",
            f"{fmt_bytes(len(text))}, {n_series:,} series ({per_stream:.0f} per stream)"),
        row("evalstream `GET /metrics`, `Accept-Encoding: gzip`", "evalstream gzip",
            f"{fmt_bytes(sizes['evalstream gzip'])} on the wire; ÷ the gzip reference",
            "reference gzip"),
        row("prometheus_client registry of the same series, `GET /metrics`", "reference",
            f"named reference; {fmt_bytes(len(ref_text))}, {ref_series:,} series"),
        row("  the same, `Accept-Encoding: gzip`", "reference gzip",
            f"{fmt_bytes(sizes['reference gzip'])} on the wire; the gzip reference",
            "reference gzip"),
        row("`Gauge.labels(...).set` of every gauge series (in this process)", "gauge set",
            "a push-style exporter's update cost, paid per update instead of per scrape"),
        row(f"`GetReport` x {n_reports} (every stream and window, bare stub)", "json",
            "the same reports over gRPC, no Prometheus formatting"),
    ]  # fmt: skip
    print(markdown_table(HEADER, rows))
    print(
        f"\np99 over {repeats} scrapes is close to their maximum. The reference exports the same "
        "series; its byte count can differ only in number formatting and HELP text."
    )

    n_local = len(local_times["collect"])
    print(f"\n## In this process, the same {n_streams} streams (best of {n_local})\n")
    gen = best["generate"]

    def part(label: str, key: str, extra: str = "") -> list[str]:
        return [label, fmt_seconds(best[key]), f"{100 * best[key] / gen:.0f}%{extra}"]

    local_rows = [
        part("`generate_latest(registry)` (the collector, then the text format)", "generate"),
        part("  `EvalstreamCollector.collect()`", "collect"),
        part(f"    of which `build_report` x {n_reports}", "reports",
             f"; {fmt_seconds(best['reports'] / n_reports)} per report"),
        part("  `generate_latest` of the families collected before (format only)", "format"),
        part("`generate_latest` with the background refresh, every stream changed", "refreshed",
             "; serves the last sweep"),
        part("  the background sweep that recomputed them (off the scrape)", "sweep"),
    ]  # fmt: skip
    print(markdown_table(["part", "time (best)", "share of generate_latest"], local_rows))

    if profile or median(times["evalstream"]) >= 1.0:
        print("\n## cProfile of one `generate_latest(registry)` in this process\n")
        print(profile_tables(lambda: generate_latest(registry), 12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 streams, 1 repeat")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="always print the cProfile")
    parser.add_argument("--reference-server", metavar="EXPOSITION", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_server:
        _reference_main(args.reference_server)
        return
    n_streams, repeats = (10, 1) if args.quick else (args.streams, args.repeats)
    print(
        machine_line(
            {"prometheus_client": version("prometheus_client"), "engine kernel": engine_kernel()}
        )
    )
    print(
        f"\n# `/metrics` scrape, {n_streams} streams x {K} classes, windows {list(WINDOWS)}, "
        f"{PER_STREAM} samples per stream, p50 and p99 of {repeats} interleaved repeats; "
        "servers are subprocesses\n"
    )
    run(n_streams, repeats, args.profile or args.quick)  # quick: keep the profile code exercised


if __name__ == "__main__":
    main()

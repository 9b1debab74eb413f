"""``evalstream`` command line: the composition root (evaluate, serve, demo, report, ...)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def _command(name: str):
    def register(fn: Callable[[argparse.Namespace], int]):
        _COMMANDS[name] = fn
        return fn

    return register


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a saved (y_true, y_score) file offline",
        description="Read an .npz with arrays y_true and y_score (or a CSV), feed it through the "
        "engine in batches and print the report.",
    )
    p.add_argument("path", help=".npz with arrays y_true and y_score, or a CSV")
    p.add_argument("--task", required=True, choices=["binary", "multiclass", "multilabel"])
    p.add_argument("--classes", type=_csv_list, default=None, help="class names, a,b,c")
    p.add_argument("--logits", action="store_true", help="scores are logits, not probabilities")
    p.add_argument("--json", action="store_true", help="print the canonical report as JSON")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write one self-contained HTML page (figures need the client's plots extra)",
    )
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument(
        "--resolution",
        default="exact",
        help="exact (default: sklearn's values, every sample kept), exact:<cap>, or bins, "
        "bins:<m> for what a binned stream reports",
    )


@_command("evaluate")
def _evaluate(args: argparse.Namespace) -> int:

    from .evaluate import evaluate_arrays, load_arrays

    y_true, y_score = load_arrays(args.path)
    report = evaluate_arrays(
        y_true,
        y_score,
        task=args.task,
        classes=args.classes,
        logits=args.logits,
        batch_size=args.batch_size,
        resolution=args.resolution,
        name=re.sub(r"[^A-Za-z0-9._-]", "_", Path(args.path).stem)[:128] or "evaluate",
        curves=bool(args.html),
    )
    if args.html:
        definition = {
            "source": str(args.path),
            "scores": "logits" if args.logits else "probabilities",
            "batch_size": args.batch_size,
        }
        _write_html(args.html, [report], definition, "evaluate")
        report.pop("curves", None)
    _print_report(report, args.json)
    return 0


def _write_html(path: str, reports: list[dict], definition: dict, command: str) -> None:
    """One self-contained page; without matplotlib, the tables and a line on what is missing."""
    from evalstream import figures
    from evalstream.htmlreport import report_page

    if not figures.available():
        print(
            f"evalstream {command}: matplotlib is not installed, the page has tables only "
            "(pip install 'evalstream-client[plots]')",
            file=sys.stderr,
        )
    text = report_page(reports, definition)
    Path(path).write_text(text, encoding="utf-8")
    print(f"evalstream {command}: wrote {path} ({len(text.encode())} bytes)", file=sys.stderr)


def _print_report(report: dict, as_json: bool) -> None:
    """The canonical report as JSON, or the readable text rendering."""
    from evalstream.text import format_report

    if as_json:
        json.dump(report, sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(format_report(report))


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the gRPC server and the /metrics endpoint",
        description="Every flag can also be set as EVALSTREAM_<NAME> "
        "(e.g. EVALSTREAM_GRPC_PORT); flags win.",
    )
    p.add_argument("--host", help="gRPC bind address (default 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, help="gRPC port (default 50051; 0 = any free)")
    p.add_argument("--metrics-host", help="/metrics bind address (default 127.0.0.1)")
    p.add_argument("--metrics-port", type=int, help="/metrics port (default 9464; -1 = off)")
    p.add_argument("--data-dir", help="directory for durable state")
    p.add_argument(
        "--store",
        metavar="URL",
        help="redis://HOST:PORT/DB, rediss://... or redis+cluster://H1:P1,H2:P2/0: keep state "
        "in Redis, shared by replicas "
        "(docs/replicas.md)",
    )
    p.add_argument("--max-streams", type=int)
    p.add_argument("--max-classes", type=int)
    p.add_argument("--max-batch-rows", type=int)
    p.add_argument(
        "--max-class-series",
        type=int,
        help="classes per stream that get per-class Prometheus series",
    )
    p.add_argument(
        "--metrics-refresh",
        type=float,
        metavar="SECONDS",
        help="recompute changed reports in the background this often and serve them on "
        "/metrics (bounds the scrape time of many busy streams); 0: on each scrape; default -1: "
        "on each scrape until one runs out of --metrics-scrape-budget, then every 10 s",
    )
    p.add_argument(
        "--metrics-scrape-budget",
        type=float,
        metavar="SECONDS",
        help="report computation one scrape may spend; past it, changed windows are served as "
        "last computed and the next scrape goes on from there (default 1)",
    )
    p.add_argument(
        "--max-window-series",
        type=int,
        help="windows per stream that get series, cumulative first (default 100)",
    )
    p.add_argument("--log-level")
    p.add_argument("--log-format", choices=["json", "text"])
    p.add_argument(
        "--durability",
        choices=["full", "normal"],
        help="full: acknowledged batches survive power loss (fsync per commit)",
    )
    p.add_argument("--tls-cert", help="PEM certificate chain: serve gRPC over TLS")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--tls-client-ca", help="PEM CA: require client certificates (mutual TLS)")
    p.add_argument("--token-file", help="lines of tenant:token (EVALSTREAM_TOKENS adds more)")
    p.add_argument(
        "--metrics-token-file", help="bearer tokens (one a line) /metrics requires of scrapers"
    )
    p.add_argument("--metrics-tls-cert", help="PEM certificate chain: serve /metrics over TLS")
    p.add_argument("--metrics-tls-key", help="PEM private key for --metrics-tls-cert")
    p.add_argument(
        "--metrics-client-ca", help="PEM CA: /metrics requires client certificates it signed"
    )
    p.add_argument("--stream-rate", type=float, help="samples/s per stream (0 = unlimited)")
    p.add_argument("--tenant-rate", type=float, help="samples/s per tenant (0 = unlimited)")
    p.add_argument(
        "--max-stream-memory",
        type=int,
        metavar="BYTES",
        help="refuse streams whose worst-case memory passes this (default 4 GiB)",
    )
    p.add_argument(
        "--max-server-memory",
        type=int,
        metavar="BYTES",
        help="refuse streams, and batches, once what the streams hold (each one's fixed part, "
        "and what grows with its data as it grows) would pass this (default 0: the machine's "
        "or the cgroup's memory)",
    )
    p.add_argument(
        "--max-tenant-memory",
        type=int,
        metavar="BYTES",
        help="the same for one tenant's streams together (default 0: no quota)",
    )
    p.add_argument(
        "--max-producers",
        type=int,
        help="producer ids a stream remembers for exactly-once (default 10000)",
    )
    p.add_argument(
        "--producer-retention",
        type=float,
        metavar="SECONDS",
        help="forget a producer silent this long; it starts again at sequence 1 "
        "(default 604800, 7 days)",
    )
    p.add_argument(
        "--max-clock-skew",
        type=float,
        metavar="SECONDS",
        help="refuse batches whose event_time lies further ahead of the server clock (default 300)",
    )
    p.add_argument(
        "--max-streams-per-tenant", type=int, help="streams one tenant may have (0: no quota)"
    )
    p.add_argument(
        "--max-watchers-per-tenant",
        type=int,
        help="WatchReport calls one tenant holds open (default 16; 0: no quota)",
    )
    p.add_argument(
        "--min-watch-interval",
        type=float,
        metavar="SECONDS",
        help="shortest WatchReport interval (default 1; shorter ones are raised to it)",
    )
    p.add_argument(
        "--max-concurrent-rpcs", type=int, help="authenticated calls in flight (default 256)"
    )
    p.add_argument(
        "--max-calls-per-tenant", type=int, help="calls of one tenant in flight (0: no quota)"
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="close a call whose client sends nothing this long (default 120; 0: never)",
    )


@_command("serve")
def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from .allocator import tune_allocator
    from .logs import configure_logging
    from .server import serve_forever
    from .settings import Settings

    tune_allocator()  # transient report states go back to the OS (allocator.py)

    keys = (
        "host",
        "grpc_port",
        "metrics_host",
        "metrics_port",
        "data_dir",
        "store",
        "max_streams",
        "max_streams_per_tenant",
        "max_calls_per_tenant",
        "max_watchers_per_tenant",
        "min_watch_interval",
        "max_concurrent_rpcs",
        "idle_timeout",
        "max_classes",
        "max_batch_rows",
        "max_class_series",
        "metrics_refresh",
        "metrics_scrape_budget",
        "max_window_series",
        "log_level",
        "log_format",
        "durability",
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "token_file",
        "metrics_token_file",
        "metrics_tls_cert",
        "metrics_tls_key",
        "metrics_client_ca",
        "stream_rate",
        "tenant_rate",
        "max_clock_skew",
        "max_producers",
        "producer_retention",
        "max_stream_memory",
        "max_server_memory",
        "max_tenant_memory",
    )
    settings = Settings.from_env(**{k: getattr(args, k) for k in keys})
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve_forever(settings))
    except (RuntimeError, ValueError, OSError) as exc:  # refusals to start: say why, no trace
        print(f"evalstream serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print a stream's report from a running server")
    p.add_argument("--target", default="127.0.0.1:50051", help="HOST:PORT of the server")
    p.add_argument("name", nargs="?", metavar="STREAM", help="the stream (or --stream)")
    p.add_argument("--stream", default=None)
    p.add_argument("--window", default="cumulative")
    p.add_argument("--json", action="store_true", help="print the canonical report as JSON")
    p.add_argument(
        "--html",
        metavar="FILE",
        help="also write one self-contained HTML page of every window (a selector picks one)",
    )
    p.add_argument("--token", default=None, help="bearer token (or EVALSTREAM_TOKEN)")


@_command("report")
def _report(args: argparse.Namespace) -> int:
    import dataclasses
    import os

    from evalstream import EvalClient, EvalstreamError

    stream = args.stream or args.name
    if not stream or (args.stream and args.name and args.stream != args.name):
        received = f"{args.name!r} and --stream {args.stream!r}" if stream else "neither"
        print(
            f"evalstream report: STREAM: expected one stream name, received {received}",
            file=sys.stderr,
        )
        return 2
    token = args.token or os.environ.get("EVALSTREAM_TOKEN")
    try:
        with EvalClient(args.target, token=token) as client:
            report = client.report(stream, window=args.window).to_dict()
            if args.html:
                info = client.get_stream(stream)
                windows = ["cumulative"] + [w for w in info.windows if w != "cumulative"]
                reports = [client.report(stream, window=w, curves=True).to_dict() for w in windows]
                definition = {
                    k: (v.isoformat() if hasattr(v, "isoformat") else v)
                    for k, v in dataclasses.asdict(info).items()
                }
    except EvalstreamError as exc:
        print(f"evalstream report: {exc}", file=sys.stderr)
        return 1
    if args.html:
        _write_html(args.html, reports, definition, "report")
    _print_report(report, args.json)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="a live tour: server, imbalanced stream, live report")
    p.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    p.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    p.add_argument("--rate", type=int, default=20000, help="samples per second")
    p.add_argument("--report-every", type=float, default=3.0)
    p.add_argument("--grpc-port", type=int, default=0)
    p.add_argument("--metrics-port", type=int, default=9464)
    p.add_argument("--data-dir", default="")


@_command("demo")
def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        duration=args.duration,
        forever=args.forever,
        rate=args.rate,
        report_every=args.report_every,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        data_dir=args.data_dir,
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text}")
    return value


def _add_triton_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "triton-eval",
        help="score a labelled set with a model served by Triton, stream it, print the report",
        description="Check that the inference server (NVIDIA Triton, or any KServe V2 gRPC "
        "server) and the model are ready, read the model's metadata, create the stream when "
        "missing (multiclass; classes from --classes or 0..K-1 for K model outputs), stream "
        "(labels, scores) into evalstream exactly once per run, and print the stream's report. "
        "Exit codes: 0 ok, 2 bad data or arguments, 1 a server failed.",
    )
    p.add_argument(
        "--triton", required=True, metavar="HOST:PORT", help="the inference server's gRPC"
    )
    p.add_argument("--model", required=True, metavar="NAME", help="model on the inference server")
    p.add_argument("--model-version", default="", metavar="V", help="default: the server's")
    p.add_argument("--data", required=True, metavar="PATH", help=".npz: inputs, labels")
    p.add_argument("--stream", required=True, metavar="NAME", help="evalstream stream to feed")
    p.add_argument(
        "--target", default="127.0.0.1:50051", metavar="HOST:PORT", help="evalstream's gRPC"
    )
    p.add_argument("--classes", type=_csv_list, default=None, metavar="A,B,...")
    p.add_argument(
        "--outputs",
        choices=["logits", "probabilities"],
        default=None,
        help="what the model outputs (default: the stream's kind; logits for a new stream)",
    )
    p.add_argument("--concurrency", type=_positive_int, default=4, metavar="N", help="default 4")
    p.add_argument(
        "--batch-size", type=_positive_int, default=64, metavar="N", help="rows per request (64)"
    )
    p.add_argument("--input", metavar="NAME", help="model input (default: from metadata)")
    p.add_argument("--output", metavar="NAME", help="model output (default: from metadata)")
    p.add_argument("--resolution", default="bins", help="of a new stream: bins, exact, ...")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="per request (30)")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="wait for the inference server and the model to be ready (10)",
    )
    p.add_argument("--token", metavar="T", help="evalstream bearer token (or EVALSTREAM_TOKEN)")
    p.add_argument("--json", action="store_true", help="print the canonical report as JSON")


# The sources name their Python parameters; triton-eval's errors name its flags instead.
_TRITON_EVAL_FLAGS = {
    "input_name": "--input",
    "output_name": "--output",
    "batch_size": "--batch-size",
    "concurrency": "--concurrency",
    "timeout": "--timeout",
    "connect_timeout": "--connect-timeout",
    "version": "--model-version",
}


@_command("triton-eval")
def _triton_eval(args: argparse.Namespace) -> int:
    import os

    from evalstream import EvalstreamError, InvalidArgumentError, InvalidBatchError
    from evalstream.text import format_report

    from .sources import SourceError, SourceInputError, SourceUnavailableError, triton_eval

    def fail(code: int, exc: Exception, what: str = "") -> int:
        worded = exc.worded(_TRITON_EVAL_FLAGS) if isinstance(exc, SourceError) else str(exc)
        text = " ".join(worded.split())  # one line
        print(f"evalstream triton-eval: {what}{text}", file=sys.stderr)
        return code

    try:
        run = triton_eval(
            triton=args.triton,
            model=args.model,
            version=args.model_version,
            data=args.data,
            stream=args.stream,
            target=args.target,
            classes=args.classes,
            outputs=args.outputs,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            input_name=args.input,
            output_name=args.output,
            resolution=args.resolution,
            timeout=args.timeout,
            connect_timeout=args.connect_timeout,
            token=args.token or os.environ.get("EVALSTREAM_TOKEN"),
            progress=True,
        )
    except SourceInputError as exc:  # its message names the field: data, labels, model...
        return fail(2, exc)
    except SourceUnavailableError as exc:  # names the inference server
        return fail(1, exc)
    except (InvalidArgumentError, InvalidBatchError) as exc:
        return fail(2, exc, f"evalstream server {args.target} refused: ")
    except EvalstreamError as exc:
        return fail(1, exc, f"evalstream server {args.target}: ")
    except ValueError as exc:  # the client refuses what the wire cannot carry
        return fail(2, exc)
    print(
        f"triton-eval: model {run.model.name!r} -> stream {run.stream!r}"
        + (" (created)" if run.created else "")
        + f": {run.samples} samples acknowledged"
        + (f", {run.resends} inference requests resent" if run.resends else ""),
        file=sys.stderr,
    )
    if args.json:
        json.dump(run.report, sys.stdout, indent=1, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print(format_report(run.report))
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, received {text}")
    return value


def _add_triton_proxy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "triton-proxy",
        help="a KServe V2 gRPC proxy in front of Triton that records predictions",
        description="Serve inference.GRPCInferenceService on --listen, forward every call to the "
        "inference server (--triton) and answer with its bytes unchanged, and record the "
        "outputs of the --model models into evalstream (--target) as predictions under the "
        "request id (generated when the caller gave none; rows of a batch are ID/ROW). Send "
        "labels later with EvalClient.log_labels. Recording never delays or fails inference: "
        "rows wait in a bounded buffer and what does not fit is counted as dropped. SIGTERM "
        "drains calls in flight and flushes the buffer. Exit codes: 0 stopped, 2 bad "
        "arguments, 1 could not start.",
    )
    p.add_argument("--listen", default="127.0.0.1:8011", metavar="HOST:PORT", help="(8011)")
    p.add_argument("--triton", required=True, metavar="HOST:PORT", help="inference server gRPC")
    p.add_argument(
        "--target", default="127.0.0.1:50051", metavar="HOST:PORT", help="evalstream's gRPC"
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME=STREAM[:OUTPUT]",
        help="record model NAME into stream STREAM (created beforehand, or by --create), from "
        "output OUTPUT (default: the only or first output); repeat for more models",
    )
    g = p.add_argument_group(
        "creating streams",
        "With --create the proxy reads each model's metadata at start-up (waiting up to "
        "--connect-timeout for it to be ready) and creates the missing streams: the task from "
        "the output's last dimension (1 column: binary; K: multiclass), classes 0..K-1, scores "
        "logits. An existing stream must take the output as it is (class count, and task, "
        "classes, scores when given), or the proxy does not start.",
    )
    g.add_argument("--create", action="store_true", help="create missing streams (off)")
    g.add_argument(
        "--task",
        action="append",
        default=[],
        metavar="[NAME=]TASK",
        help="binary, multiclass or multilabel, for model NAME or every model (default: from "
        "the output width)",
    )
    g.add_argument(
        "--classes",
        action="append",
        default=[],
        metavar="NAME=A,B,...",
        help="class names of model NAME's stream, one per output column (default 0..K-1)",
    )
    g.add_argument(
        "--scores",
        action="append",
        default=[],
        metavar="[NAME=]KIND",
        help="logits or probabilities: what model NAME (or every model) outputs (default: "
        "logits, as the project's CNN; an existing stream's own)",
    )
    g.add_argument(
        "--windows",
        type=_csv_list,
        default=[],
        metavar="5m,1h",
        help="sliding windows of the streams the proxy creates (existing streams keep theirs)",
    )
    g.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=10.0,
        metavar="S",
        help="wait for the inference server and the models at start-up (10)",
    )
    t = p.add_argument_group(
        "TLS",
        "PEM files. A CA alone: TLS trusting that CA; with a certificate and key: mutual TLS.",
    )
    t.add_argument("--target-ca", default="", metavar="FILE", help="CA of evalstream's cert")
    t.add_argument("--target-cert", default="", metavar="FILE", help="client cert to evalstream")
    t.add_argument("--target-key", default="", metavar="FILE")
    t.add_argument("--triton-ca", default="", metavar="FILE", help="CA of the inference server")
    t.add_argument("--triton-cert", default="", metavar="FILE", help="client cert to it")
    t.add_argument("--triton-key", default="", metavar="FILE")
    t.add_argument("--tls-cert", default="", metavar="FILE", help="serve TLS on --listen")
    t.add_argument("--tls-key", default="", metavar="FILE")
    t.add_argument(
        "--tls-client-ca",
        default="",
        metavar="FILE",
        help="callers must present a certificate this CA signed (mutual TLS)",
    )
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument(
        "--metrics-port", type=int, default=9465, help="the proxy's /metrics (9465; -1 = off)"
    )
    p.add_argument("--max-buffer-rows", type=_positive_int, default=100_000, metavar="N")
    p.add_argument("--batch-rows", type=_positive_int, default=4096, metavar="N")
    p.add_argument("--flush-interval", type=_positive_float, default=0.05, metavar="S")
    p.add_argument(
        "--retry-deadline",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="per send to an unreachable evalstream, before the rows go back to the buffer (2)",
    )
    p.add_argument("--flush-timeout", type=_positive_float, default=10.0, metavar="S")
    p.add_argument("--shutdown-grace", type=_positive_float, default=5.0, metavar="S")
    p.add_argument("--token", metavar="T", help="evalstream bearer token (or EVALSTREAM_TOKEN)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-format", choices=["json", "text"], default="text")


@_command("triton-proxy")
def _triton_proxy(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from evalstream import EvalstreamError, InvalidArgumentError

    from .engine import parse_duration
    from .logs import configure_logging
    from .proxy import (
        ClientTLS,
        ProxySettings,
        RouteError,
        ServerTLS,
        parse_model_option,
        parse_routes,
        serve_proxy_forever,
        split_host_port,
    )
    from .sources import OUTPUT_KINDS, TASKS, SourceInputError, SourceUnavailableError

    def fail(code: int, exc: Exception, what: str = "") -> int:
        print(f"evalstream triton-proxy: {what}{' '.join(str(exc).split())}", file=sys.stderr)
        return code

    try:
        for flag in ("listen", "triton", "target"):
            split_host_port(f"--{flag}", getattr(args, flag))
        routes = parse_routes(args.model)
        tasks = parse_model_option("--task", args.task, routes, TASKS)
        scores = parse_model_option("--scores", args.scores, routes, OUTPUT_KINDS)
        classes = {
            model: tuple(_csv_list(names))
            for model, names in parse_model_option("--classes", args.classes, routes).items()
        }
        for window in args.windows:
            parse_duration(window)
        given = [
            flag
            for flag, value in (
                ("--task", tasks), ("--classes", classes), ("--scores", scores),
                ("--windows", args.windows),
            )
            if value
        ]  # fmt: skip
        if given and not args.create:
            raise RouteError(
                given[0], "--create with it (it describes the streams the proxy creates)",
                f"{given[0]} without --create",
            )  # fmt: skip
        settings = ProxySettings(
            triton=args.triton,
            target=args.target,
            routes=routes,
            listen=args.listen,
            metrics_host=args.metrics_host,
            metrics_port=args.metrics_port,
            max_buffer_rows=args.max_buffer_rows,
            batch_rows=args.batch_rows,
            flush_interval=args.flush_interval,
            retry_deadline=args.retry_deadline,
            flush_timeout=args.flush_timeout,
            shutdown_grace=args.shutdown_grace,
            token=args.token or os.environ.get("EVALSTREAM_TOKEN"),
            create=args.create,
            tasks=tasks,
            classes=classes,
            scores=scores,
            windows=tuple(args.windows),
            connect_timeout=args.connect_timeout,
            target_tls=ClientTLS("target", args.target_ca, args.target_cert, args.target_key),
            triton_tls=ClientTLS("triton", args.triton_ca, args.triton_cert, args.triton_key),
            listen_tls=ServerTLS(args.tls_cert, args.tls_key, args.tls_client_ca),
        )
        # Every TLS file is read now: a missing one is an argument error, before anything runs.
        settings.target_tls.check()
        settings.triton_tls.check()
        settings.listen_tls.credentials()
    except ValueError as exc:  # RouteError, TLSError, or an address that is not HOST:PORT
        return fail(2, exc)
    configure_logging(args.log_level, args.log_format)

    def ready(running) -> None:
        models = ", ".join(f"{m} -> {r.stream}" for m, r in settings.routes.items())
        scheme = "TLS " if settings.listen_tls.enabled else ""
        print(
            f"triton-proxy: serving {scheme}{running.address} -> {settings.triton}; recording "
            f"{models} into {settings.target}; /metrics on port {running.metrics_port}",
            file=sys.stderr,
            flush=True,
        )

    try:
        left = asyncio.run(serve_proxy_forever(settings, ready=ready))
    except SourceInputError as exc:  # --create: a stream or an option that does not fit
        return fail(2, exc)
    except SourceUnavailableError as exc:  # --create: the inference server is not ready
        return fail(1, exc)
    except InvalidArgumentError as exc:  # --create: evalstream refused the stream
        return fail(2, exc, f"evalstream server {args.target} refused: ")
    except EvalstreamError as exc:
        return fail(1, exc, f"evalstream server {args.target}: ")
    except (OSError, RuntimeError, ValueError) as exc:  # cannot bind, no usable client
        return fail(1, exc)
    print(f"triton-proxy: stopped; {left} rows unsent", file=sys.stderr)
    return 0


def _add_data_dir_commands(sub: argparse._SubParsersAction) -> None:
    for name, what in (
        ("verify", "report what is intact in a durable data dir and what is not (exit 1: damaged)"),
        ("repair", "keep what is intact in a damaged data dir, set the rest aside, say what"),
    ):
        p = sub.add_parser(name, help=what, description=what + "; run it with the server stopped")
        p.add_argument("--data-dir", required=True, help="the directory given to serve --data-dir")


@_command("verify")
def _verify(args: argparse.Namespace) -> int:
    from .data_dir_commands import verify

    return verify(Path(args.data_dir))


@_command("repair")
def _repair(args: argparse.Namespace) -> int:
    from .data_dir_commands import repair

    return repair(Path(args.data_dir))


_PARSER_BUILDERS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_evaluate,
    _add_serve,
    _add_report,
    _add_demo,
    _add_triton_eval,
    _add_triton_proxy,
    _add_data_dir_commands,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalstream",
        description="Streaming, sklearn-exact classifier metrics in bounded memory.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in _PARSER_BUILDERS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .engine import InvalidInputError

    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except InvalidInputError as exc:
        print(f"evalstream {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end ingest over gRPC on 127.0.0.1: ``evalstream serve`` against a transport-only
reference server, both in their own processes, fed by the same client in the same run.

* **evalstream**: ``evalstream serve`` (in-memory store, then the durable store with
  ``--data-dir``, synchronous=FULL) as a subprocess; the client is ``EvalClient.log`` of the whole
  workload, split into messages of 4096 rows over one bidirectional ``Ingest`` call.
* **transport-only reference** (the named reference of the ratio): a minimal ``grpc.aio`` server
  written here, started as a subprocess of this script, that serves the same method
  (``/evalstream.v1.EvalstreamService/Ingest``) with the same channel options. It only parses each
  request (``IngestRequest.FromString`` and ``np.frombuffer`` of the two tensors) and acknowledges
  it with an ACCEPTED ``BatchResult``: either one response per request, or coalesced per burst of
  arrivals as the evalstream servicer does. The faster of the two is the reference.
  The same ``EvalClient.log`` call sends it the same ``IngestRequest`` bytes.
* Context rows measured in this process (no server): the engine alone (``StreamEngine.update``
  per batch of 4096), and the client alone (``to_rows`` + ``make_request`` +
  ``SerializeToString`` per message), the two ceilings of the end-to-end rate.

Servers run as separate processes so that the client and the server do not share one GIL. The
repeats are interleaved (each repeat visits every target, in a rotating order). Server CPU is read
from ``/proc/<pid>/stat`` around each pass.

Run: ``python bench/service_ingest.py [--quick]``. ``--reference-server`` is internal (the
reference server's subprocess).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from evalstream import EvalClient
from evalstream.ingest import make_request
from evalstream.tensors import to_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    Workload,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    make_workload,
    markdown_table,
)

__all__ = [
    "ServerProcess",
    "start_process",
    "start_evalstream",
    "start_reference",
    "engine_kernel",
    "K",
    "ROWS",
]

K = 10
ROWS = 4096  # rows per IngestRequest (EvalClient max_batch_rows)
PRODUCER = "bench-producer"
MEMORY = "**evalstream**, in-memory store"
WINDOWED = "evalstream, in-memory, stream with windows 5m + 1h"
DURABLE = "evalstream, durable store (`--data-dir`, synchronous=FULL)"
HEADER = [
    "server (K = 10, 4096 rows per message)",
    "samples/s (best)",
    "samples/s (median)",
    "÷ reference",
    "server CPU ÷ wall",
    "notes",
]


def engine_kernel() -> str:
    """Which ingest kernel the engine uses here (and in the servers, which inherit the
    environment): the compiled one (``engine/fastcount``, ``EVALSTREAM_FASTCOUNT``) or numpy."""
    try:
        from evalstream_server.engine import fastcount
    except ImportError:
        return "numpy"
    return "compiled (fastcount)" if fastcount.enabled() else "numpy"


# -- server subprocesses ---------------------------------------------------------------------
@dataclass
class ServerProcess:
    """A server in its own process; its log (stderr) goes to a file we read the ports from."""

    name: str
    proc: subprocess.Popen
    target: str
    metrics_port: int | None
    log_path: Path

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process so far (Linux ``/proc``)."""
        with open(f"/proc/{self.proc.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_process(
    name: str, argv: list[str], log_dir: Path, timeout: float = 60.0
) -> ServerProcess:
    """Run ``argv``, its output to a log file, until it logs a JSON line with ``"serving"`` and
    its ``"grpc"`` (and optionally ``"metrics"``) ``host:port``."""
    log_path = log_dir / f"{name.replace(' ', '_').replace('/', '_')}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name}: exited with {proc.returncode}:\n{log_path.read_text()}")
        for line in log_path.read_text(errors="replace").splitlines():
            if '"serving"' not in line:
                continue
            info = json.loads(line)
            metrics = info.get("metrics", "")
            port = metrics.rsplit(":", 1)[-1] if metrics else ""
            return ServerProcess(
                name, proc, info["grpc"], int(port) if port.isdigit() else None, log_path
            )
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{name}: no 'serving' line within {timeout} s:\n{log_path.read_text()}")


def start_evalstream(name: str, log_dir: Path, *extra: str, metrics: bool = False) -> ServerProcess:
    """``evalstream serve`` on free ports of 127.0.0.1 (``/metrics`` only with ``metrics``)."""
    argv = [
        sys.executable, "-m", "evalstream_server.cli", "serve",
        "--host", "127.0.0.1", "--grpc-port", "0",
        "--metrics-host", "127.0.0.1", "--metrics-port", "0" if metrics else "-1",
        "--log-format", "json", "--log-level", "INFO", *extra,
    ]  # fmt: skip
    return start_process(name, argv, log_dir)


def start_reference(name: str, log_dir: Path, ack: str) -> ServerProcess:
    """The transport-only reference server of this script, acking ``per-message`` or
    ``coalesced``."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--reference-server", "--ack", ack]
    return start_process(name, argv, log_dir)


# -- the transport-only reference server (runs in its subprocess) ----------------------------
def _reference_main(ack: str) -> None:
    import grpc
    from evalstream.v1 import evalstream_service_pb2 as pb
    from evalstream.v1 import ingest_pb2

    accepted = ingest_pb2.BATCH_STATUS_ACCEPTED

    def parse(raw: bytes) -> ingest_pb2.BatchResult:
        req = pb.IngestRequest.FromString(raw)
        scores = np.frombuffer(req.scores.data, dtype="<f4")
        labels = np.frombuffer(req.labels.data, dtype="<i4")
        n = int(req.scores.shape[0])
        if scores.size != n * int(req.scores.shape[1]) or labels.size != n:
            raise ValueError("tensor sizes do not match their shapes")
        return ingest_pb2.BatchResult(
            stream=req.stream,
            producer_id=req.producer_id,
            sequence=req.sequence,
            status=accepted,
            samples=n,
            expected_sequence=req.sequence + 1,
        )

    async def per_message(raw_iter, ctx):
        batches = samples = 0
        async for raw in raw_iter:
            r = parse(raw)
            batches, samples = batches + 1, samples + r.samples
            yield pb.IngestResponse(results=[r], accepted_batches=batches, accepted_samples=samples)

    async def coalesced(raw_iter, ctx):
        # the evalstream servicer's shape: a reader task parses, the call acks each burst
        queue: asyncio.Queue = asyncio.Queue()

        async def read() -> None:
            try:
                async for raw in raw_iter:
                    queue.put_nowait(parse(raw))
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read())
        batches = samples = 0
        done = False
        while not done:
            pending = [await queue.get()]
            while not queue.empty():
                pending.append(queue.get_nowait())
            out = pb.IngestResponse()
            for r in pending:
                if r is None:
                    done = True
                    continue
                out.results.append(r)
                batches, samples = batches + 1, samples + r.samples
            out.accepted_batches, out.accepted_samples = batches, samples
            yield out
        await reader

    async def serve() -> None:
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 4 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=256,
        )
        handler = grpc.stream_stream_rpc_method_handler(
            per_message if ack == "per-message" else coalesced,
            response_serializer=lambda m: m.SerializeToString(),
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(pb.DESCRIPTOR.services_by_name[
                "EvalstreamService"].full_name, {"Ingest": handler}),)
        )  # fmt: skip
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(json.dumps({"msg": "serving", "grpc": f"127.0.0.1:{port}"}), file=sys.stderr)
        sys.stderr.flush()
        await server.wait_for_termination()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


# -- the client side (this process) ----------------------------------------------------------
def client_only_pass(wl: Workload) -> None:
    """What ``EvalClient.log`` does per message before gRPC takes over, without sending."""
    rows = to_rows(wl.labels, wl.scores)
    for seq, a in enumerate(range(0, rows.n, ROWS), 1):
        make_request("b000", PRODUCER, seq, rows.slice(a, a + ROWS)).SerializeToString()


def engine_pass(wl: Workload) -> None:
    from evalstream_server.engine import StreamEngine, StreamSpec

    eng = StreamEngine(StreamSpec(task="multiclass", classes=tuple(f"c{i}" for i in range(K))))
    for y, p in wl.batches():
        eng.update(y, p)


@dataclass
class Target:
    label: str
    server: ServerProcess | None
    client: EvalClient | None
    windows: tuple[str, ...] | None  # evalstream: CreateStream with these; reference: None
    fn: Callable[[Workload], None] | None = None  # in-process rows
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def _log_pass(t: Target, stream: str, wl: Workload) -> tuple[float, float]:
    """One ``EvalClient.log`` of the workload into a fresh stream: (wall s, server CPU s)."""
    client = t.client
    assert client is not None
    if t.windows is not None:
        classes = [f"c{i}" for i in range(K)]
        client.create_stream(stream, "multiclass", classes, windows=t.windows)
    cpu0 = t.server.cpu_seconds() if t.server else 0.0
    t0 = time.perf_counter()
    result = client.log(stream, wl.labels, wl.scores)
    wall = time.perf_counter() - t0
    cpu = (t.server.cpu_seconds() - cpu0) if t.server else 0.0
    assert result.accepted_samples == wl.n, (t.label, result)
    return wall, cpu


def run(n: int, repeats: int) -> tuple[list[list[str]], dict[str, float]]:
    wl = make_workload(n, K, seed=3, batch=ROWS)
    tmp = Path(tempfile.mkdtemp(prefix="evalstream-bench-ingest-"))
    servers: list[ServerProcess] = []
    clients: list[EvalClient] = []
    try:
        data_dir = str(tmp / "data")
        specs = [
            ("reference, ack per message", "ref-per-message", None, "per-message"),
            ("reference, acks coalesced per burst", "ref-coalesced", None, "coalesced"),
            (MEMORY, "evalstream-memory", [], None),
            (DURABLE, "evalstream-durable", ["--data-dir", data_dir], None),
        ]
        targets: list[Target] = []
        for label, name, extra, ack in specs:
            if extra is None:
                srv = start_reference(name, tmp, ack)
            else:
                srv = start_evalstream(name, tmp, *extra)
            servers.append(srv)
            client = EvalClient(srv.target, producer_id=PRODUCER, max_batch_rows=ROWS)
            clients.append(client)
            targets.append(Target(label, srv, client, None if extra is None else ()))
            if name == "evalstream-memory":
                targets.append(Target(WINDOWED, srv, client, ("5m", "1h")))
        for label, fn in (
            ("engine alone, in this process: `StreamEngine.update`", engine_pass),
            ("client alone: `to_rows` + `make_request` + serialize", client_only_pass),
        ):
            targets.append(Target(label, None, None, None, fn=fn))

        warm = wl.head(4 * ROWS)
        for i, t in enumerate(targets):  # connections, first-call costs
            if t.client is not None:
                _log_pass(t, f"warmup-{i}", warm)
        for r in range(repeats):
            order = targets[r % len(targets) :] + targets[: r % len(targets)]
            for t in order:
                stream = f"s{targets.index(t)}-{r:03d}"
                if t.fn is not None:
                    t0 = time.perf_counter()
                    t.fn(wl)
                    wall, cpu = time.perf_counter() - t0, 0.0
                else:
                    wall, cpu = _log_pass(t, stream, wl)
                t.times.append(wall)
                t.cpu.append(cpu)
            print(f"repeat {r + 1}/{repeats} done", file=sys.stderr)
    finally:
        for c in clients:
            c.close()
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    best = {t.label: n / min(t.times) for t in targets}
    med = {t.label: n / statistics.median(t.times) for t in targets}
    ref_label = max(targets[:2], key=lambda t: best[t.label]).label
    ref = best[ref_label]
    rows = []
    for t in targets:
        i = t.times.index(min(t.times))
        cpu = f"{t.cpu[i] / t.times[i]:.2f}" if t.server is not None else "-"
        note = ""
        if t.label == ref_label:
            note = "named reference (the faster reference)"
        elif t.label.startswith("reference"):
            note = "the slower reference"
        elif t.server is not None:
            note = (
                "target >= 0.50x"
                if t.label == MEMORY
                else "÷ in-memory: " + fmt_ratio(best[t.label] / best[MEMORY])
            )
        else:
            note = "no gRPC; a ceiling of the end-to-end rate"
        note += f"; {fmt_seconds(min(t.times) / (n / ROWS))} per message"
        rows.append([t.label, fmt_rate(best[t.label]), fmt_rate(med[t.label]),
                     fmt_ratio(best[t.label] / ref), cpu, note])  # fmt: skip
    return rows, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small N, one repeat")
    parser.add_argument("--samples", type=int, default=ROWS * 768, help="samples per pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ack", choices=["per-message", "coalesced"], default="per-message",
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.reference_server:
        _reference_main(args.ack)
        return
    n, repeats = (ROWS * 16, 1) if args.quick else (args.samples, args.repeats)
    import grpc

    print(machine_line({"grpcio": grpc.__version__, "engine kernel": engine_kernel()}))
    print(
        f"\n# End-to-end ingest over 127.0.0.1, K={K}, {n:,} samples per pass "
        f"({n // ROWS} messages of {ROWS} rows, one `EvalClient.log` call), "
        f"best and median of {repeats} interleaved repeats; servers are subprocesses\n"
    )
    rows, _ = run(n, repeats)
    print(markdown_table(HEADER, rows))
    print(
        "\nserver CPU ÷ wall: CPU seconds of the server process during its best pass over that "
        "pass's wall time (1.00 = one core busy throughout)."
    )


if __name__ == "__main__":
    main()

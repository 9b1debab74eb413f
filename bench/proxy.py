"""Latency the Triton proxy adds to ``ModelInfer`` on 127.0.0.1.

* **direct** (the named reference of the ratio): ``tritonclient.grpc`` ``infer`` of
  ``digits_cnn`` on the inference server, one call at a time, ``n`` rows per request (1 and 64).
  The server is NVIDIA Triton 2.51 (``.tools/triton``, the Python-backend model of
  ``deploy/triton/python_repository`` running onnxruntime on one thread) and MLServer 1.7.1
  (``deploy/mlserver``, one process, one onnxruntime thread), each measured in turn.
* **through the proxy, recording**: the same calls to ``evalstream triton-proxy`` (its own
  process, ``--model digits_cnn=bench-proxy``) in front of the same MLServer, recording into
  ``evalstream serve`` (its own process, in-memory store): the production path. Each request has
  no id, so the proxy generates one.
* **through the proxy, not recording**: a second proxy whose ``--model`` names another model, so
  ``digits_cnn`` is forwarded untouched: the cost of the forwarding alone.

Requests are interleaved (each round sends a block to every path, in rotating order) so that
noise from other processes hits every path alike. ``added`` is the path's percentile minus the
direct one's; the ratio is p50 over direct p50. Target: at most 1 ms added at p50.

Run: ``python bench/proxy.py [--quick] [--server triton|mlserver|both]`` (needs ``.tools/triton``
and ``.tools/mlserver-venv``, from ``bash scripts/install-tools.sh``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from evalstream import EvalClient

sys.path.insert(0, str(Path(__file__).resolve().parent))

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/triton"))

import realtriton  # noqa: E402
from harness import fmt_ratio, fmt_seconds, machine_line, markdown_table, percentile  # noqa: E402
from service_ingest import start_evalstream  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MLSERVER = ROOT / ".tools/mlserver-venv/bin/mlserver"
MODEL = "digits_cnn"
STREAM = "bench-proxy"
HEADER = ["path (ModelInfer, digits_cnn)", "rows", "p50", "p99", "added p50", "added p99"]
HEADER += ["÷ direct (p50)"]


@dataclass
class Path_:
    name: str
    url: str
    times: dict[int, list[float]] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_live(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        client = grpcclient.InferenceServerClient(url)  # a fresh channel per probe
        try:
            if client.is_server_live(client_timeout=2) and client.is_model_ready(
                MODEL, client_timeout=2
            ):
                return
        except Exception:  # not listening yet, model loading
            pass
        finally:
            client.close()
        time.sleep(0.2)
    raise RuntimeError(f"{url}: not ready within {timeout} s:\n{log.read_text()[-3000:]}")


def start_mlserver(work: Path) -> tuple[subprocess.Popen, str]:
    spec = importlib.util.spec_from_file_location("_ws", ROOT / "deploy/mlserver/write_settings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    grpc_port = _free_port()
    module.write_settings(work / "mlserver", grpc_port=grpc_port, http_port=_free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER")}
    log = work / "mlserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MLSERVER), "start", "."],
            cwd=work / "mlserver",
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"127.0.0.1:{grpc_port}"
    _wait_live(url, proc, log)
    return proc, url


def start_proxy(work: Path, name: str, triton: str, target: str, model: str):
    log = work / f"{name}.log"
    argv = [
        sys.executable, "-m", "evalstream_server.cli", "triton-proxy",
        "--listen", "127.0.0.1:0", "--triton", triton, "--target", target,
        "--model", f"{model}={STREAM}", "--metrics-port", "-1", "--log-level", "WARNING",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"serving (\S+) ->", log.read_text(errors="replace"))
        if found:
            _wait_live(found.group(1), proc, log)
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{name}: did not start:\n{log.read_text()[-3000:]}")


def servers_to_run(choice: str, script: str) -> tuple[str, ...]:
    """The inference servers ``--server`` names (``both``: Triton, then MLServer), each checked
    to be installed; exits naming what is missing."""
    kinds = ("triton", "mlserver") if choice == "both" else (choice,)
    if "mlserver" in kinds and not MLSERVER.is_file():
        sys.exit(f"bench/{script}: needs {MLSERVER} (run `bash scripts/install-tools.sh`)")
    if "triton" in kinds and not realtriton.installed():
        sys.exit(f"bench/{script}: needs .tools/triton (run `bash scripts/install-tools.sh`)")
    return kinds


def start_triton(work: Path) -> tuple[realtriton.RealTriton, str]:
    server = realtriton.start(work / "triton-work")
    return server, server.grpc_url


def measure(paths: list[Path_], inputs: np.ndarray, sizes, rounds: int, block: int) -> None:
    clients = {p.name: grpcclient.InferenceServerClient(p.url) for p in paths}
    requested = [grpcclient.InferRequestedOutput("logits")]
    tensors = {}
    for n in sizes:
        tensor = grpcclient.InferInput("input", [n, 1, 8, 8], "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(inputs[:n]))
        tensors[n] = [tensor]
    for p in paths:  # warm up every channel and path
        for n in sizes:
            for _ in range(20):
                clients[p.name].infer(MODEL, tensors[n], outputs=requested, client_timeout=30)
            p.times[n] = []
    for r in range(rounds):
        order = paths[r % len(paths) :] + paths[: r % len(paths)]
        for p in order:
            client = clients[p.name]
            for n in sizes:
                for _ in range(block):
                    t0 = time.perf_counter()
                    client.infer(MODEL, tensors[n], outputs=requested, client_timeout=30)
                    p.times[n].append(time.perf_counter() - t0)
    for client in clients.values():
        client.close()


def run(server_kind: str, inputs: np.ndarray, rounds: int, block: int) -> list[list[str]]:
    """The three paths in front of one inference server; table rows and the recorded count."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-proxy-{server_kind}-"))
    (work / "triton-work").mkdir()
    procs: list[subprocess.Popen] = []
    evalstream = triton_server = None
    label = "Triton" if server_kind == "triton" else "MLServer"
    try:
        print(f"starting {label}, evalstream and two proxies ...", file=sys.stderr)
        if server_kind == "triton":
            triton_server, triton = start_triton(work)
        else:
            mlserver, triton = start_mlserver(work)
            procs.append(mlserver)
        evalstream = start_evalstream("evalstream", work)
        with EvalClient(evalstream.target) as client:
            classes = [str(i) for i in range(10)]
            client.create_stream(STREAM, task="multiclass", classes=classes, scores="logits")
        recording, url_rec = start_proxy(work, "proxy-rec", triton, evalstream.target, MODEL)
        procs.append(recording)
        plain, url_plain = start_proxy(work, "proxy-plain", triton, evalstream.target, "other")
        procs.append(plain)
        paths = [
            Path_(f"**direct** to {label} (reference)", triton),
            Path_(f"{label} through the proxy, recording", url_rec),
            Path_(f"{label} through the proxy, not recording (model not routed)", url_plain),
        ]
        sizes = (1, 64)
        measure(paths, inputs, sizes, rounds, block)
        stop_process(recording)  # SIGTERM: flush, so the recorded count below is final
        with EvalClient(evalstream.target) as client:
            recorded = client.report(STREAM).to_dict()["labels"]["predictions"]
    finally:
        for proc in procs:
            stop_process(proc)
        if triton_server is not None:
            triton_server.stop()
        if evalstream is not None:
            evalstream.stop()
    rows = []
    for n in sizes:
        base50 = percentile(paths[0].times[n], 50)
        base99 = percentile(paths[0].times[n], 99)
        for p in paths:
            p50, p99 = percentile(p.times[n], 50), percentile(p.times[n], 99)
            first = p is paths[0]
            rows.append(
                [
                    p.name,
                    str(n),
                    fmt_seconds(p50),
                    fmt_seconds(p99),
                    "-" if first else f"{(p50 - base50) * 1e3:+.3f} ms",
                    "-" if first else f"{(p99 - base99) * 1e3:+.3f} ms",
                    "1.00x" if first else fmt_ratio(p50 / base50),
                ]
            )
    sent = sum(n * (len(paths[1].times[n]) + 20) for n in sizes)  # with the warm-up
    print(
        f"{label}: stream {STREAM!r}: {recorded} predictions recorded of {sent} rows sent "
        "to the proxy",
        file=sys.stderr,
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: few requests")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--block", type=int, default=50, help="requests per path per round")
    parser.add_argument("--server", choices=("triton", "mlserver", "both"), default="both")
    args = parser.parse_args()
    rounds, block = (2, 10) if args.quick else (args.rounds, args.block)
    kinds = servers_to_run(args.server, "proxy.py")
    with np.load(ROOT / "deploy/triton/digits_eval.npz") as data:
        inputs = data["inputs"]
    rows = []
    for kind in kinds:
        rows += run(kind, inputs, rounds, block)
    print(machine_line({"requests per path and size": str(rounds * block)}))
    print()
    print(markdown_table(HEADER, rows))


if __name__ == "__main__":
    main()

"""Throughput of ``evalstream triton-eval`` against NVIDIA Triton and MLServer on 127.0.0.1.

* **reference**: ``TritonSource.infer`` alone (the same requests, ``--concurrency 4``, no
  evalstream): what the inference server gives.
* **triton-eval**: the whole job (``sources.triton_eval``: check, infer, log every batch with its
  labels into ``evalstream serve``, in-memory store, its own process, then the report).

The digits set repeated ``--repeat`` times (744 rows each), batches of 64 (the CLI's default) and
256 (the model's ``max_batch_size``); the ratio is triton-eval's samples/s over the reference's.
Both servers run the model on one onnxruntime thread (Triton through its Python backend,
``deploy/triton/python_repository``; MLServer through ``deploy/mlserver``); everything shares the
machine's cores.

Run: ``python bench/triton_eval.py [--quick] [--server triton|mlserver|both]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/triton"))

import realtriton  # noqa: E402
from harness import fmt_ratio, machine_line, markdown_table  # noqa: E402
from proxy import servers_to_run, start_mlserver, stop_process  # noqa: E402
from service_ingest import start_evalstream  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HEADER = ["server", "batch", "reference: TritonSource.infer", "triton-eval (into evalstream)"]
HEADER += ["÷ reference"]


def _rate(fn, rows: int, runs: int) -> float:
    """Best of ``runs`` (rows per second)."""
    best = 0.0
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = max(best, rows / (time.perf_counter() - t0))
    return best


def run(kind: str, data: Path, inputs: np.ndarray, runs: int) -> list[list[str]]:
    from evalstream_server.sources import TritonSource, triton_eval

    work = Path(tempfile.mkdtemp(prefix=f"bench-triton-eval-{kind}-"))
    label = "Triton 2.51" if kind == "triton" else "MLServer 1.7.1"
    server = proc = evalstream = None
    rows = []
    try:
        if kind == "triton":
            server = realtriton.start(work)
            url = server.grpc_url
        else:
            proc, url = start_mlserver(work)
        evalstream = start_evalstream("evalstream", work)
        target = evalstream.target
        names = iter(range(1_000_000))  # a new stream per job
        for batch in (64, 256):
            source = TritonSource(url, "digits_cnn", batch_size=batch, concurrency=4)
            with source:
                source.check()
                ref = _rate(lambda s=source: s.infer(inputs), len(inputs), runs)

            def job(b: int = batch, n: Iterator[int] = names) -> None:
                triton_eval(
                    triton=url, model="digits_cnn", data=data, stream=f"b{b}-{next(n)}",
                    target=target, batch_size=b, concurrency=4,
                )  # fmt: skip

            rate = _rate(job, len(inputs), runs)
            rows.append(
                [label, str(batch), f"{ref:,.0f}/s", f"{rate:,.0f}/s", fmt_ratio(rate / ref)]
            )
    finally:
        if server is not None:
            server.stop()
        if proc is not None:
            stop_process(proc)
        if evalstream is not None:
            evalstream.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: the set once, one run")
    parser.add_argument("--repeat", type=int, default=40, help="copies of the 744-row set")
    parser.add_argument("--runs", type=int, default=3, help="best of this many")
    parser.add_argument("--server", choices=("triton", "mlserver", "both"), default="both")
    args = parser.parse_args()
    repeat, runs = (1, 1) if args.quick else (args.repeat, args.runs)
    kinds = servers_to_run(args.server, "triton_eval.py")
    with np.load(ROOT / "deploy/triton/digits_eval.npz") as d:
        inputs, labels = np.tile(d["inputs"], (repeat, 1, 1, 1)), np.tile(d["labels"], repeat)
    data = Path(tempfile.mkdtemp(prefix="bench-triton-eval-")) / "set.npz"
    np.savez(data, inputs=inputs, labels=labels)
    table = []
    for kind in kinds:
        table += run(kind, data, inputs, runs)
    print(machine_line({"rows per run": f"{len(inputs):,}", "best of": str(runs)}))
    print()
    print(markdown_table(HEADER, table))


if __name__ == "__main__":
    main()

"""Delayed labels in the engine: predictions now, labels later, against labelled ingest.

K = 10 classes, batches of 4096, the harness workload (imbalanced labels, peaky float32 scores).

* **labelled** (the reference of the ratios): ``StreamEngine.update(y, p)``, predictions and labels
  in one batch, as ``EvalClient.log``.
* **predictions, then labels**: ``ingest_predictions(ids, p)`` for every batch, then
  ``ingest_labels(ids, y)`` in another order (the batches reversed): validation, the label-free
  fields, the pending table (string ids, one dict entry each), the join, and the labelled counts.
  The rate counts joined pairs.
* **predictions only**: the label-free half (what an inference proxy feeds while labels are days
  away).
* **labelled, without the label-free fields**: ``compute_delta(..., predictions=False)``, what
  labelled ingest cost before predictions were counted for the label-free figures.

A second table gives the join table's memory per id, measured with tracemalloc (pending, then
joined: the tombstones that catch duplicate labels), next to ``PendingPredictions.nbytes``.

Run: ``python bench/delayed_labels.py [--quick]``. Every ratio is measured in the same run.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream_server.engine import StreamEngine, StreamSpec, make_batch  # noqa: E402
from evalstream_server.engine.counting import compute_delta  # noqa: E402
from harness import (  # noqa: E402
    best_of,
    fmt_bytes,
    fmt_rate,
    fmt_ratio,
    machine_line,
    make_workload,
    markdown_table,
    quick_parser,
)

K = 10
HEADER = ["path (K = 10, 4096 rows per batch)", "samples/s", "÷ labelled"]
MEMORY_HEADER = [
    "join table (K = 10, ids of 20 characters)",
    "measured (tracemalloc)",
    "bytes per id",
    "nbytes estimate per id",
]


def memory_rows(spec: StreamSpec, work, count: int) -> list[list[str]]:
    """Memory of ``count`` pending predictions, then of their tombstones once all joined, as
    tracemalloc sees it: the ids are made inside the measurement and only the table keeps them
    (as on the server, where they come from the request)."""
    eng = StreamEngine(spec.__class__(**{**spec.__dict__, "max_pending": count}))
    scores = np.resize(work.scores, (count, K))
    labels = np.resize(work.labels, count)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    names = [f"request-{i:012d}" for i in range(count)]
    eng.ingest_predictions(eng.validate_predictions(names, scores))
    del names
    gc.collect()
    pending = tracemalloc.get_traced_memory()[0] - base
    pending_estimate = eng.pending.nbytes
    eng.ingest_labels(eng.validate_labels([f"request-{i:012d}" for i in range(count)], labels))
    gc.collect()
    joined = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return [
        [f"{count:,} pending", fmt_bytes(pending), f"{pending / count:.0f}",
         f"{pending_estimate / count:.0f}"],
        [f"{count:,} joined (tombstones; arrays kept)", fmt_bytes(joined),
         f"{joined / count:.0f}", f"{eng.pending.nbytes / count:.0f}"],
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = quick_parser(__doc__.splitlines()[0]).parse_args(argv)
    n = 40_960 if args.quick else 409_600
    repeats = 1 if args.quick else 5
    work = make_workload(n, K, seed=1)
    spec = StreamSpec("multiclass", classes=[f"c{i}" for i in range(K)], max_pending=2 * n)
    ids = np.array([f"request-{i:012d}" for i in range(n)], dtype=object)
    batches = list(work.batches())
    id_batches = [ids[a : a + work.batch].tolist() for a in range(0, n, work.batch)]

    def labelled() -> None:
        eng = StreamEngine(spec)
        for y, p in batches:
            eng.update(y, p)

    def labelled_without_label_free() -> None:
        eng = StreamEngine(spec)
        for y, p in batches:
            batch = make_batch(spec, y, p)
            eng.cumulative.add_delta(compute_delta(spec, batch, predictions=False), batch)

    def predictions_then_labels() -> None:
        eng = StreamEngine(spec)
        for (_, p), i in zip(batches, id_batches, strict=True):
            eng.ingest_predictions(eng.validate_predictions(i, p))
        for (y, _), i in zip(reversed(batches), reversed(id_batches), strict=True):
            eng.ingest_labels(eng.validate_labels(i, y))
        assert eng.cumulative.n_samples == n

    def predictions_only() -> None:
        eng = StreamEngine(spec)
        for (_, p), i in zip(batches, id_batches, strict=True):
            eng.ingest_predictions(eng.validate_predictions(i, p))

    fns = {
        "labelled (reference)": labelled,
        "predictions, then labels (joined pairs)": predictions_then_labels,
        "predictions only": predictions_only,
        "labelled, without the label-free fields": labelled_without_label_free,
    }
    best = best_of(fns, repeats)
    ref = best["labelled (reference)"]
    rows = [[name, fmt_rate(n / t), fmt_ratio(ref / t)] for name, t in best.items()]
    print(machine_line({"samples": str(n)}))
    print()
    print(markdown_table(HEADER, rows))
    print()
    mem_rows = []
    for count in (10_000, 100_000) if not args.quick else (10_000,):
        mem_rows += memory_rows(spec, work, count)
    print(markdown_table(MEMORY_HEADER, mem_rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

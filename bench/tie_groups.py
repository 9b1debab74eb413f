"""What the bins' score range (tie groups, issue 12) costs at ingest, measured in the same run.

For K = 10 classes and batches of 4096 rows (imbalanced labels; peaky softmax scores, and the same
rounded to 0.05 steps), ``StreamEngine.update`` per batch on a stream without windows:

* **with the score range**: the engine as it is (the counting kernel notes the batch's own range
  in the pass that bins the scores; ``compute_delta`` hands the cumulative state that
  ``RangeDelta``, joined as one maximum);
* **without** (the named reference of the ratio): the same engine with the ``score_range`` entry
  dropped from every delta before it is counted, i.e. the engine before tie groups.

CPU time (``time.process_time``), best of the repeats, alternating the two, so that the ratio is
measured on the same machine state. Issue 12's target: ingest no worse than 0.9x.

Run: ``python bench/tie_groups.py [--quick]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream_server.engine import StreamEngine, StreamSpec, stream  # noqa: E402
from evalstream_server.engine.counting import compute_delta  # noqa: E402
from harness import machine_line, markdown_table, quick_parser  # noqa: E402

K = 10
BATCH = 4096
HEADER = ["scores (K = 10, 4096 rows a batch)", "with score range", "without", "with ÷ without"]


def _data(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    prior = 1.0 / np.arange(1, K + 1)
    y = rng.choice(K, n, p=prior / prior.sum())
    z = rng.normal(0.0, 1.0, (n, K))
    z[np.arange(n), y] += 2.5
    z *= 4.0
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if kind == "0.05-step":
        p = np.round(p / 0.05) * 0.05
    return y, p.astype(np.float32)


def _without(spec, batch, predictions=True):  # type: ignore[no-untyped-def]
    delta = compute_delta(spec, batch, predictions)
    delta.pop("score_range", None)
    return delta


def _rate(y: np.ndarray, p: np.ndarray, spec: StreamSpec) -> float:
    eng = StreamEngine(spec, clock=lambda: 0.0)
    t = time.process_time()
    for lo in range(0, y.size, BATCH):
        eng.update(y[lo : lo + BATCH], p[lo : lo + BATCH])
    return y.size / max(time.process_time() - t, 1e-9)


def main() -> None:
    args = quick_parser(__doc__.splitlines()[0]).parse_args()
    n, repeats = (BATCH * 2, 1) if args.quick else (BATCH * 40, 7)
    classes = tuple(str(k) for k in range(K))
    spec = StreamSpec(task="multiclass", classes=classes, probability_tolerance=0.5)
    print(
        "# evalstream: ingest cost of the bins' score range" + (" (--quick)" if args.quick else "")
    )
    print()
    print(machine_line())
    print()
    rows = []
    for kind in ("peaky", "0.05-step"):
        y, p = _data(kind, n)
        best = {"with": 0.0, "without": 0.0}
        for _ in range(repeats):
            for name, fn in (("with", compute_delta), ("without", _without)):
                stream.compute_delta = fn  # type: ignore[assignment]
                best[name] = max(best[name], _rate(y, p, spec))
        stream.compute_delta = compute_delta
        rows.append(
            [
                kind,
                f"{best['with'] / 1e6:.2f} M samples/s",
                f"{best['without'] / 1e6:.2f} M samples/s",
                f"{best['with'] / best['without']:.2f}x",
            ]
        )
    print(markdown_table(HEADER, rows))


if __name__ == "__main__":
    main()

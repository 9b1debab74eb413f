"""How often the 95% intervals of the averaged ROC AUC hold the population value, binned and exact.

Seeded simulation. Models (each with its population values from sklearn on 300,000 samples):

* ``multiclass K=3``: softmax of noisy logits, the true class shifted up, prevalence 0.2/0.3/0.5
  (``tests/engine/test_interval_coverage.py``);
* ``multiclass K=10``: the same with prevalences from 3% to 17%;
* ``multilabel L=3``: three labels sharing a per-sample difficulty (labels correlated).

For streams of N samples, R replicate streams each go through the engine in the default (binned)
resolution without its raw rows (as past ``SMALL_ROWS``: counts and the row sample), whose
averages take their cross-class correlations from a ``SAMPLE_ROWS``-row sample
(``engine/row_sample.py``), and in the exact resolution (every row's columns: the reference);
the table gives the share of replicates whose ``ci95`` holds the population value (nominal 0.95,
standard error about ``sqrt(0.95 * 0.05 / R)``), and the binned interval's width divided by the
exact one's (median, 5th and 95th percentiles over the replicates) for the macro average: how much
the sample's correlations move the width. The second table varies the sample's rows on one model
(the same streams, the state's sample replaced by one of that many rows). The third gives what
the sample costs ingest: ``StreamEngine.update`` at K = 10 with it and with its ``add`` made a
no-op, alternating in one process (CPU time, best of 5).

Run: ``python bench/interval_coverage.py [--quick]`` (several minutes; ``--quick``: R = 20).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import sklearn.metrics as skm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream_server.engine import State, StreamSpec, build_report, make_batch  # noqa: E402
from evalstream_server.engine.row_sample import SAMPLE_ROWS, RowSample  # noqa: E402
from harness import machine_line, markdown_table, quick_parser  # noqa: E402

AVERAGES = ("macro", "weighted", "micro")
HEADER = [
    "model",
    "N",
    "coverage binned (macro / weighted / micro)",
    "coverage exact (macro / weighted / micro)",
    "width binned ÷ exact, macro (p5 / p50 / p95)",
]
ROWS_HEADER = ["sample rows", "coverage binned (macro / micro)", "width ÷ exact (p5 / p50 / p95)"]
INGEST_HEADER = [
    "ingest (K = 10, update)",
    "samples/s with the row sample",
    "without (reference)",
    "with ÷ without",
]

Draw = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


def _softmax_model(prevalence: np.ndarray) -> Draw:
    K = prevalence.size

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.choice(K, n, p=prevalence)
        z = rng.normal(size=(n, K)) * 1.5
        z[np.arange(n), y] += 1.5
        p = np.exp(z)
        return y, (p / p.sum(axis=1, keepdims=True)).astype(np.float32)

    return draw


def _multilabel(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    Y = (rng.random((n, 3)) < np.array([0.4, 0.25, 0.15])).astype(np.int64)
    z = rng.normal(size=(n, 1)) + rng.normal(size=(n, 3)) * 0.8 + 1.5 * (2 * Y - 1)
    return Y, (1 / (1 + np.exp(-z))).astype(np.float32)


def _population(task: str, draw: Draw) -> dict[str, float]:
    y, p = draw(np.random.default_rng(2024), 300_000)
    if task == "multilabel":
        Y = y
        return {a: float(skm.roc_auc_score(Y, p, average=a)) for a in AVERAGES}
    onehot = np.eye(p.shape[1], dtype=int)[y]
    return {
        "macro": float(skm.roc_auc_score(y, p, multi_class="ovr", average="macro")),
        "weighted": float(skm.roc_auc_score(y, p, multi_class="ovr", average="weighted")),
        "micro": float(skm.roc_auc_score(onehot.ravel(), p.ravel())),
    }


def _ci(report: dict, avg: str) -> tuple[float, float]:
    low, high = report["roc_auc"][avg]["ci95"]
    return float(low), float(high)


def _replicates(
    spec: StreamSpec, draw: Draw, n: int, R: int, seed: int, rows: tuple[int, ...] = ()
) -> dict[str, list[dict[str, tuple[float, float]]]]:
    """Per replicate, the intervals of the binned state (with ``SAMPLE_ROWS`` or each of
    ``rows`` sampled rows) and of the exact one."""
    rng = np.random.default_rng(seed)
    exact_spec = StreamSpec(task=spec.task, classes=spec.classes, resolution="exact")
    out: dict[str, list[dict[str, tuple[float, float]]]] = {}
    for _ in range(R):
        y, p = draw(rng, n)
        batch = make_batch(spec, y, p)
        binned = State(spec)
        binned.update(batch)
        binned.to_bins()  # counts and row sample alone, as past the raw rows (SMALL_ROWS)
        exact = State(exact_spec)
        exact.update(make_batch(exact_spec, y, p))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = {"exact": build_report(exact), "binned": build_report(binned)}
            for m in rows:
                binned.sample = RowSample(spec, m)
                binned.sample.add(batch)
                found[str(m)] = build_report(binned)
        for key, report in found.items():
            out.setdefault(key, []).append({a: _ci(report, a) for a in AVERAGES})
    return out


def _coverage(intervals: list[dict[str, tuple[float, float]]], pop: dict[str, float]) -> list[str]:
    return [
        f"{np.mean([lo <= pop[a] <= hi for lo, hi in (iv[a] for iv in intervals)]):.3f}"
        for a in AVERAGES
    ]


def _width_ratio(
    binned: list[dict[str, tuple[float, float]]], exact: list[dict[str, tuple[float, float]]]
) -> str:
    r = [
        (b["macro"][1] - b["macro"][0]) / (e["macro"][1] - e["macro"][0])
        for b, e in zip(binned, exact, strict=True)
    ]
    p5, p50, p95 = np.percentile(r, [5, 50, 95])
    return f"{p5:.2f} / {p50:.2f} / {p95:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = quick_parser(__doc__.splitlines()[0]).parse_args(argv)
    R = 20 if args.quick else 800
    sizes = (300,) if args.quick else (300, 3000)
    prev10 = np.linspace(1, 5, 10) / np.linspace(1, 5, 10).sum()
    models = [
        ("multiclass K=3", "multiclass", _softmax_model(np.array([0.2, 0.3, 0.5]))),
        ("multiclass K=10", "multiclass", _softmax_model(prev10)),
        ("multilabel L=3", "multilabel", _multilabel),
    ]
    print(machine_line({"R": str(R), "sample rows": str(SAMPLE_ROWS)}))
    table = []
    for i, (name, task, draw) in enumerate(models):
        K = 3 if task == "multilabel" else len(draw(np.random.default_rng(0), 1)[1][0])
        spec = StreamSpec(task=task, classes=tuple(f"c{j}" for j in range(K)))
        pop = _population(task, draw)
        for n in sizes:
            got = _replicates(spec, draw, n, R if K < 10 else R // 2, seed=100 + i)
            table.append(
                [
                    name,
                    f"{n:,}",
                    " / ".join(_coverage(got["binned"], pop)),
                    " / ".join(_coverage(got["exact"], pop)),
                    _width_ratio(got["binned"], got["exact"]),
                ]
            )
    print(markdown_table(HEADER, table))
    print()
    rows = (16, 32, 64, 128, 256)
    spec = StreamSpec(task="multilabel", classes=("x", "y", "z"))
    pop = _population("multilabel", _multilabel)
    n = 600 if args.quick else 3000
    got = _replicates(spec, _multilabel, n, R // 2, seed=7, rows=rows)
    print(f"multilabel L=3, N = {n:,}, {R // 2} replicates:")
    table = []
    for m in rows:
        cov = _coverage(got[str(m)], pop)
        table.append([str(m), f"{cov[0]} / {cov[2]}", _width_ratio(got[str(m)], got["exact"])])
    print(markdown_table(ROWS_HEADER, table))
    print()
    print(markdown_table(INGEST_HEADER, ingest_cost(args.quick)))
    return 0


def ingest_cost(quick: bool) -> list[list[str]]:
    """``StreamEngine.update`` at K = 10 with the row sample and with its ``add`` made a no-op
    (the reference), alternating in one process, best CPU time of the repeats."""
    from evalstream_server.engine import StreamEngine, row_sample

    rows = []
    draw = _softmax_model(np.linspace(1, 5, 10) / np.linspace(1, 5, 10).sum())
    spec_of = {
        "4096-row batches, no window": ((), 4096),
        "500-row batches, windows 5m + 1h": (("5m", "1h"), 500),
    }
    n_batches = 10 if quick else 200
    repeats = 1 if quick else 5
    original = row_sample.RowSample.add
    for label, (windows, n) in spec_of.items():
        spec = StreamSpec(
            task="multiclass", classes=tuple(f"c{j}" for j in range(10)), windows=windows
        )
        rng = np.random.default_rng(3)
        batches = [draw(rng, n) for _ in range(n_batches)]
        best = {"with": float("inf"), "without": float("inf")}
        for _ in range(repeats):
            for mode in best:
                no_op = lambda self, batch: None  # noqa: E731
                row_sample.RowSample.add = original if mode == "with" else no_op  # type: ignore[method-assign]
                engine = StreamEngine(spec, clock=lambda: 1_000_000.0)
                start = time.process_time()
                for i, (y, p) in enumerate(batches):
                    engine.ingest(engine.validate(y, p), now=1_000_000.0 + 10.0 * i)
                best[mode] = min(best[mode], time.process_time() - start)
        row_sample.RowSample.add = original  # type: ignore[method-assign]
        total = n * n_batches
        rows.append(
            [
                f"{label}, {total:,} samples",
                f"{total / best['with'] / 1e3:,.0f}k",
                f"{total / best['without'] / 1e3:,.0f}k",
                f"{best['without'] / best['with']:.2f}x",
            ]
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())

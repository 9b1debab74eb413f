"""Query time, accuracy and state memory of the evalstream engine at 1M samples, K = 10.

* **Query time**: the full canonical report (``StreamEngine.report()``: every metric, every
  average, bounds and intervals) p50 / p99 over repeats, against the named reference,
  **scikit-learn** computing ROC AUC one-vs-rest macro + weighted + micro, one-vs-one macro, and
  average precision macro on the same float32 scores. Also the exact resolution's report and, when
  installed, TorchMetrics' exact ``MulticlassAUROC.compute()``.
* **Accuracy**: the binned report's AUC / AP against sklearn's, and whether sklearn's values lie
  inside the report's guaranteed bounds.
* **State memory against N**: ``State.nbytes`` / ``StreamEngine.nbytes`` after 10k, 100k and 1M
  samples for the binned resolution (constant) and the exact one (grows with N), and TorchMetrics'
  exact state (its ``preds`` and ``target`` lists) when installed.

Run: ``python bench/engine_query.py [--quick]``. Every ratio is measured in the same run.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream_server.engine import Resolution, StreamEngine, StreamSpec  # noqa: E402
from evalstream_server.engine.report import build_report  # noqa: E402
from harness import (  # noqa: E402
    BATCH,
    Workload,
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    make_workload,
    markdown_table,
    optional_import,
    percentile,
    quick_parser,
    time_once,
)

K = 10
TARGET_S = 5e-3  # the full report for K = 10, binned
QUERY_HEADER = ["query (K = 10)", "implementation", "p50", "p99", "sklearn ÷ this", "notes"]
ACCURACY_HEADER = [
    "metric",
    "sklearn (float32 scores)",
    "evalstream binned",
    "abs error",
    "guaranteed bounds",
    "sklearn inside",
    "evalstream exact: abs error",
]
MEMORY_HEADER = [
    "N samples",
    "binned `State.nbytes`",
    "binned `StreamEngine.nbytes`",
    "exact `State.nbytes`",
    "exact B/sample",
    "TorchMetrics exact",
    "TorchMetrics B/sample",
    "exact ÷ binned",
]


def _spec(resolution: str | Resolution = "bins") -> StreamSpec:
    return StreamSpec(
        task="multiclass", classes=tuple(f"c{i}" for i in range(K)), resolution=resolution
    )


def _feed(eng: StreamEngine, wl: Workload, start: int, stop: int) -> None:
    for s in range(start, stop, BATCH):
        e = min(s + BATCH, stop)
        eng.update(wl.labels[s:e], wl.scores[s:e])


def _report_times(report: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Times of ``report`` as the engine computes it, and, interleaved with them, with every
    same-bin pair of a mixed bin one half (``within.slopes`` off: the point values before the
    within-bin slopes), the reference for what the slopes cost."""
    from unittest import mock

    from evalstream_server.engine import ranking, views

    report()  # warm-up: cached bin edges and atomic masks
    gc.collect()
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(2 * repeats):
        even = i % 2 == 1
        with (
            mock.patch.object(ranking, "slopes", lambda *a: None) if even else nullcontext(),
            mock.patch.object(views, "slopes", lambda *a: None) if even else nullcontext(),
        ):
            times[int(even)].append(time_once(report))
    return times


def _sklearn(wl: Workload, repeats: int) -> tuple[dict[str, float], float, float]:
    """sklearn's values and its best times: (values, four AUCs seconds, AP macro seconds)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, p = wl.labels, wl.scores
    onehot = (y[:, None] == np.arange(K)[None, :]).astype(np.int8)
    values: dict[str, float] = {}

    def aucs() -> None:
        values["roc_auc ovr macro"] = roc_auc_score(y, p, multi_class="ovr", average="macro")
        values["roc_auc ovr weighted"] = roc_auc_score(y, p, multi_class="ovr", average="weighted")
        values["roc_auc ovr micro"] = roc_auc_score(y, p, multi_class="ovr", average="micro")
        values["roc_auc ovo macro"] = roc_auc_score(y, p, multi_class="ovo", average="macro")

    def ap() -> None:
        values["average_precision macro"] = average_precision_score(onehot, p, average="macro")

    t_auc, t_ap = [], []
    for i in range(max(1, repeats)):
        t_auc.append(time_once(aucs))
        t_ap.append(time_once(ap))
        if i == 0 and t_auc[0] > 25:  # one run is enough on a slow day: stay near 2 minutes
            break
    return values, min(t_auc), min(t_ap)


def _engine_values(report: dict) -> dict[str, dict]:
    auc, ap = report["roc_auc"], report["average_precision"]
    return {
        "roc_auc ovr macro": auc["macro"],
        "roc_auc ovr weighted": auc["weighted"],
        "roc_auc ovr micro": auc["micro"],
        "roc_auc ovo macro": auc["ovo_macro"],
        "average_precision macro": ap["macro"],
    }


def _torchmetrics_exact(wl: Workload, checkpoints: list[int]) -> dict | None:
    torch = optional_import("torch")
    tm = optional_import("torchmetrics.classification")
    if torch is None or tm is None:
        return None
    metric = tm.MulticlassAUROC(num_classes=K, thresholds=None)
    nbytes = {}
    start = 0
    for stop in checkpoints:
        for s in range(start, stop, BATCH):
            e = min(s + BATCH, stop)
            metric.update(torch.from_numpy(wl.scores[s:e]), torch.from_numpy(wl.labels[s:e]))
        start = stop
        nbytes[stop] = sum(t.element_size() * t.nelement() for t in metric.preds + metric.target)
    value = {}
    t = time_once(lambda: value.setdefault("auc", float(metric.compute())))
    binned = tm.MulticlassAUROC(num_classes=K, thresholds=1024)
    return {
        "nbytes": nbytes,
        "compute_s": t,
        "macro": value["auc"],
        "binned_nbytes": binned.confmat.element_size() * binned.confmat.nelement(),
    }


def _profile(eng: StreamEngine, n: int, top: int = 15) -> str:
    """cProfile of ``n`` reports: the top functions by own time, then by cumulative time."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        eng.report()
    prof.disable()
    parts = []
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats(key).print_stats(top)
        lines = out.getvalue().splitlines()
        first = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
        parts.append(f"-- sorted by {key} --\n" + "\n".join(lines[first:]).rstrip())
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = quick_parser(__doc__.splitlines()[0]).parse_args(argv)
    quick = args.quick
    n = 20_000 if quick else 1_000_000
    checkpoints = [c for c in (10_000, 100_000, 1_000_000) if c < n] + [n]
    report_repeats = 3 if quick else 100
    t_start = time.perf_counter()

    extra = {}
    sk = optional_import("sklearn")
    extra["scikit-learn"] = getattr(sk, "__version__", "not installed")
    tmm = optional_import("torchmetrics")
    if tmm is not None:
        torch = optional_import("torch")
        extra["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads)"
        extra["torchmetrics"] = tmm.__version__
    title = "# evalstream engine: query time, accuracy and state memory"
    print(title + (" (--quick: not meaningful)" if quick else ""))
    print()
    print(machine_line(extra))
    print(
        f"Workload: N = {n:,} samples, K = {K}, imbalanced labels (prior 1/(k+1)), peaky softmax "
        f"float32, fed in batches of {BATCH}; report p50/p99 over {report_repeats} repeats."
    )
    print()

    wl = make_workload(n, K, seed=1)
    binned = StreamEngine(_spec())
    exact = StreamEngine(_spec(Resolution("exact", max_samples=max(n, 1_000_000))))
    mem: dict[int, tuple[int, int, int, int]] = {}
    ingest_s = {"binned": 0.0, "exact": 0.0}
    start = 0
    for stop in checkpoints:
        ingest_s["binned"] += time_once(lambda a=start, b=stop: _feed(binned, wl, a, b))
        ingest_s["exact"] += time_once(lambda a=start, b=stop: _feed(exact, wl, a, b))
        raw = exact.cumulative.exact.nbytes if exact.cumulative.exact is not None else 0
        mem[stop] = (binned.cumulative.nbytes, binned.nbytes, exact.cumulative.nbytes, raw)
        start = stop
    print(
        f"Ingest of {n:,} samples: binned {fmt_seconds(ingest_s['binned'])} "
        f"({n / ingest_s['binned'] / 1e6:.2f} M samples/s), "
        f"exact {fmt_seconds(ingest_s['exact'])}.",
        file=sys.stderr,
    )

    # -- query time
    t_report, t_even = _report_times(binned.report, report_repeats)
    # the exporter's report: point values only (``intervals=False``), as a scrape computes it
    t_light, t_light_even = _report_times(
        lambda: build_report(binned.cumulative, intervals=False), report_repeats
    )
    report = binned.report()
    t_exact = [time_once(exact.report) for _ in range(1 if quick else 3)]
    exact_report = exact.report()
    tm = _torchmetrics_exact(wl, checkpoints)
    if sk is not None:
        sk_values, t_sk_auc, t_sk_ap = _sklearn(wl, 1 if quick else 2)
    else:
        sk_values, t_sk_auc, t_sk_ap = {}, None, None
    ref = t_sk_auc + t_sk_ap if t_sk_auc is not None else None

    def ratio(t: float | None) -> str:
        return fmt_ratio(ref / t) if ref is not None and t else "-"

    p50, p99 = percentile(t_report, 50), percentile(t_report, 99)
    verdict = "within" if p50 <= TARGET_S else "ABOVE"
    rows = [
        [
            "full report (all metrics, bounds, CIs)",
            "**evalstream** binned `StreamEngine.report()`",
            fmt_seconds(p50),
            fmt_seconds(p99),
            ratio(p50),
            f"{verdict} the {TARGET_S * 1e3:.0f} ms target (p50); state is constant in N",
        ],
        [
            "the same, each same-bin pair one half",
            "evalstream binned, `within.slopes` off (interleaved with the row above)",
            fmt_seconds(percentile(t_even, 50)),
            fmt_seconds(percentile(t_even, 99)),
            ratio(percentile(t_even, 50)),
            f"the slopes cost {p50 / percentile(t_even, 50):.2f}x (p50)",
        ],
        [
            "the exporter's report (point values, `intervals=False`)",
            "evalstream binned `build_report`",
            fmt_seconds(percentile(t_light, 50)),
            fmt_seconds(percentile(t_light, 99)),
            ratio(percentile(t_light, 50)),
            "",
        ],
        [
            "the same, each same-bin pair one half",
            "evalstream binned, `within.slopes` off (interleaved with the row above)",
            fmt_seconds(percentile(t_light_even, 50)),
            fmt_seconds(percentile(t_light_even, 99)),
            ratio(percentile(t_light_even, 50)),
            f"the slopes cost {percentile(t_light, 50) / percentile(t_light_even, 50):.2f}x (p50)",
        ],
        [
            "full report (all metrics, bounds, CIs)",
            "evalstream exact resolution `StreamEngine.report()`",
            fmt_seconds(percentile(t_exact, 50)),
            fmt_seconds(percentile(t_exact, 99)),
            ratio(percentile(t_exact, 50)),
            f"{len(t_exact)} repeat(s); keeps every float32 score",
        ],
    ]
    if ref is not None:
        rows += [
            [
                "OvR macro + weighted + micro, OvO macro AUC, AP macro",
                "scikit-learn `roc_auc_score` x 4 + `average_precision_score`",
                fmt_seconds(ref),
                "-",
                "1.00x",
                "named reference (best of its runs)",
            ],
            [
                "of which the four AUCs",
                "scikit-learn `roc_auc_score` x 4",
                fmt_seconds(t_sk_auc),
                "-",
                ratio(t_sk_auc),
                "",
            ],
        ]
    else:
        rows.append(["sklearn reference", "scikit-learn", "skipped (not installed)", "-", "-", ""])
    if tm is not None:
        rows.append(
            [
                "OvR macro AUC only",
                "TorchMetrics `MulticlassAUROC(thresholds=None).compute()`",
                fmt_seconds(tm["compute_s"]),
                "-",
                ratio(tm["compute_s"]),
                "one run",
            ]
        )
    else:
        rows.append(
            ["OvR macro AUC only", "TorchMetrics exact", "skipped (not installed)", "-", "-", ""]
        )
    print("## Query time")
    print()
    print(markdown_table(QUERY_HEADER, rows))
    print()

    # -- accuracy
    acc_rows = []
    ev, ex = _engine_values(report), _engine_values(exact_report)
    for name, leaf in ev.items():
        ref_v = sk_values.get(name)
        v, lo, hi = leaf["value"], leaf.get("lower"), leaf.get("upper")
        inside = "-" if ref_v is None or lo is None else ("yes" if lo <= ref_v <= hi else "**NO**")
        acc_rows.append(
            [
                name,
                f"{ref_v:.9f}" if ref_v is not None else "skipped",
                f"{v:.9f}",
                f"{abs(v - ref_v):.1e}" if ref_v is not None else "-",
                f"[{lo:.6f}, {hi:.6f}] (width {hi - lo:.1e})" if lo is not None else "-",
                inside,
                f"{abs(ex[name]['value'] - ref_v):.1e}" if ref_v is not None else "-",
            ]
        )
    if tm is not None and "roc_auc ovr macro" in sk_values:
        acc_rows.append(
            [
                "TorchMetrics exact OvR macro",
                f"{sk_values['roc_auc ovr macro']:.9f}",
                f"{tm['macro']:.9f} (TorchMetrics)",
                f"{abs(tm['macro'] - sk_values['roc_auc ovr macro']):.1e}",
                "-",
                "-",
                "-",
            ]
        )
    print("## Accuracy of the binned report against sklearn")
    print()
    print(markdown_table(ACCURACY_HEADER, acc_rows))
    print()

    # -- memory
    mem_rows = []
    for c in checkpoints:
        b_state, b_engine, e_state, e_raw = mem[c]
        tm_b = tm["nbytes"][c] if tm is not None else None
        mem_rows.append(
            [
                f"{c:,}",
                fmt_bytes(b_state),
                fmt_bytes(b_engine),
                fmt_bytes(e_state),
                f"{e_raw / c:.1f}",
                fmt_bytes(tm_b) if tm_b is not None else "skipped (not installed)",
                f"{tm_b / c:.1f}" if tm_b is not None else "-",
                fmt_ratio(e_state / b_state),
            ]
        )
    print("## State memory against N")
    print()
    print(markdown_table(MEMORY_HEADER, mem_rows))
    print()
    if tm is not None:
        print(
            f"TorchMetrics binned (`thresholds=1024`) state: {fmt_bytes(tm['binned_nbytes'])}, "
            "constant in N. exact B/sample: the exact state's raw store "
            "(labels, float32 scores, weights) per sample."
        )
        print()

    if p50 > TARGET_S:
        n_prof = 3 if quick else 20
        print(
            f"## Profile of `StreamEngine.report()` (p50 {fmt_seconds(p50)} > "
            f"{TARGET_S * 1e3:.0f} ms), {n_prof} calls"
        )
        print()
        print("```")
        print(_profile(binned, n_prof))
        print("```")
    print(f"(run took {time.perf_counter() - t_start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

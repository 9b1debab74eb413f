"""Ingest throughput of the evalstream engine against a bare numpy reference and peers.

For K = 3, 10 and 100 classes, batches of 4096, imbalanced labels and peaky float32 softmax scores:

* **evalstream engine**: ``StreamEngine.update(y, p)`` per batch: validation, binning, the
  (class, column, bin) histogram (or the one-vs-rest layout above 32 classes), the argmax confusion
  matrix, top-k ranks, log loss, Brier and calibration sums. Split into ``make_batch``
  (validation) and ``compute_delta`` + ``State.add_delta`` (counting). Counting runs in the compiled
  kernel (``engine/fastcount.py``) when it was built; the same engine with the numpy kernel
  (``fastcount.disabled()``) is a row of its own.
* **bare numpy reference** (the named reference of the ratio): the same bin function
  (``BinLayout().bin_of``) and ``np.add.at`` into an equal-shaped float64 histogram, (K, K, B) for
  K <= 32 and the (2, K, B) one-vs-rest layout above, plus ``np.add.at`` into a confusion matrix.
* **TorchMetrics** ``MulticlassAUROC`` binned (``thresholds=1024``) and exact (``thresholds=None``)
  ``update()``, and **River** ``ROCAUC`` one-vs-rest (one per class, ``update`` per sample, on a
  subset; rate extrapolated), when installed (``bash scripts/bench-venv.sh``).

Run: ``python bench/engine_ingest.py [--quick]``. Every ratio is measured in the same run.

``--baseline DIR [--rounds R]``: instead, ``StreamEngine.update`` of this checkout against the
one in DIR (a ``git worktree`` of another commit, its kernel compiled in place by this script),
both in one process pinned to one CPU, taking the batches in turns of 8, R passes (default 5)
per K; prints the median and range of the ratio of samples/s by CPU time. Issue 12's ingest
target is read this way against eee38b9.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream_server.engine import (  # noqa: E402
    BinLayout,
    State,
    StreamEngine,
    StreamSpec,
    fastcount,
    make_batch,
)
from evalstream_server.engine.counting import compute_delta  # noqa: E402
from harness import (  # noqa: E402
    BATCH,
    Workload,
    best_of,
    fmt_rate,
    fmt_ratio,
    machine_line,
    make_workload,
    markdown_table,
    optional_import,
    quick_parser,
    time_once,
)

HEADER = ["K", "state", "implementation", "samples/s", "evalstream ÷ this", "notes"]
CLASS_COUNTS = (3, 10, 100)
BIG_BATCH = 32768


def _spec(K: int) -> StreamSpec:
    return StreamSpec(task="multiclass", classes=tuple(f"c{i}" for i in range(K)))


# -- evalstream ------------------------------------------------------------------------------
def engine_pass(spec: StreamSpec, wl: Workload) -> StreamEngine:
    eng = StreamEngine(spec)
    for y, p in wl.batches():
        eng.update(y, p)
    return eng


def numpy_engine_pass(spec: StreamSpec, wl: Workload) -> StreamEngine:
    with fastcount.disabled():
        return engine_pass(spec, wl)


def validate_pass(spec: StreamSpec, wl: Workload) -> None:
    for y, p in wl.batches():
        make_batch(spec, y, p)


def count_pass(spec: StreamSpec, batches: list) -> State:
    state = State(spec)
    for b in batches:
        state.add_delta(compute_delta(spec, b), b)
    return state


# -- the bare numpy reference ----------------------------------------------------------------
def reference_pass(wl: Workload, full_ovo: bool) -> tuple[np.ndarray, np.ndarray]:
    """Same bins, ``np.add.at`` into an equal-shaped histogram, plus the argmax confusion."""
    layout = BinLayout()
    K, B = wl.n_classes, layout.n_bins
    cols = np.arange(K)
    hist = np.zeros((K, K, B) if full_ovo else (2, K, B))
    confusion = np.zeros((K, K))
    for y, p in wl.batches():
        bins = layout.bin_of(p)
        if full_ovo:
            np.add.at(hist, (y[:, None], cols[None, :], bins), 1.0)
        else:
            np.add.at(hist[1], (cols[None, :], bins), 1.0)  # ALL[c, b]
            np.add.at(hist[0], (y, bins[np.arange(y.size), y]), 1.0)  # POS[c, b]
        np.add.at(confusion, (y, np.argmax(p, axis=1)), 1.0)
    return hist, confusion


# -- peers -----------------------------------------------------------------------------------
def torchmetrics_rates(
    wl: Workload, budget_s: float, min_batches: int, repeats: int
) -> dict[str, float | str]:
    """samples/s of MulticlassAUROC ``update()``: binned (1024 thresholds) and exact."""
    torch = optional_import("torch")
    tm = optional_import("torchmetrics.classification")
    if torch is None or tm is None:
        return {"binned": "skipped (not installed)", "exact": "skipped (not installed)"}
    K = wl.n_classes
    batches = [(torch.from_numpy(p), torch.from_numpy(y)) for y, p in wl.batches()]
    out: dict[str, float | str] = {}
    # Binned: (n, K, 1024) comparisons per batch are slow. Time batch by batch until the budget
    # is spent (at least min_batches), and keep the best batch, like best-of elsewhere.
    metric = tm.MulticlassAUROC(num_classes=K, thresholds=1024)
    metric.update(*batches[0])  # warm-up (first-call allocations)
    metric.reset()
    per_batch: list[float] = []
    t0 = time.perf_counter()
    for p, y in batches:
        per_batch.append(y.shape[0] / time_once(lambda p=p, y=y: metric.update(p, y)))
        if time.perf_counter() - t0 > budget_s and len(per_batch) >= min_batches:
            break
    out["binned"] = max(per_batch)
    out["binned_n"] = len(per_batch)

    def exact() -> None:
        m = tm.MulticlassAUROC(num_classes=K, thresholds=None)
        for p, y in batches:
            m.update(p, y)

    out["exact"] = wl.n / best_of({"exact": exact}, repeats)["exact"]
    return out


def river_rate(wl: Workload, n_sub: int) -> tuple[float | str, int]:
    """samples/s of one River ``ROCAUC`` per class (one-vs-rest), ``update`` per sample."""
    metrics = optional_import("river.metrics")
    if metrics is None:
        return "skipped (not installed)", 0
    K = wl.n_classes
    sub = wl.head(n_sub)
    # Python scalars prepared outside the timer: River's best case.
    rows = [(int(y), [float(v) for v in p]) for y, p in zip(sub.labels, sub.scores, strict=True)]
    per_class = [metrics.ROCAUC() for _ in range(K)]
    t0 = time.perf_counter()
    for y, p in rows:
        for c in range(K):
            per_class[c].update(y == c, p[c])
    return sub.n / (time.perf_counter() - t0), sub.n


# -- against another checkout of evalstream (--baseline) -------------------------------------
# Both checkouts' engines run in one process, pinned to one CPU: each engine package is copied
# under its own name (``engine`` imports only itself, relatively), and the workload's batches go
# to the two engines in turns of CHUNK batches (the first engine alternating), CPU time summed
# per engine, after an untimed warm-up of two turns. The machine's other jobs then slow both
# alike: measured here on one commit pair (070e3e5 against eee38b9, K = 10, 9 rounds), separate
# processes gave ratios ranging 0.52x - 1.07x, this 0.71x - 0.77x. Each pass starts fresh
# engines; one ratio a pass.
_INTERLEAVED = """
import os, sys, time, importlib
sys.path[:0] = [sys.argv[1], sys.argv[2]]
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
from harness import make_workload
K, n_batches, passes, chunk = (int(a) for a in sys.argv[3:7])
engines = {name: importlib.import_module(name) for name in ("ab_baseline", "ab_this")}
raw = list(make_workload(n_batches * 4096, K, seed=K).batches())
classes = tuple(f"c{i}" for i in range(K))
for name, m in engines.items():  # warm-up, untimed: imports, caches, the allocator's pools
    warm = m.StreamEngine(m.StreamSpec(task="multiclass", classes=classes))
    for y, s in raw[: 2 * chunk]:
        warm.update(y, s)
for p in range(passes):
    live = {}
    for name, m in engines.items():
        live[name] = m.StreamEngine(m.StreamSpec(task="multiclass", classes=classes))
    spent = dict.fromkeys(engines, 0.0)
    for t, start in enumerate(range(0, len(raw), chunk)):
        names = list(engines) if t % 2 == 0 else list(engines)[::-1]
        for name in names:
            eng = live[name]
            t0 = time.process_time()
            for y, s in raw[start:start + chunk]:
                eng.update(y, s)
            spent[name] += time.process_time() - t0
    print(spent["ab_baseline"] / spent["ab_this"], flush=True)
"""
TURN = 8  # batches an engine takes in a turn


def build_kernel(checkout: Path) -> None:
    """Compile ``checkout``'s C kernel in place with the flags of pyproject.toml (the baseline is
    a plain ``git worktree``, never installed)."""
    src = checkout / "service/evalstream_server/engine/_fastcount.c"
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    out = src.with_name("_fastcount" + suffix)
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    includes = [sysconfig.get_paths()["include"], np.get_include()]
    flags = ["-O3", "-fno-wrapv", "-fno-strict-aliasing", "-shared", "-fPIC"]
    cmd = [*cc, *flags, *(f"-I{d}" for d in includes), str(src), "-o", str(out)]
    subprocess.run(cmd, check=True, timeout=300)


def baseline_rows(baseline: Path, rounds: int, quick: bool) -> list[list[str]]:
    """``update`` of this checkout against ``baseline``'s, interleaved in one process per K
    (``_INTERLEAVED``), ``rounds`` passes: the ratio of samples/s by CPU time (> 1: this
    checkout is faster), median and range."""
    here = Path(__file__).resolve().parent.parent
    build_kernel(baseline)
    rows = []
    with tempfile.TemporaryDirectory() as packages:
        for name, root in (("ab_baseline", baseline), ("ab_this", here)):
            shutil.copytree(root / "service/evalstream_server/engine", Path(packages) / name)
        for K in CLASS_COUNTS:
            n_batches = 2 if quick else (32 if K > 32 else 128)
            argv = [packages, str(here / "bench"), str(K), str(n_batches), str(rounds), str(TURN)]
            out = subprocess.run(
                [sys.executable, "-c", _INTERLEAVED, *argv],
                check=True,
                capture_output=True,
                text=True,
                timeout=1800,
                env={**os.environ, "PYTHONPATH": ""},
            )
            ratios = sorted(float(line) for line in out.stdout.split())
            rows.append(
                [
                    str(K),
                    f"{statistics.median(ratios):.2f}x",
                    f"{ratios[0]:.2f}x - {ratios[-1]:.2f}x",
                    str(rounds),
                ]
            )
            print(f"  K = {K} done", file=sys.stderr)
    return rows


# -- the run ---------------------------------------------------------------------------------
def measure(K: int, n_batches: int, repeats: int, quick: bool) -> list[list[str]]:
    spec = _spec(K)
    wl = make_workload(n_batches * BATCH, K, seed=K)
    state_name = f"({K}, {K}, B) hist" if spec.full_ovo else f"(2, {K}, B) OvR"
    batches = [make_batch(spec, y, p) for y, p in wl.batches()]
    big = Workload(wl.labels, wl.scores, batch=min(BIG_BATCH, wl.n))

    # Correctness guard: the reference and the engine count the same histogram.
    ref_hist, ref_conf = reference_pass(wl.head(BATCH), spec.full_ovo)
    st = count_pass(spec, batches[:1])
    engine_hist = (
        st.counts["hist"] if spec.full_ovo else np.stack([st.counts["pos"], st.counts["all"]])
    )
    assert np.array_equal(engine_hist, ref_hist), "engine and reference histograms differ"
    assert np.array_equal(st.counts["confusion"], ref_conf), "confusion matrices differ"

    gc.collect()
    t = best_of(
        {
            "engine": lambda: engine_pass(spec, wl),
            "engine_numpy": lambda: numpy_engine_pass(spec, wl),
            "reference": lambda: reference_pass(wl, spec.full_ovo),
            "validate": lambda: validate_pass(spec, wl),
            "count": lambda: count_pass(spec, batches),
            "engine_big": lambda: engine_pass(spec, big),
        },
        repeats,
    )
    rate = {k: wl.n / v for k, v in t.items()}
    eng = rate["engine"]
    rows = [
        [
            str(K),
            state_name,
            "**evalstream** `StreamEngine.update`",
            fmt_rate(eng),
            "1.00x",
            f"{1e3 * t['engine'] / n_batches:.2f} ms per batch of {BATCH}",
        ],
        [
            str(K),
            state_name,
            "  of which `make_batch` (validation)",
            fmt_rate(rate["validate"]),
            "-",
            f"{100 * t['validate'] / t['engine']:.0f}% of update time",
        ],
        [
            str(K),
            state_name,
            "  of which `compute_delta` + `State.add_delta`",
            fmt_rate(rate["count"]),
            "-",
            f"{100 * t['count'] / t['engine']:.0f}% of update time",
        ],
        [
            str(K),
            state_name,
            "evalstream `update`, numpy kernel (`fastcount.disabled()`)",
            fmt_rate(rate["engine_numpy"]),
            fmt_ratio(eng / rate["engine_numpy"]),
            "what an install without a C compiler runs",
        ],
        [
            str(K),
            state_name,
            "bare numpy reference: `bin_of` + `np.add.at` (hist + confusion)",
            fmt_rate(rate["reference"]),
            fmt_ratio(eng / rate["reference"]),
            "named reference; target >= 1.00x",
        ],
        [
            str(K),
            state_name,
            f"evalstream `update`, batch {big.batch}",
            fmt_rate(rate["engine_big"]),
            fmt_ratio(eng / rate["engine_big"]),
            "same samples, fewer and larger batches",
        ],
    ]

    budget = 0.5 if quick else 3.0
    tmr = torchmetrics_rates(wl, budget, 1 if quick else 3, repeats)
    for kind, label in (("binned", "thresholds=1024"), ("exact", "thresholds=None")):
        r = tmr[kind]
        name = f"TorchMetrics `MulticlassAUROC({label})` `update`"
        if isinstance(r, str):
            rows.append([str(K), "-", name, r, "-", ""])
        else:
            nb = tmr["binned_n"]
            note = f"best of {nb} batch{'es' if nb != 1 else ''} (time budget)"
            note = note if kind == "binned" else ""
            rows.append([str(K), "-", name, fmt_rate(r), fmt_ratio(eng / r), note])

    n_sub = 300 if quick else min(20_000, max(2_000, 200_000 // K))
    rr, n_done = river_rate(wl, min(n_sub, wl.n))
    name = f"River `ROCAUC()` x {K} (one-vs-rest), `update` per sample"
    if isinstance(rr, str):
        rows.append([str(K), "-", name, rr, "-", ""])
    else:
        rows.append(
            [
                str(K),
                "-",
                name,
                fmt_rate(rr),
                fmt_ratio(eng / rr),
                f"measured on {n_done} samples, rate extrapolated; n_thresholds=10",
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = quick_parser(__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="another checkout to compare update with (A/B)")
    parser.add_argument("--rounds", type=int, default=5, help="passes per K (--baseline)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 7
    extra = {}
    torch = optional_import("torch")
    if torch is not None:
        extra["torch"] = f"{torch.__version__} ({torch.get_num_threads()} threads)"
    tmm = optional_import("torchmetrics")
    if tmm is not None:
        extra["torchmetrics"] = tmm.__version__
    river = optional_import("river")
    if river is not None:
        extra["river"] = river.__version__
    print(
        "# evalstream engine: ingest throughput"
        + (" (--quick: not meaningful)" if args.quick else "")
    )
    print()
    print(machine_line(extra))
    kernel = "compiled (fastcount)" if fastcount.enabled() else "numpy (fastcount not built or off)"
    print(f"Counting kernel: {kernel}.")
    print(
        f"Workload: batches of {BATCH}, imbalanced labels (prior 1/(k+1)), peaky softmax float32; "
        f"B = {BinLayout().n_bins} bins; best of {repeats} interleaved repeats."
    )
    print()
    if args.baseline is not None:
        print(f"`StreamEngine.update` of this checkout against {args.baseline} (CPU time).")
        print()
        rows = baseline_rows(Path(args.baseline).resolve(), args.rounds, args.quick)
        print(markdown_table(["K", "this ÷ baseline (median)", "range", "rounds"], rows))
        return 0
    rows = []
    t0 = time.perf_counter()
    for K in CLASS_COUNTS:
        if args.quick:
            n_batches = 2
        else:
            n_batches = 32 if K > 32 else 128
        rows += measure(K, n_batches, repeats, args.quick)
        print(f"  K = {K} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    print(markdown_table(HEADER, rows))
    print()
    print("`evalstream ÷ this` > 1 means the engine ingests faster than that row.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

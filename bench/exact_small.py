"""Exact while small: what keeping raw rows below ``state.SMALL_ROWS`` costs in ingest and memory.

A binned stream keeps its raw float32 rows (and labels, weights) while it, or a window's ring of
buckets, holds at most ``SMALL_ROWS`` samples; then it turns into bins. The reference of every
ratio is the same engine in the same run with the cap set to 0 (bins only: the engine before
exact while small), on a K = 10 multiclass stream with cumulative + 5m + 1h windows:

* **ingest**: ``StreamEngine.ingest`` of validated imbalanced peaky softmax batches (100, 500,
  4096 rows; about 2,000 samples per 5 minutes), in CPU time; rate with the cap / rate without
  (target >= 0.9).
* **memory**: ``nbytes`` of the cumulative state and both rings after the fleet profile of
  ``bench/fleet.py`` (20,000 samples an hour in batches of 500 over 2.5 simulated hours), and of a
  small stream (one batch of 500); with the cap / without.
* **report**: ``StreamEngine.report()`` of a small stream (2,000 rows): the exact view against bins.

Run: ``python bench/exact_small.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream_server.engine import StreamEngine, StreamSpec  # noqa: E402
from evalstream_server.engine import state as state_module  # noqa: E402
from evalstream_server.engine.state import SMALL_ROWS, WINDOW_ROWS, exact_row_bytes  # noqa: E402
from harness import fmt_bytes, fmt_ratio, machine_line, markdown_table, quick_parser  # noqa: E402

K = 10
T0 = 1_800_000_000.0


@contextlib.contextmanager
def cap(rows: int) -> Iterator[None]:
    old = state_module.SMALL_ROWS
    state_module.SMALL_ROWS = rows
    try:
        yield
    finally:
        state_module.SMALL_ROWS = old


def batches(n_rows: int, count: int, seed: int = 7) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    prior = np.geomspace(1.0, 0.05, K)
    prior /= prior.sum()
    out = []
    for _ in range(count):
        y = rng.choice(K, n_rows, p=prior)
        z = rng.normal(size=(n_rows, K)) * 4
        z[np.arange(n_rows), y] += 4
        p = np.exp(z - z.max(axis=1, keepdims=True))
        out.append((y, (p / p.sum(axis=1, keepdims=True)).astype(np.float32)))
    return out


def spec() -> StreamSpec:
    return StreamSpec(
        task="multiclass", classes=tuple(f"c{k}" for k in range(K)), windows=("5m", "1h")
    )


def engine_nbytes(eng: StreamEngine) -> int:
    return eng.cumulative.nbytes + sum(r.nbytes for r in eng.windows.values())


def ingest_rate(data: list[tuple[np.ndarray, np.ndarray]], step: float) -> float:
    """Samples per CPU second of ``ingest`` over ``data``, the clock moving ``step`` a batch (CPU
    time of this process: on a shared machine wall time mostly measures the neighbours)."""
    now = [T0]
    eng = StreamEngine(spec(), clock=lambda: now[0])
    validated = [eng.validate(y, p) for y, p in data]
    t = time.process_time()
    for b in validated:
        eng.ingest(b)
        now[0] += step
    return sum(b.n for b in validated) / (time.process_time() - t)


def fleet_profile(per_hour: int = 20_000, rows: int = 500) -> StreamEngine:
    """A stream fed as bench/fleet.py feeds one: ``per_hour`` samples an hour for 2.5 hours."""
    now = [T0]
    eng = StreamEngine(spec(), clock=lambda: now[0])
    data = batches(rows, 16)
    validated = [eng.validate(y, p) for y, p in data]
    step = rows * 3600.0 / per_hour
    for i in range(int(2.5 * 3600 / step)):
        eng.ingest(validated[i % len(validated)])
        now[0] += step
    return eng


def main() -> None:
    parser = quick_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    repeats = 3 if args.quick else 11
    row_bytes = exact_row_bytes(K, multiclass=True, weighted=False)
    print("# evalstream: exact while small, its cost" + (" (--quick)" if args.quick else ""))
    print()
    print(machine_line())
    print(
        f"K = {K}, cumulative + 5m + 1h. Caps: a stream {SMALL_ROWS:,} samples "
        f"({fmt_bytes(SMALL_ROWS * row_bytes)} of raw rows unweighted, {row_bytes} bytes a row; "
        f"{fmt_bytes(SMALL_ROWS * exact_row_bytes(K, True))} weighted), a window's ring "
        f"{WINDOW_ROWS:,} ({fmt_bytes(WINDOW_ROWS * row_bytes)}). Reference: caps 0 (bins only), "
        "same run, interleaved; medians of CPU time."
    )
    print()
    rows = []
    for size, total in ((100, 40_000), (500, 60_000), (4096, 160_000)):
        data = batches(size, max(total // size, 1) // (2 if args.quick else 1))
        step = 300.0 * size / 2000  # about 2,000 samples per 5 minutes: the 5m ring stays small
        with_cap, without = [], []
        for _ in range(repeats):
            with_cap.append(ingest_rate(data, step))
            with cap(0):
                without.append(ingest_rate(data, step))
        a, b = float(np.median(with_cap)), float(np.median(without))
        rows.append(
            [
                f"ingest, batches of {size}",
                f"{a:,.0f} samples/s",
                f"{b:,.0f} samples/s",
                fmt_ratio(a / b),
            ]
        )
    fleet = fleet_profile()
    with cap(0):
        fleet0 = fleet_profile()
    a, b = engine_nbytes(fleet), engine_nbytes(fleet0)
    rows.append(
        ["memory, fleet profile (20k/h, 2.5 h)", fmt_bytes(a), fmt_bytes(b), fmt_ratio(a / b)]
    )
    slow = fleet_profile(per_hour=6000)  # 500 samples per 5 minutes: the 5m window keeps rows
    with cap(0):
        slow0 = fleet_profile(per_hour=6000)
    a, b = engine_nbytes(slow), engine_nbytes(slow0)
    exact_5m = slow.report("5m")["resolution"]["exact"]
    rows.append(
        [f"memory, 6k/h (5m exact: {exact_5m})", fmt_bytes(a), fmt_bytes(b), fmt_ratio(a / b)]
    )
    states = {
        "5m": fleet.report("5m")["resolution"]["exact"],
        "1h": fleet.report("1h")["resolution"]["exact"],
        "cumulative": fleet.report()["resolution"]["exact"],
    }
    small = {}
    for c in (SMALL_ROWS, 0):
        with cap(c):
            eng = StreamEngine(spec(), clock=lambda: T0)
            ((y, p),) = batches(500, 1)
            eng.update(y, p)
            small[c] = engine_nbytes(eng)
    rows.append(
        [
            "memory, one batch of 500",
            fmt_bytes(small[SMALL_ROWS]),
            fmt_bytes(small[0]),
            fmt_ratio(small[SMALL_ROWS] / small[0]),
        ]
    )
    report_s = {}
    for c in (SMALL_ROWS, 0):
        with cap(c):
            eng = StreamEngine(spec(), clock=lambda: T0)
            for y, p in batches(500, 4):
                eng.update(y, p)
            t = []
            for _ in range(repeats):
                t0 = time.process_time()
                eng.report()
                t.append(time.process_time() - t0)
            report_s[c] = float(np.median(t))
    rows.append(
        [
            "report of 2,000 rows",
            f"{report_s[SMALL_ROWS] * 1e3:.1f} ms (exact view)",
            f"{report_s[0] * 1e3:.1f} ms (bins)",
            fmt_ratio(report_s[SMALL_ROWS] / report_s[0]),
        ]
    )
    print(markdown_table(["measure", "exact while small", "bins only (reference)", "ratio"], rows))
    print()
    print(
        "Fleet profile, which views are exact: " + ", ".join(f"{k} {v}" for k, v in states.items())
    )


if __name__ == "__main__":
    main()

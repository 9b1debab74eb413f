"""What the engine benchmarks share: the synthetic workload, timing, and the printed tables.

The workload is the one of DESIGN §8: imbalanced labels (class prior proportional to 1 / (k + 1))
and peaky softmax scores (most mass within 1e-6 of 0 or 1), float32, in batches of 4096.

Timing follows STYLE habit 10: every number is printed next to a reference measured in the same
run, and repeats are interleaved so that noise from other processes hits both sides alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BATCH",
    "Workload",
    "make_workload",
    "time_once",
    "best_of",
    "machine_line",
    "markdown_table",
    "fmt_rate",
    "fmt_bytes",
    "fmt_ratio",
    "fmt_seconds",
    "quick_parser",
    "optional_import",
]

BATCH = 4096


@dataclass
class Workload:
    """Labels (int64) and float32 probability rows, cut into batches."""

    labels: np.ndarray
    scores: np.ndarray
    batch: int = BATCH

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.scores.shape[1])

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, self.n, self.batch):
            yield self.labels[start : start + self.batch], self.scores[start : start + self.batch]

    def head(self, n: int) -> Workload:
        return Workload(self.labels[:n], self.scores[:n], self.batch)


def make_workload(n: int, n_classes: int, seed: int = 0, batch: int = BATCH) -> Workload:
    """``n`` samples of ``n_classes`` classes: imbalanced labels, peaky softmax float32 scores.

    About 70 to 80% of samples are classified correctly; a quarter or more of all scores lie below
    1e-6, which is where uniform [0, 1] bins lose the AUC (DESIGN §3.2).
    """
    rng = np.random.default_rng(seed)
    prior = 1.0 / np.arange(1, n_classes + 1)
    prior /= prior.sum()
    labels = rng.choice(n_classes, size=n, p=prior).astype(np.int64)
    scores = np.empty((n, n_classes), dtype=np.float32)
    step = 1 << 16  # bounds the float64 temporaries
    for start in range(0, n, step):
        y = labels[start : start + step]
        z = rng.normal(0.0, 1.0, (y.size, n_classes))
        z[np.arange(y.size), y] += 2.5
        z *= 4.0  # temperature: peaky rows
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        scores[start : start + step] = z
    return Workload(labels, scores, batch)


def time_once(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_of(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each of ``fns``, calling them in turn ``repeats`` times (interleaved)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            times[name].append(time_once(fn))
    return {name: min(ts) for name, ts in times.items()}


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linear interpolation."""
    return float(np.percentile(np.asarray(values), q))


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(extra: dict[str, str] | None = None) -> str:
    """One line naming the machine: nproc, CPU model, Python and numpy versions, and ``extra``."""
    parts = {
        "nproc": str(os.cpu_count()),
        "CPU": _cpu_model(),
        "Python": platform.python_version(),
        "numpy": np.__version__,
    }
    parts.update(extra or {})
    return "Machine: " + ", ".join(f"{k} {v}" for k, v in parts.items())


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, columns padded for reading in a terminal."""
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def fmt_rate(samples_per_s: float | None) -> str:
    if samples_per_s is None:
        return "-"
    if samples_per_s >= 1e6:
        return f"{samples_per_s / 1e6:.2f} M/s"
    if samples_per_s >= 1e3:
        return f"{samples_per_s / 1e3:.1f} k/s"
    return f"{samples_per_s:.0f} /s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def fmt_ratio(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "-"
    if x >= 100:
        return f"{x:,.0f}x"
    return f"{x:.2f}x"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} us"


def quick_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: small N, one repeat (numbers are not meaningful)",
    )
    return parser


def optional_import(name: str) -> object | None:
    """The module ``name``, or None when it is not installed (peers are optional)."""
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None

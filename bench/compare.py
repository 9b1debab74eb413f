"""Comparisons with known truth (issue 18): how often engine/compare.py rejects, seeded.

A window of ``n`` samples is compared with the rest of a reference window (``relation="rest"``:
the reference holds the window and 3n earlier samples), or with another stream of 3n samples
(``"independent"``). Multiclass K = 3 (60/30/10%), softmax of normal logits with a boost of 1.5
for the true class, binned (default layout). A binned state keeps its rows up to 4,096 samples:
at n = 500 both sides' averages take their correlations from every row, at n = 2,000 the
reference's (and so the rest's) from the row sample. Rows:

* ``null``: the window from the same model: the share of replicates rejected at alpha = 0.05
  should be about 0.05, and the variance of ``z`` across the replicates about 1 (less: the
  standard error is too large, the test loses power; more: it rejects too often);
* ``drop``: the minority class' boost falls to ``0.8`` in the window; the size of the drop (its
  one-vs-rest AUC and recall, measured on 200,000 samples per side) is printed, and the share of
  replicates rejected (in the direction of the drop) is the power.

Per-class rows use the Benjamini-Hochberg adjusted decision across the three classes ("any
class": the share of replicates where at least one class was declared changed).

Cost: the exporter compares each window with the rest of the next longer one on top of the
window's report. A second table times ``compare(window, reference, "rest",
average_precision=False)`` against the window's ``build_report(..., intervals=False)`` (the
exporter's call, the reference of the ratio), interleaved, best of 15, K = 10 (the harness's
imbalanced peaky workload), for a window and a reference that keep their rows and for binned
ones.

Run: ``python bench/compare.py [--quick] [--replicates R]`` (under a minute; ``--quick``: 20
replicates; the first 400 of more replicates are the default run's).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream_server.engine import State, StreamSpec, build_report, make_batch  # noqa: E402
from evalstream_server.engine.compare import compare  # noqa: E402
from harness import (  # noqa: E402
    best_of,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    make_workload,
    markdown_table,
    quick_parser,
)
from sklearn.metrics import recall_score, roc_auc_score  # noqa: E402

SPEC = StreamSpec("multiclass", classes=("a", "b", "c"))
PRIORS = (0.6, 0.3, 0.1)
ALPHA = 0.05
HEADER = ["case", "relation", "n (window)", "test", "true difference", "rejected share", "var(z)"]
TESTS = (
    ("roc_auc", "macro"),
    ("roc_auc", "weighted"),
    ("roc_auc", "micro"),
    ("roc_auc", "c"),
    ("recall", "macro"),
    ("recall", "c"),
    ("f1", "macro"),
    ("roc_auc", "any class"),
    ("recall", "any class"),
)


def draw(rng: np.random.Generator, n: int, signal) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(3, n, p=PRIORS)
    z = rng.normal(size=(n, 3))
    z[np.arange(n), y] += np.asarray(signal)[y]
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return y, p.astype(np.float32)


def state_of(y: np.ndarray, p: np.ndarray) -> State:
    s = State(SPEC)
    s.update(make_batch(SPEC, y, p))
    return s


def truth(signal) -> dict[tuple[str, str], float]:
    """The population differences of class c's AUC and recall, on large samples."""
    rng = np.random.default_rng(99)
    y0, p0 = draw(rng, 200_000, (1.5, 1.5, 1.5))
    y1, p1 = draw(rng, 200_000, signal)
    return {
        ("roc_auc", "c"): roc_auc_score(y1 == 2, p1[:, 2]) - roc_auc_score(y0 == 2, p0[:, 2]),
        ("recall", "c"): recall_score(y1 == 2, p1.argmax(1) == 2)
        - recall_score(y0 == 2, p0.argmax(1) == 2),
    }


def rejected(doc: dict, metric: str, which: str, direction: float) -> bool:
    group = doc[metric]
    if which == "any class":
        return any(leaf.get("significant") for leaf in group["per_class"].values())
    leaf = group["per_class"][which] if which in group["per_class"] else group[which]
    return bool(leaf.get("significant")) and (direction == 0 or leaf["value"] * direction > 0)


def z_of(doc: dict, metric: str, which: str) -> float:
    group = doc[metric]
    leaf = group["per_class"].get(which) or group.get(which) or {}
    return float(leaf.get("z", np.nan))


def run(case: str, relation: str, signal, n: int, R: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    counts = dict.fromkeys(TESTS, 0)
    zs: dict[tuple[str, str], list[float]] = {key: [] for key in TESTS}
    direction = 0.0 if case == "null" else -1.0
    for _ in range(R):
        window = state_of(*draw(rng, n, signal))
        rest = state_of(*draw(rng, 3 * n, (1.5, 1.5, 1.5)))
        if relation == "rest":
            doc = compare(window, rest.merge(window), "rest", alpha=ALPHA)
        else:
            doc = compare(window, rest, relation, alpha=ALPHA)
        for key in TESTS:
            counts[key] += rejected(doc, *key, direction)
            zs[key].append(z_of(doc, *key))
    true = truth(signal) if case != "null" else {}
    rows = []
    for (metric, which), k in counts.items():
        t = true.get((metric, which))
        z = np.array(zs[metric, which])
        rows.append(
            [
                case,
                relation,
                str(n),
                f"{metric} {which}",
                "0" if case == "null" else (f"{t:+.3f}" if t is not None else "< 0"),
                f"{k / R:.3f} ({k}/{R})",
                f"{np.var(z):.2f}" if case == "null" and np.isfinite(z).all() else "",
            ]
        )
    return rows


def cost(repeats: int) -> str:
    K = 10
    spec = StreamSpec("multiclass", classes=tuple(f"c{k}" for k in range(K)))
    work = make_workload(50_000, K, seed=3)
    rows = []
    for n_window, n_reference in ((1_000, 4_000), (1_000, 31_000), (10_000, 40_000)):
        window, reference = State(spec), State(spec)
        window.update(make_batch(spec, work.labels[:n_window], work.scores[:n_window]))
        reference.update(make_batch(spec, work.labels[:n_reference], work.scores[:n_reference]))
        times = best_of(
            {
                "report": lambda w=window: build_report(w, intervals=False),
                "compare": lambda w=window, r=reference: compare(
                    w, r, "rest", average_precision=False
                ),
            },
            repeats,
        )
        rows.append(
            [
                f"{n_window:,} in {n_reference:,}",
                "rows" if window.exact is not None else "binned",
                "rows" if reference.exact is not None else "binned",
                fmt_seconds(times["report"]),
                fmt_seconds(times["compare"]),
                fmt_ratio(times["compare"] / times["report"]),
            ]
        )
    header = ["window in reference", "window", "reference", "report", "compare", "ratio"]
    return markdown_table(header, rows)


def main() -> None:
    parser = quick_parser(__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=400, help="replicates a row (400)")
    args = parser.parse_args()
    R = 20 if args.quick else args.replicates
    print(machine_line({"replicates": str(R), "alpha": str(ALPHA)}))
    rows = []
    for k, relation in enumerate(("rest", "independent")):  # other draws for each relation
        for n in (500, 2000) if not args.quick else (500,):
            rows += run("null", relation, (1.5, 1.5, 1.5), n, R, seed=n + 10 * k)
            rows += run("drop", relation, (1.5, 1.5, 0.8), n, R, seed=n + 10 * k + 1)
    print(markdown_table(HEADER, rows))
    print(cost(3 if args.quick else 15))


if __name__ == "__main__":
    main()

"""The benchmarks still run: each script with ``--quick`` exits 0 and prints its table.

Timings are never asserted (STYLE habit 10): a quick run's numbers mean nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.mark.parametrize(
    ("script", "header"),
    [
        ("engine_ingest.py", ["K", "state", "implementation", "samples/s", "evalstream ÷ this"]),
        ("engine_query.py", ["query (K = 10)", "implementation", "p50", "p99", "sklearn ÷ this"]),
        ("tie_groups.py", ["scores (K = 10, 4096 rows a batch)", "with score range", "without"]),
        ("truth.py", ["scores", "N", "view", "max AUC error", "max AP error"]),
        (
            "compare.py",
            [
                ["case", "relation", "n (window)", "test", "true difference", "rejected share"],
                ["window in reference", "window", "reference", "report", "compare", "ratio"],
            ],
        ),
        # NannyML is compared only when installed (never a dependency of the suite)
        ("cbpe.py", ["window", "metric (macro)", "realized", "evalstream"]),
        (
            "interval_coverage.py",
            [
                ["model", "N", "coverage binned (macro / weighted / micro)"],
                ["sample rows", "coverage binned (macro / micro)"],
                ["ingest (K = 10, update)", "samples/s with the row sample"],
            ],
        ),
        (
            "service_ingest.py",
            ["server (K = 10, 4096 rows per message)", "samples/s (best)", "samples/s (median)"],
        ),
        ("service_query.py", ["query (K = 10)", "path", "p50", "p99", "÷ engine in-process (p50)"]),
        ("scrape.py", ["what (one scrape or sweep)", "p50", "p99", "÷ reference (p50)"]),
        ("fleet.py", ["streams x K", "RSS per stream (fed / scraped)", "scrape p50"]),
        ("delayed_labels.py", ["path (K = 10, 4096 rows per batch)", "samples/s", "÷ labelled"]),
        (  # needs matplotlib (the test extra); Plotly is compared only when installed
            "report_html.py",
            ["page (one window, curves of 200 points)", "render (best)", "size"],
        ),
        ("watchers.py", ["what (GetStream of an idle stream)", "p50", "p99", "server CPU"]),
        # about 12 s: exits 1 if anything acknowledged was not counted or a fault got through
        ("soak.py", ["what", "measured", "reference in the same run", "ratio"]),
        # proxy.py and triton_eval.py need Triton and MLServer (scripts/install-tools.sh)
        ("proxy.py", ["path (ModelInfer, digits_cnn)", "rows", "p50", "p99"]),
        ("triton_eval.py", ["server", "batch", "reference: TritonSource.infer"]),
        (  # needs redis-server (scripts/install-tools.sh); about 12 s: ingest, then the scrape
            "replicas.py",
            [
                ["setup (K = 10, 4096 rows per message)", "producers", "samples/s"],
                ["replicas", "streams per replica", "series per replica (max)"],
            ],
        ),
    ],
)
def test_benchmark_quick_run_prints_its_table(
    script: str, header: list[str] | list[list[str]]
) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    for head in header if isinstance(header[0], list) else [header]:  # one table or several
        found = [i for i, line in enumerate(lines) if _cells(line)[: len(head)] == head]
        assert found, f"no table header {head} in:\n{proc.stdout[-2000:]}"
        # a Markdown table: the header is followed by its separator line
        assert set(lines[found[0] + 1]) <= set("|- ")


def test_engine_ingest_against_a_baseline_checkout_prints_its_ratios() -> None:
    """``--baseline DIR``: this checkout's update against DIR's (here itself), one alternation."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "engine_ingest.py"), "--quick"]
        + ["--baseline", str(ROOT), "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert _cells(lines[0]) == ["K", "this ÷ baseline (median)", "range", "rounds"]
    ratios = [float(_cells(line)[1].rstrip("x")) for line in lines[2:]]
    assert len(ratios) == 3 and all(r > 0 for r in ratios)

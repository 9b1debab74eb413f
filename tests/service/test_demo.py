"""``evalstream demo`` runs to completion with a short duration and shows the degradation."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_the_minority_class_degrades():
    from evalstream_server.demo import run_demo

    lines: list[str] = []
    report = run_demo(duration=4.0, rate=20000, report_every=1.0, metrics_port=0, echo=lines.append)
    assert report["n_samples"] > 20000
    text = "\n".join(lines)
    assert "Prometheus metrics on http://127.0.0.1:" in text and "window 30s" in text
    recall = report["recall"]["per_class"]
    assert recall["bicycle"]["value"] < recall["car"]["value"] - 0.2
    assert report["imbalance"]["micro_macro_auc_gap"]["value"] > 0
    assert "delayed 30s | labelled" in text and "awaiting" in text


def test_demo_command_line_exits_zero():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalstream_server.cli",
            "demo",
            "--duration",
            "2",
            "--metrics-port",
            "0",
            "--report-every",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "precision" in proc.stdout and "bicycle" in proc.stdout

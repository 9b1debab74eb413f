"""Render time and size of the report page (``evalstream report --html``) at K = 100, K = 10 and
for a multilabel stream, against references measured in the same run.

* **Render**: ``htmlreport.report_page`` (matplotlib's inline SVG, the tables behind every
  figure), best of repeats, for a report with curves (200 points a curve, the default).
* **Reference 1, the report itself**: ``StreamEngine.report(curves=True)`` of the same state:
  what the page costs on top of asking for the numbers.
* **Reference 2, Plotly** (when installed: ``pip install plotly``): the same figures (ROC and PR
  curves with their band, both confusion heat maps, the reliability diagram, support vs predicted
  share) as one offline HTML file, plotly.js inline (``include_plotlyjs=True``), without the
  tables. The other common choice for HTML reports; Altair/Vega-Lite needs its JavaScript too.

Run: ``python bench/report_html.py [--quick]``. Every ratio is measured in the same run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from evalstream import figures  # noqa: E402
from evalstream.htmlreport import report_page  # noqa: E402
from evalstream_server.engine import StreamEngine, StreamSpec  # noqa: E402
from harness import (  # noqa: E402
    fmt_bytes,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    make_workload,
    markdown_table,
    optional_import,
    quick_parser,
)


def _multiclass(n: int, k: int) -> StreamEngine:
    w = make_workload(n, k, seed=k)
    engine = StreamEngine(StreamSpec(task="multiclass", classes=tuple(f"c{i}" for i in range(k))))
    for start in range(0, n, 8192):
        engine.update(w.labels[start : start + 8192], w.scores[start : start + 8192])
    return engine


def _multilabel(n: int, k: int) -> StreamEngine:
    rng = np.random.default_rng(5)
    prevalence = 0.5 / np.arange(1, k + 1)
    y = (rng.random((n, k)) < prevalence).astype(np.int64)
    scores = np.clip(0.15 + 0.5 * y + rng.normal(0, 0.2, y.shape), 0, 1).astype(np.float32)
    engine = StreamEngine(StreamSpec(task="multilabel", classes=tuple(f"l{i}" for i in range(k))))
    for start in range(0, n, 8192):
        engine.update(y[start : start + 8192], scores[start : start + 8192])
    return engine


def _plotly_page(report: dict[str, Any]) -> str:
    """The same figures with Plotly, one offline file (plotly.js inline once)."""
    import plotly.graph_objects as go

    parts = []
    for kind in ("roc", "pr"):
        fig = go.Figure()
        metric = "roc_auc" if kind == "roc" else "average_precision"
        targets, _ = figures._curve_targets(report, metric)
        for name in [*targets, "micro"]:
            c = report["curves"][kind].get(name)
            if c is None:
                continue
            x, y = figures._arr(c["x"]), figures._arr(c["y"])
            if kind == "roc":
                bx, lo, hi = figures.roc_band(x, y)
            else:
                bx, lo, hi = figures.pr_band(x, y, c["thresholds"])
            fig.add_trace(go.Scatter(x=bx, y=lo, line_shape="hv", mode="lines", showlegend=False))
            fig.add_trace(go.Scatter(x=bx, y=hi, line_shape="hv", fill="tonexty", mode="lines"))
            fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines"))
        parts.append(fig)
    cm = report.get("confusion_matrix")
    if cm is None:
        cm = np.asarray(report["multilabel_confusion_matrix"]).reshape(-1, 4).tolist()
    m = np.asarray(cm, dtype=np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1e-300)
    parts.append(go.Figure(go.Heatmap(z=m, colorscale="Blues")))
    parts.append(go.Figure(go.Heatmap(z=norm, colorscale="Blues")))
    rel = report["reliability"]
    parts.append(
        go.Figure(go.Scatter(x=rel["confidence"], y=rel["observed"], mode="lines+markers"))
    )
    classes = report["classes"]
    imb = report["imbalance"]
    kind = "argmax" if report["task"] == "multiclass" else "thresholded"
    parts.append(
        go.Figure(
            [
                go.Bar(x=classes, y=[imb["prevalence"][c]["value"] for c in classes]),
                go.Bar(
                    x=classes, y=[imb["predicted_prevalence"][kind][c]["value"] for c in classes]
                ),
            ]
        )
    )
    body = "".join(
        f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(parts)
    )
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{body}</body></html>"


def _best(fn: Any, repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    args = quick_parser(__doc__.split("\n")[0]).parse_args()
    repeats = 1 if args.quick else 5
    n = 20_000 if args.quick else 200_000
    if not figures.available():
        print("matplotlib is not installed: pip install './client[plots]'")
        return 1
    plotly = optional_import("plotly")
    cases = [
        ("multiclass K = 100", _multiclass(n, 100)),
        ("multiclass K = 10", _multiclass(n, 10)),
        ("multilabel K = 20", _multilabel(n // 2, 20)),
    ]
    rows = []
    for name, engine in cases:
        report_s, report = _best(lambda e=engine: e.report(curves=True), repeats)
        report_page([report])  # warm matplotlib's font cache
        page_s, page = _best(lambda r=report: report_page([r]), repeats)
        size = len(page.encode())
        svg = sum(len(chunk.split("</svg>")[0]) + 10 for chunk in page.split("<svg")[1:])
        if plotly is not None:
            plotly_s, plotly_page = _best(lambda r=report: _plotly_page(r), repeats)
            plotly_size = len(plotly_page.encode())
            vs_plotly = f"{fmt_ratio(page_s / plotly_s)} / {fmt_ratio(size / plotly_size)}"
            plotly_cells = f"{fmt_seconds(plotly_s)}, {fmt_bytes(plotly_size)}"
        else:
            vs_plotly, plotly_cells = "-", "skipped (not installed)"
        rows.append(
            [
                name,
                fmt_seconds(page_s),
                f"{fmt_bytes(size)} ({fmt_bytes(svg)} SVG)",
                fmt_seconds(report_s),
                fmt_ratio(page_s / report_s),
                plotly_cells,
                vs_plotly,
            ]
        )
    header = [
        "page (one window, curves of 200 points)",
        "render (best)",
        "size",
        "report(curves=True)",
        "render ÷ report",
        "Plotly page (plotly.js inline)",
        "÷ Plotly (time / size)",
    ]
    print(machine_line({"samples": str(n), "repeats": str(repeats)}))
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A canonical report as HTML: the notebook view (``Report._repr_html_``) and one self-contained
page (``evalstream report --html``, ``evalstream evaluate --html``).

The page needs no network and runs no script: figures are inline SVG (``figures``, matplotlib,
the optional ``plots`` extra), styles are inline, and the window selector is CSS radio buttons.
Every figure is followed by the numbers it draws, as a table; the headline table carries every
class. Without matplotlib the tables are rendered and a line says how to get the figures.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import figures as _figures

__all__ = ["report_fragment", "report_page", "notebook_html", "headline_rows"]

_CSS = """
.evs {font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1a1a1a;
  max-width: 1200px; line-height: 1.4}
.evs h1 {font-size: 1.5em} .evs h2 {font-size: 1.25em; margin-top: 1.6em}
.evs h3 {font-size: 1.05em; margin-top: 1.2em}
.evs table {border-collapse: collapse; margin: 0.5em 0; font-size: 0.85em}
.evs th, .evs td {border: 1px solid #cccccc; padding: 2px 6px; text-align: right}
.evs th {background: #f0f0f0} .evs td.name, .evs th.name {text-align: left}
.evs .scroll {overflow-x: auto; max-width: 100%}
.evs figure {margin: 1em 0; max-width: 100%}
.evs .figure-svg {width: 100%; max-width: 760px; height: auto; display: block}
.evs figure.wide .figure-svg {max-width: 1150px}
.evs figcaption {font-size: 0.9em; color: #333333}
.evs details {margin: 0.3em 0 1em 0} .evs summary {cursor: pointer; color: #0b5394}
.evs .note {color: #555555; font-size: 0.9em}
.evs .swatch {display: inline-block; width: 0.9em; height: 0.9em; vertical-align: middle;
  border: 1px solid #555555}
.evs .windows > input {position: absolute; opacity: 0}
.evs .windows > label {display: inline-block; padding: 4px 12px; border: 1px solid #0b5394;
  border-radius: 4px; margin: 0 4px 4px 0; cursor: pointer}
.evs .windows > input:focus-visible + label {outline: 3px solid #E69F00}
.evs .windows > .window {display: none}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return _e(x)
    if isinstance(x, int) or (math.isfinite(x) and float(x).is_integer() and abs(x) < 1e15):
        return f"{int(x)}"
    if not math.isfinite(x):
        return _e(x)
    return f"{x:.{digits}f}"


def _cell(x: Any, name: bool = False) -> str:
    """A table cell: the rounded figure shown, the full one in ``data-value``."""
    if name:
        return f'<td class="name">{_e(x)}</td>'
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, int | float) and not isinstance(x, bool):
        return f'<td data-value="{x!r}">{_num(x)}</td>'
    if isinstance(x, str) and x.startswith("#") and len(x) == 7:
        return f'<td class="name"><span class="swatch" style="background:{x}"></span> {x}</td>'
    return f'<td class="name">{_e("-" if x is None else x)}</td>'


_NAME_CLASS = ' class="name"'


def _table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], table_id: str, caption: str
) -> str:
    head = "".join(
        f'<th scope="col"{_NAME_CLASS if i == 0 else ""}>{_e(h)}</th>' for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>" + "".join(_cell(v, name=(j == 0)) for j, v in enumerate(row)) + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table id="{_e(table_id)}"><caption>{_e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def _v(leaf: Any) -> Any:
    return leaf.get("value") if isinstance(leaf, dict) else None


def _interval(leaf: Any, key: str) -> str:
    if not isinstance(leaf, dict):
        return ""
    if key == "bounds" and "lower" in leaf and leaf.get("value") is not None:
        return f"[{leaf['lower']:.4f}, {leaf['upper']:.4f}]"
    if key == "ci95" and leaf.get("ci95"):
        lo, hi = leaf["ci95"]
        return f"[{lo:.4f}, {hi:.4f}]"
    return ""


HEADLINE_COLUMNS = (
    "class / average",
    "precision",
    "precision 95% CI",
    "recall",
    "recall 95% CI",
    "f1",
    "roc_auc",
    "roc_auc bounds",
    "roc_auc 95% CI",
    "average_precision",
    "average_precision bounds",
    "support",
)


def headline_rows(report: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(row name, {metric: leaf})`` for each class, then each average: the headline table's
    rows, with the report's leaves (the page shows them rounded)."""
    names = list(report["classes"])
    binary = report["task"] == "binary"
    out: list[tuple[str, dict[str, Any]]] = []
    support = report["support"]["per_class"]
    for c in names:
        row: dict[str, Any] = {}
        for m in ("precision", "recall", "f1"):
            row[m] = report[m].get("per_class", {}).get(c)
        for m in ("roc_auc", "average_precision"):
            group = report[m]
            if binary:
                row[m] = group.get("binary") if c == names[1] else None
            else:
                row[m] = group.get("per_class", {}).get(c)
        row["support"] = support.get(c)
        out.append((c, row))
    averages = ["binary"] if binary else []
    averages += ["micro", "macro", "weighted", "samples", "ovo_macro", "ovo_weighted"]
    for avg in averages:
        row = {m: report[m].get(avg) for m in ("precision", "recall", "f1")}
        if binary and avg == "binary":
            row["roc_auc"] = row["average_precision"] = None  # shown on the positive class row
        else:
            row["roc_auc"] = report["roc_auc"].get(avg)
            row["average_precision"] = report["average_precision"].get(avg)
        if all(v is None for v in row.values()):
            continue
        row["support"] = report["support"]["total"]
        out.append((f"{avg} avg", row))
    return out


def _headline(report: Mapping[str, Any], prefix: str) -> str:
    rows = []
    for name, row in headline_rows(report):
        rows.append(
            [
                name,
                _v(row["precision"]),
                _interval(row["precision"], "ci95"),
                _v(row["recall"]),
                _interval(row["recall"], "ci95"),
                _v(row["f1"]),
                _v(row["roc_auc"]),
                _interval(row["roc_auc"], "bounds"),
                _interval(row["roc_auc"], "ci95"),
                _v(row["average_precision"]),
                _interval(row["average_precision"], "bounds"),
                _v(row["support"]),
            ]
        )
    caption = (
        "Per class and averaged; bounds are guaranteed to contain the value on the raw scores, "
        "95% CI are intervals (README); '-' is undefined in this window"
    )
    table = _table(HEADLINE_COLUMNS, rows, f"{prefix}-headline", caption)
    n_classes = len(report["classes"])
    if n_classes <= LONG_HEADLINE:
        return table
    averages = rows[n_classes:]  # many classes: the averages first, every class one click away
    return _table(HEADLINE_COLUMNS, averages, f"{prefix}-averages", "Averages") + (
        f"<details><summary>Every class ({n_classes} rows)</summary>{table}</details>"
    )


LONG_HEADLINE = 20  # classes past which the per-class rows fold away under the averages


SCALARS = (
    ("accuracy", "accuracy"),
    ("balanced_accuracy", "balanced accuracy"),
    ("matthews_corrcoef", "Matthews correlation"),
    ("cohen_kappa", "Cohen's kappa"),
    ("log_loss", "log loss"),
    ("brier_score", "Brier score"),
    ("expected_calibration_error", "expected calibration error"),
    ("hamming_loss", "Hamming loss"),
)


def _scalars(report: Mapping[str, Any], prefix: str) -> str:
    rows: list[list[Any]] = []
    for key, label in SCALARS:
        leaf = report.get(key)
        if isinstance(leaf, dict):
            rows.append([label, _v(leaf), leaf.get("reason", "") if _v(leaf) is None else ""])
    for k, leaf in (report.get("top_k_accuracy") or {}).items():
        rows.append([f"top-{k} accuracy", _v(leaf), ""])
    imb = report.get("imbalance", {})
    for key, label in (
        ("imbalance_ratio", "imbalance ratio"),
        ("micro_macro_auc_gap", "micro - macro ROC AUC"),
    ):
        if key in imb:
            rows.append([label, _v(imb[key]), imb[key].get("reason", "")])
    return _table(
        ["metric", "value", "why undefined"], rows, f"{prefix}-scalars", "Whole-window figures"
    )


def _generic_section(key: str, node: Any, prefix: str) -> str:
    """Sections added later (``estimated``, ``thresholds``, ``compare``, ...): their leaves as a
    table of paths and values, so they show before they get a figure of their own."""
    rows: list[list[Any]] = []

    def walk(path: str, n: Any) -> None:
        if len(rows) >= 400:
            return
        if isinstance(n, dict):
            if "value" in n and not isinstance(n["value"], dict | list):
                extra = _interval(n, "bounds") or _interval(n, "ci95") or n.get("reason", "")
                rows.append([path, n["value"], extra])
                return
            for k, v in n.items():
                walk(f"{path}.{k}" if path else str(k), v)
        elif isinstance(n, int | float | str | bool) or n is None:
            rows.append([path, n, ""])

    walk("", node)
    if not rows:
        return ""
    return f"<h3>{_e(key)}</h3>" + _table(
        ["figure", "value", "bounds / interval / reason"], rows, f"{prefix}-{key}", key
    )


def _thresholds(section: Mapping[str, Any], prefix: str) -> str:
    """The report's threshold advice (``thresholds``): per class the F1-maximising threshold and
    the thresholds that reach each recall and precision floor, with what they give."""
    goals = section.get("goals") or {}
    recall_floors = [str(f) for f in goals.get("recall_floors", [])]
    precision_floors = [str(f) for f in goals.get("precision_floors", [])]
    header = ["class", "best-F1 threshold", "precision", "recall", "F1", "F1 95% CI"]
    header += [f"threshold for recall >= {f} (precision)" for f in recall_floors]
    header += [f"threshold for precision >= {f} (recall)" for f in precision_floors]
    rows: list[list[Any]] = []
    for name, advice in (section.get("per_class") or {}).items():
        best = advice.get("best_f1") or {}
        row: list[Any] = [
            name,
            best.get("threshold"),
            _v(best.get("precision")),
            _v(best.get("recall")),
            _v(best.get("f1")),
            _interval(best.get("f1"), "ci95"),
        ]
        for group, floors, other in (
            ("recall_floor", recall_floors, "precision"),
            ("precision_floor", precision_floors, "recall"),
        ):
            for f in floors:
                entry = (advice.get(group) or {}).get(f) or {}
                t, v = entry.get("threshold"), _v(entry.get(other))
                row.append("-" if t is None else f"{t:.4f} ({_num(v)})")
        rows.append(row)
    out = "<h3>Threshold advice</h3>" + _table(
        header,
        rows,
        f"{prefix}-thresholds",
        "Per class (one-vs-rest): thresholds and what they give",
    )
    macro = section.get("macro_f1") or {}
    if macro:
        mrows = [[k, _v(v), _interval(v, "ci95")] for k, v in macro.items() if isinstance(v, dict)]
        out += _table(
            ["macro F1", "value", "95% CI"],
            mrows,
            f"{prefix}-thresholds-macro",
            str(macro.get("definition", "macro F1")),
        )
    return out


_KNOWN = {
    "report_version", "stream", "task", "classes", "window", "n_samples", "weight_total",
    "resolution", "support", "roc_auc", "average_precision", "precision", "recall", "f1",
    "accuracy", "balanced_accuracy", "matthews_corrcoef", "cohen_kappa", "log_loss",
    "brier_score", "hamming_loss", "expected_calibration_error", "top_k_accuracy",
    "confusion_matrix", "multilabel_confusion_matrix", "imbalance", "label_free", "labels",
    "curves", "reliability", "thresholds",
}  # fmt: skip


def report_fragment(report: Mapping[str, Any], prefix: str = "w0", figures: bool = True) -> str:
    """One window's HTML: headline table, scalar figures, then each figure with its table.

    ``prefix`` keeps ids unique when several windows share a page. ``figures=False`` (or no
    matplotlib) renders the tables only."""
    d = dict(report)
    parts = [
        f'<h2 id="{prefix}-title">Window {_e(d.get("window", "cumulative"))}: '
        f"{_num(d.get('n_samples'))} labelled samples</h2>",
        _headline(d, prefix),
        _scalars(d, prefix),
    ]
    if figures and _figures.available():
        if not d.get("curves"):
            parts.append(
                '<p class="note">No ROC or precision-recall curves in this report: fetch it with '
                "<code>client.report(stream, curves=True)</code>.</p>"
            )
        for fig in _figures.report_figures(d, prefix):
            wide = "wide" if fig.wide else ""
            table = _table(
                fig.table[0], fig.table[1], f"{fig.key}-data", f"Numbers behind: {fig.title}"
            )
            note = f'<p class="note">{_e(fig.note)}</p>' if fig.note else ""
            parts.append(
                f'<section class="fig" id="{_e(fig.key)}"><h3>{_e(fig.title)}</h3>'
                f'<figure class="{wide}">{fig.svg}<figcaption>{_e(fig.title)}'
                f"</figcaption></figure>{note}"
                f"<details><summary>Numbers behind this figure ({len(fig.table[1])} rows)"
                f"</summary>{table}</details></section>"
            )
    elif figures:
        parts.append(
            '<p class="note">Figures need matplotlib: '
            "<code>pip install 'evalstream-client[plots]'</code>.</p>"
        )
    if isinstance(d.get("thresholds"), dict):
        parts.append(_thresholds(d["thresholds"], prefix))
    for key in d:
        if key not in _KNOWN:
            parts.append(_generic_section(key, d[key], prefix))
    return "\n".join(parts)


def _definition(definition: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    rows: list[list[Any]] = [
        ["stream", report.get("stream") or "-"],
        ["task", report.get("task")],
        ["classes", ", ".join(report.get("classes", []))],
    ]
    res = report.get("resolution") or {}
    rows.append(["resolution", ", ".join(f"{k} {v}" for k, v in res.items())])
    for k, v in definition.items():
        if k in ("name", "task", "classes"):
            continue
        if isinstance(v, list | tuple):
            v = ", ".join(str(x) for x in v) or "-"
        rows.append([k, v if isinstance(v, int | float | str) else str(v)])
    return _table(["field", "value"], rows, "definition", "The stream's definition")


def report_page(
    reports: Sequence[Mapping[str, Any]],
    definition: Mapping[str, Any] | None = None,
    title: str | None = None,
    figures: bool = True,
) -> str:
    """One self-contained HTML document for one or more windows of a stream (a selector when
    there are several). ``definition`` is the stream's configuration, shown in a table."""
    if not reports:
        raise ValueError("reports: expected at least one report, received none")
    first = reports[0]
    name = title or f"evalstream report: {first.get('stream') or 'evaluation'}"
    body = [
        f"<h1>{_e(name)}</h1>",
        "<h2>Stream definition</h2>",
        _definition(definition or {}, first),
    ]
    if len(reports) == 1:
        body.append(report_fragment(reports[0], "w0", figures))
        rules = ""
    else:
        items, rule_parts = [], []
        for i, r in enumerate(reports):
            checked = " checked" if i == 0 else ""
            items.append(
                f'<input type="radio" name="window" id="pick-w{i}"{checked}>'
                f'<label for="pick-w{i}">{_e(r.get("window", i))}</label>'
            )
            rule_parts.append(f".evs #pick-w{i}:checked ~ #win-w{i}")
        sections = [
            f'<div class="window" id="win-w{i}">{report_fragment(r, f"w{i}", figures)}</div>'
            for i, r in enumerate(reports)
        ]
        body.append(
            '<h2 id="window-picker">Window</h2><div class="windows" role="group" '
            'aria-labelledby="window-picker">' + "".join(items) + "".join(sections) + "</div>"
        )
        rules = ", ".join(rule_parts) + " {display: block}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(name)}</title><style>{_CSS}{rules}</style></head>"
        f'<body><main class="evs">{"".join(body)}</main></body></html>\n'
    )


def notebook_html(report: Mapping[str, Any], prefix: str) -> str:
    """The fragment for a notebook cell: styles scoped to one ``div``, ids under ``prefix``."""
    return f'<div class="evs"><style>{_CSS}</style>{report_fragment(report, prefix)}</div>'

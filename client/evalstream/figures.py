"""Figures of a canonical report as inline SVG, drawn with matplotlib (the optional ``plots``
extra: ``pip install 'evalstream-client[plots]'``).

Each figure comes with the numbers it draws (``Figure.table``), so a page can show both: a reader
who cannot see the picture, or wants the values, gets the table. Works on the JSON-ready report
dict alone; nothing here talks to a server.

Colours are Okabe and Ito's colour-blind-safe palette, each class also gets its own line style,
and heat maps use one sequential hue (darker is more).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "Figure",
    "PALETTE",
    "MAX_CURVES",
    "available",
    "report_figures",
    "roc_band",
    "pr_band",
]

# Okabe & Ito (2008), without yellow (too light on white); black is the micro average.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
MICRO_COLOUR = "#000000"
_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
MAX_CURVES = len(PALETTE)  # classes drawn per curve figure (the lowest AUC first past that)
HEAT_CMAP = "Blues"  # one hue, white to dark blue: readable in every colour-vision deficiency
_INSTALL = "pip install 'evalstream-client[plots]' (matplotlib)"


@dataclass
class Figure:
    """One picture: its ``key`` (an id), ``title``, the SVG text and the numbers behind it.

    ``table`` is ``(header, rows)``; ``note`` says what the picture leaves out or how to read it.
    ``colours`` maps each drawn series (class name or ``"micro"``) to its colour.
    """

    key: str
    title: str
    svg: str
    table: tuple[list[str], list[list[Any]]]
    note: str = ""
    colours: dict[str, str] = field(default_factory=dict)
    wide: bool = False


def available() -> bool:
    """Whether matplotlib can be imported (the ``plots`` extra is installed)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _mpl() -> Any:
    try:
        from matplotlib.figure import Figure as MplFigure
    except ImportError as exc:  # pragma: no cover - exercised in the light client's venv
        raise ImportError(f"figures need matplotlib: {_INSTALL}") from exc
    return MplFigure


def _svg(fig: Any, salt: str, title: str) -> str:
    """The figure as an inline ``<svg>`` element: no XML prolog, no fixed size (it scales to
    its container), text as text (no embedded glyphs), ids unique per ``salt``."""
    import matplotlib

    buf = io.StringIO()
    rc: Any = {"svg.fonttype": "none", "svg.hashsalt": salt}
    with matplotlib.rc_context(rc):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    head_end = text.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    label = _escape(title)
    head += f' role="img" aria-label="{label}" class="figure-svg"'
    body = text[head_end + 1 :]
    # matplotlib names its groups figure_1, axes_1, ... in every figure: scope them to this one
    body = re.sub(r'id="(?!' + re.escape(salt) + r")", f'id="{salt}-', body)
    body = body.replace("url(#", f"url(#{salt}-").replace('href="#', f'href="#{salt}-')
    seen: dict[str, int] = {}

    def unique(m: re.Match[str]) -> str:  # identical images get identical ids: number them
        n = seen[m.group(1)] = seen.get(m.group(1), 0) + 1
        return m.group(0) if n == 1 else f'id="{m.group(1)}-{n}"'

    body = re.sub(r'id="([^"]*)"', unique, body)
    return f"{head}><title>{label}</title>{body}"


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _v(leaf: Any) -> float | None:
    if isinstance(leaf, dict):
        value = leaf.get("value")
        return None if value is None else float(value)
    return None


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _arr(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


# -- bound bands ---------------------------------------------------------------------------------
def roc_band(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the ROC curve on the raw scores can run between drawn points.

    Every drawn point is a threshold's exact (fpr, tpr) (a bin edge, or a kept point of a
    thinned curve); between two of them the curve only rises and moves right, so it lies in the
    box they span. Returns ``(x, lower, upper)`` for a step-after fill."""
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    upper = np.append(y[1:], y[-1]) if y.size else y
    return x, y, upper


def pr_band(
    recall: np.ndarray, precision: np.ndarray, thresholds: Sequence[float | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the precision-recall curve on the raw scores can run between drawn points.

    Between two thresholds the true positives lie between the two points' (proportional to
    recall) and so do the false positives (``recall * (1 - precision) / precision``), so
    precision lies between ``tp_low / (tp_low + fp_high)`` and ``tp_high / (tp_high + fp_low)``.
    sklearn's final point (recall 0, precision 1) is a convention, not a threshold: the band
    starts instead from no prediction at all (no true and no false positives), which bounds the
    curve above the highest drawn threshold. Returns ``(recall, lower, upper)`` for a step-after
    fill."""
    keep = np.array([t is not None for t in thresholds], dtype=bool)
    r, p = recall[keep], precision[keep]
    order = np.argsort(r, kind="stable")
    r, p = r[order], p[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        fp = np.where(p > 0, r * (1 - p) / np.where(p > 0, p, 1.0), np.inf)
    fp = np.where((p == 0) & (r == 0), np.nan, fp)  # no true positive: fp unknown
    r, p, fp = np.r_[0.0, r], np.r_[1.0, p], np.r_[0.0, fp]  # nothing predicted positive
    n = r.size
    lower, upper = np.zeros(n), np.ones(n)
    for i in range(n - 1):
        tp_lo, tp_hi = r[i], r[i + 1]
        if np.isnan(fp[i]) or np.isnan(fp[i + 1]):
            fp_lo = fp_hi = np.nan  # unknown: no bound from the false positives
        else:
            fp_lo, fp_hi = min(fp[i], fp[i + 1]), max(fp[i], fp[i + 1])
        if fp_hi == 0:
            lower[i] = 1.0  # no false positive anywhere in between
        elif np.isfinite(fp_hi):
            lower[i] = tp_lo / (tp_lo + fp_hi)
        if tp_hi == 0:
            upper[i] = 0.0  # no true positive anywhere in between
        elif np.isfinite(fp_lo):
            upper[i] = tp_hi / (tp_hi + fp_lo)
    lower[-1] = upper[-1] = p[-1]
    return r, lower, upper


# -- the figures ---------------------------------------------------------------------------------
def _curve_targets(report: dict[str, Any], metric: str) -> tuple[list[str], str]:
    """The classes a curve figure draws (all, or the MAX_CURVES lowest by ``metric``) and a note."""
    names = list(report["classes"])
    if report["task"] == "binary":
        return [names[1]], ""
    per = report[metric].get("per_class", {})
    if len(names) <= MAX_CURVES:
        return names, ""
    ranked = sorted(names, key=lambda c: (_v(per.get(c)) is None, _v(per.get(c)) or 0.0))
    chosen = ranked[:MAX_CURVES]
    what = "ROC AUC" if metric == "roc_auc" else "average precision"
    return chosen, (
        f"{len(names)} classes: the {MAX_CURVES} with the lowest {what} are drawn, with the "
        f"micro average; the headline table has every class"
    )


def _curve_figure(report: dict[str, Any], kind: str, salt: str) -> Figure | None:
    curves = (report.get("curves") or {}).get(kind)
    if not curves:
        return None
    Fig = _mpl()
    metric = "roc_auc" if kind == "roc" else "average_precision"
    group = report[metric]
    targets, note = _curve_targets(report, metric)
    series = [c for c in targets if c in curves]
    if "micro" in curves:
        series.append("micro")
    fig = Fig(figsize=(6.2, 5.0))
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.1, top=0.93)
    ax = fig.add_subplot()
    ax.patch.set_gid(f"{salt}-{kind}-axes")
    colours: dict[str, str] = {}
    rows: list[list[Any]] = []
    for i, name in enumerate(series):
        c = curves[name]
        x, y = _arr(c["x"]), _arr(c["y"])
        colour = MICRO_COLOUR if name == "micro" else PALETTE[i % len(PALETTE)]
        style = (0, (1, 1)) if name == "micro" else _STYLES[i % len(_STYLES)]
        colours[name] = colour
        leaf = group.get("binary") if report["task"] == "binary" else None
        if leaf is None:
            leaf = group.get("micro") if name == "micro" else group.get("per_class", {}).get(name)
        value = _v(leaf)
        bounds = ""
        if leaf and value is not None and "lower" in leaf:
            bounds = f" [{leaf['lower']:.3f}, {leaf['upper']:.3f}]"
        short = "AUC" if kind == "roc" else "AP"
        label = f"{name} ({short} {_fmt(value)}{bounds})"
        if kind == "roc":
            bx, lo, hi = roc_band(x, y)
            ax.plot(x, y, color=colour, linestyle=style, linewidth=2.0, label=label)
        else:
            bx, lo, hi = pr_band(x, y, c["thresholds"])
            ax.step(x, y, where="post", color=colour, linestyle=style, linewidth=2.0, label=label)
        if bx.size > 1:
            ax.fill_between(bx, lo, hi, step="post", color=colour, alpha=0.18, linewidth=0)
        thresholds = c["thresholds"]
        for px, py, t in zip(c["x"], c["y"], thresholds, strict=True):
            rows.append([name, colour, px, py, t])
        best = ((report.get("thresholds") or {}).get("per_class") or {}).get(name, {})
        best = best.get("best_f1") or {}
        if kind == "pr" and _v(best.get("recall")) is not None and _v(best.get("precision")):
            bx_, by_ = _v(best["recall"]), _v(best["precision"])
            marked = "best F1 threshold (report's thresholds section)"
            if marked not in _labels(ax):  # one neutral legend entry for every class's mark
                ax.plot(
                    [],
                    [],
                    marker="o",
                    markersize=8,
                    color="#999999",
                    markeredgecolor="black",
                    linestyle="none",
                    label=marked,
                )
            ax.plot(
                [bx_],
                [by_],
                marker="o",
                markersize=8,
                color=colour,
                markeredgecolor="black",
                linestyle="none",
            )
            rows.append([f"{name} (best F1)", colour, bx_, by_, best.get("threshold")])
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="#777777", linewidth=1.0, linestyle=":", label="chance")
        ax.set_xlabel("False positive rate")
        ax.set_ylabel("True positive rate")
        title = "ROC curves (shaded: bounds of the curve on the raw scores)"
        header = ["series", "colour", "false positive rate", "true positive rate", "threshold"]
    else:
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        title = "Precision-recall curves (shaded: bounds of the curve on the raw scores)"
        header = ["series", "colour", "recall", "precision", "threshold"]
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_title(title.split(" (")[0] + f" - {report.get('window', '')}")
    ax.legend(loc="lower right" if kind == "roc" else "best", fontsize=8, title="class")
    key = f"{salt}-{kind}"
    return Figure(key, title, _svg(fig, key, title), (header, rows), note, colours)


def _labels(ax: Any) -> list[str]:
    return [str(h.get_label()) for h in ax.get_lines()]


def _confusion_figure(report: dict[str, Any], salt: str) -> Figure:
    Fig = _mpl()
    names = list(report["classes"])
    if report.get("confusion_matrix") is not None:
        cm = np.asarray(report["confusion_matrix"], dtype=np.float64)
        rows_names, col_names = names, names
        xlabel, ylabel = "Predicted class", "True class"
        title = "Confusion matrix"
    else:
        mcm = np.asarray(report["multilabel_confusion_matrix"], dtype=np.float64)
        cm = mcm.reshape(len(mcm), 4)  # tn, fp, fn, tp per label
        rows_names = names if len(names) == len(mcm) else names[-len(mcm) :]
        col_names = ["true neg.", "false pos.", "false neg.", "true pos."]
        xlabel, ylabel = "Outcome", "Label"
        title = "Per-label confusion"
    totals = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    k_rows, k_cols = cm.shape
    width = min(14.0, 4.0 + 0.16 * k_cols * 2) if k_cols > 12 else 11.0
    fig = Fig(figsize=(width, width / 2.0 + 0.6))
    axes = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.16, top=0.92, wspace=0.3)
    for ax, data, what in ((axes[0], cm, "counts"), (axes[1], norm, "row-normalised")):
        ax.patch.set_gid(f"{salt}-confusion-{what}-axes")
        vmax = float(data.max()) if data.size and data.max() > 0 else 1.0
        image = ax.imshow(
            data,
            cmap=HEAT_CMAP,
            vmin=0.0,
            vmax=vmax if what == "counts" else 1.0,
            interpolation="nearest",
            aspect="equal",
        )
        image.set_gid(f"{salt}-confusion-{what}-image")
        ax.set_title(f"{title} ({what})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if k_cols <= 30:
            ax.set_xticks(range(k_cols), col_names, rotation=45 if k_cols > 4 else 0, ha="right")
        if k_rows <= 30:
            ax.set_yticks(range(k_rows), rows_names)
        if k_rows * k_cols <= 100:
            for i in range(k_rows):
                for j in range(k_cols):
                    v = data[i, j]
                    text = f"{v:.2f}" if what != "counts" else f"{v:g}"
                    dark = v > 0.55 * (vmax if what == "counts" else 1.0)
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if dark else "black",
                    )
        fig.colorbar(image, ax=ax, shrink=0.8, label="samples" if what == "counts" else "share")
    header = ["true \\ predicted"] + col_names
    rows = [[r] + cm[i].tolist() for i, r in enumerate(rows_names)]
    rows += [[f"{r} (share)"] + norm[i].tolist() for i, r in enumerate(rows_names)]
    key = f"{salt}-confusion"
    full = f"{title}: counts and row-normalised"
    note = "" if k_rows * k_cols <= 100 else "cells are not labelled at this size; see the table"
    return Figure(key, full, _svg(fig, key, full), (header, rows), note, wide=True)


def _reliability_figure(report: dict[str, Any], salt: str) -> Figure | None:
    rel = report.get("reliability")
    if not rel or not any(rel["weights"]):
        return None
    Fig = _mpl()
    edges = np.asarray(rel["edges"], dtype=np.float64)
    w = np.asarray(rel["weights"], dtype=np.float64)
    conf, obs = _arr(rel["confidence"]), _arr(rel["observed"])
    ece = _v(report.get("expected_calibration_error"))
    fig = Fig(figsize=(6.2, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.09, top=0.94, hspace=0.08)
    top.patch.set_gid(f"{salt}-reliability-axes")
    top.plot(
        [0, 1], [0, 1], color="#777777", linestyle=":", linewidth=1.0, label="perfectly calibrated"
    )
    filled = w > 0
    top.plot(
        conf[filled],
        obs[filled],
        color=PALETTE[0],
        marker="o",
        linewidth=2.0,
        label="observed (one point per non-empty bin)",
    )
    top.set_ylabel("Observed frequency" if rel["definition"] != "top-label" else "Accuracy")
    title = f"Reliability diagram (ECE {_fmt(ece, 4)})"
    top.set_title(f"{title} - {report.get('window', '')}")
    top.set_xlim(0, 1)
    top.set_ylim(-0.01, 1.01)
    top.grid(True, color="#dddddd", linewidth=0.6)
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(
        edges[:-1], w, width=np.diff(edges), align="edge", color=PALETTE[5], edgecolor="white"
    )
    bottom.set_ylabel("Weight")
    what = "Top-label confidence" if rel["definition"] == "top-label" else "Predicted probability"
    bottom.set_xlabel(what)
    header = ["bin from", "bin to", "weight", "mean confidence", "observed"]
    rows = [
        [edges[i], edges[i + 1], w[i], rel["confidence"][i], rel["observed"][i]]
        for i in range(len(w))
    ]
    key = f"{salt}-reliability"
    return Figure(key, title, _svg(fig, key, title), (header, rows))


def _support_figure(report: dict[str, Any], salt: str) -> Figure:
    Fig = _mpl()
    names = list(report["classes"])
    imb = report["imbalance"]
    kind = "argmax" if report["task"] == "multiclass" else "thresholded"
    prevalence = imb.get("prevalence", {})
    predicted = imb["predicted_prevalence"].get(kind, {})
    shown = [c for c in names if c in prevalence or c in predicted]
    true_share = [_v(prevalence.get(c)) for c in shown]
    pred_share = [_v(predicted.get(c)) for c in shown]
    k = len(shown)
    fig = Fig(figsize=(min(14.0, max(6.2, 0.14 * k + 3)), 4.2))
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.22 if 6 < k <= 30 else 0.13, top=0.91)
    ax = fig.add_subplot()
    ax.patch.set_gid(f"{salt}-support-axes")
    xs = np.arange(k)
    width = 0.4
    ax.bar(
        xs - width / 2,
        [v or 0.0 for v in true_share],
        width,
        color=PALETTE[0],
        label="support share (labels)",
    )
    ax.bar(
        xs + width / 2,
        [v or 0.0 for v in pred_share],
        width,
        color=PALETTE[1],
        hatch="//",
        edgecolor="white",
        label=f"predicted share ({kind})",
    )
    if k <= 30:
        ax.set_xticks(xs, shown, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    else:
        ax.set_xticks([])
    ax.set_xlabel("Class")
    ax.set_ylabel("Share of samples")
    title = "Support vs predicted share per class"
    ax.set_title(f"{title} - {report.get('window', '')}")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", color="#dddddd", linewidth=0.6)
    support = report["support"]["per_class"]
    header = ["class", "support", "support share", f"predicted share ({kind})"]
    rows = [
        [c, _v(support.get(c)), t, p] for c, t, p in zip(shown, true_share, pred_share, strict=True)
    ]
    key = f"{salt}-support"
    return Figure(key, title, _svg(fig, key, title), (header, rows), wide=k > 30)


def _label_free_figure(report: dict[str, Any], salt: str) -> Figure | None:
    free = report.get("label_free")
    if not free or not free.get("n_predictions"):
        return None
    Fig = _mpl()
    hist = free["confidence"]["histogram"]
    edges = np.asarray(hist["edges"], dtype=np.float64)
    w = np.asarray(hist["weights"], dtype=np.float64)
    shift = free["prior_shift"]
    per = shift.get("per_class", {})
    has_shift = any(_v(v) is not None for v in per.values())
    fig = Fig(figsize=(11.0 if has_shift else 6.2, 4.2))
    axes = fig.subplots(1, 2 if has_shift else 1, squeeze=False)[0]
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.13, top=0.91, wspace=0.3)
    ax = axes[0]
    ax.patch.set_gid(f"{salt}-label-free-axes")
    ax.bar(edges[:-1], w, width=np.diff(edges), align="edge", color=PALETTE[2], edgecolor="white")
    low = free["confidence"]["low_confidence_share"]
    if low.get("threshold") is not None:
        ax.axvline(
            low["threshold"],
            color=PALETTE[1],
            linestyle="--",
            label=f"low confidence below {low['threshold']} ({_fmt(_v(low))} of predictions)",
        )
        ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel(str(free["confidence"].get("definition", "confidence")).capitalize())
    ax.set_ylabel("Predictions (weight)")
    ax.set_title(f"Confidence of {free['n_predictions']} predictions (labelled or not)")
    header = ["bin from", "bin to", "predictions"]
    rows: list[list[Any]] = [[edges[i], edges[i + 1], w[i]] for i in range(len(w))]
    if has_shift:
        ax2 = axes[1]
        names = [c for c in report["classes"] if c in per][:40]
        vals = [_v(per[c]) or 0.0 for c in names]
        ax2.barh(range(len(names)), vals, color=PALETTE[3])
        ax2.set_yticks(range(len(names)), names)
        ax2.axvline(0, color="#777777", linewidth=0.8)
        ax2.set_xlabel(f"Predicted share minus the reference's ({shift['reference']})")
        ax2.set_title(f"Prior shift (PSI {_fmt(_v(shift['psi']), 4)})")
        rows += [[f"shift {c}", "", _v(per[c])] for c in names]
    title = "Label-free: confidence and prior shift"
    key = f"{salt}-label-free"
    return Figure(key, title, _svg(fig, key, title), (header, rows), wide=has_shift)


def _delay_figure(report: dict[str, Any], salt: str) -> Figure | None:
    labels = report.get("labels")
    if not labels or not labels["delay_seconds"].get("joined"):
        return None
    Fig = _mpl()
    delay = labels["delay_seconds"]
    hist = delay["histogram"]
    le = hist["le"]
    counts = np.asarray(hist["counts"], dtype=np.float64)
    names = [f"<= {_seconds(b)}" if b is not None else "longer" for b in le]
    fig = Fig(figsize=(7.5, 4.0))
    fig.subplots_adjust(left=0.1, right=0.97, bottom=0.3, top=0.9)
    ax = fig.add_subplot()
    ax.patch.set_gid(f"{salt}-delay-axes")
    ax.bar(range(len(counts)), counts, color=PALETTE[4])
    ax.set_xticks(range(len(counts)), names, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("Label delay (prediction to label)")
    ax.set_ylabel("Pairs joined")
    title = (
        f"Label delay: p50 {_fmt(_v(delay['p50']), 1)} s, p90 {_fmt(_v(delay['p90']), 1)} s "
        f"({delay['joined']} joined)"
    )
    ax.set_title(title)
    header = ["delay at most (s)", "pairs joined"]
    rows = [[b if b is not None else "inf", c] for b, c in zip(le, counts.tolist(), strict=True)]
    key = f"{salt}-delay"
    return Figure(key, title, _svg(fig, key, title), (header, rows))


ESTIMATED_METRICS = ("recall", "precision", "f1")


def _estimated_figure(report: dict[str, Any], salt: str) -> Figure | None:
    """Estimated (before labels) beside realized per class, for recall, precision and F1: the
    report's ``estimated`` section where a stream estimates metrics from calibrated scores."""
    est = report.get("estimated")
    if not isinstance(est, dict):
        return None
    metrics = [
        m for m in ESTIMATED_METRICS if isinstance((est.get(m) or {}).get("per_class"), dict)
    ]
    if not metrics:
        return None
    Fig = _mpl()
    names = [c for c in report["classes"] if c in est[metrics[0]]["per_class"]]
    note = ""
    if len(names) > 30:
        first = est[metrics[0]]["per_class"]

        def lowest_first(c: str) -> float:
            value = _v(first.get(c))
            return 2.0 if value is None else value

        names = sorted(names, key=lowest_first)[:30]
        note = f"{len(report['classes'])} classes: the 30 lowest by estimated {metrics[0]} drawn"
    k = len(names)
    height = 0.28 * k + 2.2  # inches: a row per class and room for the title and legend
    fig = Fig(figsize=(min(14.0, max(6.2, 4.2 * len(metrics))), height))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    fig.subplots_adjust(
        left=0.14, right=0.98, bottom=0.8 / height, top=1 - 0.85 / height, wspace=0.08
    )
    rows: list[list[Any]] = []
    ys = np.arange(k)
    for col, (ax, metric) in enumerate(zip(axes, metrics, strict=True)):
        ax.patch.set_gid(f"{salt}-estimated-{metric}-axes")
        per = est[metric]["per_class"]
        realized = (report.get(metric) or {}).get("per_class") or {}
        for i, name in enumerate(names):
            leaf = per.get(name) or {}
            value, ci = _v(leaf), leaf.get("ci95")
            real = _v(realized.get(name))
            if value is not None:
                err = None
                if ci:
                    err = [[max(value - ci[0], 0.0)], [max(ci[1] - value, 0.0)]]
                ax.errorbar(
                    [value],
                    [i],
                    xerr=err,
                    fmt="o",
                    color=PALETTE[0],
                    capsize=3,
                    label="estimated (95% interval)" if i == 0 else None,
                )
            if real is not None:
                ax.plot(
                    [real],
                    [i],
                    marker="D",
                    color=PALETTE[1],
                    linestyle="none",
                    label="realized (labelled)"
                    if not any(h.get_label() == "realized (labelled)" for h in ax.get_lines())
                    else None,
                )
            rows.append([name, metric, value, ci[0] if ci else None, ci[1] if ci else None, real])
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(metric.capitalize() if metric != "f1" else "F1")
        ax.grid(True, axis="x", color="#dddddd", linewidth=0.6)
        if col == 0:
            ax.set_yticks(ys, names)
            ax.set_ylabel("Class")
            handles, labels = ax.get_legend_handles_labels()
            fig.legend(
                handles,
                labels,
                fontsize=8,
                loc="upper center",
                ncol=2,
                frameon=False,
                bbox_to_anchor=(0.5, 1 - 0.4 / height),
            )
    ax0 = axes[0]
    ax0.invert_yaxis()
    title = "Estimated (before labels) vs realized per class"
    fig.suptitle(f"{title} - {report.get('window', '')}")
    header = ["class", "metric", "estimated", "95% low", "95% high", "realized"]
    key = f"{salt}-estimated-figure"  # "{salt}-estimated" is the section's own table
    return Figure(key, title, _svg(fig, key, title), (header, rows), note, wide=len(metrics) > 1)


def _seconds(s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:g} {unit}"
    return f"{s:g} s"


def report_figures(report: dict[str, Any], salt: str = "w0") -> list[Figure]:
    """Every figure the report has the numbers for, in reading order. ``salt`` keeps element ids
    unique when several reports share a page."""
    out: list[Figure | None] = [
        _curve_figure(report, "roc", salt),
        _curve_figure(report, "pr", salt),
        _confusion_figure(report, salt),
        _reliability_figure(report, salt),
        _support_figure(report, salt),
        _estimated_figure(report, salt),
        _label_free_figure(report, salt),
        _delay_figure(report, salt),
    ]
    return [f for f in out if f is not None]

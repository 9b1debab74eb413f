"""Plain-text rendering of a canonical report, in the spirit of sklearn's classification_report.

Works on the JSON-ready report dict alone, so the server's CLI and the Python client share it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_report", "classification_report"]

GAP_WARNING = 0.03  # micro minus macro AUC above this is called out


def _v(leaf: dict[str, Any] | None, digits: int = 3) -> str:
    if not leaf or leaf.get("value") is None:
        return "-"
    return f"{leaf['value']:.{digits}f}"


def classification_report(report: dict[str, Any], digits: int = 3) -> str:
    """Per-class precision, recall, F1, ROC AUC, AP and support, then the averages."""
    names = rows = report["classes"]
    if report["task"] == "binary":
        auc_rows = {names[1]: report["roc_auc"].get("binary")}
        ap_rows = {names[1]: report["average_precision"].get("binary")}
    else:
        auc_rows = report["roc_auc"].get("per_class", {})
        ap_rows = report["average_precision"].get("per_class", {})
    width = max([len(n) for n in rows] + [len("weighted avg"), 12])
    cols = ("precision", "recall", "f1-score", "roc-auc", "avg-prec", "support")
    head = " " * width + "".join(f"{c:>10}" for c in cols)
    lines = [head, ""]
    support = report["support"]["per_class"]
    for name in rows:
        cells = [
            _v(report["precision"]["per_class"].get(name), digits),
            _v(report["recall"]["per_class"].get(name), digits),
            _v(report["f1"]["per_class"].get(name), digits),
            _v(auc_rows.get(name), digits),
            _v(ap_rows.get(name), digits),
            str(support[name]["value"]),
        ]
        lines.append(f"{name:>{width}}" + "".join(f"{c:>10}" for c in cells))
    lines.append("")
    total = report["support"]["total"]["value"]
    acc = report["accuracy"]
    lines.append(
        f"{'accuracy':>{width}}" + " " * 20 + f"{_v(acc, digits):>10}" + " " * 20 + f"{total:>10}"
    )
    for avg in ("macro", "weighted", "micro", "samples"):
        if avg not in report["f1"]:
            continue
        auc = report["roc_auc"].get(avg) if report["task"] != "binary" else None
        ap = report["average_precision"].get(avg) if report["task"] != "binary" else None
        cells = [_v(report[m].get(avg), digits) for m in ("precision", "recall", "f1")]
        cells += [_v(auc, digits), _v(ap, digits), str(total)]
        label = f"{avg} avg"
        lines.append(f"{label:>{width}}" + "".join(f"{c:>10}" for c in cells))
    return "\n".join(lines)


def format_report(report: dict[str, Any], digits: int = 3) -> str:
    """The classification report plus the stream-level figures and imbalance call-outs."""
    out = [
        f"stream {report.get('stream') or '-'}  task {report['task']}  window "
        f"{report['window']}  samples {report['n_samples']}",
        "",
        classification_report(report, digits),
        "",
    ]
    auc = report["roc_auc"]
    if report["task"] == "binary":
        b = auc["binary"]
        ci = b.get("ci95")
        ci_text = f"  95% CI [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else ""
        out.append(f"ROC AUC {_v(b, 4)}{ci_text}")
    else:
        parts = [
            f"{k} {_v(auc.get(k), 4)}"
            for k in ("macro", "weighted", "micro", "ovo_macro", "ovo_weighted", "samples")
            if k in auc
        ]
        out.append("ROC AUC  " + "  ".join(parts))
    extras = [
        ("balanced accuracy", report.get("balanced_accuracy")),
        ("MCC", report.get("matthews_corrcoef")),
        ("Cohen's kappa", report.get("cohen_kappa")),
        ("log loss", report.get("log_loss")),
        ("Brier", report.get("brier_score")),
        ("ECE", report.get("expected_calibration_error")),
        ("Hamming loss", report.get("hamming_loss")),
    ]
    out.append("  ".join(f"{k} {_v(v, 4)}" for k, v in extras if v and v.get("value") is not None))
    topk = report.get("top_k_accuracy") or {}
    if topk:
        out.append("top-k accuracy  " + "  ".join(f"k={k} {_v(v, 4)}" for k, v in topk.items()))
    imb = report["imbalance"]
    ratio = imb["imbalance_ratio"]
    out.append(
        f"imbalance ratio (largest / smallest support) {_v(ratio, 1)}"
        + (f"  ({ratio['reason']})" if ratio.get("value") is None else "")
    )
    gap = imb["micro_macro_auc_gap"].get("value")
    if gap is not None:
        note = ""
        if gap > GAP_WARNING:
            worst = sorted(
                (
                    (v["value"], k)
                    for k, v in auc.get("per_class", {}).items()
                    if v.get("value") is not None
                )
            )[:2]
            names = ", ".join(f"{k} ({v:.3f})" for v, k in worst)
            note = f"  <-- micro AUC hides weaker classes: lowest {names}"
        out.append(f"micro - macro ROC AUC gap {gap:+.4f}{note}")
    out.extend(_threshold_lines(report, digits))
    out.extend(_label_free_lines(report, digits))
    return "\n".join(out)


def _threshold_lines(report: dict[str, Any], digits: int) -> list[str]:
    """The F1-best threshold per class and the macro F1 it would give (issue 18)."""
    section = report.get("thresholds")
    if not section:
        return []
    lines = ["", "threshold advice (predict the class when its score >= threshold):"]
    for name, entry in list(section["per_class"].items())[:20]:
        adv = entry.get("best_f1") or entry.get("best_fbeta") or {}
        if adv.get("threshold") is None:
            lines.append(f"  {name}: {adv.get('reason', 'undefined')}")
            continue
        lines.append(
            f"  {name}: best F1 {adv['f1']['value']:.{digits}f} at >= {adv['threshold']:.6g}"
            f" (precision {adv['precision']['value']:.{digits}f}, recall "
            f"{adv['recall']['value']:.{digits}f}; within {adv['max_distance']:.2g} of the exact"
            f" optimum, which is at most {adv['value_upper']:.{digits}f})"
        )
    macro = section["macro_f1"]
    per, cur = macro["per_class_thresholds"], macro["current_rule"]
    if per.get("value") is not None and cur.get("value") is not None:
        lines.append(
            f"  macro F1 with per-class thresholds {per['value']:.{digits}f} vs "
            f"{cur['value']:.{digits}f} with {macro.get('current_rule_definition', 'the rule')}"
        )
    return lines


def _label_free_lines(report: dict[str, Any], digits: int) -> list[str]:
    """Predicted shares, confidence and prior shift; labelled share, delay and the join table
    (reports before version 2 have none of it)."""
    free, labels = report.get("label_free"), report.get("labels")
    if not free or not labels:
        return []
    out = [""]
    kind = "argmax" if report["task"] == "multiclass" else "thresholded"
    shares = free["predicted_prevalence"][kind]
    out.append(
        f"predictions {free['n_predictions']}  predicted shares ({kind}) "
        + "  ".join(f"{k} {_v(v, digits)}" for k, v in list(shares.items())[:12])
    )
    conf = free["confidence"]
    low = conf["low_confidence_share"]
    shift = free["prior_shift"]
    psi = shift["psi"]
    psi_text = _v(psi, 4) if psi.get("value") is not None else f"- ({psi.get('reason')})"
    out.append(
        f"confidence mean {_v(conf['mean'], digits)}  below {low.get('threshold', '-')} "
        f"{_v(low, digits)}  prior shift vs {shift['reference']}: PSI {psi_text}"
    )
    delay = labels["delay_seconds"]
    line = f"labelled {labels['labelled']} of {labels['predictions']} predictions"
    if labels["labelled_share"].get("value") is not None:
        line += f" ({labels['labelled_share']['value']:.1%})"
    if delay["joined"]:
        line += f"  label delay p50 {_v(delay['p50'], 1)} s  p90 {_v(delay['p90'], 1)} s"
    out.append(line)
    table = labels.get("stream") or {}
    if "pending" in table:
        out.append(
            f"awaiting labels {table['pending']}  joined {table['matched']}  unknown "
            f"{table['unknown']}  expired labels {table['expired_labels']}  duplicate labels "
            f"{table['duplicate_labels']}  expired {table['expired']}  evicted {table['evicted']}"
        )
    return out

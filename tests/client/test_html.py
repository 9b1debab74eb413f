"""The report as HTML (``evalstream.htmlreport``, ``Report._repr_html_``, ``--html``): the
numbers in the page's tables equal the report's and sklearn's, every figure is there with its
title, axis labels and class names, and the page needs nothing from the network. What a person
sees in a browser is in test_html_chromium.py."""

from __future__ import annotations

import re

import numpy as np
import pytest
from evalstream import EvalClient, Report, figures
from evalstream.htmlreport import HEADLINE_COLUMNS, headline_rows, report_page
from evalstream_server.cli import main
from evalstream_server.evaluate import evaluate_arrays
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from sklearn.metrics import accuracy_score, confusion_matrix, multilabel_confusion_matrix

from .html_pages import CLASSES, parse, three_classes

FIGURE_TITLES = (
    "ROC curves",
    "Precision-recall curves",
    "Confusion matrix: counts and row-normalised",
    "Reliability diagram",
    "Support vs predicted share per class",
    "Estimated (before labels) vs realized per class",  # every report estimates (issue 16)
    "Label-free: confidence and prior shift",
)


@pytest.fixture(scope="module")
def three() -> tuple[np.ndarray, np.ndarray, dict]:
    y, p = three_classes()
    return y, p, evaluate_arrays(y, p, task="multiclass", classes=CLASSES, curves=True)


@pytest.fixture(scope="module")
def page(three) -> str:
    return report_page([three[2]])


def _value(cell: tuple[str, str | None]) -> float | None:
    text, value = cell
    if value is None:
        assert text in ("-", ""), text
        return None
    shown = float(text)
    assert shown == pytest.approx(float(value), abs=5.1e-5)  # the shown text is the value, rounded
    return float(value)


def test_headline_and_scalar_tables_equal_the_report(three, page):
    y, p, report = three
    t = parse(page)
    head = t.tables["w0-headline"]
    assert [c[0] for c in head[0]] == list(HEADLINE_COLUMNS)
    expected = headline_rows(report)
    assert [r[0][0] for r in head[1:]] == [name for name, _ in expected]
    col = {name: i for i, name in enumerate(HEADLINE_COLUMNS)}
    for row, (name, leaves) in zip(head[1:], expected, strict=True):
        for metric in ("precision", "recall", "f1", "roc_auc", "average_precision", "support"):
            leaf = leaves[metric]
            want = None if leaf is None else leaf.get("value")
            assert _value(row[col[metric]]) == want, (name, metric)
        auc = leaves["roc_auc"]
        if auc and "lower" in auc:
            assert row[col["roc_auc bounds"]][0] == f"[{auc['lower']:.4f}, {auc['upper']:.4f}]"
    scalars = {r[0][0]: _value(r[1]) for r in t.tables["w0-scalars"][1:]}
    assert scalars["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(axis=1)), abs=1e-12)
    assert scalars["Matthews correlation"] == report["matthews_corrcoef"]["value"]
    assert scalars["expected calibration error"] == report["expected_calibration_error"]["value"]


def test_figure_tables_equal_the_report_and_sklearn(three, page):
    y, p, report = three
    t = parse(page)
    cm = t.tables["w0-confusion-data"]
    counts = [[_value(c) for c in row[1:]] for row in cm[1:4]]
    assert counts == confusion_matrix(y, p.argmax(axis=1)).tolist()
    shares = [[_value(c) for c in row[1:]] for row in cm[4:7]]
    want = confusion_matrix(y, p.argmax(axis=1), normalize="true")
    np.testing.assert_allclose(shares, want, atol=1e-12)
    roc = t.tables["w0-roc-data"]
    assert [c[0] for c in roc[0]][:4] == [
        "series",
        "colour",
        "false positive rate",
        "true positive rate",
    ]
    for name in CLASSES + ["micro"]:
        rows = [r for r in roc[1:] if r[0][0] == name]
        curve = report["curves"]["roc"][name]
        assert [_value(r[2]) for r in rows] == curve["x"]
        assert [_value(r[3]) for r in rows] == curve["y"]
    rel = t.tables["w0-reliability-data"]
    assert [_value(r[2]) for r in rel[1:]] == report["reliability"]["weights"]
    assert [_value(r[4]) for r in rel[1:]] == report["reliability"]["observed"]
    support = t.tables["w0-support-data"]
    for row in support[1:]:
        name = row[0][0]
        assert _value(row[1]) == report["support"]["per_class"][name]["value"]
        assert (
            _value(row[3]) == report["imbalance"]["predicted_prevalence"]["argmax"][name]["value"]
        )


def test_every_figure_has_its_title_axis_labels_and_class_names(three, page):
    t = parse(page)
    for title in FIGURE_TITLES:
        assert any(s.startswith(title) for s in t.svg_titles), (title, t.svg_titles)
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == len(FIGURE_TITLES)
    roc = next(s for s in svgs if "ROC curves" in s)
    for text in ["False positive rate", "True positive rate", *CLASSES, "micro"]:
        assert text in roc, text
    assert "Predicted class" in page and "True class" in page and "Accuracy" in page
    # the palette is Okabe and Ito's: every class colour in the table is one of it
    colours = {r[1][0].split()[-1] for r in t.tables["w0-roc-data"][1:]}
    assert colours <= set(figures.PALETTE) | {figures.MICRO_COLOUR}


def test_the_page_needs_no_network_and_runs_no_script(three, page):
    t = parse(page)
    assert not [tag for tag, _ in t.tags if tag in ("script", "link", "iframe", "img", "object")]
    for _, attrs in t.tags:
        for key in ("src", "href", "xlink:href"):
            value = attrs.get(key)
            assert value is None or value.startswith(("#", "data:")), (key, value)
    assert "url(http" not in page and "@import" not in page
    ids = [a["id"] for _, a in t.tags if a.get("id")]
    assert len(ids) == len(set(ids)), "element ids must be unique in the page"


def test_several_windows_get_a_selector_and_unique_ids(three):
    report = three[2]
    second = dict(report, window="5m")
    page = report_page([report, second], {"windows": ["5m"]})
    t = parse(page)
    radios = [a for tag, a in t.tags if tag == "input" and a.get("type") == "radio"]
    assert [a["id"] for a in radios] == ["pick-w0", "pick-w1"] and "checked" in radios[0]
    assert "#pick-w1:checked ~ #win-w1" in page
    assert "w0-headline" in t.tables and "w1-headline" in t.tables
    ids = [a["id"] for _, a in t.tags if a.get("id")]
    assert len(ids) == len(set(ids))
    assert dict((r[0][0], r[1][0]) for r in t.tables["definition"][1:])["windows"] == "5m"


def test_without_matplotlib_the_tables_remain(three, monkeypatch):
    monkeypatch.setattr(figures, "available", lambda: False)
    page = report_page([three[2]])
    assert "<svg" not in page and "evalstream-client[plots]" in page
    assert "w0-headline" in parse(page).tables


def test_repr_html_shows_the_headline_and_figures(three):
    report = Report(three[2])
    html = report._repr_html_()
    t = parse(html)
    assert any(k.endswith("-headline") for k in t.tables)
    assert "ROC curves" in html and "<script" not in html
    without = {k: v for k, v in three[2].items() if k != "curves"}
    text = Report(without)._repr_html_()
    assert "curves=True" in text and "ROC curves" not in text and "Confusion matrix" in text
    assert Report(three[2]).to_html().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_binary_and_multilabel_pages(task):
    rng = np.random.default_rng(3)
    n = 1500
    if task == "binary":
        y = (rng.random(n) < 0.2).astype(int)
        pos = np.clip(0.2 + 0.5 * y + rng.normal(0, 0.2, n), 0, 1)
        scores, classes = np.c_[1 - pos, pos], ["ok", "fraud"]
    else:
        y = (rng.random((n, 4)) < [0.5, 0.3, 0.1, 0.05]).astype(int)
        scores = np.clip(0.2 + 0.5 * y + rng.normal(0, 0.2, y.shape), 0, 1)
        classes = ["w", "x", "y", "z"]
    report = evaluate_arrays(y, scores, task=task, classes=classes, curves=True)
    page = report_page([report])
    t = parse(page)
    for title in ("ROC curves", "Precision-recall curves", "Reliability diagram"):
        assert any(s.startswith(title) for s in t.svg_titles), title
    cm = t.tables["w0-confusion-data"]
    if task == "multilabel":
        want = multilabel_confusion_matrix(y, (scores >= 0.5).astype(int)).reshape(4, 4)
        assert [[_value(c) for c in row[1:]] for row in cm[1:5]] == want.tolist()
        assert any(s.startswith("Per-label confusion") for s in t.svg_titles)
    else:
        want = confusion_matrix(y, (pos >= 0.5).astype(int))
        assert [[_value(c) for c in row[1:]] for row in cm[1:3]] == want.tolist()
        head = t.tables["w0-headline"]
        fraud = next(r for r in head if r[0][0] == "fraud")
        assert _value(fraud[6]) == report["roc_auc"]["binary"]["value"]


def test_evaluate_html_command(tmp_path, capsys):
    y, p = three_classes(600)
    data = tmp_path / "preds.npz"
    np.savez(data, y_true=y, y_score=p)
    out = tmp_path / "page.html"
    args = ["evaluate", str(data), "--task", "multiclass", "--classes", ",".join(CLASSES)]
    assert main([*args, "--html", str(out), "--json"]) == 0
    printed = capsys.readouterr()
    assert "wrote" in printed.err and '"curves"' not in printed.out
    t = parse(out.read_text())
    assert dict((r[0][0], r[1][0]) for r in t.tables["definition"][1:])["source"] == str(data)
    assert len(t.svg_titles) == len(FIGURE_TITLES)


def test_report_html_command_has_every_window(tmp_path, capsys):
    y, p = three_classes(900)
    out = tmp_path / "stream.html"
    with ServerThread(Settings(grpc_port=0, metrics_port=-1)) as srv:
        with EvalClient(srv.target) as client:
            client.create_stream("pics", task="multiclass", classes=CLASSES, windows=["5m", "1h"])
            client.log("pics", y, p)
            want = client.report("pics", window="1h").to_dict()
        assert main(["report", "pics", "--target", srv.target, "--html", str(out)]) == 0
        assert "window cumulative" in capsys.readouterr().out
        assert main(["report", "--target", srv.target]) == 2
        assert "STREAM" in capsys.readouterr().err
    t = parse(out.read_text())
    assert {f"w{i}-headline" for i in range(3)} <= set(t.tables)
    definition = dict((r[0][0], r[1][0]) for r in t.tables["definition"][1:])
    assert definition["windows"] == "5m, 1h" and definition["stream"] == "pics"
    head = t.tables["w2-headline"]
    macro = next(r for r in head if r[0][0] == "macro avg")
    assert float(macro[6][1]) == want["roc_auc"]["macro"]["value"]


def test_label_free_and_label_delay_figures():
    """Predictions now, labels later: the page draws the confidence histogram, the prior shift
    against the reference window and the label delay, with the report's numbers and delays
    counted here from the times the test chose."""
    from evalstream.htmlreport import report_fragment
    from evalstream_server.engine import StreamEngine, StreamSpec

    clock = [1_000_000.0]
    spec = StreamSpec(task="multiclass", classes=tuple(CLASSES), windows=("1h",))
    engine = StreamEngine(spec, clock=lambda: clock[0])
    y, p = three_classes(1200)
    ids = [f"r{i}" for i in range(1200)]
    engine.ingest_predictions(engine.validate_predictions(ids[:600], p[:600]))
    clock[0] += 7200.0  # two hours on: the 1h window holds the second half only
    shifted = p[600:][::-1]  # another mix of predicted classes
    engine.ingest_predictions(engine.validate_predictions(ids[600:], shifted))
    delays = np.r_[np.full(200, 20.0), np.full(100, 2000.0)]
    clock[0] += 20.0
    engine.ingest_labels(engine.validate_labels(ids[600:800], y[:200]))
    clock[0] += 1980.0
    engine.ingest_labels(engine.validate_labels(ids[800:900], y[200:300]))
    report = engine.report("1h", curves=True)
    t = parse(report_fragment(report, "w9"))
    titles = " ".join(t.svg_titles)
    assert "Label-free: confidence and prior shift" in titles and "Label delay" in titles
    free = t.tables["w9-label-free-data"]
    hist = report["label_free"]["confidence"]["histogram"]
    assert [_value(r[2]) for r in free[1:] if not r[0][0].startswith("shift")] == hist["weights"]
    shift = {r[0][0][6:]: _value(r[2]) for r in free[1:] if r[0][0].startswith("shift")}
    per = report["label_free"]["prior_shift"]["per_class"]
    assert shift == {c: per[c]["value"] for c in CLASSES} and any(v for v in shift.values())
    delay = t.tables["w9-delay-data"]
    le = report["labels"]["delay_seconds"]["histogram"]["le"]
    edges = np.array([np.inf if b is None else b for b in le])
    want = np.bincount(np.searchsorted(edges, delays, side="left"), minlength=len(edges))
    assert [_value(r[1]) for r in delay[1:]] == want.tolist()


def test_threshold_advice_table_and_its_marks_on_the_pr_curves(three, page):
    """The report's ``thresholds`` section is shown: a table per class, and each drawn class's
    best-F1 point marked on its precision-recall curve, where sklearn puts that threshold."""
    from sklearn.metrics import precision_score, recall_score

    y, p, report = three
    t = parse(page)
    table = {r[0][0]: r for r in t.tables["w0-thresholds"][1:]}
    marks = {r[0][0]: r for r in t.tables["w0-pr-data"][1:] if r[0][0].endswith("(best F1)")}
    for c, name in enumerate(CLASSES):
        best = report["thresholds"]["per_class"][name]["best_f1"]
        row = table[name]
        assert _value(row[1]) == best["threshold"]
        assert [_value(row[i]) for i in (2, 3, 4)] == [
            best[m]["value"] for m in ("precision", "recall", "f1")
        ]
        mark = marks[f"{name} (best F1)"]
        predicted = p[:, c].astype(np.float32) >= np.float32(best["threshold"])
        assert _value(mark[2]) == pytest.approx(recall_score(y == c, predicted), abs=1e-12)
        assert _value(mark[3]) == pytest.approx(precision_score(y == c, predicted), abs=1e-12)
    assert "best F1 threshold" in next(
        s for s in re.findall(r"<svg.*?</svg>", page, re.S) if "Precision-recall curves" in s
    )


def test_estimated_section_gets_a_figure_beside_the_realized_values(three):
    """A report with an ``estimated`` section (metrics estimated before labels, in the shape
    the engine's estimate gives: per class ``value`` and ``ci95``) draws them beside the
    realized ones. The stand-in estimate here is sklearn's recall and F1 on half the samples."""
    from evalstream.htmlreport import report_fragment
    from sklearn.metrics import f1_score, recall_score

    y, p, report = three
    half = slice(0, len(y) // 2)
    pred = p[half].argmax(axis=1)
    est: dict = {"definition": "stand-in", "n_predictions": len(y)}
    for metric, fn in (("recall", recall_score), ("f1", f1_score)):
        values = fn(y[half], pred, average=None, labels=range(3))
        est[metric] = {
            "per_class": {
                c: {"value": float(v), "ci95": [float(v) - 0.05, min(float(v) + 0.05, 1.0)]}
                for c, v in zip(CLASSES, values, strict=True)
            },
            "macro": {"value": float(values.mean())},
        }
    with_estimate = dict(report, estimated=est)
    t = parse(report_fragment(with_estimate, "w5"))
    assert any(s.startswith("Estimated (before labels) vs realized") for s in t.svg_titles)
    rows = t.tables["w5-estimated-figure-data"][1:]
    assert len(rows) == 2 * len(CLASSES)
    for row in rows:
        name, metric = row[0][0], row[1][0]
        leaf = est[metric]["per_class"][name]
        assert [_value(row[2]), _value(row[3]), _value(row[4])] == [leaf["value"], *leaf["ci95"]]
        assert _value(row[5]) == report[metric]["per_class"][name]["value"]
    assert "w5-estimated" in t.tables  # the section's numbers as a table too
    without = {k: v for k, v in report.items() if k != "estimated"}
    assert not any(
        s.startswith("Estimated") for s in parse(report_fragment(without, "w6")).svg_titles
    )


def test_many_classes_put_the_averages_first_and_fold_the_classes():
    from evalstream.htmlreport import LONG_HEADLINE, report_fragment

    k = LONG_HEADLINE + 5
    rng = np.random.default_rng(9)
    y = rng.integers(0, k, 3000)
    p = rng.dirichlet(np.ones(k), 3000)
    report = evaluate_arrays(y, p, task="multiclass", classes=[f"k{i}" for i in range(k)])
    fragment = report_fragment(report, "w0", figures=False)
    t = parse(fragment)
    averages = [r[0][0] for r in t.tables["w0-averages"][1:]]
    assert averages == [name for name, _ in headline_rows(report)[k:]] and "macro avg" in averages
    assert len(t.tables["w0-headline"]) == 1 + k + len(averages)
    assert fragment.index('id="w0-averages"') < fragment.index("<details><summary>Every class")
    assert fragment.index("<details><summary>Every class") < fragment.index('id="w0-headline"')

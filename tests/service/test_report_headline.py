"""GetReportResponse.headline over the raw wire: every typed figure equals the JSON leaf at the
same place of report_json, for every task, defined or not; WatchReport carries the same."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb

from .conftest import create, ingest, tensor

STREAMS = {
    "hl-mc": ("multiclass", ("a", "b", "c")),
    "hl-bin": ("binary", ("ok", "bad")),
    "hl-ml": ("multilabel", ("x", "y", "z")),
    "hl-empty": ("multiclass", ("a", "b")),
}


@pytest.fixture(scope="module")
def reports(stub):
    rng = np.random.default_rng(3)
    n = 400
    for name, (task, classes) in STREAMS.items():
        create(stub, name, task=task, classes=classes)
        if name == "hl-empty":
            continue
        if task == "multiclass":  # class "c" never occurs: its AUC is undefined
            y = rng.integers(0, 2, n).astype(np.int32)
            p = rng.dirichlet(np.ones(3), n).astype(np.float32)
        elif task == "binary":
            y, p = rng.integers(0, 2, n).astype(np.int32), rng.random(n).astype(np.float32)
        else:
            y = (rng.random((n, 3)) < 0.3).astype(np.uint8)
            p = rng.random((n, 3)).astype(np.float32)
        w = rng.random(n)
        req = pb.IngestRequest(stream=name, scores=tensor(p), labels=tensor(y))
        req.sample_weight.CopyFrom(tensor(w))
        ingest(stub, [req])
    return {name: stub.GetReport(pb.GetReportRequest(stream=name), timeout=10) for name in STREAMS}


def _same(figure, leaf, where: str) -> None:
    value = figure.value if figure.HasField("value") else None
    assert value == leaf["value"], where
    assert figure.reason == leaf.get("reason", ""), where
    for key in ("lower", "upper"):
        assert (getattr(figure, key) if figure.HasField(key) else None) == leaf.get(key), where
    ci = [figure.ci95_low, figure.ci95_high] if figure.HasField("ci95_low") else None
    assert ci == leaf.get("ci95"), where
    assert (figure.n_defined, figure.n_classes) == (
        leaf.get("n_defined", 0),
        leaf.get("n_classes", 0),
    ), where


@pytest.mark.parametrize("name", STREAMS)
def test_every_typed_figure_is_the_json_leaf(reports, name):
    response = reports[name]
    report, typed = json.loads(response.report_json), response.headline
    assert (typed.n_samples, typed.weight_total) == (report["n_samples"], report["weight_total"])
    assert dict(typed.support) == {c: v["value"] for c, v in report["support"]["per_class"].items()}
    compared = 0
    for group in ("roc_auc", "average_precision", "precision", "recall", "f1"):
        figures = getattr(typed, group)
        assert set(figures.per_class) == set(report[group].get("per_class", {}))
        for cls, leaf in report[group].get("per_class", {}).items():
            _same(figures.per_class[cls], leaf, f"{group}.per_class.{cls}")
            compared += 1
        for average, leaf in report[group].items():
            if average != "per_class":
                _same(getattr(figures, average), leaf, f"{group}.{average}")
                assert figures.HasField(average)
                compared += 1
    for scalar in ("accuracy", "balanced_accuracy", "matthews_corrcoef", "cohen_kappa"):
        _same(getattr(typed, scalar), report[scalar], scalar)
    for scalar in ("log_loss", "brier_score", "expected_calibration_error"):
        _same(getattr(typed, scalar), report[scalar], scalar)
    assert compared >= 5


def test_undefined_figures_are_unset_with_their_reason(reports):
    typed = reports["hl-mc"].headline
    c = typed.roc_auc.per_class["c"]
    assert not c.HasField("value") and "no positive samples" in c.reason
    assert typed.roc_auc.macro.n_defined == 2 and typed.roc_auc.macro.n_classes == 3
    assert not reports["hl-bin"].headline.roc_auc.HasField("macro")  # binary: only `binary`


def test_watch_report_carries_the_headline(stub, reports):
    call = stub.WatchReport(pb.WatchReportRequest(stream="hl-bin"), timeout=10)
    first = next(iter(call))
    call.cancel()
    assert first.headline == reports["hl-bin"].headline

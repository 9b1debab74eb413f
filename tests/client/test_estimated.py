"""``Report.estimated`` and ``Report.estimation``: the report's ``estimated`` section looked up
with the realized metrics' names and averages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evalstream import Report
from evalstream_server.engine.batch import Batch
from evalstream_server.engine.report import build_report
from evalstream_server.engine.spec import StreamSpec
from evalstream_server.engine.state import State


def _report(task: str, classes: tuple[str, ...]) -> Report:
    rng = np.random.default_rng(4)
    spec = StreamSpec(task, classes=classes)
    n = 2_000
    if task == "multiclass":
        p = rng.dirichlet(np.ones(len(classes)), n).astype(np.float32)
        y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    else:
        p = rng.random((n, 1)).astype(np.float32)
        y = (rng.random((n, 1)) < p).astype(bool)
    state = State(spec)
    state.update(Batch(y, p, None))
    return Report(json.loads(json.dumps(build_report(state, window="1h"))))


def test_names_and_averages_follow_the_realized_metrics():
    r = _report("multiclass", ("a", "b", "c"))
    est = r.to_dict()["estimated"]
    assert r.estimated("f1", average="macro") == est["f1"]["macro"]["value"]
    assert r.estimated("f1_score", average="weighted") == est["f1"]["weighted"]["value"]
    assert r.estimated("recall_score", average=None) == {
        c: est["recall"]["per_class"][c]["value"] for c in "abc"
    }
    assert r.estimated("recall", average="b") == est["recall"]["per_class"]["b"]["value"]
    assert r.estimated("roc_auc") == est["roc_auc"]["macro"]["value"]
    assert r.estimated("accuracy_score") == est["accuracy"]["value"]
    low, high = r.estimation.interval("auc", average="micro")
    assert low <= est["roc_auc"]["micro"]["value"] <= high
    assert r.estimation.n_predictions == 2_000
    # labelled at once: judged against the realized values of the same report
    assert r.estimation.error("f1", average="macro") == pytest.approx(
        abs(r.estimated("f1", average="macro") - r.f1_score(average="macro"))
    )
    with pytest.raises(ValueError, match="metric"):
        r.estimated("log_loss")
    with pytest.raises(ValueError, match="average"):
        r.estimated("f1", average="samples")


def test_binary_streams_answer_binary():
    r = _report("binary", ("no", "yes"))
    est = r.to_dict()["estimated"]
    assert r.estimated("precision") == est["precision"]["binary"]["value"]
    assert r.estimated("roc_auc", average="macro") == est["roc_auc"]["binary"]["value"]
    assert r.estimation.calibration["method"] == "isotonic"
    assert r.estimation.error("roc_auc") == pytest.approx(
        abs(r.estimated("roc_auc") - r.roc_auc_score())
    )

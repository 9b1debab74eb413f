"""The canonical report's shape: the contract every interface returns."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evalstream_server.engine import StreamEngine, StreamSpec, build_report

from . import data

TOP = {
    "stream",
    "task",
    "classes",
    "window",
    "n_samples",
    "support",
    "imbalance",
    "roc_auc",
    "average_precision",
    "precision",
    "recall",
    "f1",
    "accuracy",
    "balanced_accuracy",
    "matthews_corrcoef",
    "cohen_kappa",
    "log_loss",
    "brier_score",
    "hamming_loss",
    "top_k_accuracy",
    "expected_calibration_error",
    "confusion_matrix",
}


def _leaves(node, path=""):
    if isinstance(node, dict) and "value" in node:
        yield path, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{path}.{k}" if path else k)


def _engine(task):
    if task == "multiclass":
        y, _, p = data.multiclass(0, counts=(300, 600, 900))
        eng = StreamEngine(StreamSpec(task=task, classes=("cat", "dog", "eel"), name="pets"))
    elif task == "binary":
        y, _, p = data.binary(0, 900, 100)
        eng = StreamEngine(StreamSpec(task=task, classes=("ok", "fraud"), name="fraud"))
    else:
        y, _, p = data.multilabel(0, n=500, L=3)
        eng = StreamEngine(StreamSpec(task=task, classes=("a", "b", "c"), name="tags"))
    eng.update(y, p)
    return eng


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_report_is_json_ready_with_every_top_level_key(task):
    eng = _engine(task)
    rep = eng.report(curves=True, max_points=50)
    assert TOP <= set(rep)
    text = json.dumps(rep, allow_nan=False)  # no NaN or inf anywhere
    assert json.loads(text) == rep
    for path, leaf in _leaves(rep):
        v = leaf["value"]
        assert v is None or isinstance(v, int | float), path
        if v is None:
            assert leaf.get("reason"), f"{path} is undefined without a reason"
        for bound in ("lower", "upper"):
            if bound in leaf:
                assert leaf["lower"] <= v <= leaf["upper"], path
        if "ci95" in leaf:
            assert len(leaf["ci95"]) == 2 and leaf["ci95"][0] <= leaf["ci95"][1], path


def test_groups_and_leaves_by_task():
    mc = _engine("multiclass").report()
    assert set(mc["roc_auc"]) == {
        "per_class",
        "macro",
        "weighted",
        "micro",
        "ovo_macro",
        "ovo_weighted",
    }
    assert set(mc["average_precision"]) == {"per_class", "macro", "weighted", "micro"}
    assert set(mc["f1"]["per_class"]) == {"cat", "dog", "eel"}
    assert "ci95" in mc["roc_auc"]["per_class"]["cat"]
    assert "ci95" in mc["f1"]["per_class"]["cat"] and "ci95" in mc["recall"]["per_class"]["cat"]
    assert set(mc["top_k_accuracy"]) == {"1", "2"}
    assert np.array(mc["confusion_matrix"]).shape == (3, 3)
    assert mc["stream"] == "pets" and mc["window"] == "cumulative"
    b = _engine("binary").report()
    assert set(b["roc_auc"]) == {"binary"} and "ci95" in b["roc_auc"]["binary"]
    assert {"binary", "macro", "weighted", "micro", "per_class"} <= set(b["precision"])
    assert b["imbalance"]["micro_macro_auc_gap"]["value"] is None
    ml = _engine("multilabel").report()
    assert "samples" in ml["roc_auc"] and "samples" in ml["f1"]
    assert ml["confusion_matrix"] is None
    assert np.array(ml["multilabel_confusion_matrix"]).shape == (3, 2, 2)
    assert ml["matthews_corrcoef"]["value"] is None


def test_empty_stream_reports_nulls_with_reasons_not_zeros():
    rep = StreamEngine(StreamSpec(task="multiclass", classes=("a", "b"))).report()
    assert rep["n_samples"] == 0
    assert rep["roc_auc"]["macro"]["value"] is None
    assert rep["accuracy"]["value"] is None
    assert rep["log_loss"]["value"] is None
    assert "no samples" in rep["accuracy"]["reason"]


def test_ovo_unavailable_above_class_limit_is_said():
    spec = StreamSpec(task="multiclass", classes=tuple("abcd"), ovo_class_limit=3)
    eng = StreamEngine(spec)
    rng = np.random.default_rng(0)
    eng.update(rng.integers(0, 4, 100), rng.dirichlet(np.ones(4), 100))
    rep = eng.report()
    assert rep["roc_auc"]["ovo_macro"]["value"] is None
    assert "ovo_class_limit" in rep["roc_auc"]["ovo_macro"]["reason"]
    assert rep["roc_auc"]["macro"]["value"] is not None


def test_spec_round_trips_through_dict():
    spec = StreamSpec(
        task="multilabel",
        classes=("a", "b"),
        windows=("300s", "1h"),
        thresholds=(0.3, 0.6),
        resolution="exact:1000",
        name="s1",
    )
    again = StreamSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.windows == ("5m", "1h")


def test_binary_multilabel_confusion_matrix_matches_sklearn():
    import sklearn.metrics as skm

    y, _, p = data.binary(5, 300, 60)
    eng = StreamEngine(StreamSpec(task="binary"))
    eng.update(y, p)
    want = skm.multilabel_confusion_matrix(y, (p >= np.float32(0.5)).astype(int))
    np.testing.assert_array_equal(np.array(eng.report()["multilabel_confusion_matrix"]), want)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_light_report_has_the_same_values(task):
    eng = _engine(task)
    full = eng.report()
    light = build_report(eng.state(), intervals=False)
    assert "thresholds" not in light  # the exporter's light report leaves the advice out
    full.pop("thresholds")
    for (path, a), (path_b, b) in zip(_leaves(full), _leaves(light), strict=True):
        assert path == path_b and a["value"] == b["value"], path
    assert "ci95" not in light["f1"]["per_class"][full["classes"][-1]]

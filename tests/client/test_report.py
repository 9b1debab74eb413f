"""``Report``: sklearn-named accessors return the canonical dict's leaves; stream RPCs; curves."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream import Curve, EvalClient, Report, StreamInfo
from evalstream.text import classification_report

from tests.engine import data

CLASSES = ["a", "b", "c"]


@pytest.fixture
def multiclass(client, name):
    """An exact multiclass stream with data in it, and its report."""
    y, _, p = data.multiclass(41, counts=(200, 400, 600))
    client.create_stream(name, task="multiclass", classes=CLASSES, resolution="exact", top_k=3)
    client.log(name, y, p)
    return client.report(name), y, p


def _v(report: Report, path: str):
    return report.leaf(path)["value"]


def test_methods_return_the_dict_leaves(multiclass):
    rep, y, p = multiclass
    d = rep.to_dict()
    for avg in ("macro", "weighted", "micro"):
        assert rep.roc_auc_score(average=avg) == d["roc_auc"][avg]["value"]
        assert rep.average_precision_score(average=avg) == d["average_precision"][avg]["value"]
        for method, key in (("precision_score", "precision"), ("recall_score", "recall"),
                            ("f1_score", "f1")):  # fmt: skip
            assert getattr(rep, method)(average=avg) == d[key][avg]["value"]
    for avg in ("macro", "weighted"):
        assert rep.roc_auc_score(average=avg, multi_class="ovo") == _v(rep, f"roc_auc.ovo_{avg}")
    pairs = {
        "accuracy_score": "accuracy",
        "balanced_accuracy_score": "balanced_accuracy",
        "matthews_corrcoef": "matthews_corrcoef",
        "cohen_kappa_score": "cohen_kappa",
        "log_loss": "log_loss",
        "brier_score_loss": "brier_score",
        "hamming_loss": "hamming_loss",
        "expected_calibration_error": "expected_calibration_error",
    }
    for method, key in pairs.items():
        assert getattr(rep, method)() == d[key]["value"], method
    assert rep.top_k_accuracy_score(2) == d["top_k_accuracy"]["2"]["value"]
    assert rep.top_k_accuracy_score(2) == pytest.approx(
        skm.top_k_accuracy_score(y, p, k=2), abs=1e-12
    )
    assert rep.top_k_accuracy_score(1) == rep.accuracy_score()
    np.testing.assert_array_equal(rep.confusion_matrix(), np.array(d["confusion_matrix"]))
    assert rep.confusion_matrix().dtype.kind == "i"
    assert rep.multilabel_confusion_matrix().shape == (3, 2, 2)
    assert rep.classification_report() == classification_report(d)
    assert "ROC AUC" in str(rep) and "macro avg" in rep.classification_report()
    assert (rep.task, rep.classes, rep.n_samples, rep.window) == (
        "multiclass",
        CLASSES,
        1200,
        "cumulative",
    )
    assert rep.stream == d["stream"] and rep.generated_time is not None
    d["accuracy"]["value"] = -1.0  # to_dict is a copy
    assert rep.accuracy_score() != -1.0


def test_average_none_gives_a_dict_by_class(multiclass):
    rep, y, p = multiclass
    aucs = rep.roc_auc_score(average=None)
    assert list(aucs) == CLASSES
    assert aucs == {c: _v(rep, f"roc_auc.per_class.{c}") for c in CLASSES}
    want = skm.roc_auc_score(np.eye(3)[y], p.astype(np.float64), average=None)
    np.testing.assert_allclose(list(aucs.values()), want, rtol=0, atol=1e-12)
    f1 = rep.f1_score(average=None)
    np.testing.assert_allclose(
        [f1[c] for c in CLASSES], skm.f1_score(y, p.argmax(axis=1), average=None), atol=1e-12
    )
    assert rep.average_precision_score(average=None) == {
        c: _v(rep, f"average_precision.per_class.{c}") for c in CLASSES
    }


def test_sklearn_refusals(multiclass):
    rep, _, _ = multiclass
    for method in ("f1_score", "precision_score", "recall_score"):
        with pytest.raises(ValueError, match="Target is multiclass but average='binary'"):
            getattr(rep, method)()
        with pytest.raises(ValueError, match="Sample-based"):
            getattr(rep, method)(average="samples")
    with pytest.raises(ValueError, match="average has to be one of"):
        rep.f1_score(average="median")
    with pytest.raises(ValueError, match="multi_class"):
        rep.roc_auc_score(multi_class="raise")
    with pytest.raises(ValueError, match="ovo"):
        rep.roc_auc_score(average=None, multi_class="ovo")
    assert rep.top_k_accuracy_score(5) == 1.0  # k >= n_classes: sklearn's perfect score
    with pytest.raises(ValueError, match="curves=True"):
        rep.roc_curve("a")


def test_binary_and_multilabel_specifics(client, name):
    y, _, p = data.binary(42, n_neg=300, n_pos=100)
    client.create_stream(name, task="binary", classes=["neg", "pos"])
    client.log(name, y, p)
    rep = client.report(name)
    assert rep.roc_auc_score() == rep.roc_auc_score(average=None) == _v(rep, "roc_auc.binary")
    assert rep.f1_score() == _v(rep, "f1.binary")
    assert rep.f1_score() == pytest.approx(skm.f1_score(y, p >= 0.5), abs=1e-12)
    assert set(rep.precision_score(average=None)) == {"neg", "pos"}
    assert rep.ci95("roc_auc") == tuple(rep.leaf("roc_auc.binary")["ci95"])
    lower, upper = rep.bounds("roc_auc")
    assert lower <= rep.roc_auc_score() <= upper

    Y, _, P = data.multilabel(43, n=300, L=3)
    ml = f"{name}-ml"
    client.create_stream(ml, task="multilabel", classes=["x", "y", "z"])
    client.log(ml, Y, P)
    rep = client.report(ml)
    assert rep.f1_score(average="samples") == _v(rep, "f1.samples")
    assert rep.roc_auc_score(average="samples") == _v(rep, "roc_auc.samples")
    with pytest.raises(ValueError, match="multilabel-indicator"):
        rep.f1_score()
    with pytest.raises(ValueError, match="multilabel_confusion_matrix"):
        rep.confusion_matrix()
    with pytest.raises(ValueError, match="not defined for multilabel"):
        rep.balanced_accuracy_score()
    with pytest.raises(ValueError, match="multiclass"):
        rep.top_k_accuracy_score(2)
    np.testing.assert_array_equal(
        rep.multilabel_confusion_matrix(), skm.multilabel_confusion_matrix(Y, P >= 0.5)
    )


def test_undefined_values_are_none_not_nan(client, name):
    client.create_stream(name, task="multiclass", classes=["a", "b", "absent"])
    empty = client.report(name)
    assert empty.n_samples == 0 and empty.accuracy_score() is None
    assert empty.roc_auc_score() is None and empty.bounds("roc_auc", "macro") == (None, None)
    client.log(name, [0, 1, 0, 1], [[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1],
                                    [0.2, 0.2, 0.6]])  # fmt: skip
    rep = client.report(name)
    assert rep.roc_auc_score(average=None)["absent"] is None
    assert "no positive" in rep.leaf("roc_auc.per_class.absent")["reason"]
    assert rep.roc_auc_score() is not None  # macro over the defined classes


def test_bounds_ci95_and_leaf_paths(client, name):
    classes = ["v1.0", "v2.0"]  # dots in class names
    client.create_stream(name, task="multiclass", classes=classes, resolution="bins:4")
    y, _, p = data.multiclass(44, counts=(300, 500))
    client.log(name, y, p)
    rep = client.report(name)
    node = rep.leaf("roc_auc.per_class.v1.0")
    assert node == rep.leaf(("roc_auc", "per_class", "v1.0"))
    assert rep.bounds("roc_auc", "v1.0") == (node["lower"], node["upper"])
    lo, hi = rep.bounds("roc_auc_score", "micro")
    assert lo <= rep.roc_auc_score(average="micro") <= hi and hi - lo < 0.01
    import sklearn.metrics as skm

    truth = skm.roc_auc_score(np.eye(2)[y].ravel(), p.astype(np.float64).ravel())
    assert lo <= truth <= hi  # the bounds hold the exact value on the raw scores
    assert rep.ci95("roc_auc", "v2.0") == tuple(rep.leaf("roc_auc.per_class.v2.0")["ci95"])
    assert rep.ci95("recall", "v2.0") == tuple(rep.leaf("recall.per_class.v2.0")["ci95"])
    with pytest.raises(ValueError, match="bounds"):
        rep.bounds("f1", "macro")
    with pytest.raises(KeyError, match="no key"):
        rep.leaf("roc_auc.per_class.v3")


def test_curves_match_sklearn_on_an_exact_stream(client, name):
    rng = np.random.default_rng(45)
    y = rng.integers(0, 2, 400)
    p = np.round(rng.random(400) * 0.6 + y * 0.3, 2).astype(np.float32)  # many ties
    client.create_stream(name, task="binary", classes=["n", "p"], resolution="exact")
    client.log(name, y, p)
    rep = client.report(name, curves=True, max_curve_points=10_000)
    for got, want in zip(
        rep.roc_curve(),
        skm.roc_curve(y, p.astype(np.float64), drop_intermediate=False),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    for got, want in zip(
        rep.precision_recall_curve(),
        skm.precision_recall_curve(y, p.astype(np.float64)),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    fpr, tpr, _ = rep.roc_curve()
    assert np.trapezoid(tpr, fpr) == pytest.approx(rep.roc_auc_score(), abs=1e-12)

    curve = client.curve(name, "pr", max_points=10_000)
    assert isinstance(curve, Curve) and (curve.kind, curve.class_name) == ("pr", "p")
    for got, want in zip(curve.as_sklearn(), rep.precision_recall_curve(), strict=True):
        np.testing.assert_array_equal(got, want)
    thin = client.curve(name, "roc", "p", max_points=20)
    assert thin.x.size <= 20 and (thin.x[0], thin.x[-1]) == (0.0, 1.0)
    assert np.isinf(thin.thresholds[0]) and thin.x_name == "fpr"


def test_stream_admin_and_watch(server, client, name):
    info = client.create_stream(name, task="multiclass", classes=CLASSES, windows=["5m"],
                                resolution="exact:5000", top_k=2)  # fmt: skip
    assert isinstance(info, StreamInfo)
    assert (info.task, info.classes, info.windows, info.resolution) == (
        "multiclass", tuple(CLASSES), ("5m",), "exact:5000"
    )  # fmt: skip
    assert info.sample_count == 0 and info.update_time is None and info.ovo_available
    y, _, p = data.multiclass(46, counts=(10, 10, 10))
    client.log(name, y, p)
    info = client.get_stream(name)
    assert info.sample_count == 30 and info.update_time is not None
    assert client.report(name, window="5m").n_samples == 30

    for i in range(5):
        client.create_stream(f"{name}-{i}", task="binary", classes=["n", "p"])
    names = [s.name for s in client.list_streams(page_size=2)]
    assert names == sorted(names)
    assert {name, *(f"{name}-{i}" for i in range(5))} <= set(names)

    watch = client.watch(name, interval=0.1)
    first = next(watch)
    client.log(name, y, p)
    later = next((r for r in itertools.islice(watch, 30) if r.n_samples == 60), None)
    watch.close()
    assert first.n_samples in (30, 60) and later is not None and later.stream == name

    assert client.reset_stream(name).sample_count == 0
    client.delete_stream(name)
    assert name not in {s.name for s in client.list_streams()}
    with EvalClient(server.target) as other:  # a context manager that closes its channel
        assert other.get_stream(f"{name}-0").task == "binary"


def test_threshold_advice_over_grpc_is_sklearns(client, name):
    """``best_threshold`` and ``threshold_for`` through a real server: the F1 at the advised
    threshold is sklearn's at that threshold on the raw scores, and no threshold on the raw
    scores beats it (exact resolution); the recall floor's choice has the best precision of the
    thresholds that keep the recall."""
    y, _, p = data.multiclass(43, counts=(100, 300, 800))
    client.create_stream(name, task="multiclass", classes=CLASSES, resolution="exact")
    client.log(name, y, p)
    rep = client.report(name)
    for i, cls in enumerate(CLASSES):
        pos, s = y == i, p[:, i].astype(np.float32)
        best = rep.best_threshold("f1", cls=cls)
        assert best["f1"]["value"] == pytest.approx(
            skm.f1_score(pos, s >= np.float32(best["threshold"])), abs=1e-12
        )
        cuts = np.unique(s)
        pred = s[None, :] >= cuts[:, None]  # every threshold at once, counted with numpy
        tp, fp = (pred & pos).sum(axis=1), (pred & ~pos).sum(axis=1)
        precision, recall = tp / (tp + fp), tp / pos.sum()
        assert best["f1"]["value"] == pytest.approx(
            (2 * tp / (tp + fp + pos.sum())).max(), abs=1e-12
        )
        floor = rep.threshold_for(recall=0.9, cls=cls)
        assert floor["precision"]["value"] == pytest.approx(
            precision[recall >= 0.9].max(), abs=1e-12
        )
        assert skm.recall_score(pos, s >= np.float32(floor["threshold"])) >= 0.9
    with pytest.raises(KeyError, match="floors"):
        rep.threshold_for(recall=0.42, cls="a")
    with pytest.raises(ValueError, match="cls"):
        rep.best_threshold("f1")
    assert "threshold advice" in str(rep) and "macro F1 with per-class thresholds" in str(rep)


def test_threshold_goals_per_query(client, name):
    """Floors and beta asked for in GetReport: the advice answers them, against a brute force
    over the raw scores; bad goals are refused naming the field."""
    y, _, p = data.multiclass(44, counts=(150, 300, 700))
    client.create_stream(name, task="multiclass", classes=CLASSES, resolution="exact")
    client.log(name, y, p)
    rep = client.report(name, recall_floors=[0.42], precision_floors=[0.77], beta=2.0)
    assert rep.to_dict()["thresholds"]["goals"] == {
        "beta": 2.0,
        "recall_floors": [0.42],
        "precision_floors": [0.77],
    }
    for i, cls in enumerate(CLASSES):
        pos, s = y == i, p[:, i].astype(np.float32)
        cuts = np.unique(s)
        pred = s[None, :] >= cuts[:, None]  # every threshold at once, counted with numpy
        tp, fp = (pred & pos).sum(axis=1), (pred & ~pos).sum(axis=1)
        precision, recall = tp / (tp + fp), tp / pos.sum()
        fb = 5 * tp / (5 * tp + 4 * (pos.sum() - tp) + fp)
        best = rep.best_threshold("fbeta", cls=cls)
        assert best["fbeta"]["value"] == pytest.approx(fb.max(), abs=1e-12)
        t = np.float32(best["threshold"])
        assert skm.fbeta_score(pos, s >= t, beta=2.0) == pytest.approx(fb.max(), abs=1e-12)
        got = rep.threshold_for(precision=0.77, cls=cls)
        ok = recall[precision >= 0.77]
        if ok.size:
            assert got["recall"]["value"] == pytest.approx(ok.max(), abs=1e-12)
        else:
            assert got["threshold"] is None
        assert rep.threshold_for(recall=0.42, cls=cls)["recall"]["value"] >= 0.42
    from evalstream.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="recall_floors"):
        client.report(name, recall_floors=[1.5])
    with pytest.raises(InvalidArgumentError, match="beta"):
        client.report(name, beta=-1.0)

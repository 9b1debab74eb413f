"""Client -> real server -> Report, against sklearn on seeded data, for the three tasks.

Rows go in through several ``log`` calls at random split points, each call split again into
messages (a small ``max_batch_rows``). With resolution "exact" every value equals sklearn's on
the float32 scores to 1e-12; with the default bins sklearn's ranking values lie within
``Report.bounds`` and the threshold metrics are still exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream import EvalClient

from tests.engine import data
from tests.engine.oracle import expected, leaf

TOL = 1e-12
ROWS_PER_MESSAGE = 250


def _dataset(task: str):
    if task == "binary":
        y, _, p = data.binary(11, n_neg=9000, n_pos=1500)
        return y, p, ["neg", "pos"]
    if task == "multiclass":
        y, _, p = data.multiclass(12, counts=(5000, 10000, 15000))
        return y, p, ["c0", "c1", "c2"]
    y, _, p = data.multilabel(13, n=1200)
    return y, p, [f"l{i}" for i in range(y.shape[1])]


def _log_in_pieces(client: EvalClient, name: str, y, p, seed: int) -> int:
    """Log at random split points over several calls; return the number of messages."""
    rng = np.random.default_rng(seed)
    messages = 0
    for part in data.splits(rng, len(y), 4):
        result = client.log(name, y[part], p[part])
        assert result.rejected_batches == 0 and not result.errors
        assert result.accepted_samples == part.stop - part.start
        messages += result.accepted_batches
    return messages


@pytest.fixture
def small_client(server):
    with EvalClient(server.target, max_batch_rows=ROWS_PER_MESSAGE) as c:
        yield c


def _predictions(task: str, p: np.ndarray) -> np.ndarray:
    if task == "multiclass":
        return p.argmax(axis=1)
    return (p >= np.float32(0.5)).astype(int)


def _check_threshold_metrics(rep, task, y, pred):
    if task == "binary":
        averages = ["binary", "micro", "macro", "weighted"]
    elif task == "multiclass":
        averages = ["micro", "macro", "weighted"]
    else:
        averages = ["micro", "macro", "weighted", "samples"]
    for metric in ("precision_score", "recall_score", "f1_score"):
        sk = getattr(skm, metric)
        for avg in averages:
            want = sk(y, pred, average=avg, zero_division=0)
            got = getattr(rep, metric)(average=avg)
            assert abs(got - want) <= TOL, (metric, avg, got, want)
        per_class = sk(y, pred, average=None, zero_division=0, labels=range(len(rep.classes)))
        got = getattr(rep, metric)(average=None)
        assert list(got) == rep.classes
        np.testing.assert_allclose(list(got.values()), per_class, rtol=0, atol=TOL)
    assert abs(rep.accuracy_score() - skm.accuracy_score(y, pred)) <= TOL
    assert abs(rep.hamming_loss() - skm.hamming_loss(y, pred)) <= TOL
    if task == "multilabel":
        np.testing.assert_array_equal(
            rep.multilabel_confusion_matrix(), skm.multilabel_confusion_matrix(y, pred)
        )
        return
    labels = list(range(len(rep.classes)))
    np.testing.assert_array_equal(
        rep.confusion_matrix(), skm.confusion_matrix(y, pred, labels=labels)
    )
    assert abs(rep.balanced_accuracy_score() - skm.balanced_accuracy_score(y, pred)) <= TOL
    assert abs(rep.matthews_corrcoef() - skm.matthews_corrcoef(y, pred)) <= TOL
    assert abs(rep.cohen_kappa_score() - skm.cohen_kappa_score(y, pred)) <= TOL


def _ranking_cases(task: str):
    """(method, kwargs, sklearn function, sklearn kwargs) for the ranking metrics."""
    if task == "binary":
        return [
            ("roc_auc_score", {}, skm.roc_auc_score, {}),
            ("average_precision_score", {}, skm.average_precision_score, {}),
        ]
    cases = []
    averages = ["macro", "weighted", "micro"]
    for avg in averages:
        extra = {"multi_class": "ovr"} if task == "multiclass" else {}
        cases.append(
            ("roc_auc_score", {"average": avg}, skm.roc_auc_score, {"average": avg, **extra})
        )
        cases.append(
            (
                "average_precision_score",
                {"average": avg},
                skm.average_precision_score,
                {"average": avg},
            )
        )
    if task == "multiclass":
        for avg in ("macro", "weighted"):
            kw = {"average": avg, "multi_class": "ovo"}
            cases.append(("roc_auc_score", kw, skm.roc_auc_score, kw))
    return cases


def _score_input(task, p32):
    p = p32.astype(np.float64)
    return p.reshape(-1) if task == "binary" else p


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_exact_resolution_equals_sklearn(small_client, name, task):
    y, p32, classes = _dataset(task)
    small_client.create_stream(name, task=task, classes=classes, resolution="exact")
    messages = _log_in_pieces(small_client, name, y, p32, seed=len(task))
    assert messages > 4  # the calls were split into messages too

    rep = small_client.report(name)
    assert rep.n_samples == len(y) and rep.task == task and rep.classes == classes
    for method, kwargs, sk, sk_kwargs in _ranking_cases(task):
        want = sk(y, _score_input(task, p32), **sk_kwargs)
        got = getattr(rep, method)(**kwargs)
        assert abs(got - want) <= TOL, (method, kwargs, got, want)
    if task != "binary":
        per_class = skm.roc_auc_score(
            y if task == "multilabel" else np.eye(len(classes))[y],
            p32.astype(np.float64),
            average=None,
        )
        got = rep.roc_auc_score(average=None)
        np.testing.assert_allclose([got[c] for c in classes], per_class, rtol=0, atol=TOL)
    _check_threshold_metrics(rep, task, y, _predictions(task, p32))

    # every other leaf the engine oracle knows (samples averages, log loss, top-k, ...)
    want_all = expected(task, y, p32, k_max=0)
    report = rep.to_dict()
    for path, want in want_all.items():
        if path.endswith("confusion_matrix"):
            continue
        got = leaf(report, path, classes)["value"]
        if want is None:
            assert got is None, path
        elif path in ("log_loss", "brier_score"):
            assert got == pytest.approx(want, rel=2e-6), path
        else:
            assert abs(got - want) <= TOL, (path, got, want)


@pytest.mark.parametrize("task", ["binary", "multiclass", "multilabel"])
def test_binned_default_holds_sklearn_within_bounds(client, name, task):
    y, p32, classes = _dataset(task)
    info = client.create_stream(name, task=task, classes=classes)
    assert info.resolution.startswith("bins:")
    _log_in_pieces(client, name, y, p32, seed=7)
    rep = client.report(name)
    assert rep.resolution["kind"] == "bins"
    for method, kwargs, sk, sk_kwargs in _ranking_cases(task):
        want = sk(y, _score_input(task, p32), **sk_kwargs)
        metric = "roc_auc" if method == "roc_auc_score" else "average_precision"
        average = kwargs.get("average", "macro")
        if kwargs.get("multi_class") == "ovo":
            average = f"ovo_{average}"
        lower, upper = rep.bounds(metric, average)
        assert lower <= want <= upper, (method, kwargs, lower, want, upper)
        assert abs(getattr(rep, method)(**kwargs) - want) < 1e-3
    if task != "binary":
        for i, c in enumerate(classes):
            col = (y[:, i] if task == "multilabel" else (y == i)).astype(int)
            lower, upper = rep.bounds("roc_auc", c)
            assert lower <= skm.roc_auc_score(col, p32[:, i].astype(np.float64)) <= upper
    _check_threshold_metrics(rep, task, y, _predictions(task, p32))

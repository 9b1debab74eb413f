"""scikit-learn's own metric test cases, through the engine, every leaf against sklearn.

Each case rebuilds the inputs of a test in scikit-learn 1.9's ``sklearn/metrics/tests``
(``test_ranking.py``, ``test_classification.py``, ``test_common.py``; named in the comment of each
case) with its seeds, in this project's own code. Scores become float32 probabilities the engine
accepts (rows summing to 1 for multiclass; ties kept as ties); where a test passes predicted labels
instead of scores, the scores are built so that the engine predicts those labels.

Every case runs in the exact resolution and in the default (binned) resolution, and every leaf of
``tests/engine/oracle.py`` (sklearn, plus the conventions the README's divergence table lists)
must match to 1e-12. The cases are small, so the default resolution answers them from raw rows
(exact while small, ``state.SMALL_ROWS``; its report says so), ranking leaves included.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from evalstream_server.engine import StreamEngine, StreamSpec
from sklearn import datasets
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from .oracle import expected, leaf

TOL = 1e-12
_LOSS_RTOL = 2e-6  # log loss and Brier: float32 clipping and summation order (test_oracle.py)


@dataclass(frozen=True)
class Case:
    task: str
    y: np.ndarray
    p: np.ndarray  # float32, (n, C)
    w: np.ndarray | None = None
    top_k: int = 5


def _probabilities(raw: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to 1 in float64, then float32 (equal entries stay equal)."""
    raw = np.asarray(raw, dtype=np.float64)
    return (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)


def _scores_for_predictions(pred: np.ndarray, K: int) -> np.ndarray:
    """Multiclass scores whose argmax is ``pred``."""
    p = np.full((len(pred), K), 1.0)
    p[np.arange(len(pred)), pred] = 3.0
    return _probabilities(p)


def _binary(y, s, w=None) -> Case:
    return Case("binary", np.asarray(y), np.asarray(s, dtype=np.float32).reshape(-1, 1), w)


def _iris_prediction(binary: bool, model: str) -> tuple[np.ndarray, np.ndarray]:
    """``make_prediction`` of test_ranking.py (LogisticRegression) and test_classification.py
    (CalibratedClassifierCV over a linear SVC): iris (classes 0 and 1 only when binary), rows
    shuffled with seed 37, 800 noise features from seed 0, fitted on the first half."""
    iris = datasets.load_iris()
    X, y = iris.data, iris.target
    if binary:
        X, y = X[y < 2], y[y < 2]
    order = np.arange(len(y))
    np.random.RandomState(37).shuffle(order)
    X, y = X[order], y[order]
    X = np.c_[X, np.random.RandomState(0).randn(len(y), 200 * X.shape[1])]
    half = len(y) // 2
    if model == "logistic":
        clf = LogisticRegression(random_state=0)
    else:
        clf = CalibratedClassifierCV(SVC(kernel="linear", random_state=0), ensemble=False, cv=3)
    proba = clf.fit(X[:half], y[:half]).predict_proba(X[half:])
    return y[half:], proba


def _ranking_binary_iris() -> Case:
    # test_ranking.py: make_prediction(binary=True) (test_roc_curve, test_roc_returns_consistency,
    # test_precision_recall_curve, test_average_precision_score ...)
    y, proba = _iris_prediction(True, "logistic")
    return _binary(y, proba[:, 1])


def _ranking_multiclass_iris() -> Case:
    # test_ranking.py: make_prediction(binary=False)
    y, proba = _iris_prediction(False, "logistic")
    return Case("multiclass", y, _probabilities(proba))


def _classification_multiclass_iris() -> Case:
    # test_classification.py: make_prediction(binary=False) (test_precision_recall_f1_score_
    # multiclass, test_confusion_matrix_multiclass, test_classification_report_multiclass ...)
    y, proba = _iris_prediction(False, "svc")
    return Case("multiclass", y, _probabilities(proba))


def _classification_binary_iris() -> Case:
    # test_classification.py: make_prediction(binary=True) (test_precision_recall_f1_score_binary,
    # test_confusion_matrix_binary, test_matthews_corrcoef ...)
    y, proba = _iris_prediction(True, "svc")
    return _binary(y, proba[:, 1])


def _ovo_toy() -> Case:
    # test_ranking.py::test_multiclass_ovo_roc_auc_toydata
    scores = [[0.1, 0.8, 0.1], [0.3, 0.4, 0.3], [0.35, 0.5, 0.15], [0, 0.2, 0.8]]
    return Case("multiclass", np.array([0, 1, 0, 2]), _probabilities(scores))


def _ovr_toy() -> Case:
    # test_ranking.py::test_multiclass_ovr_roc_auc_toydata
    scores = [[1.0, 0.0, 0.0], [0.1, 0.5, 0.4], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]
    return Case("multiclass", np.array([0, 1, 2, 2]), _probabilities(scores))


def _ovo_toy_binary_labels() -> Case:
    # test_ranking.py::test_multiclass_ovo_roc_auc_toydata_binary (labels 0 and 2 of 3; the
    # absent class keeps its column)
    scores = [[0.2, 0.0, 0.8], [0.6, 0.0, 0.4], [0.55, 0.0, 0.45], [0.4, 0.0, 0.6]]
    return Case("multiclass", np.array([0, 2, 0, 2]), _probabilities(scores))


def _micro_ovr_dirichlet(seed: int) -> Callable[[], Case]:
    # test_ranking.py::test_micro_averaged_ovr_roc_auc (global_random_seed): Dirichlet(2, 1, 0.5)
    # scores, labels drawn from them
    def make() -> Case:
        from scipy import stats

        p = stats.dirichlet.rvs([2.0, 1.0, 0.5], size=1000, random_state=seed)
        y = np.array([stats.multinomial.rvs(n=1, p=row, random_state=seed).argmax() for row in p])
        return Case("multiclass", y, _probabilities(p))

    return make


def _pr_toys() -> list[tuple[str, Callable[[], Case]]]:
    # test_ranking.py::test_precision_recall_curve_toydata and test_roc_curve_toydata: the
    # binary rows with both classes, and the all-positive row (AP 1; AUC undefined)
    rows = [
        ([0, 1], [0, 1]),
        ([0, 1], [1, 0]),
        ([1, 0], [1, 1]),
        ([1, 0], [1, 0]),
        ([1, 0], [0.5, 0.5]),
        ([1, 1], [0.25, 0.75]),
    ]
    return [(f"pr_toy_{y}_{s}", lambda y=y, s=s: _binary(np.array(y), s)) for y, s in rows]


def _pr_toy_multilabel() -> list[tuple[str, Callable[[], Case]]]:
    # test_ranking.py::test_precision_recall_curve_toydata, its multilabel part
    cases = [
        ([[0, 1], [0, 1]], [[0, 1], [0, 1]]),
        ([[0, 1], [0, 1]], [[0, 1], [1, 0]]),
        ([[1, 0], [0, 1]], [[0, 1], [1, 0]]),
        ([[1, 0], [0, 1]], [[1, 0], [0, 1]]),
    ]
    return [
        (
            f"pr_toy_multilabel_{i}",
            lambda y=y, s=s: Case("multilabel", np.array(y), np.array(s, dtype=np.float32)),
        )
        for i, (y, s) in enumerate(cases)
    ]


def _ap_constant() -> Case:
    # test_ranking.py::test_average_precision_constant_values (every score 1, a quarter positive)
    y = np.zeros(100, dtype=np.int64)
    y[::4] = 1
    return _binary(y, np.ones(100))


def _ap_tied() -> Case:
    # test_ranking.py::test_average_precision_score_tied_values
    return _binary(np.array([0, 1, 1]), [0.5, 0.5, 0.6])


def _top_k_table() -> Case:
    # test_ranking.py::test_top_k_accuracy_score (its y_score table, y_true [0, 1, 2, 2])
    scores = [
        [0.4, 0.3, 0.2, 0.1],
        [0.1, 0.3, 0.4, 0.2],
        [0.4, 0.1, 0.2, 0.3],
        [0.3, 0.2, 0.4, 0.1],
    ]
    return Case("multiclass", np.array([0, 1, 2, 2]), _probabilities(scores), top_k=3)


def _top_k_ties() -> Case:
    # test_ranking.py::test_top_k_accuracy_score_ties (rows scaled to sum to 1)
    scores = [[5, 5, 7, 0], [1, 5, 5, 5], [0, 0, 3, 3], [1, 1, 1, 1]]
    return Case("multiclass", np.array([0, 1, 2, 3]), _probabilities(scores), top_k=3)


def _kappa_blocks() -> Case:
    # test_classification.py::test_cohen_kappa: y1 = 40 zeros then 60 ones, y2 = 50 and 50
    y = np.array([0] * 40 + [1] * 60)
    pred = np.array([0] * 50 + [1] * 50)
    return _binary(y, np.where(pred == 1, 0.75, 0.25))


def _kappa_three_classes() -> Case:
    # test_classification.py::test_cohen_kappa, the three-class part
    y = np.array([0] * 46 + [1] * 44 + [2] * 10)
    pred = np.array([0] * 52 + [1] * 32 + [2] * 16)
    return Case("multiclass", y, _scores_for_predictions(pred, 3))


def _multilabel_prf_1() -> Case:
    # test_classification.py::test_precision_recall_f1_score_multilabel_1 (y_pred thresholded)
    y = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1]])
    pred = np.array([[0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0]])
    return Case("multilabel", y, np.where(pred == 1, 0.75, 0.25).astype(np.float32))


def _common_binary(weighted: bool) -> Case:
    # test_common.py::test_binary_sample_weight_invariance (50 samples, seed 0; weights of
    # check_sample_weight_invariance: RandomState(0).randint(1, 10))
    rs = np.random.RandomState(0)
    y = rs.randint(0, 2, size=50)
    rs.randint(0, 2, size=50)  # y_pred, unused: the engine predicts from the scores
    s = rs.random_sample(size=50)
    w = np.random.RandomState(0).randint(1, 10, size=50).astype(float) if weighted else None
    return _binary(y, s, w)


def _common_multiclass(weighted: bool) -> Case:
    # test_common.py::test_multiclass_sample_weight_invariance (5 classes, softmax of -y_score)
    rs = np.random.RandomState(0)
    y = rs.randint(0, 5, size=50)
    rs.randint(0, 5, size=50)
    s = rs.random_sample(size=(50, 5))
    e = np.exp(-s)
    w = np.random.RandomState(0).randint(1, 10, size=50).astype(float) if weighted else None
    return Case("multiclass", y, _probabilities(e / e.sum(axis=1, keepdims=True)), w)


def _common_multilabel(weighted: bool) -> Case:
    # test_common.py::test_multilabel_sample_weight_invariance: two make_multilabel_
    # classification draws (seeds 0 and 1), scores uniform from seed 0 scaled to sum to 1
    _, ya = datasets.make_multilabel_classification(
        n_features=1, n_classes=10, random_state=0, n_samples=50, allow_unlabeled=False
    )
    _, yb = datasets.make_multilabel_classification(
        n_features=1, n_classes=10, random_state=1, n_samples=50, allow_unlabeled=False
    )
    y = np.vstack([ya, yb])
    s = np.random.RandomState(0).uniform(size=y.shape)
    s /= s.sum(axis=1, keepdims=True)
    w = np.random.RandomState(0).randint(1, 10, size=len(y)).astype(float) if weighted else None
    return Case("multilabel", y, s.astype(np.float32), w)


def _common_multilabel_permutations() -> Case:
    # test_common.py::test_continuous_multilabel_multioutput_permutations_invariance
    rs = np.random.RandomState(0)
    y = rs.randint(0, 2, size=(20, 4))
    s = rs.uniform(size=y.shape)
    s /= s.sum(axis=1, keepdims=True)
    y[y.sum(axis=1) == 4, 0] = 0
    return Case("multilabel", y, s.astype(np.float32))


_CASES: list[tuple[str, Callable[[], Case]]] = [
    ("ranking_binary_iris", _ranking_binary_iris),
    ("ranking_multiclass_iris", _ranking_multiclass_iris),
    ("classification_binary_iris", _classification_binary_iris),
    ("classification_multiclass_iris", _classification_multiclass_iris),
    ("ovo_toy", _ovo_toy),
    ("ovr_toy", _ovr_toy),
    ("ovo_toy_binary_labels", _ovo_toy_binary_labels),
    ("micro_ovr_dirichlet_seed0", _micro_ovr_dirichlet(0)),
    ("micro_ovr_dirichlet_seed42", _micro_ovr_dirichlet(42)),
    *_pr_toys(),
    *_pr_toy_multilabel(),
    ("ap_constant", _ap_constant),
    ("ap_tied", _ap_tied),
    ("top_k_table", _top_k_table),
    ("top_k_ties", _top_k_ties),
    ("kappa_blocks", _kappa_blocks),
    ("kappa_three_classes", _kappa_three_classes),
    ("multilabel_prf_1", _multilabel_prf_1),
    ("common_binary", lambda: _common_binary(False)),
    ("common_binary_weighted", lambda: _common_binary(True)),
    ("common_multiclass", lambda: _common_multiclass(False)),
    ("common_multiclass_weighted", lambda: _common_multiclass(True)),
    ("common_multilabel", lambda: _common_multilabel(False)),
    ("common_multilabel_weighted", lambda: _common_multilabel(True)),
    ("common_multilabel_permutations", _common_multilabel_permutations),
]

_RANKING = ("roc_auc.", "average_precision.")
_PER_SAMPLE = ("roc_auc.samples", "average_precision.samples")  # per-sample sums: exact anyway


def _report(case: Case, resolution: str) -> tuple[dict, list[str]]:
    C = case.p.shape[1]
    classes = ["neg", "pos"] if case.task == "binary" else [f"c{i}" for i in range(C)]
    spec = StreamSpec(
        task=case.task, classes=tuple(classes), resolution=resolution, top_k=case.top_k
    )
    eng = StreamEngine(spec)
    half = len(case.y) // 2 or 1  # two batches: the split must change nothing
    for sl in (slice(0, half), slice(half, None)):
        if len(case.y[sl]):
            eng.update(case.y[sl], case.p[sl], None if case.w is None else case.w[sl])
    return eng.report(), classes


def _expected(case: Case, resolution_k_max: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return expected(case.task, case.y, case.p, case.w, k_max=resolution_k_max)


def _k_max(case: Case) -> int:
    return min(case.top_k, case.p.shape[1] - 1) if case.task == "multiclass" else 0


def _mismatches(
    case: Case, resolution: str, ranking: bool | None, expect: dict | None = None
) -> list[str]:
    """Leaves that differ from sklearn (``ranking``: only ranking leaves, only the others, or
    every leaf when None); ``expect``: sklearn's values when already computed."""
    report, classes = _report(case, resolution)
    out = []
    if expect is None:
        expect = _expected(case, _k_max(case))
    for path, want in expect.items():
        is_rank = path.startswith(_RANKING) and path not in _PER_SAMPLE
        if ranking is not None and is_rank != ranking:
            continue
        if path in ("confusion_matrix", "multilabel_confusion_matrix"):
            if not np.array_equal(np.asarray(report[path], float), np.asarray(want, float)):
                out.append(path)
            continue
        got = leaf(report, path, classes)["value"]
        if want is None or got is None:
            if (want is None) != (got is None):
                out.append(f"{path}: {got} vs sklearn {want}")
            continue
        if path in ("log_loss", "brier_score"):
            ok = abs(got - want) <= _LOSS_RTOL * abs(want) + 1e-9
        else:
            ok = abs(got - want) <= TOL
        if not ok:
            out.append(f"{path}: {got} vs sklearn {want}")
    return out


_MAKERS = dict(_CASES)


@functools.cache
def _case(name: str) -> Case:
    """Each case built once per session (the iris models take a while to fit)."""
    return _MAKERS[name]()


@functools.cache
def _expected_of(name: str) -> dict:
    """sklearn's values of a case, once per session (three tests read them)."""
    case = _case(name)
    return _expected(case, _k_max(case))


@pytest.mark.parametrize("name", list(_MAKERS))
def test_exact_resolution_every_leaf(name):
    assert _mismatches(_case(name), "exact", None, _expected_of(name)) == []


@pytest.mark.parametrize("name", list(_MAKERS))
def test_default_resolution_threshold_leaves(name):
    assert _mismatches(_case(name), "bins", False, _expected_of(name)) == []


@pytest.mark.parametrize("name", list(_MAKERS))
def test_default_resolution_ranking_leaves(name):
    report, _ = _report(_case(name), "bins")
    assert report["resolution"]["kind"] == "bins" and report["resolution"]["exact"] is True
    assert _mismatches(_case(name), "bins", True, _expected_of(name)) == []


def test_the_harness_catches_a_wrong_leaf():
    """A report that differs from sklearn in one leaf is caught (the harness can fail)."""
    case = _ovr_toy()
    wrong = Case(case.task, case.y, case.p[:, ::-1].copy())  # other scores, same labels
    report, classes = _report(wrong, "exact")
    want = _expected(case, 2)
    assert leaf(report, "roc_auc.macro", classes)["value"] != want["roc_auc.macro"]
    assert _mismatches(case, "exact", None) == []

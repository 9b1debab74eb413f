"""Predictions now, labels later: the join by id, its bounds and counters, the label-free figures
and the label delay, against sklearn and numpy on exactly the joined pairs."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import (
    CapacityError,
    InvalidInputError,
    StreamEngine,
    StreamSpec,
    engine_from_bytes,
    engine_to_bytes,
)
from evalstream_server.engine.counting import CONFIDENCE_BINS, DELAY_EDGES
from evalstream_server.engine.labelfree import PSI_FLOOR, delay_quantile

from .data import multiclass as _multiclass
from .data import multilabel
from .oracle import compare_report, expected

CLASSES = ["a", "b", "c", "d"]


def multiclass(seed: int, n: int, K: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labels of K imbalanced classes (shares 4:3:2:1) with peaky float32 scores."""
    counts = [n * (K - i) // (K * (K + 1) // 2) for i in range(K)]
    counts[0] += n - sum(counts)
    y, _, p = _multiclass(seed, counts=tuple(counts))
    return y, p


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _check_against_sklearn(report: dict, task: str, y, p, classes) -> None:
    k_max = min(5, len(classes) - 1) if task == "multiclass" else 0
    assert compare_report(report, expected(task, y, p, k_max=k_max), classes, False) > 20


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_order_joins_equal_sklearn_on_the_joined_pairs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, p = multiclass(seed, n=3000, K=4)
    n = len(y)
    ids = np.array([f"req-{seed}-{i}" for i in range(n)], dtype=object)
    eng = StreamEngine(StreamSpec("multiclass", classes=CLASSES, resolution="exact"))
    # predictions in random batches and order
    order = rng.permutation(n)
    cuts = np.sort(rng.choice(np.arange(1, n), 9, replace=False))
    for part in np.split(order, cuts):
        eng.ingest_predictions(eng.validate_predictions(ids[part].tolist(), p[part]))
    # 70 % of the labels arrive, shuffled, in random batches, with strangers and repeats mixed in
    labelled = rng.permutation(n)[: int(0.7 * n)]
    strangers = [f"nobody-{i}" for i in range(37)]
    repeats = labelled[:25]
    label_ids = [*ids[labelled].tolist(), *strangers, *ids[repeats].tolist()]
    label_y = np.r_[y[labelled], rng.integers(0, 4, 37), y[repeats]]
    perm = rng.permutation(len(label_ids))
    label_ids = [label_ids[i] for i in perm]
    label_y = label_y[perm]
    # a repeat can come before its first label: whichever comes first joins, the other is the
    # duplicate; the labels are equal, so the pairs are the same either way
    totals = dict.fromkeys(("matched", "unknown", "duplicate", "expired"), 0)
    for part in np.array_split(np.arange(len(label_ids)), 7):
        res = eng.ingest_labels(eng.validate_labels([label_ids[i] for i in part], label_y[part]))
        for k in totals:
            totals[k] += getattr(res, k)
    assert totals == {"matched": len(labelled), "unknown": 37, "duplicate": 25, "expired": 0}
    report = eng.report()
    _check_against_sklearn(report, "multiclass", y[labelled], p[labelled], CLASSES)
    status = report["labels"]["stream"]
    assert status["pending"] == n - len(labelled)
    assert (status["matched"], status["unknown"], status["duplicate_labels"]) == (
        len(labelled),
        37,
        25,
    )
    assert status["labels"] == len(label_ids)
    assert report["labels"]["labelled"] == len(labelled)
    assert report["labels"]["labelled_share"]["value"] == pytest.approx(len(labelled) / n)
    # label-free figures cover every prediction, labelled or not
    assert report["label_free"]["n_predictions"] == n


def test_duplicate_prediction_ids_are_ignored_and_counted() -> None:
    eng = StreamEngine(StreamSpec("binary", resolution="exact"))
    first = eng.ingest_predictions(eng.validate_predictions(["x", "y", "x"], [0.9, 0.2, 0.1]))
    assert (first.added, first.duplicate) == (2, 1)
    again = eng.ingest_predictions(eng.validate_predictions(["y", "z"], [0.7, 0.4]))
    assert (again.added, again.duplicate) == (1, 1)
    eng.ingest_labels(eng.validate_labels(["x", "y", "z"], [1, 0, 1]))
    # the first score of each id is the one joined: x=0.9, y=0.2, z=0.4
    report = eng.report()
    assert report["roc_auc"]["binary"]["value"] == 1.0
    assert report["n_samples"] == 3
    after = eng.ingest_predictions(eng.validate_predictions(["x"], [0.5]))  # joined id reused
    assert (after.added, after.duplicate) == (0, 1)
    assert report["label_free"]["n_predictions"] == 3
    assert eng.report()["labels"]["stream"]["duplicate_ids"] == 3


def test_pairs_count_in_the_window_of_their_prediction_time() -> None:
    clock = Clock()
    y, p = multiclass(5, n=900, K=4)
    spec = StreamSpec("multiclass", classes=CLASSES, windows=("1h",), resolution="exact")
    eng = StreamEngine(spec, clock=clock)
    ids = [f"r{i}" for i in range(900)]
    old, recent = slice(0, 400), slice(400, 900)
    eng.ingest_predictions(eng.validate_predictions(ids[old], p[old]), timestamp=clock.t - 7200)
    eng.ingest_predictions(eng.validate_predictions(ids[recent], p[recent]))
    clock.t += 600  # labels come 10 minutes later, all in one batch
    eng.ingest_labels(eng.validate_labels(ids, y))
    _check_against_sklearn(eng.report("1h"), "multiclass", y[recent], p[recent], CLASSES)
    _check_against_sklearn(eng.report(), "multiclass", y, p, CLASSES)
    delays = eng.report("1h")["labels"]["delay_seconds"]
    assert delays["joined"] == 500
    assert delays["mean"]["value"] == pytest.approx(600.0)


def test_bucketed_windows_split_a_label_batch_by_prediction_time() -> None:
    clock = Clock(1_000_000.0)
    y, p = multiclass(6, n=600, K=4)
    spec = StreamSpec("multiclass", classes=CLASSES, windows=("1h",), resolution="exact")
    eng = StreamEngine(spec, clock=clock)
    ids = [f"r{i}" for i in range(600)]
    # six prediction batches 10 minutes apart: six different buckets of the 1h window
    for k in range(6):
        part = slice(100 * k, 100 * (k + 1))
        eng.ingest_predictions(eng.validate_predictions(ids[part], p[part]))
        clock.t += 600
    eng.ingest_labels(eng.validate_labels(ids, y))  # one batch joins all six buckets
    # now the window covers the buckets of the last hour: the first batch's bucket has slid out
    window = eng.report("1h")
    _check_against_sklearn(window, "multiclass", y[100:], p[100:], CLASSES)


def test_retention_and_max_pending_bound_the_table() -> None:
    clock = Clock()
    spec = StreamSpec("binary", resolution="exact", pending_retention=3600, max_pending=5)
    eng = StreamEngine(spec, clock=clock)
    eng.ingest_predictions(eng.validate_predictions([f"e{i}" for i in range(3)], [0.1] * 3))
    clock.t += 4000  # past retention: e0..e2 expire at the next operation
    eng.ingest_predictions(eng.validate_predictions([f"k{i}" for i in range(7)], [0.8] * 7))
    status = eng.label_status()
    assert status["expired"] == 3
    assert status["evicted"] == 2  # k0 and k1: 7 new rows into a table of 5
    assert status["pending"] == 5
    res = eng.ingest_labels(eng.validate_labels(["e0", "k0", "k6", "zz"], [0, 1, 1, 0]))
    assert (res.matched, res.expired, res.unknown, res.duplicate) == (1, 2, 1, 0)
    assert eng.report()["n_samples"] == 1
    clock.t += 3601  # the rest expire on a query too, and the gauge drops
    status = eng.label_status()
    assert status["pending"] == 0
    assert status["expired"] == 3 + 4
    # more new ids in one batch than the table holds: the first ones are evicted on arrival
    eng.ingest_predictions(eng.validate_predictions([f"big{i}" for i in range(8)], [0.3] * 8))
    status = eng.label_status()
    assert (status["pending"], status["evicted"]) == (5, 2 + 3)
    counted = status["pending"] + status["matched"] + status["expired"] + status["evicted"]
    assert status["predictions"] == counted == 3 + 7 + 8
    assert len(eng.pending._done) <= spec.max_pending  # tombstones are bounded too


def test_label_free_figures_equal_numpy() -> None:
    rng = np.random.default_rng(11)
    cases = []
    y, p = multiclass(3, n=2000, K=4)
    cases.append(("multiclass", CLASSES, p, None))
    pb = rng.random(1500).astype(np.float32)
    cases.append(("binary", ["neg", "pos"], pb, (0.3,)))
    _, _, pl = multilabel(4, n=1200)
    cases.append(("multilabel", [f"l{i}" for i in range(pl.shape[1])], pl, (0.5,)))
    for task, classes, scores, thresholds in cases:
        spec = StreamSpec(task, classes=classes, thresholds=thresholds or (), low_confidence=0.7)
        eng = StreamEngine(spec)
        n = len(scores)
        eng.ingest_predictions(eng.validate_predictions([f"i{i}" for i in range(n)], scores))
        lf = eng.report()["label_free"]
        s = np.asarray(scores, dtype=np.float32).reshape(n, -1)
        if task == "multiclass":
            share = np.bincount(s.argmax(axis=1), minlength=4) / n
            mean_prob = s.astype(np.float64).mean(axis=0)
            conf = s.max(axis=1).astype(np.float64)
            key = "argmax"
        else:
            hit = s >= np.float32(thresholds[0])
            share, mean_prob = hit.mean(axis=0), s.astype(np.float64).mean(axis=0)
            if task == "binary":
                share, mean_prob = np.r_[1 - share, share], np.r_[1 - mean_prob, mean_prob]
            s64 = s.astype(np.float64)
            conf = np.maximum(s64, 1 - s64).ravel()
            key = "thresholded"
        prev = lf["predicted_prevalence"]
        for i, c in enumerate(classes):
            assert prev[key][c]["value"] == pytest.approx(share[i], abs=1e-12), (task, c)
            assert prev["mean_probability"][c]["value"] == pytest.approx(mean_prob[i], abs=1e-9)
        assert lf["confidence"]["mean"]["value"] == pytest.approx(conf.mean(), abs=1e-12)
        assert lf["confidence"]["low_confidence_share"]["value"] == pytest.approx(
            (conf < 0.7).mean(), abs=1e-12
        )
        hist = np.bincount(
            np.minimum(np.floor(conf * CONFIDENCE_BINS).astype(int), CONFIDENCE_BINS - 1),
            minlength=CONFIDENCE_BINS,
        )
        assert lf["confidence"]["histogram"]["weights"] == hist.tolist()
        assert lf["n_predictions"] == n
        # nothing labelled: every labelled metric is undefined, the label-free ones are not
        report = eng.report()
        assert report["n_samples"] == 0
        assert report["imbalance"]["predicted_prevalence"] == prev


def test_labelled_batches_feed_the_same_label_free_figures() -> None:
    """log() batches are predictions too: the shares then equal the confusion matrix's."""
    y, p = multiclass(8, n=1000, K=4)
    w = np.random.default_rng(8).exponential(size=1000)
    eng = StreamEngine(StreamSpec("multiclass", classes=CLASSES))
    eng.update(y, p, w)
    report = eng.report()
    cm = np.array(report["confusion_matrix"], dtype=float)
    shares = cm.sum(axis=0) / cm.sum()
    for i, c in enumerate(CLASSES):
        got = report["imbalance"]["predicted_prevalence"]["argmax"][c]["value"]
        assert got == pytest.approx(shares[i], abs=1e-12)


def test_prior_shift_against_the_reference_window_equals_numpy() -> None:
    clock = Clock()
    spec = StreamSpec("multiclass", classes=CLASSES, windows=("1h", "7d"), prior_reference="7d")
    eng = StreamEngine(spec, clock=clock)
    rng = np.random.default_rng(2)

    def onehot_like(classes_drawn):
        s = np.full((len(classes_drawn), 4), 0.1, np.float32)
        s[np.arange(len(classes_drawn)), classes_drawn] = 0.7
        return s

    past = rng.choice(4, 4000, p=[0.4, 0.3, 0.2, 0.1])
    eng.ingest_predictions(
        eng.validate_predictions([f"p{i}" for i in range(4000)], onehot_like(past)),
        timestamp=clock.t - 86400,
    )
    recent = rng.choice(4, 1000, p=[0.1, 0.2, 0.3, 0.4])
    eng.ingest_predictions(
        eng.validate_predictions([f"r{i}" for i in range(1000)], onehot_like(recent))
    )
    shift = eng.report("1h")["label_free"]["prior_shift"]
    p_now = np.bincount(recent, minlength=4) / 1000
    p_ref = np.bincount(np.r_[past, recent], minlength=4) / 5000
    pf, qf = np.maximum(p_now, PSI_FLOOR), np.maximum(p_ref, PSI_FLOOR)
    assert shift["reference"] == "7d"
    assert shift["psi"]["value"] == pytest.approx(((pf - qf) * np.log(pf / qf)).sum(), abs=1e-12)
    assert shift["total_variation"]["value"] == pytest.approx(0.5 * np.abs(p_now - p_ref).sum())
    for i, c in enumerate(CLASSES):
        assert shift["per_class"][c]["value"] == pytest.approx(p_now[i] - p_ref[i], abs=1e-12)
    assert eng.report("7d")["label_free"]["prior_shift"]["psi"]["value"] is None
    assert shift["psi"]["value"] > 0.25  # a real shift
    with pytest.raises(InvalidInputError, match="prior_reference"):
        StreamSpec("binary", windows=("1h",), prior_reference="2h")


def test_label_delay_histogram_and_quantiles() -> None:
    clock = Clock()
    eng = StreamEngine(StreamSpec("binary", resolution="exact"), clock=clock)
    delays = np.array([0.5, 5, 30, 30, 100, 200, 2000, 5000, 90000, 3_000_000], dtype=float)
    ids = [f"d{i}" for i in range(len(delays))]
    t0 = clock.t
    for i, d in enumerate(delays):
        eng.ingest_predictions(eng.validate_predictions([ids[i]], [0.6]), timestamp=t0 - d)
    eng.ingest_labels(eng.validate_labels(ids, [1] * len(ids)))
    section = eng.report()["labels"]["delay_seconds"]
    want = np.bincount(
        np.searchsorted(np.asarray(DELAY_EDGES, float), delays, side="left"),
        minlength=len(DELAY_EDGES) + 1,
    )
    assert section["histogram"]["counts"] == want.tolist()
    assert section["mean"]["value"] == pytest.approx(delays.mean())
    assert section["joined"] == 10
    # rank 5 of 10: 4 delays lie at or below 60 s, 1 (100 s) in (60, 120] -> that bin's top
    assert section["p50"]["value"] == pytest.approx(120.0)
    # rank 9 of 10: 8 delays at or below 7200 s, the 9th (90000 s) in (86400, 172800]
    assert section["p90"]["value"] == pytest.approx(172800.0)
    # rank 9.9 lands in the open last bin: the last finite edge, as histogram_quantile
    assert section["p99"]["value"] == DELAY_EDGES[-1]
    assert delay_quantile(np.zeros(4), 0.5) is None


def test_bytes_round_trip_keeps_the_pending_table() -> None:
    clock = Clock()
    y, p = multiclass(9, n=500, K=4)
    spec = StreamSpec("multiclass", classes=CLASSES, windows=("1h",), resolution="exact")
    a = StreamEngine(spec, clock=clock)
    ids = [f"q{i}" for i in range(500)]
    a.ingest_predictions(a.validate_predictions(ids, p))
    a.ingest_labels(a.validate_labels(ids[:100] + ["ghost"], np.r_[y[:100], 0]))
    b = engine_from_bytes(engine_to_bytes(a), clock=clock)
    assert b.label_status() == a.label_status()
    for eng in (a, b):
        eng.ingest_labels(eng.validate_labels(ids[100:] + ids[:3], np.r_[y[100:], y[:3]]))
    assert a.report() == b.report()
    assert b.label_status()["duplicate_labels"] == 3
    _check_against_sklearn(b.report(), "multiclass", y, p, CLASSES)


def test_bad_predictions_and_labels_name_the_field_and_change_nothing() -> None:
    eng = StreamEngine(StreamSpec("multiclass", classes=CLASSES))
    before = engine_to_bytes(eng)
    cases = [
        (lambda: eng.validate_predictions(["a", "b"], np.full((3, 4), 0.25)), "y_score"),
        (lambda: eng.validate_predictions(["a", 7], np.full((2, 4), 0.25)), "ids"),
        (lambda: eng.validate_predictions(["", "b"], np.full((2, 4), 0.25)), "ids"),
        (lambda: eng.validate_predictions("ab", np.full((2, 4), 0.25)), "ids"),
        (lambda: eng.validate_predictions(["x" * 300], np.full((1, 4), 0.25)), "ids"),
        (lambda: eng.validate_predictions(["a"], np.full((1, 4), 0.5)), "y_score"),
        (lambda: eng.validate_labels(["a", "b"], [0, 1, 2]), "ids"),
        (lambda: eng.validate_labels(["a"], [9]), "y_true"),
        (lambda: eng.validate_labels([], []), "ids"),
    ]
    for make, field in cases:
        with pytest.raises(InvalidInputError) as info:
            make()
        assert info.value.field == field, (field, str(info.value))
    assert engine_to_bytes(eng) == before


def test_exact_capacity_refuses_the_join_without_taking_the_predictions() -> None:
    spec = StreamSpec("binary", resolution="exact:3")
    eng = StreamEngine(spec)
    eng.ingest_predictions(eng.validate_predictions(["a", "b", "c", "d"], [0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(CapacityError):
        eng.ingest_labels(eng.validate_labels(["a", "b", "c", "d"], [0, 1, 0, 1]))
    assert eng.label_status()["pending"] == 4  # nothing was taken
    eng.ingest_labels(eng.validate_labels(["a", "b"], [0, 1]))
    assert eng.report()["n_samples"] == 2

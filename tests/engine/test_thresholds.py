"""Threshold advice (engine/thresholds.py) against sklearn on the raw scores.

* exact resolution: the F1-maximising threshold and its F1 are those of sklearn's
  ``precision_recall_curve`` on the raw scores;
* binned resolution: precision, recall and F1 at the chosen threshold are sklearn's at that
  threshold on the raw scores, the exact optimum lies within the reported range and below
  ``value_upper``;
* the recall-floor and precision-floor rules against a brute-force search over every threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import StreamEngine, StreamSpec
from evalstream_server.engine.layout import BinLayout
from evalstream_server.engine.report import build_report
from evalstream_server.engine.thresholds import ThresholdGoals
from sklearn.metrics import (
    f1_score,
    fbeta_score,
    precision_recall_curve,
    precision_score,
    recall_score,
)

CLASSES = ["a", "b", "c", "d"]
GOALS = ThresholdGoals(beta=1.0, recall_floors=(0.5, 0.9), precision_floors=(0.3, 0.8))


def _multiclass(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(len(CLASSES), n, p=[0.6, 0.25, 0.1, 0.05])
    logits = rng.normal(size=(n, len(CLASSES)))
    logits[np.arange(n), y] += rng.uniform(0.3, 2.0)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return y, p.astype(np.float32)


def _report(task: str, y, p, resolution: str, goals: ThresholdGoals = GOALS) -> dict:
    kw = {"classes": CLASSES} if task != "binary" else {}
    spec = StreamSpec(task, resolution=resolution, **kw)
    eng = StreamEngine(spec)
    eng.update(y, p)
    state = eng.state()
    if spec.resolution.kind == "bins":
        state.to_bins()  # the bins' advice (a small stream answers from raw rows)
    return build_report(state, threshold_goals=goals)


def _problems(task: str, y, p):
    """(name, positive mask, scores) of each one-vs-rest problem the advice covers."""
    if task == "binary":
        return [("1", y == 1, p[:, 0])]
    if task == "multilabel":
        return [(c, y[:, i] == 1, p[:, i]) for i, c in enumerate(CLASSES)]
    return [(c, y == i, p[:, i]) for i, c in enumerate(CLASSES)]


def _counts(pos: np.ndarray, s: np.ndarray, t: float) -> tuple[float, float, float]:
    pred = s >= np.float32(t)
    return float((pred & pos).sum()), float((pred & ~pos).sum()), float((~pred & pos).sum())


def _data(task: str, seed: int):
    y, p = _multiclass(seed)
    if task == "multiclass":
        return y, p
    if task == "multilabel":
        rng = np.random.default_rng(seed + 100)
        Y = (rng.random(p.shape) < 0.2).astype(np.int64)
        S = np.clip(0.3 * Y + rng.beta(2, 5, size=p.shape), 0, 1).astype(np.float32)
        return Y, S
    return (y == 2).astype(np.int64), p[:, 2:3]


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "binary"])
def test_exact_resolution_f1_optimum_is_sklearns(task: str) -> None:
    y, p = _data(task, 1)
    section = _report(task, y, p, "exact")["thresholds"]
    for name, pos, s in _problems(task, y, p):
        prec, rec, thr = precision_recall_curve(pos, s)
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)[:-1]
        best = int(np.argmax(f1))
        adv = section["per_class"][name]["best_f1"]
        assert adv["threshold"] == pytest.approx(float(thr[best]), abs=0)
        assert adv["f1"]["value"] == pytest.approx(f1[best], abs=1e-12)
        assert adv["value_upper"] == pytest.approx(f1[best], abs=1e-12)
        assert adv["max_distance"] == 0.0


@pytest.mark.parametrize("task", ["multiclass", "multilabel", "binary"])
@pytest.mark.parametrize("mantissa_bits", [2, 5])
def test_binned_advice_is_sklearns_at_the_threshold_and_brackets_the_optimum(
    task: str, mantissa_bits: int
) -> None:
    y, p = _data(task, 2)
    section = _report(task, y, p, f"bins:{mantissa_bits}")["thresholds"]
    for name, pos, s in _problems(task, y, p):
        adv = section["per_class"][name]["best_f1"]
        pred = (s >= np.float32(adv["threshold"])).astype(int)
        assert adv["f1"]["value"] == pytest.approx(f1_score(pos, pred), abs=1e-12)
        assert adv["precision"]["value"] == pytest.approx(precision_score(pos, pred), abs=1e-12)
        assert adv["recall"]["value"] == pytest.approx(recall_score(pos, pred), abs=1e-12)
        prec, rec, thr = precision_recall_curve(pos, s)
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)[:-1]
        exact_best = float(f1.max())
        assert adv["f1"]["value"] <= exact_best + 1e-12
        assert exact_best <= adv["value_upper"] + 1e-12
        lo, hi = adv["optimum_within"]
        # every raw threshold as good as the chosen one lies in the stated range
        good = thr[f1 > adv["f1"]["value"] * (1 + 1e-12)]
        assert np.all((good >= lo) & (good <= hi))
        assert adv["max_distance"] == pytest.approx(
            max(adv["threshold"] - lo, hi - adv["threshold"]), abs=0
        )


@pytest.mark.parametrize("resolution", ["exact", "bins:3"])
@pytest.mark.parametrize("seed", [3, 4])
def test_floor_rules_against_brute_force(resolution: str, seed: int) -> None:
    y, p = _multiclass(seed, n=1500)
    section = _report("multiclass", y, p, resolution)["thresholds"]
    for name, pos, s in _problems("multiclass", y, p):
        for kind, floors in (
            ("recall_floor", GOALS.recall_floors),
            ("precision_floor", GOALS.precision_floors),
        ):
            for floor in floors:
                adv = section["per_class"][name][kind][repr(float(floor))]
                if resolution == "exact":
                    candidates = np.unique(s)
                else:  # the binned advice searches the bin edges: brute force over the same
                    lay = BinLayout(3)
                    candidates = np.unique(lay.lower_edges[lay.bin_of(s)])
                best = _brute(pos, s, candidates, kind, floor)
                if best is None:
                    assert adv["threshold"] is None and "reason" in adv
                    continue
                assert adv["threshold"] == pytest.approx(float(best[2]), abs=0)
                metric = "precision" if kind == "recall_floor" else "recall"
                assert adv[metric]["value"] == pytest.approx(best[0], abs=1e-12)


def _brute(pos, s, candidates, kind, floor):
    """Every candidate threshold: the rule's choice, by exhaustive search."""
    best = None
    P = float(pos.sum())
    for t in candidates:
        tp, fp, _ = _counts(pos, s, t)
        if tp <= 0:
            continue
        prec, rec = tp / (tp + fp), tp / P
        if kind == "recall_floor":
            ok, key = rec >= floor * (1 - 1e-12), (prec, rec, t)
        else:
            ok, key = prec >= floor * (1 - 1e-12), (rec, prec, t)
        if ok and (best is None or key > best):
            best = key
    return best


def test_fbeta_goal_against_sklearn() -> None:
    y, p = _data("binary", 5)
    goals = ThresholdGoals(beta=2.0, recall_floors=(), precision_floors=())
    adv = _report("binary", y, p, "exact", goals)["thresholds"]["per_class"]["1"]["best_fbeta"]
    pos, s = y == 1, p[:, 0]
    cuts = np.unique(s)
    pred = s[None, :] >= cuts[:, None]  # every threshold at once
    tp, fp = (pred & pos).sum(axis=1), (pred & ~pos).sum(axis=1)
    best = (5 * tp / (5 * tp + 4 * (pos.sum() - tp) + fp)).max()
    assert adv["fbeta"]["value"] == pytest.approx(best, abs=1e-12)
    assert fbeta_score(pos, s >= np.float32(adv["threshold"]), beta=2.0) == pytest.approx(
        best, abs=1e-12
    )


def test_macro_f1_per_class_thresholds_against_the_current_rule() -> None:
    y, p = _multiclass(6)
    r = _report("multiclass", y, p, "exact")
    macro = r["thresholds"]["macro_f1"]
    assert macro["current_rule"]["value"] == pytest.approx(
        f1_score(y, p.argmax(axis=1), average="macro"), abs=1e-12
    )
    per = [r["thresholds"]["per_class"][c]["best_f1"]["f1"]["value"] for c in CLASSES]
    assert macro["per_class_thresholds"]["value"] == pytest.approx(np.mean(per), abs=1e-15)
    # on this imbalanced stream the minority classes gain from their own thresholds
    assert macro["per_class_thresholds"]["value"] > macro["current_rule"]["value"]


def test_a_class_without_positives_says_why() -> None:
    y, p = _multiclass(7, n=500)
    y = np.where(y == 3, 0, y)
    adv = _report("multiclass", y, p, "bins:5")["thresholds"]["per_class"]["d"]["best_f1"]
    assert adv["threshold"] is None and "no positive" in adv["reason"]

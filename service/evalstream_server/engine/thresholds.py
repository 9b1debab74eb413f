"""Threshold advice: the score threshold per class that reaches a goal, from the state's counts.

Each one-vs-rest problem (a class against the rest; a label of a multilabel stream; the positive
class of a binary stream) is given as positives and negatives per bin in ascending score order,
with ``edges[b]`` the smallest score of bin ``b``. Predicting positive when ``score >= edges[b]``
selects exactly the bins ``b`` and above, so the counts at a bin edge are the exact counts of
that threshold on the raw scores: precision, recall and F-beta at a reported threshold are
sklearn's at that threshold, in any resolution.

What a bin hides is the thresholds *inside* it. Within a non-atomic bin ``b`` a threshold keeps
between ``tp[b + 1]`` and ``tp[b]`` positives and between ``fp[b + 1]`` and ``fp[b]``
negatives; every goal here improves with more true positives and fewer false positives, so
``(tp[b], fp[b + 1])`` is an optimistic bound of any threshold inside the bin. The advice
reports, with the threshold chosen among the edges:

* ``value_upper``: the best value any threshold on the raw scores can reach (the maximum of the
  bin bounds): the exact optimum lies between the reported value and it;
* ``optimum_within``: the score range that holds every threshold that could beat the chosen one
  (the bins whose bound reaches the chosen value), and ``max_distance``, how far the chosen
  threshold can be from the exact optimum. In the exact resolution (one bin per distinct score,
  every bin atomic) ``value_upper`` equals the value and the range holds only tied optima.

Goals (``ThresholdGoals``): the F-beta maximising threshold; for a recall floor, the threshold
with recall at least the floor and the best precision; for a precision floor, the one with
precision at least the floor and the best recall. Ties go to the better other metric, then to
the lowest threshold for F-beta (``np.argmax`` over ``precision_recall_curve``'s ascending
thresholds) and the highest for the floors (fewer positive predictions).

The intervals at a threshold (Wilson for precision and recall, Wilson on the Jaccard index for
F1) treat the threshold as given. The F-beta maximum is chosen on the same data, so its value is
optimistic on new data by about the width of its interval at small counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import confusion as cf

__all__ = ["ThresholdGoals", "advise", "problem_advice", "thresholds_section"]

_TIE = 1e-12  # relative slack when comparing float values of counts


@dataclass(frozen=True)
class ThresholdGoals:
    """What the advice looks for: F-beta (``beta``), recall floors and precision floors."""

    beta: float = 1.0
    recall_floors: Sequence[float] = field(default=(0.8, 0.9, 0.95))
    precision_floors: Sequence[float] = field(default=(0.8, 0.9, 0.95))

    def __post_init__(self) -> None:
        if not (np.isfinite(self.beta) and self.beta > 0):
            raise ValueError(f"beta: expected a positive number, received {self.beta!r}")
        for name in ("recall_floors", "precision_floors"):
            for v in getattr(self, name):
                if not (0.0 < float(v) <= 1.0):
                    raise ValueError(f"{name}: expected numbers in (0, 1], received {v!r}")


def _fbeta(tp: np.ndarray, fp: np.ndarray, P: float, beta: float) -> np.ndarray:
    b2 = beta * beta
    den = (1 + b2) * tp + b2 * (P - tp) + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tp > 0, (1 + b2) * tp / np.where(den > 0, den, 1.0), 0.0)


def _ratio(num: np.ndarray, den: np.ndarray | float) -> np.ndarray:
    den_a = np.broadcast_to(np.asarray(den, dtype=np.float64), np.shape(num))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den_a > 0, num / np.where(den_a > 0, den_a, 1.0), 0.0)


@dataclass(frozen=True)
class _Curve:
    """The counts at every candidate threshold (the occupied bins' edges, ascending) and the
    optimistic counts of the thresholds inside each bin."""

    edges: np.ndarray
    upper_edge: np.ndarray  # where each bin's thresholds end (the next occupied bin's edge)
    tp: np.ndarray
    fp: np.ndarray
    tp_hi: np.ndarray  # the optimistic counts inside the bin
    fp_lo: np.ndarray
    atomic: np.ndarray
    P: float


def _curve(pos: np.ndarray, neg: np.ndarray, edges: np.ndarray, atomic: np.ndarray) -> _Curve:
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    keep = (pos + neg) > 0
    atom = np.broadcast_to(np.asarray(atomic, dtype=bool), pos.shape)[keep]
    p, n = pos[keep], neg[keep]
    e = np.asarray(edges, dtype=np.float64)[keep]
    tp = np.cumsum(p[::-1])[::-1]  # predicted positive: this bin and above
    fp = np.cumsum(n[::-1])[::-1]
    fp_next = np.concatenate([fp[1:], [0.0]])
    # inside an atomic bin every threshold above its one value acts as the next edge, which is
    # a candidate itself: the bin's bound is its edge's value
    fp_lo = np.where(atom, fp, fp_next)
    upper = np.concatenate([e[1:], [max(1.0, float(e[-1]) if e.size else 1.0)]])
    return _Curve(e, upper, tp, fp, tp, fp_lo, atom, float(tp[0]) if tp.size else 0.0)


def _objective(
    kind: str, goal: float, tp: np.ndarray, fp: np.ndarray, P: float, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """(feasible, value) of a goal for counts at thresholds."""
    if kind == "fbeta":
        return np.ones(tp.shape, dtype=bool), _fbeta(tp, fp, P, beta)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, P)
    if kind == "recall_floor":
        return (recall >= goal * (1 - _TIE)) & (tp > 0), precision
    return (precision >= goal * (1 - _TIE)) & (tp > 0), recall


def _choose(kind: str, feasible: np.ndarray, value: np.ndarray, second: np.ndarray) -> int | None:
    """The index of the best feasible threshold: the best value, then the best ``second``,
    then the lowest (F-beta) or the highest (floors) threshold."""
    idx = np.flatnonzero(feasible)
    if idx.size == 0:
        return None
    v = value[idx]
    top = idx[v >= v.max() * (1 - _TIE)]
    s = second[top]
    top = top[s >= s.max() * (1 - _TIE)]
    return int(top[0] if kind == "fbeta" else top[-1])


def _leaf(value: float, ci: list[float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"value": float(value)}
    if ci is not None:
        out["ci95"] = ci
    return out


def problem_advice(
    pos: np.ndarray,
    neg: np.ndarray,
    edges: np.ndarray,
    atomic: np.ndarray,
    kind: str,
    goal: float = 0.0,
    beta: float = 1.0,
) -> dict[str, Any]:
    """The advice for one problem and one goal: ``kind`` is ``"fbeta"``, ``"recall_floor"`` or
    ``"precision_floor"`` (``goal`` the floor). The value is null with a ``reason`` when the
    problem has no positives or no threshold reaches the floor."""
    c = _curve(pos, neg, edges, atomic)
    if c.P <= 0:
        return {"threshold": None, "reason": "no positive samples in this window"}
    feasible, value = _objective(kind, goal, c.tp, c.fp, c.P, beta)
    second = _ratio(c.tp, c.P) if kind == "recall_floor" else _ratio(c.tp, c.tp + c.fp)
    if kind == "fbeta":
        second = np.zeros_like(value)
    b = _choose(kind, feasible, value, second)
    # the best any threshold could reach: each bin's optimistic counts
    feasible_hi, value_hi = _objective(kind, goal, c.tp_hi, c.fp_lo, c.P, beta)
    bound = np.where(feasible_hi, value_hi, -np.inf)
    if b is None:
        name = {"recall_floor": "recall", "precision_floor": "precision"}[kind]
        out: dict[str, Any] = {"threshold": None, "reason": f"no threshold reaches {name} {goal}"}
        if np.isfinite(bound).any():
            out["reason"] += " at this resolution; a threshold inside a bin might"
        return out
    chosen = float(value[b])
    could = np.flatnonzero(bound >= chosen * (1 - _TIE))
    could = np.union1d(could, [b])
    lo = float(c.edges[could].min())
    # a non-atomic bin's thresholds run up to the next edge; an atomic bin has its edge only
    hi = float(np.where(c.atomic[could], c.edges[could], c.upper_edge[could]).max())
    threshold = float(c.edges[b])
    tp, fp = float(c.tp[b]), float(c.fp[b])
    fn = c.P - tp
    prf = cf.prf_from_counts(np.array([tp]), np.array([fp]), np.array([fn]))
    out = {
        "threshold": threshold,
        "precision": _leaf(prf["precision"][0], cf.wilson(tp, tp + fp)),
        "recall": _leaf(prf["recall"][0], cf.wilson(tp, c.P)),
        "f1": _leaf(prf["f1"][0], cf.f1_interval(tp, fp, fn)),
        "value_upper": float(max(chosen, float(bound.max()))),
        "optimum_within": [lo, hi],
        "max_distance": float(max(threshold - lo, hi - threshold)),
        "predicted_positive": _whole(tp + fp),
    }
    if kind == "fbeta" and beta != 1.0:
        out["fbeta"] = {"value": chosen, "beta": float(beta)}
    return out


def _whole(x: float) -> float | int:
    return int(round(x)) if float(x).is_integer() else float(x)


def _floor_key(v: float) -> str:
    return repr(float(v))


def advise(
    problems: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    goals: ThresholdGoals,
) -> dict[str, dict[str, Any]]:
    """Advice per problem ``(name, pos, neg, edges, atomic)``: ``best_f1`` (or F-beta), and per
    floor ``recall_floor[floor]`` and ``precision_floor[floor]``."""
    out: dict[str, dict[str, Any]] = {}
    for name, pos, neg, edges, atomic in problems:
        entry: dict[str, Any] = {
            "best_f1" if goals.beta == 1.0 else "best_fbeta": problem_advice(
                pos, neg, edges, atomic, "fbeta", beta=goals.beta
            ),
            "recall_floor": {
                _floor_key(r): problem_advice(pos, neg, edges, atomic, "recall_floor", float(r))
                for r in goals.recall_floors
            },
            "precision_floor": {
                _floor_key(p): problem_advice(pos, neg, edges, atomic, "precision_floor", float(p))
                for p in goals.precision_floors
            },
        }
        out[name] = entry
    return out


def thresholds_section(
    task: str,
    names: list[str],
    problems: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    current_f1: dict[str, Any],
    goals: ThresholdGoals,
) -> dict[str, Any]:
    """The report's ``thresholds`` section: advice per class (``problems`` in class order; the
    positive class only for binary streams) and the macro F1 that per-class thresholds give
    against the stream's rule (``current_f1``: the report's macro F1 leaf, binary F1 for binary
    streams)."""
    per_class = advise([(n, *p) for n, p in zip(names, problems, strict=True)], goals)
    key = "best_f1" if goals.beta == 1.0 else "best_fbeta"
    best = [
        e[key]["f1"]["value"] for e in per_class.values() if e[key].get("threshold") is not None
    ]
    rule = {
        "multiclass": "argmax of the scores",
        "binary": "score >= the stream's threshold",
        "multilabel": "score >= each label's threshold",
    }[task]
    macro: dict[str, Any] = {
        "per_class_thresholds": {
            "value": float(np.mean(best)) if best else None,
            "n_classes": len(best),
        },
        "current_rule": dict(current_f1),
        "current_rule_definition": rule,
    }
    if not best:
        macro["per_class_thresholds"]["reason"] = "no class has positive samples in this window"
    if task == "multiclass":
        macro["definition"] = (
            "mean F1 of one-vs-rest decisions, each class at its own best threshold (a sample "
            "may pass several classes' thresholds), against the macro F1 of argmax"
        )
    elif task == "binary":
        macro["definition"] = "F1 of the positive class at its best threshold against the current"
    else:
        macro["definition"] = "mean F1 of the labels, each at its own best threshold"
    return {
        "goals": {
            "beta": float(goals.beta),
            "recall_floors": [float(r) for r in goals.recall_floors],
            "precision_floors": [float(p) for p in goals.precision_floors],
        },
        "per_class": per_class,
        "macro_f1": macro,
    }

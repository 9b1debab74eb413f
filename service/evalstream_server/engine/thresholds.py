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
from .errors import InvalidInputError

__all__ = ["ThresholdGoals", "advise", "problem_advice", "thresholds_section"]

MAX_FLOORS = 16  # floors of one kind a query may ask for
_TIE = 1e-12  # relative slack when comparing float values of counts


@dataclass(frozen=True)
class ThresholdGoals:
    """What the advice looks for: F-beta (``beta``), recall floors and precision floors."""

    beta: float = 1.0
    recall_floors: Sequence[float] = field(default=(0.8, 0.9, 0.95))
    precision_floors: Sequence[float] = field(default=(0.8, 0.9, 0.95))

    def __post_init__(self) -> None:
        if not (np.isfinite(self.beta) and self.beta > 0):
            raise InvalidInputError("beta", "a positive number, or 0 for 1", repr(self.beta))
        for name in ("recall_floors", "precision_floors"):
            floors = list(getattr(self, name))
            if len(floors) > MAX_FLOORS:
                raise InvalidInputError(name, f"at most {MAX_FLOORS} floors", str(len(floors)))
            for v in floors:
                if not (0.0 < float(v) <= 1.0):
                    raise InvalidInputError(name, "numbers in (0, 1]", repr(v))


def _fbeta(tp: np.ndarray, fp: np.ndarray, P: float, beta: float) -> np.ndarray:
    """F-beta at counts ``tp``, ``fp`` with ``P`` positives (0 where ``tp`` is 0)."""
    b2 = beta * beta
    den = (1 + b2) * tp + b2 * (P - tp) + fp
    out: np.ndarray = np.divide(
        (1 + b2) * tp, den, out=np.zeros_like(tp), where=(tp > 0) & (den > 0)
    )
    return out


@dataclass(frozen=True)
class _Curve:
    """The counts at every candidate threshold (the occupied bins' edges, ascending), the
    optimistic counts of the thresholds inside each bin (``tp``, ``fp_lo``), and precision and
    recall at both."""

    edges: np.ndarray
    upper_edge: np.ndarray  # where each bin's thresholds end (the next occupied bin's edge)
    tp: np.ndarray
    fp: np.ndarray
    fp_lo: np.ndarray  # the fewest false positives of a threshold inside the bin
    atomic: np.ndarray
    P: float
    precision: np.ndarray
    recall: np.ndarray
    precision_hi: np.ndarray  # the optimistic precision inside the bin


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
    P = float(tp[0]) if tp.size else 0.0
    zeros = np.zeros_like(tp)
    precision = np.divide(tp, tp + fp, out=zeros.copy(), where=(tp + fp) > 0)
    precision_hi = np.divide(tp, tp + fp_lo, out=zeros.copy(), where=(tp + fp_lo) > 0)
    recall = tp / P if P > 0 else zeros
    return _Curve(e, upper, tp, fp, fp_lo, atom, P, precision, recall, precision_hi)


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
    fb = _fbeta(c.tp, c.fp, c.P, beta), _fbeta(c.tp, c.fp_lo, c.P, beta)
    return _advice(c, kind, goal, beta, fb)


def _advice(
    c: _Curve, kind: str, goal: float, beta: float, fb: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """One goal on one curve; ``fb``: F-beta at the edges and its optimistic bound per bin."""
    if c.P <= 0:
        return {"threshold": None, "reason": "no positive samples in this window"}
    floor = goal * (1 - _TIE)
    has = c.tp > 0
    # (feasible, value, second) at the edges, and (feasible, value) of the optimistic counts
    if kind == "fbeta":
        feasible, value, second = has, fb[0], c.recall
        feasible_hi, value_hi = has, fb[1]
    elif kind == "recall_floor":
        feasible, value, second = has & (c.recall >= floor), c.precision, c.recall
        feasible_hi, value_hi = feasible, c.precision_hi
    else:
        feasible, value, second = has & (c.precision >= floor), c.recall, c.precision
        feasible_hi, value_hi = has & (c.precision_hi >= floor), c.recall
    b = _choose(kind, feasible, value, second if kind != "fbeta" else np.zeros_like(value))
    # the best any threshold could reach: each bin's optimistic counts
    bound = np.where(feasible_hi, value_hi, -np.inf)
    if b is None:
        name = {"recall_floor": "recall", "precision_floor": "precision"}[kind]
        out: dict[str, Any] = {"threshold": None, "reason": f"no threshold reaches {name} {goal}"}
        if feasible_hi.any():
            out["reason"] += " at this resolution; a threshold inside a bin might"
        return out
    chosen = float(value[b])
    could = bound >= chosen * (1 - _TIE)
    could[b] = True
    lo = float(c.edges[could].min())
    # a non-atomic bin's thresholds run up to the next edge; an atomic bin has its edge only
    hi = float(np.where(c.atomic[could], c.edges[could], c.upper_edge[could]).max())
    threshold = float(c.edges[b])
    tp, fp = float(c.tp[b]), float(c.fp[b])
    fn = c.P - tp
    out = {
        "threshold": threshold,
        "precision": _leaf(tp / (tp + fp), cf.wilson(tp, tp + fp)),
        "recall": _leaf(tp / c.P, cf.wilson(tp, c.P)),
        "f1": _leaf(2 * tp / (2 * tp + fp + fn), cf.f1_interval(tp, fp, fn)),
        "value_upper": max(chosen, float(bound.max())),
        "optimum_within": [lo, hi],
        "max_distance": max(threshold - lo, hi - threshold),
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
        c = _curve(pos, neg, edges, atomic)  # once per problem, for every goal
        beta = goals.beta
        fb = _fbeta(c.tp, c.fp, c.P, beta), _fbeta(c.tp, c.fp_lo, c.P, beta)
        entry: dict[str, Any] = {
            "best_f1" if beta == 1.0 else "best_fbeta": _advice(c, "fbeta", 0.0, beta, fb),
            "recall_floor": {
                _floor_key(r): _advice(c, "recall_floor", float(r), beta, fb)
                for r in goals.recall_floors
            },
            "precision_floor": {
                _floor_key(p): _advice(c, "precision_floor", float(p), beta, fb)
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

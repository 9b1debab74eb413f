"""Report sections that need no labels, and the label latency of delayed labels.

The label-free figures come from the ``pred_*`` fields of a state: every prediction in the window,
labelled or still awaiting its label, counted once (``counting.prediction_delta``). Shares are
weighted by ``sample_weight`` where a labelled batch carried one (predictions logged alone weigh
1), so on a stream whose predictions all came with labels they equal the confusion matrix's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .counting import CONFIDENCE_BINS, DELAY_EDGES
from .state import State

__all__ = [
    "PSI_FLOOR",
    "delay_quantile",
    "label_free_section",
    "labels_section",
    "predicted_prevalence",
    "predicted_shares",
]

PSI_FLOOR = 1e-4  # shares are floored here inside PSI's logarithm (an absent class is not inf)
_NO_PREDICTIONS = "no predictions in this window"


def _leaf(value: float | None, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    if value is not None and math.isfinite(value):
        out: dict[str, Any] = {"value": float(value)}
    else:
        out = {"value": None, "reason": reason or "undefined"}
    out.update({k: v for k, v in extra.items() if v is not None})
    return out


def predicted_shares(state: State) -> tuple[np.ndarray, np.ndarray] | None:
    """``(predicted share, mean probability)`` per class (binary: negative, positive), or None
    without predictions. Multiclass shares are argmax shares; the others thresholded."""
    c = state.counts
    W = float(c["pred_n"][1])
    if W <= 0:
        return None
    share, mean = c["pred_class"] / W, c["pred_prob"] / W
    if state.spec.task == "binary":
        share = np.array([1.0 - share[0], share[0]])
        mean = np.array([1.0 - mean[0], mean[0]])
    return share, mean


def predicted_prevalence(state: State) -> dict[str, dict[str, Any]]:
    """``imbalance.predicted_prevalence``: ``argmax`` (multiclass) or ``thresholded`` shares and
    the ``mean_probability`` per class, over every prediction in the window."""
    names = list(state.spec.classes)
    key = "argmax" if state.spec.task == "multiclass" else "thresholded"
    shares = predicted_shares(state)
    out: dict[str, dict[str, Any]] = {key: {}, "mean_probability": {}}
    for i, name in enumerate(names):
        out[key][name] = _leaf(None if shares is None else shares[0][i], _NO_PREDICTIONS)
        out["mean_probability"][name] = _leaf(
            None if shares is None else shares[1][i], _NO_PREDICTIONS
        )
    return out


def _prior_shift(state: State, reference: State | None, reference_name: str) -> dict[str, Any]:
    names = list(state.spec.classes)
    task = state.spec.task
    out: dict[str, Any] = {"reference": reference_name}
    keys = ("psi", "total_variation", "max_abs_diff")
    now = predicted_shares(state)
    ref = predicted_shares(reference) if reference is not None else None
    reason = (
        "this window is the prior reference"
        if reference is None
        else _NO_PREDICTIONS
        if now is None
        else f"no predictions in the reference window {reference_name!r}"
        if ref is None
        else None
    )
    if reason is not None:
        out.update({k: _leaf(None, reason) for k in keys})
        out["per_class"] = {n: _leaf(None, reason) for n in names}
        return out
    assert now is not None and ref is not None
    p, q = now[0], ref[0]
    diff = p - q
    pf, qf = np.maximum(p, PSI_FLOOR), np.maximum(q, PSI_FLOOR)
    if task == "multiclass":
        psi = float(((pf - qf) * np.log(pf / qf)).sum())
        tv = float(0.5 * np.abs(diff).sum())
        definition = "over the argmax class distribution"
    else:  # per label a Bernoulli: positive share and its complement
        cols = slice(1, 2) if task == "binary" else slice(None)
        p1, q1 = pf[cols], qf[cols]
        p0, q0 = np.maximum(1 - p[cols], PSI_FLOOR), np.maximum(1 - q[cols], PSI_FLOOR)
        per_label = (p1 - q1) * np.log(p1 / q1) + (p0 - q0) * np.log(p0 / q0)
        psi = float(per_label.max())
        tv = float(np.abs(diff[cols]).max())
        definition = (
            "of the thresholded positive share"
            if task == "binary"
            else "largest over labels of each label's thresholded positive share"
        )
    out["psi"] = _leaf(psi, definition=f"population stability index {definition}")
    out["total_variation"] = _leaf(tv, definition=definition)
    out["max_abs_diff"] = _leaf(float(np.abs(diff).max()))
    out["per_class"] = {n: _leaf(float(diff[i])) for i, n in enumerate(names)}
    return out


def label_free_section(
    state: State, reference: State | None, prevalence: dict[str, Any]
) -> dict[str, Any]:
    """``report["label_free"]``: the figures predictions alone give."""
    spec = state.spec
    c = state.counts
    W = float(c["pred_n"][1])
    cells = W * (1 if spec.task == "multiclass" else spec.n_columns)
    definition = (
        "top-class probability"
        if spec.task == "multiclass"
        else "probability of the predicted side, max(p, 1 - p), per label"
    )
    edges = [i / CONFIDENCE_BINS for i in range(CONFIDENCE_BINS + 1)]
    return {
        "n_predictions": int(round(c["pred_n"][0])),
        "weight_total": W,
        "predicted_prevalence": prevalence,
        "confidence": {
            "definition": definition,
            "mean": _leaf(c["pred_conf_sum"][0] / cells if cells > 0 else None, _NO_PREDICTIONS),
            "low_confidence_share": _leaf(
                c["pred_low"][0] / cells if cells > 0 else None,
                _NO_PREDICTIONS,
                threshold=spec.low_confidence,
            ),
            "histogram": {"edges": edges, "weights": [float(v) for v in c["pred_conf"]]},
        },
        "prior_shift": _prior_shift(state, reference, spec.prior_reference),
    }


def delay_quantile(counts: np.ndarray, q: float) -> float | None:
    """The ``q`` quantile of a delay histogram, interpolated linearly inside its bin (as
    Prometheus' ``histogram_quantile``); in the open last bin, the last finite edge."""
    total = float(counts.sum())
    if total <= 0:
        return None
    cum = np.cumsum(counts)
    rank = q * total
    i = int(np.searchsorted(cum, rank, side="left"))
    if i >= len(DELAY_EDGES):
        return float(DELAY_EDGES[-1])
    lower = 0.0 if i == 0 else float(DELAY_EDGES[i - 1])
    upper = float(DELAY_EDGES[i])
    before = 0.0 if i == 0 else float(cum[i - 1])
    inside = float(counts[i])
    return lower + (upper - lower) * ((rank - before) / inside if inside > 0 else 1.0)


def labels_section(state: State, status: dict[str, Any] | None) -> dict[str, Any]:
    """``report["labels"]``: how much of the window is labelled, the label delay of pairs joined
    by id, and (stream-wide, not windowed) the join table's counters."""
    c = state.counts
    n_pred = float(c["pred_n"][0])
    n_lab = float(c["n"][0])
    delays = c["delay"]
    joined = float(delays.sum())
    note = "interpolated inside the histogram's bins, as Prometheus' histogram_quantile"
    no_delay = "no pairs joined by id in this window"
    return {
        "labelled": int(round(n_lab)),
        "predictions": int(round(n_pred)),
        "labelled_share": _leaf(
            min(n_lab / n_pred, 1.0) if n_pred > 0 else None,
            _NO_PREDICTIONS,
            definition="labelled samples / predictions, both by prediction time",
        ),
        "delay_seconds": {
            "joined": int(round(joined)),
            "mean": _leaf(c["delay_sum"][0] / joined if joined > 0 else None, no_delay),
            **{
                f"p{int(q * 100)}": _leaf(delay_quantile(delays, q), no_delay, note=note)
                for q in (0.5, 0.9, 0.99)
            },
            "histogram": {"le": [*map(float, DELAY_EDGES), None], "counts": delays.tolist()},
        },
        "stream": status
        if status is not None
        else {"reason": "this store does not keep predictions awaiting labels"},
    }

"""Series of the predictions themselves: label-free figures, labelled share and label latency.

Per stream and window (from the report's ``label_free`` and ``labels`` sections): predictions in
the window, mean predicted probability per class, confidence, prior shift against the stream's
reference window, labelled share and label delay quantiles. Per stream (``labels.stream``, the
join table of delayed labels: not windowed): predictions pending, the oldest one's age, counters
of what became of predictions and labels, and the label delay histogram of the cumulative state.
Values the report leaves undefined are left out, never exported as 0.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.utils import floatToGoString

from .families import TenantFamilies

__all__ = ["DELAY_QUANTILES", "stream_series", "window_series"]

DELAY_QUANTILES = ("p50", "p90", "p99")  # report keys; exported as quantile="0.5" ...
LABEL_OUTCOMES = {  # outcome label -> join table counter
    "matched": "matched",
    "unknown": "unknown",
    "expired": "expired_labels",
    "duplicate": "duplicate_labels",
}
UNLABELLED_REASONS = {"expired": "expired", "evicted": "evicted", "duplicate_id": "duplicate_ids"}


def _value(leaf: dict[str, Any] | None) -> float | None:
    return None if not leaf else leaf.get("value")


def window_series(
    g: TenantFamilies, stream: str, window: str, report: dict[str, Any], classes: list[str]
) -> None:
    """The label-free and label latency gauges of one window's report."""
    lw = ["stream", "window"]
    key = [stream, window]
    lf = report["label_free"]
    g.gauge(
        "window_predictions", "Predictions in the window, labelled or awaiting their label", lw
    ).add_metric(key, lf["n_predictions"])
    mean_prob = g.gauge(
        "class_mean_probability_ratio",
        "Mean predicted probability of the class over the window's predictions",
        [*lw, "class"],
    )
    means = lf["predicted_prevalence"]["mean_probability"]
    for c in classes:
        v = _value(means.get(c))
        if v is not None:
            mean_prob.add_metric([*key, c], v)
    conf = lf["confidence"]
    for name, leaf, doc in (
        (
            "prediction_confidence_mean",
            conf["mean"],
            "Mean confidence of the window's predictions (multiclass: top-class probability; "
            "binary and multilabel: max(p, 1 - p) per label)",
        ),
        (
            "low_confidence_ratio",
            conf["low_confidence_share"],
            "Share of the window's predictions less confident than the stream's low_confidence",
        ),
    ):
        v = _value(leaf)
        if v is not None:
            g.gauge(name, doc, lw).add_metric(key, v)
    shift = lf["prior_shift"]
    lr = [*lw, "reference"]
    ref = shift["reference"]
    for name, doc in (
        ("psi", "Population stability index of the predicted class shares against the reference"),
        ("total_variation", "Total variation distance of the predicted class shares"),
    ):
        v = _value(shift[name])
        if v is not None:
            g.gauge(f"prior_shift_{name}", f"{doc} window", lr).add_metric([*key, ref], v)
    per_class = g.gauge(
        "class_prior_shift_ratio",
        "Predicted share of the class minus its predicted share in the reference window",
        [*lw, "class", "reference"],
    )
    for c in classes:
        v = _value(shift["per_class"].get(c))
        if v is not None:
            per_class.add_metric([*key, c, ref], v)
    labels = report["labels"]
    v = _value(labels["labelled_share"])
    if v is not None:
        g.gauge(
            "labelled_ratio",
            "Labelled samples over predictions in the window, both by prediction time",
            lw,
        ).add_metric(key, v)
    quantiles = g.gauge(
        "label_delay_quantile_seconds",
        "Label delay quantile of the pairs joined by id in the window (interpolated in the "
        "histogram's bins, as histogram_quantile)",
        [*lw, "quantile"],
    )
    delay = labels["delay_seconds"]
    for q in DELAY_QUANTILES:
        v = _value(delay[q])
        if v is not None:
            quantiles.add_metric([*key, str(int(q[1:]) / 100)], v)


def stream_series(
    g: TenantFamilies,
    stream: str,
    status: dict[str, Any],
    histogram: dict[str, Any],
    delay_sum: float,
) -> None:
    """The join table's gauges and counters and the cumulative label delay histogram.

    ``status`` is the report's ``labels.stream`` (stores without delayed labels give a reason
    instead: nothing is exported for them); ``histogram`` the cumulative report's
    ``labels.delay_seconds.histogram`` and ``delay_sum`` the sum of its delays in seconds."""
    if "pending" not in status:
        return
    ls = ["stream"]
    g.gauge("predictions_pending", "Predictions awaiting their labels", ls).add_metric(
        [stream], status["pending"]
    )
    g.gauge(
        "predictions_pending_limit",
        "Most predictions the stream keeps awaiting labels (max_pending; past it the oldest "
        "is evicted)",
        ls,
    ).add_metric([stream], status["max_pending"])
    g.gauge(
        "pending_retention_seconds",
        "Seconds a prediction awaits its label before it expires",
        ls,
    ).add_metric([stream], status["retention_seconds"])
    age = status.get("oldest_pending_age_seconds")
    if age is not None:
        g.gauge(
            "oldest_pending_age_seconds",
            "Seconds since the oldest prediction awaiting its label arrived",
            ls,
        ).add_metric([stream], age)
    g.counter(
        "predictions_logged", "Predictions stored to await their labels (log_predictions)", ls
    ).add_metric([stream], status["predictions"])
    labels = g.counter(
        "labels", "Labels received for predictions, by what became of them", [*ls, "outcome"]
    )
    for outcome, counter in LABEL_OUTCOMES.items():
        labels.add_metric([stream, outcome], status[counter])
    unlabelled = g.counter(
        "predictions_unlabelled",
        "Predictions that will never be joined with a label, by reason",
        [*ls, "reason"],
    )
    for reason, counter in UNLABELLED_REASONS.items():
        unlabelled.add_metric([stream, reason], status[counter])
    buckets, total = [], 0.0
    for le, count in zip(histogram["le"], histogram["counts"], strict=True):
        total += count
        buckets.append(("+Inf" if le is None else floatToGoString(le), total))  # type: ignore[no-untyped-call]
    g.histogram(
        "label_delay_seconds",
        "Seconds from a prediction's time to its label's arrival, pairs joined by id",
        ls,
    ).add_metric([stream], buckets, delay_sum)

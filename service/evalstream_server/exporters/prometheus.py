"""Prometheus collector: computes the gauges from store snapshots at scrape time (DESIGN §5).

Undefined values are left out, never exported as 0. Gauges cannot be summed across replicas, so
additive per-class counters (true positives, false positives, false negatives, support) are
exported too, for PromQL to aggregate numerators and denominators.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..engine import build_report
from ..store import NotFoundError
from ..store.memory import MemoryStore

__all__ = ["EvalstreamCollector"]

log = logging.getLogger("evalstream.exporter")
_AVERAGES = ("micro", "macro", "weighted", "ovo_macro", "ovo_weighted", "samples", "binary")
_CLASS_METRICS = ("roc_auc", "average_precision", "f1", "precision", "recall")


class EvalstreamCollector(Collector):
    """A ``prometheus_client`` collector over a store.

    Parameters
    ----------
    store : MemoryStore
    max_class_series : int
        Streams with more classes export per-class series for the first this many only.
    """

    def __init__(self, store: MemoryStore, max_class_series: int = 100) -> None:
        self.store = store
        self.max_class_series = max_class_series
        # (stream, window) -> (key, report): a window whose engine did not change and
        # whose time bucket did not move is not recomputed (idle streams cost nothing to scrape)
        self._cache: dict[tuple[str, str], tuple[tuple, dict]] = {}

    def _report(self, record, window: str) -> dict:
        engine = record.engine
        ring = engine.windows.get(window)
        bucket = ring.bucket_of(engine.clock()) if ring is not None else None
        key = (id(engine), engine.version, bucket)
        hit = self._cache.get((record.name, window))
        if hit is not None and hit[0] == key:
            return hit[1]
        state = self.store.state(record.name, window)
        report = build_report(state, window=window, intervals=False)
        self._cache[(record.name, window)] = (key, report)
        return report

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time; do not collect on registration

    def collect(self) -> Iterator[Metric]:
        g = _Families()
        live = set()
        for record in self.store.records():
            name = record.spec.name
            g.counter("samples", "Samples accepted", ["stream"]).add_metric(
                [name], record.engine.cumulative.n_samples
            )
            g.counter("batches", "Batches accepted", ["stream"]).add_metric(
                [name], record.engine.n_batches
            )
            if record.update_time is not None:
                g.gauge(
                    "last_ingest_timestamp_seconds",
                    "Unix time of the last accepted batch",
                    ["stream"],
                ).add_metric([name], record.update_time)
            for window in record.engine.window_names():
                live.add((name, window))
                try:
                    report = self._report(record, window)
                except NotFoundError:
                    break
                except Exception:  # noqa: BLE001 - one bad stream must not break the scrape
                    log.exception("report failed", extra={"stream": name, "window": window})
                    continue
                self._window(g, name, window, report)
                if window == "cumulative":
                    self._counters(g, name, report)
        for gone in set(self._cache) - live:
            del self._cache[gone]
        yield from g.all()

    def _classes(self, report: dict) -> list[str]:
        return report["classes"][: self.max_class_series]

    def _window(self, g: _Families, stream: str, window: str, r: dict) -> None:
        lw = ["stream", "window"]
        g.gauge("window_samples", "Samples in the window", lw).add_metric(
            [stream, window], r["n_samples"]
        )
        for metric, help_ in (
            ("roc_auc", "ROC AUC"),
            ("average_precision", "Average precision"),
            ("f1", "F1 score"),
            ("precision", "Precision"),
            ("recall", "Recall"),
        ):
            fam = g.gauge(metric, f"{help_} by average", [*lw, "average"])
            for avg in _AVERAGES:
                v = r[metric].get(avg, {}).get("value")
                if v is not None:
                    fam.add_metric([stream, window, avg], v)
        for metric in (
            "accuracy",
            "balanced_accuracy",
            "matthews_corrcoef",
            "cohen_kappa",
            "log_loss",
            "brier_score",
            "expected_calibration_error",
        ):
            v = r[metric].get("value")
            if v is not None:
                g.gauge(metric, metric.replace("_", " "), lw).add_metric([stream, window], v)
        imb = r["imbalance"]
        for metric in ("imbalance_ratio", "micro_macro_auc_gap"):
            v = imb[metric].get("value")
            if v is not None:
                g.gauge(metric, metric.replace("_", " "), lw).add_metric([stream, window], v)
        lc = [*lw, "class"]
        names = self._classes(r)
        for metric in _CLASS_METRICS:
            per = r[metric].get("per_class")
            if per is None and r["task"] == "binary" and metric in ("roc_auc", "average_precision"):
                per = {r["classes"][1]: r[metric]["binary"]}
            if not per:
                continue
            fam = g.gauge(f"class_{metric}", f"Per-class {metric.replace('_', ' ')}", lc)
            for c in names:
                leaf = per.get(c)
                if leaf and leaf.get("value") is not None and not leaf.get("zero_division"):
                    fam.add_metric([stream, window, c], leaf["value"])
        support = g.gauge("class_support", "Samples of the class in the window", lc)
        prevalence = g.gauge("class_prevalence_ratio", "Class share of the window's samples", lc)
        predicted = g.gauge(
            "class_predicted_prevalence_ratio", "Share of samples predicted as the class", lc
        )
        pp = imb["predicted_prevalence"]
        shares = pp.get("argmax") or pp.get("thresholded") or {}
        for c in names:
            support.add_metric([stream, window, c], imb["support"][c]["value"])
            for fam, leaf in ((prevalence, imb["prevalence"][c]), (predicted, shares.get(c))):
                if leaf and leaf.get("value") is not None:
                    fam.add_metric([stream, window, c], leaf["value"])

    def _counters(self, g: _Families, stream: str, r: dict) -> None:
        lc = ["stream", "class"]
        mcm = r["multilabel_confusion_matrix"]
        classes = r["classes"]
        cells = {c: (m[1][1], m[0][1], m[1][0]) for c, m in zip(classes, mcm, strict=True)}
        names = self._classes(r)
        tp_f = g.counter("class_true_positives", "True positives (cumulative)", lc)
        fp_f = g.counter("class_false_positives", "False positives (cumulative)", lc)
        fn_f = g.counter("class_false_negatives", "False negatives (cumulative)", lc)
        # named apart from the windowed gauge evalstream_class_support (one family per name)
        sup_f = g.counter("class_samples", "Samples of the class (cumulative)", lc)
        for c in names:
            tp, fp, fn = cells[c]
            tp_f.add_metric([stream, c], tp)
            fp_f.add_metric([stream, c], fp)
            fn_f.add_metric([stream, c], fn)
            sup_f.add_metric([stream, c], tp + fn)


class _Families:
    """Metric families by name, created on first use, all prefixed ``evalstream_``."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def gauge(self, name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        key = f"evalstream_{name}"
        fam = self._families.get(key)
        if fam is None:
            fam = self._families[key] = GaugeMetricFamily(key, doc, labels=labels)
        return fam  # type: ignore[return-value]

    def counter(self, name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
        key = f"evalstream_{name}_total"
        fam = self._families.get(key)
        if fam is None:
            fam = self._families[key] = CounterMetricFamily(
                f"evalstream_{name}", doc, labels=labels
            )
        return fam  # type: ignore[return-value]

    def all(self) -> Iterator[Metric]:
        yield from self._families.values()

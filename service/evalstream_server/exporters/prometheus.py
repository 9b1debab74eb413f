"""Prometheus collector: computes the gauges from store snapshots at scrape time (DESIGN §5).

A window's series are rendered to exposition text when its report is computed and the text is
kept (``text``), not the report: a scrape joins the kept text (``exposition``, what ``/metrics``
serves) and only formats the per-stream series that change with every batch.

Undefined values are left out, never exported as 0. Gauges cannot be summed across replicas, so
additive per-class counters (true positives, false positives, false negatives, support) are
exported too, for PromQL to aggregate numerators and denominators. The label-free figures, the
labelled share and the label latency of delayed labels are exported by ``predictions``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ..allocator import release_free_memory
from ..engine import CUMULATIVE, build_report
from ..engine.compare import compare, compare_reference
from ..store import NotFoundError, Store, StreamRecord
from ..store.base import report_version
from .estimated import estimated_series
from .families import Families as _Families
from .families import TenantFamilies
from .predictions import stream_series, window_series
from .text import Exposition, Part, render

__all__ = ["EvalstreamCollector", "AUTO_REFRESH", "AUTO_REFRESH_SECONDS"]

# ``refresh_interval=AUTO_REFRESH`` (the server's default): compute on the scrape until a scrape
# runs out of its budget, then refresh in the background every AUTO_REFRESH_SECONDS. Measured
# with bench/fleet.py on the loaded 2-core machine: 20 busy streams (K = 10, 5m and 1h) scraped
# in 1.16 s at p50 computing on the scrape (its whole 1 s budget) against 0.12 s with a 10 s
# refresh; 1,000 busy streams at p99 1.8 - 2.1 s against 0.76 s (README, "What a stream costs").
AUTO_REFRESH = -1.0
AUTO_REFRESH_SECONDS = 10.0

log = logging.getLogger("evalstream.exporter")
_AVERAGES = ("micro", "macro", "weighted", "ovo_macro", "ovo_weighted", "samples", "binary")
_CLASS_METRICS = ("roc_auc", "average_precision", "f1", "precision", "recall")
_COMPARED = ("roc_auc", "recall", "precision", "f1")


@dataclass(frozen=True)
class _Entry:
    """A window's series as exposition text, and what the scrape needs besides them."""

    key: tuple[Any, ...]
    parts: tuple[Part, ...]
    histogram: dict[str, Any] | None  # the cumulative label delay histogram (None: no labels)
    delay_sum: float  # sum of the window's label delays (the histogram's _sum)


class EvalstreamCollector(Collector):
    """A ``prometheus_client`` collector over a store.

    Parameters
    ----------
    store : Store
    max_class_series : int
        Streams with more classes export per-class series for the first this many only.
    refresh_interval : float
        > 0: a background thread recomputes the changed reports this often (``start``);
        ``AUTO_REFRESH``: reports are computed on the scrape until a scrape runs out of its
        ``scrape_budget``, and from then on every ``AUTO_REFRESH_SECONDS`` in the background;
        0: always on the scrape.
    scrape_budget : float
        Seconds of report computation one scrape may spend (without a background refresh);
        past them, a changed window is served as last computed, and the next scrape starts
        where this one stopped (so every window is recomputed in turn).
    max_window_series : int
        Windows per stream that get series (``cumulative`` first, then as declared).

    Per stream, ``evalstream_exporter_left_out{what}`` counts the classes and windows the two
    limits leave out (series are never dropped silently).
    """

    def __init__(
        self,
        store: Store,
        max_class_series: int = 100,
        refresh_interval: float = 0.0,
        scrape_budget: float = 1.0,
        max_window_series: int = 100,
    ) -> None:
        self.store = store
        self.max_class_series = max_class_series
        self.scrape_budget = scrape_budget
        self.max_window_series = max_window_series
        self._resume = 0  # where the next scrape starts recomputing (its budget ran out here)
        self._built = 0  # reports built since the heaps' free pages were last given back
        self.stale_served = 0  # windows the last scrape served as last computed
        # > 0: a background thread recomputes changed reports every this many seconds and a
        # scrape serves what it computed (at most about one interval old) instead of computing
        # on the scrape, which bounds the scrape time of many busy streams (`start()`).
        self.auto_refresh = refresh_interval == AUTO_REFRESH
        self.refresh_interval = 0.0 if self.auto_refresh else refresh_interval
        self._started = False  # start() was called (the server serves /metrics)
        self._starting = threading.Lock()  # scrapes may turn the automatic refresh on at once
        self.last_sweep_seconds: float | None = None
        self.last_sweep_time: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._swept = threading.Condition()
        self.sweeps = 0
        # (stream, window) -> entry: a window whose engine did not change and whose time bucket
        # (and its prior reference window's bucket) did not move is not recomputed, so idle
        # streams cost nothing to scrape.
        self._cache: dict[tuple[str, str], _Entry] = {}
        # stream -> (engine key, join table status): the stream-wide part of labels
        self._status: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def _key(self, record: StreamRecord, window: str) -> tuple[Any, ...]:
        """What a window's report depends on besides time (``store.report_version``). The join
        table status in the report also depends on the clock; ``_stream_status`` refreshes
        it. A window's comparison depends on its reference window too."""
        if window == CUMULATIVE:
            return report_version(record, window)
        reference = compare_reference(record.engine.window_names(), window)
        return (report_version(record, window), report_version(record, reference))

    def _report(self, record: StreamRecord, window: str) -> _Entry:
        key = self._key(record, window)
        hit = self._cache.get((record.name, window))
        if hit is not None and hit.key == key:
            return hit
        self._built += 1
        state, reference, labels = self.store.report_context(record.name, window)
        report = build_report(
            state, window=window, intervals=False, reference=reference, labels=labels
        )
        g = _Families()
        t = g.of_tenant(record.tenant)
        name = record.spec.name
        self._window(t, name, window, report)
        window_series(t, name, window, report, self._classes(report))
        estimated_series(t, name, window, report, self._classes(report))
        if window != CUMULATIVE:
            reference_window = compare_reference(record.engine.window_names(), window)
            whole = self.store.report_context(record.name, reference_window)[0]
            doc = compare(state, whole, "rest", average_precision=False)
            self._compare(t, name, window, reference_window, doc, self._classes(report))
        histogram = None
        if window == CUMULATIVE:
            self._counters(t, name, report)
            if "pending" in report["labels"]["stream"]:  # a store with delayed labels
                histogram = report["labels"]["delay_seconds"]["histogram"]
        delay_sum = float(state.counts["delay_sum"][0])
        entry = _Entry(key, render(g.all()), histogram, delay_sum)
        self._cache[(record.name, window)] = entry
        if labels is not None:
            self._status[record.name] = ((id(record.engine), record.engine.version), labels)
        return entry

    def _stream_status(self, record: StreamRecord) -> dict[str, Any] | None:
        """The join table status, fresh for this scrape.

        It changes without a new version only while predictions are pending (their age grows,
        and they expire): then it is read again; with nothing pending it only changes with the
        version."""
        hit = self._status.get(record.name)
        engine = record.engine
        if hit is not None and hit[0] == (id(engine), engine.version) and not hit[1]["pending"]:
            return hit[1]
        if (
            hit is not None
            and self._thread is not None
            and threading.current_thread() is not self._thread
        ):
            return hit[1]  # a scrape with a background refresh: as of the last sweep
        labels = self.store.label_status(record.name)
        if labels is not None:
            self._status[record.name] = ((id(engine), engine.version), labels)
        return labels

    # -- background refresh --------------------------------------------------------------------
    def start(self) -> EvalstreamCollector:
        """Start the background refresh (when ``refresh_interval > 0``; in the automatic mode,
        once a scrape ran out of its budget)."""
        with self._starting:
            self._started = True
            if self.refresh_interval > 0 and self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._refresh_loop, name="evalstream-metrics-refresh", daemon=True
                )
                self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_for_sweep(self, after: int, timeout: float) -> bool:
        """Wait until sweep number ``after + 1`` has finished (tests, benchmarks)."""
        with self._swept:
            return self._swept.wait_for(lambda: self.sweeps > after, timeout)

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("metrics refresh failed")
            took = time.perf_counter() - started
            self._stop.wait(max(self.refresh_interval - took, 0.0))

    def sweep(self) -> None:
        """Bring every window's report and every join table status up to date."""
        started = time.perf_counter()
        for record in self.store.records():
            for window in record.engine.window_names()[: self.max_window_series]:
                try:
                    self._report(record, window)
                except NotFoundError:
                    break
                except Exception:  # noqa: BLE001 - as in collect
                    log.exception("report failed", extra={"stream": record.name})
            try:
                self._stream_status(record)
            except NotFoundError:
                pass
        self._built = 0
        release_free_memory()  # what the sweep's report states left in the heaps
        self.last_sweep_seconds = time.perf_counter() - started
        self.last_sweep_time = time.time()
        with self._swept:
            self.sweeps += 1
            self._swept.notify_all()

    def _served(self, record: StreamRecord, window: str, deadline: float) -> _Entry | None:
        """The entry a scrape exports: with a background refresh, whatever it computed last;
        otherwise fresh. A window the refresh has not reached yet, or one that changed, is
        computed now while the scrape's budget lasts (``deadline``); past it, it is served as
        last computed, or not yet when never computed (a later scrape or sweep brings it)."""
        hit = self._cache.get((record.name, window))
        if hit is not None and (self._thread is not None or hit.key == self._key(record, window)):
            return hit
        if time.perf_counter() > deadline:
            self.stale_served += 1
            return hit
        return self._report(record, window)

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time; do not collect on registration

    def collect(self) -> Iterator[Metric]:
        """The families of ``exposition`` as ``prometheus_client`` metrics (for a registry:
        parsed back from the text, so both are the same series)."""
        yield from text_string_to_metric_families(self.exposition().decode())

    def exposition(self) -> bytes:
        """The scrape in the Prometheus text format (0.0.4): what ``/metrics`` serves.

        The per-stream counters are read once, committed, before the reports
        (``Store.export_records``): a batch applied while the scrape computes them is left for
        the next scrape, so nothing unacknowledged shows and a counter never goes back (a
        failed commit rolls memory back to what was read)."""
        exported = self.store.export_records()
        records = [e.record for e in exported]
        # Reports first, starting where the last scrape's budget ran out; text in store order.
        entries: dict[tuple[str, str], _Entry] = {}
        deadline = time.perf_counter() + self.scrape_budget
        self.stale_served = 0
        start = self._resume % len(records) if records else 0
        resume = None
        for i in range(len(records)):
            record = records[(start + i) % len(records)]
            if resume is None and i > 0 and time.perf_counter() > deadline:
                resume = start + i
            until = math.inf if i == 0 else deadline  # at least one stream a scrape: progress
            for window in record.engine.window_names()[: self.max_window_series]:
                try:
                    entry = self._served(record, window, until)
                except NotFoundError:
                    break
                except Exception:  # noqa: BLE001 - one bad stream must not break the scrape
                    log.exception("report failed", extra={"stream": record.name, "window": window})
                    continue
                if entry is not None:
                    entries[(record.name, window)] = entry
        self._resume = start if resume is None else resume
        out = Exposition()
        live: set[tuple[str, str]] = set()
        for counts in exported:
            record = counts.record
            name = record.spec.name
            g = _Families()
            t = g.of_tenant(record.tenant)  # the stream's series, labelled with its tenant
            t.counter("samples", "Samples accepted", ["stream"]).add_metric([name], counts.samples)
            t.counter("batches", "Batches accepted", ["stream"]).add_metric([name], counts.batches)
            if counts.update_time is not None:
                t.gauge(
                    "last_ingest_timestamp_seconds",
                    "Unix time of the last accepted batch",
                    ["stream"],
                ).add_metric([name], counts.update_time)
            names = record.engine.window_names()
            live.update((record.name, w) for w in names)  # the cache's keys: the store's
            windows = [entries[(record.name, w)] for w in names if (record.name, w) in entries]
            cumulative = entries.get((record.name, CUMULATIVE))
            if cumulative is not None and cumulative.histogram is not None:
                self._labels(t, record, cumulative.histogram, cumulative.delay_sum)
            left_out = g.gauge(
                "exporter_left_out",
                "Classes without per-class series and windows without series (the exporter's "
                "per-stream limits)",
                ["tenant", "stream", "what"],
            )
            n_classes = len(record.spec.classes)
            left_out.add_metric(
                [record.tenant, name, "classes"], max(n_classes - self.max_class_series, 0)
            )
            left_out.add_metric(
                [record.tenant, name, "windows"], max(len(names) - self.max_window_series, 0)
            )
            out.add(render(g.all()))
            for entry in windows:
                out.add(entry.parts)
        for gone in set(self._cache) - live:
            self._cache.pop(gone, None)  # the refresh thread may have dropped it too
        for stream in set(self._status) - {key for key, _ in live}:
            self._status.pop(stream, None)
        g = _Families()
        g.gauge(
            "store_writable",
            "1 while the store accepts writes, 0 while they fail (a full disk: the store retries "
            "by itself; the in-memory and Redis stores report 1)",
            [],
        ).add_metric([], 1.0 if self.store.writable() else 0.0)
        g.gauge(
            "exporter_stale_windows",
            "Changed windows this scrape served as last computed, or left out when never "
            "computed yet (its report budget ran out; later scrapes or sweeps bring them)",
            [],
        ).add_metric([], self.stale_served)
        if self._thread is not None and self.last_sweep_seconds is not None:
            g.gauge(
                "exporter_refresh_seconds", "Duration of the last background report refresh", []
            ).add_metric([], self.last_sweep_seconds)
            g.gauge(
                "exporter_refresh_timestamp_seconds",
                "Unix time the last background report refresh ended (values are that old)",
                [],
            ).add_metric([], self.last_sweep_time or 0.0)
        out.add(render(g.all()))
        if self._built and self._thread is None:
            self._built = 0
            release_free_memory()  # what this scrape's report states left in the heaps
        if self.auto_refresh and self.stale_served and self._started and self._thread is None:
            # the fleet outgrew computing on the scrape: the background refresh takes over
            log.info(
                "metrics refresh turned on",
                extra={"seconds": AUTO_REFRESH_SECONDS, "stale_windows": self.stale_served},
            )
            self.refresh_interval = AUTO_REFRESH_SECONDS
            self.start()
        return out.text().encode()

    def _labels(
        self,
        g: TenantFamilies,
        record: StreamRecord,
        histogram: dict[str, Any],
        delay_sum: float,
    ) -> None:
        try:
            status = self._stream_status(record)
        except NotFoundError:
            return
        if status is not None:
            stream_series(g, record.spec.name, status, histogram, delay_sum)

    def _classes(self, report: dict[str, Any]) -> list[str]:
        return list(report["classes"][: self.max_class_series])

    def _window(self, g: TenantFamilies, stream: str, window: str, r: dict[str, Any]) -> None:
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

    def _compare(
        self,
        g: TenantFamilies,
        stream: str,
        window: str,
        reference: str,
        doc: dict[str, Any],
        names: list[str],
    ) -> None:
        """The window against the rest of its reference window (engine/compare.py): the
        difference and its standardised value (z) per average, and per class also the
        Benjamini-Hochberg adjusted p-value across the classes."""
        if "reason" in doc:
            return
        lw = ["stream", "window", "reference", "metric"]
        diff = g.gauge(
            "compare_difference",
            "Window minus the rest of its reference window, by metric and average",
            [*lw, "average"],
        )
        zscore = g.gauge(
            "compare_zscore",
            "The difference over its standard error (two-sided test against 0)",
            [*lw, "average"],
        )
        cdiff = g.gauge(
            "class_compare_difference",
            "Per-class window minus the rest of its reference window",
            [*lw, "class"],
        )
        cz = g.gauge(
            "class_compare_zscore", "Per-class difference over its standard error", [*lw, "class"]
        )
        cq = g.gauge(
            "class_compare_qvalue",
            "Benjamini-Hochberg adjusted p-value of the per-class difference across classes",
            [*lw, "class"],
        )
        for metric in _COMPARED:
            group = doc.get(metric, {})
            for avg, leaf in group.items():
                if avg == "per_class" or leaf.get("value") is None:
                    continue
                diff.add_metric([stream, window, reference, metric, avg], leaf["value"])
                if "z" in leaf:
                    zscore.add_metric([stream, window, reference, metric, avg], leaf["z"])
            per = group.get("per_class", {})
            for c in names:
                leaf = per.get(c)
                if not leaf or leaf.get("value") is None:
                    continue
                labels = [stream, window, reference, metric, c]
                cdiff.add_metric(labels, leaf["value"])
                if "z" in leaf:
                    cz.add_metric(labels, leaf["z"])
                if "q_value" in leaf:
                    cq.add_metric(labels, leaf["q_value"])

    def _counters(self, g: TenantFamilies, stream: str, r: dict[str, Any]) -> None:
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

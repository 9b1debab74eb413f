"""The dashboards and alerts against a real Prometheus scraping the real service.

A module fixture starts the evalstream server (gRPC and /metrics on free loopback ports) and
``/usr/bin/prometheus`` (scrape and rule evaluation every second, the repository's
``rules/recording.yml`` and an alert file generated from ``rules/alerts.yml``). Two seeded,
imbalanced multiclass streams with windows ["5m", "1h"] are fed through gRPC:

* ``live-healthy``: four classes (60/27/8/5%), every class well separated;
* ``live-degraded``: the same mix, but 80% of the minority class ``bus`` is confused with ``car``
  (bus recall about 0.25 in every window, micro minus macro AUC about 0.12);
* ``live-prior-stable``: predictions only (``log_predictions``), 3000 stamped 30 minutes ago and
  1000 now with the same class mix, then labels for 2000 old and 500 new ones (label delays of
  about 30 minutes and of about a second; 1500 predictions stay pending);
* ``live-prior-shifted``: predictions only, never labelled: 3000 old ones with the usual mix and
  1000 recent ones with the mix 10/20/35/35%, so the 5m window's predicted class shares shift
  against the cumulative reference (PSI about 1) and ``EvalstreamPriorShift`` fires without a
  single label.

The streams are created first and fed only after Prometheus has scraped their counters at 0, so
``rate()`` over the cumulative counters sees the whole stream (first sample 0: the extrapolation
is the same for every counter and cancels in the recording rules' ratios, which then equal the
report exactly).

Alert file used (generated in tmp from the real alerts.yml, nothing else changed):
  * ``for:`` of every alert in the ``evalstream.quality`` group set to ``0s`` (15m/30m would never
    fire within the test);
  * the ``evalstream.service`` group is loaded unchanged (no alert of it may even be pending);
  * expressions, labels, annotations, windows and guards are unchanged: the "5m" and "1h"
    windows of the live service hold the whole test stream, and the data meets the guards (at
    least 50 samples of the class, at least 1000 in the window) by construction.

Panels that can only have data under a condition are handled, not skipped: the rate panels get
their two scrapes (counters at 0, then fed); the ``ALERTS`` panels are evaluated once the
degraded stream's alerts fire, and for the quiet streams they must return no ALERTS series
(``count(...) or vector(0)`` returns their 0). A panel may be empty for a stream and window only
where the report says an input of its query is undefined there: quality metrics of a stream
without labels, label delays without joined pairs, the oldest pending age with nothing pending.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import yaml
from evalstream import EvalClient
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from live import (
    CLASSES,
    PROM_DIR,
    STREAM_STATUS_KEYS,
    WINDOWED_REPORT_VALUES,
    PanelQuery,
    PredictionPlan,
    PrometheusAPI,
    PrometheusProcess,
    StreamPlan,
    create_prediction_stream,
    create_stream,
    feed_predictions,
    find_prometheus,
    finite,
    get_report,
    ingest_stream,
    load_dashboards,
    panel_queries,
    parse_time,
    scrape_config,
    shortened_alert_rules,
    substitute,
    textbox_values,
    threshold,
    variable_queries,
    wait_until,
    windowed_report_value,
)

HEALTHY = StreamPlan("live-healthy", seed=8, batches=5, batch_rows=1200, degraded=False)
DEGRADED = StreamPlan("live-degraded", seed=7, batches=4, batch_rows=1000, degraded=True)
PRIOR_STABLE = PredictionPlan(
    "live-prior-stable", seed=9, old_rows=3000, new_rows=1000, shifted=False,
    labelled_old=2000, labelled_new=500,
)  # fmt: skip
PRIOR_SHIFTED = PredictionPlan(
    "live-prior-shifted", seed=10, old_rows=3000, new_rows=1000, shifted=True
)
# predictions only; the minority class "bus" loses its signal in the last 5 minutes
BLURRED = PredictionPlan(
    "live-minority-blurred", seed=12, old_rows=3000, new_rows=1000, shifted=False,
    minority_blurred=True,
)  # fmt: skip
LABELLED = {p.name: p for p in (HEALTHY, DEGRADED)}  # fed with labels at once (Ingest)
DELAYED = {p.name: p for p in (PRIOR_STABLE, PRIOR_SHIFTED, BLURRED)}  # predictions first
PLANS: dict[str, StreamPlan | PredictionPlan] = {**LABELLED, **DELAYED}
QUIET = (HEALTHY.name, PRIOR_STABLE.name)  # no alert may fire or be pending for these
REPORT_WINDOWS = ("cumulative", "5m", "1h")
QUALITY_GROUP, TEST_FOR = "evalstream.quality", "0s"
EXPECTED_FIRING = {
    ("EvalstreamMinorityClassRecallLow", DEGRADED.name, "bus"),
    ("EvalstreamMicroMacroAUCGapHigh", DEGRADED.name, None),
    ("EvalstreamPriorShift", PRIOR_SHIFTED.name, None),
    ("EvalstreamEstimatedMinorityRecallDrop", BLURRED.name, "bus"),
}
WAIT_S = 30  # every wait on Prometheus is bounded by this
REL = 1e-9  # gauges travel as shortest round-trip decimals; rule outputs add float rounding


# ----------------------------------------------------------------------------------------------
# Fixtures: the service, Prometheus, the fed streams, the firing alerts


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return find_prometheus()  # fails (never skips) with the install hint


@dataclass
class Service:
    """The servers Prometheus scrapes: gRPC calls go to the first, ``EvalClient`` to the last."""

    servers: list[ServerThread]
    token_file: Path  # the bearer token /metrics requires

    @property
    def target(self) -> str:
        return self.servers[0].target

    @property
    def client_target(self) -> str:
        return self.servers[-1].target

    @property
    def instances(self) -> set[str]:
        return {f"127.0.0.1:{s.metrics_port}" for s in self.servers}


@pytest.fixture(scope="module", params=["one-server", "two-replicas-on-redis"])
def service(request, tmp_path_factory):
    """One in-memory server; or two replicas sharing one Redis, each exporting its share of the
    streams (fixed replica ids: the live streams split two and two), both scraped: the dashboards
    and alerts must work unchanged on either."""
    token = tmp_path_factory.mktemp("metrics") / "metrics-token"
    token.write_text("live-scrape-token-0123456789\n")
    settings = Settings(
        host="127.0.0.1", grpc_port=0, metrics_port=0, metrics_token_file=str(token)
    )
    if request.param == "one-server":
        srv = ServerThread(settings).start()
        try:
            yield Service([srv], token)
        finally:
            srv.stop()
        return
    from evalstream_server.store.redis_store import RedisStore

    from tests.redis.conftest import RedisServer  # skips where redis-server is not installed

    redis_server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    url = redis_server.url + "?flush_interval=0.02"
    replicas: list[ServerThread] = []
    try:
        for i in range(2):
            store = RedisStore.from_url(url, replica=f"replica-{i}")
            replicas.append(ServerThread(settings, store=store).start())
        yield Service(replicas, token)
    finally:
        for srv in replicas:
            srv.stop()
        redis_server.stop()


@pytest.fixture(scope="module")
def stub(service):
    channel = grpc.insecure_channel(service.target)
    try:
        yield rpc.EvalstreamServiceStub(channel)
    finally:
        channel.close()


@pytest.fixture(scope="module")
def repo_alerts() -> dict:
    return yaml.safe_load((PROM_DIR / "rules" / "alerts.yml").read_text())


@pytest.fixture(scope="module")
def repo_recording() -> dict:
    return yaml.safe_load((PROM_DIR / "rules" / "recording.yml").read_text())


@pytest.fixture(scope="module")
def thresholds(repo_alerts, repo_recording) -> dict[str, float]:
    """The thresholds the test data must clearly cross, read from the rule files."""

    def expr(doc: dict, key: str, name: str) -> str:
        return next(r["expr"] for g in doc["groups"] for r in g["rules"] if r.get(key) == name)

    recall = expr(repo_alerts, "alert", "EvalstreamMinorityClassRecallLow")
    gap = expr(repo_alerts, "alert", "EvalstreamMicroMacroAUCGapHigh")
    collapse = expr(repo_alerts, "alert", "EvalstreamClassPredictionCollapse")
    minority = expr(
        repo_recording, "record", "stream_window_class:evalstream_class_recall:minority"
    )
    prior = expr(repo_alerts, "alert", "EvalstreamPriorShift")
    confidence = expr(repo_alerts, "alert", "EvalstreamLowConfidenceRise")
    estimated_recall = expr(repo_alerts, "alert", "EvalstreamEstimatedMinorityRecallDrop")
    estimated_f1 = expr(repo_alerts, "alert", "EvalstreamEstimatedMacroF1Drop")
    return {
        "recall_max": threshold(recall, r':minority\{window="1h"\}\s*<\s*([\d.]+)'),
        "support_min": threshold(recall, r'class_support\{window="1h"\}\s*>=\s*([\d.]+)'),
        "gap_max": threshold(gap, r'auc_gap\{window="1h"\}\s*>\s*([\d.]+)'),
        "samples_min": threshold(gap, r'window_samples\{window="1h"\}\s*>=\s*([\d.]+)'),
        "collapse": threshold(collapse, r':ratio\{window="1h"\}\s*<\s*([\d.]+)'),
        "minority": threshold(minority, r"evalstream_class_prevalence_ratio\s*<\s*([\d.]+)"),
        "psi_max": threshold(prior, r'shift_psi\{window="5m"\}\s*>\s*([\d.]+)'),
        "predictions_min": threshold(prior, r'predictions\{window="5m"\}\s*>=\s*([\d.]+)'),
        "low_confidence_rise": threshold(confidence, r"\)\s*>\s*([\d.]+)"),
        "estimated_recall_drop": -threshold(estimated_recall, r"\)\s*<\s*-([\d.]+)"),
        "estimated_f1_drop": -threshold(estimated_f1, r"\)\s*<\s*-([\d.]+)"),
    }


@pytest.fixture(scope="module")
def shortened_alerts(repo_alerts) -> dict:
    return shortened_alert_rules(repo_alerts, QUALITY_GROUP, TEST_FOR)


@pytest.fixture(scope="module")
def prometheus(prometheus_binary, service, shortened_alerts, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("prometheus")
    alerts_path = workdir / "alerts-for-0s.yml"
    alerts_path.write_text(yaml.safe_dump(shortened_alerts, sort_keys=False))
    config = scrape_config(
        [s.metrics_port for s in service.servers],
        [PROM_DIR / "rules" / "recording.yml", alerts_path],
        service.token_file,
    )
    proc = PrometheusProcess(prometheus_binary, workdir, config)
    try:
        api = proc.start()
        yield api
    finally:
        proc.stop()


@dataclass
class Fed:
    reports: dict[tuple[str, str], dict]  # (stream, window) -> GetReport JSON
    ingest_started: float
    ingest_ended: float
    reports_at: float  # just after the reports were read (the pending ages are as of then)


def _values(api: PrometheusAPI, expr: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for s in api.query(expr):
        out.setdefault(s["metric"].get("stream", ""), []).append(s["value"])
    return out


def _rules_evaluated_after(api: PrometheusAPI, t: float) -> bool:
    groups = api.rule_groups()
    return bool(groups) and all(parse_time(g["lastEvaluation"]) >= t for g in groups)


@pytest.fixture(scope="module")
def client(service):
    with EvalClient(service.client_target) as c:
        yield c


@pytest.fixture(scope="module")
def fed(stub, client, prometheus) -> Fed:
    names = "|".join(PLANS)
    for plan in LABELLED.values():
        create_stream(stub, plan)
    for plan in DELAYED.values():
        create_prediction_stream(client, plan)

    # 1. Prometheus holds every class counter at 0 (the first point of every rate()).
    def zeros_scraped():
        got = _values(prometheus, f'evalstream_class_samples_total{{stream=~"{names}"}}')
        return all(got.get(n) == [0.0] * len(CLASSES) for n in PLANS)

    wait_until("the first scrape of the new streams (counters at 0)", zeros_scraped, WAIT_S)

    # 2. Feed them, then wait until a scrape carries every sample...
    started = time.time()
    for plan in LABELLED.values():
        ingest_stream(stub, plan)
    for plan in DELAYED.values():
        feed_predictions(client, plan)
    ended = time.time()

    def totals_scraped():
        got = _values(prometheus, f'evalstream_samples_total{{stream=~"{names}"}}')
        logged = _values(prometheus, "evalstream_predictions_logged_total")
        return all(got.get(n) == [float(p.n_samples)] for n, p in PLANS.items()) and all(
            logged.get(n) == [float(p.n_predictions)] for n, p in DELAYED.items()
        )

    wait_until(
        "a scrape with every fed sample",
        totals_scraped,
        WAIT_S,
        detail=lambda: str(_values(prometheus, "evalstream_samples_total")),
    )
    # 3. ...and until every rule group has been evaluated twice since (an evaluation's timestamp
    # is aligned down to the 1 s interval, so one evaluation after `seen` may predate the scrape).
    seen = time.time()
    wait_until(
        "two rule evaluations after the final scrape",
        lambda: _rules_evaluated_after(prometheus, seen + 1.1),
        WAIT_S,
    )
    reports = {(n, w): get_report(stub, n, w) for n in PLANS for w in REPORT_WINDOWS}
    reports_at = time.time()
    for (n, w), rep in reports.items():
        if n in LABELLED:
            assert rep["n_samples"] == PLANS[n].n_samples  # every window holds the whole stream
        else:
            got = (rep["label_free"]["n_predictions"], rep["n_samples"])
            assert got == DELAYED[n].in_window(w), (n, w, got)
    return Fed(reports, started, ended, reports_at)


def _firing_keys(alerts: list[dict]) -> set[tuple[str, str | None, str | None]]:
    return {
        (a["labels"]["alertname"], a["labels"].get("stream"), a["labels"].get("class"))
        for a in alerts
        if a["state"] == "firing"
    }


@pytest.fixture(scope="module")
def firing(fed, prometheus) -> list[dict]:
    """The active alerts once the degraded stream's two alerts fire and are in ALERTS."""

    def detail() -> str:
        lines = [f"active alerts: {prometheus.alerts()}"]
        for expr in (
            'stream_window_class:evalstream_class_recall:minority{window="1h"}',
            'evalstream_class_support{window="1h"}',
            'evalstream_micro_macro_auc_gap{window="1h"}',
            'evalstream_window_samples{window="1h"}',
        ):
            lines.append(f"{expr}: {prometheus.query(expr)}")
        return "\n".join(lines)

    wait_until(
        f"{sorted(EXPECTED_FIRING, key=str)} to fire",
        lambda: EXPECTED_FIRING <= _firing_keys(prometheus.alerts()),
        WAIT_S,
        detail=detail,
    )
    wait_until(
        "the firing alerts in the ALERTS series",
        lambda: len(prometheus.query('ALERTS{alertstate="firing"}')) >= len(EXPECTED_FIRING),
        WAIT_S,
    )
    return prometheus.alerts()


# ----------------------------------------------------------------------------------------------
# Expected values: every series a panel shows, from the reports


class Expectation:
    """Checks one sample (metric name and labels) against the reports; says which key it was."""

    def __init__(self, fed: Fed, alerts: list[dict], at: float, minority: float) -> None:
        self.fed = fed
        self.alerts = alerts  # the active alerts, for the ALERTS series
        self.at = at  # the evaluation time of every query of one check
        self.minority = minority  # the minority-class prevalence threshold of recording.yml

    def report(self, labels: dict, window: str | None = None) -> dict:
        stream = labels.get("stream")
        assert stream in PLANS, f"series of an unknown stream: {labels}"
        return self.fed.reports[(stream, window or labels["window"])]

    def status(self, labels: dict) -> dict:
        """The stream's join table (stream-wide counters and what is pending)."""
        return self.report(labels, "cumulative")["labels"]["stream"]

    def missing_input(self, query: PanelQuery, values: dict) -> str | None:
        """Why the report has nothing for ``query`` on ``values``' stream (and window, when
        the query uses $window), or None when it must return data."""
        window = values["window"] if "$window" in query.expr else "cumulative"
        stream = values.get("stream")
        if stream is None:
            return None  # fleet panels: some stream always has data
        rep = self.fed.reports[(stream, window)]
        for name in re.findall(r"[A-Za-z_][\w:]*", re.sub(r"\{[^{}]*\}", "", query.expr)):
            if name in NEEDS_LABELS and rep["n_samples"] == 0:
                return f"{name}: no labelled samples in {stream} {window}"
            if "label_delay" in name and rep["labels"]["delay_seconds"]["joined"] == 0:
                return f"{name}: no pairs joined by id in {stream} {window}"
            if "labels_unmatched" in name and not rep["labels"]["stream"]["labels"]:
                return f"{name}: no labels by id for {stream}"
            judged = rep["estimated"]["judged"]
            if "estimation_abs_error" in name and "reason" in judged:
                return f"{name}: {judged['reason']} ({stream} {window})"
            if name == "stream_window_class:evalstream_estimated_class_recall:minority" and all(
                leaf["value"] >= self.minority for leaf in rep["estimated"]["prevalence"].values()
            ):
                return f"{name}: no class has an expected share under the minority threshold"
            if name == "evalstream_oldest_pending_age_seconds":
                if rep["labels"]["stream"]["oldest_pending_age_seconds"] is None:
                    return f"{name}: nothing pending in {stream}"
        return None

    def check(self, name: str, labels: dict, value: float) -> tuple:
        """Assert the sample's value; return (name, average or None) for the coverage check."""
        assert finite(value), (name, labels, value)
        where = f"{name}{labels} = {value}"
        cls = labels.get("class")
        averaged = {
            "evalstream_roc_auc": "roc_auc",
            "evalstream_average_precision": "average_precision",
            "evalstream_f1": "f1",
            "evalstream_precision": "precision",
            "evalstream_recall": "recall",
        }
        per_class = {f"evalstream_class_{k}": k for k in averaged.values()}
        imbalance = {
            "evalstream_class_support": "support",
            "evalstream_class_prevalence_ratio": "prevalence",
        }
        if name in averaged:
            want = self.report(labels)[averaged[name]][labels["average"]]["value"]
        elif name in per_class:
            want = self.report(labels)[per_class[name]]["per_class"][cls]["value"]
        elif name in imbalance:
            want = self.report(labels)["imbalance"][imbalance[name]][cls]["value"]
        elif name == "evalstream_class_predicted_prevalence_ratio":
            want = self.report(labels)["imbalance"]["predicted_prevalence"]["argmax"][cls]["value"]
        elif name in ("evalstream_imbalance_ratio", "evalstream_micro_macro_auc_gap"):
            want = self.report(labels)["imbalance"][name.removeprefix("evalstream_")]["value"]
        elif name == "evalstream_accuracy":
            want = self.report(labels)["accuracy"]["value"]
        elif name == "evalstream_window_samples":
            want = self.report(labels)["n_samples"]
        elif name == "evalstream_samples_total":
            want = self.report(labels, "cumulative")["n_samples"]
            assert want == PLANS[labels["stream"]].n_samples
        elif name == "evalstream_batches_total":
            want = PLANS[labels["stream"]].batches
        elif name == "evalstream_last_ingest_timestamp_seconds":
            assert self.fed.ingest_started - 1 <= value <= self.fed.ingest_ended + 1, where
            return (name, None)
        elif name == "stream_window_class:evalstream_class_recall:minority":
            imb = self.report(labels)["imbalance"]
            assert imb["prevalence"][cls]["value"] < self.minority, f"not a minority: {where}"
            want = self.report(labels)["recall"]["per_class"][cls]["value"]
        elif name == "stream_window_class:evalstream_estimated_class_recall:minority":
            est = self.report(labels)["estimated"]
            assert est["prevalence"][cls]["value"] < self.minority, f"not a minority: {where}"
            want = est["recall"]["per_class"][cls]["value"]
        elif name == "stream_window_class:evalstream_class_predicted_over_true_prevalence:ratio":
            imb = self.report(labels)["imbalance"]
            pred = imb["predicted_prevalence"]["argmax"][cls]["value"]
            want = pred / imb["prevalence"][cls]["value"]
        elif name == "stream_class:evalstream_class_prevalence_ratio:5m_over_1h":
            prev = {w: self.report(labels, w)["imbalance"]["prevalence"][cls] for w in ("5m", "1h")}
            want = prev["5m"]["value"] / prev["1h"]["value"]
        elif m := re.fullmatch(r"stream_class:evalstream_class_(\w+?):ratio_rate1h", name):
            # The counters started at 0: the rates cover the whole stream = the cumulative report.
            rep = self.report(labels, "cumulative")
            if m[1] == "prevalence":
                want = rep["imbalance"]["prevalence"][cls]["value"]
            else:
                want = rep[m[1]]["per_class"][cls]["value"]
        elif name in ("stream:evalstream_samples:rate5m", "stream:evalstream_batches:rate5m"):
            plan = PLANS[labels["stream"]]
            total = plan.n_samples if "samples" in name else plan.batches
            # 0 -> total within the 5m range; rate() extrapolates only to the last scrape's end
            # (at most 1 s) and never before the 0, so increase is total * (1 + <=1 s / span).
            assert total / 300 * (1 - REL) <= value <= 2.2 * total / 300, where
            return (name, None)
        elif name == "stream:evalstream_batch_size:mean5m":
            plan = PLANS[labels["stream"]]
            want = plan.n_samples / plan.batches
        elif name in WINDOWED_REPORT_VALUES:
            want = windowed_report_value(name, labels, self.report(labels))
        elif name in STREAM_STATUS_KEYS:
            want = self.status(labels)[STREAM_STATUS_KEYS[name](labels)]
        elif name == "evalstream_oldest_pending_age_seconds":
            # the age grows: the report's age plus the time since, within the scrape interval
            age = self.status(labels)["oldest_pending_age_seconds"]
            assert age is not None, where
            assert value == pytest.approx(age + self.at - self.fed.reports_at, abs=3), where
            return (name, None)
        elif name == "stream:evalstream_predictions_pending:ratio":
            status = self.status(labels)
            want = status["pending"] / status["max_pending"]
        elif name == "stream:evalstream_labels_unmatched:ratio_rate1h":
            # counters from 0: the rates' ratio is the stream's whole ratio
            status = self.status(labels)
            want = (status["labels"] - status["matched"]) / status["labels"]
        elif m := re.fullmatch(r"stream:evalstream_label_delay_seconds:p(\d+)_rate1h", name):
            # histogram_quantile on rates of counters from 0 = the cumulative report's quantile
            want = self.report(labels, "cumulative")["labels"]["delay_seconds"][f"p{m[1]}"]["value"]
        elif name in (
            "stream_outcome:evalstream_labels:rate5m",
            "stream_reason:evalstream_predictions_unlabelled:rate5m",
        ):
            key = (
                "evalstream_labels_total"
                if "outcome" in labels
                else ("evalstream_predictions_unlabelled_total")
            )
            total = self.status(labels)[STREAM_STATUS_KEYS[key](labels)]
            assert total / 300 * (1 - REL) <= value <= 2.2 * total / 300, where
            return (name, None)
        elif name == "evalstream:streams:count":
            want = len(PLANS)
        elif name == "up":
            assert labels.get("job") == "evalstream", where
            want = 1
        elif name == "ALERTS":
            alert_labels = {k: v for k, v in labels.items() if k not in ("__name__", "alertstate")}
            matching = [a for a in self.alerts if a["labels"] == alert_labels]
            assert matching and matching[0]["state"] == labels["alertstate"], (where, self.alerts)
            want = 1
        else:
            pytest.fail(f"no expectation for series {where}: add one to this test", pytrace=False)
        assert value == pytest.approx(want, rel=REL, abs=1e-12), f"{where}, report says {want}"
        return (name, labels.get("average"))


# Exported names and recording rules that need labelled samples (undefined without them).
NEEDS_LABELS = frozenset(
    {
        "evalstream_roc_auc",
        "evalstream_average_precision",
        "evalstream_f1",
        "evalstream_precision",
        "evalstream_recall",
        "evalstream_accuracy",
        "evalstream_class_roc_auc",
        "evalstream_class_average_precision",
        "evalstream_class_f1",
        "evalstream_class_precision",
        "evalstream_class_recall",
        "evalstream_class_prevalence_ratio",
        "evalstream_imbalance_ratio",
        "evalstream_micro_macro_auc_gap",
        "stream_window_class:evalstream_class_recall:minority",
        "stream_window_class:evalstream_class_predicted_over_true_prevalence:ratio",
        "stream_class:evalstream_class_prevalence_ratio:5m_over_1h",
        "stream_class:evalstream_class_recall:ratio_rate1h",
    }
)

_SELECTOR = re.compile(r"^[A-Za-z_:][\w:]*(\{[^{}]*\})?$")
_AGGREGATION = re.compile(r"^(max|min|sum|avg|count)(?: by \(([\w, ]*)\))? ?\((.+)\)$", re.S)
_OR_ZERO = re.compile(r"^(.+) or vector\(0\)$", re.S)
_TIME_MINUS = re.compile(r"^time\(\) - (.+)$", re.S)


def _labelset(sample: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in sample["metric"].items() if k != "__name__"))


def _aggregate(op: str, values: list[float]) -> float:
    if op == "count":
        return float(len(values))
    if op == "sum":
        return math.fsum(values)
    if op == "avg":
        return math.fsum(values) / len(values)
    return max(values) if op == "max" else min(values)


def check_result(api, exp: Expectation, expr: str, result: list[dict]) -> set[tuple]:
    """Check every sample of ``expr``'s result at ``exp.at``; return the coverage keys.

    Plain selectors and recording rules are checked sample by sample. Unnamed results (the
    aggregations the panels use) are recomputed from the inner query at the same evaluation time:
    ``agg [by (labels)] (inner)``, ``time() - inner`` and ``... or vector(0)``.
    """
    expr = " ".join(expr.split())
    if m := _OR_ZERO.match(expr):
        if result == [{"metric": {}, "value": 0.0}]:
            inner = api.query(m[1], at=exp.at)
            assert inner == [], f"{expr}: vector(0) although {m[1]} returned {inner}"
            return set()
        return check_result(api, exp, m[1], result)
    if _SELECTOR.match(expr) or all("__name__" in s["metric"] for s in result):
        keys = set()
        for s in result:
            labels = {k: v for k, v in s["metric"].items() if k != "__name__"}
            keys.add(exp.check(s["metric"].get("__name__", expr), labels, s["value"]))
        return keys
    if m := _TIME_MINUS.match(expr):
        inner = api.query(m[1], at=exp.at)
        keys = check_result(api, exp, m[1], inner)
        want = {_labelset(s): exp.at - s["value"] for s in inner}
        got = {_labelset(s): s["value"] for s in result}
        assert got.keys() == want.keys() and all(
            got[k] == pytest.approx(want[k], abs=1e-3) for k in got
        ), (expr, got, want)
        return keys
    if m := _AGGREGATION.match(expr):
        op, by, inner_expr = m[1], [b.strip() for b in (m[2] or "").split(",") if b.strip()], m[3]
        inner = api.query(inner_expr, at=exp.at)
        keys = check_result(api, exp, inner_expr, inner)
        groups: dict[tuple, list[float]] = {}
        for s in inner:
            groups.setdefault(tuple(s["metric"].get(b, "") for b in by), []).append(s["value"])
        want = {k: _aggregate(op, v) for k, v in groups.items()}
        got = {tuple(s["metric"].get(b, "") for b in by): s["value"] for s in result}
        assert got.keys() == want.keys(), (expr, got, want)
        for k, v in got.items():
            assert v == pytest.approx(want[k], rel=REL, abs=1e-12), (expr, k, v, want[k])
        return keys
    pytest.fail(f"no expectation for the unnamed result of {expr!r}: add one", pytrace=False)


# ----------------------------------------------------------------------------------------------
# Every dashboard query, for every stream and window the variables offer


@dataclass
class PanelResult:
    query: PanelQuery
    values: dict[str, str]
    promql: str
    at: float
    result: list[dict]


def _resolve(api: PrometheusAPI, selector_label: tuple[str, str], values: dict) -> list[str]:
    selector, label = selector_label
    return sorted(api.label_values(label, substitute(selector, values)))


@pytest.fixture(scope="module")
def panel_results(prometheus, fed, firing) -> list[PanelResult]:
    out = []
    for name, dashboard in load_dashboards().items():
        variables = variable_queries(dashboard)
        cases: list[dict[str, str]] = [textbox_values(dashboard)]
        for var in variables:  # resolved in order, later ones may use earlier ones
            cases = [{**c, var: v} for c in cases for v in _resolve(prometheus, variables[var], c)]
        typed = len(textbox_values(dashboard))
        assert cases and all(len(c) == len(variables) + typed for c in cases), (name, cases)
        for values in cases:
            at = time.time()
            for q in panel_queries(name, dashboard):
                promql = substitute(q.expr, values)
                out.append(PanelResult(q, values, promql, at, prometheus.query(promql, at=at)))
    return out


def _allowed_empty_alerts(r: PanelResult) -> bool:
    """ALERTS restricted to a quiet stream: valid, and empty because nothing fires there."""
    return "ALERTS" in r.promql and r.values.get("stream") in QUIET


def test_prometheus_scrapes_the_live_service(prometheus, fed, service):
    up = prometheus.query('up{job="evalstream"}')
    assert {s["metric"]["instance"] for s in up} == service.instances
    assert all(s["value"] == 1.0 for s in up)


def test_each_stream_is_exported_by_one_instance(prometheus, fed, service):
    """Every stream series once, all of a stream's series from one instance (so rules joining a
    stream's series still match), and every replica exports a share."""
    stream_series = '{__name__=~"evalstream_.+", stream!=""}'
    named = f'label_replace({stream_series}, "name", "$1", "__name__", "(.+)")'
    copies = prometheus.query(f"count without (instance) ({named})")
    assert copies and all(s["value"] == 1.0 for s in copies), [s for s in copies if s["value"] > 1]
    instances = prometheus.query(
        f"count by (stream) (count by (stream, instance) ({stream_series}))"
    )
    assert {s["metric"]["stream"]: s["value"] for s in instances} == dict.fromkeys(PLANS, 1.0)
    owners = {s["metric"]["instance"] for s in prometheus.query("evalstream_samples_total")}
    assert owners == service.instances


def test_dashboard_variables_resolve_to_the_live_streams_and_windows(prometheus, fed):
    dashboards = load_dashboards()
    assert set(dashboards) == {"evalstream-overview.json", "evalstream-stream.json"}
    for name, dashboard in dashboards.items():
        variables = variable_queries(dashboard)
        typed = textbox_values(dashboard)
        if "stream" in variables:
            assert _resolve(prometheus, variables["stream"], typed) == sorted(PLANS), name
        for stream in PLANS if "stream" in variables else [None]:
            values = {**typed, "stream": stream} if stream else typed
            if "window" in variables:
                got = _resolve(prometheus, variables["window"], values)
                assert got == sorted(REPORT_WINDOWS), (name, values, got)


def test_every_panel_query_returns_data(panel_results, fed, firing, thresholds):
    assert panel_results
    empty, explained = [], set()
    exp = Expectation(fed, firing, time.time(), thresholds["minority"])
    for r in panel_results:
        if _allowed_empty_alerts(r):
            assert not [s for s in r.result if s["metric"].get("__name__") == "ALERTS"], r.result
            continue
        if not r.result:
            why = exp.missing_input(r.query, r.values)
            if why is None:
                empty.append(f"{r.query.where} with {r.values}: {r.promql}")
            else:
                explained.add((r.query.panel, r.values.get("stream")))
    assert not empty, "panel queries without data on the live service:\n" + "\n".join(empty)
    # every panel has data for some stream: none is empty everywhere
    panels = {r.query.panel for r in panel_results if r.result}
    assert {r.query.panel for r in panel_results} == panels
    # the expected gaps are there: no labels on the shifted stream, no delays on Ingest streams
    assert ("Recall by class", PRIOR_SHIFTED.name) in explained
    assert ("Label delay quantiles ($window window)", HEALTHY.name) in explained
    # The per-stream ALERTS panels are exercised with data on the degraded stream.
    alert_panels = [
        r for r in panel_results if "ALERTS" in r.promql and r.values.get("stream") == DEGRADED.name
    ]
    assert alert_panels and all(r.result for r in alert_panels)


def test_every_panel_value_agrees_with_the_report(
    prometheus, fed, firing, panel_results, thresholds
):
    covered: dict[tuple, set] = {}
    wrong = []
    for r in panel_results:
        exp = Expectation(fed, firing, r.at, thresholds["minority"])
        try:
            keys = check_result(prometheus, exp, r.promql, r.result)
        except (AssertionError, pytest.fail.Exception) as exc:
            first = str(exc).strip().splitlines()[0]
            wrong.append(f"{r.query.where} with {r.values}: {r.promql}\n    {first}")
            continue
        if "stream" in r.values and "window" in r.values:
            covered.setdefault((r.values["stream"], r.values["window"]), set()).update(keys)
    assert not wrong, f"{len(wrong)} panel queries disagree with the report:\n" + "\n".join(wrong)
    # The stream dashboard shows (and so this test compared) the numbers the issue is about.
    required = {
        ("evalstream_roc_auc", "micro"),
        ("evalstream_roc_auc", "macro"),
        ("evalstream_roc_auc", "weighted"),
        ("evalstream_class_recall", None),
        ("evalstream_class_support", None),
        ("evalstream_class_prevalence_ratio", None),
        ("evalstream_imbalance_ratio", None),
        ("evalstream_micro_macro_auc_gap", None),
        ("evalstream_window_samples", None),
    }
    label_free = {
        ("evalstream_window_predictions", None),
        ("evalstream_class_predicted_prevalence_ratio", None),
        ("evalstream_class_mean_probability_ratio", None),
        ("evalstream_prediction_confidence_mean", None),
        ("evalstream_low_confidence_ratio", None),
        ("evalstream_labelled_ratio", None),
        ("evalstream_prior_shift_psi", None),
        ("evalstream_prior_shift_total_variation", None),
        ("evalstream_class_prior_shift_ratio", None),
        ("evalstream_predictions_pending", None),
        ("evalstream_predictions_pending_limit", None),
        ("stream:evalstream_predictions_pending:ratio", None),
        ("stream_outcome:evalstream_labels:rate5m", None),
        ("stream_reason:evalstream_predictions_unlabelled:rate5m", None),
        ("evalstream_estimated_f1", "macro"),
        ("evalstream_estimated_roc_auc", "macro"),
        ("evalstream_estimated_class_recall", None),
    }
    delays = {
        ("evalstream_label_delay_quantile_seconds", None),
        ("evalstream_oldest_pending_age_seconds", None),
        ("stream:evalstream_label_delay_seconds:p50_rate1h", None),
        ("stream:evalstream_label_delay_seconds:p90_rate1h", None),
        ("stream:evalstream_label_delay_seconds:p99_rate1h", None),
        ("stream:evalstream_labels_unmatched:ratio_rate1h", None),
    }
    assert set(covered) == {(s, w) for s in PLANS for w in REPORT_WINDOWS}
    for (stream, window), keys in covered.items():
        want = label_free | (required if PLANS[stream].n_samples else set())
        want |= delays if stream == PRIOR_STABLE.name else set()
        assert want <= keys, ((stream, window), want - keys)


def test_counter_recording_rules_agree_with_the_cumulative_report(prometheus, fed, thresholds):
    """The fleet-wide rules (sums of rates of the *_total counters) against the report."""
    exp = Expectation(fed, [], time.time(), thresholds["minority"])
    rules = [
        f"stream_class:evalstream_class_{m}:ratio_rate1h"
        for m in ("recall", "precision", "f1", "prevalence")
    ]
    rules += ["stream:evalstream_batch_size:mean5m", "evalstream:streams:count"]
    # ...and the counters themselves (the samples total is no panel of its own: the "Samples in
    # window" stat shows it for window "cumulative").
    rules += ["evalstream_samples_total", "evalstream_batches_total"]
    labelled = [p for p in PLANS.values() if p.n_samples]  # class ratios need labels
    for rule in rules:
        result = prometheus.query(rule, at=exp.at)
        want = 1 if rule == "evalstream:streams:count" else len(PLANS)
        if rule.startswith("stream_class:"):
            want = len(labelled) * len(CLASSES)
        assert len(result) == want, (rule, result)
        check_result(prometheus, exp, rule, result)


def test_all_rules_load_and_evaluate_without_errors(
    prometheus, fed, repo_recording, shortened_alerts
):
    groups = prometheus.rule_groups()
    want = {
        g["name"]: [r.get("record") or r.get("alert") for r in g["rules"]]
        for doc in (repo_recording, shortened_alerts)
        for g in doc["groups"]
    }
    assert {g["name"]: [r["name"] for r in g["rules"]] for g in groups} == want
    errors = [
        f"{g['name']}/{r['name']}: {r.get('health')} {r.get('lastError', '')}"
        for g in groups
        for r in g["rules"]
        if r.get("health") != "ok" or r.get("lastError")
    ]
    assert not errors, "rules failing on live data:\n" + "\n".join(errors)


# ----------------------------------------------------------------------------------------------
# Alerts


def test_generated_alert_rules_differ_from_the_repository_only_in_for(
    repo_alerts, shortened_alerts
):
    assert [g["name"] for g in shortened_alerts["groups"]] == [
        g["name"] for g in repo_alerts["groups"]
    ]
    for orig_group, test_group in zip(
        repo_alerts["groups"], shortened_alerts["groups"], strict=True
    ):
        for orig, test in zip(orig_group["rules"], test_group["rules"], strict=True):
            if orig_group["name"] == QUALITY_GROUP:
                assert test["for"] == TEST_FOR
                assert {**test, "for": orig["for"]} == orig
            else:
                assert test == orig


def test_the_test_data_clearly_crosses_the_alert_thresholds(fed, thresholds):
    t = thresholds
    recall_max, support_min, gap_max = t["recall_max"], t["support_min"], t["gap_max"]
    samples_min, collapse, minority = t["samples_min"], t["collapse"], t["minority"]
    for window in ("5m", "1h"):
        bad = fed.reports[(DEGRADED.name, window)]
        imb = bad["imbalance"]
        assert imb["prevalence"]["bus"]["value"] < 0.7 * minority
        assert imb["support"]["bus"]["value"] >= 2 * support_min
        assert bad["recall"]["per_class"]["bus"]["value"] < 0.7 * recall_max
        assert imb["micro_macro_auc_gap"]["value"] > 1.5 * gap_max
        assert bad["n_samples"] >= 2 * samples_min
        pred = imb["predicted_prevalence"]["argmax"]["bus"]["value"]
        assert pred / imb["prevalence"]["bus"]["value"] > 3 * collapse  # recall low, no collapse
        for cls in ("car", "truck", "bike"):  # only bus is degraded
            assert bad["recall"]["per_class"][cls]["value"] > 1.5 * recall_max
        good = fed.reports[(HEALTHY.name, window)]
        for cls in CLASSES:
            assert good["recall"]["per_class"][cls]["value"] > 1.5 * recall_max
        assert abs(good["imbalance"]["micro_macro_auc_gap"]["value"]) < gap_max / 2


def test_the_prediction_streams_clearly_cross_the_label_free_thresholds(fed, thresholds):
    psi_max, low_rise = thresholds["psi_max"], thresholds["low_confidence_rise"]
    for plan in DELAYED.values():
        now = fed.reports[(plan.name, "5m")]["label_free"]
        history = fed.reports[(plan.name, "cumulative")]["label_free"]
        assert now["n_predictions"] >= 2 * thresholds["predictions_min"]
        assert now["prior_shift"]["reference"] == "cumulative"
        psi = now["prior_shift"]["psi"]["value"]
        assert psi > 2 * psi_max if plan.shifted else psi < psi_max / 5, (plan.name, psi)
        rise = (
            now["confidence"]["low_confidence_share"]["value"]
            - history["confidence"]["low_confidence_share"]["value"]
        )
        assert rise < low_rise / 2, (plan.name, rise)  # the mix moved, the confidence did not
    assert fed.reports[(PRIOR_SHIFTED.name, "cumulative")]["n_samples"] == 0  # no label at all


def test_prior_shift_fires_without_labels_and_not_on_a_stable_stream(
    prometheus, firing, fed, thresholds
):
    (alert,) = [a for a in firing if a["labels"]["alertname"] == "EvalstreamPriorShift"]
    assert alert["state"] == "firing"
    labels = alert["labels"]
    assert (labels["stream"], labels["window"], labels["reference"], labels["severity"]) == (
        PRIOR_SHIFTED.name,
        "5m",
        "cumulative",
        "warning",
    )
    want = fed.reports[(PRIOR_SHIFTED.name, "5m")]["label_free"]["prior_shift"]["psi"]["value"]
    assert float(alert["value"]) == pytest.approx(want, rel=REL)
    for key in ("summary", "description"):
        text = alert["annotations"][key]
        assert PRIOR_SHIFTED.name in text and "<error" not in text and "<no value>" not in text
    # the stable stream's inputs to the alert exist, on the good side of it
    sel = f'stream="{PRIOR_STABLE.name}", window="5m"'
    (psi,) = prometheus.query(f"evalstream_prior_shift_psi{{{sel}}}")
    assert psi["value"] < thresholds["psi_max"] / 5 and psi["metric"]["reference"] == "cumulative"
    (n,) = prometheus.query(f"evalstream_window_predictions{{{sel}}}")
    assert n["value"] == PRIOR_STABLE.new_rows


def test_estimated_recall_alert_fires_without_labels_and_not_on_a_stable_stream(
    prometheus, firing, fed, thresholds
):
    """Predictions only, no label at all: the minority class "bus" loses its signal in the last
    5 minutes, and the estimated minority recall alert fires on the estimates the reports show.
    On the stable stream (and the shifted one) the estimates exist and stay on the good side."""
    assert fed.reports[(BLURRED.name, "cumulative")]["n_samples"] == 0
    now = fed.reports[(BLURRED.name, "5m")]["estimated"]
    history = fed.reports[(BLURRED.name, "cumulative")]["estimated"]
    assert now["calibration"]["method"] == "raw"  # nothing labelled to learn a map from
    assert now["prevalence"]["bus"]["value"] < thresholds["minority"]
    bus = "bus"
    drop = now["recall"]["per_class"][bus]["value"] - history["recall"]["per_class"][bus]["value"]
    assert drop < 1.2 * thresholds["estimated_recall_drop"], drop
    (alert,) = [
        a for a in firing if a["labels"]["alertname"] == "EvalstreamEstimatedMinorityRecallDrop"
    ]
    assert (alert["labels"]["stream"], alert["labels"]["class"]) == (BLURRED.name, bus)
    assert float(alert["value"]) == pytest.approx(drop, rel=REL)
    for key in ("summary", "description"):
        text = alert["annotations"][key]
        assert BLURRED.name in text and "<error" not in text and "<no value>" not in text
    # the macro F1 estimate fell too, but less than its alert's threshold (nothing fires)
    f1_drop = now["f1"]["macro"]["value"] - history["f1"]["macro"]["value"]
    assert thresholds["estimated_f1_drop"] < f1_drop < 0, f1_drop
    for plan in (PRIOR_STABLE, PRIOR_SHIFTED):
        sel = f'stream="{plan.name}", average="macro"'
        got = {
            s["metric"]["window"]: s["value"]
            for s in prometheus.query(f"evalstream_estimated_f1{{{sel}}}")
        }
        assert set(got) == set(REPORT_WINDOWS), (plan.name, got)
        assert got["5m"] - got["cumulative"] > thresholds["estimated_f1_drop"] / 2, got
    stable = fed.reports[(PRIOR_STABLE.name, "5m")]["estimated"]
    stable_history = fed.reports[(PRIOR_STABLE.name, "cumulative")]["estimated"]
    assert stable["calibration"]["method"] == "isotonic"  # from its labelled predictions
    change = (
        stable["recall"]["per_class"][bus]["value"]
        - stable_history["recall"]["per_class"][bus]["value"]
    )
    assert change > thresholds["estimated_recall_drop"] / 2, change


def test_degraded_stream_fires_recall_and_gap_alerts(firing, fed):
    active = {
        (a["labels"]["alertname"], a["labels"].get("stream"), a["labels"].get("class")): a
        for a in firing
    }
    # Exactly the expected alerts are active (firing, not pending) anywhere: no collapse, no
    # label shift, no service alert.
    assert set(active) == EXPECTED_FIRING, firing
    assert all(a["state"] == "firing" for a in firing)
    bad = fed.reports[(DEGRADED.name, "1h")]
    recall = active[("EvalstreamMinorityClassRecallLow", DEGRADED.name, "bus")]
    assert recall["labels"]["window"] == "1h" and recall["labels"]["severity"] == "warning"
    assert float(recall["value"]) == pytest.approx(bad["recall"]["per_class"]["bus"]["value"])
    gap = active[("EvalstreamMicroMacroAUCGapHigh", DEGRADED.name, None)]
    assert gap["labels"]["window"] == "1h" and gap["labels"]["severity"] == "warning"
    assert float(gap["value"]) == pytest.approx(bad["imbalance"]["micro_macro_auc_gap"]["value"])
    for alert in (recall, gap):  # the annotation templates render on live labels and values
        for key in ("summary", "description", "runbook"):
            text = alert["annotations"][key]
            assert text and "<error" not in text and "<no value>" not in text, (key, text)
            if key != "runbook":
                assert DEGRADED.name in text, text
    assert "bus" in recall["annotations"]["summary"]


def test_healthy_stream_stays_quiet(prometheus, firing, thresholds):
    assert not [a for a in prometheus.alerts() if a["labels"].get("stream") in QUIET]
    # ...and not for lack of data: the alerts' inputs exist for it and are on the good side.
    sel = f'stream="{HEALTHY.name}", window="1h"'
    minority = prometheus.query(f"stream_window_class:evalstream_class_recall:minority{{{sel}}}")
    assert sorted(s["metric"]["class"] for s in minority) == ["bike", "bus"]
    assert all(s["value"] > thresholds["recall_max"] for s in minority), minority
    (gap,) = prometheus.query(f"evalstream_micro_macro_auc_gap{{{sel}}}")
    assert gap["value"] < thresholds["gap_max"]
    (samples,) = prometheus.query(f"evalstream_window_samples{{{sel}}}")
    assert samples["value"] >= thresholds["samples_min"]
    support = prometheus.query(f'evalstream_class_support{{{sel}, class=~"bike|bus"}}')
    assert all(s["value"] >= thresholds["support_min"] for s in support), support

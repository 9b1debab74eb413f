"""Helpers for the live monitoring tests: a real Prometheus process, its HTTP API, the streams fed
through the real gRPC service, and the dashboards' panel queries.

Everything runs on 127.0.0.1, on ports picked by the OS; every wait is bounded. Used by
``test_live_prometheus.py``, which owns the fixtures (and so the processes' lifetimes).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2, stream_pb2, tensor_pb2

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "deploy" / "prometheus"
DASHBOARD_DIR = REPO / "deploy" / "grafana" / "dashboards"
INSTALL_HINT = "run bash scripts/install-tools.sh"

# Grafana's built-in variables, as the dashboards would resolve them over a 1 h range with the
# datasource's timeInterval (the scrape interval). $stream and $window are resolved per case.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


# ----------------------------------------------------------------------------------------------
# Prometheus: the process and its HTTP API


def find_prometheus() -> str:
    found = shutil.which("prometheus")
    if not found and Path("/usr/bin/prometheus").is_file():
        found = "/usr/bin/prometheus"
    if not found:
        pytest.fail(f"prometheus is not installed: {INSTALL_HINT}", pytrace=False)
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_config(metrics_ports: list[int], rule_files: list[Path], token_file: Path) -> dict:
    """The repository's prometheus.yml, cut down to the evalstream job on the live service (one
    target per replica).

    Kept from the repository: the global section (external labels) and the evalstream job
    (its name, which every alert selects, its metrics path and its bearer token authorization,
    with the token read from ``token_file`` instead of the container's secret). Changed: scrape
    and evaluation every second, the target, the rule files; dropped: Alertmanager and the other
    jobs (nothing outside loopback is reachable).
    """
    repo = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = [j for j in repo["scrape_configs"] if j["job_name"] == "evalstream"]
    assert len(jobs) == 1, "deploy/prometheus/prometheus.yml has no job_name: evalstream"
    job = dict(jobs[0])
    job["authorization"] = {**job["authorization"], "credentials_file": str(token_file)}
    job.update(
        scrape_interval="1s",
        scrape_timeout="1s",
        static_configs=[{"targets": [f"127.0.0.1:{port}" for port in metrics_ports]}],
    )
    global_ = dict(repo.get("global", {}))
    global_.update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    return {
        "global": global_,
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [job],
    }


class PrometheusError(AssertionError):
    pass


class PrometheusAPI:
    """The few endpoints of Prometheus' HTTP API the tests use (urllib only)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def _get(self, path: str, params: dict | list | None = None, timeout: float = 5) -> object:
        url = self.base + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error as JSON
            body = exc.read().decode(errors="replace")
            raise PrometheusError(f"GET {path} {params}: HTTP {exc.code}: {body}") from None
        if doc.get("status") != "success":
            raise PrometheusError(f"GET {path} {params}: {doc}")
        return doc["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant query at ``at`` (default now): a list of {"metric": labels, "value": float}."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": float(data["result"][1])}]
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    def alerts(self) -> list[dict]:
        return self._get("/api/v1/alerts")["alerts"]

    def rule_groups(self) -> list[dict]:
        return self._get("/api/v1/rules")["groups"]

    def label_values(self, label: str, selector: str) -> list[str]:
        return self._get(f"/api/v1/label/{label}/values", [("match[]", selector)])


@dataclass
class PrometheusProcess:
    """A Prometheus server in a temporary directory; ``stop()`` always ends it."""

    binary: str
    workdir: Path
    config: dict
    proc: subprocess.Popen | None = None
    api: PrometheusAPI | None = None
    log_path: Path = field(init=False)

    def start(self, timeout: float = 30) -> PrometheusAPI:
        config_path = self.workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.log_path = self.workdir / "prometheus.log"
        for _attempt in range(3):  # the free port can be taken between probing and binding
            port = free_port()
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        self.binary,
                        f"--config.file={config_path}",
                        f"--storage.tsdb.path={self.workdir / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=info",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            api = PrometheusAPI(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if api.ready():
                    self.api = api
                    return api
                time.sleep(0.1)
            if self.proc.poll() is None:  # still running but never ready
                break
            if "address already in use" not in self.log_tail():
                break
        self.stop()
        pytest.fail(f"Prometheus did not become ready:\n{self.log_tail()}", pytrace=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


def wait_until(
    what: str,
    probe: Callable[[], object],
    timeout: float,
    interval: float = 0.2,
    detail: Callable[[], str] | None = None,
):
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail else ""
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{extra}", pytrace=False)
        time.sleep(interval)


def parse_time(text: str) -> float:
    """Unix time of an RFC 3339 timestamp as Prometheus writes it (nanosecond fractions)."""
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    assert m, text
    base = datetime.fromisoformat(m[1] + ("+00:00" if m[3] == "Z" else m[3]))
    return base.timestamp() + (float("0." + m[2]) if m[2] else 0.0)


# ----------------------------------------------------------------------------------------------
# Rule files


def shortened_alert_rules(original: dict, group: str, new_for: str) -> dict:
    """A copy of alerts.yml with the ``for`` of every alert in ``group`` set to ``new_for``."""
    doc = json.loads(json.dumps(original))  # deep copy
    groups = {g["name"]: g for g in doc["groups"]}
    assert group in groups, f"alerts.yml has no group {group!r}"
    for rule in groups[group]["rules"]:
        rule["for"] = new_for
    return doc


def threshold(expr: str, pattern: str) -> float:
    """A number from an alert expression, e.g. the 0.50 of ``...:minority{window="1h"} < 0.50``."""
    m = re.search(pattern, expr)
    assert m, f"pattern {pattern!r} not in alert expression:\n{expr}"
    return float(m[1])


# ----------------------------------------------------------------------------------------------
# Streams fed through the gRPC service

CLASSES = ("car", "truck", "bike", "bus")
PREVALENCE = (0.60, 0.27, 0.08, 0.05)  # bike and bus are minority classes (< 10%)
WINDOWS = ("5m", "1h")


@dataclass(frozen=True)
class StreamPlan:
    name: str
    seed: int
    batches: int
    batch_rows: int
    degraded: bool  # the minority class "bus" is mostly confused with "car"

    @property
    def n_samples(self) -> int:
        return self.batches * self.batch_rows


def stream_data(plan: StreamPlan) -> tuple[np.ndarray, np.ndarray]:
    """Seeded labels and softmax probabilities.

    Every class' logit gets +3 on its own samples (one-vs-rest AUC about 0.997, recall about 0.96).
    In the degraded stream 80% of the "bus" samples instead get +3 on "car" and -4.5 on "bus":
    bus recall about 0.25, bus AUC about 0.42, micro minus macro AUC about 0.12, and bus is still
    predicted about half as often as it occurs (no prediction collapse).
    """
    rng = np.random.default_rng(plan.seed)
    n = plan.n_samples
    y = rng.choice(len(CLASSES), n, p=PREVALENCE).astype(np.int32)
    logits = rng.normal(size=(n, len(CLASSES)))
    logits[np.arange(n), y] += 3.0
    if plan.degraded:
        bus = np.flatnonzero(y == CLASSES.index("bus"))
        confused = bus[rng.random(bus.size) < 0.8]
        logits[confused, CLASSES.index("bus")] -= 4.5
        logits[confused, CLASSES.index("car")] += 3.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return y, p.astype(np.float32)


def _tensor(a: np.ndarray) -> tensor_pb2.Tensor:
    dtypes = {"float32": tensor_pb2.DATA_TYPE_FLOAT32, "int32": tensor_pb2.DATA_TYPE_INT32}
    a = np.ascontiguousarray(a)
    return tensor_pb2.Tensor(dtype=dtypes[a.dtype.name], shape=list(a.shape), data=a.tobytes())


def create_stream(stub, plan: StreamPlan) -> None:
    config = stream_pb2.StreamConfig(
        name=plan.name,
        task=stream_pb2.TASK_MULTICLASS,
        classes=list(CLASSES),
        windows=list(WINDOWS),
        score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
    )
    stub.CreateStream(pb.CreateStreamRequest(config=config), timeout=10)


def ingest_stream(stub, plan: StreamPlan) -> None:
    y, p = stream_data(plan)
    rows = plan.batch_rows
    requests = [
        pb.IngestRequest(
            stream=plan.name,
            producer_id="live-test",
            sequence=i + 1,
            scores=_tensor(p[i * rows : (i + 1) * rows]),
            labels=_tensor(y[i * rows : (i + 1) * rows]),
        )
        for i in range(plan.batches)
    ]
    accepted = 0
    for response in stub.Ingest(iter(requests), timeout=30):
        for result in response.results:
            assert result.status == ingest_pb2.BATCH_STATUS_ACCEPTED, result
            accepted += result.samples
    assert accepted == plan.n_samples


def get_report(stub, stream: str, window: str) -> dict:
    resp = stub.GetReport(pb.GetReportRequest(stream=stream, window=window), timeout=30)
    return json.loads(resp.report_json)


# ----------------------------------------------------------------------------------------------
# Dashboards


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def where(self) -> str:
        return f"{self.dashboard}: panel {self.panel!r} target {self.ref_id}"


def load_dashboards() -> dict[str, dict]:
    files = sorted(DASHBOARD_DIR.glob("*.json"))
    assert files, f"no dashboards under {DASHBOARD_DIR}"
    return {p.name: json.loads(p.read_text()) for p in files}


def _walk(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _walk(panel.get("panels", []))


def panel_queries(name: str, dashboard: dict) -> list[PanelQuery]:
    return [
        PanelQuery(name, panel.get("title", ""), target.get("refId", "?"), target["expr"])
        for panel in _walk(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


def variable_queries(dashboard: dict) -> dict[str, tuple[str, str]]:
    """name -> (selector, label) for every ``label_values(selector, label)`` variable."""
    out = {}
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.match(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$", query.strip())
        assert m, f"variable {var['name']}: expected label_values(<selector>, <label>): {query}"
        out[var["name"]] = (m["selector"], m["label"])
    return out


def textbox_values(dashboard: dict) -> dict[str, str]:
    """name -> default value of every textbox variable (``tenant``: "" on the live service, a
    server without tokens)."""
    return {
        v["name"]: v.get("current", {}).get("value", "")
        for v in dashboard.get("templating", {}).get("list", [])
        if v.get("type") == "textbox"
    }


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace ``$name`` and ``${name}``; an unknown variable fails the test."""
    known = {**BUILTIN_VARIABLES, **values}

    def repl(m: re.Match) -> str:
        name = m[1] or m[2]
        if name not in known:
            pytest.fail(f"unknown Grafana variable ${name} in {expr!r}", pytrace=False)
        return known[name]

    return _VARIABLE.sub(repl, expr)


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


# ----------------------------------------------------------------------------------------------
# Streams of predictions whose labels come later (log_predictions, then log_labels)

SHIFTED_MIX = (0.10, 0.20, 0.35, 0.35)  # the recent predictions of a shifted stream
OLD_AGE = 1800.0  # seconds: "old" predictions lie in the 1h and cumulative windows, not in 5m


@dataclass(frozen=True)
class PredictionPlan:
    """A stream fed through ``EvalClient.log_predictions`` (and maybe ``log_labels``).

    ``old_rows`` predictions are stamped ``OLD_AGE`` seconds ago with the ``PREVALENCE`` mix;
    ``new_rows`` are stamped now, with ``SHIFTED_MIX`` when ``shifted``; with ``minority_blurred``
    the new "bus" samples get no signal at all (the model cannot tell them apart any more: what
    the scores alone show of a degrading minority class). Labels are sent for the
    first ``labelled_old`` old and ``labelled_new`` new predictions, all in one call.
    """

    name: str
    seed: int
    old_rows: int
    new_rows: int
    shifted: bool
    labelled_old: int = 0
    labelled_new: int = 0
    minority_blurred: bool = False

    @property
    def n_samples(self) -> int:  # labelled pairs: the samples of the quality metrics
        return self.labelled_old + self.labelled_new

    @property
    def n_predictions(self) -> int:
        return self.old_rows + self.new_rows

    @property
    def batches(self) -> int:  # every call fits one message
        return 2 + (1 if self.n_samples else 0)

    def in_window(self, window: str) -> tuple[int, int]:
        """(predictions, labelled samples) of ``window``."""
        if window == "5m":
            return self.new_rows, self.labelled_new
        return self.n_predictions, self.n_samples


def _predictions(
    rng: np.random.Generator, n: int, mix, blurred: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from ``mix`` and softmax scores with +3 on the true class (as
    ``stream_data``'s healthy stream); ``blurred``: none for the "bus" samples."""
    y = rng.choice(len(CLASSES), n, p=mix).astype(np.int32)
    logits = rng.normal(size=(n, len(CLASSES)))
    signal = np.full(n, 3.0)
    if blurred:
        signal[y == CLASSES.index("bus")] = 0.0
    logits[np.arange(n), y] += signal
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return y, (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def create_prediction_stream(client, plan: PredictionPlan) -> None:
    client.create_stream(plan.name, "multiclass", list(CLASSES), windows=list(WINDOWS))


def feed_predictions(client, plan: PredictionPlan) -> None:
    rng = np.random.default_rng(plan.seed)
    y_old, p_old = _predictions(rng, plan.old_rows, PREVALENCE)
    y_new, p_new = _predictions(
        rng, plan.new_rows, SHIFTED_MIX if plan.shifted else PREVALENCE, plan.minority_blurred
    )
    old = [f"old-{i}" for i in range(plan.old_rows)]
    new = [f"new-{i}" for i in range(plan.new_rows)]
    got = client.log_predictions(plan.name, old, p_old, timestamp=time.time() - OLD_AGE)
    assert got.added == plan.old_rows, got
    got = client.log_predictions(plan.name, new, p_new)
    assert got.added == plan.new_rows, got
    if plan.n_samples:
        ids = old[: plan.labelled_old] + new[: plan.labelled_new]
        y = np.concatenate([y_old[: plan.labelled_old], y_new[: plan.labelled_new]])
        got = client.log_labels(plan.name, ids, y)
        assert got.matched == plan.n_samples, got


def _leaf_value(leaf) -> float | None:
    return leaf.get("value") if isinstance(leaf, dict) else leaf


_ESTIMATED = ("roc_auc", "average_precision", "f1", "precision", "recall")


def _estimated(metric: str, by_class: bool) -> Callable[[dict, dict], object]:
    """The report leaf of an ``evalstream_estimated_*`` sample (by average or by class)."""

    def leaf(r: dict, lab: dict) -> object:
        group = r["estimated"][metric]
        return group["per_class"][lab["class"]] if by_class else group[lab["average"]]

    return leaf


# exported windowed series of the predictions -> their value in a window's report
WINDOWED_REPORT_VALUES: dict[str, Callable[[dict, dict], object]] = {
    "evalstream_window_predictions": lambda r, lab: r["label_free"]["n_predictions"],
    "evalstream_class_mean_probability_ratio": lambda r, lab: r["label_free"][
        "predicted_prevalence"
    ]["mean_probability"][lab["class"]],
    "evalstream_prediction_confidence_mean": lambda r, lab: r["label_free"]["confidence"]["mean"],
    "evalstream_low_confidence_ratio": lambda r, lab: r["label_free"]["confidence"][
        "low_confidence_share"
    ],
    "evalstream_prior_shift_psi": lambda r, lab: r["label_free"]["prior_shift"]["psi"],
    "evalstream_prior_shift_total_variation": lambda r, lab: r["label_free"]["prior_shift"][
        "total_variation"
    ],
    "evalstream_class_prior_shift_ratio": lambda r, lab: r["label_free"]["prior_shift"][
        "per_class"
    ][lab["class"]],
    "evalstream_labelled_ratio": lambda r, lab: r["labels"]["labelled_share"],
    "evalstream_label_delay_quantile_seconds": lambda r, lab: r["labels"]["delay_seconds"][
        f"p{round(float(lab['quantile']) * 100)}"
    ],
    "evalstream_estimated_accuracy": lambda r, lab: r["estimated"]["accuracy"],
    "evalstream_estimated_class_prevalence_ratio": lambda r, lab: r["estimated"]["prevalence"][
        lab["class"]
    ],
    **{f"evalstream_estimated_{m}": _estimated(m, by_class=False) for m in _ESTIMATED},
    **{f"evalstream_estimated_class_{m}": _estimated(m, by_class=True) for m in _ESTIMATED},
    "evalstream_estimation_abs_error": lambda r, lab: (
        r["estimated"]["judged"]["accuracy"]
        if lab["metric"] == "accuracy"
        else r["estimated"]["judged"][lab["metric"]][lab["average"]]
    )["abs_error"],
    "evalstream_class_estimation_abs_error": lambda r, lab: r["estimated"]["judged"][lab["metric"]][
        "per_class"
    ][lab["class"]]["abs_error"],
}
# exported per-stream series -> the join table counter or figure of labels.stream
STREAM_STATUS_KEYS = {
    "evalstream_predictions_pending": lambda lab: "pending",
    "evalstream_predictions_pending_limit": lambda lab: "max_pending",
    "evalstream_pending_retention_seconds": lambda lab: "retention_seconds",
    "evalstream_predictions_logged_total": lambda lab: "predictions",
    "evalstream_labels_total": lambda lab: {
        "expired": "expired_labels",
        "duplicate": "duplicate_labels",
    }.get(lab["outcome"], lab["outcome"]),
    "evalstream_predictions_unlabelled_total": lambda lab: {"duplicate_id": "duplicate_ids"}.get(
        lab["reason"], lab["reason"]
    ),
}


def windowed_report_value(name: str, labels: dict, report: dict) -> float | None:
    return _leaf_value(WINDOWED_REPORT_VALUES[name](report, labels))

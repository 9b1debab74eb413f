"""/metrics through prometheus_client's own parser, compared with the report."""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict

import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from prometheus_client.parser import text_string_to_metric_families

from .conftest import create, ingest, tensor


def _scrape(server) -> dict[str, list]:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _value(samples, **labels):
    hits = [v for lab, v in samples if all(lab.get(k) == x for k, x in labels.items())]
    assert len(hits) <= 1, (labels, hits)
    return hits[0] if hits else None


@pytest.fixture(scope="module")
def fed(server, stub):
    rng = np.random.default_rng(3)
    create(stub, "prom", classes=("cat", "dog", "eel", "fox"), windows=("5m",))
    reqs = []
    for seq in range(1, 6):
        n = 2000
        y = rng.choice(4, n, p=[0.6, 0.3, 0.1, 0.0]).astype(np.int32)  # fox never occurs
        logits = rng.normal(size=(n, 4)) * 2
        logits[np.arange(n), y] += 2
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        reqs.append(
            pb.IngestRequest(
                stream="prom",
                producer_id="p",
                sequence=seq,
                scores=tensor(p.astype(np.float32)),
                labels=tensor(y),
            )
        )
    ingest(stub, reqs)
    create(stub, "prom-bin", task="binary", classes=("ok", "bad"))
    y = rng.integers(0, 2, 500).astype(np.int32)
    s = np.clip(rng.random(500) * 0.6 + y * 0.4, 0, 1).astype(np.float32)
    ingest(
        stub,
        [
            pb.IngestRequest(
                stream="prom-bin", producer_id="p", sequence=1, scores=tensor(s), labels=tensor(y)
            )
        ],
    )
    return stub


def test_metrics_agree_with_the_report(server, fed):
    m = _scrape(server)
    rep = json.loads(fed.GetReport(pb.GetReportRequest(stream="prom")).report_json)
    assert _value(m["evalstream_samples_total"], stream="prom") == rep["n_samples"] == 10000
    for avg in ("micro", "macro", "weighted", "ovo_macro"):
        assert _value(
            m["evalstream_roc_auc"], stream="prom", window="cumulative", average=avg
        ) == pytest.approx(rep["roc_auc"][avg]["value"], abs=1e-12)
    for metric in ("f1", "precision", "recall"):
        assert _value(
            m[f"evalstream_{metric}"], stream="prom", window="cumulative", average="macro"
        ) == pytest.approx(rep[metric]["macro"]["value"])
        for c in ("cat", "dog", "eel"):
            got = _value(
                m[f"evalstream_class_{metric}"], stream="prom", window="cumulative", **{"class": c}
            )
            assert got == pytest.approx(rep[metric]["per_class"][c]["value"])
    for c in ("cat", "dog", "eel"):
        assert _value(
            m["evalstream_class_roc_auc"], stream="prom", window="cumulative", **{"class": c}
        ) == pytest.approx(rep["roc_auc"]["per_class"][c]["value"])
        imb = rep["imbalance"]
        assert (
            _value(
                m["evalstream_class_support"], stream="prom", window="cumulative", **{"class": c}
            )
            == imb["support"][c]["value"]
        )
        assert _value(
            m["evalstream_class_prevalence_ratio"],
            stream="prom",
            window="cumulative",
            **{"class": c},
        ) == pytest.approx(imb["prevalence"][c]["value"])
        assert _value(
            m["evalstream_class_predicted_prevalence_ratio"],
            stream="prom",
            window="cumulative",
            **{"class": c},
        ) == pytest.approx(imb["predicted_prevalence"]["argmax"][c]["value"])
    # the 5m window's own report: a window's binned AUCs take no within-bin moments (README)
    rep5 = json.loads(fed.GetReport(pb.GetReportRequest(stream="prom", window="5m")).report_json)
    assert _value(m["evalstream_micro_macro_auc_gap"], stream="prom", window="5m") == pytest.approx(
        rep5["imbalance"]["micro_macro_auc_gap"]["value"]
    )
    cm = np.array(rep["confusion_matrix"])
    for i, c in enumerate(("cat", "dog", "eel", "fox")):
        assert (
            _value(m["evalstream_class_true_positives_total"], stream="prom", **{"class": c})
            == cm[i, i]
        )
        assert (
            _value(m["evalstream_class_false_negatives_total"], stream="prom", **{"class": c})
            == cm[i].sum() - cm[i, i]
        )
        assert (
            _value(m["evalstream_class_false_positives_total"], stream="prom", **{"class": c})
            == cm[:, i].sum() - cm[i, i]
        )
        assert (
            _value(m["evalstream_class_samples_total"], stream="prom", **{"class": c})
            == cm[i].sum()
        )


def test_undefined_values_are_left_out_not_zero(server, fed):
    m = _scrape(server)
    # fox never occurs: its AUC and recall are undefined, its support is a real 0
    assert (
        _value(
            m["evalstream_class_roc_auc"], stream="prom", window="cumulative", **{"class": "fox"}
        )
        is None
    )
    assert (
        _value(m["evalstream_class_recall"], stream="prom", window="cumulative", **{"class": "fox"})
        is None
    )
    assert (
        _value(
            m["evalstream_class_support"], stream="prom", window="cumulative", **{"class": "fox"}
        )
        == 0
    )
    assert _value(m["evalstream_imbalance_ratio"], stream="prom", window="cumulative") is None


def test_binary_stream_exports_its_auc(server, fed):
    m = _scrape(server)
    rep = json.loads(fed.GetReport(pb.GetReportRequest(stream="prom-bin")).report_json)
    assert _value(
        m["evalstream_roc_auc"], stream="prom-bin", window="cumulative", average="binary"
    ) == pytest.approx(rep["roc_auc"]["binary"]["value"])
    assert _value(
        m["evalstream_class_roc_auc"], stream="prom-bin", window="cumulative", **{"class": "bad"}
    ) == pytest.approx(rep["roc_auc"]["binary"]["value"])


def test_per_class_series_are_capped():
    from evalstream_server.engine import StreamSpec
    from evalstream_server.exporters import EvalstreamCollector
    from evalstream_server.store import MemoryStore
    from prometheus_client import CollectorRegistry, generate_latest

    store = MemoryStore()
    classes = tuple(f"c{i}" for i in range(12))
    store.create(StreamSpec(task="multiclass", classes=classes, name="wide"))
    rng = np.random.default_rng(0)
    batch = store.get("wide").engine.validate(
        rng.integers(0, 12, 500), rng.dirichlet(np.ones(12), 500)
    )
    store.ingest("wide", "p", 1, batch, None)
    reg = CollectorRegistry()
    reg.register(EvalstreamCollector(store, max_class_series=5))
    fams = {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}
    classes_seen = {s.labels["class"] for s in fams["evalstream_class_support"].samples}
    assert classes_seen == {f"c{i}" for i in range(5)}


def test_idle_streams_are_not_recomputed_on_the_next_scrape(monkeypatch):
    from evalstream_server.engine import StreamSpec
    from evalstream_server.exporters import EvalstreamCollector
    from evalstream_server.exporters import prometheus as exporter
    from evalstream_server.store import MemoryStore
    from prometheus_client import CollectorRegistry, generate_latest

    store = MemoryStore()
    store.create(StreamSpec(task="binary", name="idle", windows=("1h",)))
    batch = store.get("idle").engine.validate([0, 1, 1], [0.1, 0.8, 0.4])
    store.ingest("idle", "p", 1, batch, None)
    reg = CollectorRegistry()
    reg.register(EvalstreamCollector(store))
    calls = []
    real = exporter.build_report
    monkeypatch.setattr(exporter, "build_report", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = generate_latest(reg)
    assert len(calls) == 2  # cumulative and 1h
    assert generate_latest(reg) == first and len(calls) == 2  # nothing changed: cached
    store.ingest("idle", "p", 2, batch, None)
    second = generate_latest(reg)
    assert len(calls) == 4 and second != first


# ----------------------------------------------------------------------------------------------
# Label-free figures and label latency (delayed labels)

_WINDOWED = {  # exported gauge -> its value in a window's report (a leaf or a number)
    "evalstream_window_predictions": lambda r, lab: r["label_free"]["n_predictions"],
    "evalstream_prediction_confidence_mean": lambda r, lab: r["label_free"]["confidence"]["mean"],
    "evalstream_low_confidence_ratio": (
        lambda r, lab: r["label_free"]["confidence"]["low_confidence_share"]
    ),
    "evalstream_prior_shift_psi": lambda r, lab: r["label_free"]["prior_shift"]["psi"],
    "evalstream_prior_shift_total_variation": (
        lambda r, lab: r["label_free"]["prior_shift"]["total_variation"]
    ),
    "evalstream_class_prior_shift_ratio": (
        lambda r, lab: r["label_free"]["prior_shift"]["per_class"][lab["class"]]
    ),
    "evalstream_class_mean_probability_ratio": (
        lambda r, lab: r["label_free"]["predicted_prevalence"]["mean_probability"][lab["class"]]
    ),
    "evalstream_class_predicted_prevalence_ratio": (
        lambda r, lab: r["imbalance"]["predicted_prevalence"][
            "argmax" if r["task"] == "multiclass" else "thresholded"
        ][lab["class"]]
    ),
    "evalstream_labelled_ratio": lambda r, lab: r["labels"]["labelled_share"],
    "evalstream_label_delay_quantile_seconds": (
        lambda r, lab: r["labels"]["delay_seconds"][f"p{round(float(lab['quantile']) * 100)}"]
    ),
}
_STREAM_WIDE = {  # exported per-stream series -> its value in labels.stream
    "evalstream_predictions_pending": lambda s, lab: s["pending"],
    "evalstream_predictions_pending_limit": lambda s, lab: s["max_pending"],
    "evalstream_pending_retention_seconds": lambda s, lab: s["retention_seconds"],
    "evalstream_predictions_logged_total": lambda s, lab: s["predictions"],
    "evalstream_labels_total": lambda s, lab: s[
        {"expired": "expired_labels", "duplicate": "duplicate_labels"}.get(
            lab["outcome"], lab["outcome"]
        )
    ],
    "evalstream_predictions_unlabelled_total": lambda s, lab: s[
        {"duplicate_id": "duplicate_ids"}.get(lab["reason"], lab["reason"])
    ],
}


def _expected_windowed(name: str, reports: dict[str, dict], labels_of) -> dict[tuple, float]:
    """Every series of ``name`` the reports define, by label set (undefined leaves left out)."""
    out = {}
    for window, rep in reports.items():
        for labels in labels_of(name, rep, window):
            got = _WINDOWED[name](rep, labels)
            value = got.get("value") if isinstance(got, dict) else got
            if value is not None:
                out[tuple(sorted(labels.items()))] = value
    return out


def _label_sets(name: str, rep: dict, window: str) -> list[dict]:
    base = {"tenant": "", "stream": rep["stream"], "window": window}  # a server without tokens
    if "class" in name:
        base_sets = [{**base, "class": c} for c in rep["classes"]]
    elif "quantile" in name:
        base_sets = [{**base, "quantile": q} for q in ("0.5", "0.9", "0.99")]
    else:
        base_sets = [base]
    if "prior_shift" in name:
        ref = rep["label_free"]["prior_shift"]["reference"]
        base_sets = [{**b, "reference": ref} for b in base_sets]
    return base_sets


def check_prediction_series(m: dict[str, list], reports: dict[str, dict]) -> None:
    """Every label-free and label latency series of the stream equals the reports' value, and
    exactly the values the reports define are exported."""
    stream = next(iter(reports.values()))["stream"]
    for name in _WINDOWED:
        got = {
            tuple(sorted(lab.items())): v for lab, v in m.get(name, []) if lab["stream"] == stream
        }
        want = _expected_windowed(name, reports, _label_sets)
        assert got.keys() == want.keys(), (name, sorted(got), sorted(want))
        for k, v in got.items():
            assert v == pytest.approx(want[k], rel=1e-12, abs=1e-12), (name, k, v, want[k])
    status = reports["cumulative"]["labels"]["stream"]
    for name, of in _STREAM_WIDE.items():
        samples = [(lab, v) for lab, v in m[name] if lab["stream"] == stream]
        assert samples, name
        for lab, v in samples:
            assert v == of(status, lab), (name, lab, v)
    hist = reports["cumulative"]["labels"]["delay_seconds"]
    buckets = {
        lab["le"]: v
        for lab, v in m["evalstream_label_delay_seconds_bucket"]
        if lab["stream"] == stream
    }
    edges = [*map(float, hist["histogram"]["le"][:-1]), float("inf")]
    assert [float(le) for le in buckets] == edges
    assert list(buckets.values()) == list(np.cumsum(hist["histogram"]["counts"]))
    assert _value(m["evalstream_label_delay_seconds_count"], stream=stream) == hist["joined"]
    mean = hist["mean"]["value"]
    total = _value(m["evalstream_label_delay_seconds_sum"], stream=stream)
    assert total == (pytest.approx(mean * hist["joined"], rel=1e-12) if mean is not None else 0)


def _reports(stub, stream: str, windows) -> dict[str, dict]:
    return {
        w: json.loads(stub.GetReport(pb.GetReportRequest(stream=stream, window=w)).report_json)
        for w in ("cumulative", *windows)
    }


def _predictions(rng, n: int, p_class) -> np.ndarray:
    y = rng.choice(3, n, p=p_class)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 2.5
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def delayed(server, stub):
    """Streams fed with predictions only (no labels), and with some labels arriving later."""
    import time

    from evalstream import EvalClient

    rng = np.random.default_rng(11)
    now = time.time()
    with EvalClient(server.target) as client:
        client.create_stream("lf-only", "multiclass", ["a", "b", "c"], windows=["5m", "1h"])
        # an hour-old half and a recent half with other class shares: the 5m window shifts
        # against the cumulative reference, the 1h window holds both halves
        client.log_predictions(
            "lf-only",
            [f"o{i}" for i in range(600)],
            _predictions(rng, 600, [0.6, 0.3, 0.1]),
            timestamp=now - 1800,
        )
        client.log_predictions(
            "lf-only", [f"n{i}" for i in range(400)], _predictions(rng, 400, [0.2, 0.3, 0.5])
        )
        client.create_stream(
            "lf-delay", "binary", ["ok", "bad"], windows=["5m"], prior_reference="5m"
        )
        ids = [f"r{i}" for i in range(300)]
        client.log_predictions(
            "lf-delay", ids, rng.random(300).astype(np.float32), timestamp=now - 120
        )
        client.log_predictions("lf-delay", ids[:10], rng.random(10).astype(np.float32))  # dups
        client.log_labels("lf-delay", [*ids[:200], "nope", ids[0]], rng.integers(0, 2, 202))
    return stub


def test_label_free_series_of_a_stream_without_labels(server, delayed):
    m = _scrape(server)
    reports = _reports(delayed, "lf-only", ("5m", "1h"))
    assert reports["cumulative"]["n_samples"] == 0
    check_prediction_series(m, reports)
    # the shift is there (5m against cumulative) and the reference itself has none
    assert _value(m["evalstream_prior_shift_psi"], stream="lf-only", window="5m") > 0.25
    assert _value(m["evalstream_prior_shift_psi"], stream="lf-only", window="cumulative") is None
    # nothing labelled: no delay, labelled share 0, every prediction pending
    assert _value(m["evalstream_labelled_ratio"], stream="lf-only", window="1h") == 0
    assert not [s for s in m["evalstream_label_delay_quantile_seconds"] if "lf-only" in str(s)]
    assert _value(m["evalstream_predictions_pending"], stream="lf-only") == 1000
    assert _value(m["evalstream_oldest_pending_age_seconds"], stream="lf-only") >= 0
    # quality gauges that need labels are left out, not exported as 0
    assert _value(m["evalstream_window_samples"], stream="lf-only", window="1h") == 0
    assert _value(m["evalstream_roc_auc"], stream="lf-only", window="1h", average="macro") is None


def test_label_latency_series_agree_with_the_report(server, delayed):
    m = _scrape(server)
    reports = _reports(delayed, "lf-delay", ("5m",))
    check_prediction_series(m, reports)
    status = reports["cumulative"]["labels"]["stream"]
    assert (status["matched"], status["unknown"], status["duplicate_labels"]) == (200, 1, 1)
    assert status["duplicate_ids"] == 10 and status["pending"] == 100
    assert _value(m["evalstream_label_delay_seconds_count"], stream="lf-delay") == 200
    q = {
        lab["quantile"]: v
        for lab, v in m["evalstream_label_delay_quantile_seconds"]
        if lab["stream"] == "lf-delay" and lab["window"] == "cumulative"
    }
    assert set(q) == {"0.5", "0.9", "0.99"} and 60 < q["0.5"] <= 300  # delays of about 120 s
    # the 5m window is its own prior reference: no shift series for it
    assert _value(m["evalstream_prior_shift_psi"], stream="lf-delay", window="5m") is None
    assert _value(
        m["evalstream_prior_shift_psi"], stream="lf-delay", window="cumulative", reference="5m"
    ) == pytest.approx(reports["cumulative"]["label_free"]["prior_shift"]["psi"]["value"])


def test_labelled_streams_export_label_free_series_too(server, fed):
    m = _scrape(server)
    reports = _reports(fed, "prom", ("5m",))
    check_prediction_series(m, reports)
    assert _value(m["evalstream_labelled_ratio"], stream="prom", window="5m") == 1.0
    assert _value(m["evalstream_predictions_pending"], stream="prom") == 0
    assert _value(m["evalstream_oldest_pending_age_seconds"], stream="prom") is None


class _Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_cache_follows_the_pending_table_and_a_sliding_reference(monkeypatch):
    """A cached report is reused only while nothing it shows can have changed: the join table's
    status is read again while predictions are pending (their age grows), and a window whose
    reference slides is recomputed when the reference's bucket moves."""
    from evalstream_server.engine import StreamSpec
    from evalstream_server.exporters import EvalstreamCollector
    from evalstream_server.exporters import prometheus as exporter
    from evalstream_server.store import MemoryStore
    from prometheus_client import CollectorRegistry, generate_latest

    clock = _Clock(1_000_000.0)
    store = MemoryStore(clock=clock)
    spec = StreamSpec(task="binary", name="d", windows=("1m", "1h"), prior_reference="1m")
    store.create(spec)
    engine = store.get("d").engine
    batch = engine.validate_predictions(["x", "y"], [0.2, 0.9])
    store.ingest("d", "p", 1, batch, None)
    reg = CollectorRegistry()
    reg.register(EvalstreamCollector(store))
    calls = []
    real = exporter.build_report
    monkeypatch.setattr(exporter, "build_report", lambda *a, **k: calls.append(1) or real(*a, **k))

    def scrape() -> dict[str, list]:
        out: dict[str, list] = defaultdict(list)  # a name without samples: []
        for fam in text_string_to_metric_families(generate_latest(reg).decode()):
            for s in fam.samples:
                out[s.name].append((s.labels, s.value))
        return out

    first = scrape()
    assert len(calls) == 3
    assert _value(first["evalstream_oldest_pending_age_seconds"], stream="d") == 0
    clock.t += 2  # same 5 s bucket of the 1m window: reports cached, the age moves on
    second = scrape()
    assert len(calls) == 3
    assert _value(second["evalstream_oldest_pending_age_seconds"], stream="d") == 2
    assert _value(second["evalstream_window_predictions"], stream="d", window="1h") == 2
    clock.t += 120  # the 1m reference slid past the predictions: the 1h window's shift changes
    third = scrape()
    assert len(calls) == 6
    assert _value(third["evalstream_window_predictions"], stream="d", window="1m") == 0
    assert _value(second["evalstream_prior_shift_psi"], stream="d", window="1h") == 0
    assert _value(third["evalstream_prior_shift_psi"], stream="d", window="1h") is None
    store.ingest("d", "p", 2, engine.validate_labels(["x", "y"], [0, 1]), None)
    fourth = scrape()
    assert _value(fourth["evalstream_predictions_pending"], stream="d") == 0
    assert _value(fourth["evalstream_oldest_pending_age_seconds"], stream="d") is None
    assert _value(fourth["evalstream_label_delay_seconds_count"], stream="d") == 2
    calls.clear()
    reads = []
    real_context = store.report_context
    monkeypatch.setattr(store, "report_context", lambda *a: reads.append(a) or real_context(*a))
    clock.t += 1  # nothing pending, nothing moved: nothing recomputed or read again
    fifth = scrape()
    assert {k: v for k, v in fifth.items() if v} == {k: v for k, v in fourth.items() if v}
    assert calls == [] and reads == []


def test_background_refresh_serves_the_last_sweep_and_catches_up():
    """``metrics_refresh``: scrapes serve the reports of the last background sweep (never a
    scrape-time computation for a window it already reached), and the next sweep catches up."""
    from evalstream_server.engine import StreamSpec
    from evalstream_server.exporters import EvalstreamCollector
    from evalstream_server.store import MemoryStore
    from prometheus_client import CollectorRegistry, generate_latest

    store = MemoryStore()
    store.create(StreamSpec("binary", name="bg", windows=("1h",)))
    engine = store.get("bg").engine
    rng = np.random.default_rng(4)

    def feed(n: int) -> None:
        engine.update(rng.integers(0, 2, n), rng.random(n))

    def exported() -> dict:
        text = generate_latest(registry).decode()
        out = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.labels.get("window", "cumulative") == "cumulative":
                    out.setdefault(s.name, s.value)
        return out

    feed(500)
    collector = EvalstreamCollector(store, refresh_interval=3600.0)  # one sweep, then waits
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    collector.start()
    try:
        assert collector.wait_for_sweep(0, timeout=30)
        first = exported()
        assert first["evalstream_window_samples"] == 500
        assert "evalstream_exporter_refresh_seconds" in first
        feed(300)  # a scrape now still serves the sweep's report
        assert exported()["evalstream_window_samples"] == 500
        assert exported()["evalstream_samples_total"] == 800  # counters are read at scrape time
        collector.sweep()  # what the thread does every refresh_interval
        after = exported()
        assert after["evalstream_window_samples"] == 800
        report = store.report("bg", "cumulative")
        assert after["evalstream_roc_auc"] == report["roc_auc"]["binary"]["value"]
        store.create(StreamSpec("binary", name="new", windows=()))  # not swept yet: computed
        text = generate_latest(registry).decode()
        assert 'evalstream_window_samples{stream="new",tenant="",window="cumulative"} 0.0' in text
    finally:
        collector.stop()
    assert collector._thread is None


def test_estimated_series_agree_with_the_report(server, delayed, fed):
    """Predictions alone: the estimated gauges are the report's ``estimated`` values; a labelled
    window also exports the estimation error, which is |estimated - realized| of its report."""
    m = _scrape(server)
    est = _reports(delayed, "lf-only", ("1h",))["1h"]["estimated"]
    assert est["n_predictions"] == 1000 and est["calibration"]["method"] == "raw"
    key = {"stream": "lf-only", "window": "1h"}
    for metric in ("f1", "recall", "roc_auc", "average_precision"):
        got = _value(m[f"evalstream_estimated_{metric}"], average="macro", **key)
        assert got == pytest.approx(est[metric]["macro"]["value"], rel=1e-12)
        for c in ("a", "b", "c"):
            got = _value(m[f"evalstream_estimated_class_{metric}"], **key, **{"class": c})
            assert got == pytest.approx(est[metric]["per_class"][c]["value"], rel=1e-12)
    assert _value(m["evalstream_estimated_accuracy"], **key) == pytest.approx(
        est["accuracy"]["value"], rel=1e-12
    )
    assert not [s for s in m.get("evalstream_estimation_abs_error", []) if "lf-only" in str(s)]
    report = _reports(fed, "prom", ("5m",))["5m"]
    judged = report["estimated"]["judged"]
    assert judged["labelled_share"] == 1.0
    got = _value(
        m["evalstream_estimation_abs_error"],
        stream="prom",
        window="5m",
        metric="f1",
        average="macro",
    )
    assert got == pytest.approx(
        abs(report["estimated"]["f1"]["macro"]["value"] - report["f1"]["macro"]["value"])
    )
    assert judged["f1"]["macro"]["abs_error"] == pytest.approx(got)
    ece = {
        lab["stage"]: v
        for lab, v in m["evalstream_estimation_calibration_error"]
        if lab["stream"] == "prom" and lab["window"] == "5m"
    }
    cal = report["estimated"]["calibration"]
    assert ece["after"] == pytest.approx(cal["ece_after"]["value"])
    assert ece["after"] < ece["before"]


def test_the_default_refresh_turns_on_once_a_scrape_runs_out_of_its_budget():
    """The server's default (``metrics_refresh=-1``, ``AUTO_REFRESH``): a small fleet is scraped
    fresh, computing on the scrape; the first scrape that runs out of ``scrape_budget`` (here a
    budget of 0: one stream a scrape) turns the background refresh on, which then brings every
    window, and later scrapes serve its sweeps."""
    from evalstream_server.engine import StreamSpec
    from evalstream_server.exporters import EvalstreamCollector
    from evalstream_server.exporters.prometheus import AUTO_REFRESH, AUTO_REFRESH_SECONDS
    from evalstream_server.settings import Settings
    from evalstream_server.store import MemoryStore

    assert Settings().metrics_refresh == AUTO_REFRESH
    rng = np.random.default_rng(8)
    for budget, streams, background in ((1.0, 1, False), (0.0, 3, True)):
        store = MemoryStore()
        for i in range(streams):
            store.create(StreamSpec("binary", name=f"s{i}", windows=("1h",)))
            store.get(f"s{i}").engine.update(rng.integers(0, 2, 200), rng.random(200))
        collector = EvalstreamCollector(store, refresh_interval=AUTO_REFRESH, scrape_budget=budget)
        collector.start()  # as the server does when it serves /metrics
        try:
            first = collector.exposition().decode()
            assert (collector._thread is not None) is background
            assert (collector.stale_served > 0) is background
            if not background:  # fresh on every scrape
                store.get("s0").engine.update(rng.integers(0, 2, 100), rng.random(100))
                text = collector.exposition().decode()
                assert 'evalstream_window_samples{stream="s0",tenant="",window="1h"} 300.0' in text
                assert collector.refresh_interval == 0.0
                continue
            assert collector.refresh_interval == AUTO_REFRESH_SECONDS
            assert first.count("evalstream_window_samples{") < 2 * streams  # some left out
            assert collector.wait_for_sweep(0, timeout=30)
            text = collector.exposition().decode()
            assert text.count("evalstream_window_samples{") == 2 * streams  # the sweep's
            assert "evalstream_exporter_refresh_timestamp_seconds" in text
        finally:
            collector.stop()

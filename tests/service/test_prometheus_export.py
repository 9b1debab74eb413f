"""/metrics through prometheus_client's own parser, compared with the report."""

from __future__ import annotations

import json
import urllib.request

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
    assert _value(m["evalstream_micro_macro_auc_gap"], stream="prom", window="5m") == pytest.approx(
        rep["imbalance"]["micro_macro_auc_gap"]["value"]
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

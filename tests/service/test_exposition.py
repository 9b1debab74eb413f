"""/metrics serves the kept exposition text: exactly what prometheus_client renders for the
same families, in the text format (also when OpenMetrics is offered first), gzip when asked."""

from __future__ import annotations

import gzip
import urllib.request

import numpy as np
from evalstream_server.engine import StreamSpec
from evalstream_server.exporters import EvalstreamCollector
from evalstream_server.exporters.http import start_metrics_server
from evalstream_server.store import MemoryStore
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

PROMETHEUS_ACCEPT = (  # what Prometheus 2.42 sends
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def _store() -> MemoryStore:
    store = MemoryStore()
    rng = np.random.default_rng(5)
    classes = ('x"1', "y\\2", "z")  # label values to escape
    store.create(StreamSpec(task="multiclass", name="a", classes=classes, windows=("5m",)))
    store.create(StreamSpec(task="binary", name="b", windows=("1h",)))
    for name, k in (("a", 3), ("b", 1)):
        engine = store.get(name).engine
        y = rng.integers(0, 2 if k == 1 else k, 400)
        p = rng.dirichlet(np.ones(k), 400) if k > 1 else rng.random(400)
        store.ingest(name, "p", 1, engine.validate(y, p), None)
    store.create(StreamSpec(task="binary", name="empty"))
    return store


def _get(port: int, accept: str = "", encoding: str = "") -> tuple[bytes, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if accept:
        req.add_header("Accept", accept)
    if encoding:
        req.add_header("Accept-Encoding", encoding)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read(), dict(resp.headers)


def test_served_text_is_prometheus_clients_rendering_of_the_same_families():
    collector = EvalstreamCollector(_store())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    httpd, port = start_metrics_server("127.0.0.1", 0, registry, exposition=collector.exposition)
    try:
        plain, headers = _get(port)
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        # prometheus_client formats the families that collect() yields (parsed from the text):
        # the same bytes, so the kept text is its rendering exactly
        assert plain == generate_latest(registry)
        assert b'class="x\\"1"' in plain and b'class="y\\\\2"' in plain
        offered, headers = _get(port, PROMETHEUS_ACCEPT, "gzip")
        assert headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(offered) == plain  # text, though OpenMetrics was offered first
        only_om, headers = _get(port, "application/openmetrics-text;version=1.0.0")
        assert headers["Content-Type"].startswith("application/openmetrics-text")
        assert only_om == openmetrics_latest(registry) and only_om.endswith(b"# EOF\n")
    finally:
        httpd.shutdown()
        httpd.server_close()


def _samples(collector: EvalstreamCollector) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(collector.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _window_samples(samples: dict, stream: str) -> dict[str, float]:
    return {
        dict(labels)["window"]: v
        for (name, labels), v in samples.items()
        if name == "evalstream_window_samples" and dict(labels)["stream"] == stream
    }


def test_a_scrape_past_its_budget_serves_the_rest_as_last_computed_and_the_next_goes_on():
    """Budget 0: each scrape recomputes one changed stream (the next in turn), serves the others
    as last computed (or not yet, never computed), and says how many windows it served so."""
    store = MemoryStore()
    names = ["s0", "s1", "s2"]
    for name in names:
        store.create(StreamSpec(task="binary", name=name, windows=("5m", "1h")))
    batch = store.get("s0").engine.validate([0, 1, 1, 0], [0.2, 0.7, 0.9, 0.4])
    for name in names:
        store.ingest(name, "p", 1, batch, None)
    collector = EvalstreamCollector(store, scrape_budget=0.0)

    def scrape() -> tuple[dict[str, float], float]:
        got = _samples(collector)
        for n in names:  # counters are read at every scrape
            assert got[("evalstream_samples_total", (("stream", n), ("tenant", "")))] == 4 * seq
        shown = {n: _window_samples(got, n).get("cumulative") for n in names}
        assert all(len(_window_samples(got, n)) in (0, 3) for n in names)
        return shown, got[("evalstream_exporter_stale_windows", ())]

    seq = 1
    seen = [scrape() for _ in names]
    assert seen == [
        ({"s0": 4, "s1": None, "s2": None}, 6),  # never computed: left out for now
        ({"s0": 4, "s1": 4, "s2": None}, 3),
        ({"s0": 4, "s1": 4, "s2": 4}, 0),
    ]
    seq = 2
    for name in names:
        store.ingest(name, "p", 2, batch, None)
    seen = [scrape() for _ in names]
    assert seen == [
        ({"s0": 8, "s1": 4, "s2": 4}, 6),  # changed: as last computed until their turn
        ({"s0": 8, "s1": 8, "s2": 4}, 3),
        ({"s0": 8, "s1": 8, "s2": 8}, 0),
    ]


def test_per_stream_series_limits_say_what_they_left_out():
    store = MemoryStore()
    store.create(
        StreamSpec(task="multiclass", name="k4", classes=("a", "b", "c", "d"), windows=("5m", "1h"))
    )
    engine = store.get("k4").engine
    rng = np.random.default_rng(1)
    store.ingest(
        "k4", "p", 1, engine.validate(rng.integers(0, 4, 300), rng.dirichlet(np.ones(4), 300)), None
    )
    got = _samples(EvalstreamCollector(store, max_class_series=2, max_window_series=2))
    windows = {dict(lab).get("window") for (_, lab), _ in got.items()} - {None}
    classes = {dict(lab).get("class") for (_, lab), _ in got.items()} - {None}
    assert windows == {"cumulative", "5m"} and classes == {"a", "b"}
    left = {
        dict(lab)["what"]: v for (n, lab), v in got.items() if n == "evalstream_exporter_left_out"
    }
    assert left == {"classes": 2, "windows": 1}


def test_with_a_refresh_a_scrape_computes_unswept_windows_only_within_its_budget():
    """A background refresh that has not reached the streams yet (a fresh restart): the scrape
    computes one stream's windows within budget 0 and leaves the others to the sweep."""
    import threading

    store = MemoryStore()
    for name in ("r0", "r1", "r2"):
        store.create(StreamSpec(task="binary", name=name, windows=("1h",)))
        batch = store.get(name).engine.validate([0, 1], [0.3, 0.6])
        store.ingest(name, "p", 1, batch, None)
    collector = EvalstreamCollector(store, refresh_interval=3600.0, scrape_budget=0.0)
    collector._thread = threading.Thread()  # a refresh that has not swept yet (never started)
    got = _samples(collector)
    shown = {n for n in ("r0", "r1", "r2") if _window_samples(got, n)}
    assert shown == {"r0"} and got[("evalstream_exporter_stale_windows", ())] == 4
    collector._thread = None
    collector.sweep()  # what the thread does: every window, then scrapes serve it
    collector._thread = threading.Thread()
    got = _samples(collector)
    assert all(_window_samples(got, n) == {"cumulative": 2, "1h": 2} for n in ("r0", "r1", "r2"))

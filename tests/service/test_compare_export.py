"""The exporter's comparison series (issue 18): each window against the rest of the next longer
window, checked against sklearn on the raw data and the engine's own documented quantities."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest
from evalstream import EvalClient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import recall_score, roc_auc_score

from tests.engine.data import three_classes

CLASSES = ("car", "van", "bus")


def _scrape(server) -> list:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def _get(samples, name, **labels):
    hits = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(hits) <= 1, hits
    return hits[0] if hits else None


@pytest.fixture(scope="module")
def streams(server):
    rng = np.random.default_rng(18)
    client = EvalClient(server.target)
    data = {}
    for name, new_signal in (("cmp-degrading", (1.5, 1.5, 0.5)), ("cmp-stable", (1.5,) * 3)):
        client.create_stream(name, task="multiclass", classes=list(CLASSES), windows=["5m", "1h"])
        old = three_classes(rng, 6000, (1.5,) * 3)
        new = three_classes(rng, 2000, new_signal)
        client.log(name, *old, timestamp=time.time() - 1800)  # in 1h, not in 5m
        client.log(name, *new)
        data[name] = (old, new)
    yield data
    client.close()


def test_window_against_the_rest_of_the_longer_window(server, streams):
    samples = _scrape(server)
    (y0, p0), (y1, p1) = streams["cmp-degrading"]
    labels = {"stream": "cmp-degrading", "window": "5m", "reference": "1h"}
    for i, c in enumerate(CLASSES):
        want = roc_auc_score(y1 == i, p1[:, i]) - roc_auc_score(y0 == i, p0[:, i])
        got = _get(
            samples,
            "evalstream_class_compare_difference",
            metric="roc_auc",
            **labels,
            **{"class": c},
        )
        assert got == pytest.approx(want, abs=2e-3)  # binned scores
        want_r = recall_score(y1 == i, p1.argmax(1) == i) - recall_score(y0 == i, p0.argmax(1) == i)
        got_r = _get(
            samples,
            "evalstream_class_compare_difference",
            metric="recall",
            **labels,
            **{"class": c},
        )
        assert got_r == pytest.approx(want_r, abs=1e-12)
    bus = {**labels, "metric": "roc_auc", "class": "bus"}
    assert _get(samples, "evalstream_class_compare_zscore", **bus) < -3.29
    assert _get(samples, "evalstream_class_compare_qvalue", **bus) < 1e-3
    assert (
        _get(samples, "evalstream_compare_zscore", metric="roc_auc", average="macro", **labels)
        < -3.29
    )
    # the same size of stream without a change: nothing near significance
    quiet = {"stream": "cmp-stable", "window": "5m", "reference": "1h"}
    for c in CLASSES:
        z = _get(
            samples, "evalstream_class_compare_zscore", metric="roc_auc", **quiet, **{"class": c}
        )
        assert z is not None and abs(z) < 3.29
    # 1h against the cumulative state: the rest is empty (everything is in the last hour)
    assert _get(samples, "evalstream_compare_difference", stream="cmp-stable", window="1h") is None

"""``EvalClient.compare`` through a real server (the Compare RPC, issue 18): differences against
sklearn on the raw data, the dependence rules, and bad requests named in the wire's words."""

from __future__ import annotations

import time

import numpy as np
import pytest
from evalstream.errors import InvalidArgumentError, NotFoundError
from sklearn.metrics import recall_score, roc_auc_score

from tests.engine.data import three_classes

CLASSES = ["car", "van", "bus"]


def _auc(y, p, i):
    return roc_auc_score(y == i, p[:, i])


def _recall(y, p, i):
    return recall_score(y == i, p.argmax(axis=1) == i)


def test_window_against_the_rest_of_a_longer_window(client, name):
    rng = np.random.default_rng(21)
    client.create_stream(name, task="multiclass", classes=CLASSES, windows=["5m", "1h"])
    (y0, p0), (y1, p1) = (
        three_classes(rng, 4000, (1.5,) * 3),
        three_classes(rng, 1500, (1.5, 1.5, 0.5)),
    )
    client.log(name, y0, p0, timestamp=time.time() - 1800)
    client.log(name, y1, p1)
    doc = client.compare(name, window="5m", reference_window="1h")
    assert doc["relation"] == "rest" and doc["n_samples"] == {"window": 1500, "reference": 4000}
    assert doc["reference"] == {"stream": name, "window": "1h"}
    for i, c in enumerate(CLASSES):
        auc = doc["roc_auc"]["per_class"][c]
        assert auc["value"] == pytest.approx(_auc(y1, p1, i) - _auc(y0, p0, i), abs=2e-3)
        assert auc["ci95"][0] < auc["value"] < auc["ci95"][1]
        recall = doc["recall"]["per_class"][c]["value"]
        assert recall == pytest.approx(_recall(y1, p1, i) - _recall(y0, p0, i), abs=1e-12)
    bus = doc["roc_auc"]["per_class"]["bus"]
    assert bus["significant"] and bus["q_value"] < 1e-3 and bus["z"] < 0
    # against the cumulative state by default: its rest is the same 4000 older samples
    default = client.compare(name, "5m")
    assert default["reference"]["window"] == "cumulative"
    assert default["roc_auc"]["macro"]["value"] == pytest.approx(doc["roc_auc"]["macro"]["value"])


def test_a_challenger_on_the_same_traffic(client, name):
    rng = np.random.default_rng(22)
    y, p = three_classes(rng, 3000, (1.5,) * 3)
    z = np.log(p) + rng.normal(scale=0.8, size=p.shape)  # a noisier model, same samples
    q = (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).astype(np.float32)
    for stream, scores in ((name, p), (name + "-challenger", q)):
        client.create_stream(stream, task="multiclass", classes=CLASSES)
        client.log(stream, y, scores)
    doc = client.compare(
        name + "-challenger", window="cumulative", reference_stream=name, relation="paired"
    )
    assert "conservative" in doc["assumption"]
    for i, c in enumerate(CLASSES):
        want = _recall(y, q, i) - _recall(y, p, i)
        assert doc["recall"]["per_class"][c]["value"] == pytest.approx(want, abs=1e-12)
        want_auc = _auc(y, q, i) - _auc(y, p, i)
        assert doc["roc_auc"]["per_class"][c]["value"] == pytest.approx(want_auc, abs=2e-3)


def test_bad_requests_name_the_field(client, name):
    client.create_stream(name, task="multiclass", classes=CLASSES, windows=["5m", "1h"])
    client.create_stream(name + "-other", task="multiclass", classes=["a", "b", "c"])
    cases = [
        ({"window": "1h", "reference_window": "5m"}, "reference_window"),
        ({"window": "5m", "reference_window": "1h", "relation": "paired"}, "relation"),
        ({"window": "5m", "relation": "sideways"}, "relation"),
        ({"window": "5m", "alpha": 1.5}, "alpha"),
        ({"window": "cumulative", "reference_stream": name + "-other"}, "reference_stream"),
        ({"window": "2h"}, "window"),
    ]
    for kwargs, field in cases:
        with pytest.raises(InvalidArgumentError, match=field):
            client.compare(name, **kwargs)
    with pytest.raises(NotFoundError):
        client.compare(name, window="cumulative", reference_stream="nobody-has-this")

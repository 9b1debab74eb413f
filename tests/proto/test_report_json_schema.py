"""proto/evalstream/v1/report.schema.json: a valid JSON Schema 2020-12 of the canonical report, in
step with ``report_version``, that describes every key of every kind of report and refuses what
the contract forbids. (Every report the suite builds is also checked: ``tests/report_schema.py``.)
"""

from __future__ import annotations

import copy
import json

import jsonschema
import numpy as np
import pytest
from evalstream_server.engine import REPORT_VERSION, Resolution, StreamSpec
from evalstream_server.store import MemoryStore

from tests.report_schema import load_schema, strict

TASKS = {
    "multiclass": ("cat", "dog", "eel"),
    "binary": ("ok", "fraud"),
    "multilabel": ("x", "y", "z"),
}


def _reports() -> list[dict]:
    """Reports of every task and resolution: empty, labelled, with predictions awaiting labels
    and joined labels, windowed, with curves; and a multiclass stream past its OvO limit."""
    rng = np.random.default_rng(6)
    store = MemoryStore()
    out = []
    for task, classes in TASKS.items():
        for res in (Resolution("bins", mantissa_bits=4), Resolution("exact", max_samples=5000)):
            name = f"{task}-{res.kind}"
            store.create(
                StreamSpec(task, classes, windows=("5m",), resolution=res, name=name, top_k=2)
            )
            engine = store.get(name).engine
            out.append(store.report(name, "cumulative"))
            n = 300
            if task == "multiclass":
                y, p = rng.integers(0, 3, n), rng.dirichlet(np.ones(3), n)
            elif task == "binary":
                y, p = rng.integers(0, 2, n), rng.random(n)
            else:
                y, p = (rng.random((n, 3)) < 0.4).astype(int), rng.random((n, 3))
            store.ingest(name, "", 0, engine.validate(y, p, rng.random(n)), None)
            ids = [f"id-{i}" for i in range(60)]
            store.ingest(name, "", 0, engine.validate_predictions(ids, p[:60]), None)
            store.ingest(name, "", 0, engine.validate_labels(ids[:40], y[:40]), None)
            for window in ("cumulative", "5m"):
                out.append(store.report(name, window, curves=True, max_points=20))
    store.create(StreamSpec("multiclass", tuple("abcd"), name="ovr", ovo_class_limit=3))
    engine = store.get("ovr").engine
    store.ingest("ovr", "", 0, engine.validate([0, 1, 2, 3], np.eye(4)), None)
    out.append(store.report("ovr", "cumulative"))
    return [json.loads(json.dumps(r, allow_nan=False)) for r in out]


REPORTS = _reports()


def test_the_schema_is_json_schema_2020_12_of_this_report_version():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["report_version"] == {
        "const": REPORT_VERSION,
        "description": schema["properties"]["report_version"]["description"],
    }


@pytest.mark.parametrize("i", range(len(REPORTS)), ids=lambda i: REPORTS[i]["stream"])
def test_every_kind_of_report_fits_and_every_key_is_described(i):
    jsonschema.Draft202012Validator(strict(load_schema())).validate(REPORTS[i])


def _errors(schema, document) -> list[str]:
    return [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(document)]


def test_what_the_contract_forbids_is_refused():
    schema, closed = load_schema(), strict(load_schema())
    report = next(r for r in REPORTS if r["task"] == "multiclass" and r["n_samples"])
    bad = copy.deepcopy(report)
    bad["roc_auc"]["macro"] = {"value": None}  # undefined without a reason
    assert any("'reason' is a required property" in e for e in _errors(schema, bad))
    bad = copy.deepcopy(report)
    bad["roc_auc"]["per_class"]["cat"]["upper"] = 1.5  # a bound outside [0, 1]
    assert _errors(schema, bad)
    bad = copy.deepcopy(report)
    bad["confusion_matrix"] = "[[1]]"
    assert _errors(schema, bad)
    bad = copy.deepcopy(report)
    del bad["label_free"]
    assert any("'label_free' is a required property" in e for e in _errors(schema, bad))
    added = copy.deepcopy(report)
    added["a_later_key"] = {"value": 1.0}
    assert not _errors(schema, added)  # published: open, clients ignore unknown keys
    assert _errors(closed, added)  # strict: the suite's reports must all be described

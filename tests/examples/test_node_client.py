"""examples/node: the Node.js client (@grpc/grpc-js, from the .proto files and the report schema
alone) against a live server. Its numbers are checked against scikit-learn on the data it sent,
and the report it read against the schema (with ajv, in Node)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from sklearn.metrics import accuracy_score, recall_score, roc_auc_score

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
NODE_MODULES = ROOT / ".tools" / "node-example" / "node_modules"


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None or not (NODE_MODULES / "@grpc" / "grpc-js").is_dir():
        pytest.fail(
            "node or the example's packages are missing: run `bash scripts/install-tools.sh` "
            "(`make test` runs it first)",
            pytrace=False,
        )
    return exe


@pytest.fixture(scope="module")
def server():
    srv = ServerThread(
        Settings(host="127.0.0.1", grpc_port=0, metrics_port=-1, max_batch_rows=1000)
    ).start()
    yield srv
    srv.stop()


def test_the_node_client_matches_sklearn(node, server, tmp_path):
    rng = np.random.default_rng(15)
    n, classes = 2500, ["cat", "dog", "eel"]
    y = rng.choice(3, n, p=[0.15, 0.35, 0.5])
    p = rng.dirichlet(np.ones(3), n)
    p[np.arange(n), y] += 0.4
    p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    p = p.astype(np.float64)  # what the wire carries, read back exactly
    data = {
        "stream": "node-pets",
        "classes": classes,
        "labels": y.tolist(),
        "scores": p.tolist(),
        "batch_rows": 1000,
    }
    (tmp_path / "input.json").write_text(json.dumps(data))
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    run = subprocess.run(
        [node, str(EXAMPLE / "client.js"), server.target, str(tmp_path / "input.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)

    assert out["statuses"] == ["BATCH_STATUS_ACCEPTED"] * 3 + [
        "BATCH_STATUS_DUPLICATE",
        "BATCH_STATUS_REJECTED",
    ]
    assert out["expected_sequences"] == [2, 3, 4, 4, 5]  # the rejected batch consumed 4
    assert out["rejected_field_error"] == {
        "field": "scores.shape",
        "expected": "[N, 3] (one column per class of this TASK_MULTICLASS stream)",
        "received": "[1, 4]",
        "hint": "",
    }
    window = out["unknown_window"]  # google.rpc.Status details, decoded in Node
    assert window["grpc_code"] == 3 and window["code"] == 3  # INVALID_ARGUMENT
    assert window["types"] == ["google.rpc.BadRequest", "evalstream.v1.FieldError"]
    assert window["field_error"]["field"] == "window"
    assert window["field_error"]["received"] == '"13m"'
    assert (out["accepted_samples"], out["duplicate_batches"], out["n_samples"]) == (n, 1, n)
    assert out["schema_valid"], out["schema_errors"]
    assert out["report_version"] == out["schema_version"] == 2
    assert out["max_batch_rows"] == 1000
    exact = 1e-12  # an exact-resolution stream equals sklearn on the float32 scores
    assert out["roc_auc_macro"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr"), abs=exact)
    assert out["headline_roc_auc_macro"] == out["roc_auc_macro"]
    ovo = roc_auc_score(y, p, multi_class="ovo")
    assert out["roc_auc_ovo_macro"] == pytest.approx(ovo, abs=exact)
    recall = recall_score(y, p.argmax(axis=1), average=None)
    assert [out["recall_per_class"][c] for c in classes] == pytest.approx(recall, abs=exact)
    assert out["accuracy"] == pytest.approx(accuracy_score(y, p.argmax(axis=1)), abs=exact)

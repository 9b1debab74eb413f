"""``evalstream evaluate``: offline files through the engine, text and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import sklearn.metrics as skm
from evalstream_server.cli import main
from evalstream_server.engine.state import SMALL_ROWS
from evalstream_server.evaluate import evaluate_arrays

from . import data


def test_evaluate_json_matches_sklearn(tmp_path, capsys):
    y, _, p = data.multiclass(3, counts=(300, 900, 1800))
    path = tmp_path / "preds.npz"
    np.savez(path, y_true=y, y_score=p)
    assert (
        main(
            [
                "evaluate",
                str(path),
                "--task",
                "multiclass",
                "--classes",
                "a,b,c",
                "--json",
                "--batch-size",
                "500",
                "--resolution",
                "exact",
            ]
        )
        == 0
    )
    rep = json.loads(capsys.readouterr().out)
    assert rep["n_samples"] == len(y)
    want = skm.roc_auc_score(y, p.astype(np.float64), multi_class="ovr", average="macro")
    assert abs(rep["roc_auc"]["macro"]["value"] - want) < 1e-12
    assert abs(rep["f1"]["macro"]["value"] - skm.f1_score(y, p.argmax(1), average="macro")) < 1e-12


def test_evaluate_text_report_and_csv(tmp_path):
    y, _, p = data.binary(4, 800, 120)
    path = tmp_path / "preds.csv"
    with path.open("w") as fh:
        fh.write("y_true,score\n")
        for a, b in zip(y, p, strict=True):
            fh.write(f"{a},{float(b)!r}\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "evalstream_server.cli",
            "evaluate",
            str(path),
            "--task",
            "binary",
            "--classes",
            "ok,fraud",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "precision" in out and "fraud" in out and "ROC AUC" in out
    auc = skm.roc_auc_score(y, p.astype(np.float64))
    assert f"ROC AUC {auc:.4f}" in out


def test_evaluate_bad_file_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, labels=np.zeros(3))
    assert main(["evaluate", str(path), "--task", "binary"]) == 2
    err = capsys.readouterr().err
    assert "y_true" in err and "labels" in err


def _sk(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(*a, **k))


def test_evaluate_defaults_to_exact_and_bins_on_request(tmp_path, capsys):
    rng = np.random.default_rng(5)
    n = SMALL_ROWS + 1000  # past the binned resolution's raw rows (exact while small)
    y = rng.integers(0, 3, n)
    p = rng.dirichlet(np.ones(3), n)
    p[np.arange(n), y] += 0.3
    p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    path = tmp_path / "preds.npz"
    np.savez(path, y_true=y, y_score=p)
    want = {
        "macro": _sk(skm.roc_auc_score, y, p, multi_class="ovr", average="macro"),
        "micro": _sk(skm.roc_auc_score, np.eye(3)[y].ravel(), p.ravel()),
    }
    ap = _sk(skm.average_precision_score, np.eye(3)[y], p, average="macro")

    def run(*extra: str) -> dict:
        assert main(["evaluate", str(path), "--task", "multiclass", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    exact = run()
    assert exact["resolution"]["kind"] == "exact"
    for avg, v in want.items():
        assert abs(exact["roc_auc"][avg]["value"] - v) < 1e-12, avg
    assert abs(exact["average_precision"]["macro"]["value"] - ap) < 1e-12
    binned = run("--resolution", "bins")
    assert binned["resolution"]["kind"] == "bins" and binned["resolution"]["exact"] is False
    assert abs(binned["average_precision"]["macro"]["value"] - ap) > 1e-12  # quantised
    # the file decides the cap (a stream's default cap of 1M samples would refuse larger files)
    assert evaluate_arrays(y, p, task="multiclass")["resolution"] == {
        "kind": "exact",
        "max_samples": n,
        "exact": True,
    }

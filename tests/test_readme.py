"""The README's Python example runs as written (against a server on a free port)."""

from __future__ import annotations

import re
from pathlib import Path

from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quick_start_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    code = blocks[0]
    assert "127.0.0.1:50051" in code
    with ServerThread(Settings(grpc_port=0, metrics_port=-1)) as srv:
        namespace: dict = {}
        exec(compile(code.replace("127.0.0.1:50051", srv.target), "README.md", "exec"), namespace)
        r = namespace["r"]
        assert r.n_samples == 30_000
        assert 0.5 < r.roc_auc_score(average="macro", multi_class="ovr") <= 1.0
        namespace["client"].close()
    assert "macro avg" in capsys.readouterr().out


def test_readme_delayed_labels_example_runs(capsys):
    import sklearn.metrics as skm

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = next(b for b in blocks if "log_labels" in b)
    with ServerThread(Settings(grpc_port=0, metrics_port=-1)) as srv:
        namespace: dict = {}
        exec(compile(code.replace("127.0.0.1:50051", srv.target), "README.md", "exec"), namespace)
        report, y, p = namespace["report"], namespace["y"], namespace["p"]
        exact = skm.roc_auc_score(y[:4000], p[:4000].astype("float32"))  # sent as float32
        low, high = report.bounds()  # binned: the exact value lies inside the bounds
        assert low <= exact <= high and high - low < 1e-3
        assert report.labelled_share() == 0.8
        assert report.label_status()["pending"] == 1000
        namespace["client"].close()
    assert capsys.readouterr().out.startswith("4000 0 0\n")


def test_readme_threshold_example_runs(capsys):
    import numpy as np
    import sklearn.metrics as skm

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = next(b for b in blocks if "best_threshold" in b)
    with ServerThread(Settings(grpc_port=0, metrics_port=-1)) as srv:
        namespace: dict = {}
        exec(compile(code.replace("127.0.0.1:50051", srv.target), "README.md", "exec"), namespace)
        best, y, p = namespace["best"], namespace["y"], namespace["p"]
        s = np.asarray(p, dtype=np.float32)  # sent as float32
        assert best["f1"]["value"] == skm.f1_score(y, s >= np.float32(best["threshold"]))
        assert best["f1"]["value"] > namespace["r"].f1_score()  # beats 0.5 on this stream
        namespace["client"].close()
    assert "vs" in capsys.readouterr().out


def test_readme_compare_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = next(b for b in blocks if "client.compare(" in b)
    with ServerThread(Settings(grpc_port=0, metrics_port=-1)) as srv:
        namespace: dict = {}
        exec(compile(code.replace("127.0.0.1:50051", srv.target), "README.md", "exec"), namespace)
        bus = namespace["bus"]
        assert bus["significant"] and bus["value"] < 0  # the degraded class is found
        assert bus["ci95"][0] < bus["value"] < bus["ci95"][1] < 0
        assert namespace["cmp"]["n_samples"] == {"window": 2000, "reference": 6000}
        namespace["client"].close()
    assert "True" in capsys.readouterr().out


def test_readme_estimated_metrics_example_runs(capsys):
    """The estimate of the unlabelled hour covers the realized macro F1 computed by sklearn
    once the labels came, and the judged error is their difference."""
    import numpy as np
    import sklearn.metrics as skm

    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    code = next(b for b in blocks if "r.estimated(" in b)
    with ServerThread(Settings(grpc_port=0, metrics_port=-1)) as srv:
        namespace: dict = {}
        exec(compile(code.replace("127.0.0.1:50051", srv.target), "README.md", "exec"), namespace)
        r, y, p = namespace["r"], namespace["y_new"], namespace["p_new"]
        realized = skm.f1_score(y, np.asarray(p, dtype=np.float32).argmax(axis=1), average="macro")
        assert r.f1_score(average="macro") == realized
        low, high = r.estimation.interval("f1", average="macro")
        estimate = r.estimated("f1", average="macro")
        assert low <= realized <= high
        assert r.estimation.error("f1", average="macro") == abs(estimate - realized)
        namespace["client"].close()
    assert capsys.readouterr().out.startswith("0 5000 isotonic\n")

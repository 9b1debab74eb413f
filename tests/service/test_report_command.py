"""``evalstream report --target HOST:PORT --stream NAME [--window W] [--json]``."""

from __future__ import annotations

import json

import numpy as np
from evalstream import EvalClient
from evalstream_server.cli import main
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings


def test_report_command_text_json_window_and_errors(capsys):
    with ServerThread(Settings(grpc_port=0, metrics_port=-1)) as srv:
        rng = np.random.default_rng(2)
        y = rng.integers(0, 3, 900)
        p = rng.dirichlet(np.ones(3), 900)
        with EvalClient(srv.target) as client:
            client.create_stream("cli", task="multiclass", classes=["a", "b", "c"], windows=["5m"])
            client.log("cli", y, p)
            want = client.report("cli").to_dict()
        assert main(["report", "--target", srv.target, "--stream", "cli", "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["n_samples"] == 900
        assert got["roc_auc"]["macro"]["value"] == want["roc_auc"]["macro"]["value"]
        assert main(["report", "--target", srv.target, "--stream", "cli", "--window", "5m"]) == 0
        text = capsys.readouterr().out
        assert "window 5m" in text and "macro avg" in text
        assert main(["report", "--target", srv.target, "--stream", "nope"]) == 1
        assert "nope" in capsys.readouterr().err

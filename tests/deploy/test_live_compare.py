"""The significant-drop alerts (issue 18) against a real Prometheus scraping the real service.

Two multiclass streams of the same size, windows ["5m", "1h"], fed through ``EvalClient``: 6,000
samples stamped 30 minutes ago (in the 1h window, not in the 5m one) and 2,000 now, from a model
that separates every class (logit boost 1.5 for the true class). In ``drop-degrading`` the recent
samples of the minority class ``bus`` (10%) lose most of that boost (0.3): its one-vs-rest AUC
falls by about 0.15 and its recall with it; ``drop-stable`` keeps the same model. Prometheus
scrapes and evaluates every second the repository's two drop alerts (generated from
``rules/alerts.yml``: only ``for:`` set to ``0s``); the degrading stream's alerts fire and the
stable stream, with its comparison series present, has none, firing or pending.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import yaml
from evalstream import EvalClient
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from live import PROM_DIR, PrometheusProcess, find_prometheus, scrape_config, wait_until

from tests.engine.data import three_classes

ALERTS = ("EvalstreamSignificantDrop", "EvalstreamClassSignificantDrop")
CLASSES = ("car", "van", "bus")
WAIT_S = 30


def _drop_rules() -> dict:
    doc = yaml.safe_load((PROM_DIR / "rules" / "alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") in ALERTS]
    assert sorted(r["alert"] for r in rules) == sorted(ALERTS)
    for rule in rules:
        rule["for"] = "0s"
    return {"groups": [{"name": "evalstream.drops", "rules": rules}]}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    binary = find_prometheus()
    work = tmp_path_factory.mktemp("prom-drops")
    token = work / "metrics-token"
    token.write_text("live-drop-token-0123456789\n")
    srv = ServerThread(
        Settings(host="127.0.0.1", grpc_port=0, metrics_port=0, metrics_token_file=str(token))
    ).start()
    prom = None
    try:
        rng = np.random.default_rng(18)
        with EvalClient(srv.target) as client:
            for name, recent in (("drop-degrading", (1.5, 1.5, 0.3)), ("drop-stable", (1.5,) * 3)):
                client.create_stream(
                    name, task="multiclass", classes=list(CLASSES), windows=["5m", "1h"]
                )
                client.log(
                    name, *three_classes(rng, 6000, (1.5,) * 3), timestamp=time.time() - 1800
                )
                client.log(name, *three_classes(rng, 2000, recent))
        rules = work / "drops.yml"
        rules.write_text(yaml.safe_dump(_drop_rules(), sort_keys=False))
        prom = PrometheusProcess(binary, work, scrape_config([srv.metrics_port], [rules], token))
        yield prom.start()
    finally:
        if prom is not None:
            prom.stop()
        srv.stop()


def test_drop_alerts_fire_on_the_degrading_stream_only(live):
    def firing():
        got = live.query('ALERTS{alertstate="firing"}')
        return {(a["metric"]["alertname"], a["metric"]["stream"]) for a in got}

    want = {(name, "drop-degrading") for name in ALERTS}
    wait_until(f"{sorted(want)} to fire", lambda: want <= firing(), WAIT_S)
    cls = live.query('ALERTS{alertname="EvalstreamClassSignificantDrop", alertstate="firing"}')
    assert {a["metric"]["class"] for a in cls} == {"bus"}
    # the stable stream was scraped and compared, and stays quiet (nothing pending either)
    z = live.query('evalstream_class_compare_zscore{stream="drop-stable", window="5m"}')
    assert len(z) == 4 * len(CLASSES) and all(abs(s["value"]) < 3.29 for s in z)
    time.sleep(3)  # three more evaluations
    assert live.query('ALERTS{stream="drop-stable"}') == []

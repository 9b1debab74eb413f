"""Grafana dashboards and provisioning: valid JSON, fixed uids, and queries that Prometheus accepts.

Every panel query may use only the metric names the service exports (the contract) and the
recording rules of deploy/prometheus/rules/recording.yml; every query is checked as PromQL by
``promtool check rules`` on a throwaway rule file, with the Grafana variables substituted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
UID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")  # Grafana allows up to 40 characters
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>[a-zA-Z_]\w*)\)$")
# Values for Grafana's variables when a query is checked as plain PromQL.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${tenant}": "",  # a server without tokens
    "$tenant": "",
    "${stream}": "digits",
    "$stream": "digits",
    "${window}": "1h",
    "$window": "1h",
}


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every label_values variable query."""
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            match = LABEL_VALUES.match(var["query"]["query"])
            assert match, f"variable {var['name']}: expected label_values(<selector>, <label>)"
            yield f"variable {var['name']}", match["selector"]


def _substitute(expr: str) -> str:
    for var, value in SUBSTITUTIONS.items():
        expr = expr.replace(var, value)
    return expr


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict]:
    assert [p.name for p in DASHBOARD_FILES] == [
        "evalstream-overview.json",
        "evalstream-stream.json",
    ]
    return {p.name: _load(p) for p in DASHBOARD_FILES}


@pytest.fixture(scope="module")
def datasource_uid() -> str:
    doc = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = doc["datasources"]
    assert source["type"] == "prometheus"
    return source["uid"]


def test_uids_are_fixed_and_unique(dashboards):
    uids = [d.get("uid") for d in dashboards.values()]
    assert all(isinstance(u, str) and UID.match(u) for u in uids), uids
    assert len(set(uids)) == len(uids)
    assert {d["uid"] for d in dashboards.values()} == {"evalstream-overview", "evalstream-stream"}
    for name, d in dashboards.items():
        assert d.get("id") is None, f"{name}: a provisioned dashboard must not carry a database id"
        assert d["title"].startswith("evalstream / "), name


def test_every_panel_queries_prometheus(dashboards, datasource_uid):
    for name, d in dashboards.items():
        ids = [p["id"] for p in _panels(d["panels"])]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in _panels(d["panels"]):
            if panel["type"] == "row":
                continue
            where = f"{name}: panel {panel.get('title')!r}"
            assert panel.get("title") and panel.get("description"), where
            assert panel["datasource"]["uid"] == datasource_uid, where
            targets = panel.get("targets") or []
            assert targets, f"{where} has no targets"
            for target in targets:
                assert target.get("expr", "").strip(), f"{where} has a target without expr"
                assert target["datasource"]["uid"] == datasource_uid, where


def test_per_stream_dashboard_has_tenant_stream_and_window_variables(dashboards, datasource_uid):
    variables = {v["name"]: v for v in dashboards["evalstream-stream.json"]["templating"]["list"]}
    assert set(variables) == {"tenant", "stream", "window"}
    tenant = variables.pop("tenant")  # typed: stream names are per tenant, "" without tokens
    assert tenant["type"] == "textbox" and tenant["current"]["value"] == ""
    for var in variables.values():
        assert var["type"] == "query" and var["datasource"]["uid"] == datasource_uid
        assert var["multi"] is False and var["includeAll"] is False  # queries use `="$var"`
    assert LABEL_VALUES.match(variables["stream"]["query"]["query"])["label"] == "stream"
    assert LABEL_VALUES.match(variables["window"]["query"]["query"])["label"] == "window"


def test_overview_shows_the_fleet_and_firing_alerts(dashboards):
    exprs = [e for _, e in _queries(dashboards["evalstream-overview.json"])]
    assert any('ALERTS{alertstate="firing"}' in e for e in exprs)
    for average in ("micro", "macro", "weighted"):
        assert any("evalstream_roc_auc" in e and average in e for e in exprs), average
    assert any("evalstream_micro_macro_auc_gap" in e for e in exprs)
    assert any('evalstream_f1{window="$window", average="macro"}' in e for e in exprs)


def test_queries_use_only_contract_metrics_and_recording_rules(
    dashboards, contract_metrics, recording_rule_names, referenced_metrics
):
    used: set[str] = set()
    for name, d in dashboards.items():
        for where, expr in _queries(d):
            names = referenced_metrics(expr)
            unknown = names - contract_metrics - recording_rule_names
            assert unknown == set(), f"{name} {where}: unknown metric names {unknown} in {expr}"
            used |= names
    # The per-class views the on-call engineer needs are all there.
    for metric in (
        "evalstream_class_recall",
        "evalstream_class_precision",
        "evalstream_class_f1",
        "evalstream_class_roc_auc",
        "evalstream_class_support",
        "evalstream_class_prevalence_ratio",
        "evalstream_class_predicted_prevalence_ratio",
        "evalstream_imbalance_ratio",
    ):
        assert metric in used, metric


def test_queries_are_valid_promql(dashboards, promtool, run_tool, tmp_path):
    rules = []
    origin = {}
    for name, d in dashboards.items():
        for where, expr in _queries(d):
            promql = _substitute(expr)
            assert "$" not in promql, f"{name} {where}: unsubstituted variable in {expr}"
            record = f"dashboard:query_{len(rules)}"
            rules.append({"record": record, "expr": promql})
            origin[record] = f"{name} {where}: {promql}"
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    try:
        out = run_tool(promtool, "check", "rules", path)
    except pytest.fail.Exception as exc:
        listing = "\n".join(f"  {k}: {v}" for k, v in origin.items())
        pytest.fail(f"{exc}\nqueries:\n{listing}", pytrace=False)
    assert f"{len(rules)} rules found" in out


def test_dashboard_provider_and_datasource_match_the_monitoring_stack():
    provider_doc = yaml.safe_load((GRAFANA / "provisioning/dashboards/evalstream.yml").read_text())
    (provider,) = provider_doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    source_doc = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = source_doc["datasources"]
    prom = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    # $__rate_interval is built on the datasource's timeInterval: keep it the scrape interval.
    assert source["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"]

"""Prometheus configuration, recording and alerting rules, checked and unit-tested with promtool.

``promtool test rules`` runs deploy/prometheus/tests/*.yml: every alert has a case where it fires
(with its exact labels and annotations) and cases where it must stay quiet.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
OPERATIONS = REPO / "docs" / "operations.md"
SEVERITIES = {"critical", "warning"}


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_rule_files_are_valid(promtool, run_tool):
    assert [p.name for p in RULE_FILES] == ["alerts.yml", "recording.yml"]
    run_tool(promtool, "check", "rules", *RULE_FILES)


def test_config_is_valid(promtool, run_tool, tmp_path):
    """promtool checks the bearer token file exists: the config is checked with the container's
    secret path pointing at a file here (the only change)."""
    token = tmp_path / "metrics-token"
    token.write_text("scrape-token-0123456789\n")
    text = (PROM / "prometheus.yml").read_text()
    assert text.count("/run/secrets/metrics-token") == 1
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/run/secrets/metrics-token", str(token)))
    for rule_file in yaml.safe_load(text)["rule_files"]:  # resolved next to the config
        (tmp_path / rule_file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rule_file).write_text((PROM / rule_file).read_text())
    run_tool(promtool, "check", "config", config)


def test_rule_unit_tests_pass(promtool, run_tool):
    assert RULE_TESTS, "no promtool rule tests under deploy/prometheus/tests"
    out = run_tool(promtool, "test", "rules", *RULE_TESTS)
    assert out.count("SUCCESS") == len(RULE_TESTS), out


def test_config_loads_exactly_the_rule_files():
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    loaded = {(PROM / f).resolve() for f in config["rule_files"]}
    assert loaded == {p.resolve() for p in RULE_FILES}


def test_every_alert_is_labelled_and_annotated(alert_rules):
    names = [r["alert"] for r in alert_rules]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    for rule in alert_rules:
        assert rule["alert"].startswith("Evalstream"), rule["alert"]
        assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key, "").strip(), f"{rule['alert']}: no {key} annotation"
        assert "for" in rule, f"{rule['alert']}: alerts need a `for` duration against flapping"


def test_runbooks_point_at_existing_sections_of_operations_doc(alert_rules):
    headings = {
        _slug(line.lstrip("#"))
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules:
        runbook = rule["annotations"]["runbook"]
        match = re.search(r"docs/operations\.md#([\w-]+)$", runbook)
        assert match, f"{rule['alert']}: runbook must end with docs/operations.md#<anchor>"
        assert match.group(1) == rule["alert"].lower(), rule["alert"]
        assert match.group(1) in headings, f"{rule['alert']}: no section #{match.group(1)}"


def test_every_alert_has_firing_and_quiet_cases(alert_rules):
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules}
    assert names - firing == set(), "alerts without a firing test case"
    assert names - quiet == set(), "alerts without a not-firing test case"
    assert (firing | quiet) - names == set(), "tests name alerts that do not exist"


def test_every_recording_rule_is_unit_tested(recording_rule_names):
    tested = " ".join(
        check["expr"]
        for path in RULE_TESTS
        for case in yaml.safe_load(path.read_text())["tests"]
        for check in case.get("promql_expr_test", [])
    )
    untested = {name for name in recording_rule_names if name not in tested}
    assert untested == set()


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rules_use_only_contract_metrics_and_recording_rules(
    path, recording_rule_names, contract_metrics, referenced_metrics
):
    doc = yaml.safe_load(path.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            unknown = referenced_metrics(rule["expr"]) - contract_metrics - recording_rule_names
            name = rule.get("alert") or rule.get("record")
            assert unknown == set(), f"{name} uses names outside the contract: {unknown}"
            # Exported names never contain a colon: any colon name must be a rule of ours.
            if "record" in rule:
                assert ":" in rule["record"], f"{rule['record']}: use level:metric:operations"

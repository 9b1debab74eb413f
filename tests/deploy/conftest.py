"""Shared fixtures for the deploy/ tests: repository paths, external tools and the metric contract.

The tools (promtool, amtool, hadolint) are installed by ``make tools`` and ``make venv``. Where one
is missing the test is skipped on a workstation and fails under CI (``CI`` set), so CI never
passes by skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# The names the service exports (the contract of the "dashboards and alerts" issue). Prometheus'
# own series that the rules and dashboards may use are listed apart.
CONTRACT_METRICS = frozenset(
    {
        "evalstream_samples_total",
        "evalstream_store_writable",
        "evalstream_batches_total",
        "evalstream_last_ingest_timestamp_seconds",
        "evalstream_roc_auc",
        "evalstream_average_precision",
        "evalstream_f1",
        "evalstream_precision",
        "evalstream_recall",
        "evalstream_accuracy",
        "evalstream_class_roc_auc",
        "evalstream_class_average_precision",
        "evalstream_class_f1",
        "evalstream_class_precision",
        "evalstream_class_recall",
        "evalstream_class_support",
        "evalstream_class_prevalence_ratio",
        "evalstream_class_predicted_prevalence_ratio",
        "evalstream_imbalance_ratio",
        "evalstream_micro_macro_auc_gap",
        "evalstream_window_samples",
        "evalstream_class_true_positives_total",
        "evalstream_class_false_positives_total",
        "evalstream_class_false_negatives_total",
        "evalstream_class_samples_total",
        # label-free figures and delayed labels (issue 8)
        "evalstream_window_predictions",
        "evalstream_class_mean_probability_ratio",
        "evalstream_prediction_confidence_mean",
        "evalstream_low_confidence_ratio",
        "evalstream_prior_shift_psi",
        "evalstream_prior_shift_total_variation",
        "evalstream_class_prior_shift_ratio",
        "evalstream_labelled_ratio",
        "evalstream_label_delay_quantile_seconds",
        "evalstream_predictions_pending",
        "evalstream_predictions_pending_limit",
        "evalstream_pending_retention_seconds",
        "evalstream_oldest_pending_age_seconds",
        "evalstream_predictions_logged_total",
        "evalstream_labels_total",
        "evalstream_predictions_unlabelled_total",
        "evalstream_label_delay_seconds_bucket",
        "evalstream_label_delay_seconds_count",
        "evalstream_label_delay_seconds_sum",
        # a window against the rest of its reference window (issue 18)
        "evalstream_compare_difference",
        "evalstream_compare_zscore",
        "evalstream_class_compare_difference",
        "evalstream_class_compare_zscore",
        "evalstream_class_compare_qvalue",
        # metrics estimated from predictions alone, and their error once labelled (issue 16)
        "evalstream_estimated_roc_auc",
        "evalstream_estimated_average_precision",
        "evalstream_estimated_f1",
        "evalstream_estimated_precision",
        "evalstream_estimated_recall",
        "evalstream_estimated_accuracy",
        "evalstream_estimated_class_roc_auc",
        "evalstream_estimated_class_average_precision",
        "evalstream_estimated_class_f1",
        "evalstream_estimated_class_precision",
        "evalstream_estimated_class_recall",
        "evalstream_estimated_class_prevalence_ratio",
        "evalstream_estimation_calibration_error",
        "evalstream_estimation_abs_error",
        "evalstream_class_estimation_abs_error",
    }
)


def _find_tool(name: str) -> str:
    in_venv = Path(sys.executable).parent / name
    found = str(in_venv) if in_venv.is_file() else shutil.which(name)
    if found:
        return found
    msg = f"{name} is not installed: run `make tools` (promtool, amtool) or `make venv` (hadolint)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def promtool() -> str:
    return _find_tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _find_tool("amtool")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return _find_tool("hadolint")


@pytest.fixture(scope="session")
def run_tool() -> Callable[..., str]:
    """Run a command in the repository root; fail the test with its full output if it fails."""

    def run(*args: str | Path) -> str:
        proc = subprocess.run(
            [str(a) for a in args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            cmd = " ".join(str(a) for a in args)
            pytest.fail(f"`{cmd}` exited {proc.returncode}:\n{output}", pytrace=False)
        return output

    return run


@pytest.fixture(scope="session")
def recording_rule_names() -> frozenset[str]:
    doc = yaml.safe_load((DEPLOY / "prometheus/rules/recording.yml").read_text())
    return frozenset(r["record"] for g in doc["groups"] for r in g["rules"])


@pytest.fixture(scope="session")
def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus/rules/alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def _referenced_metrics(expr: str) -> set[str]:
    """Metric-like names in a PromQL expression that the contract check is about.

    Those are identifiers that start with ``evalstream_`` (exported metrics) or contain a colon
    (recording rules). String literals, label matchers and range or subquery brackets are cut
    first, so label values such as ``"$stream"`` and durations such as ``[5m:1m]`` never count.
    """
    text = _STRING.sub('""', expr)
    text = _BRACES.sub("", text)
    text = _BRACKETS.sub("", text)
    return {t for t in _IDENT.findall(text) if t.startswith("evalstream_") or ":" in t}


@pytest.fixture(scope="session")
def contract_metrics() -> frozenset[str]:
    return CONTRACT_METRICS


@pytest.fixture(scope="session")
def referenced_metrics() -> Callable[[str], set[str]]:
    return _referenced_metrics


@pytest.fixture(scope="session")
def dockerfile() -> list[tuple[str, str]]:
    """The root Dockerfile as (INSTRUCTION, arguments), continuations joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends in a continuation line"
    result = []
    for text in logical:
        instruction, _, args = text.partition(" ")
        result.append((instruction.upper(), args.strip()))
    return result

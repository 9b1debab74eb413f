"""ruff lint and format are part of the suite (generated stubs are excluded in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["client", "service", "tests", "bench"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *PATHS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ruff_check_is_clean():
    proc = _ruff("check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format_is_clean():
    proc = _ruff("format", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_strict_types_of_the_engine_and_the_client():
    """``mypy --strict`` is clean on the engine (pure maths) and the client's own modules (the
    generated stubs in client/evalstream/v1 derive from untyped protobuf classes: excluded)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],  # [tool.mypy] in pyproject.toml
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]

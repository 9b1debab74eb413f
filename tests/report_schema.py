"""The canonical report's JSON Schema (``proto/evalstream/v1/report.schema.json``), applied to
every report the test suite builds.

``install()`` (called by the root conftest) wraps the engine's ``build_report`` where it is
defined and where it is imported by name, so every report, whether an engine test, a store, the
gRPC servicer or the Prometheus exporter asked for it, is checked as JSON against the schema in
its strict form: the published schema is open (clients ignore keys they do not know), the strict
one closes every object it describes, so a key the schema does not describe fails the test that
produced it. Reports of one shape (the same keys, the same JSON types) are validated once per
run: the shape is cheap to compute, a validation is not (10 to 30 ms with curves).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

__all__ = ["SCHEMA_PATH", "install", "load_schema", "strict", "validate_report"]

SCHEMA_PATH = (
    Path(__file__).resolve().parents[1] / "proto" / "evalstream" / "v1" / "report.schema.json"
)


@functools.cache
def load_schema() -> dict[str, Any]:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with ``additionalProperties: false`` on every object schema that lists its
    properties and says nothing about others."""

    def close(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: close(v) for k, v in node.items()}
            if "properties" in out and "additionalProperties" not in out:
                out["additionalProperties"] = False
            return out
        if isinstance(node, list):
            return [close(v) for v in node]
        return node

    return close(copy.deepcopy(schema))


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(strict(load_schema()))


def _shape(node: Any) -> Any:
    """The keys and JSON types of ``node``, hashable: what a schema sees besides the values."""
    if isinstance(node, dict):
        return tuple(sorted((k, _shape(v)) for k, v in node.items()))
    if isinstance(node, list):
        return ("[]", frozenset(_shape(v) for v in node))
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int | float):
        return "int" if isinstance(node, int) else "float"
    return type(node).__name__


_seen: set[int] = set()  # hashes only: tests that trace memory must not see the cache grow


def validate_report(report: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``report``, as JSON, fits the strict schema."""
    document = json.loads(json.dumps(report, allow_nan=False))
    shape = hash(_shape(document))
    if shape in _seen:
        return
    _validator().validate(document)
    _seen.add(shape)


def install() -> None:
    """Check every report ``build_report`` returns from now on."""
    from evalstream_server import engine
    from evalstream_server.engine import report as report_module
    from evalstream_server.engine import stream as stream_module

    real = report_module.build_report
    if getattr(real, "validated", False):
        return

    @functools.wraps(real)
    def build_report(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = real(*args, **kwargs)
        validate_report(out)
        return out

    build_report.validated = True  # type: ignore[attr-defined]
    for module in (report_module, engine, stream_module):
        module.build_report = build_report  # type: ignore[attr-defined]
    # Build the validator and resolve its references now, not inside a test that traces memory.
    warm = engine.StreamEngine(engine.StreamSpec("binary", ("n", "p"), windows=("5m",)))
    warm.update([0, 1], [0.2, 0.7])
    for window in ("cumulative", "5m"):
        _validator().validate(json.loads(json.dumps(real(warm.state(window)))))

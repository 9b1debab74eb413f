"""How a logged record is stored as a row of the ``batches`` table, and replayed from one.

Arrays go to SQLite as buffers, not copies (the writer thread reads them; records are
immutable); labels as int32 class indices (multiclass, binary) or uint8 multi-hot rows, scores as
float32, weights as float64.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..engine import Batch, LabelBatch, PredictionBatch, StreamSpec
from ..engine.stream import StreamEngine
from .base import Record

__all__ = ["encode_record", "replay_row"]

_LABELLED, _PREDICTIONS, _LABELS = 0, 1, 2  # batches.kind


def replay_row(
    engine: StreamEngine,
    spec: StreamSpec,
    row: tuple[Any, ...],
) -> None:
    """Apply the logged row ``(ts, now, n, labels, scores, weights, kind, ids)`` to ``engine``
    as it was applied when it was logged."""
    ts, now, n, labels, scores, weights, kind, ids = row
    if kind == _PREDICTIONS:
        sc = np.frombuffer(scores, dtype=np.float32).reshape(n, spec.n_columns)
        engine.ingest_predictions(PredictionBatch(json.loads(ids), sc), ts, now=now)
    elif kind == _LABELS:
        lab = _decode_labels(spec, n, labels)
        engine.ingest_labels(LabelBatch(json.loads(ids), lab), now=now)
    else:
        engine.ingest(_decode_batch(spec, n, labels, scores, weights), ts, now=now)


def encode_record(batch: Record) -> tuple[int, str | None, Any, Any, Any]:
    """``(kind, ids, labels, scores, weights)`` columns of a logged record. Arrays go as
    buffers, not copies: the writer thread reads them (records are immutable)."""
    if isinstance(batch, PredictionBatch):
        scores = np.ascontiguousarray(batch.scores).data
        return _PREDICTIONS, json.dumps(batch.ids), b"", scores, None
    labels = batch.labels.astype(np.int32 if batch.labels.ndim == 1 else np.uint8).data
    if isinstance(batch, LabelBatch):
        return _LABELS, json.dumps(batch.ids), labels, b"", None
    weights = None if batch.weights is None else batch.weights.data
    return _LABELLED, None, labels, np.ascontiguousarray(batch.scores).data, weights


def _decode_labels(spec: StreamSpec, n: int, labels: bytes) -> np.ndarray:
    if spec.task == "multiclass":
        return np.frombuffer(labels, dtype=np.int32).astype(np.int64)
    return np.frombuffer(labels, dtype=np.uint8).reshape(n, spec.n_columns).astype(bool)


def _decode_batch(
    spec: StreamSpec, n: int, labels: bytes, scores: bytes, weights: bytes | None
) -> Batch:
    C = spec.n_columns
    lab = _decode_labels(spec, n, labels)
    sc = np.frombuffer(scores, dtype=np.float32).reshape(n, C)
    w = None if weights is None else np.frombuffer(weights, dtype=np.float64)
    return Batch(labels=lab, scores=sc, weights=w)

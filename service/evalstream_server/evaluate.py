"""Offline evaluation: feed a saved ``(y_true, y_score)`` file through the engine in batches."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from .engine import InvalidInputError, StreamEngine, StreamSpec

__all__ = ["load_arrays", "evaluate_arrays"]


def load_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``y_true`` and ``y_score`` from an ``.npz`` (arrays of those names) or a CSV whose
    columns are ``y_true`` (or ``y_true_<label>`` columns for multilabel) and score columns."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError("path", "an existing .npz or .csv file", str(path))
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            missing = {"y_true", "y_score"} - set(data.files)
            if missing:
                raise InvalidInputError(
                    "path",
                    "an .npz with arrays 'y_true' and 'y_score'",
                    f"arrays {sorted(data.files)}",
                )
            return data["y_true"], data["y_score"]
    if path.suffix == ".csv":
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows:
            raise InvalidInputError("path", "a CSV with a header row", "an empty file")
        header, body = rows[0], np.array(rows[1:], dtype=np.float64)
        true_cols = [i for i, h in enumerate(header) if h == "y_true" or h.startswith("y_true_")]
        if not true_cols:
            raise InvalidInputError("path", "a CSV with a 'y_true' column", f"columns {header}")
        score_cols = [i for i in range(len(header)) if i not in true_cols]
        y = body[:, true_cols]
        y = y[:, 0] if len(true_cols) == 1 and header[true_cols[0]] == "y_true" else y
        return y.astype(np.int64), body[:, score_cols]
    raise InvalidInputError("path", "a .npz or .csv file", path.suffix or "no extension")


def evaluate_arrays(
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    task: str,
    classes: list[str] | None = None,
    logits: bool = False,
    batch_size: int = 4096,
    resolution: str = "exact",
    name: str = "",
    sample_weight: np.ndarray | None = None,
    curves: bool = False,
    max_curve_points: int = 200,
) -> dict[str, Any]:
    """Stream the arrays through a fresh engine and return the canonical report.

    The file is in memory already, so the default is the exact resolution with room for every
    sample (sklearn's values to float rounding); ``resolution="bins"`` gives what a binned
    stream would report. ``curves=True`` adds the ROC and PR curves (at most
    ``max_curve_points`` each)."""
    y_score = np.asarray(y_score)
    if resolution == "exact":  # no cap given: the whole file
        resolution = f"exact:{max(len(y_true), 1)}"
    if classes is None:
        width = 2 if task == "binary" else (y_score.shape[1] if y_score.ndim == 2 else 2)
        classes = [str(i) for i in range(width)]
    spec = StreamSpec(
        task=task,
        classes=tuple(classes),
        name=name,
        resolution=resolution,
        scores="logits" if logits else "probabilities",
    )
    if batch_size < 1:
        raise InvalidInputError("batch_size", "a positive integer", str(batch_size))
    engine = StreamEngine(spec)
    n = len(y_true)
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        engine.update(y_true[sl], y_score[sl], None if sample_weight is None else sample_weight[sl])
    return engine.report(curves=curves, max_points=max_curve_points)

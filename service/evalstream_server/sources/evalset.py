"""Labelled evaluation sets on disk: an ``.npz`` with ``inputs`` and ``labels``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import SourceInputError

__all__ = ["load_eval_set", "check_labels"]

_KEYS = ("inputs", "labels")


def load_eval_set(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``inputs`` (rows first) and ``labels`` (class indices, one per row) from an ``.npz``.

    Raises
    ------
    SourceInputError
        The file is missing or not an ``.npz``, lacks one of the arrays, or the arrays do not
        pair up (labels not 1-D integers, or of another length than the inputs).
    """
    field = "data"
    expected = "an .npz file with arrays 'inputs' (rows first) and 'labels' (class indices)"
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SourceInputError(field, expected, f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SourceInputError(field, expected, f"{path}: unreadable ({exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise SourceInputError(field, expected, f"{path}: a single array, not an .npz")
    with data:
        missing = [k for k in _KEYS if k not in data.files]
        if missing:
            raise SourceInputError(
                field, expected, f"{path}: arrays {data.files}, without {missing}"
            )
        try:
            inputs, labels = data["inputs"], data["labels"]
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise SourceInputError(field, expected, f"{path}: unreadable ({exc})") from None
    if inputs.ndim < 1:
        raise SourceInputError("inputs", "an array with rows first", f"shape {list(inputs.shape)}")
    check_labels(labels, inputs.shape[0])
    return inputs, labels


def check_labels(labels: np.ndarray, n_rows: int, n_classes: int | None = None) -> None:
    """Labels are 1-D integer class indices, one per input row, in ``[0, n_classes)``."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise SourceInputError(
            "labels",
            "a 1-D array of integer class indices",
            f"shape {list(labels.shape)} dtype {labels.dtype}",
        )
    if labels.shape[0] != n_rows:
        raise SourceInputError(
            "labels",
            f"{n_rows} labels, one per row of inputs",
            f"{labels.shape[0]}",
            "inputs and labels must be the same rows in the same order",
        )
    if n_classes is not None and labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= n_classes:
            raise SourceInputError(
                "labels",
                f"class indices in [0, {n_classes - 1}] ({n_classes} classes)",
                f"values in [{low}, {high}]",
            )

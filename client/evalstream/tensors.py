"""numpy arrays to wire tensors, and the split of a ``log`` call into messages of about 1 MiB.

The server validates the data (shapes, ranges, NaN, label values); the client only converts what
the wire can carry and refuses early what it cannot (arrays of more than two dimensions, labels
that are not integers, arrays of different lengths, which cannot be split into batches).

Wire dtypes: scores float32 (float16 input stays float16: half the bytes), labels int32 class
indices for 1-D ``y_true`` and uint8 multi-hot rows for 2-D ``y_true``, weights float64.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .v1 import tensor_pb2

__all__ = [
    "MAX_BATCH_ROWS",
    "MESSAGE_BYTES",
    "Rows",
    "UnknownClassError",
    "concat_rows",
    "id_rows",
    "tensor",
    "to_rows",
]

MESSAGE_BYTES = 1 << 20  # payload per message: the service asks for about 1 MiB at most
MAX_BATCH_ROWS = 65536  # the server's default max_batch_rows

_WIRE = {
    np.dtype("<f4"): tensor_pb2.DATA_TYPE_FLOAT32,
    np.dtype("<f2"): tensor_pb2.DATA_TYPE_FLOAT16,
    np.dtype("<f8"): tensor_pb2.DATA_TYPE_FLOAT64,
    np.dtype("<i4"): tensor_pb2.DATA_TYPE_INT32,
    np.dtype("u1"): tensor_pb2.DATA_TYPE_UINT8,
}
_INT32 = np.iinfo(np.int32)


class UnknownClassError(ValueError):
    """``y_true`` names classes the stream does not have.

    Attributes
    ----------
    unknown : list of str
        The unknown names (sorted).
    classes : tuple of str
        The stream's classes the names were looked up in.
    """

    def __init__(self, unknown: list[str], classes: Sequence[str]) -> None:
        self.unknown = unknown
        self.classes = tuple(classes)
        super().__init__(
            f"y_true: expected class names among {list(self.classes)[:10]}, received unknown "
            f"names {unknown[:5]}"
        )


@dataclass(frozen=True)
class Rows:
    """Rows converted to their wire dtypes; every array has the same leading length ``n``.

    Predictions awaiting labels have ``ids`` and no ``labels``; labels for them have ``ids`` and
    no ``scores`` (``kind`` is the wire's RecordKind: 0 labelled, 2 predictions, 3 labels)."""

    labels: np.ndarray | None
    scores: np.ndarray | None
    weights: np.ndarray | None
    ids: np.ndarray | None = None  # object array of str
    kind: int = 0

    @property
    def n(self) -> int:
        lead = self.scores if self.scores is not None else self.labels
        assert lead is not None
        return int(lead.shape[0])

    @property
    def row_bytes(self) -> int:
        """Payload bytes of one row on the wire (ids: their mean UTF-8 length, rounded up, plus
        framing)."""
        size = 0
        for a in (self.scores, self.labels):
            if a is not None:
                size += int(np.prod(a.shape[1:], dtype=np.int64)) * a.itemsize
        if self.ids is not None and len(self.ids):
            size += 3 - (-sum(len(i.encode()) for i in self.ids) // len(self.ids))
        return size + (8 if self.weights is not None else 0)

    @property
    def signature(self) -> tuple[object, ...]:
        """Rows with equal signatures can share a message: the same kind, and the same arrays
        with the same dtypes and trailing shapes."""

        def sig(a: np.ndarray | None) -> tuple[object, ...] | None:
            return None if a is None else (a.dtype, a.shape[1:])

        return (self.kind, sig(self.scores), sig(self.labels), self.weights is not None)

    def rows_per_message(
        self, max_bytes: int = MESSAGE_BYTES, max_rows: int = MAX_BATCH_ROWS
    ) -> int:
        """How many rows fit in one message of at most ``max_bytes`` payload."""
        return max(1, min(max_rows, max_bytes // max(self.row_bytes, 1)))

    def slice(self, start: int, stop: int) -> Rows:
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[start:stop]

        return Rows(cut(self.labels), cut(self.scores), cut(self.weights), cut(self.ids), self.kind)

    def tensors(
        self,
    ) -> tuple[tensor_pb2.Tensor | None, tensor_pb2.Tensor | None, tensor_pb2.Tensor | None]:
        """``(scores, labels, sample_weight)`` tensors of these rows (None where absent)."""
        scores, labels, weights = (
            None if a is None else tensor(a) for a in (self.scores, self.labels, self.weights)
        )
        return scores, labels, weights


def tensor(a: np.ndarray) -> tensor_pb2.Tensor:
    """A Tensor message holding ``a`` (already in a wire dtype) as little-endian bytes."""
    return tensor_pb2.Tensor(
        dtype=_WIRE[a.dtype],
        shape=[int(d) for d in a.shape],
        data=np.ascontiguousarray(a).tobytes(),
    )


def id_rows(
    ids: object,
    y_score: object = None,
    y_true: object = None,
    classes: Sequence[str] | None = None,
    copy: bool = False,
) -> Rows:
    """Predictions (``ids``, ``y_score``) or labels (``ids``, ``y_true``) in wire dtypes.

    ``classes`` and ``copy`` as in ``to_rows``."""
    id_array = np.array(ids, dtype=object, copy=copy or None)
    if id_array.ndim != 1:
        raise ValueError(
            f"ids: expected a 1-D sequence of strings, received shape {id_array.shape}"
        )
    bad = [i for i, v in enumerate(id_array.tolist()) if not isinstance(v, str)]
    if bad:
        v = id_array[bad[0]]
        raise ValueError(
            f"ids: expected strings, received {type(v).__name__} {v!r} at index {bad[0]}"
        )
    if y_score is not None:
        scores, labels, kind, what = _scores(y_score, copy), None, 2, "y_score"
    else:
        scores, labels, kind, what = None, _labels(y_true, classes, copy), 3, "y_true"
    n = (scores if scores is not None else labels).shape[0]  # type: ignore[union-attr]
    if len(id_array) != n:
        raise ValueError(
            f"ids: expected {n} ids, one per row of {what}, received {len(id_array)}; rows are "
            "split into batches together, so the lengths must match"
        )
    return Rows(labels, scores, None, id_array, kind)


def concat_rows(parts: Sequence[Rows]) -> Rows:
    """Rows of equal signature, one after the other."""
    if len(parts) == 1:
        return parts[0]
    head = parts[0]
    for i, p in enumerate(parts):
        if p.signature != head.signature:
            raise ValueError(
                f"parts: expected rows of one signature {head.signature}, received "
                f"{p.signature} at index {i}"
            )

    def cat(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        return None if arrays[0] is None else np.concatenate(arrays)  # type: ignore[arg-type]

    return Rows(
        cat([p.labels for p in parts]),
        cat([p.scores for p in parts]),
        cat([p.weights for p in parts]),
        cat([p.ids for p in parts]),
        head.kind,
    )


def to_rows(
    y_true: object,
    y_score: object,
    sample_weight: object = None,
    classes: Sequence[str] | None = None,
    copy: bool = False,
) -> Rows:
    """Convert one call's arrays (numpy arrays or nested lists) to wire dtypes.

    ``classes`` maps string labels to class indices (multiclass streams). With ``copy`` the
    result never shares memory with the inputs (a writer keeps rows after ``log`` returns).
    """
    scores = _scores(y_score, copy)
    labels = _labels(y_true, classes, copy)
    n = scores.shape[0]
    if labels.shape[0] != n:
        raise ValueError(
            f"y_true: expected {n} rows, as many as y_score, received {labels.shape[0]}; "
            "rows are split into batches together, so the lengths must match"
        )
    weights = None
    if sample_weight is not None:
        w = np.asarray(sample_weight)
        if w.ndim != 1 or w.shape[0] != n or not _is_real(w):
            raise ValueError(
                f"sample_weight: expected a 1-D numeric array of {n} values, "
                f"received shape {w.shape} dtype {w.dtype}"
            )
        weights = np.array(w, dtype="<f8", copy=copy or None, order="C")
    return Rows(labels, scores, weights)


def _is_real(a: np.ndarray) -> bool:
    return a.dtype == bool or (
        np.issubdtype(a.dtype, np.number) and not np.issubdtype(a.dtype, np.complexfloating)
    )


def _scores(y_score: object, copy: bool) -> np.ndarray:
    a = np.asarray(y_score)
    if not _is_real(a):
        raise ValueError(
            f"y_score: expected real numbers, received dtype {a.dtype}; the wire carries "
            "float32 or float16 scores"
        )
    if a.ndim not in (1, 2):
        raise ValueError(
            f"y_score: expected shape (n,) or (n, n_classes), received shape {a.shape}; "
            "the wire carries at most 2-D tensors"
        )
    dtype = "<f2" if a.dtype == np.float16 else "<f4"
    with warnings.catch_warnings():  # float64 beyond float32's range becomes inf: server says so
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.array(a, dtype=dtype, copy=copy or None, order="C")


def _labels(y_true: object, classes: Sequence[str] | None, copy: bool) -> np.ndarray:
    a = np.asarray(y_true)
    if a.dtype.kind in "USO":
        return _named_labels(a, classes)
    if not _is_real(a):
        raise ValueError(f"y_true: expected class indices or 0/1 rows, received dtype {a.dtype}")
    if a.ndim not in (1, 2):
        raise ValueError(
            f"y_true: expected class indices of shape (n,) or multi-hot rows of shape (n, L), "
            f"received shape {a.shape}; the wire carries at most 2-D tensors"
        )
    if a.ndim == 1:
        if a.dtype == np.int32 or a.dtype == bool or (a.dtype.kind in "iu" and a.itemsize < 4):
            return np.array(a, dtype="<i4", copy=copy or None)
        _check_integers(a, _INT32.min, _INT32.max, "class indices as int32")
        return a.astype("<i4")
    if a.dtype in (np.uint8, bool):
        return np.array(a, dtype="u1", copy=copy or None, order="C")
    _check_integers(a, 0, 255, "multi-hot rows as uint8 (0 or 1)")
    return np.ascontiguousarray(a.astype("u1"))


def _check_integers(a: np.ndarray, low: int, high: int, what: str) -> None:
    if a.size == 0:
        return
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a)
        bad[~bad] = a[~bad] != np.round(a[~bad])
        if bad.any():
            i = tuple(int(j) for j in np.argwhere(bad)[0])
            raise ValueError(
                f"y_true: expected whole numbers (the wire carries {what}), received "
                f"{a[i]!r} at index {i}"
            )
    lo, hi = a.min(), a.max()
    if lo < low or hi > high:
        raise ValueError(
            f"y_true: expected values in [{low}, {high}] (the wire carries {what}), "
            f"received values in [{lo}, {hi}]"
        )


def _named_labels(a: np.ndarray, classes: Sequence[str] | None) -> np.ndarray:
    if a.ndim != 1:
        raise ValueError(f"y_true: class names must form a 1-D array, received shape {a.shape}")
    if not classes:
        raise ValueError("y_true: class names need the stream's classes to map them to indices")
    index = {c: i for i, c in enumerate(classes)}
    values = [str(v) for v in a.tolist()]
    unknown = sorted(set(values) - index.keys())
    if unknown:
        raise UnknownClassError(unknown, classes)
    return np.fromiter((index[v] for v in values), dtype="<i4", count=len(values))

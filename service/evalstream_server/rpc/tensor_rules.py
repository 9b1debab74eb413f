"""The dtype and shape tables of an ingested batch, as the proto states them, enforced in the
wire's words before the engine sees the arrays.

``IngestRequest`` in ``proto/evalstream/v1/evalstream_service.proto`` and ``Task`` in
``stream.proto`` list, per task, which ``DataType`` and which shape each tensor may have. This
module is that table and its checks: every error names the field (``scores.dtype``,
``labels.shape``), the expected and the received value with the proto's names
(``DATA_TYPE_INT32``, ``TASK_MULTICLASS``, ``[N, K]``). Values (ranges, NaN, row sums) are the
engine's business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from evalstream.v1 import tensor_pb2

from ..engine import InvalidInputError, StreamSpec
from ..store import LimitExceededError

__all__ = [
    "LABEL_DTYPES",
    "SCORE_DTYPES",
    "WEIGHT_DTYPES",
    "TASK_NAMES",
    "check_rows",
    "labels",
    "readable_rows",
    "scores",
    "weights",
]

_T = tensor_pb2
NUMPY_DTYPES = {
    _T.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    _T.DATA_TYPE_FLOAT16: np.dtype("<f2"),
    _T.DATA_TYPE_FLOAT64: np.dtype("<f8"),
    _T.DATA_TYPE_INT32: np.dtype("<i4"),
    _T.DATA_TYPE_INT64: np.dtype("<i8"),
    _T.DATA_TYPE_UINT8: np.dtype("u1"),
    _T.DATA_TYPE_BOOL: np.dtype("?"),
}
SCORE_DTYPES = (_T.DATA_TYPE_FLOAT32, _T.DATA_TYPE_FLOAT16, _T.DATA_TYPE_FLOAT64)
WEIGHT_DTYPES = (_T.DATA_TYPE_FLOAT32, _T.DATA_TYPE_FLOAT64)
LABEL_DTYPES = {
    "binary": (_T.DATA_TYPE_INT32, _T.DATA_TYPE_INT64),  # class indices
    "multiclass": (_T.DATA_TYPE_INT32, _T.DATA_TYPE_INT64),
    "multilabel": (_T.DATA_TYPE_UINT8, _T.DATA_TYPE_BOOL),  # multi-hot rows
}
TASK_NAMES = {
    "binary": "TASK_BINARY",
    "multiclass": "TASK_MULTICLASS",
    "multilabel": "TASK_MULTILABEL",
}


def _dtype_name(code: int) -> str:
    return _T.DataType.Name(code) if code in _T.DataType.values() else str(code)


def _one_of(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _decode(
    t: tensor_pb2.Tensor, field: str, allowed: Sequence[int], what: str, max_rows: int
) -> np.ndarray:
    """A read-only view of ``t`` after the dtype, rank, row limit and byte length checks."""
    if t.dtype not in allowed:
        raise InvalidInputError(
            f"{field}.dtype",
            f"{_one_of([_dtype_name(c) for c in allowed])} ({what})",
            _dtype_name(t.dtype),
        )
    shape = tuple(int(d) for d in t.shape)
    if not 1 <= len(shape) <= 2 or any(d < 0 for d in shape):
        raise InvalidInputError(f"{field}.shape", "1 or 2 non-negative dimensions", _shape(shape))
    if shape[0] > max_rows:
        raise LimitExceededError("batch rows", max_rows, shape[0])
    dtype = NUMPY_DTYPES[t.dtype]
    count = math.prod(shape)
    if len(t.data) != count * dtype.itemsize:
        raise InvalidInputError(
            f"{field}.data",
            f"{count * dtype.itemsize} bytes for {_dtype_name(t.dtype)} shape {_shape(shape)}",
            f"{len(t.data)} bytes",
        )
    return np.frombuffer(t.data, dtype=dtype).reshape(shape)


def scores(t: tensor_pb2.Tensor, spec: StreamSpec, max_rows: int) -> np.ndarray:
    """``scores`` of a batch: FLOAT32, FLOAT16 or FLOAT64 of shape [N, K] (multiclass), [N, L]
    (multilabel), [N] or [N, 2] (binary)."""
    task = TASK_NAMES[spec.task]
    a = _decode(t, "scores", SCORE_DTYPES, "scores are floating point", max_rows)
    if spec.task == "binary":
        if a.ndim == 1 or a.shape[1] == 2:
            return a
        expected = (
            f"[N] or [N, 2] (the positive class's score, or one column per class of a {task} "
            "stream)"
        )
    else:
        width = spec.n_classes
        if a.ndim == 2 and a.shape[1] == width:
            return a
        unit = "class" if spec.task == "multiclass" else "label"
        expected = f"[N, {width}] (one column per {unit} of this {task} stream)"
    raise InvalidInputError("scores.shape", expected, _shape(a.shape))


def labels(t: tensor_pb2.Tensor, spec: StreamSpec, max_rows: int) -> np.ndarray:
    """``labels`` of a batch: INT32 or INT64 class indices of shape [N] (binary, multiclass), or
    a UINT8 or BOOL multi-hot matrix of shape [N, L] (multilabel)."""
    task = TASK_NAMES[spec.task]
    if spec.task == "multilabel":
        what = f"a multi-hot matrix of a {task} stream"
        a = _decode(t, "labels", LABEL_DTYPES[spec.task], what, max_rows)
        if a.ndim == 2 and a.shape[1] == spec.n_classes:
            return a
        raise InvalidInputError("labels.shape", f"[N, {spec.n_classes}] ({what})", _shape(a.shape))
    what = f"class indices of a {task} stream"
    a = _decode(t, "labels", LABEL_DTYPES[spec.task], what, max_rows)
    if a.ndim == 1:
        return a
    raise InvalidInputError("labels.shape", f"[N] ({what})", _shape(a.shape))


def weights(t: tensor_pb2.Tensor, max_rows: int) -> np.ndarray:
    """``sample_weight``: FLOAT32 or FLOAT64 of shape [N]."""
    a = _decode(t, "sample_weight", WEIGHT_DTYPES, "one weight per row", max_rows)
    if a.ndim == 1:
        return a
    raise InvalidInputError("sample_weight.shape", "[N] (one weight per row)", _shape(a.shape))


def check_rows(field: str, n: int, lead: str, rows: int) -> None:
    """``field`` has ``n`` rows where ``lead`` has ``rows``: they must agree."""
    if n != rows:
        unit = "ids" if field == "ids" else "rows"
        raise InvalidInputError(field, f"{rows} {unit}, one per row of {lead}", f"{n} {unit}")


def readable_rows(t: tensor_pb2.Tensor, field: str, spec: StreamSpec, max_rows: int) -> int:
    """Rows of a rejected batch: N when its leading tensor (``field``, scores or labels) has an
    allowed dtype, a leading dimension within the limit and the bytes its shape says (a wrong
    width still tells N), else 0: the batch could not be read far enough to tell."""
    allowed = SCORE_DTYPES if field == "scores" else LABEL_DTYPES[spec.task]
    try:
        a = _decode(t, field, allowed, "", max_rows)
    except (InvalidInputError, LimitExceededError):
        return 0
    return int(a.shape[0])

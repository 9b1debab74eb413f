"""Decode the recorded output tensor of a ModelInferResponse into score rows.

Which output: the route's ``OUTPUT`` when it names one, else the response's only output, or its
first one when there are several (the order the server answers in, which is the order of the
request's ``outputs`` when the caller asked for some).

Where the values are: ``raw_output_contents[i]`` for output ``i`` (little-endian, what Triton
sends), else the typed ``contents`` field (``fp32_contents``, ``fp64_contents``). FP16 exists
only as raw bytes. Shapes: ``[n, K]`` is ``n`` rows of ``K`` scores; ``[n]`` and ``[n, 1]`` are
``n`` binary scores.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["OutputError", "decode_scores", "RAW_DTYPES"]

RAW_DTYPES = {"FP32": np.dtype("<f4"), "FP16": np.dtype("<f2"), "FP64": np.dtype("<f8")}
_TYPED = {"FP32": "fp32_contents", "FP64": "fp64_contents"}


class OutputError(ValueError):
    """The response holds no output the proxy can record; the message says which and why."""


def _pick(response, name: str | None) -> int:
    names = [t.name for t in response.outputs]
    if not names:
        raise OutputError(f"model {response.model_name!r}: expected an output, received none")
    if name is None:
        return 0
    if name not in names:
        raise OutputError(
            f"model {response.model_name!r}: expected output {name!r}, received outputs "
            f"{names} (the request may have asked for other outputs)"
        )
    return names.index(name)


def decode_scores(response, output: str | None = None) -> np.ndarray:
    """Scores of the chosen output: shape (n, K), or (n,) for one score per row.

    Parameters
    ----------
    response : tritonclient.grpc.service_pb2.ModelInferResponse
    output : str, optional
        Output name; default the only (or first) output.

    Raises
    ------
    OutputError
        No such output, a datatype other than FP16/FP32/FP64, a size that does not match the
        shape, or a rank other than 1 or 2.
    """
    index = _pick(response, output)
    tensor = response.outputs[index]
    where = f"output {tensor.name!r} of model {response.model_name!r}"
    datatype = tensor.datatype
    if datatype not in RAW_DTYPES:
        raise OutputError(f"{where}: expected datatype FP32, FP16 or FP64, received {datatype}")
    shape = tuple(int(d) for d in tensor.shape)
    if response.raw_output_contents:
        if index >= len(response.raw_output_contents):
            raise OutputError(
                f"{where}: expected raw_output_contents[{index}], received "
                f"{len(response.raw_output_contents)} raw outputs"
            )
        values = np.frombuffer(response.raw_output_contents[index], dtype=RAW_DTYPES[datatype])
    elif datatype in _TYPED:
        typed = getattr(tensor.contents, _TYPED[datatype])
        values = np.asarray(typed, dtype=RAW_DTYPES[datatype])
    else:
        raise OutputError(f"{where}: expected raw_output_contents for FP16, received none")
    if len(shape) not in (1, 2) or any(d < 0 for d in shape):
        raise OutputError(f"{where}: expected shape [n] or [n, K], received {list(shape)}")
    if values.size != math.prod(shape):
        raise OutputError(
            f"{where}: expected {math.prod(shape)} values for shape {list(shape)}, "
            f"received {values.size}"
        )
    values = values.reshape(shape)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    return values

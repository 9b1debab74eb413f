"""MLServer runtime serving an ONNX model from a Triton model repository directory.

MLServer stands in for NVIDIA Triton in our tests (Triton cannot run here, see DESIGN.md §6): both
speak the KServe V2 ``inference.GRPCInferenceService`` protocol. This runtime makes MLServer answer
the way Triton answers for an ``onnxruntime_onnx`` model:

- the model's ``parameters.uri`` is a Triton model directory (``config.pbtxt`` and
  ``<version>/model.onnx``); the version served is ``parameters.version`` or else the highest
  numbered sub-directory, as Triton's default ``latest`` version policy does;
- model metadata reports ``platform: onnxruntime_onnx``, ``versions: [<version>]`` and the input and
  output names, V2 datatypes and shapes read from the ONNX graph, with ``-1`` for the dynamic batch
  dimension (Triton reports ``[-1] + dims`` when ``max_batch_size > 0``);
- requests are checked like Triton checks them (input names, datatype, shape, ``max_batch_size``
  from ``config.pbtxt``), with messages that name the tensor, the expected and the received, and
  fail as ``INVALID_ARGUMENT``;
- outputs carry the model's own output names, datatype and shape, and no MLServer content-type
  parameters. MLServer answers in ``raw_output_contents`` when the request used raw inputs, as
  ``tritonclient`` always does.

It runs inside MLServer's own virtual environment (``.tools/mlserver-venv``), never in ours.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs.numpy import to_datatype
from mlserver.errors import InferenceError, MLServerError
from mlserver.types import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    RequestInput,
    ResponseOutput,
)
from mlserver.utils import get_model_uri

__all__ = ["TritonOnnxModel"]

PLATFORM = "onnxruntime_onnx"

# onnxruntime type strings -> (V2 protocol datatype, numpy dtype)
_ORT_TO_V2 = {
    "tensor(float)": ("FP32", np.float32),
    "tensor(double)": ("FP64", np.float64),
    "tensor(float16)": ("FP16", np.float16),
    "tensor(int8)": ("INT8", np.int8),
    "tensor(int16)": ("INT16", np.int16),
    "tensor(int32)": ("INT32", np.int32),
    "tensor(int64)": ("INT64", np.int64),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(uint16)": ("UINT16", np.uint16),
    "tensor(uint32)": ("UINT32", np.uint32),
    "tensor(uint64)": ("UINT64", np.uint64),
    "tensor(bool)": ("BOOL", np.bool_),
}

_MAX_BATCH_SIZE = re.compile(r"^\s*max_batch_size\s*:\s*(\d+)", re.MULTILINE)


class _ModelLoadError(MLServerError):
    """The Triton model directory is not servable (MLServer reports it at start-up)."""


def _metadata_tensor(node: ort.NodeArg) -> MetadataTensor:
    if node.type not in _ORT_TO_V2:
        raise _ModelLoadError(f"tensor {node.name!r} has unsupported ONNX type {node.type}")
    # Symbolic (str) or unknown (None) dimensions are the dynamic batch dimension: -1.
    shape = [d if isinstance(d, int) else -1 for d in node.shape]
    return MetadataTensor(name=node.name, datatype=_ORT_TO_V2[node.type][0], shape=shape)


def _version_dir(model_dir: Path, version: str | None) -> Path:
    if version:
        path = model_dir / version
        if not (path / "model.onnx").is_file():
            raise _ModelLoadError(f"version {version!r}: {path / 'model.onnx'} does not exist")
        return path
    versions = sorted(
        (int(p.name) for p in model_dir.iterdir() if p.name.isdigit() and p.is_dir()),
        reverse=True,
    )
    for v in versions:
        if (model_dir / str(v) / "model.onnx").is_file():
            return model_dir / str(v)
    raise _ModelLoadError(f"{model_dir} has no <version>/model.onnx (Triton model repository)")


def _max_batch_size(config: Path) -> int:
    if not config.is_file():
        raise _ModelLoadError(f"{config} does not exist (Triton model repository)")
    match = _MAX_BATCH_SIZE.search(config.read_text())
    return int(match.group(1)) if match else 0


def _datatype(value: object) -> str:
    # MLServer's pydantic models hold a Datatype enum or its plain string, depending on the path.
    return str(getattr(value, "value", value))


def _shape_error(model: str, tensor: MetadataTensor, received: list[int]) -> InferenceError:
    return InferenceError(
        f"unexpected shape for input {tensor.name!r} for model {model!r}: "
        f"expected {tensor.shape} (-1 is any size), received {received}"
    )


class TritonOnnxModel(MLModel):
    """Serves ``<uri>/<version>/model.onnx`` with onnxruntime on the CPU."""

    async def load(self) -> bool:
        model_dir = Path(await get_model_uri(self.settings))
        version_dir = _version_dir(model_dir, self.version)
        self._max_batch = _max_batch_size(model_dir / "config.pbtxt")
        options = ort.SessionOptions()
        # One thread: the model is tiny and CI has 2 cores shared by server and client.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(version_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = [_metadata_tensor(n) for n in self._session.get_inputs()]
        self.outputs = [_metadata_tensor(n) for n in self._session.get_outputs()]
        self._dtypes = {n.name: _ORT_TO_V2[n.type][1] for n in self._session.get_inputs()}
        self.settings.platform = PLATFORM
        self.settings.versions = [version_dir.name]
        self._version = version_dir.name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = self._feeds(payload.inputs)
        names = self._requested_outputs(payload)
        results = self._session.run(names, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self._version,
            outputs=[_response_output(n, a) for n, a in zip(names, results, strict=True)],
        )

    def _feeds(self, inputs: list[RequestInput]) -> dict[str, np.ndarray]:
        expected = {t.name: t for t in self.inputs or []}
        received = {i.name: i for i in inputs}
        for name in received.keys() - expected.keys():
            raise InferenceError(
                f"unexpected inference input {name!r} for model {self.name!r}: "
                f"expected inputs {sorted(expected)}"
            )
        for name in expected.keys() - received.keys():
            raise InferenceError(
                f"expected {len(expected)} inputs but got {len(received)} inputs for model "
                f"{self.name!r}: missing input {name!r}"
            )
        feeds, batch_sizes = {}, set()
        for name, tensor in expected.items():
            request_input = received[name]
            received_dt, expected_dt = _datatype(request_input.datatype), _datatype(tensor.datatype)
            if received_dt != expected_dt:
                raise InferenceError(
                    f"input {name!r} data-type is {received_dt!r}, "
                    f"but model {self.name!r} expects {expected_dt!r}"
                )
            shape = list(request_input.shape)
            if len(shape) != len(tensor.shape) or any(
                want not in (-1, got) for want, got in zip(tensor.shape, shape, strict=True)
            ):
                raise _shape_error(self.name, tensor, shape)
            if self._max_batch > 0:
                batch_sizes.add(shape[0])
            # MLServer has already unpacked raw_input_contents into a flat list of numbers.
            data = np.asarray(request_input.data.root, dtype=self._dtypes[name])
            if data.size != int(np.prod(shape)):
                raise InferenceError(
                    f"input {name!r} of model {self.name!r} has {data.size} elements, "
                    f"but its shape {shape} needs {int(np.prod(shape))}"
                )
            feeds[name] = data.reshape(shape)
        if len(batch_sizes) > 1:
            raise InferenceError(
                f"inputs of model {self.name!r} have different batch sizes {sorted(batch_sizes)}"
            )
        if batch_sizes and (batch := batch_sizes.pop()) > self._max_batch:
            raise InferenceError(
                f"inference request batch-size must be <= {self._max_batch} "
                f"for model {self.name!r}, received {batch}"
            )
        return feeds

    def _requested_outputs(self, payload: InferenceRequest) -> list[str]:
        known = [t.name for t in self.outputs or []]
        if not payload.outputs:
            return known
        names = [o.name for o in payload.outputs]
        for name in names:
            if name not in known:
                raise InferenceError(
                    f"unexpected inference output {name!r} for model {self.name!r}: "
                    f"expected one of {known}"
                )
        return names


def _response_output(name: str, array: np.ndarray) -> ResponseOutput:
    # No content-type parameters: Triton sends none. MLServer packs `data` back into
    # raw_output_contents with struct, which round-trips float32 values exactly.
    return ResponseOutput(
        name=name,
        shape=list(array.shape),
        datatype=to_datatype(array.dtype),
        data=array.ravel().tolist(),
    )

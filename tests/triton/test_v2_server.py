"""The V2-protocol server as a `tritonclient.grpc` client sees it (MLServer in for Triton).

Reference logits come from onnxruntime run directly on the same ONNX file, in MLServer's venv
(which has onnxruntime), so onnxruntime stays out of the project's own dependencies.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from sklearn.metrics import accuracy_score, recall_score
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
EVAL_PATH = ROOT / "deploy/triton/digits_eval.npz"

BATCH = 64
CONCURRENCY = 4
TIMEOUT_S = 30.0
# What scripts/train_digits_cnn.py printed for the committed model: per-class support of the
# held-out set (digits 8 and 9 are the minority classes) and correctly classified samples.
SUPPORT = [89, 91, 88, 92, 90, 91, 90, 90, 9, 14]
CORRECT = [89, 91, 87, 91, 88, 91, 89, 90, 6, 13]  # 735 / 744 = 0.987903

_REFERENCE = """
import sys, numpy as np, onnxruntime as ort
model, data, out = sys.argv[1:]
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
np.save(out, session.run(["logits"], {"input": np.load(data)["inputs"]})[0])
"""


@pytest.fixture(scope="module")
def eval_set() -> tuple[np.ndarray, np.ndarray]:
    with np.load(EVAL_PATH) as data:
        return data["inputs"], data["labels"]


@pytest.fixture(scope="module")
def reference_logits(mlserver, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    out = tmp_path_factory.mktemp("reference") / "logits.npy"
    model = mlserver.model_dir / "1/model.onnx"
    subprocess.run(
        [str(mlserver.python), "-c", _REFERENCE, str(model), str(EVAL_PATH), str(out)],
        check=True,
        timeout=120,
    )
    return np.load(out)


@pytest.fixture
def client(mlserver):
    with grpcclient.InferenceServerClient(mlserver.grpc_url) as c:
        yield c


def _inputs(x: np.ndarray, datatype: str = "FP32") -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("input", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return [tensor]


_OUTPUTS = [grpcclient.InferRequestedOutput("logits")]


def _infer_error(client, model: str, x: np.ndarray, datatype="FP32") -> InferenceServerException:
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, _inputs(x, datatype), outputs=_OUTPUTS, client_timeout=TIMEOUT_S)
    return info.value


def test_server_and_model_are_live_and_ready(client, mlserver) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(mlserver.model_name)
    assert client.is_model_ready(mlserver.model_name, "1")


def test_model_metadata_is_what_triton_reports_for_config_pbtxt(client, mlserver) -> None:
    config = text_format.Parse(
        (mlserver.model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert config.max_batch_size > 0  # so Triton reports a -1 batch dimension first

    def triton_view(tensors) -> list[tuple[str, str, list[int]]]:
        return [
            (
                t.name,
                model_config_pb2.DataType.Name(t.data_type).removeprefix("TYPE_"),
                [-1, *t.dims],
            )
            for t in tensors
        ]

    meta = client.get_model_metadata(mlserver.model_name)
    assert meta.name == config.name == mlserver.model_name
    assert meta.platform == config.platform == "onnxruntime_onnx"
    assert list(meta.versions) == ["1"]
    served_inputs = [(t.name, t.datatype, list(t.shape)) for t in meta.inputs]
    served_outputs = [(t.name, t.datatype, list(t.shape)) for t in meta.outputs]
    assert served_inputs == triton_view(config.input) == [("input", "FP32", [-1, 1, 8, 8])]
    assert served_outputs == triton_view(config.output) == [("logits", "FP32", [-1, 10])]


def test_unary_infer_matches_onnxruntime(client, mlserver, eval_set, reference_logits) -> None:
    inputs, _ = eval_set
    parts = []
    for start in range(0, len(inputs), BATCH):
        x = inputs[start : start + BATCH]
        result = client.infer(
            mlserver.model_name, _inputs(x), outputs=_OUTPUTS, client_timeout=TIMEOUT_S
        )
        response = result.get_response()
        assert response.model_name == mlserver.model_name
        assert response.model_version == "1"
        assert len(response.raw_output_contents) == 1  # raw tensor, as Triton answers
        assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
            ("logits", "FP32", [len(x), 10])
        ]
        parts.append(result.as_numpy("logits"))
    logits = np.concatenate(parts)
    assert logits.dtype == np.float32
    assert logits.shape == reference_logits.shape == (len(inputs), 10)
    assert np.max(np.abs(logits - reference_logits)) <= 1e-5


def test_async_infer_with_bounded_concurrency(client, mlserver, eval_set, reference_logits):
    inputs, _ = eval_set
    starts = list(range(0, len(inputs), BATCH))
    slots = threading.BoundedSemaphore(CONCURRENCY)
    lock = threading.Lock()
    results: dict[int, np.ndarray] = {}
    errors: list[Exception] = []
    in_flight = peak = 0
    done = threading.Event()

    def callback(start: int, result, error) -> None:
        nonlocal in_flight
        with lock:
            in_flight -= 1
            if error is not None:
                errors.append(error)
            else:
                results[start] = result.as_numpy("logits")
            if len(results) + len(errors) == len(starts):
                done.set()
        slots.release()

    for start in starts:
        assert slots.acquire(timeout=TIMEOUT_S), "a request never completed"
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        client.async_infer(
            mlserver.model_name,
            _inputs(inputs[start : start + BATCH]),
            callback=lambda result, error, start=start: callback(start, result, error),
            outputs=_OUTPUTS,
            client_timeout=TIMEOUT_S,
        )
    assert done.wait(TIMEOUT_S), "not every request completed"
    assert errors == []
    assert 1 <= peak <= CONCURRENCY
    logits = np.concatenate([results[s] for s in starts])
    assert np.max(np.abs(logits - reference_logits)) <= 1e-5


def test_served_accuracy_is_what_training_printed(client, mlserver, eval_set) -> None:
    inputs, labels = eval_set
    assert inputs.dtype == np.float32 and inputs.shape == (len(labels), 1, 8, 8)
    assert labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == SUPPORT
    logits = np.concatenate(
        [
            client.infer(
                mlserver.model_name,
                _inputs(inputs[s : s + 256]),
                outputs=_OUTPUTS,
                client_timeout=TIMEOUT_S,
            ).as_numpy("logits")
            for s in range(0, len(inputs), 256)  # 256 = max_batch_size in config.pbtxt
        ]
    )
    pred = logits.argmax(axis=1)
    assert accuracy_score(labels, pred) == sum(CORRECT) / sum(SUPPORT)
    recall = recall_score(labels, pred, labels=np.arange(10), average=None)
    np.testing.assert_array_equal(recall, np.array(CORRECT) / np.array(SUPPORT))


def test_unknown_model_is_not_found(client, eval_set) -> None:
    error = _infer_error(client, "no_such_model", eval_set[0][:2])
    assert error.status() == str(grpc.StatusCode.NOT_FOUND)
    assert "no_such_model" in error.message()
    with pytest.raises(InferenceServerException, match="no_such_model") as info:
        client.get_model_metadata("no_such_model")
    assert info.value.status() == str(grpc.StatusCode.NOT_FOUND)


def test_wrong_input_shape_is_invalid_argument(client, mlserver, eval_set) -> None:
    x = eval_set[0][:4, 0]  # (4, 8, 8): the channel dimension is missing
    error = _infer_error(client, mlserver.model_name, x)
    assert error.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "'input'" in error.message()
    assert "[-1, 1, 8, 8]" in error.message() and "[4, 8, 8]" in error.message()


def test_wrong_datatype_is_invalid_argument(client, mlserver, eval_set) -> None:
    x = eval_set[0][:4].astype(np.float64)
    error = _infer_error(client, mlserver.model_name, x, datatype="FP64")
    assert error.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "'FP64'" in error.message() and "'FP32'" in error.message()


def test_batch_over_max_batch_size_is_rejected_not_truncated(client, mlserver) -> None:
    # 17,000 samples are 4.35 MB: over MLServer's default 4 MiB receive limit, so this also
    # shows the raised limit (a RESOURCE_EXHAUSTED here would mean it is still 4 MiB).
    x = np.zeros((17_000, 1, 8, 8), dtype=np.float32)
    error = _infer_error(client, mlserver.model_name, x)
    assert error.status() == str(grpc.StatusCode.INVALID_ARGUMENT)
    assert "batch-size must be <= 256" in error.message()


def test_unknown_requested_output_is_invalid_argument(client, mlserver, eval_set) -> None:
    with pytest.raises(InferenceServerException, match="'probabilities'") as info:
        client.infer(
            mlserver.model_name,
            _inputs(eval_set[0][:2]),
            outputs=[grpcclient.InferRequestedOutput("probabilities")],
            client_timeout=TIMEOUT_S,
        )
    assert info.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT)

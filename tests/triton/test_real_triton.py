"""What only NVIDIA's Triton shows: its shutdown answers, its streaming, model control, restarts.

Each test here starts a Triton of its own (``realtriton.start``: a few seconds), because it stops,
restarts or reconfigures it; what holds on every V2 server runs on the session's Triton and on
MLServer in test_triton_eval.py and test_proxy.py.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from evalstream_server.sources import SourceUnavailableError, TritonSource

from . import realtriton
from .conftest import FakeSink, start_proxy, wait_for

ROOT = Path(__file__).resolve().parents[2]
EVAL_PATH = ROOT / "deploy/triton/digits_eval.npz"

pytestmark = pytest.mark.skipif(
    not realtriton.installed(), reason="Triton is not installed: bash scripts/install-tools.sh"
)


@pytest.fixture(scope="module")
def eval_set() -> tuple[np.ndarray, np.ndarray]:
    with np.load(EVAL_PATH) as data:
        return data["inputs"], data["labels"]


@pytest.fixture
def own_triton(tmp_path):
    server = realtriton.start(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_sigterm_during_a_run_is_reported_as_a_shutdown(own_triton, eval_set) -> None:
    """Triton unloads its models on SIGTERM before it closes gRPC: requests then get NOT_FOUND
    "... has no available versions" or UNAVAILABLE "Server is stopping". That is a server going
    away, not an unknown model: retried within connect_timeout, then reported as a shutdown."""
    inputs = np.tile(eval_set[0], (20, 1, 1, 1))
    source = TritonSource(
        own_triton.grpc_url, "digits_cnn", batch_size=8, concurrency=2, connect_timeout=2.0
    )
    with source, pytest.raises(SourceUnavailableError) as info:
        for k, _ in enumerate(source.iter_infer(inputs)):
            if k == 2:
                own_triton.terminate()
    message = str(info.value)
    assert message.startswith(f"inference server {own_triton.grpc_url}:"), message
    assert "shutting down" in message, message


def test_a_run_survives_a_triton_restart_and_counts_every_row_once(
    own_triton, eval_set, tmp_path, restore_logging, capsys
) -> None:
    """SIGTERM and a restart on the same ports in the middle of `evalstream triton-eval`: the
    batches refused while Triton stopped are resent once it is back (the run's summary counts
    them: a restart that fell after the run would resend nothing), and the stream holds every
    row exactly once, with the scores Triton gives."""
    from evalstream import EvalClient
    from evalstream_server.cli import main
    from evalstream_server.server import ServerThread
    from evalstream_server.settings import Settings

    inputs, labels = np.tile(eval_set[0], (10, 1, 1, 1)), np.tile(eval_set[1], 10)
    data = tmp_path / "x10.npz"
    np.savez(data, inputs=inputs, labels=labels)
    target = ServerThread(Settings(host="127.0.0.1", grpc_port=0, metrics_port=-1)).start()
    client = EvalClient(target.target)
    outcome: dict[str, int] = {}
    argv = [
        "triton-eval", "--triton", own_triton.grpc_url, "--model", "digits_cnn",
        "--data", str(data), "--stream", "restarted", "--target", target.target,
        "--batch-size", "8", "--concurrency", "2", "--connect-timeout", "60",
        "--resolution", "exact",
    ]  # fmt: skip
    run = threading.Thread(target=lambda: outcome.setdefault("rc", main(argv)), daemon=True)
    try:
        run.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.report("restarted").n_samples > 0:
                    break
            except Exception:  # the stream is created by the first batch's arrival
                pass
            time.sleep(0.02)
        assert own_triton.restart() is None, own_triton.log_tail()
        run.join(timeout=120)
        assert not run.is_alive() and outcome.get("rc") == 0, outcome
        report = client.report("restarted").to_dict()
    finally:
        client.close()
        target.stop()
    assert "stopping" in own_triton.log_path.read_text() or "unloaded" in (
        own_triton.log_path.read_text()
    )
    summary = re.search(r"(\d+) inference requests resent", capsys.readouterr().err)
    assert summary is not None and int(summary.group(1)) > 0, "the restart missed the run"
    assert report["n_samples"] == len(labels)
    with TritonSource(own_triton.grpc_url, "digits_cnn", batch_size=8) as source:
        logits = source.infer(inputs)
    want = np.zeros((10, 10), dtype=np.int64)
    np.add.at(want, (labels, logits.argmax(axis=1)), 1)
    assert report["confusion_matrix"] == want.tolist()


def _infer_request(x: np.ndarray, request_id: str = "", model: str = "digits_cnn") -> bytes:
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    request.outputs.add(name="logits")
    request.raw_input_contents.append(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    return request.SerializeToString()


def _stream(url: str, requests: list[bytes]) -> list[bytes]:
    import grpc

    with grpc.insecure_channel(url) as channel:
        call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        return list(call(iter(requests), timeout=30))


def test_stream_infer_through_the_proxy_is_tritons_and_is_recorded(triton, eval_set) -> None:
    """ModelStreamInfer through the proxy: Triton's own answers (with its
    ``triton_final_response`` parameter), its errors inside the stream (a wrong shape, a
    zero-row request) with the stream kept open, and only the rows it scored recorded."""
    from evalstream_server.proxy import row_ids
    from evalstream_server.proxy.wire import with_id
    from tritonclient.grpc import service_pb2

    x = eval_set[0][:6]
    requests = [
        _infer_request(x[:2], "s1"),
        _infer_request(x[2:3]),  # no id: the proxy gives one
        _infer_request(x[:2, :, :4, :], "bad-shape"),
        _infer_request(x[:0], "no-rows"),
        _infer_request(x[3:6], "s3"),
    ]
    sink = FakeSink()
    running = start_proxy(triton.grpc_url, sink)
    try:
        through = _stream(running.address, requests)
        wait_for(lambda: len(sink.ids) == 6, "6 recorded rows")
    finally:
        running.stop()
    answers = [service_pb2.ModelStreamInferResponse.FromString(r) for r in through]
    assert len(answers) == len(requests)
    by_id = {a.infer_response.id: a for a in answers}
    given = next(i for i in by_id if i not in ("s1", "bad-shape", "no-rows", "s3"))
    assert len(given) == 32
    # Triton itself, sent the requests with the ids the proxy forwarded
    ids = ["s1", given, "bad-shape", "no-rows", "s3"]
    forwarded = [with_id(r, i) for r, i in zip(requests, ids, strict=True)]
    direct = {
        service_pb2.ModelStreamInferResponse.FromString(r).infer_response.id: r
        for r in _stream(triton.grpc_url, forwarded)
    }
    for request_id, answer in by_id.items():
        assert answer.SerializeToString() == direct[request_id], request_id
    assert by_id["s1"].infer_response.parameters["triton_final_response"].bool_param is True
    assert by_id["bad-shape"].error_message and "input" in by_id["bad-shape"].error_message
    assert by_id["no-rows"].error_message, "Triton refuses a zero-row request"
    assert sorted(sink.ids) == sorted([*row_ids("s1", 2), given, *row_ids("s3", 3)])


@pytest.fixture
def explicit_triton(tmp_path):
    server = realtriton.start(tmp_path, explicit=True)
    try:
        yield server
    finally:
        server.stop()


def test_a_model_unloaded_under_the_proxy_and_triton_eval(explicit_triton, eval_set) -> None:
    """Triton's model control: digits_cnn unloaded while the proxy runs. The proxy passes
    Triton's answers through unchanged (errors included) and records again once it is loaded;
    triton-eval waits for the model within --connect-timeout, then says it is not ready."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    url = explicit_triton.grpc_url
    x = eval_set[0][:4]
    sink = FakeSink()
    running = start_proxy(url, sink)
    control = grpcclient.InferenceServerClient(url)
    try:
        direct_ok = _stream(url, [_infer_request(x, "a")])
        assert _stream(running.address, [_infer_request(x, "a")]) == direct_ok
        control.unload_model("digits_cnn")
        wait_for(lambda: not control.is_model_ready("digits_cnn"), "digits_cnn unloaded")
        answers = []
        for address in (url, running.address):
            with pytest.raises(InferenceServerException) as info:
                tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
                tensor.set_data_from_numpy(x)
                with grpcclient.InferenceServerClient(address) as c:
                    c.infer("digits_cnn", [tensor], request_id="b", client_timeout=30)
            answers.append((info.value.status(), info.value.message()))
        assert answers[0] == answers[1], answers  # Triton's words, unchanged
        with pytest.raises(SourceUnavailableError) as unready:
            TritonSource(url, "digits_cnn", connect_timeout=1.0).check()
        assert "expected model 'digits_cnn' ready within 1 s" in str(unready.value)
        # its state in Triton's repository index
        assert re.search(r"'digits_cnn' version 1 (UNLOADING|UNAVAILABLE)", str(unready.value))
        control.load_model("digits_cnn")
        wait_for(lambda: control.is_model_ready("digits_cnn"), "digits_cnn loaded", 60)
        assert _stream(running.address, [_infer_request(x, "c")])
        wait_for(lambda: len(sink.ids) == 8, "rows of a and c recorded")
    finally:
        control.close()
        running.stop()
    assert sink.ids == [f"a/{i}" for i in range(4)] + [f"c/{i}" for i in range(4)]


def test_the_proxy_outlives_a_triton_restart(own_triton, eval_set) -> None:
    """Triton stopped under the proxy: calls get UNAVAILABLE (the proxy's words for an upstream
    that does not answer); once Triton is back on its address the same proxy forwards and
    records again, with no restart of its own."""
    import grpc

    x = eval_set[0][:2]
    sink = FakeSink()
    running = start_proxy(own_triton.grpc_url, sink)
    try:
        assert _stream(running.address, [_infer_request(x, "before")])
        own_triton.stop()
        with grpc.insecure_channel(running.address) as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            with pytest.raises(grpc.RpcError) as info:
                call(_infer_request(x, "during"), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        own_triton.spawn()
        assert realtriton.wait_ready(own_triton) is None, own_triton.log_tail()
        deadline = time.monotonic() + 30
        while True:  # the proxy's channel reconnects with backoff
            try:
                with grpc.insecure_channel(running.address) as channel:
                    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
                    call(_infer_request(x, "after"), timeout=10)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the proxy did not reach Triton again"
                time.sleep(0.2)
        wait_for(lambda: "after/1" in sink.ids, "rows after the restart recorded")
    finally:
        running.stop()
    assert sink.ids[:2] == ["before/0", "before/1"] and "during/0" not in sink.ids


def test_a_model_unloaded_during_a_run_is_named(explicit_triton, eval_set) -> None:
    """Unloaded mid-run while the server stays live: resent within connect_timeout, then the
    error says the model was unloaded (not that the server is shutting down)."""
    import tritonclient.grpc as grpcclient

    inputs = np.tile(eval_set[0], (20, 1, 1, 1))
    control = grpcclient.InferenceServerClient(explicit_triton.grpc_url)
    source = TritonSource(
        explicit_triton.grpc_url, "digits_cnn", batch_size=8, concurrency=2, connect_timeout=1.0
    )
    try:
        with source, pytest.raises(SourceUnavailableError) as info:
            for k, _ in enumerate(source.iter_infer(inputs)):
                if k == 2:
                    control.unload_model("digits_cnn")
    finally:
        control.close()
    assert "model 'digits_cnn' unloaded while the job ran" in str(info.value), str(info.value)


# NGC container release -> the Triton server version it ships (NVIDIA's support matrix)
_NGC_RELEASES = {"24.08": "2.49.0", "24.09": "2.50.0", "24.10": "2.51.0", "24.11": "2.52.0"}


def test_the_gpu_host_instructions_run_what_the_tests_run(triton) -> None:
    """deploy/compose.yaml's Triton (the GPU host's) is the release the tests run on CPU, with
    the flags the tests give it, serving the repository whose model the tests serve."""
    import tritonclient.grpc as grpcclient
    import yaml

    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())["services"]["triton"]
    release = compose["image"].split(":")[1].removesuffix("-py3")
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        version = client.get_server_metadata().version
    assert _NGC_RELEASES.get(release) == version, (release, version)
    assert "--strict-readiness=true" in compose["command"]
    assert "--model-repository=/models" in compose["command"]
    assert "./triton/model_repository:/models:ro" in compose["volumes"]
    served = ROOT / "deploy/triton/model_repository/digits_cnn"
    tested = ROOT / "deploy/triton/python_repository/digits_cnn"
    assert (tested / "1/model.onnx").resolve() == (served / "1/model.onnx").resolve()

    def io_blocks(config: Path) -> str:  # inputs, outputs and batching: all but the backend
        text = config.read_text()
        return text[text.index("max_batch_size") : text.index("instance_group")]

    assert io_blocks(tested / "config.pbtxt") == io_blocks(served / "config.pbtxt")

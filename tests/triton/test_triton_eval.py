"""The whole path tritonclient -> V2 server -> evalstream, and its errors, on NVIDIA Triton and on
MLServer (``v2server``: each in turn, with an evalstream server of its own).

The reference is independent of the evalstream path: logits from a direct ``tritonclient`` infer
(in batches of 64, as the source sends them, so every row is computed the same way), softmax in
float64 here, then float32 (what the engine ranks), then scikit-learn.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from evalstream import EvalClient, NotFoundError
from evalstream.text import format_report
from evalstream_server.cli import main
from evalstream_server.sources import (
    ProgressLine,
    SourceInputError,
    SourceUnavailableError,
    TritonSource,
    ensure_stream,
    feed_stream,
    plan_stream,
)
from evalstream_server.sources import triton as triton_module
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    log_loss,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)
from sklearn.preprocessing import label_binarize

from .conftest import free_port

EVAL_PATH = Path(__file__).resolve().parents[2] / "deploy/triton/digits_eval.npz"
BATCH = 64
K = 10
EXACT = 1e-12


@pytest.fixture(scope="module")
def evalstream_target(evalstream_per_v2server):
    return evalstream_per_v2server


@pytest.fixture(scope="module")
def eval_set() -> tuple[np.ndarray, np.ndarray]:
    with np.load(EVAL_PATH) as data:
        return data["inputs"], data["labels"]


@pytest.fixture(scope="module")
def direct_logits(v2server, eval_set) -> np.ndarray:
    """Logits of a plain unary infer per batch, without the source."""
    inputs, _ = eval_set
    parts = []
    with grpcclient.InferenceServerClient(v2server.grpc_url) as client:
        for start in range(0, len(inputs), BATCH):
            x = inputs[start : start + BATCH]
            tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            result = client.infer(
                v2server.model_name,
                [tensor],
                outputs=[grpcclient.InferRequestedOutput("logits")],
                client_timeout=30,
            )
            parts.append(result.as_numpy("logits"))
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def probabilities(direct_logits) -> np.ndarray:
    z = direct_logits.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def client(evalstream_target):
    with EvalClient(evalstream_target.target) as c:
        yield c


def _cli(v2server, evalstream_target, stream: str, *extra: str) -> list[str]:
    return [
        "triton-eval",
        "--triton", v2server.grpc_url,
        "--model", v2server.model_name,
        "--data", str(EVAL_PATH),
        "--stream", stream,
        "--target", evalstream_target.target,
        *extra,
    ]  # fmt: skip


def _assert_threshold_metrics_match(report: dict, labels: np.ndarray, p: np.ndarray) -> None:
    pred = p.argmax(axis=1)
    names = [str(c) for c in report["classes"]]
    assert report["n_samples"] == len(labels)
    assert report["confusion_matrix"] == confusion_matrix(labels, pred, labels=range(K)).tolist()
    assert report["accuracy"]["value"] == pytest.approx(accuracy_score(labels, pred), abs=EXACT)
    for metric, fn in (("precision", precision_score), ("recall", recall_score), ("f1", f1_score)):
        for average in ("macro", "weighted", "micro"):
            want = fn(labels, pred, average=average, labels=range(K), zero_division=0)
            assert report[metric][average]["value"] == pytest.approx(want, abs=EXACT)
        per_class = fn(labels, pred, average=None, labels=range(K), zero_division=0)
        got = [report[metric]["per_class"][n]["value"] for n in names]
        np.testing.assert_allclose(got, per_class, rtol=0, atol=EXACT)
    for key, want in (
        ("balanced_accuracy", balanced_accuracy_score(labels, pred)),
        ("matthews_corrcoef", matthews_corrcoef(labels, pred)),
        ("cohen_kappa", cohen_kappa_score(labels, pred)),
    ):
        assert report[key]["value"] == pytest.approx(want, abs=EXACT), key


def _ranking_reference(labels: np.ndarray, p: np.ndarray) -> dict[str, float]:
    onehot = label_binarize(labels, classes=range(K))
    return {
        "macro": roc_auc_score(labels, p, multi_class="ovr", average="macro"),
        "weighted": roc_auc_score(labels, p, multi_class="ovr", average="weighted"),
        "micro": roc_auc_score(onehot, p, average="micro"),
        "ovo_macro": roc_auc_score(labels, p, multi_class="ovo", average="macro"),
        "ap_macro": average_precision_score(onehot, p, average="macro"),
    }


# -- the whole path -----------------------------------------------------------------------------
def test_source_scores_are_the_servers_in_row_order(v2server, eval_set, direct_logits) -> None:
    inputs, _ = eval_set
    with TritonSource(v2server.grpc_url, v2server.model_name, batch_size=BATCH) as source:
        info = source.check()
        assert (info.input_name, info.input_datatype, info.input_shape) == (
            "input", "FP32", (-1, 1, 8, 8),
        )  # fmt: skip
        assert (info.output_name, info.output_shape, info.n_classes) == ("logits", (-1, K), K)
        # Triton serves the model config; MLServer does not (UNIMPLEMENTED)
        assert info.max_batch_size == (256 if v2server.kind == "triton" else None)
        scores = source.infer(inputs.astype(np.float64))  # a same-kind cast to FP32
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores, direct_logits)


def test_iter_infer_keeps_order_with_bounded_requests_in_flight(v2server, eval_set, direct_logits):
    inputs, _ = eval_set
    source = TritonSource(v2server.grpc_url, v2server.model_name, concurrency=3, batch_size=50)
    source.check()
    real = source._client.async_infer
    lock = threading.Lock()
    in_flight = peak = 0

    def counting(*args, callback, **kwargs):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)

        def done(result=None, error=None):
            nonlocal in_flight
            with lock:
                in_flight -= 1
            callback(result=result, error=error)

        return real(*args, callback=done, **kwargs)

    source._client.async_infer = counting
    with source:
        batches = list(source.iter_infer(inputs))
    assert [start for start, _ in batches] == list(range(0, len(inputs), 50))
    assert [len(s) for _, s in batches] == [50] * 14 + [44]
    assert 1 <= peak <= 3
    # Other batch boundaries than the reference's: equal up to float32 rounding.
    np.testing.assert_allclose(np.concatenate([s for _, s in batches]), direct_logits, atol=1e-5)


def test_exact_stream_matches_sklearn_to_1e12(
    v2server, evalstream_target, client, eval_set, probabilities
) -> None:
    inputs, labels = eval_set
    with TritonSource(v2server.grpc_url, v2server.model_name, batch_size=BATCH) as source:
        info = source.check()
        client.create_stream(
            "digits-exact", task="multiclass", classes=[str(i) for i in range(K)],
            scores="logits", resolution="exact",
        )  # fmt: skip
        plan = plan_stream(client, "digits-exact", info, labels=labels)
        assert (plan.scores, plan.exists) == ("logits", True)
        assert ensure_stream(client, plan) is False
        sizes: list[int] = []
        spy = SimpleNamespace(
            log=lambda stream, y, s: (sizes.append(len(y)), client.log(stream, y, s))
        )
        started = time.monotonic()
        samples, seconds = feed_stream(
            spy, "digits-exact", labels, source.iter_infer(inputs), log_rows=200
        )
        elapsed = time.monotonic() - started
    # Batches of 64 gathered to at least log_rows per acknowledged call, the rest at the end.
    assert sizes == [256, 256, 232] and samples == sum(sizes) == len(labels)
    assert client.get_stream("digits-exact").sample_count == len(labels)
    assert 0 < seconds <= elapsed  # the time of the feed, not a clock reading
    report = client.report("digits-exact")
    data = report.to_dict()
    assert data["resolution"]["kind"] == "exact"
    _assert_threshold_metrics_match(data, labels, probabilities)
    want = _ranking_reference(labels, probabilities)
    assert report.roc_auc_score(average="macro") == pytest.approx(want["macro"], abs=EXACT)
    assert report.roc_auc_score(average="weighted") == pytest.approx(want["weighted"], abs=EXACT)
    assert report.roc_auc_score(average="micro") == pytest.approx(want["micro"], abs=EXACT)
    assert report.roc_auc_score("macro", multi_class="ovo") == pytest.approx(
        want["ovo_macro"], abs=EXACT
    )
    assert report.average_precision_score("macro") == pytest.approx(want["ap_macro"], abs=EXACT)
    per_class = roc_auc_score(label_binarize(labels, classes=range(K)), probabilities, average=None)
    got = report.roc_auc_score(average=None)
    np.testing.assert_allclose([got[str(i)] for i in range(K)], per_class, rtol=0, atol=EXACT)
    assert report.top_k_accuracy_score(k=2) == pytest.approx(
        top_k_accuracy_score(labels, probabilities, k=2, labels=range(K)), abs=EXACT
    )
    assert report.log_loss() == pytest.approx(log_loss(labels, probabilities), rel=1e-6)


def test_cli_creates_the_stream_and_prints_the_report(
    v2server, evalstream_target, client, eval_set, probabilities, capsys
) -> None:
    _, labels = eval_set
    assert main(_cli(v2server, evalstream_target, "digits-cli")) == 0
    out, err = capsys.readouterr()
    stream = client.get_stream("digits-cli")  # created with the defaults
    assert stream.task == "multiclass" and stream.scores == "logits"
    assert stream.classes == tuple(str(i) for i in range(K))
    assert stream.resolution.startswith("bins:")
    report = client.report("digits-cli")
    data = report.to_dict()
    assert out.strip() == format_report(data).strip()
    assert "samples/s" in err and f"{len(labels)}/{len(labels)} samples" in err
    assert "-> stream 'digits-cli' (created): 744 samples acknowledged" in err
    _assert_threshold_metrics_match(data, labels, probabilities)
    want = _ranking_reference(labels, probabilities)
    for average in ("macro", "weighted", "micro"):  # binned: within its guaranteed bounds
        low, high = report.bounds("roc_auc", average)
        assert low <= want[average] <= high
        assert report.roc_auc_score(average=average) == pytest.approx(want[average], abs=1e-3)
    # One producer id for the whole run, however many log calls it made.
    producers = evalstream_target.store.get("digits-cli").producers
    assert len(producers) == 1 and next(iter(producers)).startswith("triton-eval-")


def test_cli_json_into_an_existing_exact_stream(
    v2server, evalstream_target, client, eval_set, probabilities, capsys
) -> None:
    _, labels = eval_set
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    client.create_stream(
        "digits-json", task="multiclass", classes=names, scores="logits", resolution="exact"
    )
    argv = _cli(v2server, evalstream_target, "digits-json", "--json", "--concurrency", "2")
    assert main([*argv, "--batch-size", "256"]) == 0  # 256 = max_batch_size in config.pbtxt
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data == client.report("digits-json").to_dict()
    assert data["classes"] == names and "(created)" not in err
    _assert_threshold_metrics_match(data, labels, probabilities)
    want = _ranking_reference(labels, probabilities)
    for average in ("macro", "weighted", "micro"):
        assert data["roc_auc"][average]["value"] == pytest.approx(want[average], abs=EXACT)


# -- errors: exit code 2 for bad data or arguments, 1 for a failing server ----------------------
def _bad_npz(tmp_path, inputs, labels):
    path = tmp_path / "bad.npz"
    np.savez(path, inputs=inputs, labels=labels)
    return str(path)


def _error_line(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("evalstream triton-eval: ")
    return lines[0]


def test_unreachable_inference_server(v2server, evalstream_target, capsys) -> None:
    url = f"127.0.0.1:{free_port()}"
    argv = _cli(v2server, evalstream_target, "never-a")
    argv[argv.index("--triton") + 1] = url
    assert main([*argv, "--connect-timeout", "1"]) == 1
    line = _error_line(capsys)
    assert f"inference server {url}" in line and "no answer within 1 s" in line
    with TritonSource(url, "digits_cnn", connect_timeout=0.5) as source:
        with pytest.raises(SourceUnavailableError) as info:
            source.check()
    assert info.value.field == f"inference server {url}"


def test_unknown_model_lists_the_servers_models(v2server, evalstream_target, client, capsys):
    argv = _cli(v2server, evalstream_target, "never-b")
    argv[argv.index("--model") + 1] = "no_such_model"
    assert main(argv) == 2
    line = _error_line(capsys)
    # Triton's repository also holds the model that failed to load: it is listed too
    models = "['broken', 'digits_cnn']" if v2server.kind == "triton" else "['digits_cnn']"
    assert "'no_such_model'" in line and models in line
    with pytest.raises(NotFoundError):
        client.get_stream("never-b")


def test_unknown_model_version(v2server, evalstream_target, capsys) -> None:
    argv = _cli(v2server, evalstream_target, "never-c", "--model-version", "7")
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "version" in line and "['1']" in line and "'7'" in line


def test_wrong_input_shape(v2server, evalstream_target, client, eval_set, tmp_path, capsys):
    inputs, labels = eval_set
    argv = _cli(v2server, evalstream_target, "never-d")
    argv[argv.index("--data") + 1] = _bad_npz(tmp_path, inputs[:20, 0], labels[:20])
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "input 'input'" in line
    assert "expected shape [-1, 1, 8, 8]" in line and "received shape [20, 8, 8]" in line
    with pytest.raises(NotFoundError):
        client.get_stream("never-d")


def test_classes_that_do_not_match_the_output_width(v2server, evalstream_target, client, capsys):
    argv = _cli(v2server, evalstream_target, "never-e", "--classes", "a,b,c")
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "classes: expected 10 class names" in line and "output 'logits'" in line
    assert "received 3 (a, b, c)" in line
    with pytest.raises(NotFoundError):  # nothing is created for a run that cannot succeed
        client.get_stream("never-e")


def test_existing_stream_with_another_class_count(v2server, evalstream_target, client, capsys):
    client.create_stream("three-classes", task="multiclass", classes=["a", "b", "c"])
    assert main(_cli(v2server, evalstream_target, "three-classes")) == 2
    line = _error_line(capsys)
    assert "output 'logits'" in line and "expected 3 columns" in line
    assert "received 10 columns" in line
    assert client.get_stream("three-classes").sample_count == 0


def test_labels_and_inputs_of_different_lengths(
    v2server, evalstream_target, eval_set, tmp_path, capsys
) -> None:
    inputs, labels = eval_set
    argv = _cli(v2server, evalstream_target, "never-f")
    argv[argv.index("--data") + 1] = _bad_npz(tmp_path, inputs[:20], labels[:19])
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "labels: expected 20 labels, one per row of inputs, received 19" in line


def test_batch_over_the_models_max_batch_size(v2server, evalstream_target, client, capsys):
    argv = _cli(v2server, evalstream_target, "never-g", "--batch-size", "300")
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "--batch-size: expected at most 256" in line and "received 300" in line
    # MLServer serves no model config, so the server refused the first request; the stream
    # is created only after the first batch came back.
    with pytest.raises(NotFoundError):
        client.get_stream("never-g")


def test_logits_declared_as_probabilities(v2server, evalstream_target, client, capsys):
    argv = _cli(v2server, evalstream_target, "never-h", "--outputs", "probabilities")
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "expected probabilities" in line and "outputs='logits'" in line
    with pytest.raises(NotFoundError):
        client.get_stream("never-h")


def test_unreachable_evalstream(v2server, evalstream_target, capsys) -> None:
    argv = _cli(v2server, evalstream_target, "never-i")
    target = f"127.0.0.1:{free_port()}"
    argv[argv.index("--target") + 1] = target
    assert main(argv) == 1
    line = _error_line(capsys)
    assert f"evalstream server {target}: UNAVAILABLE" in line


def test_source_arguments_are_checked_before_connecting() -> None:
    with pytest.raises(SourceInputError, match=r"outputs: expected one of \['logits'"):
        TritonSource("127.0.0.1:1", "m", outputs="softmax")
    with pytest.raises(SourceInputError, match="concurrency: expected a positive integer"):
        TritonSource("127.0.0.1:1", "m", concurrency=0)


# -- progress -----------------------------------------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal() -> None:
    now = [0.0]
    out = _Terminal()
    line = ProgressLine(1000, label="x: ", stream=out, clock=lambda: now[0])
    for done in (100, 500, 1000):
        now[0] += 1.0
        line.update(done)
    line.finish(1000)
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "x: 1000/1000 samples (100%)  333 samples/s  3.0 s" in text


def test_progress_writes_periodic_lines_elsewhere() -> None:
    now = [0.0]
    out = io.StringIO()
    line = ProgressLine(100, stream=out, interval=5.0, clock=lambda: now[0])
    for done in range(10, 101, 10):
        now[0] += 1.0
        line.update(done)
    line.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [
        "50/100 samples (50%)  10 samples/s  5.0 s",
        "100/100 samples (100%)  10 samples/s  10.0 s",
        "100/100 samples (100%)  10 samples/s  10.0 s",
    ]


# -- stand-ins answering as Triton does, for states the live servers are not put in -------------
class _TritonLike:
    """Answers as Triton does for ``digits_cnn``: model config served, index with states."""

    state, reason, max_batch_size = "READY", "", 256

    def __init__(self, url: str, *args, **kwargs) -> None:
        self.url = url

    def close(self) -> None:
        pass

    def is_server_live(self, client_timeout=None) -> bool:
        return True

    def is_server_ready(self, client_timeout=None) -> bool:
        return self.state == "READY"  # --strict-readiness: not ready while a model is not

    def is_model_ready(self, name, version="", client_timeout=None) -> bool:
        return name == "digits_cnn" and self.state == "READY"  # Triton: False, not an error

    def get_model_repository_index(self, client_timeout=None):
        model = SimpleNamespace(
            name="digits_cnn", version="1", state=self.state, reason=self.reason
        )
        return SimpleNamespace(models=[model])

    def get_model_metadata(self, name, version="", client_timeout=None):
        tensor = SimpleNamespace
        return SimpleNamespace(
            name=name,
            platform="onnxruntime_onnx",
            versions=["1"],
            inputs=[tensor(name="input", datatype="FP32", shape=[-1, 1, 8, 8])],
            outputs=[tensor(name="logits", datatype="FP32", shape=[-1, 10])],
        )

    def get_model_config(self, name, version="", client_timeout=None):
        return SimpleNamespace(config=SimpleNamespace(max_batch_size=self.max_batch_size))


def test_triton_max_batch_size_is_checked_before_any_request(monkeypatch) -> None:
    monkeypatch.setattr(triton_module.grpcclient, "InferenceServerClient", _TritonLike)
    source = TritonSource("triton:8001", "digits_cnn", batch_size=256)
    assert source.check().max_batch_size == 256
    with pytest.raises(SourceInputError) as info:
        TritonSource("triton:8001", "digits_cnn", batch_size=257).check()
    assert info.value.field == "batch_size"
    assert str(info.value) == (
        "batch_size: expected at most 256, the max_batch_size of model 'digits_cnn', received "
        "257 (send batches of 256 rows or fewer)"
    )


def test_model_that_is_not_ready(monkeypatch) -> None:
    class Failed(_TritonLike):
        state, reason = "UNAVAILABLE", "unable to load model.onnx"

    monkeypatch.setattr(triton_module.grpcclient, "InferenceServerClient", Failed)
    with pytest.raises(SourceUnavailableError) as info:
        TritonSource("triton:8001", "digits_cnn", connect_timeout=0.3).check()
    assert str(info.value) == (
        "inference server triton:8001: expected model 'digits_cnn' ready within 0.3 s, received "
        "'digits_cnn' version 1 UNAVAILABLE (unable to load model.onnx) (see its log)"
    )
    with pytest.raises(SourceInputError, match=r"one of \['digits_cnn'\], received 'resnet'"):
        TritonSource("triton:8001", "resnet", connect_timeout=0.3).check()


def test_a_stream_width_other_than_the_outputs_is_refused_at_check(v2server) -> None:
    with TritonSource(v2server.grpc_url, v2server.model_name, n_classes=3) as source:
        with pytest.raises(SourceInputError) as info:
            source.check()
    assert info.value.field == "output 'logits' of model 'digits_cnn'"
    assert (info.value.expected, info.value.received) == (
        "3 columns, one per class of the stream",
        "10 columns (shape [-1, 10])",
    )


def test_inputs_are_prepared_once_per_job(
    v2server, evalstream_target, eval_set, monkeypatch, capsys
) -> None:
    calls: list[int] = []
    real = TritonSource.prepare

    def counting(self, inputs):
        calls.append(len(inputs))
        return real(self, inputs)

    monkeypatch.setattr(TritonSource, "prepare", counting)
    inputs, labels = eval_set
    with TritonSource(v2server.grpc_url, v2server.model_name) as source:
        source.infer(inputs[:10])
    assert calls == [10]
    assert main(_cli(v2server, evalstream_target, "digits-prepared")) == 0
    assert calls == [10, len(labels)]


def test_a_ready_model_in_a_server_that_is_not_ready_is_used(triton, caplog) -> None:
    """Triton with --strict-readiness=true and a model that failed to load says the server is
    not ready while it serves digits_cnn: readiness follows the model, the server's state is
    logged with every model's."""
    probe = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        assert probe.is_server_ready() is False and probe.is_model_ready("digits_cnn") is True
    finally:
        probe.close()
    with caplog.at_level("WARNING", logger="evalstream.sources"):
        with TritonSource(triton.grpc_url, "digits_cnn", connect_timeout=5) as source:
            assert source.check().max_batch_size == 256
    assert any(
        "model 'digits_cnn' is ready, the server is not" in r.getMessage()
        and "broken UNAVAILABLE, digits_cnn READY" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    with pytest.raises(SourceUnavailableError) as info:
        TritonSource(triton.grpc_url, "broken", connect_timeout=0.5).check()
    assert "'broken' version 1 UNAVAILABLE" in str(info.value)
    assert "in a server that is not ready" in str(info.value)


def test_cli_errors_name_the_cli_flags(monkeypatch, evalstream_target, capsys) -> None:
    """A model with two inputs: the library's error names its parameter (input_name), the
    command line's names its flag (--input)."""

    class TwoInputs(_TritonLike):
        def get_model_metadata(self, name, version="", client_timeout=None):
            metadata = super().get_model_metadata(name, version, client_timeout)
            metadata.inputs.append(SimpleNamespace(name="mask", datatype="FP32", shape=[-1, 8]))
            return metadata

    monkeypatch.setattr(triton_module.grpcclient, "InferenceServerClient", TwoInputs)
    with pytest.raises(SourceInputError, match=r"^input_name: .*\(pass input_name to choose\)$"):
        TritonSource("triton:8001", "digits_cnn").check()
    argv = ["triton-eval", "--triton", "triton:8001", "--model", "digits_cnn"]
    argv += [
        "--data",
        str(EVAL_PATH),
        "--stream",
        "never-two",
        "--target",
        evalstream_target.target,
    ]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("evalstream triton-eval: --input: expected one input of model"), line
    assert line.endswith("(pass --input to choose)"), line

"""``triton-proxy --create``: streams made from the model's metadata (Triton, then MLServer,
serving the project's CNN, output ``logits`` FP32 ``[-1, 10]``), existing streams checked
against it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from evalstream import EvalClient
from evalstream_server.cli import main
from evalstream_server.engine import InvalidInputError, StreamSpec, make_batch
from evalstream_server.proxy import ProxySettings, ProxyThread, RouteError, parse_routes, row_ids
from evalstream_server.proxy.routes import parse_model_option
from evalstream_server.sources import (
    OutputInfo,
    SourceInputError,
    SourceUnavailableError,
    model_output,
    plan_stream,
)
from evalstream_server.sources.triton import _check_probabilities

from .conftest import free_port

EVAL_PATH = Path(__file__).resolve().parents[2] / "deploy/triton/digits_eval.npz"
K = 10
ROWS = 6


@pytest.fixture(scope="module")
def evalstream_target(evalstream_per_v2server):
    return evalstream_per_v2server


@pytest.fixture(scope="module")
def client(evalstream_target):
    with EvalClient(evalstream_target.target) as c:
        yield c


def _settings(v2server, target: str, *models: str, **kw) -> ProxySettings:
    return ProxySettings(
        triton=v2server.grpc_url,
        target=target,
        routes=parse_routes(models or ("digits_cnn=digits",)),
        listen="127.0.0.1:0",
        metrics_port=-1,
        flush_timeout=5.0,
        create=True,
        connect_timeout=kw.pop("connect_timeout", 10.0),
        **kw,
    )


def _infer(address: str, x: np.ndarray, request_id: str) -> np.ndarray:
    client = grpcclient.InferenceServerClient(address)
    try:
        tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("digits_cnn", [tensor], request_id=request_id, client_timeout=30)
        return result.as_numpy("logits")
    finally:
        client.close()


@pytest.fixture(scope="module")
def rows():
    with np.load(EVAL_PATH) as data:
        return data["inputs"][:ROWS], data["labels"][:ROWS]


def test_create_makes_the_stream_from_the_metadata_and_records_into_it(
    v2server, evalstream_target, client, rows
) -> None:
    settings = _settings(
        v2server, evalstream_target.target, "digits_cnn=created", windows=("5m", "1h")
    )
    proxy = ProxyThread(settings).start()
    try:
        stream = client.get_stream("created")
        assert (stream.task, stream.scores) == ("multiclass", "logits")
        assert stream.classes == tuple(str(i) for i in range(K))
        assert stream.windows == ("5m", "1h")
        x, y = rows
        logits = _infer(proxy.address, x, "created-1")
    finally:
        assert proxy.stop() == 0  # flushed: every row delivered
    assert client.log_labels("created", row_ids("created-1", ROWS), y).matched == ROWS
    data = client.report("created").to_dict()
    assert data["n_samples"] == ROWS
    # What was recorded is what the model answered: the predicted column sums are its argmax.
    predicted = np.bincount(logits.argmax(axis=1), minlength=K)
    assert np.asarray(data["confusion_matrix"]).sum(axis=0).tolist() == predicted.tolist()


def test_create_with_classes_scores_and_task(v2server, evalstream_target, client) -> None:
    names = tuple(f"digit-{i}" for i in range(K))
    settings = _settings(
        v2server,
        evalstream_target.target,
        "digits_cnn=named",
        classes={"digits_cnn": names},
        scores={"digits_cnn": "probabilities"},
    )
    ProxyThread(settings).start().stop()
    stream = client.get_stream("named")
    assert (stream.task, stream.classes, stream.scores) == ("multiclass", names, "probabilities")
    settings = _settings(
        v2server, evalstream_target.target, "digits_cnn=labels", tasks={"digits_cnn": "multilabel"}
    )
    ProxyThread(settings).start().stop()
    stream = client.get_stream("labels")
    assert (stream.task, len(stream.classes), stream.scores) == ("multilabel", K, "logits")


def test_an_existing_stream_that_fits_is_kept(v2server, evalstream_target, client) -> None:
    client.create_stream("kept", task="multiclass", classes=list("abcdefghij"), scores="logits")
    ProxyThread(_settings(v2server, evalstream_target.target, "digits_cnn=kept")).start().stop()
    assert client.get_stream("kept").classes == tuple("abcdefghij")


def test_an_existing_stream_of_another_class_count_stops_the_start(
    v2server, evalstream_target, client, restore_logging
) -> None:
    client.create_stream("three", task="multiclass", classes=["a", "b", "c"], scores="logits")
    with pytest.raises(SourceInputError) as info:
        ProxyThread(_settings(v2server, evalstream_target.target, "digits_cnn=three")).start()
    error = info.value
    assert error.field == "output 'logits' of model 'digits_cnn'"
    assert error.expected.startswith("3 columns, as the existing multiclass stream 'three'")
    assert error.received == "10 columns (shape [-1, 10])"
    # The command line: exit 2, one line naming field, expected and received.
    argv = ["triton-proxy", "--triton", v2server.grpc_url, "--target", evalstream_target.target]
    argv += ["--model", "digits_cnn=three", "--create", "--listen", "127.0.0.1:0"]
    argv += ["--metrics-port", "-1"]
    assert main(argv) == 2


@pytest.mark.parametrize(
    ("kw", "field", "received"),
    [
        ({"tasks": {"digits_cnn": "binary"}}, "task", "'binary'"),
        ({"classes": {"digits_cnn": ("a", "b")}}, "classes", "2 (a, b)"),
    ],
)
def test_options_that_do_not_fit_the_model(
    v2server, evalstream_target, client, kw, field, received
) -> None:
    with pytest.raises(SourceInputError) as info:
        ProxyThread(_settings(v2server, evalstream_target.target, "digits_cnn=never", **kw)).start()
    assert (info.value.field, info.value.received) == (field, received)
    assert "[-1, 10]" in info.value.expected
    assert "never" not in [s.name for s in client.list_streams()]


def test_scores_of_an_existing_stream_must_match(v2server, evalstream_target, client) -> None:
    client.create_stream("probs", task="multiclass", classes=list("0123456789"))
    settings = _settings(
        v2server, evalstream_target.target, "digits_cnn=probs", scores={"digits_cnn": "logits"}
    )
    with pytest.raises(SourceInputError, match="'probabilities', the score kind of the existing"):
        ProxyThread(settings).start()


def test_unknown_output_and_unready_server(
    v2server, evalstream_target, capsys, restore_logging
) -> None:
    with pytest.raises(SourceInputError, match=r"output: expected an output of model 'digits_cnn'"):
        ProxyThread(_settings(v2server, evalstream_target.target, "digits_cnn=x:probs")).start()
    dead = f"127.0.0.1:{free_port()}"
    argv = ["triton-proxy", "--triton", dead, "--target", evalstream_target.target, "--create"]
    argv += ["--model", "digits_cnn=x", "--connect-timeout", "0.3", "--metrics-port", "-1"]
    argv += ["--listen", "127.0.0.1:0"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"evalstream triton-proxy: inference server {dead}: expected a KServe")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--classes", "digits_cnn=a,b"], "--classes: expected --create with it"),
        (["--create", "--task", "tabular"], "--task: expected a value among ['binary',"),
        (["--create", "--scores", "other=logits"], "--scores: expected NAME=VALUE with NAME one"),
        (["--create", "--classes", "a,b"], "--classes: expected NAME=VALUE"),
        (["--create", "--windows", "5x"], "windows: expected durations such as"),
        (["--create", "--task", "binary", "--task", "digits_cnn=multiclass"], "at most once"),
    ],
)
def test_cli_refuses_bad_create_options(argv, message, capsys) -> None:
    base = ["triton-proxy", "--triton", "127.0.0.1:1", "--model", "digits_cnn=d"]
    assert main([*base, *argv]) == 2
    assert message in capsys.readouterr().err


def test_model_options_parse() -> None:
    models = ["a", "b"]
    assert parse_model_option("--task", ["binary"], models, ["binary"]) == {
        "a": "binary",
        "b": "binary",
    }
    assert parse_model_option("--classes", ["b=x,y"], models) == {"b": "x,y"}
    with pytest.raises(RouteError, match="non-empty VALUE"):
        parse_model_option("--classes", ["a="], models)


# -- planning without a server: binary outputs, open widths ----------------------------------


class _Streams:
    """``get_stream`` of a client holding ``streams`` (name -> SimpleNamespace)."""

    def __init__(self, **streams) -> None:
        self.streams = streams

    def get_stream(self, name):
        from evalstream import NotFoundError

        if name not in self.streams:
            raise NotFoundError("NOT_FOUND", name)
        return self.streams[name]


@pytest.mark.parametrize(
    ("shape", "task", "classes"),
    [
        ((-1,), "binary", ("0", "1")),
        ((-1, 1), "binary", ("0", "1")),
        ((-1, 2), "multiclass", ("0", "1")),
        ((-1, 4), "multiclass", ("0", "1", "2", "3")),
    ],
)
def test_a_new_stream_takes_its_task_from_the_output_width(shape, task, classes) -> None:
    output = OutputInfo("m", "out", "FP32", shape)
    plan = plan_stream(_Streams(), "s", output, windows=("1h",))
    assert (plan.task, plan.classes, plan.scores, plan.exists) == (task, classes, "logits", False)
    assert plan.windows == ("1h",)


def test_an_open_width_needs_class_names_and_binary_streams_take_one_or_two_columns() -> None:
    with pytest.raises(SourceInputError, match="classes: expected class names for a new stream"):
        plan_stream(_Streams(), "s", OutputInfo("m", "out", "FP32", (-1, -1)))
    binary = SimpleNamespace(task="binary", classes=("no", "yes"), scores="probabilities",
                             windows=())  # fmt: skip
    for shape in ((-1,), (-1, 1), (-1, 2)):
        plan = plan_stream(_Streams(s=binary), "s", OutputInfo("m", "out", "FP32", shape))
        assert (plan.exists, plan.task, plan.scores) == (True, "binary", "probabilities")
    with pytest.raises(SourceInputError) as info:
        plan_stream(_Streams(s=binary), "s", OutputInfo("m", "out", "FP32", (-1, 3)))
    assert info.value.expected.startswith("1 or 2 columns, as the existing binary stream 's'")


def test_model_output_picks_the_named_or_first_float_output() -> None:
    tensor = lambda name, dt, shape: SimpleNamespace(name=name, datatype=dt, shape=shape)  # noqa: E731
    metadata = SimpleNamespace(
        outputs=[tensor("logits", "FP32", [-1, 5]), tensor("label", "INT64", [-1])]
    )
    assert model_output(metadata, "m") == OutputInfo("m", "logits", "FP32", (-1, 5))
    with pytest.raises(SourceInputError, match="floating-point scores"):
        model_output(metadata, "m", "label")
    with pytest.raises(SourceInputError, match="shape"):
        model_output(SimpleNamespace(outputs=[tensor("x", "FP32", [-1, 2, 2])]), "m")


def test_unavailable_is_a_connection_error() -> None:
    assert issubclass(SourceUnavailableError, ConnectionError)


# -- the source's probability check is the engine's rule ---------------------------------------


def test_probability_rows_pass_the_source_exactly_when_they_pass_the_engine() -> None:
    rng = np.random.default_rng(7)
    for width in (1, 2, 3, 10):
        for _ in range(50):
            p = rng.dirichlet(np.ones(width), size=4).astype(np.float32)
            p[rng.integers(0, 4)] *= np.float32(1 + rng.choice([0, 5e-4, 1e-3, 2e-3, -3e-3]))
            if rng.random() < 0.1:
                p[0, 0] = -0.01
            task = "binary" if width <= 2 else "multiclass"
            classes = () if task == "binary" else tuple(map(str, range(width)))
            spec = StreamSpec(task=task, classes=classes, scores="probabilities")
            try:
                make_batch(spec, np.zeros(4, dtype=np.int64), p)
                engine_ok = True
            except InvalidInputError:
                engine_ok = False
            try:
                _check_probabilities(p, "output", 0)
                source_ok = True
            except SourceInputError as exc:
                source_ok = False
                assert "in rows 0:4" in exc.received
            assert source_ok == engine_ok

"""``evalstream triton-proxy``: tritonclient -> proxy -> V2 server, recorded into evalstream.

The V2 server is NVIDIA Triton, then MLServer (``v2server``). What a caller gets through the
proxy is compared with what the same request gets from the server directly, byte for byte at the
gRPC level and through ``tritonclient``. Recording is checked with a sink that keeps what it is
given (and can play an unreachable evalstream), then end to end into a real evalstream joined
with labels and checked against scikit-learn. A small in-process V2 server stands in where
neither shows a behaviour (a server that does not echo ids, typed contents, the metadata and the
deadline it received). Triton's own streaming, shutdown and model control: test_real_triton.py.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from evalstream import EvalClient
from evalstream_server.cli import main
from evalstream_server.proxy import (
    ModelRoute,
    ProxySettings,
    ProxyThread,
    RouteError,
    parse_routes,
    row_ids,
)
from evalstream_server.proxy.wire import read_name_and_id, with_id
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from .conftest import FakeSink, free_port, start_proxy, wait_for

ROOT = Path(__file__).resolve().parents[2]
EVAL_PATH = ROOT / "deploy/triton/digits_eval.npz"
SERVICE = "/inference.GRPCInferenceService/"
TIMEOUT_S = 30.0
K = 10


@pytest.fixture(scope="module")
def eval_set() -> tuple[np.ndarray, np.ndarray]:
    with np.load(EVAL_PATH) as data:
        return data["inputs"], data["labels"]


@pytest.fixture(scope="module")
def evalstream_target(evalstream_per_v2server):
    return evalstream_per_v2server


@pytest.fixture(scope="module")
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture(scope="module")
def proxy(v2server, sink):
    running = start_proxy(v2server.grpc_url, sink)
    yield running
    running.stop()


def _request(x: np.ndarray, request_id: str = "", model: str = "digits_cnn") -> bytes:
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    request.outputs.add(name="logits")
    request.raw_input_contents.append(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    return request.SerializeToString()


def _raw_call(url: str, method: str, request: bytes, **kw) -> bytes:
    with grpc.insecure_channel(url) as channel:
        return channel.unary_unary(SERVICE + method)(request, timeout=TIMEOUT_S, **kw)


def _infer(url: str, x: np.ndarray, request_id: str = "", model="digits_cnn"):
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(np.ascontiguousarray(x))
    with grpcclient.InferenceServerClient(url) as client:
        return client.infer(
            model,
            [tensor],
            outputs=[grpcclient.InferRequestedOutput("logits")],
            request_id=request_id,
            client_timeout=TIMEOUT_S,
        )


# -- forwarding: the same answers as the server's ------------------------------------------------
@pytest.mark.parametrize("rows", [1, 7, 64])
def test_infer_bytes_equal_the_servers_with_a_caller_id(v2server, proxy, eval_set, rows) -> None:
    x = eval_set[0][:rows]
    request = _request(x, request_id=f"caller-{rows}")
    direct = _raw_call(v2server.grpc_url, "ModelInfer", request)
    through = _raw_call(proxy.address, "ModelInfer", request)
    assert through == direct
    assert read_name_and_id(through) == ("digits_cnn", f"caller-{rows}")


@pytest.mark.parametrize("rows", [1, 5])
def test_infer_without_an_id_gets_one_and_the_same_answer(v2server, proxy, eval_set, rows):
    x = eval_set[0][10 : 10 + rows]
    through = _raw_call(proxy.address, "ModelInfer", _request(x))
    model, request_id = read_name_and_id(through)
    assert model == "digits_cnn" and len(request_id) == 32 and int(request_id, 16) >= 0
    # The server's answer to the request as the proxy forwarded it (with that id).
    assert through == _raw_call(v2server.grpc_url, "ModelInfer", _request(x, request_id))


def test_tritonclient_sees_the_same_outputs_and_ids(v2server, proxy, eval_set) -> None:
    x = eval_set[0][:64]
    direct = _infer(v2server.grpc_url, x, request_id="r-64")
    through = _infer(proxy.address, x, request_id="r-64")
    assert through.get_response() == direct.get_response()
    np.testing.assert_array_equal(through.as_numpy("logits"), direct.as_numpy("logits"))
    assert through.as_numpy("logits").tobytes() == direct.as_numpy("logits").tobytes()
    assert through.get_response().id == "r-64"
    generated = _infer(proxy.address, x[:1]).get_response().id
    assert len(generated) == 32 and generated != _infer(proxy.address, x[:1]).get_response().id


def _both(url_a: str, url_b: str, call):
    """``call(client)`` against both servers: (result or (status, message)) of each."""
    out = []
    for url in (url_a, url_b):
        with grpcclient.InferenceServerClient(url) as client:
            try:
                out.append(call(client))
            except InferenceServerException as exc:
                out.append((exc.status(), exc.message()))
    return out


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.is_server_live(client_timeout=TIMEOUT_S),
        lambda c: c.is_server_ready(client_timeout=TIMEOUT_S),
        lambda c: c.is_model_ready("digits_cnn", client_timeout=TIMEOUT_S),
        lambda c: c.is_model_ready("no_such_model", client_timeout=TIMEOUT_S),
        lambda c: c.get_server_metadata(as_json=True, client_timeout=TIMEOUT_S),
        lambda c: c.get_model_metadata("digits_cnn", as_json=True, client_timeout=TIMEOUT_S),
        lambda c: c.get_model_metadata("no_such_model", client_timeout=TIMEOUT_S),
        lambda c: c.get_model_config("digits_cnn", as_json=True, client_timeout=TIMEOUT_S),
        lambda c: c.get_model_repository_index(as_json=True, client_timeout=TIMEOUT_S),
        lambda c: c.get_inference_statistics("digits_cnn", client_timeout=TIMEOUT_S) and "ok",
    ],
    ids=[
        "server_live",
        "server_ready",
        "model_ready",
        "model_ready_unknown",
        "server_metadata",
        "model_metadata",
        "model_metadata_unknown",
        "model_config",
        "repository_index",
        "statistics",
    ],
)
def test_other_methods_answer_as_the_server_does(v2server, proxy, call) -> None:
    direct, through = _both(v2server.grpc_url, proxy.address, call)
    assert through == direct


def test_errors_come_back_with_the_servers_code_and_message(v2server, proxy, eval_set) -> None:
    x = eval_set[0][:2]
    for model, data in (("no_such_model", x), ("digits_cnn", x[:, 0])):  # unknown, wrong shape
        request = _request(data, request_id="e1", model=model)
        errors = []
        for url in (v2server.grpc_url, proxy.address):
            with pytest.raises(grpc.RpcError) as info:
                _raw_call(url, "ModelInfer", request)
            errors.append((info.value.code(), info.value.details()))
        assert errors[1] == errors[0]
        assert errors[0][0] != grpc.StatusCode.OK
    direct, through = _both(
        v2server.grpc_url,
        proxy.address,
        lambda c: c.infer("no_such_model", [_input(x)], client_timeout=TIMEOUT_S),
    )
    assert through == direct and isinstance(direct, tuple)


def _input(x: np.ndarray) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(np.ascontiguousarray(x))
    return tensor


def test_other_services_are_unimplemented(proxy) -> None:
    with pytest.raises(grpc.RpcError) as info:
        with grpc.insecure_channel(proxy.address) as channel:
            channel.unary_unary("/evalstream.v1.EvalstreamService/ListStreams")(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unreachable_inference_server_is_unavailable(eval_set) -> None:
    running = start_proxy(f"127.0.0.1:{free_port()}", FakeSink())
    try:
        with pytest.raises(grpc.RpcError) as info:
            _raw_call(running.address, "ModelInfer", _request(eval_set[0][:1]))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (
            running.metrics.value(
                "evalstream_proxy_requests_total", method="ModelInfer", code="UNAVAILABLE"
            )
            == 1.0
        )
    finally:
        running.stop()


# -- recording ----------------------------------------------------------------------------------
@pytest.fixture
def fresh(v2server):
    """A proxy of its own in front of the V2 server, with its own sink."""
    sink = FakeSink()
    running = start_proxy(v2server.grpc_url, sink)
    yield running, sink
    running.stop()


def test_outputs_are_recorded_under_the_request_ids(fresh, eval_set) -> None:
    running, sink = fresh
    x = eval_set[0]
    before = time.time()
    one = _infer(running.address, x[:1], request_id="one")
    three = _infer(running.address, x[1:4])
    batch = _infer(running.address, x[4:68], request_id="batch")
    after = time.time()
    wait_for(lambda: len(sink.ids) == 68, "68 rows recorded")
    generated = three.get_response().id
    want_ids = ["one", *row_ids(generated, 3), *row_ids("batch", 64)]
    assert want_ids[1:4] == [f"{generated}/0", f"{generated}/1", f"{generated}/2"]
    assert sorted(sink.ids) == sorted(want_ids)
    got = dict(zip(sink.ids, sink.scores(), strict=True))
    want = np.concatenate([r.as_numpy("logits") for r in (one, three, batch)])
    for i, rid in enumerate(want_ids):
        assert got[rid].tobytes() == want[i].tobytes()
    assert {call[0] for call in sink.calls} == {"digits"}
    for _, _, _, timestamp in sink.calls:  # the arrival of the chunk's first request
        assert before <= timestamp <= after
    assert (
        running.metrics.value("evalstream_proxy_predictions_recorded_total", stream="digits")
        == 68.0
    )


def test_unrouted_models_are_forwarded_not_recorded(v2server, eval_set) -> None:
    sink = FakeSink()
    running = start_proxy(v2server.grpc_url, sink, models=("another_model=s",))
    try:
        request = _request(eval_set[0][:3])
        through = _raw_call(running.address, "ModelInfer", request)
        assert through == _raw_call(v2server.grpc_url, "ModelInfer", request)
        assert read_name_and_id(through)[1] == ""  # no id given, none added
    finally:
        assert running.stop() == 0
    assert sink.calls == []


def test_evalstream_down_buffers_within_the_bound_then_delivers_once(v2server, eval_set):
    sink = FakeSink()
    sink.down = True
    running = start_proxy(v2server.grpc_url, sink, max_buffer_rows=10)
    try:
        x = eval_set[0]
        direct = _raw_call(v2server.grpc_url, "ModelInfer", _request(x[:1], "r0"))
        for i in range(15):  # inference is unaffected
            through = _raw_call(running.address, "ModelInfer", _request(x[i : i + 1], f"r{i}"))
            if i == 0:
                assert through == direct
        metrics = running.metrics

        def dropped():
            return metrics.value(
                "evalstream_proxy_predictions_dropped_total", stream="digits", reason="buffer_full"
            )

        wait_for(lambda: dropped() == 5.0, "5 rows dropped")
        wait_for(lambda: sink.failures >= 2, "retries")
        assert metrics.value("evalstream_proxy_buffer_rows") == 10.0
        assert metrics.value(
            "evalstream_proxy_send_errors_total", stream="digits", code="UNAVAILABLE"
        ) == float(sink.failures)
        sink.down = False
        wait_for(lambda: len(sink.ids) == 10, "the buffered rows delivered")
        assert sink.ids == [f"r{i}" for i in range(10)]  # the oldest kept, in order, once
        wait_for(lambda: metrics.value("evalstream_proxy_buffer_rows") == 0.0, "empty buffer")
        assert metrics.value("evalstream_proxy_predictions_recorded_total", stream="digits") == 10.0
    finally:
        assert running.stop() == 0
    assert len(sink.ids) == 10


def test_shutdown_flushes_and_counts_what_it_could_not_send(v2server, eval_set) -> None:
    sink = FakeSink()
    running = start_proxy(v2server.grpc_url, sink, flush_interval=60.0)  # chunks stay open
    for i in range(3):
        _raw_call(running.address, "ModelInfer", _request(eval_set[0][i : i + 2], f"s{i}"))
    wait_for(lambda: running.recorder.buffer.rows == 6, "6 rows buffered")
    assert sink.calls == []
    assert running.stop(flush_timeout=5.0) == 0
    assert sink.ids == [f"s{i}/{r}" for i in range(3) for r in range(2)]

    down = FakeSink()
    down.down = True
    running = start_proxy(v2server.grpc_url, down, flush_interval=60.0)
    metrics = running.metrics
    _raw_call(running.address, "ModelInfer", _request(eval_set[0][:4], "lost"))
    wait_for(lambda: running.recorder.buffer.rows == 4, "4 rows buffered")
    assert running.stop(flush_timeout=0.3) == 4
    assert (
        metrics.value(
            "evalstream_proxy_predictions_dropped_total", stream="digits", reason="shutdown"
        )
        == 4.0
    )


# -- what neither server shows: a small V2 server of our own ------------------------------------
class FakeV2:
    """Answers ``ModelInfer`` and ``ModelStreamInfer`` of model ``echo``: outputs ``aux``
    ([n, 1], zeros) then ``scores`` (the input ``x`` [n, 2] itself), as raw bytes or as typed
    contents. Keeps the metadata and the deadline of every call it got."""

    def __init__(self, echo_id: bool = True, typed: bool = False) -> None:
        self.echo_id, self.typed = echo_id, typed
        self.seen: list[tuple[dict, float | None]] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(self._infer),
            "ModelStreamInfer": grpc.stream_stream_rpc_method_handler(self._stream),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.url = f"127.0.0.1:{self.port}"

    def answer(self, raw: bytes) -> service_pb2.ModelInferResponse:
        request = service_pb2.ModelInferRequest.FromString(raw)
        x = np.frombuffer(request.raw_input_contents[0], "<f4").reshape(-1, 2)
        response = service_pb2.ModelInferResponse(
            model_name=request.model_name, id=request.id if self.echo_id else ""
        )
        for name, values in (("aux", np.zeros((len(x), 1), "<f4")), ("scores", x)):
            tensor = response.outputs.add(name=name, datatype="FP32", shape=list(values.shape))
            if self.typed:
                tensor.contents.fp32_contents.extend(values.ravel().tolist())
            else:
                response.raw_output_contents.append(values.tobytes())
        return response

    def _infer(self, raw: bytes, context) -> bytes:
        self.seen.append((dict(context.invocation_metadata()), context.time_remaining()))
        context.set_trailing_metadata((("x-upstream", "fake"),))
        return self.answer(raw).SerializeToString()

    def _stream(self, requests, context):
        self.seen.append((dict(context.invocation_metadata()), context.time_remaining()))
        for raw in requests:
            reply = service_pb2.ModelStreamInferResponse(infer_response=self.answer(raw))
            yield reply.SerializeToString()

    def stop(self) -> None:
        self.server.stop(0).wait(5)


def _echo_request(x: np.ndarray, request_id: str = "") -> bytes:
    request = service_pb2.ModelInferRequest(model_name="echo", id=request_id)
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(np.ascontiguousarray(x, "<f4").tobytes())
    return request.SerializeToString()


@pytest.fixture
def fake():
    servers: list[FakeV2] = []

    def make(**kw) -> FakeV2:
        servers.append(FakeV2(**kw))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


X = np.arange(12, dtype=np.float32).reshape(6, 2) / 16


def test_metadata_and_deadline_go_upstream_and_trailers_come_back(fake) -> None:
    upstream = fake()
    running = start_proxy(upstream.url, FakeSink(), models=("echo=e",))
    try:
        with grpc.insecure_channel(running.address) as channel:
            method = channel.unary_unary(SERVICE + "ModelInfer")
            _, call = method.with_call(
                _echo_request(X, "m1"),
                timeout=7.0,
                metadata=(("x-trace", "abc"), ("x-bin-bin", b"\x00\x01")),
            )
            assert ("x-upstream", "fake") in call.trailing_metadata()
            method(_echo_request(X, "m2"))  # no deadline
    finally:
        running.stop()
    (metadata, remaining), (_, unbounded) = upstream.seen
    assert metadata["x-trace"] == "abc" and metadata["x-bin-bin"] == b"\x00\x01"
    assert not any(k.startswith(":") for k in metadata)
    assert 5.0 < remaining <= 7.5  # the deadline, give or take clock rounding
    assert unbounded is None or unbounded > 1e6


@pytest.mark.parametrize("typed", [False, True])
def test_named_output_and_an_id_the_server_did_not_echo(fake, typed) -> None:
    upstream = fake(echo_id=False, typed=typed)
    sink = FakeSink()
    running = start_proxy(upstream.url, sink, models=("echo=e:scores",))
    try:
        through = _raw_call(running.address, "ModelInfer", _echo_request(X))
        given = _raw_call(running.address, "ModelInfer", _echo_request(X[:1], "given"))
        wait_for(lambda: len(sink.ids) == 7, "7 rows")
    finally:
        running.stop()
    response = service_pb2.ModelInferResponse.FromString(through)
    assert len(response.id) == 32  # set by the proxy, since the server did not echo it
    assert given == upstream.answer(_echo_request(X[:1], "given")).SerializeToString()
    assert sink.ids == [*row_ids(response.id, 6), "given"]
    np.testing.assert_array_equal(sink.scores(), np.concatenate([X, X[:1]]))


def test_first_output_by_default_and_bad_outputs_are_counted(fake) -> None:
    upstream = fake()
    sink = FakeSink()
    running = start_proxy(upstream.url, sink, models=("echo=e",))
    try:
        _raw_call(running.address, "ModelInfer", _echo_request(X, "first"))
        wait_for(lambda: len(sink.ids) == 6, "6 rows")
        np.testing.assert_array_equal(sink.scores(), np.zeros(6))  # aux, [n, 1]: binary
    finally:
        running.stop()
    running = start_proxy(upstream.url, sink, models=("echo=e:missing",))
    try:
        assert _raw_call(running.address, "ModelInfer", _echo_request(X, "m"))  # answered
        wait_for(
            lambda: (
                running.metrics.value(
                    "evalstream_proxy_predictions_dropped_total", stream="e", reason="bad_output"
                )
                == 1.0
            ),
            "a bad_output drop",
        )
    finally:
        running.stop()


def test_stream_infer_is_forwarded_and_recorded(fake) -> None:
    upstream = fake()
    sink = FakeSink()
    running = start_proxy(upstream.url, sink, models=("echo=e:scores",))
    requests = [_echo_request(X[:2], "s1"), _echo_request(X[2:3]), _echo_request(X[3:], "s3")]
    try:
        with grpc.insecure_channel(running.address) as channel:
            stream = channel.stream_stream(SERVICE + "ModelStreamInfer")
            replies = list(stream(iter(requests), timeout=TIMEOUT_S))
        wait_for(lambda: len(sink.ids) == 6, "6 rows")
    finally:
        running.stop()
    responses = [service_pb2.ModelStreamInferResponse.FromString(r) for r in replies]
    ids = [r.infer_response.id for r in responses]
    assert ids[0] == "s1" and len(ids[1]) == 32 and ids[2] == "s3"
    for request, response in zip(requests, responses, strict=True):  # the server's answers
        forwarded = with_id(request, response.infer_response.id)
        assert response.infer_response == upstream.answer(forwarded)
    assert sink.ids == [*row_ids("s1", 2), ids[1], *row_ids("s3", 3)]
    np.testing.assert_array_equal(sink.scores(), X)


# -- end to end: predictions through the proxy, labels later, the report against sklearn ----------
# (evalstream_target: tests/triton/conftest.py)


def _softmax32(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return (z / z.sum(axis=1, keepdims=True)).astype(np.float32)


def _create(client: EvalClient, name: str) -> None:
    client.create_stream(
        name,
        task="multiclass",
        classes=[str(i) for i in range(K)],
        scores="logits",
        resolution="exact",
    )


def _send_through(address: str, inputs: np.ndarray, sizes, with_ids: bool):
    """Infer ``inputs`` in requests of ``sizes`` rows (cycled); row ids and logits in order."""
    ids, logits, start, k = [], [], 0, 0
    while start < len(inputs):
        n = sizes[k % len(sizes)]
        x = inputs[start : start + n]
        given = f"req-{k}" if with_ids and k % 2 else ""
        result = _infer(address, x, request_id=given)
        request_id = result.get_response().id
        assert request_id == given or (not given and len(request_id) == 32)
        ids += row_ids(request_id, len(x))
        logits.append(result.as_numpy("logits"))
        start, k = start + n, k + 1
    return ids, np.concatenate(logits)


def test_predictions_joined_with_labels_give_sklearns_metrics(
    v2server, evalstream_target, eval_set
) -> None:
    inputs, labels = eval_set
    with EvalClient(evalstream_target.target) as client:
        _create(client, "digits-proxy")
        settings = ProxySettings(
            triton=v2server.grpc_url,
            target=evalstream_target.target,
            routes=parse_routes(["digits_cnn=digits-proxy"]),
            listen="127.0.0.1:0",
            metrics_port=-1,
        )
        running = ProxyThread(settings).start()  # the real sink: EvalClient.log_predictions
        try:
            ids, logits = _send_through(running.address, inputs, [64, 1, 17, 5], with_ids=True)
            metrics = running.metrics
            wait_for(
                lambda: (
                    metrics.value(
                        "evalstream_proxy_predictions_recorded_total", stream="digits-proxy"
                    )
                    == len(inputs)
                ),
                "every row recorded",
            )
        finally:
            assert running.stop() == 0
        # Labels later, shuffled, in batches; 44 never arrive, 3 are for ids nobody predicted.
        order = np.random.default_rng(0).permutation(len(inputs))
        labelled, unlabelled = order[:700], order[700:]
        matched = unknown = 0
        for part in np.array_split(labelled, 7):
            result = client.log_labels("digits-proxy", [ids[i] for i in part], labels[part])
            matched += result.matched
        unknown += client.log_labels("digits-proxy", ["x/0", "x/1", "nope"], [0, 1, 2]).unknown
        assert (matched, unknown) == (700, 3)
        report = client.report("digits-proxy")
    data = report.to_dict()
    y, p = labels[labelled], _softmax32(logits)[labelled]
    assert unlabelled.size == 44 and data["n_samples"] == 700
    assert data["confusion_matrix"] == confusion_matrix(y, p.argmax(1), labels=range(K)).tolist()
    assert report.accuracy_score() == pytest.approx(accuracy_score(y, p.argmax(1)), abs=1e-12)
    assert report.f1_score(average="macro") == pytest.approx(
        f1_score(y, p.argmax(1), average="macro", zero_division=0), abs=1e-12
    )
    for average in ("macro", "weighted"):
        want = roc_auc_score(y, p, multi_class="ovr", average=average, labels=range(K))
        assert report.roc_auc_score(average=average) == pytest.approx(want, abs=1e-12)
    assert report.roc_auc_score(multi_class="ovo") == pytest.approx(
        roc_auc_score(y, p, multi_class="ovo", labels=range(K)), abs=1e-12
    )


def test_evalstream_restarting_loses_nothing_it_buffered(v2server, eval_set, tmp_path) -> None:
    inputs, labels = eval_set
    port = free_port()
    settings = Settings(
        host="127.0.0.1", grpc_port=port, metrics_port=-1, data_dir=str(tmp_path / "es")
    )
    with ServerThread(settings) as first, EvalClient(first.target) as client:
        _create(client, "digits-restart")  # then evalstream goes away
    proxy_settings = ProxySettings(
        triton=v2server.grpc_url,
        target=f"127.0.0.1:{port}",
        routes=parse_routes(["digits_cnn=digits-restart"]),
        listen="127.0.0.1:0",
        metrics_port=-1,
        max_buffer_rows=300,
        retry_deadline=0.2,
    )
    running = ProxyThread(proxy_settings).start()
    metrics = running.metrics
    try:
        ids = []
        for k in range(6):  # 6 x 64 rows: 4 fit in 300, 2 are dropped whole
            x = inputs[64 * k : 64 * (k + 1)]
            result = _infer(running.address, x)  # inference is unaffected
            ids += row_ids(result.get_response().id, 64)
        wait_for(
            lambda: (
                metrics.value(
                    "evalstream_proxy_predictions_dropped_total",
                    stream="digits-restart",
                    reason="buffer_full",
                )
                == 128.0
            ),
            "128 rows dropped",
        )
        assert metrics.value("evalstream_proxy_buffer_rows") == 256.0
        wait_for(
            lambda: (
                metrics.value(
                    "evalstream_proxy_send_errors_total",
                    stream="digits-restart",
                    code="UNAVAILABLE",
                )
                >= 1
            ),
            "a failed send",
        )
        with ServerThread(settings) as second, EvalClient(second.target) as client:
            wait_for(
                lambda: (
                    metrics.value(
                        "evalstream_proxy_predictions_recorded_total", stream="digits-restart"
                    )
                    == 256.0
                ),
                "the buffered rows delivered",
                timeout=15.0,
            )
            result = client.log_labels("digits-restart", ids, labels[: len(ids)])
            assert (result.matched, result.unknown) == (256, 128)
            assert client.report("digits-restart").to_dict()["n_samples"] == 256  # once
    finally:
        running.stop(flush_timeout=1.0)
    assert metrics.value("evalstream_proxy_buffer_rows") == 0.0


def test_cli_serves_until_sigterm_and_flushes(v2server, evalstream_target, eval_set) -> None:
    inputs, labels = eval_set
    with EvalClient(evalstream_target.target) as client:
        _create(client, "digits-cli-proxy")
    argv = [
        sys.executable, "-m", "evalstream_server.cli", "triton-proxy",
        "--listen", "127.0.0.1:0", "--triton", v2server.grpc_url,
        "--target", evalstream_target.target, "--model", "digits_cnn=digits-cli-proxy",
        "--metrics-port", "0", "--flush-interval", "30",  # only the shutdown flush sends
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        wait_for(lambda: any("serving" in line for line in lines), "the serving line", 30.0)
        address = re.search(r"serving (\S+) ->", "".join(lines)).group(1)
        ids = []
        for k in range(3):
            ids += row_ids(_infer(address, inputs[10 * k : 10 * k + 10]).get_response().id, 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        reader.join(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "triton-proxy: stopped; 0 rows unsent" in "".join(lines)
    with EvalClient(evalstream_target.target) as client:
        assert client.log_labels("digits-cli-proxy", ids, labels[:30]).matched == 30


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "digits_cnn"], "--model: expected NAME=STREAM or NAME=STREAM:OUTPUT"),
        (["--model", "m=bad stream"], "with a STREAM name of 1 to 128 characters"),
        (["--model", "m=s", "--model", "m=t"], "expected each model at most once, received 'm'"),
        (["--model", "m=s:"], "with a non-empty OUTPUT"),
        (["--model", "m=s", "--listen", "8011"], "--listen: expected HOST:PORT"),
    ],
)
def test_cli_refuses_bad_arguments(argv, message, capsys) -> None:
    assert main(["triton-proxy", "--triton", "127.0.0.1:1", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("evalstream triton-proxy: ") and message in err


def test_routes_parse() -> None:
    assert parse_routes(["a=s", "b.v2=t:probs"]) == {
        "a": ModelRoute("a", "s"),
        "b.v2": ModelRoute("b.v2", "t", "probs"),
    }
    with pytest.raises(RouteError) as info:
        parse_routes(["=s"])
    assert info.value.field == "--model"

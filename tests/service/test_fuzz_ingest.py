"""Fuzz the ingest decoding path: random bytes and mutated valid messages. Never INTERNAL, never a
crash; garbage is INVALID_ARGUMENT; the state changes only by what was acknowledged as accepted."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import create, tensor

ALLOWED_CALL_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


def _valid_bytes(seq: int) -> bytes:
    rng = np.random.default_rng(seq)
    y = rng.integers(0, 3, 5).astype(np.int32)
    p = rng.dirichlet(np.ones(3), 5).astype(np.float32)
    return pb.IngestRequest(
        stream="fuzz", producer_id="fz", sequence=0, scores=tensor(p), labels=tensor(y)
    ).SerializeToString()


@pytest.fixture(scope="module")
def fuzz_stream(stub):
    create(stub, "fuzz")
    return stub


def _n(stub) -> int:
    return json.loads(stub.GetReport(pb.GetReportRequest(stream="fuzz")).report_json)["n_samples"]


def _send(server, payload: bytes):
    with grpc.insecure_channel(server.target) as ch:
        call = ch.stream_stream(
            "/evalstream.v1.EvalstreamService/Ingest",
            response_deserializer=pb.IngestResponse.FromString,
        )
        try:
            return [r for resp in call(iter([payload]), timeout=10) for r in resp.results], None
        except grpc.RpcError as exc:
            return [], exc


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        if b:
            b[pos % len(b)] = val
    return bytes(b[:cut] if cut is not None else b)


def _check(server, stub, payload: bytes) -> None:
    before = _n(stub)
    results, err = _send(server, payload)
    if err is not None:
        assert err.code() in ALLOWED_CALL_CODES, (err.code(), err.details())
        assert _n(stub) == before
        return
    gained = 0
    for r in results:
        if r.status == ingest_pb2.BATCH_STATUS_ACCEPTED:
            gained += r.samples
        else:
            assert r.error_code != grpc.StatusCode.INTERNAL.value[0], r.error_message
            assert r.error_message
    assert _n(stub) == before + gained


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(payload=st.binary(max_size=300))
def test_random_bytes(server, fuzz_stream, payload):
    _check(server, fuzz_stream, payload)


@FUZZ
@given(
    seq=st.integers(0, 1000),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
def test_mutated_valid_messages(server, fuzz_stream, seq, edits, cut):
    _check(server, fuzz_stream, _mutate(_valid_bytes(seq), edits, cut))


def test_the_unmutated_message_is_accepted(server, fuzz_stream):
    before = _n(fuzz_stream)
    results, err = _send(server, _valid_bytes(1))
    assert err is None and results[0].status == ingest_pb2.BATCH_STATUS_ACCEPTED
    assert _n(fuzz_stream) == before + 5

"""GetServerInfo over the raw wire: each limit and default it states is the one the server
applies (checked by crossing it), the report version is the reports', and the schema id is the
shipped schema's."""

from __future__ import annotations

import json
from importlib import metadata

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2

from tests.report_schema import load_schema

from .conftest import create, ingest, tensor


@pytest.fixture(scope="module")
def info(stub) -> pb.GetServerInfoResponse:
    return stub.GetServerInfo(pb.GetServerInfoRequest(), timeout=10)


def test_version_report_version_and_schema(stub, info):
    assert info.server_version == metadata.version("evalstream")
    create(stub, "info-report")
    report = json.loads(stub.GetReport(pb.GetReportRequest(stream="info-report")).report_json)
    assert info.report_version == report["report_version"]
    assert info.report_schema_id == load_schema()["$id"]


def test_the_stated_row_and_message_limits_are_the_enforced_ones(stub, info):
    create(stub, "info-limits", task="binary", classes=("n", "p"))
    rows = info.limits.max_batch_rows  # 20000 on this test server

    def batch(n: int) -> pb.IngestRequest:
        return pb.IngestRequest(
            stream="info-limits",
            scores=tensor(np.full(n, 0.5, np.float32)),
            labels=tensor(np.zeros(n, np.int32)),
        )

    (at, past), _ = ingest(stub, [batch(rows), batch(rows + 1)])
    assert at.status == ingest_pb2.BATCH_STATUS_ACCEPTED
    assert past.field_error.field == "batch rows" and past.field_error.expected == f"at most {rows}"
    big = batch(info.limits.max_message_bytes // 8 + 1)  # 8 bytes a row: past the limit
    assert big.ByteSize() > info.limits.max_message_bytes
    (r,), _ = ingest(stub, [big])
    assert r.field_error.field == "message bytes"
    assert r.field_error.expected == f"at most {info.limits.max_message_bytes}"


def test_the_stated_curve_points_are_the_applied_ones(stub, info):
    create(stub, "info-curve", task="binary", classes=("n", "p"))
    rng = np.random.default_rng(1)
    n = 3 * info.defaults.curve_points
    req = pb.IngestRequest(
        stream="info-curve",
        scores=tensor(rng.random(n).astype(np.float32)),
        labels=tensor(rng.integers(0, 2, n).astype(np.int32)),
    )
    ingest(stub, [req])
    default = stub.GetCurve(pb.GetCurveRequest(stream="info-curve")).curve
    assert len(default.x) == info.defaults.curve_points
    most = stub.GetCurve(pb.GetCurveRequest(stream="info-curve", max_points=10**9)).curve
    assert info.defaults.curve_points < len(most.x) <= info.limits.max_curve_points


def test_the_stated_window_limit_is_the_enforced_one(stub, info):
    windows = [f"{i}m" for i in range(1, info.limits.max_windows + 2)]
    create(stub, "info-windows-ok", windows=windows[:-1])
    with pytest.raises(grpc.RpcError) as exc:
        create(stub, "info-windows-past", windows=windows)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_defaults_and_clock_bounds_are_stated(info):
    assert info.defaults.watch_interval.ToNanoseconds() == 5 * 10**9
    assert info.limits.min_watch_interval.ToNanoseconds() == 10**9  # --min-watch-interval
    assert info.limits.max_clock_skew.ToSeconds() == 300
    assert (info.defaults.mantissa_bits, info.defaults.exact_max_samples) == (5, 1_000_000)
    assert (info.defaults.page_size, info.limits.max_id_length) == (100, 256)

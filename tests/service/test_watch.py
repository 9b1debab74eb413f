"""WatchReport shares its work: 50 watchers of one stream cost one report computation per change
of the stream, not one per watcher and interval; intervals have a floor and each tenant a cap."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from google.protobuf.duration_pb2 import Duration

from .conftest import create, tensor

WATCHERS = 50
MIN_INTERVAL = 0.05


@pytest.fixture(scope="module")
def server():
    settings = Settings(
        grpc_port=0,
        metrics_port=-1,
        min_watch_interval=MIN_INTERVAL,
        max_watchers_per_tenant=WATCHERS,
    )
    with ServerThread(settings) as srv:
        with grpc.insecure_channel(srv.target) as ch:
            stub = rpc.EvalstreamServiceStub(ch)
            create(stub, "watched", "binary", classes=("n", "p"))
            create(stub, "other", "binary", classes=("n", "p"))
            _ingest(stub, "watched", 1)
        yield srv


def _ingest(stub, stream: str, seq: int) -> None:
    rng = np.random.default_rng(seq)
    y = rng.integers(0, 2, 500).astype(np.int32)
    s = rng.random(500).astype(np.float32)
    req = pb.IngestRequest(
        stream=stream, producer_id="p", sequence=seq, scores=tensor(s), labels=tensor(y)
    )
    *_, last = stub.Ingest(iter([req]), timeout=10)
    assert last.accepted_batches == 1


def _request() -> pb.WatchReportRequest:
    return pb.WatchReportRequest(
        stream="watched",
        include_curves=True,
        interval=Duration(nanos=1_000_000),  # 1 ms asked
    )


async def _watch(stub, n: int, changed: asyncio.Event, seen: list) -> None:
    """Read ``n`` reports before and ``n`` after the change."""
    call = stub.WatchReport(_request(), timeout=30)
    try:
        for _ in range(n):
            seen.append(await call.read())
        await changed.wait()
        for _ in range(n):
            seen.append(await call.read())
    finally:
        call.cancel()


async def _scenario(server) -> tuple[list, int, int]:
    reports = server.running.servicer.reports
    async with grpc.aio.insecure_channel(server.target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)
        changed = asyncio.Event()
        seen: list = []
        before = reports.computed
        watchers = [asyncio.ensure_future(_watch(stub, 4, changed, seen)) for _ in range(WATCHERS)]
        while len(seen) < WATCHERS * 4:
            await asyncio.sleep(0.01)
        computed_idle = reports.computed - before
        # one more watcher is past the tenant's cap, and the others are unaffected
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.WatchReport(_request(), timeout=5).read()
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.details() == "watchers per tenant: limit 50, received 51"
        got = await stub.GetStream(pb.GetStreamRequest(name="other"), timeout=5)
        assert got.stream.config.name == "other"
        await asyncio.to_thread(_ingest_one_more, server.target)
        changed.set()
        await asyncio.gather(*watchers)
        return seen, computed_idle, reports.computed - before


def _ingest_one_more(target: str) -> None:
    with grpc.insecure_channel(target) as ch:
        _ingest(rpc.EvalstreamServiceStub(ch), "watched", 2)


def test_fifty_watchers_cost_one_report_per_change(server):
    seen, computed_idle, computed = asyncio.run(_scenario(server))
    assert len(seen) == WATCHERS * 8  # 400 reports delivered
    assert computed_idle == 1  # 200 reports of an unchanged stream: computed once
    assert computed == 2  # and once more after the one change
    samples = {int(r.headline.n_samples) for r in seen}
    assert samples == {500, 1000}
    # every watch lets go of its place once its call ends (the server sees the cancellations
    # a moment after the clients: wait for them, boundedly)
    watchers = server.running.servicer.watchers
    deadline = time.monotonic() + 10
    while watchers.open and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not watchers.open, watchers.open


def test_watch_intervals_are_raised_to_the_minimum(server):
    with grpc.insecure_channel(server.target) as ch:
        call = rpc.EvalstreamServiceStub(ch).WatchReport(_request(), timeout=10)
        times = [next(call).generated_time.ToNanoseconds() / 1e9 for _ in range(4)]
        call.cancel()
    gaps = np.diff(times)
    assert (gaps >= MIN_INTERVAL * 0.99).all(), gaps  # 1 ms asked, the 50 ms floor served

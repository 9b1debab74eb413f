"""Admission after authentication: a call is authenticated before it holds a concurrency slot,
each tenant has its own share of the slots, and a streaming call that stops sending is closed.

The slowloris: 300 calls without a token (or 300 of one tenant) whose request streams never
yield must not lock out the other tenants or the health check.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import stream_pb2
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from grpc_health.v1 import health_pb2, health_pb2_grpc

TOKEN_A = "team-a-token-0123456789"
TOKEN_B = "team-b-token-9876543210"
META_A = (("authorization", f"Bearer {TOKEN_A}"),)
META_B = (("authorization", f"Bearer {TOKEN_B}"),)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokens"
    path.write_text(f"team-a:{TOKEN_A}\nteam-b:{TOKEN_B}\n")
    settings = Settings(
        grpc_port=0,
        metrics_port=-1,
        token_file=str(path),
        max_concurrent_rpcs=256,
        max_calls_per_tenant=200,
        idle_timeout=1.5,
    )
    with ServerThread(settings) as srv:
        stub = rpc.EvalstreamServiceStub(grpc.insecure_channel(srv.target))
        config = stream_pb2.StreamConfig(
            name="s", task=stream_pb2.TASK_BINARY, score_kind=stream_pb2.SCORE_KIND_PROBABILITIES
        )
        for meta in (META_A, META_B):
            stub.CreateStream(pb.CreateStreamRequest(config=config), metadata=meta, timeout=5)
        yield srv


async def _others_are_served(channel: grpc.aio.Channel, tenants: tuple) -> None:
    """Health and the ``tenants``' unary calls answer while the flood is open."""
    health = health_pb2_grpc.HealthStub(channel)
    got = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert got.status == health_pb2.HealthCheckResponse.SERVING
    stub = rpc.EvalstreamServiceStub(channel)
    for meta in tenants:
        info = await stub.GetStream(pb.GetStreamRequest(name="s"), metadata=meta, timeout=5)
        assert info.stream.config.name == "s"


async def _flood(
    target: str, metadata: tuple, n: int, others: tuple = (META_A, META_B)
) -> list[grpc.StatusCode]:
    """Open ``n`` calls that never send a message (Ingest, and unary GetStream opened as a
    stream, the way a client that never finishes its request looks to the server); check the
    others are served while they are open; return the status each flood call ended with."""
    async with grpc.aio.insecure_channel(target) as flood, grpc.aio.insecure_channel(target) as ch:
        ingest = rpc.EvalstreamServiceStub(flood).Ingest
        get = flood.stream_stream("/evalstream.v1.EvalstreamService/GetStream")
        calls = [(ingest, get)[i % 2](metadata=metadata, timeout=30) for i in range(n)]
        ended = [asyncio.ensure_future(_drain(c)) for c in calls]
        await asyncio.sleep(0.5)  # every call has reached the server (and been answered or held)
        await _others_are_served(ch, others)
        return list(await asyncio.gather(*ended))


async def _drain(call) -> grpc.StatusCode:
    """Read a call's answers, as a client does, until it ends; its status."""
    try:
        async for _ in call:
            pass
    except grpc.RpcError:
        pass
    return await call.code()


def test_calls_without_a_token_never_hold_a_slot(server):
    codes = asyncio.run(_flood(server.target, (), 300))
    assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}


def test_one_tenants_idle_calls_take_only_its_share_and_are_closed(server):
    """300 idle calls of team A: 200 (its share) are admitted and closed after the idle timeout
    (UNAVAILABLE: a client opens a new call), 100 are refused at once; team B and health are
    served all along."""
    codes = asyncio.run(_flood(server.target, META_A, 300, others=(META_B,)))
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 100
    assert codes.count(grpc.StatusCode.UNAVAILABLE) == 200

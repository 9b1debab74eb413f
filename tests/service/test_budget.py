"""The memory budget at CreateStream (issue 13, items 1 and 6): configs that ask for huge memory are
refused with RESOURCE_EXHAUSTED naming the field, the limit and the amount (they ended in INTERNAL
"internal error", or were accepted), nothing is created, the README's examples fit the defaults,
and the server's budget bounds the sum of its streams' fixed parts (what grows is charged as it
grows: test_memory_ledger.py)."""

from __future__ import annotations

import re

import grpc
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import stream_pb2
from evalstream_server.budget import MemoryBudget
from evalstream_server.engine import StreamSpec
from evalstream_server.engine.budget import format_bytes, worst_case_memory
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings

from .conftest import create

Res = stream_pb2.Resolution
K32 = [f"c{i}" for i in range(32)]
HUGE = {  # issue 13, item 6, and the default K = 32 with 8 windows
    "K=32, 12 mantissa bits": (
        dict(classes=K32, resolution=Res(binned=Res.Binned(mantissa_bits=12))),
        "resolution.mantissa_bits",
    ),
    "ovo_class_limit=1000 at K=1000": (
        dict(classes=[f"c{i}" for i in range(1000)], ovo_class_limit=1000),
        "ovo_class_limit",
    ),
    "exact max_samples=2^62": (
        dict(resolution=Res(exact=Res.Exact(max_samples=2**62))),
        "resolution.max_samples",
    ),
    "K=32, 8 windows": (
        dict(classes=K32, windows=["1m", "5m", "15m", "1h", "6h", "1d", "7d", "30d"]),
        "windows",
    ),
}


@pytest.fixture(scope="module")
def server():
    srv = ServerThread(Settings(grpc_port=0, metrics_port=-1)).start()  # default budgets
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as ch:
        yield rpc.EvalstreamServiceStub(ch)


@pytest.mark.parametrize("case", HUGE, ids=list(HUGE))
def test_a_config_asking_for_huge_memory_is_refused_naming_the_field(stub, case):
    kw, field = HUGE[case]
    name = re.sub(r"[^A-Za-z0-9]+", "-", case)
    with pytest.raises(grpc.RpcError) as info:
        create(stub, name, classes=kw.pop("classes", ("a", "b", "c")), **kw)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    message = info.value.details()
    assert message.startswith(f"{field}: limit 4.0 GiB of worst-case memory per stream")
    assert re.search(r"received a stream that can take \d+\.\d (GiB|TiB|PiB)", message)
    with pytest.raises(grpc.RpcError) as missing:  # nothing was created
        stub.GetStream(pb.GetStreamRequest(name=name))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("bins", [30_000_000, 2**32 - 1])
def test_calibration_bins_are_bounded(stub, bins):
    with pytest.raises(grpc.RpcError) as info:
        create(stub, "calibrated", calibration_bins=bins)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == (
        f"config.calibration_bins: expected an integer in [1, 10000], received {bins}"
    )
    create(stub, f"calibrated-{bins}", calibration_bins=10_000)


def test_the_readmes_examples_fit_the_default_budgets(stub):
    create(stub, "pets", classes=("cat", "dog", "eel"), windows=["5m", "1h"])
    create(
        stub,
        "fraud",
        task="binary",
        classes=("ok", "fraud"),
        windows=["1h", "7d"],
        max_pending=1_000_000,
    )
    create(stub, "digits", classes=[str(i) for i in range(10)], windows=["5m", "1h"])
    create(stub, "demo", classes=("cat", "dog", "fox", "owl"), windows=["30s", "5m"])


def test_the_server_budget_bounds_the_sum_of_fixed_parts():
    spec = StreamSpec(task="binary", classes=("n", "p"), name="x")
    one = worst_case_memory(spec, 300.0).fixed
    settings = Settings(grpc_port=0, metrics_port=-1, max_server_memory=3 * one + one // 2)
    with ServerThread(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)
        for i in range(3):
            create(stub, f"s{i}", task="binary", classes=("n", "p"))
        with pytest.raises(grpc.RpcError) as info:
            create(stub, "s3", task="binary", classes=("n", "p"))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        message = info.value.details()
        limit = format_bytes(3 * one + one // 2)
        assert message.startswith(f"classes: limit {limit} of worst-case memory for all")
        assert f"{format_bytes(one)} fixed next to {format_bytes(3 * one)} charged" in message
        stub.DeleteStream(pb.DeleteStreamRequest(name="s0"))  # frees its share
        create(stub, "s3", task="binary", classes=("n", "p"))


def test_the_check_changes_nothing_and_counts_the_skew_bound():
    near = MemoryBudget(per_stream=1 << 40, max_skew=0.0)
    far = MemoryBudget(per_stream=1 << 40, max_skew=None)
    spec = StreamSpec(task="multiclass", classes=("a", "b", "c"), windows=("5m",), name="w")
    # with no skew allowed a ring holds its span and one bucket ahead; without a bound, a span
    assert near.need(spec).buckets == 13 and far.need(spec).buckets == 24
    assert near.need(spec).total < far.need(spec).total
    assert near.check(spec, 0) == far.check(spec, 0) == near.need(spec).fixed


def test_a_tenants_memory_quota_leaves_the_others_theirs(tmp_path):
    spec = StreamSpec(task="binary", classes=("n", "p"), name="x")
    one = worst_case_memory(spec, 300.0).fixed
    tokens = tmp_path / "tokens"
    tokens.write_text("team-a:team-a-token-0123456789\nteam-b:team-b-token-0123456789\n")
    settings = Settings(
        grpc_port=0, metrics_port=-1, token_file=str(tokens), max_tenant_memory=2 * one + one // 2
    )
    meta = {t: (("authorization", f"Bearer {t}-token-0123456789"),) for t in ("team-a", "team-b")}
    with ServerThread(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)

        def make(tenant: str, name: str) -> None:
            cfg = stream_pb2.StreamConfig(
                name=name,
                task=stream_pb2.TASK_BINARY,
                classes=["n", "p"],
                score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
            )
            stub.CreateStream(pb.CreateStreamRequest(config=cfg), metadata=meta[tenant])

        make("team-a", "s0")
        make("team-a", "s1")
        with pytest.raises(grpc.RpcError) as info:
            make("team-a", "s2")
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        limit = format_bytes(2 * one + one // 2)
        assert info.value.details().startswith(
            f"classes: limit {limit} of worst-case memory for one tenant's streams"
        )
        for name in ("s0", "s1"):  # team-b's quota is its own
            make("team-b", name)

"""Tenants cannot learn or take what is not theirs: another tenant's stream answers exactly as a
name nobody uses, names are per tenant (in memory and in the durable store, older data migrated),
and each tenant has its own stream quota."""

from __future__ import annotations

import sqlite3

import grpc
import numpy as np
import pytest
from evalstream.v1 import curve_pb2, ingest_pb2, stream_pb2
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream_server.auth import load_tokens
from evalstream_server.engine import Batch, StreamSpec
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from evalstream_server.store.checksums import COLUMNS as CHECKSUMMED
from evalstream_server.store.durable import DurableStore

from .conftest import tensor

TOKEN_A = "team-a-token-0123456789"
TOKEN_B = "team-b-token-9876543210"


def _cfg(name: str) -> pb.CreateStreamRequest:
    return pb.CreateStreamRequest(
        config=stream_pb2.StreamConfig(
            name=name, task=stream_pb2.TASK_BINARY, score_kind=stream_pb2.SCORE_KIND_PROBABILITIES
        )
    )


def _batch(stream: str, rows: int, seq: int = 1) -> pb.IngestRequest:
    y = (np.arange(rows) % 2).astype(np.int32)
    s = np.linspace(0.1, 0.9, rows).astype(np.float32)
    return pb.IngestRequest(
        stream=stream, producer_id="p", sequence=seq, scores=tensor(s), labels=tensor(y)
    )


def _tokens(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tok") / "tokens"
    path.write_text(f"team-a:{TOKEN_A}\nteam-b:{TOKEN_B}\n")
    return str(path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(
        grpc_port=0,
        metrics_port=-1,
        token_file=_tokens(tmp_path_factory),
        max_streams_per_tenant=3,
    )
    with ServerThread(settings) as srv:
        yield srv


@pytest.fixture()
def tenants(server):
    with grpc.insecure_channel(server.target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)
        meta = {t: (("authorization", f"Bearer {t}"),) for t in (TOKEN_A, TOKEN_B)}
        yield stub, meta[TOKEN_A], meta[TOKEN_B]
        for m in meta.values():  # leave no streams behind for the quota test
            for info in stub.ListStreams(pb.ListStreamsRequest(), metadata=m, timeout=5).streams:
                stub.DeleteStream(pb.DeleteStreamRequest(name=info.config.name), metadata=m)


def _error(call, req, meta) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        out = call(req, metadata=meta, timeout=5)
        if not hasattr(out, "SerializeToString"):  # a response stream: read its first message
            next(iter(out))
    return info.value.code(), info.value.details()


def _calls(name: str) -> list[tuple[str, object]]:
    return [
        ("GetStream", pb.GetStreamRequest(name=name)),
        ("GetReport", pb.GetReportRequest(stream=name)),
        ("GetCurve", pb.GetCurveRequest(stream=name, kind=curve_pb2.CURVE_KIND_ROC)),
        ("WatchReport", pb.WatchReportRequest(stream=name)),
        ("Compare", pb.CompareRequest(stream=name)),
        ("ResetStream", pb.ResetStreamRequest(name=name)),
        ("DeleteStream", pb.DeleteStreamRequest(name=name)),
    ]


def test_another_tenants_stream_answers_exactly_as_a_name_nobody_uses(tenants):
    stub, meta_a, meta_b = tenants
    stub.CreateStream(_cfg("taken"), metadata=meta_a, timeout=5)
    for (method, theirs), (_, unused) in zip(_calls("taken"), _calls("nobody"), strict=True):
        code, message = _error(getattr(stub, method), theirs, meta_b)
        code_unused, message_unused = _error(getattr(stub, method), unused, meta_b)
        assert code == code_unused == grpc.StatusCode.NOT_FOUND, method
        assert message == message_unused.replace("nobody", "taken"), method
    ingest = [
        r
        for name in ("taken", "nobody")
        for resp in stub.Ingest(iter([_batch(name, 4)]), metadata=meta_b, timeout=5)
        for r in resp.results
    ]
    assert [r.error_code for r in ingest] == [grpc.StatusCode.NOT_FOUND.value[0]] * 2
    assert ingest[0].error_message == ingest[1].error_message.replace("nobody", "taken")
    # nothing B did reached A's stream: A's first batch (sequence 1) is still the expected one
    (res,) = [
        r
        for resp in stub.Ingest(iter([_batch("taken", 4)]), metadata=meta_a, timeout=5)
        for r in resp.results
    ]
    assert res.status == ingest_pb2.BATCH_STATUS_ACCEPTED
    info = stub.GetStream(pb.GetStreamRequest(name="taken"), metadata=meta_a, timeout=5)
    assert info.stream.sample_count == 4


def test_stream_names_are_per_tenant(tenants):
    stub, meta_a, meta_b = tenants
    stub.CreateStream(_cfg("fraud"), metadata=meta_a, timeout=5)
    stub.CreateStream(_cfg("fraud"), metadata=meta_b, timeout=5)  # not ALREADY_EXISTS
    for meta, rows in ((meta_a, 6), (meta_b, 10)):
        list(stub.Ingest(iter([_batch("fraud", rows)]), metadata=meta, timeout=5))
    for meta, rows in ((meta_a, 6), (meta_b, 10)):
        got = stub.GetStream(pb.GetStreamRequest(name="fraud"), metadata=meta, timeout=5)
        assert (got.stream.config.name, got.stream.sample_count) == ("fraud", rows)
        listed = stub.ListStreams(pb.ListStreamsRequest(), metadata=meta, timeout=5).streams
        assert [(s.config.name, s.sample_count) for s in listed] == [("fraud", rows)]
    stub.DeleteStream(pb.DeleteStreamRequest(name="fraud"), metadata=meta_b, timeout=5)
    got = stub.GetStream(pb.GetStreamRequest(name="fraud"), metadata=meta_a, timeout=5)
    assert got.stream.sample_count == 6


def test_each_tenant_has_its_own_stream_quota(tenants):
    stub, meta_a, meta_b = tenants
    for i in range(3):
        stub.CreateStream(_cfg(f"q{i}"), metadata=meta_a, timeout=5)
    code, message = _error(stub.CreateStream, _cfg("q3"), meta_a)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert message == "streams per tenant: limit 3, received 4"
    listed = stub.ListStreams(pb.ListStreamsRequest(), metadata=meta_a, timeout=5).streams
    assert sorted(s.config.name for s in listed) == ["q0", "q1", "q2"]  # nothing created
    for i in range(3):  # A's full quota takes nothing from B
        stub.CreateStream(_cfg(f"q{i}"), metadata=meta_b, timeout=5)


def test_tenant_names_that_could_not_be_part_of_a_key_are_refused():
    with pytest.raises(ValueError, match="tenant 'team/a': expected 1 to 64 characters"):
        load_tokens("", env=f"team/a:{TOKEN_A}")


def _spec(name: str) -> StreamSpec:
    return StreamSpec(task="binary", classes=("n", "p"), name=name)


def _validated(y: np.ndarray, s: np.ndarray) -> Batch:
    from evalstream_server.engine import StreamEngine

    return StreamEngine(_spec("x")).validate(y, s)


def test_durable_store_keeps_two_tenants_streams_of_one_name_apart(tmp_path):
    store = DurableStore(tmp_path)
    store.create(_spec("fraud"), tenant="team-a")
    store.create(_spec("fraud"), tenant="team-b")
    store.ingest("team-a/fraud", "p", 1, _validated(np.array([0, 1]), np.array([0.2, 0.8])), None)
    store.flush()
    store.close()
    again = DurableStore(tmp_path)
    try:
        assert again.names() == ["team-a/fraud", "team-b/fraud"]
        assert again.get("team-a/fraud").engine.cumulative.n_samples == 2
        assert again.get("team-b/fraud").engine.cumulative.n_samples == 0
        assert again.expected_sequence("team-a/fraud", "p") == 2
    finally:
        again.close()


def test_durable_data_written_before_per_tenant_names_migrates(tmp_path):
    """Before names were per tenant, a tenant's stream was filed under its bare name in every
    table; the store renames it to ``tenant/name`` on start, counts, producers and all."""
    store = DurableStore(tmp_path, snapshot_every=2)
    store.create(_spec("fraud"), tenant="team-a")
    store.create(_spec("open"))
    for seq in (1, 2, 3):  # a snapshot after 2, a logged batch after it
        batch = _validated(np.array([0, 1, 1]), np.array([0.2, 0.8, 0.6]))
        store.ingest("team-a/fraud", "p", seq, batch, None)
    store.flush()
    store.close()
    db = sqlite3.connect(tmp_path / "evalstream.db")
    with db:  # the layout the older version wrote (also before row checksums)
        db.execute("UPDATE streams SET name = 'fraud' WHERE name = 'team-a/fraud'")
        for table in ("producers", "outcomes", "batches", "snapshots"):
            db.execute(f"UPDATE {table} SET stream = 'fraud' WHERE stream = 'team-a/fraud'")  # noqa: S608
        for table in CHECKSUMMED:
            db.execute(f"ALTER TABLE {table} DROP COLUMN crc")
    db.close()
    again = DurableStore(tmp_path)
    try:
        assert again.names() == ["open", "team-a/fraud"]
        record = again.get("team-a/fraud")
        assert (record.tenant, record.spec.name) == ("team-a", "fraud")
        assert record.engine.cumulative.n_samples == 9
        assert again.expected_sequence("team-a/fraud", "p") == 4
        assert again.ingest("team-a/fraud", "p", 3, None, None).status == "duplicate"
    finally:
        again.close()
    db = sqlite3.connect(tmp_path / "evalstream.db")
    left = db.execute("SELECT COUNT(*) FROM batches WHERE stream = 'fraud'").fetchone()[0]
    db.close()
    assert left == 0


def test_metrics_carry_the_tenant_so_two_tenants_streams_of_one_name_are_two_series():
    from evalstream_server.exporters import EvalstreamCollector
    from evalstream_server.store import MemoryStore
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    store = MemoryStore()
    for tenant, rows in (("team-a", 6), ("team-b", 10)):
        store.create(_spec("fraud"), tenant=tenant)
        y = (np.arange(rows) % 2).astype(np.int32)
        store.ingest(f"{tenant}/fraud", "p", 1, _validated(y, np.linspace(0.1, 0.9, rows)), None)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EvalstreamCollector(store))
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}  # parses: no duplicates
    samples = {
        (s.labels["tenant"], s.labels["stream"]): s.value
        for s in families["evalstream_samples"].samples
    }
    assert samples == {("team-a", "fraud"): 6, ("team-b", "fraud"): 10}
    for family in families.values():  # every series of a stream names its tenant
        for s in family.samples:
            assert "stream" not in s.labels or s.labels["tenant"] in ("team-a", "team-b")
    series = [line.split(" ")[0] for line in text.splitlines() if not line.startswith("#")]
    assert len(series) == len(set(series))


def test_another_tenants_stream_is_never_looked_at(server, tenants):
    """Same path, same timing: tenant B's calls on a name tenant A uses ask the store only for
    B's own keys (a miss, as for any unused name), never for A's stream."""
    stub, meta_a, meta_b = tenants
    stub.CreateStream(_cfg("secret"), metadata=meta_a, timeout=5)
    store = server.running.store
    asked: list[str] = []
    real_get = store.get

    def spy(name: str):
        asked.append(name)
        return real_get(name)

    store.get = spy
    try:
        for method, req in _calls("secret"):
            _error(getattr(stub, method), req, meta_b)
        list(stub.Ingest(iter([_batch("secret", 4)]), metadata=meta_b, timeout=5))
    finally:
        del store.get
    assert asked and set(asked) == {"team-b/secret"}

"""``rediss://``: a replica on a TLS-only ``redis-server`` (certificates from a throwaway CA made
with ``openssl``) counts exactly what the in-memory store counts; without the CA it refuses the
server's certificate."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2
from evalstream_server.engine import CUMULATIVE, StreamSpec, make_batch
from evalstream_server.server import ServerThread
from evalstream_server.store import MemoryStore, StoreUnavailableError
from evalstream_server.store.redis_store import RedisStore

from .conftest import (
    CLASSES,
    REDIS_SERVER,
    RedisServer,
    counted,
    create_stream,
    ingest,
    make_batches,
    make_tls_certs,
    memory_report,
    replica_settings,
    request,
    stub_for,
)


def _tls_built_in() -> bool:
    out = subprocess.run([REDIS_SERVER, "--help"], capture_output=True, text=True, timeout=10)
    version = subprocess.run(
        [REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=10
    )
    return "tls" in (out.stdout + out.stderr + version.stdout).lower() or _links_ssl()


def _links_ssl() -> bool:
    try:
        out = subprocess.run(["ldd", REDIS_SERVER], capture_output=True, text=True, timeout=10)
    except OSError:
        return False
    return "libssl" in out.stdout


@pytest.fixture
def tls_redis(tmp_path):
    if not _tls_built_in():
        pytest.skip("this redis-server is built without TLS")
    server = RedisServer(tmp_path / "redis", tls=make_tls_certs(tmp_path / "certs")).start()
    yield server
    server.stop()


def test_a_store_over_tls_counts_what_memory_counts(tls_redis):
    assert tls_redis.url.startswith("rediss://")
    spec = StreamSpec(task="multiclass", classes=CLASSES["multiclass"], windows=("1h",), name="s")
    store = RedisStore.from_url(tls_redis.url, background=False)
    memory = MemoryStore()
    try:
        store.create(spec)
        memory.create(spec)
        ((y, p),) = make_batches("multiclass", 1, 500, seed=11)
        batch = make_batch(spec, y, p, None)
        ts = time.time()
        assert store.ingest("s", "p", 1, batch, ts).status == "accepted"
        memory.ingest("s", "p", 1, batch, ts)
        store.flush()
        for window in (CUMULATIVE, "1h"):
            assert counted(store.report("s", window)) == counted(memory_report(memory, "s", window))
        assert tls_redis.client().exists("evalstream:{s}:cum")
    finally:
        store.close()


def test_without_the_ca_the_server_certificate_is_refused(tls_redis):
    url = tls_redis.url.split("?")[0] + "?timeout=2"
    store = RedisStore.from_url(url, background=False)
    try:
        with pytest.raises(StoreUnavailableError, match="(?i)certificate"):
            store.names()
    finally:
        store.close()


def test_a_replica_serves_over_rediss(tls_redis):
    srv = ServerThread(replica_settings(tls_redis.url + "&flush_interval=0.02")).start()
    memory = MemoryStore()
    try:
        channel, stub = stub_for(srv.target)
        with channel:
            create_stream(stub, "g", "binary")
            spec = StreamSpec(task="binary", classes=CLASSES["binary"], name="g")
            memory.create(spec)
            ((y, p),) = make_batches("binary", 1, 400, seed=5)
            (result,) = ingest(stub, [request("g", "p", 1, y, p)])
            assert result.status == ingest_pb2.BATCH_STATUS_ACCEPTED
            memory.ingest("g", "p", 1, make_batch(spec, y, p, None), None)
            reply = stub.GetReport(pb.GetReportRequest(stream="g", window=CUMULATIVE), timeout=30)
            got = counted(json.loads(reply.report_json))
            want = json.loads(json.dumps(counted(memory_report(memory, "g", CUMULATIVE))))
            assert got == want
    finally:
        srv.stop()

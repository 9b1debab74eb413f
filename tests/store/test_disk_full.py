"""A full disk: writes are refused and unhealthy, nothing unacknowledged is shown, and the store
recovers by itself when space returns (no restart). The data dir is a small tmpfs filled to the
brim (mounting needs root: skipped elsewhere), or, for the store alone, a database held at its
size by SQLite's max_page_count (the same "database or disk is full", everywhere)."""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import ingest_pb2
from evalstream_server.engine import StreamSpec
from evalstream_server.rpc.servicer import SERVICE_NAME
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from evalstream_server.store.durable import DurableStore, StoreUnavailableError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..service.conftest import create, ingest, tensor

SPEC = StreamSpec(task="multiclass", classes=tuple("abcdefghij"), name="s")


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs and a filler file taking all but about 2 MiB of it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk, leave: int) -> None:
    """Leave about ``leave`` bytes free on ``disk`` (the filler is ``disk/filler``)."""
    import os

    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def _batch(rng, n=2048):
    y = rng.integers(0, 10, n)
    s = rng.dirichlet(np.ones(10), n).astype(np.float32)
    return y, s


class _Tmpfs:
    """The real thing: a tmpfs filled to the brim by a filler file."""

    def __init__(self, mount) -> None:
        self.mount, self.data_dir = mount, mount / "data"

    def fill(self, store) -> None:
        _fill(self.mount, 2 << 20)

    def free(self, store) -> None:
        (self.mount / "filler").unlink()


class _PageLimit:
    """SQLite's ``max_page_count`` at the database's size: the same SQLITE_FULL error where a
    tmpfs cannot be mounted (no root)."""

    def __init__(self, tmp_path) -> None:
        self.data_dir = tmp_path / "data"

    def fill(self, store) -> None:
        store._writer.call(_limit_pages).result()

    def free(self, store) -> None:
        store._writer.call(lambda db: db.execute("PRAGMA max_page_count = 1073741823")).result()


def _limit_pages(db) -> None:
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages + 8}")  # 8 pages of 64 KiB: a few batches


@pytest.fixture(params=["tmpfs", "page_limit"])
def disk(request, tmp_path):
    if request.param == "tmpfs":
        return _Tmpfs(request.getfixturevalue("small_disk"))
    return _PageLimit(tmp_path)


def test_store_rolls_back_refuses_and_recovers_when_space_returns(disk):
    store = DurableStore(disk.data_dir, snapshot_every=10_000)
    store.create(SPEC)
    disk.fill(store)
    rng = np.random.default_rng(0)
    acked, seq = 0, 0
    for _ in range(200):  # bounded: 2 MiB free, 90 KiB a batch
        y, s = _batch(rng)
        seq += 1
        assert store.ingest("s", "p", seq, store.get("s").engine.validate(y, s), None).status == (
            "accepted"
        )
        try:
            store.flush()
        except StoreUnavailableError:
            break
        acked += len(y)
    else:
        pytest.fail("the disk never filled")
    assert acked > 0
    # the failed batch is not shown: memory was rolled back to the last commit
    assert store.state("s", "cumulative").n_samples == acked
    assert store.expected_sequence("s", "p") == seq  # its sequence was not consumed either
    assert store.writable() is False
    y, s = _batch(rng)
    with pytest.raises(StoreUnavailableError, match="writes refused"):
        store.ingest("s", "p", seq, store.get("s").engine.validate(y, s), None)
    assert store.state("s", "cumulative").n_samples == acked
    # a duplicate of an acknowledged batch is still answered (a read)
    assert store.ingest("s", "p", 1, None, None).status == "duplicate"

    disk.free(store)  # space returns
    deadline = time.monotonic() + 20
    while not store.writable():
        assert time.monotonic() < deadline, "the store did not recover"
        time.sleep(0.1)
    out = store.ingest("s", "p", seq, store.get("s").engine.validate(y, s), None)
    assert out.status == "accepted"
    store.flush()
    assert store.state("s", "cumulative").n_samples == acked + len(y)
    store.close()
    again = DurableStore(disk.data_dir)
    assert again.state("s", "cumulative").n_samples == acked + len(y)
    assert again.expected_sequence("s", "p") == seq + 1
    again.close()


def _one_batch_then_full(tmp_path, seed: int):
    """A store on a page-limited disk that acknowledged one batch, then the disk filled up:
    ``(disk, store, rng, samples acknowledged)``."""
    disk = _PageLimit(tmp_path)
    store = DurableStore(disk.data_dir, snapshot_every=10_000)
    store.create(SPEC)
    rng = np.random.default_rng(seed)
    y, s = _batch(rng)
    assert store.ingest("s", "p", 1, store.get("s").engine.validate(y, s), None).status == (
        "accepted"
    )
    store.flush()
    disk.fill(store)
    return disk, store, rng, len(y)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def _health(channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def _wait_health(channel, service: str, status: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while _health(channel, service) != status:
        assert time.monotonic() < deadline, f"health of {service!r} never became {status}"
        time.sleep(0.1)


def test_server_turns_not_serving_for_writes_and_back_without_restart(small_disk):
    store = DurableStore(small_disk / "data")
    settings = Settings(host="127.0.0.1", grpc_port=0, metrics_port=0, data_dir="")
    with ServerThread(settings, store=store) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)
        create(stub, "s", classes=tuple("abcdefghij"))
        _fill(small_disk, 2 << 20)
        rng = np.random.default_rng(1)
        acked, seq, failed = 0, 0, None
        for _ in range(200):
            y, s = _batch(rng)
            seq += 1
            req = pb.IngestRequest(
                stream="s", producer_id="p", sequence=seq, labels=tensor(y), scores=tensor(s)
            )
            try:
                (result,), _ = ingest(stub, [req])
            except grpc.RpcError as exc:
                failed = exc
                break
            assert result.status == ingest_pb2.BATCH_STATUS_ACCEPTED
            acked += len(y)
        assert failed is not None and failed.code() == grpc.StatusCode.UNAVAILABLE
        report = stub.GetReport(pb.GetReportRequest(stream="s"), timeout=10)
        assert f'"n_samples":{acked},' in report.report_json
        _wait_health(ch, SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        assert _health(ch, "") == health_pb2.HealthCheckResponse.SERVING  # alive, reads work
        assert "\nevalstream_store_writable 0.0\n" in _scrape(srv.metrics_port)

        (small_disk / "filler").unlink()
        _wait_health(ch, SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        assert "\nevalstream_store_writable 1.0\n" in _scrape(srv.metrics_port)
        (result,), _ = ingest(stub, [req])  # the refused batch, resent
        assert result.status == ingest_pb2.BATCH_STATUS_ACCEPTED
        report = stub.GetReport(pb.GetReportRequest(stream="s"), timeout=10)
        assert f'"n_samples":{acked + len(y)},' in report.report_json


def test_a_write_check_after_close_answers_at_once(tmp_path):
    """The server's health watcher may still be asking when the store closes at shutdown: it
    must get an answer, not wait forever on the stopped writer thread (with writes failing, the
    check would reload memory and probe through it)."""
    store = DurableStore(tmp_path / "data")
    store.create(SPEC)
    disk = _PageLimit(tmp_path)
    disk.fill(store)
    rng = np.random.default_rng(3)
    for seq in range(1, 50):
        y, s = _batch(rng)
        store.ingest("s", "p", seq, store.get("s").engine.validate(y, s), None)
        try:
            store.flush()
        except StoreUnavailableError:
            break
    assert store.broken is not None
    store.close()
    store._retry_at = 0.0  # a probe would be due
    answers: list[object] = []

    def ask() -> None:
        answers.append(store.writable())
        answers.append(store.state("s", "cumulative").n_samples)

    asker = threading.Thread(target=ask, daemon=True)  # daemon: a hang fails, never blocks
    asker.start()
    asker.join(timeout=10)
    assert not asker.is_alive(), "the check waits on the stopped writer"
    assert answers[0] is False


def _counter(text: bytes, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not exported")


def test_a_scrape_during_a_commit_that_fails_shows_nothing_unacknowledged(tmp_path):
    """A batch applied while a scrape computes its reports, whose commit then fails (a full
    disk): the scrape does not count it, and no _total counter goes back on the next scrape.
    Before, the scrape read the engines' counters after its reports, without the store's lock:
    it exported the unacknowledged batch, and the next scrape (after the roll-back) less."""
    from evalstream_server.exporters.prometheus import EvalstreamCollector

    disk = _PageLimit(tmp_path)
    store = DurableStore(disk.data_dir, snapshot_every=10_000)
    store.create(SPEC)
    collector = EvalstreamCollector(store)
    rng = np.random.default_rng(4)
    acked = 0
    for seq in range(1, 4):
        y, s = _batch(rng)
        assert store.ingest("s", "p", seq, store.get("s").engine.validate(y, s), None).status == (
            "accepted"
        )
        store.flush()
        acked += len(y)
        if seq == 2:  # scraped once: the scrape below recomputes a changed report
            first = collector.exposition()
            assert _counter(first, "evalstream_samples_total") == acked
    disk.fill(store)
    y, s = _batch(rng, 20_000)  # 800 KiB of scores: past the 8 pages left
    late = [store.get("s").engine.validate(y, s)]
    real = store.report_context

    def concurrent_batch(name, window):  # a producer's batch arrives during the scrape
        if late:
            assert store.ingest("s", "p", 4, late.pop(), None).status == "accepted"
        return real(name, window)

    store.report_context = concurrent_batch
    during = collector.exposition()
    assert not late, "the batch did not arrive during the scrape"
    store.report_context = real
    assert _counter(during, "evalstream_samples_total") == acked  # its commit failed
    assert _counter(during, "evalstream_batches_total") == 3
    after = collector.exposition()
    for name in ("evalstream_samples_total", "evalstream_batches_total"):
        assert _counter(after, name) >= _counter(during, name), name
    assert store.state("s", "cumulative").n_samples == acked
    store.close()


def test_a_query_reads_again_when_another_commit_failed_after_its_read(tmp_path):
    """A query reads under the lock, then waits for the commit of what it read. If another
    thread's commit of the same batches fails first (the Ingest call's own, rolling memory
    back), the query's wait finds nothing left to commit: it must read again, not return what
    it read (the unacknowledged batch)."""
    disk, store, rng, acked = _one_batch_then_full(tmp_path, 6)
    y, s = _batch(rng, 20_000)  # past the pages left: its commit fails
    assert store.ingest("s", "p", 2, store.get("s").engine.validate(y, s), None).status == (
        "accepted"
    )
    real = store.flush

    def another_thread_committed_first() -> None:
        try:
            real()  # fails, rolls back: nothing is left to commit
        except StoreUnavailableError:
            pass  # that thread's caller gets the error, not the query

    store.flush = another_thread_committed_first
    assert store.state("s", "cumulative").n_samples == acked
    store.flush = real
    store.close()


def test_a_statement_failing_during_an_ingest_shows_at_the_commit(tmp_path):
    """The writer thread runs an ingest's statements while the ingest still queues the rest. The
    batch's row fails there (past the pages left); here the writer runs it before the ingest
    queues its producer row (a barrier after the row: the interleaving a loaded machine made
    now and then). Before, the ingest then raised, while with the other interleaving it returned
    and the flush failed, so the page_limit cases of this file failed under load; now the
    failure shows at the commit either way, and nothing of the batch is kept."""
    disk, store, rng, acked = _one_batch_then_full(tmp_path, 7)
    real = store._put

    def row_runs_first(table, values):
        real(table, values)
        if table == "batches":  # everything queued so far has run on the writer thread
            store._writer.call(lambda db: None).result()

    store._put = row_runs_first
    y, s = _batch(rng, 20_000)  # 800 KiB of scores: past the 8 pages left
    out = store.ingest("s", "p", 2, store.get("s").engine.validate(y, s), None)
    store._put = real
    assert store.broken is not None  # the batch's row failed during the ingest
    assert out.status == "accepted"  # not acknowledged: that is the commit's
    with pytest.raises(StoreUnavailableError):
        store.flush()
    assert store.state("s", "cumulative").n_samples == acked
    assert store.expected_sequence("s", "p") == 2  # its sequence was not consumed
    store.close()

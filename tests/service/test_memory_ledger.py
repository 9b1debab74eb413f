"""The memory budget charges what grows as it grows (budget.MemoryLedger): CreateStream checks a
stream's worst case against the per-stream budget and only its fixed part against the server's
and the tenant's, so a fleet of default streams fits the default budget (charging each its
445 MiB worst case refused the 37th of them under a 16 GiB machine's budget); a batch that would
take the charged total past the budget is refused with RESOURCE_EXHAUSTED and changes nothing;
each stream's charge is its measured size, and what a batch may add bounds what it adds."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream_server.budget import MemoryBudget, MemoryLedger
from evalstream_server.engine import LabelBatch, PredictionBatch, StreamEngine, StreamSpec
from evalstream_server.engine.budget import format_bytes, worst_case_memory
from evalstream_server.engine.pending import PendingPredictions
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings
from evalstream_server.store import MemoryStore

from .conftest import create

K10 = tuple(f"c{i}" for i in range(10))
RESOURCE_EXHAUSTED = 8


def test_a_thousand_default_streams_fit_a_16_gib_servers_default_budget():
    spec = StreamSpec(task="multiclass", classes=K10, windows=("5m", "1h"), name="m")
    need = worst_case_memory(spec, 300.0)
    gib16 = 16 << 30  # the default budget of a 16 GiB machine (machine_memory)
    assert 1000 * need.total > 20 * gib16  # charging worst cases could not admit them
    settings = Settings(grpc_port=0, metrics_port=-1, max_server_memory=gib16)
    with ServerThread(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)
        for i in range(1000):  # the in-memory store's default max_streams
            create(stub, f"model-{i}", classes=K10, windows=["5m", "1h"])
        servicer = srv.running.servicer
        assert servicer is not None and servicer.ledger is not None
        assert servicer.ledger.total() == 1000 * need.fixed


def _join_store(limit: int) -> tuple[MemoryStore, MemoryLedger]:
    store = MemoryStore(clock=lambda: 1_700_000_000.0)
    ledger = MemoryLedger(MemoryBudget(per_server=limit))
    store.charge_memory(ledger)
    return store, ledger


def _charged(store: MemoryStore) -> int:
    """What the ledger should hold: every stream's fixed part and its measured growing parts."""
    budget = MemoryBudget()
    return sum(budget.need(r.spec).fixed + r.engine.growing_nbytes for r in store.records())


def test_a_flood_of_predictions_awaiting_labels_is_refused_at_the_servers_cap():
    spec = StreamSpec(task="multiclass", classes=K10, windows=("5m",), name="s")
    fixed = worst_case_memory(spec, 300.0).fixed
    cap = fixed + (8 << 20)  # 8 MiB for what grows
    store, ledger = _join_store(cap)
    store.create(spec)
    rng = np.random.default_rng(5)
    seq, refused = 0, None
    for _ in range(200):  # bounded: 2 MiB or more a batch past the first few
        seq += 1
        ids = [f"req-{seq}-{i:05d}" for i in range(4096)]
        scores = rng.dirichlet(np.ones(10), 4096).astype(np.float32)
        engine = store.get("s").engine
        before = (len(engine.pending), engine.version, dict(engine.pending.counters))
        out = store.ingest("s", "p", seq, PredictionBatch(ids, scores), None)
        if out.status != "accepted":
            refused = out
            break
        assert ledger.total() == _charged(store) <= cap
    assert refused is not None, "the flood was never refused"
    assert (refused.status, refused.error_code) == ("rejected", RESOURCE_EXHAUSTED)
    message = refused.error_message
    assert message.startswith(f"max_pending: limit {format_bytes(cap)} of memory for all streams")
    assert "received a batch that would take it to" in message and "nothing was counted" in message
    assert refused.error_detail["field"] == "max_pending"
    engine = store.get("s").engine  # nothing changed
    assert (len(engine.pending), engine.version, engine.pending.counters) == before
    assert ledger.total() == _charged(store) <= cap
    # labels for what waits are accepted (a joined id costs a tombstone, not a pending row)
    labels = LabelBatch([f"req-1-{i:05d}" for i in range(100)], np.zeros(100, int))
    assert store.ingest("s", "p", seq + 1, labels, None).status == "accepted"  # refused: used
    assert ledger.total() == _charged(store) <= cap
    store.delete("s")
    assert ledger.total() == 0


def test_a_tenants_cap_refuses_its_batches_and_not_the_others():
    spec = dict(task="binary", classes=("n", "p"), name="s")
    fixed = worst_case_memory(StreamSpec(**spec), 300.0).fixed
    store = MemoryStore(clock=lambda: 1_700_000_000.0)
    ledger = MemoryLedger(MemoryBudget(per_tenant=fixed + (1 << 20)))
    store.charge_memory(ledger)
    store.create(StreamSpec(**spec), tenant="a")
    store.create(StreamSpec(**spec), tenant="b")
    scores = np.full((20_000, 1), 0.5, np.float32)  # a binary stream: one column
    out = {}
    for tenant in ("a", "b"):
        key = f"{tenant}/s"  # stream_key
        ids = [f"{tenant}{i}" for i in range(20_000)]
        out[tenant] = store.ingest(key, "p", 1, PredictionBatch(ids, scores), None)
        assert out[tenant].status == "rejected"  # 20,000 pending rows pass 1 MiB
        assert "for one tenant's streams (max_tenant_memory)" in out[tenant].error_message
        small = store.ingest(key, "p", 2, PredictionBatch(ids[:100], scores[:100]), None)
        assert small.status == "accepted"  # the tenant's room is its own
    assert ledger.tenant_total("a") == ledger.tenant_total("b") <= fixed + (1 << 20)


@pytest.mark.parametrize("windows", [(), ("5m", "1h")])
@pytest.mark.parametrize("resolution", ["bins", "exact"])
def test_what_a_batch_may_add_bounds_what_it_adds(windows, resolution):
    spec = StreamSpec(
        task="multiclass", classes=("a", "b", "c"), windows=windows, name="s",
        resolution=resolution, max_pending=3000,
    )  # fmt: skip
    now = [1_700_000_000.0]
    engine = StreamEngine(spec, clock=lambda: now[0])
    rng = np.random.default_rng(3)
    asked: list[int] = []

    def admit(need: int, field: str) -> None:
        asked.append(need)

    next_id = 0
    for step in range(60):
        now[0] += float(rng.integers(0, 200))
        n = int(rng.integers(1, 600))
        before = engine.growing_nbytes
        kind = step % 3
        if kind == 0:
            y, s = rng.integers(0, 3, n), rng.dirichlet(np.ones(3), n)
            w = rng.random(n) if step % 2 else None
            engine.ingest(engine.validate(y, s, w), admit=admit)
        elif kind == 1:
            ids = [f"id{next_id + i}" for i in range(n)]
            next_id += n
            scores = rng.dirichlet(np.ones(3), n).astype(np.float32)
            engine.ingest_predictions(PredictionBatch(ids, scores), admit=admit)
        else:
            ids = [f"id{int(i)}" for i in rng.integers(0, max(next_id, 1), n)]
            engine.ingest_labels(LabelBatch(ids, rng.integers(0, 3, n)), admit=admit)
        grown = engine.growing_nbytes - before
        assert grown <= (asked[-1] if asked else 0), (step, kind, grown, asked[-1:])
        asked.clear()


def test_the_join_tables_size_is_kept_up_to_date():
    """``PendingPredictions.nbytes`` is kept as ids come and go (O(1) for the ledger): equal to
    the sizes summed afresh, through additions, evictions, joins, expiry and a restore."""
    import sys

    from evalstream_server.engine.pending import _ENTRY_BYTES, _TOMBSTONE_BYTES

    def afresh(t: PendingPredictions) -> int:
        ids = sum(map(sys.getsizeof, t._slot)) + sum(map(sys.getsizeof, t._done))
        entries = _ENTRY_BYTES * len(t._slot) + _TOMBSTONE_BYTES * len(t._done)
        return t._scores.nbytes + t._time.nbytes + t._arrival.nbytes + ids + entries

    table = PendingPredictions(2, 500, 100.0)
    rng = np.random.default_rng(9)
    now = 0.0
    for step in range(80):
        now += float(rng.integers(0, 20))
        if step % 2 == 0:
            ids = [f"{'x' * int(rng.integers(1, 90))}{int(i)}" for i in rng.integers(0, 900, 200)]
            table.add(ids, np.zeros((len(ids), 2), np.float32), now, now)
        else:
            ids = [key for key in list(table._slot)[:: int(rng.integers(1, 4))]]
            table.take(table.plan(ids + ["unknown"]), len(ids) + 1, now)
        table.expire(now)
        assert table.nbytes == afresh(table), step
    again = PendingPredictions(2, 500, 100.0)
    again.restore(table.to_bytes())
    assert again.nbytes == afresh(again)


def test_a_roll_back_charges_the_streams_as_loaded_again(tmp_path):
    """A failed commit (a full disk) rolls memory back: the ledger follows it, so the batch
    that was never acknowledged is not charged any more."""
    from evalstream_server.store.durable import DurableStore, StoreUnavailableError

    from ..store.test_disk_full import _limit_pages

    store = DurableStore(tmp_path / "data", snapshot_every=10_000)
    ledger = MemoryLedger(MemoryBudget(per_server=1 << 40))
    store.charge_memory(ledger)
    store.create(StreamSpec(task="multiclass", classes=K10, windows=("5m",), name="s"))
    rng = np.random.default_rng(2)
    # past the raw rows a small stream keeps (state.SMALL_ROWS): then what comes only grows
    y, s = rng.integers(0, 10, 5000), rng.dirichlet(np.ones(10), 5000)
    assert store.ingest("s", "p", 1, store.get("s").engine.validate(y, s), None).status == (
        "accepted"
    )
    store.flush()
    acked = ledger.total()
    assert acked == _charged(store)
    store._writer.call(_limit_pages).result()  # the disk fills up
    y, s = rng.integers(0, 10, 20_000), rng.dirichlet(np.ones(10), 20_000)
    store.ingest("s", "p", 2, store.get("s").engine.validate(y, s), None)
    assert ledger.total() > acked  # applied, charged, not yet committed
    with pytest.raises(StoreUnavailableError):
        store.flush()
    # charged as loaded again (a replay stages its window's cells: not byte for byte the live
    # engine, so not ``acked`` either)
    assert ledger.total() == _charged(store)
    store.close()

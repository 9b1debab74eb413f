"""``evalstream verify`` and ``evalstream repair`` on damaged data dirs: verify changes nothing
and exits 1; repair keeps exactly the intact prefix of each stream's log, says what it dropped,
and leaves a data dir the server starts on, whose counts equal a store fed only what was kept."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from evalstream_server.data_dir_commands import repair, verify
from evalstream_server.engine import engine_from_bytes, engine_to_bytes
from evalstream_server.store.durable import DurableStore
from evalstream_server.store.integrity import check_data_dir
from evalstream_server.store.memory import MemoryStore

from ..engine.test_merge_properties import _assert_same
from .test_corruption import BATCHES, ROWS, SPEC, _edit, _write


def _fed(n_batches: int) -> MemoryStore:
    """The oracle: a store fed the first ``n_batches`` of ``_write``'s batches."""
    store = MemoryStore()
    store.create(SPEC)
    rng = np.random.default_rng(7)
    for seq in range(1, BATCHES + 1):
        y = rng.integers(0, 3, ROWS)
        s = rng.dirichlet(np.ones(3), ROWS)
        if seq <= n_batches:
            store.ingest("s", "p", seq, store.get("s").engine.validate(y, s), None)
    return store


def _run(fn, data_dir) -> tuple[int, str]:
    out = io.StringIO()
    return fn(data_dir, out), out.getvalue()


def _files(data_dir) -> dict[str, bytes]:
    """The data dir's files (SQLite's shared-memory index aside: readers write it; and the lock,
    which holds the pid of its last holder)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(data_dir.iterdir())
        if p.is_file()
        and p.name not in ("evalstream.db-shm", "evalstream.lock")
        and p.stat().st_size
    }


def test_verify_reports_and_changes_nothing(tmp_path):
    data_dir, _ = _write(tmp_path, crash=True)
    code, text = _run(verify, data_dir)
    assert code == 0 and text.endswith("intact\n"), text
    assert "1 streams, 1 producers, 6 logged batches, 0 snapshots; commit 7" in text
    _edit(data_dir, "UPDATE batches SET n = n WHERE id = 3")  # checkpoints the WAL
    db = sqlite3.connect(data_dir / "evalstream.db")
    db.execute("UPDATE batches SET ts = 1.0 WHERE id = 4")
    db.commit()  # leaves a WAL: verify must neither checkpoint nor delete it
    before = _files(data_dir)
    assert len(before["evalstream.db-wal"]) > 0
    code, text = _run(verify, data_dir)
    assert _files(data_dir) == before
    db.close()
    assert code == 1
    assert "DAMAGED evalstream.db: table batches, row id=4 (stream 's'): checksum mismatch" in text
    assert "damaged: 1 problem;" in text


def test_repair_truncates_a_stream_at_its_first_damaged_batch(tmp_path):
    data_dir, _ = _write(tmp_path, crash=True)
    db = sqlite3.connect(data_dir / "evalstream.db")
    scores = bytearray(db.execute("SELECT scores FROM batches WHERE id = 3").fetchone()[0])
    db.close()
    scores[100] ^= 1
    _edit(data_dir, "UPDATE batches SET scores = ? WHERE id = 3", (bytes(scores),))
    code, text = _run(repair, data_dir)
    assert code == 0, text
    assert (
        "DROPPED stream 's': batch id 3 is damaged; it and every later batch of the stream are "
        f"dropped (4 batches, {4 * ROWS} samples); their sequence numbers stay consumed"
    ) in text
    assert "kept: 1 streams, 1 producers, 6 outcomes, 2 batches, 0 snapshots" in text
    assert check_data_dir(data_dir) == []
    moved = next(data_dir.glob("damaged-*"))
    assert (moved / "evalstream.db").exists()
    store = DurableStore(data_dir)
    _assert_same(store.state("s", "cumulative"), _fed(2).state("s", "cumulative"))
    assert store.expected_sequence("s", "p") == BATCHES + 1  # resent batches are duplicates
    store.close()


def test_repair_of_a_damaged_snapshot_keeps_the_stream_with_its_counts_dropped(tmp_path):
    data_dir, _ = _write(tmp_path, crash=False)
    db = sqlite3.connect(data_dir / "evalstream.db")
    engine = engine_from_bytes(db.execute("SELECT engine FROM snapshots").fetchone()[0])
    db.close()
    engine.cumulative.counts["n"][...] += 1
    _edit(data_dir, "UPDATE snapshots SET engine = ?", (engine_to_bytes(engine),))
    code, text = _run(repair, data_dir)
    assert code == 0, text
    assert "DROPPED stream 's': its snapshot (batches up to id 6" in text
    store = DurableStore(data_dir)
    assert store.state("s", "cumulative").n_samples == 0
    assert store.expected_sequence("s", "p") == BATCHES + 1
    store.close()


def test_repair_after_the_wal_was_deleted_says_the_commits_are_lost(tmp_path):
    data_dir, _ = _write(tmp_path, crash=True)
    (data_dir / "evalstream.db-wal").unlink()
    code, text = _run(repair, data_dir)
    assert code == 0, text
    assert "DROPPED lost before the repair: missing or empty: the database holds commit" in text
    DurableStore(data_dir).close()  # starts


def test_repair_of_a_damaged_ledger_keeps_everything(tmp_path):
    data_dir, samples = _write(tmp_path, crash=False)
    (data_dir / "evalstream.ledger").write_bytes(b"\0" * 64)
    code, text = _run(repair, data_dir)
    assert code == 0, text
    assert "DROPPED" not in text
    store = DurableStore(data_dir)
    assert store.state("s", "cumulative").n_samples == samples
    store.close()


def test_repair_of_an_intact_data_dir_does_nothing(tmp_path):
    data_dir, _ = _write(tmp_path, crash=False)
    before = _files(data_dir)
    code, text = _run(repair, data_dir)
    assert code == 0 and "intact; nothing to repair" in text
    assert _files(data_dir) == before


def test_the_commands_exit_codes(tmp_path):
    data_dir, _ = _write(tmp_path, crash=False)
    (data_dir / "evalstream.db").write_bytes(b"")

    def cli(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "evalstream_server.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    done = cli("verify", "--data-dir", str(data_dir))
    assert done.returncode == 1
    assert "DAMAGED evalstream.db: empty (0 bytes) but commit" in done.stdout
    serve = cli("serve", "--data-dir", str(data_dir), "--grpc-port", "0", "--metrics-port", "-1")
    assert serve.returncode == 1
    assert "evalstream.db: empty (0 bytes)" in serve.stderr and "refusing to start" in serve.stderr
    assert cli("repair", "--data-dir", str(data_dir)).returncode == 0
    assert cli("verify", "--data-dir", str(data_dir)).returncode == 0
    assert cli("verify", "--data-dir", str(tmp_path / "nothing")).returncode == 2


def test_one_process_per_data_dir(tmp_path):
    """A second store (a second server) on a data dir in use is refused, and so is repair; the
    lock goes with the holder (a crash releases it as kill -9 does)."""
    from evalstream_server.store.dir_lock import DataDirBusyError

    store = DurableStore(tmp_path)
    with pytest.raises(DataDirBusyError, match=r"in use by another evalstream process \(pid"):
        DurableStore(tmp_path)
    code, _ = _run(repair, tmp_path)
    assert code == 1
    store._simulate_crash()
    DurableStore(tmp_path).close()

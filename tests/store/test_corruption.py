"""Corruption of a durable data dir is found at start-up and named, never served.

Each case damages a data dir the way the issue's reproduction did (after a ``kill -9``, when the
SQLite WAL still holds the commits, or after a clean shutdown, when they are in the database)
and checks that the store refuses to start with a message naming the file and what is wrong.
Crashes are not corruption: a torn WAL tail and a ledger that lags the database both open.
"""

from __future__ import annotations

import io
import shutil
import sqlite3

import numpy as np
import pytest
from evalstream_server.data_dir_commands import verify
from evalstream_server.engine import StreamSpec, engine_from_bytes, engine_to_bytes
from evalstream_server.store.durable import DurableStore
from evalstream_server.store.integrity import DataDirError, check_data_dir
from evalstream_server.store.ledger import Ledger

SPEC = StreamSpec(task="multiclass", classes=("a", "b", "c"), name="s")
BATCHES, ROWS = 6, 512


def _write(tmp_path, crash: bool):
    """A data dir with stream ``s`` and ``BATCHES`` acknowledged batches (one commit each), and
    the samples acknowledged. ``crash``: as ``kill -9`` leaves it (the SQLite WAL holds the
    commits, the log rows are there); otherwise as a clean shutdown leaves it (a snapshot, the
    WAL checkpointed into the database and removed)."""
    live = tmp_path / "live"
    store = DurableStore(live)
    store.create(SPEC)
    rng = np.random.default_rng(7)
    for seq in range(1, BATCHES + 1):
        y = rng.integers(0, 3, ROWS)
        s = rng.dirichlet(np.ones(3), ROWS)
        store.ingest("s", "p", seq, store.get("s").engine.validate(y, s), None)
        store.flush()
    if not crash:
        store.close()
        return live, BATCHES * ROWS
    # The files as a crash leaves them: copied while another connection keeps SQLite from
    # checkpointing and deleting the WAL when the store's connection closes.
    keeper = sqlite3.connect(live / "evalstream.db")
    keeper.execute("SELECT 1 FROM streams").fetchall()
    store._simulate_crash()
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in ("evalstream.db", "evalstream.db-wal", "evalstream.ledger"):
        shutil.copyfile(live / name, crashed / name)
    keeper.close()
    return crashed, BATCHES * ROWS


def _refused(data_dir, *fragments: str) -> DataDirError:
    with pytest.raises(DataDirError) as info:
        DurableStore(data_dir)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert [str(f) for f in check_data_dir(data_dir)] == [str(f) for f in info.value.findings]
    return info.value


def _wal(data_dir):
    wal = data_dir / "evalstream.db-wal"
    assert wal.stat().st_size > 100_000  # the commits are in it
    return wal


def test_wal_deleted_after_a_crash(tmp_path):
    tmp_path, _ = _write(tmp_path, crash=True)
    _wal(tmp_path).unlink()
    _refused(tmp_path, "evalstream.db-wal: missing or empty", "acknowledged commit")


def test_wal_truncated_after_a_crash(tmp_path):
    tmp_path, _ = _write(tmp_path, crash=True)
    wal = _wal(tmp_path)
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size // 2)
    _refused(tmp_path, "evalstream.db-wal: the database holds commit", "truncated or damaged")


@pytest.mark.parametrize("where", [0.0, 0.3, 0.6, 0.95])
def test_one_byte_flipped_in_the_wal(tmp_path, where):
    tmp_path, _ = _write(tmp_path, crash=True)
    wal = _wal(tmp_path)
    data = bytearray(wal.read_bytes())
    at = min(int(len(data) * where) + 3, len(data) - 1)  # 3: inside the header at 0.0
    data[at] ^= 0x10
    wal.write_bytes(bytes(data))
    _refused(tmp_path, "evalstream.db-wal: the database holds commit", "truncated or damaged")


def test_database_truncated_to_zero_bytes(tmp_path):
    tmp_path, _ = _write(tmp_path, crash=False)
    (tmp_path / "evalstream.db").write_bytes(b"")
    _refused(tmp_path, "evalstream.db: empty (0 bytes) but commit")


def test_database_deleted(tmp_path):
    tmp_path, _ = _write(tmp_path, crash=False)
    (tmp_path / "evalstream.db").unlink()
    _refused(tmp_path, "evalstream.db: missing")


def _edit(data_dir, sql: str, params: tuple = ()) -> None:
    """Another program changes the database (and checkpoints its WAL on closing: no alarm)."""
    db = sqlite3.connect(data_dir / "evalstream.db")
    assert db.execute(sql, params).rowcount == 1
    db.commit()
    db.close()


@pytest.mark.parametrize("column", ["labels", "scores"])
def test_a_stored_label_or_score_row_edited(tmp_path, column):
    tmp_path, _ = _write(tmp_path, crash=True)
    db = sqlite3.connect(tmp_path / "evalstream.db")
    blob = bytearray(db.execute(f"SELECT {column} FROM batches WHERE id = 3").fetchone()[0])
    db.close()
    if column == "labels":
        blob[0:4] = (int.from_bytes(blob[0:4], "little") + 1).to_bytes(4, "little")
    else:
        row = np.frombuffer(bytes(blob), np.float32).copy()
        row[:3] = row[[2, 0, 1]]  # a score row permuted: still valid probabilities
        blob = bytearray(row.tobytes())
    _edit(tmp_path, f"UPDATE batches SET {column} = ? WHERE id = 3", (bytes(blob),))
    _refused(tmp_path, "evalstream.db: table batches, row id=3 (stream 's'): checksum mismatch")


def test_a_snapshot_count_edited(tmp_path):
    tmp_path, _ = _write(tmp_path, crash=False)
    db = sqlite3.connect(tmp_path / "evalstream.db")
    engine = engine_from_bytes(db.execute("SELECT engine FROM snapshots").fetchone()[0])
    db.close()
    engine.cumulative.counts["n"][...] += 4665  # n_samples 3072 -> 7737: still a valid state
    _edit(tmp_path, "UPDATE snapshots SET engine = ?", (engine_to_bytes(engine),))
    _refused(tmp_path, "table snapshots, row stream='s' (stream 's'): checksum mismatch")


def test_a_producer_sequence_edited(tmp_path):
    tmp_path, _ = _write(tmp_path, crash=False)
    _edit(tmp_path, "UPDATE producers SET last_seq = 2")  # batches 3..6 would count twice
    _refused(tmp_path, "table producers, row stream='s', producer='p'")


def test_the_ledger_damaged(tmp_path):
    tmp_path, _ = _write(tmp_path, crash=False)
    ledger = tmp_path / "evalstream.ledger"
    ledger.write_bytes(bytes(b ^ 0xFF for b in ledger.read_bytes()))
    _refused(tmp_path, "evalstream.ledger: damaged: neither of its two slots passes")


def test_crashes_are_not_corruption(tmp_path):
    """A torn tail (frames of a commit that never finished) and a ledger one commit behind
    (killed between SQLite's commit and the ledger write) both open with every batch."""
    tmp_path, samples = _write(tmp_path, crash=True)
    with open(_wal(tmp_path), "ab") as f:
        f.write(np.random.default_rng(0).bytes(70_000))  # half a frame of a lost commit
    ledger = Ledger(tmp_path)
    ledger.reset(ledger.read() - 1, 0.0)
    ledger.close()
    assert check_data_dir(tmp_path) == []
    store = DurableStore(tmp_path)
    assert store.state("s", "cumulative").n_samples == samples
    assert store.expected_sequence("s", "p") == BATCHES + 1
    store.close()


def test_a_data_dir_written_before_checksums_opens_and_is_checked_from_then_on(tmp_path):
    """Item 4: today's data dirs (no crc columns, no meta table, no ledger) are migrated: every
    batch replays, and from then on an edited row is found."""
    data_dir, samples = _write(tmp_path, crash=True)
    db = sqlite3.connect(data_dir / "evalstream.db")
    for table in ("streams", "producers", "outcomes", "batches", "snapshots"):
        db.execute(f"ALTER TABLE {table} DROP COLUMN crc")
    db.execute("DROP TABLE meta")
    db.commit()
    db.close()
    (data_dir / "evalstream.ledger").unlink()
    assert check_data_dir(data_dir) == []
    out = io.StringIO()
    assert verify(data_dir, out) == 0
    assert (
        "written before row checksums: its rows cannot be checked until the next" in out.getvalue()
    )

    store = DurableStore(data_dir)
    assert store.state("s", "cumulative").n_samples == samples
    assert store.expected_sequence("s", "p") == BATCHES + 1
    store._simulate_crash()
    _edit(data_dir, "UPDATE producers SET last_seq = 2")
    _refused(data_dir, "table producers, row stream='s', producer='p'")

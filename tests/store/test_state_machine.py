"""A Hypothesis state machine over ingest, ack (commit), failed commits, queries, crash, restart
and retry, against a model of what was acknowledged: after any sequence of steps, the store counts
every acknowledged batch exactly once and nothing else. Batches are labelled, predictions awaiting
labels, or the labels of earlier predictions: joins replay exactly too."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pytest
from evalstream_server.engine import InvalidInputError, StreamSpec
from evalstream_server.store.durable import DurableStore, StoreUnavailableError
from evalstream_server.store.memory import MemoryStore
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

SPEC = StreamSpec(task="binary", name="sm")


def _rows(seq: int) -> int:
    return 1 + seq % 7


def _batch(store, seq: int, bad: set[int] | frozenset = frozenset()):
    """Deterministic content per sequence number, by ``seq % 3``: a labelled batch, predictions
    under ids of their own, or the labels of the previous sequence's predictions. Returns the
    record, the labelled samples it adds (a label joins only if its predictions were accepted)
    and the predictions it adds to the label-free figures."""
    rng = np.random.default_rng(seq)
    n = _rows(seq)
    engine = store.get("sm").engine
    if seq % 3 == 0:
        return engine.validate(rng.integers(0, 2, n), rng.random(n)), n, n
    if seq % 3 == 1:
        ids = [f"s{seq}-{j}" for j in range(n)]
        return engine.validate_predictions(ids, rng.random(n)), 0, n
    prev = seq - 1
    ids = [f"s{prev}-{j}" for j in range(_rows(prev))]
    joined = 0 if prev in bad else len(ids)
    return engine.validate_labels(ids, rng.integers(0, 2, len(ids))), joined, 0


class CrashyProducer(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="evalstream-sm-")
        # NORMAL: the crashes here are process crashes (no power loss), and without an fsync per
        # commit the hundreds of stores this test opens take seconds, not a minute
        self.store = DurableStore(self.dir, snapshot_every=3, synchronous="NORMAL")
        self.store.create(SPEC)
        self.next_seq = 1  # producer's next new sequence
        self.in_tx: list[int] = []  # sent to this server instance, not yet committed
        self.lost: list[int] = []  # sent before a crash, never acknowledged: to resend
        self.acked_samples = 0
        self.acked: set[int] = set()
        self.bad: set[int] = set()  # sequences whose content is invalid

    def teardown(self) -> None:
        try:
            self.store._simulate_crash()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _send(self, seq: int) -> None:
        if seq in self.bad:
            item = InvalidInputError("y_score", "finite numbers", "1 NaN")
        else:
            item = _batch(self.store, seq, self.bad)[0]
        out = self.store.ingest("sm", "p", seq, item, None)
        assert out.status == ("rejected" if seq in self.bad else "accepted"), (seq, out)
        assert out.expected_sequence == seq + 1
        self.in_tx.append(seq)

    def _samples(self, seqs, column: int = 1) -> int:
        return sum(_batch(self.store, s, self.bad)[column] for s in seqs if s not in self.bad)

    @precondition(lambda self: not self.lost)  # a real client resends the lost ones first
    @rule(bad=st.booleans())
    def ingest_new(self, bad):
        seq = self.next_seq
        self.next_seq += 1
        if bad:
            self.bad.add(seq)
        self._send(seq)

    @rule()
    def ack(self):
        self.store.flush()  # the commit: only now are the batches acknowledged
        self.acked.update(self.in_tx)
        self.acked_samples += self._samples(self.in_tx)
        self.in_tx = []

    @rule()
    def crash_and_restart(self):
        self.store._simulate_crash()  # the open transaction is lost, as with kill -9
        self.store = DurableStore(self.dir, snapshot_every=3, synchronous="NORMAL")
        self.lost = sorted(self.lost + self.in_tx)
        self.in_tx = []

    @rule()
    def commit_fails(self):
        # A commit fails (as on a full disk): the batches of the open transaction were never
        # acknowledged, so the producer resends them, and memory rolls back to the last commit.
        assert self.store.writable()  # after an earlier failure: the probe resumes writes
        with self.store._lock:
            self.store._exec("INSERT INTO no_such_table VALUES (1)")  # the failing statement
        with pytest.raises(StoreUnavailableError):
            self.store.flush()
        assert MemoryStore.state(self.store, "sm", "cumulative").n_samples == self.acked_samples
        self.lost = sorted(self.lost + self.in_tx)
        self.in_tx = []
        self.store._retry_at = 0.0  # space is back at once: the next write probes and resumes

    @precondition(lambda self: self.lost)
    @rule()
    def resend_lost(self):
        assert self.store.expected_sequence("sm", "p") == self.lost[0]
        for seq in self.lost:
            self._send(seq)
        self.lost = []

    @precondition(lambda self: self.acked)
    @rule(data=st.data())
    def resend_an_acked_batch(self, data):
        seq = data.draw(st.sampled_from(sorted(self.acked)))
        out = self.store.ingest("sm", "p", seq, _batch(self.store, seq, self.bad)[0], None)
        assert out.status == "duplicate"
        assert out.original_status == ("rejected" if seq in self.bad else "accepted")

    @rule()
    def query(self):
        # A query shows committed data only: it commits what was applied before it, so the
        # batches in the open transaction are durable from here on (a crash keeps them; a
        # producer resending them is answered "duplicate").
        state = self.store.state("sm", "cumulative")
        self.acked.update(self.in_tx)
        self.acked_samples += self._samples(self.in_tx)
        self.in_tx = []
        assert state.n_samples == self.acked_samples

    @invariant()
    def acknowledged_counted_exactly_once(self):
        # memory as it is, open transaction included (the query above would commit it)
        state = MemoryStore.state(self.store, "sm", "cumulative")
        assert state.n_samples == self.acked_samples + self._samples(self.in_tx)
        applied = self.acked | set(self.in_tx)
        assert state.counts["pred_n"][0] == self._samples(applied, column=2)
        expected = max(self.acked | set(self.in_tx), default=0) + 1
        assert self.store.expected_sequence("sm", "p") == expected


CrashyProducer.TestCase.settings = settings(max_examples=150, stateful_step_count=25, deadline=None)
TestCrashyProducer = CrashyProducer.TestCase

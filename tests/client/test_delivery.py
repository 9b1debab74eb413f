"""Exactly-once delivery when calls break: ``deliver`` and ``Writer`` against a scripted fake.

The fake keeps the service's sequence rules (ingest.proto) over an in-memory ledger and can break a
call after applying a batch whose acknowledgement is then lost, refuse a batch without consuming
its number, or forget a producer. Nothing is double counted and nothing is lost.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from evalstream import InvalidBatchError, UnavailableError, delivery, ingest, writer
from evalstream.ingest import Sequences, deliver
from evalstream.tensors import to_rows
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import ingest_pb2

JOIN = 20.0


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "fake failure") -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _Call:
    def __init__(self, responses) -> None:
        self._responses = responses
        self.cancelled = False

    def __iter__(self):
        return self

    def __next__(self) -> pb.IngestResponse:
        if self.cancelled:
            raise FakeRpcError(grpc.StatusCode.CANCELLED, "cancelled")
        return next(self._responses)

    def cancel(self) -> None:
        self.cancelled = True


class FakeIngest:
    """``plans``: per call, None (behave), ``("down",)`` (fail UNAVAILABLE at once) or
    ``("break", k)``: apply k + 1 batches, acknowledge k, then fail UNAVAILABLE.
    ``refuse_once``: sequences refused once, unconsumed (transient)."""

    def __init__(self, plans=(), refuse_once=()) -> None:
        self.plans = list(plans)
        self.refuse_once = set(refuse_once)
        self.expected: dict[str, int] = {}
        self.outcomes: dict[tuple[str, int], int] = {}
        self.applied = 0
        self.calls = 0

    def __call__(self, requests) -> _Call:
        self.calls += 1
        plan = self.plans.pop(0) if self.plans else None
        return _Call(self._run(requests, plan))

    def _run(self, requests, plan):
        if plan == ("down",):  # the server is not there: nothing is read
            raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused")
        for i, req in enumerate(requests):
            result = self._one(req)
            if plan is not None and i == plan[1]:
                raise FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset")
            yield pb.IngestResponse(results=[result])

    def _one(self, req: pb.IngestRequest) -> ingest_pb2.BatchResult:
        n = int(req.scores.shape[0])
        r = ingest_pb2.BatchResult(stream=req.stream, producer_id=req.producer_id,
                                   sequence=req.sequence, samples=n)  # fmt: skip
        expected = self.expected.get(req.producer_id, 1)
        if req.sequence < expected:
            r.status = ingest_pb2.BATCH_STATUS_DUPLICATE
            r.original_status = self.outcomes[(req.producer_id, req.sequence)]
            r.expected_sequence = expected
            return r
        if req.sequence > expected or req.sequence in self.refuse_once:
            self.refuse_once.discard(req.sequence)
            r.status = ingest_pb2.BATCH_STATUS_REJECTED
            gap = req.sequence > expected
            r.error_code = (grpc.StatusCode.OUT_OF_RANGE if gap
                            else grpc.StatusCode.RESOURCE_EXHAUSTED).value[0]  # fmt: skip
            r.error_message = "gap" if gap else "too fast"
            r.expected_sequence = expected
            return r
        scores = np.frombuffer(req.scores.data, "<f4")
        if np.isnan(scores).any():
            r.status = ingest_pb2.BATCH_STATUS_REJECTED
            r.error_code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            r.error_message = "y_score: expected finite numbers, received NaN"
        else:
            r.status = ingest_pb2.BATCH_STATUS_ACCEPTED
            self.applied += n
        self.outcomes[(req.producer_id, req.sequence)] = r.status
        self.expected[req.producer_id] = req.sequence + 1
        r.expected_sequence = req.sequence + 1
        return r

    def forget(self) -> None:
        self.expected.clear()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(delivery, "backoff", lambda attempt: 0.0)


def _rows(n: int, nan_at: int | None = None):
    rng = np.random.default_rng(n)
    p = rng.random(n).astype(np.float32)
    if nan_at is not None:
        p[nan_at] = np.nan
    return to_rows(rng.integers(0, 2, n), p)


def test_broken_call_is_resent_without_double_counting():
    fake = FakeIngest(plans=[("break", 2)])  # batch 3 applied, its ack lost
    result = deliver(fake, "s", "pid", _rows(100), 10, Sequences())
    assert fake.calls == 2 and fake.applied == 100
    assert (result.accepted_batches, result.accepted_samples, result.duplicate_batches) == (
        10, 100, 0
    )  # fmt: skip


def test_transient_refusal_and_gap_are_renumbered_and_resent():
    fake = FakeIngest(refuse_once={4})
    seqs = Sequences()
    assert deliver(fake, "s", "pid", _rows(60), 10, seqs).accepted_samples == 60
    assert fake.applied == 60 and seqs.get("s") == 7
    fake.forget()  # the server lost this producer: the client's 7 is a gap now
    assert deliver(fake, "s", "pid", _rows(30), 10, seqs).accepted_batches == 3
    assert fake.applied == 90 and seqs.get("s") == 4


def test_content_rejection_is_final_and_reported_after_the_call():
    fake = FakeIngest()
    with pytest.raises(InvalidBatchError) as info:
        deliver(fake, "s", "pid", _rows(50, nan_at=23), 10, Sequences())
    assert info.value.rows == (20, 30) and info.value.result.accepted_batches == 4
    assert fake.applied == 40 and fake.calls == 1


def test_a_server_that_stays_away_gives_unavailable_with_totals():
    fake = FakeIngest(plans=[("break", 0)] * 10)
    with pytest.raises(UnavailableError) as info:
        deliver(fake, "s", "pid", _rows(30), 10, Sequences(), retry_deadline=0.0)
    assert fake.calls == ingest.MAX_ROUNDS and fake.applied == 10  # its ack was lost each time
    result = info.value.result
    assert (result.accepted_batches, result.rejected_batches, len(result.errors)) == (0, 0, 3)
    assert "may or may not have been applied" in result.errors[0].message


def test_a_gap_after_a_long_outage_is_renumbered_not_given_up():
    """Broken calls past MAX_ROUNDS within the deadline, then the server answers with a gap
    (it never saw numbers an earlier, failed call had taken): renumbered and delivered."""
    fake = FakeIngest(plans=[("down",)] * (ingest.MAX_ROUNDS + 2))
    seqs = Sequences()
    seqs.set("s", 9)  # an earlier call numbered batches the server never received
    result = deliver(fake, "s", "pid", _rows(30), 10, seqs, retry_deadline=60.0)
    assert fake.calls == ingest.MAX_ROUNDS + 4  # the outage, the gap answer, the resend
    assert result.duplicate_batches == 0
    assert (result.accepted_batches, fake.applied) == (3, 30)
    assert seqs.get("s") == 4


def test_writer_reconnects_and_resyncs():
    fake = FakeIngest(plans=[("break", 1)])
    w = writer.Writer(fake, "s", "pid", flush_rows=10, flush_interval=0.01)
    rows = _rows(50)
    w.log(rows.labels, rows.scores)
    assert w.flush(timeout=JOIN).accepted_samples == 50
    assert fake.applied == 50 and fake.calls == 2
    fake.forget()
    w.log(rows.labels[:20], rows.scores[:20])
    w.log(rows.labels[:10], rows.scores[:10])
    result = w.close(timeout=JOIN)
    assert (result.accepted_samples, result.rejected_batches) == (80, 0)
    assert fake.applied == 80


def test_an_unreachable_server_is_retried_until_the_deadline():
    fake = FakeIngest(plans=[("break", 0)] * 8)
    result = deliver(fake, "s", "pid", _rows(30), 10, Sequences(), retry_deadline=60.0)
    # more than MAX_ROUNDS broken calls in a row, then the server answers: all delivered once
    assert fake.calls > ingest.MAX_ROUNDS
    # the first batch was applied before its ack was lost: resent, it is answered DUPLICATE and
    # must be reported as accepted, and applied once
    assert (result.accepted_batches, result.duplicate_batches) == (3, 0)
    assert fake.applied == 30


@pytest.mark.parametrize("deadline", [0.0, 60.0])
def test_log_and_writer_give_up_by_the_same_rule(deadline):
    """One state machine (delivery.Delivery): against a server that breaks every call after
    applying a batch, ``log`` and a writer stop after the same number of calls past the deadline,
    and within it they both keep going (here: until the server answers)."""
    plans = [("break", 0)] * (delivery.MAX_ROUNDS + 3)
    logged, written = FakeIngest(plans=list(plans)), FakeIngest(plans=list(plans))
    rows = _rows(30)
    w = writer.Writer(
        written, "s", "pid", flush_rows=10, flush_interval=0.01, retry_deadline=deadline
    )
    w.log(rows.labels, rows.scores)
    if deadline == 0.0:
        with pytest.raises(UnavailableError):
            deliver(logged, "s", "pid", rows, 10, Sequences(), retry_deadline=deadline)
        with pytest.raises(UnavailableError):
            w.close(timeout=JOIN)
        assert logged.calls == written.calls == delivery.MAX_ROUNDS
    else:
        assert deliver(logged, "s", "pid", rows, 10, Sequences(), retry_deadline=deadline)
        assert w.close(timeout=JOIN).accepted_samples == 30
        assert logged.calls == written.calls == delivery.MAX_ROUNDS + 4
        assert logged.applied == written.applied == 30

"""The outcomes every store records: their gRPC codes are the ones grpc names."""

from __future__ import annotations

import json

import grpc
import pytest
from evalstream_server.store import base


@pytest.mark.parametrize("name", ["INVALID_ARGUMENT", "OUT_OF_RANGE", "RESOURCE_EXHAUSTED"])
def test_store_codes_are_the_grpc_codes(name):
    assert getattr(base, name) == getattr(grpc.StatusCode, name).value[0]


def test_duplicate_repeats_the_first_answer_and_names_the_next_sequence():
    first = base.BatchOutcome("rejected", samples=4, error_code=3, error_message="labels: bad")
    dup = base.duplicate_outcome(first, last=7)
    assert (dup.status, dup.original_status, dup.expected_sequence) == ("duplicate", "rejected", 8)
    assert (dup.samples, dup.error_code, dup.error_message) == (4, 3, "labels: bad")
    forgotten = base.duplicate_outcome(None, last=7)  # no longer recorded: it was accepted
    assert (forgotten.original_status, forgotten.error_code, forgotten.samples) == (
        "accepted",
        0,
        0,
    )


def test_gap_names_the_expected_and_received_sequence():
    gap = base.gap_outcome("p", last=2, sequence=6)
    assert (gap.status, gap.error_code, gap.expected_sequence) == ("rejected", base.OUT_OF_RANGE, 3)
    assert "expected 3 for producer 'p', received 6" in gap.error_message
    assert "batches 3..5 were never acknowledged" in gap.error_message


def test_a_limit_is_resource_exhausted_anything_else_invalid_argument():
    limit = base.rejected_outcome(base.LimitExceededError("batch rows", 10, 11))
    other = base.rejected_outcome(ValueError("scores: NaN"))
    assert (limit.status, limit.error_code) == ("rejected", base.RESOURCE_EXHAUSTED)
    assert (other.error_code, other.error_message) == (base.INVALID_ARGUMENT, "scores: NaN")


def test_a_rejected_batch_keeps_its_rows_and_its_parts_through_every_store_encoding():
    from evalstream_server.engine import InvalidInputError
    from evalstream_server.store.redis_buffer import decode_outcome, encode_outcome

    error = InvalidInputError("labels", "class indices in [0, 2]", "1 out of range, e.g. [7]")
    outcome = base.rejected_outcome(base.RejectedBatch(error, samples=5))
    assert (outcome.samples, outcome.error_message) == (5, str(error))
    assert outcome.error_detail == {
        "field": "labels",
        "expected": "class indices in [0, 2]",
        "received": "1 out of range, e.g. [7]",
        "hint": "",
    }
    assert decode_outcome(encode_outcome(outcome)) == outcome  # Redis
    assert base.BatchOutcome(**json.loads(json.dumps(outcome.__dict__))) == outcome  # SQLite
    old = decode_outcome(json.dumps(["r", 5, 3, str(error)]))  # written before error_detail
    assert old is not None and old.error_detail is None and old.samples == 5

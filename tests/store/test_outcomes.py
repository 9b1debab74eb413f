"""The outcomes every store records: their gRPC codes are the ones grpc names."""

from __future__ import annotations

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

"""The outcomes every store records: their gRPC codes are the ones grpc names."""

from __future__ import annotations

import grpc
import pytest
from evalstream_server.store import base


@pytest.mark.parametrize("name", ["INVALID_ARGUMENT", "OUT_OF_RANGE", "RESOURCE_EXHAUSTED"])
def test_store_codes_are_the_grpc_codes(name):
    assert getattr(base, name) == getattr(grpc.StatusCode, name).value[0]

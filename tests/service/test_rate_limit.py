"""Rate limits charge the whole batch (issue 13, item 7): with ``--stream-rate 5000`` the issue sent
60,000-row batches, each admitted when the bucket was full and charged only the burst, and
measured 30,476 rows/s. The bucket now goes into debt for the rest."""

from __future__ import annotations

import time

import grpc
import numpy as np
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import ingest_pb2
from evalstream_server.ratelimit import RateLimiter
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings

from .conftest import create, ingest, tensor

RATE = 5000.0
ROWS = 60_000  # twelve seconds of the rate, six times the burst


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_batches_larger_than_the_burst_pass_at_the_rate_on_average():
    clock = Clock()
    limiter = RateLimiter(stream_rate=RATE, tenant_rate=RATE / 2, burst_seconds=2.0, clock=clock)
    admitted, waits = 0, []
    while clock.t < 600.0:  # a producer that retries exactly when told to
        wait = limiter.admit("t", "s", ROWS)
        if wait == 0:
            admitted += ROWS
        else:
            waits.append(wait)
            clock.t += wait
    # the tenant's rate (2500/s) binds: at most one burst's worth above it, and not much less
    assert admitted <= RATE / 2 * clock.t + ROWS
    assert admitted >= RATE / 2 * clock.t - ROWS
    assert max(waits) <= ROWS / (RATE / 2) + 1e-9  # a retry_after never exceeds the batch's cost


def test_small_batches_after_a_large_one_wait_for_its_debt():
    clock = Clock()
    limiter = RateLimiter(stream_rate=RATE, burst_seconds=2.0, clock=clock)
    assert limiter.admit("t", "s", ROWS) == 0  # the bucket was full: admitted, 50,000 in debt
    wait = limiter.admit("t", "s", 100)
    assert wait == (ROWS - 2 * RATE + 100) / RATE  # repay 50,000, then 100 more
    clock.t += wait
    assert limiter.admit("t", "s", 100) == 0


def test_the_issues_reproduction_over_grpc():
    """--stream-rate 5000, 60,000-row batches resent whenever retry_after allows, for 2.5 s."""
    settings = Settings(grpc_port=0, metrics_port=-1, stream_rate=RATE, rate_burst_seconds=2.0)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, ROWS).astype(np.int32)
    p = rng.random(ROWS).astype(np.float32)
    with ServerThread(settings) as srv, grpc.insecure_channel(srv.target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)
        create(stub, "big", task="binary", classes=("n", "p"))
        seq, accepted, start = 1, 0, time.monotonic()
        while (elapsed := time.monotonic() - start) < 2.5:
            req = pb.IngestRequest(
                stream="big", producer_id="p", sequence=seq, scores=tensor(p), labels=tensor(y)
            )
            (result,), _ = ingest(stub, [req])
            if result.status == ingest_pb2.BATCH_STATUS_ACCEPTED:
                accepted += ROWS
                seq += 1
                continue
            assert result.error_code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            wait = result.retry_after.ToNanoseconds() / 1e9
            assert 0 < wait <= ROWS / RATE and result.expected_sequence == seq
            time.sleep(min(wait, max(2.5 - elapsed, 0.0)) + 0.01)
        elapsed = time.monotonic() - start
    assert accepted <= RATE * elapsed + ROWS  # one batch; before the fix, one every 2 s

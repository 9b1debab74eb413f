"""Token buckets for ingest rate limits (samples per second), per stream and per tenant."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket", "RateLimiter"]


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; ``take`` is all or nothing.

    ``take`` charges every token asked for, also past the burst: the bucket goes into debt and
    refills from below zero, so batches of any size pass at ``rate`` on average."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, n: float) -> float:
        """Seconds until ``n`` tokens are available (0 if they are now); for more than the
        burst, until the bucket is full."""
        self._refill()
        need = min(n, self.burst) - self.tokens
        return 0.0 if need <= 0 else need / self.rate

    def take(self, n: float) -> None:
        self._refill()
        self.tokens -= n


class RateLimiter:
    """Per-stream and per-tenant buckets; a rate of 0 disables that limit.

    A batch larger than the burst is admitted when the bucket is full (else it could never pass)
    and charged in full: later batches wait until the debt is repaid, so no batch size gets
    through faster than the rate.
    """

    def __init__(
        self,
        stream_rate: float = 0.0,
        tenant_rate: float = 0.0,
        burst_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream_rate = stream_rate
        self.tenant_rate = tenant_rate
        self.burst_seconds = burst_seconds
        self.clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def _bucket(self, kind: str, key: str, rate: float) -> TokenBucket:
        bucket = self._buckets.get((kind, key))
        if bucket is None:
            bucket = TokenBucket(rate, rate * self.burst_seconds, self.clock)
            self._buckets[(kind, key)] = bucket
        return bucket

    def admit(self, tenant: str, stream: str, samples: int) -> float:
        """0.0 if the batch may go in now (tokens taken), else seconds to wait (nothing taken)."""
        buckets = []
        if self.stream_rate > 0:
            buckets.append(self._bucket("stream", f"{tenant}/{stream}", self.stream_rate))
        if self.tenant_rate > 0:
            buckets.append(self._bucket("tenant", tenant, self.tenant_rate))
        wait = max((b.wait_for(samples) for b in buckets), default=0.0)
        if wait > 0:
            return wait
        for b in buckets:
            b.take(samples)
        return 0.0

    def forget(self, tenant: str, stream: str) -> None:
        self._buckets.pop(("stream", f"{tenant}/{stream}"), None)

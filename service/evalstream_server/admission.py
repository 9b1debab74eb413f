"""Admission of calls: who may hold one of the server's concurrency slots, and for how long.

A call is authenticated first (``auth``), then admitted: it takes one of ``max_calls`` slots and
one of its tenant's ``TenantQuotas.calls``, or is refused at once with RESOURCE_EXHAUSTED. A call
without a valid token never holds a slot, so callers without one cannot lock out tenants, and no
tenant can take the slots of the others. Health and reflection are outside admission (probes
must answer under any load). The servicer reads request messages with ``idle_timeout``: a call
whose client stops sending is closed (``IdleCallError``, UNAVAILABLE) and frees its slot.

Everything here runs on the server's event loop thread: the counters need no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .quotas import TenantQuotas
from .store import LimitExceededError

__all__ = ["Admission", "IdleCallError"]


class IdleCallError(Exception):
    """A call's client sent nothing for longer than the idle timeout; the server closed it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"request stream: no message for {seconds:g} s (the server's idle timeout, "
            "--idle-timeout); the call was closed, open a new one to send more"
        )


class Admission:
    """Concurrency slots of authenticated calls: ``max_calls`` in all (0 = no limit), and per
    tenant ``quotas.calls`` (0 = no quota)."""

    def __init__(self, max_calls: int = 0, quotas: TenantQuotas | None = None) -> None:
        self.max_calls = max_calls
        self.quotas = quotas or TenantQuotas()
        self.total = 0
        self.per_tenant: dict[str, int] = {}

    @contextmanager
    def call(self, tenant: str) -> Iterator[None]:
        """Hold a slot for ``tenant``'s call while the block runs (``LimitExceededError`` if
        none is free: nothing is taken)."""
        held = self.per_tenant.get(tenant, 0)
        if self.quotas.calls and held >= self.quotas.calls:
            raise LimitExceededError("concurrent calls per tenant", self.quotas.calls, held + 1)
        if self.max_calls and self.total >= self.max_calls:
            raise LimitExceededError("concurrent calls", self.max_calls, self.total + 1)
        self.total += 1
        self.per_tenant[tenant] = held + 1
        try:
            yield
        finally:
            self.total -= 1
            left = self.per_tenant[tenant] - 1
            if left:
                self.per_tenant[tenant] = left
            else:
                del self.per_tenant[tenant]

"""The memory budget: a stream is admitted only if its worst case fits (issue 13), and the parts
that grow with its data are charged as they grow.

``engine.budget.worst_case_memory`` computes, from a stream's definition alone, the most memory
it can ever take. ``MemoryBudget.check`` refuses a CreateStream whose worst case passes the
per-stream budget (``--max-stream-memory``), or whose fixed part (the cumulative state and a
report's copies) would take the server's total past ``--max-server-memory`` (by default the
memory of the machine, or of its cgroup if less), or its tenant's past ``--max-tenant-memory``,
with ``MemoryBudgetError`` (RESOURCE_EXHAUSTED) naming the config field to change, the limit and
the amount. Nothing is allocated before the check passes.

The rest of a stream (window buckets, exact rows, the join table of predictions awaiting
labels) holds what its data put there, far less than its worst case in a fleet (a default
K = 10 stream with 5m and 1h windows may take 445 MiB, and takes about 1.4 MiB). Charging every
stream its worst case refused a 1,000-stream fleet under the default budget, so the
``MemoryLedger`` charges those parts as they are: a store asks it about each batch before the
batch changes anything, with the most the batch can add (``StreamEngine``'s ``admit``), and
refuses the batch (RESOURCE_EXHAUSTED, nothing changed) if that would take the server's or the
tenant's total past its budget; after the batch, the stream's charge is its measured size.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .engine import StreamSpec
from .engine.budget import MemoryEstimate, format_bytes, worst_case_memory
from .store import LimitExceededError

__all__ = ["MemoryBudget", "MemoryBudgetError", "MemoryLedger", "machine_memory"]

# Specs are immutable: a server sums the worst cases of all its streams at each CreateStream.
_worst_case = functools.lru_cache(maxsize=4096)(worst_case_memory)


class MemoryBudgetError(LimitExceededError):
    """A stream's worst-case memory does not fit a budget; nothing was created."""

    def __init__(
        self, field: str, budget: str, limit: int, amount: int, detail: str, batch: bool = False
    ) -> None:
        self.what = field
        self.limit = limit
        self.received = amount
        self.retry_after = None
        self.budget = budget
        if batch:
            text = (
                f"{field}: limit {format_bytes(limit)} of memory {budget}, received a batch "
                f"that would take it to {format_bytes(amount)}: {detail}; nothing was counted. "
                f"Ask less with {field} (or label the predictions awaiting labels, delete idle "
                "streams), or raise the budget"
            )
        else:
            text = (
                f"{field}: limit {format_bytes(limit)} of worst-case memory {budget}, received a "
                f"stream that can take {detail}; ask less with {field}, or raise the budget"
            )
        RuntimeError.__init__(self, text)


@dataclass(frozen=True)
class MemoryBudget:
    """Per-stream and per-server budgets in bytes (0: no such budget).

    Parameters
    ----------
    per_stream, per_server : int
    max_skew : float, optional
        The server's clock skew bound: future window buckets beyond it are never created.
    per_tenant : int
        The most the worst cases of one tenant's streams may take together.
    """

    per_stream: int = 0
    per_server: int = 0
    max_skew: float | None = None
    per_tenant: int = 0

    def need(self, spec: StreamSpec) -> MemoryEstimate:
        return _worst_case(spec, self.max_skew)

    def in_use(self, specs: Iterable[StreamSpec]) -> int:
        """The fixed parts of streams already admitted, summed (a store without a
        ``MemoryLedger`` charges nothing more)."""
        return sum(self.need(s).fixed for s in specs)

    def check(self, spec: StreamSpec, in_use: int, tenant_in_use: int = 0) -> int:
        """The fixed part of ``spec``, if its worst case fits the per-stream budget and its fixed
        part fits next to ``in_use`` bytes charged to the server's streams (``tenant_in_use`` of
        them to its tenant's); raises ``MemoryBudgetError`` otherwise."""
        need = self.need(spec)
        total = need.total
        if self.per_stream and total > self.per_stream:
            raise MemoryBudgetError(
                need.blamed_field(spec, self.per_stream),
                "per stream (max_stream_memory)",
                self.per_stream,
                total,
                f"{format_bytes(total)}: {need.describe()}",
            )
        fixed = need.fixed
        if self.per_tenant and tenant_in_use + fixed > self.per_tenant:
            room = max(self.per_tenant - tenant_in_use, 0)
            raise MemoryBudgetError(
                need.blamed_field(spec, 0),
                "for one tenant's streams (max_tenant_memory)",
                self.per_tenant,
                tenant_in_use + fixed,
                f"{format_bytes(fixed)} fixed next to {format_bytes(tenant_in_use)} charged to "
                f"the tenant's ({format_bytes(room)} left): {need.describe()}",
            )
        if self.per_server and in_use + fixed > self.per_server:
            room = max(self.per_server - in_use, 0)
            raise MemoryBudgetError(
                need.blamed_field(spec, 0),
                "for all streams (max_server_memory)",
                self.per_server,
                in_use + fixed,
                f"{format_bytes(fixed)} fixed next to {format_bytes(in_use)} charged "
                f"({format_bytes(room)} left): {need.describe()}",
            )
        return fixed


class MemoryLedger:
    """What a server's streams hold: each stream's fixed part, charged when it is created, and
    its growing parts, charged as measured after each of its batches (thread-safe).

    A store calls ``track`` when a stream is created or loaded, ``admit`` (through the engine)
    before a batch changes anything, ``settle`` after it (and after a reset), ``forget`` when
    the stream is deleted.
    """

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._fixed: dict[str, int] = {}
        self._growing: dict[str, int] = {}
        self._tenant: dict[str, str] = {}
        self._total = 0
        self._tenants: dict[str, int] = {}

    def _charge(self, key: str, fixed: int, growing: int) -> None:
        old = self._fixed.get(key, 0) + self._growing.get(key, 0)
        self._fixed[key], self._growing[key] = fixed, growing
        change = fixed + growing - old
        self._total += change
        tenant = self._tenant[key]
        self._tenants[tenant] = self._tenants.get(tenant, 0) + change

    def track(self, key: str, tenant: str, spec: StreamSpec, growing: int = 0) -> None:
        with self._lock:
            self._tenant[key] = tenant
            self._charge(key, self.budget.need(spec).fixed, growing)

    def keys(self) -> set[str]:
        with self._lock:
            return set(self._tenant)

    def forget(self, key: str) -> None:
        with self._lock:
            if key in self._tenant:
                self._charge(key, 0, 0)
                del self._fixed[key], self._growing[key], self._tenant[key]

    def settle(self, key: str, growing: int) -> None:
        """The stream's growing parts hold ``growing`` bytes now."""
        with self._lock:
            if key in self._tenant:
                self._charge(key, self._fixed[key], growing)

    def total(self) -> int:
        with self._lock:
            return self._total

    def tenant_total(self, tenant: str) -> int:
        with self._lock:
            return self._tenants.get(tenant, 0)

    def admit(self, key: str, need: int, field: str) -> None:
        """Raise ``MemoryBudgetError`` if a batch of stream ``key`` that can add ``need`` bytes
        would take its tenant's or the server's total past its budget (the store holds its lock
        from this check to ``settle``)."""
        budget = self.budget
        with self._lock:
            tenant = self._tenant.get(key)
            if tenant is None:
                return
            held = self._fixed[key] + self._growing[key]
            checks = [
                (budget.per_tenant, self._tenants.get(tenant, 0), "for one tenant's streams "
                 "(max_tenant_memory)"),
                (budget.per_server, self._total, "for all streams (max_server_memory)"),
            ]  # fmt: skip
            for limit, used, what in checks:
                if limit and used + need > limit:
                    raise MemoryBudgetError(
                        field,
                        what,
                        limit,
                        used + need,
                        f"it can add {format_bytes(need)} to {format_bytes(used)} charged, of "
                        f"which {format_bytes(held)} to this stream",
                        batch=True,
                    )


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return int(total)

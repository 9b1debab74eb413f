"""The memory budget: a stream is admitted only if its worst case fits (issue 13).

``engine.budget.worst_case_memory`` computes, from a stream's definition alone, the most memory
it can ever take. ``MemoryBudget.check`` refuses a CreateStream whose worst case passes the
per-stream budget (``--max-stream-memory``), or would take the streams' total past the server's
(``--max-server-memory``; by default the memory of the machine, or of its cgroup if less), or
its tenant's past ``--max-tenant-memory``, with ``MemoryBudgetError`` (RESOURCE_EXHAUSTED)
naming the config field to change, the limit and the amount. Nothing is allocated before the
check passes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .engine import StreamSpec
from .engine.budget import MemoryEstimate, format_bytes, worst_case_memory
from .store import LimitExceededError

__all__ = ["MemoryBudget", "MemoryBudgetError", "machine_memory"]

# Specs are immutable: a server sums the worst cases of all its streams at each CreateStream.
_worst_case = functools.lru_cache(maxsize=4096)(worst_case_memory)


class MemoryBudgetError(LimitExceededError):
    """A stream's worst-case memory does not fit a budget; nothing was created."""

    def __init__(self, field: str, budget: str, limit: int, amount: int, detail: str) -> None:
        self.what = field
        self.limit = limit
        self.received = amount
        self.retry_after = None
        self.budget = budget
        RuntimeError.__init__(
            self,
            f"{field}: limit {format_bytes(limit)} of worst-case memory {budget}, received a "
            f"stream that can take {detail}; ask less with {field}, or raise the budget",
        )


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
        """The worst cases of streams already admitted, summed."""
        return sum(self.need(s).total for s in specs)

    def check(self, spec: StreamSpec, in_use: int, tenant_in_use: int = 0) -> int:
        """The worst case of ``spec``, if it fits next to ``in_use`` bytes of admitted streams
        (``tenant_in_use`` of them its tenant's); raises ``MemoryBudgetError`` otherwise."""
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
        if self.per_tenant and tenant_in_use + total > self.per_tenant:
            room = max(self.per_tenant - tenant_in_use, 0)
            raise MemoryBudgetError(
                need.blamed_field(spec, room),
                "for one tenant's streams (max_tenant_memory)",
                self.per_tenant,
                tenant_in_use + total,
                f"{format_bytes(total)} next to {format_bytes(tenant_in_use)} of the tenant's "
                f"({format_bytes(room)} left): {need.describe()}",
            )
        if self.per_server and in_use + total > self.per_server:
            room = max(self.per_server - in_use, 0)
            raise MemoryBudgetError(
                need.blamed_field(spec, room),
                "for all streams (max_server_memory)",
                self.per_server,
                in_use + total,
                f"{format_bytes(total)} next to {format_bytes(in_use)} admitted "
                f"({format_bytes(room)} left): {need.describe()}",
            )
        return total


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

"""Per-tenant quotas: what one tenant may hold, so that no tenant can take what others need.

The server-wide limits (``--max-streams``, ``--max-concurrent-rpcs``) bound the process; these
bound each tenant's share of it. A quota of 0 leaves only the server-wide limit. Checks raise
``LimitExceededError`` (RESOURCE_EXHAUSTED) naming the quota, its limit and the amount asked
for; they change nothing.

Other per-tenant budgets (memory, ingest rate) are checked through the same object: add a field
and a ``check_*`` method, and call it where the work is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .store import LimitExceededError

__all__ = ["TenantQuotas"]


@dataclass(frozen=True)
class TenantQuotas:
    """Limits per tenant (0 = only the server-wide limit applies).

    Parameters
    ----------
    streams : int
        Streams one tenant may have (``--max-streams-per-tenant``).
    calls : int
        Calls of one tenant in flight at once (``--max-calls-per-tenant``).
    watchers : int
        WatchReport calls of one tenant open at once (``--max-watchers-per-tenant``).
    """

    streams: int = 0
    calls: int = 0
    watchers: int = 0

    def check_streams(self, tenant: str, owned: int) -> None:
        """Refuse a new stream of ``tenant``, who has ``owned`` streams, past its quota."""
        if self.streams and owned >= self.streams:
            raise LimitExceededError("streams per tenant", self.streams, owned + 1)

"""Metric families of one scrape, by name, created on first use (all prefixed ``evalstream_``).

Series of a stream carry its tenant's name as their first label, ``tenant`` (``""`` on a server
without tokens): stream names are per tenant, so ``stream`` alone does not name one. Code that
exports a stream's series writes them through ``Families.of_tenant``, which adds the label.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["Families", "TenantFamilies"]


class Families:
    """One family per exported name, so series of many streams and windows share it."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def gauge(self, name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        key = f"evalstream_{name}"
        fam = self._families.get(key)
        if fam is None:
            fam = self._families[key] = GaugeMetricFamily(key, doc, labels=labels)
        return fam  # type: ignore[return-value]

    def counter(self, name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
        key = f"evalstream_{name}_total"
        fam = self._families.get(key)
        if fam is None:
            fam = self._families[key] = CounterMetricFamily(
                f"evalstream_{name}", doc, labels=labels
            )
        return fam  # type: ignore[return-value]

    def histogram(self, name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
        key = f"evalstream_{name}"
        fam = self._families.get(key)
        if fam is None:
            fam = self._families[key] = HistogramMetricFamily(key, doc, labels=labels)
        return fam  # type: ignore[return-value]

    def all(self) -> Iterator[Metric]:
        yield from self._families.values()

    def of_tenant(self, tenant: str) -> TenantFamilies:
        """These families as ``tenant``'s series are written to them (label ``tenant`` first)."""
        return TenantFamilies(self, tenant)


class _TenantSeries:
    """A family whose ``add_metric`` puts the tenant before the other label values."""

    def __init__(self, family: Metric, tenant: str) -> None:
        self._family, self._tenant = family, tenant

    def add_metric(self, labels: list[str], *args: Any, **kwargs: Any) -> None:
        self._family.add_metric([self._tenant, *labels], *args, **kwargs)  # type: ignore[attr-defined]


class TenantFamilies:
    """The families of one scrape as one tenant's stream series go into them: the same
    ``gauge``/``counter``/``histogram`` calls, with ``tenant`` added as the first label."""

    def __init__(self, families: Families, tenant: str) -> None:
        self._families, self._tenant = families, tenant

    def gauge(self, name: str, doc: str, labels: list[str]) -> Any:
        return _TenantSeries(self._families.gauge(name, doc, ["tenant", *labels]), self._tenant)

    def counter(self, name: str, doc: str, labels: list[str]) -> Any:
        return _TenantSeries(self._families.counter(name, doc, ["tenant", *labels]), self._tenant)

    def histogram(self, name: str, doc: str, labels: list[str]) -> Any:
        fam = self._families.histogram(name, doc, ["tenant", *labels])
        return _TenantSeries(fam, self._tenant)

"""Metric families of one scrape, by name, created on first use (all prefixed ``evalstream_``)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["Families"]


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

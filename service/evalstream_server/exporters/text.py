"""Exposition text rendered once per report and assembled per scrape.

A scrape of many streams spends its time formatting samples (``prometheus_client`` formats every
sample of every family on every scrape). A window's series only change when its report does, so
the collector renders them once, as ``prometheus_client`` itself would (``generate_latest`` of the
family), and keeps the text: about 75 bytes a series instead of the report dict or the sample
objects. A scrape then joins the kept text family by family (each family's lines together, as the
text format requires).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

__all__ = ["Exposition", "Part", "render"]

# One family's text: (family name, "# HELP" and "# TYPE" lines, sample lines).
Part = tuple[str, str, str]


class _One(Collector):
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self.metric


def render(families: Iterable[Metric]) -> tuple[Part, ...]:
    """Each family in ``prometheus_client``'s text format, split into header and samples."""
    parts = []
    for metric in families:
        text = generate_latest(_One(metric)).decode()
        cut = text.index("\n", text.index("\n") + 1) + 1  # after "# HELP" and "# TYPE"
        parts.append((metric.name, text[:cut], text[cut:]))
    return tuple(parts)


class Exposition:
    """The families of one scrape, in the order they first appear."""

    def __init__(self) -> None:
        self._families: dict[str, list[str]] = {}

    def add(self, parts: Iterable[Part]) -> None:
        for name, header, samples in parts:
            lines = self._families.get(name)
            if lines is None:
                self._families[name] = [header, samples]
            elif samples:
                lines.append(samples)

    def text(self) -> str:
        return "".join("".join(lines) for lines in self._families.values())

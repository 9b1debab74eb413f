"""Exporters: read store snapshots and present them to monitoring systems."""

from .prometheus import EvalstreamCollector

__all__ = ["EvalstreamCollector"]

"""The proxy's own Prometheus metrics, in a registry the proxy owns (never the global one).

=============================================  =========  ================================
name                                           type       labels
=============================================  =========  ================================
``evalstream_proxy_requests_total``            counter    ``method``, ``code`` (gRPC status)
``evalstream_proxy_predictions_recorded_total`` counter   ``stream``
``evalstream_proxy_predictions_dropped_total`` counter    ``stream``, ``reason``
``evalstream_proxy_send_errors_total``         counter    ``stream``, ``code``
``evalstream_proxy_buffer_rows``               gauge      (rows waiting to be sent)
=============================================  =========  ================================

Drop reasons: ``buffer_full`` (``--max-buffer-rows`` reached while evalstream was slow or
down), ``bad_output`` (no recordable output in the response, see ``outputs.py``), ``bad_id``
(a caller's id longer than evalstream takes), ``no_id`` (a streamed response without an id),
``duplicate_id`` (evalstream had the id already: a caller reused an id, or a resend after a send
whose acknowledgement was lost), ``rejected`` (evalstream refused the rows: unknown stream,
wrong width, permission), ``shutdown`` (still unsent when the shutdown flush ran out of time).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["ProxyMetrics", "DROP_REASONS"]

DROP_REASONS = (
    "buffer_full",
    "bad_output",
    "bad_id",
    "no_id",
    "duplicate_id",
    "rejected",
    "shutdown",
)


class ProxyMetrics:
    """Counters of one proxy; ``registry`` is what its /metrics endpoint serves."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "evalstream_proxy_requests",
            "Requests forwarded to the inference server, by method and gRPC status code.",
            ["method", "code"],
            registry=r,
        )
        self.recorded = Counter(
            "evalstream_proxy_predictions_recorded",
            "Prediction rows acknowledged by evalstream.",
            ["stream"],
            registry=r,
        )
        self.dropped = Counter(
            "evalstream_proxy_predictions_dropped",
            "Prediction rows not recorded, by reason.",
            ["stream", "reason"],
            registry=r,
        )
        self.send_errors = Counter(
            "evalstream_proxy_send_errors",
            "Failed log_predictions calls (the rows stay buffered when the error is transient).",
            ["stream", "code"],
            registry=r,
        )
        self.buffer_rows = Gauge(
            "evalstream_proxy_buffer_rows",
            "Prediction rows buffered in the proxy, not yet acknowledged by evalstream.",
            registry=r,
        )
        self._request_children: dict[tuple[str, str], Callable[[], None]] = {}

    def count_request(self, method: str, code: str) -> None:
        """One forwarded request (children cached: this runs on every request)."""
        key = (method, code)
        inc = self._request_children.get(key)
        if inc is None:
            inc = self.requests.labels(method=method, code=code).inc
            self._request_children[key] = inc
        inc()

    def drop(self, stream: str, reason: str, rows: int) -> None:
        if rows > 0:
            self.dropped.labels(stream=stream, reason=reason).inc(rows)

    def record(self, stream: str, rows: int) -> None:
        if rows > 0:
            self.recorded.labels(stream=stream).inc(rows)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value, 0.0 when it was never set (for tests and logs)."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else float(got)

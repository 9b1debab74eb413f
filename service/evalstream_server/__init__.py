"""evalstream server: streaming classifier metrics over gRPC with a Prometheus exporter."""

__version__ = "0.1.0"

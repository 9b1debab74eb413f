"""evalstream client: stream predictions and labels to an evalstream server, query metrics."""

__all__: list[str] = []
__version__ = "0.1.0"

"""Bounds on the producers a stream remembers (issue 13, item 9).

Exactly-once ingest keeps each producer's last sequence (and its recent outcomes) per stream.
Without bounds one caller could send a new producer id with every batch, each id as long as it
likes, and the bookkeeping would grow forever (about 550 bytes an id, never dropped). So:

* a producer id is 1 to ``MAX_PRODUCER_ID_LENGTH`` characters;
* a stream remembers at most ``max_per_stream`` producers; a new one past that is refused with
  RESOURCE_EXHAUSTED (nothing recorded, its number not consumed);
* a producer silent for ``retention`` seconds is forgotten, its last sequence and outcomes with
  it: when it comes back its sequence starts again at 1 (as after ``ResetStream`` with
  ``forget_producers``), so it resends nothing from before. Kafka expires idle producer ids the
  same way (``producer.id.expiration.ms``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import InvalidInputError
from ..engine.spec import format_duration
from .base import LimitExceededError

__all__ = ["MAX_PRODUCER_ID_LENGTH", "ProducerLimits"]

MAX_PRODUCER_ID_LENGTH = 128


@dataclass(frozen=True)
class ProducerLimits:
    """How many producers a stream remembers, and for how long after their last batch.

    Parameters
    ----------
    max_per_stream : int
    retention : float
        Seconds; a producer idle this long is forgotten.
    """

    max_per_stream: int = 10_000
    retention: float = 7 * 86400.0

    def id_error(self, producer_id: str) -> InvalidInputError | None:
        """The error for a producer id that is too long (None if it is fine)."""
        if len(producer_id) <= MAX_PRODUCER_ID_LENGTH:
            return None
        return InvalidInputError(
            "producer_id",
            f"1 to {MAX_PRODUCER_ID_LENGTH} characters",
            f"{len(producer_id)} characters",
        )

    def idle(self, seen: dict[str, float], now: float) -> list[str]:
        """The producers whose last batch is ``retention`` seconds old or older."""
        limit = now - self.retention
        return [p for p, t in seen.items() if t <= limit]

    def full_error(self, kept: int) -> LimitExceededError | None:
        """The error for a new producer when ``kept`` are remembered (None if it fits)."""
        if kept < self.max_per_stream:
            return None
        return LimitExceededError(
            f"producer_id: producers remembered per stream (a producer is forgotten "
            f"{format_duration(int(self.retention))} after its last batch)",
            self.max_per_stream,
            kept + 1,
        )

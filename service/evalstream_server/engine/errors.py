"""Errors raised by the engine: thin ``ValueError`` subclasses with structured fields."""

from __future__ import annotations

import json
from collections.abc import Iterable

__all__ = [
    "InvalidInputError",
    "IncompatibleStateError",
    "CapacityError",
    "UnknownWindowError",
    "quoted",
]


def quoted(values: Iterable[str]) -> str:
    """Names as JSON and the wire write them, for messages any client reads: ``"5m", "1h"``."""
    return ", ".join(json.dumps(str(v)) for v in values)


class InvalidInputError(ValueError):
    """A batch or a setting was rejected; nothing was changed.

    Parameters
    ----------
    field : str
        Name of the offending argument or message field (``"y_score"``, ``"classes"``...).
    expected : str
        What was expected, in words.
    received : str
        What was received, in words.
    hint : str, optional
        How to fix it, when there is an obvious fix.
    """

    def __init__(self, field: str, expected: str, received: str, hint: str = "") -> None:
        self.field = field
        self.expected = expected
        self.received = received
        self.hint = hint
        message = f"{field}: expected {expected}, received {received}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class IncompatibleStateError(ValueError):
    """Two states cannot be merged because their layouts differ."""

    def __init__(self, left: str, right: str, what: str) -> None:
        self.left = left
        self.right = right
        self.what = what
        super().__init__(f"cannot merge states: {what} differs (left: {left}, right: {right})")


class CapacityError(InvalidInputError):
    """A bounded structure (exact score store, ...) would grow past its configured cap."""


class UnknownWindowError(KeyError):
    """The requested window is not declared for the stream."""

    def __init__(self, window: str, known: list[str]) -> None:
        self.window = window
        self.known = known
        super().__init__(
            f"window: expected one of {quoted(known)}, received {json.dumps(str(window))}"
        )

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])

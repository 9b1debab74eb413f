"""Errors of the sources: what failed, named as field, expected and received.

Two kinds, because a caller handles them differently:

- ``SourceInputError`` (a ``ValueError``): the caller's data or arguments do not fit the model
  (a shape the model does not accept, too many classes, labels of another length). Retrying the
  same call fails the same way; the message says what to change.
- ``SourceUnavailableError`` (a ``ConnectionError``): the inference server did not answer, is not
  ready, or failed a request for a reason of its own. Retrying later may succeed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["SourceError", "SourceInputError", "SourceUnavailableError"]


class SourceError(Exception):
    """A source could not produce scores; nothing was sent anywhere.

    Parameters
    ----------
    field : str
        What the error is about: an argument (``"batch_size"``), a tensor (``"input 'x'"``), the
        server (``"triton"``).
    expected, received : str
        In words.
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
        # One line: the CLI prints it as is, and server messages may carry newlines.
        super().__init__(" ".join(message.split()))

    def worded(self, names: Mapping[str, str]) -> str:
        """The message with argument names put in the caller's words: a command line names its
        flags (``{"input_name": "--input"}``) in the field and in the hint."""
        if not names:
            return str(self)
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
        hint = pattern.sub(lambda m: names[m.group(1)], self.hint)
        return str(
            SourceError(names.get(self.field, self.field), self.expected, self.received, hint)
        )


class SourceInputError(SourceError, ValueError):
    """The data or the arguments do not fit the model."""


class SourceUnavailableError(SourceError, ConnectionError):
    """The inference server did not answer, is not ready, or failed a request."""

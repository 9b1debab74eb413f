"""Request ids of recorded predictions, and the ids of their rows.

A request the caller sent without an ``id`` gets ``new_request_id()`` (32 lowercase hex digits,
uuid4) before it is forwarded, and the caller's response carries it. A request with id ``"abc"``
whose recorded output has ``n`` rows records them as ``"abc"`` when ``n == 1`` and ``"abc/0"``
.. ``"abc/{n-1}"`` when ``n > 1``; labels are sent later under the same ids
(``EvalClient.log_labels``).
"""

from __future__ import annotations

import uuid

__all__ = ["MAX_ID_CHARS", "new_request_id", "row_ids", "valid_ids"]

MAX_ID_CHARS = 256  # evalstream's limit on a prediction id


def new_request_id() -> str:
    """A fresh request id: 32 lowercase hex digits (uuid4)."""
    return uuid.uuid4().hex


def row_ids(request_id: str, n: int) -> list[str]:
    """The ids of a request's ``n`` recorded rows: ``[id]`` for one row, else ``id/row``."""
    if n == 1:
        return [request_id]
    return [f"{request_id}/{row}" for row in range(n)]


def valid_ids(ids: list[str]) -> bool:
    """Whether evalstream takes these row ids (1 to ``MAX_ID_CHARS`` characters each); a row
    with a bad id would make the server refuse the whole batch it travels in."""
    return all(0 < len(i) <= MAX_ID_CHARS for i in ids)

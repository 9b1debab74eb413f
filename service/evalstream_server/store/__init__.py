"""Who owns stream state: the store interface and its implementations."""

from .base import (
    AlreadyExistsError,
    BatchOutcome,
    LimitExceededError,
    NotFoundError,
    RejectedBatch,
    Store,
    StoreUnavailableError,
    StreamRecord,
    split_key,
    stream_key,
)
from .memory import MemoryStore

__all__ = [
    "AlreadyExistsError",
    "BatchOutcome",
    "LimitExceededError",
    "MemoryStore",
    "NotFoundError",
    "RejectedBatch",
    "Store",
    "StoreUnavailableError",
    "StreamRecord",
    "split_key",
    "stream_key",
]

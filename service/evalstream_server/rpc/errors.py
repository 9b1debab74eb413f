"""The one table that maps domain errors to gRPC status codes."""

from __future__ import annotations

import logging

import grpc
from google.protobuf.message import DecodeError

from ..admission import IdleCallError
from ..engine import IncompatibleStateError, InvalidInputError, UnknownWindowError
from ..store import AlreadyExistsError, LimitExceededError, NotFoundError, StoreUnavailableError

__all__ = ["status_for", "GENERIC_INTERNAL"]

log = logging.getLogger("evalstream.rpc")
GENERIC_INTERNAL = "internal error; the server logged the details"

# Order matters: the first matching type wins (CapacityError is an InvalidInputError).
_TABLE: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (IdleCallError, grpc.StatusCode.UNAVAILABLE),  # the client reopens the call
    (LimitExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StoreUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (IncompatibleStateError, grpc.StatusCode.FAILED_PRECONDITION),
    (UnknownWindowError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (DecodeError, grpc.StatusCode.INVALID_ARGUMENT),
]


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """``(code, message)`` for an exception; unknown errors become INTERNAL with a generic
    message and a logged traceback."""
    from ..auth import AuthError
    from ..engine import CapacityError

    if isinstance(exc, AuthError):
        return exc.code, str(exc)
    if isinstance(exc, CapacityError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    for kind, code in _TABLE:
        if isinstance(exc, kind):
            if isinstance(exc, DecodeError):
                return (
                    code,
                    f"request: expected a valid protobuf message, received bytes that "
                    f"do not parse ({exc})",
                )
            return code, str(exc)
    log.error("unhandled error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, GENERIC_INTERNAL

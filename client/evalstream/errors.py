"""Errors of the evalstream client: one class per gRPC status the service answers with.

Every RPC maps ``grpc.RpcError`` through ``error_from_rpc``; callers catch these classes, never
``grpc.RpcError``. Each error carries ``code`` (the ``grpc.StatusCode`` name, e.g. ``"NOT_FOUND"``)
and ``details`` (the server's message, which names the field, the expected and the received).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from .ingest import BatchError, LogResult
    from .v1.ingest_pb2 import FieldError

__all__ = [
    "EvalstreamError",
    "NotFoundError",
    "AlreadyExistsError",
    "InvalidArgumentError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "UnavailableError",
    "InvalidBatchError",
    "error_for",
    "error_from_rpc",
    "code_name",
]


class EvalstreamError(Exception):
    """Base class of every error the client raises for a failed call.

    Attributes
    ----------
    code : str
        The ``grpc.StatusCode`` name, e.g. ``"INVALID_ARGUMENT"``.
    details : str
        The server's message.
    result : LogResult or None
        For errors of a ``log`` call or a writer: the totals of what was delivered.
    field_error : evalstream.v1.FieldError or None
        ``details`` in parts when the call failed for one field (``field``: its path in the
        request, such as ``"config.windows"``; ``expected``; ``received``; ``hint``), read from the
        call's google.rpc.Status; None otherwise.
    """

    result: LogResult | None = None
    field_error: FieldError | None = None

    def __init__(self, code: str, details: str, message: str | None = None) -> None:
        self.code = code
        self.details = details
        super().__init__(message if message is not None else f"{code}: {details}")


class NotFoundError(EvalstreamError, LookupError):
    """No stream of that name (``NOT_FOUND``)."""


class AlreadyExistsError(EvalstreamError):
    """A stream of that name exists already (``ALREADY_EXISTS``)."""


class InvalidArgumentError(EvalstreamError, ValueError):
    """The server refused a request (``INVALID_ARGUMENT``, ``OUT_OF_RANGE``,
    ``FAILED_PRECONDITION``); ``details`` names the field."""


class ResourceExhaustedError(EvalstreamError):
    """Too large or too fast (``RESOURCE_EXHAUSTED``): a limit of the server was reached."""


class UnauthenticatedError(EvalstreamError):
    """No or a bad token (``UNAUTHENTICATED``)."""


class PermissionDeniedError(EvalstreamError):
    """The token may not touch this stream (``PERMISSION_DENIED``)."""


class UnavailableError(EvalstreamError):
    """The server could not be reached or is shutting down (``UNAVAILABLE``,
    ``DEADLINE_EXCEEDED``, ``CANCELLED``); retrying later may succeed."""


class InvalidBatchError(EvalstreamError, ValueError):
    """The server rejected one or more batches of a ``log`` call (or of a writer) for their content.

    Raised after the whole call completed: other batches of the same call may have been
    accepted and stay applied (``result.accepted_batches`` says how many). A rejected batch
    changed no state and consumed its sequence number, so resending the same call would resend the
    accepted batches too; fix the data of the rejected rows and log those again.

    Attributes
    ----------
    code, details : str
        Status name and server message of the first rejected batch.
    batch_index : int
        Index of that batch within the call (or the writer's batch count).
    rows : tuple of int
        ``(start, stop)`` of its rows within the arrays passed to ``log``.
    errors : list of BatchError
        Every rejected batch.
    result : LogResult or None
        The totals of the call.
    """

    def __init__(
        self, errors: list[BatchError], result: LogResult | None = None, where: str = "log call"
    ) -> None:
        first = errors[0]
        self.batch_index = first.batch_index
        self.rows = first.rows
        self.errors = list(errors)
        self.result = result
        start, stop = first.rows
        text = (
            f"batch {first.batch_index} (rows {start}:{stop}) of this {where} was rejected: "
            f"{first.code}: {first.message}"
        )
        if len(errors) > 1:
            text += f"; {len(errors)} batches were rejected in all"
        if result is not None and result.accepted_batches:
            text += (
                f". {result.accepted_batches} other batches ({result.accepted_samples} samples) "
                "were accepted and stay applied"
            )
        elif result is not None:
            text += ". No batch of it was applied"
        super().__init__(first.code, first.message, text)


_BY_CODE: dict[grpc.StatusCode, type[EvalstreamError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidArgumentError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: UnavailableError,
    grpc.StatusCode.CANCELLED: UnavailableError,
}
_NAMES: dict[int, str] = {c.value[0]: c.name for c in grpc.StatusCode}
_CODES: dict[int, grpc.StatusCode] = {c.value[0]: c for c in grpc.StatusCode}


def code_name(number: int) -> str:
    """The ``grpc.StatusCode`` name of a code number: ``3`` -> ``"INVALID_ARGUMENT"``."""
    return _NAMES.get(number, f"CODE_{number}")


def error_for(code: grpc.StatusCode | int | str, details: str) -> EvalstreamError:
    """The error class for a status code (enum, number or name), with the server's message."""
    if isinstance(code, str):
        status = getattr(grpc.StatusCode, code, grpc.StatusCode.UNKNOWN)
    elif isinstance(code, int):
        status = _CODES.get(code, grpc.StatusCode.UNKNOWN)
    else:
        status = code
    return _BY_CODE.get(status, EvalstreamError)(status.name, details)


def error_from_rpc(exc: Any) -> EvalstreamError:
    """Map a ``grpc.RpcError`` (or anything with ``code()`` and ``details()``) to an error class."""
    from .status_details import field_error

    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    error = error_for(code or grpc.StatusCode.UNKNOWN, details or "")
    trailer = getattr(exc, "trailing_metadata", None)
    error.field_error = field_error(trailer() if callable(trailer) else None)
    return error

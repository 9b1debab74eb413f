"""Machine-readable details of a failed call: a ``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer, beside the status code and message (the service comment of
``proto/evalstream/v1/evalstream_service.proto`` lists which details come with which error)."""

from __future__ import annotations

import json

import grpc
from evalstream.v1 import ingest_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..engine import UnknownWindowError
from ..engine.errors import quoted
from ..store import AlreadyExistsError, LimitExceededError, NotFoundError
from ..store.base import error_detail, split_key

__all__ = ["field_error", "status_metadata"]

STREAM_RESOURCE = "evalstream.v1.Stream"


def field_error(exc: BaseException) -> ingest_pb2.FieldError | None:
    """The parts of a field's error (``error_detail``) as the wire's FieldError; None if the
    error is not about a field."""
    if isinstance(exc, UnknownWindowError):
        return ingest_pb2.FieldError(
            field="window", expected=f"one of {quoted(exc.known)}", received=json.dumps(exc.window)
        )
    detail = error_detail(exc)
    return None if detail is None else ingest_pb2.FieldError(**detail)


def status_metadata(
    exc: BaseException, code: grpc.StatusCode, message: str
) -> tuple[tuple[str, bytes], ...]:
    """The ``grpc-status-details-bin`` trailer of a call failing with ``code`` and ``message``
    because of ``exc``."""
    status = status_pb2.Status(code=code.value[0], message=message)
    parts = field_error(exc)
    if isinstance(exc, LimitExceededError):
        violation = error_details_pb2.QuotaFailure.Violation(subject=exc.what, description=message)
        status.details.add().Pack(error_details_pb2.QuotaFailure(violations=[violation]))
        if exc.retry_after is not None:
            delay = Duration()
            delay.FromNanoseconds(int(exc.retry_after * 1e9))
            status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    elif parts is not None:
        description = f"expected {parts.expected}, received {parts.received}"
        if parts.hint:
            description += f" ({parts.hint})"
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=parts.field, description=description
        )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    if parts is not None:
        status.details.add().Pack(parts)
    if isinstance(exc, NotFoundError | AlreadyExistsError):
        name = split_key(exc.name)[1]
        status.details.add().Pack(
            error_details_pb2.ResourceInfo(
                resource_type=STREAM_RESOURCE, resource_name=name, description=message
            )
        )
    return tuple(rpc_status.to_status(status).trailing_metadata)

"""The ``evalstream.v1.FieldError`` of a failed call, read from the google.rpc.Status in its
``grpc-status-details-bin`` trailer without googleapis-common-protos (the client depends on
grpcio, protobuf and numpy only): ``google.rpc.Status`` is three fields, declared here in a private
descriptor pool so that it never clashes with the real one when both are loaded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from .v1 import ingest_pb2

__all__ = ["field_error"]

_TRAILER = "grpc-status-details-bin"
_FIELD_ERROR = "evalstream.v1.FieldError"


def _status_class() -> Any:
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    F = descriptor_pb2.FieldDescriptorProto
    status_file = descriptor_pb2.FileDescriptorProto(
        name="evalstream/client/google_rpc_status.proto",
        package="google.rpc",
        dependency=[any_file.name],
        syntax="proto3",
    )
    status = status_file.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    status.field.add(
        name="details",
        number=3,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
    )
    pool.Add(status_file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


_STATUS = _status_class()


def field_error(
    trailing_metadata: Iterable[tuple[str, Any]] | None,
) -> ingest_pb2.FieldError | None:
    """The FieldError detail of a call's trailing metadata, None when it has none."""
    for key, value in trailing_metadata or ():
        if key != _TRAILER or not isinstance(value, bytes):
            continue
        for detail in _STATUS.FromString(value).details:
            if detail.type_url.rsplit("/", 1)[-1] == _FIELD_ERROR:
                parts: ingest_pb2.FieldError = ingest_pb2.FieldError.FromString(detail.value)
                return parts
    return None

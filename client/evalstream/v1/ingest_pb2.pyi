import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_STATUS_UNSPECIFIED: _ClassVar[BatchStatus]
    BATCH_STATUS_ACCEPTED: _ClassVar[BatchStatus]
    BATCH_STATUS_DUPLICATE: _ClassVar[BatchStatus]
    BATCH_STATUS_REJECTED: _ClassVar[BatchStatus]
BATCH_STATUS_UNSPECIFIED: BatchStatus
BATCH_STATUS_ACCEPTED: BatchStatus
BATCH_STATUS_DUPLICATE: BatchStatus
BATCH_STATUS_REJECTED: BatchStatus

class BatchResult(_message.Message):
    __slots__ = ("stream", "producer_id", "sequence", "status", "samples", "error_code", "error_message", "expected_sequence", "original_status", "retry_after", "join", "field_error")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_STATUS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    FIELD_ERROR_FIELD_NUMBER: _ClassVar[int]
    stream: str
    producer_id: str
    sequence: int
    status: BatchStatus
    samples: int
    error_code: int
    error_message: str
    expected_sequence: int
    original_status: BatchStatus
    retry_after: _duration_pb2.Duration
    join: JoinCounts
    field_error: FieldError
    def __init__(self, stream: _Optional[str] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., status: _Optional[_Union[BatchStatus, str]] = ..., samples: _Optional[int] = ..., error_code: _Optional[int] = ..., error_message: _Optional[str] = ..., expected_sequence: _Optional[int] = ..., original_status: _Optional[_Union[BatchStatus, str]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., join: _Optional[_Union[JoinCounts, _Mapping]] = ..., field_error: _Optional[_Union[FieldError, _Mapping]] = ...) -> None: ...

class FieldError(_message.Message):
    __slots__ = ("field", "expected", "received", "hint")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    field: str
    expected: str
    received: str
    hint: str
    def __init__(self, field: _Optional[str] = ..., expected: _Optional[str] = ..., received: _Optional[str] = ..., hint: _Optional[str] = ...) -> None: ...

class JoinCounts(_message.Message):
    __slots__ = ("added", "matched", "unknown", "expired", "duplicate")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    added: int
    matched: int
    unknown: int
    expired: int
    duplicate: int
    def __init__(self, added: _Optional[int] = ..., matched: _Optional[int] = ..., unknown: _Optional[int] = ..., expired: _Optional[int] = ..., duplicate: _Optional[int] = ...) -> None: ...

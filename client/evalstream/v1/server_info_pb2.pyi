import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServerLimits(_message.Message):
    __slots__ = ("max_message_bytes", "max_batch_rows", "max_classes", "max_windows", "max_curve_points", "min_watch_interval", "max_clock_skew", "max_id_length")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_CLASSES_FIELD_NUMBER: _ClassVar[int]
    MAX_WINDOWS_FIELD_NUMBER: _ClassVar[int]
    MAX_CURVE_POINTS_FIELD_NUMBER: _ClassVar[int]
    MIN_WATCH_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_CLOCK_SKEW_FIELD_NUMBER: _ClassVar[int]
    MAX_ID_LENGTH_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_batch_rows: int
    max_classes: int
    max_windows: int
    max_curve_points: int
    min_watch_interval: _duration_pb2.Duration
    max_clock_skew: _duration_pb2.Duration
    max_id_length: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_batch_rows: _Optional[int] = ..., max_classes: _Optional[int] = ..., max_windows: _Optional[int] = ..., max_curve_points: _Optional[int] = ..., min_watch_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_clock_skew: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_id_length: _Optional[int] = ...) -> None: ...

class ServerDefaults(_message.Message):
    __slots__ = ("watch_interval", "curve_points", "page_size", "mantissa_bits", "exact_max_samples")
    WATCH_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    CURVE_POINTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MANTISSA_BITS_FIELD_NUMBER: _ClassVar[int]
    EXACT_MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    watch_interval: _duration_pb2.Duration
    curve_points: int
    page_size: int
    mantissa_bits: int
    exact_max_samples: int
    def __init__(self, watch_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., curve_points: _Optional[int] = ..., page_size: _Optional[int] = ..., mantissa_bits: _Optional[int] = ..., exact_max_samples: _Optional[int] = ...) -> None: ...

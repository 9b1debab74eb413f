import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_UNSPECIFIED: _ClassVar[Task]
    TASK_BINARY: _ClassVar[Task]
    TASK_MULTICLASS: _ClassVar[Task]
    TASK_MULTILABEL: _ClassVar[Task]

class ScoreKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCORE_KIND_UNSPECIFIED: _ClassVar[ScoreKind]
    SCORE_KIND_PROBABILITIES: _ClassVar[ScoreKind]
    SCORE_KIND_LOGITS: _ClassVar[ScoreKind]
TASK_UNSPECIFIED: Task
TASK_BINARY: Task
TASK_MULTICLASS: Task
TASK_MULTILABEL: Task
SCORE_KIND_UNSPECIFIED: ScoreKind
SCORE_KIND_PROBABILITIES: ScoreKind
SCORE_KIND_LOGITS: ScoreKind

class Resolution(_message.Message):
    __slots__ = ("binned", "exact")
    class Binned(_message.Message):
        __slots__ = ("mantissa_bits",)
        MANTISSA_BITS_FIELD_NUMBER: _ClassVar[int]
        mantissa_bits: int
        def __init__(self, mantissa_bits: _Optional[int] = ...) -> None: ...
    class Exact(_message.Message):
        __slots__ = ("max_samples",)
        MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
        max_samples: int
        def __init__(self, max_samples: _Optional[int] = ...) -> None: ...
    BINNED_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    binned: Resolution.Binned
    exact: Resolution.Exact
    def __init__(self, binned: _Optional[_Union[Resolution.Binned, _Mapping]] = ..., exact: _Optional[_Union[Resolution.Exact, _Mapping]] = ...) -> None: ...

class StreamConfig(_message.Message):
    __slots__ = ("name", "task", "classes", "score_kind", "windows", "thresholds", "resolution", "ovo_class_limit", "top_k", "calibration_bins", "low_confidence", "prior_reference", "pending_retention", "max_pending")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    SCORE_KIND_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    OVO_CLASS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_BINS_FIELD_NUMBER: _ClassVar[int]
    LOW_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PRIOR_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_RETENTION_FIELD_NUMBER: _ClassVar[int]
    MAX_PENDING_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: Task
    classes: _containers.RepeatedScalarFieldContainer[str]
    score_kind: ScoreKind
    windows: _containers.RepeatedScalarFieldContainer[str]
    thresholds: _containers.RepeatedScalarFieldContainer[float]
    resolution: Resolution
    ovo_class_limit: int
    top_k: int
    calibration_bins: int
    low_confidence: float
    prior_reference: str
    pending_retention: _duration_pb2.Duration
    max_pending: int
    def __init__(self, name: _Optional[str] = ..., task: _Optional[_Union[Task, str]] = ..., classes: _Optional[_Iterable[str]] = ..., score_kind: _Optional[_Union[ScoreKind, str]] = ..., windows: _Optional[_Iterable[str]] = ..., thresholds: _Optional[_Iterable[float]] = ..., resolution: _Optional[_Union[Resolution, _Mapping]] = ..., ovo_class_limit: _Optional[int] = ..., top_k: _Optional[int] = ..., calibration_bins: _Optional[int] = ..., low_confidence: _Optional[float] = ..., prior_reference: _Optional[str] = ..., pending_retention: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_pending: _Optional[int] = ...) -> None: ...

class StreamInfo(_message.Message):
    __slots__ = ("config", "create_time", "sample_count", "ovo_available", "update_time")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNT_FIELD_NUMBER: _ClassVar[int]
    OVO_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    config: StreamConfig
    create_time: _timestamp_pb2.Timestamp
    sample_count: int
    ovo_available: bool
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, config: _Optional[_Union[StreamConfig, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sample_count: _Optional[int] = ..., ovo_available: _Optional[bool] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

import datetime

from evalstream.v1 import curve_pb2 as _curve_pb2
from evalstream.v1 import ingest_pb2 as _ingest_pb2
from evalstream.v1 import report_pb2 as _report_pb2
from evalstream.v1 import server_info_pb2 as _server_info_pb2
from evalstream.v1 import stream_pb2 as _stream_pb2
from evalstream.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECORD_KIND_UNSPECIFIED: _ClassVar[RecordKind]
    RECORD_KIND_LABELLED: _ClassVar[RecordKind]
    RECORD_KIND_PREDICTIONS: _ClassVar[RecordKind]
    RECORD_KIND_LABELS: _ClassVar[RecordKind]
RECORD_KIND_UNSPECIFIED: RecordKind
RECORD_KIND_LABELLED: RecordKind
RECORD_KIND_PREDICTIONS: RecordKind
RECORD_KIND_LABELS: RecordKind

class CreateStreamRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: _stream_pb2.StreamConfig
    def __init__(self, config: _Optional[_Union[_stream_pb2.StreamConfig, _Mapping]] = ...) -> None: ...

class CreateStreamResponse(_message.Message):
    __slots__ = ("stream",)
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: _stream_pb2.StreamInfo
    def __init__(self, stream: _Optional[_Union[_stream_pb2.StreamInfo, _Mapping]] = ...) -> None: ...

class GetStreamRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetStreamResponse(_message.Message):
    __slots__ = ("stream",)
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: _stream_pb2.StreamInfo
    def __init__(self, stream: _Optional[_Union[_stream_pb2.StreamInfo, _Mapping]] = ...) -> None: ...

class ListStreamsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListStreamsResponse(_message.Message):
    __slots__ = ("streams", "next_page_token")
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[_stream_pb2.StreamInfo]
    next_page_token: str
    def __init__(self, streams: _Optional[_Iterable[_Union[_stream_pb2.StreamInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteStreamRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteStreamResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResetStreamRequest(_message.Message):
    __slots__ = ("name", "forget_producers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORGET_PRODUCERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    forget_producers: bool
    def __init__(self, name: _Optional[str] = ..., forget_producers: _Optional[bool] = ...) -> None: ...

class ResetStreamResponse(_message.Message):
    __slots__ = ("stream",)
    STREAM_FIELD_NUMBER: _ClassVar[int]
    stream: _stream_pb2.StreamInfo
    def __init__(self, stream: _Optional[_Union[_stream_pb2.StreamInfo, _Mapping]] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("stream", "producer_id", "sequence", "scores", "labels", "sample_weight", "event_time", "ids", "kind")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    stream: str
    producer_id: str
    sequence: int
    scores: _tensor_pb2.Tensor
    labels: _tensor_pb2.Tensor
    sample_weight: _tensor_pb2.Tensor
    event_time: _timestamp_pb2.Timestamp
    ids: _containers.RepeatedScalarFieldContainer[str]
    kind: RecordKind
    def __init__(self, stream: _Optional[str] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., scores: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., labels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., sample_weight: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ids: _Optional[_Iterable[str]] = ..., kind: _Optional[_Union[RecordKind, str]] = ...) -> None: ...

class LogPredictionsRequest(_message.Message):
    __slots__ = ("stream", "producer_id", "sequence", "ids", "scores", "event_time")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    stream: str
    producer_id: str
    sequence: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    scores: _tensor_pb2.Tensor
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, stream: _Optional[str] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ..., scores: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogPredictionsResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _ingest_pb2.BatchResult
    def __init__(self, result: _Optional[_Union[_ingest_pb2.BatchResult, _Mapping]] = ...) -> None: ...

class LogLabelsRequest(_message.Message):
    __slots__ = ("stream", "producer_id", "sequence", "ids", "labels")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    stream: str
    producer_id: str
    sequence: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    labels: _tensor_pb2.Tensor
    def __init__(self, stream: _Optional[str] = ..., producer_id: _Optional[str] = ..., sequence: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ..., labels: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class LogLabelsResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _ingest_pb2.BatchResult
    def __init__(self, result: _Optional[_Union[_ingest_pb2.BatchResult, _Mapping]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("results", "accepted_batches", "duplicate_batches", "rejected_batches", "accepted_samples", "rejected_samples")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_BATCHES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_BATCHES_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[_ingest_pb2.BatchResult]
    accepted_batches: int
    duplicate_batches: int
    rejected_batches: int
    accepted_samples: int
    rejected_samples: int
    def __init__(self, results: _Optional[_Iterable[_Union[_ingest_pb2.BatchResult, _Mapping]]] = ..., accepted_batches: _Optional[int] = ..., duplicate_batches: _Optional[int] = ..., rejected_batches: _Optional[int] = ..., accepted_samples: _Optional[int] = ..., rejected_samples: _Optional[int] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("stream", "window", "include_curves", "max_curve_points", "recall_floors", "precision_floors", "beta")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CURVES_FIELD_NUMBER: _ClassVar[int]
    MAX_CURVE_POINTS_FIELD_NUMBER: _ClassVar[int]
    RECALL_FLOORS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FLOORS_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    stream: str
    window: str
    include_curves: bool
    max_curve_points: int
    recall_floors: _containers.RepeatedScalarFieldContainer[float]
    precision_floors: _containers.RepeatedScalarFieldContainer[float]
    beta: float
    def __init__(self, stream: _Optional[str] = ..., window: _Optional[str] = ..., include_curves: _Optional[bool] = ..., max_curve_points: _Optional[int] = ..., recall_floors: _Optional[_Iterable[float]] = ..., precision_floors: _Optional[_Iterable[float]] = ..., beta: _Optional[float] = ...) -> None: ...

class GetReportResponse(_message.Message):
    __slots__ = ("stream", "window", "generated_time", "report_json", "headline")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TIME_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    HEADLINE_FIELD_NUMBER: _ClassVar[int]
    stream: str
    window: str
    generated_time: _timestamp_pb2.Timestamp
    report_json: str
    headline: _report_pb2.ReportHeadline
    def __init__(self, stream: _Optional[str] = ..., window: _Optional[str] = ..., generated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., report_json: _Optional[str] = ..., headline: _Optional[_Union[_report_pb2.ReportHeadline, _Mapping]] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("stream", "window", "reference_stream", "reference_window", "relation", "alpha")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_STREAM_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    stream: str
    window: str
    reference_stream: str
    reference_window: str
    relation: str
    alpha: float
    def __init__(self, stream: _Optional[str] = ..., window: _Optional[str] = ..., reference_stream: _Optional[str] = ..., reference_window: _Optional[str] = ..., relation: _Optional[str] = ..., alpha: _Optional[float] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("stream", "window", "reference_stream", "reference_window", "generated_time", "comparison_json")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_STREAM_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_JSON_FIELD_NUMBER: _ClassVar[int]
    stream: str
    window: str
    reference_stream: str
    reference_window: str
    generated_time: _timestamp_pb2.Timestamp
    comparison_json: str
    def __init__(self, stream: _Optional[str] = ..., window: _Optional[str] = ..., reference_stream: _Optional[str] = ..., reference_window: _Optional[str] = ..., generated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., comparison_json: _Optional[str] = ...) -> None: ...

class GetCurveRequest(_message.Message):
    __slots__ = ("stream", "window", "kind", "class_name", "max_points")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    stream: str
    window: str
    kind: _curve_pb2.CurveKind
    class_name: str
    max_points: int
    def __init__(self, stream: _Optional[str] = ..., window: _Optional[str] = ..., kind: _Optional[_Union[_curve_pb2.CurveKind, str]] = ..., class_name: _Optional[str] = ..., max_points: _Optional[int] = ...) -> None: ...

class GetCurveResponse(_message.Message):
    __slots__ = ("stream", "window", "generated_time", "curve")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TIME_FIELD_NUMBER: _ClassVar[int]
    CURVE_FIELD_NUMBER: _ClassVar[int]
    stream: str
    window: str
    generated_time: _timestamp_pb2.Timestamp
    curve: _curve_pb2.Curve
    def __init__(self, stream: _Optional[str] = ..., window: _Optional[str] = ..., generated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., curve: _Optional[_Union[_curve_pb2.Curve, _Mapping]] = ...) -> None: ...

class WatchReportRequest(_message.Message):
    __slots__ = ("stream", "window", "interval", "include_curves", "max_curve_points")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_CURVES_FIELD_NUMBER: _ClassVar[int]
    MAX_CURVE_POINTS_FIELD_NUMBER: _ClassVar[int]
    stream: str
    window: str
    interval: _duration_pb2.Duration
    include_curves: bool
    max_curve_points: int
    def __init__(self, stream: _Optional[str] = ..., window: _Optional[str] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., include_curves: _Optional[bool] = ..., max_curve_points: _Optional[int] = ...) -> None: ...

class WatchReportResponse(_message.Message):
    __slots__ = ("stream", "window", "generated_time", "report_json", "headline")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TIME_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    HEADLINE_FIELD_NUMBER: _ClassVar[int]
    stream: str
    window: str
    generated_time: _timestamp_pb2.Timestamp
    report_json: str
    headline: _report_pb2.ReportHeadline
    def __init__(self, stream: _Optional[str] = ..., window: _Optional[str] = ..., generated_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., report_json: _Optional[str] = ..., headline: _Optional[_Union[_report_pb2.ReportHeadline, _Mapping]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetServerInfoResponse(_message.Message):
    __slots__ = ("server_version", "report_version", "report_schema_id", "limits", "defaults")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPORT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPORT_SCHEMA_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    report_version: int
    report_schema_id: str
    limits: _server_info_pb2.ServerLimits
    defaults: _server_info_pb2.ServerDefaults
    def __init__(self, server_version: _Optional[str] = ..., report_version: _Optional[int] = ..., report_schema_id: _Optional[str] = ..., limits: _Optional[_Union[_server_info_pb2.ServerLimits, _Mapping]] = ..., defaults: _Optional[_Union[_server_info_pb2.ServerDefaults, _Mapping]] = ...) -> None: ...

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CurveKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CURVE_KIND_UNSPECIFIED: _ClassVar[CurveKind]
    CURVE_KIND_ROC: _ClassVar[CurveKind]
    CURVE_KIND_PRECISION_RECALL: _ClassVar[CurveKind]
CURVE_KIND_UNSPECIFIED: CurveKind
CURVE_KIND_ROC: CurveKind
CURVE_KIND_PRECISION_RECALL: CurveKind

class Curve(_message.Message):
    __slots__ = ("kind", "class_name", "x", "y", "thresholds", "x_name", "y_name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    X_NAME_FIELD_NUMBER: _ClassVar[int]
    Y_NAME_FIELD_NUMBER: _ClassVar[int]
    kind: CurveKind
    class_name: str
    x: _containers.RepeatedScalarFieldContainer[float]
    y: _containers.RepeatedScalarFieldContainer[float]
    thresholds: _containers.RepeatedScalarFieldContainer[float]
    x_name: str
    y_name: str
    def __init__(self, kind: _Optional[_Union[CurveKind, str]] = ..., class_name: _Optional[str] = ..., x: _Optional[_Iterable[float]] = ..., y: _Optional[_Iterable[float]] = ..., thresholds: _Optional[_Iterable[float]] = ..., x_name: _Optional[str] = ..., y_name: _Optional[str] = ...) -> None: ...

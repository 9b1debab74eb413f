from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Figure(_message.Message):
    __slots__ = ("value", "reason", "lower", "upper", "ci95_low", "ci95_high", "n_defined", "n_classes")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    CI95_LOW_FIELD_NUMBER: _ClassVar[int]
    CI95_HIGH_FIELD_NUMBER: _ClassVar[int]
    N_DEFINED_FIELD_NUMBER: _ClassVar[int]
    N_CLASSES_FIELD_NUMBER: _ClassVar[int]
    value: float
    reason: str
    lower: float
    upper: float
    ci95_low: float
    ci95_high: float
    n_defined: int
    n_classes: int
    def __init__(self, value: _Optional[float] = ..., reason: _Optional[str] = ..., lower: _Optional[float] = ..., upper: _Optional[float] = ..., ci95_low: _Optional[float] = ..., ci95_high: _Optional[float] = ..., n_defined: _Optional[int] = ..., n_classes: _Optional[int] = ...) -> None: ...

class MetricFigures(_message.Message):
    __slots__ = ("per_class", "macro", "weighted", "micro", "samples", "binary", "ovo_macro", "ovo_weighted")
    class PerClassEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Figure
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Figure, _Mapping]] = ...) -> None: ...
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    MACRO_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_FIELD_NUMBER: _ClassVar[int]
    MICRO_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    OVO_MACRO_FIELD_NUMBER: _ClassVar[int]
    OVO_WEIGHTED_FIELD_NUMBER: _ClassVar[int]
    per_class: _containers.MessageMap[str, Figure]
    macro: Figure
    weighted: Figure
    micro: Figure
    samples: Figure
    binary: Figure
    ovo_macro: Figure
    ovo_weighted: Figure
    def __init__(self, per_class: _Optional[_Mapping[str, Figure]] = ..., macro: _Optional[_Union[Figure, _Mapping]] = ..., weighted: _Optional[_Union[Figure, _Mapping]] = ..., micro: _Optional[_Union[Figure, _Mapping]] = ..., samples: _Optional[_Union[Figure, _Mapping]] = ..., binary: _Optional[_Union[Figure, _Mapping]] = ..., ovo_macro: _Optional[_Union[Figure, _Mapping]] = ..., ovo_weighted: _Optional[_Union[Figure, _Mapping]] = ...) -> None: ...

class ReportHeadline(_message.Message):
    __slots__ = ("n_samples", "weight_total", "support", "roc_auc", "average_precision", "precision", "recall", "f1", "accuracy", "balanced_accuracy", "matthews_corrcoef", "cohen_kappa", "log_loss", "brier_score", "expected_calibration_error")
    class SupportEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    N_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    ROC_AUC_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_PRECISION_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    F1_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    BALANCED_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MATTHEWS_CORRCOEF_FIELD_NUMBER: _ClassVar[int]
    COHEN_KAPPA_FIELD_NUMBER: _ClassVar[int]
    LOG_LOSS_FIELD_NUMBER: _ClassVar[int]
    BRIER_SCORE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CALIBRATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    n_samples: int
    weight_total: float
    support: _containers.ScalarMap[str, float]
    roc_auc: MetricFigures
    average_precision: MetricFigures
    precision: MetricFigures
    recall: MetricFigures
    f1: MetricFigures
    accuracy: Figure
    balanced_accuracy: Figure
    matthews_corrcoef: Figure
    cohen_kappa: Figure
    log_loss: Figure
    brier_score: Figure
    expected_calibration_error: Figure
    def __init__(self, n_samples: _Optional[int] = ..., weight_total: _Optional[float] = ..., support: _Optional[_Mapping[str, float]] = ..., roc_auc: _Optional[_Union[MetricFigures, _Mapping]] = ..., average_precision: _Optional[_Union[MetricFigures, _Mapping]] = ..., precision: _Optional[_Union[MetricFigures, _Mapping]] = ..., recall: _Optional[_Union[MetricFigures, _Mapping]] = ..., f1: _Optional[_Union[MetricFigures, _Mapping]] = ..., accuracy: _Optional[_Union[Figure, _Mapping]] = ..., balanced_accuracy: _Optional[_Union[Figure, _Mapping]] = ..., matthews_corrcoef: _Optional[_Union[Figure, _Mapping]] = ..., cohen_kappa: _Optional[_Union[Figure, _Mapping]] = ..., log_loss: _Optional[_Union[Figure, _Mapping]] = ..., brier_score: _Optional[_Union[Figure, _Mapping]] = ..., expected_calibration_error: _Optional[_Union[Figure, _Mapping]] = ...) -> None: ...

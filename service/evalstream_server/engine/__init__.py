"""The metric engine: pure numpy, no I/O, no threads, no grpc, no prometheus_client.

Batches of ``(labels, scores)`` become bounded, mergeable count state; every metric is a function of
that state, with sklearn's definitions and names. Everything else in evalstream calls this package.
"""

from .batch import (
    Batch,
    LabelBatch,
    PredictionBatch,
    make_batch,
    make_label_batch,
    make_prediction_batch,
    sigmoid,
    softmax,
)
from .errors import CapacityError, IncompatibleStateError, InvalidInputError, UnknownWindowError
from .layout import BinLayout
from .report import REPORT_VERSION, build_report, curve
from .spec import Resolution, StreamSpec, format_duration, parse_duration
from .state import State
from .stream import CUMULATIVE, JoinCounts, StreamEngine, engine_from_bytes, engine_to_bytes

__all__ = [
    "Batch",
    "BinLayout",
    "CUMULATIVE",
    "CapacityError",
    "IncompatibleStateError",
    "InvalidInputError",
    "JoinCounts",
    "LabelBatch",
    "PredictionBatch",
    "REPORT_VERSION",
    "Resolution",
    "State",
    "StreamEngine",
    "StreamSpec",
    "UnknownWindowError",
    "build_report",
    "curve",
    "engine_from_bytes",
    "engine_to_bytes",
    "format_duration",
    "make_batch",
    "make_label_batch",
    "make_prediction_batch",
    "parse_duration",
    "sigmoid",
    "softmax",
]

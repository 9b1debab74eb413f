"""evalstream client: stream predictions and labels to an evalstream server, query metrics.

>>> from evalstream import EvalClient
>>> with EvalClient("127.0.0.1:50051") as client:                      # doctest: +SKIP
...     client.create_stream("digits", task="multiclass", classes=list("0123456789"))
...     client.log("digits", y_true, y_score)
...     client.report("digits").roc_auc_score(average="macro")
"""

from .client import EvalClient
from .errors import (
    AlreadyExistsError,
    EvalstreamError,
    InvalidArgumentError,
    InvalidBatchError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from .ingest import BatchError, LogResult
from .report import Curve, Report
from .streams import StreamInfo
from .writer import Writer

__all__ = [
    "EvalClient",
    "Report",
    "Curve",
    "StreamInfo",
    "LogResult",
    "BatchError",
    "Writer",
    "EvalstreamError",
    "NotFoundError",
    "AlreadyExistsError",
    "InvalidArgumentError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "UnavailableError",
    "InvalidBatchError",
]
__version__ = "0.1.0"

"""GetServerInfo's answer: the server's version, report version, limits and defaults, read from
the objects that enforce them (no number is restated here)."""

from __future__ import annotations

import functools
import json
from importlib import metadata, resources
from typing import TYPE_CHECKING

from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import server_info_pb2
from google.protobuf.duration_pb2 import Duration

from ..engine import REPORT_VERSION
from ..engine.batch import MAX_ID_LENGTH
from . import convert

if TYPE_CHECKING:
    from .servicer import ServiceLimits

__all__ = ["server_info"]


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(round(seconds * 1e9)))
    return d


@functools.cache
def _schema_id() -> str:
    """The ``$id`` of the report schema shipped with the stubs (evalstream/v1)."""
    text = resources.files("evalstream.v1").joinpath("report.schema.json").read_text("utf-8")
    return str(json.loads(text)["$id"])


def _version() -> str:
    try:
        return metadata.version("evalstream")
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def server_info(limits: ServiceLimits) -> pb.GetServerInfoResponse:
    return pb.GetServerInfoResponse(
        server_version=_version(),
        report_version=REPORT_VERSION,
        report_schema_id=_schema_id(),
        limits=server_info_pb2.ServerLimits(
            max_message_bytes=limits.max_message_bytes,
            max_batch_rows=limits.max_batch_rows,
            max_classes=limits.max_classes,
            max_windows=limits.max_windows,
            max_curve_points=limits.max_curve_points,
            min_watch_interval=_duration(limits.min_watch_interval),
            max_clock_skew=_duration(limits.max_clock_skew),
            max_id_length=MAX_ID_LENGTH,
        ),
        defaults=server_info_pb2.ServerDefaults(
            watch_interval=_duration(limits.default_watch_interval),
            curve_points=limits.default_curve_points,
            page_size=limits.default_page_size,
            mantissa_bits=convert.DEFAULT_MANTISSA_BITS,
            exact_max_samples=convert.DEFAULT_EXACT_MAX_SAMPLES,
        ),
    )

"""Sources: where a job's scores come from, converted for the evalstream client.

Thin adapters (STYLE.md): a source fetches scores and says clearly when it cannot; the maths stays
in the engine. ``TritonSource`` reads a model served over the KServe V2 gRPC protocol (NVIDIA
Triton, MLServer, KServe); ``triton_eval`` streams its scores on a labelled set into a stream;
``plan_stream`` and ``ensure_stream`` fit a stream to a model's output (``triton-eval`` and
``triton-proxy --create``).
"""

from .errors import SourceError, SourceInputError, SourceUnavailableError
from .evalset import check_labels, load_eval_set
from .progress import ProgressLine
from .streams import TASKS, StreamPlan, ensure_stream, plan_stream, stream_columns
from .triton import OUTPUT_KINDS, ModelInfo, OutputInfo, TritonSource, model_output
from .triton_eval import EvalRun, feed_stream, triton_eval

__all__ = [
    "TritonSource",
    "ModelInfo",
    "OutputInfo",
    "OUTPUT_KINDS",
    "TASKS",
    "model_output",
    "stream_columns",
    "SourceError",
    "SourceInputError",
    "SourceUnavailableError",
    "load_eval_set",
    "check_labels",
    "ProgressLine",
    "EvalRun",
    "StreamPlan",
    "plan_stream",
    "triton_eval",
    "ensure_stream",
    "feed_stream",
]

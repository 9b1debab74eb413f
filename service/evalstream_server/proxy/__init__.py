"""``evalstream triton-proxy``: a KServe V2 gRPC proxy that records predictions.

Applications point ``tritonclient`` at the proxy instead of Triton. Every call is forwarded to
the inference server and answered with its bytes unchanged; the outputs of routed models are
recorded into evalstream as predictions under the request ``id`` (``ids.py`` names the rows),
off the request path and within a bound (``recorder.py``). Labels follow later with
``EvalClient.log_labels``. See ``deploy/triton/README.md``, section Proxy.
"""

from .create import create_streams
from .ids import new_request_id, row_ids
from .metrics import DROP_REASONS, ProxyMetrics
from .outputs import OutputError, decode_scores
from .recorder import Recorder
from .routes import ModelRoute, RouteError, parse_model_option, parse_route, parse_routes
from .server import (
    ProxySettings,
    ProxyThread,
    RunningProxy,
    serve_proxy_forever,
    split_host_port,
    start_proxy,
)
from .tls import ClientTLS, ServerTLS, TLSError

__all__ = [
    "ClientTLS",
    "DROP_REASONS",
    "ModelRoute",
    "OutputError",
    "ProxyMetrics",
    "ProxySettings",
    "ProxyThread",
    "Recorder",
    "RouteError",
    "RunningProxy",
    "ServerTLS",
    "TLSError",
    "create_streams",
    "decode_scores",
    "new_request_id",
    "parse_model_option",
    "parse_route",
    "parse_routes",
    "row_ids",
    "serve_proxy_forever",
    "split_host_port",
    "start_proxy",
]

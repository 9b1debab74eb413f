"""A real server per module, on loopback ports picked by the OS."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream.v1 import evalstream_service_pb2_grpc as rpc
from evalstream.v1 import stream_pb2, tensor_pb2
from evalstream_server.server import ServerThread
from evalstream_server.settings import Settings


@pytest.fixture(scope="module")
def server():
    srv = ServerThread(
        Settings(
            host="127.0.0.1",
            grpc_port=0,
            metrics_port=0,
            max_receive_bytes=1 << 20,
            max_batch_rows=20000,
        )
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.target)
    yield rpc.EvalstreamServiceStub(channel)
    channel.close()


def tensor(a: np.ndarray) -> tensor_pb2.Tensor:
    dtypes = {
        "float32": tensor_pb2.DATA_TYPE_FLOAT32,
        "float64": tensor_pb2.DATA_TYPE_FLOAT64,
        "int32": tensor_pb2.DATA_TYPE_INT32,
        "int64": tensor_pb2.DATA_TYPE_INT64,
        "uint8": tensor_pb2.DATA_TYPE_UINT8,
        "float16": tensor_pb2.DATA_TYPE_FLOAT16,
    }
    a = np.ascontiguousarray(a)
    return tensor_pb2.Tensor(dtype=dtypes[a.dtype.name], shape=list(a.shape), data=a.tobytes())


TASKS = {
    "binary": stream_pb2.TASK_BINARY,
    "multiclass": stream_pb2.TASK_MULTICLASS,
    "multilabel": stream_pb2.TASK_MULTILABEL,
}


def create(
    stub,
    name: str,
    task: str = "multiclass",
    classes=("a", "b", "c"),
    logits=False,
    windows=(),
    **kw,
) -> pb.CreateStreamResponse:
    cfg = stream_pb2.StreamConfig(
        name=name,
        task=TASKS[task],
        classes=list(classes),
        windows=list(windows),
        score_kind=stream_pb2.SCORE_KIND_LOGITS if logits else stream_pb2.SCORE_KIND_PROBABILITIES,
        **kw,
    )
    return stub.CreateStream(pb.CreateStreamRequest(config=cfg))


def ingest(stub, requests) -> list:
    """All BatchResults of one Ingest call, in order, and the last totals."""
    results, last = [], None
    for resp in stub.Ingest(iter(requests), timeout=30):
        results.extend(resp.results)
        last = resp
    return results, last

"""A stalled Redis delays only the calls that need it: the replica's event loop stays free, so
health checks answer while a query waits on a ``redis-server`` stopped with SIGSTOP."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import grpc
from evalstream.v1 import evalstream_service_pb2 as pb
from evalstream_server.server import ServerThread
from grpc_health.v1 import health_pb2, health_pb2_grpc

from .conftest import create_stream, ingest, make_batches, replica_settings, request, stub_for


def _in_flight(store) -> int:
    """Redis connections of the store's pool busy with a call right now."""
    return len(store.client.connection_pool._in_use_connections)


def test_health_answers_while_a_query_waits_on_a_stopped_redis(redis_server):
    srv = ServerThread(replica_settings(redis_server.url + "?flush_interval=0.02")).start()
    channel, stub = stub_for(srv.target)
    stopped = False
    try:
        create_stream(stub, "s", "binary")
        (y, p) = make_batches("binary", 1, 500, seed=11)[0]
        assert ingest(stub, [request("s", "p", 1, y, p)])[0].status == 1
        answer: dict[str, object] = {}

        def query() -> None:
            try:
                resp = stub.GetReport(pb.GetReportRequest(stream="s"), timeout=30)
                answer["n"] = json.loads(resp.report_json)["n_samples"]
            except grpc.RpcError as exc:  # pragma: no cover - reported by the assertion below
                answer["error"] = exc
            answer["done"] = time.monotonic()

        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        stopped = True
        worker = threading.Thread(target=query)
        worker.start()
        end = time.monotonic() + 10
        while _in_flight(srv.store) == 0 and time.monotonic() < end:
            time.sleep(0.01)  # until the query is waiting on Redis
        assert _in_flight(srv.store) > 0, "the query never reached Redis"
        health = health_pb2_grpc.HealthStub(channel)
        # the store's socket timeout is 5 s: a blocked event loop would answer after it
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=3).status
        checked = time.monotonic()
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert worker.is_alive() and "done" not in answer  # Redis is still stopped
        os.kill(redis_server.proc.pid, signal.SIGCONT)
        stopped = False
        worker.join(timeout=30)
        assert answer.get("n") == 500, answer  # the delayed query completes with every sample
        assert answer["done"] > checked
    finally:
        if stopped:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        channel.close()
        srv.stop()

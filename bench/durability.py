"""Durability cost: ingest over gRPC into the durable SQLite store against the in-memory store, in
the same run, and recovery time against the data logged since the last snapshot.

Usage: python bench/durability.py [--quick]

The last table times the replay itself (the engine's work in a recovery) against a stream without
windows fed the same batches, in the same run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evalstream.v1 import evalstream_service_pb2 as pb  # noqa: E402
from evalstream.v1 import evalstream_service_pb2_grpc as rpc  # noqa: E402
from evalstream.v1 import stream_pb2, tensor_pb2  # noqa: E402
from evalstream_server.engine import StreamSpec  # noqa: E402
from evalstream_server.engine.stream import StreamEngine  # noqa: E402
from evalstream_server.server import ServerThread  # noqa: E402
from evalstream_server.settings import Settings  # noqa: E402
from evalstream_server.store.durable import DurableStore  # noqa: E402
from evalstream_server.store.integrity import check_data_dir  # noqa: E402
from harness import (  # noqa: E402
    fmt_rate,
    fmt_ratio,
    machine_line,
    make_workload,
    markdown_table,
    quick_parser,
)

K = 10


def _requests(work, stream: str):
    for seq, (y, p) in enumerate(work.batches(), 1):
        yield pb.IngestRequest(
            stream=stream,
            producer_id="bench",
            sequence=seq,
            scores=tensor_pb2.Tensor(
                dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=list(p.shape), data=p.tobytes()
            ),
            labels=tensor_pb2.Tensor(
                dtype=tensor_pb2.DATA_TYPE_INT32, shape=[y.size], data=y.astype(np.int32).tobytes()
            ),
        )


def _ingest_rate(settings: Settings, work, repeats: int) -> float:
    best = 0.0
    with (
        ServerThread(settings) as srv,
        grpc.insecure_channel(
            srv.target, options=[("grpc.max_send_message_length", 8 << 20)]
        ) as ch,
    ):
        stub = rpc.EvalstreamServiceStub(ch)
        for r in range(repeats):
            name = f"bench{r}"
            stub.CreateStream(
                pb.CreateStreamRequest(
                    config=stream_pb2.StreamConfig(
                        name=name,
                        task=stream_pb2.TASK_MULTICLASS,
                        classes=[f"c{i}" for i in range(K)],
                        score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
                    )
                )
            )
            reqs = list(_requests(work, name))
            start = time.perf_counter()
            n = 0
            for resp in stub.Ingest(iter(reqs), timeout=600):
                n = resp.accepted_samples
            elapsed = time.perf_counter() - start
            assert n == work.n, (n, work.n)
            best = max(best, work.n / elapsed)
    return best


def _recovery_seconds(batches: int, work) -> tuple[float, float, float]:
    """Seconds to open the store after a crash, of which the integrity check, and the size."""
    d = tempfile.mkdtemp(prefix="evalstream-recovery-")
    try:
        store = DurableStore(d, snapshot_every=10**9)
        store.create(
            StreamSpec(
                task="multiclass",
                classes=tuple(f"c{i}" for i in range(K)),
                name="r",
                windows=("5m", "1h"),
            )
        )
        engine = store.get("r").engine
        it = iter(work.batches())
        for seq in range(1, batches + 1):
            try:
                y, p = next(it)
            except StopIteration:
                it = iter(work.batches())
                y, p = next(it)
            store.ingest("r", "p", seq, engine.validate(y, p), None)
            if seq % 50 == 0:
                store.flush()
        store.flush()
        size = store.size_bytes
        store._simulate_crash()  # as after kill -9: no final snapshot
        start = time.perf_counter()
        check_data_dir(Path(d))  # what the store's start runs first (timed on its own here)
        check = time.perf_counter() - start
        start = time.perf_counter()
        again = DurableStore(d, snapshot_every=10**9)
        elapsed = time.perf_counter() - start
        again._simulate_crash()
        return elapsed, check, size
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    args = quick_parser(__doc__.splitlines()[0]).parse_args()
    n = 40_960 if args.quick else 819_200
    repeats = 1 if args.quick else 3
    work = make_workload(n, K, seed=1)
    print(machine_line())
    print(
        f"\n# Durable ingest, K={K}, batch {work.batch}, {n} samples over one Ingest call, "
        f"best of {repeats}\n"
    )
    tmp = tempfile.mkdtemp(prefix="evalstream-bench-")
    try:
        rates = {}
        rows = []
        for label, kwargs in (
            ("in-memory store (reference)", {}),
            ("durable, synchronous=FULL (default)", {"data_dir": tmp + "/full"}),
            ("durable, synchronous=NORMAL", {"data_dir": tmp + "/normal", "durability": "normal"}),
        ):
            settings = Settings(grpc_port=0, metrics_port=-1, max_batch_rows=65536, **kwargs)
            rates[label] = _ingest_rate(settings, work, repeats)
        ref = rates["in-memory store (reference)"]
        for label, rate in rates.items():
            rows.append([label, fmt_rate(rate), fmt_ratio(rate / ref)])
        print(markdown_table(["store", "samples/s", "÷ in-memory"], rows))
        print("\ntarget: durable >= 0.70x the in-memory store")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n# Recovery time after kill -9 against batches logged since the last snapshot\n")
    rows = []
    sizes = (0, 50, 200) if args.quick else (0, 250, 1000, 4000)
    small = make_workload(4096 * 20, K, seed=2)
    for b in sizes:
        seconds, check, size = _recovery_seconds(b, small)
        rows.append(
            [
                str(b),
                f"{b * 4096:,}",
                f"{size / 2**20:.1f} MiB",
                f"{seconds * 1e3:.0f} ms",
                f"{check * 1e3:.0f} ms",
            ]
        )
    header = [
        "batches since snapshot",
        "samples",
        "database",
        "recovery",
        "of which integrity check",
    ]
    print(markdown_table(header, rows))
    _replay_table(250 if not args.quick else 25, small)


def _replay_seconds(batches: int, work, windows: tuple[str, ...], replaying: bool) -> float:
    """Seconds to apply ``batches`` logged batches to a fresh engine, as a recovery does."""
    spec = StreamSpec(
        task="multiclass", classes=tuple(f"c{i}" for i in range(K)), name="r", windows=windows
    )
    engine = StreamEngine(spec, clock=lambda: 1_000_000.0)
    logged = [engine.validate(y, p) for y, p in work.batches()]
    start = time.perf_counter()
    if replaying:
        with engine.replaying():
            for i in range(batches):
                engine.ingest(logged[i % len(logged)], None, now=1_000_000.0)
    else:
        for i in range(batches):
            engine.ingest(logged[i % len(logged)], None, now=1_000_000.0)
    return time.perf_counter() - start


def _replay_table(batches: int, work) -> None:
    print(
        f"\n# Replay of {batches * work.batch:,} logged samples (K={K}, one window bucket), "
        "engine only, best of 3\n"
    )
    cases = {
        "no windows (reference)": ((), False),
        "5m and 1h, replaying (what a recovery runs)": (("5m", "1h"), True),
        "5m and 1h, compacting as live ingest does": (("5m", "1h"), False),
    }
    seconds = {
        label: min(_replay_seconds(batches, work, w, r) for _ in range(3))
        for label, (w, r) in cases.items()
    }
    ref = seconds["no windows (reference)"]
    rows = [[label, f"{s * 1e3:.0f} ms", fmt_ratio(s / ref)] for label, s in seconds.items()]
    print(markdown_table(["replay", "time", "÷ no windows"], rows))


if __name__ == "__main__":
    main()

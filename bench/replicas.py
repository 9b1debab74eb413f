"""Replicas on Redis: ingest throughput of one replica on Redis against the embedded durable store,
and of two replicas against one, in the same run; then the cost of one flush (commit) against the
non-zero cells it carries, with the storage layout we chose (packed sparse logs, one APPEND per
key) next to the alternative (one hash field per cell, HINCRBYFLOAT in a Lua loop), and the cost
of reading a merged state back both ways; then the /metrics scrape of N streams shared by 1, 2
and 3 replicas (each exports its share): time per replica and in total, series seen once.

Every server is its own ``evalstream serve`` process; Redis runs with ``appendonly yes``,
``appendfsync everysec``; the durable store with ``synchronous=FULL``. Needs ``redis-server``
(scripts/install-tools.sh installs it).

``--baseline DIR`` runs instead the ingest A/B of this tree against another checkout (``git
worktree add DIR <commit>``, its compiled kernel in place): one replica of each on the same Redis,
interleaved, large streams (4096-row messages), small streams (128-row messages, 4,096 samples
each: exact while small throughout) and delayed labels.

Usage: python bench/replicas.py [--quick] [--baseline DIR]
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evalstream.v1 import evalstream_service_pb2 as pb  # noqa: E402
from evalstream.v1 import evalstream_service_pb2_grpc as rpc  # noqa: E402
from evalstream.v1 import stream_pb2, tensor_pb2  # noqa: E402
from evalstream_server.engine import CUMULATIVE, StreamSpec, make_batch  # noqa: E402
from evalstream_server.engine.counting import compute_delta  # noqa: E402
from evalstream_server.exporters import EvalstreamCollector  # noqa: E402
from evalstream_server.store.redis_store import RedisStore  # noqa: E402
from evalstream_server.store.sparse_log import (  # noqa: E402
    FlatLayout,
    encode_chunk,
    reduce_parts,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from harness import (  # noqa: E402
    fmt_bytes,
    fmt_rate,
    fmt_ratio,
    fmt_seconds,
    machine_line,
    make_workload,
    markdown_table,
    median,
    quick_parser,
)
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

K = 10
CLASSES = [f"c{i}" for i in range(K)]
_HASH_ADD = "for i = 1, #ARGV, 2 do redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i+1]) end"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(directory: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
        + ["--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(300):
        try:
            client.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _start_server(*flags: str, service: str | None = None) -> tuple[subprocess.Popen, str]:
    """``evalstream serve`` of this tree, or of the ``service`` directory of another checkout."""
    port = _free_port()
    env = None
    if service is not None:
        env = {**os.environ, "PYTHONPATH": service}
    proc = subprocess.Popen(
        [sys.executable, "-m", "evalstream_server.cli", "serve", "--grpc-port", str(port)]
        + ["--metrics-port", "-1", "--log-level", "WARNING", *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    return proc, f"127.0.0.1:{port}"


def _wait_serving(target: str) -> None:
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for _ in range(600):
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.05)
    raise RuntimeError(f"server {target} did not start")


def _requests(work, stream: str, producer: str) -> list[pb.IngestRequest]:
    out = []
    for seq, (y, p) in enumerate(work.batches(), 1):
        out.append(
            pb.IngestRequest(
                stream=stream,
                producer_id=producer,
                sequence=seq,
                scores=tensor_pb2.Tensor(
                    dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=list(p.shape), data=p.tobytes()
                ),
                labels=tensor_pb2.Tensor(
                    dtype=tensor_pb2.DATA_TYPE_INT32,
                    shape=[y.size],
                    data=y.astype(np.int32).tobytes(),
                ),
            )
        )
    return out


def _produce_in_parallel(
    channels: list[grpc.Channel], requests: list[list[pb.IngestRequest]]
) -> tuple[list[int], float]:
    """One producer thread a channel streams its requests, all started together; returns the
    samples each had acknowledged (the largest count its responses gave) and the seconds from
    the start until the last finished. Closes the channels."""
    accepted = [0] * len(channels)
    barrier = threading.Barrier(len(channels) + 1)

    def produce(i: int) -> None:
        stub = rpc.EvalstreamServiceStub(channels[i])
        barrier.wait()
        for resp in stub.Ingest(iter(requests[i]), timeout=600):
            accepted[i] = max(accepted[i], resp.accepted_samples)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(len(channels))]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for ch in channels:
        ch.close()
    return accepted, elapsed


def _ingest_rate(targets: list[str], works: list, stream: str) -> float:
    """Samples/s of one producer per work, producer i streaming to targets[i % len(targets)]."""
    with grpc.insecure_channel(targets[0]) as ch:
        rpc.EvalstreamServiceStub(ch).CreateStream(
            pb.CreateStreamRequest(
                config=stream_pb2.StreamConfig(
                    name=stream,
                    task=stream_pb2.TASK_MULTICLASS,
                    classes=CLASSES,
                    windows=["1h"],
                    score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
                )
            )
        )
    reqs = [_requests(w, stream, f"p{i}") for i, w in enumerate(works)]
    channels = [
        grpc.insecure_channel(
            targets[i % len(targets)], options=[("grpc.max_send_message_length", 8 << 20)]
        )
        for i in range(len(works))
    ]
    accepted, elapsed = _produce_in_parallel(channels, reqs)
    total = sum(w.n for w in works)
    assert sum(accepted) == total, (accepted, total)
    return total / elapsed


def ingest_table(quick: bool, tmp: str) -> None:
    per_producer = 4096 * (8 if quick else 100)
    repeats = 1 if quick else 3
    works = [make_workload(per_producer, K, seed=10 + i) for i in range(2)]
    redis_proc, redis_port = _start_redis(tmp)
    url = f"redis://127.0.0.1:{redis_port}/0"
    procs = []
    try:
        durable, d_target = _start_server("--data-dir", f"{tmp}/durable")
        one, r1 = _start_server("--store", url)
        two, r2 = _start_server("--store", url)
        procs = [durable, one, two]
        for target in (d_target, r1, r2):
            _wait_serving(target)
        setups = {
            "embedded durable store (reference)": [d_target],
            "Redis, 1 replica": [r1],
            "Redis, 2 replicas": [r1, r2],
        }
        rates: dict[str, list[float]] = {name: [] for name in setups}
        delayed = {
            "embedded durable store (reference)": [d_target],
            "Redis, 1 replica": [r1],
            "Redis, predictions on one replica, labels on the other": [r1, r2],
        }
        pairs: dict[str, list[float]] = {name: [] for name in delayed}
        for r in range(repeats):  # interleaved, so that noise hits every setup alike
            for i, (name, targets) in enumerate(setups.items()):
                rates[name].append(_ingest_rate(targets, works, f"s{r}_{i}"))
            for i, (name, targets) in enumerate(delayed.items()):
                pairs[name].append(_delayed_rate(targets, works[0], f"d{r}_{i}"))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        redis_proc.terminate()
        redis_proc.wait(timeout=30)
    best = {name: max(v) for name, v in rates.items()}
    ref = best["embedded durable store (reference)"]
    one_replica = best["Redis, 1 replica"]
    rows = []
    for name, rate in best.items():
        vs_one = fmt_ratio(rate / one_replica) if name.startswith("Redis") else "-"
        rows.append([name, "2", fmt_rate(rate), fmt_ratio(rate / ref), vs_one])
    print(
        f"\n# Ingest over gRPC, K = {K}, 4096 rows per message, windows 1h, two producers of "
        f"{per_producer:,} samples each, best of {repeats}\n"
    )
    header = ["setup (K = 10, 4096 rows per message)", "producers", "samples/s"]
    print(markdown_table([*header, "÷ embedded durable", "÷ 1 replica"], rows))
    best = {name: max(v) for name, v in pairs.items()}
    ref = best["embedded durable store (reference)"]
    rows = [[name, fmt_rate(rate), fmt_ratio(rate / ref)] for name, rate in best.items()]
    print(
        f"\n# Delayed labels over gRPC, K = {K}, one producer: {per_producer:,} predictions "
        "(4096 per message, kind PREDICTIONS), then their labels (kind LABELS, batches in "
        f"reverse order); joined pairs per second of the whole, best of {repeats}\n"
    )
    print(markdown_table(["setup", "joined pairs/s", "÷ embedded durable"], rows))


def _small_streams_rate(target: str, n_streams: int, per_stream: int, prefix: str) -> float:
    """Samples/s of two producers, each sending 128-row messages to half of ``n_streams``
    streams in turn (streams of ``per_stream`` samples: below the exact-while-small cap)."""
    with grpc.insecure_channel(target) as ch:
        stub = rpc.EvalstreamServiceStub(ch)
        for i in range(n_streams):
            config = stream_pb2.StreamConfig(
                name=f"{prefix}{i}",
                task=stream_pb2.TASK_MULTICLASS,
                classes=CLASSES,
                windows=["1h"],
                score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
            )
            stub.CreateStream(pb.CreateStreamRequest(config=config))
    per_producer: list[list[pb.IngestRequest]] = [[], []]
    for i in range(n_streams):
        work = make_workload(per_stream, K, seed=100 + i, batch=128)
        for req in _requests(work, f"{prefix}{i}", "p"):
            per_producer[i % 2].append(req)
    for reqs in per_producer:  # the streams of a producer in turn
        reqs.sort(key=lambda r: r.sequence)
    work_size = n_streams * per_stream
    channels = [grpc.insecure_channel(target) for _ in range(2)]
    accepted, elapsed = _produce_in_parallel(channels, per_producer)
    assert sum(accepted) == work_size, (accepted, work_size)
    return work_size / elapsed


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _script_usec(client: redis.Redis) -> float:
    """Microseconds Redis spent in scripts so far (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return float(sum(v["usec"] for k, v in stats.items() if k.startswith("cmdstat_eval")))


def ab_table(quick: bool, tmp: str, baseline: str) -> None:
    """This tree's Redis replica against ``baseline``'s, on one Redis, interleaved: the wall
    rate, and (less sensitive to other load on the machine) the replica's CPU time and Redis's
    script time per sample."""
    service = str(Path(baseline).resolve() / "service")
    per_producer = 4096 * (8 if quick else 40)
    repeats = 1 if quick else 4
    works = [make_workload(per_producer, K, seed=10 + i) for i in range(2)]
    n_small = 4 if quick else 20
    redis_proc, redis_port = _start_redis(tmp)
    url = f"redis://127.0.0.1:{redis_port}/0"
    client = redis.Redis(port=redis_port)
    procs = []
    try:
        new, t_new = _start_server("--store", url)
        old, t_old = _start_server("--store", url, service=service)
        procs = [new, old]
        for target in (t_new, t_old):
            _wait_serving(target)
        trees = {"this tree": (new, t_new), "baseline": (old, t_old)}
        cases = {
            "large streams (4096-row messages)": (
                lambda target, key: _ingest_rate([target], works, f"L{key}"),
                2 * per_producer,
            ),
            "small streams (128-row messages)": (
                lambda target, key: _small_streams_rate(target, n_small, 4096, f"S{key}_"),
                n_small * 4096,
            ),
            "delayed labels (joined pairs)": (
                lambda target, key: _delayed_rate([target], works[0], f"D{key}"),
                per_producer,
            ),
        }
        # (case, tree) -> per run: (rate, replica CPU us per sample, Redis script us per sample)
        runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
        for r in range(repeats):  # interleaved (the order alternates): noise hits both alike
            order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
            for case, (run, samples) in cases.items():
                for tree, (proc, target) in order:
                    cpu, script = _cpu_seconds(proc.pid), _script_usec(client)
                    rate = run(target, f"{tree[0]}{r}")
                    cpu = (_cpu_seconds(proc.pid) - cpu) * 1e6 / samples
                    script = (_script_usec(client) - script) / samples
                    runs.setdefault((case, tree), []).append((rate, cpu, script))
    finally:
        client.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        redis_proc.terminate()
        redis_proc.wait(timeout=30)
    rows = []
    for case in cases:
        a, b = runs[(case, "this tree")], runs[(case, "baseline")]
        row = [case]
        for j, fmt in ((0, fmt_rate), (1, _fmt_us), (2, _fmt_us)):
            x = statistics.median(v[j] for v in a)
            y = statistics.median(v[j] for v in b)
            row += [f"{fmt(x)} / {fmt(y)}", fmt_ratio(x / y)]
        row.append(" ".join(f"{u[1] / v[1]:.2f}" for u, v in zip(a, b, strict=True)))
        rows.append(row)
    print(
        f"\n# Redis ingest, one replica of this tree and one of the baseline ({baseline}) on one "
        f"Redis, K = {K}, window 1h, medians of {repeats} interleaved runs\n"
    )
    header = ["workload", "samples/s (this / base)", "÷", "replica CPU per sample", "÷"]
    header += ["Redis script time per sample", "÷", "CPU ÷ per run"]
    print(markdown_table(header, rows))


def _fmt_us(us: float) -> str:
    return f"{us:.2f} us"


def _delayed_requests(work, stream: str, producer: str) -> tuple[list, list]:
    """Predictions (kind PREDICTIONS) of every batch, then their labels (kind LABELS) in the
    reverse batch order, as ``bench/delayed_labels.py``."""
    preds, labels = [], []
    batches = list(work.batches())
    for b, (y, p) in enumerate(batches):
        ids = [f"{producer}-{b}-{i}" for i in range(len(y))]
        preds.append(
            pb.IngestRequest(
                stream=stream,
                producer_id=producer,
                sequence=b + 1,
                kind=pb.RECORD_KIND_PREDICTIONS,
                ids=ids,
                scores=tensor_pb2.Tensor(
                    dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=list(p.shape), data=p.tobytes()
                ),
            )
        )
        labels.append((ids, y))
    label_reqs = [
        pb.IngestRequest(
            stream=stream,
            producer_id=producer + "-labels",
            sequence=seq,
            kind=pb.RECORD_KIND_LABELS,
            ids=ids,
            labels=tensor_pb2.Tensor(
                dtype=tensor_pb2.DATA_TYPE_INT32, shape=[y.size], data=y.astype(np.int32).tobytes()
            ),
        )
        for seq, (ids, y) in enumerate(reversed(labels), 1)
    ]
    return preds, label_reqs


def _delayed_rate(targets: list[str], work, stream: str) -> float:
    """Joined pairs/s of one producer: predictions to targets[0], then labels to targets[-1]."""
    with grpc.insecure_channel(targets[0]) as ch:
        rpc.EvalstreamServiceStub(ch).CreateStream(
            pb.CreateStreamRequest(
                config=stream_pb2.StreamConfig(
                    name=stream,
                    task=stream_pb2.TASK_MULTICLASS,
                    classes=CLASSES,
                    windows=["1h"],
                    score_kind=stream_pb2.SCORE_KIND_PROBABILITIES,
                    max_pending=work.n,
                )
            )
        )
    preds, labels = _delayed_requests(work, stream, "d")
    start = time.perf_counter()
    matched = 0
    for target, reqs in ((targets[0], preds), (targets[-1], labels)):
        with grpc.insecure_channel(target) as ch:
            for resp in rpc.EvalstreamServiceStub(ch).Ingest(iter(reqs), timeout=600):
                for r in resp.results:
                    assert r.status == 1, r  # ACCEPTED
                    matched += r.join.matched
    elapsed = time.perf_counter() - start
    assert matched == work.n, (matched, work.n)
    return work.n / elapsed


def flush_table(quick: bool) -> None:
    tmp = tempfile.mkdtemp(prefix="evalstream-flush-")
    proc, port = _start_redis(tmp)
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", background=False)
    client = redis.Redis(port=port)
    hash_add = client.register_script(_HASH_ADD)
    try:
        spec = StreamSpec(task="multiclass", classes=tuple(CLASSES), windows=("1h",), name="f")
        store.create(spec)
        layout = FlatLayout(spec)
        sizes = (256, 4096) if quick else (16, 256, 1024, 4096, 16384, 65536)
        repeats = 3 if quick else 15
        work = make_workload(max(sizes) * 2, K, seed=3, batch=max(sizes))
        seq = 0
        rows = []
        for rows_per_flush in sizes:
            y, p = work.labels[:rows_per_flush], work.scores[:rows_per_flush]
            batch = make_batch(spec, y, p)
            idx, values = reduce_parts(layout.parts(compute_delta(spec, batch)), layout.size)
            chunk = encode_chunk(idx, values)
            packed, hashed = [], []
            for _ in range(repeats):
                seq += 1
                store.ingest("f", "bench", seq, batch, None)
                t0 = time.perf_counter()
                store.flush()  # cumulative log + one window bucket, one script call
                packed.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                args = [a for pair in zip(idx.tolist(), values.tolist(), strict=True) for a in pair]
                hash_add(keys=["hash:cum"], args=args)
                hash_add(keys=["hash:bucket"], args=args)
                hashed.append(time.perf_counter() - t0)
            flush = statistics.median(packed)
            alt = statistics.median(hashed)
            rows.append(
                [
                    f"{rows_per_flush:,}",
                    f"{idx.size:,}",
                    fmt_bytes(len(chunk)),
                    fmt_seconds(flush),
                    fmt_seconds(flush / max(idx.size, 1) * 1000),
                    fmt_seconds(alt),
                    fmt_ratio(alt / flush),
                ]
            )
        print(
            f"\n# One flush (commit) of one stream, K = {K} (one-vs-one histogram, "
            f"{layout.size:,} cells), cumulative + one window bucket, median of {repeats}\n"
        )
        header = ["rows in the flush", "non-zero cells", "payload sent", "flush (packed log)"]
        print(markdown_table([*header, "per 1k cells", "hash fields", "hash ÷ packed"], rows))
        store.compact("f", store.keys.of("f", "cum"))
        read_packed, read_hash = [], []
        for _ in range(repeats):
            store.reads.cache.clear()  # a cold read each time
            t0 = time.perf_counter()
            state = store.state("f", CUMULATIVE)
            read_packed.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            raw = client.hgetall("hash:cum")
            dense = np.zeros(layout.size)
            dense[np.fromiter(map(int, raw.keys()), np.int64, len(raw))] = np.fromiter(
                map(float, raw.values()), np.float64, len(raw)
            )
            read_hash.append(time.perf_counter() - t0)
        cells = int(sum(np.count_nonzero(v) for v in state.counts.values()))
        log_bytes = client.strlen(store.keys.of("f", "cum"))
        rp, rh = statistics.median(read_packed), statistics.median(read_hash)
        print(f"\n# Reading the merged cumulative state back ({cells:,} non-zero cells)\n")
        print(
            markdown_table(
                ["layout", "stored", "read + decode (p50)", "÷ packed"],
                [
                    [
                        "packed sparse log (compacted)",
                        fmt_bytes(log_bytes),
                        fmt_seconds(rp),
                        "1.00x",
                    ],
                    [
                        "hash field per cell",
                        fmt_bytes(client.memory_usage("hash:cum") or 0),
                        fmt_seconds(rh),
                        fmt_ratio(rh / rp),
                    ],
                ],
            )
        )
    finally:
        store.close()
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def _registry(store: RedisStore) -> CollectorRegistry:
    """What one replica's /metrics serves: its collector (kept across scrapes, with its cache)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EvalstreamCollector(store))
    return registry


def _scrape(registry: CollectorRegistry) -> tuple[float, float, set[str]]:
    """One /metrics exposition: wall seconds, CPU seconds of this process, the stream series."""
    t0, c0 = time.perf_counter(), time.process_time()
    text = generate_latest(registry).decode()
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    series = {line.rsplit(" ", 1)[0] for line in text.splitlines() if 'stream="' in line}
    return took, cpu, series


def scrape_table(quick: bool) -> None:
    """N streams (K = 10, cumulative + 5m + 1h) in one Redis, exported by 1, 2 and 3 replicas
    (in this process, scraped one after the other, so each replica's time is its own): the
    first scrape of fresh replicas (empty caches), then repeated scrapes with nothing changed.
    CPU seconds are this process's (the machine is shared: wall times carry other load)."""
    n_streams = 6 if quick else 100
    repeats = 1 if quick else 3
    tmp = tempfile.mkdtemp(prefix="evalstream-scrape-")
    proc, port = _start_redis(tmp)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        loader = RedisStore.from_url(url, export="none", background=False)
        work = make_workload(4096, K, seed=21, batch=2048)
        spec = StreamSpec(task="multiclass", classes=tuple(CLASSES), windows=("5m", "1h"))
        for i in range(n_streams):
            name = f"model-{i:04d}"
            loader.create(StreamSpec.from_dict({**spec.to_dict(), "name": name}))
            for seq, (y, p) in enumerate(work.batches(), 1):
                loader.ingest(name, "bench", seq, make_batch(spec, y, p), None)
            loader.flush()
        loader.close()
        rows, reference, cpu_reference, single = [], 0.0, 0.0, set()
        for n_replicas in (1, 2, 3):
            stores = [
                RedisStore.from_url(url, replica=f"r{n_replicas}-{i}", background=False)
                for i in range(n_replicas)
            ]
            try:
                registries = [_registry(s) for s in stores]
                first = [_scrape(r) for r in registries]
                again = [[_scrape(r)[0] for r in registries] for _ in range(repeats)]
            finally:
                for store in stores:
                    store.close()  # leaves the set of live replicas
            seen = [series for _, _, series in first]
            union = set().union(*seen)
            once = sum(len(s) for s in seen) == len(union)
            if n_replicas == 1:
                single = union
            slowest = max(t for t, _, _ in first)
            cpu = max(c for _, c, _ in first)
            reference = reference or slowest
            cpu_reference = cpu_reference or cpu
            shares = [len({s.split('stream="')[1].split('"')[0] for s in x}) for x in seen]
            rows.append(
                [
                    str(n_replicas),
                    "/".join(map(str, shares)),
                    f"{max(map(len, seen)):,}",
                    fmt_seconds(slowest),
                    fmt_seconds(sum(t for t, _, _ in first)),
                    fmt_ratio(slowest / reference),
                    fmt_seconds(cpu),
                    fmt_ratio(cpu / cpu_reference),
                    fmt_seconds(median([max(r) for r in again])),
                    "yes" if once and union == single else "NO",
                ]
            )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n# /metrics of {n_streams} streams (K = {K}, cumulative + 5m + 1h, 4096 samples each) "
        f"in one Redis, exported by each replica's share; first scrape of fresh replicas, "
        f"then the median of {repeats} repeated scrapes (nothing changed)\n"
    )
    header = ["replicas", "streams per replica", "series per replica (max)"]
    header += ["first scrape, slowest replica", "first scrape, all replicas"]
    header += ["slowest ÷ 1 replica", "CPU, busiest replica", "CPU ÷ 1 replica"]
    header += ["repeat scrape, slowest"]
    header += ["every series seen once"]
    print(markdown_table(header, rows))


def main() -> None:
    parser = quick_parser(__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a checkout to compare this tree's ingest with")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed: run scripts/install-tools.sh")
    print(machine_line({"redis-server": _redis_version()}))
    tmp = tempfile.mkdtemp(prefix="evalstream-replicas-")
    if args.baseline:
        try:
            ab_table(args.quick, tmp, args.baseline)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        ingest_table(args.quick, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    flush_table(args.quick)
    scrape_table(args.quick)


def _redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return next((w[2:] for w in out.split() if w.startswith("v=")), "?")


if __name__ == "__main__":
    main()

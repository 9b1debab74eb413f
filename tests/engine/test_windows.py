"""Sliding windows equal an engine fed only the window's batches."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import (
    InvalidInputError,
    State,
    StreamEngine,
    StreamSpec,
    UnknownWindowError,
    make_batch,
)
from evalstream_server.engine.counting import (
    CUMULATIVE_ONLY,
    TAKEN_FROM_CUMULATIVE,
    single_valued,
)
from evalstream_server.engine.state import WINDOW_ROWS

from .test_merge_properties import _assert_same


def _assert_same_window(got: State, want: State, cumulative: State) -> None:
    """``got`` (a window's state) holds ``want``'s counts, and the cumulative state's score range
    (counting.CUMULATIVE_ONLY), which never calls a bin single-valued that is mixed in the
    window's own samples."""
    for name in CUMULATIVE_ONLY:
        if name in got.counts:
            if name in TAKEN_FROM_CUMULATIVE:
                np.testing.assert_array_equal(got.counts[name], cumulative.counts[name])
            else:  # the within-bin moments: the cumulative state's alone, none in a window
                assert not got.counts[name].any()
            got = got.copy()
            got.counts[name] = want.counts[name].copy()
    _assert_same(got, want)
    if "score_range" in want.counts:
        window_single = single_valued(want.counts["score_range"])
        told_single = single_valued(cumulative.counts["score_range"])
        occupied = want.counts["score_range"][0] > 0
        assert not (told_single & occupied & ~window_single).any()


class FakeClock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _batches(seed: int, n_batches: int, spec: StreamSpec):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_batches):
        n = int(rng.integers(1, 200))
        y = rng.integers(0, spec.n_classes, n)
        s = rng.dirichlet(np.ones(spec.n_classes) * 0.4, n).astype(np.float32)
        out.append((y, s))
    return out


@pytest.mark.parametrize("resolution", ["bins:4", "exact"])
def test_windows_equal_refeeding_the_windows_batches(resolution):
    spec = StreamSpec(
        task="multiclass",
        classes=("a", "b", "c"),
        windows=("5m", "1h"),
        resolution=resolution,
        window_buckets=12,
    )
    clock = FakeClock()
    eng = StreamEngine(spec, clock=clock)
    rng = np.random.default_rng(7)
    fed: list[tuple[float, tuple]] = []
    for y, s in _batches(7, 120, spec):
        clock.t += float(rng.exponential(40.0))
        # some batches carry their own (possibly late) event time
        stamp = clock.t - float(rng.uniform(0, 400)) if rng.random() < 0.3 else None
        eng.update(y, s, timestamp=stamp)
        fed.append((clock.t if stamp is None else stamp, (y, s)))
        if rng.random() < 0.15:
            for name, seconds in (("5m", 300), ("1h", 3600)):
                width = seconds / 12
                current = np.floor(clock.t / width)
                want = State(spec)
                for t, (yy, ss) in fed:
                    if current - 12 < np.floor(t / width) <= current:
                        want.update(make_batch(spec, yy, ss))
                got = eng.state(name)
                if spec.resolution.kind == "bins":
                    # exact while small: a ring keeps rows up to WINDOW_ROWS (then bins alone)
                    assert got.exact is None or want.n_samples <= WINDOW_ROWS
                    if got.exact is None:
                        want.to_bins()
                _assert_same_window(got, want, eng.cumulative)
                assert eng.report(name)["window"] == name
                assert eng.report(name)["n_samples"] == want.n_samples
    whole = State(spec)
    for _, (yy, ss) in fed:
        whole.update(make_batch(spec, yy, ss))
    _assert_same(eng.state("cumulative"), whole)


def test_window_forgets_old_data_and_keeps_memory_bounded():
    spec = StreamSpec(task="binary", windows=("1m",), window_buckets=6)
    clock = FakeClock()
    eng = StreamEngine(spec, clock=clock)
    rng = np.random.default_rng(1)
    for _ in range(600):
        clock.t += 1.0
        y = rng.integers(0, 2, 50)
        eng.update(y, rng.random(50))
    ring = eng.windows["1m"]
    assert len(ring.buckets()) <= 6
    assert eng.state("1m").n_samples <= 60 * 50
    clock.t += 3600
    assert eng.report("1m")["n_samples"] == 0
    assert eng.report("1m")["roc_auc"]["binary"]["value"] is None
    assert eng.report()["n_samples"] == 600 * 50


def test_future_stamped_batch_appears_when_its_time_comes():
    spec = StreamSpec(task="binary", windows=("1m",), window_buckets=6)
    clock = FakeClock(600.0)
    eng = StreamEngine(spec, clock=clock)
    eng.update([0, 1], [0.2, 0.9], timestamp=650.0)
    assert eng.state("1m").n_samples == 0
    clock.t = 655.0
    assert eng.state("1m").n_samples == 2


def test_a_stamp_more_than_a_span_ahead_is_refused_and_changes_nothing():
    spec = StreamSpec(task="binary", windows=("1m", "1h"), window_buckets=6)
    eng = StreamEngine(spec, clock=FakeClock(600.0))
    with pytest.raises(InvalidInputError, match=r"timestamp: .*window '1m' \(60 s\).*ahead"):
        eng.update([0, 1], [0.2, 0.9], timestamp=670.0)  # bucket 67 > 60 + 6
    assert eng.report()["n_samples"] == 0 and eng.n_batches == 0
    with pytest.raises(InvalidInputError, match=r"at most 5 s after the server clock"):
        eng.event_time(606.0, 600.0, max_skew=5.0)
    assert eng.event_time(605.0, 600.0, max_skew=5.0) == 605.0
    assert eng.event_time(None, 600.0, max_skew=5.0) == 600.0


def test_a_producer_stamping_the_future_cannot_grow_a_window():
    """The issue's reproduction (K = 10, a 1h window, one-row batches stamped 10 minutes apart
    into the future, then ordinary batches): the ring never holds more than twice its bucket
    count, every stamp beyond one span is refused, and the window equals the batches it kept."""
    spec = StreamSpec(
        task="multiclass", classes=[f"c{i}" for i in range(10)], windows=("1h",), name="f"
    )
    clock = FakeClock(1_000_000.0)
    eng = StreamEngine(spec, clock=clock)
    ring = eng.windows["1h"]
    rng = np.random.default_rng(0)
    kept, refused = [], 0
    for i in range(1, 351):
        y, s = rng.integers(0, 10, 1), rng.dirichlet(np.ones(10), 1)
        try:
            eng.update(y, s, timestamp=clock.t + 600.0 * i)
            kept.append((clock.t + 600.0 * i, y, s))
        except InvalidInputError:
            refused += 1
        assert len(ring.buckets()) <= ring.max_buckets == 24
    assert len(kept) == 6 and refused == 344  # up to one span (an hour) ahead
    for _ in range(50):
        clock.t += 60.0
        eng.update(rng.integers(0, 10, 100), rng.dirichlet(np.ones(10), 100))
        assert len(ring.buckets()) <= ring.max_buckets
    assert eng.report()["n_samples"] == 6 + 5000
    clock.t = 1_000_000.0 + 3600.0  # the kept future batches have come into the window
    current = ring.bucket_of(clock.t)
    fed = [(t, 1) for t, _, _ in kept] + [(1_000_000.0 + 60.0 * k, 100) for k in range(1, 51)]
    want = sum(n for t, n in fed if current - 12 < ring.bucket_of(t) <= current)
    assert eng.state("1h").n_samples == want == 6 + 47 * 100  # 3 old minutes left


def test_live_bucket_is_where_add_counts_a_batch():
    spec = StreamSpec(task="binary", windows=("1m",), window_buckets=6)  # buckets of 10 s
    ring = StreamEngine(spec).windows["1m"]
    now = 600.0  # bucket 60: the window holds buckets 55..60
    assert ring.live_bucket(now, now) == 60
    assert ring.live_bucket(550.0, now) == 55  # the oldest bucket still in the window
    assert ring.live_bucket(549.9, now) is None  # older than the window
    assert ring.live_bucket(650.0, now) == 65  # stamped in the future: its own bucket
    assert ring.live_bucket(669.9, now) == 66  # up to one span ahead
    assert ring.live_bucket(670.0, now) is None  # further ahead: not kept
    batch = make_batch(spec, [0, 1], [0.2, 0.9])
    rng = np.random.default_rng(3)
    for _ in range(200):  # add counts a batch exactly where live_bucket says, or refuses it
        eng = StreamEngine(spec)
        ring = eng.windows["1m"]
        now = float(rng.uniform(0, 10_000))
        t = now + float(rng.choice([-1, 1])) * float(rng.exponential(60.0))
        want = ring.live_bucket(t, now)
        if ring.too_far_ahead(t, now):
            with pytest.raises(InvalidInputError, match="timestamp"):
                eng.ingest(batch, timestamp=t, now=now)
        else:
            eng.ingest(batch, timestamp=t, now=now)
        assert list(ring.buckets()) == ([] if want is None else [want]), (t, now)


def test_unknown_window_and_equivalent_spelling():
    eng = StreamEngine(StreamSpec(task="binary", windows=("1h",)))
    with pytest.raises(UnknownWindowError, match="window: expected one of"):
        eng.state("5m")
    assert eng.state("60m").n_samples == 0
    with pytest.raises(InvalidInputError, match="windows"):
        StreamSpec(task="binary", windows=("1h", "60m"))
    with pytest.raises(InvalidInputError, match="timestamp"):
        eng.update([0], [0.5], timestamp=float("nan"))


def test_reset_forgets_everything():
    eng = StreamEngine(StreamSpec(task="binary", windows=("5m",)))
    eng.update([0, 1, 1], [0.1, 0.7, 0.8])
    eng.reset()
    assert eng.report()["n_samples"] == 0 and eng.report("5m")["n_samples"] == 0


@pytest.mark.parametrize("resolution", ["bins:4", "exact"])
def test_engine_bytes_round_trip_keeps_windows(resolution):
    from evalstream_server.engine import engine_from_bytes, engine_to_bytes

    spec = StreamSpec(
        task="multiclass", classes=("a", "b", "c"), windows=("5m", "1h"), resolution=resolution
    )
    clock = FakeClock()
    eng = StreamEngine(spec, clock=clock)
    for y, s in _batches(3, 40, spec):
        clock.t += 20.0
        eng.update(y, s)
    again = engine_from_bytes(engine_to_bytes(eng), clock=clock)
    for window in ("cumulative", "5m", "1h"):
        _assert_same(again.state(window), eng.state(window))
    assert again.report("5m") == eng.report("5m")
    # both keep working identically afterwards
    for y, s in _batches(4, 10, spec):
        clock.t += 30.0
        eng.update(y, s)
        again.update(y, s)
    _assert_same(again.state("5m"), eng.state("5m"))
    assert again.n_batches == eng.n_batches

"""Inside the band's mixed bins: the samples' positions (``counting.moment_delta``) give the pair
share of one-vs-rest AUC (``within.with_moments``).

The oracle is sklearn on the raw float32 scores, and for the moments themselves each score's
position computed in float64 from the layout's bin spans (exact: the spans are binary fractions).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
import sklearn.metrics as skm
from evalstream_server.engine import BinLayout, State, StreamSpec, compact, fastcount, make_batch
from evalstream_server.engine.counting import (
    MOMENT_BITS,
    MOMENT_OCTAVES,
    compute_delta,
    moment_band,
)
from evalstream_server.engine.ranking import auc_stats
from evalstream_server.engine.views import moments_of, view_of

from .test_within_bins import _flat

CLASSES = ("a", "b", "c")
# Flat softmax scores at K = 3, 300,000 samples: the moments put per-class, macro and micro AUC
# within 4e-7 of sklearn; the density slopes alone 5.8e-6 (class), 2.6e-6 (micro).
TOLERANCE = 1e-6


def _state(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None, spec=None) -> State:
    spec = spec or StreamSpec(task="multiclass", classes=CLASSES)
    state = State(spec)
    for lo in range(0, y.size, 20_000):
        ww = None if w is None else w[lo : lo + 20_000]
        state.update(make_batch(spec, y[lo : lo + 20_000], p[lo : lo + 20_000], ww))
    return state


def _sklearn(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    s = p.astype(np.float64)
    out = {name: skm.roc_auc_score(y == c, s[:, c]) for c, name in enumerate(CLASSES)}
    out["macro"] = skm.roc_auc_score(y, s, multi_class="ovr", average="macro")
    out["micro"] = skm.roc_auc_score(np.eye(3, dtype=bool)[y].ravel(), s.ravel())
    return out


def _aucs(state: State, metric: str = "roc_auc") -> dict[str, float]:
    from evalstream_server.engine.report import build_report

    auc = build_report(state)[metric]
    out = {name: auc["per_class"][name]["value"] for name in CLASSES}
    out["macro"] = auc["macro"]["value"]
    out["micro"] = auc["micro"]["value"]
    return out


def _slopes_only(state: State) -> dict[str, float]:
    """The AUCs the density slopes alone give on the state's counts."""
    view = view_of(state)
    q, mq = replace(view.ovr()[0], moments=None), replace(view.micro(), moments=None)
    per = auc_stats(q.pos, q.neg, q.atomic, q.slope)["value"]
    out = dict(zip(CLASSES, per.tolist(), strict=True))
    out["macro"] = float(per.mean())
    out["micro"] = float(auc_stats(mq.pos, mq.neg, mq.atomic, mq.slope)["value"][0])
    return out


@pytest.fixture(scope="module")
def flat() -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    y, p = _flat(1, 300_000)
    return y, p, _sklearn(y, p)


def test_flat_scores_auc_within_1e6_with_the_moments(flat) -> None:
    """Per class, macro and micro within 1e-6 of sklearn in the default resolution; the same
    values after bytes, and from two halves merged (whose ranking counts and moments equal the
    whole's, bit for bit)."""
    y, p, want = flat
    state = _state(y, p)
    got = _aucs(state)
    for key, value in want.items():
        assert abs(got[key] - value) < TOLERANCE, (key, got[key] - value)
    assert max(abs(v - want[k]) for k, v in _slopes_only(state).items()) > 2 * TOLERANCE
    # AP's within-bin interleaving takes the same order (per class 1.1e-5 with the slopes alone)
    ap = _aucs(state, "average_precision")
    s = p.astype(np.float64)
    for c, name in enumerate(CLASSES):
        want_ap = skm.average_precision_score(y == c, s[:, c])
        assert abs(ap[name] - want_ap) < 4e-6, (name, ap[name] - want_ap)
    again = State.from_bytes(state.to_bytes())
    assert again == state
    assert _aucs(again) == got
    half = y.size // 2 + 7
    merged = _state(y[:half], p[:half]).merge(_state(y[half:], p[half:]))
    for name in ("hist", "score_range", "moment", "moment_n"):  # (float sums: log loss)
        np.testing.assert_array_equal(merged.values(name), state.values(name))
    assert _aucs(merged) == got


def test_a_state_without_moments_falls_back_to_the_slopes(flat) -> None:
    """A state written before the moments existed (its bytes lack both fields) loads with none,
    and so does one merged with a newer state (moments covering part of the samples): the
    AUCs are the slopes' alone, exactly."""
    y, p, _ = flat
    n = 60_000
    old = _state(y[:n], p[:n])
    for name in ("moment", "moment_n"):
        del old.counts[name]
        old.carry.pop(name, None)
    loaded = State.from_bytes(old.to_bytes())
    assert not loaded.counts["moment"].any() and loaded.counts["moment_n"][0] == 0
    assert moments_of(loaded) is None
    assert _aucs(loaded) == _slopes_only(loaded)
    newer = _state(y[n : 2 * n], p[n : 2 * n])
    assert moments_of(newer) is not None
    both = loaded.merge(newer)
    assert moments_of(both) is None
    assert _aucs(both) == _slopes_only(both)


def _positions(p: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Band bin (or -1) and position (MOMENT_BITS bits, from the low end in the lower half, the
    high end in the upper half) of every float32 score, in float64 from the bins' spans."""
    layout = BinLayout(m)
    first, width = moment_band(m)
    b = layout.bin_of(p).astype(np.int64)
    lo, hi = layout.spans[0][b], layout.spans[1][b]
    s = p.astype(np.float64)
    upper = b > layout.half_bin
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(upper, (hi - s) / (hi - lo), (s - lo) / (hi - lo))
    t = np.floor(np.nan_to_num(frac) * 2**MOMENT_BITS)
    inside = (b >= first) & (b < first + width)
    edge = 2.0 ** -(MOMENT_OCTAVES + 1)
    assert np.all(inside == ((s >= edge) & (s <= 1 - edge)))
    return np.where(inside, b - first, -1), np.where(inside, t, 0.0)


@pytest.mark.parametrize("task", ["multiclass", "multilabel"])
@pytest.mark.parametrize("m", [2, 5, 7])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kernel", ["compiled", "numpy"])
def test_moments_are_the_positions_inside_the_bins(task, m, weighted, kernel) -> None:
    """Each (column, band bin) sums the weighted positions of its scores (row 0) and of its
    positives' (row 1); every sample counted in ``moment_n``."""
    rng = np.random.default_rng(m)
    n, C = 3000, 4
    if task == "multiclass":
        y = rng.integers(0, C, n)
        p = rng.dirichlet(np.full(C, 0.8), n).astype(np.float32)
        p[:5] = [0.5, 0.25, 0.125, 0.125]  # edges: 0.5 alone in its bin, octave ends
        positive = np.eye(C, dtype=bool)[y]
    else:
        y = rng.random((n, C)) < 0.3
        p = rng.random((n, C)).astype(np.float32)
        p[:3] = [[0.0, 1.0, 0.5, 2.0**-5], [1 - 2.0**-5, 0.75, 0.96875, 0.03125], [0.2] * 4]
        positive = y
    w = rng.lognormal(0.0, 1.0, n) if weighted else None
    classes = tuple("abcd")
    spec = StreamSpec(task=task, classes=classes, resolution=f"bins:{m}", probability_tolerance=0.5)
    batch = make_batch(spec, y, p, w)
    with fastcount.disabled() if kernel == "numpy" else contextlib.nullcontext():
        state = State(spec)
        state.add_delta(compute_delta(spec, batch))
    band, t = _positions(p, m)
    W = moment_band(m)[1]
    want = np.zeros((2, C, W))
    ww = np.ones(n) if w is None else w
    for c in range(C):
        inside = band[:, c] >= 0
        want[0, c] = np.bincount(band[inside, c], weights=(ww * t[:, c])[inside], minlength=W)
        keep = inside & positive[:, c]
        want[1, c] = np.bincount(band[keep, c], weights=(ww * t[:, c])[keep], minlength=W)
    got = state.values("moment")
    if weighted:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    else:
        np.testing.assert_array_equal(got, want)
        assert state.is_compact("moment")
    assert state.counts["moment_n"][0] == n


def test_windows_keep_no_moments_and_use_the_slopes(flat) -> None:
    """A window's buckets keep no moments (memory: README, "What a stream costs"): its report
    is the slopes' on its counts; the cumulative report of the same engine uses the moments."""
    from evalstream_server.engine import StreamEngine

    y, p, _ = flat
    n = 80_000
    spec = StreamSpec(task="multiclass", classes=CLASSES, windows=("1h",))
    eng = StreamEngine(spec, clock=lambda: 0.0)
    for lo in range(0, n, 20_000):
        eng.update(y[lo : lo + 20_000], p[lo : lo + 20_000])
    window = eng.state("1h")
    assert moments_of(window) is None
    assert _aucs(window) == _slopes_only(window)
    cumulative = eng.state()
    assert moments_of(cumulative) is not None
    want = _sklearn(y[:n], p[:n])
    got, alone = _aucs(cumulative), _slopes_only(cumulative)
    assert got != alone
    assert max(abs(got[k] - want[k]) for k in want) < max(abs(alone[k] - want[k]) for k in want)


def test_moment_sums_past_16_bits_stay_exact() -> None:
    """A cell whose sum passes 65,535 in one batch and over several (the compact field's carry,
    added by the kernel's one pass) holds the oracle's sum, the same as the numpy kernel's, and
    after bytes and a merge."""
    spec = StreamSpec(task="binary")
    n = 30_000
    # the last sixteenth of the bin [0.25 + 6 / 128, 0.25 + 7 / 128)
    p = np.full(n, 0.25 + 6 * 2.0**-7 + 31 * 2.0**-12, dtype=np.float32)
    y = np.arange(n) % 3 == 0
    _, t = _positions(p[:, None], 5)
    assert t[0, 0] == 15
    states = []
    for kernel in ("compiled", "numpy"):
        with fastcount.disabled() if kernel == "numpy" else contextlib.nullcontext():
            state = State(spec)
            for lo in (0, 20_000, 20_001):
                hi = {0: 20_000, 20_000: 20_001, 20_001: n}[lo]
                state.update(make_batch(spec, y[lo:hi].astype(int), p[lo:hi]))
        states.append(state)
    for state in states:
        assert state.is_compact("moment") and state.carry["moment"]
        got = state.values("moment")
        assert got[0].sum() == 15 * n and got[1].sum() == 15 * int(y.sum())
        assert np.count_nonzero(got) == 2
    np.testing.assert_array_equal(states[0].values("moment"), states[1].values("moment"))
    again = State.from_bytes(states[0].to_bytes())
    np.testing.assert_array_equal(again.values("moment"), states[0].values("moment"))
    both = states[0].merge(states[1])
    np.testing.assert_array_equal(both.values("moment"), 2 * states[0].values("moment"))


def test_negative_sums_are_refused_before_anything_is_added() -> None:
    """A dense delta with a negative value is not counts: ``compact.add_dense`` (the moments'
    way into a compact field) adds none of it (the state then widens the field instead)."""
    target = np.zeros(4, np.uint16)
    carry: dict[int, int] = {}
    assert not compact.add_dense(target, carry, np.array([3, -1, 2, 0], np.int32))
    assert not target.any() and not carry

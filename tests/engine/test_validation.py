"""Bad input: a ValueError subclass naming the field, the expected and the received; no change."""

from __future__ import annotations

import numpy as np
import pytest
from evalstream_server.engine import (
    CapacityError,
    InvalidInputError,
    Resolution,
    StreamEngine,
    StreamSpec,
)

MC = StreamSpec(task="multiclass", classes=("a", "b", "c"))
ML = StreamSpec(task="multilabel", classes=("x", "y"))
BIN = StreamSpec(task="binary")
GOOD = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]], dtype=np.float32)

CASES = [
    (
        "nan",
        MC,
        [0, 1],
        np.array([[np.nan, 0.5, 0.5], [0.6, 0.2, 0.2]]),
        None,
        "y_score",
        r"finite numbers.*1 NaN",
    ),
    (
        "inf",
        MC,
        [0, 1],
        np.array([[np.inf, 0.5, 0.5], [0.6, 0.2, 0.2]]),
        None,
        "y_score",
        r"1 infinite",
    ),
    ("columns", MC, [0, 1], np.ones((2, 4)) / 4, None, "y_score", r"shape \(n, 3\).*\(2, 4\)"),
    ("label range", MC, [0, 3], GOOD, None, "y_true", r"\[0, 2\].*1 out of range.*\[3\]"),
    ("negative label", MC, [-1, 0], GOOD, None, "y_true", r"out of range"),
    (
        "multi-hot on multiclass",
        MC,
        [[1, 0, 1], [0, 1, 0]],
        GOOD,
        None,
        "y_true",
        r"1-D array of class indices.*multilabel",
    ),
    (
        "indices on multilabel",
        ML,
        [0, 1],
        np.array([[0.1, 0.9], [0.8, 0.3]]),
        None,
        "y_true",
        r"multi-hot matrix.*multiclass",
    ),
    (
        "multilabel values",
        ML,
        [[0, 2], [1, 0]],
        np.array([[0.1, 0.9], [0.8, 0.3]]),
        None,
        "y_true",
        r"0 or 1",
    ),
    ("length", MC, [0, 1, 2], GOOD, None, "y_score", r"3 rows.*received 2 rows"),
    (
        "rows not summing",
        MC,
        [0, 1],
        np.array([[0.2, 0.3, 0.6], [0.6, 0.2, 0.2]]),
        None,
        "y_score",
        r"sum to 1.*logits",
    ),
    (
        "out of unit interval",
        BIN,
        [0, 1],
        np.array([-0.5, 2.0]),
        None,
        "y_score",
        r"\[0, 1\].*logits",
    ),
    ("negative weight", MC, [0, 1], GOOD, [1.0, -2.0], "sample_weight", r"non-negative"),
    ("weight length", MC, [0, 1], GOOD, [1.0], "sample_weight", r"shape \(2,\)"),
    ("empty", MC, np.zeros(0, dtype=int), np.zeros((0, 3)), None, "y_true", r"at least 1"),
    (
        "strings as scores",
        MC,
        [0, 1],
        [["a", "b", "c"], ["d", "e", "f"]],
        None,
        "y_score",
        r"numeric",
    ),
    ("unknown class name", MC, ["a", "zebra"], GOOD, None, "y_true", r"zebra"),
    ("binary label 2", BIN, [0, 2], np.array([0.1, 0.2]), None, "y_true", r"\[0, 1\]"),
    ("binary 3 columns", BIN, [0, 1], np.ones((2, 3)) / 3, None, "y_score", r"\(n, 2\)"),
    ("fractional labels", MC, np.array([0.5, 1.0]), GOOD, None, "y_true", r"integer"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_batch_is_rejected_clearly_and_changes_nothing(case):
    _, spec, y, s, w, field, pattern = case
    eng = StreamEngine(spec)
    ok_y = [[1, 0], [0, 1]] if spec.task == "multilabel" else [0, 1]
    ok_s = {
        "multiclass": GOOD,
        "multilabel": np.array([[0.9, 0.1], [0.2, 0.7]]),
        "binary": np.array([0.3, 0.8]),
    }[spec.task]
    eng.update(ok_y, ok_s)
    before = eng.state().to_bytes()
    with pytest.raises(InvalidInputError) as info:
        eng.update(y, s, sample_weight=w)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field == field
    assert err.expected and err.received
    assert str(err).startswith(f"{field}: expected ")
    import re

    assert re.search(pattern, str(err)), str(err)
    assert eng.state().to_bytes() == before


def test_exact_resolution_cap_is_a_clear_error_and_changes_nothing():
    spec = StreamSpec(task="binary", resolution=Resolution("exact", max_samples=5))
    eng = StreamEngine(spec)
    eng.update([0, 1, 0], [0.1, 0.9, 0.4])
    before = eng.state().to_bytes()
    with pytest.raises(CapacityError, match=r"at most 5 samples.*3 kept \+ 3.*binned"):
        eng.update([0, 1, 1], [0.2, 0.8, 0.6])
    assert eng.state().to_bytes() == before


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"task": "regression"}, "task"),
        ({"task": "multiclass", "classes": ("a",)}, "classes"),
        ({"task": "multiclass", "classes": ("a", "a")}, "classes"),
        ({"task": "binary", "classes": ("a", "b", "c")}, "classes"),
        ({"task": "binary", "scores": "probs"}, "scores"),
        ({"task": "binary", "windows": ("5 minutes",)}, "windows"),
        ({"task": "binary", "thresholds": (1.5,)}, "thresholds"),
        (
            {"task": "multilabel", "classes": ("a", "b"), "thresholds": (0.1, 0.2, 0.3)},
            "thresholds",
        ),
        ({"task": "multiclass", "classes": ("a", "b"), "thresholds": (0.5,)}, "thresholds"),
        ({"task": "binary", "resolution": "bins:99"}, "resolution.mantissa_bits"),
        ({"task": "binary", "resolution": "fuzzy"}, "resolution"),
        ({"task": "binary", "top_k": 0}, "top_k"),
    ],
)
def test_bad_spec_names_the_field(kwargs, field):
    with pytest.raises(InvalidInputError) as info:
        StreamSpec(**kwargs)
    assert info.value.field == field


def test_logits_are_accepted_where_probabilities_would_be_refused():
    spec = StreamSpec(task="multiclass", classes=("a", "b", "c"), scores="logits")
    eng = StreamEngine(spec)
    eng.update([0, 2], np.array([[5.0, -3.0, 1.0], [0.0, 2.0, 40.0]]))
    assert eng.report()["n_samples"] == 2


def test_negative_zero_scores_are_counted_as_zero():
    eng = StreamEngine(StreamSpec(task="binary", resolution="bins:3"))
    eng.update([0, 1], np.array([-0.0, 0.7], dtype=np.float32))
    assert eng.report()["n_samples"] == 2
    assert eng.state().counts["all"][0, 0] == 1  # bin 0 holds the -0.0

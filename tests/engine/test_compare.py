"""Comparisons (engine/compare.py): a simulation with known truth, and the parts against
independent computations.

* Null: a window and the rest of its reference drawn from the same model: each test rejects at
  most about alpha = 5% of the time (seeded replicates; the bound allows three binomial standard
  errors), and Benjamini-Hochberg across classes keeps the share of replicates with any class
  declared changed near alpha too.
* Power: class ``c``'s scores lose signal in the window (logit boost 1.5 -> 0.8: its one-vs-rest
  AUC falls by about 0.08); the per-class AUC test rejects in at least 95% of the replicates and
  the macro AUC test in at least 95% too (the Cauchy-Schwarz bound it used before: 90%).
* The averaged AUC differences' standard errors are right, not merely conservative: under the
  null, ``z`` of the macro, weighted and micro AUC difference has variance close to 1 across
  seeded replicates (the bounds gave 0.5-0.6), whether the correlations come from every row, the
  row samples, or the rest's rows taken out of the reference's sample, and for multilabel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from evalstream_server.engine import State, StreamSpec, make_batch
from evalstream_server.engine.compare import benjamini_hochberg, compare, subtract
from evalstream_server.engine.layout import BinLayout
from evalstream_server.engine.row_sample import row_keys
from sklearn.metrics import roc_auc_score

from .data import three_classes

SPEC = StreamSpec("multiclass", classes=("a", "b", "c"))
ALPHA = 0.05


def state_of(y: np.ndarray, p: np.ndarray) -> State:
    s = State(SPEC)
    s.update(make_batch(SPEC, y, p))
    return s


def _replicates(seed: int, R: int, window_signal, n: int = 1500, rest_n: int = 4500):
    rng = np.random.default_rng(seed)
    for _ in range(R):
        w = state_of(*three_classes(rng, n, window_signal))
        rest = state_of(*three_classes(rng, rest_n, (1.5, 1.5, 1.5)))
        yield compare(w, rest.merge(w), "rest", alpha=ALPHA)


def test_same_model_rejects_at_most_about_alpha() -> None:
    R = 150
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / R)
    leaves = {
        ("roc_auc", "macro"): 0,
        ("roc_auc", "weighted"): 0,
        ("roc_auc", "micro"): 0,
        ("recall", "macro"): 0,
        ("f1", "macro"): 0,
        ("precision", "macro"): 0,
        ("recall", "micro"): 0,
    }
    per_class = {m: np.zeros(3) for m in ("roc_auc", "recall", "precision", "f1")}
    any_class = {m: 0 for m in per_class}
    for doc in _replicates(11, R, (1.5, 1.5, 1.5)):
        for metric, avg in leaves:
            leaves[metric, avg] += doc[metric][avg]["p_value"] <= ALPHA
        for metric in per_class:
            cls = doc[metric]["per_class"]
            per_class[metric] += [cls[c]["p_value"] <= ALPHA for c in ("a", "b", "c")]
            any_class[metric] += any(cls[c]["significant"] for c in ("a", "b", "c"))
    for key, count in leaves.items():
        assert count / R <= bound, (key, count / R)
    for metric in per_class:
        assert (per_class[metric] / R <= bound).all(), (metric, per_class[metric] / R)
        assert any_class[metric] / R <= bound, (metric, any_class[metric] / R)


def test_a_real_drop_is_rejected() -> None:
    R = 60
    rng = np.random.default_rng(5)  # the drop's size, measured on large samples
    y0, p0 = three_classes(rng, 200_000, (1.5, 1.5, 1.5))
    y1, p1 = three_classes(rng, 200_000, (1.5, 1.5, 0.8))
    drop = roc_auc_score(y1 == 2, p1[:, 2]) - roc_auc_score(y0 == 2, p0[:, 2])
    assert -0.10 < drop < -0.06  # the stated size
    auc_c = macro = 0
    for doc in _replicates(12, R, (1.5, 1.5, 0.8)):
        leaf = doc["roc_auc"]["per_class"]["c"]
        auc_c += leaf["significant"] and leaf["value"] < 0
        macro += doc["roc_auc"]["macro"]["significant"] and doc["roc_auc"]["macro"]["value"] < 0
        assert leaf["ci95"][0] <= leaf["value"] <= leaf["ci95"][1]
    assert auc_c / R >= 0.95 and macro / R >= 0.95, (auc_c / R, macro / R)


@pytest.mark.parametrize(
    "relation, binned",
    [
        ("rest", ()),  # both keep every row: the rest's rows exactly
        ("rest", ("reference",)),  # the reference's row sample less the window's rows
        ("rest", ("window", "reference")),  # row samples on both sides
        ("independent", ("window", "reference")),
        ("multilabel", ("window", "reference")),  # rest, correlated labels
    ],
)
def test_null_z_of_averaged_auc_differences_has_variance_one(relation, binned) -> None:
    """Same model in the window and the reference: z = difference / se of the macro, weighted
    and micro AUC is about N(0, 1) across replicates; the variance of 300 draws of N(0, 1)
    falls in (0.8, 1.25) with probability above 0.99 (its standard deviation is 0.08)."""
    rng = np.random.default_rng(21)
    R, n = 300, 600
    spec = SPEC
    draw = lambda m: three_classes(rng, m, (1.5, 1.5, 1.5))  # noqa: E731
    if relation == "multilabel":
        spec = StreamSpec("multilabel", classes=("a", "b", "c"))

        def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
            u = rng.random(m)[:, None]  # a sample's labels and scores move together
            Y = (rng.random((m, 3)) < 0.15 + 0.3 * u).astype(int)
            S = 0.3 * Y + 0.5 * rng.beta(2, 5, (m, 3)) + 0.3 * u
            return Y, np.clip(S, 0, 1).astype(np.float32)

    z: dict[str, list[float]] = {"macro": [], "weighted": [], "micro": []}
    for _ in range(R):
        window, other = State(spec), State(spec)
        window.update(make_batch(spec, *draw(n)))
        other.update(make_batch(spec, *draw(3 * n)))
        reference = other if relation == "independent" else other.merge(window)
        if "window" in binned:
            window.to_bins()  # as past the raw rows' cap: the row sample answers
        if "reference" in binned:
            reference.to_bins()
        doc = compare(window, reference, "independent" if relation == "independent" else "rest")
        for avg, values in z.items():
            values.append(doc["roc_auc"][avg]["z"])
    for avg, values in z.items():
        assert 0.8 < np.var(values) < 1.25, (avg, np.var(values))


def test_the_rests_row_sample_is_the_bottom_of_the_rests_rows() -> None:
    """Taken out of the reference's row sample, the window's rows leave the rest's own sample
    (the rows of smallest key), cut at the reference's largest kept key."""
    rng = np.random.default_rng(8)
    window = state_of(*three_classes(rng, 500, (1.5, 1.5, 1.5)))
    rest = state_of(*three_classes(rng, 1500, (1.5, 1.5, 1.5)))
    y, p = three_classes(rng, 20_000, (1.5, 1.5, 1.5))
    low = np.argsort(row_keys(y, p))[:6]  # rows sure to be sampled, on both sides (their
    for s in (window, rest, rest):  # squared weights add; the rest's part stays)
        s.update(make_batch(SPEC, y[low], p[low]))
    reference = rest.merge(window)
    for s in (window, rest, reference):
        s.to_bins()
    got = subtract(reference, window).rows
    assert got is not None and rest.sample is not None
    keys, onehot, bins, wsq = got
    k = keys.size
    assert 0 < k < 64
    assert reference.sample is not None and keys[-1] <= reference.sample.keys[63]
    own_onehot, own_bins, own_wsq = rest.sample.rows()
    np.testing.assert_array_equal(keys, rest.sample.keys[:k])
    np.testing.assert_array_equal(onehot, own_onehot[:k])
    np.testing.assert_array_equal(bins, own_bins[:k])
    np.testing.assert_allclose(wsq, own_wsq[:k], rtol=1e-6)
    assert set(row_keys(y[low], p[low])) <= set(keys)


def test_rest_is_the_reference_less_the_window() -> None:
    rng = np.random.default_rng(3)
    w, rest = (
        state_of(*three_classes(rng, 800, (1.5, 1.5, 1.0))),
        state_of(*three_classes(rng, 2000, (1.5,) * 3)),
    )
    a = compare(w, rest.merge(w), "rest")
    b = compare(w, rest, "independent")
    for metric in ("roc_auc", "recall", "precision", "f1"):
        for key, leaf in a[metric].items():
            leaves = leaf.values() if key == "per_class" else [leaf]
            other = b[metric][key].values() if key == "per_class" else [b[metric][key]]
            for x, z in zip(leaves, other, strict=True):
                assert x["value"] == pytest.approx(z["value"], abs=1e-12)
                assert x["p_value"] == pytest.approx(z["p_value"], rel=1e-9)


def test_per_class_auc_difference_is_sklearns_on_the_binned_scores() -> None:
    rng = np.random.default_rng(4)
    yw, pw = three_classes(rng, 700, (1.5, 1.5, 1.0))
    yr, pr = three_classes(rng, 1400, (1.5, 1.5, 1.5))
    doc = compare(state_of(yw, pw), state_of(yr, pr), "independent")
    for i, c in enumerate(("a", "b", "c")):
        leaf = doc["roc_auc"]["per_class"][c]
        want = roc_auc_score(yw == i, pw[:, i]) - roc_auc_score(yr == i, pr[:, i])
        assert leaf["value"] == pytest.approx(want, abs=2e-3)  # binned scores (bounds 1e-3)
        want_recall = np.mean(pw[yw == i].argmax(1) == i) - np.mean(pr[yr == i].argmax(1) == i)
        assert doc["recall"]["per_class"][c]["value"] == pytest.approx(want_recall, abs=1e-12)


def test_benjamini_hochberg_against_the_step_up_rule() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = int(rng.integers(1, 12))
        p = rng.random(m) ** rng.uniform(0.5, 3)
        order = np.sort(p)
        passing = np.flatnonzero(order <= ALPHA * np.arange(1, m + 1) / m)
        cut = order[passing[-1]] if passing.size else -1.0
        np.testing.assert_array_equal(benjamini_hochberg(p) <= ALPHA, p <= cut)
    assert np.isnan(benjamini_hochberg(np.array([np.nan, 0.01]))[0])


@pytest.mark.parametrize("task", ["binary", "multilabel"])
def test_binary_and_multilabel_differences_are_sklearns(task: str) -> None:
    from sklearn.metrics import f1_score, recall_score

    rng = np.random.default_rng(9)
    spec = StreamSpec(task, classes=("a", "b", "c")) if task == "multilabel" else StreamSpec(task)
    C = 3 if task == "multilabel" else 1

    def draw_labels(n: int, signal: float):
        Y = (rng.random((n, C)) < 0.2).astype(int)
        S = np.clip(signal * Y + rng.beta(2, 5, (n, C)), 0, 1).astype(np.float32)
        return (Y if task == "multilabel" else Y[:, 0]), S

    (ya, pa), (yb, pb) = draw_labels(1500, 0.3), draw_labels(2500, 0.4)
    states = []
    for y, p in ((ya, pa), (yb, pb)):
        s = State(spec)
        s.update(make_batch(spec, y, p))
        states.append(s)
    doc = compare(*states, "independent")
    for i, name in enumerate(doc["recall"]["per_class"]):
        ta, tb = (ya[:, i], yb[:, i]) if task == "multilabel" else (ya, yb)
        want = recall_score(ta, pa[:, i] >= 0.5) - recall_score(tb, pb[:, i] >= 0.5)
        assert doc["recall"]["per_class"][name]["value"] == pytest.approx(want, abs=1e-12)
        auc = roc_auc_score(ta, pa[:, i]) - roc_auc_score(tb, pb[:, i])
        assert doc["roc_auc"]["per_class"][name]["value"] == pytest.approx(auc, abs=2e-3)
        assert doc["roc_auc"]["per_class"][name]["significant"]  # a drop of about 0.1
    if task == "multilabel":
        micro = f1_score(ya, pa >= 0.5, average="micro") - f1_score(yb, pb >= 0.5, average="micro")
        assert doc["f1"]["micro"]["value"] == pytest.approx(micro, abs=1e-12)
        assert doc["recall"]["macro"]["significant"] and doc["recall"]["macro"]["value"] < 0
    else:
        assert "macro" not in doc["roc_auc"]  # one class: the per-class leaf is the figure


@pytest.mark.parametrize("scores", ["flat", "bin edges"])
def test_each_sides_auc_is_the_reports(scores: str) -> None:
    """A comparison's window and reference AUC (per class, macro, weighted, micro) are the values
    each side's own report gives: tie groups stepped and same-bin pairs shared as the report's
    binned view does (within.slopes), not one half each. Flat scores need the slopes; scores at
    their bins' lower edges need the tie groups (slopes across them would move the value)."""
    from evalstream_server.engine.report import build_report

    rng = np.random.default_rng(11)
    states = []
    for n, signal in ((6000, (0.6, 0.6, 0.4)), (9000, (0.6, 0.6, 0.6))):
        y = rng.choice(3, n, p=[0.6, 0.3, 0.1])
        z = rng.normal(0.0, 1.0, (n, 3))
        z[np.arange(n), y] += np.asarray(signal)[y]
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # weak logits: flat scores
        if scores == "bin edges":  # one value a bin: tie groups side by side, stepped, no slope
            layout = BinLayout()
            p[:, 1:] = layout.lower_edges[layout.bin_of(p[:, 1:].astype(np.float32))]
            p[:, 0] = 1.0 - p[:, 1:].sum(axis=1)  # the first column keeps the row's sum
        s = state_of(y, p.astype(np.float32))
        assert not s.is_exact  # past the cap: binned
        states.append(s)
    doc = compare(*states, "independent")
    reports = [build_report(s) for s in states]
    for side, report in zip(("window", "reference"), reports, strict=True):
        for c in ("a", "b", "c"):
            got = doc["roc_auc"]["per_class"][c][side]
            assert got == pytest.approx(report["roc_auc"]["per_class"][c]["value"], abs=1e-12)
        for avg in ("macro", "weighted", "micro"):
            got = doc["roc_auc"][avg][side]
            assert got == pytest.approx(report["roc_auc"][avg]["value"], abs=1e-12)

"""Estimated metrics before labels (issue 16) against NannyML's CBPE, on the same seeded data.

A 3-class, over-confident model (its scores are sharper than the truth) under covariate shift:
a labelled reference of ``--reference`` rows, then ``--windows`` windows of ``--window-rows``
predictions, the inputs moving a little further each window (the class mix with them; the class
given the input does not move). Per window it prints the macro F1, macro recall and macro ROC AUC
that evalstream estimates (its 95% interval), that NannyML's ``CBPE`` estimates (fitted on the
same reference, one chunk per window) and the realized values, then the time per window of each.

evalstream's time is the ``estimated`` section of a report (calibration fit from the reference's
counts, the estimate, its 200 draws) on a state that already counts the window; NannyML's is its
``estimate`` over a data frame of the window's rows (its ``fit`` on the reference is timed apart).

NannyML is optional, not a dependency of evalstream, of its tests or of the ``bench`` extra:
``nannyml==0.13.1`` installs on Python 3.11 with numpy 2.4.6 and scikit-learn 1.9.1, but not
under ``constraints.txt`` (it needs ``python-dateutil<3``, the constraints pin 4.0.0), and it
imports ``statsmodels`` without declaring it. So it goes in a venv of its own::

    python -m venv /tmp/nml && /tmp/nml/bin/pip install nannyml==0.13.1 statsmodels \
        numpy==2.4.6 scikit-learn==1.9.1
    PYTHONPATH=service:client /tmp/nml/bin/python bench/cbpe.py

Without it the NannyML columns say so: ``.venv/bin/python bench/cbpe.py``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import sklearn.metrics as skm
from evalstream_server.engine.batch import Batch
from evalstream_server.engine.estimate_report import estimated_section
from evalstream_server.engine.report import build_report
from evalstream_server.engine.spec import StreamSpec
from evalstream_server.engine.state import State

CLASSES = ("major", "middle", "minor")
_W = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
_B = np.array([1.0, 0.5, -2.0])


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def world(rng: np.random.Generator, n: int, shift: tuple[float, float]):
    """Labels from softmax(W x + b) with x ~ N(shift, 1); scores softmax(1.6 (W x + b))."""
    x = rng.normal(size=(n, 2)) + np.asarray(shift)
    logits = x @ _W.T + _B
    truth = _softmax(logits)
    y = (truth.cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
    return y, _softmax(1.6 * logits).astype(np.float32)


def realized(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    pred = p.argmax(axis=1)
    return {
        "f1": skm.f1_score(y, pred, average="macro"),
        "recall": skm.recall_score(y, pred, average="macro"),
        "roc_auc": skm.roc_auc_score(y, p.astype(np.float64), multi_class="ovr", average="macro"),
    }


def _frame(y: np.ndarray, p: np.ndarray):
    import pandas as pd

    data = {f"p_{c}": p[:, i].astype(np.float64) for i, c in enumerate(CLASSES)}
    data["y_pred"] = np.array(CLASSES)[p.argmax(axis=1)]
    data["y_true"] = np.array(CLASSES)[y]
    return pd.DataFrame(data)


def nannyml_estimator():
    """NannyML's CBPE for this data, or the reason it cannot run here."""
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # it would phone home otherwise
    try:
        import nannyml as nml
    except ImportError as exc:
        return None, f"nannyml not installed ({exc.name}): pip install nannyml"
    estimator = nml.CBPE(
        problem_type="classification_multiclass",
        y_pred_proba={c: f"p_{c}" for c in CLASSES},
        y_pred="y_pred",
        y_true="y_true",
        metrics=["f1", "recall", "roc_auc"],
        chunk_number=1,
    )
    return estimator, getattr(nml, "__version__", "?")


def _nannyml_values(results) -> dict[str, float]:
    df = results.filter(period="analysis").to_df()
    out = {}
    for metric in ("f1", "recall", "roc_auc"):
        col = [c for c in df.columns if c[0] == metric and c[-1] == "value"]
        out[metric] = float(df[col[0]].iloc[-1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=int, default=20_000)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--window-rows", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes (the smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.reference, args.windows, args.window_rows = 5_000, 2, 2_000
    warnings.filterwarnings("ignore")  # NannyML's and pandas' deprecation notes
    rng = np.random.default_rng(args.seed)
    spec = StreamSpec("multiclass", classes=CLASSES)
    y_ref, p_ref = world(rng, args.reference, (0.0, 0.0))
    reference = State(spec)
    reference.update(Batch(y_ref, p_ref, None))
    estimator, nml_info = nannyml_estimator()
    fit_s = None
    if estimator is not None:
        t = time.perf_counter()
        estimator.fit(_frame(y_ref, p_ref))
        fit_s = time.perf_counter() - t
    print(
        f"reference {args.reference} labelled rows; {args.windows} windows of "
        f"{args.window_rows} predictions; NannyML: {nml_info}"
    )
    print()
    columns = ["window", "metric (macro)", "realized", "evalstream", "evalstream 95% interval"]
    print("| " + " | ".join([*columns, "NannyML CBPE"]) + " |")
    print("|---|---|---|---|---|---|")
    ours_s, theirs_s = [], []
    for w in range(args.windows):
        shift = (0.15 * w, -0.2 * w)
        y, p = world(rng, args.window_rows, shift)
        state = State(spec)
        state.update(Batch(y, p, None))
        dense = state.as_float()
        report = build_report(dense, window="1h", reference=reference)
        t = time.perf_counter()
        est = estimated_section(dense, reference, report)
        ours_s.append(time.perf_counter() - t)
        theirs = None
        if estimator is not None:
            frame = _frame(y, p).drop(columns=["y_true"])
            t = time.perf_counter()
            theirs = _nannyml_values(estimator.estimate(frame))
            theirs_s.append(time.perf_counter() - t)
        truth = realized(y, p)
        for metric in ("f1", "recall", "roc_auc"):
            leaf = est[metric]["macro"]
            lo, hi = leaf["ci95"]
            other = "-" if theirs is None else f"{theirs[metric]:.4f}"
            print(
                f"| {w} | {metric} | {truth[metric]:.4f} | {leaf['value']:.4f} | "
                f"[{lo:.4f}, {hi:.4f}] | {other} |"
            )
    ours = float(np.median(ours_s))
    print()
    print("| what (one window) | ms (median) | evalstream ÷ this |")
    print("|---|---|---|")
    print(f"| evalstream estimated section | {1e3 * ours:.1f} | 1.00 |")
    if theirs_s:
        theirs_med = float(np.median(theirs_s))
        print(f"| NannyML CBPE estimate | {1e3 * theirs_med:.1f} | {ours / theirs_med:.2f} |")
        print(f"| NannyML CBPE fit on the reference (once) | {1e3 * fit_s:.1f} | - |")
    else:
        print(f"| NannyML CBPE | - | - ({nml_info}) |")


if __name__ == "__main__":
    main()

"""sklearn as the oracle: the expected value of every report leaf on raw data.

Conventions where sklearn raises or returns a placeholder (documented in the README): AUC and AP
of a class without positives or negatives are undefined (None) and averages run over the defined
classes; MCC and kappa are None where sklearn divides by zero.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.metrics as skm


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def _defined_average(values: list, weights: np.ndarray) -> float | None:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    ok = ~np.isnan(v)
    if not ok.any() or weights[ok].sum() <= 0:
        return None
    return float(np.average(v[ok], weights=weights[ok]))


def _binary_rank(y: np.ndarray, s: np.ndarray, w) -> tuple[float | None, float | None]:
    wp = np.ones(len(y)) if w is None else np.asarray(w)
    has_pos, has_neg = wp[y == 1].sum() > 0, wp[y == 0].sum() > 0
    auc = _quiet(skm.roc_auc_score, y, s, sample_weight=w) if has_pos and has_neg else None
    # AP needs positives only (all-positive windows give 1.0)
    ap = _quiet(skm.average_precision_score, y, s, sample_weight=w) if has_pos else None
    return (None if auc is None else float(auc)), (None if ap is None else float(ap))


def expected(task: str, y, p32: np.ndarray, w=None, thresholds=None, k_max=0) -> dict:
    """Map of ``"group.key"`` -> expected value (None for undefined)."""
    p = p32.astype(np.float64)
    out: dict = {}
    if task == "binary":
        s = p.reshape(-1)
        thr = 0.5 if thresholds is None else thresholds[0]
        pred = (p32.reshape(-1) >= np.float32(thr)).astype(int)
        auc, ap = _binary_rank(y, s, w)
        out["roc_auc.binary"] = auc
        out["average_precision.binary"] = ap
        labels = sorted(set(np.unique(y)) | set(np.unique(pred)))
        for name, fn in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            out[f"{name}.binary"] = _quiet(fn, y, pred, sample_weight=w, zero_division=0)
            for avg in ("macro", "weighted", "micro"):
                out[f"{name}.{avg}"] = _quiet(
                    fn, y, pred, average=avg, labels=labels, sample_weight=w, zero_division=0
                )
        out["accuracy"] = skm.accuracy_score(y, pred, sample_weight=w)
        out["balanced_accuracy"] = _quiet(skm.balanced_accuracy_score, y, pred, sample_weight=w)
        out["log_loss"] = _quiet(skm.log_loss, y, p32.reshape(-1), sample_weight=w, labels=[0, 1])
        out["brier_score"] = skm.brier_score_loss(y, p32.reshape(-1), sample_weight=w)
        cm = skm.confusion_matrix(y, pred, labels=[0, 1], sample_weight=w)
        _mcc_kappa(out, y, pred, w, cm)
        return out
    if task == "multiclass":
        K = p.shape[1]
        pred = p32.argmax(axis=1)
        Y = np.eye(K, dtype=int)[y]
        support = np.bincount(y, weights=w, minlength=K)
        aucs, aps = [], []
        for c in range(K):
            a, b = _binary_rank(Y[:, c], p[:, c], w)
            aucs.append(a)
            aps.append(b)
            out[f"roc_auc.per_class.{c}"] = a
            out[f"average_precision.per_class.{c}"] = b
        for key, vals in (("roc_auc", aucs), ("average_precision", aps)):
            out[f"{key}.macro"] = _defined_average(vals, np.ones(K))
            out[f"{key}.weighted"] = _defined_average(vals, support)
        out["roc_auc.micro"] = _binary_rank(
            Y.ravel(), p.ravel(), None if w is None else np.repeat(w, K)
        )[0]
        out["average_precision.micro"] = _binary_rank(
            Y.ravel(), p.ravel(), None if w is None else np.repeat(w, K)
        )[1]
        if w is None:  # sklearn's one-vs-one takes no weights
            pair_vals, pair_w = [], []
            for i in range(K):
                for j in range(i + 1, K):
                    m = (y == i) | (y == j)
                    if not ((y == i).any() and (y == j).any()):
                        pair_vals.append(None)
                        pair_w.append(0.0)
                        continue
                    a_ij = skm.roc_auc_score(y[m] == i, p[m, i])
                    a_ji = skm.roc_auc_score(y[m] == j, p[m, j])
                    pair_vals.append(0.5 * (a_ij + a_ji))
                    pair_w.append(float(m.sum()))
            out["roc_auc.ovo_macro"] = _defined_average(pair_vals, np.ones(len(pair_vals)))
            out["roc_auc.ovo_weighted"] = _defined_average(pair_vals, np.array(pair_w))
        labels = sorted(set(np.unique(y)) | set(np.unique(pred)))
        for name, fn in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            per = _quiet(
                fn, y, pred, average=None, labels=list(range(K)), sample_weight=w, zero_division=0
            )
            for c in labels:
                out[f"{name}.per_class.{c}"] = float(per[c])
            for avg in ("macro", "weighted", "micro"):
                out[f"{name}.{avg}"] = _quiet(
                    fn, y, pred, average=avg, labels=labels, sample_weight=w, zero_division=0
                )
        out["accuracy"] = skm.accuracy_score(y, pred, sample_weight=w)
        out["balanced_accuracy"] = _quiet(skm.balanced_accuracy_score, y, pred, sample_weight=w)
        out["hamming_loss"] = skm.hamming_loss(y, pred, sample_weight=w)
        for k in range(1, k_max + 1):
            out[f"top_k_accuracy.{k}"] = skm.top_k_accuracy_score(
                y, p32, k=k, labels=list(range(K)), sample_weight=w
            )
        out["log_loss"] = _quiet(skm.log_loss, y, p32, sample_weight=w, labels=list(range(K)))
        out["brier_score"] = _quiet(
            skm.brier_score_loss, y, p32, sample_weight=w, labels=list(range(K))
        )
        cm = skm.confusion_matrix(y, pred, labels=list(range(K)), sample_weight=w)
        out["confusion_matrix"] = cm
        _mcc_kappa(out, y, pred, w, cm)
        return out
    # multilabel
    Y = np.asarray(y)
    L = Y.shape[1]
    thr = np.full(L, 0.5) if thresholds is None else np.asarray(thresholds)
    pred = (p32 >= thr.astype(np.float32)).astype(int)
    support = (Y * (1 if w is None else w[:, None])).sum(axis=0)
    aucs, aps = [], []
    for c in range(L):
        a, b = _binary_rank(Y[:, c], p[:, c], w)
        aucs.append(a)
        aps.append(b)
        out[f"roc_auc.per_class.{c}"] = a
        out[f"average_precision.per_class.{c}"] = b
    for key, vals in (("roc_auc", aucs), ("average_precision", aps)):
        out[f"{key}.macro"] = _defined_average(vals, np.ones(L))
        out[f"{key}.weighted"] = _defined_average(vals, support)
    wr = None if w is None else np.repeat(w, L)
    out["roc_auc.micro"], out["average_precision.micro"] = _binary_rank(Y.ravel(), p.ravel(), wr)
    rows_auc = [(i, _row_metric("auc", Y[i], p[i])) for i in range(len(Y)) if 0 < Y[i].sum() < L]
    if rows_auc:  # sklearn raises on rows whose labels are all equal: evalstream skips them
        idx = np.array([r[0] for r in rows_auc])
        ww = np.ones(len(Y)) if w is None else w
        out["roc_auc.samples"] = float(np.average([r[1] for r in rows_auc], weights=ww[idx]))
    else:
        out["roc_auc.samples"] = None
    if len(Y) and (w is None or w.sum() > 0):  # sklearn itself: rows without a positive score 0
        out["average_precision.samples"] = float(
            _quiet(skm.average_precision_score, Y, p, average="samples", sample_weight=w)
        )
    else:
        out["average_precision.samples"] = None
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        per = _quiet(fn, Y, pred, average=None, sample_weight=w, zero_division=0)
        for c in range(L):
            out[f"{name}.per_class.{c}"] = float(per[c])
        for avg in ("macro", "weighted", "micro", "samples"):
            out[f"{name}.{avg}"] = _quiet(
                fn, Y, pred, average=avg, sample_weight=w, zero_division=0
            )
    out["accuracy"] = skm.accuracy_score(Y, pred, sample_weight=w)
    out["hamming_loss"] = skm.hamming_loss(Y, pred, sample_weight=w)
    out["multilabel_confusion_matrix"] = skm.multilabel_confusion_matrix(Y, pred, sample_weight=w)
    return out


_ROW_CACHE: dict = {}


def _row_metric(kind: str, y_row: np.ndarray, p_row: np.ndarray) -> float:
    """sklearn on one sample's label row (memoised: prefixes share rows)."""
    key = (kind, y_row.tobytes(), p_row.tobytes())
    if key not in _ROW_CACHE:
        fn = skm.roc_auc_score if kind == "auc" else skm.average_precision_score
        _ROW_CACHE[key] = float(_quiet(fn, y_row, p_row))
    return _ROW_CACHE[key]


def _mcc_kappa(out, y, pred, w, cm):
    n = cm.sum()
    t, q = cm.sum(axis=1), cm.sum(axis=0)
    degenerate = (n * n - t @ t) * (n * n - q @ q) == 0
    out["matthews_corrcoef"] = (
        None if degenerate else skm.matthews_corrcoef(y, pred, sample_weight=w)
    )
    kappa = _quiet(skm.cohen_kappa_score, y, pred, sample_weight=w)
    out["cohen_kappa"] = None if np.isnan(kappa) else float(kappa)


def leaf(report: dict, path: str, classes: list[str]):
    """The report leaf for an oracle path; per-class indices map to class names."""
    parts = path.split(".")
    node = report
    for i, part in enumerate(parts):
        if i > 0 and parts[i - 1] == "per_class":
            part = classes[int(part)]
        node = node[part]
    return node


TOL_EXACT = 1e-12
RANK_PREFIXES = ("roc_auc.", "average_precision.")


def compare_report(report, exp, classes, binned: bool, loss_rtol=2e-6):
    """Every oracle value against the report leaf; returns how many were defined and checked."""
    checked = 0
    for path, want in exp.items():
        if path in ("confusion_matrix", "multilabel_confusion_matrix"):
            got = np.array(report[path], dtype=float)
            np.testing.assert_allclose(got, np.asarray(want, dtype=float), rtol=1e-12, err_msg=path)
            checked += 1
            continue
        node = leaf(report, path, classes)
        got = node["value"]
        if want is None:
            assert got is None, f"{path}: expected undefined, got {got}"
            assert node.get("reason"), f"{path}: undefined without a reason"
            continue
        assert got is not None, f"{path}: undefined ({node.get('reason')}), sklearn says {want}"
        rank = path.startswith(RANK_PREFIXES) and not path.endswith(".samples")
        if path in ("log_loss", "brier_score"):
            assert got == pytest.approx(want, rel=loss_rtol, abs=1e-9), path
        elif rank and binned:
            assert node["lower"] <= want <= node["upper"], (path, node, want)
        else:
            assert abs(got - want) <= TOL_EXACT, f"{path}: {got} vs sklearn {want}"
        checked += 1
    return checked

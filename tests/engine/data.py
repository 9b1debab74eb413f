"""Seeded data sets for the oracle tests: imbalanced, peaky, tied, with missing classes."""

from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def weak_softmax(rng: np.random.Generator, n: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels (prior 1/k) and softmax rows of weak unit-normal logits, the true class's
    raised by 1 (scores spread over about (0.01, 0.9)); float64 ``(y, p)``."""
    prior = 1.0 / np.arange(1, K + 1)
    y = rng.choice(K, n, p=prior / prior.sum())
    z = rng.normal(0.0, 1.0, (n, K))
    z[np.arange(n), y] += 1.0
    return y, softmax(z)


def multiclass(
    seed: int,
    counts=(5000, 10000, 15000),
    scale: float = 6.0,
    signal: float = 0.8,
    exact_share: float = 0.02,
    tie_decimals: int | None = None,
):
    """Labels with the given class counts (shuffled) and peaky float32 softmax scores.

    ``exact_share`` of the rows are exactly one-hot (exact 0s and 1s); ``tie_decimals`` rounds
    the scores (then renormalises) to create many ties. Returns ``(y, logits, p32)``.
    """
    rng = np.random.default_rng(seed)
    K = len(counts)
    y = np.concatenate([np.full(c, i) for i, c in enumerate(counts)]).astype(np.int64)
    rng.shuffle(y)
    logits = rng.normal(size=(y.size, K)) * scale
    logits[np.arange(y.size), y] += scale * signal
    p = softmax(logits)
    if tie_decimals is not None:
        p = np.round(p, tie_decimals)
        top = p.argmax(axis=1)
        p[np.arange(len(p)), top] += 1.0 - p.sum(axis=1)  # rows sum to 1 again
    p32 = p.astype(np.float32)
    onehot = rng.random(y.size) < exact_share
    guess = np.where(rng.random(y.size) < 0.7, y, rng.integers(0, K, y.size))
    p32[onehot] = np.eye(K, dtype=np.float32)[guess[onehot]]
    return y, logits, p32


def multilabel(seed: int, n: int = 6000, L: int = 5, prevalence=(0.5, 0.3, 0.1, 0.05, 0.02)):
    rng = np.random.default_rng(seed)
    prev = np.array(prevalence[:L])
    Y = (rng.random((n, L)) < prev).astype(np.int64)
    logits = rng.normal(size=(n, L)) * 3 + (Y * 2 - 1) * 1.5
    p = (1 / (1 + np.exp(-logits))).astype(np.float32)
    hard = rng.random((n, L)) < 0.01
    p[hard] = Y[hard].astype(np.float32)
    return Y, logits, p


def binary(seed: int, n_neg: int = 20000, n_pos: int = 2000):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.zeros(n_neg, np.int64), np.ones(n_pos, np.int64)])
    rng.shuffle(y)
    logits = rng.normal(size=y.size) * 3 + (y * 2 - 1) * 2
    p = (1 / (1 + np.exp(-logits))).astype(np.float32)
    hard = rng.random(y.size) < 0.02
    p[hard] = y[hard].astype(np.float32)
    return y, logits, p


def splits(rng: np.random.Generator, n: int, n_batches: int) -> list[slice]:
    """Random batch boundaries covering range(n)."""
    cuts = np.sort(rng.choice(np.arange(1, n), size=n_batches - 1, replace=False))
    edges = [0, *cuts.tolist(), n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def three_classes(
    rng: np.random.Generator, n: int, signal, priors=(0.6, 0.3, 0.1)
) -> tuple[np.ndarray, np.ndarray]:
    """Three imbalanced classes; class ``j``'s own logit is shifted by ``signal[j]`` (a smaller
    shift is a weaker model for that class). Returns ``(y, p32)`` with float32 softmax scores."""
    y = rng.choice(3, n, p=list(priors))
    z = rng.normal(size=(n, 3))
    z[np.arange(n), y] += np.asarray(signal)[y]
    return y, softmax(z).astype(np.float32)

"""Train the small digits CNN that the Triton model repository serves, and write its eval set.

The model is a deliberately imbalanced classifier: in the training set (and in the held-out
evaluation set, which mirrors the deployment we want to monitor) only ``MINORITY_KEEP`` of the
images of digits 8 and 9 are kept, so those two are minority classes. It outputs **logits**
(no softmax layer), the way many served CNNs do.

Run it from the repository root with the training venv (PyTorch stays out of the project's own
dependencies)::

    python3 -m venv .tools/train-venv
    .tools/train-venv/bin/pip install torch==2.13.0 numpy==2.4.6 scikit-learn==1.9.1 \
        onnx==1.23.2 onnxruntime==1.31.1
    .tools/train-venv/bin/python scripts/train_digits_cnn.py

It writes

- ``deploy/triton/model_repository/digits_cnn/1/model.onnx`` (input ``input`` float32
  ``[batch, 1, 8, 8]``, pixel values divided by 16; output ``logits`` float32 ``[batch, 10]``),
- ``deploy/triton/digits_eval.npz`` with ``inputs`` float32 ``(N, 1, 8, 8)`` (already divided by
  16) and ``labels`` int64 ``(N,)``,

and prints the held-out accuracy and per-class support and recall of the exported ONNX model
(run with onnxruntime when the venv has it, else with PyTorch). Everything is seeded and runs on
one thread, so a re-run writes byte-identical files on the same versions.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, recall_score
from torch import nn

SEED = 20240611
HELD_OUT_FRACTION = 0.5
# Fraction of each minority class kept, in the training set and in the held-out set alike.
MINORITY_KEEP = {8: 0.10, 9: 0.15}
EPOCHS = 60
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
OPSET = 17

ROOT = Path(__file__).resolve().parent.parent
MODEL_PATH = ROOT / "deploy/triton/model_repository/digits_cnn/1/model.onnx"
EVAL_PATH = ROOT / "deploy/triton/digits_eval.npz"


class DigitsCNN(nn.Module):
    """Three 3x3 convolutions and one linear layer, about 7k parameters, logits out."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4 -> 2x2
        )
        self.classifier = nn.Linear(32 * 2 * 2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _split(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-class split into train / held-out indices, then subsample the minority classes."""
    train, held_out = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = round(len(idx) * HELD_OUT_FRACTION)
        parts = [idx[n_held:], idx[:n_held]]
        keep = MINORITY_KEEP.get(int(c))
        if keep is not None:
            parts = [p[: max(1, round(len(p) * keep))] for p in parts]
        train.append(parts[0])
        held_out.append(parts[1])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held_out))


def _train(x: np.ndarray, y: np.ndarray) -> DigitsCNN:
    model = DigitsCNN()
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            optimiser.zero_grad()
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            optimiser.step()
    return model.eval()


def _export(model: DigitsCNN) -> bytes:
    """Export with the TorchScript-based exporter (needs `onnx`, not `onnxscript`).

    The torch.export-based default exporter would also need `onnxscript` and names its nodes
    from traced code; the legacy one gives a small, stable graph for this plain CNN.
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # "You are using the legacy TorchScript-based ONNX export": on purpose, see above.
        warnings.simplefilter("ignore", DeprecationWarning)
        _export_to(model, buffer)
    return buffer.getvalue()


def _export_to(model: DigitsCNN, buffer: io.BytesIO) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        buffer,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=True,
    )


def _logits(model_bytes: bytes, model: DigitsCNN, x: np.ndarray) -> tuple[np.ndarray, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy(), "torch (onnxruntime not installed)"
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0], f"onnxruntime {ort.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL_PATH)
    parser.add_argument("--eval", type=Path, default=EVAL_PATH)
    args = parser.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    train_idx, eval_idx = _split(y, np.random.default_rng(SEED))

    model = _train(x[train_idx], y[train_idx])
    model_bytes = _export(model)
    args.model.parent.mkdir(parents=True, exist_ok=True)
    args.model.write_bytes(model_bytes)
    x_eval, y_eval = np.ascontiguousarray(x[eval_idx]), y[eval_idx]
    args.eval.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.eval, inputs=x_eval, labels=y_eval)

    logits, engine = _logits(model_bytes, model, x_eval)
    pred = logits.argmax(axis=1)
    classes = np.arange(10)
    recall = recall_score(y_eval, pred, labels=classes, average=None, zero_division=0)
    print(f"train samples {len(train_idx)}, held-out samples {len(eval_idx)}")
    print(f"minority classes kept: {MINORITY_KEEP}")
    print(
        f"model {args.model} ({len(model_bytes)} bytes, sha256 "
        f"{hashlib.sha256(model_bytes).hexdigest()[:16]}), logits from {engine}"
    )
    print(
        f"held-out accuracy {accuracy_score(y_eval, pred):.6f} "
        f"({int((pred == y_eval).sum())}/{len(y_eval)})"
    )
    print("class support recall")
    for c in classes:
        print(f"{c:5d} {int((y_eval == c).sum()):7d} {recall[c]:.4f}")
    print(f"macro recall {recall.mean():.6f}")


if __name__ == "__main__":
    main()

"""The stream a model's scores go to: planned from the model's output, created when missing.

``plan_stream`` reads the stream (it creates nothing) and checks it against the model's score
output, or works out the stream to create: the task from the output width (one column: binary;
K columns: multiclass) unless one is given, classes ``"0"`` to ``"K-1"`` unless named, scores
``"logits"`` unless declared. ``ensure_stream`` then creates it. ``triton-eval`` and
``triton-proxy --create`` both go through here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SourceInputError
from .evalset import check_labels
from .triton import OUTPUT_KINDS, ModelInfo, OutputInfo

__all__ = ["TASKS", "StreamPlan", "plan_stream", "ensure_stream", "stream_columns"]

TASKS = ("binary", "multiclass", "multilabel")


@dataclass(frozen=True)
class StreamPlan:
    """The stream a model's scores go to, checked against the model (and the labels).

    Attributes
    ----------
    name : str
    classes : tuple of str
    scores : {"logits", "probabilities"}
    exists : bool
        False: ``ensure_stream`` creates it.
    task : {"binary", "multiclass", "multilabel"}
    windows : tuple of str
        Of a stream to create (an existing stream keeps its own).
    """

    name: str
    classes: tuple[str, ...]
    scores: str
    exists: bool
    task: str = "multiclass"
    windows: tuple[str, ...] = ()


def stream_columns(task: str, n_classes: int) -> tuple[int, ...]:
    """Score columns a stream takes per row: binary 1 or 2, otherwise one per class."""
    return (1, 2) if task == "binary" else (n_classes,)


def _columns_text(columns: tuple[int, ...]) -> str:
    return " or ".join(map(str, columns)) + (" column" if columns == (1,) else " columns")


def plan_stream(
    client: Any,
    stream: str,
    output: OutputInfo | ModelInfo,
    *,
    task: str | None = None,
    classes: Sequence[str] | None = None,
    outputs: str | None = None,
    windows: Sequence[str] = (),
    labels: np.ndarray | None = None,
    tasks: Sequence[str] = TASKS,
) -> StreamPlan:
    """Check the existing stream (or the one to create) against the model's output.

    Parameters
    ----------
    client : evalstream.EvalClient
    stream : str
    output : OutputInfo or ModelInfo
        The model's score output (``ModelInfo``: its resolved output).
    task : {"binary", "multiclass", "multilabel"}, optional
        Default for a new stream: binary for one output column, multiclass for more.
    classes : sequence of str, optional
        Default for a new stream: ``"0"`` to ``"K-1"`` (binary: ``"0"``, ``"1"``).
    outputs : {"logits", "probabilities"}, optional
        What the output holds. Default for a new stream: ``"logits"``.
    windows : sequence of str
        Windows of a new stream.
    labels : ndarray, optional
        Class indices to check against the classes.
    tasks : sequence of str
        The tasks the caller can feed (``triton-eval``'s labels are class indices: not
        multilabel).

    Raises
    ------
    SourceInputError
        Naming the field, the expected and the received: an existing stream of another task,
        class count, classes or score kind than asked or than the output has.
    """
    from evalstream import NotFoundError

    out = output.output if isinstance(output, ModelInfo) else output
    where = f"output {out.name!r} of model {out.model!r} (shape {list(out.shape)})"
    width = out.columns
    for field, value, allowed in (("task", task, tasks), ("outputs", outputs, OUTPUT_KINDS)):
        if value is not None and value not in allowed:
            raise SourceInputError(field, f"one of {list(allowed)}", repr(value))
    try:
        existing = client.get_stream(stream)
    except NotFoundError:
        existing = None
    if existing is None:
        task = task or ("binary" if width == 1 else "multiclass")
        if task not in tasks:
            raise SourceInputError(
                "task", f"one of {list(tasks)}", f"{task!r} for {where}", "name the task"
            )
        if classes is None:
            classes = _default_classes(task, width, where)
        columns = stream_columns(task, len(classes))
        if task == "binary" and len(classes) != 2:
            raise SourceInputError(
                "classes", "2 class names for a binary stream (negative, positive)",
                f"{len(classes)} ({', '.join(classes)})",
            )  # fmt: skip
        if (task == "binary" and width not in (None, 1, 2)) or (
            task == "multiclass" and width == 1
        ):
            fits = "binary or multilabel" if width == 1 else "multiclass or multilabel"
            raise SourceInputError(
                "task", f"{fits} for {where}", repr(task), "name another task or output"
            )
        if width is not None and width not in columns:
            raise SourceInputError(
                "classes",
                f"{width} class names, one per column of {where}",
                f"{len(classes)} ({', '.join(classes)})",
            )
        if labels is not None:
            check_labels(labels, labels.shape[0], len(classes))
        return StreamPlan(
            stream, tuple(classes), outputs or "logits", exists=False, task=task,
            windows=tuple(windows),
        )  # fmt: skip
    if existing.task not in tasks or (task is not None and existing.task != task):
        wanted = task or " or ".join(tasks)
        raise SourceInputError(
            "stream", f"a {wanted} stream for model {out.model!r}",
            f"{stream!r}, a {existing.task} stream",
        )  # fmt: skip
    if classes is not None and tuple(classes) != tuple(existing.classes):
        raise SourceInputError(
            "classes",
            f"the classes of the existing stream {stream!r}: {list(existing.classes)}",
            f"{list(classes)}",
            "leave the classes out to use the stream's",
        )
    columns = stream_columns(existing.task, len(existing.classes))
    if width is not None and width not in columns:
        raise SourceInputError(
            f"output {out.name!r} of model {out.model!r}",
            f"{_columns_text(columns)}, as the existing {existing.task} stream {stream!r} "
            f"with {len(existing.classes)} classes takes",
            f"{width} columns (shape {list(out.shape)})",
            "the stream's classes must be the model's output classes, in its order; "
            "record into another stream",
        )
    if outputs is not None and outputs != existing.scores:
        raise SourceInputError(
            "outputs",
            f"{existing.scores!r}, the score kind of the existing stream {stream!r}",
            repr(outputs),
        )
    if labels is not None:
        check_labels(labels, labels.shape[0], len(existing.classes))
    return StreamPlan(
        stream, tuple(existing.classes), existing.scores, exists=True, task=existing.task,
        windows=tuple(existing.windows),
    )  # fmt: skip


def _default_classes(task: str, width: int | None, where: str) -> list[str]:
    if task == "binary":
        return ["0", "1"]
    if width is None:
        raise SourceInputError(
            "classes",
            "class names for a new stream",
            f"none, and {where} has a variable width",
            "pass the class names",
        )
    return [str(i) for i in range(width)]


def ensure_stream(client: Any, plan: StreamPlan, resolution: str = "bins") -> bool:
    """Create the planned stream if it does not exist; return whether this call created it."""
    from evalstream import AlreadyExistsError

    if plan.exists:
        return False
    try:
        client.create_stream(
            plan.name, task=plan.task, classes=list(plan.classes), scores=plan.scores,
            windows=list(plan.windows), resolution=resolution,
        )  # fmt: skip
    except AlreadyExistsError:  # created meanwhile by someone else: theirs must fit too
        existing = client.get_stream(plan.name)
        if (existing.task, existing.classes, existing.scores) != (
            plan.task, plan.classes, plan.scores,
        ):  # fmt: skip
            raise SourceInputError(
                "stream",
                f"a {plan.task} stream with classes {list(plan.classes)} and {plan.scores}",
                f"{plan.name!r} created meanwhile with another configuration",
            ) from None
        return False
    return True

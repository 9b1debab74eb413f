"""The ``triton-eval`` job: a served model's scores on a labelled set, streamed into evalstream.

Inference server -> ``TritonSource`` -> ``EvalClient.log`` -> evalstream. Every ``log`` call
returns once the server acknowledged its batches, under one producer id per run, so a broken
Ingest call is resent without double counting (exactly once within a run; a second run is a
second producer and counts the samples again).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SourceInputError
from .evalset import check_labels, load_eval_set
from .progress import ProgressLine
from .triton import ModelInfo, TritonSource

__all__ = ["EvalRun", "StreamPlan", "triton_eval", "plan_stream", "ensure_stream", "feed_stream"]

LOG_ROWS = 4096  # rows per acknowledged ``log`` call: progress granularity, not a message size


@dataclass(frozen=True)
class EvalRun:
    """The outcome of one ``triton_eval`` run.

    Attributes
    ----------
    report : dict
        The stream's canonical cumulative report after the run.
    stream : str
    created : bool
        Whether the run created the stream.
    samples : int
        Samples this run delivered (acknowledged).
    seconds : float
        From the first inference request to the last acknowledgement.
    producer_id : str
    model : ModelInfo
    """

    report: dict[str, Any]
    stream: str
    created: bool
    samples: int
    seconds: float
    producer_id: str
    model: ModelInfo

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def triton_eval(
    *,
    triton: str,
    model: str,
    data: str | Path,
    stream: str,
    target: str,
    classes: Sequence[str] | None = None,
    outputs: str | None = None,
    concurrency: int = 4,
    batch_size: int = 64,
    input_name: str | None = None,
    output_name: str | None = None,
    version: str = "",
    token: str | None = None,
    timeout: float = 30.0,
    connect_timeout: float = 10.0,
    resolution: str = "bins",
    progress: ProgressLine | bool = False,
) -> EvalRun:
    """Check the model, create the stream when missing, stream ``(labels, scores)``, report.

    ``outputs`` (``"logits"`` or ``"probabilities"``) defaults to the existing stream's score
    kind, or to ``"logits"`` for a new stream. A new stream is multiclass with ``classes``, or
    ``"0"`` to ``"K-1"`` for a model with K outputs, and is created only once the first batch
    of scores came back fitting it. ``progress=True`` draws a ``ProgressLine`` on stderr.

    Raises
    ------
    SourceInputError
        Bad data or arguments (found before anything is sent to evalstream).
    SourceUnavailableError
        The inference server did not answer or failed.
    evalstream.EvalstreamError
        The evalstream server refused or failed.
    """
    from evalstream import EvalClient

    inputs, labels = load_eval_set(data)
    with TritonSource(
        triton,
        model,
        input_name=input_name,
        output_name=output_name,
        outputs=outputs or "logits",
        concurrency=concurrency,
        batch_size=batch_size,
        timeout=timeout,
        version=version,
        connect_timeout=connect_timeout,
    ) as source:
        info = source.check()
        x = source.prepare(inputs)
        producer_id = f"triton-eval-{uuid.uuid4().hex}"
        with EvalClient(target, token=token, timeout=timeout, producer_id=producer_id) as client:
            plan = plan_stream(
                client, stream, info, classes=classes, outputs=outputs, labels=labels
            )
            source.outputs = plan.scores
            line = (
                ProgressLine(len(labels), label="triton-eval: ")
                if progress is True
                else (progress or None)
            )
            start = time.monotonic()
            batches = source.iter_infer(x)
            # The first batch before the stream is created: a server that refuses the batch
            # size, or outputs that are not what they were declared to be, leave no stream.
            first = next(batches, None)
            created = ensure_stream(client, plan, resolution=resolution)
            head = [] if first is None else [first]
            samples, _ = feed_stream(
                client, stream, labels, itertools.chain(head, batches), progress=line
            )
            seconds = time.monotonic() - start
            report = client.report(stream).to_dict()
    return EvalRun(report, stream, created, samples, seconds, producer_id, info)


@dataclass(frozen=True)
class StreamPlan:
    """The stream a model's scores go to, checked against the model and the labels.

    Attributes
    ----------
    name : str
    classes : tuple of str
    scores : {"logits", "probabilities"}
    exists : bool
        False: ``ensure_stream`` creates it.
    """

    name: str
    classes: tuple[str, ...]
    scores: str
    exists: bool


def plan_stream(
    client: Any,
    stream: str,
    info: ModelInfo,
    *,
    classes: Sequence[str] | None = None,
    outputs: str | None = None,
    labels: np.ndarray | None = None,
) -> StreamPlan:
    """Check the existing stream (or the one to create) against the model and the labels.

    A new stream gets ``classes`` (default ``"0"`` to ``"K-1"``) and ``outputs`` (default
    ``"logits"``); an existing one must be multiclass with one class per output column, and
    ``classes`` and ``outputs``, when given, must be its own. Creates nothing.
    """
    from evalstream import NotFoundError

    width = info.n_classes
    try:
        existing = client.get_stream(stream)
    except NotFoundError:
        existing = None
    if existing is None:
        if classes is None:
            if width is None:
                raise SourceInputError(
                    "classes",
                    "class names for a new stream",
                    f"none, and output {info.output_name!r} has a variable width "
                    f"(shape {list(info.output_shape)})",
                    "pass the class names",
                )
            classes = [str(i) for i in range(width)]
        elif width is not None and len(classes) != width:
            raise SourceInputError(
                "classes",
                f"{width} class names, one per column of output {info.output_name!r} of model "
                f"{info.name!r} (shape {list(info.output_shape)})",
                f"{len(classes)} ({', '.join(classes)})",
            )
        if labels is not None:
            check_labels(labels, labels.shape[0], len(classes))
        return StreamPlan(stream, tuple(classes), outputs or "logits", exists=False)
    if existing.task != "multiclass":
        raise SourceInputError(
            "stream",
            f"a multiclass stream for model {info.name!r}",
            f"{stream!r}, a {existing.task} stream",
        )
    if classes is not None and tuple(classes) != tuple(existing.classes):
        raise SourceInputError(
            "classes",
            f"the classes of the existing stream {stream!r}: {list(existing.classes)}",
            f"{list(classes)}",
            "leave the classes out to use the stream's",
        )
    if width is not None and len(existing.classes) != width:
        raise SourceInputError(
            f"output {info.output_name!r} of model {info.name!r}",
            f"{len(existing.classes)} columns, one per class of the stream {stream!r}",
            f"{width} columns (shape {list(info.output_shape)})",
            "the stream's classes must be the model's output classes, in its order",
        )
    if outputs is not None and outputs != existing.scores:
        raise SourceInputError(
            "outputs",
            f"{existing.scores!r}, the score kind of the existing stream {stream!r}",
            repr(outputs),
        )
    if labels is not None:
        check_labels(labels, labels.shape[0], len(existing.classes))
    return StreamPlan(stream, tuple(existing.classes), existing.scores, exists=True)


def ensure_stream(client: Any, plan: StreamPlan, resolution: str = "bins") -> bool:
    """Create the planned stream if it does not exist; return whether this call created it."""
    from evalstream import AlreadyExistsError

    if plan.exists:
        return False
    try:
        client.create_stream(
            plan.name, task="multiclass", classes=list(plan.classes), scores=plan.scores,
            resolution=resolution,
        )  # fmt: skip
    except AlreadyExistsError:  # created meanwhile by someone else: theirs must fit too
        existing = client.get_stream(plan.name)
        if (existing.task, existing.classes, existing.scores) != (
            "multiclass", plan.classes, plan.scores,
        ):  # fmt: skip
            raise SourceInputError(
                "stream",
                f"a multiclass stream with classes {list(plan.classes)} and {plan.scores}",
                f"{plan.name!r} created meanwhile with another configuration",
            ) from None
        return False
    return True


def feed_stream(
    client: Any,
    stream: str,
    labels: np.ndarray,
    batches: Iterable[tuple[int, np.ndarray]],
    *,
    log_rows: int = LOG_ROWS,
    progress: ProgressLine | None = None,
) -> tuple[int, float]:
    """``log`` the ``(start_row, scores)`` batches (``TritonSource.iter_infer``) with their
    labels, ``log_rows`` rows per acknowledged call. Returns ``(samples, seconds)``.

    Batches must come in row order from row 0. Inference of the next batches goes on (up to the
    source's concurrency) while a ``log`` call waits for its acknowledgement.
    """
    started = time.monotonic()
    pending: list[np.ndarray] = []
    sent = buffered = 0
    for start, scores in batches:
        if start != sent + buffered:
            raise SourceInputError(
                "batches", f"rows in order, the next from row {sent + buffered}", f"row {start}"
            )
        if start + scores.shape[0] > labels.shape[0]:
            raise SourceInputError(
                "labels", f"a label for every scored row ({start + scores.shape[0]})",
                f"{labels.shape[0]}",
            )  # fmt: skip
        pending.append(scores)
        buffered += scores.shape[0]
        if buffered >= log_rows:
            sent = _log(client, stream, labels, pending, sent)
            pending, buffered = [], 0
            if progress is not None:
                progress.update(sent)
    if pending:
        sent = _log(client, stream, labels, pending, sent)
    seconds = time.monotonic() - started
    if progress is not None:
        progress.finish(sent)
    return sent, seconds


def _log(client: Any, stream: str, labels: np.ndarray, parts: list[np.ndarray], sent: int) -> int:
    scores = np.concatenate(parts) if len(parts) > 1 else parts[0]
    stop = sent + scores.shape[0]
    client.log(stream, labels[sent:stop], scores)
    return stop

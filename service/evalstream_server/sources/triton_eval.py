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
from .evalset import load_eval_set
from .progress import ProgressLine
from .streams import ensure_stream, plan_stream
from .triton import ModelInfo, TritonSource

__all__ = ["EvalRun", "triton_eval", "feed_stream"]

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
    resends : int
        Inference requests sent again after a transient answer (``TritonSource.resends``).
    """

    report: dict[str, Any]
    stream: str
    created: bool
    samples: int
    seconds: float
    producer_id: str
    model: ModelInfo
    resends: int = 0

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
    ``"0"`` to ``"K-1"`` for a model with K outputs (binary for a model with one), and is
    created only once the first batch of scores came back fitting it (``plan_stream``,
    ``ensure_stream``). ``progress=True`` draws a ``ProgressLine`` on stderr.

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
        # Checks and casts the inputs now (nothing is sent before the first ``next``).
        batches = source.iter_infer(inputs)
        producer_id = f"triton-eval-{uuid.uuid4().hex}"
        with EvalClient(target, token=token, timeout=timeout, producer_id=producer_id) as client:
            plan = plan_stream(
                client, stream, info, classes=classes, outputs=outputs, labels=labels,
                tasks=("binary", "multiclass"),
            )  # fmt: skip
            # The requests go out with the stream's score kind and width (an open-width output
            # that does not fit the stream fails on its first batch, before anything is created).
            source.outputs = plan.scores
            if plan.task == "multiclass":
                source.n_classes = len(plan.classes)
            line = (
                ProgressLine(len(labels), label="triton-eval: ")
                if progress is True
                else (progress or None)
            )
            start = time.monotonic()
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
        resends = source.resends
    return EvalRun(report, stream, created, samples, seconds, producer_id, info, resends)


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

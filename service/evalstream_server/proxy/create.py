"""``triton-proxy --create``: the routed streams, made to fit the models, before serving.

For each ``--model NAME=STREAM[:OUTPUT]``: wait for the model on the inference server
(``TritonSource.model_metadata``), take its recorded output (``OUTPUT``, else the first, as the
recorder does: ``sources.model_output``), and plan the stream against it
(``sources.plan_stream``): a missing stream is created (``sources.ensure_stream``) with the task
from the output width (one column: binary; K: multiclass) unless ``--task`` names one, classes
``"0"`` to ``"K-1"`` unless ``--classes`` names them, ``--scores`` (default logits) and
``--windows``; an existing one must take the output as it is (its class count, and the task,
classes and score kind when given), or the proxy does not start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..sources import TritonSource, ensure_stream, model_output, plan_stream

if TYPE_CHECKING:
    from .server import ProxySettings

__all__ = ["create_streams"]

log = logging.getLogger("evalstream.proxy")


def create_streams(settings: ProxySettings) -> dict[str, bool]:
    """Check every routed stream against its model, creating the missing ones.

    Returns
    -------
    dict of str to bool
        By stream: whether this call created it.

    Raises
    ------
    SourceInputError
        A stream that does not fit its model, or options that do not fit the model.
    SourceUnavailableError
        The inference server or the model was not ready within ``settings.connect_timeout``.
    evalstream.EvalstreamError
        evalstream refused or failed.
    """
    from evalstream import EvalClient

    credentials = settings.triton_tls.credentials()
    outcome: dict[str, bool] = {}
    with EvalClient(
        settings.target,
        token=settings.token,
        tls=settings.target_tls.pem(),
        timeout=max(5.0, settings.connect_timeout),
    ) as client:
        for route in settings.routes.values():
            with TritonSource(
                settings.triton,
                route.model,
                connect_timeout=settings.connect_timeout,
                credentials=credentials,
            ) as source:
                metadata = source.model_metadata()
            output = model_output(metadata, route.model, route.output)
            plan = plan_stream(
                client,
                route.stream,
                output,
                task=settings.tasks.get(route.model),
                classes=settings.classes.get(route.model),
                outputs=settings.scores.get(route.model),
                windows=settings.windows,
            )
            created = ensure_stream(client, plan)
            outcome[route.stream] = outcome.get(route.stream, False) or created
            log.info(
                "stream created" if created else "stream fits",
                extra={
                    "model": route.model,
                    "output": output.name,
                    "stream": route.stream,
                    "task": plan.task,
                    "classes": len(plan.classes),
                    "scores": plan.scores,
                },
            )
    return outcome

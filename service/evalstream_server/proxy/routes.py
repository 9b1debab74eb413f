"""``--model NAME=STREAM[:OUTPUT]``: which model's outputs are recorded into which stream; and
the per-model options of ``--create`` (``--task``, ``--classes``, ``--scores``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ModelRoute", "RouteError", "parse_model_option", "parse_route", "parse_routes"]

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class RouteError(ValueError):
    """A ``--model`` value that cannot be used, named as field, expected and received."""

    def __init__(self, field: str, expected: str, received: str) -> None:
        self.field = field
        self.expected = expected
        self.received = received
        super().__init__(f"{field}: expected {expected}, received {received}")


@dataclass(frozen=True)
class ModelRoute:
    """Record the outputs of ``model`` into ``stream``.

    Attributes
    ----------
    model : str
        Model name as requests carry it (``model_name``); every version is recorded.
    stream : str
        The evalstream stream (created beforehand, or by ``--create``; it declares task,
        classes, logits).
    output : str or None
        The output tensor to record; None: the response's only output, or its first one.
    """

    model: str
    stream: str
    output: str | None = None


def parse_route(text: str) -> ModelRoute:
    """Parse ``NAME=STREAM`` or ``NAME=STREAM:OUTPUT``."""
    form = "NAME=STREAM or NAME=STREAM:OUTPUT"
    model, sep, rest = text.partition("=")
    if not sep:
        raise RouteError("--model", form, repr(text))
    stream, _, output = rest.partition(":")
    if not model:
        raise RouteError("--model", f"{form} with a non-empty model NAME", repr(text))
    if not _NAME.match(stream):
        raise RouteError(
            "--model",
            f"{form} with a STREAM name of 1 to 128 characters A-Z a-z 0-9 . _ -",
            f"{text!r} (stream {stream!r})",
        )
    if ":" in rest and not output:
        raise RouteError("--model", f"{form} with a non-empty OUTPUT", repr(text))
    return ModelRoute(model=model, stream=stream, output=output or None)


def parse_routes(texts: Iterable[str]) -> dict[str, ModelRoute]:
    """Routes by model name; a model named twice is an error."""
    routes: dict[str, ModelRoute] = {}
    for text in texts:
        route = parse_route(text)
        if route.model in routes:
            raise RouteError(
                "--model",
                "each model at most once",
                f"{route.model!r} twice ({routes[route.model].stream!r} and {route.stream!r})",
            )
        routes[route.model] = route
    return routes


def parse_model_option(
    flag: str,
    texts: Iterable[str],
    models: Iterable[str],
    choices: Iterable[str] | None = None,
) -> dict[str, str]:
    """Values of a repeatable per-model option, by model name.

    Each text is ``NAME=VALUE`` (model ``NAME``, one of ``models``) or, when ``choices`` is
    given, a bare ``VALUE`` for every model. A model given twice, an unknown model or a value
    not in ``choices`` is a ``RouteError``.
    """
    models = list(models)
    allowed = None if choices is None else list(choices)
    out: dict[str, str] = {}
    for text in texts:
        name, sep, value = text.partition("=")
        if not sep:
            if allowed is None:
                raise RouteError(flag, "NAME=VALUE, NAME a --model name", repr(text))
            names, value = models, text
        elif name not in models:
            raise RouteError(
                flag, f"NAME=VALUE with NAME one of the --model names {models}", repr(text)
            )
        else:
            names = [name]
        if allowed is not None and value not in allowed:
            raise RouteError(flag, f"a value among {allowed}", f"{value!r} in {text!r}")
        if not value:
            raise RouteError(flag, "NAME=VALUE with a non-empty VALUE", repr(text))
        for model in names:
            if model in out:
                raise RouteError(flag, "each model at most once", f"{model!r} twice")
            out[model] = value
    return out

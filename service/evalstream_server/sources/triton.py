"""``TritonSource``: scores from a model served over the KServe V2 gRPC protocol.

NVIDIA Triton speaks this protocol, and so do MLServer and KServe's model servers. The source uses
``tritonclient.grpc`` and only its unary calls: ``async_infer`` with at most ``concurrency``
requests in flight (Triton's ``ModelStreamInfer`` is not part of the V2 protocol other servers
implement). Outputs are requested as raw tensors and decoded with ``as_numpy``.

>>> with TritonSource("127.0.0.1:8001", "digits_cnn") as source:        # doctest: +SKIP
...     info = source.check()            # live, ready, names, shapes, max batch size
...     logits = source.infer(inputs)    # (n, n_classes), in the order of ``inputs``
"""

from __future__ import annotations

import functools
import logging
import queue
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from ..engine import InvalidInputError, StreamSpec, make_batch
from .errors import SourceError, SourceInputError, SourceUnavailableError

__all__ = ["TritonSource", "ModelInfo", "OutputInfo", "OUTPUT_KINDS", "model_output"]

_log = logging.getLogger("evalstream.sources")

OUTPUT_KINDS = ("logits", "probabilities")
_FLOAT_TYPES = ("FP16", "FP32", "FP64")
_PROBE_S = 2.0  # longest single readiness probe while waiting for the server
_POLL_S = 0.2
# Triton's wording (and our MLServer runtime's) when a request holds too many rows.
_MAX_BATCH_MESSAGE = re.compile(r"batch[- ]size must be <= (\d+)")
# Words that name a score output, per kind, to pick one of several outputs.
_OUTPUT_WORDS = {
    "logits": ("logits", "logit", "scores"),
    "probabilities": ("probabilities", "probs", "prob", "softmax", "probability"),
}


@dataclass(frozen=True)
class OutputInfo:
    """One output of a served model, as its metadata declares it.

    Attributes
    ----------
    model : str
    name, datatype : str
    shape : tuple of int
        With the batch dimension first; ``-1`` is any size.
    """

    model: str
    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def columns(self) -> int | None:
        """Scores per row: 1 for ``[-1]``, K for ``[-1, K]`` (None when the model leaves the
        width open)."""
        if len(self.shape) == 1:
            return 1
        width = self.shape[-1]
        return width if width > 0 else None


def model_output(metadata: Any, model: str, output_name: str | None = None) -> OutputInfo:
    """The score output of a ``ModelMetadataResponse``: ``output_name``, else the only output,
    else the first one (the one a response lists first, what ``triton-proxy`` records).

    Raises
    ------
    SourceInputError
        No such output, or one that does not hold float scores of shape ``[-1]`` or ``[-1, K]``.
    """
    outputs = list(metadata.outputs)
    listing = [f"{t.name} {t.datatype} {list(t.shape)}" for t in outputs]
    where = f"model {model!r}"
    if not outputs:
        raise SourceInputError(f"outputs of {where}", "at least one output", "none")
    chosen = outputs[0]
    if output_name is not None:
        named = [t for t in outputs if t.name == output_name]
        if not named:
            raise SourceInputError(
                "output", f"an output of {where}: one of {listing}", repr(output_name)
            )
        chosen = named[0]
    shape = tuple(int(d) for d in chosen.shape)
    if chosen.datatype not in _FLOAT_TYPES:
        raise SourceInputError(
            f"output {chosen.name!r} of {where}",
            f"floating-point scores ({', '.join(_FLOAT_TYPES)})",
            f"datatype {chosen.datatype}",
            "name the score output: NAME=STREAM:OUTPUT",
        )
    if len(shape) not in (1, 2):
        raise SourceInputError(
            f"output {chosen.name!r} of {where}",
            "shape [-1] or [-1, K]: one row of scores per input row",
            f"shape {list(shape)}",
        )
    return OutputInfo(model, chosen.name, chosen.datatype, shape)


@dataclass(frozen=True)
class ModelInfo:
    """What the server says about a model, resolved to the one input and output used.

    Attributes
    ----------
    name, version, platform : str
        ``version`` is the version asked for (``""``: the server's choice); ``versions`` lists
        what the server holds.
    versions : tuple of str
    input_name, input_datatype : str
        V2 datatype names: ``"FP32"``, ``"UINT8"``...
    input_shape : tuple of int
        As served, with the batch dimension first; ``-1`` is any size.
    output_name, output_datatype : str
    output_shape : tuple of int
    max_batch_size : int or None
        From the model config; None where the server does not serve model configs (MLServer,
        KServe): the server then refuses an oversized batch itself.
    """

    name: str
    version: str
    platform: str
    versions: tuple[str, ...]
    input_name: str
    input_datatype: str
    input_shape: tuple[int, ...]
    output_name: str
    output_datatype: str
    output_shape: tuple[int, ...]
    max_batch_size: int | None

    @property
    def n_classes(self) -> int | None:
        """Columns of the output (None when the model leaves the width open)."""
        return self.output.columns

    @property
    def output(self) -> OutputInfo:
        return OutputInfo(self.name, self.output_name, self.output_datatype, self.output_shape)


class TritonSource:
    """Scores of a model served by Triton (or any KServe V2 gRPC server), batch by batch.

    Parameters
    ----------
    url : str
        ``"host:port"`` of the server's gRPC endpoint (Triton: 8001).
    model : str
    input_name, output_name : str, optional
        Override the names read from the model metadata (needed when the model has several
        inputs, or several outputs none of which is named after ``outputs``).
    outputs : {"logits", "probabilities"}
        What the output holds. ``"probabilities"`` is checked on every batch (values in [0, 1],
        rows summing to 1), so logits declared as probabilities fail early.
    concurrency : int
        Most requests in flight at once.
    batch_size : int
        Rows per request; at most the model's ``max_batch_size``.
    timeout : float
        Seconds each request may take.
    version : str
        Model version; ``""`` lets the server choose.
    n_classes : int, optional
        Expected output width (the class count of the stream the scores go to); checked against
        the metadata and every response, so a model whose output width is open (``[-1, -1]``)
        and does not fit the stream fails on its first batch, before evalstream sees it.
    connect_timeout : float
        Seconds ``check`` waits for the server to answer and the model to become ready.
    retries : int
        Resends of a request that got a transient answer (``UNAVAILABLE``; Triton's NOT_FOUND
        "has no available versions" while it unloads at shutdown) at the least; resends go on
        while ``connect_timeout`` has not passed since its first failure, so a restarted
        server is waited for. Inference has no side effects, and scores reach the stream only
        once their batch has them, so a resend never counts a row twice.
    credentials : grpc.ChannelCredentials, optional
        TLS to the server (``grpc.ssl_channel_credentials``); None: plaintext.

    Attributes
    ----------
    resends : int
        Requests sent again after a transient answer, since the source was made (a restart of
        the server in the middle of a run shows here).
    """

    def __init__(
        self,
        url: str,
        model: str,
        input_name: str | None = None,
        output_name: str | None = None,
        outputs: str = "logits",
        concurrency: int = 4,
        batch_size: int = 64,
        timeout: float = 30.0,
        *,
        version: str = "",
        n_classes: int | None = None,
        connect_timeout: float = 10.0,
        retries: int = 2,
        credentials: Any = None,
    ) -> None:
        if outputs not in OUTPUT_KINDS:
            raise SourceInputError("outputs", f"one of {list(OUTPUT_KINDS)}", repr(outputs))
        for field, value in (("concurrency", concurrency), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SourceInputError(field, "a positive integer", repr(value))
        for field, seconds in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if not seconds > 0:
                raise SourceInputError(field, "seconds > 0", repr(seconds))
        self.url = url
        self.model = model
        self.input_name = input_name
        self.output_name = output_name
        self.outputs = outputs
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.version = version
        self.n_classes = n_classes
        self.connect_timeout = float(connect_timeout)
        self.retries = retries
        self.credentials = credentials
        self.resends = 0
        self._client: Any = None
        self._info: ModelInfo | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> TritonSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TritonSource(url={self.url!r}, model={self.model!r})"

    def _new_client(self) -> Any:
        return grpcclient.InferenceServerClient(self.url, creds=self.credentials)

    @property
    def info(self) -> ModelInfo:
        """The model as ``check`` found it (runs ``check`` the first time)."""
        return self._info if self._info is not None else self.check()

    # -- check ---------------------------------------------------------------------------------
    def check(self) -> ModelInfo:
        """Wait until the server is live and ready and the model ready; read its metadata.

        Raises
        ------
        SourceUnavailableError
            The server did not answer, or it or the model was not ready, within
            ``connect_timeout`` seconds.
        SourceInputError
            The server has no such model, or its input or output does not fit (several and none
            chosen, not a float score output, a width other than ``n_classes``, a ``batch_size``
            over its ``max_batch_size``).
        """
        metadata = self.model_metadata()
        info = self._resolve(metadata, self._max_batch_size())
        self._info = info
        return info

    def model_metadata(self) -> Any:
        """Wait as ``check`` does, then return the model's ``ModelMetadataResponse`` as the
        server sent it (every input and output; nothing resolved or checked)."""
        deadline = time.monotonic() + self.connect_timeout
        self._wait_live(deadline)
        if self._client is None:
            self._client = self._new_client()
        self._wait_ready(deadline)
        return self._call("get_model_metadata", self.model, self.version)

    def _wait_live(self, deadline: float) -> None:
        last = "no answer"
        while True:
            # A fresh channel per probe: a reused one backs off for long after refused connects.
            probe = self._new_client()
            try:
                wait = min(_PROBE_S, max(deadline - time.monotonic(), 0.05))
                if probe.is_server_live(client_timeout=wait):
                    return
                last = "the server says it is not live"
            except InferenceServerException as exc:
                last = _describe(exc)
            finally:
                probe.close()
            if time.monotonic() + _POLL_S > deadline:
                raise SourceUnavailableError(
                    f"inference server {self.url}",
                    "a KServe V2 gRPC server that answers",
                    f"no answer within {self.connect_timeout:g} s ({last})",
                    "check the address and that the server is running",
                )
            time.sleep(_POLL_S)

    def _wait_ready(self, deadline: float) -> None:
        """Wait for the model, not the whole server: Triton with ``--strict-readiness=true``
        says the server is not ready while any model of its repository failed to load, and
        still serves the ready ones. A ready model in a server that is not ready is logged with
        the server's model states, then used."""
        while True:
            model_ready = self._probe("is_model_ready", self.model, self.version)
            if model_ready is True:
                if self._probe("is_server_ready") is not True:
                    states = _states_of_all(self._repository_index())
                    _log.warning(
                        "inference server %s: model %r is ready, the server is not%s; "
                        "going on with the model",
                        self.url,
                        self.model,
                        f" (its models: {states})" if states else "",
                    )
                return
            index = self._repository_index()
            known = None if index is None else {m["name"] for m in index}
            if model_ready is not True and (
                (known is not None and self.model not in known)
                or (known is None and self._metadata_missing())
            ):
                raise SourceInputError(
                    "model",
                    f"a model the server at {self.url} has"
                    + (f": one of {sorted(known)}" if known is not None else ""),
                    repr(self.model),
                )
            # Versions the index names (an unloaded model's entry may name none).
            versions = [m["version"] for m in index or [] if m["name"] == self.model]
            if model_ready is not True and self.version and versions and all(versions):
                if self.version not in versions:
                    raise SourceInputError(
                        "version",
                        f"a version of model {self.model!r} the server has: {sorted(versions)}",
                        repr(self.version),
                    )
            if time.monotonic() + _POLL_S > deadline:
                state = _states(index, self.model) or "not ready"
                received = f"{self.model!r} {state}"
                others = [m for m in index or [] if m["name"] != self.model]
                if others and self._probe("is_server_ready") is not True:
                    received += (
                        f" in a server that is not ready (its models: {_states_of_all(index)})"
                    )
                version = f" version {self.version}" if self.version else ""
                expected = f"model {self.model!r}{version} ready within {self.connect_timeout:g} s"
                raise SourceUnavailableError(
                    f"inference server {self.url}", expected, received, "see its log"
                )
            time.sleep(_POLL_S)

    def _probe(self, method: str, *args: str) -> bool | None:
        """A readiness call: True, False, or None when it failed (MLServer fails
        ``is_model_ready`` for an unknown model where Triton answers False)."""
        try:
            return bool(getattr(self._client, method)(*args, client_timeout=_PROBE_S))
        except InferenceServerException:
            return None

    def _repository_index(self) -> list[dict[str, str]] | None:
        """The server's models with their state; None where the server does not say."""
        try:
            index = self._client.get_model_repository_index(client_timeout=_PROBE_S)
        except InferenceServerException:
            return None
        return [
            {
                "name": m.name,
                "version": m.version,
                "state": m.state.removeprefix("State.") or "UNKNOWN",  # MLServer: "State.READY"
                "reason": m.reason,
            }
            for m in index.models
        ]

    def _metadata_missing(self) -> bool:
        try:
            self._client.get_model_metadata(self.model, self.version, client_timeout=_PROBE_S)
        except InferenceServerException as exc:
            return _status(exc) == "NOT_FOUND"
        return False

    def _max_batch_size(self) -> int | None:
        try:
            config = self._client.get_model_config(
                self.model, self.version, client_timeout=self.timeout
            )
        except InferenceServerException:
            return None  # not every V2 server serves Triton's model config (MLServer does not)
        return int(config.config.max_batch_size)

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._client, method)(*args, client_timeout=self.timeout)
        except InferenceServerException as exc:
            raise SourceUnavailableError(
                f"inference server {self.url}", f"an answer to {method}", _describe(exc)
            ) from None

    # -- metadata ------------------------------------------------------------------------------
    def _resolve(self, metadata: Any, max_batch_size: int | None) -> ModelInfo:
        where = f"model {self.model!r}"
        inputs = {t.name: t for t in metadata.inputs}
        outputs = {t.name: t for t in metadata.outputs}
        in_name = self._pick("input_name", self.input_name, inputs, where, ())
        words = _OUTPUT_WORDS[self.outputs]
        out_name = self._pick("output_name", self.output_name, outputs, where, words)
        tin, tout = inputs[in_name], outputs[out_name]
        in_shape, out_shape = tuple(int(d) for d in tin.shape), tuple(int(d) for d in tout.shape)
        if max_batch_size == 0 or not in_shape or in_shape[0] != -1:
            raise SourceInputError(
                f"input {in_name!r} of {where}",
                "a batch dimension first (shape [-1, ...], max_batch_size > 0)",
                f"shape {list(in_shape)}" + (", max_batch_size 0" if max_batch_size == 0 else ""),
                "rows are sent in batches along the first dimension; serve the model with "
                "batching enabled",
            )
        if tout.datatype not in _FLOAT_TYPES:
            raise SourceInputError(
                f"output {out_name!r} of {where}",
                f"floating-point scores ({', '.join(_FLOAT_TYPES)})",
                f"datatype {tout.datatype}",
                "name the score output with output_name",
            )
        if len(out_shape) != 2:
            raise SourceInputError(
                f"output {out_name!r} of {where}",
                "shape [-1, n_classes]: one row of class scores per input row",
                f"shape {list(out_shape)}",
            )
        if max_batch_size is not None and self.batch_size > max_batch_size:
            raise SourceInputError(
                "batch_size",
                f"at most {max_batch_size}, the max_batch_size of {where}",
                str(self.batch_size),
                f"send batches of {max_batch_size} rows or fewer",
            )
        info = ModelInfo(
            name=metadata.name or self.model,
            version=self.version,
            platform=metadata.platform,
            versions=tuple(metadata.versions),
            input_name=in_name,
            input_datatype=tin.datatype,
            input_shape=in_shape,
            output_name=out_name,
            output_datatype=tout.datatype,
            output_shape=out_shape,
            max_batch_size=max_batch_size,
        )
        if self.n_classes is not None and info.n_classes not in (None, self.n_classes):
            raise _width_error(info, self.n_classes, info.n_classes)
        return info

    @staticmethod
    def _pick(
        field: str, chosen: str | None, tensors: dict[str, Any], where: str, words: Sequence[str]
    ) -> str:
        kind = field.removesuffix("_name")
        listing = [f"{t.name} {t.datatype} {list(t.shape)}" for t in tensors.values()]
        if chosen is not None:
            if chosen not in tensors:
                raise SourceInputError(
                    field, f"an {kind} of {where}: one of {listing}", repr(chosen)
                )
            return chosen
        if len(tensors) == 1:
            return next(iter(tensors))
        named = [n for n in tensors if n.lower() in words]
        if len(named) == 1:
            return named[0]
        raise SourceInputError(
            field,
            f"one {kind} of {where} chosen when it has several",
            f"{len(tensors)} {kind}s {listing}",
            f"pass {field} to choose",
        )

    # -- inference -----------------------------------------------------------------------------
    def infer(self, inputs: Any) -> np.ndarray:
        """Scores of every row of ``inputs``, shape (n, n_classes), in the order of the rows.

        Raises
        ------
        SourceInputError
            ``inputs`` do not fit the model's input (shape, datatype), the server refused a
            batch (over its max batch size, too large a message), or the output has another
            width than ``n_classes`` or does not hold probabilities as declared.
        SourceUnavailableError
            A request failed on the server's side or got no answer within ``timeout``.
        """
        parts = [scores for _, scores in self.iter_infer(inputs)]
        if not parts:
            return np.empty((0, self.info.n_classes or 0), dtype=np.float32)
        return np.concatenate(parts)

    def prepare(self, inputs: Any) -> np.ndarray:
        """``inputs`` as the model's input takes them: shape checked, cast to its datatype
        (a same-kind cast, such as float64 to FP32; no cast that changes the kind of number)."""
        info = self.info
        x = np.asarray(inputs)
        expected = info.input_shape
        received = x.shape
        if len(received) != len(expected) or any(
            want not in (-1, got) for want, got in zip(expected[1:], received[1:], strict=True)
        ):
            raise SourceInputError(
                f"input {info.input_name!r} of model {self.model!r}",
                f"shape {list(expected)} (-1 is any size; the first dimension is the batch)",
                f"shape {list(received)}",
            )
        dtype = np.dtype(triton_to_np_dtype(info.input_datatype))
        if x.dtype != dtype:
            if not np.can_cast(x.dtype, dtype, casting="same_kind"):
                raise SourceInputError(
                    f"input {info.input_name!r} of model {self.model!r}",
                    f"{info.input_datatype} values ({dtype}), or values that cast to them",
                    f"dtype {x.dtype}",
                )
            x = x.astype(dtype)
        return np.ascontiguousarray(x)

    def iter_infer(self, inputs: Any) -> Iterator[tuple[int, np.ndarray]]:
        """An iterator of ``(start_row, scores)`` per batch, in row order, as results come in.

        ``inputs`` are checked and cast (``prepare``) by this call, so bad inputs raise here,
        before any request; requests go out as the iterator is consumed, with the ``outputs``
        and ``n_classes`` the source has then. At most ``concurrency`` requests are in flight,
        and at most ``concurrency`` batches are requested ahead of the one yielded next, so
        memory stays bounded however slow the caller is. Every wait is bounded by ``timeout``.
        """
        return self._batches(self.prepare(inputs))

    def _batches(self, x: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        info = self.info
        if self._client is None:  # closed after check: open a channel again
            self._client = self._new_client()
        starts = list(range(0, x.shape[0], self.batch_size))
        done: queue.Queue[tuple[int, Any, Any]] = queue.Queue()
        ready: dict[int, np.ndarray] = {}
        failing_since: dict[int, float] = {}  # batch -> when its first transient failure came
        attempts = [0] * len(starts)
        submitted = next_index = 0
        width = info.n_classes or self.n_classes
        while next_index < len(starts):
            while submitted < len(starts) and submitted < next_index + self.concurrency:
                self._submit(
                    submitted, x[starts[submitted] : starts[submitted] + self.batch_size], done
                )
                submitted += 1
            while next_index not in ready:
                try:
                    i, result, error = done.get(timeout=self.timeout + 5.0)
                except queue.Empty:
                    raise SourceUnavailableError(
                        f"inference server {self.url}",
                        f"an answer within {self.timeout:g} s",
                        "none",
                        "the server is overloaded or stuck; lower concurrency or batch_size",
                    ) from None
                rows = x[starts[i] : starts[i] + self.batch_size]
                if error is not None:
                    if _transient(error):
                        first = failing_since.setdefault(i, time.monotonic())
                        attempts[i] += 1
                        # At least `retries` resends; more while connect_timeout has not passed
                        # since the first failure (a restarting server comes back within it).
                        within = time.monotonic() - first < self.connect_timeout
                        if attempts[i] <= self.retries or within:
                            time.sleep(min(0.1 * 2 ** attempts[i], 1.0))
                            self.resends += 1
                            self._submit(i, rows, done)
                            continue
                        raise self._gone_error(error, starts[i], len(rows))
                    raise self._infer_error(error, starts[i], len(rows))
                scores = self._decode(result, starts[i], len(rows), width)
                width = scores.shape[1]
                ready[i] = scores
            yield starts[next_index], ready.pop(next_index)
            next_index += 1

    def _submit(self, index: int, rows: np.ndarray, done: queue.Queue) -> None:
        info = self._info
        assert info is not None
        tensor = grpcclient.InferInput(info.input_name, list(rows.shape), info.input_datatype)
        tensor.set_data_from_numpy(rows)
        try:
            self._client.async_infer(
                self.model,
                [tensor],
                # tritonclient calls callback(result=..., error=...) by keyword.
                callback=functools.partial(_on_done, done, index),
                model_version=self.version,
                outputs=[grpcclient.InferRequestedOutput(info.output_name)],
                client_timeout=self.timeout,
            )
        except InferenceServerException as exc:  # refused before it was sent
            done.put((index, None, exc))

    def _decode(self, result: Any, start: int, n: int, width: int | None) -> np.ndarray:
        info = self._info
        assert info is not None
        where = f"output {info.output_name!r} of model {self.model!r}"
        scores = result.as_numpy(info.output_name)
        if scores is None:
            raise SourceUnavailableError(
                where,
                "a tensor in the response",
                f"a response without it (rows {start}:{start + n})",
            )
        if scores.ndim != 2 or scores.shape[0] != n:
            raise SourceUnavailableError(
                where, f"shape [{n}, n_classes] for rows {start}:{start + n}",
                f"shape {list(scores.shape)}",
            )  # fmt: skip
        expected = self.n_classes if self.n_classes is not None else width
        if expected is not None and scores.shape[1] != expected:
            raise _width_error(info, expected, scores.shape[1])
        if scores.dtype == np.float16:
            scores = scores.astype(np.float32)
        if self.outputs == "probabilities":
            _check_probabilities(scores, where, start)
        return scores

    def _gone_error(self, error: Any, start: int, n: int) -> SourceUnavailableError:
        """A transient answer that did not go away within ``connect_timeout``: a server that is
        shutting down or gone, or (still live) a model that was unloaded."""
        live = self._probe("is_server_live") is True
        if live and _status(error) == "NOT_FOUND":
            received = f"model {self.model!r} unloaded while the job ran ({_describe(error)})"
            hint = "load the model again (Triton: model control) and rerun"
        elif live:
            received = (
                f"no scores within {self.connect_timeout:g} s of retries ({_describe(error)})"
            )
            hint = "see the server's log"
        else:
            received = (
                f"a server that is shutting down or gone, not back within "
                f"{self.connect_timeout:g} s ({_describe(error)})"
            )
            hint = "restart it and rerun (the stream keeps what was logged)"
        return SourceUnavailableError(
            f"inference server {self.url}", f"scores for rows {start}:{start + n}", received, hint
        )

    def _infer_error(self, error: Any, start: int, n: int) -> SourceError:
        status, message = _status(error), _message(error)
        rows = f"rows {start}:{start + n}"
        match = _MAX_BATCH_MESSAGE.search(message)
        if match:
            limit = int(match.group(1))
            return SourceInputError(
                "batch_size",
                f"at most {limit}, the max batch size of model {self.model!r}",
                str(n),
                f"send batches of {limit} rows or fewer",
            )
        if status == "RESOURCE_EXHAUSTED":
            return SourceInputError(
                "batch_size",
                f"requests the server at {self.url} accepts",
                f"{n} rows ({rows}): {status}: {message}",
                "the request is over the server's message size limit: lower batch_size",
            )
        if status == "INVALID_ARGUMENT":
            return SourceInputError(
                f"inputs ({rows})", f"a request model {self.model!r} accepts", message
            )
        if status == "DEADLINE_EXCEEDED":
            return SourceUnavailableError(
                f"inference server {self.url}",
                f"an answer within {self.timeout:g} s",
                f"none for {rows}",
                "raise timeout, or lower concurrency or batch_size",
            )
        return SourceUnavailableError(
            f"inference server {self.url}", f"scores for {rows}", f"{status}: {message}"
        )


def _on_done(done: queue.Queue, index: int, result: Any = None, error: Any = None) -> None:
    done.put((index, result, error))


def _transient(exc: Any) -> bool:
    """Answers a resend may fix: UNAVAILABLE (no connection; Triton's "Server is stopping"), and
    Triton's NOT_FOUND "... has no available versions", which it gives while it unloads its
    models at shutdown (a model it never had gets "unknown model" without that suffix)."""
    status = _status(exc)
    return status == "UNAVAILABLE" or (
        status == "NOT_FOUND" and "has no available versions" in _message(exc)
    )


def _status(exc: Any) -> str:
    status = exc.status() if callable(getattr(exc, "status", None)) else None
    return str(status or "UNKNOWN").removeprefix("StatusCode.")


def _message(exc: Any) -> str:
    message = exc.message() if callable(getattr(exc, "message", None)) else None
    return message or str(exc)


def _describe(exc: InferenceServerException) -> str:
    return f"{_status(exc)}: {_message(exc)}"


def _states(index: list[dict[str, str]] | None, model: str) -> str:
    rows = [m for m in index or [] if m["name"] == model]
    return "; ".join(
        f"version {m['version'] or '-'} {m['state']}" + (f" ({m['reason']})" if m["reason"] else "")
        for m in rows
    )


def _states_of_all(index: list[dict[str, str]] | None) -> str:
    return ", ".join(f"{m['name']} {m['state']}" for m in index or [])


def _width_error(info: ModelInfo, expected: int, received: int | None) -> SourceInputError:
    return SourceInputError(
        f"output {info.output_name!r} of model {info.name!r}",
        f"{expected} columns, one per class of the stream",
        f"{received} columns (shape {list(info.output_shape)})",
        "the stream's classes must be the model's output classes, in its order",
    )


def _check_probabilities(scores: np.ndarray, where: str, start: int) -> None:
    """The engine's rule for probability rows (``make_batch`` on a probabilities stream of this
    width: values in [0, 1], rows summing to 1 within ``StreamSpec.probability_tolerance``), so
    what passes here passes evalstream's ingest."""
    n, width = scores.shape
    if n == 0:
        return
    spec = _probability_spec(width)
    try:
        make_batch(spec, np.zeros(n, dtype=np.int64), scores)
    except InvalidInputError as exc:
        raise SourceInputError(
            where,
            exc.expected,
            f"{exc.received} in rows {start}:{start + n}",
            "these look like logits: declare outputs='logits'" if exc.hint else "",
        ) from None


@functools.lru_cache(maxsize=8)
def _probability_spec(width: int) -> StreamSpec:
    if width <= 2:  # one column, or two summing to 1: the same checks as a binary stream's
        return StreamSpec(task="binary")
    return StreamSpec(task="multiclass", classes=tuple(map(str, range(width))))

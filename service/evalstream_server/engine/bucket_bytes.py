"""A window bucket as bytes: its non-zero entries, not its dense state.

Snapshots hold every bucket of every window. Written dense (``State.to_bytes``), each bucket cost
the full state whatever it held (37 MiB at K = 32), so a stream with a few windows made a snapshot
past SQLite's one-gigabyte blob limit and the durable store stopped (issue 13). A bucket is
written as ``(flat index, value)`` pairs per field instead, its exact rows and its row sample
(``row_sample``) as they are;
``bucket_from_bytes`` also reads the dense form of older snapshots.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from .batch import Batch
from .errors import InvalidInputError
from .spec import StreamSpec
from .state import SparseCounts, State, read_sample

__all__ = ["bucket_to_bytes", "bucket_from_bytes"]

_MAGIC = b"EVBUCKET"


def bucket_to_bytes(sparse: SparseCounts) -> bytes:
    """Magic, a JSON header (fields and entry counts, exact rows), then little-endian arrays."""
    items = sparse.items()
    arrays: list[np.ndarray] = []
    for _, idx, values in items:
        arrays += [np.asarray(idx, "<i8"), np.asarray(values, "<f8")]
    exact = None
    if sparse.exact is not None:
        labels, scores, weights = sparse.exact.arrays()
        exact = int(scores.shape[0])
        multiclass = sparse.exact.multiclass
        arrays += [
            np.ascontiguousarray(labels, dtype="<i8" if multiclass else "u1"),
            np.ascontiguousarray(scores, dtype="<f4"),
            np.ascontiguousarray(weights, dtype="<f8"),
        ]
    header: dict[str, Any] = {
        "fields": [[name, int(idx.size)] for name, idx, _ in items],
        "exact": exact,
    }
    if sparse.sample is not None:
        header["sample"] = sparse.sample.size
        arrays += sparse.sample.arrays()
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([_MAGIC, struct.pack("<I", len(head)), head, *(a.tobytes() for a in arrays)])


def bucket_from_bytes(spec: StreamSpec, data: bytes) -> State:
    """The bucket's state (``bucket_to_bytes``, or ``State.to_bytes`` of older snapshots)."""
    if data[:8] != _MAGIC:
        return State.from_bytes(data)
    view = memoryview(data)
    (head_len,) = struct.unpack("<I", view[8:12])
    offset = 12 + head_len
    try:
        header = json.loads(bytes(view[12:offset]))
    except ValueError as exc:
        raise InvalidInputError("bucket", "a valid header", str(exc)) from exc

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal offset
        size = np.dtype(dtype).itemsize * count
        if offset + size > len(view):
            raise InvalidInputError("bucket", "complete array data", "truncated bytes")
        arr = np.frombuffer(view[offset : offset + size], dtype=dtype).astype(dtype.lstrip("<"))
        offset += size
        return arr

    state = State(spec)
    shapes = {k: v.size for k, v in state.counts.items()}
    entries = []  # a field may come in two parts (integer and real-valued entries)
    for name, count in header["fields"]:
        if name not in shapes:
            raise InvalidInputError("bucket", f"fields among {sorted(shapes)}", repr(name))
        idx, values = take("<i8", count), take("<f8", count)
        if count and (idx.min() < 0 or idx.max() >= shapes[name]):
            raise InvalidInputError("bucket", f"indices of {name} below {shapes[name]}", "others")
        entries.append((name, idx, values))
    for name, idx, values in entries:
        state._add_entries(name, idx, values)
    n = header.get("exact")
    if n is None:
        state.to_bins()  # binned, written without rows (past the cap, or before they were kept)
    if state.exact is not None and n:
        C, multiclass = spec.n_columns, state.exact.multiclass
        labels = take("<i8" if multiclass else "u1", n if multiclass else n * C)
        scores = take("<f4", n * C).reshape(n, C)
        weights = take("<f8", n)
        labels = labels if multiclass else labels.reshape(n, C).astype(bool)
        state.exact.append(Batch(labels, scores, None if np.all(weights == 1.0) else weights))
    if state.sample is not None:  # buckets written before the sample existed have none

        def take_shaped(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
            return take(dtype, int(np.prod(shape))).reshape(shape)

        read_sample(state.sample, int(header.get("sample") or 0), take_shaped, "bucket")
    if offset != len(view):
        raise InvalidInputError("bucket", f"{offset} bytes", f"{len(view)} bytes")
    return state

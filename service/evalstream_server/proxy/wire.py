"""Read and set ``model_name`` and ``id`` in serialized V2 messages without parsing them whole.

A ModelInferRequest carries its input tensors as bytes (``raw_input_contents``); parsing it into
a message would copy them on every request. The proxy only needs two short string fields, so it
walks the top-level fields and skips every other one by its length: constant time whatever the
tensor size. Setting a field is an append (protobuf keeps the last occurrence of a scalar field),
so a forwarded message is never re-serialized.

Field numbers are those of ``inference.ModelInferRequest`` and ``inference.ModelInferResponse``
alike: ``model_name = 1``, ``id = 3``.
"""

from __future__ import annotations

__all__ = ["MODEL_NAME_FIELD", "ID_FIELD", "WireError", "read_name_and_id", "with_id"]

MODEL_NAME_FIELD = 1
ID_FIELD = 3


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def read_name_and_id(data: bytes) -> tuple[str, str]:
    """``(model_name, id)`` of a serialized ModelInferRequest or ModelInferResponse ("" when
    unset; the last occurrence wins, as in a parse). Raises ``WireError`` on malformed bytes."""
    name = rid = b""
    pos, end = 0, len(data)
    while pos < end:
        tag, pos = _varint(data, pos)
        field, kind = tag >> 3, tag & 7
        if kind == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise WireError(f"field {field}: length {length} past the end")
            if field == MODEL_NAME_FIELD:
                name = data[pos : pos + length]
            elif field == ID_FIELD:
                rid = data[pos : pos + length]
            pos += length
        elif kind == 0:
            _, pos = _varint(data, pos)
        elif kind == 1:
            pos += 8
        elif kind == 5:
            pos += 4
        else:
            raise WireError(f"field {field}: unsupported wire type {kind}")
    if pos != end:
        raise WireError("fixed-width field past the end")
    try:
        return name.decode("utf-8"), rid.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError("model_name or id is not UTF-8") from exc


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def with_id(message: bytes, request_id: str) -> bytes:
    """``message`` (a serialized ModelInferRequest or ModelInferResponse) with ``id`` set."""
    data = request_id.encode("utf-8")
    return message + bytes([(ID_FIELD << 3) | 2]) + _encode_varint(len(data)) + data

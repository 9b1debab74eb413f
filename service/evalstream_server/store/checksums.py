"""Row checksums of the durable store: each row of a table carries the CRC-32 of its columns.

As in Prometheus' TSDB (every WAL record and chunk carries a CRC-32), a damaged or edited row is
found when it is read instead of being counted. The checksum covers every column of the row in
order, the stream key included (a row moved to another stream is damage too), with a canonical
encoding of each value, so a row reads back to the same checksum whatever SQLite's column
affinity did to it (an integral REAL comes back as written, an INTEGER given as 3.0 as 3).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

__all__ = ["COLUMNS", "row_crc"]

# The columns each checksummed table's ``crc`` covers, in order (the tables' other column).
COLUMNS: dict[str, tuple[str, ...]] = {
    "streams": ("name", "spec", "create_time", "tenant"),
    "producers": ("stream", "producer", "last_seq", "seen"),
    "outcomes": ("stream", "producer", "seq", "outcome"),
    "batches": ("id", "stream", "ts", "now", "n", "labels", "scores", "weights", "kind", "ids"),
    "snapshots": ("stream", "batch_id", "engine", "update_time", "time"),
}

_INT = struct.Struct("<q")
_FLOAT = struct.Struct("<d")
_LEN = struct.Struct("<Q")


def row_crc(table: str, values: Sequence[object]) -> int:
    """The CRC-32 of a row of ``table`` whose columns (``COLUMNS[table]``) hold ``values``."""
    crc = zlib.crc32(table.encode())
    for value in values:
        if value is None:
            crc = zlib.crc32(b"N", crc)
        elif isinstance(value, str):
            data = value.encode()
            crc = zlib.crc32(data, zlib.crc32(b"S" + _LEN.pack(len(data)), crc))
        elif isinstance(value, bytes | bytearray | memoryview):
            view = memoryview(value).cast("B")
            crc = zlib.crc32(view, zlib.crc32(b"B" + _LEN.pack(view.nbytes), crc))
        else:
            number = float(value)  # type: ignore[arg-type]  # int, float, numpy scalars
            if number.is_integer() and abs(number) < 2**63:
                crc = zlib.crc32(b"I" + _INT.pack(int(number)), crc)
            else:
                crc = zlib.crc32(b"F" + _FLOAT.pack(number), crc)
    return crc

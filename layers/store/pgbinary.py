"""PostgreSQL's binary COPY format, built column by column with numpy and Arrow (no Python loop per row).

    copy.write(SIGNATURE)                                    # COPY t (id, name, geom) FROM STDIN (FORMAT binary)
    for block in blocks:
        copy.write(rows([("int", block["id"]), ("str", block["name"]), ("wkb", ewkb)]))
    copy.write(TRAILER)

Why: in ``FORMAT csv`` the server parses every number and date from text and decodes each geometry from hex
EWKB; in binary it takes the eight bytes of a bigint as they are and hands the EWKB straight to PostGIS's
receive function. For a county's 地类图斑 that is about half the server's CPU of the COPY (docs/scale.md §6).

The format (PostgreSQL docs, "COPY — Binary Format"): an 11-byte signature, a 32-bit flags field and a 32-bit
header-extension length; then per row a 16-bit field count and per field a 32-bit length (−1 for NULL) and
that many bytes; then a 16-bit −1. All integers big-endian. Values are sent in each type's binary "send"
form: bigint and double precision 8 bytes, boolean 1 byte, date the days since 2000-01-01 (int32),
timestamptz the microseconds since 2000-01-01 UTC (int64), text its UTF-8 bytes, geometry its EWKB.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days after 1970-01-01
_EPOCH_US = _EPOCH_DAYS * 86_400 * 1_000_000
_EMPTY = pa.scalar(b"", pa.binary())


def _fixed(values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """Fields of one fixed-width column: ``values`` already big-endian, one row each."""
    n = len(values)
    width = values.dtype.itemsize
    body = np.empty((n, 4 + width), dtype=np.uint8)
    body[:, :4] = np.frombuffer(np.array(width, dtype=">i4").tobytes(), dtype=np.uint8)
    body[:, 4:] = values.view(np.uint8).reshape(n, width)
    if valid is None or valid.all():
        offsets = np.arange(n + 1, dtype=np.int32) * (4 + width)
        data = body.reshape(-1)
    else:
        body[~valid, :4] = 0xFF
        keep = np.ones_like(body, dtype=bool)
        keep[~valid, 4:] = False
        data = body[keep]
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.where(valid, 4 + width, 4), out=offsets[1:])
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _variable(values: pa.Array) -> pa.Array:
    """Fields of one text or bytes column: the length prefix joined to each value (−1 and nothing for NULL)."""
    values = values.cast(pa.binary())
    lengths = pc.binary_length(values).to_numpy(zero_copy_only=False)
    valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    lengths = np.where(valid, np.nan_to_num(lengths, nan=0), -1).astype(">i4")
    prefix = pa.Array.from_buffers(pa.binary(), len(values),
                                   [None, pa.py_buffer(np.arange(len(values) + 1, dtype=np.int32) * 4),
                                    pa.py_buffer(lengths.tobytes())])
    return pc.binary_join_element_wise(prefix, pc.fill_null(values, _EMPTY), _EMPTY)


def _valid(arr: pa.Array) -> np.ndarray | None:
    return None if arr.null_count == 0 else ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def fields(kind: str, arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One column as binary-COPY fields. ``kind`` is the store's: str, int, float, bool, date, datetime, or
    ``wkb`` (bytes sent as they are: EWKB for a geometry column)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if kind in ("str", "wkb"):
        return _variable(arr if kind == "wkb" else arr.cast(pa.string()))
    valid = _valid(arr)
    if kind == "int":
        values = arr.cast(pa.int64()).fill_null(0).to_numpy().astype(">i8")
    elif kind == "float":
        values = arr.cast(pa.float64()).fill_null(0.0).to_numpy().astype(">f8")
    elif kind == "bool":
        values = arr.cast(pa.bool_()).fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
    elif kind == "date":
        days = arr.cast(pa.date32()).cast(pa.int32()).fill_null(0).to_numpy()
        values = (days.astype(np.int64) - _EPOCH_DAYS).astype(">i4")
    elif kind == "datetime":
        us = arr.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).fill_null(0).to_numpy()
        values = (us - _EPOCH_US).astype(">i8")
    else:
        raise ValueError(f"no binary COPY form for column kind {kind!r}")
    return _fixed(np.ascontiguousarray(values), valid)


def rows(columns: list[tuple[str, pa.Array | pa.ChunkedArray]]) -> bytes | memoryview:
    """The rows of ``columns`` [(kind, values), …] (of equal length, in the order of the COPY's column list)
    in binary COPY form; the stream around them starts with SIGNATURE and ends with TRAILER, once."""
    if not columns:
        raise ValueError("a binary COPY needs at least one column")
    n = len(columns[0][1])
    count = np.frombuffer(np.array(len(columns), dtype=">i2").tobytes(), dtype=np.uint8)
    head = pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(np.arange(n + 1, dtype=np.int32) * 2),
                                                  pa.py_buffer(np.tile(count, n))])
    joined = pc.binary_join_element_wise(head, *(fields(kind, values) for kind, values in columns), _EMPTY)
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=n + 1, offset=joined.offset * 4)
    return memoryview(joined.buffers()[2])[offsets[0]:offsets[-1]] if n else b""

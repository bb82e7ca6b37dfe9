"""layers/store/pgbinary.py against psycopg's own binary COPY row formatter (an independent implementation of
the same wire format), value by value, with NULLs and the edges of each type; the server's acceptance of it
is tested by the store round trips (test_store_roundtrip.py, postgis)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from psycopg._copy_base import format_row_binary
from psycopg.adapt import Transformer
from psycopg.postgres import types
from psycopg.pq import Format

from layers.store import pgbinary

UTC = dt.UTC
PG_TYPE = {"int": "int8", "float": "float8", "bool": "bool", "date": "date", "datetime": "timestamptz",
           "str": "text", "wkb": "bytea"}
COLUMNS = {
    "int": pa.array([1, -(2 ** 63), 2 ** 63 - 1, None, 0], pa.int64()),
    "float": pa.array([1.5, -0.0, float("inf"), None, 1e-300], pa.float64()),
    "bool": pa.array([True, False, None, True, False]),
    "date": pa.array([dt.date(1999, 12, 31), dt.date(2000, 1, 1), dt.date(1900, 2, 28), None,
                      dt.date(2024, 2, 29)], pa.date32()),
    "datetime": pa.array([dt.datetime(2024, 5, 1, 12, 34, 56, 789000, tzinfo=UTC),
                          dt.datetime(1969, 12, 31, 23, 59, 59, 1000, tzinfo=UTC), None,
                          dt.datetime(2000, 1, 1, tzinfo=UTC), dt.datetime(1950, 6, 1, 8, tzinfo=UTC)],
                         pa.timestamp("ms", tz="UTC")),
    "str": pa.array(["耕地", "", None, 'a,"b"\nc\\d', "x" * 70_000], pa.string()),
    "wkb": pa.array([b"\x01\x02", b"", None, bytes(range(256)), b"\x00" * 3], pa.binary()),
}


def reference(kinds: list[str]) -> bytes:
    """The rows as psycopg writes them (Copy.write_row with these types)."""
    tx = Transformer()
    tx.set_dumper_types([types[PG_TYPE[k]].oid for k in kinds], Format.BINARY)
    out = bytearray()
    for i in range(len(COLUMNS[kinds[0]])):
        format_row_binary([COLUMNS[k][i].as_py() for k in kinds], tx, out)
    return bytes(out)


@pytest.mark.parametrize("kind", list(COLUMNS))
def test_each_kind_with_nulls_is_what_psycopg_writes(kind):
    assert bytes(pgbinary.rows([(kind, COLUMNS[kind])])) == reference([kind])


def test_a_row_of_every_kind_and_a_sliced_chunked_block():
    kinds = list(COLUMNS)
    assert bytes(pgbinary.rows([(k, COLUMNS[k]) for k in kinds])) == reference(kinds)
    # a slice of a chunked column (what COPY blocks of a table are): offsets do not start at 0
    chunked = pa.chunked_array([COLUMNS["str"].slice(0, 2), COLUMNS["str"].slice(2)]).slice(1, 3)
    tx = Transformer()
    tx.set_dumper_types([types["text"].oid], Format.BINARY)
    out = bytearray()
    for value in chunked.to_pylist():
        format_row_binary([value], tx, out)
    assert bytes(pgbinary.rows([("str", chunked)])) == bytes(out)


def test_stream_frame_and_no_rows():
    assert b"PGCOPY\n\xff\r\n\x00" + bytes(8) == pgbinary.SIGNATURE and pgbinary.TRAILER == b"\xff\xff"
    assert bytes(pgbinary.rows([("int", pa.array([], pa.int64()))])) == b""
    with pytest.raises(ValueError, match="no binary COPY form"):
        pgbinary.fields("time", pa.array([dt.time(1)]))


def test_large_block_matches_row_by_row():
    rng = np.random.default_rng(7)
    n = 5000
    ints = pa.array(rng.integers(-10**12, 10**12, n), mask=rng.random(n) < 0.1)
    texts = pa.array([None if i % 7 == 0 else "图斑" * int(i % 5) for i in range(n)], pa.string())
    got = bytes(pgbinary.rows([("int", ints), ("str", texts)]))
    tx = Transformer()
    tx.set_dumper_types([types["int8"].oid, types["text"].oid], Format.BINARY)
    out = bytearray()
    for a, b in zip(ints.to_pylist(), texts.to_pylist()):
        format_row_binary([a, b], tx, out)
    assert got == bytes(out)

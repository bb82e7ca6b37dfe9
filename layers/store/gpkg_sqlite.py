"""A GeoPackage through Python's own sqlite3 (no GDAL): its geometry blobs and the SQL functions GDAL would
otherwise provide.

- :func:`gpkg_wkb` / :func:`gpkg_header`: the standard WKB inside a GeoPackage geometry blob (GeoPackage 1.x,
  §2.1.3: ``GP``, version, flags, srs_id, optional envelope, then WKB).
- :func:`connect`: a sqlite3 connection to a store file with the functions its SQL needs registered:
  ``ST_IsEmpty`` / ``ST_MinX`` / ``ST_MaxX`` / ``ST_MinY`` / ``ST_MaxY`` (the R*Tree triggers GDAL creates call
  them; SQLite resolves them when it compiles any UPDATE of the table, even one that leaves the geometry
  alone) and ``yzt_spatial(op, geom, literal_wkb)`` (spatial filters, layers.store.sql).
"""

from __future__ import annotations

import functools
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import shapely

from ..errors import StoreError

_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


def gpkg_header(blob: bytes) -> tuple[bool, tuple[float, float, float, float] | None, int]:
    """(empty flag, envelope (minx, maxx, miny, maxy) or None, offset of the WKB) of a GeoPackage geometry."""
    flags = blob[3]
    order = "<" if flags & 1 else ">"
    size = _ENVELOPE_BYTES.get((flags >> 1) & 7, 0)
    envelope = struct.unpack(order + "4d", blob[8:40]) if size else None
    return bool(flags & 0x10), envelope, 8 + size


def gpkg_wkb(blob: bytes | None) -> bytes | None:
    """Standard WKB inside a GeoPackage geometry blob (None for a missing or empty geometry)."""
    if blob is None:
        return None
    if blob[:2] != b"GP":
        return bytes(blob)  # plain WKB (not a GeoPackage blob)
    flags = blob[3]
    if flags & 0b10000:  # empty
        return None
    return bytes(blob[8 + _ENVELOPE_BYTES[(flags >> 1) & 0b111]:])


def _st_function(which: str) -> Callable[[bytes | None], float | int | None]:
    index = {"ST_MinX": 0, "ST_MaxX": 1, "ST_MinY": 2, "ST_MaxY": 3}.get(which)

    def fn(blob: bytes | None) -> float | int | None:
        if blob is None or len(blob) < 8 or blob[:2] != b"GP":
            return None if index is not None else 1
        empty, envelope, offset = gpkg_header(blob)
        if which == "ST_IsEmpty":
            return int(empty or shapely.is_empty(shapely.from_wkb(bytes(blob[offset:]))))
        if empty:
            return None
        if envelope is None:
            b = shapely.bounds(shapely.from_wkb(bytes(blob[offset:])))
            envelope = (b[0], b[2], b[1], b[3])
        return float(envelope[index or 0])  # index is set for every function but ST_IsEmpty

    return fn


def envelope_meets(blob: bytes | None, minx: float, miny: float, maxx: float, maxy: float) -> int:
    """``yzt_envelope_meets(geom, minx, miny, maxx, maxy)``: 1 if the row's geometry is present, not empty and
    its envelope meets the box (edges included). One call per row where ST_IsEmpty and four ST_Min/Max calls
    took five, and the WKB is parsed only when the blob's header carries no envelope: a finite envelope in
    the header is the geometry's own (an empty geometry has none, or NaNs)."""
    if blob is None or len(blob) < 8 or blob[:2] != b"GP":
        return 0
    empty, envelope, offset = gpkg_header(blob)
    if empty:
        return 0
    if envelope is None or any(v != v for v in envelope):
        g = shapely.from_wkb(bytes(blob[offset:]))
        if shapely.is_empty(g):
            return 0
        b = shapely.bounds(g)
        envelope = (b[0], b[2], b[1], b[3])
    x0, x1, y0, y1 = envelope
    return int(x1 >= minx and x0 <= maxx and y1 >= miny and y0 <= maxy)


@functools.lru_cache(maxsize=256)
def _prepared(wkb: bytes) -> shapely.Geometry:
    g = shapely.from_wkb(wkb)
    shapely.prepare(g)
    return g


def sqlite_spatial(op: str, blob: bytes | None, literal_wkb: bytes) -> int:
    """``yzt_spatial(op, geom, literal)``: 1 if the row's geometry and the literal satisfy ``op``."""
    wkb = gpkg_wkb(blob)
    if wkb is None:
        return 1 if op == "disjoint" else 0
    lit = _prepared(bytes(literal_wkb))
    g = shapely.from_wkb(wkb)
    if op == "intersects":
        return int(shapely.intersects(lit, g))
    if op == "disjoint":
        return int(shapely.disjoint(lit, g))
    if op == "contains":  # the row's geometry contains the literal
        return int(shapely.contains(g, lit))
    if op == "within":  # the row's geometry lies within the literal
        return int(shapely.contains(lit, g))
    if op == "touches":
        return int(shapely.touches(lit, g))
    if op == "crosses":
        return int(shapely.crosses(g, lit))
    if op == "overlaps":
        return int(shapely.overlaps(g, lit))
    if op == "equals":
        return int(shapely.equals(g, lit))
    raise StoreError(f"spatial operator {op!r} is not supported")


def connect(path: Path, *, readonly: bool, timeout: float = 60,
            isolation_level: Literal["", "DEFERRED", "EXCLUSIVE", "IMMEDIATE"] | None = None,
            check_same_thread: bool = False) -> sqlite3.Connection:
    """A sqlite3 connection to the GeoPackage at ``path`` with the functions above registered."""
    uri = f"{path.resolve().as_uri()}?mode=ro" if readonly else path.resolve().as_uri()
    con = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=isolation_level,  # type: ignore[arg-type]
                          check_same_thread=check_same_thread)
    for name in ("ST_IsEmpty", "ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):
        con.create_function(name, 1, _st_function(name), deterministic=True)
    con.create_function("yzt_envelope_meets", 5, envelope_meets, deterministic=True)
    con.create_function("yzt_spatial", 3, sqlite_spatial, deterministic=True)
    return con

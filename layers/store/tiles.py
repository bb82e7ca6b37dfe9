"""Mapbox Vector Tiles (MVT) in WebMercatorQuad from a store layer, on either backend.

This module owns the reads (and the SQL) that make a tile; HTTP, caching and the OGC API Tiles documents live in
services. Both backends give the same tile for the same request:

- PostGIS: one statement, ``ST_AsMVT`` over ``ST_AsMVTGeom(ST_Simplify(ST_Transform(geom, 3857)))`` of the rows
  whose envelope meets the tile (GiST index), the tile widened by its buffer and carried into the store CRS as a
  densified polygon (a Web Mercator square is not a square in a Gauss-Krüger zone).
- GeoPackage: the R-tree gives the candidate rows, shapely carries them to tile units, clips them to the buffered
  tile, simplifies them, snaps them to the integer grid (``set_precision``: what ``ST_AsMVTGeom`` does, and valid
  output) and ``mapbox_vector_tile`` encodes them.

Simplification per zoom: the tolerance is one tile unit (the tile's width / 4096), so a vertex is dropped only
where it would not move the drawing by more than a unit.

Generalised tiles (``Overview``): a layer that is a coverage of many small polygons (the 地类图斑 of a county:
300 000 patches) cannot be drawn whole at county scale from its features — one z10 tile would hold them all.
Below the zoom at which a tile holds at most ``MAX_FEATURES`` features, such a layer is served dissolved by its
class column (DLBM): the polygons of one class are merged (``coverage_union``, exact for a coverage), the merged
parts simplified together per zoom (``coverage_simplify``: shared edges stay shared, no gaps or slivers appear
between classes), and cut into tiles. The overview is built once per store version and layer.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from pyproj import Transformer

from ..errors import NotFoundError, StoreError
from .base import quote_ident as _q

WEB_MERCATOR = 3857
HALF = 20037508.342789244  # half the width of the Web Mercator square, metres
EXTENT = 4096  # tile units per tile side
BUFFER = 64  # tile units drawn beyond the tile edge (lines and fills do not show seams)
MAX_FEATURES = 2000  # a tile is cut from the features when it holds at most this many (on average)
MAX_ZOOM = 24
_GPKG_ENVELOPE = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of WebMercatorQuad tile z/x/y (x = column, y = row from the top), metres."""
    size = 2 * HALF / (1 << z)
    minx = -HALF + x * size
    maxy = HALF - y * size
    return minx, maxy - size, minx + size, maxy


def check_tile(z: int, x: int, y: int) -> None:
    """NotFoundError naming the valid range when z/x/y is not a WebMercatorQuad tile."""
    if not 0 <= z <= MAX_ZOOM:
        raise NotFoundError(f"tile matrix {z} is not in WebMercatorQuad 0…{MAX_ZOOM}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise NotFoundError(f"tile row {y} / column {x} is outside tile matrix {z} (0…{n - 1})")


def gpkg_wkb(blob) -> bytes | None:
    """The standard WKB inside a GeoPackage geometry blob (None for an empty geometry)."""
    if blob is None:
        return None
    if blob[:2] != b"GP":
        return bytes(blob)
    flags = blob[3]
    if flags & 0b10000:
        return None
    return bytes(blob[8 + _GPKG_ENVELOPE[(flags >> 1) & 0b111]:])


_TRANSFORMERS: dict[tuple[int, int], Transformer] = {}
_TRANSFORMERS_LOCK = threading.Lock()


def transformer(source: int, target: int) -> Transformer:
    """A cached pyproj Transformer (pyproj ≥ 3.1 gives each thread its own PROJ context: safe to share).
    CGCS2000 is taken as WGS 84 (centimetres; the common serving practice, domain.md §5)."""
    key = (int(source), int(target))
    tr = _TRANSFORMERS.get(key)
    if tr is None:
        with _TRANSFORMERS_LOCK:
            tr = _TRANSFORMERS.get(key)
            if tr is None:
                tr = _TRANSFORMERS[key] = Transformer.from_crs(key[0], key[1], always_xy=True)
    return tr


def tile_box_in(z: int, x: int, y: int, epsg: int, margin: float = BUFFER / EXTENT) -> tuple[float, ...]:
    """The envelope, in EPSG:``epsg``, of tile z/x/y widened by ``margin`` of its size (densified edges)."""
    minx, miny, maxx, maxy = tile_bounds(z, x, y)
    pad = (maxx - minx) * margin
    minx, miny, maxx, maxy = minx - pad, miny - pad, maxx + pad, maxy + pad
    t = np.linspace(0.0, 1.0, 17)
    xs = np.concatenate([minx + (maxx - minx) * t, np.full(17, maxx), maxx - (maxx - minx) * t, np.full(17, minx)])
    ys = np.concatenate([np.full(17, miny), miny + (maxy - miny) * t, np.full(17, maxy), maxy - (maxy - miny) * t])
    # keep the latitude inside what Web Mercator can carry
    gx, gy = transformer(WEB_MERCATOR, epsg).transform(xs, ys)
    return float(np.min(gx)), float(np.min(gy)), float(np.max(gx)), float(np.max(gy))


def to_tile_units(geoms: np.ndarray, z: int, x: int, y: int) -> np.ndarray:
    """Geometries in Web Mercator → tile units (0…EXTENT, y down)."""
    minx, miny, maxx, maxy = tile_bounds(z, x, y)
    scale = EXTENT / (maxx - minx)

    def f(c):
        return np.column_stack([(c[:, 0] - minx) * scale, (maxy - c[:, 1]) * scale])

    return shapely.transform(geoms, f)


def prepare_tile_geometries(geoms: np.ndarray, z: int, x: int, y: int) -> np.ndarray:
    """Web Mercator geometries → clipped, simplified, grid-snapped tile-unit geometries (empties where nothing
    is left): the GeoPackage twin of ``ST_AsMVTGeom(ST_Simplify(…), tile, 4096, 64, true)``."""
    if len(geoms) == 0:
        return geoms
    g = to_tile_units(geoms, z, x, y)
    g = shapely.clip_by_rect(g, -BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
    g = shapely.simplify(g, 1.0, preserve_topology=True)
    # snap to the integer grid: GEOS keeps the result valid and drops what collapses (as ST_AsMVTGeom does)
    g = shapely.set_precision(g, 1.0, mode="valid_output")
    # MVT: exterior rings clockwise on the screen (y down), i.e. counter-clockwise in these coordinates
    return shapely.orient_polygons(g, exterior_cw=False)


def encode_tile(layers: list[tuple[str, np.ndarray, list[dict], list[int]]]) -> bytes:
    """MVT bytes of [(layer name, tile-unit geometries, property dicts, feature ids)]; empty geometries and
    empty layers are left out (an empty tile is 0 bytes)."""
    import mapbox_vector_tile

    out = []
    for name, geoms, props, ids in layers:
        features = []
        for g, p, i in zip(geoms, props, ids):
            if g is None or shapely.is_empty(g):
                continue
            if shapely.get_type_id(g) == 7:  # a clip or snap may yield a collection: keep the polygons / lines
                parts = [q for q in shapely.get_parts(g) if not q.is_empty and q.geom_type.endswith("Polygon")]
                if not parts:
                    continue
                g = shapely.multipolygons(parts) if len(parts) > 1 else parts[0]
            features.append({"geometry": g, "properties": p, "id": int(i)})
        if features:
            out.append({"name": name, "features": features})
    if not out:
        return b""
    return mapbox_vector_tile.encode(out, default_options={"extents": EXTENT, "y_coord_down": True,
                                                           "quantize_bounds": None, "check_winding_order": False})


def _property(value, kind: str):
    """A store value as an MVT property value (None: left out, as MVT has no null)."""
    if value is None:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "float":
        v = float(value)
        return None if math.isnan(v) else v
    if kind == "int":
        return int(value)
    if kind == "date":
        return value.isoformat() if hasattr(value, "isoformat") else str(value)[:10]
    if kind == "datetime":
        if hasattr(value, "astimezone"):
            import datetime as dt

            u = value.astimezone(dt.UTC)
            return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"
        return str(value)
    return str(value)


def properties_of(rows, columns: list[str], kinds: dict[str, str]) -> list[dict]:
    out = []
    for r in rows:
        p = {}
        for c, v in zip(columns, r):
            v = _property(v, kinds[c])
            if v is not None:
                p[c] = v
        out.append(p)
    return out


def features_per_tile(total: int, bounds_3857, z: int) -> float:
    """Average number of a layer's features in one tile of zoom z (the layer spread evenly over its extent)."""
    if total == 0 or bounds_3857 is None:
        return 0.0
    size = 2 * HALF / (1 << z)
    w = max(bounds_3857[2] - bounds_3857[0], 1.0)
    h = max(bounds_3857[3] - bounds_3857[1], 1.0)
    share = min(1.0, size / w) * min(1.0, size / h)
    return total * share


def detail_zoom(total: int, bounds_3857, limit: int = MAX_FEATURES) -> int:
    """The smallest zoom whose tiles hold at most ``limit`` features on average."""
    for z in range(MAX_ZOOM + 1):
        if features_per_tile(total, bounds_3857, z) <= limit:
            return z
    return MAX_ZOOM


# --- readers --------------------------------------------------------------------------------------------------

@dataclass
class TileLayer:
    """What a reader needs to know of a layer (the OGC engine's LayerInfo carries the same)."""

    name: str
    columns: dict[str, str]  # attribute → kind
    epsg: int


class TileReader:
    """Tiles of a store's layers. ``mvt(layer, z, x, y, columns)`` → MVT bytes of one layer."""

    def mvt(self, layer: TileLayer, z: int, x: int, y: int, columns: list[str]) -> bytes:
        raise NotImplementedError

    def read_all(self, layer: TileLayer, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(values of ``column``, geometries in the store CRS) of every row: the overview's input."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class GpkgTileReader(TileReader):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()

    def _con(self) -> sqlite3.Connection:
        import os

        st = os.stat(self.path)
        stamp = (st.st_ino, st.st_dev, st.st_mtime_ns)
        con = getattr(self._local, "con", None)
        if con is None or self._local.stamp != stamp:  # the store file was replaced: read the new one
            if con is not None:
                con.close()
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            con.execute("PRAGMA mmap_size = 268435456")
            self._local.con, self._local.stamp = con, stamp
        return con

    def _rows(self, layer: TileLayer, box, columns: list[str]) -> list[tuple]:
        con = self._con()
        sel = ", ".join(["t.fid"] + [f"t.{_q(c)}" for c in columns] + ["t.geom"])
        rtree = f"rtree_{layer.name}_geom"
        try:
            return con.execute(
                f"SELECT {sel} FROM {_q(rtree)} AS r JOIN {_q(layer.name)} AS t ON t.fid = r.id "
                "WHERE r.maxx >= ? AND r.minx <= ? AND r.maxy >= ? AND r.miny <= ?",
                (box[0], box[2], box[1], box[3])).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreError(f"layer {layer.name!r} cannot be read for tiles ({exc})") from None

    def mvt(self, layer, z, x, y, columns):
        box = tile_box_in(z, x, y, layer.epsg)
        rows = self._rows(layer, box, columns)
        if not rows:
            return b""
        n = len(columns)
        geoms = shapely.from_wkb([gpkg_wkb(r[n + 1]) for r in rows])
        tr = transformer(layer.epsg, WEB_MERCATOR)
        geoms = shapely.transform(geoms, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
        tile_geoms = prepare_tile_geometries(geoms, z, x, y)
        props = properties_of((r[1:n + 1] for r in rows), columns, layer.columns)
        return encode_tile([(layer.name, tile_geoms, props, [r[0] for r in rows])])

    def read_all(self, layer, column):
        rows = self._con().execute(f"SELECT {_q(column)}, geom FROM {_q(layer.name)} ORDER BY fid").fetchall()
        values = np.array([r[0] for r in rows], dtype=object)
        return values, shapely.from_wkb([gpkg_wkb(r[1]) for r in rows])

    def close(self):
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


class PostgisTileReader(TileReader):
    POOL = 8

    def __init__(self, url: str):
        import queue

        from .postgis import parse_url

        self.url = url
        _, self.schema, _ = parse_url(url)
        self._pool: queue.LifoQueue = queue.LifoQueue()

    def _take(self):
        import queue

        from .postgis import connect

        try:
            return self._pool.get_nowait()
        except queue.Empty:
            con = connect(self.url, application_name="yzt-tiles")
            con.execute("SET default_transaction_read_only = on")
            return con

    def _give(self, con, ok: bool) -> None:
        if ok and not con.closed and self._pool.qsize() < self.POOL:
            self._pool.put(con)
        else:
            con.close()

    def _query(self, sql: str, params) -> list[tuple]:
        con = self._take()
        ok = False
        try:
            rows = con.execute(sql, params).fetchall()
            ok = True
            return rows
        except Exception as exc:
            con.rollback()
            ok = True
            raise StoreError(f"PostGIS tile query failed: {str(exc).splitlines()[0]}") from None
        finally:
            self._give(con, ok)

    @staticmethod
    def _column_sql(name: str, kind: str) -> str:
        col = f"t.{_q(name)}"
        if kind == "date":
            return f"{col}::text AS {_q(name)}"
        if kind == "datetime":
            return (f"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS {_q(name)}")
        if kind == "float":  # MVT has no NaN: PostgreSQL's NaN is left out like the GeoPackage's
            return f"NULLIF({col}, 'NaN'::double precision) AS {_q(name)}"
        return col

    def mvt(self, layer, z, x, y, columns):
        table = f"{_q(self.schema)}.{_q(layer.name)}"
        cols = "".join(f", {self._column_sql(c, layer.columns[c])}" for c in columns)
        size = 2 * HALF / (1 << z)
        tolerance = size / EXTENT  # one tile unit
        box = tile_box_in(z, x, y, layer.epsg)
        sql = (
            f"SELECT ST_AsMVT(q, %(name)s, {EXTENT}, 'geom', 'fid') FROM ("
            f"SELECT t.fid{cols}, ST_AsMVTGeom(ST_Simplify(ST_Transform(t.geom, {WEB_MERCATOR}), %(tol)s, true), "
            f"ST_TileEnvelope(%(z)s, %(x)s, %(y)s), {EXTENT}, {BUFFER}, true) AS geom "
            f"FROM {table} AS t WHERE t.geom && ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, {int(layer.epsg)})"
            ") AS q WHERE q.geom IS NOT NULL")
        rows = self._query(sql, {"name": layer.name, "tol": tolerance, "z": z, "x": x, "y": y,
                                 "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3]})
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else b""

    def read_all(self, layer, column):
        rows = self._query(f"SELECT {_q(column)}, ST_AsBinary(geom) FROM {_q(self.schema)}.{_q(layer.name)} "
                           "ORDER BY fid", ())
        values = np.array([r[0] for r in rows], dtype=object)
        return values, shapely.from_wkb([bytes(r[1]) if r[1] is not None else None for r in rows])

    def close(self):
        import queue

        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break


def open_tile_reader(url: str) -> TileReader:
    low = str(url).lower()
    if low.startswith(("postgresql://", "postgres://")):
        return PostgisTileReader(str(url))
    return GpkgTileReader(url)


# --- generalised tiles ---------------------------------------------------------------------------------------

@dataclass
class Overview:
    """A coverage layer dissolved by a class column, in Web Mercator, simplified per zoom on demand."""

    column: str
    classes: np.ndarray  # class value of each part
    parts: np.ndarray  # polygons (Web Mercator)
    names: dict = field(default_factory=dict)  # class value → display name (DLMC)
    _zooms: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, values: np.ndarray, geoms: np.ndarray, epsg: int, column: str, names: dict | None = None):
        tr = transformer(epsg, WEB_MERCATOR)
        ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        values, geoms = values[ok], geoms[ok]
        merc = shapely.transform(geoms, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))
        classes, parts = [], []
        keys = np.array(["" if v is None else str(v) for v in values], dtype=object)
        for key in sorted(set(keys)):
            members = merc[keys == key]
            try:  # exact and fast for a coverage (no overlaps), which a survey layer is
                merged = shapely.coverage_union_all(members)
            except shapely.errors.GEOSException:  # not a clean coverage: an ordinary union
                merged = shapely.union_all(members)
            pieces = [p for p in shapely.get_parts(merged) if p.geom_type == "Polygon" and not p.is_empty]
            classes += [key] * len(pieces)
            parts += pieces
        return cls(column=column, classes=np.array(classes, dtype=object),
                   parts=np.array(parts, dtype=object), names=dict(names or {}))

    def at_zoom(self, z: int) -> tuple[np.ndarray, np.ndarray, shapely.STRtree]:
        """(classes, parts simplified for zoom z, an STRtree over them)."""
        with self._lock:
            hit = self._zooms.get(z)
            if hit is not None:
                return hit
            tolerance = 2 * HALF / (1 << z) / EXTENT  # one tile unit
            keep = shapely.area(self.parts) >= tolerance * tolerance  # smaller than a unit: never drawn
            classes, parts = self.classes[keep], self.parts[keep]
            try:
                simple = shapely.coverage_simplify(parts, tolerance)
            except shapely.errors.GEOSException:
                simple = shapely.simplify(parts, tolerance, preserve_topology=True)
            hit = (classes, simple, shapely.STRtree(simple))
            self._zooms[z] = hit
            return hit

    def mvt(self, name: str, z: int, x: int, y: int) -> bytes:
        classes, parts, tree = self.at_zoom(z)
        minx, miny, maxx, maxy = tile_bounds(z, x, y)
        pad = (maxx - minx) * BUFFER / EXTENT
        idx = tree.query(shapely.box(minx - pad, miny - pad, maxx + pad, maxy + pad))
        if len(idx) == 0:
            return b""
        idx.sort()
        geoms = prepare_tile_geometries(parts[idx], z, x, y)
        props = [{self.column: classes[i], **({"DLMC": self.names[classes[i]]} if classes[i] in self.names else {}),
                  "generalised": True} for i in idx]
        return encode_tile([(name, geoms, props, [int(i) + 1 for i in idx])])

"""Fast paged reads of store layers for the OGC API: the GeoPackage through sqlite3 and its R-tree, PostGIS
through psycopg and its GiST index. Both return the same rows for the same request.

The Store interface (layers.store) reads whole frames; an items page needs less and faster: the ids matching
a bbox / filter in id order, an exact count (numberMatched), and 100 rows. The store layout both backends
share (layers/store/gpkg.py, postgis.py): one table per layer, integer primary key ``fid`` (1..n in write
order), geometry column ``geom`` in the store EPSG; the GeoPackage keeps an R-tree ``rtree_<name>_geom``.

Selection by bbox is exact: a feature matches when its *geometry* intersects the box (as the client drew it,
carried into the store CRS — see crs.QueryShape), not merely its envelope.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import queue
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from layers.store import open_store

from .cql import SqlFilter, gpkg_wkb, sqlite_spatial
from .crs import OutputCRS, QueryShape

PK = "fid"
GEOM = "geom"
IN_CHUNK = 5000  # ids per "fid IN (…)" statement


@dataclass(frozen=True)
class LayerInfo:
    name: str
    columns: dict[str, str]  # attribute name → kind (str int float bool date datetime), store order
    geometry_type: str
    total: int
    bounds: tuple[float, float, float, float] | None
    rtree: str | None = None  # GeoPackage R-tree table


@dataclass
class Page:
    fids: list[int]
    rows: list[tuple]  # attribute values, in the order of the selected columns
    geoms: list  # WKB (bytes) or None per row
    columns: list[str]
    matched: int | None


class Engine(ABC):
    dialect: str
    url: str
    storage_epsg: int

    generation = 0  # +1 on every load_layers: the OGC app rebuilds its documents when this moves

    def __init__(self, url: str):
        self.url = url
        self.load_layers()

    def refresh(self) -> None:
        """Re-read the layers if the store changed since they were read (cheap: called on every request)."""

    def load_layers(self) -> None:
        """Read the region meta and every layer's columns, type, row count and extent from the store."""
        self._load_layers()
        self.generation += 1

    def _load_layers(self) -> None:
        with open_store(self.url) as store:
            meta = store.meta()
            if not meta.get("epsg"):
                raise RuntimeError(f"store {self.url} has no EPSG in its meta: ingest a region first (yzt ingest)")
            self.storage_epsg = int(meta["epsg"])
            self.meta = meta
            self.layers = {
                name: LayerInfo(name=name, columns=dict(store.schema(name)), geometry_type=store.geometry_type(name),
                                total=int(store.count(name)), bounds=store.bounds(name),
                                rtree=f"rtree_{name}_{GEOM}")
                for name in store.layer_names()
            }

    @abstractmethod
    def page(self, info: LayerInfo, *, shape: QueryShape | None, filters: list[SqlFilter], sortby: list[tuple[str, str]],
             limit: int, offset: int, columns: list[str], with_geometry: bool, count: bool) -> Page:
        ...

    @abstractmethod
    def get(self, info: LayerInfo, fid: int, columns: list[str], with_geometry: bool) -> tuple | None:
        """(attribute values, wkb) of one feature or None."""

    def close(self) -> None:
        pass


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _order(sortby: list[tuple[str, str]], alias: str) -> str:
    parts = [f"{alias}.{_q(name)} {'DESC' if order == '-' else 'ASC'}" for name, order in sortby]
    parts.append(f"{alias}.{PK} ASC")
    return ", ".join(parts)


def _intersect_env(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def _query_envelope(filters, shape):
    """The box every match lies in (the intersection of the filters' and the bbox's envelopes), or None."""
    env = None
    for f in filters:
        env = _intersect_env(env, f.envelope)
    if shape is not None:
        env = _intersect_env(env, shape.outer)
    return env


def _where(conds: list[str], params: list, filters) -> str:
    """`` WHERE …`` of the spatial conditions and the translated filters (their parameters appended), or ""."""
    for f in filters:
        conds.append(f.sql)
        params += f.params
    return f" WHERE {' AND '.join(conds)}" if conds else ""


def _empty_env(env) -> bool:
    return env is not None and (env[0] > env[2] or env[1] > env[3])


# --- GeoPackage ------------------------------------------------------------------------------------------

class EnvelopeIndex:
    """A layer's R-tree envelopes (the ``rtree_<name>_geom`` rows) in memory, in a uniform grid of buckets.

    SQLite's R*Tree module needs about 1.3 ms to return the ~500 envelopes of a 1 km box on a 300 000-patch
    layer; this index answers the same query (same boxes, same inclusive comparison) in tens of µs and holds
    about 50 bytes per feature (a shapely STRtree over the boxes held 590).

    Each envelope is filed under the grid cell of its centre; the cells are numbered row by row and the
    envelopes sorted by cell, so the cells of one grid row within a query's column range are one contiguous
    slice. A query visits the rows and columns of the box widened by the largest half-size of the filed
    envelopes, then tests the candidates' envelopes exactly. Envelopes wider or taller than ``BIG_CELLS``
    cells (a county outline among village patches) are kept apart and tested on every query.
    """

    PER_CELL = 4  # envelopes per cell on average
    BIG_CELLS = 4  # envelopes larger than this many cells go to the always-tested list

    def __init__(self, env: np.ndarray):
        env = np.asarray(env, dtype=np.float64).reshape(-1, 5)
        ids, box = env[:, 0].astype(np.int64), np.ascontiguousarray(env[:, 1:5])
        n = len(ids)
        x0, y0 = (float(box[:, 0].min()), float(box[:, 1].min())) if n else (0.0, 0.0)
        x1, y1 = (float(box[:, 2].max()), float(box[:, 3].max())) if n else (1.0, 1.0)
        width, height = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
        cells = max(1, n // self.PER_CELL)
        self.nx = max(1, min(4096, int(round(np.sqrt(cells * width / height)))))
        self.ny = max(1, min(4096, int(round(cells / self.nx))))
        self.x0, self.y0 = x0, y0
        self.cw, self.ch = width / self.nx, height / self.ny
        big = ((box[:, 2] - box[:, 0]) > self.BIG_CELLS * self.cw) | ((box[:, 3] - box[:, 1]) > self.BIG_CELLS * self.ch)
        self.big_ids, self.big_box = ids[big], box[big]
        ids, box = ids[~big], box[~big]
        cx, cy = self._col((box[:, 0] + box[:, 2]) / 2), self._row((box[:, 1] + box[:, 3]) / 2)
        cell = cy * self.nx + cx
        order = np.argsort(cell, kind="stable")
        self.ids, self.box, cell = ids[order], box[order], cell[order]
        self.starts = np.searchsorted(cell, np.arange(self.nx * self.ny + 1))  # cell k: starts[k]:starts[k + 1]
        self.half_w = float(((box[:, 2] - box[:, 0]) / 2).max()) if len(box) else 0.0
        self.half_h = float(((box[:, 3] - box[:, 1]) / 2).max()) if len(box) else 0.0

    def _col(self, x):
        return np.clip(((np.asarray(x) - self.x0) / self.cw).astype(np.int64), 0, self.nx - 1)

    def _row(self, y):
        return np.clip(((np.asarray(y) - self.y0) / self.ch).astype(np.int64), 0, self.ny - 1)

    def query(self, box) -> tuple[np.ndarray, np.ndarray]:
        """(fids, envelopes [minx, miny, maxx, maxy]) of the envelopes meeting ``box`` (edges included)."""
        qx0, qy0, qx1, qy1 = (float(v) for v in box)
        c0, c1 = int(self._col(qx0 - self.half_w)), int(self._col(qx1 + self.half_w))
        r0, r1 = int(self._row(qy0 - self.half_h)), int(self._row(qy1 + self.half_h))
        rows = np.arange(r0, r1 + 1) * self.nx
        first, last = self.starts[rows + c0], self.starts[rows + c1 + 1]  # one slice of the order per grid row
        lengths = last - first
        at = np.arange(int(lengths.sum())) + np.repeat(first - np.cumsum(lengths) + lengths, lengths)
        ids, b = self.ids[at], self.box[at]
        if len(self.big_ids):
            ids, b = np.concatenate([ids, self.big_ids]), np.concatenate([b, self.big_box])
        hit = (b[:, 2] >= qx0) & (b[:, 0] <= qx1) & (b[:, 3] >= qy0) & (b[:, 1] <= qy1)
        return ids[hit], b[hit]


class GpkgEngine(Engine):
    dialect = "sqlite"

    def __init__(self, url: str):
        self.path = Path(url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._envelopes: dict[tuple, EnvelopeIndex] = {}  # (file stamp, layer) → index
        super().__init__(url)

    def _load_layers(self) -> None:
        super()._load_layers()
        self._envelopes = {}  # the file changed: rebuild each layer's envelope index on its next bbox request
        con = self._connect()
        try:
            have = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        finally:
            con.close()
        self.layers = {k: LayerInfo(**{**v.__dict__, "rtree": v.rtree if v.rtree in have else None})
                       for k, v in self.layers.items()}

    def refresh(self) -> None:
        """A store write replaces the file (copy-on-write + rename): a new inode means new layers."""
        stamp = self._file_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self.load_layers()  # layers may have changed (rows, columns, new layers)
                    self._stamp = stamp

    def _file_stamp(self):
        st = os.stat(self.path)
        return (st.st_ino, st.st_dev)

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                              timeout=30)
        con.execute("PRAGMA case_sensitive_like = ON")  # CQL2 LIKE is case-sensitive
        con.execute("PRAGMA mmap_size = 268435456")
        con.execute("PRAGMA cache_size = -65536")
        con.create_function("yzt_spatial", 3, sqlite_spatial, deterministic=True)
        return con

    def _con(self) -> sqlite3.Connection:
        """This thread's connection; reopened when the store file was replaced (write_layers renames)."""
        self.refresh()
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "stamp", None) != self._stamp:
            if con is not None:
                con.close()
            con = self._local.con = self._connect()
            self._local.stamp = self._stamp
        return con

    def _select(self, columns: list[str], with_geometry: bool, alias: str = "t") -> str:
        cols = [f"{alias}.{PK}"] + [f"{alias}.{_q(c)}" for c in columns]
        if with_geometry:
            cols.append(f"{alias}.{GEOM}")
        return ", ".join(cols)

    def _rows_by_fid(self, con, info: LayerInfo, fids: list[int], columns, with_geometry) -> list[tuple]:
        out = []
        sel = self._select(columns, with_geometry)
        for i in range(0, len(fids), IN_CHUNK):
            chunk = fids[i:i + IN_CHUNK]
            out += con.execute(f"SELECT {sel} FROM {_q(info.name)} AS t WHERE t.{PK} IN "
                               f"({','.join('?' * len(chunk))})", chunk).fetchall()
        out.sort(key=lambda r: r[0])
        return out

    def _bbox_ids(self, con, info: LayerInfo, shape: QueryShape) -> np.ndarray:
        """Sorted fids whose geometry intersects shape (R-tree, then an exact test on the boundary ring)."""
        if info.rtree is None:  # no index: exact test of every row
            rows = con.execute(f"SELECT {PK}, {GEOM} FROM {_q(info.name)}").fetchall()
            return self._exact(rows, shape)
        ids, env = self._envelope_index(con, info).query(shape.outer)
        if len(ids) == 0:
            return ids
        if shape.inner is not None:
            ix0, iy0, ix1, iy1 = shape.inner
            sure = (env[:, 0] >= ix0) & (env[:, 2] <= ix1) & (env[:, 1] >= iy0) & (env[:, 3] <= iy1)
        else:
            sure = np.zeros(len(ids), dtype=bool)
        ring = ids[~sure].tolist()
        keep = [ids[sure]]
        for i in range(0, len(ring), IN_CHUNK):
            chunk = ring[i:i + IN_CHUNK]
            rows = con.execute(f"SELECT {PK}, {GEOM} FROM {_q(info.name)} WHERE {PK} IN "
                               f"({','.join('?' * len(chunk))})", chunk).fetchall()
            keep.append(self._exact(rows, shape))
        out = np.concatenate(keep)
        out.sort()
        return out

    def _envelope_index(self, con, info: LayerInfo) -> EnvelopeIndex:
        """The envelope index of ``info``'s layer in the file ``con`` reads (this thread's connection): keyed
        by that file's stamp, so a thread still reading the replaced file never leaves its index behind for
        the new one."""
        key = (self._local.stamp, info.name)
        index = self._envelopes.get(key)
        if index is None:
            with self._lock:
                index = self._envelopes.get(key)
                if index is None:
                    env = np.array(con.execute(f"SELECT id, minx, miny, maxx, maxy FROM {_q(info.rtree)}").fetchall(),
                                   dtype=np.float64).reshape(-1, 5)
                    index = EnvelopeIndex(env)
                    if key[0] == self._stamp:  # cache only for the current file
                        self._envelopes[key] = index
        return index

    @staticmethod
    def _exact(rows, shape: QueryShape) -> np.ndarray:
        if not rows:
            return np.empty(0, dtype=np.int64)
        fids = np.array([r[0] for r in rows], dtype=np.int64)
        geoms = shapely.from_wkb([gpkg_wkb(r[1]) for r in rows])
        shapely.prepare(shape.polygon)
        hit = shapely.intersects(shape.polygon, geoms)
        return fids[hit]

    def page(self, info, *, shape, filters, sortby, limit, offset, columns, with_geometry, count) -> Page:
        con = self._con()
        env = _query_envelope(filters, shape)
        if _empty_env(env):
            return Page([], [], [], columns, 0 if count else None)
        if not filters and not sortby:
            if shape is None:  # plain paging
                rows = con.execute(f"SELECT {self._select(columns, with_geometry)} FROM {_q(info.name)} AS t "
                                   f"ORDER BY t.{PK} LIMIT ? OFFSET ?", (limit, offset)).fetchall()
                return self._page(rows, columns, with_geometry, info.total if count else None)
            ids = self._bbox_ids(con, info, shape)
            rows = self._rows_by_fid(con, info, ids[offset:offset + limit].tolist(), columns, with_geometry)
            return self._page(rows, columns, with_geometry, len(ids) if count else None)
        # general path: SQL over the layer (joined to its R-tree when a spatial envelope bounds the result)
        params: list = []
        conds: list[str] = []
        if env is not None and info.rtree is not None:
            source = f"{_q(info.rtree)} AS r CROSS JOIN {_q(info.name)} AS t ON t.{PK} = r.id"
            conds.append("r.maxx >= ? AND r.minx <= ? AND r.maxy >= ? AND r.miny <= ?")
            params += [env[0], env[2], env[1], env[3]]
        else:
            source = f"{_q(info.name)} AS t"
        if shape is not None:
            exact = "yzt_spatial('intersects', t.geom, ?) = 1"
            if shape.inner is not None and info.rtree is not None:
                conds.append(f"((r.minx >= ? AND r.maxx <= ? AND r.miny >= ? AND r.maxy <= ?) OR {exact})")
                ix0, iy0, ix1, iy1 = shape.inner
                params += [ix0, ix1, iy0, iy1, shapely.to_wkb(shape.polygon)]
            else:
                conds.append(exact)
                params.append(shapely.to_wkb(shape.polygon))
        where = _where(conds, params, filters)
        matched = None
        if count:
            matched = con.execute(f"SELECT count(*) FROM {source}{where}", params).fetchone()[0]
        rows = con.execute(f"SELECT {self._select(columns, with_geometry)} FROM {source}{where} "
                           f"ORDER BY {_order(sortby, 't')} LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
        return self._page(rows, columns, with_geometry, matched)

    @staticmethod
    def _page(rows, columns, with_geometry, matched) -> Page:
        n = len(columns)
        return Page(fids=[r[0] for r in rows], rows=[r[1:1 + n] for r in rows],
                    geoms=[gpkg_wkb(r[1 + n]) for r in rows] if with_geometry else [None] * len(rows),
                    columns=columns, matched=matched)

    def get(self, info, fid, columns, with_geometry):
        rows = self._rows_by_fid(self._con(), info, [fid], columns, with_geometry)
        if not rows:
            return None
        p = self._page(rows, columns, with_geometry, None)
        return p.rows[0], p.geoms[0]

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None


# --- PostGIS -----------------------------------------------------------------------------------------------

class PostgisEngine(Engine):
    dialect = "postgis"
    POOL = 8

    REFRESH_SECONDS = 2.0  # how often a request may look at the schema's catalog for changed layers

    def __init__(self, url: str):
        from layers.store.postgis import parse_url

        _, self.schema, _ = parse_url(url)
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()
        self._signature = None
        self._next_check = 0.0
        super().__init__(url)

    def _catalog_signature(self) -> tuple:
        """(table, oid) of every table in the schema: a layer write swaps in a new table (new oid)."""
        with self._con() as con:
            return tuple(con.execute(
                "SELECT c.relname, c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v') ORDER BY 1", (self.schema,)).fetchall())

    def _load_layers(self) -> None:
        self._signature = self._catalog_signature()  # before reading: a change during the read is seen next time
        super()._load_layers()

    def refresh(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        with self._lock:
            if now < self._next_check:
                return
            self._next_check = now + self.REFRESH_SECONDS
            if self._catalog_signature() != self._signature:
                self.load_layers()

    @contextmanager
    def _con(self):
        from layers.store.postgis import connect

        try:
            con = self._pool.get_nowait()
        except queue.Empty:
            con = connect(self.url, application_name="yzt-ogc")  # the store's session settings (UTC …)
            con.execute("SET default_transaction_read_only = on")
        ok = False
        try:
            yield con
            ok = True
        finally:
            if ok and not con.closed and self._pool.qsize() < self.POOL:
                self._pool.put(con)
            else:
                con.close()

    def _t(self, name: str) -> str:
        return f"{_q(self.schema)}.{_q(name)}"

    def _select(self, columns, with_geometry) -> str:
        cols = [f"t.{PK}"] + [f"t.{_q(c)}" for c in columns]
        if with_geometry:
            cols.append(f"ST_AsBinary(t.{GEOM})")
        return ", ".join(cols)

    def page(self, info, *, shape, filters, sortby, limit, offset, columns, with_geometry, count) -> Page:
        env = _query_envelope(filters, shape)
        if _empty_env(env):
            return Page([], [], [], columns, 0 if count else None)
        conds, params = [], []
        srid = self.storage_epsg
        if shape is not None:
            exact = f"ST_Intersects(t.{GEOM}, ST_GeomFromWKB(%s, {srid}))"
            if shape.inner is not None:
                # the index on the envelope, then no exact test for what lies within the inner box
                conds.append(f"t.{GEOM} && ST_MakeEnvelope(%s, %s, %s, %s, {srid})")
                params += list(shape.outer)
                conds.append(f"(t.{GEOM} @ ST_MakeEnvelope(%s, %s, %s, %s, {srid}) OR {exact})")
                params += [*_float4_inside(shape.inner), shapely.to_wkb(shape.polygon)]
            else:
                conds.append(exact)
                params.append(shapely.to_wkb(shape.polygon))
        where = _where(conds, params, filters)
        table = f"{self._t(info.name)} AS t"
        with self._con() as con:
            matched = None
            if count and not conds:
                matched = con.execute(f"SELECT count(*) FROM {self._t(info.name)}").fetchone()[0]
            if count and conds and limit > 0:  # one pass: the page and, beside each row, the count of all matches
                rows = con.execute(f"SELECT {self._select(columns, with_geometry)}, count(*) OVER () FROM {table}{where} "
                                   f"ORDER BY {_order(sortby, 't')} LIMIT %s OFFSET %s",
                                   [*params, limit, offset]).fetchall()
                if rows:
                    matched = rows[0][-1]
                    rows = [r[:-1] for r in rows]
                else:  # past the last match (or none): count on its own
                    matched = con.execute(f"SELECT count(*) FROM {table}{where}", params).fetchone()[0]
            else:
                if count and conds:
                    matched = con.execute(f"SELECT count(*) FROM {table}{where}", params).fetchone()[0]
                rows = con.execute(f"SELECT {self._select(columns, with_geometry)} FROM {table}{where} "
                                   f"ORDER BY {_order(sortby, 't')} LIMIT %s OFFSET %s",
                                   [*params, limit, offset]).fetchall() if limit > 0 else []
        n = len(columns)
        return Page(fids=[r[0] for r in rows], rows=[r[1:1 + n] for r in rows],
                    geoms=[bytes(r[1 + n]) if r[1 + n] is not None else None for r in rows] if with_geometry
                    else [None] * len(rows), columns=columns, matched=matched)

    def get(self, info, fid, columns, with_geometry):
        with self._con() as con:
            row = con.execute(f"SELECT {self._select(columns, with_geometry)} FROM {self._t(info.name)} AS t "
                              f"WHERE t.{PK} = %s", (fid,)).fetchone()
        if row is None:
            return None
        n = len(columns)
        return row[1:1 + n], (bytes(row[1 + n]) if with_geometry and row[1 + n] is not None else None)

    def close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                break


def _float4_inside(box) -> list[float]:
    """``box`` shrunk by two float32 steps on each side. PostGIS compares bounding boxes in float32, rounded
    outward; the rounded box must still lie within the inner box for ``@`` to imply an intersection."""
    x0, y0, x1, y1 = (float(v) for v in box)
    step = 2.0 ** -22  # two float32 ulps, relative
    return [x0 + abs(x0) * step, y0 + abs(y0) * step, x1 - abs(x1) * step, y1 - abs(y1) * step]


# --- registry and GeoJSON ------------------------------------------------------------------------------------

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(url: str) -> Engine:
    """One engine per store URL per process (connections are pooled inside)."""
    key = str(url)
    eng = _ENGINES.get(key)
    if eng is None:
        with _ENGINES_LOCK:
            eng = _ENGINES.get(key)
            if eng is None:
                low = key.lower()
                eng = PostgisEngine(key) if low.startswith(("postgresql://", "postgres://")) else GpkgEngine(key)
                _ENGINES[key] = eng
    return eng


def drop_engine(url: str) -> None:
    with _ENGINES_LOCK:
        eng = _ENGINES.pop(str(url), None)
    if eng is not None:
        eng.close()


def _value(v, kind: str):
    if v is None:
        return None
    if kind == "bool":
        return bool(v)
    if kind == "float":
        v = float(v)
        return None if math.isnan(v) else v
    if kind == "date" and hasattr(v, "isoformat"):
        return v.isoformat()
    if kind == "datetime" and hasattr(v, "astimezone"):
        import datetime as dt

        u = v.astimezone(dt.UTC)
        return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"
    return v


def geojson_geometries(geoms: np.ndarray) -> list[dict]:
    """GeoJSON geometry dicts of an array of shapely geometries, built from one ragged coordinate array."""
    try:
        kind, coords, offsets = shapely.to_ragged_array(geoms)
    except (ValueError, NotImplementedError):  # mixed geometry types in one page
        return [json.loads(t) for t in shapely.to_geojson(geoms)]
    c = coords.tolist()
    offs = [o.tolist() for o in offsets]

    def spans(items, off):
        return [items[off[i]:off[i + 1]] for i in range(len(off) - 1)]

    name = kind.name
    if name == "POINT":
        return [{"type": "Point", "coordinates": xy} for xy in c]
    parts = c
    for off in offs:  # innermost offsets first: coordinates → rings/lines → polygons → multi-parts
        parts = spans(parts, off)
    gtype = {"LINESTRING": "LineString", "POLYGON": "Polygon", "MULTIPOINT": "MultiPoint",
             "MULTILINESTRING": "MultiLineString", "MULTIPOLYGON": "MultiPolygon"}[name]
    return [{"type": gtype, "coordinates": p} for p in parts]


class Splice:
    """Geometries serialised apart from the document and spliced into the response text.

    pygeoapi serialises the whole FeatureCollection with ``json.dumps``; most of that time goes into the
    repr of some 4 000 coordinate floats per page. For JSON responses the route (services/ogc/__init__.py)
    puts a Splice in SPLICE; the provider then writes a placeholder string per geometry and keeps the
    GEOS GeoJSON text (``shapely.to_geojson``) here, and the route replaces the placeholders in pygeoapi's
    output. Same JSON, same digits (shortest round-trip repr), several times faster.
    """

    def __init__(self):
        import uuid

        self.token = uuid.uuid4().hex[:12]
        self.texts: list[str] = []

    def add(self, text: str) -> str:
        self.texts.append(text)
        return f"@yzt-{self.token}-{len(self.texts) - 1}@"

    def apply(self, content: str) -> str:
        """Each ``"@yzt-<token>-<n>@"`` (with its quotes) → texts[n]; the token is random per request."""
        texts = self.texts
        parts = content.split(f'"@yzt-{self.token}-')
        out = [parts[0]]
        for part in parts[1:]:
            number, _, rest = part.partition('@"')
            out.append(texts[int(number)])
            out.append(rest)
        return "".join(out)


SPLICE: contextvars.ContextVar[Splice | None] = contextvars.ContextVar("yzt_ogc_splice", default=None)


def to_features(page: Page, kinds: dict[str, str], out: OutputCRS | None, with_geometry: bool) -> list[dict]:
    """GeoJSON features (dicts) of a page; geometry written in ``out`` (its axis order)."""
    geo: list = [None] * len(page.fids)
    if with_geometry and page.fids:
        present = [i for i, g in enumerate(page.geoms) if g is not None]
        if present:
            geoms = shapely.from_wkb([page.geoms[i] for i in present])
            if out is not None:
                geoms = out.apply(geoms)
            splice = SPLICE.get()
            if splice is not None:
                for i, text in zip(present, shapely.to_geojson(geoms)):
                    geo[i] = splice.add(text)
            else:
                for i, g in zip(present, geojson_geometries(geoms)):
                    geo[i] = g
    cols = page.columns
    # columns whose driver values are not already JSON values: booleans (SQLite gives 0/1), floats (NaN),
    # dates and timestamps (PostGIS gives date / datetime objects)
    fix = [(c, kinds[c]) for c in cols if kinds[c] in ("bool", "float", "date", "datetime")]
    feats = []
    for i, fid in enumerate(page.fids):
        props = dict(zip(cols, page.rows[i]))
        for c, k in fix:
            v = props[c]
            if v is not None and (k != "float" or v != v):
                props[c] = _value(v, k)
        feats.append({"type": "Feature", "id": fid, "geometry": geo[i], "properties": props})
    return feats

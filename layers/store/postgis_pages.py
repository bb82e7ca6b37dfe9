"""Paged reads of a PostGIS store through pooled psycopg connections and the GiST index of each layer.

The schema layout (postgis.py): one table per layer with ``fid bigint`` primary key and ``geom`` with a GiST
index. One statement per page: the rows and, beside each, ``count(*) OVER ()`` (the count of all matches).
"""

from __future__ import annotations

import queue
import threading
import time
from contextlib import contextmanager

import shapely

from .base import quote_ident as _q
from .pages import PagedReader, order_by
from .postgis import connect, parse_url
from .query import Box, Page, PageRequest, is_empty_box
from .sql import GEOM, PK, compile_filter


class PostGISPages(PagedReader):
    dialect = "postgis"
    POOL = 8
    REFRESH_SECONDS = 2.0  # how often a request may look at the schema's catalog for changed layers

    def __init__(self, url: str):
        _, self.schema, _ = parse_url(url)
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._lock = threading.Lock()
        self._signature: tuple | None = None
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

    @staticmethod
    def _select(columns, with_geometry) -> str:
        cols = [f"t.{PK}"] + [f"t.{_q(c)}" for c in columns]
        if with_geometry:
            cols.append(f"ST_AsBinary(t.{GEOM})")
        return ", ".join(cols)

    def page(self, layer: str, request: PageRequest) -> Page:
        self.info(layer)
        columns, shape, limit, offset, count = (request.columns, request.selection, request.limit, request.offset,
                                                request.count)
        if is_empty_box(request.envelope()):
            return Page([], [], [], columns, 0 if count else None)
        conds: list[str] = []
        params: list = []
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
        if request.where is not None:
            conds.append(compile_filter(request.where, self.dialect, alias="t", params=params, srid=srid))
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        table = f"{self._t(layer)} AS t"
        select = self._select(columns, request.with_geometry)
        order = order_by(request.sortby, "t")
        with self._con() as con:
            matched = None
            if count and not conds:
                matched = con.execute(f"SELECT count(*) FROM {self._t(layer)}").fetchone()[0]
            if count and conds and limit > 0:  # one pass: the page and, beside each row, the count of all matches
                rows = con.execute(f"SELECT {select}, count(*) OVER () FROM {table}{where} "
                                   f"ORDER BY {order} LIMIT %s OFFSET %s", [*params, limit, offset]).fetchall()
                if rows:
                    matched = rows[0][-1]
                    rows = [r[:-1] for r in rows]
                else:  # past the last match (or none): count on its own
                    matched = con.execute(f"SELECT count(*) FROM {table}{where}", params).fetchone()[0]
            else:
                if count and conds:
                    matched = con.execute(f"SELECT count(*) FROM {table}{where}", params).fetchone()[0]
                rows = con.execute(f"SELECT {select} FROM {table}{where} ORDER BY {order} LIMIT %s OFFSET %s",
                                   [*params, limit, offset]).fetchall() if limit > 0 else []
        n = len(columns)
        return Page(ids=[r[0] for r in rows], rows=[r[1:1 + n] for r in rows],
                    geoms=[bytes(r[1 + n]) if r[1 + n] is not None else None for r in rows]
                    if request.with_geometry else [None] * len(rows), columns=columns, matched=matched)

    def get(self, layer, row_id, columns, with_geometry=True):
        self.info(layer)
        with self._con() as con:
            row = con.execute(f"SELECT {self._select(columns, with_geometry)} FROM {self._t(layer)} AS t "
                              f"WHERE t.{PK} = %s", (int(row_id),)).fetchone()
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


def _float4_inside(box: Box) -> list[float]:
    """``box`` shrunk by two float32 steps on each side. PostGIS compares bounding boxes in float32, rounded
    outward; the rounded box must still lie within the inner box for ``@`` to imply an intersection."""
    x0, y0, x1, y1 = (float(v) for v in box)
    step = 2.0 ** -22  # two float32 ulps, relative
    return [x0 + abs(x0) * step, y0 + abs(y0) * step, x1 - abs(x1) * step, y1 - abs(y1) * step]

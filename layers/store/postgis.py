"""The PostGIS store: ``postgresql://user@host:port/database?schema=yzt`` (psycopg 3).

Layout inside the schema (created on the first write):

- one table per layer, named by role: ``fid bigint`` primary key (1..n in write order), the attribute
  columns (text, bigint, double precision, boolean, date, timestamptz), ``geom geometry(<Type>, <EPSG>)``
  with a GiST index;
- ``yzt_meta`` (key, value), ``yzt_load_records`` (history of LoadRecords, newest last; field_mapping
  jsonb), ``yzt_findings`` (入库质检 findings; ids jsonb), ``yzt_layers`` (catalog: kind layer/table, geometry
  type, EPSG, rows, exact extent), and plain tables written by later stages.

Writing: each layer is streamed with ``COPY … FROM STDIN (FORMAT binary)`` (pgbinary.py: the rows built
column-wise with numpy and Arrow, geometry as EWKB) into a fresh table — FREEZE, as the table is new in the
transaction, and large values TOASTed with lz4 where the server has it — indexed and analysed; then the old
tables are dropped, the new ones renamed, the load records / findings inserted and the meta updated — all
inside ONE transaction, serialised per schema by an advisory lock. A failure or a lost connection rolls
everything back: readers see the old state until the commit and the new state after it. An ingest stages its
layers instead (``staged_layers``): each layer's table is written and committed under a stage name no reader
sees, then analysed (after that commit, so autovacuum does not analyse it a second time), and only the swap,
with the records, findings and meta, is that one transaction. Reading streams ``COPY (SELECT …) TO STDOUT``
into Arrow's CSV reader, and runs in a READ ONLY transaction.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import uuid
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import shapely

from ..errors import NotFoundError, StoreError
from ..records import Finding, LoadRecord
from . import pgbinary
from .base import (
    CATALOG_TABLE,
    FINDING_COLUMNS,
    FINDINGS_TABLE,
    GEOMETRY,
    LOAD_TABLE,
    META_TABLE,
    STORED_GEOMETRY,
    BBox,
    LayerStaging,
    Store,
    Where,
    check_name,
    check_region_meta,
    finding_row,
    frame_from_arrow,
    history_filter,
    kind_of_arrow,
    meets_any,
    near_values,
    prepare_layer,
    prepare_tables,
    record_row,
    refuse_kind_clash,
    resolve_store_epsg,
    validate_bbox,
    validate_paging,
    where_sql,
    write_failed,
)
from .base import quote_ident as _q

CATALOG = CATALOG_TABLE
DEFAULT_SCHEMA = "yzt"
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_PG_TYPES = {"str": "text", "int": "bigint", "float": "double precision", "bool": "boolean", "date": "date",
             "datetime": "timestamptz"}
_KIND_OF_PG = {"text": "str", "character varying": "str", "character": "str", "json": "str", "jsonb": "str",
               "bigint": "int", "integer": "int", "smallint": "int", "double precision": "float",
               "real": "float", "numeric": "float", "boolean": "bool", "date": "date",
               "timestamp with time zone": "datetime", "timestamp without time zone": "datetime"}
_ARROW_OF_KIND = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
                  "date": pa.date32(), "datetime": pa.timestamp("ms")}
_LOAD_TYPES = {name: ("jsonb" if name == "field_mapping" else "bigint" if f.type == "int" else "text")
               for name, f in LoadRecord.__dataclass_fields__.items()}
_FINDING_TYPES = {"load_id": "text", "layer": "text", "check": "text", "severity": "text", "message": "text",
                  "ids": "jsonb", "count": "bigint"}
_COPY_CHUNK = 20_000  # rows per block streamed to COPY
# Session settings of every store connection: text travels in UTF-8 whatever the client's environment asks
# (PGCLIENTENCODING=GBK is common on Chinese desktops, and the COPY streams are UTF-8), timestamps in UTC,
# dates as ISO year-month-day, doubles with all their digits (the store's reads and writes depend on these).
SESSION_SETTINGS = {"client_encoding": "UTF8", "TimeZone": "UTC", "DateStyle": "ISO, YMD",
                    "extra_float_digits": "3"}


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_url(url: str) -> tuple[str, str, str]:
    """(libpq URL without ?schema=, schema, display URL without password) from a store URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreError(f"PostGIS store URL {url!r} must start with postgresql://")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = DEFAULT_SCHEMA
    rest = []
    for key, value in query:
        if key == "schema":
            schema = value
        else:
            rest.append((key, value))
    if not _SCHEMA_NAME.match(schema):
        raise StoreError(f"schema {schema!r} in {url!r}: use lower-case letters, digits and _ (e.g. ?schema=yzt)")
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    display = urlunsplit((parts.scheme, netloc, parts.path, urlencode([*rest, ("schema", schema)]), ""))
    return conninfo, schema, display


def connect(url: str, *, application_name: str = "yizhangtu"):
    """A new autocommit psycopg connection to the database of store ``url``, set up as the store uses it.

    The session gets SESSION_SETTINGS (client_encoding UTF8, TimeZone UTC, DateStyle ISO/YMD, extra_float_digits
    3). Raises StoreError ``cannot connect to PostGIS store <url without password>: <first line of the cause>``.
    Every connection that reads or writes a store's schema should come from here.
    """
    import psycopg

    conninfo, _schema, display = parse_url(url)
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=15, application_name=application_name)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to PostGIS store {display}: {first_line(exc)}") from None
    for name, value in SESSION_SETTINGS.items():
        conn.execute(f"SET {name} = '{value}'")
    return conn


class SharedConnection:
    """One connection for one object: opened on first use, reopened after it broke; ``lock`` serialises its
    users (psycopg connections are not for concurrent statements)."""

    def __init__(self, url: str, application_name: str):
        self._url = url
        self._application_name = application_name
        self._conn = None
        self.lock = threading.RLock()

    def get(self):
        """The open connection (call it holding ``lock``)."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self._url, application_name=self._application_name)
        return self._conn

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PostGISStore(Store):
    """A region store in one PostgreSQL schema. One connection per store object (thread-safe, serialised)."""

    def __init__(self, url: str):
        _, self.schema_name, self.url = parse_url(url)
        self._target = url  # with the password, which self.url leaves out (for connections of this package)
        self._shared = SharedConnection(url, "yizhangtu")
        self._lock = self._shared.lock

    def __repr__(self) -> str:
        return f"PostGISStore({self.url!r})"

    # --- connection ------------------------------------------------------------------------------
    def _connection(self):
        return self._shared.get()

    def close(self) -> None:
        self._shared.close()

    def _t(self, name: str) -> str:
        return f"{_q(self.schema_name)}.{_q(name)}"

    @contextlib.contextmanager
    def _reading(self, lock: str | None = None, what: str = "reading"):
        """A READ ONLY transaction; with ``lock``, that table is share-locked FIRST.

        Taking the lock in its own statement matters: a writer swaps tables (DROP + RENAME) inside its
        transaction. A statement that waited for that lock would run on a snapshot taken before the writer
        committed and see the new table empty (COPY (SELECT …) takes its snapshot before locking). After
        the LOCK statement returns, the next statement's snapshot sees the committed swap, and the lock
        keeps the next writer out until this read is done.
        """
        import psycopg

        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION READ ONLY")
                    if lock is not None:
                        try:
                            conn.execute(f"LOCK TABLE {self._t(lock)} IN ACCESS SHARE MODE")
                        except psycopg.errors.UndefinedTable:
                            raise _Missing(lock) from None
                    yield conn
            except _Missing as exc:
                raise NotFoundError(f"{exc.args[0]!r} is not in store {self.url}; layers: "
                                    f"{', '.join(self.layer_names()) or 'none'}; tables: "
                                    f"{', '.join(self.table_names()) or 'none'}") from None
            except psycopg.Error as exc:
                raise StoreError(f"{what} {self.url} failed: {first_line(exc)}") from None

    def _query(self, sql: str, params=(), what: str = "reading") -> list[tuple]:
        with self._reading(what=what) as conn:
            return conn.execute(sql, params).fetchall()

    def _has_table(self, name: str, conn=None) -> bool:
        sql = "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s"
        params = (self.schema_name, name)
        return bool(conn.execute(sql, params).fetchall() if conn else self._query(sql, params))

    def _catalog(self, kind: str | None = None, conn=None) -> dict[str, dict]:
        if not self._has_table(CATALOG, conn):
            return {}
        cols = ["name", "kind", "geometry_type", "epsg", "has_z", "n_rows", "minx", "miny", "maxx", "maxy"]
        sql = f"SELECT {', '.join(cols)} FROM {self._t(CATALOG)}"
        params: tuple = ()
        if kind:
            sql += " WHERE kind = %s"
            params = (kind,)
        sql += " ORDER BY name"
        rows = conn.execute(sql, params).fetchall() if conn else self._query(sql, params)
        return {r[0]: dict(zip(cols, r)) for r in rows}

    def _entry(self, name: str, kind: str | None, conn=None) -> dict:
        entry = self._catalog(conn=conn).get(name)
        if entry is None or (kind and entry["kind"] != kind):
            what = kind or "layer or table"
            names = ", ".join(self._catalog(kind, conn=conn)) or "none"
            raise NotFoundError(f"{what} {name!r} is not in store {self.url}; {kind or 'name'}s: {names}")
        return entry

    def _columns(self, name: str, conn) -> dict[str, str]:
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum", (self.schema_name, name)).fetchall()
        out = {}
        for col, type_name in rows:
            if col == "fid" or type_name.startswith("geometry"):
                continue
            out[col] = _KIND_OF_PG.get(type_name.split("(")[0], "str")
        return out

    # --- metadata --------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self._reading() as conn:
            if not self._has_table(META_TABLE, conn):
                return {}
            return dict(conn.execute(f"SELECT key, value FROM {self._t(META_TABLE)} ORDER BY key").fetchall())

    def layer_names(self) -> list[str]:
        return list(self._catalog("layer"))

    def table_names(self) -> list[str]:
        return list(self._catalog("table"))

    def schema(self, name: str) -> dict[str, str]:
        with self._reading(lock=name) as conn:
            self._entry(name, None, conn)
            return self._columns(name, conn)

    def geometry_type(self, name: str) -> str:
        return self._entry(name, "layer")["geometry_type"]

    def bounds(self, name: str) -> BBox | None:
        e = self._entry(name, "layer")
        if e["minx"] is None:
            return None
        return (e["minx"], e["miny"], e["maxx"], e["maxy"])

    # --- reading ---------------------------------------------------------------------------------
    def _where(self, bbox, where, epsg) -> str:
        conditions = []
        if bbox is not None:
            minx, miny, maxx, maxy = (repr(float(v)) for v in bbox)
            g = _q(STORED_GEOMETRY)
            conditions.append(
                f"{g} && ST_MakeEnvelope({minx}, {miny}, {maxx}, {maxy}, {int(epsg)}) AND NOT ST_IsEmpty({g}) "
                f"AND ST_XMax({g}) >= {minx} AND ST_XMin({g}) <= {maxx} "
                f"AND ST_YMax({g}) >= {miny} AND ST_YMin({g}) <= {maxy}")
        if where is not None and not (isinstance(where, str) and not where):
            conditions.append(f"({where_sql(where, 'postgis')})")
        return f" WHERE {' AND '.join(conditions)}" if conditions else ""

    def _pick(self, name: str, columns, conn) -> dict[str, str]:
        available = self._columns(name, conn)
        if columns is None:
            return available
        unknown = [c for c in columns if c not in available]
        if unknown:
            raise StoreError(f"{name!r} has no column(s) {unknown}; columns: {', '.join(available)}")
        return {c: available[c] for c in columns}

    @staticmethod
    def _copy_out(conn, select: str, names: list[str], kinds: list[str]) -> pa.Table:
        buf = io.BytesIO()
        with conn.cursor().copy(f"COPY ({select}) TO STDOUT (FORMAT csv)") as copy:
            for block in copy:
                buf.write(block)
        types = {f"c{i}": _ARROW_OF_KIND[k] for i, k in enumerate(kinds)}
        if buf.tell() == 0:
            return pa.table({n: pa.array([], t) for n, t in types.items()}).rename_columns(names)
        buf.seek(0)
        table = pacsv.read_csv(
            buf,
            read_options=pacsv.ReadOptions(column_names=list(types), block_size=1 << 24),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                                 quoted_strings_can_be_null=False, true_values=["t"],
                                                 false_values=["f"]))
        return table.rename_columns(names)

    @staticmethod
    def _select_list(cols: dict[str, str]) -> list[str]:
        out = []
        for c, k in cols.items():
            out.append(f"({_q(c)} AT TIME ZONE 'UTC')" if k == "datetime" else _q(c))
        return out

    def read_layer(self, name: str, bbox: BBox | None = None, columns: list[str] | None = None,
                   where: Where | None = None, limit: int | None = None, offset: int = 0) -> gpd.GeoDataFrame:
        bbox = validate_bbox(bbox)
        validate_paging(limit, offset)
        with self._reading(lock=name, what=f"reading layer {name!r} from") as conn:
            entry = self._entry(name, "layer", conn)
            cols = self._pick(name, columns, conn)
            select = ", ".join([*self._select_list(cols),
                                f"encode(ST_AsBinary({_q(STORED_GEOMETRY)}, 'NDR'), 'hex')"])
            sql = f"SELECT {select} FROM {self._t(name)}{self._where(bbox, where, entry['epsg'])} ORDER BY fid"
            if limit is not None:
                sql += f" LIMIT {int(limit)}"
            if offset:
                sql += f" OFFSET {int(offset)}"
            table = self._copy_out(conn, sql, [*cols, GEOMETRY], [*cols.values(), "str"])
        table = _utc(table, cols)
        frame = frame_from_arrow(table, GEOMETRY, entry["epsg"], decode_geometry=_from_hex)
        return frame[[*cols, GEOMETRY]]

    def read_near(self, name: str, boxes, columns: list[str] | None = None) -> gpd.GeoDataFrame:
        boxes = [b for b in (validate_bbox(b) for b in boxes) if b is not None]
        if not boxes:
            return self.read_layer(name, columns=columns, limit=0)
        with self._reading(lock=name, what=f"reading layer {name!r} from") as conn:
            entry = self._entry(name, "layer", conn)
            cols = self._pick(name, columns, conn)
            select = ", ".join([*self._select_list(cols), f"encode(ST_AsBinary({_q(STORED_GEOMETRY)}, 'NDR'), 'hex')"])
            g = f"a.{_q(STORED_GEOMETRY)}"
            # a nested loop over the boxes, each an index scan (GiST boxes are float4: the exact test follows)
            sql = (f"SELECT {select} FROM {self._t(name)} WHERE fid IN (SELECT a.fid FROM {self._t(name)} a "
                   f"JOIN (VALUES {near_values(boxes)}) AS b(x0, y0, x1, y1) "
                   f"ON {g} && ST_MakeEnvelope(b.x0, b.y0, b.x1, b.y1, {int(entry['epsg'])})) ORDER BY fid")
            table = self._copy_out(conn, sql, [*cols, GEOMETRY], [*cols.values(), "str"])
        frame = frame_from_arrow(_utc(table, cols), GEOMETRY, entry["epsg"], decode_geometry=_from_hex)
        frame = frame[[*cols, GEOMETRY]]
        return frame[meets_any(np.asarray(frame.geometry.values), boxes)].reset_index(drop=True)

    def read_attributes(self, name: str, columns: list[str], where: Where | None = None) -> pd.DataFrame:
        with self._reading(lock=name, what=f"reading layer {name!r} from") as conn:
            entry = self._entry(name, "layer", conn)
            cols = self._pick(name, columns, conn)
            if not cols:
                raise StoreError(f"read_attributes of {name!r} needs at least one column")
            sql = (f"SELECT {', '.join(self._select_list(cols))} FROM {self._t(name)}"
                   f"{self._where(None, where, entry['epsg'])} ORDER BY fid")
            table = self._copy_out(conn, sql, list(cols), list(cols.values()))
        return frame_from_arrow(_utc(table, cols), None, None)[list(cols)]

    def count(self, name: str, bbox: BBox | None = None, where: Where | None = None) -> int:
        bbox = validate_bbox(bbox)
        with self._reading(lock=name, what=f"counting {name!r} in") as conn:
            entry = self._entry(name, None, conn)
            if bbox is not None and entry["kind"] != "layer":
                raise StoreError(f"{name!r} is a plain table: it has no geometry to filter by bbox")
            sql = f"SELECT count(*) FROM {self._t(name)}{self._where(bbox, where, entry['epsg'])}"
            return int(conn.execute(sql).fetchone()[0])

    def read_table(self, name: str, columns: list[str] | None = None, where: Where | None = None) -> pd.DataFrame:
        with self._reading(lock=name, what=f"reading table {name!r} from") as conn:
            self._entry(name, "table", conn)
            cols = self._pick(name, columns, conn)
            where_sql = self._where(None, where, 0)
            if not cols:
                n = conn.execute(f"SELECT count(*) FROM {self._t(name)}{where_sql}").fetchone()[0]
                return pd.DataFrame(index=pd.RangeIndex(n))
            sql = f"SELECT {', '.join(self._select_list(cols))} FROM {self._t(name)}{where_sql} ORDER BY fid"
            table = self._copy_out(conn, sql, list(cols), list(cols.values()))
        return frame_from_arrow(_utc(table, cols), None, None)[list(cols)]

    def _history(self, table: str, columns: list[str], **equal) -> list[dict]:
        where, params = history_filter("%s", **equal)
        sql = f"SELECT {', '.join(_q(c) for c in columns)} FROM {self._t(table)}{where} ORDER BY seq"
        with self._reading() as conn:
            if not self._has_table(table, conn):
                return []
            return [dict(zip(columns, r)) for r in conn.execute(sql, params).fetchall()]

    # --- writing ---------------------------------------------------------------------------------
    def _prepare_schema(self, conn) -> None:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone() is None:
            raise StoreError(f"database of {self.url} lacks PostGIS: run CREATE EXTENSION postgis; as its owner")
        encoding = conn.info.parameter_status("server_encoding")
        if encoding not in ("UTF8", None):
            # EUC_CN (GB 2312, the only Chinese server encoding PostgreSQL has) lacks characters that layers and
            # the store's own findings hold (m², ×, rare place-name characters): a write would fail half-way
            raise StoreError(f"the database of {self.url} is encoded {encoding}; the store needs a UTF8 database "
                             "(GB 2312 lacks characters that layers and findings hold, such as m² and rare place "
                             "names): create one with CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0, "
                             "CREATE EXTENSION postgis, and use its URL")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(self.schema_name)}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._t(META_TABLE)} (key text PRIMARY KEY, value text)")
        load_cols = ", ".join(f"{_q(c)} {t}" for c, t in _LOAD_TYPES.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._t(LOAD_TABLE)} (seq bigserial PRIMARY KEY, {load_cols})")
        find_cols = ", ".join(f"{_q(c)} {t}" for c, t in _FINDING_TYPES.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._t(FINDINGS_TABLE)} (seq bigserial PRIMARY KEY, {find_cols})")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._t(CATALOG)} (name text PRIMARY KEY, kind text NOT NULL, "
                     "geometry_type text, epsg integer, has_z boolean, n_rows bigint, minx double precision, "
                     "miny double precision, maxx double precision, maxy double precision, "
                     "written_at timestamptz NOT NULL DEFAULT now())")

    @property
    def advisory_lock_key(self) -> str:
        """The text naming this schema's writer lock: ``yzt:<schema>``.

        Every writer of the schema holds ``pg_advisory_xact_lock(hashtext(<key>))`` for its whole transaction
        (write_layers, write_tables, the workflow changes); take it with :meth:`lock_writers`.
        """
        return f"yzt:{self.schema_name}"

    def lock_writers(self, conn) -> None:
        """Wait for, then take, the schema's writer lock on ``conn``; it is held until the transaction ends.

        Call it first thing inside a transaction (``with conn.transaction():``) that writes into this schema
        with a connection of its own: write_layers swaps tables (DROP + RENAME) inside its transaction, and a
        writer that does not hold this lock could update a table that is about to be dropped.
        """
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.advisory_lock_key,))

    @contextlib.contextmanager
    def _writing(self, what: str, names):
        """ONE transaction on the store's connection holding the schema's writer lock, the schema prepared.

        A database error inside it rolls everything back and becomes ``writing <what> [names] to … failed, the
        store is unchanged``; any other exception rolls back too and passes through.
        """
        import psycopg

        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    self.lock_writers(conn)
                    self._prepare_schema(conn)
                    _compress_with_lz4(conn)
                    yield conn
            except psycopg.Error as exc:
                raise write_failed(what, names, self.url, first_line(exc)) from None

    def _refuse_clash(self, conn, writing: str, names) -> None:
        held_kind = "table" if writing == "layer" else "layer"
        held = [n for n, kind in conn.execute(f"SELECT name, kind FROM {self._t(CATALOG)}").fetchall()
                if kind == held_kind]
        refuse_kind_clash(self.url, writing, names, held)

    def _copy_in(self, conn, table: str, data: pa.Table, freeze: bool = False, geometry=None) -> None:
        """Stream ``data`` into ``table`` in PostgreSQL's binary COPY format (layers/store/pgbinary.py: no
        number, date or geometry is parsed from text on the server). ``freeze``: the table was created in this
        transaction, so its rows can be written frozen and its pages marked all-visible (COPY FREEZE): no
        reader sets hint bits on them and autovacuum has nothing to freeze — each table is written once and
        replaced whole. ``geometry(start, stop)``: the EWKB of those rows, made block by block (a county's
        EWKB at once would be a second copy of its geometries)."""
        names = data.column_names + ([STORED_GEOMETRY] if geometry is not None else [])
        kinds = [kind_of_arrow(f.type) for f in data.schema]
        columns = ", ".join(_q(c) for c in names)
        how = "FORMAT binary, FREEZE" if freeze else "FORMAT binary"
        with conn.cursor().copy(f"COPY {self._t(table)} ({columns}) FROM STDIN ({how})") as copy:
            copy.write(pgbinary.SIGNATURE)
            for start in range(0, data.num_rows, _COPY_CHUNK):
                block = data.slice(start, _COPY_CHUNK)
                values = list(zip(kinds, block.columns))
                if geometry is not None:
                    values.append(("wkb", geometry(start, start + block.num_rows)))
                copy.write(pgbinary.rows(values))
            copy.write(pgbinary.TRAILER)

    def _create_and_fill(self, conn, tmp: str, attrs: pa.Table, geom_sql: str | None,
                         geoms: np.ndarray | None = None, epsg: int | None = None, has_z: bool = False,
                         analyse: bool = True) -> None:
        kinds = {f.name: kind_of_arrow(f.type) for f in attrs.schema}
        cols = "".join(f", {_q(c)} {_PG_TYPES[k]}" for c, k in kinds.items())
        if geom_sql:
            cols += f", {_q(STORED_GEOMETRY)} {geom_sql}"
        conn.execute(f"CREATE TABLE {self._t(tmp)} (fid bigint NOT NULL{cols})")
        data = attrs.add_column(0, "fid", pa.array(np.arange(1, attrs.num_rows + 1, dtype=np.int64)))
        geometry = None
        if geom_sql and geoms is not None and epsg is not None:
            values, srid = geoms, epsg

            def geometry(start: int, stop: int) -> pa.Array:
                return pa.array(_to_ewkb(values[start:stop], srid, has_z), pa.binary())
        if data.num_rows:
            self._copy_in(conn, tmp, data, freeze=True, geometry=geometry)
        conn.execute(f"ALTER TABLE {self._t(tmp)} ADD CONSTRAINT {_q(tmp + '_pkey')} PRIMARY KEY (fid)")
        if geom_sql:
            conn.execute(f"CREATE INDEX {_q(tmp + '_geom')} ON {self._t(tmp)} USING GIST ({_q(STORED_GEOMETRY)})")
        if analyse:
            conn.execute(f"ANALYZE {self._t(tmp)}")

    def _swap(self, conn, tmp: str, name: str, entry: dict) -> None:
        conn.execute(f"DROP TABLE IF EXISTS {self._t(name)}")
        conn.execute(f"ALTER TABLE {self._t(tmp)} RENAME TO {_q(name)}")
        conn.execute(f"ALTER INDEX {self._t(tmp + '_pkey')} RENAME TO {_q(name[:55] + '_pkey')}")
        if entry["kind"] == "layer":
            conn.execute(f"ALTER INDEX {self._t(tmp + '_geom')} RENAME TO {_q(name[:55] + '_geom')}")
        conn.execute(f"DELETE FROM {self._t(CATALOG)} WHERE name = %s", (name,))
        conn.execute(f"INSERT INTO {self._t(CATALOG)} (name, kind, geometry_type, epsg, has_z, n_rows, minx, miny, "
                     "maxx, maxy) VALUES (%(name)s, %(kind)s, %(geometry_type)s, %(epsg)s, %(has_z)s, %(n_rows)s, "
                     "%(minx)s, %(miny)s, %(maxx)s, %(maxy)s)", {"name": name, **entry})

    def write_layers(self, layers: Mapping[str, gpd.GeoDataFrame], records: list[LoadRecord],
                     meta: Mapping[str, str] | None = None, findings: list[Finding] | None = None,
                     tables: Mapping[str, pd.DataFrame] | None = None) -> None:
        meta = {str(k): str(v) for k, v in (meta or {}).items()}
        plain = prepare_tables(tables) if tables else {}
        refuse_kind_clash(self.url, "table", plain, list(layers))
        with self._writing("layers", layers) as conn:
            current = dict(conn.execute(f"SELECT key, value FROM {self._t(META_TABLE)}").fetchall())
            epsg = resolve_store_epsg(current, meta, layers, self.url)
            self._refuse_clash(conn, "layer", layers)
            self._refuse_clash(conn, "table", plain)
            for name, table_attrs in plain.items():  # the plain tables of the same write (an analysis run)
                tmp = f"_yzt_new_{uuid.uuid4().hex[:16]}"
                self._create_and_fill(conn, tmp, table_attrs, None)
                self._swap(conn, tmp, name, {"kind": "table", "geometry_type": None, "epsg": None,
                                             "has_z": None, "n_rows": table_attrs.num_rows, "minx": None,
                                             "miny": None, "maxx": None, "maxy": None})
            staged = [self._stage_layer(conn, name, gdf, epsg) for name, gdf in layers.items()]
            for tmp, name, entry in staged:
                self._swap(conn, tmp, name, entry)
            self._append_history(conn, records, findings, meta)

    def _stage_layer(self, conn, name: str, gdf: gpd.GeoDataFrame, epsg: int, tmp: str | None = None,
                     analyse: bool = True) -> tuple[str, str, dict]:
        """Write ``gdf`` into a new table ``tmp`` (indexed; analysed unless ``analyse`` is False): (tmp, name,
        its catalog entry)."""
        attrs, geoms, kind, has_z = prepare_layer(name, gdf, epsg)
        tmp = tmp or f"_yzt_new_{uuid.uuid4().hex[:16]}"
        present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        geom_sql = f"geometry({kind}{'Z' if has_z else ''}, {epsg})"
        self._create_and_fill(conn, tmp, attrs, geom_sql, geoms, epsg, has_z, analyse)
        bounds = shapely.total_bounds(geoms[present]) if present.any() else [None] * 4
        return tmp, name, {
            "kind": "layer", "geometry_type": kind + ("Z" if has_z else ""), "epsg": epsg,
            "has_z": has_z, "n_rows": len(geoms),
            **dict(zip(("minx", "miny", "maxx", "maxy"), (None if v is None else float(v) for v in bounds)))}

    def _append_history(self, conn, records: list[LoadRecord], findings: list[Finding] | None,
                        meta: Mapping[str, str]) -> None:
        """The load records and findings of a write appended, its meta set (inside the write's transaction)."""
        from psycopg.types.json import Jsonb

        load_cols = list(_LOAD_TYPES)
        with conn.cursor() as cur:
            if records:
                cur.executemany(
                    f"INSERT INTO {self._t(LOAD_TABLE)} ({', '.join(_q(c) for c in load_cols)}) "
                    f"VALUES ({', '.join(['%s'] * len(load_cols))})",
                    [tuple(Jsonb(r.field_mapping or {}) if c == "field_mapping" else record_row(r)[c]
                           for c in load_cols) for r in records])
            if findings:
                load_id = records[0].load_id if records else ""
                cur.executemany(
                    f"INSERT INTO {self._t(FINDINGS_TABLE)} "
                    f"({', '.join(_q(c) for c in FINDING_COLUMNS)}) "
                    f"VALUES ({', '.join(['%s'] * len(FINDING_COLUMNS))})",
                    [tuple(Jsonb(list(f.ids or [])) if c == "ids" else finding_row(f, load_id)[c]
                           for c in FINDING_COLUMNS) for f in findings])
            for key, value in meta.items():
                cur.execute(f"INSERT INTO {self._t(META_TABLE)} (key, value) VALUES (%s, %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value))

    def staged_layers(self, meta: Mapping[str, str]) -> _PostGISStaging:
        """Each staged layer is written at once into a table of its own (``_yzt_stage_<id>_<n>``: COPY,
        index, ANALYZE, committed — invisible to readers, who see the catalog), so the caller lets it go;
        publish() swaps them all in, with the records, findings and meta, in ONE short transaction under
        the schema's writer lock, which no one waits for while layers load. The staging connection holds a
        session advisory lock named by its id while it lives: the tables of a stager that died (kill -9, a
        lost connection) are dropped by the next one, never those of a live one."""
        return _PostGISStaging(self, meta)

    def join_staging(self, meta: Mapping[str, str], stage_id: str) -> _PostGISStaging:
        """Stage into the staging ``stage_id`` of another live process (Store.join_staging): its tables are
        named by that id, so the owner's lock keeps them from being taken for orphans, and the owner drops
        any it does not publish. Refused when the owner is gone."""
        return _PostGISStaging(self, meta, join=stage_id)

    def write_tables(self, tables: Mapping[str, pd.DataFrame]) -> None:
        prepared = prepare_tables(tables)
        with self._writing("tables", prepared) as conn:
            self._refuse_clash(conn, "table", prepared)
            for name, attrs in prepared.items():
                tmp = f"_yzt_new_{uuid.uuid4().hex[:16]}"
                self._create_and_fill(conn, tmp, attrs, None)
                self._swap(conn, tmp, name, {"kind": "table", "geometry_type": None, "epsg": None,
                                             "has_z": None, "n_rows": attrs.num_rows, "minx": None,
                                             "miny": None, "maxx": None, "maxy": None})


STAGE_PREFIX = "_yzt_stage_"  # + <staging id>_<n>: a staged layer's table until publish renames it


class _PostGISStaging(LayerStaging):
    """PostGISStore.staged_layers: each layer written and committed into a stage table as it comes, the
    swap in one short transaction at publish."""

    def __init__(self, store: PostGISStore, meta: Mapping[str, str], join: str | None = None):
        import psycopg

        super().__init__(store, {str(k): str(v) for k, v in meta.items()})
        self.pg = store
        if join is not None and not re.fullmatch(r"[0-9a-f]{16}", join):
            raise StoreError(f"{join!r} is not a staging id (16 hexadecimal digits)")
        self.id = join or uuid.uuid4().hex[:16]
        self.joined = join is not None  # staging for another process, which publishes
        self.staged: list[tuple[str, str, dict]] = []
        self.dropped_orphans: list[str] = []
        with store._writing("layers", []) as conn:  # a brief write: the schema's tables created, its meta read
            self._current = dict(conn.execute(f"SELECT key, value FROM {store._t(META_TABLE)}").fetchall())
        check_region_meta(store.url, self._current, self.meta.get("region_code"), self.meta.get("epsg"))
        self._conn = connect(store._target, application_name="yizhangtu")
        try:
            if self.joined:
                self._require_owner()
            else:
                self._conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (self._key(self.id),))
                self.dropped_orphans = self._drop_orphans()
        except psycopg.Error as exc:
            self._conn.close()
            raise write_failed("layers", [], store.url, first_line(exc)) from None
        except BaseException:
            self._conn.close()
            raise

    def _key(self, stage_id: str) -> str:
        return f"yzt-stage:{self.pg.schema_name}:{stage_id}"

    def _require_owner(self) -> None:
        """StoreError unless another session holds this staging's lock (a joined staging's owner lives)."""
        if self._conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self._key(self.id),)).fetchone()[0]:
            self._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self._key(self.id),))
            raise StoreError(f"the ingest that opened staging {self.id} in {self.pg.url} is gone (its connection "
                             "closed); run the ingest again")

    def _drop_orphans(self) -> list[str]:
        """Drop the stage tables of stagers that are gone (their session lock is free): a kill -9 or a lost
        connection between stage and publish. Returns the tables dropped."""
        rows = self._conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE %s ORDER BY 1",
            (self.pg.schema_name, STAGE_PREFIX.replace("_", r"\_") + "%")).fetchall()
        by_stager: dict[str, list[str]] = {}
        for (name,) in rows:
            by_stager.setdefault(name[len(STAGE_PREFIX):].split("_")[0], []).append(name)
        dropped = []
        for stage_id, tables in by_stager.items():
            if stage_id == self.id or not self._conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                                                              (self._key(stage_id),)).fetchone()[0]:
                continue  # ours, or a live stager's
            try:
                for table in tables:
                    self._conn.execute(f"DROP TABLE IF EXISTS {self.pg._t(table)}")
                    dropped.append(table)
            finally:
                self._conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (self._key(stage_id),))
        return dropped

    def stage(self, name: str, gdf: gpd.GeoDataFrame) -> None:
        import psycopg

        check_name(name)
        if any(n == name for _, n, _ in self.staged):
            raise StoreError(f"layer {name!r} is staged twice in one write to {self.pg.url}")
        # a joined staging's tables get a suffix of their own: several processes stage under one id
        tmp = f"{STAGE_PREFIX}{self.id}_{uuid.uuid4().hex[:8] if self.joined else len(self.staged)}"
        try:
            with self._conn.transaction():
                _compress_with_lz4(self._conn)
                epsg = resolve_store_epsg(self._current, self.meta, {name: gdf}, self.pg.url)
                self.pg._refuse_clash(self._conn, "layer", [name])
                self.staged.append(self.pg._stage_layer(self._conn, name, gdf, epsg, tmp, analyse=False))
            self._analyse(tmp)
        except psycopg.Error as exc:
            raise write_failed("layers", [name], self.pg.url, first_line(exc)) from None

    def _analyse(self, tmp: str) -> None:
        """ANALYZE the stage table after its COPY committed, not inside that transaction: an ANALYZE in the
        writing transaction is followed at commit by the count of the rows it wrote, which then reads as
        that many changes since the analysis and has autovacuum analyse the table a second time. The
        counts are flushed first (they may wait up to a second in the backend, PostgreSQL ≥ 15). No reader
        sees the table before publish, so none plans against it unanalysed."""
        if self._conn.info.server_version >= 150000:
            self._conn.execute("SELECT pg_stat_force_next_flush()")
        self._conn.execute(f"ANALYZE {self.pg._t(tmp)}")

    def hand_over(self) -> list[tuple[str, str, dict]]:
        """A joined staging: its stage tables, for the owner to adopt (the owner must still be there, else the
        tables are dropped here and StoreError raised)."""
        if not self.joined:
            raise StoreError("hand_over() is for a joined staging (Store.join_staging); the owner publishes")
        self._require_owner()
        entries, self.staged = self.staged, []
        return entries

    def adopt(self, entries: list[tuple[str, str, dict]]) -> None:
        """Take in stage tables that joined stagings handed over; they are published (or dropped) with ours."""
        for tmp, name, entry in entries:
            if not tmp.startswith(f"{STAGE_PREFIX}{self.id}_"):
                raise StoreError(f"stage table {tmp!r} was not staged under staging {self.id}")
            if any(n == name for _, n, _ in self.staged):
                raise StoreError(f"layer {name!r} is staged twice in one write to {self.pg.url}")
            self.staged.append((tmp, name, entry))

    def publish(self, records: list[LoadRecord], findings: list[Finding] | None = None) -> None:
        if self.joined:
            raise StoreError("a joined staging hands its layers over (hand_over); its owner publishes them")
        names = [name for _, name, _ in self.staged]
        with self.pg._writing("layers", names) as conn:
            current = dict(conn.execute(f"SELECT key, value FROM {self.pg._t(META_TABLE)}").fetchall())
            check_region_meta(self.pg.url, current, self.meta.get("region_code"), self.meta.get("epsg"))
            held = current.get("epsg") or self.meta.get("epsg")
            epsg = int(held) if held else None
            self.pg._refuse_clash(conn, "layer", names)
            for tmp, name, entry in self.staged:
                if epsg is not None and entry["epsg"] != epsg:  # another write set the store's CRS meanwhile
                    raise StoreError(f"layer {name!r} was staged in EPSG:{entry['epsg']}, and {self.pg.url} now "
                                     f"keeps EPSG:{epsg}; write it again")
                self.pg._swap(conn, tmp, name, entry)
            self.pg._append_history(conn, records, findings, self.meta)
        self.published, self.staged = True, []

    def close(self) -> None:
        """Drop what was staged and not published (best effort: a stager that cannot is an orphan the next one
        drops), release the session lock by closing the connection."""
        try:
            if not self.published:
                for tmp, _, _ in self.staged:
                    with contextlib.suppress(Exception):
                        self._conn.execute(f"DROP TABLE IF EXISTS {self.pg._t(tmp)}")
            self.staged = []
            if not self.joined:  # and whatever joined stagings left under our id (a task that failed, retried)
                with contextlib.suppress(Exception):
                    for (tmp,) in self._conn.execute(
                            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE %s",
                            (self.pg.schema_name,
                             f"{STAGE_PREFIX}{self.id}_".replace("_", r"\_") + "%")).fetchall():
                        self._conn.execute(f"DROP TABLE IF EXISTS {self.pg._t(tmp)}")
        finally:
            self._conn.close()


class _Missing(Exception):
    """Internal: the table to lock does not exist."""


_LZ4: dict[str, bool] = {}  # server → whether it offers lz4 TOAST compression (PostgreSQL ≥ 14 built with lz4)


def _compress_with_lz4(conn) -> None:
    """In the transaction under way, TOAST large values (indicator ids, big polygons) with lz4 — ~5× faster
    than pglz — where the server has it."""
    if _has_lz4(conn):
        conn.execute("SET LOCAL default_toast_compression = 'lz4'")


def _has_lz4(conn) -> bool:
    info = conn.info
    key = f"{info.host}:{info.port}/{info.dbname}"
    if key not in _LZ4:
        row = conn.execute("SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                           "WHERE name = 'default_toast_compression'").fetchone()
        _LZ4[key] = bool(row and row[0])
    return _LZ4[key]


def _from_hex(values: np.ndarray) -> np.ndarray:
    """Hex WKB → geometries. bytes.fromhex + binary WKB is ~10× faster than GEOS's hex reader."""
    raw = np.array([None if v is None else bytes.fromhex(v) for v in values], dtype=object)
    return shapely.from_wkb(raw)


def _to_ewkb(geoms: np.ndarray, epsg: int, has_z: bool) -> np.ndarray:
    """Geometries → EWKB carrying the SRID (what PostGIS's receive function takes for a geometry(Type, EPSG)
    column in a binary COPY)."""
    return shapely.to_wkb(shapely.set_srid(geoms, epsg), include_srid=True, output_dimension=3 if has_z else 2,
                          flavor="extended")


def _utc(table: pa.Table, cols: dict[str, str]) -> pa.Table:
    """Timestamps were selected AT TIME ZONE 'UTC' (naive text): mark them UTC again."""
    for name, kind in cols.items():
        if kind == "datetime":
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(name).cast(pa.timestamp("ms", tz="UTC")))
    return table

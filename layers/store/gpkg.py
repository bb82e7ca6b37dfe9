"""The embedded store: one GeoPackage file, no server.

Layout inside the file:

- one GDAL feature table per layer, named by role (``dltb``, ``xzq`` …), geometry column ``geom`` in the
  store EPSG, integer primary key ``fid`` (1..n in write order), R*Tree spatial index ``rtree_<name>_geom``;
- ``yzt_meta`` (key, value), ``yzt_load_records`` (one row per stored layer per load, newest last; dict
  fields as JSON), ``yzt_findings`` (入库质检 findings per load), and plain attribute tables written by
  later stages (workflow, audit, analysis runs), all registered in ``gpkg_contents`` as ``attributes``.

Atomicity.

- ``write_layers`` is copy-on-write: under an exclusive writer lock (``flock`` on the sidecar
  ``.<name>.lock``) the current file is copied next to itself (``.<name>.<id>.tmp.gpkg``), the new layers,
  records, findings and meta are written into the copy, the copy is fsync'ed and ``os.replace``'d over the
  store. A failure or a kill at any point leaves the old file untouched (the stray copy is removed by the
  next writer). A reader that opened the file before the replace keeps reading the old inode; readers opening
  after it see the new one: never a half state.
- ``write_tables`` (small plain tables: workflow, audit …) writes in place in ONE SQLite transaction
  (``BEGIN IMMEDIATE`` … ``COMMIT``), under the same writer lock; SQLite's rollback journal makes it atomic.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import shapely

from ..errors import NotFoundError, StoreError, YztError
from ..filelock import exclusive
from ..records import Finding, LoadRecord
from .base import (
    FINDING_COLUMNS,
    FINDINGS_TABLE,
    GEOMETRY,
    INTERNAL_TABLES,
    LOAD_TABLE,
    META_TABLE,
    STORED_GEOMETRY,
    BBox,
    Store,
    Where,
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
from .gpkg_sqlite import connect, gpkg_wkb

_GPKG_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "BOOLEAN", "date": "DATE",
               "datetime": "DATETIME"}
_DECLARED_KIND = {"TEXT": "str", "VARCHAR": "str", "INTEGER": "int", "INT": "int", "MEDIUMINT": "int",
                  "SMALLINT": "int", "TINYINT": "int", "BIGINT": "int", "REAL": "float", "FLOAT": "float",
                  "DOUBLE": "float", "BOOLEAN": "bool", "DATE": "date", "DATETIME": "datetime"}
_LOAD_COLUMNS = {name: ("INTEGER" if f.type in ("int", int) else "TEXT")
                 for name, f in LoadRecord.__dataclass_fields__.items()}
_FINDING_TYPES = {"load_id": "TEXT", "layer": "TEXT", "check": "TEXT", "severity": "TEXT", "message": "TEXT",
                  "ids": "TEXT", "count": "INTEGER"}
_VACUUM_SHARE = 0.3  # VACUUM the new copy when more than this share of its pages is free


def _sql_float(value: float) -> str:
    return repr(float(value))


class GeoPackageStore(Store):
    """A region store in one GeoPackage file (created on the first write)."""

    def __init__(self, path: str | Path):
        path = Path(path).expanduser()
        if path.suffix.lower() != ".gpkg":
            raise StoreError(f"GeoPackage store path {str(path)!r} must end with .gpkg")
        if path.exists() and not path.is_file():
            raise StoreError(f"GeoPackage store {str(path)!r} exists and is not a file")
        path = path.resolve()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of store {str(path)!r}: {exc}") from None
        self.path = path
        self.url = str(path)

    def __repr__(self) -> str:
        return f"GeoPackageStore({self.url!r})"

    # --- low level -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only SQLite connection to the current file, or None if the store does not exist yet."""
        if not self.path.is_file():
            yield None
            return
        try:
            con = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=60)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open GeoPackage store {self.url}: {exc}") from None
        try:
            yield con
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read GeoPackage store {self.url}: {exc}") from None
        finally:
            con.close()

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        """The store's writer lock: one writer at a time per store file; readers never wait for it.

        An exclusive ``flock`` on the sidecar ``.<name>.gpkg.lock``, the lock ``write_layers`` and
        ``write_tables`` hold for their whole write. Code that writes into the file in place with its own
        SQLite connection (the workflow tables) must hold it around its transaction: otherwise a
        copy-on-write ``write_layers`` may copy the file before that transaction commits and then replace
        the file with its copy, dropping the change. Blocks until the lock is free (other processes and
        other threads alike: every call opens its own descriptor). Not re-entrant: do not call
        ``write_layers`` / ``write_tables`` of the same store while holding it.
        """
        def refused(exc: OSError, lock_path: Path) -> StoreError:
            return StoreError(f"cannot write GeoPackage store {self.url}: {exc.strerror} ({lock_path}); check the "
                              "folder's permissions")

        with exclusive(self.path, mode=0o664, error=refused):
            yield

    def _recover(self) -> None:
        """Under the writer lock: roll back a hot journal left by a killed in-place write; drop stray copies."""
        for stray in self.path.parent.glob(f".{self.path.name}.*.tmp.gpkg*"):
            with contextlib.suppress(OSError):
                stray.unlink()
        if self.path.is_file():
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")  # reading a hot journal rolls it back
                con.execute("ROLLBACK")
            except sqlite3.Error as exc:
                raise StoreError(f"GeoPackage store {self.url} is locked or damaged: {exc}") from None
            finally:
                con.close()

    def _contents(self, con: sqlite3.Connection | None, data_type: str) -> list[str]:
        if con is None:
            return []
        rows = con.execute("SELECT table_name FROM gpkg_contents WHERE data_type = ?", (data_type,)).fetchall()
        return sorted(r[0] for r in rows)

    def _layer_geometry(self, con, name: str) -> tuple[str, str]:
        """(geometry column, geometry type) of a layer; NotFoundError if there is no such layer."""
        row = None
        if con is not None:
            row = con.execute("SELECT column_name, geometry_type_name FROM gpkg_geometry_columns "
                              "WHERE table_name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"layer {name!r} is not in store {self.url}; layers: "
                                f"{', '.join(self._contents(con, 'features')) or 'none'}")
        return row[0], row[1]

    def _columns(self, con, name: str) -> dict[str, str]:
        rows = con.execute(f"PRAGMA table_info({_q(name)})").fetchall()
        out = {}
        for _cid, col, decl, _notnull, _default, pk in rows:
            if pk or col == "fid":
                continue
            base = (decl or "TEXT").split("(")[0].strip().upper()
            out[col] = _DECLARED_KIND.get(base, "geometry" if base in _GEOMETRY_DECL else "str")
        return out

    # --- metadata --------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self._read() as con:
            if con is None or not _has_table(con, META_TABLE):
                return {}
            return dict(con.execute(f"SELECT key, value FROM {META_TABLE} ORDER BY fid"))

    def layer_names(self) -> list[str]:
        with self._read() as con:
            return self._contents(con, "features")

    def table_names(self) -> list[str]:
        with self._read() as con:
            return [t for t in self._contents(con, "attributes") if t not in INTERNAL_TABLES]

    def schema(self, name: str) -> dict[str, str]:
        with self._read() as con:
            if con is None or name not in self._contents(con, "features") + self._contents(con, "attributes"):
                raise NotFoundError(f"{name!r} is not a layer or table of store {self.url}")
            return {c: k for c, k in self._columns(con, name).items() if k != "geometry"}

    def geometry_type(self, name: str) -> str:
        with self._read() as con:
            kind = self._layer_geometry(con, name)[1].upper()
        return _GEOMETRY_DECL.get(kind, "Geometry")

    def bounds(self, name: str) -> BBox | None:
        with self._read() as con:
            geom, _ = self._layer_geometry(con, name)
            assert con is not None  # _layer_geometry raised otherwise
            rtree = f"rtree_{name}_{geom}"
            if not _has_table(con, rtree):
                return None
            row = con.execute(f"SELECT count(*) FROM {_q(rtree)}").fetchone()
            if not row[0]:
                return None
            row = con.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?",
                              (name,)).fetchone()
        if row is None or any(v is None for v in row):
            frame = self.read_layer(name, columns=[])
            if not len(frame):
                return None
            row = frame.total_bounds
        minx, miny, maxx, maxy = (float(v) for v in row)
        return minx, miny, maxx, maxy

    # --- reading ---------------------------------------------------------------------------------
    def _select(self, con, name: str, columns, bbox, where, geom_col: str | None) -> tuple[str, list[str]]:
        available = self._columns(con, name)
        attrs = [c for c, k in available.items() if k != "geometry"]
        if columns is not None:
            unknown = [c for c in columns if c not in attrs]
            if unknown:
                raise StoreError(f"{name!r} has no column(s) {unknown}; columns: {', '.join(attrs)}")
            attrs = list(columns)
        conditions = []
        exact = None
        if bbox is not None:
            minx, miny, maxx, maxy = (_sql_float(v) for v in bbox)
            assert geom_col is not None  # a bbox on a plain table is refused before
            rtree = f"rtree_{name}_{geom_col}"
            if _has_table(con, rtree):
                conditions.append(f"fid IN (SELECT id FROM {_q(rtree)} WHERE minx <= {maxx} AND maxx >= {minx} "
                                  f"AND miny <= {maxy} AND maxy >= {miny})")
            # the exact test, after the R*Tree (float32 boxes, rounded outwards) and after the where clause:
            # SQLite evaluates the terms in order, and the attribute test is cheaper than a Python function
            exact = f"yzt_envelope_meets({_q(geom_col)}, {minx}, {miny}, {maxx}, {maxy})"
        if where is not None and not (isinstance(where, str) and not where):
            sql = where_sql(where, "sqlite")
            _check_where(con, name, sql)
            conditions.append(f"({sql})")
        if exact:
            conditions.append(exact)
        sql_where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        return sql_where, attrs

    def _run_sql(self, sql: str, what: str, kinds: Mapping[str, str], geom_col: str | None = None) -> pa.Table:
        """The rows of ``sql`` as an Arrow table typed by ``kinds`` (column → str int float bool date datetime),
        the geometry column as standard WKB.

        Read with Python's sqlite3, never with GDAL: GDAL (pyogrio) links its own copy of SQLite, and two SQLite
        libraries in one process break each other's file locks — POSIX locks belong to the process, so when
        one library closes the store file every lock the other holds on it is gone (sqlite.org/howtocorrupt.html
        §2.2.1). A workflow write in progress then looked unlocked to other processes: a concurrent `yzt
        analyse` found its journal "hot" ("attempt to write a readonly database") and readers got "database is
        locked". One library per file, with a busy timeout, keeps SQLite's locking whole."""
        try:
            con = connect(self.path, readonly=True, timeout=60)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open GeoPackage store {self.url}: {exc}") from None
        try:
            cur = con.execute(sql)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        except sqlite3.Error as exc:  # a bad where clause, a damaged file, a lock held longer than the timeout
            raise StoreError(f"reading {what} from {self.url} failed: {exc}") from None
        finally:
            con.close()
        columns = list(zip(*rows)) if rows else [() for _ in names]
        arrays = [pa.array([gpkg_wkb(v) for v in values], pa.binary()) if name == geom_col
                  else _arrow_values(values, kinds.get(name, "str")) for name, values in zip(names, columns)]
        return pa.table(dict(zip(names, arrays))) if names else pa.table({})

    def read_layer(self, name: str, bbox: BBox | None = None, columns: list[str] | None = None,
                   where: Where | None = None, limit: int | None = None, offset: int = 0) -> gpd.GeoDataFrame:
        bbox = validate_bbox(bbox)
        validate_paging(limit, offset)
        with self._read() as con:
            geom_col, _ = self._layer_geometry(con, name)
            sql_where, attrs = self._select(con, name, columns, bbox, where, geom_col)
            epsg = self._srs(con, name)
            kinds = self._columns(con, name)
        select = ", ".join([*(_q(c) for c in attrs), _q(geom_col)])
        sql = f"SELECT {select} FROM {_q(name)}{sql_where} ORDER BY fid"
        if limit is not None or offset:
            sql += f" LIMIT {-1 if limit is None else int(limit)} OFFSET {int(offset)}"
        table = self._run_sql(sql, f"layer {name!r}", kinds, geom_col)
        geom_field = geom_col
        frame = frame_from_arrow(table, geom_field, epsg)
        return frame[[*attrs, GEOMETRY]]

    def read_near(self, name: str, boxes, columns: list[str] | None = None) -> gpd.GeoDataFrame:
        boxes = [b for b in (validate_bbox(b) for b in boxes) if b is not None]
        if not boxes:
            return self.read_layer(name, columns=columns, limit=0)
        with self._read() as con:
            geom_col, _ = self._layer_geometry(con, name)
            _, attrs = self._select(con, name, columns, None, None, geom_col)
            epsg = self._srs(con, name)
            kinds = self._columns(con, name)
            rtree = f"rtree_{name}_{geom_col}"
            has_rtree = con is not None and _has_table(con, rtree)
        if not has_rtree:  # a store written without its index: the base reads the layer and tests each row
            return super().read_near(name, boxes, columns)
        select = ", ".join([*(_q(c) for c in attrs), _q(geom_col)])
        # the R*Tree joined with the boxes (float32 boxes rounded outwards: the exact test follows)
        sql = (f"WITH b(x0, y0, x1, y1) AS (VALUES {near_values(boxes)}) SELECT {select} FROM {_q(name)} WHERE fid "
               f"IN (SELECT r.id FROM b, {_q(rtree)} r WHERE r.minx <= b.x1 AND r.maxx >= b.x0 AND r.miny <= b.y1 "
               f"AND r.maxy >= b.y0) ORDER BY fid")
        frame = frame_from_arrow(self._run_sql(sql, f"layer {name!r}", kinds, geom_col), geom_col, epsg)
        frame = frame[[*attrs, GEOMETRY]]
        return frame[meets_any(np.asarray(frame.geometry.values), boxes)].reset_index(drop=True)

    def read_attributes(self, name: str, columns: list[str], where: Where | None = None) -> pd.DataFrame:
        with self._read() as con:
            geom_col, _ = self._layer_geometry(con, name)
            sql_where, attrs = self._select(con, name, columns, None, where, geom_col)
            kinds = self._columns(con, name)
        if not attrs:
            raise StoreError(f"read_attributes of {name!r} needs at least one column")
        table = self._run_sql(f"SELECT {', '.join(_q(c) for c in attrs)} FROM {_q(name)}{sql_where} ORDER BY fid",
                              f"layer {name!r}", kinds)
        return frame_from_arrow(table, None, None)[attrs]

    def count(self, name: str, bbox: BBox | None = None, where: Where | None = None) -> int:
        bbox = validate_bbox(bbox)
        with self._read() as con:
            if con is not None and name in self._contents(con, "attributes"):
                geom_col = None
            else:
                geom_col, _ = self._layer_geometry(con, name)
            if bbox is not None and geom_col is None:
                raise StoreError(f"{name!r} is a plain table: it has no geometry to filter by bbox")
            sql_where, _ = self._select(con, name, [], bbox, where, geom_col)
            if bbox is None:
                assert con is not None  # no layer or table raised above
                try:
                    return int(con.execute(f"SELECT count(*) FROM {_q(name)}{sql_where}").fetchone()[0])
                except sqlite3.Error as exc:
                    raise StoreError(f"counting {name!r} in {self.url} failed: {exc}") from None
        table = self._run_sql(f"SELECT count(*) AS n FROM {_q(name)}{sql_where}", f"the count of {name!r}",
                              {"n": "int"})
        return int(table.column(0)[0].as_py())

    def _srs(self, con, name: str) -> int | None:
        row = con.execute("SELECT g.srs_id, s.organization, s.organization_coordsys_id FROM gpkg_geometry_columns g "
                          "LEFT JOIN gpkg_spatial_ref_sys s ON s.srs_id = g.srs_id WHERE g.table_name = ?",
                          (name,)).fetchone()
        if row is None:
            return None
        if row[1] and row[1].upper() == "EPSG":
            return int(row[2])
        return int(row[0]) if row[0] and row[0] > 0 else None

    def read_table(self, name: str, columns: list[str] | None = None, where: Where | None = None) -> pd.DataFrame:
        with self._read() as con:
            if con is None or name not in self._contents(con, "attributes"):
                raise NotFoundError(f"table {name!r} is not in store {self.url}; tables: "
                                    f"{', '.join(self.table_names()) or 'none'}")
            sql_where, attrs = self._select(con, name, columns, None, where, None)
            kinds = self._columns(con, name)
            if not attrs:
                n = con.execute(f"SELECT count(*) FROM {_q(name)}{sql_where}").fetchone()[0]
                return pd.DataFrame(index=pd.RangeIndex(n))
        table = self._run_sql(f"SELECT {', '.join(_q(c) for c in attrs)} FROM {_q(name)}{sql_where} ORDER BY fid",
                              f"table {name!r}", kinds)
        return frame_from_arrow(table, None, None)[attrs]

    def _history(self, table: str, columns: list[str], **equal) -> list[dict]:
        with self._read() as con:
            if con is None or not _has_table(con, table):
                return []
            where, params = history_filter("?", **equal)
            sql = f"SELECT {', '.join(_q(c) for c in columns)} FROM {table}{where} ORDER BY fid"
            return [dict(zip(columns, r)) for r in con.execute(sql, params)]

    # --- writing ---------------------------------------------------------------------------------
    def write_layers(self, layers: Mapping[str, gpd.GeoDataFrame], records: list[LoadRecord],
                     meta: Mapping[str, str] | None = None, findings: list[Finding] | None = None,
                     tables: Mapping[str, pd.DataFrame] | None = None) -> None:
        meta = {str(k): str(v) for k, v in (meta or {}).items()}
        plain = prepare_tables(tables) if tables else {}
        with self.writer_lock():
            self._recover()
            epsg = resolve_store_epsg(self.meta(), meta, layers, self.url)
            refuse_kind_clash(self.url, "layer", layers, [*self.table_names(), *plain])
            refuse_kind_clash(self.url, "table", plain, [*self.layer_names(), *layers])
            prepared = {name: prepare_layer(name, gdf, epsg) for name, gdf in layers.items()}
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp.gpkg")
            try:
                if self.path.is_file():
                    shutil.copyfile(self.path, tmp)
                for name, (attrs, geoms, kind, has_z) in prepared.items():
                    _write_layer(tmp, name, attrs, geoms, kind, has_z, epsg)
                if not tmp.is_file():  # a new store written without layers: create an empty GeoPackage
                    _create_empty(tmp)
                con = sqlite3.connect(tmp, isolation_level=None)
                try:
                    con.execute("BEGIN")
                    _append_internal(con, records, meta, findings)
                    for name, table in plain.items():
                        _replace_attribute_table(con, name, table)
                    con.execute("COMMIT")
                    free, pages = (con.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count",
                                                                                        "page_count"))
                    if pages and free / pages > _VACUUM_SHARE:
                        con.execute("VACUUM")
                finally:
                    con.close()
                _fsync(tmp)
                os.replace(tmp, self.path)
                _fsync(self.path.parent)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                if isinstance(exc, (YztError, KeyboardInterrupt, SystemExit)):
                    raise
                raise write_failed("layers", layers, self.url, exc) from exc

    def write_tables(self, tables: Mapping[str, pd.DataFrame]) -> None:
        prepared = prepare_tables(tables)
        with self.writer_lock():
            self._recover()
            if not self.path.is_file():
                tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp.gpkg")
                _create_empty(tmp)
                os.replace(tmp, self.path)
            refuse_kind_clash(self.url, "table", prepared, self.layer_names())
            con = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    for name, table in prepared.items():
                        _replace_attribute_table(con, name, table)
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise write_failed("tables", prepared, self.url, exc) from None
            finally:
                con.close()


_GEOMETRY_DECL = {"GEOMETRY": "Geometry", "POINT": "Point", "LINESTRING": "LineString", "POLYGON": "Polygon",
                  "MULTIPOINT": "MultiPoint", "MULTILINESTRING": "MultiLineString",
                  "MULTIPOLYGON": "MultiPolygon", "GEOMETRYCOLLECTION": "GeometryCollection"}


def _check_where(con: sqlite3.Connection, name: str, where: str) -> None:
    """Compile the where clause with double-quoted strings disabled: SQLite would otherwise read a misspelt
    "COLUMN" as the string 'COLUMN' and silently match nothing."""
    con.setconfig(sqlite3.SQLITE_DBCONFIG_DQS_DML, False)
    try:
        con.execute(f"EXPLAIN SELECT 1 FROM {_q(name)} WHERE ({where})")
    except sqlite3.Error as exc:
        raise StoreError(f"where clause {where!r} on {name!r} is not valid SQL over its columns: {exc}") from None
    finally:
        con.setconfig(sqlite3.SQLITE_DBCONFIG_DQS_DML, True)


_FAST_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string()}


def _arrow_values(values, kind: str) -> pa.Array:
    """Column values as SQLite hands them out, as the Arrow type of the column's kind (GDAL's types)."""
    fast = _FAST_TYPES.get(kind)
    if fast is not None:  # the common case: SQLite hands out the column's own type (or NULL) on every row
        try:
            return pa.array(values, fast)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            pass  # a value of another storage class (SQLite is dynamically typed): coerce one by one below
    if kind == "int":
        return pa.array([None if v is None else int(v) for v in values], pa.int64())
    if kind == "float":
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if kind == "bool":
        return pa.array([None if v is None else bool(v) for v in values], pa.bool_())
    if kind == "date":
        return pa.array([None if v is None else dt.date.fromisoformat(str(v)[:10]) for v in values], pa.date32())
    if kind == "datetime":
        stamps = pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601")
        return pa.array(stamps, pa.timestamp("ms", tz="UTC"))
    return pa.array([None if v is None else v if isinstance(v, str) else str(v) for v in values], pa.string())


def _has_table(con: sqlite3.Connection, name: str) -> bool:
    return con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone() is not None


def _write_layer(path: Path, name: str, attrs: pa.Table, geoms: np.ndarray, kind: str, has_z: bool,
                 epsg: int) -> None:
    wkb = shapely.to_wkb(geoms, output_dimension=3 if has_z else 2, flavor="iso")
    table = attrs.append_column(pa.field(STORED_GEOMETRY, pa.binary()), pa.array(wkb, pa.binary()))
    gtype = "Unknown" if kind == "Geometry" else kind + (" Z" if has_z else "")
    pyogrio.write_arrow(table, path, layer=name, driver="GPKG", geometry_name=STORED_GEOMETRY,
                        geometry_type=gtype, crs=f"EPSG:{epsg}", encoding="UTF-8",
                        layer_options={"SPATIAL_INDEX": "YES", "FID": "fid", "OVERWRITE": "YES"})


def _create_empty(path: Path) -> None:
    """A valid, empty GeoPackage (GDAL writes the required gpkg_* tables) holding an empty yzt_meta."""
    pyogrio.write_arrow(pa.table({"key": pa.array([], pa.string()), "value": pa.array([], pa.string())}),
                        path, layer=META_TABLE, driver="GPKG", layer_options={"FID": "fid"})


def _ensure_table(con: sqlite3.Connection, name: str, columns: dict[str, str]) -> None:
    if _has_table(con, name):
        have = {r[1] for r in con.execute(f"PRAGMA table_info({_q(name)})")}
        for col, decl in columns.items():
            if col not in have:  # a store written by an older version: add the column
                con.execute(f"ALTER TABLE {_q(name)} ADD COLUMN {_q(col)} {decl}")
        return
    cols = "".join(f", {_q(c)} {d}" for c, d in columns.items())
    con.execute(f'CREATE TABLE {_q(name)} ("fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL{cols})')
    con.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (name,))
    con.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change) "
                "VALUES (?, 'attributes', ?, '', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))", (name, name))


def _append_internal(con: sqlite3.Connection, records: list[LoadRecord], meta: dict,
                     findings: list[Finding] | None) -> None:
    _ensure_table(con, META_TABLE, {"key": "TEXT", "value": "TEXT"})
    for key, value in meta.items():
        con.execute(f"DELETE FROM {META_TABLE} WHERE key = ?", (key,))
        con.execute(f"INSERT INTO {META_TABLE} (key, value) VALUES (?, ?)", (key, value))
    _ensure_table(con, LOAD_TABLE, _LOAD_COLUMNS)
    if records:
        cols = list(_LOAD_COLUMNS)
        con.executemany(f"INSERT INTO {LOAD_TABLE} ({', '.join(_q(c) for c in cols)}) "
                        f"VALUES ({', '.join('?' * len(cols))})",
                        [tuple(record_row(r)[c] for c in cols) for r in records])
    _ensure_table(con, FINDINGS_TABLE, _FINDING_TYPES)
    if findings:
        load_id = records[0].load_id if records else ""
        con.executemany(f"INSERT INTO {FINDINGS_TABLE} ({', '.join(_q(c) for c in FINDING_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(FINDING_COLUMNS))})",
                        [tuple(finding_row(f, load_id)[c] for c in FINDING_COLUMNS) for f in findings])
    con.execute("UPDATE gpkg_contents SET last_change = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                f"WHERE table_name IN ('{META_TABLE}', '{LOAD_TABLE}', '{FINDINGS_TABLE}')")


def _sqlite_values(col: pa.ChunkedArray | pa.Array, kind: str) -> list:
    values = col.to_pylist()
    if kind == "bool":
        return [None if v is None else int(v) for v in values]
    if kind == "float":
        return [None if v is None or v != v else float(v) for v in values]
    if kind == "date":
        return [None if v is None else v.isoformat() for v in values]
    if kind == "datetime":  # UTC, GDAL's text form
        return [None if v is None else v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
                for v in values]
    return values


def _replace_attribute_table(con: sqlite3.Connection, name: str, table: pa.Table) -> None:
    kinds = {f.name: kind_of_arrow(f.type) for f in table.schema}
    for extra in ("gpkg_ogr_contents", "gpkg_extensions", "gpkg_data_columns"):
        if _has_table(con, extra):
            con.execute(f"DELETE FROM {extra} WHERE table_name = ?", (name,))
    con.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (name,))
    con.execute(f"DROP TABLE IF EXISTS {_q(name)}")
    _ensure_table(con, name, {c: _GPKG_TYPES[k] for c, k in kinds.items()} or {})
    if table.num_rows and kinds:
        columns = [_sqlite_values(table.column(c), k) for c, k in kinds.items()]
        con.executemany(f"INSERT INTO {_q(name)} ({', '.join(_q(c) for c in kinds)}) "
                        f"VALUES ({', '.join('?' * len(kinds))})", zip(*columns))
    elif table.num_rows:
        con.executemany(f'INSERT INTO {_q(name)} ("fid") VALUES (NULL)', [()] * table.num_rows)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The interface every store implements, and the conversions both backends share.

A store holds, for one region, every layer in the region's CGCS2000 3° GK zone (unprefixed EPSG:4534–4554)
plus a load record per layer, plus plain tables (workflow, audit, indicator runs) written by later stages.

Both backends store and return the same things:

- a spatial layer: the attribute columns as given plus one geometry column. Polygons are stored as
  MultiPolygon (a Polygon row becomes a one-part MultiPolygon), points as Point; mixed layers as Geometry.
  Rows come back in the order they were written (paging with ``limit`` / ``offset`` is stable).
- column types: text, 64-bit integers, doubles, booleans, dates and timestamps. Timestamps are stored in
  UTC (naive values are taken as UTC) and come back as UTC-aware ``datetime64[ms, UTC]``. Columns holding
  lists or dicts are stored as JSON text. Integer / boolean columns with missing values come back as pandas
  ``Int64`` / ``boolean``; without missing values as ``int64`` / ``bool``.
- ``bbox`` selects rows whose geometry *envelope* intersects the box (index-backed, exact in double
  precision); ``where`` is a filter (layers.store.query: ``Compare("DLBM", "=", "0101")``, compiled for the
  backend) or, for a person at a prompt, an SQL boolean expression over attribute columns in the backend's
  dialect (SQLite for GeoPackage, PostgreSQL for PostGIS) — quote upper-case names: ``"DLBM" = '0101'``.
  Code uses filters: only layers/store writes SQL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from ..errors import CRSError, StoreError
from ..records import Finding, LoadRecord
from .query import Expr

META_TABLE = "yzt_meta"  # key/value: region_code, region_name, epsg, zone, created_at …
LOAD_TABLE = "yzt_load_records"  # one row per (load_id, layer); history kept
FINDINGS_TABLE = "yzt_findings"  # 入库质检 findings of every load; history kept
CATALOG_TABLE = "yzt_layers"  # PostGIS: catalogue of layers and tables
INTERNAL_TABLES = (META_TABLE, LOAD_TABLE, FINDINGS_TABLE, CATALOG_TABLE)
GEOMETRY = "geometry"  # geometry column name of the frames read and written
STORED_GEOMETRY = "geom"  # geometry column name inside the store
RESERVED = {"fid", STORED_GEOMETRY}  # names the store uses for itself

# Column kinds reported by Store.schema(): the same for both backends.
KINDS = ("str", "int", "float", "bool", "date", "datetime")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
BBox = tuple[float, float, float, float]
Where = Expr | str  # a filter, or SQL text in the backend's dialect (see the module docstring)


class Store(ABC):
    """A region's layers in one place. Writes of a batch of layers are atomic: all or nothing."""

    url: str

    # --- region metadata -------------------------------------------------------------------------
    @abstractmethod
    def meta(self) -> dict[str, str]:
        """Region metadata (region_code, region_name, epsg, zone, …); {} for a new store."""

    @property
    def epsg(self) -> int | None:
        """EPSG code of the store's CRS, None for a new (empty) store."""
        value = self.meta().get("epsg")
        return int(value) if value else None

    def check_region(self, region_code: str, epsg: int) -> None:
        """Raise StoreError if the store already holds another region or another CRS."""
        check_region_meta(self.url, self.meta(), str(region_code), int(epsg))

    # --- layers ----------------------------------------------------------------------------------
    @abstractmethod
    def layer_names(self) -> list[str]:
        """Names of the spatial layers present (sorted)."""

    @abstractmethod
    def read_layer(self, name: str, bbox: BBox | None = None, columns: list[str] | None = None,
                   where: Where | None = None, limit: int | None = None, offset: int = 0) -> gpd.GeoDataFrame:
        """Read a layer in the store CRS, rows in stored order; bbox is in the store CRS.

        ``columns`` selects attribute columns (the geometry always comes along); ``limit`` / ``offset``
        page through the rows matching bbox and where. Raises NotFoundError if the layer is absent,
        StoreError for an unknown column or a bad where clause.
        """

    def read_near(self, name: str, boxes, columns: list[str] | None = None) -> gpd.GeoDataFrame:
        """The rows of a layer whose envelope meets at least one of ``boxes`` (minx, miny, maxx, maxy in the
        store CRS; edges included), each row once, in stored order: what read_layer(bbox=…) returns for each
        box, united; the exact test is :func:`meets_any` in double precision. The GeoPackage and PostGIS
        stores override it with one query over the spatial index, however many boxes; this fallback reads
        the layer and tests every row."""
        boxes = [b for b in (validate_bbox(b) for b in boxes) if b is not None]
        frame = self.read_layer(name, columns=columns, limit=None if boxes else 0)
        keep = meets_any(np.asarray(frame.geometry.values), boxes)
        return frame[keep].reset_index(drop=True)

    def read_attributes(self, name: str, columns: list[str], where: Where | None = None) -> pd.DataFrame:
        """Attribute columns of a layer without its geometry, rows in stored order (a planning read: the
        backends override it so that no geometry is decoded)."""
        frame = self.read_layer(name, columns=columns, where=where)
        return pd.DataFrame(frame.drop(columns=frame.geometry.name))

    @abstractmethod
    def count(self, name: str, bbox: BBox | None = None, where: Where | None = None) -> int:
        """Number of rows read_layer would return without limit/offset."""

    @abstractmethod
    def bounds(self, name: str) -> BBox | None:
        """(minx, miny, maxx, maxy) of a layer in the store CRS; None if it has no geometry."""

    @abstractmethod
    def schema(self, name: str) -> dict[str, str]:
        """Attribute columns of a layer or table, in order, mapped to their kind (see KINDS)."""

    @abstractmethod
    def geometry_type(self, name: str) -> str:
        """Stored geometry type of a layer: MultiPolygon, Point, MultiLineString, Geometry …"""

    @abstractmethod
    def write_layers(self, layers: Mapping[str, gpd.GeoDataFrame], records: list[LoadRecord],
                     meta: Mapping[str, str] | None = None, findings: list[Finding] | None = None,
                     tables: Mapping[str, pd.DataFrame] | None = None) -> None:
        """Replace the given layers (and append their load records and findings, update meta) atomically;
        ``tables``: plain tables replaced in the same write (an analysis run's row beside its layers).

        On any failure, or interruption, the store is left exactly as before and readable.
        """

    def staged_layers(self, meta: Mapping[str, str]) -> LayerStaging:
        """A write of layers one at a time, published together::

            with store.staged_layers(meta) as staging:
                staging.stage("dltb", dltb)          # the caller may let dltb go now
                staging.stage("dltb_prev", prev)
                staging.publish(records, findings)   # the one atomic write

        Until publish() the store is as it was; leaving the block without it (an exception) leaves it so.
        This default keeps the staged layers and writes them with write_layers at publish; PostGIS writes
        each into a table of its own as it is staged, so the caller holds one layer at a time, and publish
        only swaps them in (layers/store/postgis.py)."""
        return LayerStaging(self, meta)

    def join_staging(self, meta: Mapping[str, str], stage_id: str) -> LayerStaging:
        """Stage layers into the staging ``stage_id`` that another process holds open and will publish (a
        county whose layers load on several dask workers): ``stage`` as usual, then ``hand_over()`` the stage
        tables, which the owner ``adopt``s before its publish. Only a store that writes staged layers at once
        (PostGIS) can: the default keeps them in the process that staged them."""
        raise StoreError(f"{self.url} keeps staged layers in the process that stages them; loading a county's "
                         "layers on several workers needs a PostGIS store (postgresql://…)")

    def load_records(self, layer: str | None = None) -> pd.DataFrame:
        """All load records (history), newest last; optionally for one layer. field_mapping is a dict."""
        return records_frame(self._history(LOAD_TABLE, LOAD_COLUMNS, layer=layer))

    def findings(self, layer: str | None = None, load_id: str | None = None) -> pd.DataFrame:
        """Stored 入库质检 findings (history), newest last; ids is a list."""
        return findings_frame(self._history(FINDINGS_TABLE, FINDING_COLUMNS, layer=layer, load_id=load_id))

    @abstractmethod
    def _history(self, table: str, columns: list[str], **equal) -> list[dict]:
        """Rows (dicts of ``columns``) of a history table whose columns equal the non-None keyword arguments,
        oldest first (see history_filter); [] while the table does not exist."""

    # --- plain tables ----------------------------------------------------------------------------
    @abstractmethod
    def table_names(self) -> list[str]:
        """Names of the plain (non-spatial) tables written with write_tables (sorted)."""

    @abstractmethod
    def read_table(self, name: str, columns: list[str] | None = None, where: Where | None = None) -> pd.DataFrame:
        """Read a non-spatial table, rows in stored order. Raises NotFoundError if absent."""

    @abstractmethod
    def write_tables(self, tables: Mapping[str, pd.DataFrame]) -> None:
        """Replace the given non-spatial tables atomically."""

    def close(self) -> None:  # pragma: no cover - trivial default
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class LayerStaging:
    """Layers staged for one atomic write (see Store.staged_layers): kept here, written at publish."""

    def __init__(self, store: Store, meta: Mapping[str, str]):
        self.store, self.meta = store, dict(meta)
        self.layers: dict[str, gpd.GeoDataFrame] = {}
        self.published = False
        self.id = ""  # a staging other processes can join (Store.join_staging) has one

    def stage(self, name: str, gdf: gpd.GeoDataFrame) -> None:
        check_name(name)
        if name in self.layers:
            raise StoreError(f"layer {name!r} is staged twice in one write to {self.store.url}")
        self.layers[name] = gdf

    def publish(self, records: list[LoadRecord], findings: list[Finding] | None = None) -> None:
        self.store.write_layers(self.layers, records, meta=self.meta, findings=findings)
        self.published = True
        self.layers = {}

    def hand_over(self) -> list[tuple[str, str, dict]]:
        """A joined staging's stage tables, for its owner to ``adopt`` (Store.join_staging)."""
        raise StoreError(f"{self.store.url}: only a joined staging hands its layers over")

    def adopt(self, entries: list[tuple[str, str, dict]]) -> None:
        """Take in the stage tables joined stagings handed over, to publish them with ours."""
        raise StoreError(f"{self.store.url} keeps staged layers in the process that stages them; it cannot adopt "
                         "layers staged elsewhere")

    def close(self) -> None:
        self.layers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- shared conversions ------------------------------------------------------------------------------

def check_region_meta(url: str, current: Mapping[str, str], region_code: str | None, epsg: int | str | None) -> None:
    """StoreError if a store's meta names another region or another EPSG than the ones given."""
    held = current.get("region_code")
    if held and region_code and held != str(region_code):
        raise StoreError(
            f"store {url} holds region {held} ({current.get('region_name', '?')}), not {region_code}; "
            "ingest each region into its own store (another .gpkg file or another ?schema=)")
    held_epsg = current.get("epsg")
    if held_epsg and epsg and int(held_epsg) != int(epsg):
        raise StoreError(
            f"store {url} keeps geometry in EPSG:{held_epsg}, not EPSG:{epsg}; set crs: EPSG:{held_epsg} in the "
            "manifest or use a new store")


def resolve_store_epsg(current: Mapping[str, str], meta: Mapping[str, str], layers, url: str) -> int:
    """The EPSG a write uses: the store's, else the one given in meta, else the layers' common CRS."""
    check_region_meta(url, current, meta.get("region_code"), meta.get("epsg"))
    held = current.get("epsg") or meta.get("epsg")
    if held:
        return int(held)
    found = {gdf.crs.to_epsg() for gdf in layers.values() if getattr(gdf, "crs", None) is not None}
    if len(found) == 1 and None not in found:
        return int(found.pop())
    raise StoreError(f"new store {url}: give meta epsg (the region's CGCS2000 GK zone) with the first write")


def check_name(name: str, what: str = "layer") -> str:
    """Layer / table / column names: letters, digits, underscore, ≤ 63 characters, not reserved."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise StoreError(f"{what} name {name!r} is not usable: use letters, digits and _ (≤ 63 characters)")
    if name.lower() in INTERNAL_TABLES or name.lower().startswith(("_yzt", "rtree_", "gpkg_", "sqlite_")):
        raise StoreError(f"{what} name {name!r} is reserved for the store itself; choose another name")
    return name


def quote_ident(name: str) -> str:
    """An SQL identifier in double quotes, as SQLite and PostgreSQL both read it."""
    return '"' + name.replace('"', '""') + '"'


def prepare_tables(tables: Mapping[str, pd.DataFrame]) -> dict[str, pa.Table]:
    """The plain tables of a write_tables call as Arrow tables, checked before any lock is taken."""
    prepared = {}
    for name, frame in tables.items():
        check_name(name, "table")
        if isinstance(frame, gpd.GeoDataFrame):
            raise StoreError(f"table {name!r} is a GeoDataFrame: write spatial data with write_layers")
        prepared[name] = attributes_to_arrow(frame)
    return prepared


def refuse_kind_clash(url: str, writing: str, names, held) -> None:
    """StoreError if a write of ``writing`` ("layer" / "table") names something the store holds as the other kind.

    ``held``: the names of the other kind already in the store (its plain tables when writing layers).
    """
    clash = sorted(set(names) & set(held))
    if not clash:
        return
    if writing == "layer":
        raise StoreError(f"{clash} are plain tables in {url}; a layer cannot replace a table")
    raise StoreError(f"{clash} are spatial layers in {url}; a table cannot replace a layer")


def write_failed(what: str, names, url: str, detail) -> StoreError:
    """The error of a write that failed and was rolled back: ``writing layers [...] to URL failed, …``."""
    return StoreError(f"writing {what} {sorted(names)} to {url} failed, the store is unchanged: {detail}")


def history_filter(mark: str, **equal) -> tuple[str, list]:
    """``" WHERE a = ? AND b = ?"`` and its parameters for the keyword arguments that are not None.

    For the history tables (load records, findings); ``mark`` is the backend's placeholder (``?`` / ``%s``).
    """
    conds, params = [], []
    for column, value in equal.items():
        if value is not None:
            conds.append(f"{column} = {mark}")
            params.append(value)
    return (" WHERE " + " AND ".join(conds) if conds else ""), params


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def to_json(value) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _object_column(name: str, values: pd.Series) -> pa.Array:
    """An object column: JSON text if it holds lists/dicts, else what its values are (str, date, bool …)."""
    if pd.api.types.infer_dtype(values, skipna=True) == "string":  # the common case, decided in C: all str
        return pa.array(values, pa.string(), from_pandas=True)
    present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if any(isinstance(v, (list, dict, tuple, set, np.ndarray)) for v in present):
        return pa.array([None if (v is None or (isinstance(v, float) and np.isnan(v)))
                         else to_json(sorted(v) if isinstance(v, set) else v) for v in values], pa.string())
    kinds = {type(v) for v in present}
    if kinds and all(issubclass(k, dt.date) and not issubclass(k, dt.datetime) for k in kinds):
        return pa.array([v if isinstance(v, dt.date) else None for v in values], pa.date32())
    if kinds and all(issubclass(k, str) for k in kinds):
        return pa.array([v if isinstance(v, str) else None for v in values], pa.string())
    try:
        return pa.array(values.astype(object).where(values.notna(), None).tolist(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise StoreError(f"column {name!r} mixes value types ({', '.join(sorted(k.__name__ for k in kinds))}) "
                         f"and cannot be stored; convert it to one type first ({exc})") from None


def attributes_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Attribute columns (no geometry) as an Arrow table with the store's column types."""
    arrays, fields = [], []
    for name in frame.columns:
        check_name(str(name), "column")
        if str(name).lower() in RESERVED:
            raise StoreError(f"column {name!r} is reserved by the store (fid, geom); rename it")
        series = frame[name]
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            series = series.astype(object).where(series.notna(), None)
            dtype = series.dtype
        if dtype == np.dtype(object):
            arr = _object_column(name, series)
        else:
            try:
                arr = pa.Array.from_pandas(series)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise StoreError(f"column {name!r} ({dtype}) cannot be stored: {exc}") from None
        arr = _normalise_arrow(name, arr)
        arrays.append(arr)
        fields.append(pa.field(str(name), arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields)) if arrays else \
        pa.table({"__n": pa.nulls(len(frame))}).drop(["__n"])


def _normalise_arrow(name: str, arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return arr.cast(pa.string())
    if pa.types.is_dictionary(t):
        return _normalise_arrow(name, arr.cast(t.value_type))
    if pa.types.is_null(t):
        return arr.cast(pa.string())
    if pa.types.is_integer(t):
        if pa.types.is_uint64(t):
            return arr.cast(pa.int64())  # raises if out of range
        return arr.cast(pa.int64())
    if pa.types.is_floating(t):
        return arr.cast(pa.float64())
    if pa.types.is_decimal(t):
        return arr.cast(pa.float64())
    if pa.types.is_timestamp(t):
        if t.tz is None:
            arr = pc.assume_timezone(arr, "UTC")
        return arr.cast(pa.timestamp("ms", tz="UTC"))
    if pa.types.is_date(t):
        return arr.cast(pa.date32())
    if pa.types.is_boolean(t) or t == pa.string():
        return arr
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t):
        return pa.array([to_json(v) for v in arr.to_pylist()], pa.string())
    raise StoreError(f"column {name!r} has type {t} which the store does not keep; "
                     "convert it to text, number, boolean, date or timestamp")


def kind_of_arrow(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_timestamp(t):
        return "datetime"
    return "str"


def geometry_kind(geoms: np.ndarray) -> tuple[str, bool]:
    """(stored geometry type, has_z) for an array of shapely geometries (None / empty ignored)."""
    present = geoms[~shapely.is_missing(geoms)]
    present = present[~shapely.is_empty(present)]
    if len(present) == 0:
        return "Geometry", False
    has_z = shapely.has_z(present)
    if has_z.any() and not has_z.all():
        raise StoreError("the layer mixes 2D and 3D geometries; drop Z with shapely.force_2d or give all a Z")
    ids = set(np.unique(shapely.get_type_id(present)).tolist())
    if ids <= {3, 6}:
        kind = "MultiPolygon"
    elif ids == {0}:
        kind = "Point"
    elif ids <= {0, 4}:
        kind = "MultiPoint"
    elif ids <= {1, 5}:
        kind = "MultiLineString"
    else:
        kind = "Geometry"
    return kind, bool(has_z.any())


def promote(geoms: np.ndarray, kind: str) -> np.ndarray:
    """Single-part rows of a multi layer become one-part multis (Polygon → MultiPolygon …)."""
    single = {"MultiPolygon": 3, "MultiPoint": 0, "MultiLineString": 1}.get(kind)
    if single is None:
        return geoms
    out = geoms.copy()
    sel = np.flatnonzero(shapely.get_type_id(geoms) == single)
    sel = sel[~shapely.is_empty(geoms[sel])]
    if len(sel):
        make = {3: shapely.multipolygons, 0: shapely.multipoints, 1: shapely.multilinestrings}[single]
        out[sel] = make(geoms[sel], indices=np.arange(len(sel)))
    empty = np.flatnonzero(shapely.get_type_id(geoms) == single)
    empty = empty[shapely.is_empty(geoms[empty])]
    if len(empty):
        out[empty] = shapely.from_wkt(f"{kind.upper()} EMPTY")
    return out


def prepare_layer(name: str, gdf: gpd.GeoDataFrame, epsg: int) -> tuple[pa.Table, np.ndarray, str, bool]:
    """Check a layer against the store CRS and split it into (attributes, geometries, type, has_z)."""
    check_name(name)
    if not isinstance(gdf, gpd.GeoDataFrame) or gdf.geometry.name not in gdf.columns:
        raise StoreError(f"layer {name!r} must be a GeoDataFrame with an active geometry column")
    if gdf.crs is None:
        raise CRSError(f"layer {name!r} has no CRS; the store keeps EPSG:{epsg}: set_crs / to_crs it first")
    layer_epsg = gdf.crs.to_epsg()
    if layer_epsg != epsg:
        raise CRSError(f"layer {name!r} is in {gdf.crs.to_string()}, the store keeps EPSG:{epsg}; "
                       f"transform it with to_crs({epsg}) first")
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    kind, has_z = geometry_kind(geoms)
    geoms = promote(geoms, kind)
    attrs = attributes_to_arrow(pd.DataFrame(gdf.drop(columns=[gdf.geometry.name])))
    return attrs, geoms, kind, has_z


def frame_from_arrow(table: pa.Table, geometry: str | pa.Array | None, epsg: int | None,
                     decode_geometry=None) -> pd.DataFrame | gpd.GeoDataFrame:
    """Arrow table (attributes [+ WKB geometry column]) → the store's pandas types (see module docstring)."""
    geom_values: Any = None
    if isinstance(geometry, str):
        geom_values = table.column(geometry)
        table = table.drop([geometry])
    columns = {}
    for name, col in zip(table.column_names, table.columns):
        t = col.type
        nulls = col.null_count
        if pa.types.is_integer(t):
            series = pd.Series(col.to_numpy(zero_copy_only=False), dtype="int64") if nulls == 0 else \
                pd.Series(pd.array(col.to_pylist(), dtype="Int64"))
        elif pa.types.is_boolean(t):
            series = pd.Series(col.to_numpy(zero_copy_only=False), dtype=bool) if nulls == 0 else \
                pd.Series(pd.array(col.to_pylist(), dtype="boolean"))
        elif pa.types.is_timestamp(t):
            col = col.cast(pa.timestamp("ms", tz="UTC"))
            series = col.to_pandas()
        else:
            series = col.to_pandas()
        columns[name] = series.reset_index(drop=True)
    frame = pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))
    if geom_values is None and geometry is None:
        return frame
    if geom_values is None:
        geom_values = geometry
    wkb = geom_values.to_numpy(zero_copy_only=False) if hasattr(geom_values, "to_numpy") else geom_values
    geoms = decode_geometry(wkb) if decode_geometry else shapely.from_wkb(wkb)
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, crs=epsg), crs=epsg)


def records_frame(rows: list[dict]) -> pd.DataFrame:
    """Load records as a DataFrame with LoadRecord's columns; field_mapping parsed back to a dict."""
    frame = pd.DataFrame(rows, columns=LOAD_COLUMNS)
    if len(frame):
        frame["field_mapping"] = [json.loads(v) if isinstance(v, str) else (v or {})
                                  for v in frame["field_mapping"]]
    return frame


def record_row(record: LoadRecord) -> dict:
    row = record.to_dict()
    row["field_mapping"] = to_json(row.get("field_mapping") or {})
    return row


FINDING_COLUMNS = ["load_id", "layer", "check", "severity", "message", "ids", "count"]
LOAD_COLUMNS = list(LoadRecord.__dataclass_fields__)  # columns of the load records table, in order


def finding_row(finding: Finding, load_id: str) -> dict:
    return {"load_id": load_id, "layer": finding.layer, "check": finding.check, "severity": finding.severity,
            "message": finding.message, "ids": to_json(list(finding.ids or [])), "count": int(finding.count)}


def findings_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=FINDING_COLUMNS)
    if len(frame):
        frame["ids"] = [json.loads(v) if isinstance(v, str) else list(v) if v is not None else []
                        for v in frame["ids"]]
    return frame


def validate_paging(limit: int | None, offset: int) -> None:
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 0):
        raise StoreError(f"limit {limit!r} must be a non-negative integer")
    if not isinstance(offset, (int, np.integer)) or offset < 0:
        raise StoreError(f"offset {offset!r} must be a non-negative integer")


def meets_any(geoms: np.ndarray, boxes: list[BBox]) -> np.ndarray:
    """Which geometries have an envelope that meets one of ``boxes`` (edges included; missing and empty
    geometries never do)."""
    import shapely

    out = np.zeros(len(geoms), dtype=bool)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not boxes or not present.any():
        return out
    rows = np.flatnonzero(present)
    env = shapely.bounds(geoms[rows])
    tree = shapely.STRtree(shapely.box(*np.asarray(boxes, dtype=float).T))
    hit = tree.query(shapely.box(env[:, 0], env[:, 1], env[:, 2], env[:, 3]))[0]
    out[rows[np.unique(hit)]] = True
    return out


def near_values(boxes: list[BBox]) -> str:
    """The boxes as an SQL VALUES list of (x0, y0, x1, y1)."""
    return ", ".join(f"({a!r}, {b!r}, {c!r}, {d!r})" for a, b, c, d in boxes)


def validate_bbox(bbox) -> BBox | None:
    if bbox is None:
        return None
    try:
        minx, miny, maxx, maxy = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise StoreError(f"bbox {bbox!r} must be (minx, miny, maxx, maxy) numbers in the store CRS") from None
    if not (minx <= maxx and miny <= maxy) or not np.isfinite([minx, miny, maxx, maxy]).all():
        raise StoreError(f"bbox {bbox!r} must be finite with minx ≤ maxx and miny ≤ maxy")
    return minx, miny, maxx, maxy


def where_sql(where: Where, dialect: str) -> str:
    """SQL text of a ``where`` argument: a filter compiled with inline literals, SQL text as given."""
    if isinstance(where, str):
        return where
    from .sql import compile_filter

    return compile_filter(where, dialect)

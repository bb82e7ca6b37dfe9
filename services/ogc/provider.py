"""Our pygeoapi feature provider: a layer of a yizhangtu store (GeoPackage or PostGIS) as a collection.

Registered in the generated configuration by its dotted path (``name: services.ogc.provider.StoreProvider``,
``data``: the store, ``table``: the layer; config.py), as pygeoapi's plugin loader intends. pygeoapi's stock
providers fall short here: OGR, SQLiteGPKG and GeoJSON ignore ``filter=`` and return everything; SQLiteGPKG
needs SQLite extension loading, which this Python lacks; and pygeoapi carries a bbox between CRSs by its two
corners. This provider:

- pages through the store's paged reader (layers.store.open_reader): stable order, an exact count
  (numberMatched), selection by bbox on the *geometry*, in the bbox's own CRS (crs.box_in_store);
- turns CQL2 filters into store filters (cql.py) and refuses what it cannot evaluate (HTTP 400);
- writes geometries in the requested ``crs`` and that CRS's axis order (crs.OutputCRS).

Errors: every YztError becomes a pygeoapi ProviderGenericError carrying the status and code of the one table
in services/errors.py, so pygeoapi answers it as /api would (never its generic 500 "query error").
"""

from __future__ import annotations

import threading

from pygeoapi.provider.base import BaseProvider, ProviderGenericError

from layers.errors import NotFoundError, YztError
from layers.store import open_reader
from layers.store.pages import PagedReader
from layers.store.query import Page, PageRequest, all_of

from ..errors import RequestError, status_of
from . import cql
from .crs import box_in_store, crs_key, epsg_uri, output_crs
from .features import to_features
from .upstream import RequestBBox

JSON_TYPES = {"str": ("string", None), "int": ("integer", None), "float": ("number", None),
              "bool": ("boolean", None), "date": ("string", "date"), "datetime": ("string", "date-time")}

_READERS: dict[str, PagedReader] = {}
_READERS_LOCK = threading.Lock()


def reader_for(url: str) -> PagedReader:
    """One paged reader per store per process (it keeps its connections between requests)."""
    key = str(url)
    reader = _READERS.get(key)
    if reader is None:
        with _READERS_LOCK:
            reader = _READERS.get(key)
            if reader is None:
                reader = _READERS[key] = open_reader(key)
    return reader


def drop_reader(url: str) -> None:
    with _READERS_LOCK:
        reader = _READERS.pop(str(url), None)
    if reader is not None:
        reader.close()


def fields_of(columns: dict[str, str]) -> dict[str, dict]:
    out = {}
    for name, kind in columns.items():
        t, fmt = JSON_TYPES.get(kind, ("string", None))
        out[name] = {"type": t, **({"format": fmt} if fmt else {})}
    return out


def provider_error(exc: YztError) -> ProviderGenericError:
    """``exc`` as pygeoapi's provider error, with the HTTP status and code of services/errors.py's table."""
    status, code = status_of(exc)
    error = ProviderGenericError(user_msg=str(exc))
    error.http_status_code = status
    error.ogc_exception_code = code
    return error


class StoreProvider(BaseProvider):
    """A layer of a yizhangtu store as an OGC API Features collection."""

    def __init__(self, provider_def: dict):
        super().__init__(provider_def)
        self.table = provider_def["table"]
        self.reader = reader_for(self.data)
        try:
            self.info = self.reader.info(self.table)
        except NotFoundError:
            raise provider_error(NotFoundError(f"layer {self.table!r} is no longer in the store; reload the "
                                               "collections list")) from None
        self._fields = fields_of(self.info.columns)

    def get_fields(self) -> dict:
        return self._fields

    # --- query helpers ---------------------------------------------------------------------------------
    def _selection(self, bbox):
        if not bbox:
            return None
        epsg = self.reader.storage_epsg
        if isinstance(bbox, RequestBBox):
            values, src = bbox.source
            key = crs_key(src)
        else:  # a bbox pygeoapi already carried into the storage CRS (its axis order)
            values, key = list(bbox), epsg
        return box_in_store([float(v) for v in values], key, epsg)

    def _where(self, filterq, properties):
        out = []
        if filterq is not None:
            out.append(cql.translate(filterq, self.info.columns, self.reader.storage_epsg))
        for name, value in properties or []:
            if name in self.info.columns:
                out.append(cql.property_equals(name, str(value), self.info.columns))
        return all_of(out)

    def _out(self, crs_transform_spec):
        uri = crs_transform_spec.target_crs_uri if crs_transform_spec is not None \
            else epsg_uri(self.reader.storage_epsg)  # no transform: the storage CRS was requested
        return output_crs(uri, self.reader.storage_epsg)

    def _columns(self, select_properties) -> list[str]:
        if select_properties:
            return [c for c in self.info.columns if c in set(select_properties)]
        return list(self.info.columns)

    # --- pygeoapi interface ----------------------------------------------------------------------------
    def query(self, offset=0, limit=10, resulttype="results", bbox=None, datetime_=None, properties=None,
              sortby=None, select_properties=None, skip_geometry=False, q=None, filterq=None,
              crs_transform_spec=None, **kwargs):
        try:
            if datetime_ is not None:
                raise RequestError(f"collection {self.table!r} has no temporal property: drop the datetime "
                                   "parameter (filter on a date property)")
            if q is not None:
                raise RequestError("free-text search (q) is not supported; use filter")
            hits = resulttype == "hits"
            request = PageRequest(
                selection=self._selection(bbox), where=self._where(filterq, properties),
                sortby=[(s["property"], s.get("order", "+")) for s in sortby or []],
                limit=0 if hits else int(limit), offset=int(offset), columns=self._columns(select_properties),
                with_geometry=not skip_geometry, count=True)
            out = self._out(crs_transform_spec)
            page = self.reader.page(self.table, request)
        except YztError as exc:
            raise provider_error(exc) from exc
        features = [] if hits else to_features(page, self.info.columns, out, not skip_geometry)
        return {"type": "FeatureCollection", "features": features, "numberMatched": page.matched,
                "numberReturned": len(features)}

    def get(self, identifier, crs_transform_spec=None, **kwargs):
        try:
            text = str(identifier)
            try:
                row_id = int(text) if len(text) <= 20 else None
            except ValueError:
                row_id = None
            if row_id is None or not -(2**63) <= row_id < 2**63:
                shown = text if len(text) <= 40 else text[:37] + "…"
                raise NotFoundError(f"feature {shown!r} not found: ids are integers 1…{self.info.total}") from None
            out = self._out(crs_transform_spec)
            columns = list(self.info.columns)
            row = self.reader.get(self.table, row_id, columns, True)
            if row is None:
                raise NotFoundError(f"feature {row_id} is not in collection {self.table!r}")
        except YztError as exc:
            raise provider_error(exc) from exc
        page = Page([row_id], [row[0]], [row[1]], columns, None)
        return to_features(page, self.info.columns, out, True)[0]

    def __repr__(self):
        return f"<StoreProvider> {self.data} {self.table}"

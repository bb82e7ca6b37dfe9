"""The pygeoapi feature provider over our stores (GeoPackage and PostGIS).

pygeoapi's stock providers fall short here: OGR, SQLiteGPKG and GeoJSON ignore ``filter=`` and return
everything; SQLiteGPKG needs SQLite extension loading, which this Python lacks; and pygeoapi assumes a bbox
can be carried between CRSs by its two corners. This provider:

- pages by the store's ``fid`` (stable order), counts exactly (numberMatched), selects by bbox on the
  *geometry* (R-tree / GiST, then an exact test), in the bbox's own CRS (crs.QueryShape);
- translates CQL2 filters to SQL for either backend (cql.py) and refuses what it cannot evaluate (HTTP 400);
- writes geometries in the requested ``crs`` and that CRS's axis order (crs.OutputCRS).

Configured by services/ogc/config.py: ``name: services.ogc.provider.StoreProvider``, ``data``: the store URL
or path, ``table``: the layer name, ``storage_crs``: the store's GK zone URI.
"""

from __future__ import annotations

import logging

from pygeoapi.provider.base import (BaseProvider, ProviderInvalidQueryError, ProviderItemNotFoundError,
                                    ProviderQueryError)

from layers.errors import YztError

from . import cql
from .crs import CRSParamError, RequestBBox, box_in_store, crs_key, epsg_uri, output_crs
from .engine import engine_for, to_features

LOGGER = logging.getLogger(__name__)

JSON_TYPES = {"str": ("string", None), "int": ("integer", None), "float": ("number", None),
              "bool": ("boolean", None), "date": ("string", "date"), "datetime": ("string", "date-time")}


def fields_of(columns: dict[str, str]) -> dict[str, dict]:
    out = {}
    for name, kind in columns.items():
        t, fmt = JSON_TYPES.get(kind, ("string", None))
        out[name] = {"type": t, **({"format": fmt} if fmt else {})}
    return out


class StoreProvider(BaseProvider):
    """A layer of a yizhangtu store as an OGC API Features collection."""

    def __init__(self, provider_def: dict):
        super().__init__(provider_def)
        self.table = provider_def["table"]
        self.id_field = provider_def.get("id_field", "fid")
        self.engine = engine_for(self.data)
        try:
            self.info = self.engine.layers[self.table]
        except KeyError:
            raise ProviderQueryError(user_msg=f"layer {self.table!r} is no longer in the store; reload the "
                                              "collections list") from None
        self._fields = fields_of(self.info.columns)

    def get_fields(self) -> dict:
        return self._fields

    # --- query helpers ---------------------------------------------------------------------------------
    def _shape(self, bbox):
        if not bbox:
            return None
        epsg = self.engine.storage_epsg
        if isinstance(bbox, RequestBBox):
            values, src = bbox.source
            key = crs_key(src)
        else:  # a bbox pygeoapi already carried into the storage CRS (its axis order)
            values, key = list(bbox), epsg
        return box_in_store([float(v) for v in values], key, epsg)

    def _filters(self, filterq, properties) -> list[cql.SqlFilter]:
        out = []
        if filterq is not None:
            out.append(cql.translate(filterq, self.info.columns, "geom", self.engine.dialect,
                                     self.engine.storage_epsg))
        for name, value in properties or []:
            if name in self.info.columns:
                out.append(cql.property_equals(name, str(value), self.info.columns, self.engine.dialect))
        return out

    def _out(self, crs_transform_spec):
        uri = crs_transform_spec.target_crs_uri if crs_transform_spec is not None \
            else epsg_uri(self.engine.storage_epsg)  # no transform: the storage CRS was requested
        return output_crs(uri, self.engine.storage_epsg)

    def _columns(self, select_properties) -> list[str]:
        if select_properties:
            return [c for c in self.info.columns if c in set(select_properties)]
        return list(self.info.columns)

    # --- pygeoapi interface ----------------------------------------------------------------------------
    def query(self, offset=0, limit=10, resulttype="results", bbox=[], datetime_=None, properties=[],
              sortby=[], select_properties=[], skip_geometry=False, q=None, filterq=None,
              crs_transform_spec=None, **kwargs):
        if datetime_ is not None:
            raise ProviderInvalidQueryError(user_msg=f"collection {self.table!r} has no temporal property: "
                                                     "drop the datetime parameter (filter on a date property)")
        if q is not None:
            raise ProviderInvalidQueryError(user_msg="free-text search (q) is not supported; use filter")
        try:
            shape = self._shape(bbox)
            filters = self._filters(filterq, properties)
            out = self._out(crs_transform_spec)
        except (cql.FilterError, CRSParamError) as exc:
            raise ProviderInvalidQueryError(user_msg=str(exc)) from None
        sort = [(s["property"], s.get("order", "+")) for s in sortby or []]
        hits = resulttype == "hits"
        try:
            page = self.engine.page(self.info, shape=shape, filters=filters, sortby=sort,
                                    limit=0 if hits else int(limit), offset=int(offset),
                                    columns=self._columns(select_properties), with_geometry=not skip_geometry,
                                    count=True)
        except YztError as exc:
            raise ProviderQueryError(user_msg=str(exc)) from None
        features = [] if hits else to_features(page, self.info.columns, out, not skip_geometry)
        return {"type": "FeatureCollection", "features": features, "numberMatched": page.matched,
                "numberReturned": len(features)}

    def get(self, identifier, crs_transform_spec=None, **kwargs):
        try:
            fid = int(str(identifier))
        except ValueError:
            raise ProviderItemNotFoundError(user_msg=f"feature {identifier!r} not found: ids are integers") from None
        try:
            out = self._out(crs_transform_spec)
        except CRSParamError as exc:
            raise ProviderInvalidQueryError(user_msg=str(exc)) from None
        columns = list(self.info.columns)
        row = self.engine.get(self.info, fid, columns, True)
        if row is None:
            raise ProviderItemNotFoundError(user_msg=f"feature {fid} is not in collection {self.table!r}")
        from .engine import Page

        page = Page([fid], [row[0]], [row[1]], columns, None)
        return to_features(page, self.info.columns, out, True)[0]

    def __repr__(self):
        return f"<StoreProvider> {self.data} {self.table}"

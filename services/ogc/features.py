"""A page of a layer (layers.store.query.Page) as GeoJSON features: attribute values as JSON values, geometry
in the requested CRS and that CRS's axis order."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import shapely

from layers.store.query import Page

from .crs import OutputCRS


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
        u = v.astimezone(dt.UTC)
        return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"
    return v


def geojson_geometries(geoms: np.ndarray) -> list[dict]:
    """GeoJSON geometry dicts of an array of shapely geometries, built from one ragged coordinate array (the
    same coordinates, to the last digit, as ``shapely.to_geojson``)."""
    if len(geoms) and len(np.unique(shapely.get_type_id(geoms))) > 1:
        # mixed types in one page (a "Geometry" layer): to_ragged_array would also turn Points into MultiPoints
        return [json.loads(t) for t in shapely.to_geojson(geoms)]
    try:
        kind, coords, offsets = shapely.to_ragged_array(geoms)
    except (ValueError, NotImplementedError):
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


def to_features(page: Page, kinds: dict[str, str], out: OutputCRS | None, with_geometry: bool) -> list[dict]:
    """GeoJSON features (dicts) of a page; geometry written in ``out`` (its axis order)."""
    geo: list = [None] * len(page.ids)
    if with_geometry and page.ids:
        present = [i for i, g in enumerate(page.geoms) if g is not None]
        if present:
            geoms = shapely.from_wkb([page.geoms[i] for i in present])
            if out is not None:
                geoms = out.apply(geoms)
            for i, g in zip(present, geojson_geometries(geoms)):
                geo[i] = g
    cols = page.columns
    # columns whose driver values are not already JSON values: booleans (SQLite gives 0/1), floats (NaN),
    # dates and timestamps (PostGIS gives date / datetime objects)
    fix = [(c, kinds[c]) for c in cols if kinds[c] in ("bool", "float", "date", "datetime")]
    feats = []
    for i, row_id in enumerate(page.ids):
        props = dict(zip(cols, page.rows[i]))
        for c, k in fix:
            v = props[c]
            if v is not None and (k != "float" or v != v):
                props[c] = _value(v, k)
        feats.append({"type": "Feature", "id": row_id, "geometry": geo[i], "properties": props})
    return feats

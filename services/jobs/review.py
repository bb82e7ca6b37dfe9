"""合规性审查 of a proposed site: a GeoJSON polygon → its overlap with 永久基本农田, 生态保护红线,
城镇开发边界, the planning zones and the current land use, with areas and a pass / fail per rule
(analysis/review.py; rules in analysis/review.yaml).

Input: a GeoJSON Geometry (Polygon / MultiPolygon), a Feature, or a FeatureCollection whose polygons form the site.
Coordinates are CRS84 (lon, lat) unless ``?crs=`` (or a legacy GeoJSON ``"crs"`` member) names another CRS:

- ``OGC:CRS84`` / ``CRS84`` / ``http://www.opengis.net/def/crs/OGC/1.3/CRS84`` — lon, lat (default);
- ``EPSG:4490`` (CGCS2000) and ``EPSG:4326`` (WGS 84) — **lat, lon**, the axis order EPSG defines (OGC API
  Part 2); CGCS2000 and WGS 84 are taken as equal (centimetres, domain.md §5);
- ``EPSG:4491``–``EPSG:4554`` — CGCS2000 Gauss-Krüger zones; EPSG defines northing, easting, but both orders are
  accepted because they cannot be confused in China (northing 2–6 million m, easting < 1 million or zone-prefixed);
  the answer says which was read.

Anything else (unknown, or another datum such as Xian 1980 / Beijing 1954 / GCJ-02, which need a transformation
first) is refused with 400 naming the CRS. So are malformed GeoJSON, invalid rings and sites outside the region.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError as ProjCRSError

from analysis.review import LAYERS, load_review_rules, review_site
from analysis.rules import load_rules
from layers.errors import CRSError, GeometryError
from layers.store import Store
from layers.store.query import as_box

READ_COLUMNS = {"yjjbnt": ["BSM", "YJJBNTTBBH"], "stbhhx": ["BSM"], "czkfbj": ["BSM"],
                "ghfq": ["BSM", "GHFQDM", "GHFQMC"], "dltb": ["BSM", "DLBM", "KCXS"],
                "xzq": ["XZQDM", "XZQMC", "XZQJB"]}
CRS84_NAMES = {"crs84", "ogc:crs84", "http://www.opengis.net/def/crs/ogc/1.3/crs84",
               "urn:ogc:def:crs:ogc:1.3:crs84", "urn:ogc:def:crs:ogc::crs84"}
GEOGRAPHIC = (4490, 4326)
GK = range(4491, 4555)  # CGCS2000 Gauss-Krüger: 6° zones 4491–4512, 3° zones 4513–4554
SUPPORTED = "OGC:CRS84 (lon, lat; default), EPSG:4490 or EPSG:4326 (lat, lon), EPSG:4491–4554 (CGCS2000 Gauss-Krüger)"
MAX_VERTICES = 100_000


def parse_crs(raw: str | None) -> tuple[str, int | None]:
    """('CRS84', None) or ('EPSG:n', n) for a supported CRS; CRSError naming the value otherwise."""
    if raw is None or str(raw).strip().lower() in CRS84_NAMES:
        return "OGC:CRS84", None
    text = str(raw).strip()
    m = re.fullmatch(r"(?i)(?:epsg:|urn:ogc:def:crs:epsg:(?:[\d.]*):|https?://www\.opengis\.net/def/crs/epsg/[\d.]+/)"
                     r"(\d+)", text)
    if not m:
        raise CRSError(f"crs {text!r} is not a CRS this service reads; give {SUPPORTED}")
    code = int(m.group(1))
    try:
        crs = CRS.from_epsg(code)
    except ProjCRSError:
        raise CRSError(f"crs {text!r}: EPSG:{code} is unknown; give {SUPPORTED}") from None
    if code in GEOGRAPHIC or code in GK:
        return f"EPSG:{code}", code
    datum = crs.datum.name if crs.datum else "?"
    raise CRSError(f"crs EPSG:{code} ({crs.name}, datum {datum}) is not accepted: convert the site to CGCS2000 "
                   f"first (other datums need a local transformation, domain.md §5); give {SUPPORTED}")


@functools.lru_cache(maxsize=32)
def _transformer(source: int, target: int) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


def _xy(geom, code: int | None, target_epsg: int) -> tuple[shapely.Geometry, str]:
    """The site in the store CRS (x = easting), and the axis order that was read."""
    coords = shapely.get_coordinates(geom)
    if code is None:  # CRS84: lon, lat
        lon, lat, order = coords[:, 0], coords[:, 1], "lon,lat"
    elif code in GEOGRAPHIC:  # EPSG order: lat, lon
        lat, lon, order = coords[:, 0], coords[:, 1], "lat,lon"
        if (np.abs(lat) > 90).any():
            raise CRSError(f"coordinates like ({coords[0, 0]:g}, {coords[0, 1]:g}) are not latitude, longitude: "
                           f"EPSG:{code} takes lat, lon (EPSG axis order); for lon, lat use crs=OGC:CRS84")
    else:
        first, second = coords[:, 0], coords[:, 1]
        northing_first = bool(np.median(first) > np.median(second)) if len(first) else True
        # unprefixed eastings are < 1e6 while northings in China exceed 2e6; prefixed eastings are zone × 1e6 +
        # … ≥ 13e6, so a prefixed zone compares the other way round
        if code in range(4491, 4502) or code in range(4513, 4534):
            northing_first = not northing_first
        n, e = (first, second) if northing_first else (second, first)
        order = "northing,easting" if northing_first else "easting,northing"
        tr = _transformer(code, 4490)
        lon, lat = tr.transform(e, n)
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise CRSError(f"coordinates cannot be EPSG:{code} (Gauss-Krüger): they do not transform; check the crs")
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()) or (np.abs(lon) > 180).any() or \
            (np.abs(lat) > 90).any():
        raise GeometryError("coordinates are outside longitude −180…180 / latitude −90…90; check the crs")
    tr = _transformer(4490, target_epsg)
    x, y = tr.transform(lon, lat)
    xy = np.column_stack([x, y])
    return shapely.transform(geom, lambda _: xy), order


def parse_site(doc) -> tuple[shapely.Geometry, str | None]:
    """(shapely Polygon / MultiPolygon, legacy crs name or None) from a GeoJSON document."""
    if not isinstance(doc, dict) or "type" not in doc:
        raise GeometryError("the body must be a GeoJSON object (Polygon, MultiPolygon, Feature or FeatureCollection)")
    legacy = None
    crs = doc.get("crs")
    if isinstance(crs, dict):
        legacy = (crs.get("properties") or {}).get("name")
    kind = doc["type"]
    if kind == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list) or not feats:
            raise GeometryError("the FeatureCollection has no features; send one polygon")
        geoms = [_geometry((f or {}).get("geometry") if isinstance(f, dict) else None) for f in feats]
        site = shapely.union_all(geoms)
    elif kind == "Feature":
        site = _geometry(doc.get("geometry"))
    else:
        site = _geometry(doc)
    if site.geom_type not in ("Polygon", "MultiPolygon"):
        raise GeometryError(f"the site is a {site.geom_type}; the review needs a Polygon or MultiPolygon")
    if site.is_empty:
        raise GeometryError("the site polygon is empty")
    if shapely.get_num_coordinates(site) > MAX_VERTICES:
        raise GeometryError(f"the site has more than {MAX_VERTICES:,} vertices; simplify it")
    return site, legacy


def _geometry(doc):
    if not isinstance(doc, dict) or doc.get("type") not in ("Polygon", "MultiPolygon"):
        got = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
        raise GeometryError(f"expected a GeoJSON Polygon or MultiPolygon geometry, got {got!r}")
    coords = doc.get("coordinates")
    try:
        geom = shapely.geometry.shape(doc)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, shapely.errors.GEOSException) as exc:
        raise GeometryError(f"the {doc['type']} coordinates are malformed ({exc}); each ring is a list of "
                            "[x, y] positions, closed (last = first), at least 4 positions") from None
    c = shapely.get_coordinates(geom)
    if coords is None or len(c) == 0:
        raise GeometryError(f"the {doc['type']} has no coordinates")
    if not np.isfinite(c).all():
        raise GeometryError("the site has non-finite coordinates")
    return geom


class Reviewer:
    """Reviews sites against the layers of one store, with the review rules and the land-use rules given."""

    def __init__(self, store: Store, review_rules_file: str | Path | None = None,
                 rules_file: str | Path | None = None):
        self.store = store
        self.rules = load_review_rules(review_rules_file)
        self.land = load_rules(rules_file)
        self._region: tuple | None = None

    def region(self) -> tuple[shapely.Geometry | None, dict]:
        key = self.store.meta().get("last_load_id")
        if self._region is not None and self._region[0] == key:
            return self._region[1], self._region[2]
        meta = self.store.meta()
        info = {"code": meta.get("region_code"), "name": meta.get("region_name")}
        geom = None
        if "xzq" in self.store.layer_names():
            cols = [c for c in READ_COLUMNS["xzq"] if c in self.store.schema("xzq")]
            xzq = self.store.read_layer("xzq", columns=cols)
            county = xzq[xzq["XZQJB"] == "county"] if "XZQJB" in xzq.columns else xzq.iloc[0:0]
            geom = shapely.union_all(np.asarray((county if len(county) else xzq).geometry.values, dtype=object))
        self._region = (key, geom, info)
        return geom, info

    def review(self, doc: dict, crs_param: str | None) -> dict:
        site, legacy = parse_site(doc)
        name, code = parse_crs(crs_param if crs_param is not None else legacy)
        epsg = self.store.epsg
        if epsg is None:
            raise GeometryError(f"store {self.store.url} holds no region yet; ingest one first")
        site, order = _xy(site, code, epsg)
        region, info = self.region()
        present = set(self.store.layer_names())
        layers: dict[str, gpd.GeoDataFrame | None] = {}
        bbox = as_box(site.bounds)
        for layer in LAYERS:
            if layer not in present:
                layers[layer] = None
                continue
            cols = [c for c in READ_COLUMNS[layer] if c in self.store.schema(layer)]
            layers[layer] = self.store.read_layer(layer, bbox=bbox, columns=cols)
        answer = review_site(site, epsg, layers, self.rules, self.land, region=region)
        lonlat = shapely.transform(site, lambda c: np.column_stack(_transformer(epsg, 4490).transform(c[:, 0],
                                                                                                     c[:, 1])))
        answer["input"] = {"crs": name, "axis_order": order, "vertices": int(shapely.get_num_coordinates(site)),
                           "bbox_crs84": [round(v, 8) for v in lonlat.bounds]}
        answer["region"] = info
        answer["store_epsg"] = epsg
        return answer



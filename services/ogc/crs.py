"""CRS handling for the OGC API: the CRS URIs we serve, axis order, and cached transformations.

Three CRSs are offered for every collection (OGC API Features Part 2):

- ``CRS84`` (default): CGCS2000 longitude, latitude. CGCS2000 is served as WGS 84 — PROJ knows only a
  "ballpark" (null) transformation between them, the difference is centimetres (domain §5).
- ``EPSG:4490``: CGCS2000 geographic, axis order **latitude, longitude** (EPSG definition).
- ``EPSG:<zone>``: the store's 3° Gauss-Krüger zone (e.g. EPSG:4547), axis order **northing, easting**
  (EPSG definition: X north, Y east).

Every coordinate a client sends (``bbox`` under ``bbox-crs``, WKT in ``filter`` under ``filter-crs``) and every
coordinate we return (under ``crs``) is in the axis order of that CRS, as Part 2 requires. Internally geometry
is always (easting, northing) in the store's zone.

PROJ needs about a second to build a CGCS2000 → WGS 84 transformation (it searches its database for one
and ends with the ballpark), so transformers are built once per CRS pair and cached; pygeoapi 0.24 builds a
new one on every request. ``upstream.install`` gives pygeoapi's items handler our cached, exact versions of
its two CRS helpers (transform_bbox, modify_pygeofilter below; docs/upstream/ has the upstream patches).

A CRS a client names that we do not serve, or coordinates that do not fit it, raise RequestError (HTTP 400).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pyproj
import shapely
import shapely.geometry

from layers.crs import CGCS2000_GEOGRAPHIC
from layers.store.query import SpatialSelection, as_box

from ..errors import RequestError

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{code}"
DENSIFY = 64  # points per edge when a box is carried from one CRS to another


def epsg_uri(code: int) -> str:
    return EPSG_URI.format(code=int(code))


_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/(EPSG|OGC)/[^/]+/([A-Za-z0-9]+)$")


def crs_key(uri: str) -> str | int:
    """'CRS84' or an EPSG code for a CRS URI; RequestError otherwise."""
    m = _URI.match(uri.strip()) if isinstance(uri, str) else None
    if not m:
        raise RequestError(f"{uri!r} is not an OGC CRS URI such as {CRS84} or {epsg_uri(4490)}")
    auth, code = m.groups()
    if auth == "OGC":
        if code.upper() != "CRS84":
            raise RequestError(f"OGC CRS {code!r} is not served; use {CRS84}")
        return "CRS84"
    if not code.isdigit():
        raise RequestError(f"EPSG code {code!r} in {uri!r} is not a number")
    return int(code)


def supported_uris(storage_epsg: int) -> list[str]:
    """CRS URIs served for a store in ``storage_epsg`` (the default, CRS84, first)."""
    return list(dict.fromkeys([CRS84, epsg_uri(CGCS2000_GEOGRAPHIC), epsg_uri(storage_epsg)]))


@functools.lru_cache(maxsize=64)
def _north_first(key: str | int) -> bool:
    """True when the CRS's first axis points north (EPSG:4490 lat/lon, EPSG:4547 northing/easting)."""
    if key == "CRS84":
        return False
    crs = pyproj.CRS.from_epsg(int(key))
    return crs.axis_info[0].direction.lower() == "north"


@functools.lru_cache(maxsize=64)
def _transformer(src: int, dst: int) -> pyproj.Transformer | None:
    """(x=east, y=north) transformer between two EPSG codes; None for the identity."""
    if src == dst:
        return None
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def _epsg_of(key: str | int) -> int:
    # CRS84 coordinates are CGCS2000 longitude/latitude: the ballpark transformation is the identity.
    return CGCS2000_GEOGRAPHIC if key == "CRS84" else int(key)


def check_served(key: str | int, storage_epsg: int) -> None:
    served = {"CRS84", CGCS2000_GEOGRAPHIC, int(storage_epsg)}
    if key not in served:
        raise RequestError(f"CRS {key!r} is not served; use one of {', '.join(supported_uris(storage_epsg))}")


def transform_xy(x: np.ndarray, y: np.ndarray, src: str | int, dst: str | int) -> tuple[np.ndarray, np.ndarray]:
    """Transform (east, north)-ordered arrays between two served CRSs."""
    tr = _transformer(_epsg_of(src), _epsg_of(dst))
    if tr is None:
        return x, y
    return tr.transform(x, y)


@dataclass(frozen=True)
class OutputCRS:
    """How to write geometries for one requested ``crs``: transform from the store, then maybe swap axes."""

    uri: str
    key: str | int
    storage_epsg: int

    @property
    def swap(self) -> bool:
        return _north_first(self.key)

    def apply(self, geoms: np.ndarray) -> np.ndarray:
        """Store geometries (east, north) → this CRS, in its axis order."""
        tr = _transformer(self.storage_epsg, _epsg_of(self.key))
        swap = self.swap
        if tr is None and not swap:
            return geoms

        def fn(coords: np.ndarray) -> np.ndarray:
            x, y = coords[:, 0], coords[:, 1]
            if tr is not None:
                x, y = tr.transform(x, y)
            return np.column_stack([y, x] if swap else [x, y])

        return shapely.transform(geoms, fn)


@functools.lru_cache(maxsize=64)
def output_crs(uri: str | None, storage_epsg: int) -> OutputCRS:
    uri = uri or CRS84
    key = crs_key(uri)
    check_served(key, storage_epsg)
    return OutputCRS(uri=uri, key=key, storage_epsg=int(storage_epsg))


def _inner_box(polygon: shapely.Geometry, x: np.ndarray, y: np.ndarray, n: int):
    """An axis-parallel box inside the image of a box (edges: bottom, right, top, left, n points each).

    The innermost coordinate of each edge gives a first box; in a rotated image (meridian convergence turns a
    CRS84 box by about a degree in the GK zone) its corners poke out of the polygon by a little, so the box is
    shrunk by the same margins again until the polygon covers it."""
    bottom, right, top, left = (slice(i * n, (i + 1) * n) for i in range(4))
    ox0, oy0, ox1, oy1 = polygon.bounds
    mx0, my0 = float(np.max(x[left])) - ox0, float(np.max(y[bottom])) - oy0
    mx1, my1 = ox1 - float(np.min(x[right])), oy1 - float(np.min(y[top]))
    for factor in (1.0, 2.0, 3.0):
        box = (ox0 + factor * mx0, oy0 + factor * my0, ox1 - factor * mx1, oy1 - factor * my1)
        if not (box[0] < box[2] and box[1] < box[3]):
            return None
        if polygon.covers(shapely.box(*box)):
            return box
    return None


def box_in_store(values: list[float], crs: str | int, storage_epsg: int) -> SpatialSelection:
    """A ``bbox`` (4 or 6 numbers, axis order of ``crs``) as a SpatialSelection in the store CRS: the exact area
    (the box densified along its edges when it comes from another CRS), its envelope, and an inner box."""
    return _box_in_store(tuple(float(v) for v in values), crs, int(storage_epsg))


@functools.lru_cache(maxsize=1024)
def _box_in_store(values: tuple, crs: str | int, storage_epsg: int) -> SpatialSelection:
    if len(values) == 6:
        values = (values[0], values[1], values[3], values[4])
    a0, a1, b0, b1 = values
    if _north_first(crs):  # (lat, lon) / (northing, easting) order: swap to (east, north)
        a0, a1, b0, b1 = a1, a0, b1, b0
    minx, miny, maxx, maxy = a0, a1, b0, b1
    if _epsg_of(crs) == CGCS2000_GEOGRAPHIC and not (-90 <= miny <= 90 and -90 <= maxy <= 90):
        raise RequestError(f"bbox latitudes {miny}, {maxy} are outside −90…90°: check the axis order "
                           f"({'latitude first' if _north_first(crs) else 'longitude first'} for this CRS)")
    if _epsg_of(crs) == storage_epsg:
        poly = shapely.box(minx, miny, maxx, maxy)
        shapely.prepare(poly)
        return SpatialSelection(poly, (minx, miny, maxx, maxy), (minx, miny, maxx, maxy), True)
    if minx == maxx or miny == maxy:  # a degenerate box: a line or a point
        xs = np.linspace(minx, maxx, DENSIFY + 1)
        ys = np.linspace(miny, maxy, DENSIFY + 1)
        x, y = transform_xy(xs, ys, crs, storage_epsg)
        geom = shapely.linestrings(np.column_stack([x, y])) if (minx != maxx or miny != maxy) \
            else shapely.points(x[0], y[0])
        return SpatialSelection(geom, as_box(geom.bounds), None, False)
    t = np.linspace(0.0, 1.0, DENSIFY + 1)[:-1]
    xs = np.concatenate([minx + (maxx - minx) * t, np.full_like(t, maxx), maxx - (maxx - minx) * t,
                         np.full_like(t, minx)])
    ys = np.concatenate([np.full_like(t, miny), miny + (maxy - miny) * t, np.full_like(t, maxy),
                         maxy - (maxy - miny) * t])
    x, y = transform_xy(xs, ys, crs, storage_epsg)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise RequestError(f"bbox {values} cannot be carried into EPSG:{storage_epsg}")
    poly = shapely.polygons(np.column_stack([x, y]))
    shapely.prepare(poly)
    return SpatialSelection(poly, as_box(poly.bounds), _inner_box(poly, x, y, DENSIFY), False)


def geometry_in_store(geom: shapely.Geometry, crs: str | int, storage_epsg: int) -> shapely.Geometry:
    """A literal geometry given in ``crs`` (its axis order) → store CRS (east, north), vertex by vertex."""
    swap = _north_first(crs)
    tr = _transformer(_epsg_of(crs), storage_epsg)
    if tr is None and not swap:
        return geom

    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = (coords[:, 1], coords[:, 0]) if swap else (coords[:, 0], coords[:, 1])
        if tr is not None:
            x, y = tr.transform(x, y)
        return np.column_stack([x, y])

    out = shapely.transform(geom, fn)
    if not np.isfinite(shapely.get_coordinates(out)).all():
        raise RequestError(f"geometry {shapely.to_wkt(geom, rounding_precision=6)[:80]} cannot be carried "
                            f"into EPSG:{storage_epsg}")
    return out


def extent_crs84(bounds: tuple[float, float, float, float], storage_epsg: int) -> list[float]:
    """CRS84 envelope of a store-CRS box (edges densified so the curved image is enclosed)."""
    minx, miny, maxx, maxy = bounds
    t = np.linspace(0.0, 1.0, DENSIFY + 1)
    xs = np.concatenate([minx + (maxx - minx) * t, np.full_like(t, maxx), minx + (maxx - minx) * t,
                         np.full_like(t, minx)])
    ys = np.concatenate([np.full_like(t, miny), miny + (maxy - miny) * t, np.full_like(t, maxy),
                         miny + (maxy - miny) * t])
    lon, lat = transform_xy(xs, ys, storage_epsg, "CRS84")
    return [float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))]


def key_of_any(crs) -> str | int:
    """'CRS84' or an EPSG code from a URI, a URN (urn:ogc:def:crs:EPSG::4547) or a pyproj CRS."""
    if isinstance(crs, pyproj.CRS):
        auth = crs.to_authority() or ("", "")
        return "CRS84" if auth == ("OGC", "CRS84") else int(auth[1])
    text = str(crs).strip()
    if text.lower().startswith("urn:ogc:def:crs:"):
        parts = text.split(":")
        auth, code = parts[4].upper(), parts[-1]
        if auth == "OGC" and code.upper() == "CRS84":
            return "CRS84"
        if auth == "EPSG" and code.isdigit():
            return int(code)
        raise RequestError(f"CRS {text!r} is not served")
    return crs_key(text)

"""Coordinates: resolve a layer's source CRS, bring it into the store's CGCS2000 zone, check it lands in the region.

Source CRS, first rule that applies (recorded as LoadRecord.crs_resolution):
1. ``crs:`` in the manifest;
2. the CRS the file declares (.prj, GeoPackage / FileGDB / GeoParquet metadata, GeoJSON = CRS84);
3. no CRS at all, decided from the coordinates:
   - 8-digit eastings: the first two digits are the 3° zone → EPSG:4513+ (CGCS2000, prefixed);
   - 6-digit eastings: the region's zone (unprefixed) if the features then fall inside the region, else
     refused with the ``crs: EPSG:45xx`` to write;
   - values in degree ranges: EPSG:4490 if they fall inside the region, else refused;
   - anything else (swapped axes, unknown units): refused.
Web-map coordinates (``coords: gcj02 | bd09``) are converted to WGS 84 lon/lat first (layers.webcoords).

Datums (layers.crs.datum_of): CGCS2000 → a plain pyproj transformation (always_xy: x = easting / lon);
WGS 84 → taken as CGCS2000 (the frames differ by centimetres; PROJ's WGS 84 ↔ CGCS2000 step is a null
offset, which is exactly that); Xian 1980 / Beijing 1954 → only with the bureau's ``transform:`` parameters
(layers.datum), never PROJ's ballpark, which is tens of metres off; any other datum is refused. A
``transform:`` given in the manifest is applied whatever the datum (local systems need it).

Plausibility: the region is the xzq layer's extent (else the union of the other layers' extents), widened
by max(5 km, 10 %). After transformation, a layer with no feature inside is refused with a diagnosis (axes
look swapped / degrees labelled as metres / wrong zone / distance); a layer with some features outside
loads, and those features are listed in a warning.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import shapely
from pyproj import CRS, Transformer

from . import webcoords
from .crs import (
    CGCS2000_GEOGRAPHIC,
    DATUM_BEIJING54,
    DATUM_CGCS2000,
    DATUM_WGS84,
    DATUM_XIAN80,
    ZONE_MAX,
    ZONE_MIN,
    datum_of,
    gk_epsg,
    to_crs,
    zone_from_easting,
    zone_of_gk_epsg,
)
from .datum import build_pipeline, checked_transform, transformer_for
from .errors import CRSError, GeometryError, SourceError
from .read import source_info
from .records import INFO, WARNING, Finding

PARALLEL_POINTS = 200_000  # coordinates above which PROJ runs in two threads
MARGIN_KM = 5.0  # minimum widening of the region extent for plausibility checks
MARGIN_SHARE = 0.10  # … or this share of the region's larger side, whichever is larger
KM_PER_DEG = 111.2
ASSUME_SHARE = 0.5  # share of features that must fall in the region before a missing CRS is assumed


# --- the region ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Region:
    """The region's extent in CGCS2000 lon/lat, and what it was derived from."""

    bounds: tuple[float, float, float, float]  # min lon, min lat, max lon, max lat
    basis: str  # e.g. "extent of xzq" / "extent of dltb, yjjbnt"

    @property
    def centre(self) -> tuple[float, float]:
        return (self.bounds[0] + self.bounds[2]) / 2, (self.bounds[1] + self.bounds[3]) / 2

    def expanded(self) -> tuple[float, float, float, float]:
        lon0, lat0, lon1, lat1 = self.bounds
        coslat = max(math.cos(math.radians(self.centre[1])), 0.1)
        side_km = max((lon1 - lon0) * KM_PER_DEG * coslat, (lat1 - lat0) * KM_PER_DEG)
        km = max(MARGIN_KM, MARGIN_SHARE * side_km)
        dlat, dlon = km / KM_PER_DEG, km / (KM_PER_DEG * coslat)
        return lon0 - dlon, lat0 - dlat, lon1 + dlon, lat1 + dlat

    def contains(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        a, b, c, d = self.expanded()
        with np.errstate(invalid="ignore"):
            return (lon >= a) & (lon <= c) & (lat >= b) & (lat <= d)

    def distance_km(self, lon: float, lat: float) -> float:
        clon, clat = self.centre
        coslat = math.cos(math.radians(clat))
        return math.hypot((lon - clon) * KM_PER_DEG * coslat, (lat - clat) * KM_PER_DEG)

    def describe(self) -> str:
        a, b, c, d = self.bounds
        return f"{a:.4f}–{c:.4f}°E, {b:.4f}–{d:.4f}°N ({self.basis})"


@dataclass
class RegionSurvey:
    """Every layer's extent that could be placed without the region, grouped by overlap."""

    region: Region | None
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)  # role -> lon/lat box
    groups: list[list[str]] = field(default_factory=list)  # overlapping roles, main group first
    ambiguous: bool = False  # two equally large groups, no xzq to decide


def _lonlat_box(crs: CRS, bounds) -> tuple[float, float, float, float] | None:
    """A layer's bounds in lon/lat. For the region estimate only: legacy datums use PROJ's default (ballpark)
    step here, which is tens of metres off — irrelevant at the kilometre scale of the region margin."""
    try:
        tr = Transformer.from_crs(crs, CGCS2000_GEOGRAPHIC, always_xy=True)
        box = tr.transform_bounds(bounds[0], bounds[1], bounds[2], bounds[3], densify_pts=21)
    except Exception:
        return None
    if not np.all(np.isfinite(box)) or not (-180 <= box[0] <= 180 and -90 <= box[1] <= 90):
        return None
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


def _self_placed_box(spec) -> tuple[float, float, float, float] | None:
    """The lon/lat box of a layer whose CRS is known without the region (declared, or 8-digit eastings)."""
    try:
        info = source_info(spec)
    except (SourceError, UnicodeError, ValueError):
        return None
    if info.bounds is None:
        return None
    if spec.coords:  # web-map lon/lat: offsets of a few hundred metres do not matter here
        x0, y0, x1, y1 = info.bounds
        return info.bounds if (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90) else None
    crs = None
    if spec.crs:
        crs = to_crs(spec.crs)
    elif info.crs is not None:
        crs = info.crs
    else:
        z0, z1 = zone_from_easting(info.bounds[0]), zone_from_easting(info.bounds[2])
        if z0 is not None and z0 == z1:
            crs = CRS.from_epsg(gk_epsg(z0, prefixed=True))
    if crs is None:
        return None
    return _lonlat_box(crs, info.bounds)


def _grow(box, km: float):
    coslat = max(math.cos(math.radians((box[1] + box[3]) / 2)), 0.1)
    dlat, dlon = km / KM_PER_DEG, km / (KM_PER_DEG * coslat)
    return box[0] - dlon, box[1] - dlat, box[2] + dlon, box[3] + dlat


def _overlap(a, b) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def survey_region(manifest) -> RegionSurvey:
    """Place every layer that can be placed on its own and derive the region from them.

    Layers whose boxes overlap (widened by 5 km) form groups. The main group is the one holding xzq, unless
    another group is larger; the region is xzq's extent if xzq is in the main group, else the union of the
    main group's boxes. A layer outside the main group is implausible (its load says why).
    """
    boxes: dict[str, tuple] = {}
    for role, specs in manifest.layers.items():
        parts = [b for b in (_self_placed_box(s) for s in specs) if b is not None]
        if parts:
            boxes[role] = (min(p[0] for p in parts), min(p[1] for p in parts),
                           max(p[2] for p in parts), max(p[3] for p in parts))
    if not boxes:
        return RegionSurvey(None)
    roles = list(boxes)
    grown = {r: _grow(boxes[r], MARGIN_KM) for r in roles}
    group_of = {r: i for i, r in enumerate(roles)}
    for i, a in enumerate(roles):  # union-find over a handful of layers
        for b in roles[i + 1:]:
            if _overlap(grown[a], grown[b]):
                old, new = group_of[b], group_of[a]
                for r in roles:
                    if group_of[r] == old:
                        group_of[r] = new
    groups: dict[int, list[str]] = {}
    for r in roles:
        groups.setdefault(group_of[r], []).append(r)
    ordered = sorted(groups.values(), key=lambda g: (len(g), "xzq" in g), reverse=True)
    ambiguous = len(ordered) > 1 and len(ordered[0]) == len(ordered[1]) and "xzq" not in ordered[0]
    main = ordered[0]
    if "xzq" in main:
        region = Region(boxes["xzq"], "extent of xzq")
    else:
        sel = [boxes[r] for r in main]
        region = Region((min(b[0] for b in sel), min(b[1] for b in sel), max(b[2] for b in sel),
                         max(b[3] for b in sel)), "extent of " + ", ".join(main))
    return RegionSurvey(None if ambiguous else region, boxes, ordered, ambiguous)


# --- coordinates of a layer ---------------------------------------------------------------------------------

def centres(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding-box centres of the geometries (NaN for empty / missing)."""
    b = shapely.bounds(geoms)
    return (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2


def _classify(x: np.ndarray, y: np.ndarray) -> str:
    """What raw coordinate values look like: degrees / gk8 / gk6 (and their swapped forms) / unknown."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if not len(x):
        return "empty"
    ax, ay = np.abs(x), np.abs(y)

    def easting8(v):
        return (v >= 1.0e7) & (v < 1.0e8)

    def easting6(v):
        return (v >= 1.0e5) & (v < 1.0e6)

    def northing(v):
        return (v >= 1.0e6) & (v < 1.0e7)

    if np.all((ax <= 180) & (ay <= 90)):
        if np.all((x >= 73) & (x <= 136) & (y >= 3) & (y <= 54)):
            return "degrees"
        if np.all((y >= 73) & (y <= 136) & (x >= 3) & (x <= 54)):
            return "degrees_swapped"
        return "degrees"
    if np.all(easting8(x) & northing(y)):
        return "gk8"
    if np.all(easting6(x) & northing(y)):
        return "gk6"
    if np.all(northing(x) & (easting8(y) | easting6(y))):
        return "gk_swapped"
    return "unknown"


def _plain(src: CRS, dst: CRS) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def _apply(transformer: Transformer, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Transform coordinate arrays; large arrays in two threads (PROJ releases the GIL)."""
    x = np.array(x, dtype=float, copy=True)
    y = np.array(y, dtype=float, copy=True)
    with np.errstate(all="ignore"):
        if x.size < PARALLEL_POINTS:
            transformer.transform(x, y, errcheck=False, inplace=True)
            return x, y
        # pyproj ≥ 3.1 gives each thread its own PROJ context: one Transformer serves both
        mid = x.size // 2

        def run(part: slice):
            xs, ys = x[part], y[part]  # contiguous views: transformed in place
            transformer.transform(xs, ys, errcheck=False, inplace=True)

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(run, (slice(0, mid), slice(mid, None))))
    return x, y


def translation(src: CRS, dst: CRS) -> tuple[float, float] | None:
    """(dx, dy) when ``dst`` is ``src`` with other false easting / northing (a prefixed zone and its
    unprefixed twin): the transformation is then an exact shift, no projection maths needed."""
    if not (src.is_projected and dst.is_projected) or datum_of(src) != datum_of(dst):
        return None
    a, b = _proj_dict(src), _proj_dict(dst)
    rest_a = {k: v for k, v in a.items() if k not in ("x_0", "y_0")}
    rest_b = {k: v for k, v in b.items() if k not in ("x_0", "y_0")}
    if rest_a != rest_b or rest_a.get("proj") != "tmerc":
        return None
    return float(b.get("x_0", 0.0)) - float(a.get("x_0", 0.0)), float(b.get("y_0", 0.0)) - float(a.get("y_0", 0.0))


def _proj_dict(crs: CRS) -> dict:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return crs.to_dict()


def _to_lonlat(crs: CRS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if crs.is_geographic and datum_of(crs) in (DATUM_CGCS2000, DATUM_WGS84):
        return x, y
    return _apply(_plain(crs, CRS.from_epsg(CGCS2000_GEOGRAPHIC)), x, y)


def _inside_share(crs: CRS, x, y, region: Region) -> float:
    lon, lat = _to_lonlat(crs, x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return 0.0
    return float(region.contains(lon[ok], lat[ok]).mean())


def _epsg_text(crs: CRS) -> str:
    code = crs.to_epsg(min_confidence=70)
    return f"EPSG:{code}" if code else crs.name


@dataclass
class Georef:
    """How a layer's coordinates reached the target CRS."""

    source_crs: str  # name (EPSG) of the CRS the coordinates were in
    resolution: str  # how it was known
    transformation: str  # what was applied
    findings: list[Finding] = field(default_factory=list)


def _resolve_without_crs(x, y, target: CRS, region: Region | None, where: str) -> tuple[CRS, str]:
    kind = _classify(x, y)
    if kind == "gk8":
        zones = {zone_from_easting(v) for v in x[np.isfinite(x)]}
        if None in zones or len(zones) != 1:
            raise CRSError(f"{where} has no CRS and 8-digit eastings from several zones "
                           f"({sorted(z for z in zones if z)}); set crs: EPSG:45xx in the manifest")
        zone = zones.pop()
        assert zone is not None  # None was refused above
        epsg = gk_epsg(zone, prefixed=True)
        return CRS.from_epsg(epsg), f"no CRS: 8-digit eastings → zone {zone} (EPSG:{epsg}, CGCS2000 assumed)"
    if kind == "gk6":
        found = zone_of_gk_epsg(int(target.to_epsg() or 0))
        assert found is not None  # the target is always a CGCS2000 GK zone
        zone, _ = found
        if region is None:
            raise CRSError(f"{where} has no CRS and a 6-digit easting, and no other layer places the region; "
                           f"set crs: EPSG:45xx in the manifest (EPSG:{target.to_epsg()} if it is zone {zone})")
        share = _inside_share(target, x, y, region)
        if share < ASSUME_SHARE:
            raise CRSError(f"{where} has no CRS and a 6-digit easting that does not fall in the region in zone "
                           f"{zone} (EPSG:{target.to_epsg()}); set crs: EPSG:45xx in the manifest")
        return target, (f"no CRS: 6-digit eastings, inside the region in its zone {zone} → "
                        f"EPSG:{target.to_epsg()} (CGCS2000 assumed)")
    if kind == "degrees":
        geo = CRS.from_epsg(CGCS2000_GEOGRAPHIC)
        if region is None:
            raise CRSError(f"{where} has no CRS and lon/lat values, and no other layer places the region; "
                           "set crs: EPSG:4490 in the manifest")
        if _inside_share(geo, x, y, region) < ASSUME_SHARE:
            raise CRSError(f"{where} has no CRS and degree values outside the region ({region.describe()}); "
                           "set crs: in the manifest")
        return geo, "no CRS: lon/lat degrees inside the region → EPSG:4490 assumed"
    if kind in ("degrees_swapped", "gk_swapped"):
        raise CRSError(f"{where} has no CRS and its axes look swapped (x holds the "
                       f"{'latitude' if kind == 'degrees_swapped' else 'northing'}); swap X/Y in the source, "
                       "or re-export it, and set crs: in the manifest")
    if kind == "empty":
        raise GeometryError(f"{where} has no geometries to place")
    raise CRSError(f"{where} has no CRS and coordinates that are neither lon/lat nor Gauss-Krüger "
                   f"(x ≈ {np.nanmedian(x):.0f}, y ≈ {np.nanmedian(y):.0f}); set crs: in the manifest")


def diagnose(x: np.ndarray, y: np.ndarray, src: CRS, region: Region) -> str:
    """Why coordinates in ``src`` miss the region, and the fix: tries the usual mistakes in turn."""
    name = _epsg_text(src)
    if _inside_share(src, y, x, region) >= ASSUME_SHARE:
        return f"axes look swapped (x holds the {'latitude' if src.is_geographic else 'northing'}); " \
               "swap X/Y in the source or re-export it"
    kind = _classify(x, y)
    if kind == "degrees" and src.is_projected \
            and _inside_share(CRS.from_epsg(CGCS2000_GEOGRAPHIC), x, y, region) >= ASSUME_SHARE:
        return f"the coordinates are degrees (lon/lat) but the CRS is {name}, in metres; set crs: EPSG:4490"
    if kind in ("gk8", "gk6"):
        prefixed = kind == "gk8"
        for zone in range(ZONE_MIN, ZONE_MAX + 1):
            candidate = CRS.from_epsg(gk_epsg(zone, prefixed))
            if candidate == src:
                continue
            if _inside_share(candidate, x, y, region) >= ASSUME_SHARE:
                return (f"the CRS is {name} but the coordinates fit zone {zone}"
                        f"{' (prefixed eastings)' if prefixed else ''}; set crs: EPSG:{gk_epsg(zone, prefixed)}")
    if kind in ("gk8", "gk6") and src.is_geographic:
        return f"the coordinates are metres but the CRS is {name} (degrees); set crs: EPSG:45xx"
    lon, lat = _to_lonlat(src, x, y)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if ok.any():
        km = region.distance_km(float(np.median(lon[ok])), float(np.median(lat[ok])))
        return f"in {name} its features lie ~{km:,.0f} km from the region ({region.describe()}); check crs:"
    return f"its coordinates (x ≈ {np.nanmedian(x):.0f}, y ≈ {np.nanmedian(y):.0f}) are not valid in {name}; " \
           "check crs:"


def _datum_refusal(where: str, src: CRS, datum: str) -> CRSError:
    return CRSError(
        f"{where} is on the {datum} datum ({_epsg_text(src)}); PROJ only has a ballpark transformation to "
        "CGCS2000 (tens of metres off): give the bureau's parameters in the manifest as transform: "
        "{helmert: {x, y, z, rx, ry, rz, s}} or {four_param: {dx, dy, rotation, scale}} or {pipeline: …}")


def georeference(spec, geoms: np.ndarray, declared: CRS | None, declared_origin: str, target_epsg: int,
                 region: Region | None, ids: np.ndarray, where: str) -> tuple[np.ndarray, Georef]:
    """Geometries in the target CRS, and how they got there. ``geoms`` are 2-D shapely geometries in source
    coordinates; ``ids`` name them in findings. Raises CRSError when the source cannot be placed safely."""
    target = CRS.from_epsg(target_epsg)
    x, y = centres(geoms)
    findings: list[Finding] = []
    steps: list[str] = []
    # 1. the CRS the coordinates are in
    if spec.coords:
        src = to_crs(spec.crs) if spec.crs else declared
        if src is not None and not src.is_geographic:
            raise CRSError(f"{where}: coords: {spec.coords} needs lon/lat coordinates, but the CRS is "
                           f"{_epsg_text(src)}; remove crs: or give the web-map lon/lat")
        kind = _classify(x, y)
        if kind == "degrees_swapped":
            raise CRSError(f"{where}: axes look swapped (x holds the latitude); swap X/Y in the source")
        if kind not in ("degrees", "empty"):
            raise CRSError(f"{where}: coords: {spec.coords} but the coordinates are not lon/lat degrees "
                           f"(x ≈ {np.nanmedian(x):.0f}); remove coords: or fix the source")
        geoms = webcoords.to_wgs84(geoms, spec.coords)
        x, y = centres(geoms)
        steps.append(webcoords.DESCRIPTIONS[spec.coords])
        source_name = f"{spec.coords.upper().replace('GCJ02', 'GCJ-02').replace('BD09', 'BD-09')} lon/lat"
        resolution = f"manifest coords: {spec.coords}"
        src = CRS.from_epsg(CGCS2000_GEOGRAPHIC)
        steps.append("WGS 84 taken as CGCS2000")
    elif spec.crs:
        src = to_crs(spec.crs)
        source_name = _epsg_text(src)
        resolution = "manifest crs:" + ("" if declared is None else f" (overrides the file's {_epsg_text(declared)})")
    elif declared is not None:
        src = declared
        source_name = _epsg_text(src)
        resolution = declared_origin
    else:
        if spec.transform is not None:
            raise CRSError(f"{where} has a datum transform: but no CRS; set crs: (e.g. EPSG:2383 for Xian 1980 "
                           "3° zone 38) in the manifest")
        src, resolution = _resolve_without_crs(x, y, target, region, where)
        source_name = _epsg_text(src)
    # 2. the transformation
    datum = datum_of(src)
    shift = None
    if spec.transform is not None:
        transform, residual_note = checked_transform(src, spec.transform, where)
        transformer: Transformer | None = transformer_for(src, transform, target)
        steps.append(f"{transform.describe()}; pipeline: {build_pipeline(src, transform, target)}")
        if residual_note:
            steps.append(residual_note)
    elif datum in (DATUM_CGCS2000, DATUM_WGS84):
        if datum == DATUM_WGS84 and not spec.coords:
            steps.append("WGS 84 taken as CGCS2000 (the frames differ by centimetres)")
        transformer = None if src == target else _plain(src, target)
        shift = None if transformer is None else translation(src, target)
        if shift is not None:
            steps.append(f"shift by ({shift[0]:+.0f} m, {shift[1]:+.0f} m): same projection, other false easting")
        elif transformer is not None:
            steps.append(f"PROJ: {transformer.description}")
    elif datum in (DATUM_XIAN80, DATUM_BEIJING54):
        raise _datum_refusal(where, src, datum)
    else:
        raise CRSError(f"{where}: CRS {_epsg_text(src)} is not on CGCS2000, WGS 84, Xian 1980 or Beijing 1954; "
                       "give its transformation to CGCS2000 as transform: {pipeline: …} in the manifest")
    # 3. plausibility before transforming (a refused layer costs nothing more)
    if region is not None:
        if spec.transform is None:
            lon, lat = _to_lonlat(src, x, y)
        else:
            assert transformer is not None  # a manifest transform: always builds one above
            lon, lat = _lonlat_via(transformer, target, x, y)
        ok = np.isfinite(x) & np.isfinite(y)
        inside = region.contains(lon, lat)
        if ok.any() and not inside[ok].any():
            raise CRSError(f"{where} lies outside the region: {diagnose(x[ok], y[ok], src, region)}")
        outside = ok & ~inside
        if outside.any():
            findings.append(Finding(
                layer=spec.role, check="outside_region", severity=WARNING, ids=ids[outside].tolist(),
                count=int(outside.sum()),
                message=f"{int(outside.sum())} feature(s) lie outside the region ({region.describe()}); check them"))
    else:
        findings.append(Finding(layer=spec.role, check="region_unknown", severity=INFO, count=0,
                                message="no layer places the region: coordinates not checked against it"))
    # 4. transform
    if spec.transform is None and transformer is not None and shift is not None:
        offset = np.array([shift[0], shift[1]])
        geoms = shapely.transform(geoms, lambda xy: xy + offset)
    elif transformer is not None:
        def apply(xy: np.ndarray) -> np.ndarray:
            tx, ty = _apply(transformer, xy[:, 0], xy[:, 1])
            return np.column_stack([tx, ty])

        geoms = shapely.transform(geoms, apply)
    return geoms, Georef(source_crs=source_name, resolution=resolution,
                         transformation="; ".join(steps) if steps else "none", findings=findings)


def _lonlat_via(transformer: Transformer, target: CRS, x, y):
    tx, ty = _apply(transformer, x, y)
    return _to_lonlat(target, tx, ty)

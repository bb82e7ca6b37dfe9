"""Ellipsoidal area on the CGCS2000 ellipsoid, vectorised.

Survey area (TBMJ) is the area on the CGCS2000 ellipsoid (a = 6378137, 1/f = 298.257222101). A polygon's
ellipsoidal area differs from its planar area in a Gauss-Krüger zone by up to ~0.1 % near the zone edge.

Method. Gauss-Krüger (transverse Mercator) is conformal, so the ellipsoidal area of a region R of the plane
is ∫∫_R k⁻² dA, where k is the point scale factor. In plane coordinates (x = easting − false easting,
divided by k0) the scale factor is, to fourth order,

    k = k0 · cosh(x / R₁) + O(η² x⁴/R⁴),      R₁² = M(φ₁) · N(φ₁)

with φ₁ the footpoint latitude of the northing, M and N the meridional and prime-vertical radii of
curvature. Hence k⁻² = k0⁻² · (1 − x²/R₁² + ⅔ x⁴/R₁⁴ − …), and

    area = k0⁻² · [ A − S₂ / R₁² + ⅔ S₄ / R₁⁴ ],   A = ∫∫ dA, S₂ = ∫∫ x² dA, S₄ = ∫∫ x⁴ dA.

A, S₂ (exactly, by Green's theorem over every ring segment) and S₄ (≈ A·x̄⁴, its contribution is below 4e-7)
are computed for all polygons at once with numpy; R₁ is taken at each polygon's first vertex (its
variation across a 50 km polygon changes the result by < 1e-8 relative). Agreement with pyproj.Geod on the
CGCS2000 ellipsoid is better than 1e-7 relative across a 3° zone (tested); 300k polygons take well under a
second. Geometries in EPSG:4490 (lon/lat) are projected to their 3° zone first.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import shapely
from pyproj import CRS, Transformer

from .crs import CGCS2000_A, CGCS2000_RF, DATUM_CGCS2000, datum_of, gk_epsg, to_crs, zone_for_longitude
from .errors import CRSError

_F = 1.0 / CGCS2000_RF
_WORKERS = 2  # threads for large inputs
_E2 = _F * (2.0 - _F)


def _footpoint_latitude(northing: np.ndarray) -> np.ndarray:
    """Latitude (radians) whose meridian arc length from the equator equals ``northing`` (metres)."""
    e2 = _E2
    n = _F / (2.0 - _F)
    mu = northing / (CGCS2000_A * (1 - e2 / 4 - 3 * e2**2 / 64 - 5 * e2**3 / 256))
    return (mu + (3 * n / 2 - 27 * n**3 / 32) * np.sin(2 * mu)
            + (21 * n**2 / 16 - 55 * n**4 / 32) * np.sin(4 * mu)
            + (151 * n**3 / 96) * np.sin(6 * mu)
            + (1097 * n**4 / 512) * np.sin(8 * mu))


def _gk_parameters(crs: CRS) -> tuple[float, float, float, float] | None:
    """(central meridian, false easting, false northing, k0) for a CGCS2000 transverse Mercator CRS."""
    if not crs.is_projected or datum_of(crs) != DATUM_CGCS2000:
        return None
    op = crs.coordinate_operation
    if op is None or "transverse mercator" not in op.method_name.lower():
        return None
    values = {p.name.lower(): float(p.value) for p in op.params}
    try:
        return (values["longitude of natural origin"], values["false easting"], values["false northing"],
                values["scale factor at natural origin"])
    except KeyError:
        return None


def _segment_sums(coords: np.ndarray, ring_id: np.ndarray, x_ref: np.ndarray, n_rings: int):
    """Per ring: signed ∫∫1, ∫∫u, ∫∫u² dA (u = x − x_ref[ring]) by Green's theorem over its segments.

    ``coords`` holds the closed rings one after another, ``ring_id`` (sorted) the ring of each coordinate.
    Along a straight segment u and v are linear, which gives exact closed forms per segment:
    ∮ u dv/… with s = u₁ + u₂, p = u₁u₂:  A = Σ dv·s/2,  Su = Σ dv·(s² − p)/6,  Suu = Σ dv·s·(s² − 2p)/12.
    """
    u = coords[:, 0] - x_ref[ring_id]
    dv = np.diff(coords[:, 1])
    dv[ring_id[1:] != ring_id[:-1]] = 0.0  # the step from one ring to the next is not a segment
    s = u[:-1] + u[1:]
    p = u[:-1] * u[1:]
    ss = s * s
    # summed segment after segment in ring order (bincount), so a ring's sums are the same bits whatever rings
    # come before or after it in the batch: a layer measured whole or in partitions gives identical areas
    # (np.add.reduceat sums pairwise, and its pairing shifts with the zero step that follows every ring but
    # the batch's last)
    seg = ring_id[:-1]
    a = np.bincount(seg, dv * s, minlength=n_rings) / 2.0
    su = np.bincount(seg, dv * (ss - p), minlength=n_rings) / 6.0
    suu = np.bincount(seg, dv * s * (ss - 2.0 * p), minlength=n_rings) / 12.0
    if len(a) != n_rings:  # pragma: no cover - ring ids run 0 … n_rings − 1
        raise ValueError("ring bookkeeping failed")
    return a, su, suu


def _moments(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per polygonal geometry: (x_ref, y_ref, A, Su, Suu) with u = x − x_ref; exteriors add, holes subtract.

    x_ref, y_ref is the geometry's first vertex (keeps the sums well conditioned). Simple polygons (one
    ring, the usual case) take a fast path straight from their coordinates; polygons with holes and
    multipolygons go ring by ring.
    """
    n = len(geoms)
    x_ref, y_ref = np.zeros(n), np.zeros(n)
    a, su, suu = np.zeros(n), np.zeros(n), np.zeros(n)
    simple = (shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0)
    if simple.any():
        chunks = np.array_split(np.flatnonzero(simple), _WORKERS if simple.sum() > 50_000 else 1)

        def run(idx):
            coords, gid = shapely.get_coordinates(geoms[idx], return_index=True)
            first = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
            xr, yr = coords[first, 0], coords[first, 1]
            ra, rsu, rsuu = _segment_sums(coords, gid, xr, len(idx))
            sign = np.where(ra < 0, -1.0, 1.0)  # orientation of the single ring does not matter
            x_ref[idx], y_ref[idx] = xr, yr
            a[idx], su[idx], suu[idx] = ra * sign, rsu * sign, rsuu * sign

        if len(chunks) == 1:
            run(chunks[0])
        else:  # numpy and shapely release the GIL: two threads use both cores
            with ThreadPoolExecutor(len(chunks)) as pool:
                list(pool.map(run, chunks))
    if (~simple).any():
        idx = np.flatnonzero(~simple)
        parts, part_geom = shapely.get_parts(geoms[idx], return_index=True)
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        exterior = np.r_[True, ring_part[1:] != ring_part[:-1]]  # first ring of each part
        ring_geom = part_geom[ring_part]
        coords, rid = shapely.get_coordinates(rings, return_index=True)
        first_ring = np.flatnonzero(np.r_[True, ring_geom[1:] != ring_geom[:-1]])
        first_coord = np.flatnonzero(np.r_[True, rid[1:] != rid[:-1]])
        gx = coords[first_coord[first_ring], 0]
        gy = coords[first_coord[first_ring], 1]
        ra, rsu, rsuu = _segment_sums(coords, rid, gx[ring_geom], len(rings))
        sign = np.where(ra < 0, -1.0, 1.0) * np.where(exterior, 1.0, -1.0)
        n_sub = len(idx)
        x_ref[idx], y_ref[idx] = gx, gy
        a[idx] = np.bincount(ring_geom, ra * sign, minlength=n_sub)
        su[idx] = np.bincount(ring_geom, rsu * sign, minlength=n_sub)
        suu[idx] = np.bincount(ring_geom, rsuu * sign, minlength=n_sub)
    return x_ref, y_ref, a, su, suu


def ellipsoidal_area(geoms, crs) -> np.ndarray:
    """Area of each polygon on the CGCS2000 ellipsoid, in m² (unrounded). Non-polygons give 0; None gives NaN.

    ``geoms``: array-like of shapely geometries (or a GeoSeries); ``crs``: a CGCS2000 Gauss-Krüger CRS
    (EPSG:4513–4554 or any CGCS2000 transverse Mercator) or EPSG:4490. Any other CRS raises CRSError: area in
    degrees, Web Mercator or a foreign datum is wrong, and a wrong number must not come out.
    """
    if crs is None:
        raise CRSError("cannot compute ellipsoidal area: geometries have no CRS; set the layer's crs")
    crs = to_crs(crs)
    geoms = np.asarray(getattr(geoms, "values", geoms), dtype=object)
    if hasattr(geoms, "ravel"):
        geoms = geoms.ravel()
    params = _gk_parameters(crs)
    if params is None:
        if crs.is_geographic and datum_of(crs) == DATUM_CGCS2000:
            return _area_from_geographic(geoms, crs)
        raise CRSError(f"ellipsoidal area needs a CGCS2000 Gauss-Krüger CRS or EPSG:4490, got {crs.name!r}; "
                       "transform the layer into the region's zone first")
    lon0, false_e, false_n, k0 = params
    result = np.full(len(geoms), np.nan)
    missing = shapely.is_missing(geoms)
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6)) & ~missing & ~shapely.is_empty(geoms)
    result[~missing] = 0.0
    if not polygonal.any():
        return result
    g = geoms[polygonal]
    x_ref, y_ref, a, su, suu = _moments(g)
    x0 = x_ref - false_e  # reference abscissa per polygon (plane metres from the central meridian)
    s2 = x0 * x0 * a + 2 * x0 * su + suu  # ∫∫ x² dA with x = x0 + u
    xbar = x0 + np.divide(su, a, out=np.zeros_like(a), where=a != 0)
    s4 = a * xbar**4
    phi1 = _footpoint_latitude((y_ref - false_n) / k0)
    sin = np.sin(phi1)
    w2 = 1.0 - _E2 * sin * sin
    m = CGCS2000_A * (1 - _E2) / w2**1.5
    nn = CGCS2000_A / np.sqrt(w2)
    r2 = m * nn * k0 * k0  # x is in plane metres: x/k0 is the true distance
    area = (a - s2 / r2 + (2.0 / 3.0) * s4 / (r2 * r2)) / (k0 * k0)
    result[polygonal] = np.abs(area)
    return result


def _area_from_geographic(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """EPSG:4490 input: project each polygon into the 3° zone of its centroid, then measure."""
    result = np.full(len(geoms), np.nan)
    present = ~shapely.is_missing(geoms)
    if not present.any():
        return result
    # 4490 is (lat, lon) by definition; shapely geometries from geopandas/pyogrio hold (lon, lat).
    lon = shapely.get_x(shapely.centroid(geoms[present]))
    zones = np.array([zone_for_longitude(v) if np.isfinite(v) else 38 for v in lon])
    out = np.empty(present.sum())
    sub = geoms[present]
    for zone in np.unique(zones):
        sel = zones == zone
        epsg = gk_epsg(int(zone))
        tr = Transformer.from_crs(crs, epsg, always_xy=True)
        projected = shapely.transform(sub[sel], lambda xy, tr=tr: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        out[sel] = ellipsoidal_area(projected, epsg)
    result[present] = out
    return result

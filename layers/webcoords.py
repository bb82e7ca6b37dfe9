"""Web-map coordinates: GCJ-02 (Amap / Tencent) and BD-09 (Baidu) to WGS 84, which we take as CGCS2000.

GCJ-02 is an obfuscation of WGS 84 lon/lat mandated for maps published in China, not a datum: a smooth
non-linear offset of up to ~700 m computed by published formulas on the Krasovsky ellipsoid. BD-09 is a
further Baidu-specific rotation of GCJ-02. The forward formulas (WGS 84 → GCJ-02 → BD-09) are exact in the
sense that every web map computes them the same way; there is no closed-form inverse, so we invert them by
fixed-point iteration:

    w₀ = g;   wₖ₊₁ = wₖ − (forward(wₖ) − g)

The offset's derivative is ~1e-5, so each step gains ~5 orders of magnitude; we iterate until the forward
image of the result reproduces the input to 1e-11° (~1 µm), which takes 2–4 steps. The round trip
(forward ∘ inverse) is therefore exact to far below 1 mm. Accuracy against *ground truth* is another matter:
a point digitised on a web map carries the map's own errors (metres), and the obfuscation itself is only
known through the leaked formulas — treat converted points as good to a few metres, not millimetres.

Points outside mainland China's rough bounding box are left unchanged, as the web maps do.
"""

from __future__ import annotations

import numpy as np
import shapely

from .errors import CRSError

GCJ02, BD09 = "gcj02", "bd09"

_A = 6378245.0  # Krasovsky semi-major axis used by the GCJ-02 formulas
_EE = 0.00669342162296594323  # Krasovsky first eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0
_TOL_DEG = 1e-11
_MAX_ITER = 30


def _outside_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _delta_lat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return ret


def _delta_lon(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Forward GCJ-02 obfuscation of WGS 84 lon/lat (degrees), vectorised."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    dlat = _delta_lat(lon - 105.0, lat - 35.0)
    dlon = _delta_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    out = _outside_china(lon, lat)
    return np.where(out, lon, lon + dlon), np.where(out, lat, lat + dlat)


def gcj02_to_bd09(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Forward BD-09 transformation of GCJ-02 lon/lat (degrees), vectorised."""
    x, y = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def wgs84_to_bd09(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def _invert(forward, lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point inverse of a near-identity forward map, to _TOL_DEG on its own round trip."""
    g_lon, g_lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    w_lon, w_lat = g_lon.copy(), g_lat.copy()
    for _ in range(_MAX_ITER):
        f_lon, f_lat = forward(w_lon, w_lat)
        e_lon, e_lat = f_lon - g_lon, f_lat - g_lat
        w_lon, w_lat = w_lon - e_lon, w_lat - e_lat
        err = np.max(np.abs(np.nan_to_num(np.concatenate([e_lon.ravel(), e_lat.ravel()]))), initial=0.0)
        if err < _TOL_DEG:
            break
    else:  # pragma: no cover - the map is a contraction inside China; this would be a formula bug
        raise CRSError(f"web-coordinate inverse did not converge (residual {err:.2e}°)")
    return w_lon, w_lat


def gcj02_to_wgs84(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of wgs84_to_gcj02 by iteration; round trip better than 1e-11° (~1 µm)."""
    return _invert(wgs84_to_gcj02, lon, lat)


def bd09_to_gcj02(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of gcj02_to_bd09 by iteration."""
    return _invert(gcj02_to_bd09, lon, lat)


def bd09_to_wgs84(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    return _invert(wgs84_to_bd09, lon, lat)


_TO_WGS84 = {GCJ02: gcj02_to_wgs84, BD09: bd09_to_wgs84}
DESCRIPTIONS = {
    GCJ02: "GCJ-02 → WGS 84 by iterative inverse of the GCJ-02 formulas (round trip < 1 µm; "
           "approximate against ground truth)",
    BD09: "BD-09 → WGS 84 by iterative inverse of the BD-09 and GCJ-02 formulas (round trip < 1 µm; "
          "approximate against ground truth)",
}


def to_wgs84(geoms, kind: str) -> np.ndarray:
    """Convert lon/lat geometries given in GCJ-02 or BD-09 to WGS 84 lon/lat (taken as CGCS2000)."""
    try:
        inverse = _TO_WGS84[kind]
    except KeyError:
        raise CRSError(f"unknown web coordinate kind {kind!r}; use gcj02 or bd09") from None

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = inverse(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(np.asarray(geoms, dtype=object), apply)

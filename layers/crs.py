"""CGCS2000 coordinate systems: the geographic CRS, the 3° Gauss-Krüger zones, and zone resolution.

- EPSG:4490: CGCS2000 geographic, axis order (lat, lon) by definition. Served as CRS84 (lon, lat).
- EPSG:4513–4533: 3° GK zones 25–45, zone number prefixed to the easting (easting = zone × 10⁶ + 500000 ± …).
- EPSG:4534–4554: the same zones without prefix, central meridian 75°E … 135°E.
Zone n has central meridian 3n°. The store keeps analysis geometry in the unprefixed zone CRS.
"""

from __future__ import annotations

import math

from pyproj import CRS

from .errors import CRSError

CGCS2000_GEOGRAPHIC = 4490
CGCS2000_A = 6378137.0
CGCS2000_RF = 298.257222101
ZONE_MIN, ZONE_MAX = 25, 45


def zone_for_longitude(lon: float) -> int:
    """3° zone number whose central meridian (3n°) is nearest to ``lon``.

    >>> zone_for_longitude(115.0), zone_for_longitude(114.0), zone_for_longitude(112.6)
    (38, 38, 38)
    """
    zone = int(math.floor(lon / 3.0 + 0.5))
    if not ZONE_MIN <= zone <= ZONE_MAX:
        raise CRSError(f"longitude {lon:.4f}° lies outside China's 3° zones 25–45 (75°E–135°E)")
    return zone


def central_meridian(zone: int) -> float:
    return 3.0 * zone


def gk_epsg(zone: int, prefixed: bool = False) -> int:
    """EPSG code of a CGCS2000 3° GK zone.

    >>> gk_epsg(38), gk_epsg(38, prefixed=True)
    (4547, 4526)
    """
    if not ZONE_MIN <= zone <= ZONE_MAX:
        raise CRSError(f"3° zone {zone} is outside China's zones 25–45")
    return (4513 if prefixed else 4534) + zone - ZONE_MIN


def zone_of_gk_epsg(epsg: int) -> tuple[int, bool] | None:
    """(zone, prefixed) for a CGCS2000 3° GK EPSG code, else None."""
    if 4513 <= epsg <= 4533:
        return epsg - 4513 + ZONE_MIN, True
    if 4534 <= epsg <= 4554:
        return epsg - 4534 + ZONE_MIN, False
    return None


def zone_from_easting(easting: float) -> int | None:
    """Zone number from an 8-digit prefixed easting (e.g. 38 512 345.6 → 38); None for a 6-digit easting."""
    if 10_000_000 <= abs(easting) < 100_000_000:
        zone = int(easting // 1_000_000)
        if ZONE_MIN <= zone <= ZONE_MAX:
            return zone
    return None


def to_crs(value) -> CRS:
    """Parse a CRS given as 'EPSG:4547', 4547, WKT or a pyproj CRS; raise CRSError naming the value."""
    try:
        return CRS.from_user_input(value)
    except Exception as exc:  # pyproj raises CRSError of its own, which is not ours
        raise CRSError(f"unknown CRS {value!r}: give an EPSG code such as EPSG:4547 ({exc})") from None


# Datum families by geographic EPSG code.
DATUM_CGCS2000 = "CGCS2000"
DATUM_XIAN80 = "Xian 1980"
DATUM_BEIJING54 = "Beijing 1954"
DATUM_WGS84 = "WGS 84"


def datum_of(crs: CRS) -> str | None:
    """Name the datum family of a CRS (CGCS2000, Xian 1980, Beijing 1954, WGS 84) or None if other."""
    geod = crs.geodetic_crs
    if geod is None or geod.datum is None:
        return None
    name = (geod.datum.name or "").lower()
    if "china 2000" in name or "cgcs2000" in name or "china geodetic coordinate system 2000" in name:
        return DATUM_CGCS2000
    if "xian 1980" in name or "xi'an 1980" in name or "xian_1980" in name:
        return DATUM_XIAN80
    if "beijing 1954" in name or "beijing_1954" in name:
        return DATUM_BEIJING54
    if "world geodetic system 1984" in name or "wgs_1984" in name or "wgs 84" in name:
        return DATUM_WGS84
    return None

"""Slope from a DEM (Horn's method), 耕地坡度级别 GDPDJB grades, and the grade of each 耕地 patch.

Slope. Horn (1981), as gdaldem uses it: with the 3 × 3 neighbourhood

    a b c
    d e f        dz/dx = ((c + 2f + i) − (a + 2d + g)) / (8 Δx)
    g h i        dz/dy = ((g + 2h + i) − (a + 2b + c)) / (8 Δy)

slope = atan(√(dz/dx² + dz/dy²)), in degrees. Δx, Δy are metres: the cell size on a projected grid (times the
unit factor), and on a geographic grid (EPSG:4490) per row — Δx the geodesic length of one cell along the
row's parallel, Δy half the geodesic length between the rows above and below — on the CGCS2000 ellipsoid, so a
grid in degrees gives the same slope as the same surface in metres. Elevations are metres.

Edges and holes. A neighbour outside the DEM or without data is replaced by a linear extrapolation: through
the centre (2e − its opposite neighbour), else for a corner neighbour down its column or along its row (at a
DEM corner), else by the centre itself — so a plane keeps its exact slope up to the DEM's edges and corners;
a cell without data has no slope.

Blocks. The DEM is processed in blocks read with a one-cell halo; because the halo supplies the same
neighbours the whole array would, every block's slope equals the whole-array computation bit for bit
(tested), and a 30k × 30k DEM never needs more than a block in memory.

Grades (TD/T 1055 三调 技术规程; the breaks are data, analysis/raster/rules.yaml):
1: ≤ 2°, 2: (2°, 6°], 3: (6°, 15°], 4: (15°, 25°], 5: > 25°.

Patch grade. The grade held by the largest part of a patch's area (exact fractional cell coverage × cell area),
with the share of each grade, the mean slope and the part of the patch the DEM covers.
"""

from __future__ import annotations

from collections.abc import Iterator

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS, Geod
from rasterio.windows import Window

from layers.crs import CGCS2000_A, CGCS2000_RF
from layers.errors import CRSError, RuleError

from .blocks import read_with_halo
from .zonal import ZonalAccumulator

_GEOD = Geod(a=CGCS2000_A, rf=CGCS2000_RF)
DEFAULT_BREAKS = (2.0, 6.0, 15.0, 25.0)

# neighbour offsets (dr, dc) → name, and the opposite of each
_OFFSETS = {"a": (-1, -1), "b": (-1, 0), "c": (-1, 1), "d": (0, -1), "f": (0, 1), "g": (1, -1), "h": (1, 0),
            "i": (1, 1)}
_OPPOSITE = {"a": "i", "b": "h", "c": "g", "d": "f", "f": "d", "g": "c", "h": "b", "i": "a"}


def cell_sizes(transform, crs: CRS, row_off: int, nrows: int) -> tuple[np.ndarray, np.ndarray]:
    """(Δx, Δy) in metres for each of ``nrows`` rows starting at ``row_off``."""
    if transform.b != 0 or transform.d != 0:
        raise CRSError("slope needs a north-up grid (no rotation); warp the DEM first")
    if crs.is_geographic:
        rows = row_off + np.arange(nrows)
        lat = transform.f + transform.e * (rows + 0.5)
        dlat = abs(transform.e)
        lon0 = np.zeros(nrows)
        _, _, dx = _GEOD.inv(lon0, lat, lon0 + abs(transform.a), lat)
        _, _, two_dy = _GEOD.inv(lon0, lat - dlat, lon0, lat + dlat)
        return np.asarray(dx, dtype="float64"), np.asarray(two_dy, dtype="float64") / 2.0
    if not crs.is_projected:
        raise CRSError(f"slope needs a projected or geographic grid, got {crs.name!r}")
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return (np.full(nrows, abs(transform.a) * factor), np.full(nrows, abs(transform.e) * factor))


def horn_slope(z: np.ndarray, dx, dy) -> np.ndarray:
    """Slope in degrees of the inner cells of ``z`` (shape (h + 2, w + 2): the block with its one-cell halo,
    NaN where there is no data or no neighbour). ``dx``/``dy``: metres, scalars or one value per inner row.
    Returns shape (h, w), NaN where the centre has no data."""
    z = np.asarray(z, dtype="float64")
    h, w = z.shape[0] - 2, z.shape[1] - 2
    centre = z[1:-1, 1:-1]
    raw = {k: z[1 + dr:1 + dr + h, 1 + dc:1 + dc + w] for k, (dr, dc) in _OFFSETS.items()}
    at = dict(zip(_OFFSETS.values(), raw.values()))
    at[(0, 0)] = centre
    nb = {}
    for k, v in raw.items():
        missing = np.isnan(v)
        if missing.any():
            dr, dc = _OFFSETS[k]
            # linear extrapolations that are exact on a plane, in order of preference
            options = [2.0 * centre - raw[_OPPOSITE[k]]]
            if dr and dc:
                options.append(2.0 * at[(0, dc)] - at[(-dr, dc)])  # down the column dc
                options.append(2.0 * at[(dr, 0)] - at[(dr, -dc)])  # along the row dr
            fill = centre
            for opt in reversed(options):
                fill = np.where(np.isnan(opt), fill, opt)
            v = np.where(missing, fill, v)
        nb[k] = v
    dx = np.asarray(dx, dtype="float64").reshape(-1, 1) if np.ndim(dx) else float(dx)
    dy = np.asarray(dy, dtype="float64").reshape(-1, 1) if np.ndim(dy) else float(dy)
    dzdx = ((nb["c"] + 2.0 * nb["f"] + nb["i"]) - (nb["a"] + 2.0 * nb["d"] + nb["g"])) / (8.0 * dx)
    dzdy = ((nb["g"] + 2.0 * nb["h"] + nb["i"]) - (nb["a"] + 2.0 * nb["b"] + nb["c"])) / (8.0 * dy)
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    slope[np.isnan(centre)] = np.nan
    return slope


def slope_array(z: np.ndarray, transform, crs: CRS) -> np.ndarray:
    """Slope (degrees) of a whole in-memory DEM (NaN = no data)."""
    padded = np.pad(np.asarray(z, dtype="float64"), 1, constant_values=np.nan)
    dx, dy = cell_sizes(transform, crs, 0, z.shape[0])
    return horn_slope(padded, dx, dy)


def iter_slope_blocks(source, block: int = 1024, windows=None) -> Iterator[tuple[Window, np.ndarray]]:
    """(window, slope in degrees) for each block of the DEM ``source`` (its ``grid`` + ``read``)."""
    g = source.grid
    for win in (windows if windows is not None else g.iter_windows(block)):
        z = read_with_halo(source, win, 1)
        dx, dy = cell_sizes(g.transform, g.crs, int(win.row_off), int(win.height))
        yield win, horn_slope(z, dx, dy)


def check_breaks(breaks) -> tuple[float, ...]:
    b = tuple(float(v) for v in breaks)
    if len(b) != 4 or any(v <= 0 for v in b) or list(b) != sorted(set(b)):
        raise RuleError(f"slope grade breaks {list(breaks)} must be four increasing positive angles, e.g. "
                        "[2, 6, 15, 25]")
    return b


def slope_grades(slope_deg: np.ndarray, breaks=DEFAULT_BREAKS) -> np.ndarray:
    """GDPDJB grade 1–5 per cell (float, NaN where no slope). Upper bounds are inclusive: 2° → 1, 2.01° → 2."""
    b = check_breaks(breaks)
    grades = np.searchsorted(np.asarray(b), slope_deg, side="left").astype("float64") + 1.0
    grades[np.isnan(slope_deg)] = np.nan
    return grades


def patch_grades(dem, patches: gpd.GeoSeries, *, breaks=DEFAULT_BREAKS, block: int = 1024) -> pd.DataFrame:
    """Area-weighted slope grade of each polygon: columns grade (1–5, NaN without DEM), share_1 … share_5,
    mean_slope (degrees), dem_share (part of the patch the DEM covers). Index = ``patches``' index.

    ``dem``: a layers.raster source (grid + read). ``patches`` must be in the DEM grid's CRS.
    """
    if patches.crs is None or not dem.grid.crs.equals(patches.crs):
        raise CRSError(f"patch grades: patches are in {getattr(patches.crs, 'name', None)!r}, the DEM grid in "
                       f"{dem.grid.crs.name!r}; transform the patches to the DEM grid's CRS")
    b = check_breaks(breaks)
    acc = ZonalAccumulator(patches.values, dem.grid, mean=True, classes=True)
    windows = list(acc.blocks(block))
    for win, slope in iter_slope_blocks(dem, block, windows):
        acc.add(win, slope, slope_grades(slope, b))
    res = acc.result(("mean", "majority", "share"))
    out = pd.DataFrame(index=patches.index)
    out["grade"] = res["majority"].to_numpy()
    for k in range(1, 6):
        col = f"share_{k}"
        out[col] = res[col].to_numpy() if col in res else 0.0
    out["mean_slope"] = res["mean"].to_numpy()
    out["dem_share"] = res["valid_share"].to_numpy()
    return out

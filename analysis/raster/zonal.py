"""Zonal statistics of a raster by polygon (patch, 村, 乡): area-weighted mean, majority, class shares.

Streaming: the grid is walked block by block (only blocks that some polygon touches are read); in each block
every polygon that meets it gets its exact fractional cell coverage (analysis.raster.coverage), and sums are
accumulated, so a polygon spanning many blocks and a raster of any size cost one block of memory.

Weights are cell share × cell area (m²; per row on a geographic grid). Cells with no data (NaN) are left out of
mean / majority / shares, and ``valid_share`` says which part of the polygon the raster actually covered
(the part of the polygon outside the raster counts as not covered).

- mean: Σ w·v / Σ w over valid cells.
- majority: the value holding the largest covered area; a tie goes to the smaller value.
- share: for each value, its covered area ÷ the valid covered area (columns ``share_<value>``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.windows import Window

from layers.errors import CRSError

from .coverage import cell_areas, iter_coverage

STATS = ("mean", "majority", "share")


class ZonalAccumulator:
    """Sums per polygon over blocks: Σw·v, Σw (valid), Σw (all covered) and Σw per class value."""

    def __init__(self, geoms, grid, *, mean: bool = True, classes: bool = False):
        self.geoms = np.asarray(geoms, dtype=object)
        self.overlapping = _overlapping(self.geoms)  # polygons sharing area with another: measured alone
        self.grid = grid
        self.n = len(self.geoms)
        self.tree = shapely.STRtree(self.geoms)
        self.want_mean, self.want_classes = mean, classes
        self.sum_wv = np.zeros(self.n)
        self.sum_w = np.zeros(self.n)
        self.sum_total = np.zeros(self.n)
        self._class_parts: list[pd.DataFrame] = []
        self.polygon_area = shapely.area(self.geoms)  # in grid units, for valid_share outside the grid

    def reset(self) -> None:
        """Zero the sums (keep the polygons, their index and overlap flags) to accumulate another raster."""
        self.sum_wv[:] = 0.0
        self.sum_w[:] = 0.0
        self.sum_total[:] = 0.0
        self._class_parts = []

    def blocks(self, block: int) -> Iterable[Window]:
        """Block windows that at least one polygon touches."""
        if self.n == 0:
            return
        for win in self.grid.iter_windows(block):
            t = self.grid.window_transform(win)
            x0, y1 = t.c, t.f
            x1, y0 = t @ (win.width, win.height)
            if len(self.tree.query(shapely.box(x0, y0, x1, y1), predicate="intersects")):
                yield win

    def candidates(self, window: Window) -> np.ndarray:
        t = self.grid.window_transform(window)
        x1, y0 = t @ (window.width, window.height)
        return self.tree.query(shapely.box(t.c, y0, x1, t.f), predicate="intersects")

    def add(self, window: Window, values: np.ndarray, class_values: np.ndarray | None = None) -> None:
        """Add one block: ``values`` is the 2-D array of the window (NaN = no data); classes are counted from
        ``class_values`` when given (e.g. grades of a slope block), else from ``values``."""
        if class_values is None:
            class_values = values
        idx = self.candidates(window)
        if not len(idx):
            return
        t = self.grid.window_transform(window)
        areas = cell_areas(self.grid.transform, self.grid.crs, int(window.row_off), int(window.height))
        gids, vals, ws = [], [], []
        together = idx[~self.overlapping[idx]]
        alone = idx[self.overlapping[idx]]
        with rasterio.Env():
            covs = list(iter_coverage(self.geoms, t, values.shape, together, disjoint=True))
            covs += list(iter_coverage(self.geoms, t, values.shape, alone))
        for i, rows, cols, frac in covs:
            w = frac * areas[rows]
            v = values[rows, cols]
            self.sum_total[i] += w.sum()
            ok = ~np.isnan(v)
            wv = w[ok]
            self.sum_w[i] += wv.sum()
            if self.want_mean:
                self.sum_wv[i] += (wv * v[ok]).sum()
            if self.want_classes:
                cv = class_values[rows, cols]
                okc = ~np.isnan(cv)
                if okc.any():
                    gids.append(np.full(int(okc.sum()), i))
                    vals.append(cv[okc])
                    ws.append(w[okc])
        if gids:
            part = pd.DataFrame({"gid": np.concatenate(gids), "value": np.concatenate(vals),
                                 "w": np.concatenate(ws)})
            self._class_parts.append(part.groupby(["gid", "value"], as_index=False)["w"].sum())

    def class_table(self) -> pd.DataFrame:
        """Long table gid, value, w (m²) of covered area per class value."""
        if not self._class_parts:
            return pd.DataFrame({"gid": pd.Series(dtype="int64"), "value": pd.Series(dtype="float64"),
                                 "w": pd.Series(dtype="float64")})
        return pd.concat(self._class_parts).groupby(["gid", "value"], as_index=False)["w"].sum()

    def result(self, stats=STATS) -> pd.DataFrame:
        out = pd.DataFrame(index=pd.RangeIndex(self.n))
        cell_total = self._grid_polygon_area()
        out["valid_share"] = np.divide(self.sum_w, cell_total, out=np.zeros(self.n), where=cell_total > 0)
        if "mean" in stats:
            out["mean"] = np.divide(self.sum_wv, self.sum_w, out=np.full(self.n, np.nan), where=self.sum_w > 0)
        if "majority" in stats or "share" in stats:
            table = self.class_table()
            if "majority" in stats:
                maj = np.full(self.n, np.nan)
                if len(table):
                    # largest area first; ties → smaller value first
                    best = table.sort_values(["gid", "w", "value"], ascending=[True, False, True]) \
                        .drop_duplicates("gid")
                    maj[best["gid"].to_numpy()] = best["value"].to_numpy()
                out["majority"] = maj
            if "share" in stats:
                values = np.sort(table["value"].unique())
                for v in values:
                    sub = table[table["value"] == v]
                    share = np.zeros(self.n)
                    share[sub["gid"].to_numpy()] = sub["w"].to_numpy()
                    out[f"share_{_label(v)}"] = np.divide(share, self.sum_w, out=np.zeros(self.n),
                                                          where=self.sum_w > 0)
        return out

    def _grid_polygon_area(self) -> np.ndarray:
        """Each polygon's whole area in the weights' units (m²): covered cells plus the part off the grid."""
        # sum_total holds the area of the part on the grid; the part off the grid is scaled by the same
        # m²-per-grid-unit ratio the covered part had (exact on projected grids).
        on_grid = np.array([shapely.area(shapely.intersection(g, self._grid_box())) for g in self.geoms])
        ratio = np.divide(self.sum_total, on_grid, out=np.ones(self.n), where=on_grid > 0)
        if self.grid.crs.is_projected:
            factor = self.grid.crs.axis_info[0].unit_conversion_factor if self.grid.crs.axis_info else 1.0
            ratio = np.where(on_grid > 0, ratio, factor * factor)
        return self.polygon_area * ratio

    def _grid_box(self):
        return shapely.box(*self.grid.bounds)


def _overlapping(geoms: np.ndarray) -> np.ndarray:
    """Mask of the polygons that share area with another one (touching edges do not count)."""
    out = np.zeros(len(geoms), bool)
    if len(geoms) < 2:
        return out
    tree = shapely.STRtree(geoms)
    for predicate in ("overlaps", "contains", "within"):
        a, b = tree.query(geoms, predicate=predicate)
        sel = a != b
        out[a[sel]] = True
        out[b[sel]] = True
    return out


def _label(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def zonal_stats(source, polygons: gpd.GeoSeries, stats=("mean",), *, band: int = 1, block: int = 1024,
                transform_values: Callable[[np.ndarray], np.ndarray] | None = None) -> pd.DataFrame:
    """Zonal statistics of ``source`` (a layers.raster.RasterSource or ArrayRaster: ``grid`` + ``read``) over
    ``polygons``. Returns one row per polygon (same index) with valid_share and the requested stats.

    ``polygons`` must be in the source grid's CRS (the store's zone); a mismatch raises CRSError.
    ``transform_values`` maps each block's values (e.g. reclassify) before accumulation.
    """
    for s in stats:
        if s not in STATS:
            raise ValueError(f"unknown statistic {s!r}; use one of {', '.join(STATS)}")
    if polygons.crs is None or not source.grid.crs.equals(polygons.crs):
        raise CRSError(f"zonal statistics: polygons are in {getattr(polygons.crs, 'name', None)!r} but the raster "
                       f"grid is in {source.grid.crs.name!r}; read both in the store's CRS")
    acc = ZonalAccumulator(polygons.values, source.grid, mean="mean" in stats,
                           classes=("majority" in stats or "share" in stats))
    for win in acc.blocks(block):
        values = source.read(win, indexes=band)
        if transform_values is not None:
            values = transform_values(values)
        acc.add(win, values)
    out = acc.result(stats)
    out.index = polygons.index
    return out

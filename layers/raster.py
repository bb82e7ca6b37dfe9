"""Raster roles (dem, image_before, image_after, landcover): open, validate the CRS, read windows in the
store's CRS.

A raster is never loaded whole. ``RasterSource`` opens a GeoTIFF (Cloud-Optimised or plain, tiled or striped)
and presents it on a *grid* in the vector layers' CRS:

- when the raster is already in the store's Gauss-Krüger zone, the grid is the raster's own and windows are
  read directly from the file (only the internal tiles a window touches are decoded);
- otherwise (EPSG:4490, another CGCS2000 zone, the prefixed zone) a rasterio ``WarpedVRT`` with an
  effectively exact transformer (error threshold 1e-6 pixel) defines a target-aligned grid in the store
  CRS, and each window read warps only the source pixels it needs.

``warp_bounds`` does the same for one area of interest with ``rasterio.warp.reproject`` of just the source
window that covers it (padded for the resampling kernel); it returns exactly the values a reprojection of the
whole raster onto the same grid would give (tested).

Only CGCS2000 rasters are accepted. A raster without a CRS takes the one the manifest gives (``crs:``); a raster
in another datum (Xian 1980, Beijing 1954, WGS 84, …) or an unidentifiable CRS is refused with a message that
says how to fix it. Analysis code (analysis/raster) receives these sources and reads windows through them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS
from rasterio.crs import CRS as RioCRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from .crs import DATUM_CGCS2000, datum_of, to_crs
from .errors import CRSError, SourceError

RASTER_ROLE_TITLES = {
    "dem": "数字高程模型 DEM (elevation, metres)",
    "image_before": "前时相影像 (earlier image)",
    "image_after": "后时相影像 (later image)",
    "landcover": "土地覆盖分类 (land-cover classes)",
}
CATEGORICAL_ROLES = {"landcover"}  # read with nearest resampling; others bilinear
DEFAULT_BLOCK = 1024
# Warp transformer error threshold, pixels: GDAL's approximate transformer then agrees with the exact one to
# far below float32 resolution (WarpedVRT refuses tolerance=0 with an explicit grid).
_EXACT = 1e-6


def _snap_down(v: float, res: float) -> float:
    return math.floor(v / res + 1e-9) * res


def _snap_up(v: float, res: float) -> float:
    return math.ceil(v / res - 1e-9) * res


def resampling_scale(src_crs: CRS, src_transform: Affine, width: int, height: int, dst_crs: CRS,
                     resolution: float) -> dict:
    """GDAL warp options XSCALE / YSCALE (destination pixels per source pixel) for the whole raster.

    GDAL otherwise estimates the resampling kernel's scale for each processing chunk from the chunk's shape, so
    a window warped alone could differ from the same window of a whole warp; fixing it once for the raster
    makes every window reproduce the whole warp."""
    left, bottom = src_transform @ (0, height)
    right, top = src_transform @ (width, 0)
    x0, y0, x1, y1 = transform_bounds(RioCRS.from_wkt(src_crs.to_wkt()), RioCRS.from_wkt(dst_crs.to_wkt()),
                                  min(left, right), min(bottom, top), max(left, right), max(bottom, top),
                                  densify_pts=51)
    return {"XSCALE": f"{(x1 - x0) / resolution / width:.12g}", "YSCALE": f"{(y1 - y0) / resolution / height:.12g}"}


def _resampling(name: str | Resampling) -> Resampling:
    if isinstance(name, Resampling):
        return name
    try:
        return Resampling[name]
    except KeyError:
        raise SourceError(f"unknown resampling {name!r}; use nearest, bilinear or cubic") from None


def check_raster_crs(crs, where: str) -> CRS:
    """Return the raster's CRS as a pyproj CRS if it is a CGCS2000 CRS, else raise CRSError naming the fix."""
    if crs is None or (isinstance(crs, RioCRS) and not crs.to_wkt()):
        raise CRSError(f"{where} has no CRS; set crs: EPSG:45xx (its CGCS2000 zone) or EPSG:4490 for it in the "
                       "manifest's rasters section")
    try:
        pcrs = CRS.from_user_input(crs.to_wkt() if isinstance(crs, RioCRS) else crs)
    except Exception as exc:  # pyproj's own CRSError is not ours
        raise CRSError(f"{where} has a CRS that cannot be identified ({exc}); set crs: EPSG:45xx in the manifest"
                       ) from None
    datum = datum_of(pcrs)
    if datum != DATUM_CGCS2000:
        found = f"{pcrs.name} ({datum})" if datum else f"{pcrs.name!r}, datum unknown"
        raise CRSError(f"{where} is in {found}; rasters must be in CGCS2000 (EPSG:4490 or a 3° zone such as "
                       "EPSG:4547): reproject it, e.g. gdalwarp -t_srs EPSG:4547, with the bureau's datum "
                       "parameters, or set its true CGCS2000 crs in the manifest if the file's is wrong")
    if not (pcrs.is_geographic or pcrs.is_projected):
        raise CRSError(f"{where}: CRS {pcrs.name!r} is neither geographic nor projected; give an EPSG code")
    return pcrs


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS, affine transform, size."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def res(self) -> tuple[float, float]:
        return abs(self.transform.a), abs(self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        x0, y0 = t.c, t.f
        x1, y1 = t @ (self.width, self.height)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def window_transform(self, window: Window) -> Affine:
        return self.transform @ Affine.translation(window.col_off, window.row_off)

    def window_for_bounds(self, bounds, pad: int = 0) -> Window | None:
        """Smallest whole-cell window covering ``bounds`` (+ ``pad`` cells), clipped to the grid; None if outside."""
        w = from_bounds(*bounds, transform=self.transform)
        c0 = math.floor(w.col_off + 1e-9) - pad
        r0 = math.floor(w.row_off + 1e-9) - pad
        c1 = math.ceil(w.col_off + w.width - 1e-9) + pad
        r1 = math.ceil(w.row_off + w.height - 1e-9) + pad
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, self.width), min(r1, self.height)
        if c1 <= c0 or r1 <= r0:
            return None
        return Window(c0, r0, c1 - c0, r1 - r0)

    def iter_windows(self, block: int = DEFAULT_BLOCK, within: Window | None = None) -> Iterator[Window]:
        """Row-major block windows of at most ``block`` × ``block`` cells covering the grid (or ``within``)."""
        base = within or Window(0, 0, self.width, self.height)
        r_end, c_end = int(base.row_off + base.height), int(base.col_off + base.width)
        for r in range(int(base.row_off), r_end, block):
            for c in range(int(base.col_off), c_end, block):
                yield Window(c, r, min(block, c_end - c), min(block, r_end - r))


def check_north_up(transform: Affine, where: str) -> None:
    if transform.b != 0 or transform.d != 0:
        raise SourceError(f"{where} has a rotated grid (transform {tuple(transform)[:6]}); warp it to a north-up "
                          "grid first (gdalwarp)")
    if transform.a <= 0 or transform.e >= 0:
        raise SourceError(f"{where} is not north-up (pixel size {transform.a}, {transform.e}); warp it first")


def target_grid(src_crs: CRS, src_transform: Affine, width: int, height: int, dst_crs: CRS,
                resolution: float | None = None) -> tuple[Affine, int, int]:
    """A target-aligned grid in ``dst_crs`` covering the source (like gdalwarp -tap): square cells, origin on a
    multiple of the cell size. ``resolution`` defaults to GDAL's estimate of the source's."""
    left, bottom = src_transform @ (0, height)
    right, top = src_transform @ (width, 0)
    src_bounds = (min(left, right), min(bottom, top), max(left, right), max(bottom, top))
    if resolution is None:
        tr, _, _ = calculate_default_transform(RioCRS.from_wkt(src_crs.to_wkt()), RioCRS.from_wkt(dst_crs.to_wkt()),
                                               width, height, *src_bounds)
        resolution = abs(tr.a)
        # round to 3 significant digits so that e.g. 9.9986 m becomes 10.0 m
        resolution = float(f"{resolution:.3g}")
    x0, y0, x1, y1 = transform_bounds(RioCRS.from_wkt(src_crs.to_wkt()), RioCRS.from_wkt(dst_crs.to_wkt()),
                                  *src_bounds, densify_pts=51)
    x0 = _snap_down(x0, resolution)
    y0 = _snap_down(y0, resolution)
    x1 = _snap_up(x1, resolution)
    y1 = _snap_up(y1, resolution)
    w = int(round((x1 - x0) / resolution))
    h = int(round((y1 - y0) / resolution))
    return Affine(resolution, 0.0, x0, 0.0, -resolution, y1), w, h


class _BoundsReader:
    grid: Grid  # set by the subclasses

    def read(self, window: Window, indexes=None) -> np.ndarray:
        raise NotImplementedError

    def read_bounds(self, bounds, pad: int = 0, indexes=None) -> tuple[np.ndarray, Affine, Window] | None:
        """Cells covering ``bounds`` (grid CRS) plus ``pad`` cells, with their transform and window."""
        window = self.grid.window_for_bounds(bounds, pad)
        if window is None:
            return None
        return self.read(window, indexes), self.grid.window_transform(window), window


class RasterSource(_BoundsReader):
    """A raster role opened for windowed reading on a grid in the store's CRS.

    ``read(window)`` returns float64 cells with NaN where the raster has no data (nodata, outside the source).
    Use as a context manager; nothing is read until a window is asked for.
    """

    def __init__(self, path: str | Path, target_crs=None, *, crs=None, role: str = "raster",
                 resampling: str | Resampling | None = None, resolution: float | None = None,
                 grid: Grid | None = None):
        self.path = Path(path)
        self.role = role
        where = f"raster {role!r} ({self.path})"
        if not self.path.is_file():
            raise SourceError(f"{where} does not exist; check rasters.{role}.path in the manifest")
        try:
            self.dataset = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise SourceError(f"{where} cannot be opened as a raster: {exc}") from None
        try:
            native = self.dataset.crs if crs is None else RioCRS.from_wkt(to_crs(crs).to_wkt())
            self.native_crs = check_raster_crs(native, where)
            check_north_up(self.dataset.transform, where)
            self.target_crs = self.native_crs if target_crs is None else to_crs(target_crs)
            if self.target_crs.is_geographic and target_crs is not None:
                raise CRSError(f"{where}: the target CRS must be projected (the store's zone), got "
                               f"{self.target_crs.name!r}")
            if resampling is None:
                resampling = "nearest" if role in CATEGORICAL_ROLES else "bilinear"
            self.resampling = _resampling(resampling)
            self.nodata = self.dataset.nodata
            self.count = self.dataset.count
            if grid is not None:
                self.target_crs = grid.crs
            own = Grid(self.native_crs, self.dataset.transform, self.dataset.width, self.dataset.height)
            self.warped = (not self.target_crs.equals(self.native_crs)
                           or (grid is not None and grid != own))
            if self.warped:
                if grid is not None:
                    tr, w, h = grid.transform, grid.width, grid.height
                else:
                    tr, w, h = target_grid(self.native_crs, self.dataset.transform, self.dataset.width,
                                           self.dataset.height, self.target_crs, resolution)
                src_crs = RioCRS.from_wkt(self.native_crs.to_wkt())
                self.scale = resampling_scale(self.native_crs, self.dataset.transform, self.dataset.width,
                                              self.dataset.height, self.target_crs, abs(tr.a))
                self.view = WarpedVRT(self.dataset, src_crs=src_crs, crs=RioCRS.from_wkt(self.target_crs.to_wkt()),
                                      transform=tr, width=w, height=h, resampling=self.resampling,
                                      tolerance=_EXACT, nodata=self._work_nodata(), src_nodata=self.nodata,
                                      **self.scale)
                self.grid = Grid(self.target_crs, tr, w, h)
            else:
                self.scale = {}
                self.view = self.dataset
                self.grid = Grid(self.native_crs, self.dataset.transform, self.dataset.width, self.dataset.height)
        except Exception:
            self.dataset.close()
            raise

    def _work_nodata(self):
        if self.nodata is not None:
            return self.nodata
        dtype = np.dtype(self.dataset.dtypes[0])
        if dtype.kind == "f":
            return float("nan")
        return np.iinfo(dtype).max if dtype.kind == "u" else np.iinfo(dtype).min

    # --- description ----------------------------------------------------------------------------
    @property
    def native_grid(self) -> Grid:
        return Grid(self.native_crs, self.dataset.transform, self.dataset.width, self.dataset.height)

    def describe(self) -> dict:
        ds = self.dataset
        return {
            "role": self.role, "path": str(self.path), "driver": ds.driver, "size": [ds.width, ds.height],
            "bands": ds.count, "dtype": ds.dtypes[0], "nodata": ds.nodata,
            "native_crs": self.native_crs.to_string(), "native_res": list(ds.res),
            "tiled": bool(ds.profile.get("tiled", False)),
            "block": list(ds.block_shapes[0]), "overviews": ds.overviews(1),
            "compression": ds.compression.value if ds.compression else None,
            "grid_crs": self.grid.crs.to_string(), "grid_res": list(self.grid.res),
            "grid_size": [self.grid.width, self.grid.height], "warped": self.warped,
        }

    # --- reading --------------------------------------------------------------------------------
    def read(self, window: Window | None = None, indexes=None, out_shape=None) -> np.ndarray:
        """Cells of ``window`` (on ``self.grid``) as float64, NaN for no data. ``indexes``: int or list
        (1-based band numbers); default all bands → 3-D array (bands, rows, cols); an int → 2-D."""
        window = window or Window(0, 0, self.grid.width, self.grid.height)
        kwargs = {"window": window, "masked": True}
        if out_shape is not None:
            kwargs["out_shape"] = out_shape
            kwargs["resampling"] = Resampling.average if self.role not in CATEGORICAL_ROLES else Resampling.mode
        data = self.view.read(indexes, **kwargs)
        out = data.astype("float64").filled(np.nan)
        return out

    def close(self):
        if self.view is not self.dataset:
            self.view.close()
        self.dataset.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ArrayRaster(_BoundsReader):
    """An in-memory raster with the RasterSource reading interface (tests, generated intermediates)."""

    def __init__(self, data: np.ndarray, transform: Affine, crs, role: str = "array"):
        self.data = np.asarray(data, dtype="float64")
        if self.data.ndim == 2:
            self.data = self.data[None]
        self.role = role
        self.count = self.data.shape[0]
        crs = to_crs(crs)
        self.native_crs = self.target_crs = crs
        self.grid = Grid(crs, transform, self.data.shape[2], self.data.shape[1])
        self.warped = False

    def read(self, window: Window | None = None, indexes=None, out_shape=None) -> np.ndarray:
        window = window or Window(0, 0, self.grid.width, self.grid.height)
        r0, c0 = int(window.row_off), int(window.col_off)
        block = self.data[:, r0:r0 + int(window.height), c0:c0 + int(window.width)]
        if indexes is None:
            return block.copy()
        if isinstance(indexes, int):
            return block[indexes - 1].copy()
        return block[[i - 1 for i in indexes]].copy()

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def open_raster(manifest, role: str, target_epsg: int | None = None, **kwargs) -> RasterSource:
    """Open the manifest's raster ``role`` on a grid in EPSG:``target_epsg`` (the store's zone)."""
    spec = manifest.rasters.get(role)
    if spec is None:
        raise SourceError(f"manifest {manifest.path} has no rasters.{role}; add it (path: {role}.tif)")
    return RasterSource(spec.path, None if target_epsg is None else f"EPSG:{target_epsg}", crs=spec.crs, role=role,
                        **kwargs)


def warp_bounds(dataset, bounds, dst_crs, resolution: float, *, resampling: str | Resampling = "bilinear",
                src_crs=None, pad: int = 4, indexes=None) -> tuple[np.ndarray, Affine]:
    """Reproject only the part of ``dataset`` needed to cover ``bounds`` (in ``dst_crs``) onto the target-aligned
    grid of cell size ``resolution``. Returns (float64 array (bands, rows, cols) with NaN for no data, transform).

    The source window is the bounds transformed back (densified edges) plus ``pad`` cells for the resampling
    kernel; the transformer is exact (no linear approximation) and the kernel scale is the whole raster's
    (``resampling_scale``), so the result equals a full reprojection with the same options.
    """
    dst = to_crs(dst_crs)
    src = check_raster_crs(dataset.crs if src_crs is None else to_crs(src_crs), f"raster {dataset.name}")
    x0, y0, x1, y1 = bounds
    x0 = _snap_down(x0, resolution)
    y0 = _snap_down(y0, resolution)
    x1 = _snap_up(x1, resolution)
    y1 = _snap_up(y1, resolution)
    dst_tr = Affine(resolution, 0, x0, 0, -resolution, y1)
    width, height = int(round((x1 - x0) / resolution)), int(round((y1 - y0) / resolution))
    src_rio = RioCRS.from_wkt(src.to_wkt())
    dst_rio = RioCRS.from_wkt(dst.to_wkt())
    sb = transform_bounds(dst_rio, src_rio, x0, y0, x1, y1, densify_pts=51)
    grid = Grid(src, dataset.transform, dataset.width, dataset.height)
    # a downsampling kernel spans (target cell / source cell) source cells: pad by twice that
    ratio = max((sb[2] - sb[0]) / grid.res[0] / max(width, 1), (sb[3] - sb[1]) / grid.res[1] / max(height, 1))
    window = grid.window_for_bounds(sb, max(pad, math.ceil(2 * ratio) + 2))
    bands = list(range(1, dataset.count + 1)) if indexes is None else (
        [indexes] if isinstance(indexes, int) else list(indexes))
    out = np.full((len(bands), height, width), np.nan)
    if window is None:
        return out, dst_tr
    src_data = dataset.read(bands, window=window, masked=True).astype("float64").filled(np.nan)
    scale = resampling_scale(src, dataset.transform, dataset.width, dataset.height, dst, resolution)
    reproject(src_data, out, src_transform=grid.window_transform(window), src_crs=src_rio, src_nodata=np.nan,
              dst_transform=dst_tr, dst_crs=dst_rio, dst_nodata=np.nan, resampling=_resampling(resampling),
              tolerance=0, **scale)
    return out, dst_tr

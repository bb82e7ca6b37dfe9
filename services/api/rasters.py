"""Imagery as raster tiles: the image pair (image_before / image_after) and an optional offline orthophoto
mosaic (``basemap``), read window by window from (Cloud-Optimised) GeoTIFF — decimated reads that use the COG's
overviews — and served as PNG tiles in WebMercatorQuad.

- ``GET /api/rasters`` — the served roles: title, acquisition date, CRS84 bounds, zoom range, tile URL template;
- ``GET /api/rasters/{role}/tiles/{z}/{x}/{y}.png`` — one 256 × 256 tile, transparent outside the data.

The rasters are named in the settings (``rasters: {role: path}``, ``yzt serve --raster ROLE=PATH``) or by the
``rasters:`` section of a region manifest (``--manifest``). Each must be in CGCS2000 (layers.raster rules: other
datums are refused at start). Red, green and blue are found by the file's colour interpretation (the sample's
4-band images are blue, green, red, near-infrared); each band is stretched linearly between its 2nd and 98th
percentiles, computed once per file. A COG's overviews serve the small zooms: only the internal tiles a request
touches are decoded. (rio-tiler was the first implementation; its per-tile WarpedVRT cost 250–450 ms per cold
tile on a COG here, mostly in building coordinate transformations, against ~15–40 ms for this.) Tiles are cached
in memory and carry ETags; access follows the OGC API's
(``anonymous_read``).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
import os
from pathlib import Path

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from layers.errors import NotFoundError, SourceError

from ..auth import identify
from ..errors import AuthenticationError, RequestError
from .models import BINARY
from .tiles import TileCache

LOGGER = logging.getLogger("yizhangtu.rasters")
TITLES = {"image_before": "前时相影像", "image_after": "后时相影像", "basemap": "正射影像底图"}
SERVED_ROLES = ("image_before", "image_after", "basemap")
TILE_SIZE = 256


class RasterInfo(BaseModel):
    role: str
    title: str
    date: str | None
    bounds: list[float]  # CRS84 lon/lat
    minzoom: int
    maxzoom: int
    tiles: str  # URL template {z}/{x}/{y}


class RasterList(BaseModel):
    rasters: list[RasterInfo]


def configured_rasters(settings) -> dict[str, Path]:
    """role → path from the manifest's rasters: section, then settings.rasters (which wins)."""
    out: dict[str, Path] = {}
    manifest = getattr(settings, "manifest", None)
    if manifest:
        from layers.manifest import load_manifest

        for role, spec in load_manifest(Path(manifest)).rasters.items():
            if role in SERVED_ROLES:
                out[role] = Path(spec.path)
    for role, path in (getattr(settings, "rasters", None) or {}).items():
        if role not in SERVED_ROLES:
            raise SourceError(f"raster role {role!r} is not served; roles: {', '.join(SERVED_ROLES)}")
        out[role] = Path(path)
    return out


class RasterLayer:
    """One raster role opened for tiles: the bands to show and their stretch are worked out once."""

    def __init__(self, role: str, path: Path):
        import rasterio
        from rasterio.warp import transform_bounds

        from layers.raster import check_raster_crs

        if not path.is_file():
            raise SourceError(f"raster {role!r}: file {path} does not exist; fix the path in the manifest or "
                              "--raster option")
        self.role, self.path = role, path
        with rasterio.open(path) as src:
            check_raster_crs(src.crs, f"raster {role!r} ({path.name})")
            interp = [c.name for c in src.colorinterp]
            self.date = src.tags().get("ACQUISITION_DATE")
            self.crs_wkt = src.crs.to_wkt()
            if all(c in interp for c in ("red", "green", "blue")):
                self.indexes = tuple(interp.index(c) + 1 for c in ("red", "green", "blue"))
            elif src.count >= 3:
                self.indexes = (1, 2, 3)
            else:
                self.indexes = (1,)
            w, s_, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
            self.bounds = [round(float(v), 8) for v in (w, s_, e, n)]
            res_m = abs(src.res[0]) * (111_320.0 if src.crs.is_geographic else 1.0)
            self.maxzoom = int(math.ceil(math.log2(156543.03 * math.cos(math.radians((s_ + n) / 2)) / res_m)))
            self.minzoom = max(0, self.maxzoom - int(math.log2(max(src.width, src.height) / 256)) - 1)
            # stretch: each band's 2nd and 98th percentile over a decimated read (overviews)
            scale = max(1.0, max(src.width, src.height) / 1024)
            shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
            data = src.read(self.indexes, out_shape=(len(self.indexes), *shape))
            mask = src.dataset_mask(out_shape=shape) > 0
        self.ranges = []
        for band in data:
            values = band[mask]
            lo, hi = (np.percentile(values, [2, 98]) if values.size else (0.0, 255.0))
            self.ranges.append((float(lo), float(hi)) if hi > lo else (0.0, 255.0))
        st = os.stat(path)
        self.stamp = f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"

    def tile_png(self, z: int, x: int, y: int) -> bytes | None:
        """PNG bytes of tile z/x/y (nearest neighbour, transparent outside the data), None when it misses the
        raster. The source is read decimated (GDAL picks the COG overview) over the tile's footprint only, and
        each tile pixel takes the source cell under its centre: PROJ carries the 65 536 centres in one call
        through a cached transformer (rio-tiler's per-tile WarpedVRT built its transformations anew each time:
        250–450 ms per cold tile here)."""
        import rasterio
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        from layers.store.tiles import tile_bounds

        minx, miny, maxx, maxy = tile_bounds(z, x, y)
        step = (maxx - minx) / TILE_SIZE
        centres = (np.arange(TILE_SIZE) + 0.5) * step
        gx, gy = np.meshgrid(minx + centres, maxy - centres)
        sx, sy = _transformer(self.crs_wkt).transform(gx.ravel(), gy.ravel())
        with rasterio.open(self.path) as src:
            col, row = ~src.transform @ (np.asarray(sx), np.asarray(sy))
            inside = (col >= 0) & (col < src.width) & (row >= 0) & (row < src.height)
            if not inside.any():
                return None
            c0, c1 = int(np.floor(col[inside].min())), int(np.floor(col[inside].max())) + 1
            r0, r1 = int(np.floor(row[inside].min())), int(np.floor(row[inside].max())) + 1
            w, h = c1 - c0, r1 - r0
            f = max(1.0, max(w, h) / (2 * TILE_SIZE))  # keep ≥ 2 source cells per tile pixel at most
            ow, oh = max(1, int(math.ceil(w / f))), max(1, int(math.ceil(h / f)))
            window = Window(c0, r0, w, h)
            data = src.read(self.indexes, window=window, out_shape=(len(self.indexes), oh, ow),
                            resampling=Resampling.nearest)
            valid = src.dataset_mask(window=window, out_shape=(oh, ow), resampling=Resampling.nearest) > 0
        ci = np.clip(((col - c0) * ow / w).astype(np.int64), 0, ow - 1)
        ri = np.clip(((row - r0) * oh / h).astype(np.int64), 0, oh - 1)
        alpha = (inside & valid[ri, ci]).reshape(TILE_SIZE, TILE_SIZE)
        bands = []
        for band, (lo, hi) in zip(data, self.ranges):
            v = band[ri, ci].reshape(TILE_SIZE, TILE_SIZE).astype(np.float32)
            bands.append(np.clip((v - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8))
        if len(bands) == 1:
            bands = bands * 3
        rgba = np.dstack([*bands, np.where(alpha, 255, 0).astype(np.uint8)])
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, format="PNG", compress_level=1)
        return buf.getvalue()


@functools.lru_cache(maxsize=16)
def _transformer(crs_wkt: str):
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:3857", crs_wkt, always_xy=True)


class RasterService:
    def __init__(self, settings):
        self.layers = {role: RasterLayer(role, path) for role, path in configured_rasters(settings).items()}
        self.cache = TileCache(64 * 1024 * 1024)

    def layer(self, role: str) -> RasterLayer:
        if role not in self.layers:
            served = ", ".join(sorted(self.layers)) or "none (give --manifest or --raster ROLE=PATH to yzt serve)"
            raise NotFoundError(f"raster {role!r} is not served; served: {served}")
        return self.layers[role]

    def tile(self, role: str, z: int, x: int, y: int) -> tuple[bytes, str] | None:
        from layers.store.tiles import check_tile

        check_tile(z, x, y)
        layer = self.layer(role)
        key = (role, layer.stamp, z, x, y)
        hit = self.cache.get(key)
        if hit is not None:
            return hit if hit[0] else None
        png = layer.tile_png(z, x, y)
        value = (png or b"", '"' + hashlib.blake2b(png or b"-", digest_size=12).hexdigest() + '"')
        self.cache.put(key, value)
        return value if png else None


def install(app: FastAPI, settings) -> None:
    service = RasterService(settings)
    app.state.rasters = service
    router = APIRouter(prefix="/api/rasters", tags=["影像 imagery"])

    def may_read(request: Request) -> None:
        if identify(request) is None and not settings.anonymous_read:
            raise AuthenticationError("imagery tiles need a token (anonymous_read is off); send Authorization: "
                                      "Bearer <token>")

    @router.get("", response_model=RasterList, summary="the imagery served as raster tiles")
    def rasters(request: Request):
        may_read(request)
        return {"rasters": [
            {"role": role, "title": TITLES.get(role, role), "date": lay.date, "bounds": lay.bounds,
             "minzoom": max(0, lay.minzoom - 6), "maxzoom": lay.maxzoom + 3,
             "tiles": f"/api/rasters/{role}/tiles/{{z}}/{{x}}/{{y}}.png"}
            for role, lay in sorted(service.layers.items())]}

    @router.get("/{role}/tiles/{z}/{x}/{y}.png", summary="one PNG tile (WebMercatorQuad) of a raster role",
                response_class=Response,
                responses={200: {"content": {"image/png": BINARY}}, 204: {"description": "no data in this tile"}})
    def raster_tile(role: str, z: int, x: int, y: int, request: Request):
        may_read(request)
        if request.query_params:
            raise RequestError(f"unknown query parameter(s) {', '.join(sorted(request.query_params))}")
        hit = service.tile(role, z, x, y)
        if hit is None:
            return Response(status_code=204)
        data, etag = hit
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="image/png", headers=headers)

    app.include_router(router)

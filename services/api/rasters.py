"""Imagery as raster tiles: the image pair (image_before / image_after) and an optional offline orthophoto
mosaic (``basemap``), read window by window from (Cloud-Optimised) GeoTIFF with rio-tiler and served as PNG
tiles in WebMercatorQuad.

- ``GET /api/rasters`` — the served roles: title, acquisition date, CRS84 bounds, zoom range, tile URL template;
- ``GET /api/rasters/{role}/tiles/{z}/{x}/{y}.png`` — one 256 × 256 tile, transparent outside the data.

The rasters are named in the settings (``rasters: {role: path}``, ``yzt serve --raster ROLE=PATH``) or by the
``rasters:`` section of a region manifest (``--manifest``). Each must be in CGCS2000 (layers.raster rules: other
datums are refused at start). Red, green and blue are found by the file's colour interpretation (the sample's
4-band images are blue, green, red, near-infrared); each band is stretched linearly between its 2nd and 98th
percentiles, computed once per file. A COG's overviews serve the small zooms: only the internal tiles a request
touches are decoded. Tiles are cached in memory and carry ETags; access follows the OGC API's
(``anonymous_read``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from layers.errors import NotFoundError, SourceError

from ..auth import identify
from ..errors import AuthenticationError, RequestError
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
    """One raster role opened for tiles: per-thread readers, band choice and stretch computed once."""

    def __init__(self, role: str, path: Path):
        import rasterio

        from layers.raster import check_raster_crs

        if not path.is_file():
            raise SourceError(f"raster {role!r}: file {path} does not exist; fix the path in the manifest or "
                              "--raster option")
        self.role, self.path = role, path
        with rasterio.open(path) as src:
            check_raster_crs(src.crs, f"raster {role!r} ({path.name})")
            interp = [c.name for c in src.colorinterp]
            self.date = src.tags().get("ACQUISITION_DATE")
            self.count = src.count
        if all(c in interp for c in ("red", "green", "blue")):
            self.indexes = tuple(interp.index(c) + 1 for c in ("red", "green", "blue"))
        elif self.count >= 3:
            self.indexes = (1, 2, 3)
        else:
            self.indexes = (1,)
        with self.reader() as r:
            b = r.get_geographic_bounds("epsg:4326")
            self.bounds = [round(float(v), 8) for v in b]
            self.minzoom, self.maxzoom = int(r.minzoom), int(r.maxzoom)
            stats = r.statistics(indexes=self.indexes, max_size=1024)
            self.ranges = [(float(s.percentile_2), float(s.percentile_98)) for s in stats.values()]
        st = os.stat(path)
        self.stamp = f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"

    def reader(self):
        """A rio-tiler Reader, opened per request (a local open costs ~1 ms; a dataset kept open per thread
        would be closed by the garbage collector in another thread, outside its GDAL environment)."""
        from rio_tiler.io import Reader

        return Reader(str(self.path))

    def tile_png(self, z: int, x: int, y: int) -> bytes | None:
        """PNG bytes of tile z/x/y, None when the tile lies outside the raster."""
        from rio_tiler.errors import TileOutsideBounds

        with self.reader() as r:
            try:
                img = r.tile(x, y, z, tilesize=TILE_SIZE, indexes=self.indexes)
            except TileOutsideBounds:
                return None
        data = img.data.astype("float32")
        for i, (lo, hi) in enumerate(self.ranges):
            span = hi - lo if hi > lo else 1.0
            data[i] = np.clip((data[i] - lo) / span * 255.0, 0, 255)
        from rio_tiler.models import ImageData

        out = ImageData(data.astype("uint8"), img.mask if hasattr(img, "mask") else None)
        return out.render(img_format="PNG")


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
                response_class=Response, responses={200: {"content": {"image/png": {}}}, 204: {}})
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

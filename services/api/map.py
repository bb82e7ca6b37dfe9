"""What the MapLibre page needs to build its style: ``GET /api/map``.

The vector layers (OGC API Tiles of the store's collections, in drawing order, with the zoom from which the
DLTB is drawn feature by feature), the 三调 colour table and its 一级 / 二级 legend (data/sandiao_colors.yaml),
the imagery served as raster tiles, the glyph URL and the region's extent (CRS84).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import Field

from ..jobs.colors import load_colors
from .models import Strict

# (collection, title, kind, on by default, properties kept in the tiles — None: all)
MAP_LAYERS = [
    ("dltb", "地类图斑", "landuse", True, ["BSM", "TBBH", "DLBM", "DLMC", "ZLDWDM", "ZLDWMC", "TBMJ", "QSXZ"]),
    ("ghfq", "规划分区", "zones", False, None),
    ("yjjbnt", "永久基本农田", "farmland", True, None),
    ("stbhhx", "生态保护红线", "redline", True, None),
    ("czkfbj", "城镇开发边界", "boundary", True, None),
    ("approvals", "批准用地", "approvals", True, None),
    ("parcels", "宗地", "parcels", False, None),
    ("monitoring", "监测图斑(原始)", "monitoring", False, None),
    ("cameras", "监控摄像头", "points", False, None),
    ("xzq", "行政区", "admin", True, ["XZQDM", "XZQMC", "XZQJB"]),
]


class MapConfig(Strict):
    layers: list[dict[str, Any]] = Field(description="vector layers in drawing order: name, title, kind, tile URL")
    bounds: list[float] | None = Field(description="CRS84 extent of the region (xzq, else dltb)")
    glyphs: str
    font: str
    colors: dict[str, str] = Field(description="三调 code → fill colour (data/sandiao_colors.yaml)")
    classes: list[dict[str, Any]] = Field(description="一级 / 二级 classes of the legend")
    color_source: str
    rasters: list[dict[str, Any]] = Field(description="imagery roles served as raster tiles")


def install(app: FastAPI, settings) -> None:
    router = APIRouter(prefix="/api", tags=["web"])

    @router.get("/map", summary="the map page's layers, colour table, imagery and extent", response_model=MapConfig)
    def map_config():
        ogc = getattr(app.state, "ogc", None)
        engine = ogc.state.service.reader if ogc is not None else None  # the store's layers as the OGC API reads them
        tiles = ogc.state.tiles if ogc is not None else None
        layers, bounds = [], None
        if engine is not None:
            engine.refresh()
            from services.ogc.crs import extent_crs84

            for name, title, kind, on, props in MAP_LAYERS:
                info = engine.layers.get(name)
                if info is None:
                    continue
                keep = [p for p in props if p in info.columns] if props else None
                layers.append({"name": name, "title": title, "kind": kind, "on": on,
                               "detail_zoom": tiles.detail_from(name) if tiles is not None else 0,
                               "tiles": f"{settings.ogc_prefix}/collections/{name}/tiles/WebMercatorQuad/"
                                        "{z}/{y}/{x}" + (f"?properties={','.join(keep)}" if keep else "")})
            for name in ("xzq", "dltb"):
                info = engine.layers.get(name)
                if info is not None and info.bounds:
                    bounds = [round(v, 7) for v in extent_crs84(info.bounds, engine.storage_epsg)]
                    break
        rasters = getattr(app.state, "rasters", None)
        colors = load_colors()
        return {
            "layers": layers, "bounds": bounds, "glyphs": "/glyphs/{fontstack}/{range}.pbf",
            "font": "Noto Sans CJK SC Regular",
            "colors": colors["colors"], "classes": colors["classes"], "color_source": colors["source"],
            "rasters": [{"role": r, "title": (lay.date and f"{_title(r)} {lay.date}") or _title(r),
                         "bounds": lay.bounds,
                         "minzoom": max(0, lay.minzoom - 6), "maxzoom": lay.maxzoom,
                         "tiles": f"/api/rasters/{r}/tiles/{{z}}/{{x}}/{{y}}.png"}
                        for r, lay in sorted((rasters.layers if rasters else {}).items())],
        }

    app.include_router(router)


def _title(role: str) -> str:
    from .rasters import TITLES

    return TITLES.get(role, role)

"""The web page: a map workbench (index.html), the indicator tables and charts (indicators.html) and a small
API reference (api.html), served by the app itself.

Our own HTML / JS / CSS live in services/web/static. Third-party code comes from npm packages installed at setup
(services/web/package.json + package-lock.json; ``npm ci`` in scripts/setup.sh) and is served straight from
services/web/node_modules/<package>/dist — never committed, never from a CDN. No internet tiles: the map draws
the store's own layers (OGC API vector tiles, services/api/tiles.py), the imagery the server holds
(services/api/rasters.py) and the flagged patches from /api/patches.

FastAPI's default /docs and /redoc pages load Swagger UI / ReDoc from a CDN; they are replaced by /api.html,
which renders /openapi.json with our own script. What the page needs to start comes from /api/config
(services/api/config.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from ..errors import error_body

LOGGER = logging.getLogger("yizhangtu.web")
WEB = Path(__file__).resolve().parent
STATIC = WEB / "static"
NODE_MODULES = WEB / "node_modules"
# URL under /vendor → folder inside node_modules (each the package's distribution folder only)
VENDOR = {"maplibre-gl": "maplibre-gl/dist", "chart.js": "chart.js/dist"}
PAGES = ("index.html", "indicators.html", "api.html")
# Layers the map offers (in drawing order), with their titles and styles; those absent from the store are skipped.
MAP_LAYERS: list[dict[str, Any]] = [
    {"name": "xzq", "title": "行政区", "style": {"color": "#555555", "weight": 1.2, "fill": False}, "on": True},
    {"name": "ghfq", "title": "规划分区", "style": {"color": "#7b6fb0", "weight": 0.6, "fillOpacity": 0.15}},
    {"name": "czkfbj", "title": "城镇开发边界", "style": {"color": "#d6604d", "weight": 1.5, "fill": False,
                                                     "dashArray": "6 4"}, "on": True},
    {"name": "yjjbnt", "title": "永久基本农田", "style": {"color": "#e6c229", "weight": 0.5, "fillOpacity": 0.3}},
    {"name": "stbhhx", "title": "生态保护红线", "style": {"color": "#1a9850", "weight": 0.8, "fillOpacity": 0.3}},
    {"name": "dltb", "title": "地类图斑", "style": {"color": "#999999", "weight": 0.3, "fillOpacity": 0.05},
     "min_zoom": 14},
    {"name": "approvals", "title": "批准用地", "style": {"color": "#2166ac", "weight": 1, "fillOpacity": 0.1}},
    {"name": "monitoring", "title": "监测图斑(原始)", "style": {"color": "#f46d43", "weight": 1, "fill": False}},
    {"name": "cameras", "title": "监控摄像头", "style": {"color": "#000000", "radius": 4}},
]

router = APIRouter(include_in_schema=False)


def assets_missing() -> list[str]:
    return [pkg for pkg, sub in VENDOR.items() if not (NODE_MODULES / sub).is_dir()]


def page(name: str):
    missing = assets_missing()
    if missing:
        return JSONResponse(error_body("AssetsMissing", f"the web page needs the npm packages {', '.join(missing)}: "
                                       "run scripts/setup.sh (npm ci in services/web)"), status_code=503)
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})


@router.get("/")
def index():
    return page("index.html")


@router.get("/docs")
def docs():
    return RedirectResponse("/api.html")


@router.get("/{name}.html")
def html(name: str):
    if f"{name}.html" not in PAGES:
        raise HTTPException(404)
    return page(f"{name}.html")


def install(app: FastAPI) -> None:
    """The pages, our static files and the vendored npm packages."""
    missing = assets_missing()
    if missing:
        LOGGER.warning("web: npm packages %s are not installed in %s; run scripts/setup.sh (npm ci)", missing,
                       NODE_MODULES)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for pkg, sub in VENDOR.items():
        folder = NODE_MODULES / sub
        if folder.is_dir():
            app.mount(f"/vendor/{pkg}", StaticFiles(directory=folder), name=f"vendor-{pkg}")

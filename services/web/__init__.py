"""The web page: a map workbench (index.html), the indicator tables and charts (indicators.html) and a small
API reference (api.html), served by the app itself.

Our own HTML / JS / CSS live in services/web/static. Third-party code comes from npm packages installed at setup
(services/web/package.json + package-lock.json; ``npm ci`` in scripts/setup.sh) and is served straight from
services/web/node_modules/<package>/dist — never committed, never from a CDN. No internet tiles: the map draws
the store's own layers (OGC API items, CRS84, bbox-limited) and the flagged patches from /api/patches.

FastAPI's default /docs and /redoc pages load Swagger UI / ReDoc from a CDN; they are replaced by /api.html,
which renders /openapi.json with our own script.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from starlette.staticfiles import StaticFiles

from .errors import error_body

LOGGER = logging.getLogger("yizhangtu.web")
WEB = Path(__file__).resolve().parent / "web"
STATIC = WEB / "static"
NODE_MODULES = WEB / "node_modules"
# URL under /vendor → folder inside node_modules (each the package's distribution folder only)
VENDOR = {"leaflet": "leaflet/dist", "chart.js": "chart.js/dist"}
PAGES = ("index.html", "indicators.html", "api.html")
# Layers the map offers (in drawing order), with their titles and styles; those absent from the store are skipped.
MAP_LAYERS = [
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


def assets_missing() -> list[str]:
    return [pkg for pkg, sub in VENDOR.items() if not (NODE_MODULES / sub).is_dir()]


def install(app: FastAPI, settings) -> None:
    missing = assets_missing()
    if missing:
        LOGGER.warning("web: npm packages %s are not installed in %s; run scripts/setup.sh (npm ci)", missing,
                       NODE_MODULES)
    # FastAPI's own /docs and /redoc load their scripts from a CDN: replace them by our offline page.
    app.router.routes[:] = [r for r in app.router.routes
                            if getattr(r, "path", None) not in ("/docs", "/docs/oauth2-redirect", "/redoc")]

    @app.get("/", include_in_schema=False)
    def index():
        return _page("index.html")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return RedirectResponse("/api.html")

    def _page(name: str):
        missing_now = assets_missing()
        if missing_now:
            return JSONResponse(error_body("AssetsMissing", f"the web page needs the npm packages "
                                           f"{', '.join(missing_now)}: run scripts/setup.sh (npm ci in "
                                           "services/web)"), status_code=503)
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    for name in PAGES:
        app.add_api_route(f"/{name}", (lambda n=name: _page(n)), methods=["GET"], include_in_schema=False)

    @app.get("/api/config", tags=["web"], summary="what the page needs to start: region, layers, OGC prefix")
    def config():
        bench = getattr(app.state, "workbench", None)
        store = bench.store if bench is not None else None
        meta, layers = {}, []
        if store is not None:
            try:
                meta = store.meta()
                present = set(store.layer_names())
                layers = [layer for layer in MAP_LAYERS if layer["name"] in present]
            except Exception as exc:  # noqa: BLE001 - a store not created yet: the page shows an empty map
                LOGGER.info("web: store not readable yet (%s)", exc)
        return {"region_code": meta.get("region_code"), "region_name": meta.get("region_name"),
                "epsg": meta.get("epsg"), "ogc_prefix": settings.ogc_prefix,
                "anonymous_read": settings.anonymous_read, "layers": layers,
                "analysis_run_id": meta.get("analysis_run_id")}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for pkg, sub in VENDOR.items():
        folder = NODE_MODULES / sub
        if folder.is_dir():
            app.mount(f"/vendor/{pkg}", StaticFiles(directory=folder), name=f"vendor-{pkg}")

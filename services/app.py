"""The application factory: one FastAPI app serving the OGC API (pygeoapi, mounted), the patch workbench,
the 合规性审查 service, the indicators API and the web page."""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from .settings import Settings

# the map page's routes (services/api/): imagery tiles, glyphs, 核查表 PDFs, review uploads, template exports
MAP_MODULES = ("api.rasters", "api.map", "api.glyphs", "api.search", "api.reports", "api.review_files", "api.exchange")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(title="yizhangtu 一张图", version="0.1.0")
    app.state.settings = settings
    # Each concern lives in its own module exposing `install(app, settings)`.
    for name in ("errors", "auth", "ogc", "workbench", "review", "indicators_api", *MAP_MODULES, "web"):
        try:
            module = importlib.import_module(f"services.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"services.{name}":
                continue
            raise
        module.install(app, settings)
    return app

"""The application factory: one FastAPI app serving the OGC API (pygeoapi, mounted), the HTTP API (workbench,
合规性审查, indicators) and the web page. Every part is installed explicitly, in this order:

1. errors   — the one table from exceptions to HTTP status and code (services/errors.py)
2. auth     — tokens and roles (services/auth.py); the gate in front of every request: tokens checked, bodies
               refused before they are read (services/gate.py)
3. ogc      — pygeoapi over our store, mounted at settings.ogc_prefix (services/ogc)
4. api      — the /api routers and the jobs they share (services/api)
5. web      — the pages and their static files (services/web)
"""

from __future__ import annotations

from fastapi import FastAPI

from . import api, auth, errors, gate, web
from .ogc.app import create_ogc_app
from .settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # FastAPI's own /docs and /redoc load their scripts from a CDN: the web page's /api.html replaces them
    app = FastAPI(title="yizhangtu 一张图", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.settings = settings
    errors.install(app)
    auth.install(app, settings)
    gate.install(app, settings)
    ogc = create_ogc_app(settings)
    app.state.ogc = ogc
    app.mount(settings.ogc_prefix, ogc)
    api.install(app, settings)
    web.install(app)
    return app

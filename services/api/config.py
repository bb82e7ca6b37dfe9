"""``GET /api/config``: what the web page needs to start — the region, the layers to draw, the OGC prefix."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter

from ..web import MAP_LAYERS
from .deps import AppSettings, Book
from .models import ERROR_RESPONSES, Strict

LOGGER = logging.getLogger("yizhangtu.web")
router = APIRouter(prefix="/api", tags=["web"], responses=ERROR_RESPONSES)


class WebConfig(Strict):
    region_code: str | None
    region_name: str | None
    epsg: str | None
    ogc_prefix: str
    anonymous_read: bool
    layers: list[dict[str, Any]]
    analysis_run_id: str | None


@router.get("/config", summary="what the page needs to start: region, layers, OGC prefix", response_model=WebConfig)
def config(settings: AppSettings, book: Book) -> dict:
    meta: dict = {}
    layers: list[dict] = []
    try:
        meta = book.store.meta()
        present = set(book.store.layer_names())
        layers = [layer for layer in MAP_LAYERS if layer["name"] in present]
    except Exception as exc:
        LOGGER.info("web: store not readable yet (%s)", exc)
    return {"region_code": meta.get("region_code"), "region_name": meta.get("region_name"),
            "epsg": meta.get("epsg"), "ogc_prefix": settings.ogc_prefix, "anonymous_read": settings.anonymous_read,
            "layers": layers, "analysis_run_id": meta.get("analysis_run_id")}

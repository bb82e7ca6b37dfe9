"""Export of flagged patches through a field-mapping template (services/jobs/exchange.py).

- ``GET /api/exchange`` [planner] — the templates (data/exchange/*.yaml) and their fields;
- ``GET /api/exchange/{template}`` [planner] — the patches matching the workbench filters (verdict, status, xzq,
  round …, as ``GET /api/patches``), written in the template's schema and format.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response

from ..jobs import exchange
from ..jobs.patches import PatchFilter
from .deps import Book, Planner, only_params
from .models import ERROR_RESPONSES, Strict
from .patches import Filters

router = APIRouter(prefix="/api/exchange", tags=["workbench 图斑核查"], responses=ERROR_RESPONSES)


class ExchangeTemplates(Strict):
    templates: list[dict[str, Any]]


@router.get("", summary="export templates (field mappings to exchange schemas)", response_model=ExchangeTemplates,
            dependencies=[Depends(only_params())])
def templates(who: Planner):
    return {"templates": [exchange.describe(exchange.load_template(t)) for t in exchange.list_templates()]}


@router.get("/{template}", summary="export the filtered patches through a template", response_class=Response,
            dependencies=[Depends(only_params(PatchFilter))],
            responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}})
def export(template: str, who: Planner, book: Book, filters: Filters):
    t = exchange.load_template(template)
    frame, p, idx = book.select(filters)
    rows = frame.iloc[idx].reset_index(drop=True)
    geoms = np.asarray(p.frame.geometry.values, dtype=object)[idx]
    gdf = exchange.apply_template(t, rows, geoms, p.frame.crs)
    data, media, ext = exchange.write(t, gdf)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(data, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="{t.layer}_{stamp}.{ext}"', "X-Records": str(len(gdf))})


def install(app: FastAPI, settings) -> None:
    app.include_router(router)

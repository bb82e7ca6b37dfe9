"""Export of flagged patches through a field-mapping template (services/jobs/exchange.py).

- ``GET /api/exchange`` [planner] — the templates (data/exchange/*.yaml) and their fields;
- ``GET /api/exchange/{template}`` [planner] — the patches matching the workbench filters (verdict, status, xzq,
  round …, as ``GET /api/patches``), written in the template's schema and format.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from ..auth import require
from ..settings import Principal
from ..workbench import LIST_PARAMS


def install(app: FastAPI, settings) -> None:
    from ..jobs import exchange

    router = APIRouter(prefix="/api/exchange", tags=["workbench 图斑核查"])

    @router.get("", summary="export templates (field mappings to exchange schemas)")
    def templates(who: Principal = Depends(require("planner"))):
        return {"templates": [exchange.describe(exchange.load_template(t)) for t in exchange.list_templates()]}

    @router.get("/{template}", summary="export the filtered patches through a template",
                response_class=Response)
    def export(template: str, request: Request, who: Principal = Depends(require("planner"))):
        t = exchange.load_template(template)
        bench = app.state.workbench
        frame, p, idx = bench.select(request, LIST_PARAMS - {"limit", "offset", "f"})
        rows = frame.iloc[idx].reset_index(drop=True)
        geoms = np.asarray(p.frame.geometry.values, dtype=object)[idx]
        gdf = exchange.apply_template(t, rows, geoms, p.frame.crs)
        data, media, ext = exchange.write(t, gdf)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return Response(data, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{t.layer}_{stamp}.{ext}"', "X-Records": str(len(gdf))})

    app.include_router(router)

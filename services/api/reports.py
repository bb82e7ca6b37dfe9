"""核查表 PDFs and evidence checks over HTTP.

- ``GET /api/patches/{jcbh}/report.pdf`` [planner] — the 卫片图斑实地核查表 of one patch (services/jobs/reports.py);
- ``GET /api/rounds/{round}/report.pdf`` [planner] — one PDF with the 核查表 of every patch of a round;
- ``GET /api/patches/{jcbh}/evidence-checks`` [planner] — EXIF time / position of each evidence photo, its
  distance to the patch and the flags (services/jobs/evidence.py).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from ..errors import refuse_unknown_params
from .deps import Planner
from .models import BINARY, Strict


class EvidenceChecks(Strict):
    JCBH: str
    max_distance_m: float
    max_age_days: int
    evidence: list[dict[str, Any]] = Field(description="per photo: evidence_id, EXIF time / position, distance to "
                                                       "the patch, flags and notes")


def _attachment(name: str) -> dict:
    ascii_name = re.sub(r"[^0-9A-Za-z._-]", "_", name)
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; "
                                   f"filename*=UTF-8''{urllib.parse.quote(name)}"}


def install(app: FastAPI, settings) -> None:
    router = APIRouter(prefix="/api", tags=["核查表 reports"])

    def bench():
        return app.state.patch_book

    def rasters():
        return getattr(app.state, "rasters", None)

    @router.get("/patches/{jcbh}/report.pdf", summary="the 卫片图斑实地核查表 of one patch (PDF)",
                response_class=Response, responses={200: {"content": {"application/pdf": BINARY}}})
    def patch_report(jcbh: str, request: Request, who: Planner):
        from ..jobs.reports import patch_report as build

        refuse_unknown_params(request.query_params, set())
        pdf, detail = build(bench(), rasters(), settings, jcbh, who)
        return Response(pdf, media_type="application/pdf", headers=_attachment(f"核查表_{detail['JCBH']}.pdf"))

    @router.get("/rounds/{round_name}/report.pdf", summary="the 核查表 of every patch of a round (one PDF)",
                response_class=Response, responses={200: {"content": {"application/pdf": BINARY}}})
    async def round_report(round_name: str, request: Request, who: Planner):
        from ..jobs.reports import round_report as build

        refuse_unknown_params(request.query_params, set())
        pdf, ids = await run_in_threadpool(build, bench(), rasters(), settings, round_name, who)
        headers = _attachment(f"核查表_批次_{round_name}.pdf")
        headers["X-Patches"] = ",".join(ids)
        return Response(pdf, media_type="application/pdf", headers=headers)

    @router.get("/patches/{jcbh}/evidence-checks", summary="EXIF time / position, distance and flags of each "
                                                          "evidence photo of a patch", response_model=EvidenceChecks)
    def evidence_checks(jcbh: str, request: Request, who: Planner):
        from ..jobs.reports import evidence_checks_for

        refuse_unknown_params(request.query_params, set())
        b = bench()
        d = b.detail(jcbh, who)
        frame, p = b.current()
        geom = p.frame.geometry.iloc[b.locate(d["JCBH"], frame)]
        checks = evidence_checks_for(b, settings, d, geom, p.epsg)
        return {"JCBH": d["JCBH"], "max_distance_m": settings.evidence_max_distance_m,
                "max_age_days": settings.evidence_max_age_days,
                "evidence": [{"evidence_id": k, **v} for k, v in checks.items()]}

    app.include_router(router)

"""合规性审查 over HTTP: ``POST /api/review`` with a GeoJSON polygon (CRS84 by default, or ``?crs=``) → its overlap
with the control lines, the planning zones and the current land use, with a pass / fail per rule
(services/jobs/review.py; rules in analysis/review.yaml). ``GET /api/review/rules``: the rules in effect."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from ..errors import RequestError, UnsupportedMediaType
from ..jobs.review import SUPPORTED
from .deps import AppSettings, Planner, Review, only_params, parse_json, read_body
from .models import ERROR_RESPONSES, Strict

router = APIRouter(prefix="/api", tags=["合规性审查"], responses=ERROR_RESPONSES)
BODY_TYPES = ("application/json", "application/geo+json", "text/plain", "application/x-www-form-urlencoded", "")


class ReviewRuleResult(Strict):
    id: str
    title: str
    layer: str
    measure: str
    value_m2: float | None
    limit_m2: float
    severity: str
    passed: bool | None = Field(description="None: not checked (the store lacks the layer)")
    result: str
    message: str


class ReviewSite(Strict):
    area_m2: float
    reviewed_area_m2: float
    area_outside_region_m2: float


class ReviewInput(Strict):
    crs: str
    axis_order: str
    vertices: int
    bbox_crs84: list[float]


class ReviewRegion(Strict):
    code: str | None
    name: str | None


class ReviewAnswer(Strict):
    site: ReviewSite
    overlaps: dict[str, dict[str, Any]] = Field(description="per layer: area, share, the features met")
    rules: list[ReviewRuleResult]
    passed: bool
    result: str = Field(description="通过 / 通过 (有提示) / 不通过 / 无法判断")
    failed: list[str]
    tolerance_m2: float
    rules_sha256: str
    input: ReviewInput
    region: ReviewRegion
    store_epsg: int


class ReviewRuleOut(Strict):
    id: str
    title: str
    layer: str
    measure: str
    max_m2: float
    severity: str
    zones: list[str]
    categories: list[str]


class ReviewRulesOut(Strict):
    tolerance_m2: float
    layers: dict[str, str]
    sha256: str
    rules: list[ReviewRuleOut]


@router.post("/review", summary="合规性审查 of a GeoJSON polygon (CRS84 by default, or ?crs=)",
             response_model=ReviewAnswer, dependencies=[Depends(only_params("crs"))],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/geo+json": {"schema": {"type": "object"}},
                 "application/json": {"schema": {"type": "object"}}}}})
async def review(request: Request, who: Planner, reviewer: Review, settings: AppSettings,
                 crs: str | None = Query(None, description=SUPPORTED)) -> dict:
    body = await read_body(request, settings.max_upload_bytes)
    ctype = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
    # curl -d sends application/x-www-form-urlencoded unless told otherwise: read it as the JSON it is
    if ctype not in BODY_TYPES:
        raise UnsupportedMediaType(f"content type {ctype!r}: send the GeoJSON as application/geo+json or "
                                   "application/json")
    if not body.strip():
        raise RequestError("the body is empty: send a GeoJSON Polygon, MultiPolygon, Feature or FeatureCollection")
    doc = parse_json(body)
    return await run_in_threadpool(reviewer.review, doc, crs)


@router.get("/review/rules", summary="the 合规性审查 rules in effect", response_model=ReviewRulesOut)
def review_rules(who: Planner, reviewer: Review) -> dict:
    r = reviewer.rules
    return {"tolerance_m2": r.tolerance_m2, "layers": r.layer_titles, "sha256": r.sha256(),
            "rules": [{"id": x.id, "title": x.title, "layer": x.layer, "measure": x.measure, "max_m2": x.max_m2,
                       "severity": x.severity, "zones": list(x.zones), "categories": list(x.categories)}
                      for x in r.rules]}

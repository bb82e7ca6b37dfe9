"""合规性审查 on the map: the review of a drawn polygon or an uploaded site file, with the overlapping pieces as
GeoJSON to draw, and the result as a PDF.

- ``POST /api/review/map`` — body: a GeoJSON polygon (as ``POST /api/review``, ``?crs=``), or multipart with
  ``file`` (a 界址点坐标 .txt or a zipped shapefile, services/jobs/sites.py) and optional ``crs``. Answer: the
  review (same as ``/api/review``), ``site`` (the polygon, CRS84) and ``pieces`` (a FeatureCollection, CRS84: the
  site ∩ 永久基本农田 / 生态保护红线, the part outside 城镇开发边界, the site ∩ restricted planning zones).
- ``POST /api/review/report.pdf`` — the same inputs → the 审查意见 PDF.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from layers.errors import GeometryError

from ..errors import PayloadTooLarge, RequestError
from ..jobs.review import _xy, parse_crs, parse_site
from .deps import Planner, parse_json
from .models import BINARY
from .review import ReviewAnswer

PIECE_LAYERS = {"yjjbnt": ("永久基本农田", "BSM"), "stbhhx": ("生态保护红线", "BSM"), "ghfq": ("规划分区", "GHFQDM")}


async def read_site(request: Request, limit: int) -> tuple[dict, str | None, dict]:
    """(GeoJSON, crs, info) from a JSON body or a multipart upload."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"the body is {int(length):,} bytes; the limit is {limit:,} (settings.max_upload_bytes)")
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    crs = request.query_params.get("crs")
    unknown = sorted(set(request.query_params) - {"crs"})
    if unknown:
        raise RequestError(f"unknown query parameter(s) {', '.join(unknown)}; this endpoint takes crs")
    if ctype == "multipart/form-data":
        from ..jobs.sites import parse_site_file

        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RequestError("multipart body without a file: send the site as file=<界址点 .txt or shapefile .zip>")
        data = await upload.read()
        if len(data) > limit:
            raise PayloadTooLarge(f"file {upload.filename!r} is larger than {limit:,} bytes")
        given = form.get("crs")
        crs = given if isinstance(given, str) and given else crs
        geometry, crs_name, info = await run_in_threadpool(parse_site_file, upload.filename or "", data, crs)
        info["filename"] = upload.filename
        return geometry, crs_name, info
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit:,} bytes (settings.max_upload_bytes)")
    if not body.strip():
        raise RequestError("the body is empty: send a GeoJSON polygon or a multipart file")
    doc = parse_json(body, "the body (GeoJSON)")
    return doc, crs, {"format": "GeoJSON (drawn or sent)"}


class ReviewMapAnswer(ReviewAnswer):
    """The 合规性审查 answer (as POST /api/review) with the overlap pieces to draw and where the site came from."""

    pieces: dict[str, Any] = Field(description="GeoJSON FeatureCollection (CRS84) of the overlap pieces per layer")
    source: dict[str, Any] = Field(description="how the site was given: drawn, 界址点 file or shapefile; its CRS")
    site_geojson: dict[str, Any] = Field(description="the site as a GeoJSON Feature (CRS84), to draw")


def review_with_pieces(reviewer, doc: dict, crs: str | None) -> tuple[dict, object]:
    """The review answer plus the site (CRS84) and its overlap pieces (CRS84); and the site in the store CRS."""
    from layers.store.tiles import transformer

    answer = reviewer.review(doc, crs)
    site, legacy = parse_site(doc)
    _, code = parse_crs(crs if crs is not None else legacy)
    epsg = reviewer.store.epsg
    site_xy, _ = _xy(site, code, epsg)
    tr = transformer(epsg, 4490)

    def lonlat(g):
        return shapely.transform(g, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))

    present = set(reviewer.store.layer_names())
    bbox = tuple(float(v) for v in site_xy.bounds)
    feats = []
    zones = {z for r in reviewer.rules.rules if r.measure == "zones" for z in r.zones}
    for layer, (title, id_col) in PIECE_LAYERS.items():
        if layer not in present:
            continue
        cols = [c for c in (id_col,) if c in reviewer.store.schema(layer)]
        frame = reviewer.store.read_layer(layer, bbox=bbox, columns=cols)
        for _, row in frame.iterrows():
            ident = str(row.get(id_col)) if id_col in frame.columns else ""
            if layer == "ghfq" and not ident.startswith(tuple(zones) or ("",)):
                continue
            piece = shapely.intersection(row.geometry, site_xy)
            if piece.is_empty or piece.area < 0.01:
                continue
            from layers.area import ellipsoidal_area

            area = float(ellipsoidal_area(np.array([piece], dtype=object), epsg)[0])
            feats.append({"type": "Feature", "geometry": shapely.geometry.mapping(lonlat(piece)),
                          "properties": {"layer": layer, "title": title, "id": ident, "area_m2": round(area, 2)}})
    if "czkfbj" in present:
        cz = reviewer.store.read_layer("czkfbj", bbox=bbox, columns=[])
        inside = shapely.union_all(np.asarray(cz.geometry.values, dtype=object)) if len(cz) else None
        outside = site_xy if inside is None else shapely.difference(site_xy, inside)
        if not outside.is_empty and outside.area >= 0.01:
            from layers.area import ellipsoidal_area

            area = float(ellipsoidal_area(np.array([outside], dtype=object), epsg)[0])
            feats.append({"type": "Feature", "geometry": shapely.geometry.mapping(lonlat(outside)),
                          "properties": {"layer": "czkfbj_outside", "title": "城镇开发边界外", "id": "",
                                         "area_m2": round(area, 2)}})
    answer["site_geojson"] = {"type": "Feature", "geometry": shapely.geometry.mapping(lonlat(site_xy)),
                              "properties": {"area_m2": answer["site"]["area_m2"]}}
    answer["pieces"] = {"type": "FeatureCollection", "features": feats}
    return answer, site_xy


def install(app: FastAPI, settings) -> None:
    router = APIRouter(prefix="/api/review", tags=["合规性审查"])

    def reviewer():
        r = getattr(app.state, "reviewer", None)
        if r is None:
            raise GeometryError("the review service is not available")
        return r

    @router.post("/map", summary="合规性审查 of a drawn polygon or an uploaded 界址点 / shapefile, with the "
                                 "overlap pieces to draw (CRS84)", response_model=ReviewMapAnswer)
    async def review_map(request: Request, who: Planner):
        doc, crs, info = await read_site(request, settings.max_upload_bytes)
        answer, _ = await run_in_threadpool(review_with_pieces, reviewer(), doc, crs)
        answer["source"] = info
        return answer

    @router.post("/report.pdf", summary="合规性审查 result as a PDF (same inputs as /api/review/map)",
                 response_class=Response, responses={200: {"content": {"application/pdf": BINARY}}})
    async def review_pdf(request: Request, who: Planner):
        from ..jobs.reports import review_report

        doc, crs, info = await read_site(request, settings.max_upload_bytes)
        r = reviewer()
        answer, site_xy = await run_in_threadpool(review_with_pieces, r, doc, crs)
        source = info.get("filename") or info.get("format", "")
        pdf = await run_in_threadpool(review_report, answer, site_xy, r.store, source)
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": 'attachment; filename="review.pdf"'})

    app.include_router(router)

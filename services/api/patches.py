"""The patch workbench (卫片图斑核查) over HTTP: list, inspect, judge and move flagged patches; evidence; exports.

Routes (all under /api; roles in brackets, see services/auth.py):

- ``GET  /api/patches`` [planner] — filters (jobs.patches.PatchFilter: verdict, status, judgement, xzq 乡/村 code,
  area range, round, source, bbox in CRS84, q, sort) + paging (limit / offset, total); ``f=json`` (default) or
  ``f=geojson`` (CRS84).
- ``GET  /api/patches/export`` [planner] — the same filters, ``format=gpkg|shp|xlsx``, ``encoding=utf-8|gbk``
  (shapefile only; zipped with .cpg).
- ``GET  /api/patches/{jcbh}`` [planner] — one patch: overlay breakdown, approvals, sources, workflow (allowed
  moves), evidence, full history; ``ETag: "<version>"``.
- ``POST /api/patches/{jcbh}/judgement`` [inspector] — ``{judgement, note}``; needs ``If-Match``.
- ``POST /api/patches/{jcbh}/transition`` [inspector; some moves admin] — ``{to, note, judgement?}``; If-Match.
- ``POST /api/patches/{jcbh}/evidence`` [inspector] — multipart photo + taken_at, lon, lat, azimuth; If-Match.
- ``GET  /api/evidence/{evidence_id}`` [planner] — the stored file.

Writes follow optimistic concurrency: the ETag of a patch is its version; a write must send it in If-Match
(428 without, 412 if somebody else changed the patch first — the body names who and when).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from layers.errors import NotFoundError

from ..errors import PayloadTooLarge, PreconditionRequired, RequestError, UnsupportedMediaType
from ..jobs.evidence import checks_for_upload
from ..jobs.patches import PatchBook, PatchFilter, geojson_geometry
from ..reports.patches import export_frame, export_gpkg, export_shp, export_xlsx
from ..settings import Principal
from .deps import AppSettings, Book, Inspector, Page, Planner, only_params
from .models import ERROR_RESPONSES, AuditEntry, Move, Strict

router = APIRouter(prefix="/api", tags=["workbench 图斑核查"], responses=ERROR_RESPONSES)

# Evidence: accepted file types, recognised by their first bytes (the declared content type is not trusted).
EVIDENCE_TYPES = {"image/jpeg": (b"\xff\xd8\xff", ".jpg"), "image/png": (b"\x89PNG\r\n\x1a\n", ".png"),
                  "image/webp": (b"RIFF", ".webp"), "application/pdf": (b"%PDF-", ".pdf")}
EXPORT_TYPES = {"gpkg": "application/geopackage+sqlite3", "shp": "application/zip",
                "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


# --- bodies -------------------------------------------------------------------------------------------------

class JudgementIn(Strict):
    judgement: str = Field(description="现场核查认定: 合法 / 违法 / 其他 (see GET /api/workflow)")
    note: str | None = Field(default=None, max_length=4000, description="说明: what was found on site")


class TransitionIn(Strict):
    to: str = Field(description="the target status, e.g. 立案")
    note: str | None = Field(default=None, max_length=4000)
    judgement: str | None = Field(default=None, description="only for moves that record a judgement")


class PatchItem(Strict):
    """A flagged patch in a list (the workflow columns are the state table's)."""

    JCBH: str
    case_id: str | None
    XZQDM: str | None
    village: str | None
    township_code: str | None
    township: str | None
    area_m2: float | None
    area_cultivated: float | None
    area_yjjbnt: float | None
    area_stbhhx: float | None
    area_outside_czkfbj: float | None
    area_approved: float | None
    approved_share: float | None
    orig_dlbm: str | None
    now_dlbm: str | None
    verdict: str | None
    verdict_zh: str | None
    status: str | None
    judgement: str | None
    version: int
    source_ids: list[Any]
    sources: list[Any]
    rounds: list[Any]
    n_sources: int | None
    updated_at: str | None
    updated_by: str | None
    bbox: list[float] | None = Field(description="CRS84 minlon, minlat, maxlon, maxlat")


class PatchList(Strict):
    total: int
    limit: int
    offset: int
    returned: int
    items: list[PatchItem]
    next_offset: int | None


class PatchFeature(Strict):
    type: Literal["Feature"]
    id: str
    geometry: dict[str, Any] | None
    properties: PatchItem


class PatchFeatures(Strict):
    """``f=geojson``: the page as a GeoJSON FeatureCollection in CRS84 (application/geo+json)."""

    type: Literal["FeatureCollection"]
    features: list[PatchFeature]
    numberMatched: int
    numberReturned: int


class Location(Strict):
    XZQDM: str | None
    village: str | None
    township_code: str | None
    township: str | None


class PatchWorkflowOut(Strict):
    status: str
    judgement: str | None
    version: int
    note: str | None
    status_since: str | None
    updated_at: str | None
    updated_by: str | None
    final: bool
    allowed_moves: list[Move]
    can_judge: bool


class EvidenceOut(Strict):
    evidence_id: str
    case_id: str | None
    JCBH: str | None
    kind: str | None
    filename: str | None
    content_type: str | None
    bytes: int | None
    sha256: str | None
    taken_at: str | None
    lon: float | None
    lat: float | None
    azimuth: float | None
    note: str | None
    uploaded_at: str | None
    uploaded_by: str | None
    url: str


class PatchDetail(Strict):
    JCBH: str
    case_id: str
    location: Location
    geometry: dict[str, Any] | None = Field(description="GeoJSON geometry in CRS84")
    bbox: list[float]
    breakdown: dict[str, Any] = Field(description="area, land use before, control lines, approvals, verdict")
    approvals: list[dict[str, Any]] = Field(description="the approvals behind the verdict, with their overlap_m2")
    sources: list[dict[str, Any]] = Field(description="the monitoring patches (or survey changes) merged into it")
    workflow: PatchWorkflowOut
    evidence: list[EvidenceOut]
    history: list[AuditEntry]
    properties: dict[str, Any] = Field(description="every column of flagged_patches")


class WriteResult(Strict):
    patch: PatchDetail
    audit: AuditEntry


# --- helpers ------------------------------------------------------------------------------------------------

def parse_if_match(value: str | None) -> int:
    if value is None:
        raise PreconditionRequired('this write needs If-Match: "<version>" — the ETag from GET /api/patches/{jcbh} — '
                                   "so that it cannot overwrite a change made by somebody else")
    text = value.strip()
    if text == "*":
        raise RequestError('If-Match: * is not accepted here; send the version you read: If-Match: "<version>"')
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit() or len(text) > 18:
        shown = value if len(value) <= 40 else value[:37] + "…"
        raise RequestError(f'If-Match {shown!r} is not a version; send If-Match: "<version>" (the ETag of the patch)')
    return int(text)


def parse_taken_at(raw: str) -> str:
    text = raw.strip()
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"taken_at={raw!r} is not an ISO 8601 time, e.g. 2024-06-30T10:15:00+08:00") from None
    if value.tzinfo is None:
        raise RequestError(f"taken_at={raw!r} has no time zone; add one, e.g. +08:00 (China Standard Time)")
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        raise RequestError(f"taken_at={raw!r} lies outside the years 1–9999 once in UTC") from None
    if utc.year < 1900:
        raise RequestError(f"taken_at={raw!r} is before 1900; give the time the photo was taken")
    if utc > dt.datetime.now(dt.UTC) + dt.timedelta(hours=1):
        raise RequestError(f"taken_at={raw!r} lies in the future")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _written(book: PatchBook, outcome, who: Principal, response: Response) -> dict:
    response.headers["ETag"] = f'"{outcome.state.version}"'
    return {"patch": book.detail(outcome.state.JCBH, who), "audit": outcome.audit}


IfMatch = Annotated[str | None, Header(alias="If-Match", description='the patch\'s ETag: "<version>"')]
Filters = Annotated[PatchFilter, Query()]


# --- routes -------------------------------------------------------------------------------------------------

@router.get("/patches", summary="list flagged patches with filters and paging", response_model=PatchList,
            dependencies=[Depends(only_params(PatchFilter, "limit", "offset", "f", "county"))],
            responses={200: {"content": {"application/geo+json": {"schema": PatchFeatures.model_json_schema()}}}})
def list_patches(who: Planner, book: Book, filters: Filters, page: Page,
                 f: Literal["json", "geojson"] = Query("json", description="json (items with properties) or geojson "
                                                                            "(CRS84 features)")):
    frame, p, idx = book.select(filters)
    total = len(idx)
    rows = idx[page.offset:page.offset + page.limit]
    items = [book.item(frame, p, int(i)) for i in rows]
    if f == "geojson":
        feats = [{"type": "Feature", "id": it["JCBH"], "geometry": geojson_geometry(p.crs84[int(i)]),
                  "properties": it} for it, i in zip(items, rows)]
        body = PatchFeatures.model_validate({"type": "FeatureCollection", "features": feats, "numberMatched": total,
                                             "numberReturned": len(feats)})
        return JSONResponse(body.model_dump(mode="json"), media_type="application/geo+json")
    more = page.offset + page.limit < total
    return {"total": total, "limit": page.limit, "offset": page.offset, "returned": len(items), "items": items,
            "next_offset": page.offset + page.limit if more else None}


@router.get("/patches/export", summary="export patches with their judgements (gpkg, shp zip, xlsx)",
            response_class=Response, dependencies=[Depends(only_params(PatchFilter, "format", "encoding", "county"))],
            responses={200: {"content": {media: {"schema": {"type": "string", "format": "binary"}}
                                         for media in EXPORT_TYPES.values()}}})
def export(request: Request, who: Planner, book: Book, filters: Filters,
           format: str = Query(..., description="gpkg, shp or xlsx"),
           encoding: str = Query("utf-8", description="shapefile text encoding: utf-8 or gbk")):
    if format not in EXPORT_TYPES:
        raise RequestError(f"format={format!r} is unknown; use gpkg, shp or xlsx")
    enc = encoding.strip().lower().replace("_", "-")
    enc = {"utf8": "utf-8", "cp936": "gbk", "gb2312": "gbk"}.get(enc, enc)
    if enc not in ("utf-8", "gbk"):
        raise RequestError(f"encoding={encoding!r} is unknown; use utf-8 or gbk")
    if enc != "utf-8" and format != "shp":
        raise RequestError(f"encoding={encoding!r} applies to format=shp only; {format} is always UTF-8")
    frame, p, idx = book.select(filters)
    gdf = export_frame(frame, p, idx)
    case_ids = [c for c in frame.iloc[idx]["case_id"].tolist() if c]
    history = pd.DataFrame(book.flow.history(case_ids, gdf["JCBH"].tolist()))
    if len(history):
        history = history.drop(columns=[c for c in ("before", "after") if c in history.columns])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(tempfile.mkdtemp(prefix="yzt-export-"))
    try:
        if format == "gpkg":
            path = export_gpkg(gdf, history, folder)
        elif format == "shp":
            path = export_shp(gdf, enc, folder)
        else:
            meta = {"导出时间(UTC)": stamp, "导出人": who.user, "筛选条件": dict(request.query_params),
                    "图斑数": len(gdf), "分析运行": p.key[0], "数据库": book.store.url}
            path = export_xlsx(gdf, history, meta, folder)
        data = path.read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    name = f"flagged_patches_{stamp}{path.suffix if format != 'shp' else f'_shp_{enc}.zip'}"
    return Response(data, media_type=EXPORT_TYPES[format],
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/patches/{jcbh}", summary="one patch: overlay breakdown, approvals, sources, workflow, history",
            response_model=PatchDetail, dependencies=[Depends(only_params("county"))])
def patch_detail(jcbh: str, who: Planner, book: Book, response: Response):
    body = book.detail(jcbh, who)
    response.headers["ETag"] = f'"{body["workflow"]["version"]}"'
    return body


@router.post("/patches/{jcbh}/judgement", summary="record the on-site judgement (待核查 → 已核查)",
             response_model=WriteResult)
def judge(jcbh: str, body: JudgementIn, who: Inspector, book: Book, response: Response, if_match: IfMatch = None):
    version = parse_if_match(if_match)
    outcome = book.flow.apply(jcbh, version, who, "judgement", judgement=body.judgement, note=body.note)
    return _written(book, outcome, who, response)


@router.post("/patches/{jcbh}/transition", summary="move a patch to another status", response_model=WriteResult)
def transition(jcbh: str, body: TransitionIn, who: Inspector, book: Book, response: Response,
               if_match: IfMatch = None):
    version = parse_if_match(if_match)
    outcome = book.flow.apply(jcbh, version, who, "transition", to=body.to, judgement=body.judgement, note=body.note)
    return _written(book, outcome, who, response)


@router.post("/patches/{jcbh}/evidence", summary="upload an evidence photo (time, position, azimuth)",
             response_model=WriteResult)
async def upload_evidence(jcbh: str, who: Inspector, book: Book, settings: AppSettings, response: Response,
                          if_match: IfMatch = None,
                          file: UploadFile = File(..., description="JPEG / PNG / WebP photo or PDF"),
                          taken_at: str = Form(..., description="ISO 8601 with time zone"),
                          lon: float = Form(..., ge=-180, le=180, description="CGCS2000 / WGS84 longitude"),
                          lat: float = Form(..., ge=-90, le=90),
                          azimuth: float | None = Form(None, ge=0, lt=360, description="degrees from north"),
                          note: str | None = Form(None, max_length=4000)):
    version = parse_if_match(if_match)
    stamp = parse_taken_at(taken_at)
    limit = settings.max_upload_bytes
    folder = Path(settings.evidence_dir)
    evidence_id = uuid.uuid4().hex
    head = await file.read(16)
    kind = next((t for t, (magic, _) in EVIDENCE_TYPES.items() if head.startswith(magic)
                 and (t != "image/webp" or head[8:12] == b"WEBP")), None)
    if kind is None:
        raise UnsupportedMediaType(f"file {file.filename!r} is not a JPEG, PNG, WebP photo or a PDF (by its "
                                   f"content; declared {file.content_type!r})")
    target_dir = folder / re.sub(r"[^0-9A-Za-z_-]", "_", jcbh)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{evidence_id}{EVIDENCE_TYPES[kind][1]}"
    digest = hashlib.sha256(head)
    size = len(head)
    tmp = target.with_suffix(".part")
    try:
        with open(tmp, "wb") as out:
            out.write(head)
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"file {file.filename!r} is larger than the limit of {limit:,} bytes "
                                          "(settings.max_upload_bytes)")
                digest.update(chunk)
                out.write(chunk)
        os.replace(tmp, target)
        meta = {"evidence_id": evidence_id, "kind": "photo" if kind.startswith("image/") else "document",
                "filename": file.filename, "path": str(target.relative_to(folder)), "content_type": kind,
                "bytes": size, "sha256": digest.hexdigest(), "taken_at": stamp, "lon": float(lon),
                "lat": float(lat), "azimuth": None if azimuth is None else float(azimuth), "note": note}
        # EXIF time / GPS, distance to the patch, period: a doubtful photo is flagged, never dropped
        checks = await run_in_threadpool(checks_for_upload, book, settings, jcbh, target, meta)
        meta["checks"] = checks  # type: ignore[assignment]  # the audit log keeps the checks as a nested record
        outcome = await run_in_threadpool(book.flow.apply, jcbh, version, who, "evidence", evidence=meta, note=note)
    except BaseException:
        for f in (tmp, target):
            with contextlib.suppress(OSError):
                f.unlink()
        with contextlib.suppress(OSError):  # a folder made for this upload alone goes too (a patch that does
            target_dir.rmdir()  # not exist must leave no trace); one holding other evidence stays (not empty)
        raise
    return await run_in_threadpool(_written, book, outcome, who, response)


@router.get("/evidence/{evidence_id}", summary="an evidence file", response_class=FileResponse,
            responses={200: {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                                         for t in EVIDENCE_TYPES}}})
def evidence_file(evidence_id: str, who: Planner, book: Book, settings: AppSettings):
    if not re.fullmatch(r"[0-9a-f]{32}", evidence_id):
        raise RequestError(f"evidence id {evidence_id!r} is malformed (32 hexadecimal digits)")
    item = book.flow.evidence_item(evidence_id)
    root = Path(settings.evidence_dir).resolve()
    path = (root / item["path"]).resolve()
    if root not in path.parents or not path.is_file():
        raise NotFoundError(f"the file of evidence {evidence_id} is missing from {root}")
    return FileResponse(path, media_type=item["content_type"], filename=item["filename"] or path.name,
                        headers={"X-Content-SHA256": item["sha256"]})


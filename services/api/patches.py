"""The patch workbench (卫片图斑核查): list, inspect, judge and move flagged patches; evidence; audit; exports.

Routes (all under /api; roles in brackets, see services/auth.py):

- ``GET  /api/patches`` [planner] — filters (verdict, status, judgement, xzq 乡/村 code, area range, round, source,
  bbox in CRS84, q) + paging (limit / offset, total) + sort; ``f=json`` (default) or ``f=geojson`` (CRS84).
- ``GET  /api/patches/export`` [planner] — the same filters, ``format=gpkg|shp|xlsx``, ``encoding=utf-8|gbk``
  (shapefile only; zipped with .cpg).
- ``GET  /api/patches/{jcbh}`` [planner] — one patch: overlay breakdown, approvals, sources, workflow (allowed
  moves), evidence, full history; ``ETag: "<version>"``.
- ``POST /api/patches/{jcbh}/judgement`` [inspector] — ``{judgement, note}``; needs ``If-Match``.
- ``POST /api/patches/{jcbh}/transition`` [inspector; some moves admin] — ``{to, note, judgement?}``; If-Match.
- ``POST /api/patches/{jcbh}/evidence`` [inspector] — multipart photo + taken_at, lon, lat, azimuth; If-Match.
- ``GET  /api/evidence/{evidence_id}`` [planner] — the stored file.
- ``GET  /api/audit`` [planner] — the audit log (newest first); ``GET /api/audit/verify`` [admin].
- ``GET  /api/workflow`` [open] — the state machine (statuses, judgements, moves) the page draws from.
- ``GET  /api/me`` [open] — who the presented token belongs to.

Writes follow optimistic concurrency: the ETag of a patch is its version; a write must send it in If-Match
(428 without, 412 if somebody else changed the patch first — the body names who and when).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from fastapi import APIRouter, Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from pyproj import Transformer

from analysis.judge import VERDICT_ZH
from analysis.workflow import Workflow, load_workflow
from layers.area import ellipsoidal_area
from layers.codes import SANDIAO_CODES
from layers.errors import EncodingError, NotFoundError
from layers.store import open_store

from .auth import RANK, optional_principal, require
from .errors import (
    PayloadTooLarge,
    error_response,
    PreconditionRequired,
    RequestError,
    UnsupportedMediaType,
    refuse_unknown_params,
)
from .settings import Principal
from .workflow_store import LAYER, WorkflowStore, open_workflow_store

LOGGER = logging.getLogger("yizhangtu.workbench")
SOURCES = ("satellite", "camera", "drone", "survey", "raster")
LIST_PARAMS = {"verdict", "status", "judgement", "xzq", "area_min", "area_max", "round", "source", "bbox", "q",
               "sort", "limit", "offset", "f"}
EXPORT_PARAMS = (LIST_PARAMS - {"limit", "offset", "f"}) | {"format", "encoding"}
SORT_KEYS = ("JCBH", "area_m2", "XZQDM", "status", "verdict", "updated_at", "approved_share", "area_cultivated")
LIST_FIELDS = ["JCBH", "case_id", "XZQDM", "village", "township_code", "township", "area_m2", "area_cultivated",
               "area_yjjbnt", "area_stbhhx", "area_outside_czkfbj", "area_approved", "approved_share", "orig_dlbm",
               "now_dlbm", "verdict", "verdict_zh", "status", "judgement", "version", "source_ids", "sources", "rounds",
               "n_sources", "updated_at", "updated_by"]
LIST_COLUMNS = ("source_ids", "sources", "rounds", "approval_ids", "orig_ids", "yjjbnt_ids", "stbhhx_ids",
                "czkfbj_ids")
# Evidence: accepted file types, recognised by their first bytes (the declared content type is not trusted).
EVIDENCE_TYPES = {"image/jpeg": (b"\xff\xd8\xff", ".jpg"), "image/png": (b"\x89PNG\r\n\x1a\n", ".png"),
                  "image/webp": (b"RIFF", ".webp"), "application/pdf": (b"%PDF-", ".pdf")}
MULTIPART_OVERHEAD = 64 * 1024  # form fields and boundaries on top of the file itself
# Shapefile field names (≤ 10 characters) of the export; fields.txt in the zip lists them with the full names.
SHP_FIELDS = {
    "JCBH": "JCBH", "case_id": "CASE_ID", "source_ids": "SRC_IDS", "sources": "SOURCES", "rounds": "ROUNDS",
    "n_sources": "N_SOURCES", "XZQDM": "XZQDM", "village": "XZQMC", "township": "XZMC", "area_m2": "AREA_M2",
    "area_cultivated": "AREA_CULT", "area_tiankan": "AREA_TK", "area_agri_other": "AREA_AGRI",
    "area_construction": "AREA_CONS", "area_unused": "AREA_UNUSE", "area_unclassified": "AREA_UNCL",
    "orig_dlbm": "ORIG_DLBM", "now_dlbm": "NOW_DLBM", "area_yjjbnt": "AREA_YJJBN", "area_stbhhx": "AREA_STBHH",
    "area_outside_czkfbj": "AREA_OUTCZ", "area_approved": "AREA_APPR", "area_compliant": "AREA_COMP",
    "approved_share": "APPR_SHARE", "approval_ids": "APPR_IDS", "verdict": "VERDICT", "verdict_zh": "VERDICT_ZH",
    "verdict_reason": "REASON", "status": "STATUS", "judgement": "JUDGEMENT", "version": "VERSION", "note": "NOTE",
    "updated_at": "UPD_AT", "updated_by": "UPD_BY", "run_id": "RUN_ID",
}
# Characters of our own texts that GBK lacks, and what the GBK shapefile writes instead.
GBK_SUBSTITUTES = {"m²": "平方米", "²": "2", "³": "3"}
XLSX_HEADERS = {
    "JCBH": "监测编号", "case_id": "案件编号", "XZQDM": "行政区代码(村)", "village": "村", "township": "乡镇",
    "area_m2": "图斑面积(m²)", "area_cultivated": "占耕地(m²)", "area_tiankan": "田坎(m²)",
    "area_agri_other": "其他农用地(m²)", "area_construction": "建设用地(m²)", "area_unused": "未利用地(m²)",
    "area_unclassified": "未分类(m²)", "orig_dlbm": "原地类", "now_dlbm": "现地类", "area_yjjbnt": "永久基本农田(m²)",
    "area_stbhhx": "生态保护红线内(m²)", "area_outside_czkfbj": "城镇开发边界外(m²)", "area_approved": "批准覆盖(m²)",
    "area_compliant": "临时/设施农用地覆盖(m²)", "approved_share": "批准覆盖比例", "approval_ids": "批准文号",
    "verdict": "预判(代码)", "verdict_zh": "预判结论", "verdict_reason": "预判理由", "status": "状态",
    "judgement": "核查认定", "version": "版本", "note": "最近说明", "updated_at": "最近更新(UTC)",
    "updated_by": "更新人", "sources": "来源", "rounds": "批次", "source_ids": "合并的监测编号", "n_sources": "来源数",
    "run_id": "分析运行",
}
EXPORT_COLUMNS = list(XLSX_HEADERS)


# --- parsing helpers ------------------------------------------------------------------------------------------

def parse_bbox(raw: str, name: str = "bbox") -> tuple[float, float, float, float]:
    """A CRS84 bbox 'minlon,minlat,maxlon,maxlat'; RequestError naming the value otherwise."""
    parts = [p.strip() for p in str(raw).split(",")]
    if len(parts) != 4:
        raise RequestError(f"{name}={raw!r} must be four numbers minlon,minlat,maxlon,maxlat (CRS84, degrees)")
    try:
        minx, miny, maxx, maxy = (float(p) for p in parts)
    except ValueError:
        raise RequestError(f"{name}={raw!r} must be four numbers minlon,minlat,maxlon,maxlat (CRS84, degrees)") \
            from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise RequestError(f"{name}={raw!r} must be finite numbers")
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise RequestError(f"{name}={raw!r} is outside longitude −180…180 / latitude −90…90; give "
                           "minlon,minlat,maxlon,maxlat in degrees (CRS84 order: longitude first)")
    if minx > maxx or miny > maxy:
        raise RequestError(f"{name}={raw!r}: minlon must be ≤ maxlon and minlat ≤ maxlat")
    return minx, miny, maxx, maxy


def _float(raw, name: str, lo: float | None = None, hi: float | None = None) -> float | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise RequestError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo if lo is not None else '−∞'} … {hi if hi is not None else '∞'}"
        raise RequestError(f"{name}={raw!r} is out of range: give a number in {rng}")
    return value


def _choices(raw: str | None, name: str, allowed: dict[str, str]) -> list[str] | None:
    """Comma-separated values, each a key or an alias in ``allowed`` (alias → key); RequestError otherwise."""
    if raw is None or raw.strip() == "":
        return None
    out = []
    for part in raw.split(","):
        part = part.strip()
        if part not in allowed:
            shown = sorted(set(allowed))
            raise RequestError(f"{name}={part!r} is unknown; use one or more (comma-separated) of {', '.join(shown)}")
        out.append(allowed[part])
    return out


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
    if not text.isdigit():
        raise RequestError(f'If-Match {value!r} is not a version; send If-Match: "<version>" (the ETag of the patch)')
    return int(text)


def _json_list(value) -> list:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, list):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return [value]
    return parsed if isinstance(parsed, list) else [parsed]


def _clean(value):
    """JSON-safe scalars: numpy → Python, NaN → None."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _round_coords(geoms: np.ndarray, decimals: int = 9) -> np.ndarray:
    return shapely.transform(geoms, lambda c: np.round(c, decimals))


@functools.lru_cache(maxsize=8)
def _lonlat_transformer(epsg: int) -> Transformer:
    # CGCS2000 (EPSG:4490) longitude/latitude, served as CRS84: the usual practice (domain.md §5), the
    # difference is centimetres; a CGCS2000 → WGS 84 datum lookup would only add PROJ's ballpark anyway.
    return Transformer.from_crs(epsg, 4490, always_xy=True)


def to_lonlat(geoms: np.ndarray, epsg: int) -> np.ndarray:
    """Geometries in the store CRS → lon/lat (CGCS2000 geographic, lon first)."""
    tr = _lonlat_transformer(int(epsg))
    return shapely.transform(np.asarray(geoms, dtype=object), lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))


def geojson_geometry(geom) -> dict | None:
    if geom is None or shapely.is_empty(geom):
        return None
    return json.loads(shapely.to_geojson(geom))


# --- the patches, read once per analysis run ------------------------------------------------------------------

@dataclass
class Patches:
    key: tuple
    frame: gpd.GeoDataFrame  # store CRS, every column of flagged_patches, lists parsed
    crs84: np.ndarray  # geometries in CRS84, rounded to 1e-8°
    units: dict[str, str]  # XZQDM → XZQMC
    epsg: int


class Workbench:
    """What the routes share: the store, the workflow, its persistence, and cached reads."""

    def __init__(self, settings):
        self.settings = settings
        self.store = open_store(settings.store)
        path = getattr(settings, "workflow_file", None)
        self.workflow: Workflow = load_workflow(path)
        self.flow: WorkflowStore = open_workflow_store(settings.store, self.workflow)
        self._lock = threading.Lock()
        self._patches: Patches | None = None
        self._units: tuple | None = None

    # --- reads ---------------------------------------------------------------------------------------
    def _key(self) -> tuple:
        meta = self.store.meta()
        return meta.get("analysis_run_id"), meta.get("last_load_id"), meta.get("epsg")

    def units(self) -> dict[str, str]:
        key = self.store.meta().get("last_load_id")
        if self._units is not None and self._units[0] == key:
            return self._units[1]
        names: dict[str, str] = {}
        if "xzq" in self.store.layer_names():
            schema = self.store.schema("xzq")
            if {"XZQDM", "XZQMC"} <= set(schema):
                frame = self.store.read_layer("xzq", columns=["XZQDM", "XZQMC"])
                names = {str(c): str(n) for c, n in zip(frame["XZQDM"], frame["XZQMC"]) if c is not None}
        self._units = (key, names)
        return names

    def patches(self) -> Patches:
        key = self._key()
        with self._lock:
            if self._patches is not None and self._patches.key == key:
                return self._patches
            if LAYER not in self.store.layer_names():
                raise NotFoundError(f"store {self.store.url} has no {LAYER} layer yet; run `yzt analyse --store "
                                    "STORE` after the ingest")
            frame = self.store.read_layer(LAYER)
            for col in LIST_COLUMNS:
                if col in frame.columns:
                    frame[col] = [_json_list(v) for v in frame[col]]
            epsg = frame.crs.to_epsg()
            geoms = np.asarray(frame.geometry.values, dtype=object)
            lonlat = _round_coords(to_lonlat(geoms, epsg))
            units = self.units()
            code = frame["XZQDM"].astype(str)
            frame["village"] = [units.get(c) for c in code]
            frame["township_code"] = [c[:9] if len(c) >= 9 else None for c in code]
            frame["township"] = [units.get(c[:9]) for c in code]
            self._patches = Patches(key, frame, lonlat, units, epsg)
            return self._patches

    def current(self) -> tuple[pd.DataFrame, Patches]:
        """The patches with the workflow columns from the state table (the truth)."""
        p = self.patches()
        frame = pd.DataFrame(p.frame.drop(columns=p.frame.geometry.name))
        return self.flow.effective(frame), p

    def locate(self, jcbh: str, frame: pd.DataFrame) -> int:
        hit = np.flatnonzero(frame["JCBH"].astype(str).to_numpy() == jcbh)
        if len(hit):
            return int(hit[0])
        for i, ids in enumerate(frame["source_ids"]):
            if jcbh in ids:
                return i
        raise NotFoundError(f"patch {jcbh!r} is not in {LAYER} (neither as JCBH nor as a merged source id)")

    # --- filtering -----------------------------------------------------------------------------------
    def select(self, request: Request, allowed: set[str]) -> tuple[pd.DataFrame, Patches, np.ndarray]:
        """(effective frame, patches, positional indices of the rows matching the filters, sorted)."""
        refuse_unknown_params(request.query_params, allowed)
        q = request.query_params
        frame, p = self.current()
        keep = np.ones(len(frame), dtype=bool)
        verdicts = _choices(q.get("verdict"), "verdict", {**{k: k for k in VERDICT_ZH},
                                                           **{v: k for k, v in VERDICT_ZH.items()}})
        if verdicts:
            keep &= frame["verdict"].isin(verdicts).to_numpy()
        statuses = _choices(q.get("status"), "status", {s: s for s in self.workflow.statuses} |
                            {v["en"]: s for s, v in self.workflow.statuses.items()})
        if statuses:
            keep &= frame["status"].isin(statuses).to_numpy()
        judgements = _choices(q.get("judgement"), "judgement", {j: j for j in self.workflow.judgements} |
                              {v: j for j, v in self.workflow.judgements.items()} | {"none": "", "无": ""})
        if judgements is not None:
            given = frame["judgement"].fillna("").astype(str)
            keep &= given.isin(judgements).to_numpy()
        xzq = q.get("xzq")
        if xzq:
            codes = [c.strip() for c in xzq.split(",") if c.strip()]
            for c in codes:
                if not re.fullmatch(r"\d{6}|\d{9}|\d{12}", c):
                    raise RequestError(f"xzq={c!r} must be a 6-digit county, 9-digit 乡镇 or 12-digit 村 code")
                if p.units and c not in p.units:
                    raise RequestError(f"xzq={c!r} is not a unit of this region; e.g. "
                                       f"{', '.join(sorted(k for k in p.units if len(k) == 9)[:5])}")
            keep &= frame["XZQDM"].astype(str).str.startswith(tuple(codes)).to_numpy()
        lo = _float(q.get("area_min"), "area_min", 0)
        hi = _float(q.get("area_max"), "area_max", 0)
        if lo is not None and hi is not None and lo > hi:
            raise RequestError(f"area_min={lo:g} is larger than area_max={hi:g}")
        area = frame["area_m2"].astype(float).to_numpy()
        if lo is not None:
            keep &= area >= lo
        if hi is not None:
            keep &= area <= hi
        rnd = q.get("round")
        if rnd:
            known = sorted({str(r) for rs in frame["rounds"] for r in rs})
            wanted = [r.strip() for r in rnd.split(",") if r.strip()]
            bad = [r for r in wanted if r not in known]
            if bad:
                raise RequestError(f"round={bad[0]!r} is not a round of these patches; rounds: {', '.join(known)}")
            keep &= np.array([bool(set(map(str, rs)) & set(wanted)) for rs in frame["rounds"]], dtype=bool)
        src = _choices(q.get("source"), "source", {s: s for s in SOURCES})
        if src:
            keep &= np.array([bool(set(map(str, ss)) & set(src)) for ss in frame["sources"]], dtype=bool)
        if q.get("bbox"):
            minx, miny, maxx, maxy = parse_bbox(q.get("bbox"))
            box = shapely.box(minx, miny, maxx, maxy)
            keep &= shapely.intersects(p.crs84, box)
        text = q.get("q")
        if text:
            text = text.strip()
            keep &= np.array([text in j or any(text in s for s in ids)
                              for j, ids in zip(frame["JCBH"].astype(str), frame["source_ids"])], dtype=bool)
        idx = np.flatnonzero(keep)
        sort = (q.get("sort") or "JCBH").strip()
        key = sort.lstrip("-+")
        if key not in SORT_KEYS:
            raise RequestError(f"sort={sort!r} is unknown; use one of {', '.join(SORT_KEYS)} (prefix - for "
                               "descending)")
        column = frame[key].iloc[idx]
        if key in ("area_m2", "approved_share", "area_cultivated"):
            values = pd.to_numeric(column, errors="coerce").fillna(-np.inf).to_numpy(dtype=float)
        else:
            values = column.fillna("").astype(str).to_numpy()
        ranked = np.argsort(values, kind="stable")
        if sort.startswith("-"):
            ranked = ranked[::-1]
        return frame, p, idx[ranked]

    # --- shaping ------------------------------------------------------------------------------------
    def item(self, frame: pd.DataFrame, p: Patches, i: int) -> dict:
        row = frame.iloc[i]
        out = {k: _clean(row.get(k)) if not isinstance(row.get(k), list) else row.get(k) for k in LIST_FIELDS}
        b = shapely.bounds(p.crs84[i])
        out["bbox"] = None if np.isnan(b).any() else [round(float(v), 8) for v in b]
        return out

    def detail(self, jcbh: str, who: Principal) -> dict:
        frame, p = self.current()
        i = self.locate(jcbh, frame)
        row = frame.iloc[i]
        geom = p.frame.geometry.iloc[i]
        props = {k: (v if isinstance(v, list) else _clean(v)) for k, v in row.items()}
        case_ids = [props.get("case_id") or props["JCBH"]]
        history = self.flow.history(case_ids, [props["JCBH"], *props.get("source_ids", [])])
        evidence = self.flow.evidence(sorted({h["case_id"] for h in history} | set(case_ids)))
        for e in evidence:
            e["url"] = f"/api/evidence/{e['evidence_id']}"
            e.pop("path", None)
        moves = self.workflow.allowed_moves(props["status"], props.get("judgement"), who.role) \
            if who.role in RANK else []
        def area(name):
            return _clean(row.get(name))
        breakdown = {
            "area_m2": area("area_m2"),
            "land_use_before": {
                "layer": props.get("orig_layer"), "cultivated": area("area_cultivated"),
                "tiankan": area("area_tiankan"), "agri_other": area("area_agri_other"),
                "construction": area("area_construction"), "unused": area("area_unused"),
                "unclassified": area("area_unclassified"),
                "orig_dlbm": props.get("orig_dlbm"), "orig_dlmc": SANDIAO_CODES.get(props.get("orig_dlbm") or ""),
                "orig_ids": props.get("orig_ids", []),
                "now_dlbm": props.get("now_dlbm"), "now_dlmc": SANDIAO_CODES.get(props.get("now_dlbm") or ""),
            },
            "control_lines": {
                "yjjbnt": {"area_m2": area("area_yjjbnt"), "ids": props.get("yjjbnt_ids", [])},
                "stbhhx": {"area_m2": area("area_stbhhx"), "ids": props.get("stbhhx_ids", [])},
                "czkfbj": {"area_outside_m2": area("area_outside_czkfbj"), "ids": props.get("czkfbj_ids", [])},
            },
            "approvals": {"area_approved_m2": area("area_approved"), "area_compliant_m2": area("area_compliant"),
                          "approved_share": area("approved_share"), "ids": props.get("approval_ids", [])},
            "verdict": props.get("verdict"), "verdict_zh": props.get("verdict_zh"),
            "verdict_reason": props.get("verdict_reason"),
        }
        b = shapely.bounds(p.crs84[i])
        return {
            "JCBH": props["JCBH"], "case_id": case_ids[0],
            "location": {"XZQDM": props.get("XZQDM"), "village": props.get("village"),
                         "township_code": props.get("township_code"), "township": props.get("township")},
            "geometry": geojson_geometry(p.crs84[i]), "bbox": [round(float(v), 8) for v in b],
            "breakdown": breakdown,
            "approvals": self._approvals(props.get("approval_ids", []), geom, p.epsg),
            "sources": self._sources(props.get("source_ids", []), props.get("sources", [])),
            "workflow": {
                "status": props["status"], "judgement": props.get("judgement"), "version": int(props["version"]),
                "note": props.get("note"), "status_since": props.get("status_since"),
                "updated_at": props.get("updated_at"), "updated_by": props.get("updated_by"),
                "final": self.workflow.statuses.get(props["status"], {}).get("final", False),
                "allowed_moves": [m.as_dict() for m in moves],
                "can_judge": any(m.judgement == "required" for m in moves),
            },
            "evidence": evidence,
            "history": history,
            "properties": {k: v for k, v in props.items() if k not in ("geometry",)},
        }

    def _approvals(self, ids: list[str], geom, epsg: int) -> list[dict]:
        if not ids or "approvals" not in self.store.layer_names():
            return []
        schema = self.store.schema("approvals")
        literal = ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids)
        conds = [f'"{c}" IN ({literal})' for c in ("PZWH", "DZJGH") if c in schema]
        if not conds:
            return []
        rows = self.store.read_layer("approvals", where=" OR ".join(conds))
        if len(rows) == 0:
            return []
        pieces = shapely.intersection(np.asarray(rows.geometry.values, dtype=object), geom)
        overlap = ellipsoidal_area(pieces, epsg)
        out = []
        for (_, r), a in zip(rows.iterrows(), overlap):
            rec = {k: _clean(v) for k, v in r.items() if k != rows.geometry.name}
            rec["overlap_m2"] = round(float(a), 2)
            out.append(rec)
        return out

    def _sources(self, ids: list[str], kinds: list[str]) -> list[dict]:
        found: dict[str, dict] = {}
        if ids and "monitoring" in self.store.layer_names():
            literal = ", ".join("'" + str(i).replace("'", "''") + "'" for i in ids)
            schema = self.store.schema("monitoring")
            cols = [c for c in ("JCBH", "SOURCE", "ROUND", "QSX", "HSX", "TBLX", "XZQDM", "MJ", "area_m2")
                    if c in schema]
            rows = self.store.read_layer("monitoring", columns=cols, where=f'"JCBH" IN ({literal})')
            for _, r in rows.iterrows():
                found[str(r["JCBH"])] = {k: _clean(r[k]) for k in cols}
        out = []
        for sid in ids:
            if sid in found:
                out.append({"id": sid, "layer": "monitoring", **found[sid]})
            else:
                out.append({"id": sid, "layer": "dltb_prev → dltb", "SOURCE": "survey",
                            "note": "变化图斑: 由上一年度与本年度地类图斑对比得到" if "survey" in kinds else
                            "not found in the monitoring layer"})
        return out


# --- exports ----------------------------------------------------------------------------------------------------

def _export_frame(frame: pd.DataFrame, p: Patches, idx: np.ndarray) -> gpd.GeoDataFrame:
    cols = [c for c in EXPORT_COLUMNS if c in frame.columns]
    out = frame.iloc[idx][cols].copy()
    for c in cols:
        if out[c].map(lambda v: isinstance(v, list)).any():
            out[c] = [json.dumps(v, ensure_ascii=False) for v in out[c]]
    out["version"] = out["version"].astype("int64")
    geoms = p.frame.geometry.values[idx]
    return gpd.GeoDataFrame(out.reset_index(drop=True), geometry=list(geoms), crs=p.frame.crs)


def _truncate_bytes(text: str, limit: int, encoding: str) -> str:
    data = text.encode(encoding)
    if len(data) <= limit:
        return text
    return data[:limit].decode(encoding, errors="ignore")


def export_gpkg(gdf: gpd.GeoDataFrame, history: pd.DataFrame, folder: Path) -> Path:
    import pyogrio

    path = folder / "flagged_patches.gpkg"
    pyogrio.write_dataframe(gdf, path, layer="flagged_patches", driver="GPKG", promote_to_multi=True)
    if len(history):
        pyogrio.write_dataframe(history, path, layer="workflow_history", driver="GPKG", append=False)
    return path


def export_shp(gdf: gpd.GeoDataFrame, encoding: str, folder: Path) -> Path:
    import pyogrio

    codec = {"utf-8": "UTF-8", "gbk": "GBK"}[encoding]
    out = gdf.rename(columns={c: SHP_FIELDS.get(c, c[:10]) for c in gdf.columns if c != "geometry"})
    for c in out.columns:
        if c == "geometry" or not (out[c].dtype == object or pd.api.types.is_string_dtype(out[c])):
            continue
        values = []
        for v in out[c]:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                values.append(None)
                continue
            text = str(v)
            if codec == "GBK":
                for plain, gbk in GBK_SUBSTITUTES.items():
                    text = text.replace(plain, gbk)
                try:
                    text.encode("gbk")
                except UnicodeEncodeError as exc:
                    raise EncodingError(f"field {c} value {text[:30]!r} has character {text[exc.start]!r} that GBK "
                                        "cannot encode; export with encoding=utf-8") from None
            values.append(_truncate_bytes(text, 254, "gbk" if codec == "GBK" else "utf-8"))
        out[c] = values
    shp_dir = folder / "shp"
    shp_dir.mkdir()
    pyogrio.write_dataframe(out, shp_dir / "flagged_patches.shp", driver="ESRI Shapefile", encoding=codec,
                            promote_to_multi=True)
    lines = ["shapefile field\tfull name\tdescription"] + [
        f"{SHP_FIELDS[c]}\t{c}\t{XLSX_HEADERS.get(c, '')}" for c in gdf.columns if c in SHP_FIELDS]
    lines.append("")
    lines.append(f"encoding: {codec} (see flagged_patches.cpg); text longer than 254 bytes is cut in the .dbf — "
                 "the full text is in the gpkg / xlsx exports")
    (shp_dir / "fields.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = folder / f"flagged_patches_shp_{encoding}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(shp_dir.iterdir()):
            zf.write(f, f.name)
    return path


def export_xlsx(gdf: gpd.GeoDataFrame, history: pd.DataFrame, meta: dict, folder: Path) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "图斑核查"
    cols = [c for c in EXPORT_COLUMNS if c in gdf.columns]
    ws.append([XLSX_HEADERS[c] for c in cols])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for _, r in gdf[cols].iterrows():
        ws.append([_clean(r[c]) for c in cols])
    for col, c in enumerate(cols, start=1):
        if c.startswith("area_"):
            for row in range(2, ws.max_row + 1):
                ws.cell(row, col).number_format = "0.00"
    ws.freeze_panes = "B2"
    hs = wb.create_sheet("操作记录")
    hcols = ["seq", "at", "user", "role", "action", "JCBH", "from_status", "to_status", "from_judgement",
             "to_judgement", "version_before", "version_after", "note", "evidence_id"]
    hs.append(["序号", "时间(UTC)", "用户", "角色", "操作", "监测编号", "原状态", "新状态", "原认定", "新认定", "原版本",
               "新版本", "说明", "举证"])
    for cell in hs[1]:
        cell.font = Font(bold=True)
    for _, r in history.iterrows():
        hs.append([_clean(r.get(c)) for c in hcols])
    info = wb.create_sheet("说明")
    for k, v in meta.items():
        info.append([k, v if isinstance(v, (str, int, float)) or v is None else json.dumps(v, ensure_ascii=False)])
    path = folder / "flagged_patches.xlsx"
    wb.save(path)
    return path


# --- request bodies ---------------------------------------------------------------------------------------------

class JudgementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    judgement: str = Field(description="现场核查认定: 合法 / 违法 / 其他 (see GET /api/workflow)")
    note: str | None = Field(default=None, max_length=4000, description="说明: what was found on site")


class TransitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(description="the target status, e.g. 立案")
    note: str | None = Field(default=None, max_length=4000)
    judgement: str | None = Field(default=None, description="only for moves that record a judgement")


# --- routes -------------------------------------------------------------------------------------------------------

def _write_response(bench: Workbench, outcome, who: Principal) -> JSONResponse:
    detail = bench.detail(outcome.state.JCBH, who)
    body = {"patch": detail, "audit": outcome.audit}
    return JSONResponse(body, headers={"ETag": f'"{outcome.state.version}"'})


def _parse_taken_at(raw: str) -> str:
    text = raw.strip()
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RequestError(f"taken_at={raw!r} is not an ISO 8601 time, e.g. 2024-06-30T10:15:00+08:00") from None
    if value.tzinfo is None:
        raise RequestError(f"taken_at={raw!r} has no time zone; add one, e.g. +08:00 (China Standard Time)")
    utc = value.astimezone(dt.timezone.utc)
    if utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1):
        raise RequestError(f"taken_at={raw!r} lies in the future")
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


class _UploadLimit:
    """Refuse an evidence upload by its Content-Length before the multipart body is read (plain ASGI
    middleware: nothing happens for any other request)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path.startswith("/api/patches/") and path.endswith("/evidence"):
                length = Request(scope).headers.get("content-length", "")
                if length.isdigit() and int(length) > self.limit + MULTIPART_OVERHEAD:
                    response = error_response(PayloadTooLarge(
                        f"the upload is {int(length):,} bytes; the limit is {self.limit:,} bytes per "
                        "file (settings.max_upload_bytes)"))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def install(app: FastAPI, settings) -> None:
    bench = Workbench(settings)
    app.state.workbench = bench
    try:  # repair the layer mirror if a re-analysis raced with a change (no write when all agree)
        fixed = bench.flow.sync_layer()
        if fixed:
            LOGGER.warning("workflow: %d flagged_patches rows re-synchronised from workflow_state", fixed)
    except Exception as exc:  # noqa: BLE001 - a store not written yet, or read-only: serving still works
        LOGGER.info("workflow: layer mirror not synchronised at start (%s)", exc)

    app.add_middleware(_UploadLimit, limit=settings.max_upload_bytes)

    router = APIRouter(prefix="/api", tags=["workbench 图斑核查"])
    planner, inspector, admin = require("planner"), require("inspector"), require("admin")

    @router.get("/me", summary="who the presented token belongs to")
    def me(who: Principal = Depends(optional_principal)):
        return {"user": who.user, "role": who.role, "can_judge": RANK.get(who.role, 0) >= RANK["inspector"]}

    @router.get("/workflow", summary="the status workflow: statuses, judgements, allowed moves")
    def workflow():
        return bench.workflow.as_dict()

    @router.get("/patches", summary="list flagged patches with filters and paging")
    def list_patches(request: Request, who: Principal = Depends(planner),
                     limit: int = Query(100, ge=1, le=settings.page_limit_max),
                     offset: int = Query(0, ge=0),
                     f: str = Query("json", pattern="^(json|geojson)$",
                                    description="json (items with properties) or geojson (CRS84 features)"),
                     verdict: str | None = Query(None, description="legal, partly_approved, suspected_illegal, other "
                                                                    "(or 合法 / 少批多占 / 未批先建 / 其他), comma-separated"),
                     status: str | None = Query(None, description="待核查, 已核查, 立案, 整改中, 已整改, 销号"),
                     judgement: str | None = Query(None, description="合法, 违法, 其他, none"),
                     xzq: str | None = Query(None, description="乡镇 (9-digit) or 村 (12-digit) code"),
                     area_min: str | None = Query(None, description="m²"),
                     area_max: str | None = Query(None, description="m²"),
                     round: str | None = Query(None, description="monitoring round, e.g. 2024-1"),
                     source: str | None = Query(None, description="satellite, camera, drone, survey, raster"),
                     bbox: str | None = Query(None, description="minlon,minlat,maxlon,maxlat (CRS84)"),
                     q: str | None = Query(None, description="part of a JCBH"),
                     sort: str | None = Query(None, description="JCBH, area_m2, … ; prefix - for descending")):
        frame, p, idx = bench.select(request, LIST_PARAMS)
        total = len(idx)
        page = idx[offset:offset + limit]
        items = [bench.item(frame, p, int(i)) for i in page]
        nxt = offset + limit < total
        if f == "geojson":
            feats = [{"type": "Feature", "id": it["JCBH"], "geometry": geojson_geometry(p.crs84[int(i)]),
                      "properties": it} for it, i in zip(items, page)]
            return JSONResponse({"type": "FeatureCollection", "features": feats, "numberMatched": total,
                                 "numberReturned": len(feats)}, media_type="application/geo+json")
        return {"total": total, "limit": limit, "offset": offset, "returned": len(items), "items": items,
                "next_offset": offset + limit if nxt else None}

    @router.get("/patches/export", summary="export patches with their judgements (gpkg, shp zip, xlsx)")
    def export(request: Request, who: Principal = Depends(planner),
               format: str = Query(..., description="gpkg, shp or xlsx"),
               encoding: str = Query("utf-8", description="shapefile text encoding: utf-8 or gbk")):
        if format not in ("gpkg", "shp", "xlsx"):
            raise RequestError(f"format={format!r} is unknown; use gpkg, shp or xlsx")
        enc = encoding.strip().lower().replace("_", "-")
        enc = {"utf8": "utf-8", "cp936": "gbk", "gb2312": "gbk"}.get(enc, enc)
        if enc not in ("utf-8", "gbk"):
            raise RequestError(f"encoding={encoding!r} is unknown; use utf-8 or gbk")
        if enc != "utf-8" and format != "shp":
            raise RequestError(f"encoding={encoding!r} applies to format=shp only; {format} is always UTF-8")
        frame, p, idx = bench.select(request, EXPORT_PARAMS)
        gdf = _export_frame(frame, p, idx)
        case_ids = [c for c in frame.iloc[idx]["case_id"].tolist() if c]
        history = pd.DataFrame(bench.flow.history(case_ids, gdf["JCBH"].tolist()))
        if len(history):
            history = history.drop(columns=[c for c in ("before", "after") if c in history.columns])
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        folder = Path(tempfile.mkdtemp(prefix="yzt-export-"))
        try:
            if format == "gpkg":
                path, media = export_gpkg(gdf, history, folder), "application/geopackage+sqlite3"
            elif format == "shp":
                path, media = export_shp(gdf, enc, folder), "application/zip"
            else:
                meta = {"导出时间(UTC)": stamp, "导出人": who.user, "筛选条件": dict(request.query_params),
                        "图斑数": len(gdf), "分析运行": p.key[0], "数据库": bench.store.url}
                path = export_xlsx(gdf, history, meta, folder)
                media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            data = path.read_bytes()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        name = f"flagged_patches_{stamp}{path.suffix if format != 'shp' else f'_shp_{enc}.zip'}"
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @router.get("/patches/{jcbh}", summary="one patch: overlay breakdown, approvals, sources, workflow, history")
    def patch_detail(jcbh: str, request: Request, who: Principal = Depends(planner)):
        refuse_unknown_params(request.query_params, set())
        body = bench.detail(jcbh, who)
        return JSONResponse(body, headers={"ETag": f'"{body["workflow"]["version"]}"'})

    @router.post("/patches/{jcbh}/judgement", summary="record the on-site judgement (待核查 → 已核查)")
    def judge(jcbh: str, body: JudgementIn, who: Principal = Depends(inspector),
              if_match: str | None = Header(None, alias="If-Match")):
        version = parse_if_match(if_match)
        outcome = bench.flow.apply(jcbh, version, who, "judgement", judgement=body.judgement, note=body.note)
        return _write_response(bench, outcome, who)

    @router.post("/patches/{jcbh}/transition", summary="move a patch to another status")
    def transition(jcbh: str, body: TransitionIn, who: Principal = Depends(inspector),
                   if_match: str | None = Header(None, alias="If-Match")):
        version = parse_if_match(if_match)
        outcome = bench.flow.apply(jcbh, version, who, "transition", to=body.to, judgement=body.judgement,
                                   note=body.note)
        return _write_response(bench, outcome, who)

    @router.post("/patches/{jcbh}/evidence", summary="upload an evidence photo (time, position, azimuth)")
    async def upload_evidence(jcbh: str, request: Request, who: Principal = Depends(inspector),
                              if_match: str | None = Header(None, alias="If-Match"),
                              file: UploadFile = File(..., description="JPEG / PNG / WebP photo or PDF"),
                              taken_at: str = Form(..., description="ISO 8601 with time zone"),
                              lon: float = Form(..., ge=-180, le=180, description="CGCS2000 / WGS84 longitude"),
                              lat: float = Form(..., ge=-90, le=90),
                              azimuth: float | None = Form(None, ge=0, lt=360, description="degrees from north"),
                              note: str | None = Form(None, max_length=4000)):
        version = parse_if_match(if_match)
        stamp = _parse_taken_at(taken_at)
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
            from starlette.concurrency import run_in_threadpool

            outcome = await run_in_threadpool(bench.flow.apply, jcbh, version, who, "evidence", evidence=meta,
                                              note=note)
        except BaseException:
            for f in (tmp, target):
                with contextlib.suppress(OSError):
                    f.unlink()
            raise
        return await run_in_threadpool(_write_response, bench, outcome, who)

    @router.get("/evidence/{evidence_id}", summary="an evidence file")
    def evidence_file(evidence_id: str, who: Principal = Depends(planner)):
        if not re.fullmatch(r"[0-9a-f]{32}", evidence_id):
            raise RequestError(f"evidence id {evidence_id!r} is malformed (32 hexadecimal digits)")
        item = bench.flow.evidence_item(evidence_id)
        root = Path(settings.evidence_dir).resolve()
        path = (root / item["path"]).resolve()
        if root not in path.parents or not path.is_file():
            raise NotFoundError(f"the file of evidence {evidence_id} is missing from {root}")
        return FileResponse(path, media_type=item["content_type"],
                            filename=item["filename"] or path.name,
                            headers={"X-Content-SHA256": item["sha256"]})

    @router.get("/audit", summary="the audit log, newest first")
    def audit(request: Request, who: Principal = Depends(planner),
              user: str | None = None, jcbh: str | None = None, action: str | None = None,
              since: str | None = Query(None, description="ISO 8601 UTC, e.g. 2024-07-01T00:00:00Z"),
              limit: int = Query(100, ge=1, le=settings.page_limit_max), offset: int = Query(0, ge=0)):
        refuse_unknown_params(request.query_params, {"user", "jcbh", "action", "since", "limit", "offset"})
        if action is not None and action not in ("judgement", "transition", "evidence"):
            raise RequestError(f"action={action!r} is unknown; use judgement, transition or evidence")
        if since is not None:
            try:
                since = dt.datetime.fromisoformat(since.replace("Z", "+00:00")).astimezone(dt.timezone.utc) \
                    .strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            except ValueError:
                raise RequestError(f"since={since!r} is not an ISO 8601 time") from None
        rows, total = bench.flow.audit(user=user, jcbh=jcbh, action=action, since=since, limit=limit, offset=offset)
        return {"total": total, "limit": limit, "offset": offset, "items": rows}

    @router.get("/audit/verify", summary="check the audit log's hash chain")
    def audit_verify(who: Principal = Depends(admin)):
        return bench.flow.verify_audit()

    for method in ("PUT", "PATCH", "DELETE"):  # the audit log cannot be edited or deleted through the API
        router.add_api_route("/audit", _read_only, methods=[method], include_in_schema=False)
        router.add_api_route("/audit/{seq}", _read_only, methods=[method], include_in_schema=False)

    app.include_router(router)


def _read_only(request: Request):
    return JSONResponse({"code": "MethodNotAllowed",
                         "description": f"{request.method} {request.url.path}: the audit log is append-only; "
                                        "it cannot be edited or deleted"},
                        status_code=405, headers={"Allow": "GET"})

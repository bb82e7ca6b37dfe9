"""The flagged patches as the workbench lists and shows them: filters, sorting, one patch with its overlay
breakdown, approvals, sources, workflow state, evidence and history. Read once per analysis run and held in
memory (a county has thousands of patches, not millions).

The filters are declared once, in :class:`PatchFilter`: the HTTP API takes them as query parameters (list and
export alike) and :meth:`PatchBook.select` checks and applies them, naming a bad value and the values allowed.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, Field
from pyproj import Transformer

from analysis.records import VERDICT_ZH
from analysis.workflow import Workflow
from layers.area import ellipsoidal_area
from layers.codes import SANDIAO_CODES
from layers.errors import FieldError, NotFoundError
from layers.store import Store
from layers.store.query import In, Or
from layers.store.workflow import LAYER

from ..plain import plain
from ..settings import RANK, Principal
from .workflow import PatchWorkflow

SOURCES = ("satellite", "camera", "drone", "survey", "raster")
SORT_KEYS = ("JCBH", "area_m2", "XZQDM", "status", "verdict", "updated_at", "approved_share", "area_cultivated")
LIST_FIELDS = ["JCBH", "case_id", "XZQDM", "village", "township_code", "township", "area_m2", "area_cultivated",
               "area_yjjbnt", "area_stbhhx", "area_outside_czkfbj", "area_approved", "approved_share", "orig_dlbm",
               "now_dlbm", "verdict", "verdict_zh", "status", "judgement", "version", "source_ids", "sources", "rounds",
               "n_sources", "updated_at", "updated_by"]
# columns the analysis stores as JSON text (flagged_patches, planning_conflicts) and the API serves as arrays
LIST_COLUMNS = ("source_ids", "sources", "rounds", "approval_ids", "orig_ids", "yjjbnt_ids", "stbhhx_ids",
                "czkfbj_ids", "left_ids", "right_ids")


class PatchFilter(BaseModel):
    """Which patches, in which order: every filter optional, several values comma-separated. Values are taken as
    the client wrote them; :meth:`PatchBook.select` checks them and names any it cannot use."""

    verdict: str | None = Field(None, description="legal, partly_approved, suspected_illegal, other "
                                                  "(or 合法 / 少批多占 / 未批先建 / 其他), comma-separated")
    status: str | None = Field(None, description="待核查, 已核查, 立案, 整改中, 已整改, 销号 (or their English names)")
    judgement: str | None = Field(None, description="合法, 违法, 其他, none")
    xzq: str | None = Field(None, description="乡镇 (9-digit) or 村 (12-digit) code")
    area_min: str | None = Field(None, description="m²")
    area_max: str | None = Field(None, description="m²")
    round: str | None = Field(None, description="monitoring round, e.g. 2024-1")
    source: str | None = Field(None, description="satellite, camera, drone, survey, raster")
    bbox: str | None = Field(None, description="minlon,minlat,maxlon,maxlat (CRS84)")
    q: str | None = Field(None, description="part of a JCBH")
    sort: str | None = Field(None, description=f"{', '.join(SORT_KEYS)}; prefix - for descending (default JCBH)")

    def given(self) -> dict[str, str]:
        """The filters the client gave (for an export's record of what was asked)."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


# --- parsing helpers ------------------------------------------------------------------------------------------

def parse_bbox(raw: str, name: str = "bbox") -> tuple[float, float, float, float]:
    """A CRS84 bbox 'minlon,minlat,maxlon,maxlat'; FieldError naming the value otherwise."""
    parts = [p.strip() for p in str(raw).split(",")]
    if len(parts) != 4:
        raise FieldError(f"{name}={raw!r} must be four numbers minlon,minlat,maxlon,maxlat (CRS84, degrees)")
    try:
        minx, miny, maxx, maxy = (float(p) for p in parts)
    except ValueError:
        raise FieldError(f"{name}={raw!r} must be four numbers minlon,minlat,maxlon,maxlat (CRS84, degrees)") \
            from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise FieldError(f"{name}={raw!r} must be finite numbers")
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise FieldError(f"{name}={raw!r} is outside longitude −180…180 / latitude −90…90; give "
                           "minlon,minlat,maxlon,maxlat in degrees (CRS84 order: longitude first)")
    if minx > maxx or miny > maxy:
        raise FieldError(f"{name}={raw!r}: minlon must be ≤ maxlon and minlat ≤ maxlat")
    return minx, miny, maxx, maxy


def _float(raw, name: str, lo: float | None = None, hi: float | None = None) -> float | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FieldError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo if lo is not None else '−∞'} … {hi if hi is not None else '∞'}"
        raise FieldError(f"{name}={raw!r} is out of range: give a number in {rng}")
    return value


def _choices(raw: str | None, name: str, allowed: dict[str, str]) -> list[str] | None:
    """Comma-separated values, each a key or an alias in ``allowed`` (alias → key); FieldError otherwise."""
    if raw is None or raw.strip() == "":
        return None
    out = []
    for part in raw.split(","):
        part = part.strip()
        if part not in allowed:
            shown = sorted(set(allowed))
            raise FieldError(f"{name}={part!r} is unknown; use one or more (comma-separated) of {', '.join(shown)}")
        out.append(allowed[part])
    return out


def json_list(value) -> list:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, list):
        return value
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return [value]
    return parsed if isinstance(parsed, list) else [parsed]


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


class PatchBook:
    """The flagged patches of one store with their workflow state: cached reads, filters, detail."""

    def __init__(self, flow: PatchWorkflow):
        self.flow = flow
        self.store: Store = flow.store
        self.workflow: Workflow = flow.workflow
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
                    frame[col] = [json_list(v) for v in frame[col]]
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
    def select(self, filters: PatchFilter) -> tuple[pd.DataFrame, Patches, np.ndarray]:
        """(effective frame, patches, positional indices of the rows matching the filters, sorted)."""
        q = filters.model_dump()
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
                    raise FieldError(f"xzq={c!r} must be a 6-digit county, 9-digit 乡镇 or 12-digit 村 code")
                if p.units and c not in p.units:
                    raise FieldError(f"xzq={c!r} is not a unit of this region; e.g. "
                                       f"{', '.join(sorted(k for k in p.units if len(k) == 9)[:5])}")
            keep &= frame["XZQDM"].astype(str).str.startswith(tuple(codes)).to_numpy()
        lo = _float(q.get("area_min"), "area_min", 0)
        hi = _float(q.get("area_max"), "area_max", 0)
        if lo is not None and hi is not None and lo > hi:
            raise FieldError(f"area_min={lo:g} is larger than area_max={hi:g}")
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
                raise FieldError(f"round={bad[0]!r} is not a round of these patches; rounds: {', '.join(known)}")
            keep &= np.array([bool(set(map(str, rs)) & set(wanted)) for rs in frame["rounds"]], dtype=bool)
        src = _choices(q.get("source"), "source", {s: s for s in SOURCES})
        if src:
            keep &= np.array([bool(set(map(str, ss)) & set(src)) for ss in frame["sources"]], dtype=bool)
        if filters.bbox:
            minx, miny, maxx, maxy = parse_bbox(filters.bbox)
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
            raise FieldError(f"sort={sort!r} is unknown; use one of {', '.join(SORT_KEYS)} (prefix - for "
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
        out = {k: plain(row.get(k)) if not isinstance(row.get(k), list) else row.get(k) for k in LIST_FIELDS}
        b = shapely.bounds(p.crs84[i])
        out["bbox"] = None if np.isnan(b).any() else [round(float(v), 8) for v in b]
        return out

    def detail(self, jcbh: str, who: Principal) -> dict:
        frame, p = self.current()
        i = self.locate(jcbh, frame)
        row = frame.iloc[i]
        geom = p.frame.geometry.iloc[i]
        props: dict[str, Any] = {k: (v if isinstance(v, list) else plain(v)) for k, v in row.items()}
        case_ids = [props.get("case_id") or props["JCBH"]]
        history = self.flow.history(case_ids, [props["JCBH"], *props.get("source_ids", [])])
        evidence = self.flow.evidence(sorted({h["case_id"] for h in history} | set(case_ids)))
        for e in evidence:
            e["url"] = f"/api/evidence/{e['evidence_id']}"
            e.pop("path", None)
        moves = self.workflow.allowed_moves(props["status"], props.get("judgement"), who.role) \
            if who.role in RANK else []
        def area(name):
            return plain(row.get(name))
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
        conds = [In(c, tuple(str(i) for i in ids)) for c in ("PZWH", "DZJGH") if c in schema]
        if not conds:
            return []
        rows = self.store.read_layer("approvals", where=conds[0] if len(conds) == 1 else Or(conds[0], conds[1]))
        if len(rows) == 0:
            return []
        pieces = shapely.intersection(np.asarray(rows.geometry.values, dtype=object), geom)
        overlap = ellipsoidal_area(pieces, epsg)
        out = []
        for (_, r), a in zip(rows.iterrows(), overlap):
            rec = {k: plain(v) for k, v in r.items() if k != rows.geometry.name}
            rec["overlap_m2"] = round(float(a), 2)
            out.append(rec)
        return out

    def _sources(self, ids: list[str], kinds: list[str]) -> list[dict]:
        found: dict[str, dict] = {}
        if ids and "monitoring" in self.store.layer_names():
            schema = self.store.schema("monitoring")
            cols: list[str] = [c for c in ("JCBH", "SOURCE", "ROUND", "QSX", "HSX", "TBLX", "XZQDM", "MJ", "area_m2")
                               if c in schema]
            rows = self.store.read_layer("monitoring", columns=cols, where=In("JCBH", tuple(str(i) for i in ids)))
            for _, r in rows.iterrows():
                found[str(r["JCBH"])] = {k: plain(r[k]) for k in cols}
        out = []
        for sid in ids:
            if sid in found:
                out.append({"id": sid, "layer": "monitoring", **found[sid]})
            else:
                out.append({"id": sid, "layer": "dltb_prev → dltb", "SOURCE": "survey",
                            "note": "变化图斑: 由上一年度与本年度地类图斑对比得到" if "survey" in kinds else
                            "not found in the monitoring layer"})
        return out


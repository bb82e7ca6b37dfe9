"""Pre-judgement of monitoring patches (卫片图斑预判): overlay each ground change with the earlier DLTB, the
control lines and the approvals; give it a verdict and the reason in words.

Pure functions: GeoDataFrames in (all in one CGCS2000 Gauss-Krüger CRS), a GeoDataFrame out. Every reported
area is ellipsoidal (layers.area.ellipsoidal_area) and unrounded here; the output layer rounds to 0.01 m².

Verdicts (the exact conditions are in docs/analysis.md; thresholds come from the rules file):

1. other — pseudo-change: patch area < pseudo_change.min_area_m2;
2. other — pseudo-change: the current DLTB keeps the earlier land class over ≥ unchanged_min_share of the
   patch (only when dltb_prev is given);
3. legal (合法): union of legal-kind approvals (农用地转用 / 土地征收 / 供地) covers ≥ legal_min_share;
4. other (合规): the union of all counted approvals (legal kinds ∪ 临时用地 / 设施农用地备案) covers
   ≥ legal_min_share;
5. partly_approved (少批多占): all counted approvals cover ≥ partial_min_share;
6. suspected_illegal (未批先建): otherwise.

judge_patches runs the stages in order — the land before the change (原地类), the land now, the control lines,
the approvals, the verdicts — each a function of its own below; the reason text is analysis/reasons.py and the
record's columns analysis/records.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from layers.area import ellipsoidal_area
from layers.errors import FieldError

from .codeset import SOURCE_CODES
from .common import (
    as_text,
    check_same_crs,
    dominant,
    geo,
    id_column,
    json_list,
    near,
    overlay,
    parse_dates,
    period_ends,
    village_codes,
)
from .cover import cover_by_union, village_by_largest_share
from .landuse import CATEGORIES, UNCLASSIFIED, kcxs_values, land_categories
from .reasons import Facts, verdict_reasons
from .records import ILLEGAL, INITIAL_STATUS, LEGAL, OTHER, PARTLY, VERDICT_ZH
from .rules import Rules

SHARE_TOLERANCE = 1e-9  # shares computed from areas: a share of exactly 0.95 must not fall to 0.9499999


# --- 1. the land before the change (原地类) ---------------------------------------------------------------

@dataclass
class Before:
    layer: gpd.GeoDataFrame  # the DLTB read as 原地类 (dltb_prev, else dltb), cut to the patches' surroundings
    name: str  # "dltb_prev" or "dltb"
    codes: np.ndarray  # the rules' codes of its patches
    kcxs: np.ndarray
    pieces: gpd.GeoDataFrame  # patch × layer pieces (geometry kept when the unchanged test needs it)
    with_geometry: bool
    left: np.ndarray  # patch of each piece
    piece_codes: np.ndarray
    piece_cats: np.ndarray
    piece_area: np.ndarray
    sums: dict[str, np.ndarray]  # net (田坎 deducted) area per land category, per patch
    tiankan: np.ndarray
    orig_dlbm: np.ndarray  # dominant rules' code
    orig_shown: np.ndarray  # dominant code as the layer writes it (用地用海 stays 用地用海)
    orig_ids: list[list[str]]
    xzqdm: np.ndarray


def land_before(geoms: np.ndarray, crs, patches: gpd.GeoDataFrame, layer: gpd.GeoDataFrame, name: str,
                rules: Rules, villages, need_geometry: bool, workers: int) -> Before:
    """原地类 breakdown of every patch, net of 田坎, by the rules' land categories; the village holding the
    largest share (DLTB 坐落, else the xzq villages, else the patch's own XZQDM)."""
    n = len(geoms)
    ids = id_column(layer, ("BSM",), name)
    codes = as_text(layer["DLBM"])
    shown = as_text(layer[SOURCE_CODES]) if SOURCE_CODES in layer.columns else codes
    kcxs = kcxs_values(layer, name, ids)
    village = (village_codes(layer["ZLDWDM"]) if "ZLDWDM" in layer.columns
               else np.array([""] * len(layer), dtype=object))
    pieces = overlay(geo(geoms, crs), layer.geometry, workers=workers, keep_geometry=need_geometry)
    pl = pieces["left"].to_numpy()
    pr = pieces["right"].to_numpy()
    pa = pieces["area_m2"].to_numpy(dtype=float)
    p_codes = codes[pr]
    p_cat = land_categories(p_codes, rules, name) if len(pr) else np.array([], dtype=object)
    k = kcxs[pr]
    net, tk = pa * (1.0 - k), pa * k
    sums = {c: np.bincount(pl[p_cat == c], net[p_cat == c], minlength=n).astype(float) for c in CATEGORIES}
    orig_ids: list[list[str]] = [[] for _ in range(n)]
    for left, bid in sorted(set(zip(pl.tolist(), ids[pr].tolist()))):
        orig_ids[left].append(bid)
    has_village = village[pr] != ""
    xzqdm = dominant(pl[has_village], village[pr][has_village], pa[has_village], n)
    missing = xzqdm == ""
    if missing.any() and villages is not None:
        xzqdm[missing] = village_by_largest_share(geoms[missing], crs, villages, workers)
        missing = xzqdm == ""
    if missing.any() and "XZQDM" in patches.columns:
        xzqdm[missing] = as_text(patches["XZQDM"])[missing]
    return Before(layer, name, codes, kcxs, pieces, need_geometry, pl, p_codes, p_cat, pa, sums,
                  np.bincount(pl, tk, minlength=n),
                  dominant(pl, p_codes, pa, n), dominant(pl, shown[pr], pa, n), orig_ids, xzqdm)


# --- 2. the land now, and the no-change test ------------------------------------------------------------------

def land_now(geoms: np.ndarray, crs, area: np.ndarray, before: Before, dltb: gpd.GeoDataFrame, has_prev: bool,
             workers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dominant current code in the rules' set, as the layer writes it, share of the patch whose land class
    did not change). Without an earlier year the 原地类 is the current one and the share is unknown (NaN)."""
    n = len(geoms)
    unchanged = np.full(n, np.nan)
    if not has_prev:
        return before.orig_dlbm.copy(), before.orig_shown.copy(), unchanged
    codes = as_text(dltb["DLBM"])
    shown = as_text(dltb[SOURCE_CODES]) if SOURCE_CODES in dltb.columns else codes
    if before.with_geometry and len(before.pieces):
        cur = overlay(before.pieces.geometry, dltb.geometry, workers=workers, keep_geometry=False)
        piece, right = cur["left"].to_numpy(), cur["right"].to_numpy()
        left = before.left[piece]
        ca = cur["area_m2"].to_numpy(dtype=float)
        same = before.piece_codes[piece] == codes[right]
        unchanged = np.divide(np.bincount(left[same], ca[same], minlength=n), area, out=np.zeros(n),
                              where=area > 0)
    else:
        cur = overlay(geo(geoms, crs), dltb.geometry, workers=workers, keep_geometry=False)
        left, right = cur["left"].to_numpy(), cur["right"].to_numpy()
        ca = cur["area_m2"].to_numpy(dtype=float)
    return dominant(left, codes[right], ca, n), dominant(left, shown[right], ca, n), unchanged


# --- 3. the control lines -------------------------------------------------------------------------------------

def line_cover(geoms: np.ndarray, crs, layer: gpd.GeoDataFrame | None, name: str,
               workers: int) -> tuple[np.ndarray, list[list[str]]]:
    """Area of each patch inside the union of a control line's polygons, and their BSM (zeros when absent)."""
    n = len(geoms)
    if layer is None:
        return np.zeros(n), [[] for _ in range(n)]
    area, ids, _ = cover_by_union(geoms, crs, layer, id_column(layer, ("BSM",), name), workers=workers)
    return area, ids


# --- 4. the approvals -------------------------------------------------------------------------------------------

@dataclass
class Cover:
    area_legal: np.ndarray  # under counted 农转用 / 征收 / 供地
    area_all: np.ndarray  # under every counted approval (legal ∪ compliant kinds)
    area_compliant: np.ndarray  # under counted 临时用地 / 设施农用地备案
    cultivated_approved: np.ndarray  # 耕地 (net of 田坎, earlier DLTB) under every counted approval
    approval_ids: list[list[str]]  # the counted approvals covering each patch
    late_ids: list[list[str]]  # approvals dated after the limit (not counted)


def approval_limits(patches: gpd.GeoDataFrame, rules: Rules, n: int) -> np.ndarray:
    """Latest approval date that counts, per patch (datetime64): survey_date, the 后时相 (a month-only one ends
    with its month), or no limit — approvals.date_rule."""
    survey = np.datetime64(pd.Timestamp(rules.survey_date).to_datetime64(), "ns")
    if rules.approval_date_rule == "any":
        return np.full(n, np.datetime64("2262-01-01", "ns"))
    limit = np.full(n, survey)
    if rules.approval_date_rule == "hsx" and "HSX" in patches.columns:
        hsx = period_ends(patches["HSX"].to_numpy()).to_numpy(dtype="datetime64[ns]")
        has = ~np.isnat(hsx)
        limit[has] = np.minimum(hsx[has], survey)
    return limit


def approval_cover(geoms: np.ndarray, crs, patches: gpd.GeoDataFrame, approvals: gpd.GeoDataFrame | None,
                   before: Before, rules: Rules, workers: int) -> Cover:
    """The union of the counted approvals over each patch — all kinds, the legal kinds, the compliant kinds —
    each approval counted only when dated on or before the patch's limit (undated ones always count)."""
    n = len(geoms)
    cover = Cover(np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), [[] for _ in range(n)],
                  [[] for _ in range(n)])
    if approvals is None or len(approvals) == 0:
        return cover
    if "PZLX" not in approvals.columns:
        raise FieldError("layer 'approvals' lacks PZLX (批准类型); map the approval kind field to PZLX")
    kinds = as_text(approvals["PZLX"])
    legal_kind = np.isin(kinds, list(rules.legal_kinds))
    counted = legal_kind | np.isin(kinds, list(rules.compliant_kinds))
    layer = approvals[counted]
    ids = id_column(approvals, ("PZWH", "DZJGH"), "approvals")[counted]
    dates = parse_dates(approvals["PZRQ"].to_numpy() if "PZRQ" in approvals.columns
                        else [None] * len(approvals))[counted].to_numpy()
    legal = legal_kind[counted]
    limit = approval_limits(patches, rules, n)
    late: list[set[str]] = [set() for _ in range(n)]

    def union_of(select: np.ndarray, want_geometry: bool = False, note_late: bool = False):
        sub_dates, sub_ids = dates[select], ids[select]
        dated = ~pd.isna(sub_dates)

        def on_time(li, ri):
            ok = ~dated[ri] | (sub_dates[ri] <= limit[li])
            if note_late:
                for left, right in zip(li[~ok].tolist(), ri[~ok].tolist()):
                    late[left].add(sub_ids[right])
            return ok

        return cover_by_union(geoms, crs, layer[select], sub_ids, pair_ok=on_time, workers=workers,
                              want_geometry=want_geometry)

    everything = np.ones(len(layer), dtype=bool)
    cover.area_all, cover.approval_ids, unions = union_of(everything, want_geometry=True, note_late=True)
    cover.late_ids = [sorted(x) for x in late]
    if legal.any():
        cover.area_legal = union_of(legal)[0]
    if (~legal).any():
        cover.area_compliant = union_of(~legal)[0]
    # 耕地 (net of 田坎) under the approved part: the rest of the patch's 耕地 is unapproved
    has = np.flatnonzero([g is not None for g in unions]) if unions is not None else np.zeros(0, dtype=int)
    if len(has):
        ap = overlay(geo(unions[has], crs), before.layer.geometry, workers=workers, keep_geometry=False)
        a_left, a_right = ap["left"].to_numpy(), ap["right"].to_numpy()
        cult = (land_categories(before.codes[a_right], rules, before.name) == "cultivated" if len(ap)
                else np.zeros(0, dtype=bool))
        net = ap["area_m2"].to_numpy(dtype=float) * (1.0 - before.kcxs[a_right])
        cover.cultivated_approved[has] = np.bincount(a_left[cult], net[cult], minlength=len(has))
    return cover


# --- 5. the verdicts ----------------------------------------------------------------------------------------

def verdicts(area: np.ndarray, unchanged: np.ndarray, share_legal: np.ndarray, share_all: np.ndarray,
             rules: Rules) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The verdict of every patch: the first rule of the module docstring that holds; and which rules held."""
    tol = SHARE_TOLERANCE
    flags = {
        "small": np.round(area, 2) < rules.pseudo_min_area_m2,  # compared as reported: to 0.01 m²
        "same": (~np.isnan(unchanged)) & (rules.unchanged_min_share is not None)
        & (np.nan_to_num(unchanged) >= (rules.unchanged_min_share or 2.0) - tol),
        "legal": share_legal >= rules.legal_min_share - tol,
        "covered": share_all >= rules.legal_min_share - tol,
        "partly": share_all >= rules.partial_min_share - tol,
    }
    verdict = np.select([flags["small"], flags["same"], flags["legal"], flags["covered"], flags["partly"]],
                        [OTHER, OTHER, LEGAL, OTHER, PARTLY], ILLEGAL)
    return verdict, flags


# --- the judgement ---------------------------------------------------------------------------------------

def judge_patches(patches: gpd.GeoDataFrame, *, dltb: gpd.GeoDataFrame, rules: Rules,
                  dltb_prev: gpd.GeoDataFrame | None = None, approvals: gpd.GeoDataFrame | None = None,
                  yjjbnt: gpd.GeoDataFrame | None = None, stbhhx: gpd.GeoDataFrame | None = None,
                  czkfbj: gpd.GeoDataFrame | None = None, villages: gpd.GeoDataFrame | None = None,
                  workers: int = 2) -> gpd.GeoDataFrame:
    """Judge each ground change (one row of ``patches``) and return the flagged_patches rows.

    ``patches``: JCBH, geometry; optional source_ids / sources / rounds (JSON lists, from dedupe), SOURCE,
    ROUND, HSX (后时相, used by approvals.date_rule = hsx), XZQDM (fallback village code).
    ``dltb``: current DLTB (BSM, DLBM, ZLDWDM, KCXS). ``dltb_prev``: the DLTB before the change; when absent
    the 原地类 is read from ``dltb`` and the reason says so.
    ``approvals``: PZWH (or DZJGH), PZLX, PZRQ. ``villages``: xzq village rows (fallback for XZQDM).
    """
    crs = patches.crs
    check_same_crs(crs, dltb=dltb, dltb_prev=dltb_prev, approvals=approvals, yjjbnt=yjjbnt, stbhhx=stbhhx,
                   czkfbj=czkfbj, villages=villages)
    if "JCBH" not in patches.columns:
        raise FieldError("patches lack the JCBH column (监测编号); map the monitoring layer's id to JCBH")
    n = len(patches)
    geoms = np.asarray(patches.geometry.values)
    area = ellipsoidal_area(geoms, crs) if n else np.zeros(0)
    # only the survey patches near the ground changes matter: cut the (county-size) DLTB layers down first
    dltb = near(dltb, geoms)
    dltb_prev = near(dltb_prev, geoms)
    has_prev = dltb_prev is not None
    before = land_before(geoms, crs, patches, dltb_prev if has_prev else dltb, "dltb_prev" if has_prev else "dltb",
                         rules, villages, need_geometry=has_prev and rules.unchanged_min_share is not None,
                         workers=workers)
    now_dlbm, now_shown, unchanged = land_now(geoms, crs, area, before, dltb, has_prev, workers)
    area_yjjbnt, yjjbnt_ids = line_cover(geoms, crs, yjjbnt, "yjjbnt", workers)
    area_stbhhx, stbhhx_ids = line_cover(geoms, crs, stbhhx, "stbhhx", workers)
    inside_czkfbj, czkfbj_ids = line_cover(geoms, crs, czkfbj, "czkfbj", workers)
    area_outside = np.clip(area - inside_czkfbj, 0.0, None) if czkfbj is not None else np.full(n, np.nan)
    cover = approval_cover(geoms, crs, patches, approvals, before, rules, workers)
    share_legal = np.divide(cover.area_legal, area, out=np.zeros(n), where=area > 0)
    share_all = np.clip(np.divide(cover.area_all, area, out=np.zeros(n), where=area > 0), 0.0, 1.0)
    verdict, flags = verdicts(area, unchanged, share_legal, share_all, rules)

    unclassified_codes: list[list[str]] = [[] for _ in range(n)]
    bad = before.piece_cats == UNCLASSIFIED
    for left, code in sorted(set(zip(before.left[bad].tolist(), before.piece_codes[bad].tolist()))):
        unclassified_codes[left].append(code)
    basis = ("原地类取自上一年度地类图斑 dltb_prev" if has_prev
             else "原地类取自现状地类图斑 dltb（未提供上一年度数据）")
    reasons = verdict_reasons(Facts(
        area=area, cultivated=before.sums["cultivated"], unclassified=before.sums[UNCLASSIFIED],
        unclassified_codes=unclassified_codes, orig_dlbm=before.orig_dlbm, now_dlbm=now_dlbm,
        unchanged_share=unchanged, area_yjjbnt=area_yjjbnt, area_stbhhx=area_stbhhx, area_outside=area_outside,
        area_legal=cover.area_legal, area_all=cover.area_all, area_compliant=cover.area_compliant,
        share_legal=share_legal, share_all=share_all, approval_ids=cover.approval_ids, late_ids=cover.late_ids),
        flags, rules, basis)

    jcbh = as_text(patches["JCBH"])

    def lists(col, default):
        if col in patches.columns:
            return [v if isinstance(v, str) else json_list(v) for v in patches[col]]
        return [json_list(d) for d in default]

    def singles(col):
        values = as_text(patches[col]) if col in patches.columns else [""] * n
        return [[v] if v else [] for v in values]

    sources = lists("sources", singles("SOURCE"))
    return gpd.GeoDataFrame({
        "JCBH": jcbh,
        "source_ids": lists("source_ids", [[j] for j in jcbh]),
        "sources": sources,
        "rounds": lists("rounds", singles("ROUND")),
        "n_sources": (patches["n_sources"].astype(int).to_numpy() if "n_sources" in patches.columns
                      else np.array([len(json.loads(s)) for s in sources], dtype=int)),
        "n_issued": issued_members(patches, n),
        "n_pieces": (patches["n_pieces"].astype(int).to_numpy() if "n_pieces" in patches.columns
                     else np.zeros(n, dtype=int)),
        "QSX": dates_as_given(patches, "QSX", n),
        "HSX": dates_as_given(patches, "HSX", n),
        "XZQDM": before.xzqdm,
        "area_m2": area,
        "area_cultivated": before.sums["cultivated"],
        "area_tiankan": before.tiankan,
        "area_agri_other": before.sums["agri_other"],
        "area_construction": before.sums["construction"],
        "area_unused": before.sums["unused"],
        "area_unclassified": before.sums[UNCLASSIFIED],
        "orig_dlbm": before.orig_shown,
        "orig_layer": np.array([before.name] * n, dtype=object),
        "orig_ids": [json_list(x) for x in before.orig_ids],
        "now_dlbm": now_shown,
        "area_yjjbnt": area_yjjbnt,
        "yjjbnt_ids": [json_list(x) for x in yjjbnt_ids],
        "area_stbhhx": area_stbhhx,
        "stbhhx_ids": [json_list(x) for x in stbhhx_ids],
        "area_outside_czkfbj": area_outside,
        "czkfbj_ids": [json_list(x) for x in czkfbj_ids],
        "area_approved": cover.area_all,
        "area_compliant": cover.area_compliant,
        "approval_ids": [json_list(x) for x in cover.approval_ids],
        "approved_share": share_all,
        "area_unapproved": np.clip(area - cover.area_all, 0.0, None),
        "area_cultivated_unapproved": np.clip(before.sums["cultivated"] - cover.cultivated_approved, 0.0, None),
        "verdict": verdict.astype(object),
        "verdict_zh": np.array([VERDICT_ZH[v] for v in verdict], dtype=object),
        "verdict_reason": np.array(reasons, dtype=object),
        "status": np.array([INITIAL_STATUS] * n, dtype=object),
        "judgement": np.array([None] * n, dtype=object),
        "version": np.ones(n, dtype=int),
    }, geometry=gpd.GeoSeries(list(geoms), crs=crs), crs=crs)


def issued_members(patches: gpd.GeoDataFrame, n: int) -> np.ndarray:
    """Issued monitoring patches in each record: members less piece units after dedupe; before it, 1 for an
    issued patch and 0 for a survey piece unit (``derived``)."""
    if "n_members" in patches.columns and "n_pieces" in patches.columns:
        return (patches["n_members"].astype(int) - patches["n_pieces"].astype(int)).to_numpy()
    if "derived" in patches.columns:
        return (~patches["derived"].fillna(False).astype(bool)).astype(int).to_numpy()
    return np.ones(n, dtype=int)


def dates_as_given(patches: gpd.GeoDataFrame, column: str, n: int) -> np.ndarray:
    """A date column as text, as the source wrote it (a month-only 2024-05 stays so); None where empty."""
    if column not in patches.columns:
        return np.array([None] * n, dtype=object)
    text = as_text(patches[column])
    return np.array([None if t == "" else t for t in text], dtype=object)

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
"""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.area import ellipsoidal_area
from layers.codes import SANDIAO_CODES
from layers.errors import CRSError, FieldError

from .overlay import overlay_pieces
from .rules import Rules

LEGAL, PARTLY, ILLEGAL, OTHER = "legal", "partly_approved", "suspected_illegal", "other"
VERDICT_ZH = {LEGAL: "合法", PARTLY: "少批多占", ILLEGAL: "未批先建", OTHER: "其他"}
INITIAL_STATUS = "待核查"
SOURCE_CODES = "DLBM_SOURCE"  # a survey layer's own codes, when DLBM holds their 三调 translation (codeset.py)
UNCLASSIFIED = "unclassified"
CATEGORIES = ("cultivated", "agri_other", "construction", "unused", UNCLASSIFIED)

# Output columns of flagged_patches, in order (run_id is added by the service that writes them).
FLAGGED_COLUMNS = [
    "JCBH", "source_ids", "sources", "rounds", "n_sources", "n_pieces", "QSX", "HSX", "XZQDM", "area_m2",
    "area_cultivated", "area_tiankan", "area_agri_other", "area_construction", "area_unused",
    "area_unclassified", "orig_dlbm",
    "orig_layer", "orig_ids", "now_dlbm", "area_yjjbnt", "yjjbnt_ids", "area_stbhhx", "stbhhx_ids",
    "area_outside_czkfbj", "czkfbj_ids", "area_approved", "area_compliant", "approval_ids", "approved_share",
    "area_unapproved", "area_cultivated_unapproved",
    "verdict", "verdict_zh", "verdict_reason", "status", "judgement", "version",
]
# Columns the enforcement workflow owns: a re-run keeps their values (see carry_over_status).
WORKFLOW_COLUMNS = ["status", "judgement", "version"]
AREA_COLUMNS = ["area_m2", "area_cultivated", "area_tiankan", "area_agri_other", "area_construction",
                "area_unused", "area_unclassified", "area_yjjbnt", "area_stbhhx", "area_outside_czkfbj",
                "area_approved", "area_compliant", "area_unapproved", "area_cultivated_unapproved"]


# Local parts ("tiles") of large polygons pay for themselves only when a large polygon meets many small ones;
# on region-size inputs below this many polygons in all, building them costs more than it saves (measured on
# the sample county: parcels × ghfq 2.4 s tiled vs 0.18 s untiled; stbhhx × czkfbj 0.38 s vs 0.07 s).
TILE_MIN_POLYGONS = 100_000


def overlay(left, right, **kwargs):
    """analysis.overlay.overlay_pieces, tiling large polygons only for large inputs (see TILE_MIN_POLYGONS)."""
    if len(left) + len(right) < TILE_MIN_POLYGONS:
        kwargs.setdefault("max_vertices", 1 << 40)
    return overlay_pieces(left, right, **kwargs)


# --- small shared helpers (also used by conflicts.py and changes.py) -------------------------------------

def as_text(values) -> np.ndarray:
    """Object array of stripped strings; missing values become ''. Floats like 101.0 lose their '.0'.

    Pass the pandas Series itself where there is one: a string column is converted in one vectorised step.
    """
    if isinstance(values, pd.Series) and pd.api.types.is_string_dtype(values.dtype):
        return values.fillna("").astype(str).str.strip().to_numpy(dtype=object)
    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        return arr
    if pd.api.types.infer_dtype(arr, skipna=True) in ("string", "empty"):  # the usual case: vectorised
        s = pd.Series(arr, dtype=object)
        return s.where(s.notna(), "").astype(str).str.strip().to_numpy(dtype=object)
    out = []
    for v in arr:
        if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
            out.append("")
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v).strip())
    return np.array(out, dtype=object)


def village_codes(values) -> np.ndarray:
    """12-digit village codes from 坐落单位代码 (ZLDWDM = village code + 7 digits); '' where shorter."""
    text = pd.Series(as_text(values), dtype="str")  # string dtype: the slicing below is vectorised
    return text.str.slice(0, 12).where(text.str.len() >= 12, "").to_numpy(dtype=object)


def json_list(items) -> str:
    return json.dumps(list(items), ensure_ascii=False)


def id_column(gdf: gpd.GeoDataFrame, preferred: tuple[str, ...], layer: str) -> np.ndarray:
    """The ids of a layer's rows: the first preferred column that has values, else 'yzt_fid:<n>'."""
    for col in preferred:
        if col in gdf.columns:
            ids = as_text(gdf[col])
            if len(ids) == 0 or (ids != "").all():
                return ids
            fill = np.array([f"{layer}#{i + 1}" for i in range(len(ids))], dtype=object)
            return np.where(ids == "", fill, ids)
    if "yzt_fid" in gdf.columns:
        return np.array([f"{layer}#{int(v)}" for v in gdf["yzt_fid"]], dtype=object)
    return np.array([f"{layer}#{i + 1}" for i in range(len(gdf))], dtype=object)


def near(layer: gpd.GeoDataFrame | None, geoms: np.ndarray) -> gpd.GeoDataFrame | None:
    """The rows of ``layer`` whose bounding box meets one of ``geoms`` (in layer order): a cheap subset before
    the exact work, so per-row conversions run on hundreds of rows rather than a county's 300 000."""
    if layer is None or len(layer) == 0 or len(geoms) == 0:
        return layer
    rows = np.unique(shapely.STRtree(np.asarray(layer.geometry.values)).query(geoms)[1])
    return layer.iloc[rows]


def check_same_crs(crs, **layers) -> None:
    for name, gdf in layers.items():
        if gdf is not None and gdf.crs != crs:
            raise CRSError(f"layer {name!r} is in {gdf.crs} but the patches are in {crs}; bring every layer "
                           "into the store CRS (yzt ingest does) before analysing")


def frame(geoms, crs, **columns) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(list(geoms), crs=crs), crs=crs)


def geo(geoms, crs) -> gpd.GeoSeries:
    """A GeoSeries for overlay input (twenty times cheaper to build than a GeoDataFrame)."""
    return gpd.GeoSeries(np.asarray(geoms, dtype=object), crs=crs)


def parse_dates(values) -> pd.Series:
    """Dates from strings / dates / timestamps; empty or unparseable values become NaT."""
    def tidy(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return None
        if isinstance(v, str) and v.strip() in ("", "nan", "NaT", "None"):
            return None
        return v

    out = pd.to_datetime(pd.Series(list(values), dtype=object).map(tidy), errors="coerce", format="mixed",
                         utc=True)
    return out.dt.tz_localize(None)  # naive UTC: dates compare as calendar days


def period_ends(values) -> pd.Series:
    """The last day of the period each date names: a month-only date ('2024-05') ends on 2024-05-31, a day
    date on itself. An approval dated within the month of a month-only 后时相 may precede the image."""
    text = pd.Series(as_text(values), dtype=object)
    start = parse_dates(text)
    month_only = text.str.fullmatch(r"\d{4}-\d{1,2}").fillna(False).to_numpy(dtype=bool)
    if month_only.any():
        start[month_only] = start[month_only] + pd.offsets.MonthEnd(0)
    return start


def land_categories(codes: np.ndarray, rules: Rules, layer: str | None = None) -> np.ndarray:
    """Category per DLBM code: cultivated / agri_other / construction / unused, or 'unclassified' for a code
    the rules do not list (a known source defect: it is reported on its own, never guessed into a category)."""
    lookup = {c: rules.category(c) or UNCLASSIFIED for c in set(codes)}
    return np.array([lookup[c] for c in codes], dtype=object)


def unclassified_patches(gdf: gpd.GeoDataFrame | None, rules: Rules, layer: str) -> dict[str, list[str]]:
    """{code: [ids]} of the patches whose DLBM the rules do not classify (for the run report)."""
    if gdf is None or len(gdf) == 0 or "DLBM" not in gdf.columns:
        return {}
    codes = as_text(gdf["DLBM"])
    bad = land_categories(codes, rules, layer) == UNCLASSIFIED
    if not bad.any():
        return {}
    ids = id_column(gdf, ("BSM",), layer)
    out: dict[str, list[str]] = {}
    for code, i in zip(codes[bad], ids[bad]):
        out.setdefault(code or "(empty)", []).append(str(i))
    return out


def kcxs_values(gdf: gpd.GeoDataFrame, layer: str, ids: np.ndarray) -> np.ndarray:
    """田坎 coefficient per row (0 where absent); values outside [0, 1) raise FieldError naming the BSMs."""
    if "KCXS" not in gdf.columns:
        return np.zeros(len(gdf))
    k = pd.to_numeric(gdf["KCXS"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    bad = (k < 0) | (k >= 1)
    if bad.any():
        raise FieldError(f"layer {layer!r}: KCXS must lie in [0, 1), got {k[bad][:5].tolist()} for BSM "
                         f"{ids[bad][:5].tolist()}; a percentage needs dividing by 100")
    return k


def interior_pairs(left_geoms: np.ndarray, right_geoms: np.ndarray, *,
                   workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) positions of the pairs whose interiors meet, i.e. that overlap with positive area.

    For polygons, interiors meet ⟺ they intersect and do not merely touch. On a tessellated survey layer most
    bounding-box neighbours of a control-line polygon only touch it along a shared edge; two prepared predicate
    tests drop them before any intersection is computed (measured on a 222 000-patch county: YJJBNT × non-耕地
    patches, 51 814 box pairs → 34 525 touching → 4 overlapping, 0.6 s instead of 1.4 s through the overlay).
    With ``workers`` > 1 the pairs are split by right polygon over that many threads (the predicates release
    the GIL; a prepared geometry is never shared between threads).
    """
    if len(left_geoms) == 0 or len(right_geoms) == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    li, ri = shapely.STRtree(right_geoms).query(left_geoms)
    if len(li) == 0:
        return li, ri
    used = np.unique(ri)
    private = np.empty(len(right_geoms), dtype=object)
    private[used] = shapely.from_wkb(shapely.to_wkb(right_geoms[used]))  # prepare copies, not the caller's
    shapely.prepare(private[used])

    def meets(at: np.ndarray) -> np.ndarray:
        a, b = private[ri[at]], left_geoms[li[at]]
        keep = shapely.intersects(a, b)
        hit = np.flatnonzero(keep)
        keep[hit] = ~shapely.touches(a[hit], b[hit])
        return keep

    if workers > 1 and len(li) >= 10_000:
        from concurrent.futures import ThreadPoolExecutor

        parts = [np.flatnonzero(ri % workers == k) for k in range(workers)]
        keep = np.zeros(len(li), dtype=bool)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for at, mask in zip(parts, pool.map(meets, parts)):
                keep[at] = mask
    else:
        keep = meets(np.arange(len(li)))
    return li[keep], ri[keep]


def cover_by_union(geoms: np.ndarray, crs, layer: gpd.GeoDataFrame, layer_ids: np.ndarray, *,
                   pair_ok=None, workers: int = 2, want_geometry: bool = False):
    """Per input geometry: area covered by the union of ``layer`` polygons, the ids of those polygons.

    Overlapping polygons of ``layer`` (e.g. 农转用 and 征收 approvals of the same land) are counted once.
    ``pair_ok(left_idx, right_idx) -> bool mask`` drops pairs before the union (e.g. approvals dated too late).
    Returns (area, ids, union_geometries or None). Pieces of zero area never count.
    """
    n = len(geoms)
    area = np.zeros(n)
    ids: list[list[str]] = [[] for _ in range(n)]
    unions = np.array([None] * n, dtype=object) if want_geometry else None
    if n == 0 or layer is None or len(layer) == 0:
        return area, ids, unions
    cl, cr = interior_pairs(np.asarray(geoms, dtype=object), np.asarray(layer.geometry.values), workers=workers)
    if len(cl) == 0:
        return area, ids, unions
    lu, ru = np.unique(cl), np.unique(cr)  # overlay only the polygons that overlap something
    pieces = overlay(geo(np.asarray(geoms, dtype=object)[lu], crs), layer.geometry.iloc[ru], workers=workers,
                     keep_geometry=True)
    if len(pieces) == 0:
        return area, ids, unions
    li = lu[pieces["left"].to_numpy()]
    ri = ru[pieces["right"].to_numpy()]
    if pair_ok is not None:
        ok = np.asarray(pair_ok(li, ri), dtype=bool)
        pieces, li, ri = pieces[ok], li[ok], ri[ok]
    pa = pieces["area_m2"].to_numpy(dtype=float)
    pg = pieces.geometry.values
    order = np.argsort(li, kind="stable")
    li, ri, pa, pg = li[order], ri[order], pa[order], np.asarray(pg)[order]
    starts = np.flatnonzero(np.r_[True, li[1:] != li[:-1]]) if len(li) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(li)] if len(li) else np.array([], dtype=int)
    multi_rows, multi_geoms = [], []
    for s, e in zip(starts, ends):
        row = li[s]
        ids[row] = sorted(set(layer_ids[ri[s:e]].tolist()))
        if e - s == 1:
            area[row] = pa[s]
            if want_geometry:
                unions[row] = pg[s]
        else:
            multi_rows.append(row)
            multi_geoms.append(shapely.union_all(pg[s:e]))
    if multi_rows:
        mg = np.array(multi_geoms, dtype=object)
        area[multi_rows] = ellipsoidal_area(mg, crs)
        if want_geometry:
            unions[multi_rows] = mg
    return area, ids, unions


def village_by_largest_share(geoms: np.ndarray, crs, villages: gpd.GeoDataFrame | None,
                             workers: int = 2) -> np.ndarray:
    """12-digit village code (XZQDM) holding the largest share of each geometry; '' where none."""
    out = np.array([""] * len(geoms), dtype=object)
    if villages is None or len(villages) == 0 or len(geoms) == 0:
        return out
    codes = as_text(villages["XZQDM"])
    pieces = overlay(geo(geoms, crs), villages.geometry, workers=workers, keep_geometry=False)
    if len(pieces):
        df = pd.DataFrame({"left": pieces["left"].to_numpy(), "code": codes[pieces["right"].to_numpy()],
                           "a": pieces["area_m2"].to_numpy()})
        best = df.groupby(["left", "code"], sort=False)["a"].sum().reset_index()
        best = best.sort_values(["left", "a", "code"], ascending=[True, False, True]).drop_duplicates("left")
        out[best["left"].to_numpy()] = best["code"].to_numpy()
    return out


def villages_of(xzq: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame | None:
    """The village rows of an xzq layer (XZQJB == 'village', else 12-digit codes)."""
    if xzq is None or len(xzq) == 0 or "XZQDM" not in xzq.columns:
        return None
    if "XZQJB" in xzq.columns and (xzq["XZQJB"] == "village").any():
        return xzq[xzq["XZQJB"] == "village"]
    codes = as_text(xzq["XZQDM"])
    sel = np.array([len(c) == 12 for c in codes], dtype=bool)
    return xzq[sel] if sel.any() else None


def _dominant(keys_left: np.ndarray, keys_code: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    out = np.array([""] * n, dtype=object)
    if len(keys_left) == 0:
        return out
    df = pd.DataFrame({"left": keys_left, "code": keys_code, "a": weights})
    best = df.groupby(["left", "code"], sort=False)["a"].sum().reset_index()
    best = best.sort_values(["left", "a", "code"], ascending=[True, False, True]).drop_duplicates("left")
    out[best["left"].to_numpy()] = best["code"].to_numpy()
    return out


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _ids_text(ids: list[str], limit: int = 5) -> str:
    if not ids:
        return ""
    more = f" 等 {len(ids)} 件" if len(ids) > limit else ""
    return "、".join(ids[:limit]) + more


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
    jcbh = as_text(patches["JCBH"])

    # Only the survey patches near the ground changes matter: cut the (county-size) DLTB layers down first.
    dltb = near(dltb, geoms)
    dltb_prev = near(dltb_prev, geoms)

    # 1. 原地类 from the DLTB before the change ------------------------------------------------------------
    before, before_name = (dltb_prev, "dltb_prev") if dltb_prev is not None else (dltb, "dltb")
    b_ids = id_column(before, ("BSM",), before_name)
    b_codes = as_text(before["DLBM"])  # the rules' codes (三调; a 用地用海 layer comes translated)
    b_shown = as_text(before[SOURCE_CODES]) if SOURCE_CODES in before.columns else b_codes
    b_kcxs = kcxs_values(before, before_name, b_ids)
    b_village = (village_codes(before["ZLDWDM"]) if "ZLDWDM" in before.columns
                 else np.array([""] * len(before), dtype=object))
    need_geom = dltb_prev is not None and rules.unchanged_min_share is not None
    pieces = overlay(geo(geoms, crs), before.geometry, workers=workers, keep_geometry=need_geom)
    pl = pieces["left"].to_numpy()
    pr = pieces["right"].to_numpy()
    pa = pieces["area_m2"].to_numpy(dtype=float)
    p_codes = b_codes[pr]
    p_cat = land_categories(p_codes, rules, before_name) if len(pr) else np.array([], dtype=object)
    k = b_kcxs[pr]
    net, tk = pa * (1.0 - k), pa * k
    sums = {c: np.bincount(pl[p_cat == c], net[p_cat == c], minlength=n).astype(float) for c in CATEGORIES}
    area_tiankan = np.bincount(pl, tk, minlength=n)
    orig_dlbm = _dominant(pl, p_codes, pa, n)
    orig_shown = _dominant(pl, b_shown[pr], pa, n)
    orig_ids = [[] for _ in range(n)]
    for left, bid in sorted(set(zip(pl.tolist(), b_ids[pr].tolist()))):
        orig_ids[left].append(bid)

    # XZQDM: the village holding the largest share (DLTB 坐落), else the xzq villages, else the patch's own.
    xzqdm = _dominant(pl[b_village[pr] != ""], b_village[pr][b_village[pr] != ""], pa[b_village[pr] != ""], n)
    missing = xzqdm == ""
    if missing.any() and villages is not None:
        xzqdm[missing] = village_by_largest_share(geoms[missing], crs, villages, workers)
        missing = xzqdm == ""
    if missing.any() and "XZQDM" in patches.columns:
        xzqdm[missing] = as_text(patches["XZQDM"])[missing]

    # 2. current land class, and the no-change (pseudo-change) test -------------------------------------
    unchanged_share = np.full(n, np.nan)
    if dltb_prev is not None:
        c_codes = as_text(dltb["DLBM"])
        c_shown = as_text(dltb[SOURCE_CODES]) if SOURCE_CODES in dltb.columns else c_codes
        if need_geom and len(pieces):
            cur = overlay(pieces.geometry, dltb.geometry, workers=workers, keep_geometry=False)
            cl = pl[cur["left"].to_numpy()]
            cc = c_codes[cur["right"].to_numpy()]
            ca = cur["area_m2"].to_numpy(dtype=float)
            same = p_codes[cur["left"].to_numpy()] == cc
            unchanged_share = np.divide(np.bincount(cl[same], ca[same], minlength=n), area,
                                        out=np.zeros(n), where=area > 0)
            now_dlbm = _dominant(cl, cc, ca, n)
            now_shown = _dominant(cl, c_shown[cur["right"].to_numpy()], ca, n)
        else:
            cur = overlay(geo(geoms, crs), dltb.geometry, workers=workers, keep_geometry=False)
            now_dlbm = _dominant(cur["left"].to_numpy(), c_codes[cur["right"].to_numpy()],
                                 cur["area_m2"].to_numpy(dtype=float), n)
            now_shown = _dominant(cur["left"].to_numpy(), c_shown[cur["right"].to_numpy()],
                                  cur["area_m2"].to_numpy(dtype=float), n)
    else:
        now_dlbm, now_shown = orig_dlbm.copy(), orig_shown.copy()

    # 3. control lines -----------------------------------------------------------------------------------
    def line(layer, name):
        if layer is None:
            return np.zeros(n), [[] for _ in range(n)]
        a, ids, _ = cover_by_union(geoms, crs, layer, id_column(layer, ("BSM",), name), workers=workers)
        return a, ids

    area_yjjbnt, yjjbnt_ids = line(yjjbnt, "yjjbnt")
    area_stbhhx, stbhhx_ids = line(stbhhx, "stbhhx")
    inside_czkfbj, czkfbj_ids = line(czkfbj, "czkfbj")
    area_outside = np.clip(area - inside_czkfbj, 0.0, None) if czkfbj is not None else np.full(n, np.nan)

    # 4. approvals: union of the counted approvals, by kind and date --------------------------------------
    area_legal = np.zeros(n)
    area_all = np.zeros(n)
    area_compliant = np.zeros(n)
    approved_geoms = None
    approval_ids: list[list[str]] = [[] for _ in range(n)]
    late_ids: list[list[str]] = [[] for _ in range(n)]
    if approvals is not None and len(approvals):
        if "PZLX" not in approvals.columns:
            raise FieldError("layer 'approvals' lacks PZLX (批准类型); map the approval kind field to PZLX")
        kinds = as_text(approvals["PZLX"])
        a_ids = id_column(approvals, ("PZWH", "DZJGH"), "approvals")
        a_dates = parse_dates(approvals["PZRQ"].to_numpy() if "PZRQ" in approvals.columns
                              else [None] * len(approvals))
        legal_sel = np.isin(kinds, list(rules.legal_kinds))
        compliant_sel = np.isin(kinds, list(rules.compliant_kinds))
        counted = legal_sel | compliant_sel
        sub = approvals[counted]
        sub_ids, sub_legal = a_ids[counted], legal_sel[counted]
        sub_dates = a_dates[counted].to_numpy()
        limit = _date_limits(patches, rules, n)
        dated = ~pd.isna(sub_dates)

        def on_time(li, ri):
            ok = ~dated[ri] | (sub_dates[ri] <= limit[li])
            for left, right in zip(li[~ok].tolist(), ri[~ok].tolist()):
                late_ids[left].append(sub_ids[right])
            return ok

        area_all, approval_ids, approved_geoms = cover_by_union(geoms, crs, sub, sub_ids, pair_ok=on_time,
                                                                workers=workers, want_geometry=True)
        late_ids = [sorted(set(x)) for x in late_ids]
        if sub_legal.any():
            legal_layer = sub[sub_legal]
            legal_dates, legal_ids = sub_dates[sub_legal], sub_ids[sub_legal]
            legal_dated = ~pd.isna(legal_dates)
            area_legal, _, _ = cover_by_union(
                geoms, crs, legal_layer, legal_ids, workers=workers,
                pair_ok=lambda li, ri: ~legal_dated[ri] | (legal_dates[ri] <= limit[li]))
        if (~sub_legal).any():
            comp_layer = sub[~sub_legal]
            comp_dates, comp_ids = sub_dates[~sub_legal], sub_ids[~sub_legal]
            comp_dated = ~pd.isna(comp_dates)
            area_compliant, _, _ = cover_by_union(
                geoms, crs, comp_layer, comp_ids, workers=workers,
                pair_ok=lambda li, ri: ~comp_dated[ri] | (comp_dates[ri] <= limit[li]))
    # 耕地 (net of 田坎, earlier DLTB) under the approved part; the rest of the record's 耕地 is unapproved
    cultivated_approved = np.zeros(n)
    if approved_geoms is not None:
        has = np.flatnonzero([g is not None for g in approved_geoms])
        if len(has):
            ap = overlay(geo(approved_geoms[has], crs), before.geometry, workers=workers, keep_geometry=False)
            a_left, a_right = ap["left"].to_numpy(), ap["right"].to_numpy()
            cult = land_categories(b_codes[a_right], rules, before_name) == "cultivated" if len(ap) else \
                np.zeros(0, dtype=bool)
            net = ap["area_m2"].to_numpy(dtype=float) * (1.0 - b_kcxs[a_right])
            cultivated_approved[has] = np.bincount(a_left[cult], net[cult], minlength=len(has))
    area_unapproved = np.clip(area - area_all, 0.0, None)
    area_cultivated_unapproved = np.clip(sums["cultivated"] - cultivated_approved, 0.0, None)
    share_legal = np.divide(area_legal, area, out=np.zeros(n), where=area > 0)
    share_all = np.clip(np.divide(area_all, area, out=np.zeros(n), where=area > 0), 0.0, 1.0)

    # 5. verdicts ----------------------------------------------------------------------------------------
    tol = 1e-9  # shares computed from areas: a share of exactly 0.95 must not fall to 0.9499999
    small = np.round(area, 2) < rules.pseudo_min_area_m2  # compared as reported: to 0.01 m²
    same = (~np.isnan(unchanged_share)) & (rules.unchanged_min_share is not None) & \
        (np.nan_to_num(unchanged_share) >= (rules.unchanged_min_share or 2.0) - tol)
    legal = share_legal >= rules.legal_min_share - tol
    covered = share_all >= rules.legal_min_share - tol
    partly = share_all >= rules.partial_min_share - tol
    verdict = np.select([small, same, legal, covered, partly], [OTHER, OTHER, LEGAL, OTHER, PARTLY], ILLEGAL)

    basis = ("原地类取自上一年度地类图斑 dltb_prev" if dltb_prev is not None
             else "原地类取自现状地类图斑 dltb（未提供上一年度数据）")
    reasons = []
    for i in range(n):
        if small[i]:
            text = (f"图斑面积 {area[i]:.2f} m² 小于最小面积 {rules.pseudo_min_area_m2:g} m²，"
                    "判为伪变化（其他）")
        elif same[i]:
            code = now_dlbm[i]
            text = (f"现状地类与原地类一致（{code} {SANDIAO_CODES.get(code, '')}，一致面积占 "
                    f"{_pct(unchanged_share[i])} ≥ {_pct(rules.unchanged_min_share)}），地类未变化，判为伪变化（其他）")
        elif legal[i]:
            text = (f"农转用/征收/供地批准范围覆盖 {area_legal[i]:.2f} m²，占 {_pct(share_legal[i])} ≥ "
                    f"{_pct(rules.legal_min_share)}（{_ids_text(approval_ids[i])}），判为合法")
        elif covered[i]:
            text = (f"临时用地/设施农用地备案覆盖 {area_compliant[i]:.2f} m²，连同其他批准共覆盖 "
                    f"{_pct(share_all[i])} ≥ {_pct(rules.legal_min_share)}（{_ids_text(approval_ids[i])}），"
                    "判为其他（合规用地）")
        elif partly[i]:
            text = (f"批准范围仅覆盖 {area_all[i]:.2f} m²（{_pct(share_all[i])}，介于 "
                    f"{_pct(rules.partial_min_share)}–{_pct(rules.legal_min_share)}，{_ids_text(approval_ids[i])}），"
                    f"超出批准范围 {area[i] - area_all[i]:.2f} m²，判为少批多占")
        else:
            text = ("无批准用地覆盖" if area_all[i] <= 0 else
                    f"批准范围仅覆盖 {_pct(share_all[i])} < {_pct(rules.partial_min_share)}"
                    f"（{_ids_text(approval_ids[i])}）") + "，判为疑似未批先建"
        if (small[i] or same[i]) and approval_ids[i]:
            text += f"；另有批准范围覆盖 {_pct(share_all[i])}（{_ids_text(approval_ids[i])}）"
        if late_ids[i] and not small[i] and not same[i]:
            text += f"；批准日期晚于{_limit_name(rules)}的 {_ids_text(late_ids[i])} 未计入"
        facts = []
        if sums["cultivated"][i] > 0:
            facts.append(f"占耕地 {sums['cultivated'][i]:.2f} m²")
        if area_yjjbnt[i] > 0:
            facts.append(f"永久基本农田 {area_yjjbnt[i]:.2f} m²")
        if area_stbhhx[i] > 0:
            facts.append(f"生态保护红线内 {area_stbhhx[i]:.2f} m²")
        if czkfbj is not None and area_outside[i] > 0.005:
            facts.append(f"城镇开发边界外 {area_outside[i]:.2f} m²")
        if sums[UNCLASSIFIED][i] > 0:
            bad = sorted({c for c, cat, left in zip(p_codes, p_cat, pl) if left == i and cat == UNCLASSIFIED})
            facts.append(f"{sums[UNCLASSIFIED][i]:.2f} m² 原地类编码 {'、'.join(bad)} 不在规则地类表内（未分类）")
        if orig_dlbm[i]:
            facts.append(f"原地类 {orig_dlbm[i]} {SANDIAO_CODES.get(orig_dlbm[i], '')}")
        text += "；" + "，".join(facts + [basis]) if facts else "；" + basis
        reasons.append(text)

    def lists(col, default):
        if col in patches.columns:
            return [v if isinstance(v, str) else json_list(v) for v in patches[col]]
        return [json_list(d) for d in default]

    sources_default = [[s] if s else [] for s in (as_text(patches["SOURCE"]) if "SOURCE" in
                                                    patches.columns else [""] * n)]
    rounds_default = [[r] if r else [] for r in (as_text(patches["ROUND"]) if "ROUND" in
                                                   patches.columns else [""] * n)]
    sources = lists("sources", sources_default)
    out = gpd.GeoDataFrame({
        "JCBH": jcbh,
        "source_ids": lists("source_ids", [[j] for j in jcbh]),
        "sources": sources,
        "rounds": lists("rounds", rounds_default),
        "n_sources": (patches["n_sources"].astype(int).to_numpy() if "n_sources" in patches.columns
                      else np.array([len(json.loads(s)) for s in sources], dtype=int)),
        "n_pieces": (patches["n_pieces"].astype(int).to_numpy() if "n_pieces" in patches.columns
                     else np.zeros(n, dtype=int)),
        "QSX": _dates_as_given(patches, "QSX", n),
        "HSX": _dates_as_given(patches, "HSX", n),
        "XZQDM": xzqdm,
        "area_m2": area,
        "area_cultivated": sums["cultivated"],
        "area_tiankan": area_tiankan,
        "area_agri_other": sums["agri_other"],
        "area_construction": sums["construction"],
        "area_unused": sums["unused"],
        "area_unclassified": sums[UNCLASSIFIED],
        "orig_dlbm": orig_shown,
        "orig_layer": np.array([before_name] * n, dtype=object),
        "orig_ids": [json_list(x) for x in orig_ids],
        "now_dlbm": now_shown,
        "area_yjjbnt": area_yjjbnt,
        "yjjbnt_ids": [json_list(x) for x in yjjbnt_ids],
        "area_stbhhx": area_stbhhx,
        "stbhhx_ids": [json_list(x) for x in stbhhx_ids],
        "area_outside_czkfbj": area_outside,
        "czkfbj_ids": [json_list(x) for x in czkfbj_ids],
        "area_approved": area_all,
        "area_compliant": area_compliant,
        "approval_ids": [json_list(x) for x in approval_ids],
        "approved_share": share_all,
        "area_unapproved": area_unapproved,
        "area_cultivated_unapproved": area_cultivated_unapproved,
        "verdict": verdict.astype(object),
        "verdict_zh": np.array([VERDICT_ZH[v] for v in verdict], dtype=object),
        "verdict_reason": np.array(reasons, dtype=object),
        "status": np.array([INITIAL_STATUS] * n, dtype=object),
        "judgement": np.array([None] * n, dtype=object),
        "version": np.ones(n, dtype=int),
    }, geometry=gpd.GeoSeries(list(geoms), crs=crs), crs=crs)
    return out


def _dates_as_given(patches: gpd.GeoDataFrame, column: str, n: int) -> np.ndarray:
    """A date column as text, as the source wrote it (a month-only 2024-05 stays so); None where empty."""
    if column not in patches.columns:
        return np.array([None] * n, dtype=object)
    text = as_text(patches[column])
    return np.where(text == "", None, text).astype(object)


def _limit_name(rules: Rules) -> str:
    return "后时相" if rules.approval_date_rule == "hsx" else "调查基准日"


def _date_limits(patches: gpd.GeoDataFrame, rules: Rules, n: int) -> np.ndarray:
    """Latest approval date that counts, per patch (datetime64)."""
    survey = np.datetime64(pd.Timestamp(rules.survey_date).to_datetime64(), "ns")
    if rules.approval_date_rule == "any":
        return np.full(n, np.datetime64("2262-01-01", "ns"))
    limit = np.full(n, survey)
    if rules.approval_date_rule == "hsx" and "HSX" in patches.columns:
        hsx = period_ends(patches["HSX"].to_numpy()).to_numpy(dtype="datetime64[ns]")
        has = ~np.isnat(hsx)
        limit[has] = np.minimum(hsx[has], survey)
    return limit


def round_areas(gdf: gpd.GeoDataFrame, columns=AREA_COLUMNS) -> gpd.GeoDataFrame:
    """Round area columns to 0.01 m² and shares to 4 decimals, for output."""
    out = gdf.copy()
    for col in columns:
        if col in out.columns:
            out[col] = out[col].astype(float).round(2)
    if "approved_share" in out.columns:
        out["approved_share"] = out["approved_share"].astype(float).round(4)
    return out


def carry_over_status(new: gpd.GeoDataFrame, old: pd.DataFrame | None) -> tuple[gpd.GeoDataFrame, int]:
    """Keep what the enforcement workflow recorded on records judged before.

    A new record inherits the workflow columns (status, judgement, version, and every column of the old
    flagged_patches that the analysis does not write, e.g. who/when of the last transition) from the previous
    record whose JCBH is the same, or, failing that, one whose source_ids it shares (the ground change was
    re-issued or merged differently). Staff judgements are never reset by a re-run. Returns (records, number of
    records that inherited).
    """
    if old is None or len(old) == 0 or "status" not in old.columns:
        return new, 0
    owned = (set(FLAGGED_COLUMNS) - set(WORKFLOW_COLUMNS)) | {"run_id", "geometry", "fid", "yzt_fid"}
    carried_cols = [c for c in old.columns if c not in owned and c != getattr(old, "_geometry_column_name", None)]
    old = pd.DataFrame(old).reset_index(drop=True)
    by_id: dict[str, int] = {}
    src = old["source_ids"] if "source_ids" in old.columns else pd.Series(["[]"] * len(old))
    for row, (jc, members) in enumerate(zip(as_text(old["JCBH"]), src)):
        by_id.setdefault(jc, row)
        try:
            members = json.loads(members) if isinstance(members, str) else list(members or [])
        except (TypeError, ValueError):
            members = []
        for m in members:
            by_id.setdefault(str(m), row)
    match = np.full(len(new), -1)
    for i, (jc, members) in enumerate(zip(new["JCBH"], new["source_ids"])):
        row = by_id.get(jc, -1)
        if row < 0:
            for m in json.loads(members):
                row = by_id.get(m, -1)
                if row >= 0:
                    break
        match[i] = row
    out = new.copy()
    hit = match >= 0
    for col in carried_cols:
        values = out[col].to_numpy(dtype=object).copy() if col in out.columns else np.array([None] * len(out),
                                                                                            dtype=object)
        values[hit] = old[col].to_numpy(dtype=object)[match[hit]]
        out[col] = values
    if "version" in out.columns:
        out["version"] = pd.to_numeric(out["version"], errors="coerce").fillna(1).astype(int)
    if "status" in out.columns:
        status = out["status"].to_numpy(dtype=object)
        status[pd.isna(status) | (status == "")] = INITIAL_STATUS
        out["status"] = status
    return out, int(hit.sum())

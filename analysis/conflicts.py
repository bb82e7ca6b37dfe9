"""Planning conflicts (规划冲突检测), domain §7: one record per conflicting piece, with the ids behind it.

Kinds (code → 中文):

| kind | left × right | piece |
|---|---|---|
| yjjbnt_stbhhx / yjjbnt_czkfbj / stbhhx_czkfbj | control line × control line | every overlapping pair |
| construction_in_yjjbnt / construction_in_stbhhx | DLTB construction patch × control line | every overlapping pair |
| yjjbnt_not_cultivated | YJJBNT × DLTB patch that is not 耕地 | every overlapping pair |
| construction_outside_czkfbj | DLTB construction patch (not exempt) − ∪ CZKFBJ | the part outside |
| parcel_zone_conflict | parcel × planning zone, when the zone/use pair is in the rules' table | every matching pair |
| approved_unsupplied (批而未供) | approval (农转用/征收) − ∪ supplied land | the unsupplied part |
| idle_land (闲置土地) | parcel supplied ≥ idle.years before survey_date, still unbuilt | the parcel |

Pieces below conflicts.min_area_m2 are edge slivers and are not reported. Every area is ellipsoidal.
XZQDM: the DLTB patch's 坐落 village (ZLDWDM[:12]) when a DLTB patch is one side, else the village (xzq)
holding the largest share of the piece.

conflict_id (冲突编号): a stable id computed from the record's content, never from row order or the run, so the
same conflict has the same id in every run on the same inputs (see :func:`conflict_ids`):

    CF-<kind code>-<first 12 hex digits of sha256(key)>      e.g. CF-YS-d2c579e06e8a

key = ``kind|left_layer|left_ids|right_layer|right_ids`` (the stored texts, UTF-8; left_ids / right_ids as the
JSON lists the record holds) for the pair kinds; ``kind|left_layer|left_ids`` for the kinds of one record per
left feature (SUBJECT_KINDS: construction_outside_czkfbj, approved_unsupplied, idle_land), whose right side only
describes the feature (the CZKFBJ touching the patch, the land supplied on the approval, the survey patches on
the parcel) and may change while the conflict stays the same. Two records can share a key only when a source
layer repeats an id (one 批准文号 on two polygons, a duplicated BSM); they are told apart by a suffix -2, -3 … in
the order: larger area (to 0.01 m²) first, then the normalised geometry's WKB, XZQDM, note.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.area import ellipsoidal_area
from layers.codes import SANDIAO_CODES
from layers.errors import FieldError

from .common import as_text, check_same_crs, geo, id_column, json_list, near, overlay, parse_dates, village_codes
from .cover import cover_by_union, interior_pairs, village_by_largest_share
from .faces import disjoint_faces
from .landuse import UNCLASSIFIED, land_categories
from .rules import Rules

KINDS: dict[str, str] = {
    "yjjbnt_stbhhx": "永久基本农田与生态保护红线重叠",
    "yjjbnt_czkfbj": "永久基本农田与城镇开发边界重叠",
    "stbhhx_czkfbj": "生态保护红线与城镇开发边界重叠",
    "construction_in_yjjbnt": "永久基本农田内现状建设用地",
    "construction_in_stbhhx": "生态保护红线内现状建设用地",
    "yjjbnt_not_cultivated": "永久基本农田现状非耕地",
    "construction_outside_czkfbj": "城镇开发边界外建设用地",
    "parcel_zone_conflict": "宗地用途与规划分区冲突",
    "approved_unsupplied": "批而未供",
    "idle_land": "闲置土地",
}
# Kind codes in conflict_id: the initials of the kind's words. Part of every id ever issued: never change one.
KIND_CODES: dict[str, str] = {
    "yjjbnt_stbhhx": "YS",
    "yjjbnt_czkfbj": "YC",
    "stbhhx_czkfbj": "SC",
    "construction_in_yjjbnt": "CIY",
    "construction_in_stbhhx": "CIS",
    "yjjbnt_not_cultivated": "YNC",
    "construction_outside_czkfbj": "COC",
    "parcel_zone_conflict": "PZC",
    "approved_unsupplied": "AU",
    "idle_land": "IL",
}
# Kinds with one record per left feature: their conflict_id names the left feature only (module docs).
SUBJECT_KINDS = frozenset({"construction_outside_czkfbj", "approved_unsupplied", "idle_land"})
CONFLICT_ID_PREFIX, CONFLICT_ID_HEX = "CF", 12
CONFLICT_COLUMNS = ["conflict_id", "kind", "kind_zh", "area_m2", "left_layer", "left_ids", "right_layer",
                    "right_ids", "XZQDM", "note"]
# The layers each kind needs (all must be present, else the kind is skipped and reported as such).
NEEDS: dict[str, tuple[str, ...]] = {
    "yjjbnt_stbhhx": ("yjjbnt", "stbhhx"),
    "yjjbnt_czkfbj": ("yjjbnt", "czkfbj"),
    "stbhhx_czkfbj": ("stbhhx", "czkfbj"),
    "construction_in_yjjbnt": ("dltb", "yjjbnt"),
    "construction_in_stbhhx": ("dltb", "stbhhx"),
    "yjjbnt_not_cultivated": ("yjjbnt", "dltb"),
    "construction_outside_czkfbj": ("dltb", "czkfbj"),
    "parcel_zone_conflict": ("parcels", "ghfq"),
    "approved_unsupplied": ("approvals",),
    "idle_land": ("parcels",),
}


def _empty(crs) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({c: pd.Series([], dtype=float if c == "area_m2" else object) for c in CONFLICT_COLUMNS},
                            geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def conflict_key(kind: str, left_layer: str, left_ids: str, right_layer: str, right_ids: str) -> str:
    """The text whose sha256 gives a conflict_id (left_ids / right_ids: the stored JSON list texts)."""
    if kind in SUBJECT_KINDS:
        return "|".join((kind, left_layer, left_ids))
    return "|".join((kind, left_layer, left_ids, right_layer, right_ids))


def conflict_ids(records: pd.DataFrame) -> np.ndarray:
    """The conflict_id of every record (columns kind, left_layer, left_ids, right_layer, right_ids, area_m2,
    XZQDM, note, geometry): CF-<KIND_CODES[kind]>-<12 hex of sha256(conflict_key)>, unique within ``records``.
    Records sharing a key (a source layer repeating an id) get -2, -3 … after the first, in the order: larger
    area (to 0.01 m²), normalised geometry WKB, XZQDM, note — nothing depends on row order or the run."""
    n = len(records)
    if n == 0:
        return np.array([], dtype=object)
    unknown = sorted(set(records["kind"]) - set(KIND_CODES))
    if unknown:
        raise FieldError(f"kind {unknown[0]!r} is not a conflict kind (no code in analysis.conflicts.KIND_CODES); "
                         f"use one of {sorted(KIND_CODES)} or give the new kind a code")
    columns = [as_text(records[c]) for c in ("kind", "left_layer", "left_ids", "right_layer", "right_ids")]
    ids = np.array([
        f"{CONFLICT_ID_PREFIX}-{KIND_CODES[k]}-"
        + hashlib.sha256(conflict_key(k, ll, li, rl, ri).encode("utf-8")).hexdigest()[:CONFLICT_ID_HEX]
        for k, ll, li, rl, ri in zip(*columns)], dtype=object)
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts == 1).all():
        return ids
    area = np.round(np.asarray(records["area_m2"], dtype=float), 2)
    geoms = np.asarray(records.geometry.values) if isinstance(records, gpd.GeoDataFrame) else np.full(n, None)
    xzqdm, note = as_text(records["XZQDM"]), as_text(records["note"])
    for base in ids[np.sort(first[counts > 1])]:
        rows = np.flatnonzero(ids == base)
        wkb = shapely.to_wkb(shapely.normalize(geoms[rows]), hex=True, output_dimension=2, byte_order=1)
        order = sorted(range(len(rows)), key=lambda k: (-area[rows[k]], wkb[k] or "", xzqdm[rows[k]], note[rows[k]]))
        for rank, k in enumerate(order[1:], start=2):
            ids[rows[k]] = f"{base}-{rank}"
    return ids


def _with_ids(records: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    records = records.copy()
    records["conflict_id"] = conflict_ids(records)
    return records[[*CONFLICT_COLUMNS, records.geometry.name]]


def _records(kind, geoms, areas, left_layer, left_ids, right_layer, right_ids, xzqdm, notes, crs):
    n = len(geoms)
    if n == 0:
        return _empty(crs)
    return _with_ids(gpd.GeoDataFrame({
        "kind": [kind] * n,
        "kind_zh": [KINDS[kind]] * n,
        "area_m2": np.asarray(areas, dtype=float),
        "left_layer": [left_layer] * n,
        "left_ids": [json_list(x) for x in left_ids],
        "right_layer": list(right_layer) if not isinstance(right_layer, str) else [right_layer] * n,
        "right_ids": [json_list(x) for x in right_ids],
        "XZQDM": list(xzqdm),
        "note": list(notes),
    }, geometry=gpd.GeoSeries(list(geoms), crs=crs), crs=crs))


def _dltb_village(dltb: gpd.GeoDataFrame) -> np.ndarray:
    if "ZLDWDM" not in dltb.columns:
        return np.array([""] * len(dltb), dtype=object)
    return village_codes(dltb["ZLDWDM"])


def _code_note(code: str, prefix: str) -> str:
    return f"{prefix} {code} {SANDIAO_CODES.get(code, '')}".rstrip()


def pair_pieces(left, right, *, min_area: float, workers: int = 2):
    """Pieces of left ∩ right with area ≥ min_area: (left positions, right positions, areas, geometries)."""
    empty = np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0), np.zeros(0, dtype=object)
    if len(left) == 0 or len(right) == 0:
        return empty
    lg, rg = np.asarray(left.geometry.values), np.asarray(right.geometry.values)
    li, ri = interior_pairs(lg, rg, workers=workers)
    if len(li) == 0:
        return empty
    lu, ru = np.unique(li), np.unique(ri)  # overlay only the polygons that do overlap something
    pieces = overlay(left.geometry.iloc[lu], right.geometry.iloc[ru], workers=workers, keep_geometry=True)
    keep = pieces["area_m2"].to_numpy() >= min_area
    return (lu[pieces["left"].to_numpy()[keep]], ru[pieces["right"].to_numpy()[keep]],
            pieces["area_m2"].to_numpy()[keep], np.asarray(pieces.geometry.values)[keep])


def pair_conflicts(kind: str, left: gpd.GeoDataFrame, left_name: str, left_ids: np.ndarray,
                   right: gpd.GeoDataFrame, right_name: str, right_ids: np.ndarray, *, min_area: float,
                   villages=None, village_left=None, village_right=None, note=None,
                   workers: int = 2, order_left: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """One record per overlapping (left, right) pair with a piece area ≥ min_area, listed by left then right.
    ``order_left``: a sort key per left row, kept on the records (see :func:`survey_conflicts`)."""
    crs = left.crs
    li, ri, areas, geoms = pair_pieces(left, right, min_area=min_area, workers=workers)
    if len(li) == 0:
        return _empty(crs)
    if village_left is not None:
        xzqdm = village_left[li]
    elif village_right is not None:
        xzqdm = village_right[ri]
    else:
        xzqdm = village_by_largest_share(geoms, crs, villages, workers)
    notes = [note(a, b) for a, b in zip(li, ri)] if note is not None else [""] * len(li)
    records = _records(kind, geoms, areas, left_name, [_listed(x) for x in left_ids[li]],
                       right_name, [_listed(x) for x in right_ids[ri]], xzqdm, notes, crs)
    return records if order_left is None else _keyed(records, order_left[li], ri)


def _keyed(records: gpd.GeoDataFrame, first, second) -> gpd.GeoDataFrame:
    """The records with their sort key (ORDER_KEYS): where each stands in the whole county's listing."""
    return records.assign(**{ORDER_KEYS[0]: np.asarray(first, dtype=np.int64),
                             ORDER_KEYS[1]: np.asarray(second, dtype=np.int64)})


def _listed(x) -> list:
    """An id, or the ids of a face of overlapping polygons (analysis.faces), as a list."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _ids_text(x) -> str:
    return "、".join(map(str, _listed(x)))


def yjjbnt_pieces(yjjbnt: gpd.GeoDataFrame, yj_ids: np.ndarray, dltb: gpd.GeoDataFrame, d_ids: np.ndarray,
                  codes: np.ndarray, cats: np.ndarray, village: np.ndarray, *, min_area: float,
                  workers: int = 2, keys: np.ndarray | None = None
                  ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(yjjbnt_not_cultivated, construction_in_yjjbnt) from ONE overlay of YJJBNT with the DLTB patches that are
    not 耕地 (construction patches are among them): the costly overlay is not run twice."""
    crs = dltb.crs
    sel = np.flatnonzero((cats != "cultivated") & (cats != UNCLASSIFIED))  # an unknown code is not known lost
    # YJJBNT on the right: the overlay prepares the right polygons, and each YJJBNT polygon meets many patches
    ri, li, areas, geoms = pair_pieces(dltb.iloc[sel], yjjbnt, min_area=min_area, workers=workers)
    order = np.lexsort((ri, li))  # list the pieces by YJJBNT polygon, then DLTB patch
    li, ri, areas, geoms = li[order], ri[order], areas[order], geoms[order]
    rows = sel[ri]
    notes = [_code_note(codes[r], "现状") for r in rows]
    lost = _records("yjjbnt_not_cultivated", geoms, areas, "yjjbnt", [_listed(x) for x in yj_ids[li]], "dltb",
                    [[x] for x in d_ids[rows]], village[rows], notes, crs)
    built = cats[rows] == "construction"
    order = np.lexsort((li[built], rows[built]))  # by DLTB patch, as a dltb × yjjbnt overlay would list them
    b = np.flatnonzero(built)[order]
    inside = _records("construction_in_yjjbnt", geoms[b], areas[b], "dltb", [[x] for x in d_ids[rows[b]]],
                      "yjjbnt", [_listed(x) for x in yj_ids[li[b]]], village[rows[b]], [notes[k] for k in b], crs)
    if keys is None:
        return lost, inside
    return _keyed(lost, li, keys[rows]), _keyed(inside, keys[rows[b]], li[b])


def construction_outside(dltb: gpd.GeoDataFrame, czkfbj: gpd.GeoDataFrame, rules: Rules, *,
                         village: np.ndarray | None = None, workers: int = 2,
                         order: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """Construction patches (codes not exempt) minus the union of CZKFBJ: the part outside, per patch."""
    crs = dltb.crs
    codes = as_text(dltb["DLBM"])
    sel = np.isin(codes, list(rules.construction - rules.outside_czkfbj_exempt))
    sub = dltb[sel]
    if len(sub) == 0:
        return _empty(crs)
    sub_ids = id_column(dltb, ("BSM",), "dltb")[sel]
    sub_codes = codes[sel]
    geoms = np.asarray(sub.geometry.values)
    area = ellipsoidal_area(geoms, crs)
    c_ids = id_column(czkfbj, ("BSM",), "czkfbj")
    inside, inside_ids, unions = cover_by_union(geoms, crs, czkfbj, c_ids, workers=workers, want_geometry=True)
    outside = area - inside
    out_geoms = geoms.copy()
    partial = (inside > 0) & (outside >= rules.conflict_min_area_m2)
    if partial.any():
        out_geoms[partial] = shapely.difference(geoms[partial], np.array(list(unions[partial]), dtype=object))
        outside[partial] = ellipsoidal_area(out_geoms[partial], crs)
    keep = outside >= rules.conflict_min_area_m2
    keep &= ~shapely.is_empty(out_geoms)
    idx = np.flatnonzero(keep)
    notes = [_code_note(sub_codes[k], "现状") + ("，部分位于城镇开发边界内" if inside[k] > 0 else "") for k in idx]
    records = _records("construction_outside_czkfbj", out_geoms[idx], outside[idx], "dltb",
                       [[x] for x in sub_ids[idx]], "czkfbj", [inside_ids[k] for k in idx],
                       (_dltb_village(dltb) if village is None else village)[sel][idx], notes, crs)
    return records if order is None else _keyed(records, order[sel][idx], np.zeros(len(idx)))


def parcel_zone_conflicts(parcels: gpd.GeoDataFrame, ghfq: gpd.GeoDataFrame, rules: Rules, *, villages=None,
                          workers: int = 2) -> gpd.GeoDataFrame:
    """Parcel pieces whose use (TDYT) conflicts with the planning zone (GHFQDM) per rules.zone_use."""
    crs = parcels.crs
    if not rules.zone_use or "TDYT" not in parcels.columns:
        return _empty(crs)
    if "GHFQDM" not in ghfq.columns:
        raise FieldError("layer 'ghfq' lacks GHFQDM (规划分区代码); map the zone code field to GHFQDM")
    uses = as_text(parcels["TDYT"])
    zones = as_text(ghfq["GHFQDM"])
    pairs = {(z, u) for z in set(zones.tolist()) for u in set(uses.tolist()) if z and u}
    table = {}
    for z, u in pairs:
        for rule in rules.zone_use:
            if rule.matches(z, u):
                table[(z, u)] = rule
                break
    if not table:
        return _empty(crs)
    p_sel = np.isin(uses, sorted({u for _, u in table}))
    z_sel = np.isin(zones, sorted({z for z, _ in table}))
    p_ids = id_column(parcels, ("ZDDM",), "parcels")[p_sel]
    z_ids = id_column(ghfq, ("BSM", "GHFQDM"), "ghfq")[z_sel]
    p_uses, z_codes = uses[p_sel], zones[z_sel]
    found = pair_conflicts("parcel_zone_conflict", parcels[p_sel], "parcels", p_ids, ghfq[z_sel], "ghfq", z_ids,
                           min_area=rules.conflict_min_area_m2, villages=villages, workers=workers,
                           note=lambda a, b: _zone_note(table.get((z_codes[b], p_uses[a])), z_codes[b], p_uses[a]))
    found = found[found["note"] != ""].reset_index(drop=True)
    return _with_ids(found) if len(found) else _empty(crs)  # ids over the records kept


def _zone_note(rule, zone, use) -> str:
    if rule is None:
        return ""
    return f"宗地用途 {use} {SANDIAO_CODES.get(use, '')} 位于{rule.zone_zh}（{zone}）：{rule.reason}"


def _on_or_before(dates: pd.Series, day: dt.date) -> np.ndarray:
    d = dates.to_numpy(dtype="datetime64[ns]")
    return ~np.isnat(d) & (d <= np.datetime64(day, "ns"))


def years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def approved_unsupplied(approvals: gpd.GeoDataFrame, parcels: gpd.GeoDataFrame | None, rules: Rules, *,
                          villages=None, workers: int = 2) -> gpd.GeoDataFrame:
    """批而未供: approvals of supply.approve_kinds, dated on/before survey_date (or undated), whose land is not
    covered by supplied land (parcels with GDRQ ≤ survey_date ∪ approvals of supply.supply_kinds) over at least
    supply.unsupplied_min_share of their area. The record is the unsupplied part."""
    crs = approvals.crs
    kinds = as_text(approvals["PZLX"])
    dates = parse_dates(approvals["PZRQ"].to_numpy() if "PZRQ" in approvals.columns else [None] * len(approvals))
    undated = dates.isna().to_numpy()
    in_time = undated | _on_or_before(dates, rules.survey_date)
    a_ids = id_column(approvals, ("PZWH", "DZJGH"), "approvals")
    sel = np.isin(kinds, list(rules.approve_kinds)) & in_time
    if not sel.any():
        return _empty(crs)
    supply_parts, supply_ids, supply_layer = [], [], []
    if parcels is not None and len(parcels) and "GDRQ" in parcels.columns:
        supplied = _on_or_before(parse_dates(parcels["GDRQ"].to_numpy()), rules.survey_date)
        supply_parts.append(np.asarray(parcels.geometry.values)[supplied])
        supply_ids.append(id_column(parcels, ("ZDDM",), "parcels")[supplied])
        supply_layer += ["parcels"] * int(supplied.sum())
    s_sel = np.isin(kinds, list(rules.supply_kinds)) & in_time
    if s_sel.any():
        supply_parts.append(np.asarray(approvals.geometry.values)[s_sel])
        supply_ids.append(a_ids[s_sel])
        supply_layer += ["approvals"] * int(s_sel.sum())
    geoms = np.asarray(approvals.geometry.values)[sel]
    area = ellipsoidal_area(geoms, crs)
    if supply_parts:
        supply = geo(np.concatenate(supply_parts), crs)
        s_ids = np.concatenate(supply_ids)
        s_layer = dict(zip(s_ids.tolist(), supply_layer))
        covered, cov_ids, unions = cover_by_union(geoms, crs, supply, s_ids, workers=workers, want_geometry=True)
    else:
        covered, cov_ids, unions = np.zeros(len(geoms)), [[] for _ in geoms], np.array([None] * len(geoms))
        s_layer = {}
    unsupplied = np.clip(area - covered, 0.0, None)
    share = np.divide(unsupplied, area, out=np.zeros(len(area)), where=area > 0)
    keep = (share >= rules.unsupplied_min_share - 1e-9) & (unsupplied >= rules.conflict_min_area_m2)
    out_geoms = geoms.copy()
    part = keep & (covered > 0)
    if part.any():
        out_geoms[part] = shapely.difference(geoms[part], np.array(list(unions[part]), dtype=object))
        unsupplied[part] = ellipsoidal_area(out_geoms[part], crs)
    idx = np.flatnonzero(keep)
    sel_ids, sel_kinds = a_ids[sel], kinds[sel]
    sel_dates = dates[sel].reset_index(drop=True)
    right_layer = []
    for k in idx:
        layers = sorted({s_layer[x] for x in cov_ids[k]})
        right_layer.append("+".join(layers) if layers else "parcels")
    notes = [f"{sel_kinds[k]}，批准日期 {_date_text(sel_dates.iloc[k])}，已供 {covered[k]:.2f} m²，未供 "
             f"{share[k] * 100:.1f}%" for k in idx]
    return _records("approved_unsupplied", out_geoms[idx], unsupplied[idx], "approvals",
                    [[x] for x in sel_ids[idx]], right_layer, [cov_ids[k] for k in idx],
                    village_by_largest_share(out_geoms[idx], crs, villages, workers), notes, crs)


def _date_text(value) -> str:
    return "空" if pd.isna(value) else pd.Timestamp(value).date().isoformat()


def idle_land(parcels: gpd.GeoDataFrame, dltb: gpd.GeoDataFrame | None, rules: Rules, *, villages=None,
              workers: int = 2) -> gpd.GeoDataFrame:
    """闲置土地: parcels supplied (GDRQ) at least idle.years before survey_date with no JGRQ on or before
    survey_date, and — when idle.check_dltb — a built share (current DLTB construction codes other than
    idle.unbuilt_codes) below idle.max_built_share."""
    crs = parcels.crs
    if "GDRQ" not in parcels.columns:
        return _empty(crs)
    cutoff = years_before(rules.survey_date, rules.idle_years)
    gd = parse_dates(parcels["GDRQ"].to_numpy())
    jg = parse_dates(parcels["JGRQ"].to_numpy() if "JGRQ" in parcels.columns else [None] * len(parcels))
    old_enough = _on_or_before(gd, cutoff)
    finished = _on_or_before(jg, rules.survey_date)
    cand = old_enough & ~finished
    if not cand.any():
        return _empty(crs)
    geoms = np.asarray(parcels.geometry.values)[cand]
    area = ellipsoidal_area(geoms, crs)
    ids = id_column(parcels, ("ZDDM",), "parcels")[cand]
    built_share = np.zeros(len(geoms))
    dltb_ids: list[list[str]] = [[] for _ in geoms]
    if rules.idle_check_dltb and dltb is not None and len(dltb):
        dltb = near(dltb, geoms)  # the survey patches around the candidate parcels only
        assert dltb is not None
        d_codes = as_text(dltb["DLBM"])
        d_ids = id_column(dltb, ("BSM",), "dltb")
        pieces = overlay(geo(geoms, crs), dltb.geometry, workers=workers, keep_geometry=False)
        li, ri = pieces["left"].to_numpy(), pieces["right"].to_numpy()
        pa = pieces["area_m2"].to_numpy(dtype=float)
        built = np.isin(d_codes[ri], list(rules.construction - rules.idle_unbuilt_codes))
        built_share = np.divide(np.bincount(li[built], pa[built], minlength=len(geoms)), area,
                                out=np.zeros(len(geoms)), where=area > 0)
        for a, b in sorted(set(zip(li.tolist(), d_ids[ri].tolist()))):
            dltb_ids[a].append(b)
        keep = built_share < rules.idle_max_built_share
    else:
        keep = np.ones(len(geoms), dtype=bool)
    keep &= area >= rules.conflict_min_area_m2
    idx = np.flatnonzero(keep)
    gd_c, jg_c = gd[cand].reset_index(drop=True), jg[cand].reset_index(drop=True)
    notes = [f"供地日期 {_date_text(gd_c.iloc[k])}，至 {rules.survey_date.isoformat()} 已满 {rules.idle_years} 年；"
             f"竣工日期 {_date_text(jg_c.iloc[k])}" +
             (f"；现状建设占比 {built_share[k] * 100:.1f}%" if rules.idle_check_dltb and dltb is not None else "")
             for k in idx]
    return _records("idle_land", geoms[idx], area[idx], "parcels", [[x] for x in ids[idx]],
                    "dltb" if rules.idle_check_dltb and dltb is not None else "",
                    [dltb_ids[k] for k in idx], village_by_largest_share(geoms[idx], crs, villages, workers),
                    notes, crs)


def control_faces(present: dict[str, gpd.GeoDataFrame]) -> tuple[dict[str, gpd.GeoDataFrame], dict[str, np.ndarray]]:
    """The control lines present, each cut into disjoint faces (a shared part of two overlapping polygons
    counts once), and the ids of each face (a face under two polygons names both)."""
    lines: dict[str, gpd.GeoDataFrame] = {}
    ids: dict[str, np.ndarray] = {}
    for name in ("yjjbnt", "stbhhx", "czkfbj"):
        if name in present:
            lines[name], ids[name] = disjoint_faces(present[name], id_column(present[name], ("BSM",), name))
    return lines, ids


def survey_conflicts(dltb: gpd.GeoDataFrame, lines: dict[str, gpd.GeoDataFrame], line_ids: dict[str, np.ndarray],
                     rules: Rules, *, czkfbj: gpd.GeoDataFrame | None = None, workers: int = 2,
                     order: np.ndarray | None = None) -> list[gpd.GeoDataFrame]:
    """The kinds with a DLTB patch on one side (yjjbnt_not_cultivated, construction_in_yjjbnt,
    construction_in_stbhhx, construction_outside_czkfbj), in find_conflicts' order, for the control lines
    present (``lines`` / ``line_ids`` from :func:`control_faces`; ``czkfbj``: its polygons as stored, whose
    union construction_outside_czkfbj takes). Each record comes from one DLTB patch, so
    a spatial partition computes those of its own patches. ``order``: a key per DLTB row (its stored
    position in the whole layer); the records then carry ORDER_KEYS, by which :func:`merge_survey_conflicts`
    lists the partitions' records exactly as the whole county's run would."""
    min_area = rules.conflict_min_area_m2
    d_ids = id_column(dltb, ("BSM",), "dltb")
    codes = as_text(dltb["DLBM"])
    cats = land_categories(codes, rules, "dltb")
    village = _dltb_village(dltb)
    cons = cats == "construction"
    cons_codes = codes[cons]
    out: list[gpd.GeoDataFrame] = []
    if "yjjbnt" in lines:
        out.extend(yjjbnt_pieces(lines["yjjbnt"], line_ids["yjjbnt"], dltb, d_ids, codes, cats, village,
                                 min_area=min_area, workers=workers, keys=order))
    if "stbhhx" in lines:
        out.append(pair_conflicts(
            "construction_in_stbhhx", dltb[cons], "dltb", d_ids[cons], lines["stbhhx"], "stbhhx",
            line_ids["stbhhx"], min_area=min_area, village_left=village[cons], workers=workers,
            note=lambda a, b: _code_note(cons_codes[a], "现状"), order_left=None if order is None else order[cons]))
    if czkfbj is not None:
        out.append(construction_outside(dltb, czkfbj, rules, village=village, workers=workers, order=order))
    return out


SURVEY_KINDS = ("yjjbnt_not_cultivated", "construction_in_yjjbnt", "construction_in_stbhhx",
                "construction_outside_czkfbj")
ORDER_KEYS = ("_order_1", "_order_2")


def merge_survey_conflicts(parts: list[list[gpd.GeoDataFrame]]) -> list[gpd.GeoDataFrame]:
    """The survey kinds' records of every partition (survey_conflicts with ``order``), one frame per kind in
    find_conflicts' order, each listed by its order keys and its conflict_ids given over the whole kind."""
    out = []
    for kind in SURVEY_KINDS:
        frames = [f for part in parts for f in part if len(f) and f["kind"].iloc[0] == kind]
        if not frames:
            continue
        merged = pd.concat(frames, ignore_index=True).sort_values(list(ORDER_KEYS), kind="stable")
        merged = gpd.GeoDataFrame(merged.drop(columns=list(ORDER_KEYS)).reset_index(drop=True),
                                  geometry="geometry", crs=frames[0].crs)
        out.append(_with_ids(merged))
    return out


def find_conflicts(*, rules: Rules, dltb: gpd.GeoDataFrame | None = None, yjjbnt=None, stbhhx=None,
                   czkfbj=None, ghfq=None, approvals=None, parcels=None, villages=None,
                   workers: int = 2, survey: list[gpd.GeoDataFrame] | None = None
                   ) -> tuple[gpd.GeoDataFrame, dict[str, str]]:
    """Every planning conflict of the region. Returns (records, skipped) where skipped maps a kind whose
    layers are absent to the missing layer names (so a report can say what was not checked).

    ``survey``: the survey kinds' records already computed over the whole DLTB layer (a county analysed in
    spatial partitions, :func:`merge_survey_conflicts`); ``dltb`` then holds only the patches near the
    parcels, for idle_land."""
    present = {name: gdf for name, gdf in dict(dltb=dltb, yjjbnt=yjjbnt, stbhhx=stbhhx, czkfbj=czkfbj, ghfq=ghfq,
                                               approvals=approvals, parcels=parcels).items() if gdf is not None}
    if not present:
        return _empty(None), {k: ", ".join(v) for k, v in NEEDS.items()}
    crs = next(iter(present.values())).crs
    check_same_crs(crs, **present, villages=villages)
    skipped = {kind: ", ".join(n for n in needs if n not in present) for kind, needs in NEEDS.items()
               if any(n not in present for n in needs)}
    lines, ids = control_faces(present)
    min_area = rules.conflict_min_area_m2
    parts = []

    def run(kind, fn):
        if kind not in skipped:
            parts.append(fn())

    line_zh = {"yjjbnt": "永久基本农田", "stbhhx": "生态保护红线", "czkfbj": "城镇开发边界"}
    for a, b in (("yjjbnt", "stbhhx"), ("yjjbnt", "czkfbj"), ("stbhhx", "czkfbj")):
        run(f"{a}_{b}", lambda a=a, b=b: pair_conflicts(
            f"{a}_{b}", lines[a], a, ids[a], lines[b], b, ids[b], min_area=min_area, workers=workers,
            note=lambda i, j, a=a, b=b: f"{line_zh[a]} {_ids_text(ids[a][i])} 与{line_zh[b]} {_ids_text(ids[b][j])} "
                                        "重叠（三线不得交叉重叠）"))
    if dltb is not None:
        parts.extend(survey if survey is not None else survey_conflicts(dltb, lines, ids, rules, czkfbj=czkfbj,
                                                                        workers=workers))
    run("parcel_zone_conflict", lambda: parcel_zone_conflicts(parcels, ghfq, rules, workers=workers))
    run("approved_unsupplied", lambda: approved_unsupplied(approvals, parcels, rules, workers=workers))
    run("idle_land", lambda: idle_land(parcels, dltb, rules, workers=workers))
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty(crs), skipped
    out = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=crs)
    missing = (out["XZQDM"] == "").to_numpy()
    if missing.any() and villages is not None:  # one overlay with the villages for every piece that needs it
        xzqdm = out["XZQDM"].to_numpy(dtype=object)
        xzqdm[missing] = village_by_largest_share(np.asarray(out.geometry.values)[missing], crs, villages, workers)
        out["XZQDM"] = xzqdm
    return out, skipped

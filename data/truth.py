"""The planted truth of the sample county (planted.yaml), computed from the geometry itself.

Every number here is measured on the layers as built (the same geometry that is written to the files):
areas are ``layers.area.ellipsoidal_area`` of exact shapely intersections. The expected verdicts and
conflict lists are then checked against the case specifications of data/generate.py under the default
rules of analysis/rules.yaml (copied below as constants, since data/ does not import analysis/); a
disagreement is a generator bug and raises, so a sample with a wrong truth is never written.
"""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import shapely

from layers.area import ellipsoidal_area
from layers.codes import CONSTRUCTION_SANDIAO, CULTIVATED

CRS = "EPSG:4547"
SURVEY_DATE = dt.date(2024, 12, 31)
# analysis/rules.yaml defaults the expected verdicts are stated under
LEGAL_KINDS = ("农用地转用", "土地征收", "供地")
COMPLIANT_KINDS = ("临时用地", "设施农用地备案")
APPROVE_KINDS = ("农用地转用", "土地征收")
LEGAL_MIN_SHARE = 0.95
PARTIAL_MIN_SHARE = 0.05
PSEUDO_MIN_AREA = 100.0
UNCHANGED_MIN_SHARE = 0.95
MIN_CONFLICT_AREA = 1.0
OUTSIDE_EXEMPT = ("0702", "0602", "1001", "1003", "1009", "1109")
IDLE_YEARS = 2
IDLE_MAX_BUILT_SHARE = 0.3333
UNBUILT_CODES = ("1201",)
UNSUPPLIED_MIN_SHARE = 0.05
ZONE_USE = [  # (zone prefix, use prefixes) — analysis/rules.yaml conflicts.zone_use
    ("01", ("05", "06", "07", "08", "1004", "1005")),
    ("02", ("05", "0601", "0701")),
    ("03", ("05", "06", "07", "08", "1004", "1005")),
    ("0403", ("05", "0601", "0701")),
    ("0501", ("0601", "0701")),
    ("0502", ("05", "0601", "0701", "08")),
    ("0503", ("05", "0601", "0701", "08")),
    ("0504", ("05", "0601", "0701", "08")),
]


def polygonal(geoms) -> np.ndarray:
    """Polygonal part of each geometry (intersections of touching polygons come as collections)."""
    geoms = np.atleast_1d(np.asarray(geoms, dtype=object))
    mixed = shapely.get_type_id(geoms) == 7
    if mixed.any():
        out = geoms.copy()
        for i in np.flatnonzero(mixed):
            parts = shapely.get_parts(geoms[i])
            parts = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
            out[i] = shapely.multipolygons(shapely.get_parts(parts)) if len(parts) else shapely.Polygon()
        geoms = out
    return geoms


def area(geoms) -> np.ndarray:
    """Ellipsoidal area (m²) of the polygonal part of each geometry."""
    return ellipsoidal_area(polygonal(geoms), CRS)


def r2(x) -> float:
    return round(float(x), 2)


def is_construction(codes) -> np.ndarray:
    return np.isin(np.asarray(codes).astype(str), list(CONSTRUCTION_SANDIAO))


def is_cultivated(codes) -> np.ndarray:
    return np.isin(np.asarray(codes).astype(str), list(CULTIVATED))


_TREES: dict[int, tuple[object, shapely.STRtree]] = {}


def tree_of(values) -> shapely.STRtree:
    """An STRtree per layer geometry array (``gdf.geometry.values``), cached while that array lives."""
    key = id(values)
    hit = _TREES.get(key)
    if hit is None or hit[0] is not values:
        hit = (values, shapely.STRtree(np.asarray(values, dtype=object)))
        _TREES[key] = hit
    return hit[1]


def cover_area(geom, layer: gpd.GeoDataFrame, mask: np.ndarray | None = None) -> float:
    """Ellipsoidal area of geom ∩ (union of the layer's features, optionally masked)."""
    values = layer.geometry.values
    geoms = np.asarray(values, dtype=object)
    hit = tree_of(values).query(geom, predicate="intersects")
    if mask is not None:
        hit = hit[np.asarray(mask)[hit]]
    if not len(hit):
        return 0.0
    inter = shapely.intersection(geom, shapely.union_all(shapely.make_valid(geoms[hit])))
    return float(area(inter)[0])


def pieces_by_code(geom, dltb: gpd.GeoDataFrame) -> dict[str, float]:
    """Area of geom on each land-use code of a DLTB layer."""
    g = np.asarray(dltb.geometry.values, dtype=object)
    hit = tree_of(dltb.geometry.values).query(geom, predicate="intersects")
    out: dict[str, float] = {}
    if not len(hit):
        return out
    a = area(shapely.intersection(geom, g[hit]))
    for code, v in zip(dltb["DLBM"].to_numpy()[hit].astype(str), a):
        if v > 0:
            out[code] = out.get(code, 0.0) + float(v)
    return out


def unchanged_area(geom, prev: gpd.GeoDataFrame, curr: gpd.GeoDataFrame) -> float:
    """Area of geom where the current land use equals the previous one."""
    gp, gc = np.asarray(prev.geometry.values, dtype=object), np.asarray(curr.geometry.values, dtype=object)
    hp = tree_of(prev.geometry.values).query(geom, predicate="intersects")
    total = 0.0
    tc = tree_of(curr.geometry.values)
    for i in hp:
        piece = shapely.intersection(geom, gp[i])
        if shapely.is_empty(piece):
            continue
        hc = tc.query(piece, predicate="intersects")
        same = hc[curr["DLBM"].to_numpy()[hc].astype(str) == str(prev["DLBM"].iloc[i])]
        if len(same):
            total += float(area(shapely.intersection(piece, shapely.union_all(gc[same])))[0])
    return total


def verdict_by_rules(a: float, unchanged_share: float, legal_share: float, all_share: float) -> str:
    tol = 1e-9
    if a < PSEUDO_MIN_AREA:
        return "other"
    if unchanged_share >= UNCHANGED_MIN_SHARE - tol:
        return "other"
    if legal_share >= LEGAL_MIN_SHARE - tol:
        return "legal"
    if all_share >= LEGAL_MIN_SHARE - tol:
        return "other"
    if all_share >= PARTIAL_MIN_SHARE - tol:
        return "partly_approved"
    return "suspected_illegal"


def is_survey_change(prev_code: str, cur_code: str) -> bool:
    """analysis/changes.py: non-construction → construction, or 耕地 → not 耕地."""
    new_built = not is_construction([prev_code])[0] and is_construction([cur_code])[0]
    lost = is_cultivated([prev_code])[0] and not is_cultivated([cur_code])[0]
    return bool(new_built or lost)


def overlap_ratio(a, b) -> float:
    inter = shapely.intersection(a, b)
    if shapely.is_empty(inter):
        return 0.0
    return float(area(inter)[0] / min(area(a)[0], area(b)[0]))


def pair_pieces(left: gpd.GeoDataFrame, lmask, right: gpd.GeoDataFrame, rmask, lid: str, rid: str,
                whole_patches: str | None = None):
    """All pieces left ∩ right (masked) with area ≥ MIN_CONFLICT_AREA: [(left id, right id, area, geom)].

    ``whole_patches`` ("left" / "right") names a side made of DLTB patches that the other side's features are
    unions of (benchmark-size counties): a patch then overlaps a feature iff its interior point lies in it, and
    only those pairs are intersected. Without it every intersecting pair is intersected (the sample)."""
    li = np.flatnonzero(lmask) if lmask is not None else np.arange(len(left))
    ri = np.flatnonzero(rmask) if rmask is not None else np.arange(len(right))
    lg = shapely.make_valid(np.asarray(left.geometry.values[li], dtype=object))
    rg = shapely.make_valid(np.asarray(right.geometry.values[ri], dtype=object))
    if whole_patches == "left":
        pairs = shapely.STRtree(rg).query(shapely.point_on_surface(lg), predicate="within")
    elif whole_patches == "right":
        pairs = shapely.STRtree(lg).query(shapely.point_on_surface(rg), predicate="within")[::-1]
    else:
        pairs = shapely.STRtree(rg).query(lg, predicate="intersects")
    if not pairs.shape[1]:
        return []
    inter = shapely.intersection(lg[pairs[0]], rg[pairs[1]])
    a = area(inter)
    out = []
    for k in np.flatnonzero(a >= MIN_CONFLICT_AREA):
        out.append((str(left[lid].iloc[li[pairs[0][k]]]), str(right[rid].iloc[ri[pairs[1][k]]]), float(a[k]),
                    inter[k]))
    return out


def _date(v):
    if v is None:
        return None
    try:
        if v != v:  # NaT / NaN
            return None
    except TypeError:
        pass
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    return dt.date.fromisoformat(str(v)[:10])


def supply_truth(approvals: gpd.GeoDataFrame, parcels: gpd.GeoDataFrame, dltb: gpd.GeoDataFrame) -> dict:
    """批而未供 and 闲置 under the default rules, measured on the layers."""
    pg = shapely.make_valid(np.asarray(parcels.geometry.values, dtype=object))
    supplied = np.array([(_date(d) is not None and _date(d) <= SURVEY_DATE) for d in parcels["GDRQ"]])
    kinds = approvals["PZLX"].to_numpy().astype(str)
    supply_geoms = list(pg[supplied]) + list(approvals.geometry.values[kinds == "供地"])
    supply_union = shapely.union_all(supply_geoms)
    unsupplied = []
    for i in np.flatnonzero(np.isin(kinds, APPROVE_KINDS)):
        g = approvals.geometry.values[i]
        a = float(area(g)[0])
        rest = float(area(shapely.difference(g, supply_union))[0])
        if rest / a >= UNSUPPLIED_MIN_SHARE and rest >= MIN_CONFLICT_AREA:
            unsupplied.append({"PZWH": str(approvals["PZWH"].iloc[i]), "PZLX": kinds[i], "area_m2": r2(a),
                               "unsupplied_area_m2": r2(rest), "unsupplied_share": round(rest / a, 4)})
    limit = dt.date(SURVEY_DATE.year - IDLE_YEARS, SURVEY_DATE.month, SURVEY_DATE.day)
    built_codes = is_construction(dltb["DLBM"].to_numpy()) & ~np.isin(dltb["DLBM"].to_numpy().astype(str),
                                                                      UNBUILT_CODES)
    idle = []
    for i in range(len(parcels)):
        gd, jg = _date(parcels["GDRQ"].iloc[i]), _date(parcels["JGRQ"].iloc[i])
        if gd is None or gd > limit or (jg is not None and jg <= SURVEY_DATE):
            continue
        g = pg[i]
        a = float(area(g)[0])
        built = cover_area(g, dltb, built_codes)
        if built / a < IDLE_MAX_BUILT_SHARE:
            idle.append({"ZDDM": str(parcels["ZDDM"].iloc[i]), "GDRQ": gd.isoformat(),
                         "PZWH": str(parcels["PZWH"].iloc[i]), "area_m2": r2(a), "built_share": round(built / a, 4)})
    return {"approved_not_supplied": unsupplied, "idle": idle}


def forbidden(zone: str, use: str) -> bool:
    return any(zone.startswith(zp) and any(use.startswith(u) for u in uses) for zp, uses in ZONE_USE)


def zone_conflicts(parcels: gpd.GeoDataFrame, ghfq: gpd.GeoDataFrame) -> list[dict]:
    """Parcel ∩ planning zone pieces whose use the default zone_use table forbids.

    Only (parcel, zone) pairs whose use the rules forbid are intersected (zone polygons span the county)."""
    pg = shapely.make_valid(np.asarray(parcels.geometry.values, dtype=object))
    zg = np.asarray(ghfq.geometry.values, dtype=object)
    uses = parcels["TDYT"].to_numpy().astype(str)
    zones = ghfq["GHFQDM"].to_numpy().astype(str)
    pairs = shapely.STRtree(zg).query(pg, predicate="intersects")
    out = []
    for i, j in zip(*pairs):
        if not forbidden(zones[j], uses[i]):
            continue
        piece = shapely.intersection(pg[i], zg[j])
        a = float(area(piece)[0])
        if a >= MIN_CONFLICT_AREA:
            out.append({"ZDDM": str(parcels["ZDDM"].iloc[i]), "TDYT": uses[i], "ghfq_BSM": str(ghfq["BSM"].iloc[j]),
                        "GHFQDM": zones[j], "area_m2": r2(a)})
    return out


def compute_truth(layers: dict, sites: list[dict], supply: list[dict], zone_cases: list[dict], overlaps: dict,
                  defects: dict, *, seed: int, scale: float) -> dict:
    dltb, prev = layers["dltb"], layers["dltb_prev"]
    dltb_tess = dltb.iloc[:len(prev)]  # without the planted duplicate row
    yj, st, cz = layers["yjjbnt"], layers["stbhhx"], layers["czkfbj"]
    appr, parcels, mon = layers["approvals"], layers["parcels"], layers["monitoring"]
    kinds = appr["PZLX"].to_numpy().astype(str)
    legal_mask = np.isin(kinds, LEGAL_KINDS)
    all_mask = legal_mask | np.isin(kinds, COMPLIANT_KINDS)
    bsm = dltb["BSM"].to_numpy()

    monitoring, groups, survey, problems = [], [], [], []
    site_by_key = {s["key"]: s for s in sites}
    for s in sites:
        changed = s["new"] is not None and is_survey_change(str(prev["DLBM"].iloc[s["patch_idx"]]), s["new"])
        bg = f"BG-{bsm[s['patch_idx']]}" if changed else None
        members = []
        for code in s.get("JCBH", []):
            row = mon[mon["JCBH"] == code].iloc[0]
            g = row.geometry
            a = float(area(g)[0])
            prev_codes = pieces_by_code(g, prev)
            cur_codes = pieces_by_code(g, dltb_tess)
            orig = max(prev_codes.items(), key=lambda kv: kv[1])[0]
            now = max(cur_codes.items(), key=lambda kv: kv[1])[0]
            legal = cover_area(g, appr, legal_mask)
            every = cover_area(g, appr, all_mask)
            same = unchanged_area(g, prev, dltb_tess)
            verdict = verdict_by_rules(a, same / a, legal / a, every / a)
            if verdict != s["verdict"]:
                problems.append(f"{s['key']} {code}: geometry gives {verdict}, planted {s['verdict']}")
            cult = sum(v for k, v in prev_codes.items() if k in CULTIVATED)
            monitoring.append({
                "JCBH": code, "site": s["key"], "kind": s["kind"], "expected_verdict": s["verdict"],
                "source": str(row["SOURCE"]), "round": str(row["ROUND"]),
                "area_m2": r2(a), "orig_dlbm": orig, "now_dlbm": now,
                "area_on_cultivated_prev_m2": r2(cult),
                "approved_share": round(legal / a, 4), "covered_share_all_kinds": round(every / a, 4),
                "unchanged_share": round(same / a, 4),
                "area_yjjbnt_m2": r2(cover_area(g, yj)), "area_stbhhx_m2": r2(cover_area(g, st)),
                "area_outside_czkfbj_m2": r2(a - cover_area(g, cz)),
                "approval_ids": [s["PZWH"]] if s.get("PZWH") and every > 0 else [],
                "survey_id": bg,
            })
            members.append((code, g))
        if bg:
            members.append((bg, dltb.geometry.values[s["patch_idx"]]))
        if len(members) >= 2:
            ratios = [overlap_ratio(a_, b_) for i, (_, a_) in enumerate(members) for _, b_ in members[i + 1:]]
            groups.append({"site": s["key"], "members": [m[0] for m in members], "expected_verdict": s["verdict"],
                           "min_overlap_ratio": round(min(ratios), 4)})
        if changed:
            g = dltb.geometry.values[s["patch_idx"]]
            a = float(area(g)[0])
            legal = cover_area(g, appr, legal_mask)
            every = cover_area(g, appr, all_mask)
            verdict = verdict_by_rules(a, 0.0, legal / a, every / a)
            if verdict != s["verdict"]:
                problems.append(f"{s['key']} {bg}: geometry gives {verdict}, planted {s['verdict']}")
            survey.append({"BSM": str(bsm[s["patch_idx"]]), "id": bg, "site": s["key"],
                           "prev_dlbm": str(prev["DLBM"].iloc[s["patch_idx"]]), "now_dlbm": s["new"],
                           "area_m2": r2(a), "expected_verdict": s["verdict"], "monitoring": list(s.get("JCBH", [])),
                           "approved_share": round(legal / a, 4)})
    not_merged = []
    for s in sites:
        if s.get("half") == "a":
            twin = site_by_key[s["pair"]]
            not_merged.append({"sites": [s["key"], twin["key"]],
                               "members": [s["JCBH"][0], twin["JCBH"][0]],
                               "shared_edge_m": round(float(shapely.length(shapely.intersection(
                                   shapely.get_exterior_ring(s["rect"]), shapely.get_exterior_ring(twin["rect"])))), 3),
                               "overlap_m2": r2(area(shapely.intersection(s["rect"], twin["rect"]))[0])})

    # conflicts ------------------------------------------------------------------------------------------
    conflicts: dict[str, dict] = {}

    def listing(pieces, left_layer, right_layer):
        return [{"left_layer": left_layer, "left_ids": [l_], "right_layer": right_layer, "right_ids": [r_],
                 "area_m2": r2(a_)} for l_, r_, a_, _ in pieces]

    for kind, (ln, lf), (rn, rf) in (("overlap_yjjbnt_stbhhx", ("yjjbnt", yj), ("stbhhx", st)),
                                      ("overlap_yjjbnt_czkfbj", ("yjjbnt", yj), ("czkfbj", cz)),
                                      ("overlap_stbhhx_czkfbj", ("stbhhx", st), ("czkfbj", cz))):
        pcs = pair_pieces(lf, None, rf, None, "BSM", "BSM")
        conflicts[kind] = {"complete": True, "cases": listing(pcs, ln, rn),
                           "total_area_m2": r2(sum(p[2] for p in pcs))}
    built = is_construction(dltb_tess["DLBM"].to_numpy())
    big = len(dltb_tess) > 50_000  # benchmark county: the control lines are unions of whole patches
    for kind, (rn, rf) in (("construction_in_yjjbnt", ("yjjbnt", yj)), ("construction_in_stbhhx", ("stbhhx", st))):
        pcs = pair_pieces(dltb_tess, built, rf, None, "BSM", "BSM", whole_patches="left" if big else None)
        conflicts[kind] = {"complete": True, "cases": listing(pcs, "dltb", rn),
                           "total_area_m2": r2(sum(p[2] for p in pcs))}
    pcs = pair_pieces(yj, None, dltb_tess, ~is_cultivated(dltb_tess["DLBM"].to_numpy()), "BSM", "BSM",
                      whole_patches="right" if big else None)
    conflicts["yjjbnt_not_cultivated"] = {"complete": True, "cases": listing(pcs, "yjjbnt", "dltb"),
                                          "total_area_m2": r2(sum(p[2] for p in pcs))}
    # construction outside CZKFBJ: the planted new construction; existing village land adds background
    cz_union = shapely.union_all(cz.geometry.values)
    outside = []
    for s in sites:
        if s["new"] is not None and is_construction([s["new"]])[0] and s["new"] not in OUTSIDE_EXEMPT:
            g = dltb.geometry.values[s["patch_idx"]]
            a_out = float(area(shapely.difference(g, cz_union))[0])
            if a_out >= MIN_CONFLICT_AREA:
                outside.append({"left_layer": "dltb", "left_ids": [str(bsm[s["patch_idx"]])], "right_layer": "czkfbj",
                                "right_ids": [], "area_m2": r2(a_out), "site": s["key"], "DLBM": s["new"]})
    codes = dltb_tess["DLBM"].to_numpy().astype(str)
    sel = built & ~np.isin(codes, OUTSIDE_EXEMPT)
    out_total = None if big else \
        float(area(shapely.difference(shapely.union_all(dltb_tess.geometry.values[sel]), cz_union))[0])
    conflicts["construction_outside_czkfbj"] = {
        "complete": False,
        "note": "planted new construction only; existing village land (村庄 1004 / 08H2 / 0601 / 1201, CZCSXM 203) "
                "outside the boundary adds background cases",
        "cases": outside, "total_area_m2_default_exempt": None if out_total is None else r2(out_total)}
    zc = zone_conflicts(parcels, layers["ghfq"])
    conflicts["parcel_zone_conflict"] = {"complete": True, "cases": zc, "total_area_m2": r2(sum(c["area_m2"] for c in zc))}
    sup = supply_truth(appr, parcels, dltb_tess)

    # the truth must match the specifications
    def check(kind, got, want):
        if sorted(got) != sorted(want):
            problems.append(f"{kind}: geometry gives {sorted(got)}, planted {sorted(want)}")

    check("overlap_yjjbnt_czkfbj", [c["left_ids"][0] for c in conflicts["overlap_yjjbnt_czkfbj"]["cases"]],
          [str(yj["BSM"].iloc[i]) for i in _yj_rows(yj, dltb_tess, overlaps["yj_cz"])])
    for kind, key in (("overlap_yjjbnt_stbhhx", "yj_st"), ("overlap_stbhhx_czkfbj", "st_cz"),
                      ("overlap_yjjbnt_czkfbj", "yj_cz")):
        want = float(area(dltb_tess.geometry.values[overlaps[key]]).sum())  # the overlaps are whole patches
        if abs(conflicts[kind]["total_area_m2"] - want) > 0.01 * len(overlaps[key]) or not overlaps[key]:
            problems.append(f"{kind}: geometry gives {conflicts[kind]['total_area_m2']} m², planted {want:.2f} m²")
        conflicts[kind]["planted_dltb_patches"] = [str(bsm[i]) for i in overlaps[key]]
    check("construction_in_yjjbnt", [c["left_ids"][0] for c in conflicts["construction_in_yjjbnt"]["cases"]],
          [str(bsm[s["patch_idx"]]) for s in sites if s["parent"] == "yj" and s["new"]
           and is_construction([s["new"]])[0]])
    check("construction_in_stbhhx", [c["left_ids"][0] for c in conflicts["construction_in_stbhhx"]["cases"]],
          [str(bsm[s["patch_idx"]]) for s in sites if s["parent"] == "st" and s["new"]])
    check("yjjbnt_not_cultivated", [c["right_ids"][0] for c in conflicts["yjjbnt_not_cultivated"]["cases"]],
          [str(bsm[s["patch_idx"]]) for s in sites if s["parent"] == "yj" and s["new"]])
    check("parcel_zone_conflict", [c["ZDDM"] for c in zc], [s["ZDDM"] for s in zone_cases])
    check("approved_not_supplied", [u["PZWH"] for u in sup["approved_not_supplied"]],
          [s["PZWH"] for s in supply if s["expect"] == "approved_not_supplied"])
    check("idle", [u["ZDDM"] for u in sup["idle"]], [s["ZDDM"] for s in supply if s["expect"] == "idle"])
    _TREES.clear()
    if problems:
        raise RuntimeError("planted truth disagrees with the case specifications:\n  " + "\n  ".join(problems))

    supply_cases = []
    for s in supply:
        supply_cases.append({"case": s["key"], "expect": s["expect"], "PZWH": s["PZWH"], "PZLX": s["pzlx"],
                             "PZRQ": s["pzrq"].isoformat(), "ZDDM": s.get("ZDDM"),
                             "GDRQ": s["gdrq"].isoformat() if s["gdrq"] else None})
    bad_parcels = parcels[parcels["ZDDM"].isin(defects["parcels"]["invalid_geometry"])]
    defects = dict(defects)
    defects["parcels"] = {
        "invalid_geometry": defects["parcels"]["invalid_geometry"],
        "repaired_area_m2": {z: r2(area(shapely.make_valid(g))[0]) for z, g in
                             zip(bad_parcels["ZDDM"], bad_parcels.geometry.values)},
    }
    county = layers["xzq"].geometry.values[0]
    return {
        "version": 1,
        "generator": {"seed": seed, "scale": round(scale, 4), "patches": int(len(prev))},
        "survey_date": SURVEY_DATE.isoformat(),
        "rules_assumed": "analysis/rules.yaml defaults (legal ≥ 0.95, partial ≥ 0.05, pseudo < 100 m², "
                         "unchanged ≥ 0.95, dedupe overlap ≥ 0.5, conflicts ≥ 1 m², idle after 2 years)",
        "county_area_m2": r2(area(county)[0]),
        "monitoring": monitoring,
        "dedupe_groups": groups,
        "not_merged": not_merged,
        "survey_changes": survey,
        "conflicts": conflicts,
        "supply": {**sup, "cases": supply_cases},
        "zone_conflict_parcels": [{"case": s["key"], "ZDDM": s["ZDDM"], "TDYT": s["tdyt"], "PZWH": s["PZWH"]}
                                  for s in zone_cases],
        "defects": defects,
    }


def _yj_rows(yj: gpd.GeoDataFrame, dltb: gpd.GeoDataFrame, patch_idx: list[int]) -> list[int]:
    """Rows of the YJJBNT features drawn over the given (whole) patches."""
    out = []
    for i in patch_idx:
        g = dltb.geometry.values[i]
        hit = tree_of(yj.geometry.values).query(g, predicate="intersects")
        for h in hit:
            if shapely.equals(yj.geometry.values[h], g):
                out.append(int(h))
    return out

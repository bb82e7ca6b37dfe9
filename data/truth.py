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


# --- records: one per planted ground change (spec of issue 10, §1 and §4) -----------------------------------

SOURCE_ORDER = ("satellite", "drone", "camera", "survey", "raster")  # analysis/rules.yaml dedupe.source_order
MIN_OVERLAP_RATIO = 0.5  # dedupe.min_overlap_ratio
SITE_MIN_SHARED_EDGE_M = 1.0  # change_patches.site_min_shared_edge_m
SITE_LINK_MIN_OVERLAP_M2 = 1.0  # dedupe.site_link_min_overlap_m2
CHANGE_SLIVER_M2 = 1.0  # change_patches.sliver_m2
ILLEGAL_VERDICTS = ("suspected_illegal", "partly_approved")  # options.prejudgement_illegal_verdicts
CHANGE_VERDICTS = ("legal", "partly_approved", "suspected_illegal")  # 新增建设用地占用耕地（监测记录口径）
INDICATOR_CODES = ("illegal_count", "illegal_area", "illegal_cultivated_area", "change_cultivated_area",
                   "illegal_cultivated_ratio")


def natural_key(text: str) -> tuple:
    import re
    if not text:
        return ((2, ""),)
    return tuple((0, int(x)) if x.isdigit() else (1, x) for x in re.split(r"(\d+)", text) if x != "")


def first_day(text) -> dt.date | None:
    """A canonical date text ('YYYY-MM-DD' or month-only 'YYYY-MM') as the day it sorts by: a month-only
    date counts as the 1st of its month."""
    if text is None or text != text or text == "":
        return None
    text = str(text)
    return dt.date.fromisoformat(text if len(text) == 10 else text + "-01")


def issue_order(row) -> tuple:
    """dedupe's representative order: earliest 后时相 (month-only = 1st), round, source, JCBH."""
    d = first_day(row["HSX"])
    rank = SOURCE_ORDER.index(row["SOURCE"]) if row["SOURCE"] in SOURCE_ORDER else len(SOURCE_ORDER)
    return (d or dt.date.max, natural_key(str(row["ROUND"])), rank, natural_key(str(row["JCBH"])))


class _Measure:
    """Areas of a geometry against the layers (ellipsoidal m², exact shapely intersections)."""

    def __init__(self, layers: dict, dltb_tess: gpd.GeoDataFrame):
        self.prev, self.cur = layers["dltb_prev"], dltb_tess
        appr = layers["approvals"]
        kinds = appr["PZLX"].to_numpy().astype(str)
        dates = [_date(d) for d in appr["PZRQ"]]
        on_time = np.array([d is None or d <= SURVEY_DATE for d in dates])
        geoms = shapely.make_valid(np.asarray(appr.geometry.values, dtype=object))
        self.counted = shapely.union_all(geoms[on_time & np.isin(kinds, LEGAL_KINDS + COMPLIANT_KINDS)])
        self.legal = shapely.union_all(geoms[on_time & np.isin(kinds, LEGAL_KINDS)])
        x = layers["xzq"]
        self.villages = x[x["XZQJB"] == "village"]
        self.prev_codes = self.prev["DLBM"].to_numpy().astype(str)
        self.prev_kcxs = self.prev["KCXS"].to_numpy().astype(float)
        self.prev_geoms = np.asarray(self.prev.geometry.values, dtype=object)

    def cultivated_net(self, geom) -> float:
        """耕地 of the earlier DLTB inside geom, net of 田坎: Σ piece × (1 − KCXS)."""
        if shapely.is_empty(geom):
            return 0.0
        hit = tree_of(self.prev.geometry.values).query(geom, predicate="intersects")
        hit = hit[is_cultivated(self.prev_codes[hit])]
        if not len(hit):
            return 0.0
        a = area(shapely.intersection(geom, self.prev_geoms[hit]))
        return float((a * (1.0 - self.prev_kcxs[hit])).sum())

    def village(self, geom) -> str:
        v = self.villages
        hit = tree_of(v.geometry.values).query(geom, predicate="intersects")
        a = area(shapely.intersection(geom, np.asarray(v.geometry.values, dtype=object)[hit]))
        codes = v["XZQDM"].to_numpy().astype(str)[hit]
        best = sorted(zip(-a, codes))[0]
        return str(best[1])

    def record(self, geom) -> dict:
        a = float(area(geom)[0])
        approved = float(area(shapely.intersection(geom, self.counted))[0])
        legal = float(area(shapely.intersection(geom, self.legal))[0])
        same = unchanged_area(geom, self.prev, self.cur)
        verdict = verdict_by_rules(a, same / a, legal / a, approved / a)
        unapproved_ground = shapely.difference(geom, self.counted)
        return {
            "area_m2": a, "area_cultivated": self.cultivated_net(geom), "area_approved": approved,
            "area_unapproved": max(a - approved, 0.0),
            "area_cultivated_unapproved": self.cultivated_net(unapproved_ground),
            "approved_share": approved / a, "legal_share": legal / a, "unchanged_share": same / a,
            "verdict": verdict, "XZQDM": self.village(geom),
        }


def _planted_changes(sites, splits, mon, dltb) -> list[dict]:
    """Every planted ground change: key, family, kind, planted verdict, issued JCBHs, piece-unit rows."""
    bsm = dltb["BSM"].to_numpy()
    out = []
    for s in sites:
        pieces = []
        if s["new"] is not None and is_survey_change(s["prev_code"], s["new"]):
            pieces = [s["patch_idx"]]
        out.append({"key": s["key"], "family": "site", "kind": s["kind"], "verdict": s["verdict"],
                    "issued": list(s.get("JCBH", [])), "pieces": pieces})
    for c in splits:
        out.append({"key": c["key"], "family": c["layout"], "kind": c["kind"], "verdict": c["verdict"],
                    "issued": list(c["JCBH"]), "pieces": list(c["piece_idx"]), "site": c["site"],
                    "cross": c["cross"]})
    planted = {j for c in out for j in c["issued"]}
    for j in mon["JCBH"]:
        if j not in planted:  # benchmark background patches: one change each
            out.append({"key": str(j), "family": "background", "kind": "background", "verdict": None,
                        "issued": [str(j)], "pieces": []})
    for c in out:
        c["piece_ids"] = sorted(f"BG-{bsm[i]}" for i in c["pieces"])
    return out


def build_records(layers: dict, dltb_tess: gpd.GeoDataFrame, changes: list[dict]) -> tuple[list[dict], list[str]]:
    """One record per planted ground change, measured on its geometry (the union of every member)."""
    mon = layers["monitoring"].set_index("JCBH", drop=False)
    dltb = layers["dltb"]
    bsm = dltb["BSM"].to_numpy()
    sjnf = str(int(dltb["SJNF"].iloc[0]))
    meas = _Measure(layers, dltb_tess)
    records, problems = [], []
    for c in changes:
        rows = [mon.loc[j] for j in c["issued"]]
        rows.sort(key=issue_order)
        issued = [str(r["JCBH"]) for r in rows]
        geoms = [r.geometry for r in rows] + [dltb.geometry.values[i] for i in c["pieces"]]
        geom = geoms[0] if len(geoms) == 1 else shapely.union_all(geoms)
        m = meas.record(geom)
        if issued:
            rid = issued[0]
        else:  # no issued patch: the derived id of the largest piece unit (ties: smallest BSM)
            a = area([dltb.geometry.values[i] for i in c["pieces"]])
            rid = "BG-" + sorted(zip(np.round(-a, 2), [str(bsm[i]) for i in c["pieces"]]))[0][1]
        hsx = [r["HSX"] for r in rows] + ([f"{sjnf}-12-31"] if c["pieces"] else [])
        qsx = [r["QSX"] for r in rows if first_day(r["QSX"]) is not None]
        sources = sorted({str(r["SOURCE"]) for r in rows} | ({"survey"} if c["pieces"] else set()),
                         key=lambda x: (SOURCE_ORDER.index(x) if x in SOURCE_ORDER else 99, x))
        rounds = sorted({str(r["ROUND"]) for r in rows} | ({sjnf} if c["pieces"] else set()), key=natural_key)
        rec = {
            "id": rid, "change": c["key"], "family": c["family"], "kind": c["kind"],
            "members": issued + c["piece_ids"], "issued": issued, "pieces": c["piece_ids"],
            "n_pieces": len(c["pieces"]), "sources": sources, "rounds": rounds,
            "HSX": min(hsx, key=first_day) if hsx else None, "QSX": min(qsx, key=first_day) if qsx else None,
            "XZQDM": m["XZQDM"],
            **{k: r2(m[k]) for k in ("area_m2", "area_cultivated", "area_approved", "area_unapproved",
                                     "area_cultivated_unapproved")},
            "approved_share": round(m["approved_share"], 4),
            "verdict": m["verdict"], "illegal": m["verdict"] in ILLEGAL_VERDICTS,
        }
        if c.get("site"):
            rec["site"] = c["site"]
        if c["pieces"]:
            rec["piece_villages"] = sorted({str(dltb["ZLDWDM"].iloc[i])[:12] for i in c["pieces"]})
        if c["verdict"] is not None and m["verdict"] != c["verdict"]:
            problems.append(f"record {rid} ({c['key']}): geometry gives {m['verdict']}, planted {c['verdict']}")
        records.append(rec)
    return records, problems


def indicator_truth(records: list[dict], villages: list[str], county: str) -> dict:
    """The enforcement indicators of issue 10 §4 per village, township and county, from the records (every
    record 待核查, so illegal = verdict ∈ ILLEGAL_VERDICTS; a record goes whole to its XZQDM)."""
    def blank():
        return {"illegal_count": 0, "illegal_area": 0.0, "illegal_cultivated_area": 0.0, "change_cultivated_area": 0.0}

    units = {"village": {v: blank() for v in villages}, "township": {}, "county": {county: blank()}}
    for v in villages:
        units["township"].setdefault(v[:9], blank())
    for r in records:
        keys = [("village", r["XZQDM"]), ("township", r["XZQDM"][:9]), ("county", county)]
        for level, code in keys:
            u = units[level].setdefault(code, blank())
            if r["illegal"]:
                u["illegal_count"] += 1
                u["illegal_area"] += r["area_unapproved"]
                u["illegal_cultivated_area"] += r["area_cultivated_unapproved"]
            if r["verdict"] in CHANGE_VERDICTS or r["illegal"]:
                u["change_cultivated_area"] += r["area_cultivated"]
    # villages without a record add nothing: listed only where they hold one (every township is listed)
    held = {r["XZQDM"] for r in records}
    units["village"] = {v: u for v, u in units["village"].items() if v in held}
    for level in units.values():
        for u in level.values():
            for k in ("illegal_area", "illegal_cultivated_area", "change_cultivated_area"):
                u[k] = r2(u[k])
            cc = u["change_cultivated_area"]
            u["illegal_cultivated_ratio"] = round(100.0 * u["illegal_cultivated_area"] / cc, 4) if cc > 0 else None
    return units


def cluster_by_spec(issued: list[tuple[str, object, tuple | None]], units: list[tuple[str, object]]) -> list[set]:
    """The clustering rule of issue 10 §1, written here once more from the spec (not analysis/), to check that
    the planted changes are decided by it as planted. ``issued``: (JCBH, geometry, (SOURCE, ROUND) or None);
    ``units``: (BG id, geometry). Planar areas in the store CRS, as the rule says."""
    ids = [i for i, _, _ in issued] + [u for u, _ in units]
    geoms = np.array([g for _, g, _ in issued] + [g for _, g in units], dtype=object)
    n_issued = len(issued)
    keys = [k for _, _, k in issued] + [None] * len(units)
    parent = list(range(len(ids)))
    held = [({keys[k]} if keys[k] else set()) for k in range(len(ids))]
    has_issued = [k < n_issued for k in range(len(ids))]
    members = [[k] for k in range(len(ids))]

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def join(a, b):
        ra, rb = find(a), find(b)
        keep, gone = min(ra, rb), max(ra, rb)
        parent[gone] = keep
        held[keep] |= held[gone]
        has_issued[keep] = has_issued[keep] or has_issued[gone]
        members[keep] += members[gone]

    tree = shapely.STRtree(geoms)
    a_, b_ = tree.query(geoms, predicate="intersects")
    keep = (a_ < b_) & (a_ < n_issued)  # issued–issued and issued–unit pairs
    a_, b_ = a_[keep], b_[keep]
    inter = shapely.area(shapely.intersection(geoms[a_], geoms[b_]))
    small = np.minimum(shapely.area(geoms[a_]), shapely.area(geoms[b_]))
    ratio = np.where(small > 0, inter / np.where(small > 0, small, 1), 0)
    ok = (inter > 0) & (ratio >= MIN_OVERLAP_RATIO - 1e-9)
    for k in np.lexsort((b_[ok], a_[ok], -ratio[ok])):
        x, y = int(a_[ok][k]), int(b_[ok][k])
        rx, ry = find(x), find(y)
        if rx != ry and not (held[rx] & held[ry]):
            join(rx, ry)
    # pass 2: adjacency of piece units by shared edge length
    ug = geoms[n_issued:]
    if len(ug):
        ua, ub = shapely.STRtree(ug).query(ug, predicate="intersects")
        sel = ua < ub
        ua, ub = ua[sel], ub[sel]
        shared = shapely.length(shapely.intersection(shapely.boundary(ug[ua]), shapely.boundary(ug[ub])))
        ok = shared >= SITE_MIN_SHARED_EDGE_M
        for k in np.lexsort((ub[ok], ua[ok], -shared[ok])):
            x, y = int(ua[ok][k]) + n_issued, int(ub[ok][k]) + n_issued
            rx, ry = find(x), find(y)
            if rx == ry or held[rx] & held[ry]:
                continue
            if has_issued[rx] and has_issued[ry]:
                ix = [m for m in members[rx] if m < n_issued]
                iy = [m for m in members[ry] if m < n_issued]
                linked = any(shapely.area(shapely.intersection(geoms[i], geoms[j])) >= SITE_LINK_MIN_OVERLAP_M2
                             for i in ix for j in iy)
                if not linked:
                    continue
            join(rx, ry)
    out: dict[int, set] = {}
    for k in range(len(ids)):
        out.setdefault(find(k), set()).add(ids[k])
    return list(out.values())


def survey_piece_units(prev: gpd.GeoDataFrame, cur: gpd.GeoDataFrame) -> list[tuple[str, object]]:
    """Piece units of the survey pair (the two layers share one tessellation here: patch i of one is patch i of
    the other), by the change rule of analysis/changes.py."""
    assert (prev["BSM"].to_numpy() == cur["BSM"].to_numpy()).all()
    pc, cc = prev["DLBM"].to_numpy().astype(str), cur["DLBM"].to_numpy().astype(str)
    out = []
    for i in np.flatnonzero(pc != cc):
        if is_survey_change(pc[i], cc[i]) and float(area(cur.geometry.values[i])[0]) >= CHANGE_SLIVER_M2:
            out.append((f"BG-{cur['BSM'].iloc[i]}", cur.geometry.values[i]))
    return out


def control_line_pieces(left: gpd.GeoDataFrame, right: gpd.GeoDataFrame) -> list[dict]:
    """left ∩ right pieces ≥ MIN_CONFLICT_AREA, with the shared part of overlapping right polygons counted once
    (issue 10 §5): where several right polygons cover one part of a left feature, that part is one piece whose
    right_ids lists them all."""
    lg = shapely.make_valid(np.asarray(left.geometry.values, dtype=object))
    rg = shapely.make_valid(np.asarray(right.geometry.values, dtype=object))
    lids, rids = left["BSM"].to_numpy().astype(str), right["BSM"].to_numpy().astype(str)
    li, ri = shapely.STRtree(rg).query(lg, predicate="intersects")
    out = []
    for l_ in np.unique(li):
        rs = ri[li == l_]
        parts = [(str(rids[r]), shapely.intersection(lg[l_], rg[r])) for r in rs]
        parts = [(i, polygonal(g)[0]) for i, g in parts]
        parts = [(i, g) for i, g in parts if float(area(g)[0]) > 0]
        if not parts:
            continue
        if len(parts) == 1:
            faces = [({parts[0][0]}, parts[0][1])]
        else:  # the arrangement of the right pieces inside this left feature
            edges = shapely.union_all([shapely.boundary(g) for _, g in parts])
            cells = shapely.get_parts(shapely.polygonize(shapely.get_parts(edges)))
            faces = []
            for f in cells:
                pt = shapely.point_on_surface(f)
                cover = {i for i, g in parts if shapely.contains(g, pt)}
                if cover:
                    faces.append((cover, f))
        groups: dict[frozenset, list] = {}
        for cover, f in faces:
            groups.setdefault(frozenset(cover), []).append(f)
        for cover, fs in groups.items():
            g = fs[0] if len(fs) == 1 else shapely.union_all(fs)
            a = float(area(g)[0])
            if a >= MIN_CONFLICT_AREA:
                out.append({"left_ids": [str(lids[l_])], "right_ids": sorted(cover), "area_m2": a})
    return out


def self_overlaps(layer: gpd.GeoDataFrame) -> list[dict]:
    """Pairs of polygons of one layer overlapping by ≥ MIN_CONFLICT_AREA (ids sorted, area)."""
    g = shapely.make_valid(np.asarray(layer.geometry.values, dtype=object))
    ids = layer["BSM"].to_numpy().astype(str)
    a_, b_ = shapely.STRtree(g).query(g, predicate="intersects")
    sel = a_ < b_
    out = []
    for i, j in zip(a_[sel], b_[sel]):
        x = float(area(shapely.intersection(g[i], g[j]))[0])
        if x >= MIN_CONFLICT_AREA:
            out.append({"ids": sorted([str(ids[i]), str(ids[j])]), "area_m2": r2(x)})
    return out


def compute_truth(layers: dict, sites: list[dict], supply: list[dict], zone_cases: list[dict], overlaps: dict,
                  defects: dict, *, seed: int, scale: float, splits: list[dict] | None = None,
                  self_overlap: dict | None = None) -> dict:
    dltb, prev = layers["dltb"], layers["dltb_prev"]
    dltb_tess = dltb.iloc[:len(prev)]  # without the planted duplicate row
    yj, st, cz = layers["yjjbnt"], layers["stbhhx"], layers["czkfbj"]
    appr, parcels, mon = layers["approvals"], layers["parcels"], layers["monitoring"]
    kinds = appr["PZLX"].to_numpy().astype(str)
    legal_mask = np.isin(kinds, LEGAL_KINDS)
    all_mask = legal_mask | np.isin(kinds, COMPLIANT_KINDS)
    bsm = dltb["BSM"].to_numpy()
    splits = splits or []
    split_changes = [c for s in splits for c in s.get("changes", [])]
    for s in sites:
        s["prev_code"] = str(prev["DLBM"].iloc[s["patch_idx"]]) if "patch_idx" in s else None

    # records first: every per-patch and per-piece entry below names its record's verdict -----------------
    changes = _planted_changes(sites, split_changes, mon, dltb)
    records, problems = build_records(layers, dltb_tess, changes)
    record_of = {m: r for r in records for m in r["members"]}
    clusters = cluster_by_spec(
        [(str(r["JCBH"]), r.geometry, (str(r["SOURCE"]), str(r["ROUND"]))) for _, r in mon.iterrows()],
        survey_piece_units(prev, dltb_tess))
    want = sorted(sorted(r["members"]) for r in records)
    got = sorted(sorted(c) for c in clusters)
    if want != got:
        extra = [c for c in got if c not in want]
        missing = [c for c in want if c not in got]
        problems.append(f"the clustering rule groups {extra} where the planted changes are {missing}")

    monitoring, groups, survey = [], [], []
    site_by_key = {s["key"]: s for s in sites}
    for s in sites:
        changed = s["new"] is not None and is_survey_change(s["prev_code"], s["new"])
        bg = f"BG-{bsm[s['patch_idx']]}" if changed else None
        members = []
        for code in s.get("JCBH", []):
            row = mon[mon["JCBH"] == code].iloc[0]
            g = row.geometry
            entry = _patch_entry(row, s["key"], s["kind"], layers, dltb_tess, legal_mask, all_mask, bg)
            if entry["patch_verdict"] != s["verdict"]:
                problems.append(f"{s['key']} {code}: geometry gives {entry['patch_verdict']}, planted {s['verdict']}")
            entry["expected_verdict"] = record_of[code]["verdict"]
            entry["approval_ids"] = [s["PZWH"]] if s.get("PZWH") and entry.pop("_covered") > 0 else []
            monitoring.append(entry)
            members.append((code, g))
        if bg:
            members.append((bg, dltb.geometry.values[s["patch_idx"]]))
        if len(members) >= 2:
            ratios = [overlap_ratio(a_, b_) for i, (_, a_) in enumerate(members) for _, b_ in members[i + 1:]]
            groups.append({"site": s["key"], "members": [m[0] for m in members], "expected_verdict": s["verdict"],
                           "linked_by": "overlap", "min_overlap_ratio": round(min(ratios), 4)})
        if changed:
            g = dltb.geometry.values[s["patch_idx"]]
            a = float(area(g)[0])
            legal = cover_area(g, appr, legal_mask)
            every = cover_area(g, appr, all_mask)
            verdict = verdict_by_rules(a, 0.0, legal / a, every / a)
            if verdict != s["verdict"]:
                problems.append(f"{s['key']} {bg}: geometry gives {verdict}, planted {s['verdict']}")
            survey.append({"BSM": str(bsm[s["patch_idx"]]), "id": bg, "site": s["key"],
                           "prev_dlbm": s["prev_code"], "now_dlbm": s["new"],
                           "area_m2": r2(a), "expected_verdict": record_of[bg]["verdict"],
                           "monitoring": list(s.get("JCBH", [])), "approved_share": round(legal / a, 4)})
    for c in split_changes:
        rec = record_of[f"BG-{bsm[c['piece_idx'][0]]}"]
        for code in c["JCBH"]:
            row = mon[mon["JCBH"] == code].iloc[0]
            entry = _patch_entry(row, c["key"], c["kind"], layers, dltb_tess, legal_mask, all_mask, None)
            entry["approval_ids"] = [c["PZWH"]] if c.get("PZWH") and entry.pop("_covered") > 0 else []
            entry["expected_verdict"] = rec["verdict"]
            entry["record"] = rec["id"]
            monitoring.append(entry)
        for i in c["piece_idx"]:
            g = dltb.geometry.values[i]
            a = float(area(g)[0])
            survey.append({"BSM": str(bsm[i]), "id": f"BG-{bsm[i]}", "site": c["key"],
                           "prev_dlbm": str(prev["DLBM"].iloc[i]), "now_dlbm": str(dltb["DLBM"].iloc[i]),
                           "area_m2": r2(a), "expected_verdict": rec["verdict"], "monitoring": list(c["JCBH"]),
                           "approved_share": round(cover_area(g, appr, legal_mask) / a, 4),
                           "ZLDWDM": str(dltb["ZLDWDM"].iloc[i]), "record": rec["id"]})
        if len(rec["members"]) >= 2:
            groups.append({"site": c["key"], "members": rec["members"], "expected_verdict": rec["verdict"],
                           "linked_by": "site"})
    not_merged = []
    for s in sites:
        if s.get("half") == "a":
            twin = site_by_key[s["pair"]]
            not_merged.append({"sites": [s["key"], twin["key"]],
                               "members": [s["JCBH"][0], twin["JCBH"][0]],
                               "shared_edge_m": round(float(shapely.length(shapely.intersection(
                                   shapely.get_exterior_ring(s["rect"]), shapely.get_exterior_ring(twin["rect"])))), 3),
                               "overlap_m2": r2(area(shapely.intersection(s["rect"], twin["rect"]))[0]),
                               "pieces_adjacent": bool(s["new"] and twin["new"])})
    for sp in splits:
        if sp["layout"] != "halves":
            continue
        a, b = sp["changes"]
        ga, gb = (mon.loc[mon["JCBH"] == x["JCBH"][0], "geometry"].iloc[0] for x in (a, b))
        pa, pb = a["pieces"][0], b["pieces"][0]
        not_merged.append({"sites": [a["key"], b["key"]], "members": [a["JCBH"][0], b["JCBH"][0]],
                           "shared_edge_m": round(float(shapely.length(shapely.intersection(
                               shapely.boundary(ga), shapely.boundary(gb)))), 3),
                           "overlap_m2": r2(area(shapely.intersection(ga, gb))[0]),
                           "pieces_adjacent": True,
                           "piece_shared_edge_m": round(float(shapely.length(shapely.intersection(
                               shapely.boundary(pa), shapely.boundary(pb)))), 3)})

    # the families must be what they claim -------------------------------------------------------------
    problems += _family_problems(records, split_changes, mon, dltb)

    # conflicts ------------------------------------------------------------------------------------------
    conflicts: dict[str, dict] = {}

    def listing(pieces, left_layer, right_layer):
        return [{"left_layer": left_layer, "left_ids": [l_], "right_layer": right_layer, "right_ids": [r_],
                 "area_m2": r2(a_)} for l_, r_, a_, _ in pieces]

    for kind, (ln, lf), (rn, rf) in (("overlap_yjjbnt_stbhhx", ("yjjbnt", yj), ("stbhhx", st)),
                                      ("overlap_yjjbnt_czkfbj", ("yjjbnt", yj), ("czkfbj", cz)),
                                      ("overlap_stbhhx_czkfbj", ("stbhhx", st), ("czkfbj", cz))):
        pcs = control_line_pieces(lf, rf)
        conflicts[kind] = {"complete": True,
                           "cases": [{"left_layer": ln, "left_ids": p_["left_ids"], "right_layer": rn,
                                      "right_ids": p_["right_ids"], "area_m2": r2(p_["area_m2"])} for p_ in pcs],
                           "total_area_m2": r2(sum(p_["area_m2"] for p_ in pcs))}
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
    carved = [(s["key"], s["patch_idx"], s["new"]) for s in sites if s["new"] is not None]
    carved += [(c["key"], i, str(dltb["DLBM"].iloc[i])) for c in split_changes for i in c["piece_idx"]]
    for key, idx, new in carved:
        if is_construction([new])[0] and new not in OUTSIDE_EXEMPT:
            g = dltb.geometry.values[idx]
            a_out = float(area(shapely.difference(g, cz_union))[0])
            if a_out >= MIN_CONFLICT_AREA:
                outside.append({"left_layer": "dltb", "left_ids": [str(bsm[idx])], "right_layer": "czkfbj",
                                "right_ids": [], "area_m2": r2(a_out), "site": key, "DLBM": new})
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
    conflicts["parcel_zone_conflict"] = {"complete": True, "cases": zc,
                                         "total_area_m2": r2(sum(c["area_m2"] for c in zc))}
    sup = supply_truth(appr, parcels, dltb_tess)
    qa = {"self_overlap": {name: self_overlaps(layers[name]) for name in ("yjjbnt", "stbhhx", "czkfbj")}}

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
    if self_overlap is not None:
        want_ids = sorted(self_overlap["ids"])
        got = qa["self_overlap"]["czkfbj"]
        patch_area = r2(area(dltb_tess.geometry.values[self_overlap["dltb_patch"]])[0])
        if [g["ids"] for g in got] != [want_ids] or abs(got[0]["area_m2"] - patch_area) > 0.01:
            problems.append(f"czkfbj self-overlap: geometry gives {got}, planted {want_ids} over {patch_area} m²")
        qa["self_overlap"]["czkfbj_planted_dltb_patch"] = str(bsm[self_overlap["dltb_patch"]])
        shared = [c for c in conflicts["overlap_yjjbnt_czkfbj"]["cases"] if c["right_ids"] == want_ids]
        if len(shared) != 1:
            problems.append(f"yjjbnt × czkfbj: the self-overlap is not one piece under both polygons: {shared}")
    if any(qa["self_overlap"][k] for k in ("yjjbnt", "stbhhx")):
        problems.append(f"unplanted self-overlaps: {qa['self_overlap']}")
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
    xzq = layers["xzq"]
    village_codes = sorted(xzq.loc[xzq["XZQJB"] == "village", "XZQDM"].astype(str))
    indicators = indicator_truth(records, village_codes, str(xzq.loc[xzq["XZQJB"] == "county", "XZQDM"].iloc[0]))
    return {
        "version": 2,
        "generator": {"seed": seed, "scale": round(scale, 4), "patches": int(len(prev))},
        "survey_date": SURVEY_DATE.isoformat(),
        "rules_assumed": "analysis/rules.yaml defaults (legal ≥ 0.95, partial ≥ 0.05, pseudo < 100 m², "
                         "unchanged ≥ 0.95, dedupe overlap ≥ 0.5, conflicts ≥ 1 m², idle after 2 years) and the "
                         "record rules of issue 10 (sites: shared edge ≥ 1 m; site link: issued overlap ≥ 1 m²)",
        "county_area_m2": r2(area(county)[0]),
        "records": records,
        "indicators": {
            "rule": "every record 待核查: illegal = verdict ∈ {suspected_illegal, partly_approved}; illegal_area = Σ "
                    "area_unapproved, illegal_cultivated_area = Σ area_cultivated_unapproved over illegal records; "
                    "change_cultivated_area = Σ area_cultivated over records judged legal / partly_approved / "
                    "suspected_illegal; illegal_cultivated_ratio = 100 × illegal_cultivated_area ÷ "
                    "change_cultivated_area (null where that is 0); a record counts whole in its XZQDM village; "
                    "areas summed from the records' values rounded to 0.01 m²",
            **indicators},
        "monitoring": monitoring,
        "dedupe_groups": groups,
        "not_merged": not_merged,
        "survey_changes": survey,
        "conflicts": conflicts,
        "qa": qa,
        "supply": {**sup, "cases": supply_cases},
        "zone_conflict_parcels": [{"case": s["key"], "ZDDM": s["ZDDM"], "TDYT": s["tdyt"], "PZWH": s["PZWH"]}
                                  for s in zone_cases],
        "defects": defects,
    }


def _patch_entry(row, key, kind, layers, dltb_tess, legal_mask, all_mask, bg) -> dict:
    """What one monitoring patch covers, on its own (the record is measured in build_records)."""
    prev, appr = layers["dltb_prev"], layers["approvals"]
    g = row.geometry
    a = float(area(g)[0])
    prev_codes = pieces_by_code(g, prev)
    cur_codes = pieces_by_code(g, dltb_tess)
    legal = cover_area(g, appr, legal_mask)
    every = cover_area(g, appr, all_mask)
    same = unchanged_area(g, prev, dltb_tess)
    cz_area = cover_area(g, layers["czkfbj"])
    return {
        "JCBH": str(row["JCBH"]), "site": key, "kind": kind, "expected_verdict": None,
        "patch_verdict": verdict_by_rules(a, same / a, legal / a, every / a),
        "source": str(row["SOURCE"]), "round": str(row["ROUND"]), "file": str(row["_file"]) + ".gpkg",
        "QSX": row["QSX"], "HSX": row["HSX"],
        "area_m2": r2(a), "orig_dlbm": max(prev_codes.items(), key=lambda kv: kv[1])[0],
        "now_dlbm": max(cur_codes.items(), key=lambda kv: kv[1])[0],
        "area_on_cultivated_prev_m2": r2(sum(v for k, v in prev_codes.items() if k in CULTIVATED)),
        "approved_share": round(legal / a, 4), "covered_share_all_kinds": round(every / a, 4),
        "unchanged_share": round(same / a, 4),
        "area_yjjbnt_m2": r2(cover_area(g, layers["yjjbnt"])), "area_stbhhx_m2": r2(cover_area(g, layers["stbhhx"])),
        "area_outside_czkfbj_m2": r2(a - cz_area),
        "survey_id": bg, "_covered": every,
    }


def _family_problems(records, split_changes, mon, dltb) -> list[str]:
    """Each split family has the geometry it claims (else the sample would test something else)."""
    problems = []
    by_change = {r["change"]: r for r in records}
    geom = mon.set_index("JCBH")["geometry"]
    for c in split_changes:
        r = by_change[c["key"]]
        if c["layout"] != "halves" and r["n_pieces"] < 2:
            problems.append(f"{c['key']}: a split site with {r['n_pieces']} piece")
        if c.get("cross") == "village" and len(r["piece_villages"]) < 2:
            problems.append(f"{c['key']}: does not cross a 村 boundary ({r['piece_villages']})")
        if c["kind"] == "reissue_other_piece":
            a, b = (geom[j] for j in c["JCBH"])
            inter = float(shapely.area(shapely.intersection(a, b)))
            ratio = inter / min(a.area, b.area)
            if not (inter >= 10 * SITE_LINK_MIN_OVERLAP_M2 and ratio <= 0.3):
                problems.append(f"{c['key']}: re-issue overlap {inter:.2f} m², ratio {ratio:.3f} (want ≥ 10 m², ≤ 0.3)")
            r["reissue_overlap"] = {"overlap_m2": r2(area(shapely.intersection(a, b))[0]), "ratio": round(ratio, 4)}
    return problems


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

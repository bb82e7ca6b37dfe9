"""Change patches derived from two DLTB years (dltb_prev → dltb), for regions without a monitoring layer
(or as one more source beside it).

A changed piece is a piece of (prev patch ∩ current patch) where
  * non-construction → construction (新增建设用地), or
  * 耕地 → not 耕地 (耕地减少; 水田 → 旱地 stays 耕地 and is no change),
with construction / 耕地 taken from the rules' land classes (a piece whose code either year the rules do not
classify is not judged a change: an unknown code tells nothing). Pieces smaller than change_patches.sliver_m2
(digitising noise where boundaries were redrawn) are dropped. The changed pieces under one current DLTB
patch form one *piece unit* (JCBH = <id_prefix>-<BSM of the current patch>, ``derived`` true), with SOURCE = the
rules' change source ("survey"). A piece unit is not yet a ground change: one change site crossing a 村 boundary
or holding a road beside a building is several piece units; analysis.dedupe joins the adjacent units of a site,
and the units a monitoring patch covers, into one record.

Speed: patches identical in both years (same DLBM, same geometry) cannot hold a change on a tessellated survey
layer; they are set aside before the overlay (found by a fingerprint — bounds, area, vertex count — confirmed by
an exact equality test), so the overlay only sees the patches that moved.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.area import ellipsoidal_area

from .common import as_text, check_same_crs, id_column, overlay
from .landuse import UNCLASSIFIED, land_categories
from .rules import Rules

NEW_CONSTRUCTION = "新增建设用地"
CULTIVATED_LOSS = "耕地减少"

CHANGE_COLUMNS = ["JCBH", "SOURCE", "ROUND", "HSX", "XZQDM", "TBLX", "prev_ids", "prev_dlbm", "now_dlbm",
                  "area_m2", "derived"]


ORDER_KEY = "_order_1"  # where a partition's change patch stands in the whole county's listing


def geometry_keys(gdf: gpd.GeoDataFrame) -> np.ndarray:
    """A cheap fingerprint per geometry: bounds, area (to 0.001 m², planar) and number of coordinates.

    Equal geometries have equal fingerprints whatever the ring start or orientation; equal fingerprints are then
    confirmed with an exact equality test, so a fingerprint never decides alone. Returns an (n, 6) float array.
    """
    geoms = np.asarray(gdf.geometry.values)
    if len(geoms) == 0:
        return np.zeros((0, 6))
    return np.column_stack([shapely.bounds(geoms), np.round(shapely.area(geoms), 3),
                            shapely.get_num_coordinates(geoms).astype(float)])


def _groups(*matrices: np.ndarray) -> list[np.ndarray]:
    """Group id of every row of the given fingerprint matrices (one id space across them).

    Rows are hashed to 64 bits (FNV-style over the raw float bits) and grouped with a hash table; a collision
    could only put two different fingerprints in one group, which the exact equality test then rejects.
    """
    stacked = np.ascontiguousarray(np.vstack(matrices), dtype=np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0
    bits = stacked.view(np.uint64)
    h = np.full(len(stacked), np.uint64(0xCBF29CE484222325))
    with np.errstate(over="ignore"):
        for col in range(bits.shape[1]):
            h = (h ^ bits[:, col]) * np.uint64(0x100000001B3)
    ids = pd.factorize(h)[0]
    out, start = [], 0
    for m in matrices:
        out.append(ids[start:start + len(m)])
        start += len(m)
    return out


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact geometric equality of pairs: vertex-by-vertex first (fast), topological for the rest."""
    eq = shapely.equals_exact(a, b, tolerance=0.0)
    rest = np.flatnonzero(~eq)
    if len(rest):
        eq[rest] = shapely.equals(a[rest], b[rest])
    return eq


def duplicate_mask(gdf: gpd.GeoDataFrame, keys: np.ndarray | None = None) -> np.ndarray:
    """Rows whose geometry repeats an earlier row exactly: the later copies.

    A survey layer is a tessellation; an exact duplicate patch (a known export defect, reported at ingest and
    kept there) would count its area twice in every overlay. The analysis sets the later copies aside.
    """
    n = len(gdf)
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    keys = geometry_keys(gdf) if keys is None else keys
    (group,) = _groups(keys)
    first = pd.Series(np.arange(n)).groupby(group).transform("min").to_numpy()
    cand = np.flatnonzero(first != np.arange(n))  # rows sharing a fingerprint with an earlier row
    if len(cand):
        geoms = np.asarray(gdf.geometry.values)
        out[cand] = _same(geoms[cand], geoms[first[cand]])
    return out


def unchanged_mask(prev: gpd.GeoDataFrame, curr: gpd.GeoDataFrame, prev_keys: np.ndarray | None = None,
                   curr_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of prev / curr rows that have an identical twin (same DLBM, same geometry)."""
    kp = geometry_keys(prev) if prev_keys is None else prev_keys
    kc = geometry_keys(curr) if curr_keys is None else curr_keys
    codes = pd.factorize(np.concatenate([as_text(prev["DLBM"]), as_text(curr["DLBM"])]))[0].astype(float)
    gp, gc = _groups(np.column_stack([kp, codes[:len(kp)]]), np.column_stack([kc, codes[len(kp):]]))
    pairs = pd.DataFrame({"g": gp, "p": np.arange(len(gp))}).merge(
        pd.DataFrame({"g": gc, "c": np.arange(len(gc))}), on="g")
    same_prev, same_curr = np.zeros(len(prev), dtype=bool), np.zeros(len(curr), dtype=bool)
    if len(pairs):
        p, c = pairs["p"].to_numpy(), pairs["c"].to_numpy()
        eq = _same(np.asarray(prev.geometry.values)[p], np.asarray(curr.geometry.values)[c])
        same_prev[p[eq]] = True
        same_curr[c[eq]] = True
    return same_prev, same_curr


def derive_change_patches(dltb_prev: gpd.GeoDataFrame, dltb: gpd.GeoDataFrame, rules: Rules,
                          workers: int = 2, prev_keys: np.ndarray | None = None,
                          curr_keys: np.ndarray | None = None, report: np.ndarray | None = None,
                          order: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """Change patches from dltb_prev → dltb (see module docstring). Columns: CHANGE_COLUMNS + geometry.

    ROUND is the current DLTB's data year (SJNF) when present; HSX is 12-31 of that year (else the rules'
    survey_date); XZQDM is the village of the current patch's 坐落 (ZLDWDM, first 12 digits).

    ``report``: a mask of the current patches whose change patches are wanted (all when None). A spatial
    partition passes its own patches, the layers holding their surroundings too: a change patch is made from
    one current patch and the previous-year patches under it, so leaving the others out changes none of them.
    ``order``: a sort key per current patch (its stored position in the whole layer), kept on the change
    patches as ORDER_KEY so that the partitions' change patches list as the whole county's would.
    """
    crs = dltb.crs
    check_same_crs(crs, dltb_prev=dltb_prev)
    same_prev, same_curr = unchanged_mask(dltb_prev, dltb, prev_keys, curr_keys)
    prev = dltb_prev[~same_prev]
    wanted = ~same_curr & (True if report is None else np.asarray(report, dtype=bool))
    curr = dltb[wanted]
    empty = gpd.GeoDataFrame({c: [] for c in CHANGE_COLUMNS}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    if len(prev) == 0 or len(curr) == 0:
        return empty

    p_codes = as_text(prev["DLBM"])
    c_codes = as_text(curr["DLBM"])
    p_cat = land_categories(p_codes, rules, "dltb_prev")
    c_cat = land_categories(c_codes, rules, "dltb")
    p_ids = id_column(prev, ("BSM",), "dltb_prev")
    c_ids = id_column(curr, ("BSM",), "dltb")

    pieces = overlay(prev.geometry, curr.geometry, workers=workers, keep_geometry=True)
    if len(pieces) == 0:
        return empty
    pl = pieces["left"].to_numpy()
    pr = pieces["right"].to_numpy()
    pa = pieces["area_m2"].to_numpy(dtype=float)
    gain = (p_cat[pl] != "construction") & (c_cat[pr] == "construction")
    loss = (p_cat[pl] == "cultivated") & (c_cat[pr] != "cultivated")
    known = (p_cat[pl] != UNCLASSIFIED) & (c_cat[pr] != UNCLASSIFIED)  # an unclassified code tells nothing
    keep = (gain | loss) & known & (pa >= rules.change_sliver_m2)
    if not keep.any():
        return empty
    pl, pr, pa, gain, loss = pl[keep], pr[keep], pa[keep], gain[keep], loss[keep]
    pg = np.asarray(pieces.geometry.values)[keep]

    sjnf = as_text(curr["SJNF"]) if "SJNF" in curr.columns else np.array([""] * len(curr), dtype=object)
    zl = as_text(curr["ZLDWDM"]) if "ZLDWDM" in curr.columns else np.array([""] * len(curr), dtype=object)
    df = pd.DataFrame({"r": pr, "l": pl, "a": pa, "gain": gain, "loss": loss})
    rows = []
    for r, grp in df.groupby("r", sort=True):
        idx = grp.index.to_numpy()
        geom = pg[idx[0]] if len(idx) == 1 else shapely.union_all(pg[idx])
        by_code = grp.assign(code=p_codes[grp["l"].to_numpy()]).groupby("code")["a"].sum()
        kinds = ([NEW_CONSTRUCTION] if grp["gain"].any() else []) + ([CULTIVATED_LOSS] if grp["loss"].any() else [])
        year = sjnf[r][:4] if sjnf[r][:4].isdigit() else ""
        rows.append({
            "JCBH": f"{rules.change_id_prefix}-{c_ids[r]}",
            "SOURCE": rules.change_source,
            "ROUND": year,
            "HSX": f"{year}-12-31" if year else rules.survey_date.isoformat(),
            "XZQDM": zl[r][:12] if len(zl[r]) >= 12 else "",
            "TBLX": "、".join(kinds),
            "prev_ids": ",".join(sorted(set(p_ids[grp["l"].to_numpy()].tolist()))),
            "prev_dlbm": by_code.sort_values(ascending=False).index[0],
            "now_dlbm": c_codes[r],
            "derived": True,
            "geometry": geom,
        })
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    out["area_m2"] = ellipsoidal_area(out.geometry.values, crs)
    out = out[[*CHANGE_COLUMNS, "geometry"]]
    if order is not None:  # the rows were listed by current patch (groupby r, sorted)
        out.insert(len(CHANGE_COLUMNS), ORDER_KEY, np.asarray(order)[np.flatnonzero(wanted)][sorted(set(pr))])
    return out

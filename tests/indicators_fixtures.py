"""A tiny hand-made county (metres in EPSG:4547) for the indicator tests: 2 乡镇, 4 村, DLTB of two years,
永久基本农田, flagged patches and planning conflicts. Every number the tests expect is derived from these
boxes by independent code in the tests themselves.

Layout (x, y offsets from X0, Y0; metres):

    y 200 +-----------------+-----------------+
          | 130599100002    | 130599101002    |
    y 100 +-----------------+-----------------+
          | 130599100001    | 130599101001    |
    y   0 +-----------------+-----------------+
          x 0             x 200             x 400
"""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import shapely

from analysis.conflicts import conflict_ids
from layers.area import ellipsoidal_area

EPSG = 4547
X0, Y0 = 520_000.0, 4_110_000.0
COUNTY, T1, T2 = "130599", "130599100", "130599101"
V = {"A": "130599100001", "B": "130599100002", "C": "130599101001", "D": "130599101002"}
ORIGIN = {"A": (0, 0), "B": (0, 100), "C": (200, 0), "D": (200, 100)}


def box(x0, y0, x1, y1):
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def _frame(rows, geoms):
    gdf = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=list(geoms), crs=EPSG)
    gdf["yzt_fid"] = range(1, len(gdf) + 1)
    gdf["area_m2"] = ellipsoidal_area(gdf.geometry.values, gdf.crs).round(2)
    return gdf


def xzq() -> gpd.GeoDataFrame:
    rows = [{"XZQDM": COUNTY, "XZQMC": "样例县", "XZQJB": "county"},
            {"XZQDM": T1, "XZQMC": "东风镇", "XZQJB": "township"},
            {"XZQDM": T2, "XZQMC": "红旗乡", "XZQJB": "township"}]
    geoms = [box(0, 0, 400, 200), box(0, 0, 200, 200), box(200, 0, 400, 200)]
    names = {"A": "东村", "B": "西村", "C": "南村", "D": "北村"}
    for key, code in V.items():
        ox, oy = ORIGIN[key]
        rows.append({"XZQDM": code, "XZQMC": names[key], "XZQJB": "village"})
        geoms.append(box(ox, oy, ox + 200, oy + 100))
    return _frame(rows, geoms)


# Each village is cut into 4 patches of 100 × 50 m: (col, row) → (DLBM, KCXS) in the current year.
CURRENT = {
    "A": [("0101", 0.10), ("0101", 0.10), ("0702", 0.0), ("0103", 0.05)],
    "B": [("0301", 0.0), ("1203", 0.0), ("1201", 0.0), ("0102", 0.08)],
    "C": [("0601", 0.0), ("1006", 0.0), ("0404", 0.0), ("1202", 0.0)],
    "D": [("0103", 0.12), ("1101", 0.0), ("0603", 0.0), ("0101", 0.07)],
}
# The previous year differs in A (patches 1+2 were one 0101 patch; 0702 was 0103) and in C (0601 was 0101).
CELLS = [(0, 0, 100, 50), (100, 0, 200, 50), (0, 50, 100, 100), (100, 50, 200, 100)]


def dltb() -> gpd.GeoDataFrame:
    rows, geoms = [], []
    for key, patches in CURRENT.items():
        ox, oy = ORIGIN[key]
        for k, ((code, kcxs), (x0, y0, x1, y1)) in enumerate(zip(patches, CELLS)):
            rows.append({"BSM": f"{key}{k}", "DLBM": code, "KCXS": kcxs, "ZLDWDM": V[key] + "0000000",
                         "TBMJ": 1.0})  # reported TBMJ deliberately wrong: the indicators recompute it
            geoms.append(box(ox + x0, oy + y0, ox + x1, oy + y1))
    return _frame(rows, geoms)


def dltb_prev() -> gpd.GeoDataFrame:
    rows, geoms = [], []
    for key, patches in CURRENT.items():
        ox, oy = ORIGIN[key]
        cells = list(zip(patches, CELLS))
        if key == "A":  # cells 0 and 1 were one 0101 patch; cell 2 (now 0702 宅基地) was 0103 旱地
            cells = [(("0101", 0.10), (0, 0, 200, 50)), (("0103", 0.06), CELLS[2]), (patches[3], CELLS[3])]
        if key == "C":  # cell 0 (now 0601 工业) was 0101 水田
            cells = [(("0101", 0.09), CELLS[0])] + cells[1:]
        for k, ((code, kcxs), (x0, y0, x1, y1)) in enumerate(cells):
            rows.append({"BSM": f"P{key}{k}", "DLBM": code, "KCXS": kcxs, "ZLDWDM": V[key] + "0000000",
                         "TBMJ": 1.0})
            geoms.append(box(ox + x0, oy + y0, ox + x1, oy + y1))
    return _frame(rows, geoms)


def yjjbnt() -> gpd.GeoDataFrame:
    # one YJJBNT polygon over A's two 0101 patches and half of its 0702 patch; one across B/D (0102, 0103)
    geoms = [box(0, 0, 200, 75), box(100, 150, 300, 200)]
    return _frame([{"BSM": "YJ1"}, {"BSM": "YJ2"}], geoms)


# approved share of each record's area and of its 耕地 (as yzt analyse measures them: area_approved and the 耕地
# under the union of the approvals); the rest is the unapproved part
APPROVED = {"WP1": (0.0, 0.0), "WP2": (1.0, 1.0), "WP3": (0.0, 0.0), "WP4": (0.6, 0.5), "WP5": (0.0, 0.0),
            "WP6": (0.02, 0.0), "WP7": (0.7, 0.8), "BG-8": (0.0, 0.0)}


def flagged_patches() -> gpd.GeoDataFrame:
    rows = [
        # JCBH, village, verdict, status, judgement, area_cultivated share
        ("WP1", "A", "suspected_illegal", "待核查", None, (0, 50, 100, 100)),
        ("WP2", "A", "legal", "已核查", "合法", (120, 10, 150, 40)),
        ("WP3", "C", "suspected_illegal", "立案", None, (200, 0, 300, 50)),
        ("WP4", "C", "partly_approved", "已核查", "违法", (310, 60, 330, 80)),
        ("WP5", "D", "other", "已核查", "其他", (210, 110, 240, 140)),
        ("WP6", "B", "suspected_illegal", "已核查", "合法", (10, 110, 40, 140)),
        ("WP7", "C", "partly_approved", "待核查", None, (200, 60, 240, 90)),
        # a change only the annual survey found (no monitoring patch issued for it): judged, never 下发
        ("BG-8", "A", "suspected_illegal", "立案", "违法", (160, 50, 190, 80)),
    ]
    out = []
    geoms = []
    for jcbh, key, verdict, status, judgement, (x0, y0, x1, y1) in rows:
        out.append({"JCBH": jcbh, "XZQDM": V[key], "verdict": verdict, "status": status, "judgement": judgement,
                    "source_ids": json.dumps([jcbh]), "n_issued": 0 if jcbh.startswith("BG-") else 1})
        geoms.append(box(x0, y0, x1, y1))
    gdf = _frame(out, geoms)
    # 耕地 share of each patch (as yzt analyse writes it): half of the area on 耕地, net of 10 % 田坎
    gdf["area_cultivated"] = (gdf["area_m2"] * 0.5 * 0.9).round(2)
    share = gdf["JCBH"].map(lambda j: APPROVED[j][0])
    cult_share = gdf["JCBH"].map(lambda j: APPROVED[j][1])
    gdf["area_approved"] = (gdf["area_m2"] * share).round(2)
    gdf["area_unapproved"] = (gdf["area_m2"] - gdf["area_approved"]).round(2)
    gdf["area_cultivated_unapproved"] = (gdf["area_cultivated"] * (1 - cult_share)).round(2)
    return gdf.drop(columns="yzt_fid")


def planning_conflicts() -> gpd.GeoDataFrame:
    """Records as `yzt analyse` writes them, with their conflict_id (analysis.conflicts.conflict_ids)."""
    def rec(kind, village, left_layer, left_id, right_layer, right_ids):
        return {"kind": kind, "XZQDM": V[village], "left_layer": left_layer, "left_ids": json.dumps([left_id]),
                "right_layer": right_layer, "right_ids": json.dumps(right_ids, ensure_ascii=False), "note": ""}

    rows = [
        rec("yjjbnt_czkfbj", "A", "yjjbnt", "YJ-A0", "czkfbj", ["CZ-1"]),
        rec("stbhhx_czkfbj", "D", "stbhhx", "ST-D1", "czkfbj", ["CZ-2"]),
        rec("approved_unsupplied", "C", "approvals", "PZ-C1", "parcels", []),
        rec("idle_land", "B", "parcels", "ZD-B1", "dltb", ["B0"]),
        rec("construction_in_yjjbnt", "A", "dltb", "A2", "yjjbnt", ["YJ-A0"]),
    ]
    geoms = [box(0, 0, 10, 10), box(300, 150, 320, 170), box(250, 10, 270, 40), box(20, 120, 60, 160),
             box(0, 50, 20, 75)]
    gdf = _frame(rows, geoms)
    gdf.insert(0, "conflict_id", conflict_ids(gdf))
    return gdf


def layers() -> dict[str, gpd.GeoDataFrame]:
    return {"xzq": xzq(), "dltb": dltb(), "dltb_prev": dltb_prev(), "yjjbnt": yjjbnt(),
            "flagged_patches": flagged_patches(), "planning_conflicts": planning_conflicts()}


def write_store(path, frames: dict[str, gpd.GeoDataFrame]) -> str:
    """The layers in a GeoPackage county store (as yzt ingest / analyse leave them); its URL."""
    from layers.store import open_store

    with open_store(path) as store:
        store.write_layers(frames, records=[], meta={"region_code": COUNTY, "region_name": "样例县",
                                                     "epsg": str(EPSG), "zone": "38"})
    return str(path)


def partitioned(url: str, rows_per_partition: int, registry_path=None):
    """The county's indicators in spatial partitions (services/jobs/partitions.py), computed one partition
    after another in this process — what run_indicators has the dask tasks do, without a cluster.
    (plan, IndicatorResult)."""
    from analysis.indicators.compute import finish_indicators, merge_parts
    from layers.store import open_store
    from services.jobs.indicators import _latest_loads, _needed_layers, load_registry
    from services.jobs.partitions import partition_parts, plan_partitions, read_owned, whole_layer_code_sets

    registry, _ = load_registry(registry_path)
    with open_store(url) as store:
        names = sorted(_needed_layers(registry) & set(store.layer_names()))
        plan, why = plan_partitions(store, registry, rows_per_partition, names)
        loads = _latest_loads(store, names)
        code_sets = whole_layer_code_sets(store, {n: loads.get(n, {}).get("code_set") for n in ("dltb", "dltb_prev")
                                                  if n in names})
    assert plan, why
    parts = [partition_parts(p, read_owned(p, url), url, registry.document, names, code_sets) for p in plan]
    return plan, finish_indicators(merge_parts(parts), registry)

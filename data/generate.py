"""Deterministic generator of the sample county 样例县 (130599) and of its benchmark-size twin.

    .venv/bin/python -m data.generate                      # writes data/sample (the committed sample)
    .venv/bin/python -m data.generate --county-size --patches 300000 --out DIR   # benchmark data
    .venv/bin/python -m data.generate --province 3 --patches 3000 --out DIR      # a province (data/province.py)

The county is built in EPSG:4547 metres, bottom-up so that everything tiles exactly:

1. Voronoi cells of a jittered, staggered grid of seeds (elongated N–S like Hebei plain fields); the county
   is the set of cells whose seed lies inside an irregular outline, so county, 乡镇 and 村 boundaries are unions
   of cells and coincide exactly.
2. 乡镇 and 村 by (noisy) nearest seed; land use per cell from smooth random fields (towns around township
   seats, village settlements, a river with riparian woods, orchards, 水浇地 / 旱地 zones).
3. Neighbouring cells of the same village and land use are merged into irregular patches; then a river,
   highways, canals and rural roads are cut in as strips (noded once and polygonised: shared edges exact).
4. Coordinates are snapped to the millimetre; planted sites (new construction, facility land …) are
   carved as holes into single parent patches, so each lies in one village and has one 原地类. The sites of
   data/split.py (issue 10) cross several parents instead — a 村 boundary, a road beside a building, a field
   road — and are carved piece by piece, each piece a patch of its own; they draw from their own generator,
   after every older case, so the older cases stay as they were.
5. Every other layer is derived from the patches: xzq, yjjbnt, stbhhx, czkfbj and ghfq are coverage unions
   of patches; approvals, parcels and monitoring patches are drawn on planted sites.

The truth the analysis must reproduce (planted.yaml) is computed from the geometry built here, and
tests/test_data_generate.py checks it again from the files written.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
import yaml

from layers.area import ellipsoidal_area
from layers.codes import CONSTRUCTION_SANDIAO, CULTIVATED, SANDIAO_CODES

from . import _shapes as sh
from . import split

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
DEFAULT_SEED = 130599
REGION_CODE = "130599"
REGION_NAME = "样例县"
EPSG = 4547
CRS = f"EPSG:{EPSG}"
YEAR = 2024
SURVEY_DATE = dt.date(2024, 12, 31)
BASE_PATCHES = 25_000  # DLTB patches at scale 1 (the committed sample)
CENTRE = (602_130.0, 4_116_550.0)  # 115.15°E, 37.175°N in EPSG:4547
FRAME = (589_300.0, 4_102_900.0, 615_200.0, 4_130_100.0)  # inside 115.00–115.30°E, 37.05–37.30°N
# patches ≈ A·cells + B·√cells: merging removes cells; strips of fixed length add pieces ∝ length / cell size.
# Two regimes (fitted on generated counties): field roads every ~9 cells for coarse cells (scale ≤ 1), every
# 1.2 km for fine ones (benchmark counties).
PATCH_MODEL_COARSE = (0.962, 27.2)
PATCH_MODEL_FINE = (0.6409, 85.27)
ROAD_SPACING_MIN, ROAD_SPACING_CELLS = 1200.0, 9.3

# Land-use mixes (code, weight) ------------------------------------------------------------------------------
TOWN_MIX = [("0701", 45), ("05H1", 12), ("0601", 14), ("08H2", 8), ("1004", 12), ("0810", 4), ("1201", 3),
            ("0508", 2)]
VILLAGE_MIX = [("0702", 78), ("1004", 8), ("08H2", 3), ("0601", 4), ("1201", 4), ("1202", 3)]
RIPARIAN_MIX = [("0301", 62), ("0404", 10), ("1104", 8), ("0103", 20)]
STRIP_CODES = {0: "1101", 1: "1003", 2: "1107", 3: "1006"}  # river, highway, canal, rural road
STATE_CODES = {"1101", "1003", "1107"}  # 国有 (QSXZ 10) besides town land

# 规划分区 codes (市县国土空间总体规划 规划分区): written next to the manifest as ghfq_codes.yaml.
GHFQ_CODES = {
    "01": "生态保护区", "02": "生态控制区", "03": "农田保护区",
    "04": "城镇发展区", "0401": "城镇集中建设区", "0402": "城镇弹性发展区", "0403": "特别用途区",
    "05": "乡村发展区", "0501": "村庄建设区", "0502": "一般农业区", "0503": "林业发展区", "0504": "牧业发展区",
    "06": "海洋发展区", "07": "矿产能源发展区",
}
CZKFBJ_KINDS = {1: ("01", "集中建设区"), 2: ("02", "弹性发展区"), 3: ("03", "特别用途区")}

TOWNSHIP_NAMES = ["城关镇", "辛庄镇", "王口镇", "大营镇", "北陈乡", "南宫乡", "西河乡", "东留乡"]
SURNAMES = list("王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田"
                "董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔"
                "钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴孔向汤")
SUFFIXES = ["庄", "村", "营", "屯", "店", "寨", "堡", "家庄", "官庄", "辛庄", "集", "口", "疃", "家营"]
PREFIXES = ["", "", "", "东", "西", "南", "北", "前", "后", "大", "小"]

ROUNDS = {  # monitoring sources: file stem, SOURCE, ROUND, 前时相, 后时相
    "sat1": ("monitoring_2024_1", "satellite", "2024-1", dt.date(2023, 10, 15), dt.date(2024, 4, 20)),
    "sat2": ("monitoring_2024_2", "satellite", "2024-2", dt.date(2024, 4, 20), dt.date(2024, 10, 18)),
    "camera": ("monitoring_camera", "camera", "2024-2", dt.date(2024, 6, 1), dt.date(2024, 7, 12)),
    "drone": ("monitoring_drone", "drone", "2024-2", dt.date(2024, 5, 10), dt.date(2024, 9, 5)),
}

# How each monitoring file writes its dates (issued lists come in every form): month = 'YYYY-MM' text (the
# date is known to the month only), iso = GeoPackage DATE, yyyymmdd = '20240712' text, excel = Excel serial
# number (1900 date system, serial = days since 1899-12-30), yyyymm = '202407' text (month only).
MIXED_FILE = "monitoring_2024_pc"  # both satellite rounds and cameras in one file, columns PC (批次) / LY (来源)
DATE_STYLE = {"monitoring_2024_1": "month", "monitoring_2024_2": "iso", "monitoring_camera": "yyyymmdd",
              "monitoring_drone": "excel", MIXED_FILE: "yyyymm"}
MONTH_ONLY = {"month", "yyyymm"}
LY_VALUES = {"satellite": "卫片", "camera": "摄像头", "drone": "无人机"}
EXCEL_EPOCH = dt.date(1899, 12, 30)


def canonical_date(d: dt.date, file: str) -> str:
    """The date as the file knows it, as text: 'YYYY-MM' where the file gives the month only, else ISO."""
    return d.strftime("%Y-%m") if DATE_STYLE[file] in MONTH_ONLY else d.isoformat()


def render_date(text: str | None, file: str):
    """A canonical date text in the form the file writes it."""
    if text is None:
        return None
    style = DATE_STYLE[file]
    if style == "month":
        return text[:7]
    if style == "yyyymm":
        return text[:4] + text[5:7]
    d = dt.date.fromisoformat(text)
    if style == "iso":
        return d
    if style == "yyyymmdd":
        return d.strftime("%Y%m%d")
    return (d - EXCEL_EPOCH).days  # excel


# Planted sites -------------------------------------------------------------------------------------------
# parent: ring = 耕地 in CZKFBJ 弹性发展区; farm = general 耕地 (no control line); yj = 耕地 in YJJBNT;
#         st = 乔木林地 in STBHHX; wood = 乔木林地 outside STBHHX.
# new: current DLBM (None = not carved: DLTB unchanged there).
# approval: (PZLX, cover) with cover "full" (site grown 3 m), "exact" (the site itself) or a share 0..1 of
#           the site's length; None = no approval.
# mon: monitoring patches on the site: (source, variant), variant inset | moved | turned | exact.
# kind → expected verdict (domain §6 and analysis/rules.yaml defaults).
SITES = [
    dict(key="L1", parent="ring", new="0601", approval=("农用地转用", "full"), mon=[("sat1", "inset")],
         kind="approved", verdict="legal"),
    dict(key="L2", parent="ring", new="0701", approval=("土地征收", "full"), mon=[("sat2", "inset")],
         kind="approved", verdict="legal"),
    dict(key="L3", parent="ring", new="05H1", approval=("供地", "full"), mon=[("drone", "inset")],
         kind="approved", verdict="legal"),
    dict(key="P1", parent="ring", new="0601", approval=("农用地转用", 0.45), mon=[("sat1", "inset")],
         kind="partly_approved", verdict="partly_approved"),
    dict(key="P2", parent="ring", new="05H1", approval=("农用地转用", 0.60), mon=[("sat2", "inset")],
         kind="partly_approved", verdict="partly_approved"),
    dict(key="P3", parent="ring", new="0701", approval=("土地征收", 0.75), mon=[("sat2", "inset")],
         kind="partly_approved", verdict="partly_approved"),
    dict(key="I1", parent="farm", new="0601", approval=None, mon=[("sat1", "inset")],
         kind="unapproved_cultivated", verdict="suspected_illegal"),
    dict(key="I2", parent="farm", new="05H1", approval=None, mon=[("sat2", "inset")],
         kind="unapproved_cultivated", verdict="suspected_illegal"),
    dict(key="I3", parent="farm", new="0702", approval=None, mon=[("camera", "inset")],
         kind="unapproved_cultivated", verdict="suspected_illegal"),
    dict(key="Y1", parent="yj", new="0601", approval=None, mon=[("sat1", "inset")],
         kind="unapproved_yjjbnt", verdict="suspected_illegal"),
    dict(key="Y2", parent="yj", new="05H1", approval=None, mon=[("sat2", "inset")],
         kind="unapproved_yjjbnt", verdict="suspected_illegal"),
    dict(key="Y3", parent="yj", new="1201", approval=None, mon=[("drone", "inset")],
         kind="unapproved_yjjbnt", verdict="suspected_illegal"),
    dict(key="S1", parent="st", new="05H1", approval=None, mon=[("sat1", "inset")],
         kind="unapproved_stbhhx", verdict="suspected_illegal"),
    dict(key="S2", parent="st", new="0601", approval=None, mon=[("sat2", "inset")],
         kind="unapproved_stbhhx", verdict="suspected_illegal"),
    dict(key="F1", parent="farm", new="1202", approval=("设施农用地备案", "full"), mon=[("sat1", "inset")],
         kind="facility_filing", verdict="other"),
    dict(key="F2", parent="farm", new="1202", approval=("设施农用地备案", "full"), mon=[("sat2", "inset")],
         kind="facility_filing", verdict="other"),
    dict(key="T1", parent="farm", new=None, approval=("临时用地", "full"), mon=[("sat1", "inset")],
         kind="temporary_use", verdict="other"),
    dict(key="T2", parent="farm", new=None, approval=("临时用地", "full"), mon=[("sat2", "inset")],
         kind="temporary_use", verdict="other"),
    dict(key="X1", parent="farm", new=None, approval=None, mon=[("sat1", "exact")], size=(5.0, 6.0),
         kind="sliver", verdict="other"),
    dict(key="X2", parent="farm", new=None, approval=None, mon=[("sat2", "exact")], size=(4.0, 9.0),
         kind="sliver", verdict="other"),
    dict(key="X3", parent="farm", new=None, approval=None, mon=[("sat2", "exact")], size=(6.0, 7.0),
         kind="sliver", verdict="other"),
    dict(key="N1", parent="farm", new=None, approval=None, mon=[("sat1", "inset")],
         kind="no_class_change", verdict="other"),
    dict(key="N2", parent="yj", new=None, approval=None, mon=[("sat2", "inset")],
         kind="no_class_change", verdict="other"),
    dict(key="N3", parent="farm", new=None, approval=None, mon=[("camera", "inset")],
         kind="no_class_change", verdict="other"),
    dict(key="G1", parent="farm", new="0601", approval=None,
         mon=[("sat1", "inset"), ("sat2", "moved"), ("camera", "turned")],
         kind="same_change_reissued", verdict="suspected_illegal"),
    dict(key="G2", parent="ring", new="05H1", approval=("农用地转用", "full"),
         mon=[("sat2", "inset"), ("drone", "moved_small")],
         kind="same_change_reissued", verdict="legal"),
    dict(key="G3", parent="farm", new=None, approval=None, mon=[("sat1", "inset"), ("sat2", "moved")],
         kind="same_change_reissued", verdict="other"),
    # touching pairs: one rectangle cut in two halves (a, b) sharing an edge; different changes
    dict(key="E1", parent="ring", new="0601", approval=None, mon=[("sat2", "exact")], half="a", pair="E2",
         kind="touching_pair", verdict="suspected_illegal"),
    dict(key="E2", parent=None, new="0701", approval=("农用地转用", "exact"), mon=[("sat2", "exact")], half="b",
         pair="E1", kind="touching_pair", verdict="legal"),
    dict(key="E3", parent="farm", new="0601", approval=None, mon=[("sat1", "exact")], half="a", pair="E4",
         kind="touching_pair", verdict="suspected_illegal"),
    dict(key="E4", parent=None, new=None, approval=None, mon=[("sat1", "exact")], half="b", pair="E3",
         kind="touching_pair", verdict="other"),
    # changes seen only by the survey (dltb_prev → dltb), no monitoring patch
    dict(key="C1", parent="farm", new="0702", approval=None, mon=[], kind="survey_only",
         verdict="suspected_illegal"),
    dict(key="C2", parent="ring", new="0601", approval=("农用地转用", "full"), mon=[], kind="survey_only",
         verdict="legal"),
    dict(key="C3", parent="yj", new="0201", approval=None, mon=[], kind="survey_only",
         verdict="suspected_illegal"),
    dict(key="C4", parent="wood", new="1003", approval=None, mon=[], kind="survey_only",
         verdict="suspected_illegal"),
]
TBLX = {"0601": "新增建设用地", "0701": "新增建设用地", "05H1": "新增建设用地", "0702": "新增建设用地",
        "1201": "推填土", "1202": "新增设施农用地", "1003": "新增建设用地", "0201": "耕地种植结构调整", None: "推填土"}

# 供地 / 闲置 cases drawn as parcels and approvals (not carved; DLTB keeps its land use there)
SUPPLY_CASES = [
    # key, parent, approval kind, approval date, parcel supply date (None: no parcel), parcel share, JGRQ, expect
    dict(key="U1", parent="ring", pzlx="农用地转用", pzrq=dt.date(2022, 9, 14), gdrq=None, share=0.0,
         expect="approved_not_supplied"),
    dict(key="U2", parent="ring", pzlx="土地征收", pzrq=dt.date(2023, 5, 22), gdrq=None, share=0.0,
         expect="approved_not_supplied"),
    dict(key="U3", parent="ring", pzlx="农用地转用", pzrq=dt.date(2022, 3, 8), gdrq=dt.date(2023, 11, 2),
         share=0.5, expect="approved_not_supplied"),
    dict(key="Z1", parent="ring", pzlx="农用地转用", pzrq=dt.date(2020, 6, 11), gdrq=dt.date(2021, 3, 18),
         share=1.0, expect="idle"),
    dict(key="Z2", parent="ring", pzlx="土地征收", pzrq=dt.date(2019, 8, 2), gdrq=dt.date(2020, 6, 30),
         share=1.0, expect="idle"),
    dict(key="Z3", parent="town_vacant", pzlx="农用地转用", pzrq=dt.date(2019, 4, 16), gdrq=dt.date(2021, 8, 9),
         share=1.0, expect="idle"),
    dict(key="Z4", parent="ring", pzlx="农用地转用", pzrq=dt.date(2023, 4, 3), gdrq=dt.date(2023, 9, 12),
         share=1.0, expect="not_idle_recent"),
    dict(key="Z5", parent="town_built", pzlx="农用地转用", pzrq=dt.date(2019, 11, 20), gdrq=dt.date(2020, 5, 6),
         share=1.0, expect="not_idle_built"),
]
ZONE_CONFLICT_CASES = [  # parcels whose use conflicts with their 规划分区 (existing village land)
    dict(key="V1", parent="village_0601", tdyt="0601"),
    dict(key="V2", parent="village_0601", tdyt="0601"),
    dict(key="V3", parent="village_0702", tdyt="0701"),
]


@dataclass
class County:
    """Everything generated: the layers (GeoDataFrames in EPSG:4547) and the planted truth."""

    seed: int
    scale: float
    layers: dict[str, gpd.GeoDataFrame]
    planted: dict
    ghfq_codes: dict = field(default_factory=lambda: dict(GHFQ_CODES))
    timings: dict = field(default_factory=dict)


def _area(geoms) -> np.ndarray:
    return ellipsoidal_area(np.asarray(geoms, dtype=object), CRS)


def _pick(rng: np.random.Generator, mix, n: int) -> np.ndarray:
    codes = np.array([c for c, _ in mix], dtype=object)
    w = np.array([w for _, w in mix], float)
    return codes[rng.choice(len(codes), size=n, p=w / w.sum())]


def _lloyd(points: np.ndarray, k: int, rng: np.random.Generator, iters: int = 10) -> np.ndarray:
    centres = points[rng.choice(len(points), k, replace=False)]
    for _ in range(iters):
        d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
        lab = d.argmin(1)
        for j in range(k):
            if (lab == j).any():
                centres[j] = points[lab == j].mean(0)
    return centres


def _village_names(rng: np.random.Generator, n: int) -> list[str]:
    names: list[str] = []
    seen = set()
    while len(names) < n:
        name = (PREFIXES[rng.integers(len(PREFIXES))] + SURNAMES[rng.integers(len(SURNAMES))]
                + SUFFIXES[rng.integers(len(SUFFIXES))] + "村")
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


# ---------------------------------------------------------------------------------------------------------
# 1–3: cells, admin units, land use, merged patches, strips
# ---------------------------------------------------------------------------------------------------------

def _build_tessellation(rng: np.random.Generator, n_patches: int, timings: dict) -> dict:
    t0 = time.perf_counter()
    outline = sh.star_outline(*CENTRE, radius=11_600.0, rng=rng, aspect=0.95)
    fx0, fy0, fx1, fy1 = FRAME
    ox0, oy0, ox1, oy1 = outline.bounds
    if ox0 < fx0 or oy0 < fy0 or ox1 > fx1 or oy1 > fy1:  # keep inside the 115.00–115.30°E frame
        f = min((CENTRE[0] - fx0) / (CENTRE[0] - ox0), (fx1 - CENTRE[0]) / (ox1 - CENTRE[0]),
                (CENTRE[1] - fy0) / (CENTRE[1] - oy0), (fy1 - CENTRE[1]) / (oy1 - CENTRE[1])) * 0.995
        outline = shapely.affinity.scale(outline, f, f, origin=CENTRE) if f < 1 else outline
    def cells_for(model):
        a, b = model
        return ((-b + math.sqrt(b * b + 4 * a * n_patches)) / (2 * a)) ** 2

    n_cells = cells_for(PATCH_MODEL_COARSE)
    if ROAD_SPACING_CELLS * math.sqrt(outline.area / n_cells) < ROAD_SPACING_MIN:
        n_cells = cells_for(PATCH_MODEL_FINE)
    cell_area = outline.area / n_cells
    sx = math.sqrt(cell_area / 2.0)
    sy = 2.0 * sx
    margin = 3 * sy
    b = outline.bounds
    bounds = (b[0] - margin, b[1] - margin, b[2] + margin, b[3] + margin)
    seeds = sh.jittered_grid(bounds, sx, sy, 0.33, rng, angle_deg=rng.uniform(-6, 6))
    cells = sh.voronoi_cells(seeds, (bounds[0] - margin, bounds[1] - margin, bounds[2] + margin,
                                     bounds[3] + margin))
    inside = shapely.contains_xy(outline, seeds[:, 0], seeds[:, 1])
    seeds, cells = seeds[inside], cells[inside]
    timings["cells"] = time.perf_counter() - t0
    x, y = seeds[:, 0], seeds[:, 1]
    n = len(seeds)

    # 乡镇: warped nearest seed; 村: nearest village seed inside the township
    n_town = int(rng.integers(6, 9))
    sample = seeds[rng.choice(n, min(n, 4000), replace=False)]
    t_seeds = _lloyd(sample, n_town, rng)
    d = np.stack([np.hypot(x - sx_, y - sy_) * (1 + 0.12 * sh.smooth_noise(x, y, rng, 6000.0))
                  for sx_, sy_ in t_seeds])
    township = d.argmin(0)
    # the county seat (城关镇) is the township whose seed is nearest the centre; number it first
    order = np.argsort(np.hypot(t_seeds[:, 0] - CENTRE[0], t_seeds[:, 1] - CENTRE[1]))
    rank = np.empty(n_town, int)
    rank[order] = np.arange(n_town)
    township = rank[township]
    t_seeds = t_seeds[order]
    village = np.full(n, -1)
    v_seed, v_town, v_radius = [], [], []
    for t in range(n_town):
        sel = np.flatnonzero(township == t)
        k = int(rng.integers(5, 16))
        k = min(k, max(1, len(sel) // 4))
        pts = seeds[sel]
        centres = _lloyd(pts[rng.choice(len(pts), min(len(pts), 3000), replace=False)], k, rng)
        dd = ((pts[:, None, :] - centres[None]) ** 2).sum(-1)
        lab = dd.argmin(1)
        # keep village numbering stable: order the village centres west→east, north→south
        vorder = np.lexsort((-centres[:, 1], np.round(centres[:, 0] / 2000)))
        vrank = np.empty(k, int)
        vrank[vorder] = np.arange(k)
        base = len(v_seed)
        village[sel] = base + vrank[lab]
        for j in vorder:
            v_seed.append(centres[j])
            v_town.append(t)
            v_radius.append(float(rng.uniform(230, 400)))
    v_seed = np.array(v_seed)
    v_town = np.array(v_town)
    v_radius = np.array(v_radius)

    # land use per cell --------------------------------------------------------------------------------
    code = np.empty(n, dtype=object)
    town_id = np.full(n, -1)
    settlement = np.zeros(n, bool)
    riparian = np.zeros(n, bool)
    t_radius = np.array([1900.0] + [float(rng.uniform(650, 1000)) for _ in range(n_town - 1)])
    # town seats: the cell seed nearest each township centre
    seat = np.array([seeds[np.argmin(np.hypot(x - p[0], y - p[1]) + 1e9 * (township != t))]
                     for t, p in enumerate(t_seeds)])
    n_town_field = sh.smooth_noise(x, y, rng, 900.0)
    t_dist = np.stack([np.hypot(x - p[0], y - p[1]) for p in seat])
    for t in range(n_town):
        sel = (t_dist[t] < t_radius[t] * (1 + 0.3 * n_town_field)) & (town_id < 0)
        town_id[sel] = t
    is_town = town_id >= 0
    code[is_town] = _pick(rng, TOWN_MIX, int(is_town.sum()))
    outer = is_town & (t_dist[np.maximum(town_id, 0), np.arange(n)] > 0.7 * t_radius[np.maximum(town_id, 0)])
    code[outer & (rng.random(n) < 0.35)] = "0601"

    river_line = sh.meander((bounds[0], CENTRE[1] + 5200), (bounds[2], CENTRE[1] - 6500), rng,
                            amplitude=1100.0, wavelength=7000.0)
    river_width = 85.0
    r_dist = shapely.distance(shapely.points(seeds), river_line)
    rip_field = sh.smooth_noise(x, y, rng, 1500.0)
    riparian[:] = (r_dist < 380 * (1 + 0.4 * rip_field)) & ~is_town
    code[riparian] = _pick(rng, RIPARIAN_MIX, int(riparian.sum()))

    v_dist = np.hypot(x - v_seed[village, 0], y - v_seed[village, 1])
    vil_field = sh.smooth_noise(x, y, rng, 700.0)
    settlement[:] = (v_dist < v_radius[village] * (1 + 0.3 * vil_field)) & ~is_town & ~riparian
    code[settlement] = _pick(rng, VILLAGE_MIX, int(settlement.sum()))

    free = ~is_town & ~riparian & ~settlement
    crop = sh.smooth_noise(x, y, rng, 5000.0)
    orch = sh.smooth_noise(x, y, rng, 1600.0)
    wood = sh.smooth_noise(x, y, rng, 1200.0)
    u = rng.random(n)
    farm_code = np.where(crop > 0.25, "0102", "0103").astype(object)
    farm_code[(r_dist < 1500) & (u < 0.12)] = "0101"
    farm_code[orch > 0.78] = "0201"
    farm_code[wood > 0.85] = "0301"
    u2 = rng.random(n)
    farm_code[u2 < 0.012] = "1202"
    farm_code[(u2 >= 0.012) & (u2 < 0.019)] = "1104"
    farm_code[(u2 >= 0.019) & (u2 < 0.023)] = "0404"
    code[free] = farm_code[free]
    # a small sand pit (采矿用地) for the 矿产能源发展区
    mine = np.zeros(n, bool)
    cand = np.flatnonzero(free & (township == n_town - 1))
    if len(cand):
        c0 = cand[rng.integers(len(cand))]
        near = np.argsort(np.hypot(x - x[c0], y - y[c0]))[:4]
        near = near[free[near]]
        mine[near] = True
        code[near] = "0602"
    timings["land_use"] = time.perf_counter() - t0 - timings["cells"]

    # merge neighbouring cells of one village and land use into irregular patches ------------------------
    t1 = time.perf_counter()
    msel = rng.random(n) < 1 / 1.7
    mtree = shapely.STRtree(shapely.points(seeds[msel]))
    near = mtree.query_nearest(shapely.points(seeds), return_distance=False, all_matches=False)
    mseed = np.empty(n, int)
    mseed[near[0]] = near[1]
    code_id = np.unique(code.astype(str), return_inverse=True)[1]
    key = np.stack([village, code_id, mseed, town_id + 1, settlement.astype(int), riparian.astype(int),
                    mine.astype(int)], axis=1)
    _, grp = np.unique(key, axis=0, return_inverse=True)
    grp = grp.ravel()
    order = np.argsort(grp, kind="stable")
    merged = sh.group_union(cells[order], grp[order])
    first = order[np.searchsorted(grp[order], np.arange(grp.max() + 1))]
    parts, part_of = shapely.get_parts(merged, return_index=True)
    units = first[part_of]  # representative cell of each merged unit
    timings["merge"] = time.perf_counter() - t1

    # strips: river, highways, canals, rural roads ---------------------------------------------------
    t2 = time.perf_counter()
    strips: list[tuple[int, object]] = [(0, sh.strip(river_line, river_width))]
    cs = seat[0]
    for t in range(1, n_town):
        if t <= 3 or rng.random() < 0.4:
            line = sh.meander(cs, seat[t], rng, amplitude=250.0, wavelength=6000.0)
            strips.append((1, sh.strip(line, 24.0)))
    strips.append((1, sh.strip(sh.meander((cs[0] + 700, bounds[1]), (cs[0] - 900, bounds[3]), rng, 400.0,
                                          9000.0), 26.0)))
    for _ in range(2):
        p = shapely.line_interpolate_point(river_line, rng.uniform(0.25, 0.75), normalized=True)
        ang = rng.uniform(0, 2 * math.pi)
        q = (p.x + 9000 * math.cos(ang), p.y + 9000 * math.sin(ang))
        strips.append((2, sh.strip(sh.meander((p.x, p.y), q, rng, 300.0, 5000.0), 10.0)))
    towns_union = shapely.union_all(cells[is_town])
    spacing = max(ROAD_SPACING_MIN, ROAD_SPACING_CELLS * math.sqrt(cell_area))  # field roads
    for gx in np.arange(bounds[0] + spacing / 2, bounds[2], spacing):
        line = sh.meander((gx, bounds[1]), (gx + rng.uniform(-150, 150), bounds[3]), rng, 40.0, 4000.0)
        strips.append((3, shapely.difference(sh.strip(line, 6.0), towns_union)))
    for gy in np.arange(bounds[1] + spacing / 2, bounds[3], spacing):
        line = sh.meander((bounds[0], gy), (bounds[2], gy + rng.uniform(-150, 150)), rng, 40.0, 4000.0)
        strips.append((3, shapely.difference(sh.strip(line, 6.0), towns_union)))
    strips = [(k, sh.snap_mm(shapely.intersection(g, outline.buffer(2 * sy)))) for k, g in strips]
    strips = [(k, g) for k, g in strips if not g.is_empty]
    for halo in (False, True):
        geoms, unit_idx, kind = sh.cut_strips(parts, strips, halo=halo)
        cell_idx = units[unit_idx]
        # one polygon per patch (the noded faces are valid and on the mm grid already)
        geoms = np.asarray(geoms, dtype=object)
        sub, sub_idx = shapely.get_parts(geoms, return_index=True)
        geoms = np.asarray(sub)
        cell_idx, kind = cell_idx[sub_idx], kind[sub_idx]
        keep = shapely.area(geoms) > 1e-6
        geoms, cell_idx, kind = geoms[keep], cell_idx[keep], kind[keep]
        geoms, _ = sh.fill_coverage_holes(geoms)  # sliver holes left by snap rounding at road crossings
        if shapely.is_valid(geoms).all() and shapely.coverage_is_valid(geoms):
            break
    else:  # pragma: no cover - would be a GEOS noding failure
        raise RuntimeError("the patch tessellation is not a valid coverage after cutting the strips")
    timings["strips"] = time.perf_counter() - t2

    pcode = code[cell_idx].copy()
    has_strip = kind >= 0
    pcode[has_strip] = np.array([STRIP_CODES[k] for k in kind[has_strip]], dtype=object)
    # rural road pieces inside settlements are village streets (城镇村道路用地)
    street = (kind == 3) & (settlement[cell_idx] | is_town[cell_idx])
    pcode[street] = "1004"
    return dict(
        outline=outline, geoms=geoms, code=pcode, cell=cell_idx, strip_kind=kind, river_line=river_line,
        village=village[cell_idx], township=township[cell_idx], town_id=town_id[cell_idx],
        settlement=settlement[cell_idx], riparian=riparian[cell_idx], mine=mine[cell_idx],
        n_town=n_town, seat=seat, t_radius=t_radius, v_seed=v_seed, v_town=v_town, v_radius=v_radius,
        cell_size=math.sqrt(cell_area),
    )


# ---------------------------------------------------------------------------------------------------------
# 4: zones (control lines) per patch, planted sites
# ---------------------------------------------------------------------------------------------------------

def _zones(t: dict, rng: np.random.Generator) -> dict:
    g = t["geoms"]
    code = t["code"]
    pts = shapely.point_on_surface(g)
    px, py = shapely.get_x(pts), shapely.get_y(pts)
    cult = np.isin(code.astype(str), list(CULTIVATED))
    st = (code == "1101") | (t["riparian"] & np.isin(code.astype(str), ["0301", "0404", "1104"]) &
                             (t["strip_kind"] < 0))
    town = t["town_id"] >= 0
    cz = np.zeros(len(g), int)
    cz[town & ~st] = 1
    ring_field = sh.smooth_noise(px, py, rng, 800.0)
    cz_town = t["town_id"].copy()
    for k, p in enumerate(t["seat"]):
        d = np.hypot(px - p[0], py - p[1])
        ring = (d < t["t_radius"][k] * 1.3 + 380 * (1 + 0.3 * ring_field)) & (cz == 0) & ~st & ~t["mine"]
        cz[ring] = 2
        cz_town[ring] = k
    v_seed, v_rad = t["v_seed"], t["v_radius"]
    vd = np.hypot(px - v_seed[t["village"], 0], py - v_seed[t["village"], 1])
    yj_field = sh.smooth_noise(px, py, rng, 3000.0)
    yj = cult & (cz == 0) & ~st & ~t["settlement"] & (vd > v_rad[t["village"]] * 1.3 + 120) & (yj_field > -0.45)
    return dict(st=st, cz=cz, cz_town=cz_town, yj=yj, cult=cult, px=px, py=py)


def _candidates(t: dict, z: dict, kind: str) -> np.ndarray:
    code = t["code"].astype(str)
    base = t["strip_kind"] < 0
    free = base & ~z["st"] & (z["cz"] == 0) & ~z["yj"] & ~t["settlement"] & (t["town_id"] < 0)
    if kind == "ring":
        sel = base & z["cult"] & (z["cz"] == 2) & ~t["settlement"]
    elif kind == "farm":
        sel = free & z["cult"]
    elif kind == "yj":
        sel = base & z["yj"]
    elif kind == "st":
        sel = base & z["st"] & (code == "0301")
    elif kind == "wood":
        sel = free & (code == "0301")
    elif kind == "town_vacant":
        sel = base & (z["cz"] == 1) & (code == "1201")
    elif kind == "town_built":
        sel = base & (z["cz"] == 1) & np.isin(code, ["0701", "05H1"])
    elif kind == "village_0601":
        sel = base & t["settlement"] & (z["cz"] == 0) & (code == "0601")
    elif kind == "village_0702":
        sel = base & t["settlement"] & (z["cz"] == 0) & (code == "0702")
    else:  # pragma: no cover - programming error
        raise ValueError(kind)
    return np.flatnonzero(sel)


class _Placer:
    """Chooses parent patches for planted sites: big enough, one site per parent, well apart."""

    def __init__(self, t: dict, z: dict, rng: np.random.Generator):
        self.t, self.z, self.rng = t, z, rng
        self.used: set[int] = set()
        self.centres: list[tuple[float, float]] = []
        self.min_gap = max(250.0, 3 * t["cell_size"])
        self._radius: dict[int, tuple[float, float, float]] = {}

    def inscribed(self, idx: np.ndarray):
        todo = [i for i in idx.tolist() if i not in self._radius]
        if todo:
            lines = shapely.maximum_inscribed_circle(self.t["geoms"][todo], 0.5)
            c = shapely.get_point(lines, 0)
            r = shapely.length(lines)
            for i, cx, cy, rr in zip(todo, shapely.get_x(c), shapely.get_y(c), r):
                self._radius[i] = (float(cx), float(cy), float(rr))
        return np.array([self._radius[i] for i in idx.tolist()]).reshape(-1, 3)

    FALLBACK: ClassVar[dict[str, str]] = {"town_vacant": "ring", "wood": "st", "village_0601": "village_0702"}

    def place(self, kind: str, need_radius: float, allow_small: bool = True) -> tuple[int, float, float, float]:
        cand = _candidates(self.t, self.z, kind)
        cand = np.array([c for c in cand if c not in self.used], int)
        if not len(cand):
            if kind in self.FALLBACK:  # small test counties may lack e.g. a town 空闲地 patch
                return self.place(self.FALLBACK[kind], need_radius, allow_small)
            raise RuntimeError(f"no parent patch of kind {kind!r} left for a planted site")
        areas = shapely.area(self.t["geoms"][cand])
        cand = cand[np.argsort(-areas, kind="stable")][: max(60, min(len(cand) // 3, 400))]
        self.rng.shuffle(cand)
        info = self.inscribed(cand)
        gap = self.min_gap
        for _ in range(4):  # relax the spacing if the county is too small for it
            best = None
            for c, (cx, cy, r) in zip(cand, info):
                if any(math.hypot(cx - a, cy - b) < gap for a, b in self.centres):
                    continue
                if r >= need_radius:
                    best = (int(c), cx, cy, r)
                    break
                if allow_small and (best is None or r > best[3]):
                    best = (int(c), cx, cy, r)
            if best is not None:
                break
            gap /= 2
        if best is None:
            raise RuntimeError(f"no parent patch of kind {kind!r} is far enough from the other sites")
        self.used.add(best[0])
        self.centres.append((best[1], best[2]))
        return best


def _orientation(geom) -> float:
    """Angle (radians) of the long side of a polygon's minimum rotated rectangle."""
    mrr = shapely.minimum_rotated_rectangle(geom)
    pts = np.asarray(mrr.exterior.coords)
    e1, e2 = pts[1] - pts[0], pts[2] - pts[1]
    e = e1 if np.hypot(*e1) >= np.hypot(*e2) else e2
    return math.atan2(e[1], e[0])


def _plant(t: dict, z: dict, rng: np.random.Generator) -> tuple[list[dict], list[dict], list[dict], _Placer]:
    """Choose parents and draw the rectangles of every planted site and supply case (not yet carved)."""
    placer = _Placer(t, z, rng)
    typical = min(45.0, 0.9 * t["cell_size"] * 0.45 + 5)  # half-diagonal of a typical site
    sites: list[dict] = []
    by_key: dict[str, dict] = {}
    for spec in SITES:
        s = dict(spec)
        if s["parent"] is None:  # second half of a touching pair: same parent and rectangle as its twin
            twin = by_key[s["pair"]]
            s.update(parent_idx=twin["parent_idx"], centre=twin["centre"], angle=twin["angle"], w=twin["w"],
                     h=twin["h"], parent_kind=twin["parent_kind"])
        else:
            size = s.get("size")
            need = (math.hypot(*size) / 2 + 3) if size else typical + 5
            if "half" in s:
                need = typical * 1.3 + 5
            p, cx, cy, r = placer.place(s["parent"], need)
            angle = _orientation(t["geoms"][p])
            if size:
                w, h = size
            else:
                hd = max(min(r - 5.0, need - 5.0) * rng.uniform(0.8, 1.0), min(6.0, 0.6 * r))
                ratio = rng.uniform(1.15, 1.6) if "half" not in s else 2.2
                h = 2 * hd / math.sqrt(1 + ratio * ratio)
                w = h * ratio
            s.update(parent_idx=p, centre=(cx, cy), angle=angle, w=round(w, 1), h=round(h, 1),
                     parent_kind=s["parent"])
        cx, cy = s["centre"]
        if "half" in s:
            t0, t1 = (0.0, 0.5) if s["half"] == "a" else (0.5, 1.0)
            s["rect"] = sh.rect_part(cx, cy, s["w"], s["h"], s["angle"], t0, t1)
        else:
            s["rect"] = sh.rotated_rect(cx, cy, s["w"], s["h"], s["angle"])
        sites.append(s)
        by_key[s["key"]] = s
    supply: list[dict] = []
    for spec in SUPPLY_CASES:
        s = dict(spec)
        p, cx, cy, r = placer.place(s["parent"], typical + 5)
        hd = max(min(r - 5.0, typical) * rng.uniform(0.8, 1.0), min(6.0, 0.6 * r))
        ratio = rng.uniform(1.1, 1.5)
        h = 2 * hd / math.sqrt(1 + ratio * ratio)
        s.update(parent_idx=p, centre=(cx, cy), angle=_orientation(t["geoms"][p]), w=round(h * ratio, 1),
                 h=round(h, 1))
        s["rect"] = sh.rotated_rect(cx, cy, s["w"], s["h"], s["angle"])
        supply.append(s)
    zone_cases: list[dict] = []
    for spec in ZONE_CONFLICT_CASES:
        s = dict(spec)
        kind = s["parent"]
        cand = [c for c in _candidates(t, z, kind) if c not in placer.used]
        while not cand and kind in _Placer.FALLBACK:  # small test counties may lack village industry
            kind = _Placer.FALLBACK[kind]
            cand = [c for c in _candidates(t, z, kind) if c not in placer.used]
        if not cand:
            raise RuntimeError(f"no {s['parent']} patch for planted parcel {s['key']}")
        c = int(cand[rng.integers(len(cand))])
        placer.used.add(c)
        s["parent_idx"] = c
        zone_cases.append(s)
    return sites, supply, zone_cases, placer


def _carve(t: dict, sites: list[dict]) -> dict:
    """Cut the carved sites out of their parents; returns per-patch arrays incl. prev / current codes."""
    geoms = t["geoms"].copy()
    n = len(geoms)
    carved = [s for s in sites if s["new"] is not None]
    by_parent: dict[int, list[dict]] = {}
    for s in carved:
        by_parent.setdefault(s["parent_idx"], []).append(s)
    for p, group in by_parent.items():
        holes = shapely.union_all([s["rect"] for s in group])
        geoms[p] = shapely.difference(geoms[p], holes)
        if geoms[p].geom_type != "Polygon":
            raise RuntimeError(f"carving site(s) {[s['key'] for s in group]} split parent patch {p}")
    new_geoms = np.array([s["rect"] for s in carved], dtype=object)
    parent = np.array([s["parent_idx"] for s in carved], int)
    out = {}
    for k in ("village", "township", "town_id", "settlement", "riparian", "mine", "strip_kind", "cell"):
        out[k] = np.concatenate([t[k], t[k][parent]])
    out["geoms"] = np.concatenate([geoms, new_geoms])
    out["code_prev"] = np.concatenate([t["code"], t["code"][parent]])
    out["code_cur"] = np.concatenate([t["code"], np.array([s["new"] for s in carved], dtype=object)])
    out["site"] = np.array([""] * n + [s["key"] for s in carved], dtype=object)
    for s, i in zip(carved, range(n, n + len(carved))):
        s["patch_idx"] = i
    return out


# ---------------------------------------------------------------------------------------------------------
# 5: attribute tables
# ---------------------------------------------------------------------------------------------------------

def _admin(t: dict, rng: np.random.Generator) -> dict:
    n_town = t["n_town"]
    tnames = [TOWNSHIP_NAMES[0]] + [TOWNSHIP_NAMES[i] for i in range(1, n_town)]
    tcodes = [f"{REGION_CODE}{100 + i}" for i in range(n_town)]
    vnames = _village_names(rng, len(t["v_seed"]))
    vcodes = []
    counter = np.zeros(n_town, int)
    for tw in t["v_town"]:
        counter[tw] += 1
        vcodes.append(f"{tcodes[tw]}{counter[tw]:03d}")
    return dict(tnames=tnames, tcodes=tcodes, vnames=vnames, vcodes=vcodes)


def _survey_frame(p: dict, admin: dict, codes: np.ndarray, year: int, areas: np.ndarray, rng_attr: dict,
                  bsm: np.ndarray) -> gpd.GeoDataFrame:
    n = len(codes)
    codes = codes.astype(str)
    vcode = np.array(admin["vcodes"], dtype=object)[p["village"]]
    vname = np.array(admin["vnames"], dtype=object)[p["village"]]
    tcode = np.array(admin["tcodes"], dtype=object)[p["township"]]
    tname = np.array(admin["tnames"], dtype=object)[p["township"]]
    cult = np.isin(codes, list(CULTIVATED))
    state = np.isin(codes, list(STATE_CODES)) | (p["town_id"] >= 0)
    kcxs = np.where(cult, rng_attr["kcxs"], 0.0)
    tbmj = np.round(areas, 2)
    kcmj = np.round(tbmj * kcxs, 2)
    construction = np.isin(codes, list(CONSTRUCTION_SANDIAO)) | (codes == "1004")
    czcs = np.full(n, None, dtype=object)
    czcs[construction & (p["town_id"] == 0)] = "201"
    czcs[construction & (p["town_id"] > 0)] = "202"
    czcs[construction & (p["town_id"] < 0) & p["settlement"]] = "203"
    czcs[codes == "0702"] = "203"  # 农村宅基地 is village land wherever it stands
    gdpdjb = np.where(cult, rng_attr["gdpdjb"], None).astype(object)
    gdlx = np.where(cult & (rng_attr["gdpdjb"] != "1"), rng_attr["gdlx"], None).astype(object)
    zldwdm = (vcode + "0000000").astype(object)
    frame = gpd.GeoDataFrame({
        "BSM": bsm,
        "TBBH": np.zeros(n, dtype=object),
        "DLBM": codes.astype(object),
        "DLMC": np.array([SANDIAO_CODES.get(c, "") for c in codes], dtype=object),
        "QSXZ": np.where(state, "10", "30").astype(object),
        "QSDWDM": np.where(state, tcode + "0000000000", zldwdm).astype(object),
        "QSDWMC": np.where(state, tname + "国有土地", vname).astype(object),
        "ZLDWDM": zldwdm,
        "ZLDWMC": vname,
        "TBMJ": tbmj,
        "KCDLBM": np.where(cult & (kcxs > 0), "1203", None).astype(object),
        "KCXS": kcxs,
        "KCMJ": kcmj,
        "TBDLMJ": np.round(tbmj - kcmj, 2),
        "GDLX": gdlx,
        "GDPDJB": gdpdjb,
        "CZCSXM": czcs,
        "SJNF": np.full(n, year, dtype=np.int32),
    }, geometry=p["geoms"], crs=CRS)
    # 图斑编号: running number within each 坐落 village, in BSM order
    frame["TBBH"] = (frame.groupby("ZLDWDM").cumcount() + 1).astype(str).to_numpy()
    return frame


# ---------------------------------------------------------------------------------------------------------
# The whole county
# ---------------------------------------------------------------------------------------------------------

def build_county(seed: int = DEFAULT_SEED, scale: float = 1.0, n_patches: int | None = None,
                 extra_monitoring: int | None = None, truth: bool = True) -> County:
    """Generate the sample county in memory. ``scale`` multiplies the patch count (1 → ~25 000 DLTB
    patches); ``n_patches`` sets it directly. Same seed and size → identical output. ``truth=False`` skips the
    planted truth (planted.yaml; about half the time of a large county) for data that does not use it."""
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    target = int(n_patches if n_patches else round(BASE_PATCHES * scale))
    scale = target / BASE_PATCHES
    rng = np.random.default_rng(seed)
    # the families of data/split.py draw from their own generator, so the older cases stay as they were
    rng_x = np.random.default_rng([seed, 10])
    t = _build_tessellation(rng, target, timings)
    t0 = time.perf_counter()
    z = _zones(t, rng)
    sites, supply, zone_cases, placer = _plant(t, z, rng)
    admin = _admin(t, rng)
    p = _carve(t, sites)
    n = len(p["geoms"])
    parent_of = np.concatenate([np.arange(len(t["geoms"])), [s["parent_idx"] for s in sites if s["new"]]])
    for k in ("st", "cz", "cz_town", "yj"):
        p[k] = z[k][parent_of]
    timings["plant"] = time.perf_counter() - t0

    # planted control-line overlaps (whole patches, so each overlap equals one patch's area)
    t0 = time.perf_counter()
    used = {s["parent_idx"] for s in sites} | {s["parent_idx"] for s in supply} | \
        {s["parent_idx"] for s in zone_cases}
    base = (np.arange(n) < len(t["geoms"])) & (p["strip_kind"] < 0) & ~np.isin(np.arange(n), list(used))
    cult = np.isin(p["code_prev"].astype(str), list(CULTIVATED))
    geoms = p["geoms"]
    overlaps = {"yj_cz": [], "yj_st": [], "st_cz": []}
    yj_extra = np.zeros(n, bool)  # extra YJJBNT features drawn over a CZKFBJ patch
    cand = np.flatnonzero(base & cult & (p["cz"] == 2) & ~p["settlement"])
    for i in rng.choice(cand, 2, replace=False):
        yj_extra[i] = True
        overlaps["yj_cz"].append(int(i))
    st_tree = shapely.STRtree(geoms[p["st"]])
    cand = np.flatnonzero(base & cult & p["yj"])
    touching = st_tree.query(geoms[cand], predicate="touches")
    cand = np.unique(cand[touching[0]])
    for i in rng.choice(cand, min(2, len(cand)), replace=False):
        p["st"][i] = True
        overlaps["yj_st"].append(int(i))
    cand = np.flatnonzero(base & p["st"] & (p["code_prev"] == "0301") & ~np.isin(np.arange(n), overlaps["yj_st"]))
    # the STBHHX woods nearest a town seat become its 特别用途区 (03)
    cc = shapely.centroid(geoms[cand])
    seat_dist = np.stack([np.hypot(shapely.get_x(cc) - s[0], shapely.get_y(cc) - s[1]) for s in t["seat"]])
    dist, near_town = seat_dist.min(0), seat_dist.argmin(0)
    cz03 = np.zeros(n, bool)
    for j in np.argsort(dist)[:2]:
        i = cand[j]
        cz03[i] = True
        p["cz_town"][i] = near_town[j]
        overlaps["st_cz"].append(int(i))

    # BSM order of the patches so far (township, village, north→south, west→east); the pieces of the sites that
    # cross several patches (carved next) are numbered after them, so older BSMs stay as they were
    c = shapely.centroid(p["geoms"])
    order = np.lexsort((np.round(shapely.get_x(c)), -np.round(shapely.get_y(c) / 200), p["village"]))
    n_old = n
    busy = set(used) | {i for v in overlaps.values() for i in v}
    splits = _plant_split_sites(t, z, p, placer, rng_x, busy)
    p = _carve_split_sites(p, splits)
    n = len(p["geoms"])
    yj_extra = np.concatenate([yj_extra, np.zeros(n - n_old, bool)])
    cz03 = np.concatenate([cz03, np.zeros(n - n_old, bool)])
    order = np.concatenate([order, np.arange(n_old, n)])
    geoms = p["geoms"]

    # attributes ------------------------------------------------------------------------------------
    areas = _area(geoms)
    rng_attr = {
        "gdpdjb": _pick(rng, [("1", 85), ("2", 12), ("3", 3)], n_old),
        "gdlx": _pick(rng, [("PD", 80), ("TT", 20)], n_old),
    }
    kc_table = {"1": [0.0, 0.0, 0.012, 0.019, 0.025], "2": [0.036, 0.046, 0.058], "3": [0.078, 0.096, 0.115]}
    rng_attr["kcxs"] = np.array([kc_table[g][rng.integers(len(kc_table[g]))] for g in rng_attr["gdpdjb"]])
    for k in list(p):
        if isinstance(p[k], np.ndarray) and len(p[k]) == n:
            p[k] = p[k][order]
    yj_extra, cz03, areas = yj_extra[order], cz03[order], areas[order]
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    for key in overlaps:
        overlaps[key] = [int(rank[i]) for i in overlaps[key]]
    for s in sites:
        if "patch_idx" in s:
            s["patch_idx"] = int(rank[s["patch_idx"]])
        s["parent_idx"] = int(rank[s["parent_idx"]])
    for s in supply + zone_cases:
        s["parent_idx"] = int(rank[s["parent_idx"]])
    kcxs_forced = _split_attributes(splits, rank, rng_attr, n_old, n)
    geoms = p["geoms"]
    bsm = np.array([f"{REGION_CODE}2110{i + 1:08d}" for i in range(n)], dtype=object)
    dltb_prev = _survey_frame(p, admin, p["code_prev"], YEAR - 1, areas, rng_attr, bsm)
    dltb = _survey_frame(p, admin, p["code_cur"], YEAR, areas, rng_attr, bsm)
    timings["attributes"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    layers = {"dltb": dltb, "dltb_prev": dltb_prev}
    layers["xzq"] = _xzq_layer(p, admin)
    layers["yjjbnt"] = _yjjbnt_layer(p, admin, dltb_prev, yj_extra)
    layers["stbhhx"] = _stbhhx_layer(p, admin)
    layers["czkfbj"] = _czkfbj_layer(p, admin, cz03)
    self_overlap = _plant_czkfbj_self_overlap(layers, p, admin, overlaps, rng_x)
    layers["ghfq"] = _ghfq_layer(p, admin, cz03)
    timings["derived_layers"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ctx = dict(p=p, admin=admin, sites=sites, supply=supply, zone_cases=zone_cases, rng=rng, t=t,
               overlaps=overlaps, splits=splits, rng_x=rng_x, kcxs_forced=kcxs_forced)
    layers["approvals"], layers["parcels"] = _approvals_and_parcels(ctx, layers, scale)
    layers["monitoring"] = _monitoring(ctx, layers, extra_monitoring if extra_monitoring is not None
                                       else (0 if scale <= 1.5 else int(round(40 * scale))))
    layers["cameras"] = _cameras(ctx, layers, scale)
    defects = _plant_defects(ctx, layers)
    defects["czkfbj"] = {"self_overlap": [list(self_overlap["ids"])]}
    timings["other_layers"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from .truth import compute_truth
    planted = compute_truth(layers, sites, supply, zone_cases, overlaps, defects, seed=seed, scale=scale,
                            splits=splits, self_overlap=self_overlap) if truth else {}
    timings["truth"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    return County(seed=seed, scale=scale, layers=layers, planted=planted, timings=timings)


# ---------------------------------------------------------------------------------------------------------
# Sites crossing several current patches (data/split.py)
# ---------------------------------------------------------------------------------------------------------

def _plant_split_sites(t: dict, z: dict, p: dict, placer: _Placer, rng: np.random.Generator,
                       busy: set[int]) -> list[dict]:
    """Place every SPLIT_SITES family (parents chosen among patches no other planted case uses)."""
    sp = split.SplitPlacer(t, z, p["geoms"][:len(t["geoms"])], placer, rng, busy,
                           candidates=lambda kind: _candidates(t, z, kind))
    out = []
    for spec in split.SPLIT_SITES:
        s = {k: (list(v) if isinstance(v, list) else v) for k, v in spec.items()}
        if s["layout"] == "halves":
            where = sp.place_halves(s["parent"])
        elif s["layout"] == "three":
            try:
                where = sp.place_across_road(s["parent"])
            except RuntimeError:  # small test counties may have no field road between two free fields
                s["layout"], s["codes"] = "two", (s["codes"][0], s["codes"][2])
                where = sp.place_pair(s["parent"], "patch")
        else:
            # approvals (and the parcels supplied on them) reach 3 m beyond the site: keep them off other zones
            where = sp.place_pair(s["parent"], s["cross"], margin=6.0 if s.get("approval") else split.MARGIN)
        s.update(where)
        out.append(s)
    return out


def _carve_split_sites(p: dict, splits: list[dict]) -> dict:
    """Carve the pieces of every split site: parents keep what is left, pieces are appended as new patches that
    inherit their parent's village, zones and 2023 land use and take the site's new code in 2024."""
    geoms = p["geoms"].copy()
    n = len(geoms)
    tree = shapely.STRtree(geoms)
    pieces_all: list[tuple[int, object, str, str]] = []  # parent, geometry, new code, change key
    for s in splits:
        pieces, rests = split.carve(s, geoms, tree)
        s["rest_idx"] = []
        for parent, parts in rests.items():
            geoms[parent] = parts[0]
            for extra in parts[1:]:  # the far side of a road the site crosses: a patch of its own, unchanged
                s["rest_idx"].append(n + len(pieces_all))
                pieces_all.append((parent, extra, str(p["code_cur"][parent]), ""))
        s["piece_idx"], s["piece_parent_before"] = [], []
        s["rest_parent_before"] = [int(x[0]) for x in pieces_all[len(pieces_all) - len(s["rest_idx"]):]]
        for k, ((parent, g), code) in enumerate(zip(pieces, s["codes"])):
            s["piece_parent_before"].append(int(parent))
            change = s["halves"][k]["key"] if s["layout"] == "halves" else s["key"]
            s["piece_idx"].append(n + len(pieces_all))
            pieces_all.append((parent, g, code, change))
        s["parents_before"] = list(s["parents"])
    parent = np.array([x[0] for x in pieces_all], int)
    out = dict(p)
    for k, v in p.items():
        if isinstance(v, np.ndarray) and len(v) == n and k not in ("geoms", "code_cur", "site"):
            out[k] = np.concatenate([v, v[parent]])
    out["geoms"] = np.concatenate([geoms, np.array([x[1] for x in pieces_all], dtype=object)])
    out["code_cur"] = np.concatenate([p["code_cur"], np.array([x[2] for x in pieces_all], dtype=object)])
    out["site"] = np.concatenate([p["site"], np.array([x[3] for x in pieces_all], dtype=object)])
    return out


def _split_attributes(splits: list[dict], rank: np.ndarray, rng_attr: dict, n_old: int, n: int) -> set[int]:
    """Renumber the split sites' patch indices to BSM order; pieces take their parent's 耕地 attributes (坡度级别,
    耕地类型, 田坎系数), and a 耕地 parent without 田坎 gets some, so that 耕地 net of 田坎 is never the gross area."""
    kc = {"2": 0.046}
    parent_pos = np.arange(n)
    for s in splits:
        s["parents"] = [int(rank[i]) for i in s["parents_before"]]
        s["piece_idx"] = [int(rank[i]) for i in s["piece_idx"]]
        s["piece_parent"] = [int(rank[pp]) for pp in s["piece_parent_before"]]
        s["rest_idx"] = [int(rank[i]) for i in s["rest_idx"]]
        s["rest_parent"] = [int(rank[pp]) for pp in s["rest_parent_before"]]
    for key in ("gdpdjb", "gdlx", "kcxs"):
        rng_attr[key] = np.concatenate([rng_attr[key], np.zeros(n - n_old, dtype=rng_attr[key].dtype)])
    forced = set()
    for s in splits:
        for par in s["parents"]:
            if rng_attr["kcxs"][par] == 0:
                rng_attr["gdpdjb"][par], rng_attr["kcxs"][par] = "2", kc["2"]
                forced.add(par)
        for piece, par in zip(s["piece_idx"] + s["rest_idx"], s["piece_parent"] + s["rest_parent"]):
            parent_pos[piece] = par
    for key in ("gdpdjb", "gdlx", "kcxs"):
        rng_attr[key][n_old:] = rng_attr[key][parent_pos[n_old:]]
    return forced


def _plant_czkfbj_self_overlap(layers: dict, p: dict, admin: dict, overlaps: dict, rng) -> dict:
    """A second CZKFBJ polygon drawn over one of the YJJBNT × CZKFBJ overlap patches and the field next to it
    (outside every control line): two polygons of one control-line layer overlapping by exactly that patch, with
    YJJBNT under the overlap. Appended to the czkfbj layer; returns its truth."""
    cz = layers["czkfbj"]
    dltb_geoms = p["geoms"]
    i = int(overlaps["yj_cz"][0])
    patch = dltb_geoms[i]
    codes = p["code_cur"].astype(str)
    tree = shapely.STRtree(dltb_geoms)
    near = tree.query(patch, predicate="touches")
    ok = [j for j in near.tolist() if p["cz"][j] == 0 and not p["yj"][j] and not p["st"][j]
          and p["strip_kind"][j] < 0 and codes[j] in CULTIVATED and p["site"][j] == ""
          and shapely.length(shapely.intersection(shapely.boundary(patch), shapely.boundary(dltb_geoms[j]))) > 20]
    parts = [patch] + ([dltb_geoms[ok[int(rng.integers(len(ok)))]]] if ok else [])
    geom = parts[0] if len(parts) == 1 else shapely.coverage_union_all(np.array(parts, dtype=object))
    host = shapely.STRtree(cz.geometry.values).query(shapely.point_on_surface(patch), predicate="within")
    host_bsm = str(cz["BSM"].iloc[int(host[0])])
    town = int(p["township"][i])
    row = {"BSM": f"{REGION_CODE}3310{len(cz) + 1:08d}", "XZQDM": admin["tcodes"][town], "GHFQDM": "01",
           "GHFQMC": CZKFBJ_KINDS[1][1], "MJ": round(float(_area([geom])[0]), 2)}
    layers["czkfbj"] = gpd.GeoDataFrame(pd.concat([cz, gpd.GeoDataFrame([row], geometry=[geom], crs=CRS)],
                                                  ignore_index=True), geometry="geometry", crs=CRS)
    return {"ids": sorted([host_bsm, row["BSM"]]), "dltb_patch": i, "new_bsm": row["BSM"], "host_bsm": host_bsm}


# ---------------------------------------------------------------------------------------------------------
# Derived layers
# ---------------------------------------------------------------------------------------------------------

def _xzq_layer(p: dict, admin: dict) -> gpd.GeoDataFrame:
    vid, vgeom = sh.coverage_dissolve(p["geoms"], p["village"])
    v_town = np.array([admin["vcodes"][v][:9] for v in vid])
    tcodes = np.array(admin["tcodes"])
    t_geoms = []
    for tc in tcodes:
        t_geoms.append(shapely.coverage_union_all(vgeom[v_town == tc]))
    county = shapely.coverage_union_all(np.array(t_geoms, dtype=object))
    rows = [(REGION_CODE, REGION_NAME, "county", county)]
    rows += [(tc, admin["tnames"][i], "township", g) for i, (tc, g) in enumerate(zip(tcodes, t_geoms))]
    rows += [(admin["vcodes"][v], admin["vnames"][v], "village", g) for v, g in zip(vid, vgeom)]
    geom = np.array([r[3] for r in rows], dtype=object)
    return gpd.GeoDataFrame({
        "BSM": [f"{REGION_CODE}1000{i + 1:08d}" for i in range(len(rows))],
        "XZQDM": [r[0] for r in rows], "XZQMC": [r[1] for r in rows], "XZQJB": [r[2] for r in rows],
    }, geometry=geom, crs=CRS)


def _features(geoms: np.ndarray, keys: np.ndarray, explode: bool = True):
    """Coverage-dissolve by key, then (optionally) one feature per polygon part; returns (geoms, key)."""
    uniq, out = sh.coverage_dissolve(geoms, keys)
    if not explode:
        return out, uniq
    parts, idx = shapely.get_parts(out, return_index=True)
    return np.asarray(parts), uniq[idx]


def _yjjbnt_layer(p, admin, dltb_prev, yj_extra):
    sel = np.flatnonzero(p["yj"])
    c = shapely.centroid(p["geoms"][sel])
    block = (p["village"][sel] * 1_000_000 + (np.floor(shapely.get_x(c) / 1200) % 1000) * 1000
             + np.floor(shapely.get_y(c) / 1200) % 1000).astype(np.int64)
    geoms, keys = _features(p["geoms"][sel], block)
    vill = (keys // 1_000_000).astype(int)
    extra = np.flatnonzero(yj_extra)
    geoms = np.concatenate([geoms, p["geoms"][extra]])
    vill = np.concatenate([vill, p["village"][extra]])
    # dominant 耕地 code by area, from the previous-year survey the line was drawn on
    tree = shapely.STRtree(geoms)
    cult_idx = np.flatnonzero(np.isin(dltb_prev["DLBM"].to_numpy().astype(str), list(CULTIVATED)))
    pairs = tree.query(shapely.point_on_surface(dltb_prev.geometry.values[cult_idx]), predicate="within")
    acc: dict[int, dict[str, float]] = {}
    codes = dltb_prev["DLBM"].to_numpy()[cult_idx]
    ar = dltb_prev["TBMJ"].to_numpy()[cult_idx]
    for q, f in zip(pairs[0], pairs[1]):
        acc.setdefault(int(f), {}).setdefault(codes[q], 0.0)
        acc[int(f)][codes[q]] += ar[q]
    dlbm = [max(acc.get(i, {"0103": 1}).items(), key=lambda kv: (kv[1], kv[0]))[0] for i in range(len(geoms))]
    vcodes = np.array(admin["vcodes"], dtype=object)[vill]
    counter: dict[str, int] = {}
    tbbh = []
    for v in vcodes:
        counter[v] = counter.get(v, 0) + 1
        tbbh.append(f"{v}{counter[v]:04d}")
    areas = _area(geoms)
    gdf = gpd.GeoDataFrame({
        "BSM": [f"{REGION_CODE}3110{i + 1:08d}" for i in range(len(geoms))],
        "XZQDM": [v[:9] for v in vcodes],
        "ZLDWDM": [v + "0000000" for v in vcodes],
        "YJJBNTTBBH": tbbh,
        "DLBM": dlbm,
        "YJJBNTMJ": np.round(areas, 2),
    }, geometry=geoms, crs=CRS)
    return gdf


def _stbhhx_layer(p, admin):
    sel = np.flatnonzero(p["st"])
    geoms, keys = _features(p["geoms"][sel], p["township"][sel])
    areas = _area(geoms)
    return gpd.GeoDataFrame({
        "BSM": [f"{REGION_CODE}3210{i + 1:08d}" for i in range(len(geoms))],
        "XZQDM": [admin["tcodes"][k] for k in keys],
        "HXLX": ["水源涵养"] * len(geoms),
        "MJ": np.round(areas, 2),
    }, geometry=geoms, crs=CRS)


def _czkfbj_layer(p, admin, cz03):
    kind = p["cz"].copy()
    sel = np.flatnonzero(kind > 0)
    g1, k1 = _features(p["geoms"][sel], p["cz_town"][sel] * 10 + kind[sel])
    extra = np.flatnonzero(cz03)
    g3, k3 = _features(p["geoms"][extra], p["cz_town"][extra] * 10 + 3)
    geoms = np.concatenate([g1, g3])
    keys = np.concatenate([k1, k3])
    town, kk = keys // 10, keys % 10
    areas = _area(geoms)
    return gpd.GeoDataFrame({
        "BSM": [f"{REGION_CODE}3310{i + 1:08d}" for i in range(len(geoms))],
        "XZQDM": [admin["tcodes"][k] for k in town],
        "GHFQDM": [CZKFBJ_KINDS[k][0] for k in kk],
        "GHFQMC": [CZKFBJ_KINDS[k][1] for k in kk],
        "MJ": np.round(areas, 2),
    }, geometry=geoms, crs=CRS)


def _ghfq_layer(p, admin, cz03):
    n = len(p["geoms"])
    code = p["code_prev"].astype(str)
    zone = np.full(n, "0502", dtype=object)
    zone[np.isin(code, ["0301", "0201"])] = "0503"
    zone[p["riparian"] | (code == "1101")] = "02"
    zone[p["settlement"] & (p["town_id"] < 0)] = "0501"
    zone[p["mine"]] = "07"
    zone[p["yj"]] = "03"
    zone[p["cz"] == 2] = "0402"
    zone[p["cz"] == 1] = "0401"
    zone[cz03] = "0403"
    zone[p["st"] & ~cz03] = "01"
    zone_ids = np.unique(zone.astype(str), return_inverse=True)
    key = p["township"] * 100 + zone_ids[1]
    geoms, keys = _features(p["geoms"], key)
    zcodes = zone_ids[0][keys % 100]
    areas = _area(geoms)
    return gpd.GeoDataFrame({
        "BSM": [f"{REGION_CODE}3410{i + 1:08d}" for i in range(len(geoms))],
        "XZQDM": [admin["tcodes"][k // 100] for k in keys],
        "GHFQDM": zcodes,
        "GHFQMC": [GHFQ_CODES[z] for z in zcodes],
        "MJ": np.round(areas, 2),
    }, geometry=geoms, crs=CRS)


# ---------------------------------------------------------------------------------------------------------
# Approvals, parcels, monitoring, cameras, defects
# ---------------------------------------------------------------------------------------------------------

class _Numbers:
    """Running document numbers per (prefix, year)."""

    def __init__(self, rng):
        self.rng = rng
        self.n: dict[tuple[str, int], int] = {}

    def pzwh(self, kind: str, year: int) -> str:
        fmt = {"农用地转用": "冀政转征函〔{y}〕{n}号", "土地征收": "冀政征函〔{y}〕{n}号",
               "供地": "样自然资供〔{y}〕{n}号", "临时用地": "样自然资临用〔{y}〕{n}号",
               "设施农用地备案": "样设农备〔{y}〕{n}号"}[kind]
        k = (kind, year)
        self.n[k] = self.n.get(k, int(self.rng.integers(3, 40))) + int(self.rng.integers(1, 9))
        return fmt.format(y=year, n=self.n[k])


def _rand_date(rng, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=int(rng.integers(0, (end - start).days + 1)))


def _approvals_and_parcels(ctx, layers, scale):
    rng, p, admin = ctx["rng"], ctx["p"], ctx["admin"]
    dltb = layers["dltb"]
    nums = _Numbers(rng)
    approvals: list[dict] = []
    parcels: list[dict] = []
    zd_seq: dict[str, int] = {}

    def zddm(vcode: str, state: bool) -> str:
        t_idx = int(vcode[6:9]) - 99
        key = vcode[:12]
        zd_seq[key] = zd_seq.get(key, 0) + 1
        return f"{REGION_CODE}{t_idx:03d}{int(vcode[9:12]):03d}{'GB' if state else 'JC'}{zd_seq[key]:05d}"

    def add_approval(kind, date, geom, vcode, dzjgh=None):
        pzwh = nums.pzwh(kind, date.year)
        approvals.append(dict(PZWH=pzwh, PZLX=kind, PZRQ=date, geometry=geom, XZQDM=vcode[:9],
                              DZJGH=dzjgh))
        return pzwh

    def add_parcel(geom, vcode, tdyt, gdrq, jgrq, pzwh, state=True):
        code = zddm(vcode, state)
        parcels.append(dict(ZDDM=code, TDYT=tdyt, GDRQ=gdrq, JGRQ=jgrq, PZWH=pzwh, XZQDM=vcode[:9],
                            geometry=geom))
        return code

    vcodes = np.array(admin["vcodes"], dtype=object)
    # background: town land approved and supplied long ago, built
    town_built = np.flatnonzero((p["cz"] == 1) & np.isin(dltb["DLBM"].to_numpy().astype(str),
                                                          ["0701", "05H1", "0601", "08H2"])
                                & (p["site"] == "") & (p["strip_kind"] < 0))
    used = {s["parent_idx"] for s in ctx["sites"]} | {s["parent_idx"] for s in ctx["supply"]} | \
        {s["parent_idx"] for s in ctx["zone_cases"]}
    town_built = np.array([i for i in town_built if i not in used], int)
    n_bg = min(len(town_built), int(round(160 * scale)))
    chosen = np.sort(rng.choice(town_built, n_bg, replace=False))
    bowtie_targets = set(chosen[rng.choice(len(chosen), 2, replace=False)].tolist()) if len(chosen) > 2 else set()
    bowties = []
    for i in chosen:
        geom = dltb.geometry.values[i]
        vc = vcodes[p["village"][i]]
        dl = str(dltb["DLBM"].iloc[i])
        pzrq = _rand_date(rng, dt.date(2010, 1, 1), dt.date(2021, 6, 30))
        gdrq = pzrq + dt.timedelta(days=int(rng.integers(90, 360)))
        jgrq = gdrq + dt.timedelta(days=int(rng.integers(150, 540)))
        u = rng.random()
        if i in bowtie_targets:
            # a 供地 record whose parcel was digitised as a bow-tie (invalid ring), inside the patch
            line = shapely.maximum_inscribed_circle(geom, 0.5)
            c = shapely.get_point(line, 0)
            r = float(shapely.length(line))
            side = max(r * 1.2, 4.0)
            pzwh = add_approval("供地", pzrq, geom, vc, dzjgh=f"{REGION_CODE}{pzrq.year}B{len(approvals):05d}")
            code = add_parcel(sh.bowtie(c.x, c.y, side, side * 0.8), vc, dl, gdrq, jgrq, pzwh)
            bowties.append(code)
            continue
        if u < 0.2:
            pzwh = add_approval("供地", pzrq, geom, vc, dzjgh=f"{REGION_CODE}{pzrq.year}B{len(approvals):05d}")
        else:
            pzwh = add_approval("农用地转用" if u < 0.8 else "土地征收", pzrq, geom, vc)
        add_parcel(geom, vc, dl, gdrq, jgrq, pzwh)

    # planted sites with approvals
    for s in ctx["sites"]:
        if not s["approval"]:
            continue
        kind, cover = s["approval"]
        vc = vcodes[p["village"][s["parent_idx"]]]
        cx, cy = s["centre"]
        if cover == "full":
            geom = shapely.buffer(s["rect"], 3.0, join_style="mitre")
            geom = sh.snap_mm(geom)
        elif cover == "exact":
            geom = s["rect"]
        else:
            geom = sh.rect_part(cx, cy, s["w"], s["h"], s["angle"], 0.0, float(cover), grow=3.0)
        date = _rand_date(rng, dt.date(2024, 1, 10), dt.date(2024, 3, 31))
        dz = f"{REGION_CODE}{date.year}B{len(approvals):05d}" if kind == "供地" else None
        pzwh = add_approval(kind, date, geom, vc, dzjgh=dz)
        s["PZWH"] = pzwh
        if kind in ("农用地转用", "土地征收", "供地"):
            gdrq = date + dt.timedelta(days=int(rng.integers(20, 60)))
            s["ZDDM"] = add_parcel(geom, vc, s["new"] or "0601", gdrq, None, pzwh)
    # 批而未供 / 闲置 cases
    for s in ctx["supply"]:
        vc = vcodes[p["village"][s["parent_idx"]]]
        cx, cy = s["centre"]
        geom = s["rect"]
        s["PZWH"] = add_approval(s["pzlx"], s["pzrq"], geom, vc)
        if s["gdrq"] is not None:
            pgeom = geom if s["share"] >= 1 else sh.rect_part(cx, cy, s["w"], s["h"], s["angle"], 0.0, s["share"])
            jg = None
            s["ZDDM"] = add_parcel(pgeom, vc, "0701" if s["key"] != "Z3" else "05H1", s["gdrq"], jg, s["PZWH"])
    # parcels whose use conflicts with the planning zone (existing village land, collective)
    for s in ctx["zone_cases"]:
        i = s["parent_idx"]
        vc = vcodes[p["village"][i]]
        date = _rand_date(rng, dt.date(2016, 1, 1), dt.date(2019, 12, 31))
        geom = dltb.geometry.values[i]
        pzwh = add_approval("供地", date, geom, vc, dzjgh=f"{REGION_CODE}{date.year}B{len(approvals):05d}")
        s["PZWH"] = pzwh
        s["ZDDM"] = add_parcel(geom, vc, s["tdyt"], date + dt.timedelta(days=120), date + dt.timedelta(days=400),
                               pzwh, state=False)
    # sites crossing several patches (their own generator, after every older case)
    rng_x = ctx["rng_x"]
    nums.rng = rng_x
    for change in _split_changes(ctx):
        if not change["approval"]:
            continue
        kind, cover = change["approval"]
        vc = vcodes[change["village"]]
        geom = split.approval_geometry(change, cover)
        date = _rand_date(rng_x, dt.date(2024, 1, 10), dt.date(2024, 3, 31))
        change["PZWH"] = pzwh = add_approval(kind, date, geom, vc)
        if kind in ("农用地转用", "土地征收", "供地"):
            gdrq = date + dt.timedelta(days=int(rng_x.integers(20, 60)))
            change["ZDDM"] = add_parcel(geom, vc, change["codes"][0], gdrq, None, pzwh)
    ctx["bowties"] = bowties

    a = gpd.GeoDataFrame(approvals, geometry="geometry", crs=CRS)
    a["PZMJ"] = np.round(_area(a.geometry.values), 2)
    a["PZRQ"] = pd.to_datetime(a["PZRQ"]).dt.date
    a = a[["PZWH", "PZLX", "PZRQ", "PZMJ", "DZJGH", "XZQDM", "geometry"]]
    z = gpd.GeoDataFrame(parcels, geometry="geometry", crs=CRS)
    z["MJ"] = np.round(_area(shapely.make_valid(z.geometry.values)), 2)
    z = z[["ZDDM", "TDYT", "GDRQ", "JGRQ", "PZWH", "XZQDM", "MJ", "geometry"]]
    return a, z


def _split_changes(ctx) -> list[dict]:
    """The ground changes of the split sites (one per site, two per ``halves`` site), built once per county:
    key, rect, pieces (geometry, in layout order), piece_idx, ground (their union), codes, approval, mon, verdict,
    village (index of the village holding the largest piece)."""
    if "split_changes" in ctx:
        return ctx["split_changes"]
    p = ctx["p"]
    out = []
    for s in ctx["splits"]:
        if s["layout"] == "halves":
            groups = [([k], h) for k, h in enumerate(s["halves"])]
        else:
            groups = [(list(range(len(s["piece_idx"]))), s)]
        for ks, spec in groups:
            idx = [s["piece_idx"][k] for k in ks]
            pieces = [p["geoms"][i] for i in idx]
            big = idx[int(np.argmax(shapely.area(np.array(pieces, dtype=object))))]
            out.append({"key": spec["key"], "site": s["key"], "kind": s["kind"], "layout": s["layout"],
                        "rect": s["rect"], "pieces": pieces, "piece_idx": idx,
                        "ground": pieces[0] if len(pieces) == 1 else shapely.union_all(pieces),
                        "codes": [s["codes"][k] for k in ks], "approval": spec["approval"], "mon": spec["mon"],
                        "verdict": spec["verdict"], "village": int(p["village"][big]), "parents": s["parents"],
                        "w": float(s["w"]),
                        "cross": s.get("cross")})
    for s in ctx["splits"]:
        s["changes"] = [c for c in out if c["site"] == s["key"]]
    ctx["split_changes"] = out
    return out


def _mon_geometry(s: dict, variant: str, rng) -> object:
    rect = s["rect"]
    if variant == "exact":
        return rect
    inset = sh.inset_polygon(rect, 1.0, rng)
    if variant == "inset":
        return inset
    if variant == "moved":
        return sh.moved(inset, dx=3.5, dy=-2.5)
    if variant == "moved_small":
        return sh.moved(sh.inset_polygon(rect, 2.5, rng), dx=1.5, dy=1.0)
    if variant == "turned":
        return sh.moved(inset, rotate_deg=3.0, scale=0.96)
    raise ValueError(variant)


def _monitoring(ctx, layers, extra: int):
    rng, p, admin = ctx["rng"], ctx["p"], ctx["admin"]
    rows = []
    seq: dict[str, int] = {}

    def jcbh(src: str) -> str:
        seq[src] = seq.get(src, 0) + 1
        stem, source, rnd, _, _ = ROUNDS[src]
        if source == "satellite":
            return f"{REGION_CODE}{rnd.replace('-', '')}{seq[src]:04d}"
        prefix = {"camera": "SXT", "drone": "WRJ"}[source]
        return f"{REGION_CODE}{prefix}{YEAR}{seq[src]:04d}"

    def row(src, geom, xzqdm, tblx, site, variant, file=None, hsx=None):
        stem, source, rnd, qsx_d, hsx_d = ROUNDS[src]
        file = file or stem
        code = jcbh(src)
        qsx, hsx_c = canonical_date(qsx_d, file), canonical_date(hsx_d, file)
        rows.append(dict(JCBH=code, XZQDM=xzqdm, QSX=qsx, HSX=hsx or hsx_c, TBLX=tblx, SOURCE=source, ROUND=rnd,
                         geometry=geom, _src=src, _site=site, _variant=variant, _file=file))
        return code

    vcodes = np.array(admin["vcodes"], dtype=object)
    for s in ctx["sites"]:
        s["JCBH"] = []
        for src, variant in s["mon"]:
            geom = _mon_geometry(s, variant, rng)
            s["JCBH"].append(row(src, geom, vcodes[p["village"][s["parent_idx"]]][:9], TBLX.get(s["new"], "推填土"),
                                 s["key"], variant))
    rng_x = ctx["rng_x"]
    for change in _split_changes(ctx):
        change["JCBH"] = []
        for m in change["mon"]:
            geom = split.mon_geometry(change, m["variant"], rng_x)
            file = MIXED_FILE if m["file"] == "pc" else (ROUNDS[m["file"]][0] if m["file"] else None)
            change["JCBH"].append(row(m["src"], geom, vcodes[change["village"]][:9],
                                      TBLX.get(change["codes"][0], "推填土"), change["key"], m["variant"], file,
                                      m["hsx"]))
    if extra:  # benchmark mode: many more (pseudo-change) patches on random farmland
        dltb = layers["dltb"]
        cand = np.flatnonzero(np.isin(dltb["DLBM"].to_numpy().astype(str), list(CULTIVATED)) & (p["site"] == ""))
        pick = rng.choice(cand, min(extra, len(cand)), replace=False)
        pts = shapely.point_on_surface(dltb.geometry.values[pick])
        for k, (i, pt) in enumerate(zip(pick, pts)):
            src = ("sat1", "sat2", "camera", "drone")[k % 4]
            geom = shapely.intersection(shapely.buffer(pt, float(rng.uniform(8, 25)), quad_segs=3),
                                        dltb.geometry.values[i])
            row(src, sh.snap_mm(geom), vcodes[p["village"][i]][:9], "推填土", "", "background")
    m = gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS)
    m["MJ"] = np.round(_area(m.geometry.values), 2)
    return m[["JCBH", "XZQDM", "QSX", "HSX", "TBLX", "MJ", "SOURCE", "ROUND", "_src", "_site", "_variant", "_file",
              "geometry"]]


def _cameras(ctx, layers, scale):
    rng = ctx["rng"]
    county = layers["xzq"].geometry.values[0]
    rows = []
    targets = [(s["key"], s["centre"]) for s in ctx["sites"] if any(src == "camera" for src, _ in s["mon"])]
    n_cam = int(rng.integers(14, 17)) if scale <= 1.5 else int(round(15 * scale))
    xmin, ymin, xmax, ymax = county.bounds
    k = 0
    while len(rows) < n_cam:
        if k < len(targets):
            key, (tx, ty) = targets[k]
            ang = rng.uniform(0, 2 * math.pi)
            dist = rng.uniform(600, 1500)
            x, y = tx + dist * math.cos(ang), ty + dist * math.sin(ang)
            if not county.contains(shapely.Point(x, y)):
                continue
            fwj = (math.degrees(math.atan2(tx - x, ty - y)) + 360) % 360  # grid azimuth from north, clockwise
            ksjl = float(np.clip(round(dist + rng.uniform(800, 2500), -2), 2000, 5000))
            watch = key
        else:
            x, y = rng.uniform(xmin, xmax), rng.uniform(ymin, ymax)
            if not county.contains(shapely.Point(x, y)):
                continue
            fwj = float(rng.uniform(0, 360))
            ksjl = float(round(rng.uniform(2000, 5000), -2))
            watch = ""
        k += 1
        rows.append(dict(SXTBH=f"SXT{REGION_CODE}{len(rows) + 1:03d}", GD=float(round(rng.uniform(30, 60), 1)),
                         KSJL=ksjl, FWJ=round(float(fwj), 1), SPJ=float(rng.choice([45.0, 60.0, 75.0, 90.0])),
                         geometry=sh.snap_mm(shapely.Point(x, y)), _watch=watch))
    # one more tower watching each camera-seen change of the split sites (their own generator)
    rng_x = ctx["rng_x"]
    for change in _split_changes(ctx):
        if not any(m["src"] == "camera" for m in change["mon"]):
            continue
        c = shapely.centroid(change["ground"])
        for _ in range(1000):
            ang = rng_x.uniform(0, 2 * math.pi)
            dist = rng_x.uniform(600, 1500)
            x, y = c.x + dist * math.cos(ang), c.y + dist * math.sin(ang)
            if county.contains(shapely.Point(x, y)):
                break
        fwj = (math.degrees(math.atan2(c.x - x, c.y - y)) + 360) % 360
        ksjl = float(np.clip(round(dist + rng_x.uniform(800, 2500), -2), 2000, 5000))
        rows.append(dict(SXTBH=f"SXT{REGION_CODE}{len(rows) + 1:03d}", GD=float(round(rng_x.uniform(30, 60), 1)),
                         KSJL=ksjl, FWJ=round(float(fwj), 1), SPJ=float(rng_x.choice([45.0, 60.0, 75.0, 90.0])),
                         geometry=sh.snap_mm(shapely.Point(x, y)), _watch=change["key"]))
    cams = gpd.GeoDataFrame(rows, geometry="geometry", crs=CRS)
    villages = layers["xzq"][layers["xzq"]["XZQJB"] == "village"]
    hit = shapely.STRtree(villages.geometry.values).query(cams.geometry.values, predicate="within")
    xz = np.full(len(cams), REGION_CODE, dtype=object)
    xz[hit[0]] = villages["XZQDM"].to_numpy()[hit[1]]
    cams["XZQDM"] = xz
    return cams[["SXTBH", "XZQDM", "GD", "KSJL", "FWJ", "SPJ", "_watch", "geometry"]]


def _plant_defects(ctx, layers) -> dict:
    """入库质检 defects in the clean sample (listed in planted.yaml)."""
    rng, p = ctx["rng"], ctx["p"]
    dltb, prev = layers["dltb"], layers["dltb_prev"]
    n = len(dltb)
    codes = dltb["DLBM"].to_numpy().astype(str)
    busy = set()
    for s in ctx["sites"]:
        busy.add(s["parent_idx"])
        if "patch_idx" in s:
            busy.add(s["patch_idx"])
    busy |= {s["parent_idx"] for s in ctx["supply"]} | {s["parent_idx"] for s in ctx["zone_cases"]}
    for v in ctx["overlaps"].values():
        busy |= set(v)
    free = np.array([i not in busy for i in range(n)]) & (p["strip_kind"] < 0)
    had_kcxs = dltb["KCXS"].to_numpy() > 0
    had_kcxs[list(ctx["kcxs_forced"])] = False  # (as drawn: split-site parents were given 田坎 afterwards)
    farm = np.flatnonzero(free & np.isin(codes, list(CULTIVATED)) & had_kcxs)
    pick = rng.choice(farm, 7, replace=False)
    taken = {i for s in ctx["splits"] for i in s["parents"] + s["piece_idx"] + s["rest_idx"]}
    if taken & set(pick.tolist()):  # rare (small counties): draw those again, away from the split sites
        spare = [i for i in farm.tolist() if i not in taken and i not in set(pick.tolist())]
        pick = np.array([i if i not in taken else spare.pop(int(ctx["rng_x"].integers(len(spare))))
                         for i in pick.tolist()])
    area_bad, kcmj_bad, dup = pick[:3], pick[3:6], int(pick[6])
    for i, f in zip(area_bad, (1.18, 0.85, 1.25)):
        tbmj = round(float(dltb.at[i, "TBMJ"]) * f, 2)
        kcmj = round(tbmj * float(dltb.at[i, "KCXS"]), 2)
        dltb.loc[i, ["TBMJ", "KCMJ", "TBDLMJ"]] = [tbmj, kcmj, round(tbmj - kcmj, 2)]
    for i in kcmj_bad:
        tbmj = float(dltb.at[i, "TBMJ"])
        kcmj = round(tbmj * float(dltb.at[i, "KCXS"]) * 2.0 + 1.0, 2)
        dltb.loc[i, ["KCMJ", "TBDLMJ"]] = [kcmj, round(tbmj - kcmj, 2)]
    outside_lines = free & ~p["st"] & ~p["yj"] & (p["cz"] == 0)
    ponds = np.flatnonzero(outside_lines & (codes == "1104"))
    if not len(ponds):  # tiny test counties: any other non-built, non-耕地 patch
        ponds = np.flatnonzero(outside_lines & ~np.isin(codes, list(CULTIVATED | CONSTRUCTION_SANDIAO)))
    unknown = int(rng.choice(ponds))
    if unknown in taken:  # pragma: no cover - ponds are never split-site parents
        raise RuntimeError("the unknown-code defect fell on a split site")
    for frame in (dltb, prev):
        frame.loc[unknown, ["DLBM", "DLMC"]] = ["1199", "坑塘水面"]
    dup_row = dltb.iloc[[dup]].copy()
    dup_row["BSM"] = f"{REGION_CODE}2110{n + 1:08d}"
    dup_row["TBBH"] = str(int((dltb["ZLDWDM"] == dup_row["ZLDWDM"].iloc[0]).sum()) + 1)
    layers["dltb"] = pd.concat([dltb, dup_row], ignore_index=True)
    bsm = dltb["BSM"].to_numpy()
    return {
        "dltb": {
            "area_mismatch": sorted(bsm[area_bad].tolist()),
            "kcmj_mismatch": sorted(bsm[kcmj_bad].tolist()),
            "unknown_code": [bsm[unknown]],
            "duplicate_geometry": [[bsm[dup], dup_row["BSM"].iloc[0]]],
        },
        "dltb_prev": {"unknown_code": [bsm[unknown]]},
        "parcels": {"invalid_geometry": sorted(ctx["bowties"])},
    }


# ---------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------

GDB_OPTIONS = {"XORIGIN": 0, "YORIGIN": 0, "XYSCALE": 1000, "XYTOLERANCE": 0.001}
FILES = {  # role → (file, layer inside, driver): the formats bureaus actually exchange
    "xzq": ("xzq.gdb", "XZQ", "OpenFileGDB"),
    "dltb": ("dltb_2024.parquet", None, "GeoParquet"),
    "dltb_prev": ("dltb_2023.parquet", None, "GeoParquet"),
    "yjjbnt": ("sanqusanxian.gdb", "YJJBNT", "OpenFileGDB"),
    "stbhhx": ("sanqusanxian.gdb", "STBHHX", "OpenFileGDB"),
    "czkfbj": ("sanqusanxian.gdb", "CZKFBJ", "OpenFileGDB"),
    "ghfq": ("ghfq.gdb", "GHFQ", "OpenFileGDB"),
    "approvals": ("approvals.gpkg", "PZ", "GPKG"),
    "parcels": ("parcels.gpkg", "ZD", "GPKG"),
    "cameras": ("cameras.gpkg", "SXT", "GPKG"),
}


def public(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Drop the generator's private columns (leading underscore)."""
    return gdf[[c for c in gdf.columns if not c.startswith("_")]]


def _write(gdf: gpd.GeoDataFrame, path: Path, layer: str | None, driver: str, **kwargs) -> None:
    gdf = public(gdf)
    if driver == "GeoParquet":
        level = 19 if len(gdf) < 100_000 else 3  # smallest file for the committed sample; fast for benchmarks
        gdf.to_parquet(path, compression="zstd", compression_level=level, write_covering_bbox=False,
                       schema_version="1.1.0")
        return
    opts = dict(GDB_OPTIONS) if driver == "OpenFileGDB" else {}
    if driver == "OpenFileGDB":
        gdf = gdf.set_geometry(shapely.multipolygons(shapely.get_parts(gdf.geometry.values, return_index=True)[0],
                                                      indices=shapely.get_parts(gdf.geometry.values,
                                                                                return_index=True)[1]))
    with warnings.catch_warnings():  # GDAL notes rings of big zone polygons being organised: harmless
        warnings.filterwarnings("ignore", message="organizePolygons", category=RuntimeWarning)
        pyogrio.write_dataframe(gdf, path, layer=layer, driver=driver, layer_options=opts or None, **kwargs)


OWN_EXTRA = ["manifest.yaml", "planted.yaml", "ghfq_codes.yaml", "sanqusanxian.gpkg"]  # + FILES, monitoring


def own_files() -> list[str]:
    """Names this generator writes into its output folder (and removes before writing them again)."""
    return sorted({f for f, _, _ in FILES.values()} | {f"{stem}.gpkg" for stem in DATE_STYLE} | set(OWN_EXTRA))


def monitoring_file_frame(part: gpd.GeoDataFrame, stem: str) -> gpd.GeoDataFrame:
    """The rows of one monitoring file as the file holds them: dates in the file's style; the mixed-round file
    names its round and source columns PC (批次) and LY (来源, Chinese values) instead of ROUND and SOURCE."""
    out = public(part).copy()
    for col in ("QSX", "HSX"):
        out[col] = pd.Series([render_date(v, stem) for v in part[col]], index=part.index, dtype=object)
    if DATE_STYLE[stem] == "excel":
        for col in ("QSX", "HSX"):
            out[col] = out[col].astype("int64")
    if stem == MIXED_FILE:
        out["PC"] = out["ROUND"]
        out["LY"] = out["SOURCE"].map(LY_VALUES)
        out = out.drop(columns=["ROUND", "SOURCE"])
    return out


def write_monitoring(mon: gpd.GeoDataFrame, out: Path) -> list[dict]:
    """Write every monitoring file; returns the manifest entries (source / round set per file where the file
    holds one source and one round; the mixed-round file carries them in its PC / LY columns)."""
    entries = []
    stems = [ROUNDS[k][0] for k in ROUNDS] + [MIXED_FILE]
    for stem in stems:
        part = mon[mon["_file"] == stem]
        if not len(part) and stem == MIXED_FILE:
            continue
        _write(monitoring_file_frame(part, stem), out / f"{stem}.gpkg", "JCTB", "GPKG")
        entry = {"path": f"{stem}.gpkg", "layer": "JCTB"}
        src = next((k for k, r in ROUNDS.items() if r[0] == stem), None)
        if src is not None:
            entry.update(source=ROUNDS[src][1], round=ROUNDS[src][2])
        entries.append(entry)
    return entries


def write_county(county: County, out: Path) -> Path:
    """Write the layers, manifest.yaml, planted.yaml and ghfq_codes.yaml into ``out``; returns the manifest.

    Only this generator's own files are replaced; others in the folder (the sample rasters of
    data/generate_rasters.py) stay. If a ``rasters.yaml`` lies there, its ``rasters:`` section is carried into
    the manifest (for the raster files that exist)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in own_files():
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    L = county.layers
    for role, (name, layer, driver) in FILES.items():
        gdf = L[role]
        if role == "cameras":
            gdf = gdf.to_crs(4490)
        _write(gdf, out / name, layer, driver)
    entries = write_monitoring(L["monitoring"], out)
    manifest = {
        "region": {"code": REGION_CODE, "name": REGION_NAME},
        "crs": "auto",
        "options": {"area_tolerance": 0.001, "area_flag": 0.10},
        "layers": {
            **{role: ({"path": FILES[role][0], "layer": FILES[role][1]} if FILES[role][1] else FILES[role][0])
               for role in ("xzq", "dltb", "dltb_prev", "yjjbnt", "stbhhx", "czkfbj", "ghfq")},
            "approvals": [{"path": FILES["approvals"][0], "layer": FILES["approvals"][1]}],
            "parcels": {"path": FILES["parcels"][0], "layer": FILES["parcels"][1]},
            "monitoring": entries,
            "cameras": {"path": FILES["cameras"][0], "layer": FILES["cameras"][1]},
        },
    }
    rasters_doc = out / "rasters.yaml"
    if rasters_doc.is_file():
        rasters = (yaml.safe_load(rasters_doc.read_text(encoding="utf-8")) or {}).get("rasters") or {}
        rasters = {k: v for k, v in rasters.items()
                   if (out / str(v.get("path", v) if isinstance(v, dict) else v)).exists()}
        if rasters:
            manifest["rasters"] = rasters
    header = (f"# 样例县 sample region — generated by `python -m data.generate` (seed {county.seed}, "
              f"scale {county.scale:g}); do not edit by hand.\n"
              "# 规划分区 codes (GHFQDM) of this region: ghfq_codes.yaml. Planted truth: planted.yaml.\n")
    (out / "manifest.yaml").write_text(header + _dump(manifest), encoding="utf-8")
    (out / "planted.yaml").write_text(
        "# Planted cases of the sample county: the truth other tests check against. Generated; do not edit.\n"
        "# Areas are ellipsoidal m² (layers.area.ellipsoidal_area) of the exact geometry written here.\n"
        + _dump(county.planted), encoding="utf-8")
    (out / "ghfq_codes.yaml").write_text(
        "# 规划分区代码 (GHFQDM) used by this region's ghfq layer — 市县国土空间总体规划 规划分区.\n"
        + _dump({"code_list": "市县国土空间总体规划规划分区", "codes": county.ghfq_codes}), encoding="utf-8")
    return out / "manifest.yaml"


def plain(obj):
    """numpy scalars / tuples → plain Python, so YAML stays readable and portable."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj


def _dump(doc) -> str:
    return yaml.safe_dump(plain(doc), allow_unicode=True, sort_keys=False, width=120, default_flow_style=None)


def write_sample(out: Path = SAMPLE_DIR, seed: int = DEFAULT_SEED, scale: float = 1.0,
                 n_patches: int | None = None) -> Path:
    county = build_county(seed=seed, scale=scale, n_patches=n_patches)
    return write_county(county, out)


from .variants import (  # noqa: E402  (re-exported)
    NEGATIVE_VARIANTS,
    write_messy_variants,
    write_no_prj_6digit_variant,
    write_swapped_axes_variant,
    write_wrong_zone_variant,
)

__all__ = [
    "NEGATIVE_VARIANTS",
    "County",
    "build_county",
    "main",
    "write_county",
    "write_messy_variants",
    "write_no_prj_6digit_variant",
    "write_sample",
    "write_swapped_axes_variant",
    "write_wrong_zone_variant",
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.generate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="output folder (default data/sample)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--scale", type=float, default=1.0, help="patch count multiplier (1 → ~25 000 patches)")
    ap.add_argument("--county-size", action="store_true", help="benchmark size: --patches (default 300 000)")
    ap.add_argument("--patches", type=int, default=None, help="target number of DLTB patches")
    ap.add_argument("--messy", type=Path, default=None, help="also write the messy variants into this folder")
    ap.add_argument("--province", type=int, default=None, metavar="N",
                    help="a synthetic province of N counties (--patches each, default 3000) and its region.yaml")
    ap.add_argument("--jobs", type=int, default=1, help="--province: counties written at once (processes)")
    args = ap.parse_args(argv)
    if args.province is not None:
        if args.out is None:
            ap.error("--province needs --out DIR")
        from .province import write_province

        t0 = time.perf_counter()
        path = write_province(args.out, args.province, args.patches or 3000, seed=args.seed, jobs=args.jobs)
        print(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
        return 0
    n_patches = args.patches or (300_000 if args.county_size else None)
    out = args.out or (SAMPLE_DIR if not args.county_size else None)
    if out is None:
        ap.error("--county-size needs --out DIR (the benchmark county is not committed)")
    t0 = time.perf_counter()
    county = build_county(seed=args.seed, scale=args.scale, n_patches=n_patches)
    manifest = write_county(county, out)
    elapsed = time.perf_counter() - t0
    counts = ", ".join(f"{k} {len(v)}" for k, v in county.layers.items())
    print(f"wrote {manifest} in {elapsed:.1f} s ({counts})")
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in county.timings.items()))
    if args.messy:
        print(f"wrote {write_messy_variants(args.messy, county=county)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The sample-county generator (data/generate.py) and the committed sample (data/sample).

The committed sample is checked from its files: tiling, nesting of 村 / 乡 / 县, attributes, and every planted
case of planted.yaml re-measured with shapely. Determinism and the messy / negative variants are checked on a
small county (scale 0.05) generated into tmp folders.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
import yaml
from pyproj import Transformer

from data import generate as gen
from data import variants
from layers.area import ellipsoidal_area
from layers.codes import CONSTRUCTION_SANDIAO, CULTIVATED, SANDIAO_CODES
from layers.fields import standard_name
from layers.manifest import load_manifest
from layers.webcoords import gcj02_to_wgs84

SAMPLE = Path(gen.__file__).resolve().parent / "sample"
CRS = "EPSG:4547"
SMALL_SCALE = 0.05
LEGAL_KINDS = ["农用地转用", "土地征收", "供地"]


def area(geoms) -> np.ndarray:
    return ellipsoidal_area(np.atleast_1d(np.asarray(geoms, dtype=object)), CRS)


def read(manifest_path: Path, role: str, index: int = 0) -> gpd.GeoDataFrame:
    spec = load_manifest(manifest_path).layers[role][index]
    if spec.path.suffix == ".parquet":
        return gpd.read_parquet(spec.path)
    return pyogrio.read_dataframe(spec.path, layer=spec.layer)


LY = {"卫片": "satellite", "摄像头": "camera", "无人机": "drone"}


def decode_date(value) -> str:
    """A monitoring date as the sample's files write it, as canonical text ('YYYY-MM' when the file gives the
    month only). Written here from the file formats, independently of layers.normalise."""
    import datetime as dt

    if isinstance(value, (int, np.integer, float, np.floating)):  # Excel serial, 1900 system
        return (dt.date(1899, 12, 30) + dt.timedelta(days=int(value))).isoformat()
    text = str(value)
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    if len(text) == 6 and text.isdigit():
        return f"{text[:4]}-{text[4:]}"
    return text[:10]


def read_monitoring(manifest_path: Path, raw: bool = False) -> gpd.GeoDataFrame:
    """Every monitoring file, concatenated: SOURCE / ROUND from the columns or the manifest entry (the mixed-round
    file names them LY / PC, with Chinese source values), dates as canonical text."""
    parts = []
    for s in load_manifest(manifest_path).layers["monitoring"]:
        gdf = pyogrio.read_dataframe(s.path, layer=s.layer)
        gdf["_file"] = s.path.name
        if raw:
            parts.append(gdf)
            continue
        if "LY" in gdf.columns:
            gdf = gdf.rename(columns={"PC": "ROUND"}).assign(SOURCE=gdf["LY"].map(LY)).drop(columns="LY")
        for col in ("QSX", "HSX"):
            gdf[col] = [decode_date(v) for v in gdf[col]]
        parts.append(gdf)
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=parts[0].crs)


def polygonal_area(geom) -> float:
    """Area of the polygonal part of a (possibly mixed) intersection result."""
    parts = shapely.get_parts(geom)
    parts = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
    return float(area(parts).sum()) if len(parts) else 0.0


@pytest.fixture(scope="module")
def sample():
    manifest = SAMPLE / "manifest.yaml"
    planted = yaml.safe_load((SAMPLE / "planted.yaml").read_text(encoding="utf-8"))
    layers = {role: read(manifest, role) for role in
              ("xzq", "dltb", "dltb_prev", "yjjbnt", "stbhhx", "czkfbj", "ghfq", "approvals", "parcels", "cameras")}
    layers["monitoring"] = read_monitoring(manifest)
    return manifest, planted, layers


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    county = gen.build_county(scale=SMALL_SCALE)
    out = tmp_path_factory.mktemp("small") / "sample"
    return county, gen.write_county(county, out)


# --- the committed sample: files and formats ------------------------------------------------------------

def test_sample_manifest_names_existing_files_in_standard_formats(sample):
    manifest, _, _ = sample
    m = load_manifest(manifest)
    assert m.region_code == "130599" and m.crs == "auto"
    assert set(m.layers) == {"xzq", "dltb", "dltb_prev", "yjjbnt", "stbhhx", "czkfbj", "ghfq", "approvals",
                             "parcels", "monitoring", "cameras"}
    for spec in m.specs():
        assert spec.path.exists(), spec.path
    assert m.layers["xzq"][0].path.suffix == ".gdb"  # FileGDB written by GDAL's OpenFileGDB driver
    per_file = [s for s in m.layers["monitoring"] if s.source]
    assert {s.source for s in per_file} == {"satellite", "camera", "drone"}
    assert {s.round for s in per_file} == {"2024-1", "2024-2"}
    # one file mixes rounds and sources: the manifest cannot set them, the PC / LY columns do
    mixed = [s for s in m.layers["monitoring"] if not s.source]
    assert [s.path.name for s in mixed] == ["monitoring_2024_pc.gpkg"] and mixed[0].round is None
    cols = pyogrio.read_info(mixed[0].path, layer=mixed[0].layer)["fields"].tolist()
    assert "PC" in cols and "LY" in cols and "SOURCE" not in cols and "ROUND" not in cols
    codes = yaml.safe_load((SAMPLE / "ghfq_codes.yaml").read_text(encoding="utf-8"))["codes"]
    assert codes["03"] == "农田保护区" and codes["0402"] == "城镇弹性发展区"


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def test_sample_is_small_enough_to_commit():
    mine = sum(_size(SAMPLE / name) for name in gen.own_files() if (SAMPLE / name).exists())
    assert mine < 6.5 * 1024 * 1024, f"the vector sample is {mine / 2**20:.2f} MiB"  # rasters come on top


def test_sample_lies_in_the_county_frame(sample):
    _, _, L = sample
    tr = Transformer.from_crs(4547, 4490, always_xy=True)
    x0, y0, x1, y1 = L["xzq"].total_bounds
    lon, lat = tr.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
    assert min(lon) >= 115.0 and max(lon) <= 115.3
    assert min(lat) >= 37.05 and max(lat) <= 37.3
    assert L["dltb"].crs.to_epsg() == 4547 and L["cameras"].crs.to_epsg() == 4490


# --- tiling and administrative nesting ----------------------------------------------------------------------

def test_dltb_tiles_the_county_without_gaps_or_overlaps(sample):
    _, planted, L = sample
    prev = L["dltb_prev"]
    county = L["xzq"][L["xzq"]["XZQJB"] == "county"].geometry.values[0]
    total, county_area = area(prev.geometry.values).sum(), area(county)[0]
    assert abs(total - county_area) <= 0.01 * county_area / 1e6
    assert planted["county_area_m2"] == pytest.approx(county_area, abs=0.01)
    assert shapely.coverage_is_valid(np.asarray(prev.geometry.values))  # no overlaps, edges shared exactly
    # and the same tessellation in both years (the current layer adds only the planted duplicate)
    dup = planted["defects"]["dltb"]["duplicate_geometry"][0][1]
    cur = L["dltb"][L["dltb"]["BSM"] != dup]
    assert (cur["BSM"].to_numpy() == prev["BSM"].to_numpy()).all()
    assert shapely.equals(cur.geometry.values, prev.geometry.values).all()
    assert 20_000 <= len(prev) <= 50_000
    union = shapely.union_all(prev.geometry.values)
    assert union.difference(county).area < 1e-3
    # and no gap at all between the patches: the union is one polygon without holes (not even a sliver)
    assert union.geom_type == "Polygon" and len(union.interiors) == 0


def test_villages_tile_townships_and_townships_tile_the_county(sample):
    _, _, L = sample
    x = L["xzq"]
    county = x[x["XZQJB"] == "county"]
    towns = x[x["XZQJB"] == "township"]
    villages = x[x["XZQJB"] == "village"]
    assert county["XZQDM"].tolist() == ["130599"]
    assert 5 <= len(towns) <= 8
    assert towns["XZQDM"].str.fullmatch(r"130599\d{3}").all()
    assert villages["XZQDM"].str.fullmatch(r"130599\d{6}").all()
    assert x["XZQMC"].str.fullmatch(r"[\u4e00-\u9fff]+").all()
    assert x["XZQDM"].is_unique and x["XZQMC"].is_unique
    c_area = area(county.geometry.values)[0]
    assert abs(area(towns.geometry.values).sum() - c_area) <= 0.01 * c_area / 1e6
    assert shapely.coverage_is_valid(np.asarray(towns.geometry.values))
    for code, tgeom in zip(towns["XZQDM"], towns.geometry.values):
        mine = villages[villages["XZQDM"].str[:9] == code]
        assert 5 <= len(mine) <= 15
        t_area = area(tgeom)[0]
        assert abs(area(mine.geometry.values).sum() - t_area) <= 0.01 * t_area / 1e6
        assert shapely.coverage_is_valid(np.asarray(mine.geometry.values))
    assert not shapely.equals(county.geometry.values[0], shapely.envelope(county.geometry.values[0]))  # not a box


def test_zldwdm_is_the_village_that_holds_the_patch(sample):
    _, _, L = sample
    d = L["dltb"]
    villages = L["xzq"][L["xzq"]["XZQJB"] == "village"]
    pairs = shapely.STRtree(villages.geometry.values).query(shapely.point_on_surface(d.geometry.values),
                                                            predicate="within")
    assert len(np.unique(pairs[0])) == len(d)  # every patch lies in exactly one village
    holder = np.empty(len(d), dtype=object)
    holder[pairs[0]] = villages["XZQDM"].to_numpy()[pairs[1]]
    assert (d["ZLDWDM"].to_numpy() == holder + "0000000").all()
    assert d["ZLDWDM"].str.len().eq(19).all()
    names = dict(zip(villages["XZQDM"], villages["XZQMC"]))
    assert (d["ZLDWMC"].to_numpy() == np.array([names[v] for v in holder])).all()
    # every patch lies inside its village (not only its point): area outside is nil
    sel = np.arange(0, len(d), 97)
    vgeom = dict(zip(villages["XZQDM"], villages.geometry.values))
    outside = [shapely.difference(d.geometry.values[i], vgeom[holder[i]]).area for i in sel]
    assert max(outside) < 1e-6


# --- attributes -----------------------------------------------------------------------------------------

def test_dltb_attributes_follow_the_survey_rules(sample):
    _, planted, L = sample
    defects = planted["defects"]["dltb"]
    d = L["dltb"]
    bad_area = d["BSM"].isin(defects["area_mismatch"]).to_numpy()
    bad_kc = d["BSM"].isin(defects["kcmj_mismatch"]).to_numpy()
    unknown = d["BSM"].isin(defects["unknown_code"]).to_numpy()
    a = area(d.geometry.values)
    assert np.allclose(d["TBMJ"].to_numpy()[~bad_area], np.round(a[~bad_area], 2), atol=0.005)
    assert (np.abs(d["TBMJ"].to_numpy()[bad_area] / a[bad_area] - 1) > 0.10).all()
    kcmj = np.round(d["TBMJ"].to_numpy() * d["KCXS"].to_numpy(), 2)
    assert np.allclose(d["KCMJ"].to_numpy()[~bad_kc], kcmj[~bad_kc], atol=0.005)
    assert (np.abs(d["KCMJ"].to_numpy()[bad_kc] - kcmj[bad_kc]) > 1).all()
    assert np.allclose(d["TBDLMJ"], d["TBMJ"] - d["KCMJ"], atol=0.005)
    codes = d["DLBM"].to_numpy().astype(str)
    assert set(codes[unknown]) == {"1199"} and "1199" not in SANDIAO_CODES
    assert all(SANDIAO_CODES[c] == n for c, n in zip(codes[~unknown], d["DLMC"].to_numpy()[~unknown]))
    cult = np.isin(codes, list(CULTIVATED))
    kcxs = d["KCXS"].to_numpy()
    assert (kcxs[~cult] == 0).all() and 0 < kcxs[cult].max() <= 0.12
    assert ((d["KCDLBM"] == "1203").to_numpy() == (cult & (kcxs > 0))).all()
    assert d["GDPDJB"][cult].isin(["1", "2", "3", "4", "5"]).all() and d["GDPDJB"][~cult].isna().all()
    built = np.isin(codes, list(CONSTRUCTION_SANDIAO))
    assert d["CZCSXM"].dropna().isin(["201", "202", "203"]).all()
    assert d["CZCSXM"][d["DLBM"] == "0702"].eq("203").all()
    assert d["CZCSXM"].notna().to_numpy()[~built & (codes != "1004")].sum() == 0
    assert set(d["QSXZ"]) == {"10", "30"} and d["SJNF"].eq(2024).all() and L["dltb_prev"]["SJNF"].eq(2023).all()
    assert d["BSM"].is_unique and d["BSM"].str.fullmatch(r"1305992110\d{8}").all()
    # a plausible Hebei-plain mix: mostly 耕地, 旱地 first
    share = pd.Series(a, index=codes).groupby(level=0).sum() / a.sum()
    assert share[list(CULTIVATED & set(share.index))].sum() > 0.5 and share["0103"] > share["0102"]
    for code in ("0101", "0102", "0103", "0201", "0301", "0404", "05H1", "0601", "0701", "0702", "08H2",
                 "1003", "1004", "1006", "1101", "1104", "1107", "1201", "1202"):
        assert code in share.index, code


def test_river_is_one_connected_strip(sample):
    _, _, L = sample
    river = L["dltb"][L["dltb"]["DLBM"] == "1101"]
    merged = shapely.union_all(river.geometry.values)
    assert merged.geom_type == "Polygon"
    county = L["xzq"][L["xzq"]["XZQJB"] == "county"].geometry.values[0]
    assert merged.length > county.length * 0.4  # it crosses the county


def test_yjjbnt_stbhhx_czkfbj_ghfq_fields(sample):
    _, _, L = sample
    y, s, c, g = L["yjjbnt"], L["stbhhx"], L["czkfbj"], L["ghfq"]
    assert np.allclose(y["YJJBNTMJ"], np.round(area(y.geometry.values), 2), atol=0.005)
    assert y["DLBM"].isin(list(CULTIVATED)).all() and y["YJJBNTTBBH"].is_unique
    assert set(c["GHFQDM"]) == {"01", "02", "03"}
    assert set(s["XZQDM"].str.len()) == {9}
    county = L["xzq"][L["xzq"]["XZQJB"] == "county"].geometry.values[0]
    ca = area(county)[0]
    assert abs(area(g.geometry.values).sum() - ca) <= 0.01 * ca / 1e6  # 规划分区 cover the county
    assert shapely.coverage_is_valid(np.asarray(g.geometry.values))
    codes = yaml.safe_load((SAMPLE / "ghfq_codes.yaml").read_text(encoding="utf-8"))["codes"]
    assert set(g["GHFQDM"]) <= set(codes) and {"01", "02", "03", "0401", "0402", "0501", "0502"} <= set(g["GHFQDM"])
    # YJJBNT was drawn on 耕地 of the previous survey
    prev = L["dltb_prev"]
    pts = shapely.point_on_surface(prev.geometry.values)
    hit = shapely.STRtree(y.geometry.values).query(pts, predicate="within")
    assert np.isin(prev["DLBM"].to_numpy()[np.unique(hit[0])].astype(str), list(CULTIVATED)).all()


def test_cameras(sample):
    _, _, L = sample
    cam = L["cameras"]
    assert 10 <= len(cam) <= 20 and cam["SXTBH"].is_unique
    assert cam["GD"].between(30, 60).all() and cam["KSJL"].between(2000, 5000).all()
    assert cam["FWJ"].between(0, 360).all() and cam["SPJ"].between(30, 120).all()


# --- planted monitoring cases -------------------------------------------------------------------------------

def _covered_share(geom, approvals, kinds) -> float:
    sel = approvals[approvals["PZLX"].isin(kinds)]
    inter = shapely.intersection(geom, shapely.union_all(sel.geometry.values))
    return polygonal_area(inter) / area(geom)[0]


def _dominant_code(geom, dltb) -> str:
    hit = shapely.STRtree(dltb.geometry.values).query(geom, predicate="intersects")
    a = area(shapely.intersection(geom, dltb.geometry.values[hit]))
    return str(dltb["DLBM"].to_numpy()[hit][np.argmax(a)])


def test_every_monitoring_patch_is_planted_with_a_verdict(sample):
    _, planted, L = sample
    mon = L["monitoring"]
    truth = {m["JCBH"]: m for m in planted["monitoring"]}
    assert set(truth) == set(mon["JCBH"]) and mon["JCBH"].is_unique
    kinds = pd.Series([m["kind"] for m in truth.values()]).value_counts()
    for kind in ("approved", "partly_approved", "unapproved_cultivated", "unapproved_yjjbnt", "unapproved_stbhhx",
                 "facility_filing", "temporary_use", "sliver", "no_class_change"):
        assert kinds[kind] >= 2, kind
    assert {m["expected_verdict"] for m in truth.values()} == {"legal", "partly_approved", "suspected_illegal",
                                                               "other"}
    assert set(mon["SOURCE"]) == {"satellite", "camera", "drone"}
    assert mon["JCBH"].str.startswith("130599").all() and mon["XZQDM"].str.len().eq(9).all()
    assert np.allclose(mon["MJ"], np.round(area(mon.geometry.values), 2), atol=0.005)


def test_planted_monitoring_truth_holds_geometrically(sample):
    _, planted, L = sample
    mon = L["monitoring"].set_index("JCBH")
    appr, prev, cur = L["approvals"], L["dltb_prev"], L["dltb"]
    yj_union = shapely.union_all(L["yjjbnt"].geometry.values)
    st_union = shapely.union_all(L["stbhhx"].geometry.values)
    cz_union = shapely.union_all(L["czkfbj"].geometry.values)
    for m in planted["monitoring"]:
        g = mon.loc[m["JCBH"], "geometry"]
        a = area(g)[0]
        assert a == pytest.approx(m["area_m2"], abs=0.01)
        share = _covered_share(g, appr, LEGAL_KINDS)
        assert share == pytest.approx(m["approved_share"], abs=1e-4)
        assert _dominant_code(g, prev) == m["orig_dlbm"]
        assert _dominant_code(g, cur) == m["now_dlbm"]
        assert polygonal_area(shapely.intersection(g, yj_union)) == pytest.approx(m["area_yjjbnt_m2"], abs=0.01)
        assert polygonal_area(shapely.intersection(g, st_union)) == pytest.approx(m["area_stbhhx_m2"], abs=0.01)
        outside = polygonal_area(shapely.difference(g, cz_union))
        assert outside == pytest.approx(m["area_outside_czkfbj_m2"], abs=0.01)
        kind = m["kind"]
        if m["expected_verdict"] == "legal":
            assert share >= 0.95
        if kind == "partly_approved":
            assert 0.4 <= share <= 0.8
        if m["expected_verdict"] == "suspected_illegal":
            assert share == 0 and _covered_share(g, appr, ["临时用地", "设施农用地备案"]) == 0
            assert m["orig_dlbm"] != m["now_dlbm"]
        if kind == "unapproved_cultivated":
            assert m["orig_dlbm"] in CULTIVATED and m["area_yjjbnt_m2"] == 0 and m["area_stbhhx_m2"] == 0
        if kind == "unapproved_yjjbnt":
            assert m["area_yjjbnt_m2"] == pytest.approx(a, abs=0.01)
        if kind == "unapproved_stbhhx":
            assert m["area_stbhhx_m2"] == pytest.approx(a, abs=0.01) and m["orig_dlbm"] == "0301"
        if kind == "sliver":
            assert a < 50
        if kind == "no_class_change":
            assert m["orig_dlbm"] == m["now_dlbm"] and m["orig_dlbm"] in CULTIVATED and a > 1000
        if kind == "facility_filing":
            assert m["now_dlbm"] == "1202" and _covered_share(g, appr, ["设施农用地备案"]) >= 0.95
        if kind == "temporary_use":
            assert _covered_share(g, appr, ["临时用地"]) >= 0.95 and m["orig_dlbm"] == m["now_dlbm"]
        if kind in ("approved", "partly_approved"):
            assert m["area_outside_czkfbj_m2"] == 0  # planned development inside the boundary


def test_dedupe_groups_overlap_and_touching_pairs_do_not(sample):
    _, planted, L = sample
    mon = L["monitoring"].set_index("JCBH")
    cur = L["dltb"].set_index("BSM")

    def geom(member):
        return cur.loc[member[3:], "geometry"] if member.startswith("BG-") else mon.loc[member, "geometry"]

    def ratio(a, b):
        return polygonal_area(shapely.intersection(a, b)) / min(area(a)[0], area(b)[0])

    groups = [g for g in planted["dedupe_groups"] if g["linked_by"] == "overlap"]
    multi_source = [g for g in groups if len([m for m in g["members"] if not m.startswith("BG-")]) >= 2]
    assert len(multi_source) >= 2
    assert any({mon.loc[m, "ROUND"] for m in g["members"] if not m.startswith("BG-")} == {"2024-1", "2024-2"}
               and "camera" in {mon.loc[m, "SOURCE"] for m in g["members"] if not m.startswith("BG-")}
               for g in multi_source)
    for g in groups:
        members = [geom(m) for m in g["members"]]
        for i in range(len(members)):
            for j in range(i + 1, len(members)):
                assert ratio(members[i], members[j]) >= 0.8, g["site"]
        if len(g["members"]) > 2:  # re-issued: really different digitisations
            assert not shapely.equals(members[0], members[1])
    # members of different records never overlap (touching at most)
    owner = {m: r["id"] for r in planted["records"] for m in r["members"]}
    ids = list(mon.index) + [m for m in owner if m.startswith("BG-")]
    geoms = np.array([geom(i) for i in ids], dtype=object)
    pairs = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    for i, j in zip(*pairs):
        if i < j and owner.get(ids[i], ids[i]) != owner.get(ids[j], ids[j]):
            assert polygonal_area(shapely.intersection(geoms[i], geoms[j])) < 1e-6, (ids[i], ids[j])
    for pair in planted["not_merged"]:
        a, b = (mon.loc[m, "geometry"] for m in pair["members"])
        assert shapely.touches(a, b) and shapely.intersection(a, b).length > 10
        assert pair["overlap_m2"] == 0


def test_survey_changes_are_exactly_the_planted_ones(sample):
    _, planted, L = sample
    prev, cur = L["dltb_prev"], L["dltb"].iloc[:len(L["dltb_prev"])]
    changed = prev["DLBM"].to_numpy() != cur["DLBM"].to_numpy()
    assert sorted(cur["BSM"][changed]) == sorted(c["BSM"] for c in planted["survey_changes"])
    only_survey = [c for c in planted["survey_changes"] if not c["monitoring"]]
    assert len(only_survey) >= 3
    built = set(CONSTRUCTION_SANDIAO)
    for c in planted["survey_changes"]:
        row = cur[cur["BSM"] == c["BSM"]].iloc[0]
        assert row["DLBM"] == c["now_dlbm"] and prev.loc[row.name, "DLBM"] == c["prev_dlbm"]
        assert (c["prev_dlbm"] not in built and c["now_dlbm"] in built) or \
            (c["prev_dlbm"] in CULTIVATED and c["now_dlbm"] not in CULTIVATED)
        assert area(row.geometry)[0] == pytest.approx(c["area_m2"], abs=0.01)
    assert any(c["prev_dlbm"] in CULTIVATED and c["now_dlbm"] in built for c in planted["survey_changes"])
    assert any(c["now_dlbm"] not in built for c in planted["survey_changes"])  # a loss of 耕地, not built


# --- issue 10: sites across several patches, re-issues, touching pieces, dates, records -------------------

SPLIT_KINDS = ("split_site", "split_survey_only", "split_camera_satellite", "split_three_parents", "split_reissued",
               "reissue_other_piece")
COUNTED_KINDS = ["农用地转用", "土地征收", "供地", "临时用地", "设施农用地备案"]


def _shared_edge(a, b) -> float:
    return float(shapely.length(shapely.intersection(shapely.boundary(a), shapely.boundary(b))))


def _connected(geoms: list) -> bool:
    """The pieces form one site: connected through shared edges of ≥ 1 m."""
    seen, todo = {0}, [0]
    while todo:
        i = todo.pop()
        for j in range(len(geoms)):
            if j not in seen and _shared_edge(geoms[i], geoms[j]) >= 1.0:
                seen.add(j)
                todo.append(j)
    return len(seen) == len(geoms)


def test_split_sites_cross_several_current_patches(sample):
    _, planted, L = sample
    cur = L["dltb"].set_index("BSM")
    prev = L["dltb_prev"].set_index("BSM")
    mon = L["monitoring"].set_index("JCBH")
    split = [r for r in planted["records"] if r["kind"] in SPLIT_KINDS]
    assert len(split) >= 10
    village_crossing = 0
    road_beside_building = 0
    for r in split:
        bsm = [p[3:] for p in r["pieces"]]
        assert len(bsm) >= 2, r["change"]
        pieces = [cur.loc[b, "geometry"] for b in bsm]
        assert all(cur.loc[b, "DLBM"] != prev.loc[b, "DLBM"] for b in bsm), r["change"]
        assert _connected(pieces), r["change"]
        villages = {cur.loc[b, "ZLDWDM"][:12] for b in bsm}
        assert sorted(villages) == r["piece_villages"]
        village_crossing += len(villages) >= 2
        codes = {cur.loc[b, "DLBM"] for b in bsm}
        road_beside_building += "1004" in codes and bool(codes & {"0601", "05H1", "0701"})
        # every issued patch lies on the site (at least 95 % of it on the pieces; 'whole_moved' re-digitised 4 m off)
        site = shapely.union_all(pieces)
        for j in r["issued"]:
            g = mon.loc[j, "geometry"]
            assert polygonal_area(shapely.intersection(g, site)) / area(g)[0] >= 0.9, (r["change"], j)
    assert village_crossing >= 5 and road_beside_building >= 3
    three = next(r for r in split if r["kind"] == "split_three_parents")
    assert len({prev.loc[p[3:], "DLBM"] for p in three["pieces"]} & {"1006"}) == 1  # across a field road
    assert len(three["pieces"]) == 3


def test_reissue_on_another_piece_overlaps_below_the_match_ratio(sample):
    _, planted, L = sample
    cur = L["dltb"].set_index("BSM")
    mon = L["monitoring"].set_index("JCBH")
    reissued = [r for r in planted["records"] if r["kind"] == "reissue_other_piece"]
    assert len(reissued) >= 4
    for r in reissued:
        a, b = (mon.loc[j, "geometry"] for j in r["issued"])
        assert mon.loc[r["issued"][0], "ROUND"] != mon.loc[r["issued"][1], "ROUND"] or \
            mon.loc[r["issued"][0], "SOURCE"] != mon.loc[r["issued"][1], "SOURCE"]
        inter = polygonal_area(shapely.intersection(a, b))
        assert inter >= 1.0 and inter / min(area(a)[0], area(b)[0]) < 0.5, r["change"]
        assert inter == pytest.approx(r["reissue_overlap"]["overlap_m2"], abs=0.01)
        # each patch matches (ratio ≥ 0.5) pieces the other does not
        pieces = {p: cur.loc[p[3:], "geometry"] for p in r["pieces"]}

        def matched(g, pieces=pieces):
            return {p for p, pg in pieces.items()
                    if polygonal_area(shapely.intersection(g, pg)) / min(area(g)[0], area(pg)[0]) >= 0.5}
        assert matched(a) and matched(b) and not matched(a) & matched(b), r["change"]
    assert any(len(r["piece_villages"]) >= 2 for r in reissued)
    assert {r["verdict"] for r in reissued} == {"legal", "partly_approved", "suspected_illegal"}


def test_touching_pairs_over_adjacent_pieces(sample):
    _, planted, L = sample
    cur = L["dltb"].set_index("BSM")
    mon = L["monitoring"].set_index("JCBH")
    records = {r["id"]: r for r in planted["records"]}
    kinds = set()
    for pair in (p for p in planted["not_merged"] if p["pieces_adjacent"]):
        a, b = pair["members"]
        ra, rb = records[a], records[b]
        pa = shapely.union_all([cur.loc[p[3:], "geometry"] for p in ra["pieces"]])
        pb = shapely.union_all([cur.loc[p[3:], "geometry"] for p in rb["pieces"]])
        assert _shared_edge(pa, pb) >= 1.0 and polygonal_area(shapely.intersection(pa, pb)) == 0
        assert polygonal_area(shapely.intersection(mon.loc[a, "geometry"], mon.loc[b, "geometry"])) == 0
        (sa, ka), (sb, kb) = ((mon.loc[x, "SOURCE"], mon.loc[x, "ROUND"]) for x in (a, b))
        kinds.add("same round" if (sa, ka) == (sb, kb) else "other source" if sa != sb else "other round")
    assert kinds == {"same round", "other source", "other round"}


def test_monitoring_dates_as_the_files_write_them(sample):
    manifest, planted, _ = sample
    raw = read_monitoring(manifest, raw=True)
    style = {"monitoring_2024_1.gpkg": r"\d{4}-\d{2}", "monitoring_2024_2.gpkg": r"\d{4}-\d{2}-\d{2}",
             "monitoring_camera.gpkg": r"\d{8}", "monitoring_2024_pc.gpkg": r"\d{6}"}
    for name, grp in raw.groupby("_file"):
        for col in ("QSX", "HSX"):
            if name == "monitoring_drone.gpkg":  # Excel serial numbers, stored as integers
                info = pyogrio.read_info(SAMPLE / name, layer="JCTB")
                assert info["dtypes"][info["fields"].tolist().index(col)] == "int64"
                assert grp[col].astype(int).between(20_000, 80_000).all()
            else:
                assert grp[col].astype(str).str.fullmatch(style[name]).all(), (name, col)
    assert set(raw["_file"]) == set(style) | {"monitoring_drone.gpkg"}
    pc = raw[raw["_file"] == "monitoring_2024_pc.gpkg"]
    assert set(pc["PC"]) == {"2024-1", "2024-2"} and set(pc["LY"]) == {"卫片", "摄像头"}
    decoded = read_monitoring(manifest).set_index("JCBH")
    for m in planted["monitoring"]:
        assert decoded.loc[m["JCBH"], "HSX"] == m["HSX"] and decoded.loc[m["JCBH"], "QSX"] == m["QSX"]
        assert decoded.loc[m["JCBH"], "SOURCE"] == m["source"] and decoded.loc[m["JCBH"], "ROUND"] == m["round"]


def _issue_key(row) -> tuple:
    import re

    hsx = row["HSX"] if len(row["HSX"]) == 10 else row["HSX"] + "-01"
    order = ["satellite", "drone", "camera", "survey", "raster"]
    nat = tuple((0, int(x)) if x.isdigit() else (1, x) for x in re.split(r"(\d+)", row["ROUND"]) if x)
    return hsx, nat, order.index(row["SOURCE"]), row.name


def test_records_remeasured_from_the_files(sample):
    """Every record of planted.yaml measured again from the written files: members, id, areas, village."""
    _, planted, L = sample
    mon = L["monitoring"].set_index("JCBH")
    cur = L["dltb"].set_index("BSM")
    prev = L["dltb_prev"]
    appr = L["approvals"]
    counted = shapely.union_all(shapely.make_valid(appr.geometry.values[appr["PZLX"].isin(COUNTED_KINDS).to_numpy()]))
    villages = L["xzq"][L["xzq"]["XZQJB"] == "village"]
    pg, pcode, pk = prev.geometry.values, prev["DLBM"].to_numpy(), prev["KCXS"].to_numpy()
    ptree = shapely.STRtree(pg)

    def cultivated_net(g) -> float:
        hit = ptree.query(g, predicate="intersects")
        hit = hit[np.isin(pcode[hit], list(CULTIVATED))]
        return float(sum(polygonal_area(shapely.intersection(g, pg[i])) * (1 - pk[i]) for i in hit))

    assert len({r["id"] for r in planted["records"]}) == len(planted["records"])
    in_records = sorted(m for r in planted["records"] for m in r["members"])
    assert in_records == sorted(list(mon.index) + [c["id"] for c in planted["survey_changes"]])
    for r in planted["records"]:
        issued = sorted(r["issued"], key=lambda j: _issue_key(mon.loc[j]))
        assert r["members"] == issued + sorted(r["pieces"]), r["change"]
        if issued:
            assert r["id"] == issued[0]
        else:
            sizes = [(-round(area(cur.loc[p[3:], "geometry"])[0], 2), p) for p in r["pieces"]]
            assert r["id"] == min(sizes)[1]
        geoms = [mon.loc[j, "geometry"] for j in issued] + [cur.loc[p[3:], "geometry"] for p in r["pieces"]]
        g = shapely.union_all(geoms)
        a = area(g)[0]
        approved = polygonal_area(shapely.intersection(g, counted))
        assert r["area_m2"] == pytest.approx(a, abs=0.01), r["change"]
        assert r["area_approved"] == pytest.approx(approved, abs=0.01), r["change"]
        assert r["area_unapproved"] == pytest.approx(a - approved, abs=0.01), r["change"]
        assert r["area_cultivated"] == pytest.approx(cultivated_net(g), abs=0.01), r["change"]
        assert r["area_cultivated_unapproved"] == pytest.approx(cultivated_net(shapely.difference(g, counted)),
                                                                abs=0.01), r["change"]
        assert r["area_cultivated_unapproved"] <= r["area_cultivated"] + 1e-9
        shares = [(polygonal_area(shapely.intersection(g, v)), code)
                  for code, v in zip(villages["XZQDM"], villages.geometry.values)
                  if shapely.intersects(g, v)]
        assert r["XZQDM"] == max(shares)[1], r["change"]
        assert r["n_pieces"] == len(r["pieces"])
        if r["verdict"] == "partly_approved":
            assert 0.05 <= approved / a < 0.95
        elif r["verdict"] == "suspected_illegal":
            assert approved / a < 0.05


def test_czkfbj_polygons_overlap_over_basic_farmland(sample):
    _, planted, L = sample
    cz, yj, cur = L["czkfbj"], L["yjjbnt"], L["dltb"].set_index("BSM")
    g = shapely.make_valid(cz.geometry.values)
    a, b = shapely.STRtree(g).query(g, predicate="intersects")
    found = []
    for i, j in zip(a, b):
        if i < j:
            x = polygonal_area(shapely.intersection(g[i], g[j]))
            if x >= 1.0:
                found.append((sorted([cz["BSM"].iloc[i], cz["BSM"].iloc[j]]), x))
    truth = planted["qa"]["self_overlap"]
    assert [f[0] for f in found] == [t["ids"] for t in truth["czkfbj"]] and len(found) == 1
    assert found[0][1] == pytest.approx(truth["czkfbj"][0]["area_m2"], abs=0.01)
    assert truth["yjjbnt"] == [] and truth["stbhhx"] == []
    patch = cur.loc[truth["czkfbj_planted_dltb_patch"]]
    assert found[0][1] == pytest.approx(patch["TBMJ"], abs=0.01) and 5_000 <= found[0][1] <= 20_000
    under = [y for y in yj.geometry.values if shapely.equals(y, patch.geometry)]
    assert len(under) == 1 and all(shapely.covers(g[cz["BSM"].tolist().index(i)], under[0]) for i in found[0][0])
    # one yjjbnt × czkfbj case lies under both polygons, counted once
    cases = planted["conflicts"]["overlap_yjjbnt_czkfbj"]["cases"]
    both = [c for c in cases if c["right_ids"] == found[0][0]]
    assert len(both) == 1 and both[0]["area_m2"] == pytest.approx(found[0][1], abs=0.01)
    assert planted["conflicts"]["overlap_yjjbnt_czkfbj"]["total_area_m2"] == pytest.approx(
        sum(c["area_m2"] for c in cases), abs=0.01)


# --- planted conflicts ------------------------------------------------------------------------------------

def test_control_line_overlaps_are_exactly_the_planted_ones(sample):
    _, planted, L = sample
    unions = {k: shapely.union_all(L[k].geometry.values) for k in ("yjjbnt", "stbhhx", "czkfbj")}
    for kind, a, b in (("overlap_yjjbnt_stbhhx", "yjjbnt", "stbhhx"), ("overlap_yjjbnt_czkfbj", "yjjbnt", "czkfbj"),
                       ("overlap_stbhhx_czkfbj", "stbhhx", "czkfbj")):
        truth = planted["conflicts"][kind]
        assert truth["complete"] and len(truth["cases"]) >= 1
        total = polygonal_area(shapely.intersection(unions[a], unions[b]))
        assert total == pytest.approx(truth["total_area_m2"], abs=0.02)
        for case in truth["cases"]:
            lg = L[a].loc[L[a]["BSM"] == case["left_ids"][0], "geometry"].iloc[0]
            rg = L[b].loc[L[b]["BSM"] == case["right_ids"][0], "geometry"].iloc[0]
            assert polygonal_area(shapely.intersection(lg, rg)) == pytest.approx(case["area_m2"], abs=0.01)


def test_construction_and_cultivated_conflicts_are_exactly_the_planted_ones(sample):
    _, planted, L = sample
    cur = L["dltb"].iloc[:len(L["dltb_prev"])]
    codes = cur["DLBM"].to_numpy().astype(str)
    built = shapely.union_all(cur.geometry.values[np.isin(codes, list(CONSTRUCTION_SANDIAO))])
    not_cult = shapely.union_all(cur.geometry.values[~np.isin(codes, list(CULTIVATED))])
    yj = shapely.union_all(L["yjjbnt"].geometry.values)
    st = shapely.union_all(L["stbhhx"].geometry.values)
    c = planted["conflicts"]
    assert polygonal_area(built.intersection(yj)) == pytest.approx(c["construction_in_yjjbnt"]["total_area_m2"],
                                                                   abs=0.02)
    assert polygonal_area(built.intersection(st)) == pytest.approx(c["construction_in_stbhhx"]["total_area_m2"],
                                                                   abs=0.02)
    assert polygonal_area(not_cult.intersection(yj)) == pytest.approx(c["yjjbnt_not_cultivated"]["total_area_m2"],
                                                                      abs=0.02)
    for kind in ("construction_in_yjjbnt", "construction_in_stbhhx", "yjjbnt_not_cultivated"):
        assert len(c[kind]["cases"]) >= 2, kind
    # 耕地 → 园地 inside YJJBNT: no longer 耕地 but not construction
    ids = {x["right_ids"][0] for x in c["yjjbnt_not_cultivated"]["cases"]}
    assert any(cur.loc[cur["BSM"] == i, "DLBM"].iloc[0] not in CONSTRUCTION_SANDIAO for i in ids)
    cz = shapely.union_all(L["czkfbj"].geometry.values)
    for case in c["construction_outside_czkfbj"]["cases"]:
        g = cur.loc[cur["BSM"] == case["left_ids"][0], "geometry"].iloc[0]
        assert polygonal_area(shapely.difference(g, cz)) == pytest.approx(case["area_m2"], abs=0.01)


def test_parcel_zone_conflicts_and_supply_cases(sample):
    _, planted, L = sample
    parcels, ghfq, appr, cur = L["parcels"], L["ghfq"], L["approvals"], L["dltb"]
    cases = planted["conflicts"]["parcel_zone_conflict"]["cases"]
    assert len(cases) >= 2
    for case in cases:
        p = parcels[parcels["ZDDM"] == case["ZDDM"]].iloc[0]
        z = ghfq[ghfq["BSM"] == case["ghfq_BSM"]].iloc[0]
        assert p["TDYT"] == case["TDYT"] and z["GHFQDM"] == case["GHFQDM"]
        assert polygonal_area(shapely.intersection(p.geometry, z.geometry)) == pytest.approx(case["area_m2"], abs=0.01)
    # background parcels lie in 城镇集中 / 弹性发展区 only (no zone conflict there)
    planted_zd = {c["ZDDM"] for c in cases}
    zones = ghfq[ghfq["GHFQDM"].isin(["0401", "0402"])]
    town = shapely.union_all(zones.geometry.values)
    for zd, g in zip(parcels["ZDDM"], shapely.make_valid(parcels.geometry.values)):
        if zd not in planted_zd:
            assert polygonal_area(shapely.difference(g, town)) < 1.0, zd
    supply = planted["supply"]
    supplied = shapely.union_all(shapely.make_valid(parcels.geometry.values))
    assert len(supply["approved_not_supplied"]) >= 2
    for u in supply["approved_not_supplied"]:
        g = appr.loc[appr["PZWH"] == u["PZWH"], "geometry"].iloc[0]
        rest = polygonal_area(shapely.difference(g, supplied))
        assert rest == pytest.approx(u["unsupplied_area_m2"], abs=0.01) and rest / area(g)[0] >= 0.05
        assert u["PZWH"] not in set(parcels["PZWH"]) or rest < area(g)[0]
    assert len(supply["idle"]) >= 2
    built_codes = list(CONSTRUCTION_SANDIAO - {"1201"})
    built = shapely.union_all(cur.geometry.values[cur["DLBM"].isin(built_codes).to_numpy()])
    for i in supply["idle"]:
        p = parcels[parcels["ZDDM"] == i["ZDDM"]].iloc[0]
        assert pd.Timestamp(p["GDRQ"]) <= pd.Timestamp("2022-12-31") and pd.isna(p["JGRQ"])
        assert polygonal_area(shapely.intersection(p.geometry, built)) / area(p.geometry)[0] < 1 / 3
    controls = [c for c in supply["cases"] if c["expect"].startswith("not_idle")]
    assert {c["expect"] for c in controls} == {"not_idle_recent", "not_idle_built"}
    assert not {c["ZDDM"] for c in controls} & {i["ZDDM"] for i in supply["idle"]}


def test_planted_defects_are_in_the_files(sample):
    _, planted, L = sample
    d = L["dltb"]
    orig, dup = planted["defects"]["dltb"]["duplicate_geometry"][0]
    g1 = d.loc[d["BSM"] == orig, "geometry"].iloc[0]
    g2 = d.loc[d["BSM"] == dup, "geometry"].iloc[0]
    assert shapely.equals_exact(g1, g2, 0)
    assert L["dltb_prev"].loc[L["dltb_prev"]["BSM"].isin(planted["defects"]["dltb_prev"]["unknown_code"]),
                              "DLBM"].eq("1199").all()
    bad = planted["defects"]["parcels"]
    p = L["parcels"].set_index("ZDDM")
    for zd in bad["invalid_geometry"]:
        g = p.loc[zd, "geometry"]
        assert not shapely.is_valid(g) and "Self-intersection" in shapely.is_valid_reason(g)
        assert area(shapely.make_valid(g))[0] == pytest.approx(bad["repaired_area_m2"][zd], abs=0.01)
    assert shapely.is_valid(np.delete(np.asarray(p.geometry.values),
                                      [p.index.get_loc(z) for z in bad["invalid_geometry"]])).all()


# --- determinism, scale, variants -------------------------------------------------------------------------

def _read_all(manifest: Path) -> dict[str, pd.DataFrame]:
    m = load_manifest(manifest)
    out = {}
    for role, specs in m.layers.items():
        for i, _ in enumerate(specs):
            gdf = read(manifest, role, i)
            out[f"{role}[{i}]"] = gdf
    return out


def test_same_seed_gives_identical_files(small, tmp_path):
    county, manifest = small
    again = gen.write_county(gen.build_county(scale=SMALL_SCALE), tmp_path / "again")
    a, b = _read_all(manifest), _read_all(again)
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        pd.testing.assert_frame_equal(x.drop(columns="geometry"), y.drop(columns="geometry"), check_exact=True)
        assert (shapely.to_wkb(x.geometry.values) == shapely.to_wkb(y.geometry.values)).all(), key
    assert (manifest.parent / "planted.yaml").read_bytes() == (again.parent / "planted.yaml").read_bytes()
    # and the files hold exactly the generated geometry (FileGDB on a 1 mm grid, float64 elsewhere)
    d = a["dltb[0]"]
    assert (shapely.to_wkb(d.geometry.values) == shapely.to_wkb(county.layers["dltb"].geometry.values)).all()
    x = a["xzq[0]"]
    assert shapely.equals(x.geometry.values, county.layers["xzq"].geometry.values).all()


@pytest.mark.slow
def test_generation_does_not_depend_on_the_process(small, tmp_path):
    """Another interpreter (another str-hash seed) writes the same county through the command line."""
    _, manifest = small
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "data.generate", "--scale", str(SMALL_SCALE), "--out", str(out)],
                            capture_output=True, text=True, cwd=Path(gen.__file__).resolve().parents[1],
                            env={**os.environ, "PYTHONPATH": ".", "PYTHONHASHSEED": "4242"})
    assert result.returncode == 0, result.stderr
    assert (out / "planted.yaml").read_bytes() == (manifest.parent / "planted.yaml").read_bytes()
    a, b = gpd.read_parquet(out / "dltb_2024.parquet"), gpd.read_parquet(manifest.parent / "dltb_2024.parquet")
    pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"), check_exact=True)
    assert (shapely.to_wkb(a.geometry.values) == shapely.to_wkb(b.geometry.values)).all()


@pytest.mark.slow
def test_committed_sample_is_what_the_generator_makes(tmp_path):
    county = gen.build_county()
    manifest = gen.write_county(county, tmp_path / "sample")
    assert (manifest.parent / "planted.yaml").read_bytes() == (SAMPLE / "planted.yaml").read_bytes()
    ours, committed = (yaml.safe_load(p.read_text(encoding="utf-8")) for p in (manifest, SAMPLE / "manifest.yaml"))
    committed.pop("rasters", None)  # carried over from data/generate_rasters.py's rasters.yaml
    assert ours == committed
    for name in ("dltb_2023.parquet", "dltb_2024.parquet"):
        a, b = gpd.read_parquet(manifest.parent / name), gpd.read_parquet(SAMPLE / name)
        pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"), check_exact=True)
        assert (shapely.to_wkb(a.geometry.values) == shapely.to_wkb(b.geometry.values)).all()


def test_scale_sets_the_patch_count(small):
    county, _ = small
    n = len(county.layers["dltb_prev"])
    target = gen.BASE_PATCHES * SMALL_SCALE
    assert 0.6 * target <= n <= 1.5 * target
    assert shapely.coverage_is_valid(np.asarray(county.layers["dltb_prev"].geometry.values))


def test_messy_variants_hold_the_same_data(small, tmp_path):
    county, _ = small
    manifest = variants.write_messy_variants(tmp_path / "messy", county=county)
    m = load_manifest(manifest)
    L = county.layers
    folder = manifest.parent
    # dltb: GBK without .cpg, language byte 0, Chinese / truncated names
    assert not (folder / "dltb.cpg").exists()
    assert (folder / "dltb.dbf").read_bytes()[29] == 0
    assert pyogrio.read_info(folder / "dltb.shp")["encoding"] != "GBK"  # nothing declares it
    with pytest.raises(UnicodeDecodeError):
        (folder / "dltb.dbf").read_bytes()[:4000].decode("utf-8")
    d = pyogrio.read_dataframe(folder / "dltb.shp", encoding="gbk")
    mapping = {name: m.layers["dltb"][0].fields.get(code) for code, name in variants.DLTB_ALIASES.items()}
    for code, name in variants.DLTB_ALIASES.items():
        assert len(name.encode("gbk")) <= 10
        assert standard_name(name) == code or m.layers["dltb"][0].fields.get(code) == name, (code, mapping)
    clean = gen.public(L["dltb"])
    assert (d["坐落单位代"].to_numpy() == clean["ZLDWDM"].to_numpy()).all()
    assert (d["地类名称"].to_numpy() == clean["DLMC"].to_numpy()).all()
    assert np.allclose(area(d.geometry.values), area(clean.geometry.values), atol=0.01)
    # yjjbnt: no .prj, 8-digit eastings of zone 38
    assert not (folder / "yjjbnt.prj").exists()
    y = pyogrio.read_dataframe(folder / "yjjbnt.shp")
    assert y.crs is None and (shapely.get_coordinates(y.geometry.values)[:, 0] // 1_000_000 == 38).all()
    back = shapely.transform(y.geometry.values, lambda xy: xy - [38_000_000.0, 0.0])
    assert np.allclose(area(back), area(L["yjjbnt"].geometry.values), atol=0.01)
    # stbhhx: Xian 1980, back through the manifest's 7 parameters
    spec = m.layers["stbhhx"][0]
    assert spec.transform.kind == "helmert"
    s = pyogrio.read_dataframe(spec.path, layer=spec.layer)
    assert s.crs.to_epsg() == 2383
    shift = shapely.get_coordinates(s.geometry.values) - shapely.get_coordinates(L["stbhhx"].geometry.values)
    assert np.abs(shift).max() > 5  # a real datum difference, not a relabelling
    tr = variants.xian80_transformer()
    fwd = shapely.transform(s.geometry.values, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    assert np.abs(shapely.get_coordinates(fwd) - shapely.get_coordinates(L["stbhhx"].geometry.values)).max() < 1e-6
    assert np.allclose(area(fwd), area(L["stbhhx"].geometry.values), atol=0.01)
    # parcels: prefixed coordinates with .prj, bow-ties still there and repairing to the same area
    z = pyogrio.read_dataframe(folder / "zd.shp")
    assert z.crs.to_epsg() == 4526 and (folder / "zd.cpg").read_text().strip().upper() in {"GBK", "CP936", "936"}
    assert [standard_name(c) for c in z.columns if c != "geometry"] == \
        ["ZDDM", "TDYT", "GDRQ", "JGRQ", "PZWH", "XZQDM", "MJ"]
    zb = shapely.transform(z.geometry.values, lambda xy: xy - [38_000_000.0, 0.0])
    assert (~shapely.is_valid(zb)).sum() == 2
    assert np.allclose(area(shapely.make_valid(zb)), area(shapely.make_valid(L["parcels"].geometry.values)), atol=0.01)
    # cameras: GCJ-02, a few hundred metres off until converted back
    c = pyogrio.read_dataframe(folder / "cameras_amap.geojson")
    assert m.layers["cameras"][0].coords == "gcj02"
    lon, lat = gcj02_to_wgs84(c.geometry.x.to_numpy(), c.geometry.y.to_numpy())
    x, yy = Transformer.from_crs(4490, 4547, always_xy=True).transform(lon, lat)
    assert np.hypot(x - L["cameras"].geometry.x, yy - L["cameras"].geometry.y).max() < 0.01
    tr2 = Transformer.from_crs(4326, 4547, always_xy=True)
    x2, y2 = tr2.transform(c.geometry.x.to_numpy(), c.geometry.y.to_numpy())
    assert np.hypot(x2 - L["cameras"].geometry.x, y2 - L["cameras"].geometry.y).min() > 100
    # the other roles are the clean files
    assert set(m.layers) == set(load_manifest(small[1]).layers)


@pytest.mark.parametrize("name", sorted(variants.NEGATIVE_VARIANTS))
def test_negative_variants_carry_their_defect(small, tmp_path, name):
    county, _ = small
    info = variants.NEGATIVE_VARIANTS[name]
    manifest = info["writer"](tmp_path / name, county=county)
    m = load_manifest(manifest)
    assert set(m.layers) == {"xzq", "yjjbnt"}
    spec = m.layers["yjjbnt"][0]
    info_text = manifest.read_text(encoding="utf-8")
    assert info["expect"] in info_text
    gdf = pyogrio.read_dataframe(spec.path, layer=spec.layer)
    xy = shapely.get_coordinates(gdf.geometry.values)
    clean = shapely.get_coordinates(county.layers["yjjbnt"].geometry.values)
    if name == "wrong_zone":
        assert gdf.crs.to_epsg() == 4547
        assert xy[:, 0].max() < 400_000  # zone-39 eastings of a place at ~115.1°E
        lon = Transformer.from_crs(4547, 4490, always_xy=True).transform(xy[:, 0], xy[:, 1])[0]
        assert lon.max() < 112.6
    elif name == "swapped_axes":
        assert gdf.crs.to_epsg() == 4547 and (xy[:, 0] > 4_000_000).all() and (xy[:, 1] < 1_000_000).all()
        assert np.array_equal(xy[:, ::-1], clean)
    else:
        assert gdf.crs is None and not spec.path.with_suffix(".prj").exists()
        assert ((xy[:, 0] >= 100_000) & (xy[:, 0] < 1_000_000)).all()
        # the shapefile writer re-orients rings (clockwise exteriors) but keeps every coordinate
        assert shapely.equals(gdf.geometry.values, county.layers["yjjbnt"].geometry.values).all()
        assert np.array_equal(np.unique(xy, axis=0), np.unique(clean, axis=0))


@pytest.mark.slow
def test_county_size_mode_runs_from_the_command_line(tmp_path):
    out = tmp_path / "county"
    result = subprocess.run([sys.executable, "-m", "data.generate", "--county-size", "--patches", "6000",
                             "--out", str(out)], capture_output=True, text=True,
                            cwd=Path(gen.__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": "."})
    assert result.returncode == 0, result.stderr
    prev = gpd.read_parquet(out / "dltb_2023.parquet")
    assert 4000 <= len(prev) <= 9000
    planted = yaml.safe_load((out / "planted.yaml").read_text(encoding="utf-8"))
    assert planted["generator"]["patches"] == len(prev)
    assert math.isclose(area(prev.geometry.values).sum(), planted["county_area_m2"], rel_tol=1e-8)


# --- through the loader: messy and clean must load to the same layers ------------------------------------

@pytest.mark.slow
def test_messy_variant_loads_to_the_same_layers_as_the_clean_sample(small, tmp_path):
    from layers.load import load_role, resolve_target_epsg

    county, clean_manifest = small
    messy_manifest = variants.write_messy_variants(tmp_path / "messy", county=county)
    mc, mm = load_manifest(clean_manifest), load_manifest(messy_manifest)
    assert resolve_target_epsg(mc) == resolve_target_epsg(mm) == 4547
    planted = yaml.safe_load((clean_manifest.parent / "planted.yaml").read_text(encoding="utf-8"))
    for role in mc.layers:
        a, b = load_role(mc, role, 4547), load_role(mm, role, 4547)
        ga, gb = a.gdf, b.gdf
        assert list(ga.columns) == list(gb.columns), role
        assert np.allclose(ga["area_m2"], gb["area_m2"], atol=0.01), role
        # GCJ-02 inverse is iterative; the rest is exact arithmetic up to float noise of the 8-digit eastings.
        # (FileGDB sources come back as single-part MultiPolygons, shapefiles as Polygons: compare shapes.)
        tol = 0.01 if role == "cameras" else 1e-6
        assert (shapely.hausdorff_distance(ga.geometry.values, gb.geometry.values) < tol).all(), role
        for col in ga.columns:
            if col not in ("geometry", "area_m2"):
                assert ga[col].astype(str).tolist() == gb[col].astype(str).tolist(), (role, col)
    dltb = load_role(mm, "dltb", 4547)
    assert dltb.record.encoding.startswith("gbk")
    found = {f.check: set(f.ids) for f in dltb.findings}
    defects = planted["defects"]["dltb"]
    assert set(defects["unknown_code"]) <= found["unknown_code"]
    assert any(set(defects["area_mismatch"]) <= ids for ids in found.values())
    assert any(set(defects["kcmj_mismatch"]) <= ids for ids in found.values())
    parcels = load_role(mm, "parcels", 4547)
    assert sum(f.count for f in parcels.findings if "invalid" in f.check) == 2


@pytest.mark.parametrize("name", sorted(variants.NEGATIVE_VARIANTS))
def test_negative_variants_meet_their_expected_outcome(small, tmp_path, name):
    from layers.errors import CRSError
    from layers.load import load_role, resolve_target_epsg

    county, _ = small
    info = variants.NEGATIVE_VARIANTS[name]
    m = load_manifest(info["writer"](tmp_path / name, county=county))
    if info["error"]:
        with pytest.raises(CRSError):
            load_role(m, "yjjbnt", resolve_target_epsg(m))
    else:
        loaded = load_role(m, "yjjbnt", resolve_target_epsg(m))
        assert loaded.gdf.crs.to_epsg() == 4547
        expected = np.round(area(county.layers["yjjbnt"].geometry.values), 2)
        assert np.allclose(np.sort(loaded.gdf["area_m2"]), np.sort(expected), atol=0.01)

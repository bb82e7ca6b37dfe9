"""load_role: areas, survey-area checks, land-use code sets, multi-source monitoring, the LoadRecord."""

import hashlib
import re

import geopandas as gpd
import numpy as np
import pytest
import shapely

from layers import geometry, load, read
from layers.errors import CodeSetError, ManifestError
from layers.load import load_role, resolve_target_epsg
from tests.layers_fixtures import X0, Y0, dltb_frame, geodesic_area, manifest, patch_boxes, write, write_xzq


def setup(tmp_path, layers: dict, **kw):
    write_xzq(tmp_path)
    return manifest(tmp_path, {"xzq": "xzq.gpkg", **layers}, **kw)


def test_clean_layer_columns_areas_and_record(tmp_path):
    gdf = dltb_frame()
    write(gdf.to_crs(4526).rename(columns={"DLBM": "地类编码", "TBMJ": "图斑面积"}), tmp_path / "dltb.shp",
          encoding="gbk")
    (tmp_path / "dltb.cpg").unlink()
    m = setup(tmp_path, {"dltb": "dltb.shp"})
    loaded = load_role(m, "dltb", resolve_target_epsg(m))
    out = loaded.gdf
    assert list(out.columns) == ["yzt_fid", "BSM", "DLBM", "ZLDWDM", "TBMJ", "DLMC", "ZLDWMC", "KCXS", "KCMJ",
                                 "TBDLMJ", "area_m2", "geometry"]
    assert out.crs.to_epsg() == 4547
    assert out["yzt_fid"].tolist() == list(range(1, 13))
    assert out["DLMC"].tolist()[:3] == ["水田", "旱地", "农村宅基地"]
    expected = [round(geodesic_area(b), 2) for b in patch_boxes()]
    np.testing.assert_allclose(out["area_m2"], expected, atol=0.01)
    assert 8096 < expected[0] < 8100  # 90 m × 90 m shrinks by the GK scale factor at 89 km from the CM
    assert [f for f in loaded.findings if f.severity != "info"] == []
    r = loaded.record
    assert (r.layer, r.rows_read, r.rows_written, r.target_crs) == ("dltb", 12, 12, "EPSG:4547")
    assert r.source_path == str(tmp_path / "dltb.shp") and r.source_layer is None
    assert r.source_crs == "EPSG:4526" and r.crs_resolution == "prj"
    assert r.transformation == "shift by (-38000000 m, +0 m): same projection, other false easting"
    assert r.encoding == "gbk (detected)"
    assert r.field_mapping["DLBM"] == "地类编码" and r.field_mapping["TBMJ"] == "图斑面积"
    assert r.code_set == "sandiao"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", r.loaded_at)
    assert r.version == "0.1.0" and len(r.load_id) == 32
    assert re.fullmatch(r"[0-9a-f]{64}", r.sha256)


def test_survey_area_checks(tmp_path):
    gdf = dltb_frame()
    gdf.loc[1, "TBMJ"] = round(gdf.loc[1, "TBMJ"] * 1.005, 2)  # 0.5 %: above the 0.1 % tolerance
    gdf.loc[1, "TBDLMJ"] = gdf.loc[1, "TBMJ"] - gdf.loc[1, "KCMJ"]
    gdf.loc[3, "TBMJ"] = round(gdf.loc[3, "TBMJ"] * 1.25, 2)  # 25 %: large discrepancy
    gdf.loc[3, "TBDLMJ"] = gdf.loc[3, "TBMJ"] - gdf.loc[3, "KCMJ"]
    gdf.loc[4, "KCMJ"] += 0.02  # KCMJ ≠ round(TBMJ × KCXS, 2), and TBDLMJ no longer TBMJ − KCMJ
    gdf.loc[6, "TBDLMJ"] -= 1.0
    gdf.loc[8, "KCXS"] = 5.0  # a percentage where a share belongs
    gdf.loc[8, "KCMJ"] = round(gdf.loc[8, "TBMJ"] * 5.0, 2)
    gdf.loc[8, "TBDLMJ"] = gdf.loc[8, "TBMJ"] - gdf.loc[8, "KCMJ"]
    source_tbmj = gdf["TBMJ"].tolist()
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    m = setup(tmp_path, {"dltb": "dltb.gpkg"})
    loaded = load_role(m, "dltb", 4547)
    by = {f.check: f for f in loaded.findings}
    assert by["area_mismatch"].ids == ["BSM0002"]
    assert "by 0.10%–10% (up to 0.5" in by["area_mismatch"].message
    assert by["area_large_discrepancy"].ids == ["BSM0004"]
    assert "worst BSM0004: TBMJ" in by["area_large_discrepancy"].message
    assert by["kcmj_mismatch"].ids == ["BSM0005"]
    assert by["tbdlmj_mismatch"].ids == ["BSM0005", "BSM0007"]
    assert by["kcxs_out_of_range"].ids == ["BSM0009"]
    assert loaded.record.area_mismatches == 2
    assert loaded.gdf["TBMJ"].tolist() == source_tbmj  # never overwritten


def test_tolerances_come_from_the_manifest(tmp_path):
    gdf = dltb_frame()
    gdf.loc[1, "TBMJ"] = round(gdf.loc[1, "TBMJ"] * 1.005, 2)
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    m = setup(tmp_path, {"dltb": "dltb.gpkg"}, options={"area_tolerance": 0.01, "area_flag": 0.2})
    loaded = load_role(m, "dltb", 4547)
    assert not [f for f in loaded.findings if f.check.startswith("area_")]
    assert loaded.record.area_mismatches == 0


def test_unknown_codes_and_code_sets(tmp_path):
    gdf = dltb_frame()
    gdf.loc[[2, 7], "DLBM"] = ["0199", "9999"]
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    prev = dltb_frame()
    prev["DLBM"] = ["011", "013", "072", "104", "031", "051"] * 2  # 二调 codes
    write(prev, tmp_path / "prev.gpkg", layer="prev")
    m = setup(tmp_path, {"dltb": "dltb.gpkg", "dltb_prev": "prev.gpkg"})
    loaded = load_role(m, "dltb", 4547)
    (unknown,) = [f for f in loaded.findings if f.check == "unknown_code"]
    assert unknown.ids == ["BSM0003", "BSM0008"] and "(0199, 9999)" in unknown.message
    assert loaded.record.code_set == "sandiao"
    previous = load_role(m, "dltb_prev", 4547)
    assert previous.record.code_set == "erdiao"
    (mismatch,) = [f for f in previous.findings if f.check == "code_set_mismatch"]
    assert mismatch.message.startswith("dltb_prev uses 二调土地分类 codes but dltb uses 三调工作分类")
    mixed = dltb_frame()
    mixed.loc[0, "DLBM"] = "011"
    write(mixed, tmp_path / "mixed.gpkg", layer="mixed")
    m = setup(tmp_path, {"dltb": "mixed.gpkg"})
    with pytest.raises(CodeSetError, match=r"land-use codes mix 二调 3-digit codes"):
        load_role(m, "dltb", 4547)


def test_monitoring_from_several_sources_and_rounds(tmp_path):
    boxes = patch_boxes()
    sat = gpd.GeoDataFrame({"JCBH": ["WP-1", "WP-2"], "XZQDM": ["130599100001"] * 2},
                           geometry=boxes[:2], crs=4547)
    cam = gpd.GeoDataFrame({"监测编号": ["SX-7"], "前时相": ["2024/3/1"], "后时相": ["20240601"]},
                           geometry=[boxes[5]], crs=4547).to_crs(4490)
    write(sat, tmp_path / "wp.gpkg", layer="wp")
    write(cam, tmp_path / "cam.geojson", driver="GeoJSON")
    m = setup(tmp_path, {"monitoring": [
        {"path": "wp.gpkg", "source": "satellite", "round": "2024-1"},
        {"path": "cam.geojson", "source": "camera", "round": "2024-2"},
    ]})
    loaded = load_role(m, "monitoring", 4547)
    out = loaded.gdf
    assert out["JCBH"].tolist() == ["WP-1", "WP-2", "SX-7"]
    assert out["SOURCE"].tolist() == ["satellite", "satellite", "camera"]
    assert out["ROUND"].tolist() == ["2024-1", "2024-1", "2024-2"]
    assert out["QSX"].tolist() == [None, None, "2024-03-01"] and out["HSX"].tolist()[2] == "2024-06-01"
    assert out["yzt_fid"].tolist() == [1, 2, 3]
    r = loaded.record
    assert r.source_path == f"{tmp_path / 'wp.gpkg'};{tmp_path / 'cam.geojson'}"
    assert r.sha256 == ";".join(hashlib.sha256(p.read_bytes()).hexdigest()
                                for p in (tmp_path / "wp.gpkg", tmp_path / "cam.geojson"))
    assert r.source_crs == "EPSG:4547; EPSG:4490"
    assert r.field_mapping["JCBH"] == "JCBH;监测编号"
    assert r.field_mapping["SOURCE"] == "(manifest source: satellite);(manifest source: camera)"
    assert np.allclose(out.geometry.iloc[2].bounds, boxes[5].bounds, atol=1e-3)


def test_region_code_and_missing_required_values(tmp_path):
    gdf = dltb_frame()
    gdf.loc[2, "ZLDWDM"] = "1306011000010000000"
    gdf.loc[5, "BSM"] = None
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    loaded = load_role(setup(tmp_path, {"dltb": "dltb.gpkg"}), "dltb", 4547)
    by = {f.check: f for f in loaded.findings}
    assert by["foreign_unit_code"].ids == ["BSM0003"]
    assert "not in region 130599 (e.g. 1306011000010000000)" in by["foreign_unit_code"].message
    assert by["missing_value"].ids == ["#6"]


def test_chunked_paths_with_progress_give_the_same_layer(tmp_path, monkeypatch):
    gdf = dltb_frame()
    geoms = np.asarray(gdf.geometry.values).copy()
    geoms[4] = shapely.Polygon([(X0, Y0), (X0 + 90, Y0 + 90), (X0 + 90, Y0), (X0, Y0 + 90), (X0, Y0)])
    gdf.geometry = geoms
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    m = setup(tmp_path, {"dltb": "dltb.gpkg"})
    plain = load_role(m, "dltb", 4547)
    monkeypatch.setattr(read, "CHUNK_ROWS", 5)
    monkeypatch.setattr(geometry, "CHUNK", 5)
    monkeypatch.setattr(load, "LARGE_LAYER", 5)
    chunked = load_role(m, "dltb", 4547, progress=True)
    assert chunked.gdf.drop(columns="geometry").equals(plain.gdf.drop(columns="geometry"))
    assert shapely.equals(chunked.gdf.geometry.values, plain.gdf.geometry.values).all()
    assert chunked.record.repaired == plain.record.repaired == 1


def test_role_not_in_manifest(tmp_path):
    m = setup(tmp_path, {})
    with pytest.raises(ManifestError, match=r"has no layer for role 'dltb'"):
        load_role(m, "dltb", 4547)

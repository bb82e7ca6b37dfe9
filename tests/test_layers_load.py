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


# --- monitoring lists as bureaus issue them: dates, 批次 / 来源 columns ---------------------------------------

def test_monitoring_dates_in_the_forms_lists_use(tmp_path):
    """Month-only dates are kept at month precision (never dropped); day dates in any common form become ISO;
    Excel serial numbers are days since 1899-12-30 (45292 = 2024-01-01, checked by hand)."""
    boxes = patch_boxes()
    given = ["2024-05", "202405", "2024年5月", "2024/5/3", "20240503", "2024年5月3日", "2024.05.03", "45292"]
    want = ["2024-05", "2024-05", "2024-05", "2024-05-03", "2024-05-03", "2024-05-03", "2024-05-03", "2024-01-01"]
    mon = gpd.GeoDataFrame({"JCBH": [f"WP-{i}" for i in range(len(given))], "HSX": given,
                            "QSX": ["2023-10"] * len(given)}, geometry=boxes[:len(given)], crs=4547)
    write(mon, tmp_path / "wp.gpkg", layer="wp")
    m = setup(tmp_path, {"monitoring": [{"path": "wp.gpkg", "source": "satellite", "round": "2024-1"}]})
    loaded = load_role(m, "monitoring", 4547)
    assert loaded.gdf["HSX"].tolist() == want
    assert loaded.gdf["QSX"].tolist() == ["2023-10"] * len(given)
    assert not [f for f in loaded.findings if f.check == "bad_value"]
    serial = gpd.GeoDataFrame({"JCBH": ["A", "B", "C"], "HSX": [45292.0, 45350.75, 7.5]}, geometry=boxes[:3],
                              crs=4547)
    write(serial, tmp_path / "serial.gpkg", layer="s")
    m = setup(tmp_path, {"monitoring": [{"path": "serial.gpkg", "source": "satellite", "round": "2024-1"}]})
    loaded = load_role(m, "monitoring", 4547)
    assert loaded.gdf["HSX"].tolist() == ["2024-01-01", "2024-02-28", None]
    (bad,) = [f for f in loaded.findings if f.check == "bad_value"]
    assert bad.ids == ["C"] and "HSX" in bad.message


def test_round_and_source_columns_named_pc_and_ly(tmp_path):
    """A list mixing two rounds carries them in a PC (批次) column and the source in LY (来源) with Chinese values:
    both are recognised without a fields: mapping, and 卫片 / 摄像头 / 无人机 become the rules' source names."""
    boxes = patch_boxes()
    mon = gpd.GeoDataFrame({"JCBH": ["A1", "A2", "B1", "C1"], "PC": ["2024-1", "2024-1", "2024-2", "2024-2"],
                            "LY": ["卫片", "卫片", "摄像头", "无人机"], "上期监测编号": [None, None, "A1", None]},
                           geometry=boxes[:4], crs=4547)
    write(mon, tmp_path / "mixed.gpkg", layer="m")
    m = setup(tmp_path, {"monitoring": "mixed.gpkg"})
    loaded = load_role(m, "monitoring", 4547)
    assert loaded.gdf["ROUND"].tolist() == ["2024-1", "2024-1", "2024-2", "2024-2"]
    assert loaded.gdf["SOURCE"].tolist() == ["satellite", "satellite", "camera", "drone"]
    assert loaded.record.field_mapping["ROUND"] == "PC" and loaded.record.field_mapping["SOURCE"] == "LY"
    assert loaded.gdf["SQJCBH"].tolist() == [None, None, "A1", None]  # the re-issue link, read for dedupe
    assert not [f for f in loaded.findings if f.check == "missing_value"]


def test_a_list_without_round_suggests_the_fields_mapping(tmp_path):
    mon = gpd.GeoDataFrame({"JCBH": ["A1", "B1"], "轮次": ["2024-1", "2024-2"]}, geometry=patch_boxes()[:2], crs=4547)
    write(mon, tmp_path / "mixed.gpkg", layer="m")
    m = setup(tmp_path, {"monitoring": {"path": "mixed.gpkg", "source": "satellite"}})
    loaded = load_role(m, "monitoring", 4547)
    (missing,) = [f for f in loaded.findings if f.check == "missing_value"]
    assert missing.message == ("2 monitoring patch(es) have no ROUND (批次); if the file has a column for it, map "
                               "it: fields: {ROUND: <column>} (a file that mixes rounds or sources needs the column); "
                               "if the whole file is one round, set round: on its entry in the manifest")
    m = setup(tmp_path, {"monitoring": {"path": "mixed.gpkg", "source": "satellite", "fields": {"ROUND": "轮次"}}})
    assert load_role(m, "monitoring", 4547).gdf["ROUND"].tolist() == ["2024-1", "2024-2"]


# --- land-use code sets ----------------------------------------------------------------------------------

def _ydyh_frame():
    from layers.codes import from_sandiao

    gdf = dltb_frame()
    gdf["DLBM"] = from_sandiao(gdf["DLBM"].to_numpy())
    return gdf


def test_a_ydyh_layer_is_detected_and_recorded(tmp_path):
    gdf = _ydyh_frame()
    assert gdf["DLBM"].tolist()[:6] == ["0101", "0103", "0703", "0601", "0301", "0901"]
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    m = setup(tmp_path, {"dltb": "dltb.gpkg"})
    loaded = load_role(m, "dltb", 4547)
    assert loaded.record.code_set == "ydyh"
    assert loaded.gdf["DLBM"].tolist()[:3] == ["0101", "0103", "0703"]  # stored in its own codes
    assert not [f for f in loaded.findings if f.check == "unknown_code"]


def test_codes_that_cannot_tell_their_set_are_refused_unless_declared(tmp_path):
    gdf = dltb_frame()
    gdf["DLBM"] = ["0101", "0103", "0702", "0601"] * 3  # both sets have these, with other meanings for 0601 / 0702
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    m = setup(tmp_path, {"dltb": "dltb.gpkg"})
    with pytest.raises(CodeSetError) as err:
        load_role(m, "dltb", 4547)
    assert str(err.value).startswith(
        "layer 'dltb': cannot tell whether the land-use codes are 三调 or 用地用海: no code belongs to one set only, "
        "and 0601, 0702 mean different land uses in the two (0601 = 工业用地 (三调) or 乡村道路用地 (用地用海)")
    assert str(err.value).endswith("set code_set: sandiao or code_set: ydyh on the layer in the manifest")
    for declared in ("sandiao", "ydyh"):
        m = setup(tmp_path, {"dltb": {"path": "dltb.gpkg", "code_set": declared}})
        assert load_role(m, "dltb", 4547).record.code_set == declared


def test_mixed_or_contradicted_code_sets_are_refused(tmp_path):
    gdf = dltb_frame()
    gdf.loc[0, "DLBM"] = "0703"  # 用地用海 农村宅基地 beside 三调 05H1 / 1006
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    m = setup(tmp_path, {"dltb": "dltb.gpkg"})
    with pytest.raises(CodeSetError, match=r"^layer 'dltb': land-use codes mix 三调 codes \(e.g. \['05H1', '1006'\]\) "
                                           r"with 用地用海 codes \(e.g. \['0703'\]\)"):
        load_role(m, "dltb", 4547)
    write(dltb_frame(), tmp_path / "dltb3.gpkg", layer="dltb")
    m = setup(tmp_path, {"dltb": {"path": "dltb3.gpkg", "code_set": "ydyh"}})
    with pytest.raises(CodeSetError, match=r"code_set: ydyh is declared but codes \['05H1', '1006'\] exist only in "
                                           r"三调工作分类"):
        load_role(m, "dltb", 4547)


def test_the_crosswalk_round_trips_and_keeps_the_classes():
    """Every 三调 code written in 用地用海 and read back is itself; the traps of domain §3 map as the guide says."""
    from layers.codes import CATEGORY_SANDIAO, SANDIAO_CODES, YDYH_CODES, crosswalk, from_sandiao, to_sandiao

    codes = list(SANDIAO_CODES)
    assert to_sandiao(from_sandiao(codes), "ydyh").tolist() == codes
    back = dict(zip(["0601", "0702", "0703", "1001", "0901", "1207", "1701", "2301", "2302", "0303", "16"],
                    to_sandiao(["0601", "0702", "0703", "1001", "0901", "1207", "1701", "2301", "2302", "0303",
                                "16"], "ydyh")))
    assert back == {"0601": "1006", "0702": "08H2", "0703": "0702", "1001": "0601", "0901": "05H1",
                    "1207": "1004", "1701": "1101", "2301": "1201", "2302": "1203", "0303": "0305",
                    "16": "ydyh:16"}
    assert {CATEGORY_SANDIAO[c] for c in ("1006", "1203")} == {"农用地"}  # 乡村道路 / 田坎 stay 农用地
    assert all(k in YDYH_CODES for k in crosswalk().codes)

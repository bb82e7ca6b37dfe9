"""check_manifest (入库质检): every layer checked, nothing written, errors become findings with the same message."""

import json
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
import yaml

from layers.check import check_manifest
from layers.load import load_role
from layers.manifest import load_manifest
from tests.layers_fixtures import X0, Y0, dltb_frame, geodesic_area, manifest, patch_boxes, write, write_xzq


def messy_region(tmp_path):
    """A region with one clean layer, one layer with warnings and three broken ones."""
    write_xzq(tmp_path)
    gdf = dltb_frame()
    geoms = np.asarray(gdf.geometry.values).copy()
    geoms[4] = shapely.Polygon([(X0, Y0), (X0 + 90, Y0 + 90), (X0 + 90, Y0), (X0, Y0 + 90), (X0, Y0)])
    gdf.geometry = geoms
    gdf.loc[7, "TBMJ"] = round(gdf.loc[7, "TBMJ"] * 1.3, 2)
    gdf.loc[7, "KCMJ"] = round(gdf.loc[7, "TBMJ"] * gdf.loc[7, "KCXS"], 2)
    gdf.loc[7, "TBDLMJ"] = round(gdf.loc[7, "TBMJ"] - gdf.loc[7, "KCMJ"], 2)
    write(gdf.rename(columns={"DLBM": "地类编码"}), tmp_path / "dltb.shp", encoding="gbk")
    (tmp_path / "dltb.cpg").unlink()
    write(dltb_frame().set_crs(4548, allow_override=True), tmp_path / "wrongzone.gpkg", layer="YJJBNT")
    write(dltb_frame().to_crs(2383), tmp_path / "xian.gpkg", layer="STBHHX")
    nofield = dltb_frame().drop(columns=["BSM"])
    write(nofield, tmp_path / "czkfbj.gpkg", layer="CZKFBJ")
    layers = {"xzq": "xzq.gpkg", "dltb": "dltb.shp", "yjjbnt": "wrongzone.gpkg", "stbhhx": "xian.gpkg",
              "czkfbj": "czkfbj.gpkg", "ghfq": "missing.gpkg"}
    return manifest(tmp_path, layers)


def test_check_report_collects_errors_and_warnings_without_writing(tmp_path):
    m = messy_region(tmp_path)
    before = sorted(os.listdir(tmp_path))
    report = check_manifest(m)
    assert sorted(os.listdir(tmp_path)) == before
    assert not report.ok and report.target_epsg == 4547
    status = {lc.role: lc.status for lc in report.layers}
    assert status == {"xzq": "ok", "dltb": "ok", "yjjbnt": "error", "stbhhx": "error", "czkfbj": "error",
                      "ghfq": "error"}
    errors = {f.layer: f for f in report.findings if f.severity == "error"}
    assert set(errors) == {"yjjbnt", "stbhhx", "czkfbj", "ghfq"}
    assert errors["yjjbnt"].check == "crs" and errors["yjjbnt"].message == (
        "layer 'yjjbnt' lies outside the region: the CRS is EPSG:4548 but the coordinates fit zone 38; "
        "set crs: EPSG:4547")
    assert errors["stbhhx"].message.startswith("layer 'stbhhx' is on the Xian 1980 datum (EPSG:2383)")
    assert errors["czkfbj"].check == "fields" and "required field BSM (标识码) not found" in errors["czkfbj"].message
    assert errors["ghfq"].check == "source" and "missing.gpkg does not exist" in errors["ghfq"].message
    # the same one-line messages ingest would raise
    with pytest.raises(Exception) as exc:
        load_role(m, "yjjbnt", 4547)
    assert str(exc.value) == errors["yjjbnt"].message
    dltb = next(lc for lc in report.layers if lc.role == "dltb")
    assert (dltb.rows_read, dltb.rows_written, dltb.repaired, dltb.encoding) == (12, 12, 1, "gbk (detected)")
    warnings = {(f.layer, f.check): f.ids for f in report.findings if f.severity == "warning"}
    assert warnings[("dltb", "invalid_geometry_repaired")] == ["BSM0005"]
    assert warnings[("dltb", "area_large_discrepancy")] == ["BSM0005", "BSM0008"]


def test_report_text_and_json(tmp_path):
    report = check_manifest(messy_region(tmp_path))
    text = report.to_text(max_ids=1)
    assert text.startswith("入库质检报告 / ingest check report")
    assert "不能入库 NOT ready: fix the errors below — 4 error(s)" in text
    assert "[错误 error] yjjbnt · crs ×1: layer 'yjjbnt' lies outside the region" in text
    assert "ids: BSM0005 … (+1 more)" in text
    assert "dltb: EPSG:4547 [prj] → EPSG:4547; none; encoding gbk (detected); 地类编码 三调工作分类" in text
    doc = json.loads(report.to_json())
    assert doc["ok"] is False and doc["counts"]["error"] == 4
    assert doc["layers"][1]["field_mapping"]["DLBM"] == "地类编码"


def test_clean_region_is_ok(tmp_path):
    boxes = patch_boxes(size=100.0)  # a 4 × 3 tiling: no gap, no overlap, and the county is exactly its extent
    county = gpd.GeoDataFrame({"XZQDM": ["130599"], "XZQMC": ["样例县"]},
                              geometry=[shapely.box(X0, Y0, X0 + 400, Y0 + 300)], crs=4547)
    write(county, tmp_path / "xzq.gpkg", layer="xzq")
    write(dltb_frame(boxes=boxes), tmp_path / "dltb.gpkg", layer="dltb")
    report = check_manifest(manifest(tmp_path, {"xzq": "xzq.gpkg", "dltb": "dltb.gpkg"}))
    assert report.ok and [f.severity for f in report.findings if f.severity != "info"] == []
    assert "可以入库 ready to ingest — 0 error(s), 0 warning(s)" in report.to_text()


def test_unresolvable_store_crs_is_one_error(tmp_path):
    write(dltb_frame(), tmp_path / "dltb.shp")
    (tmp_path / "dltb.prj").unlink()
    report = check_manifest(manifest(tmp_path, {"dltb": "dltb.shp"}))
    assert not report.ok and report.target_epsg is None
    (err,) = report.findings
    assert (err.layer, err.check) == ("manifest", "crs")
    assert err.message.startswith("cannot choose the region's 3° zone")


SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
CHECK_NAMES = {"invalid_geometry": "invalid_geometry_repaired"}


@pytest.mark.slow
def test_sample_county_reports_its_planted_defects():
    manifest_path = SAMPLE / "manifest.yaml"
    assert manifest_path.is_file(), "data/sample is missing: run .venv/bin/python -m data.generate"
    planted = yaml.safe_load((SAMPLE / "planted.yaml").read_text(encoding="utf-8"))
    defects = planted.get("defects") or planted.get("ingest_defects") or planted["check"]
    report = check_manifest(load_manifest(manifest_path))
    assert report.ok, report.to_text()
    found: dict[tuple[str, str], set] = {}
    for f in report.findings:
        found.setdefault((f.layer, f.check), set()).update(map(str, f.ids))
    loaded = {}
    for role, checks in defects.items():
        for check, ids in checks.items():
            if check == "repaired_area_m2":  # {id: area of the repaired polygon}
                gdf = loaded.setdefault(role, load_role(load_manifest(manifest_path), role, report.target_epsg).gdf)
                key = next(c for c in ("BSM", "ZDDM", "JCBH", "PZWH") if c in gdf.columns)
                got_area = gdf.set_index(key)["area_m2"]
                for rid, area in ids.items():
                    assert got_area[str(rid)] == pytest.approx(area, abs=0.01), (role, rid)
                continue
            flat = {str(i) for group in ids for i in (group if isinstance(group, list) else [group])}
            if check == "area_mismatch":
                got = found.get((role, "area_mismatch"), set()) | found.get((role, "area_large_discrepancy"), set())
            else:
                got = found.get((role, CHECK_NAMES.get(check, check)), set())
            assert flat <= got, (role, check, sorted(flat - got))


@pytest.fixture(scope="module")
def county_variants(tmp_path_factory):
    """One generated county written clean (as data/sample) and messy (data.variants), plus the negative variants."""
    from data.generate import build_county, write_county
    from data.variants import NEGATIVE_VARIANTS, write_messy_variants

    base = tmp_path_factory.mktemp("variants")
    county = build_county()
    clean = write_county(county, base / "clean")
    messy = write_messy_variants(base / "messy", county=county)
    negative = {name: v["writer"](base / name, county=county) for name, v in NEGATIVE_VARIANTS.items()}
    return clean, messy, negative, NEGATIVE_VARIANTS


@pytest.mark.slow
def test_messy_variants_load_to_the_clean_layers(county_variants):
    clean_path, messy_path, _, _ = county_variants
    clean, messy = load_manifest(clean_path), load_manifest(messy_path)
    report = check_manifest(messy)
    assert report.ok, report.to_text()
    resolution = {lc.role: lc.crs_resolution for lc in report.layers}
    assert resolution["yjjbnt"].startswith("no CRS: 8-digit eastings → zone 38")
    encodings = {lc.role: lc.encoding for lc in report.layers}
    assert encodings["dltb"] == "gbk (detected)" and encodings["parcels"] == "gbk (cpg)"
    for role in ("dltb", "yjjbnt", "stbhhx", "parcels", "cameras"):
        a = load_role(clean, role, 4547).gdf
        b = load_role(messy, role, 4547).gdf
        assert list(b.columns) == list(a.columns), role
        attrs = [c for c in a.columns if c not in ("geometry", "area_m2")]
        assert b[attrs].equals(a[attrs]), role
        np.testing.assert_allclose(b["area_m2"], a["area_m2"], atol=0.01, err_msg=role)
        offset = shapely.hausdorff_distance(np.asarray(a.geometry.values), np.asarray(b.geometry.values))
        assert float(np.max(offset)) < 0.001, role


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wrong_zone", "swapped_axes", "no_prj_6digit"])
def test_negative_variants(county_variants, name):
    clean_path, _, negative, spec = county_variants
    report = check_manifest(load_manifest(negative[name]))
    errors = [f for f in report.findings if f.severity == "error"]
    if spec[name]["error"] is None:
        assert report.ok, report.to_text()
        a = load_role(load_manifest(clean_path), "yjjbnt", 4547).gdf
        b = load_role(load_manifest(negative[name]), "yjjbnt", 4547).gdf
        assert float(np.max(shapely.hausdorff_distance(np.asarray(a.geometry.values),
                                                       np.asarray(b.geometry.values)))) < 0.001
        return
    (error,) = errors
    assert error.layer == "yjjbnt" and error.check == "crs"
    expected = {"wrong_zone": "layer 'yjjbnt' lies outside the region: the CRS is EPSG:4547 but the coordinates "
                              "fit zone 39; set crs: EPSG:4548",
                "swapped_axes": "layer 'yjjbnt' lies outside the region: axes look swapped (x holds the northing); "
                                "swap X/Y in the source or re-export it"}[name]
    assert error.message == expected


# --- topology: overlaps, gaps, the county boundary, TBMJ rounding ----------------------------------------------

def _tiling_region(tmp_path, boxes, county=(0, 0, 400, 300), extra_layers=None):
    region = gpd.GeoDataFrame({"XZQDM": ["130599"], "XZQMC": ["样例县"]},
                              geometry=[shapely.box(X0 + county[0], Y0 + county[1], X0 + county[2],
                                                    Y0 + county[3])], crs=4547)
    write(region, tmp_path / "xzq.gpkg", layer="xzq")
    write(dltb_frame(boxes=boxes), tmp_path / "dltb.gpkg", layer="dltb")
    return check_manifest(manifest(tmp_path, {"xzq": "xzq.gpkg", "dltb": "dltb.gpkg", **(extra_layers or {})}))


def _one(report, check):
    (found,) = [f for f in report.findings if f.check == check]
    return found


def test_an_overlap_between_survey_patches_is_reported_with_ids_and_area(tmp_path):
    """Patch 2 reaches 8 m into patch 3 (an 8 m × 100 m strip): one pair, 800 m² by the geodesic reference."""
    boxes = patch_boxes(size=100.0)
    boxes[1] = shapely.box(X0 + 100, Y0, X0 + 208, Y0 + 100)
    report = _tiling_region(tmp_path, boxes)
    found = _one(report, "overlap")
    strip = geodesic_area(shapely.box(X0 + 200, Y0, X0 + 208, Y0 + 100))
    assert found.ids == ["BSM0002", "BSM0003"] and found.count == 1
    assert f"BSM0002 × BSM0003 {strip:.2f} m²" in found.message
    assert not [f for f in report.findings if f.check in ("gap", "gap_xzq")]


def test_a_gap_between_patches_and_against_the_county_is_reported(tmp_path):
    """Patch 6 (the middle of the second row) shrunk by 3 m on each side: a 3 m frame around it is a gap inside
    the coverage; the county drawn 10 m wider to the east than the patches: a 10 m × 300 m strip uncovered."""
    boxes = patch_boxes(size=100.0)
    boxes[5] = shapely.box(X0 + 103, Y0 + 103, X0 + 197, Y0 + 197)
    report = _tiling_region(tmp_path, boxes, county=(0, 0, 410, 300))
    gap = _one(report, "gap")
    frame = geodesic_area(shapely.box(X0 + 100, Y0 + 100, X0 + 200, Y0 + 200)) - geodesic_area(boxes[5])
    assert gap.count == 1 and f"{frame:.2f} m² at (" in gap.message
    assert gap.ids == ["BSM0002", "BSM0005", "BSM0006", "BSM0007", "BSM0010"]
    outside = _one(report, "gap_xzq")
    strip = geodesic_area(shapely.box(X0 + 400, Y0, X0 + 410, Y0 + 300))
    assert outside.message.startswith(f"1 piece(s) of county area not covered by any patch larger than 1 m² (in all "
                                      f"{strip:.2f} m²)")


def test_gaps_and_overlaps_below_the_tolerance_are_not_findings(tmp_path):
    """A 0.5 m² notch (the mm-snapping noise of real exports is far smaller) stays below the 1 m² default."""
    boxes = patch_boxes(size=100.0)
    boxes[0] = shapely.box(X0, Y0, X0 + 100, Y0 + 100).difference(shapely.box(X0 + 99.5, Y0 + 40, X0 + 100,
                                                                             Y0 + 41))
    report = _tiling_region(tmp_path, boxes)
    assert not [f for f in report.findings if f.check in ("gap", "overlap", "gap_xzq")]


def test_overlapping_polygons_inside_a_control_line_layer(tmp_path):
    """Two CZKFBJ polygons drawn over one another by 40 m × 60 m: a self_overlap finding naming both."""
    boxes = patch_boxes(size=100.0)
    cz = gpd.GeoDataFrame({"BSM": ["CZ1", "CZ2", "CZ3"], "GHFQDM": ["01", "02", "01"]},
                          geometry=[shapely.box(X0, Y0, X0 + 140, Y0 + 60),
                                    shapely.box(X0 + 100, Y0, X0 + 300, Y0 + 80),
                                    shapely.box(X0 + 300, Y0, X0 + 400, Y0 + 80)], crs=4547)
    write(cz, tmp_path / "cz.gpkg", layer="cz")
    report = _tiling_region(tmp_path, boxes, extra_layers={"czkfbj": "cz.gpkg"})
    found = _one(report, "self_overlap")
    shared = geodesic_area(shapely.box(X0 + 100, Y0, X0 + 140, Y0 + 60))
    assert found.layer == "czkfbj" and found.ids == ["CZ1", "CZ2"]
    assert f"CZ1 × CZ2 {shared:.2f} m²" in found.message  # CZ2 and CZ3 only touch


def test_tbmj_off_by_its_rounding_is_not_a_finding(tmp_path):
    """A 3.07 m × 3.07 m patch (9.42… m²): a TBMJ one cent off its own rounding is within what 0.01 m² rounding
    allows, though 0.01 / 9.42 is 0.1 % — above the relative tolerance; two cents off is a finding."""
    boxes = patch_boxes(size=100.0)
    small = shapely.box(X0, Y0, X0 + 3.07, Y0 + 3.07)
    boxes[0] = small
    gdf = dltb_frame(boxes=boxes)
    exact = geodesic_area(small)
    for delta, flagged in ((0.005, False), (-0.005, False), (0.02, True)):
        tbmj = round(exact + delta, 2)
        gdf.loc[0, ["TBMJ", "KCXS", "KCMJ", "TBDLMJ"]] = [tbmj, 0.0, 0.0, tbmj]
        write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
        loaded = load_role(manifest(tmp_path, {"dltb": "dltb.gpkg"}), "dltb", 4547)
        hits = [f for f in loaded.findings if f.check.startswith("area_")]
        assert bool(hits) == flagged, (delta, tbmj, exact)

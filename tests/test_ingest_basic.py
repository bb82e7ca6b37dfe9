"""ingest(): every role loaded, then ONE atomic write; errors abort before anything is written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely

from layers.errors import ManifestError, SourceError, StoreError
from layers.ingest import ingest
from layers.load import load_role
from layers.store import open_store
from tests.layers_fixtures import X0, Y0, dltb_frame, manifest, patch_boxes, write, write_xzq
from tests.store_fixtures import as_multi
from tests.test_store_atomic import assert_same_snapshot, snapshot


@pytest.fixture(params=["gpkg", "postgis"])
def target(request, tmp_path):
    if request.param == "gpkg":
        return str(tmp_path / "out" / "store.gpkg")
    return request.getfixturevalue("pg_schema_url")


def small_county(folder, dltb=None, extra=None):
    """xzq (EPSG:4490 GeoPackage), dltb (shapefile, GBK), cameras (GeoJSON)."""
    import geopandas as gpd

    write_xzq(folder)
    write(dltb if dltb is not None else dltb_frame(), folder / "dltb.shp", encoding="gbk")
    cams = gpd.GeoDataFrame({"SXTBH": ["C1", "C2"], "GD": [30.0, 45.5]},
                            geometry=shapely.points([X0 + 50, X0 + 250], [Y0 + 50, Y0 + 150]), crs=4547)
    write(cams, folder / "cameras.geojson")
    layers = {"xzq": {"path": "xzq.gpkg"}, "dltb": {"path": "dltb.shp"}, "cameras": {"path": "cameras.geojson"}}
    layers.update(extra or {})
    return manifest(folder, layers)


def test_ingest_writes_every_layer_with_one_load_id(tmp_path, target):
    m = small_county(tmp_path)
    result = ingest(m, open_store(target), progress=False)
    store = open_store(target)
    assert store.layer_names() == ["cameras", "dltb", "xzq"]
    assert [s.role for s in result.layers] == ["xzq", "dltb", "cameras"]
    assert result.target_epsg == 4547
    meta = store.meta()
    assert {k: meta[k] for k in ("region_code", "region_name", "epsg", "zone", "crs", "last_load_id")} == {
        "region_code": "130599", "region_name": "样例县", "epsg": "4547", "zone": "38", "crs": "EPSG:4547",
        "last_load_id": result.load_id}
    records = store.load_records()
    assert records["layer"].tolist() == ["xzq", "dltb", "cameras"]
    assert set(records["load_id"]) == {result.load_id}
    assert records.loc[1, "rows_written"] == 12 and records.loc[1, "target_crs"] == "EPSG:4547"
    # the stored layer is exactly what the loader produced
    want = load_role(m, "dltb", 4547).gdf
    got = store.read_layer("dltb")
    assert got["BSM"].tolist() == want["BSM"].tolist()
    assert got["yzt_fid"].tolist() == list(range(1, 13))
    np.testing.assert_allclose(got["area_m2"], want["area_m2"], atol=0.005)
    # the store keeps polygons as MultiPolygon; coordinates are bit-identical
    assert (shapely.to_wkb(got.geometry.values) == shapely.to_wkb(as_multi(want.geometry.values))).all()
    assert got["ZLDWMC"].tolist() == ["张庄村"] * 12
    text = result.to_text()
    assert "EPSG:4547 (CGCS2000 3° GK zone 38, CM 114°E)" in text
    assert any(line.split()[:3] == ["dltb", "12", "12"] for line in text.splitlines())


def test_partial_ingest_replaces_only_the_given_roles(tmp_path, target):
    m = small_county(tmp_path)
    ingest(m, target, progress=False)
    store = open_store(target)
    xzq_before = store.read_layer("xzq")
    # the bureau sends a corrected dltb with 6 patches
    write(dltb_frame(n=6), tmp_path / "dltb.shp", encoding="gbk")
    result = ingest(m, target, roles=["dltb"], progress=False)
    assert [s.role for s in result.layers] == ["dltb"] and result.untouched == ["cameras", "xzq"]
    assert store.count("dltb") == 6 and store.count("cameras") == 2
    pd.testing.assert_frame_equal(store.read_layer("xzq").drop(columns="geometry"),
                                  xzq_before.drop(columns="geometry"))
    assert store.load_records()["layer"].tolist() == ["xzq", "dltb", "cameras", "dltb"]
    assert store.load_records("dltb")["rows_written"].tolist() == [12, 6]
    with pytest.raises(ManifestError, match="'parcels' not in manifest"):
        ingest(m, target, roles=["parcels"], progress=False)


def test_a_broken_layer_aborts_before_anything_is_written(tmp_path, target):
    m = small_county(tmp_path)
    ingest(m, target, progress=False)
    store = open_store(target)
    before = snapshot(store)
    file_bytes = (tmp_path / "out" / "store.gpkg").read_bytes() if target.endswith(".gpkg") else None
    # dltb is fine, but cameras (loaded after it) is now a broken file
    write(dltb_frame(n=6), tmp_path / "dltb.shp", encoding="gbk")
    (tmp_path / "cameras.geojson").write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    with pytest.raises(SourceError, match="cameras"):
        ingest(m, target, progress=False)
    assert_same_snapshot(snapshot(open_store(target)), before)
    if file_bytes is not None:
        assert (tmp_path / "out" / "store.gpkg").read_bytes() == file_bytes


def test_a_store_of_another_region_is_refused(tmp_path, target):
    m = small_county(tmp_path)
    ingest(m, target, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    write(dltb_frame(), other / "dltb.shp", encoding="gbk")
    m2 = manifest(other, {"dltb": {"path": "dltb.shp"}}, crs="EPSG:4547", code="130600")
    with pytest.raises(StoreError, match="holds region 130599"):
        ingest(m2, target, progress=False)
    assert open_store(target).meta()["region_code"] == "130599"


def test_findings_are_stored_with_the_load(tmp_path, target):
    frame = dltb_frame()
    frame.loc[0, "TBMJ"] = round(frame.loc[0, "TBMJ"] * 1.5, 2)  # an export 50 % off its geometry
    m = small_county(tmp_path, dltb=frame)
    result = ingest(m, target, progress=False)
    stored = open_store(target).findings(load_id=result.load_id)
    assert len(stored) == len(result.findings) > 0
    assert stored["check"].tolist() == [f.check for f in result.findings]
    mismatch = stored[stored["layer"] == "dltb"]
    assert any("BSM0001" in ids for ids in mismatch["ids"])


def test_patches_outside_the_boxes_fixture_stay_put():
    """The fixtures this module relies on: 12 boxes of 90 m in 3 rows."""
    boxes = patch_boxes()
    assert len(boxes) == 12 and boxes[0].bounds == (X0, Y0, X0 + 90, Y0 + 90)

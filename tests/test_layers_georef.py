"""Coordinates: source-CRS resolution, datum parameters, zone / axis / unit mistakes, the store's zone."""

import numpy as np
import pytest
import shapely
from pyproj.enums import TransformDirection

from layers.datum import transformer_for
from layers.errors import CRSError
from layers.load import load_role, resolve_target_epsg
from layers.manifest import DatumTransform
from tests.layers_fixtures import TARGET, dltb_frame, manifest, write, write_xzq

HELMERT = {"x": -45.9, "y": 120.3, "z": 87.6, "rx": 0.3, "ry": -0.6, "rz": 0.9, "s": -1.8}
FOUR = {"dx": -12.3, "dy": -87.1, "rotation": 1.5, "scale": 2.1}


def offset_m(loaded, expected) -> float:
    """Largest distance between the loaded geometries and the expected ones (row by row), metres."""
    return float(np.max(shapely.hausdorff_distance(np.asarray(loaded.geometry.values), np.asarray(expected))))


def reproject(geoms, transform):
    return shapely.transform(np.asarray(geoms), lambda xy: np.column_stack(transform(xy[:, 0], xy[:, 1])))


def write_dltb(folder, gdf, crs, prj=True, name="dltb.shp"):
    path = write(gdf.set_crs(crs, allow_override=True), folder / name, encoding="utf-8")
    if not prj:
        path.with_suffix(".prj").unlink(missing_ok=True)
    return path


def load(folder, layer_spec, role="dltb", **kw):
    write_xzq(folder)
    m = manifest(folder, {"xzq": "xzq.gpkg", role: layer_spec}, **kw)
    return load_role(m, role, resolve_target_epsg(m))


def test_no_prj_eight_digit_eastings_reveal_the_zone(tmp_path):
    gdf = dltb_frame()
    prefixed = gdf.to_crs(4526)
    assert prefixed.total_bounds[0] > 38_000_000
    write_dltb(tmp_path, prefixed, None, prj=False)
    loaded = load(tmp_path, "dltb.shp")
    assert loaded.record.crs_resolution == "no CRS: 8-digit eastings → zone 38 (EPSG:4526, CGCS2000 assumed)"
    assert loaded.record.source_crs == "EPSG:4526"
    assert offset_m(loaded.gdf, gdf.geometry) < 0.001


def test_no_prj_six_digit_eastings_inside_the_region(tmp_path):
    gdf = dltb_frame()
    write_dltb(tmp_path, gdf, None, prj=False)
    loaded = load(tmp_path, "dltb.shp")
    assert loaded.record.crs_resolution == ("no CRS: 6-digit eastings, inside the region in its zone 38 → "
                                            "EPSG:4547 (CGCS2000 assumed)")
    assert loaded.record.transformation == "none"
    assert offset_m(loaded.gdf, gdf.geometry) < 0.001


def test_no_prj_six_digit_eastings_outside_the_region_are_refused(tmp_path):
    gdf = dltb_frame()
    gdf.geometry = gdf.geometry.translate(-150_000, 0)  # a zone-39 easting read in zone 38 lands here
    write_dltb(tmp_path, gdf, None, prj=False)
    with pytest.raises(CRSError) as err:
        load(tmp_path, "dltb.shp")
    assert str(err.value) == ("layer 'dltb' has no CRS and a 6-digit easting that does not fall in the region in "
                              "zone 38 (EPSG:4547); set crs: EPSG:45xx in the manifest")


def test_no_prj_six_digit_and_nothing_else_to_place_the_region(tmp_path):
    write_dltb(tmp_path, dltb_frame(), None, prj=False)
    m = manifest(tmp_path, {"dltb": "dltb.shp"})
    with pytest.raises(CRSError, match=r"cannot choose the region's 3° zone: no layer has a CRS"):
        resolve_target_epsg(m)
    m = manifest(tmp_path, {"dltb": "dltb.shp"}, crs="EPSG:4547")
    with pytest.raises(CRSError, match=r"layer 'dltb' has no CRS and a 6-digit easting, and no other layer places "
                                       r"the region; set crs: EPSG:45xx in the manifest "
                                       r"\(EPSG:4547 if it is zone 38\)"):
        load_role(m, "dltb", resolve_target_epsg(m))
    m = manifest(tmp_path, {"dltb": {"path": "dltb.shp", "crs": "EPSG:4547"}}, crs="EPSG:4547")
    loaded = load_role(m, "dltb", 4547)
    assert loaded.record.crs_resolution == "manifest crs:"
    assert len(loaded.gdf) == 12 and not [f for f in loaded.findings if f.severity != "info"]


def test_no_prj_degrees_inside_the_region_are_cgcs2000(tmp_path):
    gdf = dltb_frame()
    write_dltb(tmp_path, gdf.to_crs(4490), None, prj=False)
    loaded = load(tmp_path, "dltb.shp")
    assert loaded.record.crs_resolution == "no CRS: lon/lat degrees inside the region → EPSG:4490 assumed"
    assert offset_m(loaded.gdf, gdf.geometry) < 0.001


def test_xian80_with_seven_parameters_comes_back_to_the_millimetre(tmp_path):
    gdf = dltb_frame()
    transform = DatumTransform("helmert", {**HELMERT, "convention": "coordinate_frame"})
    tr = transformer_for("EPSG:2383", transform, TARGET)
    xian = gdf.copy()
    xian.geometry = reproject(gdf.geometry, lambda x, y: tr.transform(x, y, direction=TransformDirection.INVERSE))
    shift = offset_m(xian, gdf.geometry)
    assert 20 < shift < 200  # the datums differ by tens of metres: a ballpark step would be this wrong
    write_dltb(tmp_path, xian, 2383)
    loaded = load(tmp_path, {"path": "dltb.shp", "transform": {"helmert": {**HELMERT,
                                                                           "convention": "coordinate_frame"}}})
    assert offset_m(loaded.gdf, gdf.geometry) < 0.001
    assert loaded.record.source_crs == "EPSG:2383"
    assert loaded.record.transformation.startswith("helmert: convention=coordinate_frame, rx=0.3, ry=-0.6, rz=0.9, "
                                                   "s=-1.8, x=-45.9, y=120.3, z=87.6; pipeline: +proj=pipeline")
    assert "+proj=helmert" in loaded.record.transformation
    np.testing.assert_allclose(loaded.gdf["area_m2"], dltb_frame()["TBMJ"], atol=0.011)


def test_beijing54_with_four_parameters(tmp_path):
    gdf = dltb_frame()
    transform = DatumTransform("four_param", {**FOUR, "convention": "position_vector"})
    tr = transformer_for("EPSG:2435", transform, TARGET)
    bj = gdf.copy()
    bj.geometry = reproject(gdf.geometry, lambda x, y: tr.transform(x, y, direction=TransformDirection.INVERSE))
    write_dltb(tmp_path, bj, 2435)
    loaded = load(tmp_path, {"path": "dltb.shp", "transform": {"four_param": {**FOUR,
                                                                              "convention": "position_vector"}}})
    assert offset_m(loaded.gdf, gdf.geometry) < 0.001
    assert loaded.record.transformation.startswith("four_param: convention=position_vector, dx=-12.3, dy=-87.1, "
                                                   "rotation=1.5, scale=2.1")


@pytest.mark.parametrize("kind, params", [("helmert", HELMERT), ("four_param", FOUR)])
def test_a_transform_without_its_rotation_convention_is_refused(tmp_path, kind, params):
    from layers.errors import ManifestError

    write_dltb(tmp_path, dltb_frame().to_crs(2383), 2383)
    with pytest.raises(ManifestError) as err:
        load(tmp_path, {"path": "dltb.shp", "transform": {kind: params}})
    assert str(err.value).startswith(f"layers.dltb.transform.{kind} has no convention:; the two rotation "
                                     "conventions differ by ~170 m over a county — add convention: coordinate_frame")


def test_the_two_four_parameter_conventions_rotate_opposite_ways():
    """E' = dx + k(E cosθ − N sinθ) for position_vector, E' = dx + k(E cosθ + N sinθ) for coordinate_frame:
    checked against the formulas by hand on one point."""
    import math

    e, n = 512_345.0, 4_111_222.0
    theta, k = math.radians(1.5 / 3600.0), 1 + 2.1e-6
    for convention, sign in (("position_vector", 1.0), ("coordinate_frame", -1.0)):
        # EPSG:4547 has the projection of EPSG:2435 (GK CM 114°E) on CGCS2000: the plane step is the identity
        tr = transformer_for("EPSG:2435", DatumTransform("four_param", {**FOUR, "convention": convention}),
                             "EPSG:4547")
        got = tr.transform(e, n)
        want = (-12.3 + k * (e * math.cos(theta) - sign * n * math.sin(theta)),
                -87.1 + k * (sign * e * math.sin(theta) + n * math.cos(theta)))
        assert got == pytest.approx(want, abs=1e-6)


def _control_points(source_epsg, transform, n=6):
    """同名点: CGCS2000 points of the test county and their source-datum coordinates under ``transform``."""
    from layers.datum import control_target_crs

    tr = transformer_for(f"EPSG:{source_epsg}", transform, control_target_crs(f"EPSG:{source_epsg}"))
    rng = np.random.default_rng(7)
    dst_e = 602_000 + rng.uniform(-9_000, 9_000, n)
    dst_n = 4_116_000 + rng.uniform(-9_000, 9_000, n)
    src_e, src_n = tr.transform(dst_e, dst_n, direction=TransformDirection.INVERSE)
    return [[float(a), float(b), float(c), float(d)] for a, b, c, d in zip(src_e, src_n, dst_e, dst_n)]


def test_four_parameters_fitted_to_control_points(tmp_path):
    truth = DatumTransform("four_param", {**FOUR, "convention": "position_vector"})
    tr = transformer_for("EPSG:2435", truth, TARGET)
    bj = dltb_frame()
    bj.geometry = reproject(bj.geometry, lambda x, y: tr.transform(x, y, direction=TransformDirection.INVERSE))
    write_dltb(tmp_path, bj, 2435)
    points = _control_points(2435, truth)
    (tmp_path / "points.csv").write_text("点号,X源,Y源,X目标,Y目标\n" + "\n".join(
        f"J{i + 1},{a:.4f},{b:.4f},{c:.4f},{d:.4f}" for i, (a, b, c, d) in enumerate(points)), encoding="utf-8")
    loaded = load(tmp_path, {"path": "dltb.shp",
                             "transform": {"estimate": "four_param", "control_points": "points.csv"}})
    assert offset_m(loaded.gdf, dltb_frame().geometry) < 0.002
    text = loaded.record.transformation
    assert "fitted to 6 control points" in text and "control points (points.csv, 6): residual RMS 0.00" in text


def test_seven_parameters_fitted_to_control_points(tmp_path):
    truth = DatumTransform("helmert", {**HELMERT, "convention": "coordinate_frame"})
    tr = transformer_for("EPSG:2383", truth, TARGET)
    xian = dltb_frame()
    xian.geometry = reproject(xian.geometry, lambda x, y: tr.transform(x, y, direction=TransformDirection.INVERSE))
    write_dltb(tmp_path, xian, 2383)
    points = _control_points(2383, truth, n=8)
    loaded = load(tmp_path, {"path": "dltb.shp", "transform": {"estimate": "helmert", "control_points": points}})
    assert offset_m(loaded.gdf, dltb_frame().geometry) < 0.01
    assert "control points (manifest, 8): residual RMS" in loaded.record.transformation


def test_control_points_catch_the_wrong_rotation_convention(tmp_path):
    truth = DatumTransform("helmert", {**HELMERT, "convention": "coordinate_frame"})
    tr = transformer_for("EPSG:2383", truth, TARGET)
    xian = dltb_frame()
    xian.geometry = reproject(xian.geometry, lambda x, y: tr.transform(x, y, direction=TransformDirection.INVERSE))
    write_dltb(tmp_path, xian, 2383)
    points = _control_points(2383, truth)
    loaded = load(tmp_path, {"path": "dltb.shp", "transform": {
        "helmert": {**HELMERT, "convention": "coordinate_frame"}, "control_points": points}})
    assert offset_m(loaded.gdf, dltb_frame().geometry) < 0.001
    with pytest.raises(CRSError) as err:
        load(tmp_path, {"path": "dltb.shp", "transform": {
            "helmert": {**HELMERT, "convention": "position_vector"}, "control_points": points}})
    msg = str(err.value)
    assert msg.startswith("layer 'dltb': the datum transformation helmert: convention=position_vector")
    assert "more than max_residual_m 0.5 m — a residual this large usually means the rotation convention is the " \
           "other one" in msg


@pytest.mark.parametrize("epsg, datum", [(2383, "Xian 1980"), (2435, "Beijing 1954"), (4214, "Beijing 1954")])
def test_legacy_datum_without_parameters_is_refused(tmp_path, epsg, datum):
    gdf = dltb_frame().to_crs(epsg)  # PROJ ballpark, only to make plausible coordinates
    write_dltb(tmp_path, gdf, epsg)
    with pytest.raises(CRSError) as err:
        load(tmp_path, "dltb.shp")
    assert str(err.value).startswith(f"layer 'dltb' is on the {datum} datum (EPSG:{epsg}); PROJ only has a ballpark "
                                     "transformation to CGCS2000 (tens of metres off): give the bureau's parameters "
                                     "in the manifest as transform: {helmert:")


def test_wrong_zone_in_the_prj(tmp_path):
    gdf = dltb_frame()
    write_dltb(tmp_path, gdf, 4548)  # zone-38 coordinates labelled CM 117E
    with pytest.raises(CRSError) as err:
        load(tmp_path, "dltb.shp")
    assert str(err.value) == ("layer 'dltb' lies outside the region: the CRS is EPSG:4548 but the coordinates fit "
                              "zone 38; set crs: EPSG:4547")


def test_prefixed_eastings_with_an_unprefixed_prj(tmp_path):
    write_dltb(tmp_path, dltb_frame().to_crs(4526), 4547)
    with pytest.raises(CRSError, match=r"the CRS is EPSG:4547 but the coordinates fit zone 38 \(prefixed eastings\); "
                                       r"set crs: EPSG:4526"):
        load(tmp_path, "dltb.shp")


def test_manifest_crs_overrides_a_wrong_prj(tmp_path):
    gdf = dltb_frame()
    write_dltb(tmp_path, gdf, 4548)
    loaded = load(tmp_path, {"path": "dltb.shp", "crs": "EPSG:4547"})
    assert loaded.record.crs_resolution == "manifest crs: (overrides the file's EPSG:4548)"
    assert offset_m(loaded.gdf, gdf.geometry) < 0.001


def test_swapped_axes(tmp_path):
    gdf = dltb_frame()
    swapped = gdf.copy()
    swapped.geometry = reproject(gdf.geometry, lambda x, y: (y, x))
    write_dltb(tmp_path, swapped, 4547)
    with pytest.raises(CRSError) as err:
        load(tmp_path, "dltb.shp")
    assert str(err.value) == ("layer 'dltb' lies outside the region: axes look swapped (x holds the northing); "
                              "swap X/Y in the source or re-export it")
    write_dltb(tmp_path, swapped, None, prj=False)
    with pytest.raises(CRSError, match=r"has no CRS and its axes look swapped \(x holds the northing\)"):
        load(tmp_path, "dltb.shp")


def test_degrees_labelled_as_metres(tmp_path):
    write_dltb(tmp_path, dltb_frame().to_crs(4490), 4547)
    with pytest.raises(CRSError) as err:
        load(tmp_path, "dltb.shp")
    assert str(err.value) == ("layer 'dltb' lies outside the region: the coordinates are degrees (lon/lat) but the "
                              "CRS is EPSG:4547, in metres; set crs: EPSG:4490")


def test_far_away_layer_reports_the_distance(tmp_path):
    gdf = dltb_frame().to_crs(4490)
    gdf.geometry = gdf.geometry.translate(2.0, 3.0)  # right units, right zone family, ~400 km off
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    with pytest.raises(CRSError, match=r"layer 'dltb' lies outside the region: in EPSG:4490 its features lie ~3\d\d km "
                                       r"from the region \(114\.\d+–115\.\d+°E"):
        load(tmp_path, "dltb.gpkg")


def test_some_features_outside_are_listed_not_refused(tmp_path):
    gdf = dltb_frame()
    geoms = np.asarray(gdf.geometry.values).copy()
    geoms[[2, 5]] = shapely.affinity.translate(geoms[2], 80_000, 0), shapely.affinity.translate(geoms[5], 0, -90_000)
    gdf.geometry = geoms
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    loaded = load(tmp_path, "dltb.gpkg")
    (outside,) = [f for f in loaded.findings if f.check == "outside_region"]
    assert outside.ids == ["BSM0003", "BSM0006"] and outside.severity == "warning"
    assert len(loaded.gdf) == 12


def test_wgs84_is_taken_as_cgcs2000_and_other_zones_are_reprojected(tmp_path):
    gdf = dltb_frame()
    write(gdf.to_crs(4326), tmp_path / "w.geojson", driver="GeoJSON")
    loaded = load(tmp_path, "w.geojson")
    assert offset_m(loaded.gdf, gdf.geometry) < 0.001
    assert loaded.record.transformation.startswith("WGS 84 taken as CGCS2000 (the frames differ by centimetres)")
    write(gdf.to_crs(4548), tmp_path / "z39.gpkg", layer="z39")  # correct coordinates in the neighbour zone
    loaded = load(tmp_path, "z39.gpkg")
    assert offset_m(loaded.gdf, gdf.geometry) < 0.001
    assert loaded.record.source_crs == "EPSG:4548" and loaded.record.crs_resolution == "embedded"


def test_resolve_target_epsg(tmp_path):
    write_xzq(tmp_path)
    write(dltb_frame(), tmp_path / "dltb.gpkg", layer="dltb")
    assert resolve_target_epsg(manifest(tmp_path, {"xzq": "xzq.gpkg", "dltb": "dltb.gpkg"})) == 4547
    assert resolve_target_epsg(manifest(tmp_path, {"dltb": "dltb.gpkg"}, crs="EPSG:4526")) == 4547
    assert resolve_target_epsg(manifest(tmp_path, {"dltb": "dltb.gpkg"}, crs="EPSG:4548")) == 4548
    with pytest.raises(CRSError, match=r"crs: EPSG:3857 is not a CGCS2000 3° Gauss-Krüger zone; use EPSG:4534–4554"):
        resolve_target_epsg(manifest(tmp_path, {"dltb": "dltb.gpkg"}, crs="EPSG:3857"))
    far = dltb_frame().to_crs(4490)
    far.geometry = far.geometry.translate(4.0, 0.0)
    write(far, tmp_path / "far.gpkg", layer="far")
    with pytest.raises(CRSError, match=r"the layers disagree on where the region is \(dltb near 115\.0\d°E 37\.1\d°N; "
                                       r"yjjbnt near 119\.0\d°E 37\.1\d°N\)"):
        resolve_target_epsg(manifest(tmp_path, {"dltb": "dltb.gpkg", "yjjbnt": "far.gpkg"}))
    # with xzq present, xzq decides and the far layer is the one refused at load
    m = manifest(tmp_path, {"xzq": "xzq.gpkg", "dltb": "dltb.gpkg", "yjjbnt": "far.gpkg"})
    assert resolve_target_epsg(m) == 4547
    with pytest.raises(CRSError, match=r"layer 'yjjbnt' lies outside the region"):
        load_role(m, "yjjbnt", 4547)


def test_region_zone_from_a_zone_39_county(tmp_path):
    gdf = dltb_frame().to_crs(4490)
    gdf.geometry = gdf.geometry.translate(3.0, 0.0)  # ≈118.0°E: zone 39
    write(gdf, tmp_path / "dltb.gpkg", layer="dltb")
    assert resolve_target_epsg(manifest(tmp_path, {"dltb": "dltb.gpkg"})) == 4548

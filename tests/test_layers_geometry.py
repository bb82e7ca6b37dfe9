"""Geometry checks: bow-tie repair, empties, collapsed rings, duplicates, wrong types, Z values."""

import numpy as np
import pytest
import shapely

from layers.errors import GeometryError
from layers.geometry import clean_geometries
from layers.load import load_role
from tests.layers_fixtures import X0, Y0, dltb_frame, geodesic_area, manifest, write, write_xzq


def bowtie(x, y, s=90.0):
    return shapely.Polygon([(x, y), (x + s, y + s), (x + s, y), (x, y + s), (x, y)])


def bowtie_halves(x, y, s=90.0):
    """What the bow-tie encloses, built by hand: two triangles meeting at the centre."""
    c = (x + s / 2, y + s / 2)
    return shapely.MultiPolygon([shapely.Polygon([(x, y), c, (x, y + s)]),
                                 shapely.Polygon([c, (x + s, y + s), (x + s, y)])])


def load_dltb(tmp_path, gdf, driver="GPKG"):
    write_xzq(tmp_path)
    name = "dltb.gpkg" if driver == "GPKG" else "dltb.geojson"
    write(gdf, tmp_path / name, **({"layer": "dltb"} if driver == "GPKG" else {"driver": "GeoJSON"}))
    m = manifest(tmp_path, {"xzq": "xzq.gpkg", "dltb": name})
    return load_role(m, "dltb", 4547)


def test_bowties_are_repaired_counted_and_measured(tmp_path):
    gdf = dltb_frame()
    geoms = np.asarray(gdf.geometry.values).copy()
    corners = [shapely.get_coordinates(geoms[i])[:, :].min(axis=0) for i in (2, 4)]
    geoms[2], geoms[4] = bowtie(*corners[0]), bowtie(*corners[1])
    gdf.geometry = geoms
    assert not shapely.is_valid(geoms[[2, 4]]).any()
    loaded = load_dltb(tmp_path, gdf)
    assert loaded.record.repaired == 2
    (finding,) = [f for f in loaded.findings if f.check == "invalid_geometry_repaired"]
    assert finding.ids == ["BSM0003", "BSM0005"] and finding.count == 2
    assert "Self-intersection ×2" in finding.message
    repaired = loaded.gdf.set_index("BSM").loc[["BSM0003", "BSM0005"]]
    assert shapely.is_valid(repaired.geometry.values).all()
    assert set(repaired.geometry.geom_type) == {"MultiPolygon"}
    expected = [round(geodesic_area(bowtie_halves(*c)), 2) for c in corners]
    np.testing.assert_allclose(repaired["area_m2"], expected, atol=0.01)
    assert expected[0] == pytest.approx(round(geodesic_area(shapely.box(*corners[0], *(corners[0] + 90))) / 2, 2),
                                        abs=0.01)
    # the repair changed the area: TBMJ (of the intended square) now differs by 50 % → large discrepancy
    (large,) = [f for f in loaded.findings if f.check == "area_large_discrepancy"]
    assert large.ids == ["BSM0003", "BSM0005"]


def test_empty_and_collapsed_geometries_are_dropped(tmp_path):
    gdf = dltb_frame()
    geoms = np.asarray(gdf.geometry.values).copy()
    geoms[1] = None
    geoms[3] = shapely.Polygon([(X0, Y0), (X0 + 10, Y0), (X0 + 20, Y0), (X0, Y0)])  # zero area
    gdf.geometry = geoms
    loaded = load_dltb(tmp_path, gdf)
    assert loaded.record.rows_read == 12 and loaded.record.rows_written == 10
    assert loaded.record.dropped_empty == 2
    by_check = {f.check: f for f in loaded.findings}
    assert by_check["empty_geometry"].ids == ["BSM0002"]
    assert by_check["collapsed_on_repair"].ids == ["BSM0004"]
    assert loaded.gdf["yzt_fid"].tolist() == list(range(1, 11))
    assert "BSM0002" not in loaded.gdf["BSM"].tolist()


def test_exact_duplicates_are_reported_and_kept(tmp_path):
    gdf = dltb_frame()
    geoms = np.asarray(gdf.geometry.values).copy()
    ring = shapely.get_coordinates(geoms[0])[:-1]
    geoms[7] = shapely.Polygon(np.roll(ring, 2, axis=0))  # same polygon, other start vertex
    geoms[9] = geoms[0]
    gdf.geometry = geoms
    loaded = load_dltb(tmp_path, gdf)
    assert loaded.record.duplicates == 2 and len(loaded.gdf) == 12
    (dup,) = [f for f in loaded.findings if f.check == "duplicate_geometry"]
    assert dup.ids == ["BSM0001", "BSM0008", "BSM0010"]
    assert "BSM0001=BSM0008=BSM0010" in dup.message


def test_stray_lines_are_dropped_and_a_line_layer_is_refused():
    geoms = np.array([shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3), shapely.LineString([(0, 0), (5, 5)])])
    ids = np.array(["a", "b", "c"], dtype=object)
    result = clean_geometries(geoms, "dltb", ids, "layer 'dltb'")
    assert result.keep.tolist() == [True, True, False]
    (f,) = result.findings
    assert (f.check, f.ids) == ("not_polygon", ["c"]) and "LineString" in f.message
    lines = np.array([shapely.LineString([(0, 0), (1, i)]) for i in range(3)])
    with pytest.raises(GeometryError, match=r"layer 'dltb': 3 of 3 features are not polygons \(LineString; e.g. "
                                            r"\['a', 'b', 'c'\]\); this role needs a polygon layer"):
        clean_geometries(lines, "dltb", ids, "layer 'dltb'")


def test_collections_keep_their_polygonal_parts_and_z_is_dropped():
    gc = shapely.GeometryCollection([shapely.box(0, 0, 2, 2), shapely.LineString([(5, 5), (6, 6)]),
                                     shapely.Point(9, 9)])
    z = shapely.Polygon([(0, 0, 5), (1, 0, 5), (1, 1, 5), (0, 0, 5)])
    result = clean_geometries(np.array([gc, z]), "stbhhx", np.array(["g", "z"], dtype=object), "layer 'stbhhx'")
    assert result.geoms[0].equals(shapely.box(0, 0, 2, 2))
    assert not shapely.has_z(result.geoms).any()
    assert [f.check for f in result.findings] == ["z_dropped"]


def test_point_roles_need_points():
    ids = np.array(["c1", "c2"], dtype=object)
    result = clean_geometries(np.array([shapely.MultiPoint([(1, 2)]), shapely.Point(3, 4)]), "cameras", ids, "x")
    assert [g.geom_type for g in result.geoms] == ["Point", "Point"]
    with pytest.raises(GeometryError, match=r"x: 1 feature\(s\) are not points \(Polygon ×1; e.g. \['c2'\]\)"):
        clean_geometries(np.array([shapely.Point(1, 2), shapely.box(0, 0, 1, 1)]), "cameras", ids, "x")

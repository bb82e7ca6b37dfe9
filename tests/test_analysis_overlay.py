"""Overlay core: hand-checked golden case, equality with geopandas.overlay on real-shaped data, edge cases."""

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from analysis._overlay_tiles import build_tiles, locate, polygonal_part
from analysis.overlay import coverage, overlay_area, overlay_chunk, overlay_pieces
from layers.area import ellipsoidal_area
from layers.errors import CRSError, GeometryError

DATA = Path(__file__).parent / "data" / "overlay"
EPSG = 4547
E0, N0 = 589_000.0, 4_110_000.0  # inside the sample county, zone 38


def gdf(geoms, crs=EPSG):
    return gpd.GeoDataFrame({"id": np.arange(len(geoms))}, geometry=list(geoms), crs=crs)


# ------------------------------------------------------------------------------------------------ golden

def test_golden_pieces_match_hand_computed_areas():
    left = gpd.read_file(DATA / "left.geojson")
    right = gpd.read_file(DATA / "right.geojson")
    expected = pd.read_csv(DATA / "expected_pieces.csv")
    got = overlay_pieces(left, right)
    assert got[["left", "right"]].values.tolist() == expected[["left", "right"]].values.tolist()
    # the golden case sits on the central meridian (easting 500 000): ellipsoidal = planar to < 1e-4 m²
    np.testing.assert_allclose(got["area_m2"], expected["area_m2"], atol=0.01, rtol=0)
    np.testing.assert_allclose(got.geometry.area, expected["area_m2"], atol=1e-6, rtol=0)
    assert set(got.geom_type) <= {"Polygon", "MultiPolygon"}
    # fast paths hand back the input polygon itself: R3 inside L1, L2 inside R4
    assert got.geometry.iloc[3].equals(right.geometry.iloc[3])
    assert got.geometry.iloc[5].equals(left.geometry.iloc[2])
    assert got.crs == left.crs


def test_golden_coverage_counts_overlapping_rights_once():
    left = gpd.read_file(DATA / "left.geojson")
    right = gpd.read_file(DATA / "right.geojson")
    expected = pd.read_csv(DATA / "expected_coverage.csv")
    got = coverage(left, right, keep_geometry=True)
    np.testing.assert_allclose(got["area_m2"], expected["area_m2"], atol=0.01, rtol=0)
    np.testing.assert_allclose(got["covered_m2"], expected["covered_m2"], atol=0.01, rtol=0)
    np.testing.assert_allclose(got["uncovered_m2"], expected["uncovered_m2"], atol=0.01, rtol=0)
    assert got["right_ids"].tolist() == [[int(v) for v in s.split()] for s in expected["right_ids"]]
    np.testing.assert_allclose(got["covered_share"], [3200 / 9600, 1.0, 1.0], rtol=1e-9)
    np.testing.assert_allclose(got.geometry.area, expected["covered_m2"], atol=1e-6)


def test_golden_matches_geopandas():
    left = gpd.read_file(DATA / "left.geojson")
    right = gpd.read_file(DATA / "right.geojson")
    assert_same_as_geopandas(left, right)


# ------------------------------------------------------------------------------- real-shaped data vs geopandas

def irregular_boundary(cx, cy, radius, n=300, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = radius * (1 + 0.12 * np.sin(5 * t + rng.uniform(0, 6)) + 0.05 * np.cos(13 * t) + 0.02 * np.sin(41 * t))
    return shapely.Polygon(np.c_[cx + r * np.cos(t), cy + r * np.sin(t)])


def voronoi_patches(n, seed=1, radius=1500.0):
    """Land-use-like patches: Voronoi cells clipped to an irregular boundary, edges segmentized."""
    rng = np.random.default_rng(seed)
    bnd = irregular_boundary(E0, N0, radius, seed=seed)
    pts = shapely.points(rng.uniform(E0 - radius * 1.2, E0 + radius * 1.2, n),
                         rng.uniform(N0 - radius * 1.2, N0 + radius * 1.2, n))
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts)))
    cells = shapely.intersection(cells, bnd)
    cells = cells[(shapely.get_type_id(cells) == 3) & (shapely.area(cells) > 1)]
    cells = shapely.segmentize(cells, 20.0)
    # 1 mm coordinates, as stored: neighbours then share their vertices exactly (no rounding slivers)
    cells = shapely.set_coordinates(cells, np.round(shapely.get_coordinates(cells), 3))
    return cells[shapely.is_valid(cells)]


def right_layer(seed=2):
    """Control-line-like polygons: blobs with holes, multipolygons, overlapping features, one big polygon."""
    rng = np.random.default_rng(seed)
    geoms = []
    for _ in range(25):
        cx, cy = E0 + rng.uniform(-1400, 1400), N0 + rng.uniform(-1400, 1400)
        outer = irregular_boundary(cx, cy, rng.uniform(80, 350), n=int(rng.integers(20, 120)),
                                   seed=int(rng.integers(1e6)))
        if rng.random() < 0.4:  # a hole
            outer = outer.difference(irregular_boundary(cx, cy, 40, n=30, seed=3))
        if rng.random() < 0.3:  # a multipolygon
            outer = shapely.union(outer, shapely.Point(cx + 500, cy).buffer(60, quad_segs=6))
        geoms.append(outer)
    # one large polygon with thousands of vertices and a hole (a red line): exercises the local parts
    big = irregular_boundary(E0 - 500, N0 + 300, 900, n=4000, seed=9)
    big = big.difference(irregular_boundary(E0 - 500, N0 + 300, 200, n=500, seed=10))
    geoms.append(big)
    return np.array(geoms, dtype=object)


def geopandas_areas(left, right) -> pd.Series:
    """Piece areas of geopandas.overlay(intersection, keep_geom_type=True), indexed by (left, right) positions."""
    lg = left.assign(__l=np.arange(len(left)))[["__l", "geometry"]]
    rg = right.assign(__r=np.arange(len(right)))[["__r", "geometry"]]
    ref = gpd.overlay(lg, rg, how="intersection", keep_geom_type=True)
    ref = ref[ref.area > 0]
    return ref.set_index(["__l", "__r"]).geometry.area.sort_index()


def assert_same_as_geopandas(left, right, reference=None, **kwargs):
    ours = overlay_pieces(left, right, **kwargs)
    a = ours.set_index(["left", "right"]).geometry.area
    b = geopandas_areas(left, right) if reference is None else reference
    assert set(a.index) == set(b.index), "same (left, right) pairs with positive area"
    b = b.reindex(a.index)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-9, atol=0)
    assert a.sum() == pytest.approx(b.sum(), rel=1e-12)
    # the reported area is the ellipsoidal area of each piece
    np.testing.assert_allclose(ours["area_m2"], ellipsoidal_area(ours.geometry, ours.crs), rtol=1e-12)
    # pieces sorted by (left, right), polygonal
    assert ours[["left", "right"]].apply(tuple, axis=1).is_monotonic_increasing
    assert set(ours.geom_type) <= {"Polygon", "MultiPolygon"}
    return ours


@pytest.fixture(scope="module")
def real_shaped():
    return gdf(voronoi_patches(2500)), gdf(right_layer())


@pytest.fixture(scope="module")
def real_shaped_reference(real_shaped):
    return geopandas_areas(*real_shaped)


def test_real_shaped_equals_geopandas(real_shaped, real_shaped_reference):
    left, right = real_shaped
    ours = assert_same_as_geopandas(left, right, real_shaped_reference)
    assert len(ours) > 1000  # the layers really overlap
    assert (ours.groupby("left").size() > 1).any()  # overlapping right features give several pieces


@pytest.mark.parametrize("kwargs", [
    dict(workers=1, chunk_size=10_000_000),
    dict(workers=2, chunk_size=97),  # many small chunks on two threads
    dict(workers=2, max_vertices=24),  # every right polygon cut into local parts
    dict(workers=1, max_vertices=10_000_000),  # no local parts at all
])
def test_chunking_threads_and_local_parts_do_not_change_the_result(real_shaped, real_shaped_reference, kwargs):
    left, right = real_shaped
    assert_same_as_geopandas(left, right, real_shaped_reference, **kwargs)


@pytest.mark.slow
def test_swapped_sides_equal_geopandas(real_shaped):
    """Big polygons on the left: the left side is cut into local parts too."""
    left, right = real_shaped
    assert_same_as_geopandas(right, left, max_vertices=64)


def test_overlay_area_equals_pieces(real_shaped):
    left, right = real_shaped
    pieces = overlay_pieces(left, right)
    areas = overlay_area(left, right)
    assert "geometry" not in areas.columns
    pd.testing.assert_frame_equal(areas, pd.DataFrame(pieces.drop(columns="geometry")))


@pytest.mark.slow
def test_coverage_equals_union_area(real_shaped):
    left, right = real_shaped
    cov = coverage(left, right)
    union = shapely.union_all(right.geometry.values)
    expected = ellipsoidal_area(shapely.intersection(left.geometry.values, union), EPSG)
    np.testing.assert_allclose(cov["covered_m2"], expected, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(cov["covered_m2"] + cov["uncovered_m2"], cov["area_m2"], rtol=1e-12)
    # with overlapping right features the plain sum of pieces double counts; coverage does not
    pieces = overlay_area(left, right).groupby("left")["area_m2"].sum()
    assert (pieces > cov.set_index("left").loc[pieces.index, "covered_m2"] + 1).any()


# ------------------------------------------------------------------------------------------------ edge cases

def square(x, y, size):
    return shapely.box(E0 + x, N0 + y, E0 + x + size, N0 + y + size)


def test_touching_pairs_give_no_piece():
    left = gdf([square(0, 0, 10), square(30, 0, 10)])
    right = gdf([square(10, 0, 10),  # shares an edge with left 0
                 square(40, 10, 5)])  # shares a corner with left 1
    out = overlay_pieces(left, right)
    assert len(out) == 0
    assert list(out.columns) == ["left", "right", "area_m2", "geometry"]


def test_identical_geometries_give_the_whole_polygon():
    cells = voronoi_patches(200, seed=5)
    out = overlay_pieces(gdf(cells), gdf(cells))
    same = out[out["left"] == out["right"]]
    assert len(same) == len(cells)
    np.testing.assert_allclose(same["area_m2"], ellipsoidal_area(cells, EPSG), rtol=1e-12)
    # neighbouring cells share edges exactly: no other pair has area
    assert len(out) == len(cells)
    assert_same_as_geopandas(gdf(cells), gdf(cells))


@pytest.mark.parametrize("n_left, n_right", [(0, 3), (3, 0), (0, 0)])
def test_empty_inputs(n_left, n_right):
    left = gdf([square(0, 0, 10)] * n_left)
    right = gdf([square(5, 5, 10)] * n_right)
    out = overlay_pieces(left, right)
    assert len(out) == 0 and out.crs == left.crs
    assert list(out.columns) == ["left", "right", "area_m2", "geometry"]
    assert list(overlay_area(left, right).columns) == ["left", "right", "area_m2"]
    assert len(coverage(left, right)) == n_left


def test_missing_and_empty_geometries_keep_positions():
    left = gdf([None, shapely.Polygon(), square(0, 0, 10)])
    right = gdf([shapely.Polygon(), square(5, 0, 10), None])
    out = overlay_pieces(left, right)
    assert out[["left", "right"]].values.tolist() == [[2, 1]]
    assert out["area_m2"].iloc[0] == pytest.approx(50.0, abs=0.01)


def test_crs_mismatch_raises():
    left = gdf([square(0, 0, 10)])
    right = gdf([square(5, 5, 10)], crs=4526)  # same zone, prefixed eastings: a different CRS
    with pytest.raises(CRSError, match="CRS mismatch"):
        overlay_pieces(left, right)
    with pytest.raises(CRSError, match="mismatch"):
        coverage(left, right)


def test_missing_crs_raises():
    with pytest.raises(CRSError, match="no CRS"):
        overlay_pieces(gdf([square(0, 0, 10)], crs=None), gdf([square(5, 5, 10)]))


def test_invalid_polygon_raises_naming_its_position():
    bowtie = shapely.Polygon([(E0, N0), (E0 + 10, N0 + 10), (E0 + 10, N0), (E0, N0 + 10)])
    left = gdf([square(0, 0, 10), bowtie])
    with pytest.raises(GeometryError, match=r"invalid left polygon.*\[1\]"):
        overlay_pieces(left, gdf([square(5, 5, 10)]))


def test_non_polygons_raise():
    with pytest.raises(GeometryError, match="LineString"):
        overlay_pieces(gdf([shapely.LineString([(E0, N0), (E0 + 5, N0 + 5)])]), gdf([square(0, 0, 10)]))


def test_geoseries_input_and_bad_arguments():
    left = gpd.GeoSeries([square(0, 0, 10)], crs=EPSG)
    right = gpd.GeoSeries([square(5, 5, 10)], crs=EPSG)
    out = overlay_pieces(left, right)
    assert out["area_m2"].iloc[0] == pytest.approx(25.0, abs=0.01)
    with pytest.raises(ValueError, match="workers"):
        overlay_pieces(left, right, workers=0)


# ------------------------------------------------------------------------------------------------ building blocks

def test_overlay_chunk_is_pure_and_matches_the_driver(real_shaped):
    left, right = real_shaped
    lg, rg = left.geometry.values.to_numpy(), right.geometry.values.to_numpy()
    li, ri = shapely.STRtree(rg).query(lg)
    res = overlay_chunk(lg, rg, li, ri, crs=left.crs)
    assert not shapely.is_prepared(rg).any() and not shapely.is_prepared(lg).any()
    got = pd.DataFrame({"left": li[res.pair], "right": ri[res.pair], "area_m2": res.area_m2})
    got = got.sort_values(["left", "right"]).reset_index(drop=True)
    ref = overlay_area(left, right, max_vertices=10_000_000)
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)


def test_polygonal_part_keeps_only_area():
    poly = square(0, 0, 10)
    line = shapely.LineString([(E0, N0), (E0 - 5, N0)])
    out = polygonal_part(np.array([
        shapely.GeometryCollection([poly, line]),
        shapely.GeometryCollection([poly, square(20, 0, 5), shapely.Point(E0, N0)]),
        line, shapely.Point(E0, N0), shapely.Polygon(), poly,
    ], dtype=object))
    assert out[0].equals(poly)
    assert out[1].geom_type == "MultiPolygon" and out[1].area == pytest.approx(125.0)
    assert list(out[2:5]) == [None, None, None]
    assert out[5] is poly


@pytest.mark.slow
def test_local_parts_hold_the_query_box():
    big = np.array([right_layer()[-1]], dtype=object)
    tiles = build_tiles(big, 64)
    assert len(tiles) > 20
    rng = np.random.default_rng(4)
    x, y = E0 - 500 + rng.uniform(-900, 900, 500), N0 + 300 + rng.uniform(-900, 900, 500)
    s = rng.uniform(1, 300, 500)
    qb = np.c_[x, y, x + s, y + s]
    node = locate(tiles, np.zeros(500, dtype=np.int64), qb)
    assert (node >= 0).all()
    level = tiles.level[node]
    size = tiles.size[0] / (1 << level)
    xmin = tiles.origin_x[0] + tiles.ci[node] * size - size / 2
    ymin = tiles.origin_y[0] + tiles.cj[node] * size - size / 2
    assert ((qb[:, 0] >= xmin) & (qb[:, 2] <= xmin + 2 * size)
            & (qb[:, 1] >= ymin) & (qb[:, 3] <= ymin + 2 * size)).all()
    assert (level > 0).mean() > 0.9  # almost every query gets a local part, not the whole polygon
    # and the part agrees with the polygon inside the query box
    boxes = shapely.box(*qb.T)
    parts = tiles.geometry[node]
    present = np.where(shapely.is_missing(parts), shapely.Polygon(), parts)
    np.testing.assert_allclose(shapely.area(shapely.intersection(present, boxes)),
                               shapely.area(shapely.intersection(big[0], boxes)), rtol=1e-9, atol=1e-6)

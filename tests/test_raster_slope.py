"""Slope (Horn) and 耕地坡度级别 grades: planes of known gradient, a geographic grid, blocks vs whole array,
area-weighted majority per patch."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import CRS, Geod

from analysis.raster.coverage import cell_areas, coverage_fractions
from analysis.raster.slope import iter_slope_blocks, patch_grades, slope_array, slope_grades
from layers.errors import CRSError, RuleError
from layers.raster import ArrayRaster

GK = CRS.from_epsg(4547)
GEO = CRS.from_epsg(4490)
TR = Affine(10.0, 0, 600_000.0, 0, -10.0, 4_120_000.0)
GEOD = Geod(a=6378137.0, rf=298.257222101)


def plane(deg: float, aspect_deg: float, shape=(60, 80), cell=10.0) -> np.ndarray:
    g = math.tan(math.radians(deg))
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    east, north = cols * cell, -rows * cell
    a = math.radians(aspect_deg)
    return 50.0 + g * (east * math.sin(a) + north * math.cos(a))


@pytest.mark.parametrize("deg,grade", [(0.0, 1), (1.0, 1), (1.99, 1), (2.01, 2), (5.99, 2), (6.01, 3), (14.99, 3),
                                       (15.01, 4), (24.99, 4), (25.01, 5), (40.0, 5)])
@pytest.mark.parametrize("aspect", [0.0, 37.0, 135.0, 270.0])
def test_plane_gives_its_slope_and_grade_everywhere(deg, grade, aspect):
    s = slope_array(plane(deg, aspect), TR, GK)
    assert np.allclose(s, deg, atol=1e-9)  # edges and corners included
    assert set(np.unique(slope_grades(s))) == {grade}


def test_grade_bounds_are_upper_inclusive():
    s = np.array([0.0, 2.0, 2.0000001, 6.0, 15.0, 25.0, 25.0000001, np.nan])
    g = slope_grades(s)
    assert g[:7].tolist() == [1, 1, 2, 2, 3, 4, 5]
    assert np.isnan(g[7])
    with pytest.raises(RuleError):
        slope_grades(s, (2, 15, 6, 25))


def test_geographic_grid_uses_geodesic_cell_sizes():
    """A north-facing plane on a 1/3″ grid at 37°N: z rises 0.2 m per metre of meridian arc → 11.3099°."""
    res = 1.0 / 10800.0
    tr = Affine(res, 0, 115.0, 0, -res, 37.2)
    rows = 50
    lat = 37.2 - res * (np.arange(rows) + 0.5)
    _, _, arc = GEOD.inv(np.full(rows, 115.0), np.full(rows, 37.0), np.full(rows, 115.0), lat)
    z = np.repeat((0.2 * arc)[:, None], 40, axis=1)
    s = slope_array(z, tr, GEO)
    assert np.allclose(s, math.degrees(math.atan(0.2)), atol=1e-6)
    # the same east-west gradient in metres: per-row dx shrinks with cos(latitude)
    _, _, dx = GEOD.inv(np.full(rows, 115.0), lat, np.full(rows, 115.0 + res), lat)
    z2 = (np.arange(40)[None, :] * dx[:, None]) * 0.1  # 0.1 m per metre east, row by row
    s2 = slope_array(z2, tr, GEO)
    assert np.allclose(s2[:, 1:-1], math.degrees(math.atan(0.1)), atol=1e-6)


@pytest.mark.parametrize("block", [7, 32, 64, 1000])
def test_blocks_equal_whole_array_bit_for_bit(block):
    rng = np.random.default_rng(5)
    z = plane(12.0, 60.0, (150, 170)) + rng.normal(0, 3, (150, 170))
    z[40:44, 50:53] = np.nan  # a hole
    z[0, :5] = np.nan
    whole = slope_array(z, TR, GK)
    src = ArrayRaster(z, TR, GK)
    tiled = np.full_like(whole, -1.0)
    for win, s in iter_slope_blocks(src, block):
        tiled[win.row_off:win.row_off + win.height, win.col_off:win.col_off + win.width] = s
    assert np.array_equal(whole, tiled, equal_nan=True)
    assert np.isnan(whole[40:44, 50:53]).all() and np.isfinite(whole[39, 50])


def test_patch_majority_is_area_weighted_with_exact_shares():
    # west half 3° (grade 2), east half 20° (grade 4): a patch 70 % west, 30 % east, with fractional edge cells
    g_w, g_e = math.tan(math.radians(3)), math.tan(math.radians(20))
    cols = np.arange(80)
    x = cols * 10.0
    z_row = np.where(cols < 40, g_w * x, g_w * 400 + g_e * (x - 400))
    z = np.repeat(z_row[None, :], 60, axis=0)
    src = ArrayRaster(z, TR, GK)
    x0 = 600_000.0
    p1 = shapely.box(x0 + 400 - 212.5, 4_120_000 - 303.3, x0 + 400 + 91.07, 4_120_000 - 101.1)  # west 212.5, east 91.07
    p2 = shapely.box(x0 + 500.5, 4_120_000 - 400, x0 + 700.5, 4_120_000 - 200)  # all east
    res = patch_grades(src, gpd.GeoSeries([p1, p2], crs=4547))
    # the cells of column 40 mix the two gradients (Horn's window straddles the break at x = 400 m): grade 3
    s = slope_array(z, TR, GK)
    grades = slope_grades(s)
    exp = {}
    rows, cols_, frac = coverage_fractions(p1, TR, z.shape)
    for gval in (1, 2, 3, 4, 5):
        exp[gval] = float((frac * (grades[rows, cols_] == gval)).sum() / frac.sum())
    assert res.loc[0, "grade"] == 2
    for gval in (1, 2, 3, 4, 5):
        assert res.loc[0, f"share_{gval}"] == pytest.approx(exp[gval], abs=1e-12)
    assert res.loc[0, "share_2"] == pytest.approx(21.25 / 30.357, abs=1e-12)  # 212.5 m of 303.57 m
    assert res.loc[0, "share_3"] == pytest.approx(1.0 / 30.357, abs=1e-12)  # the mixed column, 10 m
    assert res.loc[0, "share_4"] == pytest.approx(8.107 / 30.357, abs=1e-12)
    assert res.loc[1, "grade"] == 4 and res.loc[1, "share_4"] == pytest.approx(1.0)
    assert res.loc[1, "mean_slope"] == pytest.approx(20.0, abs=1e-9)
    assert res["dem_share"].tolist() == pytest.approx([1.0, 1.0])


def test_patch_partly_off_the_dem_reports_its_coverage():
    src = ArrayRaster(plane(1.0, 0.0), TR, GK)
    p = shapely.box(600_000 - 100, 4_120_000 - 200, 600_000 + 100, 4_120_000)  # half west of the DEM
    res = patch_grades(src, gpd.GeoSeries([p], crs=4547))
    assert res.loc[0, "dem_share"] == pytest.approx(0.5, abs=1e-12)
    with pytest.raises(CRSError):
        patch_grades(src, gpd.GeoSeries([p], crs=4490))


def test_fractional_coverage_sums_to_the_exact_area():
    rng = np.random.default_rng(1)
    for _ in range(20):
        cx, cy = 600_000 + rng.uniform(100, 700), 4_120_000 - rng.uniform(100, 500)
        poly = shapely.Point(cx, cy).buffer(rng.uniform(13, 90), 7)
        poly = shapely.difference(poly, shapely.Point(cx + 5, cy).buffer(6))  # with a hole
        rows, cols, frac = coverage_fractions(poly, TR, (60, 80))
        assert frac.sum() * 100.0 == pytest.approx(poly.area, rel=1e-9)
        assert (frac > 0).all() and (frac <= 1).all()


def test_geographic_cell_areas_match_the_geodesic_area():
    res = 1.0 / 3600.0
    tr = Affine(res, 0, 115.0, 0, -res, 37.3)
    a = cell_areas(tr, GEO, 100, 3)
    for k in range(3):
        top = 37.3 - res * (100 + k)
        lon = [115.0, 115.0 + res, 115.0 + res, 115.0]
        lat = [top, top, top - res, top - res]
        area, _ = GEOD.polygon_area_perimeter(lon, lat)
        assert a[k] == pytest.approx(abs(area), rel=1e-9)

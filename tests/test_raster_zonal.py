"""Zonal statistics exact on a tiny raster; windowed reading and reprojection; raster CRS checks."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.warp import reproject
from rasterio.windows import Window

from analysis.raster.zonal import zonal_stats
from layers.errors import CRSError, SourceError
from layers.raster import ArrayRaster, RasterSource, warp_bounds

GK = CRS.from_epsg(4547)
TR = Affine(10.0, 0, 500_000.0, 0, -10.0, 4_100_040.0)  # 4 × 4 cells of 10 m
VALUES = np.array([[1, 1, 2, 2],
                   [1, 1, 2, 2],
                   [3, 3, 4, np.nan],
                   [3, 3, 4, 4]], dtype=float)


@pytest.fixture
def tiny():
    return ArrayRaster(VALUES, TR, GK)


def test_zonal_exact_on_a_tiny_raster(tiny):
    x0, y1 = 500_000.0, 4_100_040.0
    polys = gpd.GeoSeries([
        shapely.box(x0, y1 - 20, x0 + 20, y1),            # exactly the four 1-cells
        shapely.box(x0 + 5, y1 - 25, x0 + 25, y1 - 5),    # quarter cells: 1×1 full, others partial
        shapely.box(x0 + 20, y1 - 40, x0 + 40, y1 - 20),  # the 4s and the hole
        shapely.box(x0 + 100, y1 - 40, x0 + 120, y1),     # off the raster
        shapely.box(x0 + 30, y1 - 40, x0 + 50, y1 - 30),  # half off the raster, on one 4-cell
    ], crs=4547)
    res = zonal_stats(tiny, polys, ("mean", "majority", "share"))
    assert res.loc[0, "mean"] == 1.0 and res.loc[0, "majority"] == 1.0 and res.loc[0, "share_1"] == 1.0
    assert res.loc[0, "valid_share"] == 1.0
    # polygon 1 (a 20 m square offset by half a cell): the covered area of each value, cell by cell
    cov = {}
    for r in range(4):
        for c in range(4):
            cell = shapely.box(x0 + 10 * c, y1 - 10 * (r + 1), x0 + 10 * (c + 1), y1 - 10 * r)
            a = shapely.intersection(cell, polys[1]).area
            if a > 0 and not np.isnan(VALUES[r, c]):
                cov[VALUES[r, c]] = cov.get(VALUES[r, c], 0) + a
    w = cov
    assert w == {1.0: 225.0, 2.0: 75.0, 3.0: 75.0, 4.0: 25.0}  # 15×15, 5×15, 15×5, 5×5 m
    total = sum(w.values())
    assert total == pytest.approx(400.0)
    assert res.loc[1, "mean"] == pytest.approx(sum(k * v for k, v in w.items()) / total, abs=1e-12)
    assert res.loc[1, "majority"] == 1.0  # 225 m² of 1 (cells (0,0) 25, (0,1) 50, (1,0) 50, (1,1) 100)
    assert w[1.0] == pytest.approx(225.0)
    for k, v in w.items():
        assert res.loc[1, f"share_{int(k)}"] == pytest.approx(v / total, abs=1e-12)
    # the hole is left out of the statistics and lowers valid_share
    assert res.loc[2, "mean"] == 4.0 and res.loc[2, "valid_share"] == pytest.approx(0.75)
    assert np.isnan(res.loc[3, "mean"]) and res.loc[3, "valid_share"] == 0.0 and np.isnan(res.loc[3, "majority"])
    assert res.loc[4, "mean"] == 4.0 and res.loc[4, "valid_share"] == pytest.approx(0.5)


def test_zonal_streams_blocks_with_the_same_result(tiny):
    rng = np.random.default_rng(0)
    data = rng.integers(1, 6, (200, 230)).astype(float)
    src = ArrayRaster(data, TR, GK)
    polys = gpd.GeoSeries([shapely.Point(500_000 + rng.uniform(0, 2300), 4_100_040 - rng.uniform(0, 2000))
                           .buffer(rng.uniform(20, 400)) for _ in range(25)], crs=4547)
    a = zonal_stats(src, polys, ("mean", "majority", "share"), block=4096)
    b = zonal_stats(src, polys, ("mean", "majority", "share"), block=37)
    pd_cols = list(a.columns)
    assert list(b.columns) == pd_cols
    assert np.allclose(a.to_numpy(dtype=float), b.to_numpy(dtype=float), rtol=0, atol=1e-9, equal_nan=True)


def test_zonal_refuses_a_crs_mismatch(tiny):
    with pytest.raises(CRSError):
        zonal_stats(tiny, gpd.GeoSeries([shapely.box(0, 0, 1, 1)], crs=4490), ("mean",))


def _write(path, data, crs, transform, nodata=None, **kw):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata, tiled=True,
                       blockxsize=16, blockysize=16, **kw) as ds:
        ds.write(data, 1)


@pytest.fixture
def geographic_dem(tmp_path):
    res = 1.0 / 1200.0  # 3″
    tr = Affine(res, 0, 114.95, 0, -res, 37.25)
    rows, cols = np.mgrid[0:96, 0:112]
    data = (50 + 0.7 * cols + 0.3 * rows + 5 * np.sin(cols / 7.0) * np.cos(rows / 5.0)).astype("float32")
    path = tmp_path / "dem4490.tif"
    _write(path, data, "EPSG:4490", tr, nodata=-9999.0)
    return path


@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic"])
def test_windowed_reprojection_equals_full_reprojection(geographic_dem, resampling):
    with RasterSource(geographic_dem, "EPSG:4547", role="dem", resampling=resampling) as src:
        assert src.warped and src.grid.crs.to_epsg() == 4547
        g = src.grid
        full = np.full((g.height, g.width), np.nan)
        with rasterio.open(geographic_dem) as ds:
            data = ds.read(1, masked=True).astype("float64").filled(np.nan)
            reproject(data, full, src_transform=ds.transform, src_crs=ds.crs, src_nodata=np.nan,
                      dst_transform=g.transform, dst_crs="EPSG:4547", dst_nodata=np.nan,
                      resampling=src.resampling, tolerance=0, **src.scale)
            win = Window(37, 21, 40, 33)
            part = src.read(win, indexes=1)  # WarpedVRT window
            expected = full[21:54, 37:77]
            assert np.isfinite(expected).all()
            assert np.allclose(part, expected, rtol=0, atol=2e-5, equal_nan=True)  # VRT warps in float32
            # reproject of only the source window that covers the bounds
            t = g.window_transform(win)
            bounds = (t.c, t.f - 33 * g.res[1], t.c + 40 * g.res[0], t.f)
            out, tr = warp_bounds(ds, bounds, "EPSG:4547", g.res[0], resampling=resampling)
            assert tr == t
            assert np.allclose(out[0], expected, rtol=0, atol=1e-9, equal_nan=True)


def test_raster_in_the_store_zone_is_read_directly(tmp_path):
    data = np.arange(64 * 48, dtype="float32").reshape(48, 64)
    path = tmp_path / "z.tif"
    _write(path, data, "EPSG:4547", Affine(5, 0, 600_000, 0, -5, 4_120_000), nodata=-1.0)
    with RasterSource(path, "EPSG:4547") as src:
        assert not src.warped
        assert np.array_equal(src.read(Window(3, 4, 10, 5), indexes=1), data[4:9, 3:13])
        got = src.read_bounds((600_012, 4_119_950, 600_040, 4_119_990))
        arr, tr, win = got
        assert (int(win.col_off), int(win.row_off), int(win.width), int(win.height)) == (2, 2, 6, 8)
        assert np.array_equal(arr[0], data[2:10, 2:8]) and tr.c == 600_010 and tr.f == 4_119_990


def test_unknown_or_foreign_crs_is_refused(tmp_path):
    data = np.zeros((8, 8), dtype="float32")
    nocrs = tmp_path / "nocrs.tif"
    with rasterio.open(nocrs, "w", driver="GTiff", width=8, height=8, count=1, dtype="float32",
                       transform=Affine(10, 0, 600_000, 0, -10, 4_120_000)) as ds:
        ds.write(data, 1)
    with pytest.raises(CRSError, match="has no CRS; set crs"):
        RasterSource(nocrs, "EPSG:4547", role="dem")
    with RasterSource(nocrs, "EPSG:4547", crs="EPSG:4547", role="dem") as src:  # the manifest's crs wins
        assert not src.warped and src.grid.shape == (8, 8)
    xian = tmp_path / "xian.tif"
    _write(xian, data, "EPSG:2383", Affine(10, 0, 500_000, 0, -10, 4_120_000))  # Xian 1980 / GK CM 114E
    with pytest.raises(CRSError, match="Xian 1980.*CGCS2000"):
        RasterSource(xian, "EPSG:4547", role="dem")
    wgs = tmp_path / "wgs.tif"
    _write(wgs, data, "EPSG:4326", Affine(0.001, 0, 115, 0, -0.001, 37.2))
    with pytest.raises(CRSError, match="WGS 84"):
        RasterSource(wgs, "EPSG:4547", role="dem")
    with pytest.raises(SourceError, match="does not exist"):
        RasterSource(tmp_path / "missing.tif", "EPSG:4547", role="dem")


@pytest.mark.slow
def test_block_wide_path_for_a_partition_keeps_exact_areas():
    """Hundreds of non-overlapping polygons in one block take the sub-cell path: each polygon's covered area
    is still its exact area, and its mean differs from the exact path by a small part of a boundary cell."""
    from analysis.raster import coverage

    rng = np.random.default_rng(9)
    pts = shapely.points(rng.uniform(500_000, 502_000, 260), rng.uniform(4_098_000, 4_100_000, 260))
    region = shapely.box(500_000, 4_098_000, 502_000, 4_100_000)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=region))
    cells = shapely.intersection(cells, region)
    tr = Affine(10.0, 0, 500_000.0, 0, -10.0, 4_100_000.0)
    values = rng.normal(100, 20, (200, 200))
    fast = list(coverage.iter_coverage(cells, tr, values.shape, disjoint=True))
    assert len(fast) == len(cells) >= coverage.EXACT_BELOW
    worst = 0.0
    for i, rows, cols, frac in fast:
        assert frac.sum() * 100.0 == pytest.approx(cells[i].area, rel=1e-9)
        exact = coverage.coverage_fractions(cells[i], tr, values.shape)
        m_fast = (values[rows, cols] * frac).sum() / frac.sum()
        m_exact = (values[exact[0], exact[1]] * exact[2]).sum() / exact[2].sum()
        worst = max(worst, abs(m_fast - m_exact))
    assert worst < 1.0  # values have σ = 20; boundary cells are weighed to within 1/16 of a cell

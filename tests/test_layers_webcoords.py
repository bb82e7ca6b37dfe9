"""GCJ-02 / BD-09: forward formulas against published vectors, iterative inverses, camera layers from web maps."""

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Geod

from layers.load import load_role, resolve_target_epsg
from layers.webcoords import bd09_to_gcj02, bd09_to_wgs84, gcj02_to_bd09, gcj02_to_wgs84, wgs84_to_bd09, wgs84_to_gcj02
from tests.layers_fixtures import X0, Y0, manifest, write, write_xzq

GEOD = Geod(a=6378137.0, rf=298.257222101)

# (WGS 84 lat, lon) → (GCJ-02 lat, lon): the test vectors of the widely used eviltransform library
VECTORS = [
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),
]


@pytest.mark.parametrize("lat, lon, glat, glon", VECTORS)
def test_forward_gcj02_matches_published_vectors(lat, lon, glat, glon):
    x, y = wgs84_to_gcj02(lon, lat)
    assert (float(x), float(y)) == pytest.approx((glon, glat), abs=1e-9)


def test_round_trips_are_far_below_a_millimetre():
    rng = np.random.default_rng(7)
    lon = rng.uniform(74.0, 134.0, 5000)
    lat = rng.uniform(18.0, 53.0, 5000)
    for forward, inverse in ((wgs84_to_gcj02, gcj02_to_wgs84), (gcj02_to_bd09, bd09_to_gcj02),
                             (wgs84_to_bd09, bd09_to_wgs84)):
        back_lon, back_lat = inverse(*forward(lon, lat))
        _, _, dist = GEOD.inv(lon, lat, back_lon, back_lat)
        assert dist.max() < 1e-3
        moved = GEOD.inv(lon, lat, *forward(lon, lat))[2]
        assert moved.min() > 1.0  # the obfuscation really moves points (by up to ~1 km)


def test_outside_china_is_unchanged():
    x, y = wgs84_to_gcj02(np.array([2.35]), np.array([48.85]))
    assert (x[0], y[0]) == (2.35, 48.85)
    assert gcj02_to_wgs84(2.35, 48.85) == (2.35, 48.85)


@pytest.mark.parametrize("kind, forward", [("gcj02", wgs84_to_gcj02), ("bd09", wgs84_to_bd09)])
def test_camera_layer_in_web_coordinates_is_converted_on_input(tmp_path, kind, forward):
    truth = gpd.GeoSeries([shapely.Point(X0 + 300, Y0 + 200), shapely.Point(X0 + 900, Y0 + 50)], crs=4547)
    lonlat = truth.to_crs(4490)
    web_lon, web_lat = forward(lonlat.x.to_numpy(), lonlat.y.to_numpy())
    cams = gpd.GeoDataFrame({"摄像头编号": ["CAM-01", "CAM-02"], "GD": [35.0, 40.0]},
                            geometry=gpd.points_from_xy(web_lon, web_lat), crs=4326)
    write(cams, tmp_path / "cams.geojson", driver="GeoJSON")
    write_xzq(tmp_path)
    m = manifest(tmp_path, {"xzq": "xzq.gpkg", "cameras": {"path": "cams.geojson", "coords": kind}})
    loaded = load_role(m, "cameras", resolve_target_epsg(m))
    assert loaded.gdf["SXTBH"].tolist() == ["CAM-01", "CAM-02"]
    assert np.max(loaded.gdf.geometry.distance(truth)) < 0.001
    assert loaded.record.crs_resolution == f"manifest coords: {kind}"
    assert "by iterative inverse" in loaded.record.transformation
    assert loaded.gdf["area_m2"].tolist() == [0.0, 0.0]

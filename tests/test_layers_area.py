"""Ellipsoidal area agrees with pyproj.Geod on the CGCS2000 ellipsoid to 1e-6 relative (we see ~1e-7)."""

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from layers.area import ellipsoidal_area
from layers.errors import CRSError
from tests.layers_fixtures import geodesic_area  # pyproj.Geod on rings densified to 1 m


def blob(cx, cy, radius, n=60, holes=()):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = np.column_stack([cx + radius * np.cos(t) * (1 + 0.25 * np.sin(3 * t)), cy + radius * np.sin(t)])
    inner = [np.column_stack([cx + h * radius * np.cos(t), cy + h * radius * np.sin(t)])[::-1] for h in holes]
    return shapely.Polygon(ring, inner)


CASES = [
    ("patch at the central meridian", blob(500_000, 4_120_000, 60), 4547),
    ("patch near the zone edge", blob(640_000, 4_120_000, 60), 4547),
    ("patch west edge, low latitude", blob(360_000, 2_000_000, 80), 4547),
    ("patch far north", blob(600_000, 5_500_000, 80), 4547),
    ("county-size polygon with a hole, zone edge", blob(620_000, 4_100_000, 25_000, 200, holes=(0.3,)), 4547),
    ("multipolygon", shapely.MultiPolygon([blob(520_000, 4_120_000, 500), blob(530_000, 4_120_000, 300)]), 4547),
    ("triangle (clockwise)", shapely.Polygon([(600_000, 4_000_000), (600_000, 4_000_100), (600_100, 4_000_000)]),
     4547),
]


@pytest.mark.parametrize("name,geom,epsg", CASES, ids=[c[0] for c in CASES])
def test_matches_geodesic_area(name, geom, epsg):
    ours = ellipsoidal_area([geom], epsg)[0]
    ref = geodesic_area(geom, epsg)
    assert abs(ours - ref) / ref < 1e-6
    assert abs(ours - ref) < max(0.005, 2e-7 * ref)  # better than 0.01 m² on survey-size patches


def test_prefixed_zone_and_geographic_inputs_agree():
    geom = blob(615_000, 4_118_000, 75)
    base = ellipsoidal_area([geom], 4547)[0]
    prefixed = shapely.transform(geom, lambda xy: xy + np.array([38_000_000, 0]))
    assert ellipsoidal_area([prefixed], 4526)[0] == pytest.approx(base, rel=1e-9)
    tr = Transformer.from_crs(4547, 4490, always_xy=True)
    lonlat = shapely.transform(shapely.segmentize(geom, 5.0), lambda xy: np.column_stack(tr.transform(*xy.T)))
    assert ellipsoidal_area([lonlat], 4490)[0] == pytest.approx(base, rel=1e-6)


def test_many_random_patches_vectorised():
    rng = np.random.default_rng(7)
    n = 2000
    cx, cy = rng.uniform(370_000, 630_000, n), rng.uniform(2_500_000, 5_000_000, n)
    t = np.linspace(0, 2 * np.pi, 13)[:-1]
    r = rng.uniform(10, 200, (n, 1)) * (1 + 0.3 * np.sin(2 * t)[None, :])
    ring = np.stack([cx[:, None] + r * np.cos(t), cy[:, None] + r * np.sin(t)], -1)
    polys = shapely.polygons(np.concatenate([ring, ring[:, :1]], 1))
    ours = ellipsoidal_area(polys, "EPSG:4547")
    ref = np.array([geodesic_area(p, 4547) for p in polys[:200]])
    assert np.max(np.abs(ours[:200] - ref) / ref) < 1e-6


def test_missing_empty_and_points():
    out = ellipsoidal_area([None, shapely.Polygon(), shapely.Point(500_000, 4_000_000),
                            shapely.box(500_000, 4_000_000, 500_100, 4_000_100)], 4547)
    assert np.isnan(out[0])
    assert out[1] == 0.0 and out[2] == 0.0
    assert out[3] == pytest.approx(10_000.0, rel=1e-3)


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326", "EPSG:2383", "EPSG:32650"])
def test_refuses_crs_that_would_give_a_wrong_area(crs):
    with pytest.raises(CRSError, match="ellipsoidal area needs a CGCS2000"):
        ellipsoidal_area([shapely.box(0, 0, 1, 1)], crs)


def test_refuses_missing_crs():
    with pytest.raises(CRSError, match="no CRS"):
        ellipsoidal_area([shapely.box(0, 0, 1, 1)], None)

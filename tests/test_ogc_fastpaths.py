"""The OGC API's fast paths give the same answers as the slow ones they replace: the in-memory envelope index
against SQLite's R-tree and against brute force, the inner box of a reprojected bbox, the GeoJSON geometries
built from one ragged array against GEOS's writer, and the orjson to_json against pygeoapi's json.dumps."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import numpy as np
import pytest
import shapely

from layers.store.gpkg_pages import EnvelopeIndex
from layers.store.query import PageRequest
from services.ogc.crs import box_in_store
from services.ogc.features import geojson_geometries
from services.ogc.provider import reader_for
from tests.ogc_fixtures import X0, Y0, ogc_gpkg, ogc_layers  # noqa: F401


def _rtree_ids(path, box) -> list[int]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id FROM rtree_dltb_geom WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND "
                           "miny <= ?", (box[0], box[2], box[1], box[3])).fetchall()
    finally:
        con.close()
    return sorted(r[0] for r in rows)


@pytest.mark.parametrize("box", [
    (X0 + 150, Y0 + 150, X0 + 420, Y0 + 333),      # cuts through patches
    (X0 + 90, Y0 + 90, X0 + 100, Y0 + 100),        # exactly the gap between four patches: edges touch
    (X0 + 95, Y0 - 50, X0 + 95, Y0 + 2500),        # a vertical line through the gaps
    (X0 - 500, Y0 - 500, X0 - 100, Y0 - 100),      # outside the layer
    (X0 - 1, Y0 - 1, X0 + 5000, Y0 + 5000),        # everything
])
def test_envelope_index_matches_sqlite_rtree(ogc_gpkg, box):
    con = sqlite3.connect(f"file:{ogc_gpkg}?mode=ro", uri=True)
    env = np.array(con.execute("SELECT id, minx, miny, maxx, maxy FROM rtree_dltb_geom").fetchall(), dtype=float)
    con.close()
    ids, boxes = EnvelopeIndex(env).query(box)
    assert sorted(ids.tolist()) == _rtree_ids(ogc_gpkg, box)
    by_id = {int(r[0]): tuple(r[1:]) for r in env}
    assert all(tuple(b) == by_id[i] for i, b in zip(ids.tolist(), boxes))


@pytest.mark.parametrize("case", ["mixed", "points", "one", "empty", "line"])
def test_envelope_index_matches_brute_force(case):
    """Random boxes against every envelope tested one by one: small patches, a few huge outlines (kept apart),
    points (zero-size envelopes), a single envelope, none, all on one line."""
    rng = np.random.default_rng(7)
    n = 3000
    x, y = rng.uniform(500_000, 530_000, n), rng.uniform(4_100_000, 4_130_000, n)
    w, h = rng.uniform(0, 120, n), rng.uniform(0, 120, n)
    if case == "points":
        w[:] = h[:] = 0
    env = np.column_stack([np.arange(1, n + 1), x, y, x + w, y + h]).astype(float)
    if case == "mixed":  # a county outline, a township, a long road
        env[:3, 1:] = [[499_000, 4_099_000, 531_000, 4_131_000], [505_000, 4_105_000, 515_000, 4_112_000],
                       [500_000, 4_120_000, 530_000, 4_120_010]]
    elif case == "one":
        env = env[:1]
    elif case == "empty":
        env = env[:0]
    elif case == "line":
        env[:, 2], env[:, 4] = 4_100_000.0, 4_100_000.0
    index = EnvelopeIndex(env)
    for _ in range(300):
        cx, cy = rng.uniform(498_000, 532_000), rng.uniform(4_098_000, 4_132_000)
        r = rng.choice([0.0, 5.0, 300.0, 3000.0])
        box = (cx - r, cy - r, cx + r, cy + r)
        want = env[(env[:, 3] >= box[0]) & (env[:, 1] <= box[2]) & (env[:, 4] >= box[1]) & (env[:, 2] <= box[3])]
        ids, boxes = index.query(box)
        assert sorted(ids.tolist()) == sorted(want[:, 0].astype(int).tolist())
        assert {(int(i), *map(float, b)) for i, b in zip(ids, boxes)} == {(int(r[0]), *r[1:]) for r in want}
    if case == "mixed":
        assert sorted(index.big_ids.tolist()) == [1, 2, 3]


def test_envelope_index_counts_in_the_engine(ogc_gpkg):
    """The reader's bbox page through the index: 2 × 3 patches of the 100 m grid (ids 22, 23, 24, 42, 43, 44)."""
    reader = reader_for(ogc_gpkg)
    shape = box_in_store([Y0 + 120, X0 + 120, Y0 + 270, X0 + 350], 4547, 4547)  # EPSG:4547 is (northing, easting)
    page = reader.page("dltb", PageRequest(selection=shape, limit=10, offset=0, columns=["BSM"],
                                           with_geometry=False, count=True))
    assert page.matched == 6
    assert page.ids == [22, 23, 24, 42, 43, 44]
    assert [r[0] for r in page.rows] == ["000022", "000023", "000024", "000042", "000043", "000044"]


def test_reprojected_bbox_has_an_inner_box():
    """A CRS84 box turns by the meridian convergence (~0.7° here) in the GK zone; its inner box must lie inside
    the exact polygon and keep most of it, or every candidate would need an exact geometry test."""
    shape = box_in_store([115.06, 37.20, 115.072, 37.21], "CRS84", 4547)
    assert shape.inner is not None
    inner = shapely.box(*shape.inner)
    assert shape.polygon.covers(inner)
    assert inner.area / shape.polygon.area > 0.9
    ox0, oy0, ox1, oy1 = shape.outer
    assert ox0 < shape.inner[0] < shape.inner[2] < ox1 and oy0 < shape.inner[1] < shape.inner[3] < oy1
    lat_lon = box_in_store([37.20, 115.06, 37.21, 115.072], 4490, 4547)  # EPSG:4490: latitude first
    assert lat_lon.inner == shape.inner


@pytest.mark.parametrize("wkt", [
    "POINT (597012.5 4113000.25)",
    "LINESTRING (1 2, 3.5 4, 5 6.125)",
    "POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 3 2, 3 3, 2 2))",
    "MULTIPOINT ((1 2), (3 4))",
    "MULTILINESTRING ((1 2, 3 4), (5 6, 7 8, 9 10))",
    "MULTIPOLYGON (((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5), (5.2 5.1, 5.8 5.1, 5.8 5.7, 5.2 5.1)))",
])
def test_geojson_geometries_match_geos(wkt):
    """The items' geometries (built from one ragged coordinate array) are GEOS's GeoJSON, value for value, with
    115.10019606394621-style coordinates kept to the last digit."""
    geom = shapely.from_wkt(wkt)
    jitter = shapely.transform(geom, lambda c: c * 0.70000013 + 115.1)  # digits a float repr must keep
    geoms = np.array([jitter, jitter], dtype=object)
    assert geojson_geometries(geoms) == [json.loads(t) for t in shapely.to_geojson(geoms)]
    mixed = np.array([shapely.from_wkt("POINT (1 2)"), jitter], dtype=object)  # mixed types in one page
    assert geojson_geometries(mixed) == [json.loads(t) for t in shapely.to_geojson(mixed)]


def test_to_json_hook_equals_pygeoapi():
    from decimal import Decimal

    import pygeoapi.api.itemtypes as itemtypes
    from pygeoapi.util import to_json as pygeoapi_to_json

    from services.ogc.upstream import install, to_json

    install()
    assert itemtypes.to_json is to_json
    doc = {"type": "FeatureCollection", "numberMatched": 3, "features": [
        {"type": "Feature", "id": 1, "geometry": None,
         "properties": {"DLMC": "水田", "note": "a <b> & c", "HSX": dt.date(2024, 6, 1), "area": 1e-05,
                        "big": 4107000.123456789, "n": np.int64(7), "d": Decimal("1.5"), "ok": True, "none": None}}],
        "timeStamp": dt.datetime(2026, 11, 22, 8, 0, 0, 123000, tzinfo=dt.UTC)}
    ours, theirs = to_json(doc), pygeoapi_to_json(doc)
    assert json.loads(ours) == json.loads(theirs)
    assert "a &lt;b&gt; & c" in ours and "水田" in ours
    assert to_json(doc, pretty=True) == pygeoapi_to_json(doc, pretty=True)
    huge = {"v": 2 ** 70}  # beyond orjson's 64-bit integers: pygeoapi's own function writes it
    assert json.loads(to_json(huge)) == {"v": 2 ** 70}


def test_get_crs_hook_caches_the_same_crs():
    import pygeoapi.crs as pygeoapi_crs
    import pygeoapi.provider.base as provider_base
    import pyproj

    from services.ogc.upstream import install

    install()
    uri = "http://www.opengis.net/def/crs/EPSG/0/4547"
    first, again = pygeoapi_crs.get_crs(uri), provider_base.get_crs(uri)
    assert first is again
    assert first == pyproj.CRS.from_epsg(4547)
    crs84 = pygeoapi_crs.get_crs("http://www.opengis.net/def/crs/OGC/1.3/CRS84")
    assert crs84.to_string() == "OGC:CRS84"

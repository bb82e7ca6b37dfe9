"""The sample county through the OGC API: every stored layer is a collection whose items match the store,
on the GeoPackage and on PostGIS."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import shapely

from tests.ogc_fixtures import Served


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def sample_served(request, tmp_path_factory):
    store = str(request.getfixturevalue("sample_store" if request.param == "gpkg" else "sample_pg_store"))
    s = Served(store, tmp_path_factory.mktemp(f"ogc_sample_{request.param}"))
    yield store, s
    s.stop()


@pytest.mark.slow
def test_every_layer_is_a_collection(sample_served):
    from layers.store import open_store

    store_url, served = sample_served
    with open_store(store_url) as store:
        names = store.layer_names()
        counts = {n: store.count(n) for n in names}
        epsg = store.epsg
        dltb = store.read_layer("dltb", limit=50)
    cols = httpx.get(served.base + "/collections", timeout=60).json()["collections"]
    assert {c["id"] for c in cols} == set(names)
    for c in cols:
        assert c["storageCrs"] == f"http://www.opengis.net/def/crs/EPSG/0/{epsg}"
        r = httpx.get(f"{served.base}/collections/{c['id']}/items", params={"limit": 3}, timeout=60)
        assert r.status_code == 200, (c["id"], r.text)
        assert r.json()["numberMatched"] == counts[c["id"]], c["id"]
    # the first 50 patches, in metres (northing, easting), equal the stored geometry
    r = httpx.get(f"{served.base}/collections/dltb/items", timeout=60,
                  params={"limit": 50, "crs": f"http://www.opengis.net/def/crs/EPSG/0/{epsg}"}).json()
    assert [f["properties"]["BSM"] for f in r["features"]] == list(dltb["BSM"])
    for f, g in zip(r["features"], dltb.geometry):
        got = shapely.geometry.shape(f["geometry"])
        assert np.allclose(shapely.get_coordinates(got)[:, ::-1], shapely.get_coordinates(g))


@pytest.mark.slow
def test_sample_bbox_matches_independent_selection(sample_served):
    from layers.store import open_store

    store_url, served = sample_served
    with open_store(store_url) as store:
        dltb = store.read_layer("dltb")
    ll = dltb.to_crs(4490)
    minx, miny, maxx, maxy = ll.total_bounds
    box = (minx + (maxx - minx) * 0.41, miny + (maxy - miny) * 0.37, minx + (maxx - minx) * 0.47,
           miny + (maxy - miny) * 0.43)
    want = sorted((np.flatnonzero(ll.geometry.intersects(shapely.box(*box)).to_numpy()) + 1).tolist())
    r = httpx.get(f"{served.base}/collections/dltb/items", timeout=60,
                  params={"bbox": ",".join(map(str, box)), "limit": 10000, "skipGeometry": "true"}).json()
    assert r["numberMatched"] == len(want) > 0
    assert [f["id"] for f in r["features"]] == want

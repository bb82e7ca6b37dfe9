"""The OGC API follows the store without a restart: a layer written while the app serves becomes a collection,
and a rewritten layer's count and extent follow — on the GeoPackage and on PostGIS."""

from __future__ import annotations

import time
import uuid

import geopandas as gpd
import httpx
import pytest
import shapely

from tests.ogc_fixtures import META, X0, Y0, Served, make_layers


def _wait_for(fn, seconds: float = 15.0):
    """fn() until it returns a truthy value (PostGIS changes are looked for every 2 s)."""
    deadline = time.monotonic() + seconds
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def _parcels(n: int) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"ZDDM": [f"130599001001GB{i:05d}" for i in range(1, n + 1)], "TDYT": ["0701"] * n,
                             "yzt_fid": list(range(1, n + 1))},
                            geometry=[shapely.box(X0 + 100 * i, Y0, X0 + 100 * i + 50, Y0 + 50) for i in range(n)],
                            crs=4547)


def _collections(served) -> dict:
    return {c["id"]: c for c in httpx.get(served.base + "/collections", timeout=30).json()["collections"]}


def _check_follows_the_store(store_url: str, workdir):
    from layers.store import open_store

    layers = make_layers()
    with open_store(store_url) as store:
        store.write_layers({"dltb": layers["dltb"]}, records=[], meta=META)
    served = Served(store_url, workdir)
    try:
        assert set(_collections(served)) == {"dltb"}
        r = httpx.get(served.base + "/collections/parcels/items", timeout=30)
        assert r.status_code == 404 and "collection 'parcels' not found" in r.json()["description"]

        with open_store(store_url) as store:  # a new layer, written while the app serves
            store.write_layers({"parcels": _parcels(3)}, records=[])
        cols = _wait_for(lambda: (c := _collections(served)) and "parcels" in c and c)
        assert set(cols) == {"dltb", "parcels"}
        assert "宗地" in cols["parcels"]["title"] and "3 个要素" in cols["parcels"]["description"]
        body = httpx.get(served.base + "/collections/parcels/items", params={"limit": 10}, timeout=30).json()
        assert body["numberMatched"] == 3
        assert [f["properties"]["ZDDM"] for f in body["features"]] == [
            "130599001001GB00001", "130599001001GB00002", "130599001001GB00003"]

        with open_store(store_url) as store:  # the layer rewritten with more parcels: count and extent follow
            store.write_layers({"parcels": _parcels(5)}, records=[])
        cols = _wait_for(lambda: (c := _collections(served)) and "5 个要素" in c["parcels"]["description"] and c)
        assert "5 个要素" in cols["parcels"]["description"]
        lon0, _, lon1, _ = cols["parcels"]["extent"]["spatial"]["bbox"][0]
        assert lon1 - lon0 > 0.004  # 450 m of parcels at 37°N: about 0.005° of longitude
        body = httpx.get(served.base + "/collections/parcels/items", params={"limit": 10}, timeout=30).json()
        assert body["numberMatched"] == 5
        # the other collection still serves
        assert httpx.get(served.base + "/collections/dltb/items", params={"limit": 1},
                         timeout=30).json()["numberMatched"] == 400
    finally:
        served.stop()


def test_gpkg_new_and_rewritten_layers_are_served(tmp_path):
    _check_follows_the_store(str(tmp_path / "store.gpkg"), tmp_path)


@pytest.mark.postgis
def test_postgis_new_and_rewritten_layers_are_served(pg_url, tmp_path):
    import psycopg

    schema = f"refresh_{uuid.uuid4().hex[:8]}"
    try:
        _check_follows_the_store(f"{pg_url}?schema={schema}", tmp_path)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

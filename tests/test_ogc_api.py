"""OGC API Features (pygeoapi mounted in the app): collections, items, paging, bbox, CRS and axis order,
error bodies, HTML without external assets — on the GeoPackage and the PostGIS store alike."""

from __future__ import annotations

import re

import httpx
import numpy as np
import pyproj
import pytest
import shapely

from tests.ogc_fixtures import X0, Y0, N, ogc_gpkg, ogc_layers, ogc_pg, served, served_gpkg, served_pg  # noqa: F401

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
E4490 = "http://www.opengis.net/def/crs/EPSG/0/4490"
E4547 = "http://www.opengis.net/def/crs/EPSG/0/4547"
BBOX84 = (115.0955, 37.1466, 115.1052, 37.1531)  # cuts through the grid, not aligned with it


def get(served, path, **params):
    return httpx.get(served.base + path, params=params, timeout=60)


def expected_bbox_ids(layers, bbox84):
    """Independent: features whose geometry, carried to lon/lat by geopandas, intersects the lon/lat box."""
    g = layers["dltb"].to_crs(4490)
    box = shapely.box(*bbox84)
    return [i + 1 for i in np.flatnonzero(g.geometry.intersects(box).to_numpy())]


def test_landing_conformance_collections(served):
    r = get(served, "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    rels = {link["rel"] for link in r.json()["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= rels
    conf = get(served, "/conformance").json()["conformsTo"]
    for c in ("http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
              "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
              "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
              "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text"):
        assert c in conf
    assert not any("ogcapi-features-4" in c or "ogcapi-processes" in c for c in conf)
    cols = {c["id"]: c for c in get(served, "/collections").json()["collections"]}
    assert set(cols) == {"dltb", "monitoring", "cameras", "flagged_patches"}
    dltb = cols["dltb"]
    assert dltb["title"] == "地类图斑 (年度变更调查) Land-use survey patches (annual change survey)"
    assert dltb["crs"] == [CRS84, E4490, E4547]
    assert dltb["storageCrs"] == E4547
    lon0, lat0, lon1, lat1 = dltb["extent"]["spatial"]["bbox"][0]
    assert 115.09 < lon0 < lon1 < 115.12 and 37.14 < lat0 < lat1 < 37.17
    assert "变化图斑研判结果" in cols["flagged_patches"]["title"]


def test_items_default_crs84_and_numbers(served, ogc_layers):
    r = get(served, "/collections/dltb/items", limit=5)
    assert r.status_code == 200
    assert r.headers["content-crs"] == f"<{CRS84}>"
    body = r.json()
    assert body["numberMatched"] == N * N and body["numberReturned"] == 5
    assert [f["id"] for f in body["features"]] == [1, 2, 3, 4, 5]
    f1 = body["features"][0]
    assert f1["properties"]["BSM"] == "000001" and f1["properties"]["DLBM"] == "0101"
    assert f1["properties"]["KCXS"] is None and f1["properties"]["TBMJ"] == 8100.0
    # lon, lat: the first vertex of feature 1 carried to CGCS2000 lon/lat independently
    x, y = shapely.get_coordinates(ogc_layers["dltb"].geometry.iloc[0])[0]
    lon, lat = pyproj.Transformer.from_crs(4547, 4490, always_xy=True).transform(x, y)
    got = f1["geometry"]["coordinates"][0][0][0]
    assert got == pytest.approx([lon, lat], abs=1e-9)


def test_item_and_not_found(served):
    r = get(served, "/collections/dltb/items/42")
    assert r.status_code == 200
    assert r.json()["id"] == 42 and r.json()["properties"]["BSM"] == "000042"
    for path in ("/collections/dltb/items/999999", "/collections/dltb/items/abc", "/collections/nope/items",
                 "/collections/nope"):
        r = get(served, path)
        assert r.status_code == 404, path
        assert r.json()["description"], path


@pytest.mark.parametrize("crs, order", [(E4490, "latlon"), (E4547, "northeast")])
def test_crs_axis_order(served, ogc_layers, crs, order):
    r = get(served, "/collections/dltb/items/1", crs=crs)
    assert r.status_code == 200 and r.headers["content-crs"] == f"<{crs}>"
    got = r.json()["geometry"]["coordinates"][0][0]
    xy = shapely.get_coordinates(ogc_layers["dltb"].geometry.iloc[0])
    if order == "northeast":  # metres, northing first (EPSG:4547 axes: X north, Y east)
        assert np.allclose(got, xy[:, ::-1], atol=1e-6)
        assert 4_000_000 < got[0][0] < 4_200_000 and 500_000 < got[0][1] < 700_000
    else:  # authority order of EPSG:4490: latitude, longitude
        # pyproj in authority order on both sides: (northing, easting) in, (lat, lon) out
        lat, lon = pyproj.Transformer.from_crs(4547, 4490).transform(xy[:, 1], xy[:, 0])
        assert np.allclose(got, np.column_stack([lat, lon]), atol=1e-9)
        assert 37 < got[0][0] < 38 and 115 < got[0][1] < 116


def test_bbox_exact_and_paging(served, ogc_layers):
    want = expected_bbox_ids(ogc_layers, BBOX84)
    assert 20 < len(want) < 200
    seen, url, pages = [], served.base + "/collections/dltb/items", 0
    params = {"bbox": ",".join(map(str, BBOX84)), "limit": 7}
    while url:
        body = httpx.get(url, params=params, timeout=60).json()
        params = None  # the next link carries them
        assert body["numberMatched"] == len(want)
        seen += [f["id"] for f in body["features"]]
        nxt = [link["href"] for link in body["links"] if link["rel"] == "next"]
        url = nxt[0] if nxt else None
        pages += 1
    assert seen == want  # every match once, in id order
    assert pages == -(-len(want) // 7)
    # past the last match: no features, and still the exact count
    body = get(served, "/collections/dltb/items", bbox=",".join(map(str, BBOX84)), limit=7, offset=len(want)).json()
    assert body["features"] == [] and body["numberMatched"] == len(want)
    body = get(served, "/collections/dltb/items", bbox=",".join(map(str, BBOX84)), resulttype="hits").json()
    assert body["features"] == [] and body["numberMatched"] == len(want)


def test_bbox_crs_4490_and_gk(served, ogc_layers):
    want = expected_bbox_ids(ogc_layers, BBOX84)
    lon0, lat0, lon1, lat1 = BBOX84
    r = get(served, "/collections/dltb/items", bbox=f"{lat0},{lon0},{lat1},{lon1}", **{"bbox-crs": E4490},
            limit=1000)
    assert [f["id"] for f in r.json()["features"]] == want
    # GK bbox (northing, easting order) around patches 1, 2, 21, 22
    r = get(served, "/collections/dltb/items", bbox=f"{Y0},{X0},{Y0 + 150},{X0 + 150}", **{"bbox-crs": E4547})
    assert [f["id"] for f in r.json()["features"]] == [1, 2, N + 1, N + 2]
    assert r.json()["numberMatched"] == 4


def test_hits_properties_sortby_skipgeometry(served):
    r = get(served, "/collections/dltb/items", resulttype="hits", DLBM="0101")
    assert r.json()["numberMatched"] == N * N // 8 and r.json()["features"] == []
    r = get(served, "/collections/dltb/items", properties="BSM,DLBM", sortby="-TBMJ", limit=2, skipGeometry="true")
    feats = r.json()["features"]
    assert [f["id"] for f in feats] == [N * N, N * N - 1]
    assert set(feats[0]["properties"]) == {"BSM", "DLBM"} and feats[0]["geometry"] is None


BAD = [
    ({"limit": "-1"}, "limit=-1 is out of range"),
    ({"limit": "0"}, "limit=0 is out of range"),
    ({"limit": "10001"}, "out of range"),
    ({"limit": "ten"}, "not an integer"),
    ({"offset": "-5"}, "offset=-5 is out of range"),
    ({"bbox": "1,2,3"}, "must have 4 numbers"),
    ({"bbox": "a,b,c,d"}, "must be a number"),
    ({"bbox": "115.2,37,115.1,37.1"}, "exceeds"),
    ({"bbox": "nan,37,115.1,37.1"}, "finite"),
    ({"bbox": "115.1,37.1,115.2,37.2", "bbox-crs": E4490}, "latitudes"),
    ({"bbox-crs": E4490}, "without bbox"),
    ({"bbox": "1,2,3,4", "bbox-crs": "EPSG:4490"}, "not an OGC CRS URI"),
    ({"crs": "EPSG:4490"}, "not an OGC CRS URI"),
    ({"crs": "http://www.opengis.net/def/crs/EPSG/0/3857"}, "not served"),
    ({"crs": "http://www.opengis.net/def/crs/EPSG/0/abc"}, "not a number"),
    ({"filter": "DLBM = "}, "not valid CQL2"),
    ({"filter": "NOPE = 1"}, "unknown property 'NOPE'"),
    ({"filter": "CASEI(DLMC) = 'x'"}, "CASEI"),
    ({"filter": "TBMJ + 1 > 5"}, "arithmetic"),
    ({"filter": "DLBM = 101"}, "quote the value"),
    ({"filter": "TBMJ = '5'"}, "without quotes"),
    ({"filter": "T_AFTER(SJNF, TIMESTAMP('2020-01-01T00:00:00Z'))"}, "filter"),
    ({"filter": "S_DWITHIN(geometry, POINT(115.1 37.15), 10, meters)"}, "filter"),
    ({"filter": "DLBM = '0101'", "filter-lang": "cql2-json"}, "filter-lang"),
    ({"filter": "DLBM = '0101'", "filter-crs": "http://www.opengis.net/def/crs/EPSG/0/3857"}, "not served"),
    ({"datetime": "2024-01-01"}, "no temporal property"),
    ({"q": "水田"}, "free-text"),
    ({"sortby": "NOPE"}, "sortby: unknown property"),
    ({"properties": "NOPE"}, "properties: unknown"),
    ({"foo": "bar"}, "unknown query parameter(s) foo"),
    ({"SJNF": "abc"}, "SJNF is int"),
    ({"f": "xml"}, "f='xml'"),
    ({"skipGeometry": "maybe"}, "skipGeometry"),
    ({"resulttype": "all"}, "resulttype"),
]


@pytest.mark.parametrize("params, needle", BAD, ids=[str(p) for p, _ in BAD])
def test_bad_requests_are_400_with_clear_json(served_gpkg, params, needle):
    r = get(served_gpkg, "/collections/dltb/items", **params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "InvalidParameterValue"
    assert needle in body["description"], body["description"]


def test_bad_requests_postgis_too(served_pg):
    for params, needle in BAD:
        r = get(served_pg, "/collections/dltb/items", **params)
        assert r.status_code == 400 and needle in r.json()["description"], (params, r.text)


def test_no_500_anywhere(served):
    odd = ["", " ", "%", "'", "\"", "1e309", "-0", "NaN", "∞", "水田", "0101", ",,,,", "1,2,3,4,5,6", "[EPSG:4490]",
           "http://www.opengis.net/def/crs/OGC/1.3/CRS84h", "S_INTERSECTS(geometry, POLYGON((0 0, 1 0, 0 0)))",
           "DLBM LIKE '%'", "DLBM IN ()", "NOT", "(", "BBOX(geometry, 1, 2)"]
    names = ["limit", "offset", "bbox", "bbox-crs", "crs", "filter", "filter-crs", "sortby", "properties", "f",
             "DLBM", "TBMJ", "skipGeometry", "lang"]
    for name in names:
        for value in odd:
            r = get(served, "/collections/dltb/items", **{name: value})
            assert r.status_code < 500, (name, value, r.text)
            if r.status_code >= 400:
                assert r.json()["description"]
    for path in ("/collections/dltb/items/-1", "/collections/dltb/items/1e3", "/collections/%E6%B0%B4",
                 "/collections/dltb/items/1?crs=EPSG:1", "/collections/dltb/items/1?foo=1"):
        r = httpx.get(served.base + path, timeout=60)
        assert 400 <= r.status_code < 500 and r.json()["description"], path
    r = httpx.post(served.base + "/collections/dltb/items", json={}, timeout=60)
    assert r.status_code == 405 and "read-only" in r.json()["description"]


HTML_PAGES = ["/", "/collections", "/collections/dltb", "/collections/dltb/items?limit=3", "/collections/dltb/items/1",
              "/collections/dltb/queryables", "/collections/dltb/schema", "/conformance", "/openapi",
              "/collections/nope"]


def test_html_has_no_external_assets(served_gpkg):
    for path in HTML_PAGES:
        r = httpx.get(served_gpkg.base + path, headers={"Accept": "text/html"}, timeout=60)
        assert r.headers["content-type"].startswith("text/html"), path
        html = r.text
        for ref in re.findall(r'(?:href|src|action)\s*=\s*["\']([^"\']*)', html) + re.findall(r"url\(([^)]*)\)", html):
            assert ref.startswith((served_gpkg.root, "?", "#", "/")) or "://" not in ref, (path, ref)
        hosts = set(re.findall(r"https?://([^/\"'<>\s:]+)", html))
        assert hosts <= {"127.0.0.1", "www.opengis.net"}, (path, hosts)
        for bad in ("unpkg", "cdn", "googleapis", "openstreetmap", "bootstrap", "leaflet"):
            assert bad not in html.lower(), (path, bad)
    r = httpx.get(served_gpkg.base + "/collections/dltb/items?limit=3&f=html", timeout=60)
    assert "000001" in r.text and "水田" in r.text


def test_openapi_is_local(served_gpkg):
    doc = httpx.get(served_gpkg.base + "/openapi", params={"f": "json"}, timeout=60).json()
    refs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                refs.append(v) if k == "$ref" else walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert refs and all(r.startswith("#/") for r in refs)
    for ref in set(refs):  # every local ref resolves
        node = doc
        for part in ref[2:].split("/"):
            node = node[part]
    assert "/collections/dltb/items" in doc["paths"]
    assert doc["servers"][0]["url"] == served_gpkg.base


def test_queryables(served):
    q = get(served, "/collections/dltb/queryables").json()
    assert q["additionalProperties"] is False
    assert q["properties"]["DLBM"]["type"] == "string" and q["properties"]["TBMJ"]["type"] == "number"
    assert q["properties"]["SJNF"]["type"] == "integer"
    assert q["properties"]["geometry"]["x-ogc-role"] == "primary-geometry"
    m = get(served, "/collections/monitoring/queryables").json()
    assert m["properties"]["QSX"] == {"title": "QSX", "type": "string", "format": "date"}

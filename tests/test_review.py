"""合规性审查: the pure review (areas to 0.01 m², pass / fail per rule) and POST /api/review (CRS, errors)."""

from __future__ import annotations

import copy

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Transformer

from analysis.review import load_review_rules, parse_review_rules, review_site
from analysis.rules import load_rules
from layers.area import ellipsoidal_area
from layers.errors import GeometryError, RuleError
from layers.store import open_store
from tests.serve_fixtures import PLANNER, analysed_gpkg, bearer, client_for  # noqa: F401

EPSG = 4547
X0, Y0 = 560_000.0, 4_120_000.0


def box(x1, y1, x2, y2):
    return shapely.box(X0 + x1, Y0 + y1, X0 + x2, Y0 + y2)


def area(*geoms) -> float:
    return float(ellipsoidal_area(np.array(geoms, dtype=object), EPSG).sum())


def layer(rows, geoms):
    return gpd.GeoDataFrame(rows, geometry=list(geoms), crs=EPSG)


@pytest.fixture(scope="module")
def world():
    return {
        "yjjbnt": layer({"BSM": ["J1", "J2"]}, [box(0, 0, 100, 100), box(300, 0, 400, 100)]),
        "stbhhx": layer({"BSM": ["H1"]}, [box(500, 500, 600, 600)]),
        "czkfbj": layer({"BSM": ["C1"]}, [box(0, 0, 200, 200)]),
        "ghfq": layer({"BSM": ["G1", "G2"], "GHFQDM": ["0401", "03"], "GHFQMC": ["城镇集中建设区", "农田保护区"]},
                      [box(0, 0, 200, 1000), box(200, 0, 1000, 1000)]),
        "dltb": layer({"BSM": ["D1", "D2"], "DLBM": ["0103", "0702"], "KCXS": [0.1, 0.0]},
                      [box(0, 0, 150, 1000), box(150, 0, 1000, 1000)]),
    }


@pytest.fixture(scope="module")
def rules():
    return load_review_rules()


@pytest.fixture(scope="module")
def land():
    return load_rules()


def test_site_inside_the_town_passes(world, rules, land):
    site = box(120, 120, 180, 180)  # in czkfbj and 城镇集中建设区, on 0702 (construction), 0.. m² of 0103
    out = review_site(site, EPSG, world, rules, land)
    assert out["site"]["area_m2"] == round(area(site), 2)
    by = {r["id"]: r for r in out["rules"]}
    assert [by[k]["passed"] for k in ("yjjbnt", "stbhhx", "czkfbj", "ghfq")] == [True] * 4
    assert by["cultivated"]["value_m2"] == round(area(box(120, 120, 150, 180)) * 0.9, 2)
    assert by["cultivated"]["result"] == "提示" and by["cultivated"]["severity"] == "warn"
    assert out["passed"] is True and out["result"] == "通过 (有提示)" and out["failed"] == []


def test_site_across_everything_fails_with_exact_areas(world, rules, land):
    site = box(50, 50, 550, 550)
    out = review_site(site, EPSG, world, rules, land)
    by = {r["id"]: r for r in out["rules"]}
    yj = area(box(50, 50, 100, 100), box(300, 50, 400, 100))
    assert by["yjjbnt"]["value_m2"] == round(yj, 2) and by["yjjbnt"]["passed"] is False
    assert out["overlaps"]["yjjbnt"]["features"] == [
        {"id": "J1", "area_m2": round(area(box(50, 50, 100, 100)), 2)},
        {"id": "J2", "area_m2": round(area(box(300, 50, 400, 100)), 2)}]
    assert by["stbhhx"]["value_m2"] == round(area(box(500, 500, 550, 550)), 2)
    assert by["czkfbj"]["value_m2"] == round(area(site) - area(box(50, 50, 200, 200)), 2)
    assert out["overlaps"]["czkfbj"]["outside_m2"] == by["czkfbj"]["value_m2"]
    assert by["ghfq"]["value_m2"] == round(area(box(200, 50, 550, 550)), 2)
    zones = {z["GHFQDM"]: z for z in out["overlaps"]["ghfq"]["zones"]}
    assert zones["03"]["name"] == "农田保护区" and zones["0401"]["area_m2"] == round(area(box(50, 50, 200, 550)), 2)
    codes = {c["DLBM"]: c for c in out["overlaps"]["dltb"]["by_code"]}
    assert codes["0103"]["land_area_m2"] == round(area(box(50, 50, 150, 550)) * 0.9, 2)
    assert codes["0103"]["category"] == "cultivated" and codes["0702"]["category"] == "construction"
    assert out["overlaps"]["dltb"]["tiankan_m2"] == round(area(box(50, 50, 150, 550)) * 0.1, 2)
    assert out["passed"] is False and out["result"] == "不通过"
    assert out["failed"] == ["yjjbnt", "stbhhx", "czkfbj", "ghfq"]


def test_sliver_below_the_tolerance_passes(world, rules, land):
    site = box(99.7, 10, 150, 12)  # overlaps J1 by 0.3 m × 2 m: a digitising sliver below the 1 m² tolerance
    out = review_site(site, EPSG, world, rules, land)
    by = {r["id"]: r for r in out["rules"]}
    assert by["yjjbnt"]["value_m2"] == round(area(box(99.7, 10, 100, 12)), 2)
    assert 0 < by["yjjbnt"]["value_m2"] < 1 and by["yjjbnt"]["passed"] is True
    assert out["overlaps"]["yjjbnt"]["features"][0]["id"] == "J1"


def test_missing_layer_is_not_checked(world, rules, land):
    partial = dict(world, stbhhx=None)
    out = review_site(box(120, 120, 180, 180), EPSG, partial, rules, land)
    by = {r["id"]: r for r in out["rules"]}
    assert by["stbhhx"]["passed"] is None and by["stbhhx"]["result"] == "未检查"
    assert out["passed"] is False and out["result"] == "无法判断"


def test_region_clips_the_site(world, rules, land):
    region = box(0, 0, 1000, 1000)
    site = box(900, 900, 1100, 1000)
    out = review_site(site, EPSG, world, rules, land, region=region)
    assert out["site"]["area_outside_region_m2"] == round(area(site) - area(box(900, 900, 1000, 1000)), 2)
    assert out["site"]["reviewed_area_m2"] == round(area(box(900, 900, 1000, 1000)), 2)
    with pytest.raises(GeometryError, match="outside the region"):
        review_site(box(2000, 0, 2100, 100), EPSG, world, rules, land, region=region)


@pytest.mark.parametrize("site, words", [
    (shapely.Polygon([(X0, Y0), (X0 + 10, Y0 + 10), (X0 + 10, Y0), (X0, Y0 + 10)]), "invalid"),
    (shapely.Point(X0, Y0), "Polygon or MultiPolygon"),
    (shapely.Polygon(), "non-empty"),
])
def test_bad_sites(world, rules, land, site, words):
    with pytest.raises(GeometryError, match=words):
        review_site(site, EPSG, world, rules, land)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["rules"].append({"id": "x", "layer": "dltb", "measure": "zones", "zones": ["01"]}),
     "works on layer(s) ['ghfq']"),
    (lambda d: d["rules"].append({"id": "yjjbnt", "layer": "yjjbnt", "measure": "inside"}), "unique"),
    (lambda d: d["rules"].append({"id": "x", "layer": "yjjbnt", "measure": "near"}), "measure 'near'"),
    (lambda d: d["rules"].append({"id": "x", "layer": "yjjbnt", "measure": "inside", "max_m2": -1}), "max_m2"),
    (lambda d: d["rules"].append({"id": "x", "layer": "dltb", "measure": "categories", "categories": ["forest"]}),
     "categories"),
    (lambda d: d.update(tolerance_m2="small"), "tolerance_m2"),
    (lambda d: d.update(extra=1), "unknown key"),
])
def test_bad_review_rules(rules, edit, words):
    doc = copy.deepcopy(rules.document)
    edit(doc)
    with pytest.raises(RuleError, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        parse_review_rules(doc)


# --- over HTTP, on the sample county --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(analysed_gpkg, tmp_path_factory):
    return client_for(analysed_gpkg, tmp_path_factory.mktemp("review"), max_upload_bytes=20_000)


SITE = [[115.10, 37.15], [115.13, 37.15], [115.13, 37.17], [115.10, 37.17], [115.10, 37.15]]


def _expected(analysed_gpkg):
    """Independent computation: the site in EPSG:4547, yjjbnt pieces by shapely + ellipsoidal area."""
    tr = Transformer.from_crs(4490, EPSG, always_xy=True)
    site = shapely.Polygon([tr.transform(x, y) for x, y in SITE])
    yj = open_store(analysed_gpkg).read_layer("yjjbnt", bbox=site.bounds)
    inside = shapely.intersection(shapely.union_all(yj.geometry.values), site)
    return site, float(ellipsoidal_area(np.array([site], dtype=object), EPSG)[0]), \
        float(ellipsoidal_area(np.array([inside], dtype=object), EPSG)[0])


def test_review_in_crs84(api, analysed_gpkg):
    _, site_area, yj = _expected(analysed_gpkg)
    r = api.post("/api/review", json={"type": "Polygon", "coordinates": [SITE]}, headers=bearer(PLANNER))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    out = r.json()
    assert out["site"]["area_m2"] == pytest.approx(round(site_area, 2), abs=0.01)
    by = {x["id"]: x for x in out["rules"]}
    assert by["yjjbnt"]["value_m2"] == pytest.approx(round(yj, 2), abs=0.01) and by["yjjbnt"]["passed"] is False
    assert out["input"] == {"crs": "OGC:CRS84", "axis_order": "lon,lat", "vertices": 5,
                            "bbox_crs84": [115.1, 37.15, 115.13, 37.17]}
    assert out["region"] == {"code": "130599", "name": "样例县"} and out["result"] == "不通过"


@pytest.mark.parametrize("crs, transform, order", [
    ("EPSG:4490", lambda x, y: [y, x], "lat,lon"),
    ("http://www.opengis.net/def/crs/EPSG/0/4326", lambda x, y: [y, x], "lat,lon"),
    ("EPSG:4547", lambda x, y: list(Transformer.from_crs(4490, 4547, always_xy=True).transform(x, y))[::-1],
     "northing,easting"),
    ("urn:ogc:def:crs:EPSG::4547", lambda x, y: list(Transformer.from_crs(4490, 4547, always_xy=True).transform(x, y)),
     "easting,northing"),
    ("EPSG:4526", lambda x, y: list(Transformer.from_crs(4490, 4526, always_xy=True).transform(x, y)),
     "easting,northing"),
])
def test_review_in_other_crs_gives_the_same_answer(api, analysed_gpkg, crs, transform, order):
    _, site_area, yj = _expected(analysed_gpkg)
    ring = [transform(x, y) for x, y in SITE]
    feature = {"type": "Feature", "properties": {"name": "拟建项目"}, "geometry": {"type": "Polygon",
                                                                                  "coordinates": [ring]}}
    r = api.post(f"/api/review?crs={crs}", json=feature, headers=bearer(PLANNER))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["input"]["axis_order"] == order
    assert out["site"]["area_m2"] == pytest.approx(site_area, abs=0.05)
    assert {x["id"]: x for x in out["rules"]}["yjjbnt"]["value_m2"] == pytest.approx(yj, abs=0.05)


@pytest.mark.parametrize("body, query, status, code, words", [
    ({"type": "Polygon", "coordinates": [SITE]}, "crs=EPSG:9999", 400, "InvalidCRS", "EPSG:9999 is unknown"),
    ({"type": "Polygon", "coordinates": [SITE]}, "crs=EPSG:4610", 400, "InvalidCRS", "Xian 1980"),
    ({"type": "Polygon", "coordinates": [SITE]}, "crs=EPSG:3857", 400, "InvalidCRS", "not accepted"),
    ({"type": "Polygon", "coordinates": [SITE]}, "crs=banana", 400, "InvalidCRS", "not a CRS this service reads"),
    ({"type": "Polygon", "coordinates": [SITE]}, "crs=EPSG:4490", 400, "InvalidCRS", "lat, lon"),
    ({"type": "Polygon", "coordinates": [[[1, 2], [3, 4]]]}, "", 400, "InvalidGeometry", "at least 4 positions"),
    ({"type": "Polygon"}, "", 400, "InvalidGeometry", "malformed"),
    ({"type": "Point", "coordinates": [115.1, 37.1]}, "", 400, "InvalidGeometry", "got 'Point'"),
    ({"type": "FeatureCollection", "features": []}, "", 400, "InvalidGeometry", "no features"),
    ([1, 2, 3], "", 400, "InvalidGeometry", "must be a GeoJSON object"),
    ({"type": "Polygon", "coordinates": [[[10, 10], [11, 10], [11, 11], [10, 11], [10, 10]]]}, "", 400,
     "InvalidGeometry", "outside the region"),
    ({"type": "Polygon", "coordinates": [[[115.10, 37.15], [115.13, 37.17], [115.13, 37.15], [115.10, 37.17],
                                          [115.10, 37.15]]]}, "", 400, "InvalidGeometry", "Self-intersection"),
    ({"type": "Polygon", "coordinates": [[[200, 10], [201, 10], [201, 11], [200, 10]]]}, "", 400,
     "InvalidGeometry", "longitude"),
    ({"type": "Polygon", "coordinates": [SITE]}, "colour=red", 400, "InvalidParameterValue", "unknown query"),
])
def test_bad_review_requests(api, body, query, status, code, words):
    r = api.post(f"/api/review?{query}", json=body, headers=bearer(PLANNER))
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and words in r.json()["description"]


def test_bad_review_bodies(api):
    r = api.post("/api/review", content=b"{not json", headers={**bearer(PLANNER), "Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["description"]
    r = api.post("/api/review", content=b"", headers=bearer(PLANNER))
    assert r.status_code == 400 and "empty" in r.json()["description"]
    big = b'{"type": "Polygon", "coordinates": [[' + b"[115.1, 37.1], " * 3000 + b"]]}"
    r = api.post("/api/review", content=big, headers={**bearer(PLANNER), "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "PayloadTooLarge"
    r = api.post("/api/review", content=b"<xml/>", headers={**bearer(PLANNER), "Content-Type": "application/xml"})
    assert r.status_code == 415
    rules = api.get("/api/review/rules", headers=bearer(PLANNER)).json()
    assert [x["id"] for x in rules["rules"]] == ["yjjbnt", "stbhhx", "czkfbj", "ghfq", "cultivated"]

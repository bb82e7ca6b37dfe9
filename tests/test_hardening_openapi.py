"""The published API descriptions tell the truth (issue 12, item 8), checked point by point (the fuzz suite,
tests/test_hardening_fuzz.py, checks every answer against them)."""

from __future__ import annotations

import logging
import shutil

import pytest

from tests.serve_fixtures import ADMIN, PLANNER, analysed_gpkg, bearer, client_for  # noqa: F401


@pytest.fixture(scope="module")
def client(analysed_gpkg, tmp_path_factory):
    work = tmp_path_factory.mktemp("openapi_truth")
    store = work / "store.gpkg"
    shutil.copyfile(analysed_gpkg, store)
    return client_for(store, work)


@pytest.fixture(scope="module")
def ogc_doc(client):
    return client.get("/ogc/openapi?f=json").json()


@pytest.fixture(scope="module")
def app_doc(client):
    return client.get("/openapi.json").json()


def test_the_ogc_document_offers_only_what_is_served(ogc_doc):
    methods = {m for item in ogc_doc["paths"].values() for m in item if m not in ("summary", "description",
                                                                                   "parameters")}
    assert methods == {"get"}
    items = ogc_doc["paths"]["/collections/dltb/items"]["get"]
    names = [p["name"] for p in items["parameters"]]
    assert all("$ref" not in p for op in (i["get"] for i in ogc_doc["paths"].values()) for p in op["parameters"])
    assert "datetime" not in names and "vendorSpecificParameters" not in names
    assert {"filter", "filter-lang", "filter-crs", "sortby", "bbox", "crs", "limit", "offset"} <= set(names)
    f = next(p for p in items["parameters"] if p["name"] == "f")
    assert "csv" not in f["schema"]["enum"]
    assert set(items["responses"]) == {"200", "400", "401", "404", "429"}
    assert set(items["responses"]["200"]["content"]) == {"application/geo+json", "application/ld+json", "text/html"}


def test_no_link_answers_400(client):
    doc = client.get("/ogc/collections/dltb?f=json").json()
    for link in doc["links"]:
        href = link["href"].replace("http://testserver", "")
        if href.startswith("/ogc"):
            assert client.get(href).status_code == 200, link
    assert not [link for link in doc["links"] if "csv" in link.get("type", "") or "f=csv" in link["href"]]


@pytest.mark.parametrize("method, path, allow", [
    ("post", "/ogc/collections/dltb/items", "GET"),
    ("options", "/ogc/collections/dltb/items/1", "GET"),
    ("delete", "/api/audit", "GET"),
    ("put", "/api/patches/X/judgement", "POST"),
])
def test_405_names_the_allowed_methods(client, method, path, allow):
    r = client.request(method.upper(), path, headers=bearer(ADMIN))
    assert r.status_code == 405 and r.headers["allow"] == allow, (r.status_code, r.headers)


def test_features_are_geojson(client):
    r = client.get("/ogc/collections/xzq/items?limit=1")
    assert r.headers["content-type"] == "application/geo+json" and r.json()["type"] == "FeatureCollection"
    r = client.get("/ogc/collections/xzq/items/1")
    assert r.headers["content-type"] == "application/geo+json" and r.json()["type"] == "Feature"
    r = client.get("/ogc/collections/xzq/items/999999?f=jsonld")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"


def test_queryables_name_a_json_schema_dialect_ogc_part3_accepts(client):
    doc = client.get("/ogc/collections/dltb/queryables").json()
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    r = client.get("/ogc/collections/dltb/items?limit=1")
    assert '<http://testserver/ogc/collections/dltb/queryables>; rel="http://www.opengis.net/def/rel/ogc/1.0/' \
           'queryables"' in r.headers["link"]


def test_the_app_document_declares_its_security_and_errors(app_doc):
    assert set(app_doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    ops = app_doc["paths"]
    assert ops["/api/patches"]["get"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert {} in ops["/api/me"]["get"]["security"]  # open: a token is read when given
    judge = ops["/api/patches/{jcbh}/judgement"]["post"]["responses"]
    assert {"400", "401", "403", "404", "409", "412", "413", "422", "428", "429"} <= set(judge)
    assert judge["412"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in app_doc["components"]["schemas"]
    geo = ops["/api/patches"]["get"]["responses"]["200"]["content"]["application/geo+json"]["schema"]
    assert "$defs" not in str(geo) and "PatchFeature" in app_doc["components"]["schemas"]


def test_ogc_client_errors_are_not_logged_as_errors(client, caplog):
    with caplog.at_level(logging.INFO):
        assert client.get("/ogc/collections/dltb/items?bbox=x").status_code == 400
        assert client.get("/ogc/collections/dltb/items?bbox=x&f=html").status_code == 400
        assert client.get("/ogc/collections/nope").status_code == 404
        assert client.get("/ogc/collections/dltb/items/999999").status_code == 404
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert not [r for r in caplog.records if r.exc_info]


def test_a_wrong_token_is_401_on_every_api_and_ogc_route(client):
    """docs/serve.md says so: the gate checks the token before any route."""
    for path in ("/api/config", "/api/workflow", "/api/me", "/api/glyphs/Noto%20Sans%20CJK%20SC%20Regular/0-255.pbf",
                 "/ogc/", "/ogc/collections/dltb/items"):
        assert client.get(path, headers=bearer("not-a-token-at-all")).status_code == 401, path
    assert client.get("/api/config", headers=bearer(PLANNER)).status_code == 200

"""The OpenAPI document of /api is true: every operation declares what it answers, and what the routes answer
validates against the document (not only against the response models the routes were written with)."""

from __future__ import annotations

import shutil

import pytest
from openapi_schema_validator import OAS31Validator, validate

from tests.serve_fixtures import ADMIN, INSPECTOR, PLANNER, analysed_gpkg, bearer, client_for, patch_ids  # noqa: F401

BINARY = {"type": "string", "format": "binary"}


@pytest.fixture(scope="module")
def api(analysed_gpkg, tmp_path_factory):
    path = tmp_path_factory.mktemp("openapi") / "store.gpkg"
    shutil.copyfile(analysed_gpkg, path)
    client = client_for(path, tmp_path_factory.mktemp("openapi_work"))
    client.post("/api/indicators/runs", headers=bearer(ADMIN))  # a stored run for the indicator routes
    return client


@pytest.fixture(scope="module")
def doc(api):
    return api.get("/openapi.json").json()


def _operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_every_api_operation_declares_its_success_body(doc):
    ops = [(p, m, op) for p, m, op in _operations(doc) if p.startswith("/api/")]
    assert len(ops) >= 15
    for path, method, op in ops:
        ok = op["responses"].get("200") or op["responses"].get("201")
        assert ok is not None, (method, path)
        content = ok.get("content") or {}
        assert content, (method, path)
        for media, body in content.items():
            schema = body.get("schema") or {}
            assert schema not in ({}, {"title": "Response"}), (method, path, media)  # not "anything"
            if media in ("application/json", "application/geo+json", "application/schema+json"):
                assert "$ref" in schema or "properties" in schema, (method, path, media, schema)
            else:
                assert schema == BINARY, (method, path, media, schema)


def _schema(doc, path, method="get", status="200", media="application/json"):
    schema = doc["paths"][path][method]["responses"][status]["content"][media]["schema"]
    return {**schema, "components": doc["components"]}


@pytest.mark.parametrize("path, template, token", [
    ("/api/me", "/api/me", PLANNER),
    ("/api/workflow", "/api/workflow", None),
    ("/api/patches?limit=5", "/api/patches", PLANNER),
    ("/api/audit", "/api/audit", PLANNER),
    ("/api/audit/verify", "/api/audit/verify", ADMIN),
    ("/api/review/rules", "/api/review/rules", PLANNER),
    ("/api/indicators?level=township", "/api/indicators", PLANNER),
    ("/api/indicators/runs", "/api/indicators/runs", PLANNER),
    ("/api/selfeval?targets=sample", "/api/selfeval", PLANNER),
    ("/api/config", "/api/config", None),
])
def test_answers_validate_against_the_document(api, doc, path, template, token):
    r = api.get(path, headers=bearer(token) if token else {})
    assert r.status_code == 200, r.text
    validate(r.json(), _schema(doc, template), cls=OAS31Validator)


def test_patch_detail_geojson_and_writes_validate(api, doc):
    jcbh = patch_ids(api.app.state.patch_book.store.url)[0]
    r = api.get(f"/api/patches/{jcbh}", headers=bearer(PLANNER))
    validate(r.json(), _schema(doc, "/api/patches/{jcbh}"), cls=OAS31Validator)
    r = api.get("/api/patches?f=geojson&limit=3", headers=bearer(PLANNER))
    assert r.headers["content-type"] == "application/geo+json"
    validate(r.json(), _schema(doc, "/api/patches", media="application/geo+json"), cls=OAS31Validator)
    r = api.post(f"/api/patches/{jcbh}/judgement", json={"judgement": "违法", "note": "现场核查"},
                 headers={**bearer(INSPECTOR), "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    validate(r.json(), _schema(doc, "/api/patches/{jcbh}/judgement", "post"), cls=OAS31Validator)
    unit = api.get("/api/indicators?level=county", headers=bearer(PLANNER)).json()["values"][0]
    r = api.get(f"/api/indicators/{unit['indicator']}/drilldown", params={"unit": unit["unit_code"], "limit": 3},
                headers=bearer(PLANNER))
    assert r.status_code == 200, r.text
    validate(r.json(), _schema(doc, "/api/indicators/{code}/drilldown"), cls=OAS31Validator)


def test_errors_validate_against_the_error_body(api, doc):
    r = api.get("/api/patches?colour=red", headers=bearer(PLANNER))
    assert r.status_code == 400
    validate(r.json(), _schema(doc, "/api/patches", status="400"), cls=OAS31Validator)
    r = api.get("/api/patches/NOPE-1", headers=bearer(PLANNER))
    assert r.status_code == 404
    validate(r.json(), _schema(doc, "/api/patches/{jcbh}", status="404"), cls=OAS31Validator)

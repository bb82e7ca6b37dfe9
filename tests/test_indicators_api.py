"""The indicators API: values by level, drill-down to the records, the 绩效自评表 (JSON / xlsx), runs."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from openpyxl import load_workbook

from layers.store import open_store
from services.jobs import indicators as svc
from tests.serve_fixtures import ADMIN, INSPECTOR, PLANNER, analysed_gpkg, bearer, client_for  # noqa: F401

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture(scope="module")
def store(analysed_gpkg, tmp_path_factory):
    path = tmp_path_factory.mktemp("ind_api") / "store.gpkg"
    shutil.copyfile(analysed_gpkg, path)
    svc.run_indicators(path)
    return path


@pytest.fixture(scope="module")
def run(store):
    return svc.load_run(store)


@pytest.fixture(scope="module")
def api(store, tmp_path_factory):
    return client_for(store, tmp_path_factory.mktemp("ind_api_work"))


def _value(run, code, unit):
    v = run.values[(run.values["indicator"] == code) & (run.values["unit_code"] == unit)].iloc[0]
    return v


def test_values_by_level(api, run):
    r = api.get("/api/indicators?level=township&area_unit=ha", headers=bearer(PLANNER))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["run"]["run_id"] == run.run_id and body["level"] == "township"
    units = {v["unit_code"] for v in body["values"]}
    assert units == {f"1305991{i:02d}" for i in range(6)}
    v = next(x for x in body["values"] if x["indicator"] == "cultivated_area" and x["unit_code"] == "130599101")
    ref = _value(run, "cultivated_area", "130599101")
    assert v["value_m2"] == pytest.approx(float(ref["value_m2"]), abs=0.005)
    assert v["value_ha"] == pytest.approx(float(ref["value_ha"]), abs=1e-4) and "TBDLMJ" in v["rule"]
    assert "record_ids" not in v
    # the township values sum to the county (强制调平)
    county = api.get("/api/indicators?level=county", headers=bearer(PLANNER)).json()
    c = next(x for x in county["values"] if x["indicator"] == "cultivated_area")
    towns = sum(x["value_ha"] for x in body["values"] if x["indicator"] == "cultivated_area")
    assert towns == pytest.approx(c["value_ha"], abs=1e-6)
    table = body["tables"][0]
    assert table["columns"][:2] == ["行政区代码", "行政区名称"] and len(table["rows"]) == 6


def test_filter_one_unit_and_indicator(api, run):
    body = api.get("/api/indicators?level=village&unit=130599101001&indicator=cultivated_area&area_unit=mu",
                   headers=bearer(PLANNER)).json()
    assert len(body["values"]) == 1
    ref = _value(run, "cultivated_area", "130599101001")
    assert body["values"][0]["value_mu"] == pytest.approx(float(ref["value_mu"]), abs=0.005)


@pytest.mark.parametrize("query, status, words", [
    ("level=province", 400, "level='province' is unknown"),
    ("area_unit=acre", 400, "area_unit='acre' is unknown"),
    ("unit=13", 400, "6-digit 县"),
    ("unit=130599999", 404, "has no values"),
    ("indicator=happiness", 400, "indicator='happiness' is not in run"),
    ("run_id=xyz", 400, "malformed"),
    ("run_id=" + "0" * 32, 404, "is not in store"),
    ("colour=red", 400, "unknown query parameter(s) colour"),
])
def test_bad_indicator_queries(api, query, status, words):
    r = api.get(f"/api/indicators?{query}", headers=bearer(PLANNER))
    assert r.status_code == status, r.text
    assert words in r.json()["description"]


def test_drilldown_to_patches(api, run, store):
    ref = _value(run, "illegal_count", "130599")
    r = api.get("/api/indicators/illegal_count/drilldown?unit=130599", headers=bearer(PLANNER))
    assert r.status_code == 200
    body = r.json()
    assert body["value"] == float(ref["value"]) and body["unit"] == "count" and body["rule"] == ref["rule"]
    patches = body["layers"]["flagged_patches"]
    assert patches["id_field"] == "JCBH" and patches["total"] == int(ref["value"])
    assert sorted(patches["ids"]) == sorted(ref["record_ids"]["flagged_patches"])
    assert [r["JCBH"] for r in patches["records"]] == patches["ids"]  # in the order of ids
    stored = open_store(store).read_layer("flagged_patches").set_index("JCBH")
    for r in patches["records"]:  # lists as arrays, as /api/patches serves them
        assert r["source_ids"] == json.loads(stored.loc[r["JCBH"], "source_ids"]) and r["JCBH"] in r["source_ids"]
    # nothing judged yet: 未批先建 and 少批多占 count until checked
    assert {r["verdict"] for r in patches["records"]} == {"suspected_illegal", "partly_approved"}


def test_drilldown_to_survey_patches_with_paging(api, run):
    ref = _value(run, "cultivated_area", "130599101001")
    ids = ref["record_ids"]["dltb"]
    body = api.get("/api/indicators/cultivated_area/drilldown?unit=130599101001&limit=5&offset=5",
                   headers=bearer(PLANNER)).json()
    dltb = body["layers"]["dltb"]
    assert dltb["total"] == len(ids) and dltb["ids"] == ids[5:10]
    assert [r["yzt_fid"] for r in dltb["records"]] == ids[5:10]
    assert all(r["DLBM"] in ("0101", "0102", "0103") for r in dltb["records"])


def test_drilldown_to_planning_conflicts_by_conflict_id(api, run, store):
    ref = _value(run, "three_line_conflict_area", "130599")
    body = api.get("/api/indicators/three_line_conflict_area/drilldown?unit=130599",
                   headers=bearer(PLANNER)).json()
    conflicts = body["layers"]["planning_conflicts"]
    stored = open_store(store).read_layer("planning_conflicts")
    three = stored[stored["kind"].isin(["yjjbnt_stbhhx", "yjjbnt_czkfbj", "stbhhx_czkfbj"])]
    assert conflicts["id_field"] == "conflict_id" and conflicts["total"] == len(three) == 6
    assert conflicts["ids"] == ref["record_ids"]["planning_conflicts"] == sorted(three["conflict_id"])
    records = {r["conflict_id"]: r for r in conflicts["records"]}
    assert sorted(records) == conflicts["ids"]
    assert sum(r["area_m2"] for r in records.values()) == pytest.approx(float(ref["value"]), abs=0.01)
    assert {r["conflict_id"].split("-")[1] for r in records.values()} == {"YS", "YC", "SC"}
    stored = stored.set_index("conflict_id")
    for cid, r in records.items():
        assert r["left_ids"] == json.loads(stored.loc[cid, "left_ids"]) and isinstance(r["right_ids"], list)


@pytest.mark.parametrize("path, status, words", [
    ("/api/indicators/happiness/drilldown?unit=130599", 404, "indicator 'happiness' is not in run"),
    ("/api/indicators/illegal_count/drilldown?unit=130599999999", 404, "has no value"),
    ("/api/indicators/illegal_count/drilldown", 400, "query parameter 'unit': is required"),
    ("/api/indicators/illegal_count/drilldown?unit=abc", 400, "6-digit"),
    ("/api/indicators/illegal_count/drilldown?unit=130599&layer=dltb", 400, "comes from flagged_patches"),
    ("/api/indicators/illegal_count/drilldown?unit=130599&limit=0", 400, "query parameter 'limit'"),
])
def test_bad_drilldowns(api, path, status, words):
    r = api.get(path, headers=bearer(PLANNER))
    assert r.status_code == status, r.text
    assert words in r.json()["description"]


def test_selfeval_json_and_xlsx(api, run):
    body = api.get("/api/selfeval?targets=sample", headers=bearer(PLANNER)).json()
    assert body["unit_code"] == "130599" and body["run_id"] == run.run_id and body["total_weight"] == 100
    assert 0 <= body["total"] <= 100
    assert body["total"] == pytest.approx(sum(r["得分"] for r in body["rows"] if r["得分"] is not None), abs=0.01)
    r = api.get("/api/selfeval.xlsx?targets=sample", headers=bearer(PLANNER))
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    assert r.headers["content-disposition"].startswith('attachment; filename="selfeval_130599_')
    ws = load_workbook(io.BytesIO(r.content))["绩效自评表"]
    assert ws.cell(2, 1).value == "一级指标" and "样例县" in ws.cell(1, 1).value
    total_row = next(row for row in ws.iter_rows(values_only=True) if row[0] == "自评总得分")
    assert total_row[9] == pytest.approx(body["total"], abs=1e-9)


def test_selfeval_with_posted_targets(api):
    text = Path("data/targets.sample.yaml").read_bytes()
    r = api.post("/api/selfeval.xlsx?unit=130599101", content=text, headers=bearer(PLANNER))
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    ws = load_workbook(io.BytesIO(r.content))["绩效自评表"]
    assert "130599101" in ws.cell(1, 1).value


@pytest.mark.parametrize("method, path, body, status, words", [
    ("get", "/api/selfeval.xlsx?targets=../../etc/passwd", None, 400, "give the name of a targets file"),
    ("get", "/api/selfeval.xlsx?targets=missing", None, 404, "known: sample"),
    ("get", "/api/selfeval.xlsx", None, 400, "query parameter 'targets': is required"),
    ("get", "/api/selfeval.xlsx?targets=sample&unit=999", None, 400, "6-digit"),
    ("post", "/api/selfeval.xlsx", b"", 400, "the body is empty"),
    ("post", "/api/selfeval.xlsx", b"items: [", 400, "not a YAML"),
    ("post", "/api/selfeval.xlsx", b"title: x\nitems: [{level1: a}]", 400, "targets"),
])
def test_bad_selfeval_requests(api, method, path, body, status, words):
    kwargs = {"headers": bearer(PLANNER)}
    if body is not None:
        kwargs["content"] = body
    r = getattr(api, method)(path, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["description"]


def test_runs_list_and_new_run_needs_admin(api, run):
    runs = api.get("/api/indicators/runs", headers=bearer(PLANNER)).json()["runs"]
    assert runs[-1]["run_id"] == run.run_id
    assert api.post("/api/indicators/runs", headers=bearer(INSPECTOR)).status_code == 403


@pytest.mark.slow
def test_new_run_by_admin(analysed_gpkg, tmp_path):
    path = tmp_path / "store.gpkg"
    shutil.copyfile(analysed_gpkg, path)
    api = client_for(path, tmp_path)
    r = api.get("/api/indicators", headers=bearer(PLANNER))
    assert r.status_code == 404 and "POST /api/indicators/runs" in r.json()["description"]
    r = api.post("/api/indicators/runs", headers=bearer(ADMIN))
    assert r.status_code == 201 and r.json()["values"] > 0
    assert api.get("/api/indicators?level=county", headers=bearer(PLANNER)).json()["run"]["run_id"] == \
        r.json()["run"]["run_id"]

"""The patch workbench over HTTP: list / filters / paging, detail, judgement and moves with If-Match, evidence,
the audit log and the exports — good and bad inputs, status codes, content types and bodies."""

from __future__ import annotations

import io
import json
import shutil
import zipfile

import pyogrio
import pytest
from openpyxl import load_workbook

from layers.store import open_store
from tests.serve_fixtures import (  # noqa: F401
    ADMIN,
    INSPECTOR,
    INSPECTOR2,
    PLANNER,
    analysed_gpkg,
    analysed_pg,
    bearer,
    client_for,
    patch_ids,
)

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


@pytest.fixture(scope="module")
def store_path(analysed_gpkg, tmp_path_factory):
    path = tmp_path_factory.mktemp("wb_api") / "store.gpkg"
    shutil.copyfile(analysed_gpkg, path)
    return path


@pytest.fixture(scope="module")
def api(store_path, tmp_path_factory):
    return client_for(store_path, tmp_path_factory.mktemp("wb_api_work"), max_upload_bytes=50_000)


@pytest.fixture(scope="module")
def layer(store_path):
    frame = open_store(store_path).read_layer("flagged_patches")
    return frame


def _ids(layer):
    return sorted(layer["JCBH"].astype(str))


# --- listing --------------------------------------------------------------------------------------------------

def test_list_all_with_total_and_paging(api, layer):
    r = api.get("/api/patches?limit=10&offset=0", headers=bearer(PLANNER))
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["total"] == len(layer) == 50  # planted.yaml: 50 ground changes
    assert (body["limit"], body["offset"], body["returned"], body["next_offset"]) == (10, 0, 10, 10)
    assert [i["JCBH"] for i in body["items"]] == _ids(layer)[:10]
    last = api.get("/api/patches?limit=10&offset=45", headers=bearer(PLANNER)).json()
    assert last["returned"] == 5 and last["next_offset"] is None
    item = body["items"][0]
    row = layer[layer["JCBH"] == item["JCBH"]].iloc[0]
    assert item["area_m2"] == pytest.approx(float(row["area_m2"]), abs=0.005)
    assert item["verdict"] == row["verdict"] and item["status"] == "待核查" and item["version"] == 1
    assert item["township_code"] == row["XZQDM"][:9] and item["village"]
    assert isinstance(item["sources"], list) and len(item["bbox"]) == 4


@pytest.mark.parametrize("query, check", [
    ("verdict=suspected_illegal", lambda r: r["verdict"] == "suspected_illegal"),
    ("verdict=未批先建,少批多占", lambda r: r["verdict"] in ("suspected_illegal", "partly_approved")),
    ("status=待核查", lambda r: r["status"] == "待核查"),
    ("xzq=130599104", lambda r: r["XZQDM"].startswith("130599104")),
    ("area_min=2500&area_max=3000", lambda r: 2500 <= r["area_m2"] <= 3000),
    ("source=camera", lambda r: "camera" in r["sources"]),
    ("round=2024-2", lambda r: "2024-2" in r["rounds"]),
    ("bbox=115.0,37.05,115.15,37.3", lambda r: r["bbox"][0] <= 115.15),
    ("q=SXT", lambda r: any("SXT" in s for s in r["source_ids"])),
])
def test_filters(api, layer, query, check):
    body = api.get(f"/api/patches?{query}&limit=1000", headers=bearer(PLANNER)).json()
    assert body["total"] == len(body["items"]) > 0
    assert all(check(i) for i in body["items"])
    assert body["total"] < len(layer) or query.startswith("status")


def test_filters_match_the_layer_exactly(api, layer):
    expected = sorted(layer.loc[(layer["verdict"] == "suspected_illegal") & (layer["area_m2"] >= 2500), "JCBH"])
    body = api.get("/api/patches?verdict=suspected_illegal&area_min=2500&limit=100", headers=bearer(PLANNER)).json()
    assert [i["JCBH"] for i in body["items"]] == expected
    areas = [i["area_m2"] for i in api.get("/api/patches?sort=-area_m2", headers=bearer(PLANNER)).json()["items"]]
    assert areas == sorted(areas, reverse=True) and areas[0] == pytest.approx(layer["area_m2"].max(), abs=0.005)


def test_geojson_is_crs84(api):
    r = api.get("/api/patches?f=geojson&limit=3", headers=bearer(PLANNER))
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection" and fc["numberMatched"] == 50 and fc["numberReturned"] == 3
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0][0]
    assert 115.0 < lon < 115.3 and 37.05 < lat < 37.3


@pytest.mark.parametrize("query, words", [
    ("bbox=1,2,3", "must be four numbers"),
    ("bbox=a,b,c,d", "must be four numbers"),
    ("bbox=115.3,37.0,115.0,37.3", "minlon must be ≤ maxlon"),
    ("bbox=37.1,115.1,37.2,115.2", "latitude"),
    ("verdict=illegal", "verdict='illegal' is unknown"),
    ("status=done", "status='done' is unknown"),
    ("judgement=maybe", "judgement='maybe' is unknown"),
    ("xzq=1305", "6-digit county"),
    ("xzq=130599999", "is not a unit of this region"),
    ("area_min=abc", "area_min='abc' is not a number"),
    ("area_min=-5", "out of range"),
    ("area_min=10&area_max=5", "larger than area_max"),
    ("round=1999-9", "is not a round"),
    ("source=plane", "source='plane' is unknown"),
    ("sort=colour", "sort='colour' is unknown"),
    ("limit=0", "query parameter 'limit'"),
    ("limit=abc", "query parameter 'limit'"),
    ("limit=100000", "query parameter 'limit'"),
    ("offset=-1", "query parameter 'offset'"),
    ("f=kml", "query parameter 'f'"),
    ("colour=red", "unknown query parameter(s) colour"),
])
def test_bad_filters_are_400(api, query, words):
    r = api.get(f"/api/patches?{query}", headers=bearer(PLANNER))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["code"] == "InvalidParameterValue" and words in body["description"]


# --- detail ------------------------------------------------------------------------------------------------------

def test_detail_with_breakdown_approvals_sources(api, layer):
    legal = layer[(layer["verdict"] == "legal")].iloc[0]
    r = api.get(f"/api/patches/{legal['JCBH']}", headers=bearer(PLANNER))
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    d = r.json()
    assert d["JCBH"] == legal["JCBH"] and d["case_id"] == legal["JCBH"]
    b = d["breakdown"]
    assert b["area_m2"] == pytest.approx(legal["area_m2"], abs=0.005)
    assert b["land_use_before"]["cultivated"] == pytest.approx(legal["area_cultivated"], abs=0.005)
    assert b["approvals"]["approved_share"] >= 0.95
    ids = json.loads(legal["approval_ids"])
    assert sorted(a.get("PZWH") or a.get("DZJGH") for a in d["approvals"]) == sorted(ids)
    assert sum(a["overlap_m2"] for a in d["approvals"]) >= 0.95 * legal["area_m2"]
    assert [s["id"] for s in d["sources"]] == json.loads(legal["source_ids"])
    assert any(s["layer"] == "monitoring" and s["HSX"] for s in d["sources"])
    assert d["workflow"]["status"] == "待核查" and d["workflow"]["allowed_moves"] == []  # a planner cannot move
    assert d["geometry"]["type"] == "MultiPolygon" and d["history"] == [] and d["evidence"] == []
    insp = api.get(f"/api/patches/{legal['JCBH']}", headers=bearer(INSPECTOR)).json()
    assert insp["workflow"]["can_judge"] is True
    assert [m["to"] for m in insp["workflow"]["allowed_moves"]] == ["已核查"]


def test_detail_of_unknown_patch_is_404(api):
    r = api.get("/api/patches/NOPE-1", headers=bearer(PLANNER))
    assert r.status_code == 404 and r.json()["code"] == "NotFound" and "NOPE-1" in r.json()["description"]
    r = api.get("/api/patches/X?foo=1", headers=bearer(PLANNER))
    assert r.status_code == 400


def test_detail_by_a_merged_source_id(api, layer):
    row = layer[layer["n_sources"] > 1].iloc[0]
    other = next(s for s in json.loads(row["source_ids"]) if s != row["JCBH"])
    d = api.get(f"/api/patches/{other}", headers=bearer(PLANNER)).json()
    assert d["JCBH"] == row["JCBH"]


# --- writes ------------------------------------------------------------------------------------------------------

def _judge(api, jcbh, version, judgement="违法", note="现场核查", token=INSPECTOR):
    headers = {**bearer(token), **({"If-Match": f'"{version}"'} if version is not None else {})}
    return api.post(f"/api/patches/{jcbh}/judgement", json={"judgement": judgement, "note": note}, headers=headers)


def test_judgement_flow_with_versions(api, layer):
    jcbh = _ids(layer)[0]
    r = _judge(api, jcbh, None)
    assert r.status_code == 428 and r.json()["code"] == "PreconditionRequired" and "If-Match" in r.json()["description"]
    r = _judge(api, jcbh, 1)
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    body = r.json()
    assert body["patch"]["workflow"]["status"] == "已核查" and body["patch"]["workflow"]["judgement"] == "违法"
    assert body["audit"]["user"] == "张三" and body["audit"]["version_after"] == 2
    # the other inspector still holds version 1: refused, told who changed it
    r = _judge(api, jcbh, 1, "合法", token=INSPECTOR2)
    assert r.status_code == 412 and r.headers["etag"] == '"2"'
    assert r.json()["code"] == "PreconditionFailed" and r.json()["current_version"] == 2
    assert "张三" in r.json()["description"]
    assert api.get(f"/api/patches/{jcbh}", headers=bearer(PLANNER)).json()["workflow"]["judgement"] == "违法"
    # weak and bare ETags are accepted
    r = api.post(f"/api/patches/{jcbh}/transition", json={"to": "立案", "note": "立案查处"},
                 headers={**bearer(INSPECTOR), "If-Match": 'W/"2"'})
    assert r.status_code == 200 and r.json()["patch"]["workflow"]["status"] == "立案"
    listed = api.get("/api/patches?status=立案", headers=bearer(PLANNER)).json()
    assert [i["JCBH"] for i in listed["items"]] == [jcbh]
    hist = api.get(f"/api/patches/{jcbh}", headers=bearer(PLANNER)).json()["history"]
    assert [(h["user"], h["from_status"], h["to_status"]) for h in hist] == [("张三", "待核查", "已核查"),
                                                                            ("张三", "已核查", "立案")]


@pytest.mark.parametrize("body, headers, status, code, words", [
    ({"to": "销号", "note": "x"}, {"If-Match": '"1"'}, 409, "Conflict", "cannot move to 销号"),
    ({"to": "已核查"}, {"If-Match": '"1"'}, 400, "InvalidParameterValue", "records a judgement"),
    ({"to": "归档"}, {"If-Match": '"1"'}, 400, "InvalidParameterValue", "status '归档' is unknown"),
    ({"to": "已核查", "judgement": "违法", "colour": 1}, {"If-Match": '"1"'}, 422, "UnprocessableEntity",
     "Extra inputs are not permitted"),
    ({"note": "x"}, {"If-Match": '"1"'}, 422, "UnprocessableEntity", "body 'to': is required"),
    ({"to": "已核查", "judgement": "违法"}, {"If-Match": '"abc"'}, 400, "InvalidParameterValue", "is not a version"),
    ({"to": "已核查", "judgement": "违法"}, {"If-Match": "*"}, 400, "InvalidParameterValue", "If-Match: * is not"),
    ({"to": "已核查", "judgement": "违法"}, {"If-Match": '"7"'}, 412, "PreconditionFailed", "not 7"),
])
def test_bad_transitions(api, layer, body, headers, status, code, words):
    jcbh = _ids(layer)[1]
    r = api.post(f"/api/patches/{jcbh}/transition", json=body, headers={**bearer(INSPECTOR), **headers})
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and words in r.json()["description"]
    assert api.get(f"/api/patches/{jcbh}", headers=bearer(PLANNER)).json()["workflow"]["version"] == 1


def test_malformed_json_body_is_400(api, layer):
    r = api.post(f"/api/patches/{_ids(layer)[1]}/judgement", content=b'{"judgement": ',
                 headers={**bearer(INSPECTOR), "If-Match": '"1"', "Content-Type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["description"]


def test_roles_on_writes(api, layer):
    jcbh = _ids(layer)[2]
    r = _judge(api, jcbh, 1, token=PLANNER)
    assert r.status_code == 403 and r.json()["code"] == "Forbidden" and "planner" in r.json()["description"]
    r = api.post(f"/api/patches/{jcbh}/judgement", json={"judgement": "违法"}, headers={"If-Match": '"1"'})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = _judge(api, jcbh, 1, token="wrong-token-000")
    assert r.status_code == 401 and "not known" in r.json()["description"]
    assert _judge(api, jcbh, 1, "违法").status_code == 200
    # sending a patch back is an admin move
    back = {"to": "待核查", "note": "认定有误"}
    r = api.post(f"/api/patches/{jcbh}/transition", json=back, headers={**bearer(INSPECTOR), "If-Match": '"2"'})
    assert r.status_code == 403 and "needs role admin" in r.json()["description"]
    r = api.post(f"/api/patches/{jcbh}/transition", json=back, headers={**bearer(ADMIN), "If-Match": '"2"'})
    assert r.status_code == 200
    w = r.json()["patch"]["workflow"]
    assert (w["status"], w["judgement"], w["version"]) == ("待核查", None, 3)


def test_evidence_upload_and_download(api, layer, tmp_path):
    jcbh = _ids(layer)[3]
    form = {"taken_at": "2024-07-01T10:00:00+08:00", "lon": "115.1", "lat": "37.1", "azimuth": "135",
            "note": "东侧拍摄"}
    r = api.post(f"/api/patches/{jcbh}/evidence", files={"file": ("现场1.jpg", JPEG, "image/jpeg")}, data=form,
                 headers={**bearer(INSPECTOR), "If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"'
    body = r.json()
    ev = body["patch"]["evidence"][0]
    assert (ev["filename"], ev["taken_at"], ev["lon"], ev["lat"], ev["azimuth"], ev["bytes"]) == \
        ("现场1.jpg", "2024-07-01T02:00:00Z", 115.1, 37.1, 135.0, len(JPEG))
    assert body["audit"]["action"] == "evidence" and body["audit"]["evidence_id"] == ev["evidence_id"]
    got = api.get(ev["url"], headers=bearer(PLANNER))
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg" and got.content == JPEG
    assert api.get(ev["url"]).status_code == 401
    assert api.get("/api/evidence/" + "0" * 32, headers=bearer(PLANNER)).status_code == 404
    assert api.get("/api/evidence/../../etc", headers=bearer(PLANNER)).status_code in (400, 404)


@pytest.mark.parametrize("files, form, headers, status, code, words", [
    ({"file": ("a.txt", b"hello world", "image/jpeg")}, {}, {}, 415, "UnsupportedMediaType", "not a JPEG"),
    ({"file": ("big.jpg", b"\xff\xd8\xff" + b"0" * 200_000, "image/jpeg")}, {}, {}, 413, "PayloadTooLarge",
     "limit is 50,000 bytes"),
    ({"file": ("a.png", PNG, "image/png")}, {"taken_at": "yesterday"}, {}, 400, "InvalidParameterValue",
     "not an ISO 8601 time"),
    ({"file": ("a.png", PNG, "image/png")}, {"taken_at": "2024-07-01T10:00:00"}, {}, 400, "InvalidParameterValue",
     "no time zone"),
    ({"file": ("a.png", PNG, "image/png")}, {"taken_at": "2999-01-01T00:00:00Z"}, {}, 400, "InvalidParameterValue",
     "future"),
    ({"file": ("a.png", PNG, "image/png")}, {"lon": "190"}, {}, 422, "UnprocessableEntity", "body 'lon'"),
    ({"file": ("a.png", PNG, "image/png")}, {"azimuth": "360"}, {}, 422, "UnprocessableEntity", "body 'azimuth'"),
    ({}, {}, {}, 422, "UnprocessableEntity", "body 'file': is required"),
    ({"file": ("a.png", PNG, "image/png")}, {}, {"If-Match": None}, 428, "PreconditionRequired", "If-Match"),
])
def test_bad_evidence_uploads(api, layer, files, form, headers, status, code, words):
    jcbh = _ids(layer)[4]
    data = {"taken_at": "2024-07-01T10:00:00+08:00", "lon": "115.1", "lat": "37.1", **form}
    hdrs = {**bearer(INSPECTOR), "If-Match": '"1"', **headers}
    hdrs = {k: v for k, v in hdrs.items() if v is not None}
    r = api.post(f"/api/patches/{jcbh}/evidence", files=files or None, data=data, headers=hdrs)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code and words in r.json()["description"]
    assert api.get(f"/api/patches/{jcbh}", headers=bearer(PLANNER)).json()["evidence"] == []


# --- audit ---------------------------------------------------------------------------------------------------------

def test_audit_log_read_filter_and_no_edit(api, layer):
    jcbh = _ids(layer)[5]
    assert _judge(api, jcbh, 1, "其他", "大棚", token=INSPECTOR2).status_code == 200
    r = api.get(f"/api/audit?jcbh={jcbh}", headers=bearer(PLANNER))
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 1
    row = body["items"][0]
    assert (row["user"], row["role"], row["action"], row["to_judgement"], row["note"]) == \
        ("赵六", "inspector", "judgement", "其他", "大棚")
    assert row["before"]["status"] == "待核查" and row["after"]["status"] == "已核查" and row["at"].endswith("Z")
    mine = api.get("/api/audit?user=赵六", headers=bearer(PLANNER)).json()
    assert {i["user"] for i in mine["items"]} == {"赵六"}
    for method in ("put", "patch", "delete"):
        for path in ("/api/audit", f"/api/audit/{row['seq']}"):
            r = getattr(api, method)(path, headers=bearer(ADMIN))
            assert r.status_code == 405 and "append-only" in r.json()["description"]
    assert api.get("/api/audit?action=erase", headers=bearer(PLANNER)).status_code == 400
    assert api.get("/api/audit?since=last-week", headers=bearer(PLANNER)).status_code == 400
    assert api.get("/api/audit", headers=bearer("nope-nope-nope")).status_code == 401
    verify = api.get("/api/audit/verify", headers=bearer(ADMIN))
    assert verify.status_code == 200 and verify.json()["ok"] is True
    assert api.get("/api/audit/verify", headers=bearer(INSPECTOR)).status_code == 403


# --- exports -------------------------------------------------------------------------------------------------------

def test_export_gpkg(api, layer, tmp_path):
    r = api.get("/api/patches/export?format=gpkg&verdict=suspected_illegal", headers=bearer(PLANNER))
    assert r.status_code == 200 and r.headers["content-type"] == "application/geopackage+sqlite3"
    assert r.headers["content-disposition"].startswith('attachment; filename="flagged_patches_')
    path = tmp_path / "x.gpkg"
    path.write_bytes(r.content)
    got = pyogrio.read_dataframe(path, layer="flagged_patches")
    expected = layer[layer["verdict"] == "suspected_illegal"]
    assert sorted(got["JCBH"]) == sorted(expected["JCBH"])
    assert got.crs.to_epsg() == 4547
    assert {"status", "judgement", "version", "updated_by", "verdict_reason"} <= set(got.columns)
    assert got["area_m2"].sum() == pytest.approx(expected["area_m2"].sum(), abs=0.01)


@pytest.mark.parametrize("encoding, cpg, codec", [("utf-8", "UTF-8", "utf-8"), ("gbk", "GBK", "gbk")])
def test_export_shapefile(api, layer, tmp_path, encoding, cpg, codec):
    jcbh = _ids(layer)[6 if encoding == "utf-8" else 7]
    assert _judge(api, jcbh, 1, "违法", "新建厂房").status_code == 200
    r = api.get(f"/api/patches/export?format=shp&encoding={encoding}", headers=bearer(PLANNER))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = sorted(zf.namelist())
    assert names == ["fields.txt", "flagged_patches.cpg", "flagged_patches.dbf", "flagged_patches.prj",
                     "flagged_patches.shp", "flagged_patches.shx"]
    assert zf.read("flagged_patches.cpg").decode().strip() == cpg
    zf.extractall(tmp_path)
    got = pyogrio.read_dataframe(tmp_path / "flagged_patches.shp", encoding=cpg)
    assert len(got) == 50 and got.crs.to_epsg() == 4547
    row = got[got["JCBH"] == jcbh].iloc[0]
    assert (row["STATUS"], row["JUDGEMENT"], row["UPD_BY"]) == ("已核查", "违法", "张三")
    assert row["VERDICT_ZH"] in ("合法", "少批多占", "未批先建", "其他")
    raw = zf.read("flagged_patches.dbf")
    assert "未批先建".encode(codec) in raw
    if codec == "gbk":
        assert "未批先建".encode() not in raw
        assert "平方米".encode("gbk") in raw  # m² has no GBK code: written as 平方米
    assert "JUDGEMENT\tjudgement" in zf.read("fields.txt").decode("utf-8")


def test_export_xlsx(api, layer):
    r = api.get("/api/patches/export?format=xlsx&status=已核查", headers=bearer(PLANNER))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["图斑核查", "操作记录", "说明"]
    ws = wb["图斑核查"]
    header = [c.value for c in ws[1]]
    assert header[:3] == ["监测编号", "案件编号", "行政区代码(村)"] and "核查认定" in header
    rows = list(ws.iter_rows(min_row=2, values_only=True))
    assert rows and all(r[header.index("状态")] == "已核查" for r in rows)
    log = list(wb["操作记录"].iter_rows(min_row=2, values_only=True))
    assert log and all(r[4] in ("judgement", "transition", "evidence") for r in log)


@pytest.mark.parametrize("query, words", [
    ("format=pdf", "format='pdf' is unknown"),
    ("format=shp&encoding=latin1", "encoding='latin1' is unknown"),
    ("format=xlsx&encoding=gbk", "applies to format=shp only"),
    ("format=gpkg&limit=5", "unknown query parameter(s) limit"),
    ("format=gpkg&verdict=nope", "verdict='nope' is unknown"),
    ("", "query parameter 'format': is required"),
])
def test_bad_exports(api, query, words):
    r = api.get(f"/api/patches/export?{query}", headers=bearer(PLANNER))
    assert r.status_code == 400 and words in r.json()["description"]


def test_workflow_me_and_unknown_routes(api):
    wf = api.get("/api/workflow").json()
    assert list(wf["statuses"]) == ["待核查", "已核查", "立案", "整改中", "已整改", "销号"]
    assert api.get("/api/me").json() == {"user": "anonymous", "role": "anonymous", "can_judge": False}
    assert api.get("/api/me", headers=bearer(INSPECTOR)).json() == {"user": "张三", "role": "inspector",
                                                                    "can_judge": True}
    r = api.get("/api/nothing")
    assert r.status_code == 404 and r.json()["code"] == "NotFound"
    r = api.delete("/api/patches", headers=bearer(ADMIN))
    assert r.status_code == 405 and r.json()["code"] == "MethodNotAllowed"


# --- the same core flow on PostGIS ----------------------------------------------------------------------------------

@pytest.mark.postgis
def test_core_flow_on_postgis(analysed_pg, tmp_path):
    api = client_for(analysed_pg, tmp_path)
    ids = sorted(patch_ids(analysed_pg))
    jcbh = ids[-1]
    body = api.get("/api/patches?limit=5", headers=bearer(PLANNER)).json()
    assert body["total"] == 50 and len(body["items"]) == 5
    assert api.get("/api/patches?bbox=1,2", headers=bearer(PLANNER)).status_code == 400
    v = api.get(f"/api/patches/{jcbh}", headers=bearer(PLANNER)).json()["workflow"]["version"]
    r = _judge(api, jcbh, v, "违法", "PostGIS")
    assert r.status_code == 200 and r.headers["etag"] == f'"{v + 1}"'
    assert _judge(api, jcbh, v, "合法", token=INSPECTOR2).status_code == 412
    r = api.post(f"/api/patches/{jcbh}/evidence", files={"file": ("a.jpg", JPEG, "image/jpeg")},
                 data={"taken_at": "2024-07-01T10:00:00+08:00", "lon": "115.1", "lat": "37.1"},
                 headers={**bearer(INSPECTOR), "If-Match": f'"{v + 1}"'})
    assert r.status_code == 200 and len(r.json()["patch"]["evidence"]) == 1
    audit = api.get(f"/api/audit?jcbh={jcbh}", headers=bearer(PLANNER)).json()
    assert [i["action"] for i in audit["items"]] == ["evidence", "judgement"]
    r = api.get("/api/patches/export?format=xlsx&judgement=违法", headers=bearer(PLANNER))
    assert r.status_code == 200
    rows = list(load_workbook(io.BytesIO(r.content))["图斑核查"].iter_rows(min_row=2, values_only=True))
    assert jcbh in [row[0] for row in rows]

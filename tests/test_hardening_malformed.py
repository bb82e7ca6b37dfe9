"""Malformed input is a 4xx naming the value, never a 5xx (issue 12, item 5): integers beyond 64 bits, filters
nested past what a parser can take, dates at the ends of the calendar, deeply nested JSON / YAML bodies, a
5 000-digit If-Match. Each case answered 500 or 503 before issue 12. On both backends for what reads the store."""

from __future__ import annotations

import shutil

import pytest

from tests.serve_fixtures import (  # noqa: F401
    ADMIN,
    INSPECTOR,
    PLANNER,
    analysed_gpkg,
    analysed_pg,
    bearer,
    client_for,
    patch_ids,
)

BIG = str(2**63)
HUGE = "1" + "0" * 23


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def api(request, analysed_gpkg, tmp_path_factory):
    work = tmp_path_factory.mktemp("malformed")
    if request.param == "gpkg":
        store = work / "store.gpkg"
        shutil.copyfile(analysed_gpkg, store)
    else:
        store = request.getfixturevalue("analysed_pg")
    client = client_for(store, work, raise_server_exceptions=False)
    client.jcbh = patch_ids(store)[0]
    return client


def _deep_filter(n: int) -> str:
    return "(" * n + "TBMJ > 1" + ")" * n


CASES = [
    # integers beyond 64 bits
    ("get", f"/ogc/collections/dltb/items?offset={BIG}", None, None, 400, "offset"),
    ("get", f"/ogc/collections/dltb/items?offset={HUGE}", None, None, 400, "offset"),
    ("get", f"/ogc/collections/dltb/items/{BIG}", None, None, 404, "not"),
    ("get", f"/ogc/collections/dltb/items/-{BIG}", None, None, 404, "not"),
    ("get", f"/ogc/collections/dltb/items?SJNF={BIG}", None, None, 400, "SJNF"),
    ("get", "/ogc/collections/dltb/items?TBMJ=1e999", None, None, 400, "TBMJ"),
    ("get", f"/ogc/collections/dltb/items?filter=SJNF%20%3D%20{BIG}", None, None, 400, "SJNF"),
    ("get", f"/ogc/collections/dltb/items?filter=TBMJ%20%3E%20{HUGE}0000000", None, None, 200, None),
    ("get", f"/api/audit?offset={HUGE}", PLANNER, None, 400, "offset"),
    ("get", f"/api/patches?offset={HUGE}", PLANNER, None, 400, "offset"),
    ("get", f"/api/patches?limit={HUGE}", PLANNER, None, 400, "limit"),
    ("get", f"/api/indicators?level=county&offset={HUGE}", PLANNER, None, 400, "offset"),
    # filters nested past a parser's stack
    ("get", f"/ogc/collections/dltb/items?filter={_deep_filter(100)}", None, None, 400, "nested"),
    ("get", f"/ogc/collections/dltb/items?filter={_deep_filter(1200)}", None, None, 400, "nested"),
    ("get", "/ogc/collections/dltb/items?filter=" + "NOT%20" * 100 + "TBMJ%20%3E%201", None, None, 400, "nested"),
    ("get", "/ogc/collections/dltb/items?filter=" + "NOT%20" * 300 + "TBMJ%20%3E%201", None, None, 400, "operators"),
    ("get", "/ogc/collections/dltb/items?filter=" + "%20OR%20".join(["TBMJ%20%3E%201"] * 600), None, None, 400,
     "operators"),
    ("get", "/ogc/collections/dltb/items?filter=" + "%20OR%20".join(["TBMJ%20%3E%201"] * 200), None, None, 200, None),
    ("get", "/ogc/collections/dltb/items?filter=" + "%20AND%20".join(["(TBMJ%20%3E%201%20OR%20TBMJ%20%3C%200)"] * 100),
     None, None, 200, None),
    # dates at the ends of the calendar
    ("get", "/api/audit?since=0001-01-01T00:00:00%2B08:00", PLANNER, None, 400, "since"),
    ("get", "/api/audit?since=9999-12-31T23:59:59-08:00", PLANNER, None, 400, "since"),
    ("get", "/api/audit?since=0001-01-01", PLANNER, None, 200, None),
    # a 5 000-digit If-Match
    ("post", "/api/patches/{jcbh}/judgement", INSPECTOR, {"If-Match": '"' + "9" * 5000 + '"'}, 400, "If-Match"),
    ("post", "/api/patches/{jcbh}/judgement", INSPECTOR, {"If-Match": '"' + BIG + '"'}, 400, "If-Match"),
    ("post", "/api/patches/{jcbh}/judgement", INSPECTOR, {"If-Match": '"99999"'}, 412, "version"),
]


@pytest.mark.parametrize("method, path, token, headers, status, words", CASES)
def test_malformed_requests_are_4xx(api, method, path, token, headers, status, words):
    hdrs = {**(bearer(token) if token else {}), **(headers or {})}
    url = path.format(jcbh=api.jcbh)
    if method == "post":
        r = api.post(url, json={"judgement": "违法", "note": "x"}, headers=hdrs)
    else:
        r = api.get(url, headers=hdrs)
    assert r.status_code == status, (url[:120], r.status_code, r.text[:400])
    if words:
        assert words in r.json()["description"], r.text[:400]


def _nested_json(n: int) -> bytes:
    return b'{"type": "Feature", "geometry": ' + b"[" * n + b"]" * n + b"}"


@pytest.mark.parametrize("path, token, body, ctype", [
    ("/api/review", PLANNER, _nested_json(100_000), "application/json"),
    ("/api/review", PLANNER, _nested_json(500), "application/json"),
    ("/api/review/map", PLANNER, _nested_json(100_000), "application/json"),
    ("/api/patches/{jcbh}/judgement", INSPECTOR, b'{"judgement": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
     "application/json"),
    ("/api/selfeval.xlsx", PLANNER, b"a:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 3000)),
     "application/yaml"),
    ("/api/selfeval.xlsx", PLANNER, b"[" * 100_000 + b"]" * 100_000, "application/yaml"),
    ("/api/selfeval.xlsx", PLANNER, b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     b"g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n", "application/yaml"),
])
def test_deeply_nested_bodies_are_4xx(api, path, token, body, ctype):
    r = api.post(path.format(jcbh=api.jcbh), content=body,
                 headers={**bearer(token), "Content-Type": ctype, "If-Match": '"1"'})
    assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
    assert r.json()["description"], r.text[:300]


@pytest.mark.parametrize("taken_at", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-08:00"])
def test_evidence_times_at_the_ends_of_the_calendar(api, taken_at):
    r = api.post(f"/api/patches/{api.jcbh}/evidence", headers={**bearer(INSPECTOR), "If-Match": '"1"'},
                 files={"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100, "image/png")},
                 data={"taken_at": taken_at, "lon": "115.1", "lat": "37.1"})
    assert r.status_code == 400 and "taken_at" in r.json()["description"], r.text[:300]


def test_evidence_for_a_patch_that_does_not_exist_leaves_no_folder(api):
    folder = api.app.state.settings.evidence_dir
    r = api.post("/api/patches/NOPE-404/evidence", headers={**bearer(INSPECTOR), "If-Match": '"1"'},
                 files={"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100, "image/png")},
                 data={"taken_at": "2024-07-01T10:00:00+08:00", "lon": "115.1", "lat": "37.1"})
    assert r.status_code == 404 and "NOPE-404" in r.json()["description"], r.text
    assert not (folder / "NOPE-404").exists()
    assert not folder.exists() or not any(p.suffix in (".png", ".part") for p in folder.rglob("*"))

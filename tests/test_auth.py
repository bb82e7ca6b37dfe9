"""Access: tokens from settings and the tokens file, bearer / X-API-Key, 401 / 403, anonymous OGC reads."""

from __future__ import annotations

import pytest

from layers.errors import RuleError
from services.auth import TokenRegistry
from services.settings import Principal
from tests.serve_fixtures import (  # noqa: F401
    ADMIN,
    INSPECTOR,
    PLANNER,
    analysed_gpkg,
    bearer,
    client_for,
    settings_for,
)


@pytest.fixture(scope="module")
def closed(analysed_gpkg, tmp_path_factory):
    """The app with anonymous_read off."""
    return client_for(analysed_gpkg, tmp_path_factory.mktemp("auth_closed"), anonymous_read=False)


@pytest.fixture(scope="module")
def opened(analysed_gpkg, tmp_path_factory):
    return client_for(analysed_gpkg, tmp_path_factory.mktemp("auth_open"), anonymous_read=True)


def test_tokens_file_is_merged(tmp_path):
    path = tmp_path / "tokens.yaml"
    path.write_text("tok-file-0123456: {user: 钱七, role: admin}\n", encoding="utf-8")
    s = settings_for(tmp_path / "s.gpkg", tmp_path, tokens={"tok-inline-0123": {"user": "孙八", "role": "planner"}},
                     tokens_file=path)
    tokens = TokenRegistry(s)
    assert tokens.lookup("tok-inline-0123").principal == Principal(user="孙八", role="planner")
    assert tokens.lookup("tok-file-0123456").principal == Principal(user="钱七", role="admin")
    assert tokens.lookup("tok-file-0123457") is None


@pytest.mark.parametrize("text, words", [
    ("tok-0123456789: {user: a, role: boss}\n", "role 'boss'"),
    ("tok-0123456789: alice\n", "must map to {user, role}"),
    ("- just a list\n", "must hold `tokens:`"),
    ("short: {user: a, role: admin}\n", "shorter than 8 characters"),
    ("tok: [unclosed\n", "cannot be read as YAML"),
])
def test_bad_tokens_files(tmp_path, text, words):
    path = tmp_path / "tokens.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleError) as info:
        TokenRegistry(settings_for(tmp_path / "s.gpkg", tmp_path, tokens={}, tokens_file=path))
    assert words in str(info.value)


def test_missing_tokens_file(tmp_path):
    with pytest.raises(RuleError, match="does not exist"):
        TokenRegistry(settings_for(tmp_path / "s.gpkg", tmp_path, tokens={}, tokens_file=tmp_path / "none.yaml"))


@pytest.mark.parametrize("headers, status, words", [
    ({}, 401, "needs a planner token"),
    ({"Authorization": "Bearer wrong-token-xyz"}, 401, "not known"),
    ({"X-API-Key": "wrong-token-xyz"}, 401, "not known"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "must be 'Bearer <token>'"),
    ({"Authorization": "Bearer "}, 401, "must be 'Bearer <token>'"),
    ({"X-API-Key": ""}, 401, "X-API-Key header is empty"),
    (bearer(PLANNER), 200, None),
    ({"X-API-Key": PLANNER}, 200, None),
    (bearer(INSPECTOR), 200, None),
])
def test_read_endpoints_need_a_valid_token(closed, headers, status, words):
    r = closed.get("/api/patches?limit=1", headers=headers)
    assert r.status_code == status, r.text
    if words:
        assert r.json()["code"] == "Unauthorized" and words in r.json()["description"]
        assert r.headers["www-authenticate"] == 'Bearer realm="yizhangtu"'


@pytest.mark.parametrize("method, path, token, status", [
    ("post", "/api/patches/X/judgement", PLANNER, 403),
    ("post", "/api/patches/X/transition", PLANNER, 403),
    ("post", "/api/patches/X/evidence", PLANNER, 403),
    ("post", "/api/indicators/runs", INSPECTOR, 403),
    ("get", "/api/audit/verify", INSPECTOR, 403),
    ("get", "/api/audit/verify", ADMIN, 200),
    ("post", "/api/review", None, 401),
    ("get", "/api/indicators", None, 401),
    ("get", "/api/selfeval.xlsx?targets=sample", None, 401),
])
def test_every_write_checks_the_role(closed, method, path, token, status):
    headers = bearer(token) if token else {}
    r = getattr(closed, method)(path, headers=headers)
    assert r.status_code == status, r.text
    if status == 403:
        assert r.json()["code"] == "Forbidden" and "needs" in r.json()["description"]


def test_ogc_closed_to_anonymous_when_setting_off(closed):
    r = closed.get("/ogc/collections")
    assert r.status_code == 401 and "anonymous_read is off" in r.json()["description"]
    assert closed.get("/ogc/collections/xzq/items?f=json&limit=1", headers=bearer(PLANNER)).status_code == 200
    r = closed.get("/ogc/collections", headers=bearer("wrong-token-xyz"))
    assert r.status_code == 401


def test_ogc_open_to_anonymous_when_setting_on(opened):
    r = opened.get("/ogc/collections/xzq/items?f=json&limit=2")
    assert r.status_code == 200 and len(r.json()["features"]) == 2
    # a wrong token is still an error, even where no token is needed
    assert opened.get("/ogc/collections", headers=bearer("wrong-token-xyz")).status_code == 401
    # the workbench is never anonymous
    assert opened.get("/api/patches").status_code == 401


def test_pages_and_config_are_open(closed):
    assert closed.get("/").status_code == 200
    cfg = closed.get("/api/config").json()
    assert cfg["anonymous_read"] is False and cfg["region_code"] == "130599"

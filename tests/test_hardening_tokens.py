"""Tokens (issue 12, item 6): stored hashed, issued and revoked with `yzt token`, expiry, unit, hot reload,
failed-attempt limiting, comparison in constant time whatever the token's length."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
import yaml
from click.testing import CliRunner

from services.auth import TokenRegistry
from services.cli import cli
from services.cli.token import add_token, revoke_token
from services.settings import Principal
from tests.serve_fixtures import ADMIN, analysed_gpkg, bearer, client_for, settings_for  # noqa: F401


def test_the_file_keeps_only_hashes(tmp_path):
    path = tmp_path / "tokens.yaml"
    token, entry = add_token(path, "张三", "inspector", unit="130599")
    text = path.read_text(encoding="utf-8")
    assert token not in text and token[4:20] not in text
    assert f"sha256:{hashlib.sha256(token.encode()).hexdigest()}" in text
    assert (path.stat().st_mode & 0o777) == 0o600
    doc = yaml.safe_load(text)
    assert doc["tokens"][0]["id"] == entry["id"] and doc["tokens"][0]["unit"] == "130599"
    who = TokenRegistry(settings_for(tmp_path / "s.gpkg", tmp_path, tokens={}, tokens_file=path)).lookup(token)
    assert who.principal == Principal(user="张三", role="inspector", unit="130599")


def test_inline_tokens_are_kept_as_hashes(tmp_path):
    digest = "sha256:" + hashlib.sha256(b"tok-hashed-0123").hexdigest()
    reg = TokenRegistry(settings_for(tmp_path / "s.gpkg", tmp_path, tokens={
        "tok-plain-0123": {"user": "a", "role": "planner"}, digest: {"user": "b", "role": "admin", "unit": "1305"}}))
    assert all(len(e.digest) == 32 for e in reg.entries())
    assert not any(b"tok-plain" in e.digest for e in reg.entries())
    assert reg.lookup("tok-hashed-0123").principal.unit == "1305"
    assert reg.lookup(digest) is None  # the hash itself is not a token


def test_comparison_is_constant_time_and_length_blind(tmp_path, monkeypatch):
    tokens = {f"tok-{i:02d}-0123456789": {"user": f"u{i}", "role": "planner"} for i in range(5)}
    reg = TokenRegistry(settings_for(tmp_path / "s.gpkg", tmp_path, tokens=tokens))
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented in ("tok-00-0123456789", "tok-04-0123456789", "x", "y" * 1000):
        calls.clear()
        reg.lookup(presented)
        # every known token is compared (no early exit), always 32 bytes against 32 bytes
        assert calls == [(32, 32)] * 5, presented


@pytest.fixture
def app_with_file(analysed_gpkg, tmp_path):
    path = tmp_path / "tokens.yaml"
    token, entry = add_token(path, "张三", "inspector", unit="130599")
    client = client_for(analysed_gpkg, tmp_path, tokens={ADMIN: {"user": "王五", "role": "admin"}}, tokens_file=path,
                        auth_max_failures=5, auth_failure_window_s=60)
    return client, path, token, entry


def test_revoked_and_new_tokens_take_effect_without_restart(app_with_file):
    client, path, token, entry = app_with_file
    r = client.get("/api/me", headers=bearer(token))
    assert r.status_code == 200 and r.json() == {"user": "张三", "role": "inspector", "can_judge": True}
    new, _ = add_token(path, "李四", "planner")
    assert client.get("/api/me", headers=bearer(new)).json()["user"] == "李四"
    revoke_token(path, entry["id"])
    r = client.get("/api/me", headers=bearer(token))
    assert r.status_code == 401 and "not known" in r.json()["description"]
    assert client.get("/api/me", headers=bearer(new)).status_code == 200


def test_a_broken_file_refuses_its_tokens_until_fixed(app_with_file):
    client, path, token, _ = app_with_file
    good = path.read_text(encoding="utf-8")
    path.write_text("tokens: [unclosed\n", encoding="utf-8")
    r = client.get("/api/me", headers=bearer(token))
    assert r.status_code == 401 and "tokens file is unusable" in r.json()["description"]
    assert client.get("/api/me", headers=bearer(ADMIN)).status_code == 200  # settings.tokens still work
    path.write_text(good, encoding="utf-8")
    assert client.get("/api/me", headers=bearer(token)).status_code == 200


def test_expired_tokens_are_refused(analysed_gpkg, tmp_path):
    path = tmp_path / "tokens.yaml"
    now = dt.datetime.now(dt.UTC)
    token, entry = add_token(path, "张三", "inspector", expires=now + dt.timedelta(days=1))
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["tokens"][0]["expires"] = (now - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    client = client_for(analysed_gpkg, tmp_path, tokens={}, tokens_file=path)
    r = client.get("/api/me", headers=bearer(token))
    assert r.status_code == 401 and "expired at" in r.json()["description"]


def test_failed_attempts_are_limited_per_address(app_with_file):
    client, _, token, _ = app_with_file
    for i in range(5):
        r = client.get("/api/me", headers=bearer(f"guess-{i:04d}-abcdefgh"))
        assert r.status_code == 401, r.text
    r = client.get("/api/me", headers=bearer("guess-9999-abcdefgh"))
    assert r.status_code == 429 and r.json()["code"] == "TooManyRequests"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    # while locked out, even a valid token is not tried (a guess that happens to be right learns nothing)
    assert client.get("/api/me", headers=bearer(token)).status_code == 429
    assert client.get("/ogc/collections", headers=bearer(token)).status_code == 429
    # a request without a token is not an attempt: the open pages and routes still answer
    assert client.get("/api/config").status_code == 200


def test_unknown_tokens_are_refused_on_open_api_routes_too(app_with_file):
    client = app_with_file[0]
    for path in ("/api/config", "/api/workflow", "/api/me", "/ogc/collections"):
        r = client.get(path, headers=bearer("nobody-knows-this-one"))
        assert r.status_code == 401, path
    assert client.get("/", headers=bearer("nobody-knows-this-one")).status_code == 200  # pages ignore tokens


def test_cli_add_list_revoke(tmp_path):
    path = tmp_path / "t.yaml"
    runner = CliRunner()
    r = runner.invoke(cli, ["token", "add", "--file", str(path), "--user", "张三", "--role", "inspector", "--unit",
                            "130599", "--days", "30"])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("yzt_") and len(token) > 40 and token not in path.read_text(encoding="utf-8")
    r = runner.invoke(cli, ["token", "list", "--file", str(path), "--json"])
    rows = yaml.safe_load(r.stdout)
    assert [(x["user"], x["role"], x["unit"], x["status"]) for x in rows] == [("张三", "inspector", "130599", "active")]
    r = runner.invoke(cli, ["token", "revoke", "--file", str(path), rows[0]["id"]])
    assert r.exit_code == 0 and "revoked" in r.output
    rows = yaml.safe_load(runner.invoke(cli, ["token", "list", "--file", str(path), "--json"]).stdout)
    assert rows[0]["status"] == "revoked"


@pytest.mark.parametrize("args, words", [
    (["--user", "a", "--role", "boss"], "'boss' is not one of"),
    (["--user", "a", "--role", "admin", "--unit", "12x"], "is not a 行政区代码"),
    (["--user", "a", "--role", "admin", "--expires", "2001-01-01"], "is not in the future"),
    (["--user", "a", "--role", "admin", "--expires", "soon"], "is not a date"),
])
def test_cli_refuses_bad_values_in_one_line(tmp_path, args, words):
    r = CliRunner().invoke(cli, ["token", "add", "--file", str(tmp_path / "t.yaml"), *args])
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output
    assert not (tmp_path / "t.yaml").exists()


def test_a_token_unit_scopes_a_one_county_store(analysed_gpkg, tmp_path):
    """The sample county is 130599 (市 130500, 省 130000): tokens of the county, its 市 and 省 see its patches;
    a token of another county or 市 is refused (403), naming the unit; a county the store does not hold is 404."""
    tokens = {"unit-county-0123": {"user": "县", "role": "planner", "unit": "130599"},
              "unit-city-012345": {"user": "市", "role": "planner", "unit": "130500"},
              "unit-prov-012345": {"user": "省", "role": "planner", "unit": "130000"},
              "unit-other-01234": {"user": "邻县", "role": "planner", "unit": "130598"},
              "unit-ocity-01234": {"user": "邻市", "role": "planner", "unit": "130600"}}
    client = client_for(analysed_gpkg, tmp_path, tokens=tokens)
    for token in ("unit-county-0123", "unit-city-012345", "unit-prov-012345"):
        r = client.get("/api/patches", params={"limit": 1}, headers=bearer(token))
        assert r.status_code == 200 and r.json()["total"] == 50, (token, r.text[:200])
    for token, unit in (("unit-other-01234", "130598"), ("unit-ocity-01234", "130600")):
        r = client.get("/api/patches", params={"limit": 1}, headers=bearer(token))
        assert r.status_code == 403, r.text[:200]
        assert r.json()["description"] == f"user {tokens[token]['user']!r} works for unit {unit}; county 130599 " \
                                          "is outside it"
    r = client.get("/api/patches", params={"county": "130571"}, headers=bearer("unit-prov-012345"))
    assert r.status_code == 404 and "holds 130599" in r.json()["description"]

"""The audit chain against someone with write access to the store but not the audit key (issue 12, item 4):
each tampering below is done behind the service's back (triggers dropped or disabled, SQL run by hand) on both
backends, and :meth:`PatchWorkflow.verify_audit` must name it. Before issue 12 the chain was plain SHA-256
with no head: deleting the last rows, or editing the last row and recomputing its hash, went unnoticed, and
workflow_state was not checked at all."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import sqlite3
import uuid

import pytest

from analysis.workflow import load_workflow
from layers.store.workflow import AUDIT, AUDIT_COLUMNS, HEAD, STATE
from services.jobs.workflow import KEYED, AuditSeal, audit_hash, open_patch_workflow
from services.settings import Principal
from tests.serve_fixtures import ADMIN, analysed_gpkg, bearer, client_for, patch_ids  # noqa: F401
from tests.test_hardening_concurrency import copy_to_postgis

KEY = b"k" * 32
ZHANG = Principal(user="张三", role="inspector")


class Raw:
    """SQL on the store behind the service's back, with the append-only triggers out of the way."""

    def __init__(self, target: str):
        self.target = target
        if target.endswith(".gpkg"):
            self.con = sqlite3.connect(target, isolation_level=None)
            self.ph, self.t = "?", (lambda name: f'"{name}"')
            for op in ("update", "delete"):
                self.con.execute(f'DROP TRIGGER IF EXISTS "{AUDIT}_no_{op}"')
        else:
            import psycopg

            from layers.store.postgis import parse_url

            conninfo, schema, _ = parse_url(target)
            self.con = psycopg.connect(conninfo, autocommit=True)
            self.ph, self.t = "%s", (lambda name: f'"{schema}"."{name}"')
            self.con.execute(f"ALTER TABLE {self.t(AUDIT)} DISABLE TRIGGER USER")

    def rows(self, sql: str, params=()) -> list[dict]:
        cur = self.con.execute(sql.replace("?", self.ph), params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def run(self, sql: str, params=()) -> None:
        self.con.execute(sql.replace("?", self.ph), params)

    def audit(self) -> list[dict]:
        return self.rows(f"SELECT fid, {', '.join(f'{chr(34)}{c}{chr(34)}' for c in AUDIT_COLUMNS)} "
                         f"FROM {self.t(AUDIT)} ORDER BY fid")

    def close(self) -> None:
        self.con.close()


@pytest.fixture(params=["gpkg", "postgis"])
def chain(request, analysed_gpkg, tmp_path):
    """A store with six changes on three patches, sealed with KEY and anchored in tmp_path."""
    if request.param == "gpkg":
        target = str(tmp_path / "store.gpkg")
        shutil.copyfile(analysed_gpkg, target)
    else:
        target = copy_to_postgis(analysed_gpkg, request.getfixturevalue("pg_url"))
    seal = AuditSeal(KEY, tmp_path / "anchor.json")
    flow = open_patch_workflow(target, load_workflow(), seal)
    ids = patch_ids(target)[:3]
    for jcbh in ids:
        flow.apply(jcbh, 1, ZHANG, "judgement", judgement="违法", note="现场核查")
    saved_head = Raw(target)
    old_head = saved_head.rows(f"SELECT * FROM {saved_head.t(HEAD)}")[0]
    saved_head.close()
    for jcbh in ids:
        flow.apply(jcbh, 2, ZHANG, "judgement", judgement="其他", note="更正")
    raw = Raw(target)
    yield flow, raw, old_head, ids
    raw.close()
    flow.close()
    if request.param == "postgis":
        import psycopg

        with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{target.rsplit("=", 1)[1]}" CASCADE')


def test_an_untouched_chain_verifies(chain):
    flow, raw, _, ids = chain
    check = flow.verify_audit()
    assert check == {"rows": 6, "ok": True, "first_bad_seq": None, "reason": None, "keyed": True, "head_seq": 6,
                     "anchored": True, "states": 3}
    assert all(r["hash"].startswith(KEYED) for r in raw.audit())


def _recompute(row: dict, prev: str, key: bytes | None) -> str:
    body = {k: row.get(k) for k in AUDIT_COLUMNS if k not in ("prev_hash", "hash")}
    payload = (prev + "\n" + json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"))).encode()
    return audit_hash(prev, row) if key is None else KEYED + hmac.new(key, payload, hashlib.sha256).hexdigest()


def edit_middle(raw, old_head):
    raw.run(f"UPDATE {raw.t(AUDIT)} SET note = '改过' WHERE fid = 3")


def delete_middle(raw, old_head):
    raw.run(f"DELETE FROM {raw.t(AUDIT)} WHERE fid IN (3, 4)")


def delete_tail(raw, old_head):
    raw.run(f"DELETE FROM {raw.t(AUDIT)} WHERE fid IN (5, 6)")


def delete_tail_and_head(raw, old_head):
    delete_tail(raw, old_head)
    raw.run(f"DELETE FROM {raw.t(HEAD)}")


def delete_tail_replay_old_head(raw, old_head):
    delete_tail(raw, old_head)
    delete_tail(raw, old_head)
    raw.run(f"DELETE FROM {raw.t(AUDIT)} WHERE fid > 3")
    raw.run(f"UPDATE {raw.t(HEAD)} SET seq = ?, hash = ?, mac = ?",
            (old_head["seq"], old_head["hash"], old_head["mac"]))


def _edit_last(raw, key):
    rows = raw.audit()
    last = rows[-1]
    last["note"] = "改过"
    new_hash = _recompute(last, last["prev_hash"], key)
    raw.run(f"UPDATE {raw.t(AUDIT)} SET note = ?, hash = ? WHERE fid = ?", ("改过", new_hash, last["fid"]))
    return last["fid"], new_hash


def edit_last_recompute_sha256(raw, old_head):
    _edit_last(raw, None)


def edit_last_recompute_other_key(raw, old_head):
    _edit_last(raw, b"x" * 32)


def edit_last_and_head_other_key(raw, old_head):
    seq, new_hash = _edit_last(raw, b"x" * 32)
    mac = hmac.new(b"x" * 32, f"head\naudit\n{seq}\n{new_hash}".encode(), hashlib.sha256).hexdigest()
    raw.run(f"UPDATE {raw.t(HEAD)} SET hash = ?, mac = ?", (new_hash, mac))


def append_forged_row(raw, old_head):
    last = raw.audit()[-1]
    row = {**{k: last[k] for k in AUDIT_COLUMNS}, "note": "伪造", "version_before": 3, "version_after": 4,
           "prev_hash": last["hash"]}
    row["hash"] = _recompute(row, last["hash"], None)
    cols = list(AUDIT_COLUMNS)
    raw.run(f"INSERT INTO {raw.t(AUDIT)} ({', '.join(chr(34) + c + chr(34) for c in cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})", tuple(row[c] for c in cols))


def edit_state(raw, old_head):
    raw.run(f"UPDATE {raw.t(STATE)} SET status = '销号' WHERE fid = 2")


def edit_state_version(raw, old_head):
    raw.run(f"UPDATE {raw.t(STATE)} SET version = 1, judgement = NULL, status = '待核查' WHERE fid = 1")


def delete_state(raw, old_head):
    raw.run(f"DELETE FROM {raw.t(STATE)} WHERE fid = 3")


@pytest.mark.parametrize("tamper, first_bad, words", [
    (edit_middle, 3, "row 3 was altered"),
    (delete_middle, 5, "row 5 does not follow"),
    (delete_tail, 5, "rows 5…6 were deleted"),
    (delete_tail_and_head, 5, "head of the audit chain (workflow_head) is missing"),
    (delete_tail_replay_old_head, 4, "anchor file"),
    (edit_last_recompute_sha256, 6, "unkeyed hash"),
    (edit_last_recompute_other_key, 6, "row 6 was altered"),
    (edit_last_and_head_other_key, 6, "row 6 was altered"),
    (append_forged_row, 7, "unkeyed hash"),
    (edit_state, None, "workflow_state of case"),
    (edit_state_version, None, "workflow_state of case"),
    (delete_state, None, "workflow_state has no row for case"),
])
def test_tampering_is_detected(chain, tamper, first_bad, words):
    flow, raw, old_head, _ = chain
    tamper(raw, old_head)
    check = flow.verify_audit()
    assert check["ok"] is False, check
    assert words in check["reason"], check["reason"]
    if first_bad is not None:
        assert check["first_bad_seq"] == first_bad, check


def test_the_api_seals_with_a_key_kept_outside_the_store(analysed_gpkg, tmp_path):
    store = tmp_path / "store.gpkg"
    shutil.copyfile(analysed_gpkg, store)
    client = client_for(store, tmp_path / "serve")
    key_file = tmp_path / "serve" / "work" / "audit.key"
    assert key_file.is_file() and (key_file.stat().st_mode & 0o777) == 0o600
    jcbh = patch_ids(store)[0]
    r = client.post(f"/api/patches/{jcbh}/judgement", json={"judgement": "违法", "note": "x"},
                    headers={**bearer("insp-0123456789"), "If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["audit"]["hash"].startswith(KEYED)
    check = client.get("/api/audit/verify", headers=bearer(ADMIN)).json()
    assert check["ok"] and check["keyed"] and check["anchored"] and check["head_seq"] == 1, check
    assert key_file.read_text().strip().encode() not in store.read_bytes()
    # the same store checked with another key: every row is refused
    other = open_patch_workflow(str(store), load_workflow(), AuditSeal(b"y" * 32)).verify_audit()
    assert other["ok"] is False and other["first_bad_seq"] == 1


def test_a_legacy_chain_is_sealed_by_the_first_keyed_row(analysed_gpkg, tmp_path):
    store = str(tmp_path / "store.gpkg")
    shutil.copyfile(analysed_gpkg, store)
    ids = patch_ids(store)
    open_patch_workflow(store).apply(ids[0], 1, ZHANG, "judgement", judgement="违法", note="旧链")
    keyed = open_patch_workflow(store, load_workflow(), AuditSeal(KEY, tmp_path / f"{uuid.uuid4().hex}.json"))
    keyed.apply(ids[1], 1, ZHANG, "judgement", judgement="违法", note="新链")
    assert keyed.verify_audit()["ok"] is True
    raw = Raw(store)
    raw.run(f"UPDATE {raw.t(AUDIT)} SET note = '改', hash = ? WHERE fid = 1",
            (_recompute({**raw.audit()[0], "note": "改"}, "0" * 64, None),))
    raw.close()
    check = keyed.verify_audit()
    assert check["ok"] is False and check["first_bad_seq"] == 2 and "does not follow" in check["reason"]

"""Workflow persistence on both stores: state + mirror + audit in one transaction, stale versions, the
append-only audit log (triggers, hash chain), concurrency, and statuses kept across `yzt analyse` re-runs."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from analysis.workflow import TransitionError, load_workflow
from layers.store import open_store
from layers.store.gpkg_workflow import GeoPackageWorkflowTables
from layers.store.postgis_workflow import PostGISWorkflowTables
from layers.store.workflow import AUDIT, EVIDENCE, STATE
from services.errors import StaleVersionError
from services.jobs.workflow import open_patch_workflow
from services.settings import Principal
from tests.serve_fixtures import analysed_gpkg, analysed_pg, bench_gpkg, patch_ids  # noqa: F401

ZHANG = Principal(user="张三", role="inspector")
WANG = Principal(user="王五", role="admin")


@pytest.fixture(params=["gpkg", "postgis"])
def target(request):
    """A writable analysed store on each backend (PostGIS: a shared schema, each test uses its own patch)."""
    if request.param == "gpkg":
        return str(request.getfixturevalue("bench_gpkg"))
    return request.getfixturevalue("analysed_pg")


def _patch(target: str, index: int) -> str:
    """A patch no other test on the shared PostGIS schema touches."""
    return patch_ids(target)[index]


def _flow(target):
    return open_patch_workflow(target, load_workflow())


def _mirror(target, jcbh):
    frame = open_store(target).read_layer("flagged_patches", columns=["JCBH", "status", "judgement", "version"],
                                          where=f"\"JCBH\" = '{jcbh}'")
    row = frame.iloc[0]
    return row["status"], (None if row["judgement"] is None or row["judgement"] != row["judgement"] else
                           row["judgement"]), int(row["version"])


def test_backend_class(target):
    flow = _flow(target)
    expected = GeoPackageWorkflowTables if target.endswith(".gpkg") else PostGISWorkflowTables
    assert isinstance(flow.tables, expected)


def test_judgement_writes_state_mirror_and_audit(target):
    jcbh = _patch(target, 0)
    flow = _flow(target)
    out = flow.apply(jcbh, 1, ZHANG, "judgement", judgement="违法", note="现场: 新建厂房")
    assert (out.state.status, out.state.judgement, out.state.version) == ("已核查", "违法", 2)
    assert out.move == "现场核查认定"
    assert _mirror(target, jcbh) == ("已核查", "违法", 2)
    states = flow.states()
    row = states[states["case_id"] == jcbh].iloc[0]
    assert (row["status"], row["judgement"], int(row["version"]), row["updated_by"]) == ("已核查", "违法", 2, "张三")
    history = flow.history([jcbh])
    assert len(history) == 1
    h = history[0]
    assert (h["user"], h["role"], h["action"], h["from_status"], h["to_status"], h["to_judgement"],
            h["version_before"], h["version_after"], h["note"]) == \
        ("张三", "inspector", "judgement", "待核查", "已核查", "违法", 1, 2, "现场: 新建厂房")
    assert h["before"] == {"status": "待核查", "judgement": None, "version": 1}
    assert h["after"]["status"] == "已核查" and h["after"]["move"] == "现场核查认定"
    assert flow.verify_audit()["ok"] is True
    # the store API sees the tables too
    store = open_store(target)
    assert {STATE, AUDIT, EVIDENCE} <= set(store.table_names())
    assert jcbh in set(store.read_table(AUDIT, columns=["JCBH"])["JCBH"])


def test_stale_version_and_illegal_move_change_nothing(target):
    jcbh = _patch(target, 1)
    flow = _flow(target)
    flow.apply(jcbh, 1, ZHANG, "judgement", judgement="合法", note="手续齐全")
    n_audit = flow.audit(jcbh=jcbh)[1]
    with pytest.raises(StaleVersionError) as info:
        flow.apply(jcbh, 1, ZHANG, "judgement", judgement="违法")
    assert info.value.current_version == 2
    assert "张三" in str(info.value) and "version 2, not 1" in str(info.value)
    with pytest.raises(TransitionError, match="needs judgement 违法"):
        flow.apply(jcbh, 2, ZHANG, "transition", to="立案", note="x")
    assert _mirror(target, jcbh) == ("已核查", "合法", 2)
    assert flow.audit(jcbh=jcbh)[1] == n_audit
    closed = flow.apply(jcbh, 2, ZHANG, "transition", to="销号", note="合法用地, 销号")
    assert (closed.state.status, closed.state.judgement, closed.state.version) == ("销号", "合法", 3)


def test_evidence_is_recorded_and_unlocks_rectified(target):
    jcbh = _patch(target, 2)
    flow = _flow(target)
    flow.apply(jcbh, 1, ZHANG, "judgement", judgement="违法", note="x")
    flow.apply(jcbh, 2, ZHANG, "transition", to="立案", note="立案")
    flow.apply(jcbh, 3, ZHANG, "transition", to="整改中")
    with pytest.raises(TransitionError, match="needs evidence"):
        flow.apply(jcbh, 4, ZHANG, "transition", to="已整改", note="拆除完毕")
    meta = {"evidence_id": "e" * 32, "kind": "photo", "filename": "现场.jpg", "path": f"{jcbh}/x.jpg",
            "content_type": "image/jpeg", "bytes": 1234, "sha256": "0" * 64, "taken_at": "2024-07-01T02:00:00Z",
            "lon": 115.1, "lat": 37.1, "azimuth": 45.0, "note": "拆除后"}
    ev = flow.apply(jcbh, 4, ZHANG, "evidence", evidence=meta, note="拆除后")
    assert ev.state.status == "整改中" and ev.state.version == 5
    assert ev.audit["evidence_id"] == "e" * 32
    done = flow.apply(jcbh, 5, ZHANG, "transition", to="已整改", note="拆除完毕")
    assert done.state.status == "已整改"
    items = flow.evidence([jcbh])
    assert [(e["filename"], e["lon"], e["lat"], e["azimuth"], e["uploaded_by"]) for e in items] == \
        [("现场.jpg", 115.1, 37.1, 45.0, "张三")]
    assert flow.evidence_item("e" * 32)["taken_at"] == "2024-07-01T02:00:00Z"
    assert [h["to_status"] for h in flow.history([jcbh])] == ["已核查", "立案", "整改中", "整改中", "已整改"]


def test_audit_table_refuses_update_and_delete_gpkg(bench_gpkg):
    jcbh = patch_ids(bench_gpkg)[0]
    flow = _flow(str(bench_gpkg))
    flow.apply(jcbh, 1, ZHANG, "judgement", judgement="其他", note="伪变化")
    flow.apply(jcbh, 2, ZHANG, "evidence", evidence={"evidence_id": "a" * 32, "filename": "a.jpg", "bytes": 3})
    con = sqlite3.connect(bench_gpkg)
    try:
        for sql in (f"UPDATE {AUDIT} SET user = 'x'", f"DELETE FROM {AUDIT}", f"UPDATE {EVIDENCE} SET note = 'x'",
                    f"DELETE FROM {EVIDENCE}"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                con.execute(sql)
        assert con.execute(f"SELECT user FROM {AUDIT}").fetchall() == [("张三",), ("张三",)]
        # someone drops the trigger and edits a row behind the service's back: the hash chain tells
        con.execute(f'DROP TRIGGER "{AUDIT}_no_update"')
        con.execute(f"UPDATE {AUDIT} SET note = '改过'")
        con.commit()
    finally:
        con.close()
    check = flow.verify_audit()
    assert {k: check[k] for k in ("rows", "ok", "first_bad_seq", "reason")} == \
        {"rows": 2, "ok": False, "first_bad_seq": 1, "reason": "row 1 was altered after it was written"}


def test_audit_table_refuses_update_delete_truncate_postgis(analysed_pg):
    import psycopg

    from layers.store.postgis import parse_url

    jcbh = patch_ids(analysed_pg)[3]
    _flow(analysed_pg).apply(jcbh, 1, ZHANG, "judgement", judgement="其他", note="伪变化")
    conninfo, schema, _ = parse_url(analysed_pg)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for sql in (f'UPDATE "{schema}".{AUDIT} SET "user" = \'x\'', f'DELETE FROM "{schema}".{AUDIT}',
                    f'TRUNCATE "{schema}".{AUDIT}', f'DELETE FROM "{schema}".{EVIDENCE}'):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(sql)
        n = conn.execute(f'SELECT count(*) FROM "{schema}".{AUDIT} WHERE "JCBH" = %s', (jcbh,)).fetchone()[0]
    assert n == 1


def test_two_writers_on_one_version_one_wins(target):
    jcbh = _patch(target, 4)
    results, errors = [], []
    barrier = threading.Barrier(2)

    def write(user, judgement):
        flow = _flow(target)  # each writer its own connection, as two server processes would have
        barrier.wait()
        try:
            results.append(flow.apply(jcbh, 1, Principal(user=user, role="inspector"), "judgement",
                                      judgement=judgement, note=user))
        except StaleVersionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=("甲", "违法")), threading.Thread(target=write, args=("乙", "合法"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and len(errors) == 1
    winner = results[0].state
    assert errors[0].current_version == 2
    assert _mirror(target, jcbh) == ("已核查", winner.judgement, 2)
    assert [h["user"] for h in _flow(target).history([jcbh])] == [winner.updated_by]


@pytest.mark.slow
def test_statuses_survive_a_new_analysis_run(bench_gpkg):
    from services.jobs.analyse import run_analysis

    ids = patch_ids(bench_gpkg)
    flow = _flow(str(bench_gpkg))
    flow.apply(ids[0], 1, ZHANG, "judgement", judgement="违法", note="违法建设")
    flow.apply(ids[0], 2, ZHANG, "transition", to="立案", note="立案")
    flow.apply(ids[5], 1, ZHANG, "judgement", judgement="其他", note="大棚")
    result = run_analysis(str(bench_gpkg))
    assert result.carried_over == len(ids)  # every ground change of the first run still exists
    assert _mirror(str(bench_gpkg), ids[0]) == ("立案", "违法", 3)
    assert _mirror(str(bench_gpkg), ids[5]) == ("已核查", "其他", 2)
    # the tables written in place survived the copy-on-write replacement of flagged_patches
    flow = _flow(str(bench_gpkg))
    assert [h["to_status"] for h in flow.history([ids[0]])] == ["已核查", "立案"]
    assert flow.verify_audit()["ok"]
    nxt = flow.apply(ids[0], 3, ZHANG, "transition", to="整改中")
    assert nxt.state.version == 4


def test_sync_layer_repairs_a_mirror_overwritten_by_analysis(bench_gpkg):
    """A re-analysis that read flagged_patches before a change and wrote after it leaves a stale mirror."""
    ids = patch_ids(bench_gpkg)
    flow = _flow(str(bench_gpkg))
    flow.apply(ids[7], 1, ZHANG, "judgement", judgement="合法", note="有批文")
    store = open_store(bench_gpkg)
    layer = store.read_layer("flagged_patches")
    layer.loc[layer["JCBH"] == ids[7], ["status", "judgement", "version"]] = ["待核查", None, 1]
    store.write_layers({"flagged_patches": layer}, records=[])
    assert _mirror(str(bench_gpkg), ids[7]) == ("待核查", None, 1)
    assert flow.sync_layer() == 1
    assert _mirror(str(bench_gpkg), ids[7]) == ("已核查", "合法", 2)
    assert flow.sync_layer() == 0

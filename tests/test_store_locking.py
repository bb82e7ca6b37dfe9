"""The store's public writer-lock and connection contract, which the workflow persistence relies on.

GeoPackage: ``GeoPackageStore.writer_lock()`` is the flock write_layers / write_tables hold; a workflow change
takes the same lock, so a change and a copy-on-write replacement never interleave (the replacement would drop
the change). PostGIS: every writer of a schema holds ``pg_advisory_xact_lock(hashtext(advisory_lock_key))``,
taken with ``PostGISStore.lock_writers``; the workflow and the store's own writers wait for the same lock. All
PostGIS connections come from ``layers.store.postgis.connect`` (UTC session, one error message).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from analysis.workflow import load_workflow
from layers.errors import StoreError
from layers.store import open_store, postgis
from layers.store.postgis import SESSION_SETTINGS, connect
from layers.store.workflow import AUDIT, LAYER
from services.jobs.workflow import open_patch_workflow
from services.settings import Principal
from tests.store_fixtures import EPSG, META, X0, Y0, make_points

ZHANG = Principal(user="张三", role="inspector")
WAIT = 60  # seconds: a generous bound so a broken lock fails the test instead of hanging it


def _patches(n: int = 3) -> gpd.GeoDataFrame:
    """A minimal flagged_patches layer: what the workflow reads and mirrors."""
    ids = [f"WP{i:03d}" for i in range(n)]
    return gpd.GeoDataFrame({
        "JCBH": ids,
        "source_ids": [json.dumps([i]) for i in ids],
        "status": ["待核查"] * n,
        "judgement": [None] * n,
        "version": np.ones(n, dtype=np.int64),
    }, geometry=[shapely.box(X0 + 100 * i, Y0, X0 + 100 * i + 50, Y0 + 50) for i in range(n)], crs=EPSG)


def _analysed(target: str):
    store = open_store(target)
    store.write_layers({LAYER: _patches()}, [], meta=META)
    return store


def _flow(target: str):
    return open_patch_workflow(target, load_workflow())


def _mirror(target: str, jcbh: str) -> tuple:
    row = open_store(target).read_layer(LAYER, where=f"\"JCBH\" = '{jcbh}'").iloc[0]
    judgement = row["judgement"] if isinstance(row["judgement"], str) else None
    return row["status"], judgement, int(row["version"])


def _audit_rows(target: str, jcbh: str) -> int:
    return _flow(target).audit(jcbh=jcbh)[1]


def _wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


class _FlockSpy:
    """Records, per thread, the inode each exclusive flock is asked for (before it blocks)."""

    def __init__(self, monkeypatch):
        self.asked: dict[str, list[int]] = {}
        self.events: dict[str, threading.Event] = {}
        real = fcntl.flock

        def flock(fd, operation):
            if operation == fcntl.LOCK_EX:
                name = threading.current_thread().name
                self.asked.setdefault(name, []).append(os.fstat(fd).st_ino)
                self.events.setdefault(name, threading.Event()).set()
            return real(fd, operation)

        monkeypatch.setattr(fcntl, "flock", flock)

    def wait(self, thread_name: str) -> list[int]:
        event = self.events.setdefault(thread_name, threading.Event())
        assert event.wait(WAIT), f"{thread_name} never asked for the writer lock"
        return self.asked[thread_name]


# --- GeoPackage --------------------------------------------------------------------------------------------

def test_gpkg_workflow_change_waits_for_the_store_writer_lock(tmp_path, monkeypatch):
    target = str(tmp_path / "store.gpkg")
    store = _analysed(target)
    lock_file = tmp_path / ".store.gpkg.lock"
    spy = _FlockSpy(monkeypatch)
    order, outcome = [], []

    def change():
        outcome.append(_flow(target).apply("WP001", 1, ZHANG, "judgement", judgement="违法", note="新建厂房"))
        order.append("applied")

    worker = threading.Thread(target=change, name="workflow-change")
    with store.writer_lock():
        worker.start()
        assert spy.wait("workflow-change") == [lock_file.stat().st_ino]  # the store's lock file, not another
        # the change is blocked on it: nothing is written while the store's writer holds the lock
        assert worker.is_alive()
        assert _mirror(target, "WP001") == ("待核查", None, 1)
        assert AUDIT not in store.table_names()
        order.append("released")
    worker.join(WAIT)
    assert not worker.is_alive()
    assert order == ["released", "applied"]
    state = outcome[0].state
    assert (state.status, state.judgement, state.version) == ("已核查", "违法", 2)
    assert _mirror(target, "WP001") == ("已核查", "违法", 2)
    assert _audit_rows(target, "WP001") == 1


def test_gpkg_layer_replacement_waits_for_a_workflow_change_and_keeps_it(tmp_path, monkeypatch):
    """The copy-on-write write_layers copies the file only after the change committed: the change survives."""
    from services.jobs.workflow import PatchWorkflow

    target = str(tmp_path / "store.gpkg")
    store = _analysed(target)
    spy = _FlockSpy(monkeypatch)
    inside, release = threading.Event(), threading.Event()
    real_mirror = PatchWorkflow._mirror

    def slow_mirror(self, tx, state):  # the change is mid-transaction, holding the writer lock
        real_mirror(self, tx, state)
        inside.set()
        assert release.wait(WAIT)

    monkeypatch.setattr(PatchWorkflow, "_mirror", slow_mirror)
    change = threading.Thread(name="workflow-change", target=lambda: _flow(target).apply(
        "WP002", 1, ZHANG, "judgement", judgement="合法", note="手续齐全"))
    replace = threading.Thread(name="layer-write", target=lambda: open_store(target).write_layers(
        {"cameras": make_points(4)}, []))
    change.start()
    assert inside.wait(WAIT)
    replace.start()
    assert spy.wait("layer-write") == spy.wait("workflow-change")  # the same lock file
    assert replace.is_alive() and "cameras" not in store.layer_names()
    release.set()
    change.join(WAIT)
    replace.join(WAIT)
    assert not change.is_alive() and not replace.is_alive()
    assert store.layer_names() == ["cameras", LAYER]
    assert _mirror(target, "WP002") == ("已核查", "合法", 2)
    assert _audit_rows(target, "WP002") == 1
    assert _flow(target).verify_audit()["ok"] is True


# --- PostGIS -----------------------------------------------------------------------------------------------

def _advisory_ids(conn, key: str) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows pg_advisory_xact_lock(hashtext(key)) (a bigint key)."""
    value = conn.execute("SELECT hashtext(%s)::bigint", (key,)).fetchone()[0] & 0xFFFF_FFFF_FFFF_FFFF
    return value >> 32, value & 0xFFFF_FFFF


def _waiting_for(monitor, key: str) -> list[str]:
    """application_name of every session waiting for the writer lock named ``key``."""
    classid, objid = _advisory_ids(monitor, key)
    rows = monitor.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s "
        "AND l.objsubid = 1 ORDER BY 1", (classid, objid)).fetchall()
    return [r[0] for r in rows]


def test_postgis_workflow_and_store_writers_wait_for_the_same_advisory_lock(pg_schema_url):
    store = _analysed(pg_schema_url)
    assert store.advisory_lock_key == f"yzt:{store.schema_name}"
    holder = connect(pg_schema_url, application_name="yzt-test-holder")
    monitor = connect(pg_schema_url, application_name="yzt-test-monitor")
    outcome, errors = [], []

    def run(fn):
        def body():
            try:
                fn()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(repr(exc))
        return body

    change = threading.Thread(target=run(lambda: outcome.append(_flow(pg_schema_url).apply(
        "WP001", 1, ZHANG, "judgement", judgement="违法", note="新建厂房"))))
    tables = threading.Thread(target=run(lambda: open_store(pg_schema_url).write_tables(
        {"lock_probe": pd.DataFrame({"n": [1, 2, 3]})})))
    try:
        with holder.transaction():
            store.lock_writers(holder)
            change.start()
            tables.start()
            _wait_until(lambda: _waiting_for(monitor, store.advisory_lock_key) == ["yizhangtu",
                                                                                    "yizhangtu-workflow"],
                        "the workflow change and write_tables to wait for the schema's writer lock")
            assert change.is_alive() and tables.is_alive()
            assert _mirror(pg_schema_url, "WP001") == ("待核查", None, 1)
            assert store.table_names() == []
        change.join(WAIT)
        tables.join(WAIT)
        assert errors == []
        assert not change.is_alive() and not tables.is_alive()
        assert _waiting_for(monitor, store.advisory_lock_key) == []
    finally:
        holder.close()
        monitor.close()
    assert outcome[0].state.version == 2
    assert _mirror(pg_schema_url, "WP001") == ("已核查", "违法", 2)
    assert store.read_table("lock_probe")["n"].tolist() == [1, 2, 3]
    assert _audit_rows(pg_schema_url, "WP001") == 1


def test_connect_sets_the_store_session(pg_url):
    conn = connect(f"{pg_url}?schema=any_schema", application_name="yzt-test")
    try:
        assert SESSION_SETTINGS == {"client_encoding": "UTF8", "TimeZone": "UTC", "DateStyle": "ISO, YMD",
                                    "extra_float_digits": "3"}
        assert {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SESSION_SETTINGS} == SESSION_SETTINGS
        assert conn.execute("SHOW application_name").fetchone()[0] == "yzt-test"
        assert conn.autocommit is True
        assert conn.execute("SELECT '2024-07-01 10:00:00+08'::timestamptz::text").fetchone()[0] == \
            "2024-07-01 02:00:00+00"
    finally:
        conn.close()


def test_store_and_workflow_connect_through_the_one_helper(pg_schema_url, monkeypatch):
    _analysed(pg_schema_url)
    opened = []
    real = postgis.connect

    def recording(url, *, application_name="yizhangtu"):
        conn = real(url, application_name=application_name)
        opened.append((url, application_name, conn.execute("SHOW TimeZone").fetchone()[0]))
        return conn

    monkeypatch.setattr(postgis, "connect", recording)
    assert open_store(pg_schema_url).layer_names() == [LAYER]
    assert len(_flow(pg_schema_url).states()) == 0
    assert opened == [(pg_schema_url, "yizhangtu", "UTC"), (pg_schema_url, "yizhangtu-workflow", "UTC")]


def test_unreachable_database_gives_one_message_for_store_and_workflow():
    url = "postgresql://yzt:secret@127.0.0.1:1/gis?schema=county_130599"
    with pytest.raises(StoreError) as from_store:
        open_store(url).meta()
    with pytest.raises(StoreError) as from_workflow:
        _flow(url).states()
    message = str(from_store.value)
    assert message.startswith("cannot connect to PostGIS store postgresql://yzt@127.0.0.1:1/gis?schema=county_130599: ")
    assert "secret" not in message and "\n" not in message
    assert str(from_workflow.value) == message


# --- the write rules both backends share -------------------------------------------------------------------

@pytest.fixture(params=["gpkg", "postgis"])
def target(request, tmp_path):
    if request.param == "gpkg":
        return str(tmp_path / "store.gpkg")
    return request.getfixturevalue("pg_schema_url")


def test_layers_and_tables_do_not_replace_each_other(target):
    store = _analysed(target)
    store.write_tables({"analysis_runs": pd.DataFrame({"run_id": ["r1"]})})
    with pytest.raises(StoreError) as info:
        store.write_layers({"analysis_runs": make_points(2), "cameras": make_points(2)}, [])
    assert str(info.value) == f"['analysis_runs'] are plain tables in {store.url}; a layer cannot replace a table"
    with pytest.raises(StoreError) as info:
        store.write_tables({"zz": pd.DataFrame({"x": [1]}), LAYER: pd.DataFrame({"x": [1]})})
    assert str(info.value) == f"['{LAYER}'] are spatial layers in {store.url}; a table cannot replace a layer"
    with pytest.raises(StoreError, match="table 'cams' is a GeoDataFrame: write spatial data with write_layers"):
        store.write_tables({"cams": make_points(2)})
    assert store.layer_names() == [LAYER] and store.table_names() == ["analysis_runs"]

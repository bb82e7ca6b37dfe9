"""Writes are all-or-nothing: a failure, a kill or a concurrent reader never sees a half-written store."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pandas as pd
import pytest
import shapely

from layers.errors import StoreError
from layers.store import open_store
from tests.store_fixtures import META, assert_same_layer, make_points, make_polygons, record

ROOT = Path(__file__).resolve().parent.parent


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(store) -> dict:
    """Everything a reader can see: meta, layers with rows, tables, records, findings."""
    return {
        "meta": store.meta(),
        "layers": {n: store.read_layer(n) for n in store.layer_names()},
        "tables": {n: store.read_table(n) for n in store.table_names()},
        "records": store.load_records(),
        "findings": store.findings(),
    }


def assert_same_snapshot(got: dict, want: dict) -> None:
    assert got["meta"] == want["meta"]
    assert list(got["layers"]) == list(want["layers"])
    for name, frame in want["layers"].items():
        pd.testing.assert_frame_equal(got["layers"][name].drop(columns="geometry"), frame.drop(columns="geometry"))
        assert (shapely.to_wkb(got["layers"][name].geometry.values)
                == shapely.to_wkb(frame.geometry.values)).all()
    assert list(got["tables"]) == list(want["tables"])
    for name, frame in want["tables"].items():
        pd.testing.assert_frame_equal(got["tables"][name], frame)
    pd.testing.assert_frame_equal(got["records"], want["records"])
    pd.testing.assert_frame_equal(got["findings"], want["findings"])


@pytest.fixture(params=["gpkg", "postgis"])
def populated(request, tmp_path):
    """A store holding dltb + cameras + a plain table, and its backend name."""
    if request.param == "gpkg":
        target = str(tmp_path / "store.gpkg")
    else:
        target = request.getfixturevalue("pg_schema_url")
    store = open_store(target)
    store.write_layers({"dltb": make_polygons(300), "cameras": make_points(10)},
                       [record("dltb", "L1", 300), record("cameras", "L1", 10)], meta=META)
    store.write_tables({"workflow": pd.DataFrame({"JCBH": ["J1", "J2"], "status": ["待核查", "已核查"]})})
    return request.param, target, store


def stray_files(target: str) -> list[str]:
    folder = Path(target).parent
    return sorted(p.name for p in folder.iterdir() if ".tmp.gpkg" in p.name)


def stray_tables(store) -> list[str]:
    rows = store._query("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE '\\_yzt\\_new%%'",
                        (store.schema_name,))
    return [r[0] for r in rows]


def test_failure_in_the_middle_of_a_write_leaves_the_store_unchanged(populated, monkeypatch):
    backend, target, store = populated
    before = snapshot(store)
    file_hash = digest(Path(target)) if backend == "gpkg" else None
    new_dltb = make_polygons(500, seed=9)
    new_cams = make_points(12)
    if backend == "gpkg":
        import layers.store.gpkg as gpkg

        real = gpkg._write_layer
        calls = []

        def failing(path, name, *args):
            calls.append(name)
            if len(calls) == 2:  # the first layer is already in the new copy
                raise OSError("disk full (injected)")
            return real(path, name, *args)

        monkeypatch.setattr(gpkg, "_write_layer", failing)
    else:
        from layers.store.postgis import PostGISStore

        real = PostGISStore._swap
        calls = []

        def failing(self, conn, tmp, name, entry):
            calls.append(name)
            if len(calls) == 2:  # the first old table is already dropped and replaced inside the transaction
                raise StoreError("connection lost (injected)")
            return real(self, conn, tmp, name, entry)

        monkeypatch.setattr(PostGISStore, "_swap", failing)
    with pytest.raises(StoreError, match="injected"):
        store.write_layers({"dltb": new_dltb, "cameras": new_cams}, [record("dltb", "L2", 500)],
                           meta={**META, "last_load_id": "L2"})
    assert len(calls) == 2
    monkeypatch.undo()
    assert_same_snapshot(snapshot(open_store(target)), before)
    if backend == "gpkg":
        assert digest(Path(target)) == file_hash
        assert stray_files(target) == []
    else:
        assert stray_tables(store) == []
    # and the store still takes the write afterwards
    store.write_layers({"dltb": new_dltb}, [record("dltb", "L2", 500)])
    assert_same_layer(store.read_layer("dltb"), new_dltb)


def test_a_value_the_backend_rejects_aborts_the_whole_batch(populated):
    backend, target, store = populated
    before = snapshot(store)
    bad = make_points(3)
    if backend == "gpkg":
        bad["SXTBH"] = [b"\xff\xfe", b"x", b"y"]  # bytes are not a column type the store keeps
        expected = "cannot be stored|does not keep"
    else:
        bad["SXTBH"] = ["ok", "nul\x00byte", "z"]  # PostgreSQL text cannot hold NUL: COPY fails mid-stream
        expected = "unchanged"
    with pytest.raises(StoreError, match=expected):
        store.write_layers({"dltb": make_polygons(50, seed=5), "cameras": bad}, [record("cameras", "L3", 3)],
                           meta={**META, "last_load_id": "L3"})
    assert_same_snapshot(snapshot(store), before)


def test_failure_in_write_tables_leaves_tables_unchanged(populated, monkeypatch):
    backend, target, store = populated
    before = snapshot(store)
    good = pd.DataFrame({"run_id": ["r1"]})
    bad = pd.DataFrame({"x": [1, 2]})
    if backend == "gpkg":
        import layers.store.gpkg as gpkg

        real = gpkg._replace_attribute_table

        def failing(con, name, table):
            real(con, name, table)
            if name == "audit":
                raise __import__("sqlite3").OperationalError("disk I/O error (injected)")

        monkeypatch.setattr(gpkg, "_replace_attribute_table", failing)
    else:
        bad = pd.DataFrame({"x": ["a", "b\x00"]})
    with pytest.raises(StoreError, match="unchanged"):
        store.write_tables({"analysis_runs": good, "workflow": pd.DataFrame({"JCBH": []}), "audit": bad})
    monkeypatch.undo()
    assert_same_snapshot(snapshot(store), before)


WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import layers.store.gpkg as gpkg
    from layers.store import open_store
    from layers.store.postgis import PostGISStore
    from tests.store_fixtures import make_points, make_polygons, record, META

    def pause_after(real):  # the write is really under way: wait there to be killed
        def wrapped(*args):
            result = real(*args)
            print("writing", flush=True)
            time.sleep(120)
            return result
        return wrapped

    gpkg._write_layer = pause_after(gpkg._write_layer)  # after the first layer is in the new copy
    PostGISStore._swap = pause_after(PostGISStore._swap)  # after the old table is dropped, uncommitted
    open_store(sys.argv[1]).write_layers(
        {{"dltb": make_polygons(2000, seed=11), "cameras": make_points(40)}},
        [record("dltb", "KILLED", 2000)], meta={{**META, "last_load_id": "KILLED"}})
""")


@pytest.mark.slow
def test_killed_writer_leaves_the_store_readable_and_unchanged(populated, tmp_path):
    backend, target, store = populated
    before = snapshot(store)
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    proc = subprocess.Popen([sys.executable, str(script), target], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        if backend == "gpkg":
            assert stray_files(target)  # the half-written copy exists
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert_same_snapshot(snapshot(open_store(target)), before)
    store.write_tables({"audit": pd.DataFrame({"event": ["after kill"]})})  # the next writer cleans up
    assert store.read_table("audit")["event"].tolist() == ["after kill"]
    if backend == "gpkg":
        assert stray_files(target) == []
    else:
        assert stray_tables(store) == []


def test_concurrent_reader_sees_old_or_new_never_half(populated):
    backend, target, store = populated
    versions = {}
    for tag, n in (("A", 300), ("B", 450)):
        frame = make_polygons(n, seed=ord(tag))
        frame["tag"] = tag
        versions[tag] = frame
    store.write_layers({"dltb": versions["A"]}, [record("dltb", "A", 300)])
    seen, errors = [], []
    stop = threading.Event()

    def reader():
        reader_store = open_store(target)  # its own connection / file handle
        while not stop.is_set():
            try:
                frame = reader_store.read_layer("dltb", columns=["tag", "BSM"])
                seen.append((tuple(sorted(set(frame["tag"]))), len(frame)))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(repr(exc))
        reader_store.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(6):
            tag = "B" if i % 2 == 0 else "A"
            store.write_layers({"dltb": versions[tag]}, [record("dltb", tag, len(versions[tag]))])
    finally:
        stop.set()
        thread.join(60)
    assert errors == []
    assert len(seen) >= 3
    assert set(seen) <= {(("A",), 300), (("B",), 450)}


# --- staged layers (an ingest writes one layer at a time, publishes them together) ---------------------------

def stage_tables(store) -> list[str]:
    rows = store._query("SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename LIKE "
                        "'\\_yzt\\_stage\\_%%' ORDER BY 1", (store.schema_name,))
    return [r[0] for r in rows]


def test_staged_layers_are_seen_only_once_published(populated):
    kind, target, store = populated
    before = snapshot(store)
    new_dltb, new_cams = make_polygons(120, seed=9), make_points(4)
    with store.staged_layers({**META, "last_load_id": "L2"}) as staging:
        staging.stage("dltb", new_dltb)
        staging.stage("cameras", new_cams)
        if kind == "postgis":
            assert len(stage_tables(store)) == 2  # written already, in tables of their own
        assert_same_snapshot(snapshot(open_store(target)), before)  # a reader still sees the old store
        staging.publish([record("dltb", "L2", 120), record("cameras", "L2", 4)])
    assert_same_layer(store.read_layer("dltb"), new_dltb)
    cams = store.read_layer("cameras")
    assert cams["SXTBH"].tolist() == new_cams["SXTBH"].tolist()
    assert (shapely.to_wkb(cams.geometry.values) == shapely.to_wkb(new_cams.geometry.values)).all()
    assert store.meta()["last_load_id"] == "L2"
    assert store.load_records()["load_id"].tolist() == ["L1", "L1", "L2", "L2"]
    assert store.read_table("workflow")["JCBH"].tolist() == ["J1", "J2"]
    if kind == "postgis":
        assert stage_tables(store) == [] and stray_tables(store) == []


def test_staged_layers_left_without_publish_change_nothing(populated):
    kind, target, store = populated
    before = snapshot(store)
    with (pytest.raises(RuntimeError, match="a later layer failed to load"),
          store.staged_layers({**META, "last_load_id": "L2"}) as staging):
        staging.stage("dltb", make_polygons(50, seed=4))
        raise RuntimeError("a later layer failed to load")
    assert_same_snapshot(snapshot(store), before)
    if kind == "postgis":
        assert stage_tables(store) == []
    with pytest.raises(StoreError, match="staged twice"), store.staged_layers(META) as staging:
        staging.stage("dltb", make_polygons(5))
        staging.stage("dltb", make_polygons(5))
    assert_same_snapshot(snapshot(store), before)


@pytest.mark.postgis
def test_a_dead_stagers_tables_are_dropped_by_the_next_never_a_live_ones(pg_schema_url):
    """A stager killed between stage and publish leaves its tables (committed, not in the catalog: no reader
    sees them). The next stager drops them — found dead by its free session lock — and leaves those of a
    stager still running, which then publishes."""
    store = open_store(pg_schema_url)
    store.write_layers({"dltb": make_polygons(30)}, [record("dltb", "L1", 30)], meta=META)
    live = store.staged_layers({**META, "last_load_id": "live"})
    live.stage("cameras", make_points(3))
    dead = store.staged_layers({**META, "last_load_id": "dead"})
    dead.stage("dltb", make_polygons(40, seed=5))
    dead.stage("cameras", make_points(6))
    dead._conn.close()  # what a kill -9 leaves: the tables, and no session holding the stager's lock
    dead_tables = [f"_yzt_stage_{dead.id}_0", f"_yzt_stage_{dead.id}_1"]
    assert stage_tables(store) == sorted([f"_yzt_stage_{live.id}_0", *dead_tables])
    assert store.layer_names() == ["dltb"] and len(store.read_layer("dltb")) == 30
    with store.staged_layers(META) as third:
        assert third.dropped_orphans == dead_tables
    assert stage_tables(store) == [f"_yzt_stage_{live.id}_0"]
    live.publish([record("cameras", "live", 3)])
    live.close()
    assert store.layer_names() == ["cameras", "dltb"] and len(store.read_layer("cameras")) == 3
    assert store.meta()["last_load_id"] == "live" and stage_tables(store) == []


@pytest.mark.postgis
def test_a_staged_layer_is_analysed_once_and_autovacuum_has_nothing_left(pg_schema_url):
    """The stage table is analysed after its COPY committed (with the row counts flushed first): the server
    then counts no change since that analysis, so autovacuum does not analyse the layer a second time
    (ANALYZE inside the COPY's transaction left n_mod_since_analyze = the rows written). Asked of the server's
    own statistics once the writing session is gone."""
    import time

    import psycopg

    from layers.store.postgis import parse_url

    store = open_store(pg_schema_url)
    with store.staged_layers(META) as staging:
        staging.stage("dltb", make_polygons(3000, seed=2))
        staging.publish([record("dltb", "L1", 3000)])
    conninfo, schema, _ = parse_url(pg_schema_url)
    with psycopg.connect(conninfo, autocommit=True, application_name="yzt-test-stats") as conn:
        for _ in range(100):  # the stager's session flushes its last statistics as it exits
            if not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'yizhangtu' "
                                "AND datname = current_database()").fetchone()[0]:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # PostgreSQL ≥ 15 may hold a backend's counts up to a second before flushing them
        conn.execute("SELECT pg_stat_clear_snapshot()")
        live, changed, analysed = conn.execute(
            "SELECT n_live_tup, n_mod_since_analyze, last_analyze IS NOT NULL FROM pg_stat_user_tables "
            "WHERE schemaname = %s AND relname = 'dltb'", (schema,)).fetchone()
    assert (live, changed, analysed) == (3000, 0, True)

"""Crashes (issue 12): `yzt ingest` and `yzt analyse` killed with SIGKILL at points chosen by what they are
doing — not by a timer — on both backends. After each kill the previous store must be whole (GeoPackage: the
file byte for byte; PostGIS: the same layers, meta, load records and analysis runs, no half-written table),
and a run after the kills must succeed and store a whole new state.

Events (polled every few milliseconds while the child runs):
- GeoPackage: the copy-on-write temporary file appears (.store.gpkg.<id>.tmp.gpkg); its rollback journal
  appears (the first write statement into the copy); the copy has grown past the size of the store.
- PostGIS: the child's first write statement (CREATE TABLE of a staging table); its COPY of the rows; the swap
  (ALTER TABLE … RENAME) just before the commit.

`yzt analyse` writes its layers and its analysis_runs row in ONE transaction (before issue 12 a kill between
the two left layers whose run_id named no run).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import SAMPLE_MANIFEST
from tests.hardening_fixtures import ROOT
from tests.serve_fixtures import analysed_gpkg  # noqa: F401
from tests.test_hardening_concurrency import copy_to_postgis


def _command(kind: str, store: str) -> list[str]:
    if kind == "ingest":
        return [sys.executable, "-m", "services.cli", "ingest", str(SAMPLE_MANIFEST), "--store", store,
                "--no-progress"]
    return [sys.executable, "-m", "services.cli", "analyse", "--store", store]


def run_and_kill(cmd: list[str], event, timeout: float = 300) -> tuple[bool, str]:
    """Run ``cmd``; SIGKILL it as soon as ``event()`` is true. (killed, what the child printed)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed = threading.Event()

    def watch():
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if event():
                    proc.send_signal(signal.SIGKILL)
                    killed.set()
                    return
            except Exception:  # the thing watched may vanish between two looks
                pass
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, _ = proc.communicate(timeout=timeout)
    watcher.join()
    return killed.is_set() and proc.returncode == -signal.SIGKILL, out.decode("utf-8", "replace")


# --- GeoPackage --------------------------------------------------------------------------------------------

def _gpkg_events(store: Path):
    def tmp_files():
        return list(store.parent.glob(f".{store.name}.*.tmp.gpkg"))

    def journal():
        return any(Path(f"{p}-journal").exists() for p in tmp_files())

    def nth_write(n: int):
        """The n-th write transaction into the copy has begun (its journal appeared for the n-th time)."""
        seen = {"count": 0, "present": False}

        def event():
            now = journal()
            if now and not seen["present"]:
                seen["count"] += 1
            seen["present"] = now
            return seen["count"] >= n
        return event

    return {
        "temp copy appears": lambda: bool(tmp_files()),
        "first write into the copy": nth_write(1),
        "a later write into the copy": nth_write(3),
    }


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_gpkg_whole(store: Path) -> dict:
    from layers.store import open_store

    s = open_store(store)
    runs = s.read_table("analysis_runs") if "analysis_runs" in s.table_names() else None
    flagged = s.read_layer("flagged_patches", columns=["run_id"]) if "flagged_patches" in s.layer_names() else None
    if flagged is not None and len(flagged):
        assert set(flagged["run_id"]) <= set(runs["run_id"]), "flagged_patches names a run that is not stored"
    return {"layers": s.layer_names(), "records": len(s.load_records()), "meta": s.meta()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ingest", "analyse"])
def test_kill_on_geopackage(kind, analysed_gpkg, tmp_path):
    store = tmp_path / "store.gpkg"
    shutil.copyfile(analysed_gpkg, store)
    before, state = _digest(store), _check_gpkg_whole(store)
    for name, event in _gpkg_events(store).items():
        killed, out = run_and_kill(_command(kind, str(store)), event)
        assert killed, f"{kind} finished before '{name}' was seen:\n{out[-2000:]}"
        print(f"\nhardening: crash: yzt {kind} on GeoPackage killed at '{name}': store byte-identical "  # noqa: T201
              f"{_digest(store) == before}")
        assert _digest(store) == before, f"the store changed after a kill at '{name}'"
        assert _check_gpkg_whole(store) == state
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(_command(kind, str(store)), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    after = _check_gpkg_whole(store)
    assert after["records"] > state["records"] and after["meta"] != state["meta"]
    assert not list(store.parent.glob(f".{store.name}.*.tmp.gpkg*")), "a stray copy was left behind"


# --- PostGIS -----------------------------------------------------------------------------------------------

def _pg_events(pg_url: str, schema: str):
    """(watcher connection, blocker connection, events). The swap of the staged tables is too quick to be
    seen by polling, so the blocker holds a share lock on the layers being replaced: the child's DROP TABLE
    waits there, inside its transaction, just before the commit — and is killed while it waits."""
    import psycopg

    watcher = psycopg.connect(pg_url, autocommit=True)
    blocker = psycopg.connect(pg_url)

    def running(*starts: str):
        def event():
            # running, or done and its transaction still open: either way written and not committed (a quick
            # CREATE TABLE is rarely caught while 'active')
            rows = watcher.execute("SELECT query FROM pg_stat_activity WHERE application_name = 'yizhangtu' "
                                   "AND state IN ('active', 'idle in transaction') AND query LIKE %s",
                                   (f"%{schema}%",)).fetchall()
            return any(q.lstrip().upper().startswith(starts) for (q,) in rows)
        return event

    def block_swap():
        tables = [t for (t,) in watcher.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                                (schema,)).fetchall()]
        for t in tables:
            blocker.execute(f'SELECT 1 FROM "{schema}"."{t}" LIMIT 0')  # ACCESS SHARE until rollback
        return running("DROP TABLE")

    return watcher, blocker, {
        "first write statement": lambda: running("CREATE TABLE"),
        "COPY of the rows": lambda: running('COPY "'),  # COPY into a table; the reads are COPY (SELECT …)
        "swap before commit": block_swap,
    }


def _pg_state(url: str) -> dict:
    from layers.store import open_store

    with open_store(url) as s:
        layers = {n: len(s.read_layer(n, columns=[])) for n in s.layer_names()}
        runs = s.read_table("analysis_runs") if "analysis_runs" in s.table_names() else None
        flagged = s.read_layer("flagged_patches", columns=["run_id"]) if "flagged_patches" in layers else None
        if flagged is not None and len(flagged):
            assert set(flagged["run_id"]) <= set(runs["run_id"]), "flagged_patches names a run that is not stored"
        return {"layers": layers, "records": len(s.load_records()), "meta": s.meta(),
                "runs": 0 if runs is None else len(runs)}


@pytest.mark.slow
@pytest.mark.postgis
@pytest.mark.parametrize("kind", ["ingest", "analyse"])
def test_kill_on_postgis(kind, analysed_gpkg, pg_url):

    url = copy_to_postgis(analysed_gpkg, pg_url)
    schema = url.rsplit("=", 1)[1]
    watcher, blocker, events = _pg_events(pg_url, schema)
    try:
        state = _pg_state(url)
        for name, make_event in events.items():
            for _attempt in range(4):  # a statement seen by polling can be missed on a busy machine: try again
                killed, out = run_and_kill(_command(kind, url), make_event())
                blocker.rollback()
                if killed:
                    break
                state = _pg_state(url)  # the run completed: its result is the state a later kill must keep
            assert killed, f"{kind} finished before '{name}' was seen, 4 times:\n{out[-2000:]}"
            print(f"\nhardening: crash: yzt {kind} on PostGIS killed at '{name}'")  # noqa: T201
            deadline = time.monotonic() + 30  # the server notices the dropped connection and rolls back
            while watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'yizhangtu' "
                                  "AND query LIKE %s AND state <> 'idle'", (f"%{schema}%",)).fetchone()[0]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert _pg_state(url) == state, f"the store changed after a kill at '{name}'"
            staging = watcher.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE "
                                      "'\\_yzt\\_new\\_%%'", (schema,)).fetchone()[0]
            assert staging == 0
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(_command(kind, url), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        after = _pg_state(url)
        assert after["records"] > state["records"] and after["meta"] != state["meta"]
        # an ingest killed while staging leaves its stage tables (invisible: not in the catalog); the re-run
        # dropped them (their stager's session lock was free) and published its own
        left = watcher.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE "
                               "'\\_yzt\\_%%'", (schema,)).fetchone()[0]
        assert left == 0
        if kind == "analyse":
            assert after["runs"] == state["runs"] + 1
    finally:
        blocker.rollback()
        blocker.close()
        watcher.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        watcher.close()


def test_analyse_stores_its_layers_and_its_run_together(analysed_gpkg, tmp_path, monkeypatch):
    """A failure while the run row is written leaves the layers as they were (one transaction)."""
    import layers.store.gpkg as gpkg
    from services.jobs.analyse import run_analysis

    store = tmp_path / "store.gpkg"
    shutil.copyfile(analysed_gpkg, store)
    before = _digest(store)
    real = gpkg._replace_attribute_table

    def failing(con, name, table):
        if name == "analysis_runs":
            raise OSError("disk full (simulated)")
        return real(con, name, table)

    monkeypatch.setattr(gpkg, "_replace_attribute_table", failing)
    with pytest.raises(Exception, match="disk full"):
        run_analysis(str(store))
    assert _digest(store) == before

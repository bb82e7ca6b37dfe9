"""A large county's layers loaded as dask tasks of their own (services.jobs.ingest.load with a client), staged
into the staging the calling process holds, and published by it in one transaction.

Expected values are the one-process ingest of the same manifest into another schema (layers, records and
findings, in order), and the stage tables the server lists (none may be left behind)."""

from __future__ import annotations

import json
import time
import uuid

import pandas as pd
import psycopg
import pytest
import shapely

from layers.errors import SourceError, StoreError, YztError
from layers.store import open_store
from layers.store.postgis import STAGE_PREFIX
from services.jobs import region as jobs
from services.jobs.ingest import load
from tests.layers_fixtures import X0, Y0, dltb_frame, manifest, patch_boxes, write, write_xzq
from tests.store_fixtures import stage_tables

pytestmark = [pytest.mark.postgis, pytest.mark.slow]

LAYERS = ["xzq", "dltb", "dltb_prev", "yjjbnt", "parcels"]
META_SAME = ["region_code", "region_name", "epsg", "crs", "zone", "version", "manifest"]


@pytest.fixture(scope="module")
def client():
    """Three workers: a thread beside the two survey layers, so they are checked in spatial partitions."""
    with jobs.region_cluster(workers=3) as c:
        yield c


@pytest.fixture
def schemas(pg_url):
    made: list[str] = []

    def new() -> str:
        made.append(f"lt_{uuid.uuid4().hex[:8]}")
        return f"{pg_url}?schema={made[-1]}"

    yield new
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def county(folder):
    """A county whose findings span every kind of check: per patch (an unknown code, a TBMJ far off, a
    bow-tie parcel), in the layer (a patch exported twice, two DLTB patches overlapping, a slit between DLTB
    patches that none covers, two YJJBNT polygons overlapping, a ZDDM given twice), between layers (dltb_prev
    in 用地用海 codes while dltb is 三调; the survey does not cover the county). With --partition-rows 1 every
    DLTB patch is a spatial partition of its own, so the overlap and the gap lie across partition borders."""
    write_xzq(folder)
    boxes = patch_boxes(size=100.0)  # 4 × 3 patches tiling 400 m × 300 m
    boxes[5] = shapely.box(X0 + 105, Y0 + 100, X0 + 200, Y0 + 200)  # leaves a 5 m slit beside patch 4: a gap
    boxes[6] = shapely.box(X0 + 190, Y0 + 100, X0 + 300, Y0 + 200)  # over patch 5 by 10 m × 100 m
    dltb = dltb_frame(boxes=boxes)
    dltb.loc[2, "DLBM"] = "0199"
    dltb.loc[5, "TBMJ"] = round(dltb.loc[5, "TBMJ"] * 1.3, 2)
    dltb.loc[5, "TBDLMJ"] = round(dltb.loc[5, "TBMJ"] - dltb.loc[5, "KCMJ"], 2)
    write(dltb, folder / "dltb.gpkg", layer="dltb")
    prev = dltb_frame()
    prev["DLBM"] = ["0101", "0102", "0701", "1208", "0301", "0901"] * 2  # 用地用海: 1208 and 0901 are not 三调
    prev.loc[7, "geometry"] = prev.loc[6, "geometry"]  # a patch exported twice
    write(prev, folder / "prev.gpkg", layer="prev")
    import geopandas as gpd

    yjjbnt = gpd.GeoDataFrame({"BSM": ["Y1", "Y2"]}, crs=4547, geometry=[
        shapely.box(X0, Y0, X0 + 150, Y0 + 150), shapely.box(X0 + 100, Y0 + 100, X0 + 250, Y0 + 250)])
    write(yjjbnt, folder / "yjjbnt.gpkg", layer="yjjbnt")
    parcels = gpd.GeoDataFrame({"ZDDM": ["Z1", "Z1"], "QLR": ["甲", "乙"]}, crs=4547, geometry=[
        shapely.box(X0 + 500, Y0, X0 + 560, Y0 + 60),
        shapely.Polygon([(X0, Y0 + 500), (X0 + 60, Y0 + 560), (X0 + 60, Y0 + 500), (X0, Y0 + 560)])])  # a bow-tie
    write(parcels, folder / "parcels.gpkg", layer="parcels")
    return manifest(folder, {"xzq": "xzq.gpkg", "dltb": "dltb.gpkg", "dltb_prev": "prev.gpkg",
                             "yjjbnt": "yjjbnt.gpkg", "parcels": "parcels.gpkg"})


def _findings(store) -> list[list[str]]:
    frame = store.findings()
    return frame[["layer", "check", "severity", "count", "message", "ids"]].astype(str).values.tolist()


def test_layer_tasks_store_what_the_one_process_ingest_stores(tmp_path, schemas, client):
    m = county(tmp_path)
    one_url, many_url = schemas(), schemas()
    one = load(m.path, one_url, progress=False)
    many = load(m.path, many_url, progress=False, client=client, rows_per_partition=1)
    assert (one.layer_tasks, many.layer_tasks) == (0, len(LAYERS))
    assert {s.role: s.partitions for s in many.layers} == {"xzq": 0, "dltb": 12, "dltb_prev": 12, "yjjbnt": 0,
                                                           "parcels": 0}
    assert {s.partitions for s in one.layers} == {0}
    assert "layers loaded as 5 dask tasks" in many.to_text()
    assert "areas and coverage checked in spatial partitions: dltb in 12, dltb_prev in 12" in many.to_text()
    with open_store(one_url) as a, open_store(many_url) as b:
        assert a.layer_names() == b.layer_names() == sorted(LAYERS)
        for name in LAYERS:
            la, lb = a.read_layer(name), b.read_layer(name)
            pd.testing.assert_frame_equal(pd.DataFrame(la.drop(columns="geometry")),
                                          pd.DataFrame(lb.drop(columns="geometry")))
            assert list(la.geometry.to_wkb()) == list(lb.geometry.to_wkb())
        found = _findings(b)
        assert found == _findings(a)
        checks = {(f[0], f[1]) for f in found}
        assert {("dltb", "unknown_code"), ("dltb", "area_large_discrepancy"), ("dltb", "overlap"), ("dltb", "gap"),
                ("dltb_prev", "duplicate_geometry"),
                ("dltb_prev", "code_set_mismatch"), ("dltb", "gap_xzq"), ("dltb_prev", "gap_xzq"),
                ("yjjbnt", "self_overlap"), ("parcels", "invalid_geometry_repaired"),
                ("parcels", "duplicate_id")} <= checks, checks
        ra, rb = a.load_records(), b.load_records()
        cols = ["layer", "sha256", "code_set", "rows_read", "rows_written", "repaired", "duplicates",
                "area_mismatches", "crs_resolution", "transformation"]
        assert ra[cols].astype(str).values.tolist() == rb[cols].astype(str).values.tolist()
        assert set(rb["load_id"]) == {many.load_id} == {b.meta()["last_load_id"]}
        assert {k: a.meta()[k] for k in META_SAME} == {k: b.meta()[k] for k in META_SAME}
    assert [s.warnings for s in many.layers] == [s.warnings for s in one.layers]
    assert stage_tables(many_url) == []


def test_a_layer_that_fails_leaves_the_store_as_it_was(tmp_path, schemas, client):
    m = county(tmp_path)
    url = schemas()
    first = load(m.path, url, progress=False, client=client, rows_per_partition=1)
    (tmp_path / "parcels.gpkg").write_bytes(b"not a geopackage")
    with pytest.raises(SourceError, match="parcels"):  # the worker's error, as the one-process ingest raises it
        load(m.path, url, progress=False, client=client, rows_per_partition=1)
    with open_store(url) as store:
        assert store.meta()["last_load_id"] == first.load_id
        assert set(store.load_records()["load_id"]) == {first.load_id}
        assert store.count("dltb") == 12
    deadline = time.monotonic() + 30  # the other layers' tasks may still be finishing: each drops its own table
    while stage_tables(url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stage_tables(url) == []


def test_a_joined_staging_needs_its_owner_and_the_owner_drops_what_it_did_not_publish(tmp_path, schemas):
    import geopandas as gpd

    url = schemas()
    meta = {"region_code": "130599", "region_name": "样例县", "epsg": "4547"}
    frame = gpd.GeoDataFrame({"BSM": ["A"]}, geometry=[shapely.box(X0, Y0, X0 + 10, Y0 + 10)], crs=4547)
    with open_store(url) as store:
        owner = store.staged_layers(meta)
        with store.join_staging(meta, owner.id) as joined:
            joined.stage("yjjbnt", frame)
            handed = joined.hand_over()
        with store.join_staging(meta, owner.id) as joined:  # staged, never handed over: dropped at its close
            joined.stage("stbhhx", frame)
            left = joined.staged[0][0]
            assert left in stage_tables(url)
        assert stage_tables(url) == [handed[0][0]]
        assert handed[0][0].startswith(f"{STAGE_PREFIX}{owner.id}_") and handed[0][1] == "yjjbnt"
        with store.join_staging(meta, owner.id) as joined:  # handed over, never adopted: the owner drops it
            joined.stage("czkfbj", frame)
            stray = joined.hand_over()
        owner.adopt(handed)
        with pytest.raises(StoreError, match="staged twice"):
            owner.adopt(handed)
        owner.publish([], [])
        owner.close()
        assert store.layer_names() == ["yjjbnt"] and store.count("yjjbnt") == 1
        assert stray[0][0] not in stage_tables(url) and stage_tables(url) == []
        with pytest.raises(StoreError, match=rf"the ingest that opened staging {owner.id} .* is gone"):
            store.join_staging(meta, owner.id)
        with pytest.raises(StoreError, match="not a staging id"):
            store.join_staging(meta, "x'; DROP TABLE y; --")


def test_a_geopackage_county_is_not_split(tmp_path):
    m = county(tmp_path)
    with pytest.raises(YztError, match=r"a county of 12 DLTB patches loads its layers on several workers only "
                                       r"into a PostGIS store"):
        load(m.path, tmp_path / "store.gpkg", progress=False, client=object(), rows_per_partition=1)
    with open_store(tmp_path / "store.gpkg") as store:
        assert store.layer_names() == []


def test_a_layer_task_killed_after_staging_leaves_no_table_and_the_store_as_it_was(tmp_path, schemas):
    """The worker of the dltb task dies between the commit of its stage table and the hand-over; the process
    that publishes (here, this one) hears KilledWorker, publishes nothing and drops every table staged under its
    staging — the dead task's too."""
    import dask
    from distributed import KilledWorker

    from tests.region_fixtures import KillAfterStaging

    m = county(tmp_path)
    url = schemas()
    first = load(m.path, url, progress=False)
    marker = tmp_path / "kill-once"
    marker.write_text("x")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), jobs.region_cluster(workers=2) as client:
        client.register_plugin(KillAfterStaging(str(marker), url.split("schema=")[1]))
        with pytest.raises(KilledWorker):
            load(m.path, url, progress=False, client=client, rows_per_partition=1)
        assert not marker.exists()
        with open_store(url) as store:
            assert store.meta()["last_load_id"] == first.load_id
            assert set(store.load_records()["load_id"]) == {first.load_id}
        deadline = time.monotonic() + 30  # tasks still running when the owner gave up drop their own tables
        while stage_tables(url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stage_tables(url) == []
        again = load(m.path, url, progress=False, client=client, rows_per_partition=1)
    with open_store(url) as store:
        assert store.meta()["last_load_id"] == again.load_id and store.count("dltb") == 12


def test_cli_one_large_county_on_a_local_cluster(tmp_path, schemas):
    """`yzt ingest manifest.yaml --partition-rows N --workers 2`: a county of more than N DLTB patches loads its
    layers as dask tasks; a GeoPackage store is refused with the remedy, before anything is written."""
    from click.testing import CliRunner

    from services.cli import cli
    from tests.layers_fixtures import patch_boxes

    write_xzq(tmp_path)
    write(dltb_frame(boxes=patch_boxes(nx=40, ny=30, size=45.0, step=50.0)), tmp_path / "dltb.gpkg", layer="dltb")
    m = manifest(tmp_path, {"xzq": "xzq.gpkg", "dltb": "dltb.gpkg"})
    url = schemas()
    r = CliRunner().invoke(cli, ["ingest", str(m.path), "--store", url, "--partition-rows", "1000", "--workers", "2",
                                 "--no-progress", "--json"])
    assert r.exit_code == 0, r.output
    assert "dask: 2 worker(s) at " in r.stderr
    result = json.loads(r.stdout)
    assert result["layer_tasks"] == 2 and [x["rows_written"] for x in result["layers"]] == [1, 1200]
    small = CliRunner().invoke(cli, ["ingest", str(m.path), "--store", url, "--partition-rows", "5000", "--workers",
                                     "1", "--no-progress", "--json"])
    assert small.exit_code == 0 and json.loads(small.stdout)["layer_tasks"] == 0  # 1 200 ≤ 5 000
    gpkg = CliRunner().invoke(cli, ["ingest", str(m.path), "--store", str(tmp_path / "s.gpkg"), "--partition-rows",
                                    "1000", "--workers", "1"])
    assert gpkg.exit_code == 2
    assert ("a county of 1,200 DLTB patches loads its layers on several workers only into a PostGIS store; ingest "
            "it without --partition-rows") in gpkg.stderr


class InlineClient:
    """A dask stand-in that runs each task at once in this process, recording what it was sent."""

    class Done:
        def __init__(self, value, key):
            self.value, self.key = value, key

    def __init__(self):
        self.sent: list[tuple] = []

    def submit(self, fn, *args, key=None, pure=None, resources=None):
        self.sent.append(args)
        return self.Done(fn(*args), key)

    def gather(self, futures):
        return [f.value for f in futures]

    def cancel(self, futures):
        pass


def test_the_layer_tasks_get_the_store_url_with_its_password(tmp_path, schemas):
    """The store's printable url leaves the password out; the tasks connect on their own, so they must get the
    URL as given (a password the test cluster's trust authentication accepts and ignores)."""
    m = county(tmp_path)
    url = schemas().replace("postgresql://postgres@", "postgresql://postgres:s3cr%40t@")
    client = InlineClient()
    result = load(m.path, url, progress=False, client=client, rows_per_partition=1)
    assert result.layer_tasks == len(LAYERS) and "s3cr" not in result.store
    assert [args[2] for args in client.sent] == ["dltb", "dltb_prev", "yjjbnt", "parcels", "xzq"]  # largest first
    assert {args[1] for args in client.sent} == {url}
    with open_store(url) as store:
        assert store.meta()["last_load_id"] == result.load_id and store.count("dltb") == 12


def test_two_survey_layers_never_load_on_one_worker_at_once(tmp_path, schemas):
    """A survey layer's task secedes while its spatial partitions run; the worker resource it holds keeps the
    worker from starting the other survey layer meanwhile (two whole layers in one worker's memory). One
    worker of three threads and one slot: the two survey tasks run one after the other, the rest beside them."""
    from distributed import Client, LocalCluster, get_task_stream

    from services.jobs.ingest import SURVEY_SLOT

    m = county(tmp_path)
    url = schemas()
    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=":0",
                      resources={SURVEY_SLOT: 1}) as cluster, Client(cluster) as c, get_task_stream(c) as stream:
        many = load(m.path, url, progress=False, client=c, rows_per_partition=4)
    # ⌈12 / 4⌉ = 3 partitions, a multiple of the cluster's 3 threads
    assert {s.role: s.partitions for s in many.layers if s.partitions} == {"dltb": 3, "dltb_prev": 3}
    spans = {}
    for task in stream.data:
        for role in ("dltb", "dltb_prev"):
            if f"-{role}-" in str(task["key"]):
                (compute,) = [s for s in task["startstops"] if s["action"] == "compute"]
                spans[role] = (compute["start"], compute["stop"])
    (a0, a1), (b0, b1) = spans["dltb"], spans["dltb_prev"]
    assert a1 <= b0 or b1 <= a0, spans


def test_a_cluster_without_the_survey_slot_checks_each_survey_layer_whole(tmp_path, schemas):
    """Workers started without --resources yzt-survey=1: the layers still load as tasks, each survey layer
    checked whole in its task (no task secedes), and the store is the one-process ingest's."""
    from distributed import Client, LocalCluster

    m = county(tmp_path)
    one_url, url = schemas(), schemas()
    load(m.path, one_url, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        many = load(m.path, url, progress=False, client=c, rows_per_partition=1)
    assert many.layer_tasks == len(LAYERS) and {s.partitions for s in many.layers} == {0}
    assert "spatial partitions" not in many.to_text()
    with open_store(one_url) as a, open_store(url) as b:
        assert _findings(b) == _findings(a)
        assert list(a.read_layer("dltb").geometry.to_wkb()) == list(b.read_layer("dltb").geometry.to_wkb())


def test_dltb_alone_spreads_its_partitions_over_the_idle_worker(tmp_path, schemas, client):
    """The yearly 变更调查 re-ingests dltb alone: one layer task, the other workers idle. Its partitions are
    dealt to all (those of the other workers computed there), and the store is the one-process ingest's."""
    from distributed import get_task_stream

    m = county(tmp_path)
    one_url, url = schemas(), schemas()
    load(m.path, one_url, progress=False)
    load(m.path, one_url, progress=False, roles=["dltb"])
    load(m.path, url, progress=False, client=client, rows_per_partition=1)
    with get_task_stream(client) as stream:
        alone = load(m.path, url, progress=False, client=client, rows_per_partition=3, roles=["dltb"])
    # ⌈12 / 3⌉ = 4 partitions, rounded up to a multiple of the cluster's 3 threads
    assert [(s.role, s.partitions) for s in alone.layers] == [("dltb", 6)] and alone.layer_tasks == 1
    (layer_worker,) = {t["worker"] for t in stream.data if "yzt-ingest" in str(t["key"])}
    elsewhere = {t["worker"] for t in stream.data if "coverage_part" in str(t["key"])}
    assert elsewhere and layer_worker not in elsewhere  # this worker's share ran in the layer task itself
    with open_store(one_url) as a, open_store(url) as b:
        assert _findings(b) == _findings(a)
        la, lb = a.read_layer("dltb"), b.read_layer("dltb")
        pd.testing.assert_frame_equal(pd.DataFrame(la.drop(columns="geometry")),
                                      pd.DataFrame(lb.drop(columns="geometry")))


def test_a_county_that_loads_whole_holds_the_survey_slot_in_a_province(tmp_path):
    """In a province, a county that loads whole on its worker holds the slot too: it loads survey layers, so it
    may not start beside a large county's survey layer waiting seceded on that worker."""
    from types import SimpleNamespace

    from services.jobs.region import whole_county_slots

    m = county(tmp_path)  # 12 DLTB patches
    counties = [SimpleNamespace(code="130599", manifest_path=m.path)]

    def cluster(resources, n=3):
        workers = {f"tcp://w{i}": {"nthreads": 1, "resources": resources} for i in range(n)}
        return SimpleNamespace(scheduler_info=lambda: {"workers": workers})

    slotted, bare = cluster({"yzt-survey": 1}), cluster({})
    assert whole_county_slots(cluster({"yzt-survey": 1}, n=2), counties, 100) == {}  # no county checks in cells
    assert whole_county_slots(slotted, counties, 100) == {"130599": {"yzt-survey": 1}}
    assert whole_county_slots(slotted, counties, 12) == {"130599": {"yzt-survey": 1}}  # not more than N: whole
    assert whole_county_slots(slotted, counties, 11) == {}  # split: its survey layer tasks hold the slots
    assert whole_county_slots(bare, counties, 100) == {}
    assert whole_county_slots(slotted, counties, None) == {}

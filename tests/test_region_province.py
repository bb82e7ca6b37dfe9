"""A mini province on PostGIS and a 2-worker dask LocalCluster: three counties over two 3° zones.

Each county's records and indicators equal those of the single-county path (yzt ingest / analyse / indicators on
the county's own GeoPackage) — each county's indicators computed in spatial partitions of its 乡镇 on the cluster,
the single-county run whole; the 市 and 省 roll-ups are the sums of their counties (computed here from the
single-county runs), balanced at every level; re-runs skip unchanged counties; a worker killed in the middle of
a county's write leaves that county as it was, and the next run completes it.
"""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import psycopg
import pytest

from layers.region import load_region
from layers.store import open_store
from layers.store.province import RegionStore
from services.jobs import region as jobs
from services.jobs.analyse import run_analysis
from services.jobs.indicators import run_indicators
from services.jobs.ingest import load
from tests.store_fixtures import stage_tables

pytestmark = [pytest.mark.postgis, pytest.mark.slow]

PATCHES = 2000
PARTITION_ROWS = 1000
FLAGGED_COLUMNS = ["JCBH", "XZQDM", "verdict", "area_m2", "area_cultivated", "area_unapproved",
                   "area_cultivated_unapproved", "area_yjjbnt", "area_stbhhx", "area_outside_czkfbj", "approval_ids",
                   "source_ids", "n_pieces", "status"]


@pytest.fixture(scope="module")
def province(tmp_path_factory, pg_url):
    """The mini province generated, ingested, analysed and rolled up on a 2-worker LocalCluster."""
    from data.province import write_province

    folder = tmp_path_factory.mktemp("province")
    region_path = write_province(folder, 3, PATCHES, progress=lambda _: None)
    schema = f"p_{uuid.uuid4().hex[:8]}"
    url = f"{pg_url}?schema={schema}"
    with jobs.region_cluster(workers=2) as client:
        # every county (≈ 2 000 patches) loads each of its layers as a task of its own, is analysed and computes
        # its indicators in spatial partitions of ≤ 1 000 patches
        ingested = jobs.ingest_region(region_path, url, client, progress=False, rows_per_partition=PARTITION_ROWS)
        analysed = jobs.analyse_region(url, client, progress=False, rows_per_partition=PARTITION_ROWS)
        indicators, rollup = jobs.indicators_region(url, client, progress=False, rows_per_partition=PARTITION_ROWS)
    yield {"folder": folder, "region": region_path, "url": url, "schema": schema, "ingested": ingested,
           "analysed": analysed, "indicators": indicators, "rollup": rollup}
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name, in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{schema}%",)):
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture(scope="module")
def single(province, tmp_path_factory):
    """The single-county path on each county's own GeoPackage: ingest, analyse, indicators."""
    out = {}
    for county in load_region(province["region"]).counties:
        path = tmp_path_factory.mktemp(f"c{county.code}") / "store.gpkg"
        load(county.manifest_path, path, progress=False)
        run_analysis(path)
        run = run_indicators(path)
        out[county.code] = {"store": path, "run": run}
    return out


def test_the_mini_province_spans_two_zones_and_two_cities(province):
    region = load_region(province["region"])
    assert [c.code for c in region.counties] == ["130571", "130572", "130671"]
    assert sorted(region.cities) == ["130500", "130600"]
    with RegionStore(province["url"]) as r:
        units = r.units()
    counties = units[units["level"] == "county"].set_index("code")
    assert counties.loc[["130571", "130572", "130671"], "epsg"].tolist() == [4547, 4548, 4547]
    assert counties.loc["130572", "parent_code"] == "130500"
    assert units.loc[units["level"] == "province", "code"].tolist() == ["130000"]
    for stage in ("ingested", "analysed", "indicators"):
        assert province[stage].counts() == {"done": 3, "skipped": 0, "failed": 0}
    # every county in its own schema, geometry in its own zone
    for code, epsg in (("130571", 4547), ("130572", 4548)):
        with open_store(RegionStore(province["url"]).county_url(code)) as store:
            assert store.epsg == epsg
            assert store.meta()["region_code"] == code


FINDING_COLUMNS = ["layer", "check", "severity", "count", "message", "ids"]
RECORD_COLUMNS = ["layer", "source_path", "source_layer", "sha256", "source_crs", "crs_resolution", "transformation",
                  "target_crs", "encoding", "field_mapping", "code_set", "rows_read", "rows_written", "repaired",
                  "dropped_empty", "duplicates", "area_mismatches"]


def _records(frame: pd.DataFrame) -> list[dict]:
    """Load records as comparable dicts (PostGIS keeps field_mapping as JSONB, whose keys it orders)."""
    rows = frame[RECORD_COLUMNS].astype(object).where(frame[RECORD_COLUMNS].notna(), None).to_dict("records")
    for row in rows:
        mapping = row["field_mapping"]
        row["field_mapping"] = json.loads(mapping) if isinstance(mapping, str) else dict(mapping or {})
    return rows


def test_each_county_equals_the_single_county_path(province, single):
    region = RegionStore(province["url"])
    for code, one in single.items():
        outcome = next(o for o in province["ingested"].outcomes if o.county == code)
        with open_store(region.county_url(code)) as prov, open_store(one["store"]) as alone:
            # loaded on the cluster, one task per layer, and published as one write …
            assert outcome.summary["layer_tasks"] == len(prov.layer_names()) - 2 == 11  # - the analysis layers
            # two workers, two survey layers: each checked whole in its task (no thread left for cells)
            assert outcome.summary["coverage_partitions"] == {}
            # … with the records and the 入库质检 findings of the one-process ingest, in the same order
            ra, rb = prov.load_records(), alone.load_records()
            ra, rb = ra[ra["load_id"] == ra["load_id"].iloc[0]], rb[rb["load_id"] == rb["load_id"].iloc[0]]
            assert _records(ra) == _records(rb)
            fa, fb = prov.findings(load_id=ra["load_id"].iloc[0]), alone.findings(load_id=rb["load_id"].iloc[0])
            assert len(fa) == len(fb) > 5
            assert fa[FINDING_COLUMNS].astype(str).values.tolist() == fb[FINDING_COLUMNS].astype(str).values.tolist()
            for layer in ("dltb", "monitoring", "approvals"):
                a, b = prov.read_layer(layer), alone.read_layer(layer)
                assert len(a) == len(b) > 0
                pd.testing.assert_frame_equal(pd.DataFrame(a.drop(columns="geometry")),
                                              pd.DataFrame(b.drop(columns="geometry")))
                assert (a.geometry.to_wkb() == b.geometry.to_wkb()).all()
            fa = prov.read_layer("flagged_patches").sort_values("JCBH").reset_index(drop=True)
            fb = alone.read_layer("flagged_patches").sort_values("JCBH").reset_index(drop=True)
            assert len(fa) == len(fb) > 30
            pd.testing.assert_frame_equal(pd.DataFrame(fa[FLAGGED_COLUMNS]), pd.DataFrame(fb[FLAGGED_COLUMNS]))
            runs = prov.read_table("analysis_runs")
            assert json.loads(runs["counts"].iloc[-1])["partitions"]["count"] >= 2  # analysed in partitions
            ca = prov.read_layer("planning_conflicts").sort_values("conflict_id").reset_index(drop=True)
            cb = alone.read_layer("planning_conflicts").sort_values("conflict_id").reset_index(drop=True)
            assert ca["conflict_id"].tolist() == cb["conflict_id"].tolist()
            assert np.array_equal(ca["area_m2"].to_numpy(), cb["area_m2"].to_numpy())
        # indicators: the county run of the province and the single-county run, value for value
        prov_run = jobs.load_rollup(province["url"]).meta["county_runs"]
        from services.jobs.indicators import load_run

        prov_county_run = load_run(region.county_url(code), json.loads(prov_run)[code])
        partitions = json.loads(prov_county_run.meta["partitions"])
        assert partitions["count"] >= 2, partitions  # computed in spatial partitions on the cluster …
        owned = [t for p in partitions["partitions"] for t in p["townships"]]
        assert len(owned) == len(set(owned)) >= 2  # … each 乡镇 in one of them
        assert json.loads(prov_county_run.meta["notes"]) == json.loads(one["run"].meta["notes"])
        assert json.loads(one["run"].meta["partitions"])["count"] == 0  # the single-county path: whole
        pv = prov_county_run.values
        sv = one["run"].values
        key = ["indicator", "unit_code"]
        pv, sv = pv.sort_values(key).reset_index(drop=True), sv.sort_values(key).reset_index(drop=True)
        assert len(pv) == len(sv) > 1000
        for col in ("value", "value_m2", "value_ha", "value_mu", "value_rounded", "record_count"):
            assert np.array_equal(pv[col].to_numpy(float), sv[col].to_numpy(float), equal_nan=True), col
        assert [json.dumps(v, sort_keys=True) for v in pv["record_ids"]] == \
            [json.dumps(v, sort_keys=True) for v in sv["record_ids"]]


def test_the_rollup_sums_the_single_county_runs_and_balances(province, single):
    roll = province["rollup"].values
    county = {code: one["run"].values.set_index(["indicator", "unit_code"]) for code, one in single.items()}
    cities = {"130500": ["130571", "130572"], "130600": ["130671"]}

    def rolled(indicator, unit):
        row = roll[(roll["indicator"] == indicator) & (roll["unit_code"] == unit)]
        assert len(row) == 1
        return row.iloc[0]

    for indicator in ("cultivated_area", "total_area", "illegal_count", "patches_issued", "basic_farmland_area"):
        per_county = {c: float(county[c].loc[(indicator, c), "value"]) for c in county}
        for city, kids in cities.items():
            assert rolled(indicator, city)["value"] == pytest.approx(sum(per_county[k] for k in kids), abs=1e-6)
        assert rolled(indicator, "130000")["value"] == pytest.approx(sum(per_county.values()), abs=1e-6)
        for c in county:  # county and below: the county run's unrounded values
            assert rolled(indicator, c)["value"] == per_county[c]
    # a ratio from the province's own totals, never an average of its counties' ratios
    num = sum(float(county[c].loc[("illegal_cultivated_area", c), "value"]) for c in county)
    den = sum(float(county[c].loc[("change_cultivated_area", c), "value"]) for c in county)
    assert rolled("illegal_cultivated_ratio", "130000")["value"] == pytest.approx(100 * num / den, rel=1e-12)
    assert rolled("illegal_cultivated_ratio", "130000")["value_rounded"] == round(100 * num / den, 2)
    # 强制调平: at every level, the rounded children add up exactly to their rounded parent
    parent_of = {u: (p if isinstance(p, str) else None) for u, p in zip(roll["unit_code"], roll["parent_code"])}
    checked = 0
    for indicator in ("cultivated_area", "construction_area", "illegal_count"):
        rows = roll[roll["indicator"] == indicator]
        cols = ["value_ha", "value_mu", "value_m2"] if rows["unit"].iloc[0] == "m2" else ["value_rounded"]
        decimals = {"value_ha": 4, "value_mu": 2, "value_m2": 2, "value_rounded": 0}
        for col in cols:
            scale = 10 ** decimals[col]
            units = {r.unit_code: round(getattr(r, col) * scale) for r in rows.itertuples()}
            for parent in {parent_of[u] for u in units if parent_of[u] is not None}:
                kids = [u for u in units if parent_of[u] == parent]
                assert sum(units[k] for k in kids) == units[parent], (indicator, col, parent)
                checked += 1
        for r in rows.itertuples():  # and every rounded value is within one unit of its true value
            for col in cols:
                factor = {"value_ha": 1e-4, "value_mu": 3 / 2000, "value_m2": 1, "value_rounded": 1}[col]
                assert abs(getattr(r, col) - r.value * factor) <= 10 ** -decimals[col] + 1e-9
    assert checked > 100
    assert set(roll["level"]) == {"province", "city", "county", "township", "village"}


def test_rerun_skips_unchanged_counties(province):
    with jobs.region_cluster(workers=2) as client:
        again = jobs.ingest_region(province["region"], province["url"], client, progress=False)
        analysed = jobs.analyse_region(province["url"], client, progress=False)
    assert again.counts() == {"done": 0, "skipped": 3, "failed": 0}
    assert analysed.counts() == {"done": 0, "skipped": 3, "failed": 0}
    assert {o.output_id for o in again.outcomes} == {o.output_id for o in province["ingested"].outcomes}


def test_a_killed_worker_leaves_its_county_whole_and_the_next_run_completes(province, tmp_path):
    from tests.region_fixtures import KillDuringWrite

    url, region = province["url"], RegionStore(province["url"])
    county = "130572"
    county_url = region.county_url(county)
    with open_store(county_url) as store:
        before_meta, before_rows = store.meta(), store.count("dltb")
        before_loads = len(store.load_records())
    manifest = load_region(province["region"]).county(county).manifest_path
    manifest.write_text(manifest.read_text(encoding="utf-8") + "# re-delivered\n", encoding="utf-8")
    marker = tmp_path / "kill-once"
    marker.write_text("x")
    schema = county_url.split("schema=")[1]
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            jobs.region_cluster(workers=2) as client:
        client.register_plugin(KillDuringWrite(str(marker), schema))
        killed = jobs.ingest_region(province["region"], url, client, progress=False)
    assert not marker.exists()  # the worker was killed in the write
    by = {o.county: o for o in killed.outcomes}
    assert by[county].status == "failed" and "KilledWorker" in by[county].error
    assert by["130571"].status == by["130671"].status == "skipped"
    with open_store(county_url) as store:  # the county is exactly as before: not half written
        assert store.meta() == before_meta
        assert store.count("dltb") == before_rows
        assert len(store.load_records()) == before_loads
        assert set(store.layer_names()) >= {"dltb", "flagged_patches"}
    state = region.state_of(county, "ingest")
    assert state["status"] == "failed" and state["output_id"] == before_meta["last_load_id"]
    with jobs.region_cluster(workers=2) as client:
        rerun = jobs.ingest_region(province["region"], url, client, progress=False)
    by = {o.county: o for o in rerun.outcomes}
    assert by[county].status == "done" and by["130571"].status == "skipped"
    with open_store(county_url) as store:
        assert store.meta()["last_load_id"] == by[county].output_id != before_meta["last_load_id"]
        assert store.count("dltb") == before_rows
    assert region.state_of(county, "ingest")["status"] == "done"


def test_a_worker_killed_while_a_layer_task_stages_leaves_the_county_whole(province, tmp_path):
    """The county loads its layers as tasks: the worker of the dltb task dies after its stage table committed.
    Whichever worker held the county task, the county is never half written, and it ends up done (the county
    task retried) or done by the next run, with no stage table left behind."""
    from tests.region_fixtures import KillAfterStaging

    url, region = province["url"], RegionStore(province["url"])
    county = "130571"
    county_url = region.county_url(county)
    with open_store(county_url) as store:
        before_meta, before_rows = store.meta(), store.count("dltb")
    manifest = load_region(province["region"]).county(county).manifest_path
    manifest.write_text(manifest.read_text(encoding="utf-8") + "# re-delivered again\n", encoding="utf-8")
    marker = tmp_path / "kill-once"
    marker.write_text("x")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            jobs.region_cluster(workers=2) as client:
        client.register_plugin(KillAfterStaging(str(marker), county_url.split("schema=")[1]))
        first = jobs.ingest_region(province["region"], url, client, progress=False, only=[county],
                                   rows_per_partition=PARTITION_ROWS)
    assert not marker.exists()  # a worker was killed after staging dltb
    (outcome,) = first.outcomes
    if outcome.status == "failed":  # the county task was on the killed worker: the county is as it was
        assert "KilledWorker" in outcome.error
        with open_store(county_url) as store:
            assert store.meta() == before_meta and store.count("dltb") == before_rows
        with jobs.region_cluster(workers=2) as client:
            (outcome,) = jobs.ingest_region(province["region"], url, client, progress=False, only=[county],
                                            rows_per_partition=PARTITION_ROWS).outcomes
    assert outcome.status == "done" and outcome.summary["layer_tasks"] == 11
    with open_store(county_url) as store:
        assert store.meta()["last_load_id"] == outcome.output_id != before_meta["last_load_id"]
        assert store.count("dltb") == before_rows
        loads = store.load_records()
        assert (loads["load_id"] == outcome.output_id).sum() == 11  # one record per layer: published once
    assert stage_tables(county_url) == []


def test_a_county_with_bad_data_is_reported_and_the_others_go_on(province, tmp_path):
    import shutil

    src = Path(province["folder"])
    folder = tmp_path / "p"
    shutil.copytree(src, folder)
    (folder / "c130671" / "approvals.gpkg").write_bytes(b"not a geopackage")
    url = province["url"].replace(province["schema"], f"b_{uuid.uuid4().hex[:8]}")
    with jobs.region_cluster(workers=2) as client:
        result = jobs.ingest_region(folder / "region.yaml", url, client, progress=False,
                                    only=["130571", "130671"])
    by = {o.county: o for o in result.outcomes}
    assert by["130571"].status == "done"
    assert by["130671"].status == "failed" and "approvals" in by["130671"].error
    assert "1 county(ies) failed" in result.to_text()
    with RegionStore(url) as region:
        assert region.state_of("130671", "ingest")["status"] == "failed"
        with open_store(region.county_url("130671")) as store:
            assert store.layer_names() == []  # nothing written for it


# --- serving the province: OGC collections across counties and zones; the workbench scoped by unit ----------

COUNTY_INSPECTOR, CITY_PLANNER, PROVINCE_ADMIN = "token-county-130572", "token-city-130500", "token-province-all"


@pytest.fixture(scope="module")
def api(province, tmp_path_factory):
    from fastapi.testclient import TestClient

    from services.app import create_app
    from services.settings import Settings

    settings = Settings(store=province["url"], workdir=tmp_path_factory.mktemp("serve"), tokens={
        COUNTY_INSPECTOR: {"user": "县核查员", "role": "inspector", "unit": "130572"},
        CITY_PLANNER: {"user": "市规划员", "role": "inspector", "unit": "130500"},
        PROVINCE_ADMIN: {"user": "省管理员", "role": "admin"}})
    with TestClient(create_app(settings)) as client:
        yield client


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_ogc_bbox_across_counties_and_zones(province, api):
    import shapely

    box = (115.45, 37.10, 115.56, 37.20)  # across 115.5°E: 130571 in zone 38, 130572 in zone 39
    want = {}
    region = RegionStore(province["url"])
    for code in ("130571", "130572", "130671"):
        with open_store(region.county_url(code)) as store:
            lonlat = store.read_layer("dltb", columns=["BSM"]).to_crs(4490)  # (lon, lat): geopandas' x, y
        hit = shapely.intersects(lonlat.geometry.values, shapely.box(*box))
        want.update({bsm: code for bsm in lonlat.loc[hit, "BSM"]})
    assert set(want.values()) == {"130571", "130572"}
    r = api.get("/ogc/collections/dltb/items", params={"bbox": ",".join(map(str, box)), "limit": 1000, "f": "json"})
    assert r.status_code == 200
    body = r.json()
    assert body["numberMatched"] == body["numberReturned"] == len(want)
    got = {f["properties"]["BSM"]: f["id"] // 10 ** 10 for f in body["features"]}
    assert got == {bsm: int(code) for bsm, code in want.items()}
    lon, lat = body["features"][0]["geometry"]["coordinates"][0][0][0]
    assert 115.2 < lon < 115.8 and 37.0 < lat < 37.3  # CRS84: longitude first
    # paging walks the same rows in a stable order, county by county
    ids = []
    for offset in range(0, len(want), 100):
        page = api.get("/ogc/collections/dltb/items", params={"bbox": ",".join(map(str, box)), "limit": 100,
                                                              "offset": offset, "f": "json"}).json()
        ids += [f["id"] for f in page["features"]]
    assert ids == [f["id"] for f in body["features"]] and ids == sorted(ids)
    # EPSG:4490 is latitude first; one feature by its id
    fid = body["features"][0]["id"]
    one = api.get(f"/ogc/collections/dltb/items/{fid}", params={
        "f": "json", "crs": "http://www.opengis.net/def/crs/EPSG/0/4490"})
    assert one.status_code == 200
    lat2, lon2 = one.json()["geometry"]["coordinates"][0][0][0]
    assert (lon2, lat2) == pytest.approx((lon, lat), abs=1e-9)
    assert one.json()["properties"]["BSM"] == body["features"][0]["properties"]["BSM"]


def test_workbench_scoped_by_unit(province, api):
    region = RegionStore(province["url"])
    with open_store(region.county_url("130572")) as store:
        own = store.read_layer("flagged_patches", columns=["JCBH", "XZQDM"])
    with open_store(region.county_url("130571")) as store:
        other = store.read_layer("flagged_patches", columns=["JCBH"])
    r = api.get("/api/patches", params={"limit": 1000}, headers=_bearer(COUNTY_INSPECTOR))
    assert r.status_code == 200
    assert r.json()["total"] == len(own) and {i["JCBH"] for i in r.json()["items"]} == set(own["JCBH"])
    assert all(i["XZQDM"].startswith("130572") for i in r.json()["items"])
    r = api.get("/api/patches", params={"county": "130571"}, headers=_bearer(COUNTY_INSPECTOR))
    assert r.status_code == 403 and "outside" in r.json()["description"]
    # judging another county's patch: not in the inspector's book, and naming its county is refused
    theirs = other["JCBH"].iloc[0]
    body = {"judgement": "违法", "note": "现场核查"}
    r = api.post(f"/api/patches/{theirs}/judgement", json=body, headers={**_bearer(COUNTY_INSPECTOR),
                                                                         "If-Match": '"1"'})
    assert r.status_code == 404
    r = api.post(f"/api/patches/{theirs}/judgement?county=130571", json=body,
                 headers={**_bearer(COUNTY_INSPECTOR), "If-Match": '"1"'})
    assert r.status_code == 403
    mine = own["JCBH"].iloc[0]
    version = api.get(f"/api/patches/{mine}", headers=_bearer(COUNTY_INSPECTOR)).headers["etag"]
    r = api.post(f"/api/patches/{mine}/judgement", json=body, headers={**_bearer(COUNTY_INSPECTOR),
                                                                       "If-Match": version})
    assert r.status_code == 200 and r.json()["patch"]["workflow"]["judgement"] == "违法"
    with open_store(region.county_url("130572")) as store:
        row = store.read_layer("flagged_patches", columns=["JCBH", "judgement"])
    assert row.set_index("JCBH").loc[mine, "judgement"] == "违法"
    # a 市 user names a county of the city; the city has two, so naming one is required
    assert api.get("/api/patches", headers=_bearer(CITY_PLANNER)).status_code == 400
    assert api.get("/api/patches", params={"county": "130571"}, headers=_bearer(CITY_PLANNER)).status_code == 200
    assert api.get("/api/patches", params={"county": "130671"}, headers=_bearer(CITY_PLANNER)).status_code == 403
    r = api.get("/api/patches", params={"county": "130671", "limit": 1}, headers=_bearer(PROVINCE_ADMIN))
    assert r.status_code == 200 and r.json()["items"][0]["XZQDM"].startswith("130671")


def test_cli_province_indicators_json(province):
    from click.testing import CliRunner

    from services.cli import cli

    result = CliRunner().invoke(cli, ["indicators", "--store", province["url"], "--level", "province", "--format",
                                      "json", "--workers", "2"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    rows = {r["indicator"]: r for r in doc["values"]}
    assert {r["level"] for r in doc["values"]} == {"province"}
    assert rows["cultivated_area"]["unit_code"] == "130000"
    want = province["rollup"].values
    want = want[(want["indicator"] == "cultivated_area") & (want["level"] == "province")].iloc[0]
    assert rows["cultivated_area"]["value"] == pytest.approx(float(want["value"]), abs=1e-6)
    assert sorted(doc["run"]["county_runs"]) == ["130571", "130572", "130671"]


def test_tables_and_charts_per_level(province, tmp_path):
    from openpyxl import load_workbook

    from services.reports.charts import draw_region_charts
    from services.reports.indicators import export_values

    rollup = province["rollup"]
    path = export_values(rollup, "xlsx", level=None, area_unit="ha", out=tmp_path / "province.xlsx")
    wb = load_workbook(path)
    assert wb.sheetnames[:5] == ["省级指标", "市级指标", "县级指标", "乡镇级指标", "村级指标"]
    rows = list(wb["市级指标"].iter_rows(values_only=True))
    at = next(k for k, r in enumerate(rows) if r and "耕地面积(公顷)" in r)  # the group's header, its rows below
    row = next(r for r in rows[at + 1:] if r[0] == "130600")
    v = rollup.values
    want = v[(v["indicator"] == "cultivated_area") & (v["unit_code"] == "130600")].iloc[0]["value_ha"]
    assert row[1] == "示例市" and row[rows[at].index("耕地面积(公顷)")] == want
    md = export_values(rollup, "md", level="city")
    assert "## 市级 · 耕地保护" in md and "县之和 = 市, 市之和 = 省" in md
    files = draw_region_charts(rollup, tmp_path / "charts")
    assert sorted(p.name for p in files) == sorted(f"{stem}_by_{level}.png" for stem in
                                                   ("cultivated", "land_categories", "verdicts")
                                                   for level in ("city", "county"))
    assert all(p.stat().st_size > 10_000 for p in files)


def test_drill_down_from_the_province_to_the_patches(province, single):
    from services.jobs.indicators import drill_down

    url = province["url"]
    top = jobs.region_drill_down(url, "illegal_count", "130000")
    assert [c["unit_code"] for c in top["children"]] == ["130500", "130600"]
    assert sum(c["value"] for c in top["children"]) == top["value"]
    city = jobs.region_drill_down(url, "illegal_count", "130500")
    assert [c["unit_code"] for c in city["children"]] == ["130571", "130572"]
    assert sorted(city["county_runs"]) == ["130571", "130572"]
    county = jobs.region_drill_down(url, "illegal_count", "130571")
    alone = drill_down(single["130571"]["store"], "illegal_count", "130571")
    assert county["record_ids"] == alone["record_ids"] and len(alone["record_ids"]["flagged_patches"]) > 0
    village = next(u for u in single["130571"]["run"].values["unit_code"] if len(u) == 12)
    assert jobs.region_drill_down(url, "cultivated_area", village)["record_ids"] == \
        drill_down(single["130571"]["store"], "cultivated_area", village)["record_ids"]


def test_cli_on_a_running_scheduler(province):
    from click.testing import CliRunner
    from distributed import LocalCluster

    from services.cli import cli

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        # earlier tests re-ingested 130572: bring every county's analysis up to date first, then a second run on
        # the same scheduler has nothing to redo
        settle = CliRunner().invoke(cli, ["analyse", "--store", province["url"], "--scheduler",
                                          cluster.scheduler_address])
        assert settle.exit_code == 0 and " 0 failed" in settle.stdout, settle.output
        result = CliRunner().invoke(cli, ["analyse", "--store", province["url"], "--scheduler",
                                          cluster.scheduler_address])
    assert result.exit_code == 0, result.output
    assert f"dask: 1 worker(s) at {cluster.scheduler_address}" in result.stderr
    assert "3 counties — 0 done, 3 unchanged (skipped), 0 failed" in result.stdout, result.stdout
    both = CliRunner().invoke(cli, ["analyse", "--store", province["url"], "--scheduler", "tcp://127.0.0.1:1",
                                    "--workers", "2"])
    assert both.exit_code == 2 and "give either --workers N" in both.stderr
    county = CliRunner().invoke(cli, ["ingest", str(load_region(province["region"]).counties[0].manifest_path),
                                      "--store", "x.gpkg", "--workers", "2"])
    assert county.exit_code == 2 and "apply to a region set" in county.stderr
    sized = CliRunner().invoke(cli, ["analyse", "--store", province["url"], "--scheduler", "tcp://127.0.0.1:1",
                                     "--worker-memory", "8GiB"])
    assert sized.exit_code == 2 and "--worker-memory sizes the workers of a local cluster" in sized.stderr
    for bad in ("lots", "100MB"):
        r = CliRunner().invoke(cli, ["ingest", str(province["region"]), "--store", province["url"],
                                     "--worker-memory", bad])
        assert r.exit_code == 2 and f"{bad!r} is not a memory size of at least 256 MiB; give e.g. 8GiB" in r.stderr


def test_the_local_cluster_takes_the_worker_memory(sample_store_copy):
    """`--worker-memory` sizes the local cluster's workers (the nanny restarts a worker past it)."""
    from click.testing import CliRunner

    from services.cli import cli

    r = CliRunner().invoke(cli, ["indicators", "--store", str(sample_store_copy), "--partition-rows", "30000",
                                 "--workers", "1", "--worker-memory", "3GiB", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "dask: 1 worker(s) at " in r.stderr and "; 3.00 GiB per worker; dashboard" in r.stderr
    assert "partitions: 26021 DLTB patches fit one partition of 30000" in r.stderr
    whole = CliRunner().invoke(cli, ["analyse", "--store", str(sample_store_copy), "--worker-memory", "3GiB"])
    assert whole.exit_code == 2 and "--worker-memory sizes dask workers: give it with --partition-rows N" in \
        whole.stderr


def test_a_county_computed_whole_keeps_its_thread(province):
    """On a 1-worker, 1-thread cluster the county tasks of a stage run one after another: a county too small to
    split never secedes, so its worker never takes a second county's task while it works (30 counties at once
    in one worker is what memory would not survive)."""
    from distributed import get_task_stream

    with jobs.region_cluster(workers=1) as client, get_task_stream(client) as stream:
        result, rollup = jobs.indicators_region(province["url"], client, progress=False, force=True)
    assert result.counts() == {"done": 3, "skipped": 0, "failed": 0} and rollup is not None
    spans = sorted((ss["start"], ss["stop"]) for t in stream.data if t["key"].startswith("yzt-indicators-")
                   for ss in t["startstops"] if ss["action"] == "compute")
    assert len(spans) == 3
    assert all(a[1] <= b[0] + 0.1 for a, b in itertools.pairwise(spans)), spans  # 0.1 s: bookkeeping of the stop

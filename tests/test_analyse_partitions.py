"""A county analysed in spatial partitions (services/jobs/analyse_partitions.py) equals the whole county's run.

The sample county is analysed whole and in partitions of whole 乡镇 (each 乡镇 a partition of its own, so every
乡镇 border is a partition border); flagged_patches, planning_conflicts and the run's counts must be the same,
row for row. Then the families that cross a border are planted into a copy of the sample: a survey patch
exported twice with the copy filed in another 乡镇, a previous-year patch filed in the other 乡镇 under a
change, a patch without ZLDWDM, codes the rules do not classify in two 乡镇, a monitoring patch, a 永久基本农田
polygon and an idle parcel over a 乡镇 border. Each must show in the result (checked against what was planted),
and the partitioned run must equal the whole run. The whole run's records are checked against independent
computations elsewhere (tests/test_analyse*.py, tests/test_conflicts*.py). Then the refusals and the command
on a real 2-worker dask cluster.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from layers.errors import StoreError
from layers.store import open_store
from services.cli import cli
from services.jobs.analyse import run_analysis

TOWNSHIP_ROWS = 4000  # below the smallest 乡镇 of the sample (3 723 patches): one partition per 乡镇


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def _frame(gdf: gpd.GeoDataFrame) -> pd.DataFrame:
    """Every column, the geometry as WKB, without the run id."""
    out = pd.DataFrame(gdf.drop(columns=["run_id", "geometry"]))
    out["wkb"] = shapely.to_wkb(np.asarray(gdf.geometry.values), hex=True)
    return out.reset_index(drop=True)


def _assert_same_run(whole, parts) -> None:
    pd.testing.assert_frame_equal(_frame(whole.flagged), _frame(parts.flagged))
    pd.testing.assert_frame_equal(_frame(whole.conflicts), _frame(parts.conflicts))
    a, b = whole.counts(), parts.counts()
    assert a.pop("partitions")["count"] == 0
    assert b.pop("partitions")["count"] > 1
    assert a == b


def test_the_sample_county_in_partitions_equals_the_whole_run(sample_store, client):
    whole = run_analysis(str(sample_store), write=False)
    parts = run_analysis(str(sample_store), write=False, client=client, rows_per_partition=TOWNSHIP_ROWS)
    assert parts.partitions["count"] == 6
    assert sorted(len(p["townships"]) for p in parts.partitions["partitions"]) == [1] * 6
    assert len(whole.flagged) > 20 and len(whole.conflicts) > 100  # the run has something to compare
    _assert_same_run(whole, parts)


# --- the families across a border ------------------------------------------------------------------------------

def _border(dltb: gpd.GeoDataFrame) -> tuple[shapely.Point, str, str]:
    """A point on the border of two 乡镇 (the middle of an edge two of their patches share, neither of them
    耕地: a YJJBNT polygon over it is a conflict on both sides) and the two 乡镇."""
    town = dltb["ZLDWDM"].str[:9]
    a, b = sorted(town.unique())[:2]
    other = ~dltb["DLBM"].str.startswith("01")
    left, right = dltb[(town == a) & other], dltb[(town == b) & other]
    pairs = gpd.sjoin(left, right[["geometry"]], predicate="touches")
    for i, j in zip(pairs.index, pairs["index_right"]):
        shared = left.geometry[i].intersection(right.geometry[j])
        if shared.length > 20:
            return shared.interpolate(0.5, normalized=True), a, b
    raise AssertionError("the sample has no two 乡镇 with a shared edge")


def _plant(store_path) -> dict:
    """Plant the border families into the store; return what was planted."""
    with open_store(store_path) as store:
        dltb, prev = store.read_layer("dltb"), store.read_layer("dltb_prev")
        monitoring, parcels, yjjbnt = store.read_layer("monitoring"), store.read_layer("parcels"), \
            store.read_layer("yjjbnt")
        base = run_analysis(store, write=False)
        flagged = base.flagged
    town = dltb["ZLDWDM"].str[:9]
    point, a, b = _border(dltb)
    other = {a: b, b: a}
    planted: dict = {"townships": (a, b)}

    # a construction patch exported twice, the copy filed in another 乡镇 (appended: the copy is the later row)
    built = dltb[dltb["DLBM"].isin(["0701", "0702", "0601", "0602", "1001"]) & town.isin([a, b])].iloc[0]
    twin = built.copy()
    twin["BSM"], twin["ZLDWDM"] = "TWIN-1", other[built["ZLDWDM"][:9]] + built["ZLDWDM"][9:]
    twin["yzt_fid"] = int(dltb["yzt_fid"].max()) + 1
    planted["twin_of"] = built["BSM"]

    # a previous-year patch under a change, filed in the other 乡镇 last year
    derived = flagged[flagged["JCBH"].str.startswith("BG-")] if "JCBH" in flagged else flagged.iloc[:0]
    curr_bsm = derived["JCBH"].iloc[0][3:] if len(derived) else None
    if curr_bsm is not None:
        curr = dltb[dltb["BSM"] == curr_bsm].iloc[0]
        under = prev[prev.intersects(curr.geometry.buffer(-0.5))]
        moved = under.index[0]
        prev.loc[moved, "ZLDWDM"] = ("130599105" if curr["ZLDWDM"][:9] != "130599105" else "130599100") + \
            prev.loc[moved, "ZLDWDM"][9:]
        planted["moved_prev"], planted["change_of"] = prev.loc[moved, "BSM"], curr_bsm

    # a patch without ZLDWDM (read by the first partition), one with a conflict, in another 乡镇
    lost = base.conflicts[base.conflicts["kind"] == "yjjbnt_not_cultivated"]
    first_town = sorted(town.unique())[0]
    stray = next(b for b in (json.loads(r)[0] for r in lost["right_ids"])
                 if town[dltb["BSM"] == b].iloc[0] != first_town and b != built["BSM"])
    dltb.loc[dltb["BSM"] == stray, "ZLDWDM"] = None
    planted["no_zldwdm"] = stray

    # codes the rules do not classify, in two 乡镇, their first appearances interleaved across the partitions
    rows = [dltb.index[town == b][5], dltb.index[town == a][7], dltb.index[town == b][9]]
    rows = sorted(rows, key=lambda r: int(dltb.loc[r, "yzt_fid"]))
    for r, code in zip(rows, ["9999", "9998", "9998"]):
        dltb.loc[r, "DLBM"] = code
    planted["unclassified"] = {"9999": [dltb.loc[rows[0], "BSM"]],
                               "9998": [dltb.loc[rows[1], "BSM"], dltb.loc[rows[2], "BSM"]]}

    # a monitoring patch, a YJJBNT polygon and an idle parcel over the border
    first = monitoring.iloc[0]
    patch = gpd.GeoDataFrame([{**first.drop("geometry").to_dict(), "JCBH": "BORDER-1", "yzt_fid":
                               int(monitoring["yzt_fid"].max()) + 1}], geometry=[point.buffer(40)], crs=dltb.crs)
    yj = gpd.GeoDataFrame([{**yjjbnt.iloc[0].drop("geometry").to_dict(), "BSM": "YJ-BORDER", "yzt_fid":
                            int(yjjbnt["yzt_fid"].max()) + 1}], geometry=[point.buffer(60, cap_style="square")],
                          crs=dltb.crs)
    zd = gpd.GeoDataFrame([{**parcels.iloc[0].drop("geometry").to_dict(), "ZDDM": "ZD-BORDER", "GDRQ": "2015-03-01",
                            "JGRQ": None, "yzt_fid": int(parcels["yzt_fid"].max()) + 1}],
                          geometry=[point.buffer(50)], crs=dltb.crs)
    frames = {
        "dltb": gpd.GeoDataFrame(pd.concat([dltb, twin.to_frame().T], ignore_index=True), geometry="geometry",
                                 crs=dltb.crs),
        "dltb_prev": prev,
        "monitoring": gpd.GeoDataFrame(pd.concat([monitoring, patch], ignore_index=True), crs=dltb.crs),
        "yjjbnt": gpd.GeoDataFrame(pd.concat([yjjbnt, yj], ignore_index=True), crs=dltb.crs),
        "parcels": gpd.GeoDataFrame(pd.concat([parcels, zd], ignore_index=True), crs=dltb.crs),
    }
    frames["dltb"]["yzt_fid"] = frames["dltb"]["yzt_fid"].astype("int64")
    with open_store(store_path) as store:
        store.write_layers(frames, records=[])
    return planted


def _townships_of(store_path, bsms) -> set[str]:
    with open_store(store_path) as store:
        dltb = store.read_attributes("dltb", ["BSM", "ZLDWDM"])
    return set(dltb[dltb["BSM"].isin(bsms)]["ZLDWDM"].dropna().str[:9])


def test_families_across_the_border_equal_the_whole_county(sample_store_copy, client):
    planted = _plant(sample_store_copy)
    whole = run_analysis(str(sample_store_copy), write=False)
    parts = run_analysis(str(sample_store_copy), write=False, client=client, rows_per_partition=TOWNSHIP_ROWS)
    assert parts.partitions["count"] == 6

    # each family is in the result as planted
    assert whole.duplicates_ignored["dltb"][-1] == "TWIN-1"  # the sample's own duplicate comes first
    assert planted["twin_of"] not in whole.duplicates_ignored["dltb"]
    found = whole.unclassified["dltb"]  # the sample has a code of its own (1199)
    assert [(k, v) for k, v in found.items() if k in ("9998", "9999")] == list(planted["unclassified"].items())
    assert "BORDER-1" in set(whole.flagged["JCBH"]) | {i for s in whole.flagged.get("source_ids", [])
                                                       for i in json.loads(s)}
    c = whole.conflicts
    yj = c[(c["kind"] == "yjjbnt_not_cultivated") & c["left_ids"].str.contains("YJ-BORDER")]
    assert len(_townships_of(sample_store_copy, [json.loads(r)[0] for r in yj["right_ids"]])) == 2
    idle = c[(c["kind"] == "idle_land") & c["left_ids"].str.contains("ZD-BORDER")]
    assert len(idle) == 1
    assert len(_townships_of(sample_store_copy, json.loads(idle["right_ids"].iloc[0]))) == 2
    stray = c[c["right_ids"].str.contains(f'"{planted["no_zldwdm"]}"') | c["left_ids"].str.contains(
        f'"{planted["no_zldwdm"]}"')]
    assert len(stray) and (stray["XZQDM"].str.len() == 12).all()  # the village came from xzq
    if "change_of" in planted:
        assert f"BG-{planted['change_of']}" in set(whole.flagged["JCBH"]) | {
            i for s in whole.flagged["source_ids"] for i in json.loads(s)}

    _assert_same_run(whole, parts)


def test_a_county_runs_whole_when_small_or_a_patch_has_no_bsm(sample_store, sample_store_copy, client):
    small = run_analysis(str(sample_store), write=False, client=client, rows_per_partition=30_000)
    assert small.partitions == {"count": 0, "partitions": [],
                                "why": "26021 DLTB patches fit one partition of 30000"}
    with open_store(sample_store_copy) as store:
        dltb = store.read_layer("dltb")
        dltb.loc[5, "BSM"] = ""
        store.write_layers({"dltb": dltb}, records=[])
    result = run_analysis(str(sample_store_copy), write=False, client=client, rows_per_partition=TOWNSHIP_ROWS)
    assert result.partitions == {"count": 0, "partitions": [],
                                 "why": "dltb has patches without BSM: the whole run names them by row number"}


def test_a_bsm_that_repeats_in_two_townships(sample_store_copy, client):
    """Two patches of different 乡镇 share a BSM (an export defect): the records name both by it, and their
    conflict_ids are told apart (-2) over the whole kind, as in the whole run."""
    with open_store(sample_store_copy) as store:
        base = run_analysis(store, write=False)
        dltb = store.read_layer("dltb")
    outside = base.conflicts[base.conflicts["kind"] == "construction_outside_czkfbj"]
    bsm = [json.loads(r)[0] for r in outside["left_ids"]]
    town = dltb.set_index("BSM").loc[bsm, "ZLDWDM"].str[:9]
    first = bsm[0]
    second = next(b for b, t in zip(bsm, town) if t != town.iloc[0])
    with open_store(sample_store_copy) as store:
        dltb.loc[dltb["BSM"] == second, "BSM"] = first
        store.write_layers({"dltb": dltb}, records=[])
    whole = run_analysis(str(sample_store_copy), write=False)
    parts = run_analysis(str(sample_store_copy), write=False, client=client, rows_per_partition=TOWNSHIP_ROWS)
    ids = whole.conflicts[whole.conflicts["left_ids"] == json.dumps([first])]["conflict_id"].tolist()
    assert len(ids) == 2 and sorted(ids)[1] == sorted(ids)[0] + "-2"
    _assert_same_run(whole, parts)


def test_a_partition_refuses_a_store_reingested_since_the_plan(sample_store):
    from analysis.rules import load_rules
    from services.jobs.analyse import READ_COLUMNS
    from services.jobs.analyse_partitions import analysis_part, plan_analysis
    from services.jobs.partitions import read_owned

    with open_store(sample_store) as store:
        plan, _ = plan_analysis(store, TOWNSHIP_ROWS, set(store.layer_names()))
    moved = dataclasses.replace(plan[0], loads=(("dltb", "a-load-since-replaced"), ("dltb_prev", "")))
    with pytest.raises(StoreError, match="re-ingested while their analysis was being computed; run yzt analyse"):
        analysis_part(moved, read_owned(moved, str(sample_store)), str(sample_store), load_rules(), READ_COLUMNS, {})


def test_the_command_on_two_dask_workers(sample_store, tmp_path):
    whole_path, parts_path = tmp_path / "whole.gpkg", tmp_path / "parts.gpkg"
    shutil.copyfile(sample_store, whole_path)
    shutil.copyfile(sample_store, parts_path)
    runner = CliRunner()
    r = runner.invoke(cli, ["analyse", "--store", str(whole_path), "--json"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["analyse", "--store", str(parts_path), "--partition-rows", "9000", "--workers", "2",
                            "--json"])
    assert r.exit_code == 0, r.output
    assert "partitions: 3 partitions of" in r.stderr
    counts = json.loads(r.stdout)
    assert counts["partitions"]["count"] == 3
    with open_store(whole_path) as a, open_store(parts_path) as b:
        for name in ("flagged_patches", "planning_conflicts"):
            pd.testing.assert_frame_equal(_frame(a.read_layer(name)), _frame(b.read_layer(name)))
        runs = b.read_table("analysis_runs")
    assert json.loads(runs["counts"].iloc[-1])["partitions"]["count"] == 3

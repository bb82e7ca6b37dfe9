"""A county's indicators in spatial partitions (services/jobs/partitions.py) equal the whole county's.

The families that cross a partition border: a survey patch of the previous year whose 坐落 was in the other
乡镇 under this year's construction (the change piece goes to this year's village), a 永久基本农田 polygon over
two 乡镇, a patch exported twice with the two copies in different 乡镇, a flagged record in a village no survey
patch names. Each is planted in the hand-made county (tests/indicators_fixtures.py) and the partitioned run must
give every value, drill-down id, note and warning of the whole-county run — whose values
tests/test_indicators_compute.py checks against an independent computation. Then the refusals (when a county
must run whole) and the command on a real 2-worker dask cluster.
"""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from analysis.indicators import compute_indicators, parse_registry
from layers.store import open_store
from services.cli import cli
from services.jobs.indicators import BUILTIN_REGISTRY, load_registry
from services.jobs.partitions import plan_partitions
from tests import indicators_fixtures as fx


def _same(whole, parts) -> None:
    key = ["indicator", "unit_code"]
    a = whole.values.sort_values(key).reset_index(drop=True)
    b = parts.values.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])
    for col in ("value", "value_m2", "value_ha", "value_mu", "value_rounded", "record_count"):
        assert np.array_equal(a[col].to_numpy(float), b[col].to_numpy(float), equal_nan=True), col
    assert [json.dumps(v, sort_keys=True) for v in a["record_ids"]] == \
        [json.dumps(v, sort_keys=True) for v in b["record_ids"]]
    assert whole.notes == parts.notes
    assert whole.skipped == parts.skipped
    pd.testing.assert_frame_equal(whole.warnings.reset_index(drop=True), parts.warnings.reset_index(drop=True))


def _value(result, code, unit):
    v = result.values
    return float(v[(v["indicator"] == code) & (v["unit_code"] == unit)]["value"].iloc[0])


def _border_layers() -> dict[str, gpd.GeoDataFrame]:
    layers = fx.layers()
    prev = layers["dltb_prev"].copy()
    # C's cell 0 (0101 last year, 0601 now) was recorded in village A of the other 乡镇 last year
    prev.loc[prev["BSM"] == "PC0", "ZLDWDM"] = fx.V["A"] + "0000000"
    dltb = layers["dltb"]
    # A0 exported twice, the copy filed under village C (乡镇 T2): one patch, counted once
    twin = dltb[dltb["BSM"] == "A0"].assign(BSM="A0-twin", ZLDWDM=fx.V["C"] + "0000000",
                                            yzt_fid=int(dltb["yzt_fid"].max()) + 1)
    flagged = layers["flagged_patches"]
    # a record the analysis put in a village of a 乡镇 that has no survey patch and no xzq polygon
    stray = flagged[flagged["JCBH"] == "WP5"].assign(JCBH="WP9", XZQDM="130599102001",
                                                     source_ids=json.dumps(["WP9"]))
    return dict(layers, dltb_prev=prev, dltb=gpd.GeoDataFrame(pd.concat([dltb, twin], ignore_index=True),
                                                             crs=dltb.crs),
                flagged_patches=gpd.GeoDataFrame(pd.concat([flagged, stray], ignore_index=True), crs=flagged.crs))


@pytest.fixture(scope="module")
def registry():
    return parse_registry(yaml.safe_load(BUILTIN_REGISTRY.read_text(encoding="utf-8")))


def test_families_across_the_border_equal_the_whole_county(registry, tmp_path):
    layers = _border_layers()
    url = fx.write_store(tmp_path / "store.gpkg", layers)
    with open_store(url) as store:
        whole = compute_indicators({n: store.read_layer(n) for n in layers}, registry)
    plan, parts = fx.partitioned(url, rows_per_partition=9)
    assert sorted(p.townships for p in plan) == [(fx.T1,), (fx.T2,)]
    assert [p.rows for p in sorted(plan, key=lambda p: p.townships)] == [8, 9]  # the twin is filed under T2
    _same(whole, parts)
    # the change piece under C: computed by T2's partition from a previous-year patch T1 owns
    base = compute_indicators(fx.layers(), registry)
    assert _value(parts, "new_construction_cultivated_area", fx.V["C"]) == \
        _value(base, "new_construction_cultivated_area", fx.V["C"]) > 0
    # the twin counted once, in A (its first copy's village), named in one note
    assert _value(parts, "cultivated_area", fx.V["A"]) == _value(base, "cultivated_area", fx.V["A"])
    assert "dltb: 1 exact duplicate patch(es) counted once: [['A0', 'A0-twin']]" in parts.notes
    # YJ2 over B (T1) and D (T2): each 乡镇 gets its own part, the county the whole
    for unit in (fx.V["B"], fx.V["D"], fx.COUNTY):
        assert _value(parts, "basic_farmland_area", unit) == _value(base, "basic_farmland_area", unit) > 0
    # the stray record: reported by the first partition, in a village named by its code
    v = parts.values
    stray = v[(v["indicator"] == "patches_issued") & (v["unit_code"] == "130599102001")]
    assert stray["value"].tolist() == [1.0]
    assert stray["unit_name"].tolist() == ["130599102001 (不在行政区图层中)"]


def test_a_code_set_not_recorded_is_decided_over_the_whole_layer(registry, tmp_path):
    """A 用地用海 survey whose code set the store does not record: the whole-county run detects it from all the
    codes; so must the partitioned run — a 乡镇's codes alone may read as another set or as none."""
    from layers.codes import SANDIAO, YDYH, detect_code_set, from_sandiao
    from layers.errors import CodeSetError
    from services.jobs.partitions import whole_layer_code_sets

    layers = fx.layers()
    twin = dict(layers)
    for name in ("dltb", "dltb_prev"):
        gdf = layers[name].assign(DLBM=from_sandiao(layers[name]["DLBM"].to_numpy(dtype=object)))
        # 乡镇 T1 all 水田: a code both sets write alike
        gdf.loc[gdf["ZLDWDM"].str.startswith(fx.T1), "DLBM"] = "0101"
        twin[name] = gdf
    url = fx.write_store(tmp_path / "ydyh.gpkg", twin)
    with open_store(url) as store:
        assert whole_layer_code_sets(store, {"dltb": None, "dltb_prev": None}) == {"dltb": YDYH, "dltb_prev": YDYH}
        whole = compute_indicators({n: store.read_layer(n) for n in twin}, registry)
    t1 = twin["dltb"][twin["dltb"]["ZLDWDM"].str.startswith(fx.T1)]["DLBM"]
    try:  # the family: one 乡镇's codes alone do not say 用地用海
        alone = detect_code_set(t1)
    except CodeSetError:
        alone = None
    assert alone in (None, SANDIAO)
    _, parts = fx.partitioned(url, rows_per_partition=8)
    _same(whole, parts)
    assert _value(parts, "cultivated_area", fx.V["A"]) == _value(whole, "cultivated_area", fx.V["A"]) > 0


def test_a_county_runs_whole_when_it_cannot_be_split(registry, tmp_path):
    layers = fx.layers()
    url = fx.write_store(tmp_path / "store.gpkg", layers)
    with open_store(url) as store:
        plan, why = plan_partitions(store, registry, 100)
        assert plan == [] and why == "16 DLTB patches fit one partition of 100"
        assert len(plan_partitions(store, registry, 8)[0]) == 2
    # a bureau registry naming DLTB records by BSM, which is not unique: the run falls back to row numbers,
    # which only the whole layer knows
    doc = yaml.safe_load(BUILTIN_REGISTRY.read_text(encoding="utf-8"))
    doc["id_fields"]["dltb"] = "BSM"
    url = fx.write_store(tmp_path / "dup.gpkg", dict(layers, dltb=layers["dltb"].assign(BSM="same")))
    with open_store(url) as store:
        plan, why = plan_partitions(store, parse_registry(doc), 8)
        assert len(plan_partitions(store, registry, 8)[0]) == 2  # by yzt_fid (the built-in id) it splits
    assert plan == [] and why.startswith("dltb has no unique BSM")
    # an indicator that splits survey patches by village polygon
    doc = yaml.safe_load(BUILTIN_REGISTRY.read_text(encoding="utf-8"))
    doc["indicators"].append({"code": "split_dltb", "name": "按村界分割的图斑面积", "unit": "m2", "rule": "test",
                              "measure": {"layer": "dltb", "sum": "TBMJ", "attribute": "split"}})
    split = parse_registry(doc)
    with open_store(fx.write_store(tmp_path / "split.gpkg", layers)) as store:
        plan, why = plan_partitions(store, split, 8)
    assert plan == [] and why == "indicator 'split_dltb' splits dltb records by village polygon"


def test_cli_partitions_a_county_on_a_local_cluster(sample_store_copy):
    """`yzt indicators --partition-rows N --workers 2`: the sample county in 乡镇 partitions on two dask worker
    processes, value for value the run of `yzt indicators` without them."""
    runner = CliRunner()
    store = str(sample_store_copy)
    assert runner.invoke(cli, ["analyse", "--store", store]).exit_code == 0
    whole = runner.invoke(cli, ["indicators", "--store", store, "--format", "json"])
    assert whole.exit_code == 0, whole.output
    parts = runner.invoke(cli, ["indicators", "--store", store, "--format", "json", "--partition-rows", "5000",
                                "--workers", "2"])
    assert parts.exit_code == 0, parts.output
    assert "partitions: 6 partitions of" in parts.stderr  # ⌈26 021 / 5 000⌉ = 6 and 6 乡镇
    a, b = json.loads(whole.stdout), json.loads(parts.stdout)
    rows_a, rows_b = (a["values"] if isinstance(a, dict) else a), (b["values"] if isinstance(b, dict) else b)
    assert len(rows_a) == len(rows_b) > 500
    strip = [{k: v for k, v in r.items() if k != "run_id"} for r in rows_a]
    assert strip == [{k: v for k, v in r.items() if k != "run_id"} for r in rows_b]
    with open_store(store) as s:
        runs = s.read_table("indicator_runs")
    meta = [json.loads(m) for m in runs["partitions"]]
    assert [m["count"] for m in meta] == [0, 6]
    with open_store(store) as s:
        townships = sorted({str(z).strip()[:9] for z in s.read_layer("dltb", columns=["ZLDWDM"])["ZLDWDM"]})
        assert plan_partitions(s, load_registry(None)[0], 5000)[1] == meta[1]["why"]
    owned = [t for p in meta[1]["partitions"] for t in p["townships"]]
    assert sorted(owned) == townships and len(townships) == 6  # each 乡镇 in exactly one partition


def test_cli_refuses_workers_on_a_county_without_partitions(sample_store_copy):
    r = CliRunner().invoke(cli, ["indicators", "--store", str(sample_store_copy), "--workers", "2"])
    assert r.exit_code != 0
    assert ("--workers / --scheduler / --worker-memory apply to one county's indicators only with "
            "--partition-rows N") in r.output


def test_a_partition_refuses_a_store_reingested_since_the_plan(registry, tmp_path):
    import dataclasses

    from layers.errors import StoreError
    from services.jobs.partitions import partition_parts, read_owned

    url = fx.write_store(tmp_path / "store.gpkg", fx.layers())
    with open_store(url) as store:
        plan, _ = plan_partitions(store, registry, 8)
    assert plan[0].loads == (("dltb", ""), ("dltb_prev", ""))  # no load record in this hand-made store
    moved = dataclasses.replace(plan[0], loads=(("dltb", "a-load-since-replaced"), ("dltb_prev", "")))
    with pytest.raises(StoreError, match="re-ingested while their indicators were being computed"):
        partition_parts(moved, read_owned(moved, url), url, registry.document, ["dltb", "dltb_prev", "xzq"], {})

"""`yzt analyse --store STORE [--rules FILE]` end to end on a GeoPackage store of the hand-made region, and on
the sample county (every planted case judged as planted, planted conflicts found with their areas)."""

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from analysis.rules import DEFAULT_RULES_PATH
from layers.area import ellipsoidal_area
from layers.records import LoadRecord
from layers.store import open_store
from services.cli import cli
from services.jobs.analyse import run_analysis
from tests import analysis_fixtures as fx


def _record(name, n):
    return LoadRecord(layer=name, source_path=f"fixture:{name}", source_layer=None, sha256="0" * 64,
                      source_crs="EPSG:4547", crs_resolution="fixture", transformation="none",
                      target_crs="EPSG:4547", encoding=None, field_mapping={}, code_set=None, rows_read=n,
                      rows_written=n, load_id=f"load-{name}")


def make_store(path: Path, drop=(), duplicate_dltb=False) -> Path:
    layers = {}
    for name, gdf in fx.region().items():
        if name in drop:
            continue
        gdf = gdf.copy()
        if name == "dltb" and duplicate_dltb:  # an exported twin of the 0702 patch c2, with its own BSM
            twin = gdf[gdf["BSM"] == "C-c2"].assign(BSM="C-c2-twin")
            gdf = gpd.GeoDataFrame(pd.concat([gdf, twin], ignore_index=True), crs=gdf.crs)
        gdf["yzt_fid"] = np.arange(1, len(gdf) + 1)
        gdf["area_m2"] = ellipsoidal_area(gdf.geometry.values, gdf.crs).round(2)
        layers[name] = gdf
    with open_store(path) as store:
        store.write_layers(layers, records=[_record(n, len(g)) for n, g in layers.items()],
                           meta={"region_code": "130599", "region_name": "样例县", "epsg": "4547"})
    return path


@pytest.fixture
def store_path(tmp_path):
    return make_store(tmp_path / "store.gpkg")


def invoke(*args):
    return CliRunner().invoke(cli, ["analyse", *args], catch_exceptions=False)


def test_cli_writes_results_and_prints_summary(store_path):
    result = invoke("--store", str(store_path))
    assert result.exit_code == 0, result.output
    out = result.output
    # 8 monitoring patches + 4 change patches (c1b, c2, c4, c6) → 4 merged: M1+BG-C-c1b, M2+BG-C-c6,
    # M3+BG-C-c2, M7+BG-C-c4 (M9 overlaps BG-C-c2 too, but M3 and M9 are two patches of one round)
    assert "monitoring patches: 8; change patches dltb_prev → dltb: 4" in out
    assert "dedupe: 12 patches → 8 ground changes (4 merged in 4 groups)" in out
    with open_store(store_path) as store:
        flagged = store.read_layer("flagged_patches").set_index("JCBH", drop=False)
        conflicts = store.read_layer("planning_conflicts")
        runs = store.read_table("analysis_runs")
        meta = store.meta()
        records = store.load_records("flagged_patches")
    assert sorted(flagged["JCBH"]) == ["M1", "M2", "M3", "M4", "M5", "M6", "M7", "M9"]
    verdicts = flagged["verdict"].to_dict()
    assert verdicts == {"M1": "legal", "M2": "partly_approved", "M3": "suspected_illegal", "M4": "other",
                        "M5": "other", "M6": "other", "M7": "suspected_illegal", "M9": "partly_approved"}
    for verdict, zh in [("legal", "合法"), ("partly_approved", "少批多占"), ("suspected_illegal", "未批先建"),
                        ("other", "其他")]:
        assert f"{zh}" in out and verdict in out
    # merged with the survey's change patch: the union is the whole changed DLTB patch
    m1 = flagged.loc["M1"]
    assert json.loads(m1["source_ids"]) == ["M1", "BG-C-c1b"]
    assert json.loads(m1["sources"]) == ["satellite", "survey"] and m1["n_sources"] == 2
    assert m1["area_m2"] == pytest.approx(5000.0, abs=0.01) and m1["verdict"] == "legal"
    m3 = flagged.loc["M3"]  # M3 ∪ BG-C-c2 = the whole of c2 (10000 m²) on 旱地
    assert m3["area_m2"] == pytest.approx(10000.0, abs=0.01) and m3["area_cultivated"] == pytest.approx(10000.0)
    assert (flagged["status"] == "待核查").all() and (flagged["version"] == 1).all()
    run_id = runs["run_id"].iloc[-1]
    assert (flagged["run_id"] == run_id).all() and (conflicts["run_id"] == run_id).all()
    assert meta["analysis_run_id"] == run_id and records["load_id"].iloc[-1] == run_id
    row = runs.iloc[-1]
    assert row["rules_sha256"] and json.loads(row["rules"])["judgement"]["legal_min_share"] == 0.95
    assert json.loads(row["input_load_ids"])["dltb"] == "load-dltb"
    counts = json.loads(row["counts"])
    assert counts["by_verdict"] == {"legal": 1, "partly_approved": 2, "suspected_illegal": 2, "other": 3}
    assert counts["merged"] == 4
    # conflicts of this store: no ghfq / parcels → those kinds are reported as not checked
    assert "parcel_zone_conflict" in out and "not checked (no parcels, ghfq layer)" in out
    assert set(conflicts["kind"]) == {"construction_in_yjjbnt", "yjjbnt_not_cultivated",
                                      "construction_outside_czkfbj", "approved_unsupplied"}
    assert all(json.loads(x) for x in conflicts["left_ids"])
    assert list(conflicts.columns[:2]) == ["conflict_id", "kind"] and conflicts["conflict_id"].is_unique
    assert conflicts["conflict_id"].str.fullmatch(r"CF-[A-Z]{2,3}-[0-9a-f]{12}(-\d+)?").all()


def conflict_records(conflicts) -> dict:
    """conflict_id → (kind, left_ids, right_ids, area_m2): what an id must keep naming from run to run."""
    assert conflicts["conflict_id"].is_unique
    return {r.conflict_id: (r.kind, r.left_ids, r.right_ids, round(r.area_m2, 2)) for r in conflicts.itertuples()}


def test_conflict_ids_are_the_same_in_every_run(store_path):
    first = run_analysis(store_path)
    second = run_analysis(store_path, workers=1)
    with open_store(store_path) as store:
        stored = store.read_layer("planning_conflicts")
    assert first.run_id != second.run_id and (stored["run_id"] == second.run_id).all()
    # c1b, c2 in YJJBNT (as two kinds each); c1b, c4, c6 outside CZKFBJ; P1, P2, P5 unsupplied (no parcels)
    assert len(first.conflicts) == 10
    assert conflict_records(first.conflicts) == conflict_records(second.conflicts) == conflict_records(stored)


@pytest.mark.slow
def test_rerun_keeps_the_workflow_status(store_path):
    run_analysis(store_path)
    with open_store(store_path) as store:
        flagged = store.read_layer("flagged_patches")
        flagged.loc[flagged["JCBH"] == "M3", ["status", "judgement", "version"]] = ["已核查", "违法", 2]
        store.write_layers({"flagged_patches": flagged}, records=[_record("flagged_patches", len(flagged))])
    result = run_analysis(store_path)
    assert result.carried_over == 8
    with open_store(store_path) as store:
        again = store.read_layer("flagged_patches").set_index("JCBH")
        runs = store.read_table("analysis_runs")
    m3 = again.loc["M3"]
    assert (m3["status"], m3["judgement"], m3["version"]) == ("已核查", "违法", 2)
    assert again.loc["M1", "status"] == "待核查"
    assert len(runs) == 2 and runs["run_id"].iloc[-1] == result.run_id


def test_custom_rules_file(store_path, tmp_path):
    raw = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
    raw["change_patches"]["enabled"] = False
    raw["judgement"]["legal_min_share"] = 0.4
    path = tmp_path / "my_rules.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    result = invoke("--store", str(store_path), "--rules", str(path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["change_patches"] == 0 and summary["merged"] == 0
    assert summary["rules"] == str(path)
    # M2 (50 %) and M9 (9.1 %): 0.4 makes M2 legal, M9 stays partly approved
    assert summary["by_verdict"] == {"legal": 2, "partly_approved": 1, "suspected_illegal": 2, "other": 3}


def test_bad_rules_file_is_one_line_exit_2(store_path, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\njudgement: {legal_min_share: 2}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["analyse", "--store", str(store_path), "--rules", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith("yzt: error: rules") and result.output.count("\n") == 1


def test_store_without_dltb_is_one_line_exit_2(tmp_path):
    path = make_store(tmp_path / "nodltb.gpkg", drop=("dltb", "dltb_prev"))
    result = CliRunner().invoke(cli, ["analyse", "--store", str(path)])
    assert result.exit_code == 2
    assert "no dltb layer" in result.output and "yzt ingest" in result.output


@pytest.mark.slow
def test_duplicate_dltb_patch_is_set_aside(tmp_path):
    path = make_store(tmp_path / "dup.gpkg", duplicate_dltb=True)
    result = invoke("--store", str(path))
    assert result.exit_code == 0, result.output
    assert "dltb: 1 exact duplicate patch(es) set aside (BSM C-c2-twin)" in result.output
    with open_store(path) as store:
        conflicts = store.read_layer("planning_conflicts")
    in_yj = conflicts[conflicts["kind"] == "construction_in_yjjbnt"]
    assert sorted(in_yj["left_ids"]) == ['["C-c1b"]', '["C-c2"]']  # counted once, not twice
    assert in_yj["area_m2"].sum() == pytest.approx(5000.0, abs=0.01)


# --- the sample county --------------------------------------------------------------------------------

PLANTED = Path(__file__).resolve().parent.parent / "data" / "sample" / "planted.yaml"
# planted.yaml names a few conflict kinds by their descriptive names; the output kinds are the left ones
PLANTED_KIND = {"yjjbnt_stbhhx": "overlap_yjjbnt_stbhhx", "yjjbnt_czkfbj": "overlap_yjjbnt_czkfbj",
                "stbhhx_czkfbj": "overlap_stbhhx_czkfbj", "approved_unsupplied": "approved_not_supplied"}


@pytest.mark.slow
def test_sample_county_planted_cases(sample_store_copy):
    planted = yaml.safe_load(PLANTED.read_text(encoding="utf-8"))
    result = run_analysis(sample_store_copy)
    check_planted(planted, result)
    # the same conflicts get the same conflict_id in a second run on the same inputs (one thread, this time)
    again = run_analysis(sample_store_copy, workers=1)
    assert again.run_id != result.run_id and len(result.conflicts) > 300
    assert set(again.conflicts["conflict_id"]) == set(result.conflicts["conflict_id"])
    assert conflict_records(again.conflicts) == conflict_records(result.conflicts)


def check_planted(planted: dict, result) -> None:
    """Every planted case of the sample county comes out as planted (data/sample/planted.yaml)."""
    flagged = result.flagged
    record_of = {}  # member JCBH → its flagged record
    for _, row in flagged.iterrows():
        for jcbh in json.loads(row["source_ids"]):
            assert jcbh not in record_of, f"{jcbh} is in two records"
            record_of[jcbh] = row

    # monitoring patches: verdict; areas and approvals where the patch stands alone (not merged)
    for case in planted["monitoring"]:
        row = record_of[case["JCBH"]]
        assert row["verdict"] == case["expected_verdict"], (case["JCBH"], case["kind"], row["verdict_reason"])
        if json.loads(row["source_ids"]) == [case["JCBH"]]:
            assert row["area_m2"] == pytest.approx(case["area_m2"], abs=0.01)
            assert row["area_yjjbnt"] == pytest.approx(case["area_yjjbnt_m2"], abs=0.01)
            assert row["area_stbhhx"] == pytest.approx(case["area_stbhhx_m2"], abs=0.01)
            assert row["area_outside_czkfbj"] == pytest.approx(case["area_outside_czkfbj_m2"], abs=0.01)
            assert row["orig_dlbm"] == case["orig_dlbm"] and row["now_dlbm"] == case["now_dlbm"]
            assert sorted(json.loads(row["approval_ids"])) == sorted(case["approval_ids"])
    # change patches from dltb_prev → dltb: each planted one is found and judged as planted
    for case in planted["survey_changes"]:
        row = record_of.get(case["id"])
        assert row is not None, f"change patch {case['id']} ({case['site']}) was not derived"
        assert row["verdict"] == case["expected_verdict"], (case["id"], row["verdict_reason"])
    # dedupe: every planted group is exactly one record (nothing else merged into it)…
    for group in planted["dedupe_groups"]:
        row = record_of[group["members"][0]]
        assert sorted(json.loads(row["source_ids"])) == sorted(group["members"]), group["site"]
        assert row["verdict"] == group["expected_verdict"]
    # …touching neighbours stay apart, and no other planted patch was merged
    for pair in planted["not_merged"]:
        a, b = pair["members"]
        assert record_of[a]["JCBH"] != record_of[b]["JCBH"], pair["sites"]
    grouped = {m for g in planted["dedupe_groups"] for m in g["members"]}
    for case in planted["monitoring"]:
        if case["JCBH"] not in grouped:
            assert json.loads(record_of[case["JCBH"]]["source_ids"]) == [case["JCBH"]], case["JCBH"]

    conflicts = result.conflicts

    def found(kind):
        sub = conflicts[conflicts["kind"] == kind]
        return [(r.left_layer, json.loads(r.left_ids), r.right_layer, json.loads(r.right_ids), r.area_m2)
                for r in sub.itertuples()]

    for kind in ("yjjbnt_stbhhx", "yjjbnt_czkfbj", "stbhhx_czkfbj", "construction_in_yjjbnt",
                 "construction_in_stbhhx", "yjjbnt_not_cultivated", "construction_outside_czkfbj"):
        truth = planted["conflicts"][PLANTED_KIND.get(kind, kind)]
        got = found(kind)
        for case in truth["cases"]:
            hits = [g for g in got if g[0] == case["left_layer"] and g[1] == case["left_ids"]
                    and g[2] == case["right_layer"] and g[3] == case["right_ids"]]
            assert len(hits) == 1, (kind, case)
            assert hits[0][4] == pytest.approx(case["area_m2"], abs=0.01), (kind, case)
        if truth["complete"]:
            assert len(got) == len(truth["cases"]), (kind, got)
    zone = found("parcel_zone_conflict")
    want = planted["conflicts"]["parcel_zone_conflict"]["cases"]
    assert sorted((g[1][0], g[3][0]) for g in zone) == sorted((c["ZDDM"], c["ghfq_BSM"]) for c in want)
    for c in want:
        hit = next(g for g in zone if g[1] == [c["ZDDM"]] and g[3] == [c["ghfq_BSM"]])
        assert hit[4] == pytest.approx(c["area_m2"], abs=0.01)
    unsupplied = {g[1][0]: g[4] for g in found("approved_unsupplied")}
    truth = planted["supply"]["approved_not_supplied"]
    assert sorted(unsupplied) == sorted(u["PZWH"] for u in truth)
    for u in truth:
        assert unsupplied[u["PZWH"]] == pytest.approx(u["unsupplied_area_m2"], abs=0.01)
    idle = {g[1][0]: g[4] for g in found("idle_land")}
    truth = planted["supply"]["idle"]
    assert sorted(idle) == sorted(u["ZDDM"] for u in truth)
    for u in truth:
        assert idle[u["ZDDM"]] == pytest.approx(u["area_m2"], abs=0.01)


@pytest.mark.slow
@pytest.mark.postgis
def test_postgis_store_gives_the_same_results(pg_schema_url, tmp_path):
    gpkg = make_store(tmp_path / "store.gpkg")
    make_store(pg_schema_url)
    a = run_analysis(gpkg)
    b = run_analysis(pg_schema_url)
    cols = ["JCBH", "source_ids", "verdict", "area_m2", "area_cultivated", "area_approved", "approval_ids", "XZQDM"]
    assert a.flagged[cols].sort_values("JCBH").values.tolist() == b.flagged[cols].sort_values("JCBH").values.tolist()
    key = ["kind", "left_ids", "right_ids", "area_m2"]
    assert sorted(map(tuple, a.conflicts[key].values.tolist())) == sorted(map(tuple, b.conflicts[key].values.tolist()))
    with open_store(pg_schema_url) as store:
        assert len(store.read_layer("flagged_patches")) == 8
        assert store.read_table("analysis_runs")["run_id"].iloc[-1] == b.run_id

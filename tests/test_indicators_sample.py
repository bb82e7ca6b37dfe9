"""End to end on the sample county: ingest (conftest) → yzt analyse → indicators, checked against values
computed a second, independent way — plain pandas on the stored layers and the generator's planted truth
(data/sample/planted.yaml, measured by data/truth.py on the geometry as built)."""

import json
from decimal import ROUND_HALF_UP, Decimal

import pytest
import yaml

from layers.codes import CONSTRUCTION_SANDIAO
from layers.store import open_store
from services.jobs import indicators as svc
from services.jobs.analyse import run_analysis
from services.reports import selfeval

pytestmark = pytest.mark.slow
CULTIVATED = ("0101", "0102", "0103")


@pytest.fixture(scope="module")
def sample(sample_manifest, sample_store, tmp_path_factory):
    import shutil

    path = tmp_path_factory.mktemp("indicators_sample") / "store.gpkg"
    shutil.copyfile(sample_store, path)
    run_analysis(str(path))
    run = svc.run_indicators(path)
    planted = yaml.safe_load((sample_manifest.parent / "planted.yaml").read_text(encoding="utf-8"))
    return path, run, planted


def values(run, code, level=None):
    v = run.values[run.values["indicator"] == code]
    if level:
        v = v[v["level"] == level]
    return v.set_index("unit_code")


def test_cultivated_area_by_township_equals_plain_pandas(sample):
    path, run, planted = sample
    dltb = open_store(path).read_layer("dltb")
    duplicates = {pair[1] for pair in planted["defects"]["dltb"]["duplicate_geometry"]}  # the copy, not the original
    dltb = dltb[~dltb["BSM"].isin(duplicates)]
    cult = dltb[dltb["DLBM"].isin(CULTIVATED)]
    d = [Decimal(repr(float(a))).quantize(Decimal("0.01"), ROUND_HALF_UP) for a in cult["area_m2"]]
    k = [(x * Decimal(repr(float(c)))).quantize(Decimal("0.01"), ROUND_HALF_UP)
         for x, c in zip(d, cult["KCXS"].fillna(0.0))]
    expected = {}
    for z, x, kk in zip(cult["ZLDWDM"], d, k):
        expected[z[:9]] = expected.get(z[:9], Decimal(0)) + x - kk
    got = values(run, "cultivated_area", "township")
    assert set(got.index) == set(expected)
    for township, exp in expected.items():
        assert got.loc[township, "value"] == pytest.approx(float(exp), abs=1e-4)
    county = values(run, "cultivated_area", "county")["value"].iloc[0]
    assert county == pytest.approx(float(sum(expected.values())), abs=1e-3)


def test_land_categories_reconcile_with_the_total(sample):
    path, run, planted = sample
    dltb = open_store(path).read_layer("dltb")
    dup = {p[1] for p in planted["defects"]["dltb"]["duplicate_geometry"]}
    total = float(sum(Decimal(repr(float(a))).quantize(Decimal("0.01"), ROUND_HALF_UP)
                      for a in dltb.loc[~dltb["BSM"].isin(dup), "area_m2"]))
    assert values(run, "total_area", "county")["value"].iloc[0] == pytest.approx(total, abs=1e-3)
    parts = sum(values(run, c, "county")["value"].iloc[0]
                for c in ("agricultural_area", "construction_area", "unused_area", "unknown_code_area"))
    assert parts == pytest.approx(total, abs=1e-3)
    unknown = planted["defects"]["dltb"]["unknown_code"]
    assert values(run, "unknown_code_area", "county")["record_ids"].iloc[0] == {
        "dltb": sorted(dltb.loc[dltb["BSM"].isin(unknown), "yzt_fid"].tolist())}


def test_planted_truth(sample):
    _, run, planted = sample
    c = planted["conflicts"]
    three = sum(c[k]["total_area_m2"] for k in ("overlap_yjjbnt_stbhhx", "overlap_yjjbnt_czkfbj",
                                                 "overlap_stbhhx_czkfbj"))
    county = lambda code: values(run, code, "county")["value"].iloc[0]  # noqa: E731
    assert county("three_line_conflict_area") == pytest.approx(three, abs=0.05)
    assert county("approved_unsupplied_area") == pytest.approx(
        sum(x["unsupplied_area_m2"] for x in planted["supply"]["approved_not_supplied"]), abs=0.05)
    assert county("idle_land_area") == pytest.approx(sum(x["area_m2"] for x in planted["supply"]["idle"]), abs=0.05)
    changes = [x for x in planted["survey_changes"]
               if x["prev_dlbm"] not in CONSTRUCTION_SANDIAO and x["now_dlbm"] in CONSTRUCTION_SANDIAO]
    assert county("new_construction_area") == pytest.approx(sum(x["area_m2"] for x in changes),
                                                            abs=0.01 * len(changes))
    yj = county("basic_farmland_area")
    assert yj - county("basic_farmland_cultivated_area") == pytest.approx(
        c["yjjbnt_not_cultivated"]["total_area_m2"], abs=0.05)


def test_patch_counts_equal_the_flagged_table(sample):
    path, run, _ = sample
    flagged = open_store(path).read_layer("flagged_patches")
    # 下发: a record with an issued member — a source other than the survey's own change pieces
    issued = flagged[[set(json.loads(s)) != {"survey"} for s in flagged["sources"]]]
    assert 0 < len(issued) < len(flagged)  # the sample has changes only the survey found
    by_township = issued["XZQDM"].str[:9].value_counts()
    got = values(run, "patches_issued", "township")["value"]
    for township, n in by_township.items():
        assert got[township] == n
    assert got.drop(by_township.index).eq(0).all()
    illegal = flagged[(flagged["status"] == "待核查")
                      & flagged["verdict"].isin(["suspected_illegal", "partly_approved"])]
    assert values(run, "illegal_count", "county")["value"].iloc[0] == len(illegal)
    # the illegal part of each record: what no approval covers (少批多占 counts only beyond its approval)
    assert values(run, "illegal_area", "county")["value"].iloc[0] == pytest.approx(illegal["area_unapproved"].sum())
    assert (illegal["area_unapproved"] <= illegal["area_m2"]).all()
    partly = illegal[illegal["verdict"] == "partly_approved"]
    assert len(partly) and (partly["area_unapproved"] < partly["area_m2"] - 1).all()


@pytest.mark.parametrize("column,decimals", [("value_m2", 2), ("value_ha", 4), ("value_mu", 2)])
def test_rollups_balance_at_every_level(sample, column, decimals):
    _, run, _ = sample
    v = run.values[run.values["unit"] == "m2"]
    for code, grp in v.groupby("indicator"):
        units = dict(zip(grp["unit_code"], (round(x * 10 ** decimals) for x in grp[column])))
        parents = dict(zip(grp["unit_code"], grp["parent_code"]))
        for parent in [u for u, p in parents.items() if p is None or p != p] + \
                [u for u in units if len(u) == 9]:
            kids = [u for u, p in parents.items() if p == parent]
            assert sum(units[k] for k in kids) == units[parent], (code, parent)


def test_selfeval_of_the_sample_county(sample, tmp_path):
    from pathlib import Path

    import openpyxl

    _, run, _ = sample
    targets = svc.load_targets(Path(__file__).resolve().parent.parent / "data" / "targets.sample.yaml")
    ev = svc.self_evaluate(run, targets)
    assert ev.unit_code == "130599" and ev.total_weight == 100
    rows = ev.rows.set_index("三级指标")
    cult = values(run, "cultivated_area", "county")["value_ha"].iloc[0]
    assert rows.loc["耕地保有面积", "实际完成值"] == cult
    ws = openpyxl.load_workbook(selfeval.selfeval_xlsx(ev, tmp_path / "s.xlsx"))["绩效自评表"]
    assert ws.cell(ws.max_row, 10).value == ev.total


def test_selfeval_of_a_township_uses_its_own_targets(sample):
    """130599101 has targets of its own for three rows of the sample file; every other row is 无目标 (never the
    county's target) and the total counts only the rows it was scored on."""
    from pathlib import Path

    _, run, _ = sample
    targets = svc.load_targets(Path(__file__).resolve().parent.parent / "data" / "targets.sample.yaml")
    ev = svc.self_evaluate(run, targets, "130599101")
    rows = ev.rows.set_index("三级指标")
    checked = values(run, "patches_checked", "township")["value"]["130599101"]
    assert rows.loc["卫片图斑调查核实数量", "年度指标值"] == 6
    assert rows.loc["卫片图斑调查核实数量", "得分"] == round(10 * min(checked / 6, 1), 2)
    no_target = rows[rows["年度指标值"].isna()]
    assert sorted(no_target.index) == sorted(["耕地保有面积", "永久基本农田保护率", "三线冲突面积", "违法占用耕地比例",
                                              "批而未供土地面积", "群众满意度", "预算完成情况"])
    assert no_target["得分"].isna().all()
    assert ev.scored_weight == 30 and ev.total == pytest.approx(rows["得分"].sum(skipna=True))
    county = svc.self_evaluate(run, targets)
    assert county.rows.set_index("三级指标").loc["预算完成情况", "得分"] == 9.5  # seed 000's step rule
    md = selfeval.selfeval_markdown(ev)
    assert "| 无目标 |" in md and "(有目标的指标分值合计 30)" in md
    assert not [w for w in county.warnings if "不在本次指标运行中" in w["label"]]


def test_selfeval_warns_of_targets_for_units_the_run_does_not_have(sample):
    """A per-unit target whose code is not a unit of the run (a typo, a 乡镇 merged away) would silently never
    be used: the evaluation says so, naming the codes."""
    from pathlib import Path

    _, run, _ = sample
    doc = yaml.safe_load((Path(__file__).resolve().parent.parent / "data" / "targets.sample.yaml")
                         .read_text(encoding="utf-8"))
    doc["items"][0]["targets"].update({"130599199": 3, "13059910": 2})
    ev = svc.self_evaluate(run, svc.parse_targets(doc))
    stray = [w for w in ev.warnings if "不在本次指标运行中" in w["label"]]
    assert len(stray) == 1 and stray[0]["item"] == "卫片图斑调查核实数量"
    assert stray[0]["label"] == "目标中的行政区代码不在本次指标运行中: 13059910, 130599199 (核对 targets 文件)"

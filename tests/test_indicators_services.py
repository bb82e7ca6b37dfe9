"""Indicator runs stored and read back, exports (xlsx values not formulas, seed-table layout), the CLI, charts."""

import json
import shutil
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from layers.errors import RuleError
from layers.records import LoadRecord
from layers.store import open_store
from services.cli import cli
from services.jobs import indicators as svc
from services.reports import indicators as tables
from services.reports import selfeval
from services.reports.charts import FontError, check_glyphs, cjk_font, draw_charts
from tests import indicators_fixtures as fx

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ROOT / "data" / "targets.sample.yaml"


def _record(name, gdf):
    return LoadRecord(layer=name, source_path=f"/source/{name}.shp", source_layer=None, sha256="ab" * 32,
                      source_crs="EPSG:4547", crs_resolution="prj", transformation="none", target_crs="EPSG:4547",
                      encoding="utf-8", field_mapping={}, code_set=None, rows_read=len(gdf),
                      rows_written=len(gdf), loaded_at="2024-12-31T00:00:00+00:00", load_id=f"load-{name}")


@pytest.fixture(scope="module")
def base_store(tmp_path_factory):
    """The fixture county in a GeoPackage store with one indicator run (read-only: copy it to write)."""
    path = tmp_path_factory.mktemp("indicators") / "store.gpkg"
    layers = fx.layers()
    with open_store(path) as store:
        store.write_layers(layers, [_record(n, g) for n, g in layers.items()],
                           meta={"region_code": fx.COUNTY, "epsg": str(fx.EPSG)})
    run = svc.run_indicators(path)
    return path, run


@pytest.fixture
def store_path(base_store, tmp_path):
    path = tmp_path / "store.gpkg"
    shutil.copyfile(base_store[0], path)
    return path


@pytest.fixture
def run(base_store):
    return base_store[1]


def test_run_is_stored_with_its_provenance(store_path, run):
    store = open_store(store_path)
    runs = store.read_table(svc.RUNS)
    assert list(runs["run_id"]) == [run.run_id]
    meta = runs.iloc[0]
    loads = json.loads(meta["input_loads"])
    assert loads["dltb"]["load_id"] == "load-dltb" and loads["dltb"]["sha256"] == "ab" * 32
    assert set(loads) >= {"xzq", "dltb", "dltb_prev", "yjjbnt", "flagged_patches", "planning_conflicts"}
    assert len(meta["registry_sha256"]) == 64
    assert json.loads(meta["id_fields"])["flagged_patches"] == "JCBH"
    assert json.loads(meta["id_fields"])["planning_conflicts"] == "conflict_id"
    values = store.read_table(svc.VALUES)
    assert set(values["run_id"]) == {run.run_id}
    row = values[(values["indicator"] == "illegal_count") & (values["unit_code"] == fx.COUNTY)].iloc[0]
    assert row["value"] == 5 and json.loads(row["record_ids"]) == {"flagged_patches": ["BG-8", "WP1", "WP3", "WP4",
                                                                                        "WP7"]}
    assert "现场认定" in row["rule"]
    warnings = store.read_table(svc.WARNINGS)
    assert set(warnings["indicator"]) == {"illegal_cultivated_ratio", "three_line_conflict_area"}


def test_runs_accumulate_and_load_back(store_path, run):
    assert svc.load_run(store_path).run_id == run.run_id
    second = svc.run_indicators(store_path)
    assert second.run_id != run.run_id
    latest = svc.load_run(store_path)
    assert latest.run_id == second.run_id
    first = svc.load_run(store_path, run.run_id)
    pd.testing.assert_series_equal(first.values["value"], run.values["value"], check_names=False)
    assert first.values.loc[0, "record_ids"] == run.values.loc[0, "record_ids"]
    assert len(open_store(store_path).read_table(svc.VALUES)) == 2 * len(run.values)


def test_drill_down_answers_which_patches_make_a_number(store_path, run):
    answer = svc.drill_down(store_path, "illegal_area", fx.V["C"])
    assert answer["record_ids"] == {"flagged_patches": ["WP3", "WP4", "WP7"]}
    # unapproved parts: WP3 100 × 50 whole, WP4 20 × 20 × (1 − 0.6), WP7 40 × 30 × (1 − 0.7)
    assert answer["value"] == pytest.approx(5000 + 160 + 360, rel=1e-4)


def test_drill_down_names_planning_conflicts_by_conflict_id(store_path):
    answer = svc.drill_down(store_path, "approved_unsupplied_area", fx.V["C"])
    stored = open_store(store_path).read_layer("planning_conflicts")
    unsupplied = stored.loc[stored["kind"] == "approved_unsupplied", "conflict_id"].tolist()
    assert answer["record_ids"] == {"planning_conflicts": unsupplied} and unsupplied[0].startswith("CF-AU-")


def test_bureau_registry_file(store_path, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: builtin\nindicators:\n  - code: forest_area\n    name: 林地面积\n    rule: 林地\n"
                    "    measure: {layer: dltb, sum: TBDLMJ, where: \"prefix(DLBM, '03')\"}\n", encoding="utf-8")
    run = svc.run_indicators(store_path, path)
    assert "forest_area" in set(run.values["indicator"])
    _, builtin_sha = svc.load_registry()
    assert run.meta["registry_sha256"] != builtin_sha
    with pytest.raises(RuleError, match="does not exist"):
        svc.load_registry(tmp_path / "nope.yaml")


def test_xlsx_holds_values_not_formulas(run, tmp_path):
    path = tables.export_values(run, "xlsx", out=tmp_path / "ind.xlsx")
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["县级指标", "乡镇级指标", "村级指标", "口径说明", "预警", "运行记录"]
    ws = wb["乡镇级指标"]
    rows = list(ws.iter_rows(values_only=True))
    header = next(r for r in rows if r and r[0] == "行政区代码" and "耕地面积(公顷)" in r)
    col = header.index("耕地面积(公顷)")
    data = {r[0]: r for r in rows[rows.index(header) + 1:rows.index(header) + 3]}
    expected = run.values.set_index(["indicator", "unit_code"])["value_ha"]
    assert data[fx.T1][col] == expected[("cultivated_area", fx.T1)]
    assert data[fx.T2][col] == expected[("cultivated_area", fx.T2)]
    for row in ws.iter_rows():
        for cell in row:
            assert not (isinstance(cell.value, str) and cell.value.startswith("="))
            if cell.value is not None and cell.column > 2 and not isinstance(cell.value, str):
                assert cell.data_type == "n"
    rules = {r[0]: r for r in wb["口径说明"].iter_rows(values_only=True)}
    assert "TBDLMJ" in rules["cultivated_area"][4]


def test_json_csv_md_exports(run):
    doc = json.loads(tables.export_values(run, "json", level="county"))
    assert {r["level"] for r in doc["values"]} == {"county"}
    one = next(r for r in doc["values"] if r["indicator"] == "cultivated_area")
    assert one["record_ids"]["dltb"] and one["value_mu"] == pytest.approx(one["value"] * 3 / 2000, abs=0.005)
    text = tables.export_values(run, "csv", level="village")
    assert text.startswith("\ufeffrun_id,indicator,name")
    assert text.count("\n") == 1 + 4 * run.values["indicator"].nunique()
    md = tables.export_values(run, "md", level="township")
    assert "## 乡镇级 · 耕地保护" in md and "| 130599100 | 东风镇 |" in md and "## 口径" in md
    with pytest.raises(RuleError, match="--out"):
        tables.export_values(run, "xlsx")


def test_selfeval_scores_and_xlsx_layout(run, tmp_path):
    targets = svc.load_targets(TARGETS)
    ev = svc.self_evaluate(run, targets, fx.COUNTY)
    rows = ev.rows.set_index("三级指标")
    # B comes from the run: survey rate 5 of 7 = 71.43 % of a 100 % target, weight 10 → 7.14
    assert rows.loc["卫片图斑调查率", "实际完成值"] == 71.43 and rows.loc["卫片图斑调查率", "得分"] == 7.14
    # reverse, A = 0 and B > 0 → 0
    assert rows.loc["三线冲突面积", "得分"] == 0.0
    assert ev.total == pytest.approx(rows["得分"].sum())
    assert any(w["label"].startswith("问责") for w in ev.warnings)
    path = selfeval.selfeval_xlsx(ev, tmp_path / "self.xlsx")
    ws = openpyxl.load_workbook(path)["绩效自评表"]
    header = [c.value for c in ws[2]]
    for title in ("一级指标", "二级指标", "三级指标", "分值", "年度指标值（A）", "实际完成值（B）", "得分"):
        assert title in header
    assert [c.value for c in ws[3]][4:7] == ["符号", "值", "单位"]
    last = ws.max_row
    assert ws.cell(last, 1).value == "自评总得分" and ws.cell(last, 10).value == ev.total
    assert ws.cell(last, 4).value == 100
    by_name = {ws.cell(r, 3).value: r for r in range(4, last)}
    r = by_name["卫片图斑调查率"]
    assert ws.cell(r, 8).value == 71.43 and ws.cell(r, 10).value == 7.14 and ws.cell(r, 8).data_type == "n"
    assert str(ws.cell(4, 1).value).startswith("产出指标 (40)")
    assert any(str(m) .startswith("A4:A") for m in ws.merged_cells.ranges)  # 一级 merged like the seeds
    md = selfeval.selfeval_markdown(ev)
    assert "| 产出指标 | 数量指标 |" in md and "自评总得分" in md


def test_missing_b_scores_zero_with_a_warning(run, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("items:\n"
                    "  - {level1: 产出指标, level2: 数量指标, level3: 新指标, actual: null, target: 5, weight: 50}\n"
                    "  - {level1: 产出指标, level2: 数量指标, level3: 图斑, indicator: patches_issued, target: 6, "
                    "weight: 50}\n", encoding="utf-8")
    ev = svc.self_evaluate(run, svc.load_targets(path))
    assert list(ev.rows["得分"]) == [0.0, 50.0] and ev.total == 50.0
    assert ev.warnings == [{"item": "新指标", "value": None, "op": "", "threshold": None, "label": "实际完成值缺失",
                            "severity": "warning"}]


def test_cli_commands(store_path, tmp_path):
    runner = CliRunner()
    out = runner.invoke(cli, ["indicators", "--store", str(store_path), "--level", "county", "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["run"]["run_id"] and {r["unit_code"] for r in doc["values"]} == {fx.COUNTY}
    xlsx = tmp_path / "o.xlsx"
    out = runner.invoke(cli, ["indicators", "--store", str(store_path), "--format", "xlsx", "--out", str(xlsx),
                              "--run-id", doc["run"]["run_id"]])
    assert out.exit_code == 0, out.output
    assert xlsx.is_file()
    out = runner.invoke(cli, ["selfeval", "--store", str(store_path), "--targets", str(TARGETS), "--format", "md"])
    assert out.exit_code == 0, out.output
    assert "自评总得分" in out.stdout
    out = runner.invoke(cli, ["charts", "--store", str(store_path), "--out", str(tmp_path / "charts")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "charts" / "cultivated_by_township.png").is_file()
    out = runner.invoke(cli, ["indicators", "--store", str(store_path), "--run-id", "nope"])
    assert out.exit_code == 2 and "nope" in out.output and "Traceback" not in out.output


@pytest.mark.slow
def test_charts_use_a_cjk_font(run, store_path, tmp_path):
    font = cjk_font()
    assert font.family == "Noto Sans CJK SC"
    assert font.path.endswith(".ttc")
    files = draw_charts(run, tmp_path, conflicts=open_store(store_path).read_layer("planning_conflicts"))
    assert [f.name for f in files] == ["cultivated_by_township.png", "land_categories_by_township.png",
                                       "verdicts_by_township.png", "conflicts_by_kind.png"]
    for f in files:
        assert f.stat().st_size > 20_000
        with Image.open(f) as im:
            assert im.size[0] > 800 and im.size[1] > 400
    svg = draw_charts(run, tmp_path / "svg", fmt="svg")[0].read_text(encoding="utf-8")
    assert "<svg" in svg and "<path" in svg


def test_glyph_check_refuses_tofu():
    font = cjk_font()
    check_glyphs(font, ["样例县 耕地面积 (公顷)"])
    with pytest.raises(FontError, match="no glyph"):
        check_glyphs(font, ["\ue000"])  # a private-use code point: no font draws it


def test_no_cjk_font_is_a_clear_error(tmp_path):
    with pytest.raises(FontError, match="fonts-noto-cjk"):
        cjk_font(dirs=(str(tmp_path),))


def test_survey_layers_are_read_with_the_columns_the_registry_uses(tmp_path):
    """The indicators read of a survey layer only the columns prepare_survey, the built-ins and the registry's
    terms use: a bureau's term on GDLX (梯田 patches) gets GDLX, the text nothing reads (ZLDWMC) stays in the
    store, and the count equals the patches counted from the fixture itself."""
    layers = fx.layers()
    dltb = layers["dltb"]
    dltb["GDLX"] = ["TT" if k % 3 == 0 else "PD" for k in range(len(dltb))]
    dltb["ZLDWMC"] = "某村"
    path = tmp_path / "store.gpkg"
    with open_store(path) as store:
        store.write_layers(layers, [_record(n, g) for n, g in layers.items()],
                           meta={"region_code": fx.COUNTY, "epsg": str(fx.EPSG)})
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: builtin\nindicators:\n  - code: terraced_patches\n    name: 梯田图斑数\n"
                    "    rule: GDLX 为 TT\n    unit: count\n"
                    "    measure: {layer: dltb, count: true, where: \"GDLX == 'TT'\"}\n",
                    encoding="utf-8")
    registry, _ = svc.load_registry(mine)
    with open_store(path) as store:
        columns = svc.read_columns(store, registry, "dltb")
        assert columns[0] == "yzt_fid" and "GDLX" in columns and "ZLDWMC" not in columns
        assert {"BSM", "DLBM", "KCXS", "ZLDWDM", "TBMJ", "area_m2"} <= set(columns)
        assert svc.read_columns(store, registry, "yjjbnt") is None
    run = svc.run_indicators(path, mine)
    county = run.values[(run.values["indicator"] == "terraced_patches") & (run.values["unit_code"] == fx.COUNTY)]
    assert county["value"].tolist() == [float(sum(v == "TT" for v in dltb["GDLX"]))]

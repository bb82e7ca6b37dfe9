"""`yzt demo`: the README's main job on the sample county, end to end, with every report from one run."""

import openpyxl
import pytest
from click.testing import CliRunner

from layers.store import open_store
from services.cli import cli


@pytest.mark.slow
def test_demo_runs_the_whole_job_from_one_indicator_run(tmp_path):
    out = tmp_path / "sample"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    store = open_store(out / "store.gpkg")
    flagged = store.read_layer("flagged_patches")
    assert len(flagged) == 50  # one record per planted ground change (data/sample/planted.yaml records)
    import collections
    from pathlib import Path

    import yaml

    planted = yaml.safe_load((Path(__file__).resolve().parent.parent / "data" / "sample" / "planted.yaml")
                             .read_text(encoding="utf-8"))
    want = collections.Counter(r["verdict"] for r in planted["records"])  # the planted truth's verdicts
    assert flagged["verdict"].value_counts().to_dict() == dict(want)
    assert set(flagged["status"]) == {"待核查"}
    runs = store.read_table("indicator_runs")
    assert len(runs) == 1  # md, xlsx, 自评表 and charts all come from the same stored run
    run_id = runs["run_id"].iloc[0]
    assert result.output.count(f"run {run_id}") == 3  # the indicators line and both 自评表 lines
    sheet = openpyxl.load_workbook(out / "selfeval.xlsx").active
    values = [cell for row in sheet.iter_rows(values_only=True) for cell in row if cell is not None]
    assert "自评总得分" in values
    assert not any(isinstance(v, str) and v.startswith("=") for v in values)  # values, not formulas
    assert sorted(p.name for p in (out / "charts").iterdir()) == [
        "conflicts_by_kind.png", "cultivated_by_township.png", "land_categories_by_township.png",
        "verdicts_by_township.png"]
    assert "130599100" in (out / "indicators.md").read_text(encoding="utf-8")
    rules_sha = store.meta()["analysis_rules_sha256"]  # the run records which rules made the verdicts
    assert len(rules_sha) == 64 and int(rules_sha, 16) >= 0

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
    assert len(flagged) == 35
    assert flagged["verdict"].value_counts().to_dict() == {"suspected_illegal": 14, "other": 12, "legal": 6,
                                                            "partly_approved": 3}
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

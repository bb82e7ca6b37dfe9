"""`yzt raster …` on the sample store: slope grades and findings, change → monitoring, zonal, coverage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from layers.store import open_store
from services.cli import cli

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"


@pytest.fixture
def raster_manifest(sample_manifest, tmp_path) -> Path:
    """The sample manifest with the rasters section of data/sample/rasters.yaml (absolute paths)."""
    doc = yaml.safe_load(Path(sample_manifest).read_text(encoding="utf-8"))
    for layer in doc["layers"].values():
        for item in layer if isinstance(layer, list) else [layer]:
            if isinstance(item, dict) and not Path(item["path"]).is_absolute():
                item["path"] = str(SAMPLE / item["path"])
    rasters = yaml.safe_load((SAMPLE / "rasters.yaml").read_text(encoding="utf-8"))["rasters"]
    doc["rasters"] = {k: {**v, "path": str(SAMPLE / v["path"])} for k, v in rasters.items()}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return res


@pytest.mark.slow
def test_slope_writes_grades_and_findings(raster_manifest, sample_store_copy):
    res = run("raster", "slope", "--manifest", raster_manifest, "--store", sample_store_copy)
    assert res.exit_code == 0, res.output
    with open_store(sample_store_copy) as store:
        grades = store.read_table("raster_slope_grades")
        findings = store.read_table("raster_findings")
        dltb = store.read_layer("dltb", columns=["BSM", "DLBM"])
    cult = dltb[dltb["DLBM"].isin(["0101", "0102", "0103"])]
    assert sorted(grades["BSM"]) == sorted(cult["BSM"].astype(str))
    graded = grades[grades["grade_dem"].notna()]
    assert set(graded["grade_dem"]) == {"1", "2", "3", "4", "5"}  # the sample DEM has every grade
    shares = graded[[f"share_{k}" for k in range(1, 6)]].sum(axis=1)
    assert (abs(shares - 1) < 1e-3).all()
    mismatch = graded[graded["GDPDJB"].notna() & (graded["GDPDJB"] != graded["grade_dem"])]
    row = findings[findings["check"] == "slope_grade_mismatch"]
    if len(mismatch):
        assert int(row["count"].iloc[0]) == len(mismatch)
        assert sorted(json.loads(row["ids"].iloc[0])) == sorted(mismatch["BSM"])
    else:
        assert row.empty
    assert "耕地 patches:" in res.output


@pytest.mark.slow
def test_change_appends_candidates_to_monitoring(raster_manifest, sample_store_copy):
    with open_store(sample_store_copy) as store:
        before = store.read_layer("monitoring")
    args = ("raster", "change", "--manifest", raster_manifest, "--store", sample_store_copy, "--as-monitoring",
            "--round", "2024-RS", "--truth", SAMPLE / "raster_truth.yaml")
    res = run(*args)
    assert res.exit_code == 0, res.output
    assert "removed by speckle" in res.output and "precision" in res.output
    with open_store(sample_store_copy) as store:
        after = store.read_layer("monitoring")
    added = after[after["SOURCE"] == "raster"]
    assert len(added) > 0 and len(after) == len(before) + len(added)
    assert added["JCBH"].str.startswith("RS-2024-RS-").all()
    assert added["XZQDM"].str.len().eq(12).all()
    assert after["yzt_fid"].tolist() == list(range(1, len(after) + 1))
    # running again replaces that round's rows instead of adding them twice
    res = run(*args)
    assert res.exit_code == 0, res.output
    with open_store(sample_store_copy) as store:
        again = store.read_layer("monitoring")
    assert len(again) == len(after)


@pytest.mark.slow
def test_zonal_by_village_and_coverage(raster_manifest, sample_store_copy):
    res = run("raster", "zonal", SAMPLE / "dem.tif", "--store", sample_store_copy, "--layer", "xzq",
              "--stat", "mean", "--format", "json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows and all(len(r["XZQDM"]) == 12 for r in rows)
    assert all(r["valid_share"] > 0.99 and 0 < r["mean"] < 1000 for r in rows)
    res = run("raster", "coverage", "--manifest", raster_manifest, "--store", sample_store_copy,
              "--format", "json")
    assert res.exit_code == 0, res.output
    by = json.loads(res.output)
    county = by[-1]
    assert len(county["XZQDM"]) == 6
    assert 0 < county["visible_share"] < 1  # measured, not "full coverage"
    towns = by[:-1]
    assert sum(t["visible_m2"] for t in towns) == pytest.approx(county["visible_m2"], abs=0.05)


def test_errors_are_one_line(tmp_path, sample_store_copy):
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    res = CliRunner().invoke(cli, ["raster", "zonal", str(bad), "--store", str(sample_store_copy),
                                   "--layer", "dltb"])
    assert res.exit_code == 2
    assert "cannot be opened as a raster" in res.output

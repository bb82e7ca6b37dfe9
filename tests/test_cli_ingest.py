"""`yzt ingest` / `yzt check`: summary table, exit codes, one-line errors, store untouched on error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from layers.store import open_store
from services.cli import cli
from tests.layers_fixtures import dltb_frame, write
from tests.test_ingest_basic import small_county


def run(*args, env=None):
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code, out, err, *needles):
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yzt: error: "), err
    assert "Traceback" not in err + out
    for needle in needles:
        assert needle in lines[0]


def test_ingest_prints_one_row_per_layer(tmp_path):
    small_county(tmp_path)
    store = tmp_path / "out" / "store.gpkg"
    code, out, err = run("ingest", tmp_path / "manifest.yaml", "--store", store, "--no-progress")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "入库 ingest 样例县 (130599) → EPSG:4547 (CGCS2000 3° GK zone 38, CM 114°E)"
    header = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    rows = {line.split()[0]: line.split() for line in lines[header + 1:header + 4]}
    assert set(rows) == {"xzq", "dltb", "cameras"}
    assert rows["dltb"][1:3] == ["12", "12"] and rows["cameras"][1:3] == ["2", "2"]
    assert "EPSG:4490" in " ".join(rows["xzq"])  # how the xzq CRS was reached is shown
    assert open_store(store).layer_names() == ["cameras", "dltb", "xzq"]


def test_ingest_one_role_and_store_from_the_environment(tmp_path):
    small_county(tmp_path)
    store = tmp_path / "store.gpkg"
    env = {"YZT_STORE": str(store)}
    assert run("ingest", tmp_path / "manifest.yaml", "--no-progress", env=env)[0] == 0
    code, out, err = run("ingest", tmp_path / "manifest.yaml", "--role", "cameras", "--no-progress", "--json",
                         env=env)
    assert code == 0, err
    doc = json.loads(out)
    assert [layer["role"] for layer in doc["layers"]] == ["cameras"] and doc["untouched"] == ["dltb", "xzq"]
    assert open_store(store).load_records()["layer"].tolist() == ["xzq", "dltb", "cameras", "cameras"]


@pytest.mark.parametrize("breakage, needles", [
    ("broken_file", ["cameras"]),
    ("missing_field", ["dltb", "DLBM"]),
    ("bad_manifest", ["manifest", "layers"]),
    ("unknown_role", ["'parcels'"]),
    ("other_region", ["holds region 130599"]),
])
def test_errors_are_one_line_and_leave_the_store_unchanged(tmp_path, breakage, needles):
    small_county(tmp_path)
    store = tmp_path / "out" / "store.gpkg"
    assert run("ingest", tmp_path / "manifest.yaml", "--store", store, "--no-progress")[0] == 0
    before = store.read_bytes()
    args = ["ingest", tmp_path / "manifest.yaml", "--store", store, "--no-progress"]
    if breakage == "broken_file":
        (tmp_path / "cameras.geojson").write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    elif breakage == "missing_field":
        write(dltb_frame().drop(columns=["DLBM", "DLMC"]), tmp_path / "dltb.shp", encoding="gbk")
    elif breakage == "bad_manifest":
        (tmp_path / "manifest.yaml").write_text("region: {code: '130599'}\nlayers: []\n", encoding="utf-8")
    elif breakage == "unknown_role":
        args += ["--role", "parcels"]
    elif breakage == "other_region":
        text = (tmp_path / "manifest.yaml").read_text(encoding="utf-8").replace("'130599'", "'130600'")
        (tmp_path / "manifest.yaml").write_text(text, encoding="utf-8")
    code, out, err = run(*args)
    assert_one_line_error(code, out, err, *needles)
    assert store.read_bytes() == before


def test_bad_store_location_names_the_accepted_forms(tmp_path):
    small_county(tmp_path)
    code, out, err = run("ingest", tmp_path / "manifest.yaml", "--store", tmp_path / "x.sqlite", "--no-progress")
    assert_one_line_error(code, out, err, "x.sqlite", ".gpkg", "postgresql://")


def test_check_exit_codes_and_json(tmp_path):
    small_county(tmp_path)
    code, out, err = run("check", tmp_path / "manifest.yaml")
    assert code == 0, err
    assert "dltb" in out and "xzq" in out
    code, out, _ = run("check", tmp_path / "manifest.yaml", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["region_code"] == "130599"
    write(dltb_frame().drop(columns=["DLBM", "DLMC"]), tmp_path / "dltb.shp", encoding="gbk")
    code, out, err = run("check", tmp_path / "manifest.yaml", "--json")
    assert code == 1, err
    errors = [f for f in json.loads(out)["findings"] if f["severity"] == "error"]
    assert [f["layer"] for f in errors] == ["dltb"] and "DLBM" in errors[0]["message"]
    code, out, err = run("check", tmp_path / "nope.yaml")
    assert_one_line_error(code, out, err, "nope.yaml")

"""Done-when: the sample county and its messy re-expression ingest to the same store in both backends, and
bad inputs give one line and leave an ingested store exactly as it was."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
import yaml
from click.testing import CliRunner

from layers.store import open_store

pytestmark = pytest.mark.slow


def _values(series: pd.Series) -> list:
    return [None if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))) else v for v in series]


def assert_same_store(got_target, want_target, geometry_tolerance: float = 0.001) -> None:
    """Same layers, row counts, attribute values; area_m2 to 0.01 m²; geometries within 1 mm (Hausdorff)."""
    got, want = open_store(got_target), open_store(want_target)
    assert got.layer_names() == want.layer_names()
    assert {k: got.meta()[k] for k in ("region_code", "epsg", "zone")} == \
        {k: want.meta()[k] for k in ("region_code", "epsg", "zone")}
    for name in want.layer_names():
        a, b = got.read_layer(name), want.read_layer(name)
        assert list(a.columns) == list(b.columns), name
        assert len(a) == len(b), name
        for col in b.columns:
            if col in ("geometry", "area_m2"):
                continue
            assert _values(a[col]) == _values(b[col]), f"{name}.{col}"
        np.testing.assert_allclose(a["area_m2"], b["area_m2"], rtol=0, atol=0.01 + 1e-9, err_msg=name)
        assert got.geometry_type(name) == want.geometry_type(name)
        ga, gb = np.asarray(a.geometry.values, dtype=object), np.asarray(b.geometry.values, dtype=object)
        differ = np.flatnonzero(shapely.to_wkb(ga) != shapely.to_wkb(gb))  # bit-identical rows need no check
        dist = shapely.hausdorff_distance(ga[differ], gb[differ])
        assert np.nanmax(dist, initial=0.0) <= geometry_tolerance, (name, float(np.nanmax(dist, initial=0.0)))


def test_sample_is_the_same_in_both_backends(sample_store, sample_pg_store):
    # both came from the same loader output: bit-identical geometry, identical attributes
    assert_same_store(sample_pg_store, sample_store, geometry_tolerance=0.0)
    store = open_store(sample_store)
    assert store.meta()["region_code"] == "130599" and store.epsg == 4547
    assert {"xzq", "dltb", "dltb_prev", "yjjbnt", "monitoring"} <= set(store.layer_names())
    records = store.load_records()
    assert set(records["layer"]) == set(store.layer_names()) and records["load_id"].nunique() == 1
    for name in store.layer_names():
        assert store.count(name) == int(records.loc[records["layer"] == name, "rows_written"].iloc[-1])


@pytest.fixture(scope="module")
def county():
    """The sample county built in memory once (the variants re-express it)."""
    from data.generate import build_county

    return build_county()


@pytest.fixture(scope="module")
def messy_manifest(county, tmp_path_factory) -> Path:
    from data.generate import write_messy_variants

    return Path(write_messy_variants(tmp_path_factory.mktemp("messy") / "messy", county=county))


def test_messy_variants_ingest_to_the_same_store(messy_manifest, sample_store, sample_pg_store, tmp_path,
                                                 pg_schema_url):
    from services.cli import cli

    gpkg = tmp_path / "messy.gpkg"
    for target in (gpkg, pg_schema_url):
        result = CliRunner().invoke(cli, ["ingest", str(messy_manifest), "--store", str(target), "--no-progress"])
        assert result.exit_code == 0, result.stderr
    assert_same_store(gpkg, sample_store)
    assert_same_store(pg_schema_url, sample_pg_store)
    records = open_store(gpkg).load_records().set_index("layer")
    assert "helmert" in records.loc["stbhhx", "transformation"].lower()  # the Xian 1980 parameters were used


# --- bad inputs ------------------------------------------------------------------------------------------

def _copy_sample(sample_manifest: Path, dest: Path) -> Path:
    shutil.copytree(sample_manifest.parent, dest, ignore=shutil.ignore_patterns("*.tif", "*.tmp*"))
    return dest / "manifest.yaml"


def _entry(manifest: Path, role: str) -> dict:
    doc = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    entry = doc["layers"][role]
    entry = entry[0] if isinstance(entry, list) else entry
    return {"path": entry} if isinstance(entry, str) else entry


def _edit_manifest(manifest: Path, role: str, **changes) -> None:
    doc = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    entry = doc["layers"][role]
    first = entry[0] if isinstance(entry, list) else entry
    first = {"path": first} if isinstance(first, str) else first
    first.update(changes)
    doc["layers"][role] = [first] if isinstance(entry, list) else first
    manifest.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def break_input(kind: str, sample_manifest: Path, work: Path, request) -> tuple[list[str], list[str]]:
    """Make one bad input; return (extra CLI args incl. the manifest, words the error line must contain)."""
    if kind == "wrong_zone_layer":
        from data.generate import write_wrong_zone_variant

        return [str(write_wrong_zone_variant(work / "neg", county=request.getfixturevalue("county")))], ["yjjbnt"]
    if kind == "swapped_axes":
        from data.generate import write_swapped_axes_variant

        return [str(write_swapped_axes_variant(work / "neg", county=request.getfixturevalue("county")))], \
            ["yjjbnt"]
    manifest = _copy_sample(sample_manifest, work / "copy")
    if kind == "broken_file":
        entry = _entry(manifest, "approvals")
        (manifest.parent / entry["path"]).write_bytes(b"this is not a GeoPackage\n" * 100)
        return [str(manifest)], ["approvals"]
    if kind == "missing_field":
        entry = _entry(manifest, "parcels")
        path = manifest.parent / entry["path"]
        frame = pyogrio.read_dataframe(path, layer=entry.get("layer"))
        path.unlink()
        pyogrio.write_dataframe(frame.drop(columns=["ZDDM"]), path, layer=entry.get("layer"))
        return [str(manifest), "--role", "parcels"], ["parcels", "ZDDM"]
    if kind == "wrong_crs":
        _edit_manifest(manifest, "approvals", crs="EPSG:4326")  # metres declared as degrees
        return [str(manifest), "--role", "approvals"], ["approvals"]
    if kind == "bad_manifest":
        manifest.write_text("region: {code: '130599'}\nlayers:\n  dltb: {path: dltb.shp, colour: red}\n",
                            encoding="utf-8")
        return [str(manifest)], ["colour"]
    raise AssertionError(kind)


BAD_INPUTS = ["broken_file", "wrong_crs", "wrong_zone_layer", "swapped_axes", "missing_field", "bad_manifest"]


def pg_fingerprint(url: str) -> dict:
    """Row-for-row fingerprint of every table of a PostGIS store schema (md5 over rows in fid order)."""
    store = open_store(url)
    out = {"meta": store.meta(), "records": len(store.load_records()), "findings": len(store.findings())}
    for name in store.layer_names() + store.table_names():
        rows = store._query(f'SELECT count(*), md5(string_agg(t::text, \'|\' ORDER BY t.fid)) '
                            f'FROM "{store.schema_name}"."{name}" t')
        out[name] = rows[0]
    store.close()
    return out


@pytest.fixture(scope="module")
def pg_ingested(sample_manifest, pg_url):
    """A PostGIS schema holding the sample, for the bad-input tests to (fail to) overwrite."""
    from layers.ingest import ingest
    from layers.manifest import load_manifest

    url = f"{pg_url}?schema=bad_inputs"
    ingest(load_manifest(sample_manifest), url, progress=False)
    return url


@pytest.mark.parametrize("kind", BAD_INPUTS)
@pytest.mark.parametrize("backend", ["gpkg", "postgis"])
def test_bad_inputs_give_one_line_and_leave_the_store_unchanged(kind, backend, sample_manifest, sample_store,
                                                                tmp_path, request):
    from services.cli import cli

    if backend == "gpkg":
        target = tmp_path / "store.gpkg"
        shutil.copyfile(sample_store, target)
        before = hashlib.sha256(target.read_bytes()).hexdigest()
    else:
        target = request.getfixturevalue("pg_ingested")
        before = pg_fingerprint(target)
    args, words = break_input(kind, sample_manifest, tmp_path, request)
    result = CliRunner().invoke(cli, ["ingest", *args, "--store", str(target), "--no-progress"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yzt: error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0]
    if backend == "gpkg":
        assert hashlib.sha256(target.read_bytes()).hexdigest() == before
        assert sorted(p.name for p in target.parent.iterdir() if ".tmp.gpkg" in p.name) == []
    else:
        assert pg_fingerprint(target) == before

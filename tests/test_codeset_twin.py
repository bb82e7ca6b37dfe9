"""The same county coded in 用地用海 gives the same records and indicators (issue 10, spec §6).

data.variants.write_codeset_twin writes the sample with its 2024 DLTB recoded to 用地用海 through the crosswalk's
designated reverse (layers.codes.from_sandiao) — the 2023 layer stays 三调, as real 2023 → 2024 pairs come — and
a second twin with both years in 用地用海. Each is ingested and analysed like the sample, and compared with the
sample's own run (serve_fixtures ``analysed_gpkg``): every flagged record (id, members, verdict, village, every
area), every planning conflict, every indicator value. Layers that mix the two sets, or whose codes cannot tell
the set, are refused with a message naming the codes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from data import variants
from tests.serve_fixtures import analysed_gpkg  # noqa: F401  (session fixture: the sample, analysed once)

RECORD_COLUMNS = ["source_ids", "sources", "rounds", "XZQDM", "verdict", "approval_ids", "orig_ids", "yjjbnt_ids",
                  "stbhhx_ids", "czkfbj_ids"]
AREA_COLUMNS = ["area_m2", "area_cultivated", "area_tiankan", "area_agri_other", "area_construction", "area_unused",
                "area_unclassified", "area_yjjbnt", "area_stbhhx", "area_outside_czkfbj", "area_approved",
                "area_compliant", "area_unapproved", "area_cultivated_unapproved"]


def _analyse(manifest, folder):
    from layers.ingest import ingest
    from layers.manifest import load_manifest
    from layers.store import open_store
    from services.jobs import indicators as svc
    from services.jobs.analyse import run_analysis

    store = folder / "store.gpkg"
    with open_store(store) as s:
        ingest(load_manifest(manifest), s, progress=False)
    result = run_analysis(str(store))
    return store, result, svc.run_indicators(store, save=False)


@pytest.fixture(scope="module")
def sample_run(analysed_gpkg):
    from layers.store import open_store
    from services.jobs import indicators as svc

    with open_store(analysed_gpkg) as s:
        flagged = s.read_layer("flagged_patches")
        conflicts = s.read_layer("planning_conflicts")
    return flagged, conflicts, svc.run_indicators(analysed_gpkg, save=False)


@pytest.fixture(scope="module", params=["dltb_2024", "both_years"])
def twin(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"twin_{request.param}")
    manifest = variants.write_codeset_twin(folder / "data", both_years=request.param == "both_years")
    store, result, ind = _analyse(manifest, folder)
    from layers.store import open_store

    with open_store(store) as s:
        records = {r.layer: r for r in s.load_records().itertuples()}  # the last load of each layer
    return request.param, result, ind, records


@pytest.mark.slow
def test_the_twin_is_read_as_ydyh(twin):
    which, _, _, records = twin
    assert records["dltb"].code_set == "ydyh"
    assert records["dltb_prev"].code_set == ("ydyh" if which == "both_years" else "sandiao")


@pytest.mark.slow
def test_twin_gives_identical_records(twin, sample_run):
    from layers.codes import to_sandiao

    which, result, _, _ = twin
    flagged, _, _ = sample_run
    a = flagged.set_index("JCBH").sort_index()
    b = result.flagged.set_index("JCBH").sort_index()
    assert list(b.index) == list(a.index)
    for col in RECORD_COLUMNS:
        if col in a.columns:
            assert b[col].astype(str).tolist() == a[col].astype(str).tolist(), col
    for col in AREA_COLUMNS:
        if col in a.columns:
            assert np.allclose(b[col].astype(float), a[col].astype(float), atol=1e-6, equal_nan=True), col
    # each layer keeps its own codes; through the crosswalk they are the sample's
    now_set = "ydyh"
    orig_set = "ydyh" if which == "both_years" else "sandiao"
    assert list(to_sandiao(b["now_dlbm"].to_numpy(), now_set)) == a["now_dlbm"].tolist()
    assert list(to_sandiao(b["orig_dlbm"].to_numpy(), orig_set)) == a["orig_dlbm"].tolist()
    assert (b["now_dlbm"] != a["now_dlbm"]).any()  # the twin really is coded otherwise


@pytest.mark.slow
def test_twin_gives_identical_conflicts(twin, sample_run):
    _, result, _, _ = twin
    _, conflicts, _ = sample_run
    key = ["kind", "left_ids", "right_ids"]

    def table(c):
        return sorted((r.kind, r.left_ids, r.right_ids, round(float(r.area_m2), 2)) for r in c[[*key, "area_m2"]]
                      .itertuples())

    assert table(result.conflicts) == table(conflicts)


@pytest.mark.slow
def test_twin_gives_identical_indicators(twin, sample_run):
    _, _, ind, _ = twin
    _, _, base = sample_run

    def table(run):
        v = run.values
        return {(r.indicator, r.level, str(r.unit_code)): r.value for r in v.itertuples()}

    a, b = table(base), table(ind)
    assert set(b) == set(a)
    differ = [k for k in a if not (((a[k] is None or (isinstance(a[k], float) and math.isnan(a[k])))
                                   and (b[k] is None or (isinstance(b[k], float) and math.isnan(b[k]))))
                                   or a[k] == pytest.approx(b[k], abs=1e-6))]
    assert not differ, [(k, a[k], b[k]) for k in differ[:10]]


@pytest.mark.parametrize("name", sorted(variants.CODESET_NEGATIVES))
def test_layers_mixing_or_hiding_their_code_set(tmp_path, name):
    from layers.errors import CodeSetError
    from layers.load import load_role
    from layers.manifest import load_manifest

    info = variants.CODESET_NEGATIVES[name]
    manifest = variants.write_codeset_negative(tmp_path / name, name)
    assert info["expect"] in manifest.read_text(encoding="utf-8")
    m = load_manifest(manifest)
    if info["error"]:
        with pytest.raises(CodeSetError) as err:
            load_role(m, "dltb", 4547)
        text = str(err.value)
        if name == "mixed":  # names codes of each set
            assert "05H1" in text or "08H2" in text or "1006" in text
            assert "0901" in text or "1207" in text or "0703" in text
        else:  # names the codes that mean other land uses in the two sets, and the remedy
            assert "0601" in text and "code_set:" in text
    else:
        loaded = load_role(m, "dltb", 4547)
        assert loaded.record.code_set == "sandiao"
        assert set(loaded.gdf["DLBM"]) >= {"0601", "0702"}


def test_twin_codes_round_trip_through_the_crosswalk(tmp_path):
    """The twin is what its docstring says: every 三调 code written as its 用地用海 code, and back."""
    import geopandas as gpd

    from layers.codes import detect_code_set, to_sandiao

    manifest = variants.write_codeset_twin(tmp_path / "twin")
    twin = gpd.read_parquet(manifest.parent / "dltb_2024.parquet")
    clean = gpd.read_parquet(variants._sample_dir(None) / "dltb_2024.parquet")
    assert detect_code_set(twin["DLBM"]) == "ydyh"
    # a code neither set knows (the planted 1199) stays as it is, and the crosswalk leaves it unmapped
    want = [c if c != "1199" else "ydyh:1199" for c in clean["DLBM"]]
    assert list(to_sandiao(twin["DLBM"].to_numpy(), "ydyh")) == want
    assert (twin["DLBM"] != clean["DLBM"]).sum() > 1000
    assert (twin.geometry.values == clean.geometry.values).all()
    assert json.dumps(sorted(twin.columns)) == json.dumps(sorted(clean.columns))


def test_normalise_codes_is_normalise_code_per_value_with_none_for_no_code():
    """The column form computes each distinct code once; its values are what the tidy-up rules give by hand
    (numeric exports, a lost leading zero, blanks), None for every kind of missing value, index kept."""
    import numpy as np
    import pandas as pd

    from layers.codes import normalise_codes

    column = pd.Series([303.0, " 0101 ", None, np.nan, "5h1", pd.NA, "", "nan", 1203, "0102"], dtype=object,
                       index=range(10, 20))
    got = normalise_codes(column)
    assert got.tolist() == ["0303", "0101", None, None, "05H1", None, None, None, "1203", "0102"]
    assert list(got.index) == list(range(10, 20)) and got.dtype == object
    assert normalise_codes(pd.Series(["0101", None], dtype="str")).tolist() == ["0101", None]

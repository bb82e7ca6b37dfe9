"""One flagged record per planted ground change of the sample county (issue 10, spec §1 and §4).

The sample (data/sample, conftest ``sample_store``) is analysed once (serve_fixtures ``analysed_gpkg``) and its
flagged_patches layer is compared, record by record, with ``records`` of data/sample/planted.yaml: the truth
data/truth.py measures on the planted geometry itself (the union of each change's monitoring patches and survey
pieces, exact shapely intersections, ellipsoidal areas), never by calling analysis/. Every record is listed there,
so the comparison is complete: same count, same ids, same members, verdicts, villages, areas to 0.01 m².

The families of data/split.py are checked by name as well, so that a failure says which rule broke: a site
across several current patches is ONE record; a re-issue on another piece of a site joins it; touching patches
stay two records even when their survey pieces are adjacent; a survey-only site takes the derived id of its
largest piece; a month-only 后时相 sorts as the 1st of its month.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.serve_fixtures import analysed_gpkg  # noqa: F401  (session fixture: the sample, analysed once)

pytestmark = pytest.mark.slow

PLANTED = yaml.safe_load((Path(__file__).resolve().parent.parent / "data" / "sample" / "planted.yaml")
                         .read_text(encoding="utf-8"))
RECORDS = PLANTED["records"]
BY_CHANGE = {r["change"]: r for r in RECORDS}
AREAS = ("area_m2", "area_cultivated", "area_approved", "area_unapproved", "area_cultivated_unapproved")
TOL = 0.011  # 0.01 m², plus the rounding of a difference of two rounded numbers


@pytest.fixture(scope="module")
def flagged(analysed_gpkg):
    from layers.store import open_store

    with open_store(analysed_gpkg) as store:
        gdf = store.read_layer("flagged_patches")
    assert gdf["JCBH"].is_unique, gdf["JCBH"][gdf["JCBH"].duplicated()].tolist()
    return gdf.set_index("JCBH", drop=False)


def members(row) -> list[str]:
    return json.loads(row["source_ids"])


def test_one_record_per_planted_ground_change(flagged):
    want = sorted(r["id"] for r in RECORDS)
    got = sorted(flagged.index)
    assert len(got) == len(want), (f"{len(got)} records for {len(want)} planted ground changes; extra "
                                   f"{sorted(set(got) - set(want))}, missing {sorted(set(want) - set(got))}")
    assert got == want
    # and no patch or survey piece is in two records, none is left out
    seen = [m for ids in flagged["source_ids"] for m in json.loads(ids)]
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(m for r in RECORDS for m in r["members"])


@pytest.mark.parametrize("truth", RECORDS, ids=[f"{r['change']}:{r['id']}" for r in RECORDS])
def test_record_equals_the_planted_truth(flagged, truth):
    assert truth["id"] in flagged.index, f"no record {truth['id']} ({truth['change']}, {truth['kind']})"
    row = flagged.loc[truth["id"]]
    # members: issued JCBHs in issue order, then the survey pieces by id
    assert members(row) == truth["members"]
    assert row["verdict"] == truth["verdict"], row["verdict_reason"]
    assert row["XZQDM"] == truth["XZQDM"]
    for col in AREAS:
        assert row[col] == pytest.approx(truth[col], abs=TOL), col
    assert int(row["n_pieces"]) == truth["n_pieces"]
    assert set(json.loads(row["sources"])) == set(truth["sources"])
    assert set(json.loads(row["rounds"])) == set(truth["rounds"])


def test_records_keep_their_earliest_dates_at_the_precision_given(flagged):
    """spec §1: the record's HSX / QSX are the earliest of its members, as text, month precision kept."""
    assert {"HSX", "QSX"} <= set(flagged.columns), "flagged_patches carries no HSX / QSX"
    for truth in RECORDS:
        row = flagged.loc[truth["id"]]
        assert str(row["HSX"]) == truth["HSX"], truth["change"]
        if truth["QSX"] is not None:
            assert str(row["QSX"]) == truth["QSX"], truth["change"]


# --- the families, by rule -------------------------------------------------------------------------------

def _changes(*kinds):
    return [r for r in RECORDS if r["kind"] in kinds]


def test_sites_across_several_patches_are_one_record_judged_whole(flagged):
    split = _changes("split_site", "split_survey_only", "split_camera_satellite", "split_three_parents",
                     "split_reissued", "reissue_other_piece")
    assert len(split) >= 10
    assert {r["verdict"] for r in split} == {"legal", "partly_approved", "suspected_illegal"}
    across_villages = [r for r in split if len(r["piece_villages"]) >= 2]
    assert len(across_villages) >= 5
    for r in split:
        row = flagged.loc[r["id"]]
        pieces = [m for m in members(row) if m.startswith("BG-")]
        assert pieces == r["pieces"] and len(pieces) >= 2, r["change"]
        # one verdict for the whole site: a 少批多占 site is not split into 少批多占 + 未批先建 + 其他
        assert row["verdict"] == r["verdict"], (r["change"], row["verdict_reason"])
    three = BY_CHANGE["K6"]
    assert three["n_pieces"] == 3 and three["kind"] == "split_three_parents"


def test_reissue_on_another_piece_joins_the_site(flagged):
    for r in _changes("reissue_other_piece"):
        first, second = r["issued"][:2]
        assert r["reissue_overlap"]["ratio"] < 0.5 and r["reissue_overlap"]["overlap_m2"] >= 1.0
        assert flagged.loc[r["id"], "JCBH"] == first
        assert second in members(flagged.loc[r["id"]]) and second not in flagged.index, r["change"]


def test_touching_patches_stay_two_records_even_over_adjacent_pieces(flagged):
    pairs = [p for p in PLANTED["not_merged"] if p["pieces_adjacent"]]
    assert len(pairs) >= 3  # same round; different sources; same source, different rounds
    for p in pairs:
        a, b = p["members"]
        assert a in flagged.index and b in flagged.index, p["sites"]
        assert members(flagged.loc[a]) != members(flagged.loc[b])
        assert b not in members(flagged.loc[a]) and a not in members(flagged.loc[b])


def test_survey_only_site_takes_the_id_of_its_largest_piece(flagged):
    r = BY_CHANGE["K3"]
    assert r["issued"] == [] and r["n_pieces"] == 2 and r["id"].startswith("BG-")
    row = flagged.loc[r["id"]]
    assert members(row) == r["pieces"]
    assert row["verdict"] == "suspected_illegal"


def test_issued_jcbh_is_the_record_id_wherever_one_exists(flagged):
    for r in RECORDS:
        row = flagged.loc[r["id"]]
        if r["issued"]:
            assert not row["JCBH"].startswith("BG-"), r["change"]
            assert row["JCBH"] == members(row)[0]


def test_month_only_date_sorts_as_the_first_of_its_month(flagged):
    """K4: the satellite patch says 后时相 2024-07 (month only), the camera 2024-07-12: the satellite patch is
    the earliest issue (the record's id, first in its members)."""
    r = BY_CHANGE["K4"]
    row = flagged.loc[r["id"]]
    sat, cam = r["issued"]
    assert sat.startswith("13059920242") and "SXT" in cam
    assert row["JCBH"] == sat and members(row)[:2] == [sat, cam]
    # G1: the 2024-1 patch (后时相 2024-04, month only) stays the representative of its three issues
    g1 = BY_CHANGE["G1"]
    assert flagged.loc[g1["id"], "JCBH"] == "130599202410010"
    assert members(flagged.loc[g1["id"]])[:3] == ["130599202410010", "130599SXT20240003", "130599202420012"]


def test_mixed_round_file_keeps_both_rounds(flagged):
    """The PC / LY file holds rounds 2024-1 and 2024-2 and two sources: its patches keep them (R1: one round each)."""
    r = BY_CHANGE["R1"]
    assert set(json.loads(flagged.loc[r["id"], "rounds"])) == {"2024", "2024-1", "2024-2"}
    r4 = BY_CHANGE["R4"]
    assert set(json.loads(flagged.loc[r4["id"], "sources"])) == {"satellite", "camera", "survey"}

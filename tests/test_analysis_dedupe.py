"""Deduplication: planted duplicates merge; touching or barely overlapping neighbours never do."""

import json

import pytest
import shapely

from analysis.dedupe import dedupe_patches, natural_key
from tests.analysis_fixtures import b, layer

ORDER = ("satellite", "drone", "camera", "survey")


def p(jcbh, geom, source="satellite", rnd="2024-1", hsx=None):
    return dict(JCBH=jcbh, SOURCE=source, ROUND=rnd, HSX=hsx, g=geom)


def run(rows, ratio=0.5, geometry="union"):
    out, report = dedupe_patches(layer(rows), min_overlap_ratio=ratio, source_order=ORDER, geometry=geometry)
    return out.set_index("JCBH", drop=False), report


def groups(out):
    return sorted(sorted(json.loads(s)) for s in out["source_ids"])


def test_planted_duplicates_merge_and_neighbours_do_not():
    rows = [
        p("A", b(0, 0, 100, 100), "satellite", "2024-1", "2024-03-31"),
        p("A2", b(5, 5, 105, 105), "camera", "2024-1", "2024-04-10"),      # 9025 / 10000 = 0.9025
        p("A3", b(0, 0, 100, 100), "satellite", "2024-2", "2024-06-30"),   # re-issued next round
        p("T", b(100, 0, 200, 100), "satellite", "2024-1", "2024-03-31"),  # touches A along x = 100
        p("E", b(0, 200, 100, 300), "satellite", "2024-1", "2024-03-31"),
        p("F", b(60, 200, 160, 300), "drone", "2024-1", "2024-04-01"),     # 4000 / 10000 = 0.4 with E
    ]
    out, report = run(rows)
    assert groups(out) == [["A", "A2", "A3"], ["E"], ["F"], ["T"]]
    assert report.n_input == 6 and report.n_output == 4 and report.n_merged == 2
    assert report.groups == [["A", "A2", "A3"]]
    a = out.loc["A"]
    assert json.loads(a["source_ids"]) == ["A", "A2", "A3"]  # issue order
    assert json.loads(a["sources"]) == ["satellite", "camera"] and a["n_sources"] == 2 and a["n_members"] == 3
    assert json.loads(a["rounds"]) == ["2024-1", "2024-2"]
    assert a["HSX"] == "2024-03-31"
    # union geometry: 10000 + 10000 − 9025 (A3 = A adds nothing)
    assert shapely.area(a.geometry) == pytest.approx(10975.0, abs=1e-6)


@pytest.mark.parametrize("shift, ratio, merged", [
    (50.0, 0.5, True),    # overlap 50 × 100 = 5000 of 10000: exactly the threshold
    (50.1, 0.499, False),  # just below
    (49.9, 0.501, True),
    (100.0, 0.0, False),  # touching
    (100.5, 0.0, False),  # apart
])
def test_threshold_boundary(shift, ratio, merged):
    rows = [p("A", b(0, 0, 100, 100)), p("B", b(shift, 0, shift + 100, 100), "camera")]
    out, report = run(rows)
    assert (len(out) == 1) is merged
    assert report.n_merged == (1 if merged else 0)


def test_ratio_is_relative_to_the_smaller_patch():
    # a 20 m × 20 m camera patch inside a 100 m × 100 m satellite patch: ratio 400 / 400 = 1
    out, _ = run([p("BIG", b(0, 0, 100, 100)), p("SMALL", b(40, 40, 60, 60), "camera")])
    assert groups(out) == [["BIG", "SMALL"]]


def test_configurable_threshold():
    rows = [p("E", b(0, 0, 100, 100)), p("F", b(60, 0, 160, 100), "drone")]  # ratio 0.4
    assert len(run(rows, ratio=0.5)[0]) == 2
    assert len(run(rows, ratio=0.4)[0]) == 1


def test_transitive_chain_across_sources():
    # A~B (0.6) and B~C (0.6); A and C overlap only 0.2 — B spans both and reports one change
    rows = [p("A", b(0, 0, 100, 100), "satellite", "2024-1"), p("B", b(40, 0, 140, 100), "drone", "2024-1"),
            p("C", b(80, 0, 180, 100), "camera", "2024-2")]
    out, _ = run(rows)
    assert groups(out) == [["A", "B", "C"]]


def test_one_source_and_round_never_merges_with_itself():
    # two satellite patches of one round side by side, one drone patch over both: the drone patch joins the
    # one it overlaps most (S2: 6000 of its 10000), the two satellite patches stay two records
    rows = [p("S1", b(0, 0, 100, 100), "satellite", "2024-1"), p("S2", b(100, 0, 200, 100), "satellite", "2024-1"),
            p("D", b(40, 0, 200, 100), "drone", "2024-1")]
    out, report = run(rows)
    assert groups(out) == [["D", "S2"], ["S1"]]
    assert report.n_merged == 1


def test_same_source_other_round_merges():
    rows = [p("R1", b(0, 0, 100, 100), "satellite", "2024-1"), p("R2", b(0, 0, 100, 100), "satellite", "2024-2")]
    out, _ = run(rows)
    assert groups(out) == [["R1", "R2"]] and out.iloc[0]["JCBH"] == "R1"


@pytest.mark.parametrize("rows, representative", [
    # earliest 后时相 wins
    ([p("LATE", b(0, 0, 100, 100), "satellite", "2024-1", "2024-06-30"),
      p("EARLY", b(0, 0, 100, 100), "camera", "2024-1", "2024-05-01")], "EARLY"),
    # same HSX: round in natural order, 2024-2 before 2024-10
    ([p("R10", b(0, 0, 100, 100), "satellite", "2024-10"), p("R2", b(0, 0, 100, 100), "satellite", "2024-2")], "R2"),
    # same round and HSX: source_order decides (satellite before camera)
    ([p("CAM", b(0, 0, 100, 100), "camera"), p("SAT", b(0, 0, 100, 100), "satellite")], "SAT"),
])
def test_representative_is_the_earliest_issued(rows, representative):
    out, _ = run(rows)
    assert list(out["JCBH"]) == [representative]


@pytest.mark.parametrize("rule, area", [("union", 10975.0), ("representative", 10000.0), ("latest", 10000.0)])
def test_geometry_rule(rule, area):
    rows = [p("A", b(0, 0, 100, 100), hsx="2024-01-01"), p("B", b(5, 5, 105, 105), "camera", hsx="2024-02-01")]
    out, _ = run(rows, geometry=rule)
    assert shapely.area(out.iloc[0].geometry) == pytest.approx(area, abs=1e-6)
    if rule == "latest":
        assert shapely.equals(out.iloc[0].geometry, b(5, 5, 105, 105))


def test_empty_and_single():
    out, report = run([])
    assert len(out) == 0 and report.n_merged == 0
    out, report = run([p("ONLY", b(0, 0, 10, 10))])
    assert list(out["JCBH"]) == ["ONLY"] and json.loads(out.iloc[0]["source_ids"]) == ["ONLY"]


def test_natural_key():
    assert sorted(["2024-10", "2024-2", "", "2023-12"], key=natural_key) == ["2023-12", "2024-2", "2024-10", ""]


# --- one record per ground change: survey piece units and sites (docs/analysis.md, "One ground change") ------

def piece(bsm, geom, year="2024"):
    """A survey piece unit: the changed pieces under one current DLTB patch (analysis.changes)."""
    return dict(JCBH=f"BG-{bsm}", SOURCE="survey", ROUND=year, HSX=f"{year}-12-31", derived=True, g=geom)


def run_sites(rows, **kw):
    out, report = dedupe_patches(layer(rows), min_overlap_ratio=0.5, source_order=ORDER, **kw)
    return out.set_index("JCBH", drop=False), report


def members(out):
    return {jc: json.loads(s) for jc, s in zip(out["JCBH"], out["source_ids"])}


# A change site 60 m × 40 m cut by survey patch boundaries at x = 20 (a 村 boundary) and x = 45 (a road).
SITE = [b(0, 0, 20, 40), b(20, 0, 45, 40), b(45, 0, 60, 40)]


def test_a_split_site_under_one_satellite_patch_is_one_record():
    rows = [piece("P1", SITE[0]), piece("P2", SITE[1]), piece("P3", SITE[2]),
            p("WP-1", b(1, 1, 59, 39), "satellite", "2024-1", "2024-04-20")]
    out, report = run_sites(rows)
    assert members(out) == {"WP-1": ["WP-1", "BG-P1", "BG-P2", "BG-P3"]}
    rec = out.loc["WP-1"]
    assert rec["n_pieces"] == 3 and json.loads(rec["sources"]) == ["satellite", "survey"]
    assert json.loads(rec["rounds"]) == ["2024", "2024-1"]
    assert rec.geometry.area == pytest.approx(60 * 40)  # the union: the whole site
    assert report.n_input == 4 and report.n_output == 1 and report.n_pieces == 3


def test_a_survey_only_site_is_one_record_named_by_its_largest_piece():
    rows = [piece("P1", SITE[0]), piece("P2", SITE[1]), piece("P3", SITE[2]),
            piece("Q1", b(200, 0, 230, 30))]  # another site, 140 m away
    out, _ = run_sites(rows)
    assert members(out) == {"BG-P2": ["BG-P1", "BG-P2", "BG-P3"], "BG-Q1": ["BG-Q1"]}  # P2: 25 × 40 = 1000 m²


def test_pieces_touching_at_a_corner_or_a_short_edge_are_two_sites():
    rows = [piece("P1", b(0, 0, 20, 20)), piece("P2", b(20, 20, 40, 40)),  # a corner
            piece("P3", b(100, 0, 120, 20)), piece("P4", b(120, 19.5, 140, 40))]  # 0.5 m of shared edge
    out, _ = run_sites(rows)
    assert len(out) == 4
    out, _ = run_sites(rows, site_min_shared_edge_m=0.5)  # the rule is data: a looser edge joins P3 and P4
    assert members(out)["BG-P4"] == ["BG-P3", "BG-P4"] and len(out) == 3


def test_an_uncovered_piece_of_a_site_joins_the_record_of_its_neighbour():
    rows = [piece("P1", SITE[0]), piece("P2", SITE[1]), piece("P3", SITE[2]),
            p("WP-1", b(1, 1, 44, 39), "satellite", "2024-1", "2024-04-20")]  # the satellite missed P3
    out, _ = run_sites(rows)
    assert members(out) == {"WP-1": ["WP-1", "BG-P1", "BG-P2", "BG-P3"]}


def test_a_re_issue_on_another_piece_of_the_site_is_the_same_record():
    """Round 1 saw the west part, round 2 the east part; the two patches overlap by 5 m × 38 m = 190 m² (ratio
    190 / 988 = 0.19, below 0.5): the survey's site joins them."""
    rows = [piece("P1", SITE[0]), piece("P2", SITE[1]), piece("P3", SITE[2]),
            p("WP1-7", b(1, 1, 27, 39), "satellite", "2024-1", "2024-04-20"),
            p("WP2-3", b(22, 1, 59, 39), "satellite", "2024-2", "2024-10-18")]
    out, _ = run_sites(rows)
    assert members(out) == {"WP1-7": ["WP1-7", "WP2-3", "BG-P1", "BG-P2", "BG-P3"]}
    assert json.loads(out.loc["WP1-7", "rounds"]) == ["2024", "2024-1", "2024-2"]


def test_issued_patches_that_merely_touch_stay_two_records_over_one_site():
    """Two neighbours built side by side: each patch covers its own pieces; the pieces are adjacent (one site in
    the survey), but the two patches only touch — two records, whether one source issued both or two."""
    for second in (("satellite", "2024-1"), ("camera", "2024-2")):
        rows = [piece("P1", b(0, 0, 30, 40)), piece("P2", b(30, 0, 60, 40)),
                p("A", b(0, 0, 30, 40), "satellite", "2024-1", "2024-04-20"),
                p("B", b(30, 0, 60, 40), *second, "2024-07-12")]
        out, _ = run_sites(rows)
        assert members(out) == {"A": ["A", "BG-P1"], "B": ["B", "BG-P2"]}, second


def test_an_uncovered_piece_between_two_touching_records_goes_to_its_longer_neighbour():
    rows = [piece("P1", b(0, 0, 30, 40)), piece("P2", b(30, 0, 60, 40)), piece("P3", b(0, 40, 45, 50)),
            p("A", b(0, 0, 30, 40), "satellite", "2024-1", "2024-04-20"),
            p("B", b(30, 0, 60, 40), "satellite", "2024-1", "2024-04-20")]
    out, _ = run_sites(rows)  # P3 shares 30 m with P1 and 15 m with P2
    assert members(out) == {"A": ["A", "BG-P1", "BG-P3"], "B": ["B", "BG-P2"]}


def test_camera_and_satellite_over_different_pieces_of_one_site_are_one_record():
    rows = [piece("P1", SITE[0]), piece("P2", SITE[1]), piece("P3", SITE[2]),
            p("SXT-1", b(0, 0, 24, 40), "camera", "2024-2", "2024-07-12"),
            p("WP-5", b(18, 2, 60, 38), "satellite", "2024-2", "2024-10-18")]  # overlap 6 × 36 = 216 m²
    out, _ = run_sites(rows)
    assert members(out) == {"SXT-1": ["SXT-1", "WP-5", "BG-P1", "BG-P2", "BG-P3"]}


def test_the_issued_id_wins_whatever_the_dates_say():
    """A satellite patch with no date (or a month-only one) still names the record: the derived BG id is used
    only where no issued patch exists; month-only dates order as the first of the month."""
    rows = [piece("P1", SITE[0]), piece("P2", SITE[1]),
            p("WP-9", b(0, 0, 45, 40), "satellite", "2024-2", None)]
    out, _ = run_sites(rows)
    assert list(out["JCBH"]) == ["WP-9"]
    rows = [p("C-1", b(0, 0, 40, 40), "camera", "2024-2", "2024-07-12"),
            p("W-1", b(1, 1, 40, 40), "satellite", "2024-2", "2024-07")]
    out, _ = run_sites(rows)
    assert list(out["JCBH"]) == ["W-1"] and out.iloc[0]["HSX"] == "2024-07"  # 07-01 < 07-12; precision kept


def test_two_patches_of_one_round_do_not_merge_through_a_piece():
    """A large change piece with two patches of one satellite round inside: two changes; the piece goes to the
    patch covering more of it (ratio by the smaller area: both 1.0 → the first in index order)."""
    rows = [piece("P1", b(0, 0, 100, 40)),
            p("A", b(0, 0, 40, 40), "satellite", "2024-1", "2024-04-20"),
            p("B", b(60, 0, 100, 40), "satellite", "2024-1", "2024-04-20")]
    out, _ = run_sites(rows)
    assert members(out) == {"A": ["A", "BG-P1"], "B": ["B"]}


def test_a_re_issue_that_names_its_earlier_patch_joins_it_whatever_the_geometry():
    """Lists often carry the earlier 监测编号 of a 复查 patch (上期监测编号): a round-2 outline drawn so that it only
    touches the round-1 one (no overlap, no shared piece) still joins it; a link cannot join two patches of one
    source and round; a link to an id not in the store changes nothing."""
    rows = [p("WP1-7", b(0, 0, 30, 40), "satellite", "2024-1", "2024-04-20"),
            dict(p("WP2-3", b(30, 0, 60, 40), "satellite", "2024-2", "2024-10-18"), SQJCBH="WP1-7"),
            dict(p("WP2-4", b(100, 0, 130, 40), "satellite", "2024-2", "2024-10-18"), SQJCBH="WP2-3"),
            dict(p("WP2-9", b(200, 0, 230, 40), "satellite", "2024-2", "2024-10-18"), SQJCBH="WP0-1")]
    out, _ = run_sites(rows)
    assert members(out) == {"WP1-7": ["WP1-7", "WP2-3"], "WP2-4": ["WP2-4"], "WP2-9": ["WP2-9"]}

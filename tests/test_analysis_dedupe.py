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

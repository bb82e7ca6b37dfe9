"""Planning conflicts on the hand-made region (tests/analysis_fixtures.py), areas computed by hand.

Extra layers of this file (offsets in metres):
  yjjbnt  Y1 [0,60]×[0,100], Y2 [100,200]×[0,40], Y3 [180,220]×[180,200]
  stbhhx  S1 [260,300]×[0,50], S2 [40,70]×[80,120]
  czkfbj  Z1 [100,200]×[100,200], Z2 [0,50]×[100,200]
  ghfq    G1 "03" 农田保护区 [0,100]×[0,100], G2 "0401" 城镇集中建设区 [100,200]×[100,200]
  parcels Q1 0601 [60,90]×[10,40] supplied 2020-01-01 (built: on 工业 c1b), Q2 0701 [120,150]×[120,150],
          Q4 0601 [90,110]×[50,60] not supplied, Q5 0601 [200,300]×[100,150] supplied 2023-05-01,
          Q6 0601 [0,40]×[10,40] supplied 2021-03-01 (on 旱地), Q7 like Q6 but finished 2022-01-01,
          Q8 [10,20]×[50,60] supplied 2022-12-31, Q9 [20,30]×[50,60] supplied 2023-01-01
  approvals P1 农用地转用 / P2 土地征收 [50,100]×[0,100] (2024), P4 2025 (after survey_date), P5 [200,300]×[100,150],
          P6 供地 [50,100]×[50,100] (2024-06-01)
"""

import dataclasses
import hashlib
import json

import geopandas as gpd
import pandas as pd
import pytest

from analysis.conflicts import KIND_CODES, KINDS, conflict_ids, find_conflicts
from analysis.rules import load_rules
from layers.errors import FieldError
from tests import analysis_fixtures as fx
from tests.analysis_fixtures import b, layer

RULES = load_rules()


def yjjbnt():
    return layer([dict(BSM="Y1", g=b(0, 0, 60, 100)), dict(BSM="Y2", g=b(100, 0, 200, 40)),
                  dict(BSM="Y3", g=b(180, 180, 220, 200))])


def stbhhx():
    return layer([dict(BSM="S1", g=b(260, 0, 300, 50)), dict(BSM="S2", g=b(40, 80, 70, 120))])


def ghfq():
    return layer([dict(BSM="G1", GHFQDM="03", g=b(0, 0, 100, 100)),
                  dict(BSM="G2", GHFQDM="0401", g=b(100, 100, 200, 200))])


def parcels():
    def q(zddm, use, g, gdrq=None, jgrq=None):
        return dict(ZDDM=zddm, TDYT=use, GDRQ=gdrq, JGRQ=jgrq, g=g)

    return layer([
        q("Q1", "0601", b(60, 10, 90, 40), "2020-01-01"),
        q("Q2", "0701", b(120, 120, 150, 150)),
        q("Q4", "0601", b(90, 50, 110, 60)),
        q("Q5", "0601", b(200, 100, 300, 150), "2023-05-01"),
        q("Q6", "0601", b(0, 10, 40, 40), "2021-03-01"),
        q("Q7", "0601", b(0, 60, 40, 90), "2021-03-01", "2022-01-01"),
        q("Q8", "0601", b(10, 50, 20, 60), "2022-12-31"),
        q("Q9", "0601", b(20, 50, 30, 60), "2023-01-01"),
    ])


def approvals():
    extra = layer([dict(PZWH="P6", PZLX="供地", PZRQ="2024-06-01", g=b(50, 50, 100, 100))])
    return gpd.GeoDataFrame(pd.concat([fx.approvals(), extra], ignore_index=True), crs=fx.CRS)


def run(rules=RULES, **overrides):
    layers = dict(dltb=fx.dltb(), yjjbnt=yjjbnt(), stbhhx=stbhhx(), czkfbj=fx.czkfbj(), ghfq=ghfq(),
                  approvals=approvals(), parcels=parcels(), villages=fx.villages()[lambda d: d.XZQJB == "village"])
    layers.update(overrides)
    return find_conflicts(rules=rules, **layers)


@pytest.fixture(scope="module")
def found():
    out, skipped = run()
    assert skipped == {}
    return out


def records(found, kind):
    sub = found[found["kind"] == kind]
    return sorted((json.loads(r.left_ids)[0], json.loads(r.right_ids), round(r.area_m2, 2), r.XZQDM)
                  for r in sub.itertuples())


A, B = "130599100001", "130599100002"  # the two villages of fx.villages(): x < 150 and x > 150
EXPECTED = {
    "yjjbnt_stbhhx": [("Y1", ["S2"], 400.0, A)],                  # [40,60]×[80,100]
    "yjjbnt_czkfbj": [("Y3", ["Z1"], 400.0, B)],                  # [180,200]×[180,200]
    "stbhhx_czkfbj": [("S2", ["Z2"], 200.0, A)],                  # [40,50]×[100,120]
    "construction_in_yjjbnt": [("C-c1b", ["Y1"], 1000.0, fx.V1),  # [50,60]×[0,100]
                               ("C-c2", ["Y2"], 4000.0, fx.V3),   # 0702 [100,200]×[0,40]
                               ("C-c6", ["Y3"], 400.0, fx.V4),    # 0508 [200,220]×[180,200]
                               ("P-c5", ["Y3"], 400.0, fx.V4)],   # 0601 [180,200]×[180,200]
    "construction_in_stbhhx": [("C-c1b", ["S2"], 400.0, fx.V1),   # [50,70]×[80,100]
                               ("C-c4", ["S2"], 600.0, fx.V2)],   # [40,70]×[100,120]
    "yjjbnt_not_cultivated": [("Y1", ["C-c1b"], 1000.0, fx.V1), ("Y2", ["C-c2"], 4000.0, fx.V3),
                              ("Y3", ["C-c6"], 400.0, fx.V4), ("Y3", ["P-c5"], 400.0, fx.V4)],
    # 0702 (c2) is exempt; c5 lies inside Z1; c4 is half inside Z2
    "construction_outside_czkfbj": [("C-c1b", [], 5000.0, fx.V1), ("C-c4", ["Z2"], 5000.0, fx.V2),
                                    ("C-c6", [], 10000.0, fx.V4)],
    # Q1 工业 in 农田保护区 (900 m²); Q4 straddles G1 (100 m² inside) and no zone; Q2 住宅 in 0401 is fine
    "parcel_zone_conflict": [("Q1", ["G1"], 900.0, A), ("Q4", ["G1"], 100.0, A), ("Q6", ["G1"], 1200.0, A),
                             ("Q7", ["G1"], 1200.0, A), ("Q8", ["G1"], 100.0, A), ("Q9", ["G1"], 100.0, A)],
    # P1 / P2 (5000 m²): supplied by Q1 (900) and 供地 P6 (2500) → 1600 unsupplied; P5 fully supplied by Q5;
    # P4 is dated after survey_date
    "approved_unsupplied": [("P1", ["P6", "Q1"], 1600.0, A), ("P2", ["P6", "Q1"], 1600.0, A)],
    # Q6 and Q8 (supplied ≤ 2022-12-31, not finished, on 旱地); Q1 is built (工业), Q7 finished, Q9/Q5 too recent
    "idle_land": [("Q6", ["C-c1a"], 1200.0, A), ("Q8", ["C-c1a"], 100.0, A)],
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_conflict_kind(found, kind):
    assert records(found, kind) == sorted(EXPECTED[kind])
    sub = found[found["kind"] == kind]
    assert (sub["kind_zh"] == KINDS[kind]).all()


def test_every_kind_is_covered_and_layers_named(found):
    assert set(found["kind"]) == set(KINDS)
    layers = found.drop_duplicates("kind").set_index("kind")
    assert layers.loc["construction_in_yjjbnt", "left_layer"] == "dltb"
    assert layers.loc["construction_in_yjjbnt", "right_layer"] == "yjjbnt"
    assert layers.loc["idle_land", "left_layer"] == "parcels"
    assert set(found.loc[found["kind"] == "approved_unsupplied", "right_layer"]) == {"approvals+parcels"}


def test_piece_geometry_matches_area(found):
    from layers.area import ellipsoidal_area

    areas = ellipsoidal_area(found.geometry.values, found.crs)
    assert areas == pytest.approx(found["area_m2"].to_numpy(), abs=0.01)


def test_notes_name_the_facts(found):
    q1 = found[(found["kind"] == "parcel_zone_conflict") & (found["left_ids"] == '["Q1"]')].iloc[0]
    assert "农田保护区" in q1["note"] and "0601" in q1["note"]
    idle = found[(found["kind"] == "idle_land") & (found["left_ids"] == '["Q6"]')].iloc[0]
    assert "2021-03-01" in idle["note"] and "已满 2 年" in idle["note"]


def test_idle_without_the_dltb_check():
    out, _ = run(rules=dataclasses.replace(RULES, idle_check_dltb=False))
    idle = sorted(json.loads(x)[0] for x in out.loc[out["kind"] == "idle_land", "left_ids"])
    assert idle == ["Q1", "Q6", "Q8"]  # Q1 counts once the DLTB is not consulted


def test_min_area_drops_slivers():
    out, _ = run(rules=dataclasses.replace(RULES, conflict_min_area_m2=450.0))
    assert records(out, "yjjbnt_stbhhx") == [] and records(out, "stbhhx_czkfbj") == []
    assert [r[0] for r in records(out, "construction_in_yjjbnt")] == ["C-c1b", "C-c2"]


def test_missing_layers_are_reported_not_guessed():
    out, skipped = run(ghfq=None, parcels=None)
    assert skipped == {"parcel_zone_conflict": "parcels, ghfq", "idle_land": "parcels"}
    # without parcels the 批而未供 check still runs, with 供地 approvals as the only supply
    assert records(out, "approved_unsupplied") == sorted([("P1", ["P6"], 2500.0, A), ("P2", ["P6"], 2500.0, A),
                                                          ("P5", [], 5000.0, B)])


def test_zone_use_table_comes_from_the_rules():
    rules = dataclasses.replace(RULES, zone_use=())
    out, _ = run(rules=rules)
    assert records(out, "parcel_zone_conflict") == []


# --- conflict_id: stable, unique, from the record's content (recipe in analysis/conflicts.py) -------------

ID_PATTERN = r"CF-(YS|YC|SC|CIY|CIS|YNC|COC|PZC|AU|IL)-[0-9a-f]{12}(-[2-9]|-[1-9][0-9]+)?"
INITIALS = {kind: "".join(word[0] for word in kind.split("_")).upper() for kind in KINDS}


def recipe_id(kind, *fields):
    """The documented recipe, computed here without the code under test."""
    return f"CF-{INITIALS[kind]}-" + hashlib.sha256("|".join((kind, *fields)).encode("utf-8")).hexdigest()[:12]


def by_id(found):
    return {r.conflict_id: (r.kind, r.left_ids, r.right_ids, round(r.area_m2, 2)) for r in found.itertuples()}


def test_conflict_ids_are_unique_and_first(found):
    assert list(found.columns[:2]) == ["conflict_id", "kind"]
    assert found["conflict_id"].is_unique and len(found) == sum(len(v) for v in EXPECTED.values())
    assert found["conflict_id"].str.fullmatch(ID_PATTERN).all()
    assert (found["conflict_id"].str.split("-").str[1] == found["kind"].map(INITIALS)).all()


def test_every_kind_has_a_distinct_code_and_unknown_kinds_are_refused(found):
    assert KIND_CODES == INITIALS and len(set(KIND_CODES.values())) == len(KINDS)
    with pytest.raises(FieldError, match="kind 'road_in_river' is not a conflict kind"):
        conflict_ids(found.head(1).assign(kind="road_in_river"))


def test_conflict_id_follows_the_documented_recipe(found):
    one = found[found["kind"] == "yjjbnt_stbhhx"].iloc[0]  # Y1 × S2
    expected = recipe_id("yjjbnt_stbhhx", "yjjbnt", '["Y1"]', "stbhhx", '["S2"]')
    assert one["conflict_id"] == expected == "CF-YS-ecaddfcd6b67"  # ids once issued never change
    # a kind of one record per left feature is named by that feature only (not by the land supplied on it)
    p1 = found[(found["kind"] == "approved_unsupplied") & (found["left_ids"] == '["P1"]')].iloc[0]
    assert p1["conflict_id"] == recipe_id("approved_unsupplied", "approvals", '["P1"]')
    for r in found.itertuples():
        fields = (r.left_layer, r.left_ids) if r.kind in ("construction_outside_czkfbj", "approved_unsupplied",
                                                          "idle_land") else \
            (r.left_layer, r.left_ids, r.right_layer, r.right_ids)
        assert r.conflict_id == recipe_id(r.kind, *fields)


def test_conflict_ids_do_not_depend_on_row_order_or_threads(found):
    reversed_layers = {name: gdf.iloc[::-1].reset_index(drop=True) for name, gdf in dict(
        dltb=fx.dltb(), yjjbnt=yjjbnt(), stbhhx=stbhhx(), czkfbj=fx.czkfbj(), ghfq=ghfq(), approvals=approvals(),
        parcels=parcels(), villages=fx.villages()[lambda d: d.XZQJB == "village"]).items()}
    again, _ = find_conflicts(rules=RULES, workers=1, **reversed_layers)
    assert by_id(again) == by_id(found)


def test_an_id_repeated_in_a_source_layer_is_told_apart_by_area():
    # one 批准文号 on two polygons: P1 [50,100]×[0,100] (1600 m² unsupplied) and a 400 m² [300,320]×[200,220]
    extra = layer([dict(PZWH="P1", PZLX="农用地转用", PZRQ="2024-05-01", g=b(300, 200, 320, 220))])
    with_twin = gpd.GeoDataFrame(pd.concat([approvals(), extra], ignore_index=True), crs=fx.CRS)
    out, _ = run(approvals=with_twin)
    twins = out[(out["kind"] == "approved_unsupplied") & (out["left_ids"] == '["P1"]')]
    base = recipe_id("approved_unsupplied", "approvals", '["P1"]')
    got = dict(zip(twins["conflict_id"], twins["area_m2"].round(2)))
    assert got == {base: 1600.0, base + "-2": 400.0}
    assert out["conflict_id"].is_unique
    # the same names when the twin comes first
    flipped, _ = run(approvals=gpd.GeoDataFrame(pd.concat([extra, approvals()], ignore_index=True), crs=fx.CRS))
    assert by_id(flipped) == by_id(out)


def test_overlapping_polygons_of_one_control_line_count_once():
    """CZKFBJ drawn twice over 20 m × 40 m (Z3 [160,210]×[0,40] over Y2's east end, Z4 [190,230]×[0,40]): the
    YJJBNT × CZKFBJ overlap is [160,200]×[0,40] = 1600 m² once, not 1600 + 800; the part under both CZKFBJ is
    one piece naming both."""
    cz = layer([dict(BSM="Z3", g=b(160, 0, 210, 40)), dict(BSM="Z4", g=b(190, 0, 230, 40))])
    out, _ = find_conflicts(rules=RULES, yjjbnt=yjjbnt(), czkfbj=cz)
    yc = out[out["kind"] == "yjjbnt_czkfbj"].sort_values("area_m2")
    assert yc["area_m2"].sum() == pytest.approx(1600, abs=0.01)
    got = sorted((json.loads(l_), json.loads(r_), round(a, 2)) for l_, r_, a in
                 zip(yc["left_ids"], yc["right_ids"], yc["area_m2"]))
    assert got == [(["Y2"], ["Z3"], 1200.0), (["Y2"], ["Z3", "Z4"], 400.0)]
    assert len(set(yc["conflict_id"])) == 2


def test_overlapping_yjjbnt_counts_once_in_the_farmland_indicators():
    from analysis.indicators import compute_indicators, parse_registry
    from tests import indicators_fixtures as ifx

    layers = ifx.layers()
    yj = layers["yjjbnt"]
    doubled = pd.concat([yj, yj.iloc[[0]].assign(BSM="YJ1-copy")], ignore_index=True)  # YJ1 drawn twice
    doubled = gpd.GeoDataFrame(doubled, geometry="geometry", crs=yj.crs)
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parent.parent / "analysis" / "indicators.yaml"
    registry = parse_registry(yaml.safe_load(path.read_text(encoding="utf-8")))
    base = compute_indicators(layers, registry).values
    twice = compute_indicators(dict(layers, yjjbnt=doubled), registry).values

    def total(values, code):
        v = values[(values["indicator"] == code) & (values["level"] == "county")]
        return float(v["value"].iloc[0])

    for code in ("basic_farmland_area", "basic_farmland_cultivated_area", "basic_farmland_protection_rate"):
        assert total(twice, code) == pytest.approx(total(base, code), abs=1e-6), code

"""Indicators of the hand-made county equal values computed a second, independent way.

The independent way: plain loops over the fixture's rows, shapely intersections measured with pyproj.Geod on
the CGCS2000 ellipsoid (not layers.area), and the counting rules spelled out per patch.
"""

from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
import yaml
from pyproj import Transformer

from analysis.indicators import BUILTINS, Expression, compute_indicators, parse_registry, wide_table
from layers.errors import CodeSetError, FieldError, RuleError
from services.jobs.indicators import BUILTIN_REGISTRY
from tests import indicators_fixtures as fx

GEOD = pyproj.Geod(a=6378137.0, rf=298.257222101)
TO_LONLAT = Transformer.from_crs(fx.EPSG, 4490, always_xy=True)
CULTIVATED = {"0101", "0102", "0103"}
CONSTRUCTION = {"05H1", "0508", "0601", "0602", "0603", "0701", "0702", "08H1", "08H2", "0809", "0810", "09",
                "1001", "1002", "1003", "1004", "1005", "1007", "1008", "1009", "1109", "1201"}
UNUSED = {"0404", "1101", "1102", "1105", "1106", "1108", "1110", "1204", "1205", "1206", "1207"}


def geod_area(geom) -> float:
    total = 0.0
    for poly in shapely.get_parts(shapely.segmentize(geom, 10.0)):
        if poly.is_empty or poly.area == 0:
            continue
        lon, lat = TO_LONLAT.transform(*np.asarray(poly.exterior.coords).T)
        total += abs(GEOD.polygon_area_perimeter(lon, lat)[0])
    return total


@pytest.fixture(scope="module")
def registry_doc():
    return yaml.safe_load(BUILTIN_REGISTRY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def registry(registry_doc):
    return parse_registry(registry_doc)


@pytest.fixture(scope="module")
def layers():
    return fx.layers()


@pytest.fixture(scope="module", params=["whole", "partitions"])
def result(request, layers, registry, tmp_path_factory):
    """The county computed whole, and in spatial partitions of its two 乡镇 (read back from a GeoPackage
    store, services/jobs/partitions.py): every expectation below holds for both."""
    if request.param == "whole":
        return compute_indicators(layers, registry)
    url = fx.write_store(tmp_path_factory.mktemp("partitions") / "store.gpkg", layers)
    plan, res = fx.partitioned(url, rows_per_partition=8)
    assert [p.townships for p in plan] == [(fx.T1,), (fx.T2,)] or [p.townships for p in plan] == [(fx.T2,), (fx.T1,)]
    return res


def value(result, code, unit):
    v = result.values
    row = v[(v["indicator"] == code) & (v["unit_code"] == unit)]
    assert len(row) == 1, (code, unit)
    return row.iloc[0]


def per_village(layers, fn):
    """Independent per-village sums: fn(row) → value or None, over dltb rows, village = ZLDWDM[:12]."""
    out = {code: Decimal(0) for code in fx.V.values()}
    for _, r in layers["dltb"].iterrows():
        v = fn(r)
        if v is not None:
            out[r["ZLDWDM"][:12]] += v
    return out


def tbdlmj(r) -> Decimal:
    tbmj = Decimal(repr(float(r["area_m2"]))).quantize(Decimal("0.01"), ROUND_HALF_UP)
    kcmj = (tbmj * Decimal(repr(float(r["KCXS"])))).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return tbmj - kcmj


def kcmj(r) -> Decimal:
    tbmj = Decimal(repr(float(r["area_m2"]))).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return (tbmj * Decimal(repr(float(r["KCXS"])))).quantize(Decimal("0.01"), ROUND_HALF_UP)


@pytest.mark.parametrize("code,select", [
    ("cultivated_area", lambda r: tbdlmj(r) if r["DLBM"] in CULTIVATED else None),
    ("construction_area", lambda r: tbdlmj(r) if r["DLBM"] in CONSTRUCTION else None),
    ("unused_area", lambda r: tbdlmj(r) if r["DLBM"] in UNUSED else None),
    ("agricultural_area", lambda r: kcmj(r) + (tbdlmj(r) if r["DLBM"] not in CONSTRUCTION | UNUSED
                                               else Decimal(0))),
    ("total_area", lambda r: Decimal(repr(float(r["area_m2"]))).quantize(Decimal("0.01"), ROUND_HALF_UP)),
])
def test_dltb_areas_equal_an_independent_sum(result, layers, code, select):
    expected = per_village(layers, select)
    for village, exp in expected.items():
        assert value(result, code, village)["value"] == pytest.approx(float(exp), abs=1e-6)
    township = {t: sum(v for k, v in expected.items() if k.startswith(t)) for t in (fx.T1, fx.T2)}
    for t, exp in township.items():
        assert value(result, code, t)["value"] == pytest.approx(float(exp), abs=1e-6)
    assert value(result, code, fx.COUNTY)["value"] == pytest.approx(float(sum(expected.values())), abs=1e-6)


def test_reported_tbmj_is_not_used(result):
    # the fixture's exported TBMJ is 1.0 for every patch; the recomputed areas are ~5000 m² per patch
    assert value(result, "total_area", fx.COUNTY)["value"] == pytest.approx(80_000, rel=1e-4)


def test_three_categories_add_up_to_the_total(result):
    for unit in [fx.COUNTY, fx.T1, fx.T2, *fx.V.values()]:
        parts = sum(value(result, c, unit)["value"] for c in ("agricultural_area", "construction_area",
                                                               "unused_area", "unknown_code_area"))
        assert parts == pytest.approx(value(result, "total_area", unit)["value"], abs=1e-6)


def test_basic_farmland_by_geodesic_intersection(result, layers):
    dltb, yj = layers["dltb"], layers["yjjbnt"]
    total = {v: 0.0 for v in fx.V.values()}
    cult = {v: 0.0 for v in fx.V.values()}
    for _, y in yj.iterrows():
        for _, t in dltb.iterrows():
            piece = y.geometry.intersection(t.geometry)
            if piece.area <= 0:
                continue
            a = geod_area(piece)
            total[t["ZLDWDM"][:12]] += a
            if t["DLBM"] in CULTIVATED:
                cult[t["ZLDWDM"][:12]] += a
    for village in fx.V.values():
        assert value(result, "basic_farmland_area", village)["value"] == pytest.approx(total[village], abs=0.01)
        assert value(result, "basic_farmland_cultivated_area", village)["value"] == pytest.approx(
            cult[village], abs=0.01)
    rate = value(result, "basic_farmland_protection_rate", fx.COUNTY)["value"]
    assert rate == pytest.approx(100 * sum(cult.values()) / sum(total.values()), abs=1e-6)
    assert value(result, "basic_farmland_protection_rate", fx.COUNTY)["value_rounded"] == 70.0  # 17 500 / 25 000
    assert np.isnan(value(result, "basic_farmland_protection_rate", fx.V["C"])["value"])  # no YJJBNT: 0 / 0


def test_new_construction_by_geodesic_intersection(result, layers):
    prev, cur = layers["dltb_prev"], layers["dltb"]
    new = {v: 0.0 for v in fx.V.values()}
    new_cult = {v: 0.0 for v in fx.V.values()}
    for _, p in prev.iterrows():
        for _, c in cur.iterrows():
            piece = p.geometry.intersection(c.geometry)
            if piece.area <= 0 or c["DLBM"] not in CONSTRUCTION:
                continue
            a = geod_area(piece)
            if p["DLBM"] not in CONSTRUCTION:
                new[c["ZLDWDM"][:12]] += a * (1 - c["KCXS"])
            if p["DLBM"] in CULTIVATED:
                new_cult[c["ZLDWDM"][:12]] += a * (1 - p["KCXS"])
    for village in fx.V.values():
        assert value(result, "new_construction_area", village)["value"] == pytest.approx(new[village], abs=0.01)
        assert value(result, "new_construction_cultivated_area", village)["value"] == pytest.approx(
            new_cult[village], abs=0.01)
    # A: 0103 → 0702 on 5000 m² (KCXS 0.06 before); C: 0101 → 0601 on 5000 m² (KCXS 0.09 before)
    assert new_cult[fx.V["A"]] == pytest.approx(4700, rel=1e-4)
    assert new_cult[fx.V["C"]] == pytest.approx(4550, rel=1e-4)
    ids = value(result, "new_construction_area", fx.V["A"])["record_ids"]
    assert ids == {"dltb": [3], "dltb_prev": [2]}  # the 0702 patch now, the 0103 patch before


def is_illegal(row) -> bool:
    """The default basis (judgement_else_verdict), spelled out: 未批先建 and 少批多占 count until checked."""
    if row["status"] == "待核查":
        return row["verdict"] in ("suspected_illegal", "partly_approved")
    if isinstance(row["judgement"], str) and row["judgement"]:
        return row["judgement"] == "违法"
    return row["status"] in ("立案", "整改中", "已整改")


def illegal_part(row, area_col: str, unapproved_col: str) -> float:
    """The illegal part of an illegal record: its unapproved part for 未批先建 / 少批多占, the whole otherwise."""
    if row["verdict"] in ("suspected_illegal", "partly_approved"):
        return row[unapproved_col]
    return row[area_col]


def test_patch_counts_and_areas(result, layers):
    patches = layers["flagged_patches"]
    for village in fx.V.values():
        mine = patches[patches["XZQDM"] == village]
        illegal = mine[[is_illegal(r) for _, r in mine.iterrows()]]
        issued = mine[~mine["JCBH"].str.startswith("BG-")]  # the fixture's survey-only change is BG-8
        checked = issued[issued["status"] != "待核查"]
        assert value(result, "patches_issued", village)["value"] == len(issued)
        assert value(result, "patches_checked", village)["value"] == len(checked)
        assert value(result, "illegal_count", village)["value"] == len(illegal)
        want_area = sum(illegal_part(r, "area_m2", "area_unapproved") for _, r in illegal.iterrows())
        want_cult = sum(illegal_part(r, "area_cultivated", "area_cultivated_unapproved") for _, r in illegal.iterrows())
        assert value(result, "illegal_area", village)["value"] == pytest.approx(want_area, abs=1e-9)
        assert value(result, "illegal_cultivated_area", village)["value"] == pytest.approx(want_cult, abs=1e-9)
        ids = value(result, "illegal_count", village)["record_ids"]
        assert ids.get("flagged_patches", []) == sorted(illegal["JCBH"])
    # WP1 (待核查, 未批先建), WP3 (立案), WP4 (judged 违法), WP7 (待核查, 少批多占), BG-8 (立案, found only by the
    # survey: illegal all the same); WP6 judged 合法 on site
    assert value(result, "illegal_count", fx.COUNTY)["value"] == 5
    # by hand: WP1 100 × 50 unapproved whole; WP3 100 × 50 whole; WP4 20 × 20 × 0.4; WP7 40 × 30 × 0.3; BG-8
    # 30 × 30 (planar boxes: the ellipsoidal areas are within 0.2 % of these at the fixture's place)
    assert value(result, "illegal_area", fx.COUNTY)["value"] == pytest.approx(5000 + 5000 + 160 + 360 + 900,
                                                                              rel=3e-3)
    # 7 issued records, 5 past 待核查 (WP2 WP3 WP4 WP5 WP6); BG-8 is checked but was never issued
    assert value(result, "patches_issued", fx.COUNTY)["value"] == 7
    assert value(result, "survey_rate", fx.COUNTY)["value"] == pytest.approx(500 / 7)
    assert value(result, "survey_rate", fx.V["A"])["value"] == 50.0


def test_records_without_n_issued_are_refused_with_the_remedy(layers, registry):
    """A flagged_patches layer written before n_issued existed cannot tell issued patches from survey-only
    changes: 下发图斑数 would be wrong, so the run stops and says how to fix the store."""
    old = dict(layers, flagged_patches=layers["flagged_patches"].drop(columns="n_issued"))
    with pytest.raises(FieldError, match=r"flagged_patches has no n_issued column .*re-run yzt analyse "
                                         r"\(statuses and judgements are kept\)"):
        compute_indicators(old, registry)


def test_illegal_cultivated_ratio_and_its_warnings(result, layers):
    patches = layers["flagged_patches"]
    v = value(result, "illegal_cultivated_ratio", fx.COUNTY)
    illegal = value(result, "illegal_cultivated_area", fx.COUNTY)["value"]
    base = value(result, "change_cultivated_area", fx.COUNTY)["value"]
    # the denominator: 耕地 of the records pre-judged legal / 少批多占 / 未批先建, or counted illegal
    in_base = patches["verdict"].isin(["legal", "partly_approved", "suspected_illegal"]) | \
        pd.Series([is_illegal(r) for _, r in patches.iterrows()], index=patches.index)
    assert base == pytest.approx(patches.loc[in_base, "area_cultivated"].sum(), abs=1e-9)
    assert v["value"] == pytest.approx(100 * illegal / base)
    w = result.warnings
    county = w[(w["indicator"] == "illegal_cultivated_ratio") & (w["unit_code"] == fx.COUNTY)]
    assert sorted(county["severity"]) == ["critical", "warning"]
    # D holds only an 'other' record: no denominator, no ratio (not 0, not infinity), hence no warning
    assert np.isnan(value(result, "illegal_cultivated_ratio", fx.V["D"])["value"])
    # B's only record (WP6) was judged 合法 on site: it is in the denominator, not in the numerator
    assert value(result, "illegal_cultivated_ratio", fx.V["B"])["value"] == 0.0
    assert set(w.loc[w["indicator"] == "illegal_cultivated_ratio", "unit_code"]) == {fx.COUNTY, fx.T1, fx.T2,
                                                                                     fx.V["A"], fx.V["C"]}


def test_illegal_cultivated_ratio_never_exceeds_100_percent(result):
    """The numerator is a part of the denominator record by record, so no unit can exceed 100 % (the issue saw
    102.75 % when the two came from different geometries)."""
    values = result.values[result.values["indicator"] == "illegal_cultivated_ratio"]["value"].dropna()
    assert len(values) >= 5 and (values <= 100 + 1e-9).all()


def test_conflicts_supply_and_idle(result, layers):
    pc = layers["planning_conflicts"]
    three = pc[pc["kind"].isin(["yjjbnt_stbhhx", "yjjbnt_czkfbj", "stbhhx_czkfbj"])]
    assert value(result, "three_line_conflict_area", fx.COUNTY)["value"] == pytest.approx(three["area_m2"].sum())
    assert value(result, "three_line_conflict_area", fx.V["D"])["value"] == pytest.approx(
        three.loc[three["XZQDM"] == fx.V["D"], "area_m2"].sum())
    assert value(result, "approved_unsupplied_area", fx.V["C"])["value"] == pytest.approx(600, rel=1e-4)
    assert value(result, "idle_land_area", fx.V["B"])["value"] == pytest.approx(1600, rel=1e-4)
    # construction_in_yjjbnt is a conflict, but not a mutual overlap of the three lines
    assert value(result, "three_line_conflict_area", fx.V["A"])["value"] == pytest.approx(100, rel=1e-4)


@pytest.mark.parametrize("code", ["cultivated_area", "basic_farmland_area", "new_construction_area",
                                  "illegal_area", "three_line_conflict_area", "total_area"])
@pytest.mark.parametrize("column,decimals", [("value_m2", 2), ("value_ha", 4), ("value_mu", 2)])
def test_rollups_balance_at_every_level(result, code, column, decimals):
    v = result.values[result.values["indicator"] == code].set_index("unit_code")

    def units(x):
        return int(round(x * 10 ** decimals))

    for parent, kids in ((fx.COUNTY, [fx.T1, fx.T2]), (fx.T1, [fx.V["A"], fx.V["B"]]),
                         (fx.T2, [fx.V["C"], fx.V["D"]])):
        assert sum(units(v.loc[k, column]) for k in kids) == units(v.loc[parent, column])
    for _, row in v.iterrows():
        factor = {"value_m2": 1, "value_ha": 1e-4, "value_mu": 3 / 2000}[column]
        assert abs(row[column] - row["value"] * factor) < 10 ** -decimals


def test_drill_down_ids(result, layers):
    dltb = layers["dltb"]
    expected = sorted(dltb.loc[dltb["DLBM"].isin(CULTIVATED) & dltb["ZLDWDM"].str.startswith(fx.V["A"]),
                               "yzt_fid"])
    assert value(result, "cultivated_area", fx.V["A"])["record_ids"] == {"dltb": expected}
    county = value(result, "cultivated_area", fx.COUNTY)["record_ids"]["dltb"]
    assert county == sorted(dltb.loc[dltb["DLBM"].isin(CULTIVATED), "yzt_fid"])
    # a ratio carries the ids of what it is made of
    ratio = value(result, "survey_rate", fx.COUNTY)["record_ids"]
    issued = layers["flagged_patches"]["JCBH"][~layers["flagged_patches"]["JCBH"].str.startswith("BG-")]
    assert ratio == {"flagged_patches": sorted(issued)}  # the issued records: BG-8 was never 下发


THREE_LINES = ["yjjbnt_stbhhx", "yjjbnt_czkfbj", "stbhhx_czkfbj"]


def test_conflicts_are_drilled_down_by_conflict_id(result, layers):
    pc = layers["planning_conflicts"]
    assert result.id_fields["planning_conflicts"] == "conflict_id"
    assert not [n for n in result.notes if n.startswith("planning_conflicts")]
    three = pc[pc["kind"].isin(THREE_LINES)]
    assert value(result, "three_line_conflict_area", fx.COUNTY)["record_ids"] == {
        "planning_conflicts": sorted(three["conflict_id"])}
    d = pc.loc[(pc["kind"] == "stbhhx_czkfbj"), "conflict_id"].tolist()
    assert value(result, "three_line_conflict_area", fx.V["D"])["record_ids"] == {"planning_conflicts": d}
    assert d[0].startswith("CF-SC-")
    idle = pc.loc[pc["kind"] == "idle_land", "conflict_id"].tolist()
    assert value(result, "idle_land_area", fx.V["B"])["record_ids"] == {"planning_conflicts": idle}


@pytest.mark.parametrize("damage", ["missing", "duplicated"])
def test_conflicts_without_usable_conflict_id_fall_back_to_row_numbers(layers, registry, damage):
    pc = layers["planning_conflicts"]  # as a store analysed before conflict_id existed, or a hand-edited one
    pc = pc.drop(columns="conflict_id") if damage == "missing" else pc.assign(conflict_id="CF-YC-000000000000")
    res = compute_indicators(dict(layers, planning_conflicts=pc), registry)
    assert res.id_fields["planning_conflicts"] == "row"
    rows = [i + 1 for i, k in enumerate(pc["kind"]) if k in THREE_LINES]
    assert value(res, "three_line_conflict_area", fx.COUNTY)["record_ids"] == {"planning_conflicts": rows}
    assert "planning_conflicts: no unique 'conflict_id' column; record ids are 1-based row numbers" in res.notes


def test_wide_table_orders_units_and_indicators(result):
    table = wide_table(result.values, "township", "ha")
    assert list(table["unit_code"]) == [fx.T1, fx.T2]
    assert list(table.columns[:3]) == ["unit_code", "unit_name", "level"]
    assert table.loc[0, "cultivated_area"] == value(result, "cultivated_area", fx.T1)["value_ha"]


# --- registry: data, extendable, safe -------------------------------------------------------------------

def test_bureau_extension_without_code(layers, registry_doc):
    ext = {
        "extends": "builtin",
        "disable": ["idle_land_area"],
        "code_sets": {"forest": ["0301", "0302", "0305", "0307"]},
        "params": {"forest_target": {"value": 10000.0}},
        "indicators": [
            {"code": "forest_area", "name": "林地面积", "rule": "林地图斑地类面积之和", "unit": "m2",
             "measure": {"layer": "dltb", "sum": "TBDLMJ", "where": "DLBM in forest"}},
            {"code": "forest_rate", "name": "林地目标完成率", "rule": "林地面积 ÷ 目标", "unit": "percent",
             "formula": "100 * forest_area / forest_target"},
            {"code": "big_patches", "name": "大图斑数", "rule": "面积 ≥ 4000 m² 的违法图斑", "unit": "count",
             "measure": {"layer": "flagged_patches", "count": True,
                         "where": "illegal and area_m2 >= 4000 and not prefix(JCBH, 'X')"}},
        ],
    }
    reg = parse_registry(ext, base=registry_doc)
    assert "idle_land_area" not in reg.indicators
    res = compute_indicators(layers, reg)
    forest = value(res, "forest_area", fx.V["B"])["value"]
    expected = per_village(layers, lambda r: tbdlmj(r) if r["DLBM"] == "0301" else None)[fx.V["B"]]
    assert forest == pytest.approx(float(expected), abs=1e-6)
    assert value(res, "forest_rate", fx.V["B"])["value"] == pytest.approx(forest / 100)
    assert value(res, "big_patches", fx.COUNTY)["value"] == 2  # WP1 and WP3 (5000 m² each; WP4 is 400 m²)


def test_split_attribution_shares_an_area_between_villages(layers, registry_doc):
    ext = {"extends": "builtin", "indicators": [
        {"code": "yj_split", "name": "永农 (按村拆分)", "rule": "按村界拆分", "unit": "m2",
         "measure": {"layer": "yjjbnt", "sum": "area_m2", "attribute": "split"}}]}
    res = compute_indicators(layers, parse_registry(ext, base=registry_doc))
    # YJ2 (100..300 × 150..200) lies half in B, half in D
    assert value(res, "yj_split", fx.V["B"])["value"] == pytest.approx(5000, rel=1e-4)
    assert value(res, "yj_split", fx.V["D"])["value"] == pytest.approx(5000, rel=1e-4)
    assert value(res, "yj_split", fx.COUNTY)["value"] == pytest.approx(layers["yjjbnt"]["area_m2"].sum(), abs=0.02)


@pytest.mark.parametrize("text", ["__import__('os').system('x')", "DLBM.startswith('01')", "[c for c in DLBM]",
                                  "lambda: 1", "DLBM[0]", "open('f')", "2 ** 10"])
def test_expressions_refuse_anything_but_the_small_language(text):
    with pytest.raises(RuleError, match="not allowed"):
        Expression(text, "t")


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["indicators"].append({"code": "x", "name": "x", "rule": "r", "formula": "y + 1"}), "unknown name"),
    (lambda d: d["indicators"].extend([{"code": "x", "name": "x", "rule": "r", "formula": "y + 1"},
                                       {"code": "y", "name": "y", "rule": "r", "formula": "x + 1"}]), "cycle"),
    (lambda d: d["indicators"].append({"code": "x", "name": "x", "formula": "1"}), "rule"),
    (lambda d: d["indicators"].append({"code": "x", "name": "x", "rule": "r", "builtin": "magic"}), "builtin"),
    (lambda d: d["indicators"].append(dict(d["indicators"][0])), "twice"),
    (lambda d: d["options"].update(illegal_basis="gut feeling"), "illegal_basis"),
    (lambda d: d.update(colour="red"), "unknown top-level"),
    (lambda d: d["indicators"].append({"code": "x", "name": "x", "rule": "r", "unit": "count",
                                       "measure": {"layer": "dltb", "count": True, "attribute": "split"}}), "split"),
])
def test_bad_registries_are_refused(registry_doc, mutate, message):
    import copy

    doc = copy.deepcopy(registry_doc)
    mutate(doc)
    with pytest.raises(RuleError, match=message):
        parse_registry(doc)


def test_unknown_column_names_the_layer_columns(layers, registry_doc):
    ext = {"extends": "builtin", "indicators": [
        {"code": "x", "name": "x", "rule": "r", "measure": {"layer": "dltb", "sum": "NOPE"}}]}
    with pytest.raises(RuleError, match="'NOPE' is neither a column of layer 'dltb'"):
        compute_indicators(layers, parse_registry(ext, base=registry_doc))


def test_builtins_declare_their_sources(registry):
    for ind in registry.indicators.values():
        if ind.kind == "builtin":
            assert ind.sources == BUILTINS[ind.builtin][0]


# --- options and data problems ----------------------------------------------------------------------------

def test_illegal_basis_is_an_option(layers, registry_doc):
    import copy

    doc = copy.deepcopy(registry_doc)
    doc["options"]["illegal_basis"] = "verdict"
    res = compute_indicators(layers, parse_registry(doc))
    # pre-judgement only: BG-8, WP1, WP3, WP6 are 未批先建, WP4 and WP7 少批多占
    assert value(res, "illegal_count", fx.COUNTY)["record_ids"] == {"flagged_patches": ["BG-8", "WP1", "WP3", "WP4",
                                                                                        "WP6", "WP7"]}
    doc["options"]["illegal_basis"] = "judgement"
    res = compute_indicators(layers, parse_registry(doc))
    assert value(res, "illegal_count", fx.COUNTY)["record_ids"] == {"flagged_patches": ["BG-8", "WP3", "WP4"]}


def test_checked_patches_without_a_judgement_column_are_refused(layers, registry):
    broken = dict(layers, flagged_patches=layers["flagged_patches"].drop(columns="judgement"))
    with pytest.raises(FieldError, match="judgement"):
        compute_indicators(broken, registry)


def test_missing_layers_skip_their_indicators(layers, registry):
    res = compute_indicators({k: v for k, v in layers.items() if k not in ("dltb_prev", "planning_conflicts")},
                             registry)
    assert "new_construction_area" in res.skipped and "three_line_conflict_area" in res.skipped
    assert "new_construction_cultivated_area" in res.skipped  # the survey's own figure needs dltb_prev
    assert "cultivated_area" not in res.skipped
    assert "new_construction_area" not in set(res.values["indicator"])


def test_erdiao_codes_are_refused(layers, registry):
    dltb = layers["dltb"].copy()
    dltb["DLBM"] = ["011", "012", "013", "021"] * 4
    with pytest.raises(CodeSetError, match="二调"):
        compute_indicators(dict(layers, dltb=dltb), registry)


def test_a_village_missing_from_xzq_still_reconciles(layers, registry):
    xzq = layers["xzq"]
    res = compute_indicators(dict(layers, xzq=xzq[xzq["XZQDM"] != fx.V["D"]]), registry)
    d = value(res, "cultivated_area", fx.V["D"])
    assert "不在行政区图层中" in d["unit_name"] and d["value"] > 0
    total = sum(value(res, "cultivated_area", v)["value"] for v in fx.V.values())
    assert value(res, "cultivated_area", fx.COUNTY)["value"] == pytest.approx(total)


def test_records_without_village_code_go_to_the_largest_share(layers, registry):
    pc = layers["planning_conflicts"].copy()
    pc["XZQDM"] = None  # attribution by geometry: box(300..320, 150..170) lies in D
    res = compute_indicators(dict(layers, planning_conflicts=pc), registry)
    assert value(res, "three_line_conflict_area", fx.V["D"])["value"] == pytest.approx(400, rel=1e-4)
    assert value(res, "three_line_conflict_area", fx.V["A"])["value"] == pytest.approx(100, rel=1e-4)


def test_duplicate_patch_is_counted_once_and_unknown_codes_are_shown(layers, registry):
    dltb = layers["dltb"]
    dup = dltb.iloc[[0]].assign(BSM="A0-copy", yzt_fid=len(dltb) + 1)  # 0101 patch of A exported twice
    odd = dltb.index[dltb["BSM"] == "B1"]  # 1203 → an unknown code
    broken = pd.concat([dltb, dup], ignore_index=True)
    broken.loc[odd, "DLBM"] = "1199"
    res = compute_indicators(dict(layers, dltb=broken), registry)
    base = compute_indicators(layers, registry)
    assert value(res, "cultivated_area", fx.COUNTY)["value"] == value(base, "cultivated_area", fx.COUNTY)["value"]
    assert value(res, "cultivated_area", fx.COUNTY)["record_ids"]["dltb"] == sorted(
        dltb.loc[dltb["DLBM"].isin(CULTIVATED), "yzt_fid"])
    b1 = float(tbdlmj(dltb.loc[odd[0]]))
    assert value(res, "unknown_code_area", fx.V["B"])["value"] == pytest.approx(b1)
    assert value(res, "agricultural_area", fx.V["B"])["value"] == pytest.approx(
        value(base, "agricultural_area", fx.V["B"])["value"] - b1)
    assert any("A0-copy" in n for n in res.notes) and any("1199" in n for n in res.notes)
    w = res.warnings
    assert set(w.loc[w["indicator"] == "unknown_code_area", "unit_code"]) == {fx.COUNTY, fx.T1, fx.V["B"]}


def test_conflicting_duplicates_are_refused(layers, registry):
    dltb = layers["dltb"]
    dup = dltb.iloc[[0]].assign(BSM="A0-copy", DLBM="0702")
    with pytest.raises(FieldError, match="same geometry but different DLBM"):
        compute_indicators(dict(layers, dltb=pd.concat([dltb, dup], ignore_index=True)), registry)


@pytest.mark.parametrize("recoded", [("dltb",), ("dltb", "dltb_prev")])
def test_a_ydyh_coded_survey_gives_the_same_indicators(layers, registry, result, recoded):
    """The 2024 survey (and the 2023 one) written in 用地用海 through the crosswalk's reverse and read back with the
    recorded code set: every indicator of every unit equals the 三调 run's."""
    from layers.codes import from_sandiao

    twin = dict(layers)
    for name in recoded:
        gdf = layers[name].copy()
        gdf["DLBM"] = from_sandiao(gdf["DLBM"].to_numpy(dtype=object))
        twin[name] = gdf
    assert (twin["dltb"]["DLBM"] != layers["dltb"]["DLBM"]).any()  # the twin really is coded otherwise
    res = compute_indicators(twin, registry, code_sets={n: "ydyh" for n in recoded})
    a = result.values.set_index(["indicator", "unit_code"])["value"]
    b = res.values.set_index(["indicator", "unit_code"])["value"]
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())


def test_id_lists_packed_path_equals_the_sets_and_a_hand_count():
    """_id_lists' numpy path (integer ids) against its Python-set path (the same ids as objects) on random
    rows — units in the same order, the same sorted lists — and a small case counted by hand."""
    from analysis.indicators.compute import _id_lists

    rng = np.random.default_rng(5)
    n = 5000
    villages = ["130571101001", "130571101002", "130571102001", "130571102", "", "13057110100X", "130572201003"]
    ids = pd.DataFrame({"village": rng.choice(villages, n), "layer": rng.choice(["dltb", "yjjbnt", "ghfq"], n),
                        "rid": rng.integers(0, 900, n)})
    packed = _id_lists(ids)
    by_sets = _id_lists(ids.assign(rid=ids["rid"].astype(object)))
    assert list(packed) == list(by_sets)
    assert all(list(packed[u]) == list(by_sets[u]) and packed[u] == by_sets[u] for u in packed)
    small = pd.DataFrame({"village": ["130571101001", "130571101002", "130571101002", "130571102001", "130571102"],
                          "layer": ["dltb", "dltb", "dltb", "dltb", "dltb"], "rid": [7, 3, 7, 5, 9]})
    assert _id_lists(small) == {"130571": {"dltb": [3, 5, 7]}, "130571101": {"dltb": [3, 7]},
                                "130571101001": {"dltb": [7]}, "130571101002": {"dltb": [3, 7]},
                                "130571102": {"dltb": [5, 9]}, "130571102001": {"dltb": [5]}}
    assert list(_id_lists(small)) == ["130571", "130571101", "130571101001", "130571101002", "130571102",
                                      "130571102001"]

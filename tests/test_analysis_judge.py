"""Pre-judgement of monitoring patches: each verdict, each area, on the hand-made region of analysis_fixtures.

All expected areas are computed by hand from the boxes (see tests/analysis_fixtures.py).
"""

import dataclasses
import json

import numpy as np
import pytest
import yaml

from analysis.judge import judge_patches
from analysis.records import carry_over_status, round_areas
from analysis.rules import DEFAULT_RULES_PATH, load_rules, rules_from_dict
from layers.errors import CRSError, FieldError, RuleError
from tests import analysis_fixtures as fx

RULES = load_rules()


def judge(patches=None, rules=RULES, **overrides):
    layers = dict(dltb=fx.dltb(), dltb_prev=fx.dltb_prev(), approvals=fx.approvals(), yjjbnt=fx.yjjbnt(),
                  stbhhx=fx.stbhhx(), czkfbj=fx.czkfbj())
    layers.update(overrides)
    out = judge_patches(fx.monitoring() if patches is None else patches, rules=rules, **layers)
    return out.set_index("JCBH", drop=False)


# JCBH → verdict, the areas (m²) and the ids expected. Areas not listed are 0.
CASES = {
    "M1": dict(verdict="legal", area_m2=4000, area_cultivated=3600, area_tiankan=400, area_yjjbnt=800,
               area_outside_czkfbj=4000, area_approved=4000, approved_share=1.0, approval_ids=["P1", "P2"],
               XZQDM=fx.V1, orig_dlbm="0103", now_dlbm="0601", yjjbnt_ids=["Y1"]),
    "M2": dict(verdict="partly_approved", area_m2=8000, area_unused=8000, area_outside_czkfbj=8000,
               area_approved=4000, approved_share=0.5, approval_ids=["P5"], XZQDM=fx.V4, orig_dlbm="0404",
               now_dlbm="0508"),
    "M3": dict(verdict="suspected_illegal", area_m2=6000, area_cultivated=6000, area_yjjbnt=2000,
               area_outside_czkfbj=6000, approval_ids=[], XZQDM=fx.V3, orig_dlbm="0103", now_dlbm="0702",
               yjjbnt_ids=["Y2"]),
    "M4": dict(verdict="other", area_m2=4000, area_agri_other=4000, area_outside_czkfbj=4000, area_approved=4000,
               area_compliant=4000, approved_share=1.0, approval_ids=["P3"], XZQDM=fx.V2, orig_dlbm="0301",
               now_dlbm="1206"),
    "M5": dict(verdict="other", area_m2=64, area_cultivated=57.6, area_tiankan=6.4, area_yjjbnt=64,
               area_outside_czkfbj=64, XZQDM=fx.V1, orig_dlbm="0103", yjjbnt_ids=["Y1"]),
    "M6": dict(verdict="other", area_m2=900, area_agri_other=900, area_stbhhx=900, area_outside_czkfbj=900,
               XZQDM=fx.V2, orig_dlbm="0301", now_dlbm="0301", stbhhx_ids=["S1"]),
    "M7": dict(verdict="suspected_illegal", area_m2=6000, area_unused=6000, area_outside_czkfbj=3000,
               approval_ids=[], XZQDM=fx.V2, orig_dlbm="1206", now_dlbm="0601", czkfbj_ids=["Z2"]),
    "M9": dict(verdict="partly_approved", area_m2=2200, area_cultivated=2180, area_tiankan=20, area_yjjbnt=2000,
               area_outside_czkfbj=2200, area_approved=200, approved_share=200 / 2200, approval_ids=["P1", "P2"],
               XZQDM=fx.V3, orig_dlbm="0103", now_dlbm="0702", yjjbnt_ids=["Y2"]),
}
AREAS = ["area_m2", "area_cultivated", "area_tiankan", "area_agri_other", "area_construction", "area_unused",
         "area_unclassified",
         "area_yjjbnt", "area_stbhhx", "area_outside_czkfbj", "area_approved", "area_compliant"]
# The unapproved part of each record (area − approved union) and the 耕地 in it, by hand: M2 8000 − 4000;
# M3 / M5 / M6 / M7 uncovered; M9: 2200 − 200, and of its 2180 m² 耕地 the approved 10 × 20 m in c1 holds
# 200 × (1 − 0.1) = 180 → 2000 unapproved. M1 and M4 are covered whole.
UNAPPROVED = {"M1": (0, 0), "M2": (4000, 0), "M3": (6000, 6000), "M4": (0, 0), "M5": (64, 57.6), "M6": (900, 0),
              "M7": (6000, 0), "M9": (2000, 2000)}
REASON_WORDS = {"M1": "判为合法", "M2": "少批多占", "M3": "疑似未批先建", "M4": "合规", "M5": "小于最小面积",
                "M6": "地类未变化", "M7": "P4 未计入", "M9": "超出批准范围 2000.00 m²"}


@pytest.fixture(scope="module")
def judged():
    return judge()


@pytest.mark.parametrize("jcbh", sorted(CASES))
def test_verdict_areas_and_ids(judged, jcbh):
    want = CASES[jcbh]
    row = judged.loc[jcbh]
    assert row["verdict"] == want["verdict"]
    assert row["verdict_zh"] == {"legal": "合法", "partly_approved": "少批多占", "suspected_illegal": "未批先建",
                                 "other": "其他"}[want["verdict"]]
    for col in AREAS:
        assert row[col] == pytest.approx(want.get(col, 0.0), abs=0.01), col
    assert row["area_unapproved"] == pytest.approx(UNAPPROVED[jcbh][0], abs=0.01)
    assert row["area_cultivated_unapproved"] == pytest.approx(UNAPPROVED[jcbh][1], abs=0.01)
    assert row["approved_share"] == pytest.approx(want.get("approved_share", 0.0), abs=1e-6)
    assert json.loads(row["approval_ids"]) == want.get("approval_ids", [])
    for col in ("yjjbnt_ids", "stbhhx_ids", "czkfbj_ids"):
        assert json.loads(row[col]) == want.get(col, []), col
    assert row["XZQDM"] == want["XZQDM"]
    assert row["orig_dlbm"] == want["orig_dlbm"]
    if "now_dlbm" in want:
        assert row["now_dlbm"] == want["now_dlbm"]
    assert row["orig_layer"] == "dltb_prev"
    assert REASON_WORDS[jcbh] in row["verdict_reason"]
    assert "dltb_prev" in row["verdict_reason"]  # the 口径 of the 原地类 is stated
    assert row["status"] == "待核查" and row["version"] == 1 and row["judgement"] is None
    assert json.loads(row["source_ids"]) == [jcbh]
    assert json.loads(row["sources"]) == ["satellite"] and json.loads(row["rounds"]) == ["2024-1"]


def test_breakdown_adds_up_to_the_patch(judged):
    """耕地 (net of 田坎) + 田坎 + other 农用地 + 建设用地 + 未利用地 = patch area where the DLTB covers it."""
    parts = judged[["area_cultivated", "area_tiankan", "area_agri_other", "area_construction", "area_unused",
                    "area_unclassified"]]
    np.testing.assert_allclose(parts.sum(axis=1), judged["area_m2"], atol=0.01)


def test_overlapping_approvals_counted_once(judged):
    # P1 (农用地转用) and P2 (土地征收) cover the same 5000 m²: M1 is approved on 4000 m², not 8000.
    assert judged.loc["M1", "area_approved"] == pytest.approx(4000, abs=0.01)


def test_orig_ids_list_the_dltb_patches_behind(judged):
    assert json.loads(judged.loc["M9", "orig_ids"]) == ["P-c1", "P-c2"]


def with_rules(**changes):
    return dataclasses.replace(RULES, **changes)


@pytest.mark.parametrize("hsx, verdict, late", [
    ("2024-02-01", "suspected_illegal", "P1、P2"),  # both approvals came after the change was seen
    ("2024-03-15", "legal", "P2"),                  # P1 counts, P2 (04-01) does not; P1 alone covers it
    ("2024-06-30", "legal", None),
])
def test_date_rule_hsx(hsx, verdict, late):
    patches = fx.layer([dict(JCBH="M1", SOURCE="satellite", ROUND="2024-1", HSX=hsx, g=fx.b(50, 10, 100, 90))])
    row = judge(patches, rules=with_rules(approval_date_rule="hsx")).loc["M1"]
    assert row["verdict"] == verdict
    if late:
        assert f"批准日期晚于后时相的 {late} 未计入" in row["verdict_reason"]
    else:
        assert "未计入" not in row["verdict_reason"]


def test_date_rule_any_counts_later_approvals():
    row = judge(rules=with_rules(approval_date_rule="any")).loc["M7"]
    assert row["verdict"] == "legal" and json.loads(row["approval_ids"]) == ["P4"]


def share_world(covered_width: float):
    """A 100 m × 100 m patch on 旱地 turned 工业; one 农用地转用 covers a strip covered_width m wide."""
    prev = fx.layer([dict(BSM="A", DLBM="0103", KCXS=0.0, ZLDWDM=fx.zl(fx.V1), g=fx.b(0, 0, 100, 100))])
    curr = fx.layer([dict(BSM="B", DLBM="0601", KCXS=0.0, ZLDWDM=fx.zl(fx.V1), g=fx.b(0, 0, 100, 100))])
    appr = fx.layer([dict(PZWH="PZ", PZLX="农用地转用", PZRQ="2024-01-01", g=fx.b(0, 0, covered_width, 100))])
    patch = fx.layer([dict(JCBH="T", g=fx.b(0, 0, 100, 100))])
    return judge_patches(patch, dltb=curr, dltb_prev=prev, approvals=appr, rules=RULES).iloc[0]


@pytest.mark.parametrize("width, verdict", [
    (100, "legal"), (95, "legal"),                      # share 0.95 reaches the tolerance
    (94.9, "partly_approved"), (5, "partly_approved"),  # the partial band [0.05, 0.95)
    (4.9, "suspected_illegal"),
])
def test_tolerance_and_partial_band(width, verdict):
    row = share_world(width)
    assert row["verdict"] == verdict
    assert row["area_approved"] == pytest.approx(width * 100, abs=0.01)


@pytest.mark.parametrize("side, verdict", [(10.0, "suspected_illegal"), (9.99, "other")])
def test_minimum_area_boundary(side, verdict):
    # 10 m × 10 m = 100 m² is not below the 100 m² minimum; 9.99 m × 9.99 m = 99.80 m² is.
    patch = fx.layer([dict(JCBH="S", g=fx.b(120, 50, 120 + side, 50 + side))])
    row = judge(patch).loc["S"]
    assert row["verdict"] == verdict
    assert row["area_m2"] == pytest.approx(side * side, abs=0.01)


def test_without_dltb_prev_the_orig_comes_from_dltb_and_is_said_so():
    out = judge(dltb_prev=None)
    m6 = out.loc["M6"]  # unchanged class cannot be tested without dltb_prev: no approval → suspected illegal
    assert m6["verdict"] == "suspected_illegal"
    assert m6["orig_layer"] == "dltb" and "未提供上一年度数据" in m6["verdict_reason"]
    m1 = out.loc["M1"]  # 原地类 read from the current DLTB: 工业 (construction)
    assert m1["orig_dlbm"] == "0601" and m1["area_construction"] == pytest.approx(4000, abs=0.01)


def test_unchanged_test_can_be_switched_off():
    assert judge(rules=with_rules(unchanged_min_share=None)).loc["M6", "verdict"] == "suspected_illegal"


def test_no_approvals_layer():
    out = judge(approvals=None)
    assert set(out.loc[["M1", "M2", "M3", "M4", "M7", "M9"], "verdict"]) == {"suspected_illegal"}


def test_unknown_land_use_code_is_reported_as_unclassified():
    prev = fx.dltb_prev()
    prev.loc[0, "DLBM"] = "1199"  # not a 三调 code: its area is neither 耕地 nor anything else
    row = judge(dltb_prev=prev).loc["M9"]
    assert row["area_unclassified"] == pytest.approx(180, abs=0.01)  # [90,100]×[10,30] on c1, net of 10 % 田坎
    assert row["area_cultivated"] == pytest.approx(2000, abs=0.01) and row["area_tiankan"] == pytest.approx(20.0)
    assert "原地类编码 1199 不在规则地类表内" in row["verdict_reason"]


def test_bad_kcxs_is_refused():
    prev = fx.dltb_prev()
    prev.loc[0, "KCXS"] = 12.0  # a percentage
    with pytest.raises(FieldError, match="P-c1"):
        judge(dltb_prev=prev)


def test_crs_mismatch_is_refused():
    with pytest.raises(CRSError, match="yjjbnt"):
        judge(yjjbnt=fx.yjjbnt().set_crs("EPSG:4546", allow_override=True))


def test_output_rounding():
    out = round_areas(judge())
    assert out.loc["M9", "approved_share"] == 0.0909
    assert out.loc["M5", "area_tiankan"] == 6.4


def test_carry_over_keeps_workflow_columns():
    new = judge()
    old = new.reset_index(drop=True).copy()
    old["status"] = ["已核查", "立案", "待核查", "待核查", "待核查", "待核查", "待核查", "待核查"]
    old["judgement"] = ["合法", "违法", None, None, None, None, None, None]
    old["version"] = [3, 5, 1, 1, 1, 1, 1, 1]
    old["checked_by"] = ["wang", "li", None, None, None, None, None, None]
    # M2 was issued under another id before and merged: matched through source_ids
    old.loc[1, "JCBH"] = "OLD-2"
    old.loc[1, "source_ids"] = json.dumps(["OLD-2", "M2"])
    out, kept = carry_over_status(new.reset_index(drop=True), old)
    out = out.set_index("JCBH")
    assert kept == 8
    assert (out.loc["M1", "status"], out.loc["M1", "judgement"], out.loc["M1", "version"]) == ("已核查", "合法", 3)
    assert (out.loc["M2", "status"], out.loc["M2", "checked_by"], out.loc["M2", "version"]) == ("立案", "li", 5)
    assert out.loc["M3", "status"] == "待核查"


def test_carry_over_without_previous_run():
    new = judge()
    out, kept = carry_over_status(new, None)
    assert kept == 0 and (out["status"] == "待核查").all()


# --- the rules file -------------------------------------------------------------------------------------

def default_raw():
    return yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))


def test_default_rules():
    r = load_rules()
    assert {"1201", "0603"} <= r.construction and not {"1006", "1202"} & r.construction
    assert r.legal_min_share == 0.95 and r.partial_min_share == 0.05 and r.idle_years == 2
    assert r.compliant_kinds == ("临时用地", "设施农用地备案")
    assert r.survey_date.isoformat() == "2024-12-31"
    assert len(r.sha256()) == 64 and json.loads(r.to_json())["judgement"]["legal_min_share"] == 0.95


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(extra=1), "unknown keys"),
    (lambda d: d["judgement"].update(legal_min_share=1.5), "legal_min_share must be ≤ 1"),
    (lambda d: d["judgement"].update(partial_min_share=0.96), "partial_min_share"),
    (lambda d: d["land_classes"]["construction"].append(601), "not land-use codes"),
    (lambda d: d["land_classes"]["construction"].remove("1201"), "unclassified"),
    (lambda d: d["land_classes"]["unused"].append("0601"), "both list"),
    (lambda d: d["approvals"].update(date_rule="never"), "date_rule must be one of"),
    (lambda d: d["dedupe"].update(min_overlap_ratio=0), "merely touch"),
    (lambda d: d.pop("survey_date"), "survey_date is missing"),
    (lambda d: d.update(survey_date="31.12.2024"), "YYYY-MM-DD"),
    (lambda d: d["idle"].update(years=1.5), "whole number"),
    (lambda d: d["conflicts"].update(zone_use=[{"zone": "01"}]), "zone_use"),
])
def test_rules_validation(edit, message):
    raw = default_raw()
    edit(raw)
    with pytest.raises(RuleError, match=message):
        rules_from_dict(raw, where="test.yaml")


def test_rules_file_errors(tmp_path):
    with pytest.raises(RuleError, match="does not exist"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("judgement: [", encoding="utf-8")
    with pytest.raises(RuleError, match="not valid YAML"):
        load_rules(bad)


def test_edited_rules_file_changes_the_verdict(tmp_path):
    raw = default_raw()
    raw["judgement"]["legal_min_share"] = 0.4
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    rules = load_rules(path)
    assert rules.sha256() != RULES.sha256()
    assert judge(rules=rules).loc["M2", "verdict"] == "legal"  # P5 covers 50 % ≥ 40 %


def test_a_ydyh_coded_survey_gives_the_same_judgement():
    """The same region with both DLTB years written in 用地用海 (the crosswalk's reverse) and read back through it:
    identical verdicts and areas; the records show the layers' own codes."""
    from analysis.codeset import to_rule_codes
    from layers.codes import from_sandiao

    def recoded(gdf, name):
        gdf = gdf.copy()
        gdf["DLBM"] = from_sandiao(gdf["DLBM"].to_numpy(dtype=object))
        return to_rule_codes(gdf, "ydyh", name)

    base = judge()
    twin = judge(dltb=recoded(fx.dltb(), "dltb"), dltb_prev=recoded(fx.dltb_prev(), "dltb_prev"))
    same = [c for c in base.columns if c not in ("orig_dlbm", "now_dlbm", "geometry")]
    assert twin[same].equals(base[same])
    assert twin.loc["M3", "orig_dlbm"] == "0103" and twin.loc["M3", "now_dlbm"] == "0703"  # 三调 0702 宅基地
    assert twin.loc["M7", "now_dlbm"] == "1001"  # 三调 0601 工业用地 is 用地用海 1001


def test_a_month_only_hsx_counts_approvals_of_that_month():
    """approvals.date_rule: hsx — an approval dated inside the month of a month-only 后时相 may precede the image:
    it counts; one dated the month after does not."""
    rules = dataclasses.replace(RULES, approval_date_rule="hsx")
    patches = fx.monitoring()
    patches = patches[patches["JCBH"] == "M1"].copy()  # P1 2024-03-01, P2 2024-04-01 cover it whole
    patches["HSX"] = "2024-03"
    row = judge(patches, rules=rules).loc["M1"]
    assert row["verdict"] == "legal" and json.loads(row["approval_ids"]) == ["P1"]
    patches["HSX"] = "2024-02"
    assert judge(patches, rules=rules).loc["M1", "verdict"] == "suspected_illegal"

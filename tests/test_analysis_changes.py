"""Change patches from dltb_prev → dltb: new construction and loss of 耕地, judged like monitoring patches."""

import geopandas as gpd
import pandas as pd
import pytest

from analysis.changes import derive_change_patches, unchanged_mask
from analysis.judge import judge_patches
from analysis.rules import load_rules
from tests import analysis_fixtures as fx

RULES = load_rules()


@pytest.fixture(scope="module")
def changes():
    return derive_change_patches(fx.dltb_prev(), fx.dltb(), RULES).set_index("JCBH", drop=False)


# JCBH → (area m², TBLX, 原地类, 现状地类, XZQDM, prev ids)
EXPECTED = {
    "BG-C-c1b": (5000, "新增建设用地、耕地减少", "0103", "0601", fx.V1, "P-c1"),
    "BG-C-c2": (10000, "新增建设用地、耕地减少", "0103", "0702", fx.V3, "P-c2"),
    "BG-C-c4": (10000, "新增建设用地", "1206", "0601", fx.V2, "P-c4"),
    "BG-C-c6": (10000, "新增建设用地", "0404", "0508", fx.V4, "P-c6"),
}


def test_change_patches_found(changes):
    # c1a stays 0103, c3a 0301 → 1206 is neither new construction nor loss of 耕地, c3b and c5 are unchanged
    assert sorted(changes["JCBH"]) == sorted(EXPECTED)


@pytest.mark.parametrize("jcbh", sorted(EXPECTED))
def test_change_patch_fields(changes, jcbh):
    area, tblx, prev_code, now_code, village, prev_ids = EXPECTED[jcbh]
    row = changes.loc[jcbh]
    assert row["area_m2"] == pytest.approx(area, abs=0.01)
    assert row["TBLX"] == tblx
    assert (row["prev_dlbm"], row["now_dlbm"], row["XZQDM"], row["prev_ids"]) == (prev_code, now_code, village,
                                                                                   prev_ids)
    assert row["SOURCE"] == "survey" and row["HSX"] == "2024-12-31"


def test_unchanged_twins_are_set_aside():
    same_prev, same_curr = unchanged_mask(fx.dltb_prev(), fx.dltb())
    assert list(fx.dltb_prev()["BSM"][same_prev]) == ["P-c5"]
    assert list(fx.dltb()["BSM"][same_curr]) == ["P-c5"]


@pytest.mark.parametrize("before, after, kinds", [
    ("0101", "0103", None),                      # 水田 → 旱地 stays 耕地
    ("0103", "0301", "耕地减少"),                # 耕地 → 林地 (no construction)
    ("0301", "1201", "新增建设用地"),            # 1201 空闲地 IS construction
    ("0103", "1202", "耕地减少"),                # 1202 设施农用地 is NOT construction
    ("0601", "0602", None),                      # construction → construction
    ("1206", "1003", "新增建设用地"),
])
def test_what_counts_as_change(before, after, kinds):
    prev = fx.layer([dict(BSM="A", DLBM=before, ZLDWDM=fx.zl(fx.V1), g=fx.b(0, 0, 100, 100))])
    curr = fx.layer([dict(BSM="B", DLBM=after, ZLDWDM=fx.zl(fx.V1), g=fx.b(0, 0, 100, 100))])
    out = derive_change_patches(prev, curr, RULES)
    if kinds is None:
        assert len(out) == 0
    else:
        assert list(out["TBLX"]) == [kinds] and out.iloc[0]["JCBH"] == "BG-B"


def test_redrawn_boundary_slivers_are_dropped():
    # the boundary between 旱地 and 工业 moved 5 mm: the 0.5 m² sliver is digitising noise (< 1 m²)
    prev = fx.layer([dict(BSM="A", DLBM="0103", g=fx.b(0, 0, 100, 100)), dict(BSM="B", DLBM="0601",
                                                                          g=fx.b(100, 0, 200, 100))])
    curr = fx.layer([dict(BSM="A2", DLBM="0103", g=fx.b(0, 0, 99.995, 100)),
                     dict(BSM="B2", DLBM="0601", g=fx.b(99.995, 0, 200, 100))])
    assert len(derive_change_patches(prev, curr, RULES)) == 0
    # a 1.5 m shift is a change of 150 m²
    curr = fx.layer([dict(BSM="A2", DLBM="0103", g=fx.b(0, 0, 98.5, 100)),
                     dict(BSM="B2", DLBM="0601", g=fx.b(98.5, 0, 200, 100))])
    out = derive_change_patches(prev, curr, RULES)
    assert list(out["JCBH"]) == ["BG-B2"] and out.iloc[0]["area_m2"] == pytest.approx(150.0, abs=0.01)


def test_pieces_under_one_current_patch_form_one_change():
    # a factory built across a 旱地 and a 林地 patch: one current patch, one change patch of 2 pieces
    prev = fx.layer([dict(BSM="A", DLBM="0103", KCXS=0.1, g=fx.b(0, 0, 50, 100)),
                     dict(BSM="B", DLBM="0301", g=fx.b(50, 0, 100, 100))])
    curr = fx.layer([dict(BSM="F", DLBM="0601", g=fx.b(0, 0, 100, 100))])
    out = derive_change_patches(prev, curr, RULES)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["prev_ids"] == "A,B" and row["area_m2"] == pytest.approx(10000, abs=0.01)
    assert row["prev_dlbm"] in {"0103", "0301"}
    judged = judge_patches(out, dltb=curr, dltb_prev=prev, rules=RULES).iloc[0]
    assert judged["verdict"] == "suspected_illegal"
    assert judged["area_cultivated"] == pytest.approx(4500, abs=0.01)  # 5000 × (1 − 0.1)
    assert judged["area_tiankan"] == pytest.approx(500, abs=0.01)
    assert judged["area_agri_other"] == pytest.approx(5000, abs=0.01)


def test_change_patches_are_judged_like_monitoring_patches(changes):
    judged = judge_patches(changes, dltb=fx.dltb(), dltb_prev=fx.dltb_prev(), approvals=fx.approvals(),
                           yjjbnt=fx.yjjbnt(), stbhhx=fx.stbhhx(), czkfbj=fx.czkfbj(), rules=RULES)
    judged = judged.set_index("JCBH")
    # c1b: P1 ∪ P2 cover all 5000 m² → legal; c6: P5 covers 5000 of 10000 → partly; c2: nothing → illegal;
    # c4: P4 is dated after survey_date → illegal
    assert judged.loc["BG-C-c1b", "verdict"] == "legal"
    assert judged.loc["BG-C-c6", "verdict"] == "partly_approved"
    assert judged.loc["BG-C-c6", "approved_share"] == pytest.approx(0.5, abs=1e-9)
    assert judged.loc["BG-C-c2", "verdict"] == "suspected_illegal"
    assert judged.loc["BG-C-c4", "verdict"] == "suspected_illegal"
    assert judged.loc["BG-C-c2", "area_cultivated"] == pytest.approx(10000, abs=0.01)
    assert judged.loc["BG-C-c1b", "area_cultivated"] == pytest.approx(4500, abs=0.01)
    assert (judged["sources"] == '["survey"]').all() and (judged["rounds"] == "[]").all()


def test_duplicate_patches_are_found():
    from analysis.changes import duplicate_mask

    curr = fx.dltb()
    twin = curr.iloc[[3]].copy()
    twin["BSM"] = "C-c3a-copy"
    # the same ring starting at another vertex is the same geometry
    twin.geometry = [fx.b(200, 0, 250, 100).reverse()]
    both = gpd.GeoDataFrame(pd.concat([curr, twin], ignore_index=True), crs=curr.crs)
    assert list(both["BSM"][duplicate_mask(both)]) == ["C-c3a-copy"]
    assert not duplicate_mask(curr).any()


def test_round_and_date_from_sjnf():
    prev = fx.layer([dict(BSM="A", DLBM="0103", SJNF=2023, g=fx.b(0, 0, 100, 100))])
    curr = fx.layer([dict(BSM="B", DLBM="0601", SJNF=2024, g=fx.b(0, 0, 100, 100))])
    row = derive_change_patches(prev, curr, RULES).iloc[0]
    assert (row["ROUND"], row["HSX"]) == ("2024", "2024-12-31")

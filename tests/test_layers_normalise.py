"""Field mapping (manifest, exact codes, aliases, DBF truncations) and value coercion."""

import numpy as np
import pandas as pd
import pytest

from layers.errors import FieldError
from layers.normalise import map_fields, normalise_attributes, row_ids

WHERE = "layer 'dltb'"


def test_aliases_lower_case_and_truncations():
    columns = ["bsm", "地类编码", "坐落单位代码", "图斑面积", "扣除地类系", "KCMJ", "XZQMC", "备注", "geometry"]
    fmap = map_fields(columns, "dltb", {}, WHERE)
    assert fmap.mapping == {"BSM": "bsm", "DLBM": "地类编码", "ZLDWDM": "坐落单位代码", "TBMJ": "图斑面积",
                            "KCXS": "扣除地类系", "KCMJ": "KCMJ"}
    assert fmap.dropped == ["XZQMC", "备注"]
    assert any("XZQMC (XZQMC) is not a field of 'dltb'" in n for n in fmap.notes)


def test_utf8_truncated_chinese_name_maps():
    # 永久基本农田图斑编号 cut at 10 bytes of UTF-8 is 永久基 (+1 byte, dropped when decoding)
    fmap = map_fields(["BSM", "永久基本农田图", "永久基本农田面"], "yjjbnt", {}, "layer 'yjjbnt'")
    assert fmap.mapping == {"BSM": "BSM", "YJJBNTTBBH": "永久基本农田图", "YJJBNTMJ": "永久基本农田面"}


def test_manifest_mapping_wins_over_aliases():
    columns = ["BSM", "DLBM", "DLBM_NEW", "ZLDWDM", "TBMJ"]
    fmap = map_fields(columns, "dltb", {"DLBM": "dlbm_new"}, WHERE)
    assert fmap.mapping["DLBM"] == "DLBM_NEW"
    assert "DLBM" in fmap.dropped


def test_exact_code_beats_alias():
    fmap = map_fields(["BSM", "地类编码", "DLBM", "ZLDWDM", "TBMJ"], "dltb", {}, WHERE)
    assert fmap.mapping["DLBM"] == "DLBM"
    assert any("地类编码 also looks like DLBM; DLBM is used" in n for n in fmap.notes)


def test_missing_required_field_names_role_field_fields_and_remedy():
    with pytest.raises(FieldError) as err:
        map_fields(["BSM", "DL", "ZLDWDM", "TBMJ", "geometry"], "dltb", {}, WHERE)
    assert str(err.value) == ("layer 'dltb': required field DLBM (地类编码) not found; fields present: BSM, DL, "
                              "ZLDWDM, TBMJ; map it in the manifest: fields: {DLBM: <source field name>}")


def test_manifest_mapping_to_absent_source_field():
    with pytest.raises(FieldError, match=r"fields: maps DLBM to 'DLDM', but the source has no such field; "
                                         r"fields present: BSM, ZLDWDM, TBMJ"):
        map_fields(["BSM", "ZLDWDM", "TBMJ"], "dltb", {"DLBM": "DLDM"}, WHERE)
    with pytest.raises(FieldError, match=r"maps XZQMC, which role 'dltb' does not keep"):
        map_fields(["BSM", "ZLDWDM", "TBMJ", "DLBM", "MC"], "dltb", {"XZQMC": "MC"}, WHERE)


def test_coercion_codes_numbers_dates():
    src = pd.DataFrame({
        "BSM": [1.0, 2.0, 3.0, np.nan],
        "DLBM": [101.0, 102.0, 1006.0, np.nan],  # 三调 codes exported as numbers
        "ZLDWDM": [130599100001.0, 130599100002.0, None, 130599100003.0],
        "TBMJ": ["1,234.50", "12.3", "abc", None],
        "SJNF": [2023.0, 2023.0, 2024.0, np.nan],
    })
    fmap = map_fields(list(src.columns), "dltb", {}, WHERE)
    out, findings = normalise_attributes(src, "dltb", fmap, WHERE)
    assert out["BSM"].tolist() == ["1", "2", "3", None]
    assert out["DLBM"].tolist() == ["0101", "0102", "1006", None]
    assert out["ZLDWDM"].tolist() == ["130599100001", "130599100002", None, "130599100003"]
    assert out["TBMJ"].tolist()[:2] == [1234.5, 12.3] and np.isnan(out["TBMJ"][2])
    assert out["SJNF"].tolist()[:3] == [2023, 2023, 2024] and out["SJNF"].dtype == "Int64"
    (bad,) = findings
    assert (bad.check, bad.ids, bad.count) == ("bad_value", ["3"], 1)
    assert "TBMJ (TBMJ) are not numbers (e.g. ['abc'])" in bad.message


@pytest.mark.parametrize("values, expected", [
    ([" 0101", "5H1", None, "08h1"], ["0101", "05H1", None, "08H1"]),  # text: tidied
    ([11, 12, 101, 123], ["011", "012", "101", "123"]),  # 二调 3-digit codes exported as numbers
    ([9, 101, 1203, 703], ["09", "0101", "1203", "0703"]),  # 4-character codes exported as numbers
])
def test_land_use_codes_keep_their_leading_zeros(values, expected):
    src = pd.DataFrame({"BSM": ["1", "2", "3", "4"], "DLBM": values, "ZLDWDM": ["1"] * 4, "TBMJ": [1.0] * 4})
    out, _ = normalise_attributes(src, "dltb", map_fields(list(src.columns), "dltb", {}, WHERE), WHERE)
    assert out["DLBM"].tolist() == expected


def test_float_codes_beyond_2_53_are_refused():
    src = pd.DataFrame({"BSM": ["a"], "DLBM": ["0101"], "ZLDWDM": [1305991000010000001.0], "TBMJ": [1.0]})
    fmap = map_fields(list(src.columns), "dltb", {}, WHERE)
    with pytest.raises(FieldError, match=r"field ZLDWDM holds codes as floating-point numbers beyond 2\^53 .*"
                                         r"re-export ZLDWDM as a text field"):
        normalise_attributes(src, "dltb", fmap, WHERE)


def test_dates_to_iso():
    src = pd.DataFrame({"PZWH": ["冀政转〔2023〕1号"] * 6, "PZLX": ["农用地转用"] * 6,
                        "PZRQ": ["2023-03-01", "2023/3/1", "20230301", "2023年3月1日", "2023-03-01 08:00:00", "三月"]})
    fmap = map_fields(list(src.columns), "approvals", {}, "layer 'approvals'")
    out, findings = normalise_attributes(src, "approvals", fmap, "layer 'approvals'")
    assert out["PZRQ"].tolist() == ["2023-03-01"] * 5 + [None]
    assert findings[0].check == "bad_value" and findings[0].count == 1
    dt = pd.DataFrame({"PZWH": ["x"], "PZLX": ["供地"], "PZRQ": pd.to_datetime(["2022-12-31"])})
    out, _ = normalise_attributes(dt, "approvals", map_fields(list(dt.columns), "approvals", {}, ""), "")
    assert out["PZRQ"].tolist() == ["2022-12-31"]


def test_xzq_level_from_code_length_or_chinese_values():
    src = pd.DataFrame({"行政区代码": [130599, 130599100, 130599100001], "XZQMC": ["样例县", "城关镇", "张庄村"]})
    fmap = map_fields(list(src.columns), "xzq", {}, "layer 'xzq'")
    out, _ = normalise_attributes(src, "xzq", fmap, "layer 'xzq'")
    assert out["XZQDM"].tolist() == ["130599", "130599100", "130599100001"]
    assert out["XZQJB"].tolist() == ["county", "township", "village"]
    src["级别"] = ["县", "乡镇", "村"]
    fmap = map_fields(list(src.columns), "xzq", {"XZQJB": "级别"}, "layer 'xzq'")
    out, _ = normalise_attributes(src, "xzq", fmap, "layer 'xzq'")
    assert out["XZQJB"].tolist() == ["county", "township", "village"]


def test_row_ids_fall_back_to_row_numbers():
    ids = row_ids(pd.Series(["A", None, "C"]), 3)
    assert ids.tolist() == ["A", "#2", "C"]
    assert row_ids(None, 2).tolist() == ["#1", "#2"]

"""layers/region.py: a region set lists county manifests and the 市 / 省 they form; bad sets are refused with the
value and the remedy. analysis/rollup.py on hand-made county runs: sums, ratios from each level's own totals,
强制调平 down the whole tree."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest

from analysis.rollup import rollup_indicators
from layers.errors import ManifestError
from layers.region import is_region_file, load_region, manifest_checksum
from services.jobs.indicators import load_registry


def county(folder, code, name="甲县"):
    path = folder / f"c{code}" / "manifest.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'region: {{code: "{code}", name: {name}}}\nlayers:\n  dltb: dltb.parquet\n', encoding="utf-8")
    (path.parent / "dltb.parquet").write_bytes(b"PAR1 not really")
    return path


def region_file(folder, body: str):
    path = folder / "region.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_a_province_of_two_cities(tmp_path):
    for code in ("130571", "130572", "130671"):
        county(tmp_path, code, name=f"县{code[-2:]}")
    path = region_file(tmp_path, """\
        region: {code: "130000", name: 样例省, level: province}
        cities:
          - {code: "130500", name: 样例市}
          - {code: "130600", name: 示例市}
        counties:
          - c130572/manifest.yaml
          - {manifest: c130571/manifest.yaml}
          - {manifest: c130671/manifest.yaml, city: "130600"}
        """)
    assert is_region_file(path) and not is_region_file(tmp_path / "c130571" / "manifest.yaml")
    region = load_region(path)
    assert [c.code for c in region.counties] == ["130571", "130572", "130671"]
    assert [c.city for c in region.counties] == ["130500", "130500", "130600"]
    assert region.county("130572").name == "县72"
    assert region.units()[:3] == [
        {"code": "130000", "name": "样例省", "level": "province", "parent_code": None},
        {"code": "130500", "name": "样例市", "level": "city", "parent_code": "130000"},
        {"code": "130600", "name": "示例市", "level": "city", "parent_code": "130000"}]


def test_a_city_from_a_folder_of_counties(tmp_path):
    for code in ("130571", "130572"):
        county(tmp_path / "counties", code)
    region = load_region(region_file(tmp_path, """\
        region: {code: "130500", name: 样例市, level: city}
        counties_dir: counties
        """))
    assert [(c.code, c.city) for c in region.counties] == [("130571", "130500"), ("130572", "130500")]
    assert [u["level"] for u in region.units()] == ["city", "county", "county"]


@pytest.mark.parametrize("body, message", [
    ("""\
     region: {code: "130000", name: 省, level: province}
     cities: [{code: "130500", name: 市}]
     counties: [c130571/manifest.yaml, c130571/manifest.yaml]
     """, "county 130571 is listed twice"),
    ("""\
     region: {code: "130000", name: 省, level: province}
     cities: [{code: "130600", name: 市}]
     counties: [c130571/manifest.yaml]
     """, "belongs to city 130500, which region.yaml does not list"),
    ("""\
     region: {code: "140000", name: 省, level: province}
     cities: [{code: "140500", name: 市}]
     counties: [c130571/manifest.yaml]
     """, "county 130571 .* is not in province 140000"),
    ("""\
     region: {code: "130500", name: 省, level: province}
     counties: [c130571/manifest.yaml]
     """, "130500 is not a 省 code"),
    ("""\
     region: {code: 1305, name: 市, level: city}
     counties: [c130571/manifest.yaml]
     """, "region.code = 1305 is not a 6-digit"),
    ("""\
     region: {code: "130000", name: 省, level: province}
     cities: [{code: "130500", name: 市}, {code: "130600", name: 空市}]
     counties: [c130571/manifest.yaml]
     """, r"cities \['130600'\] have no county"),
    ("""\
     region: {code: "130000", name: 省, level: province}
     cities: [{code: "130500", name: 市}]
     counties: [c999999/manifest.yaml]
     """, "county manifest .*c999999/manifest.yaml does not exist"),
    ("""\
     region: {code: "130000", name: 省}
     cities: [{code: "130500", name: 市}]
     counites: [c130571/manifest.yaml]
     """, r"unknown key\(s\) \['counites'\]"),
])
def test_bad_region_sets_are_refused_with_the_remedy(tmp_path, body, message):
    county(tmp_path, "130571")
    with pytest.raises(ManifestError, match=message):
        load_region(region_file(tmp_path, body))


def test_the_ingest_checksum_follows_every_source_byte(tmp_path):
    from layers.manifest import load_manifest

    path = county(tmp_path, "130571")
    first = manifest_checksum(load_manifest(path), "1.0")
    assert manifest_checksum(load_manifest(path), "1.0") == first
    assert manifest_checksum(load_manifest(path), "1.1") != first  # another version of the software
    (path.parent / "dltb.parquet").write_bytes(b"PAR1 not really!")
    assert manifest_checksum(load_manifest(path), "1.0") != first


# --- roll-up on hand-made county runs -------------------------------------------------------------------------

def county_run(code: str, villages: dict[str, tuple[float, float, float, int]]) -> pd.DataFrame:
    """A county run's long table: per village (耕地 m², 违法占用耕地 m², 新增建设占耕 m², 违法宗数) — townships and
    the county as their sums, 违法占用耕地比例 from each unit's own totals."""
    rows = []
    units: dict[str, list[float]] = {}
    for village, vals in villages.items():
        for unit, level, parent in ((village, "village", village[:9]), (village[:9], "township", code),
                                    (code, "county", None)):
            acc = units.setdefault(unit, [0.0, 0.0, 0.0, 0, level, parent])
            for k in range(4):
                acc[k] += vals[k]
    for unit, (cult, ill, change, count, level, parent) in units.items():
        for indicator, value, u in (("cultivated_area", cult, "m2"), ("illegal_cultivated_area", ill, "m2"),
                                    ("change_cultivated_area", change, "m2"), ("illegal_count", count, "count"),
                                    ("illegal_cultivated_ratio", 100 * ill / change if change else float("nan"),
                                     "percent")):
            rows.append({"indicator": indicator, "level": level, "unit_code": unit, "unit_name": unit,
                         "parent_code": parent, "value": value, "unit": u, "record_count": 1})
    return pd.DataFrame(rows)


def test_rollup_sums_balances_and_takes_ratios_from_totals():
    registry, _ = load_registry()
    runs = {
        "130571": county_run("130571", {"130571100001": (10000.005, 1.0, 3.0, 1),
                                        "130571100002": (20000.005, 0.0, 1.0, 0),
                                        "130571101001": (30000.005, 2.0, 2.0, 2)}),
        "130572": county_run("130572", {"130572100001": (12345.675, 5.0, 5.0, 3)}),
        "130671": county_run("130671", {"130671100001": (99999.994, 0.0, 10.0, 0)}),
    }
    units = pd.DataFrame([
        {"code": "130000", "name": "样例省", "level": "province", "parent_code": None},
        {"code": "130500", "name": "样例市", "level": "city", "parent_code": "130000"},
        {"code": "130600", "name": "示例市", "level": "city", "parent_code": "130000"},
        {"code": "130571", "name": "甲县", "level": "county", "parent_code": "130500"},
        {"code": "130572", "name": "乙县", "level": "county", "parent_code": "130500"},
        {"code": "130671", "name": "丙县", "level": "county", "parent_code": "130600"}])
    result = rollup_indicators(runs, units, registry)
    v = result.values.set_index(["indicator", "unit_code"])
    # sums of unrounded values: 130500 = 60000.015 + 12345.675; 省 = that + 99999.994
    assert v.loc[("cultivated_area", "130500"), "value"] == pytest.approx(72345.69, abs=1e-9)
    assert v.loc[("cultivated_area", "130000"), "value"] == pytest.approx(172345.684, abs=1e-9)
    assert v.loc[("illegal_count", "130000"), "value"] == 6
    # 违法占用耕地比例 of the 省 from its own totals: 8 / 21 — not the mean of the counties' ratios
    assert v.loc[("illegal_cultivated_ratio", "130000"), "value"] == pytest.approx(100 * 8 / 21, rel=1e-15)
    assert v.loc[("illegal_cultivated_ratio", "130000"), "value_rounded"] == 38.10
    assert v.loc[("illegal_cultivated_ratio", "130600"), "value"] == 0.0
    # 强制调平 in 公顷 (4 decimals): 省 17.2346 (half-up of 17.2345684); 市 7.2346 + 10.0000; 县 and 村 below
    ha = v["value_ha"]
    assert ha[("cultivated_area", "130000")] == 17.2346
    assert ha[("cultivated_area", "130500")] + ha[("cultivated_area", "130600")] == pytest.approx(17.2346, abs=1e-12)
    assert ha[("cultivated_area", "130600")] == 10.0000  # 9.9999994 rounds up as the largest remainder
    assert (ha[("cultivated_area", "130571")] + ha[("cultivated_area", "130572")]
            == pytest.approx(ha[("cultivated_area", "130500")], abs=1e-12))
    kids = ["130571100001", "130571100002", "130571101001"]
    assert sum(ha[("cultivated_area", k)] for k in kids) == pytest.approx(ha[("cultivated_area", "130571")],
                                                                           abs=1e-12)
    assert set(result.values["level"]) == {"province", "city", "county", "township", "village"}
    assert result.skipped == {} or all("no county computed it" in why for why in result.skipped.values())

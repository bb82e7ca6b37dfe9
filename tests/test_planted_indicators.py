"""The enforcement indicators of the sample county against the planted truth (issue 10, spec §4).

Expected values come from ``indicators`` of data/sample/planted.yaml: data/truth.py sums them from its own
records (one per planted ground change, measured on the planted geometry), not from anything analysis/ wrote.
Checked at every level (村, 乡, 县): 违法用地宗数 / 面积, 违法占用耕地面积, 新增建设用地占用耕地面积（监测记录口径）and
违法占用耕地比例 — which can never exceed 100 %, since its numerator is part of its denominator record by record.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from tests.serve_fixtures import analysed_gpkg  # noqa: F401  (session fixture: the sample, analysed once)

pytestmark = pytest.mark.slow

PLANTED = yaml.safe_load((Path(__file__).resolve().parent.parent / "data" / "sample" / "planted.yaml")
                         .read_text(encoding="utf-8"))
TRUTH = PLANTED["indicators"]
CODES = ("illegal_count", "illegal_area", "illegal_cultivated_area", "change_cultivated_area",
         "illegal_cultivated_ratio")
LEVELS = ("village", "township", "county")


@pytest.fixture(scope="module")
def run(analysed_gpkg):
    from services.jobs import indicators as svc

    return svc.run_indicators(analysed_gpkg, save=False)


def values(run, code, level):
    v = run.values[(run.values["indicator"] == code) & (run.values["level"] == level)]
    return dict(zip(v["unit_code"].astype(str), v["value"]))


def expected(level, unit, code):
    """The planted value; a village with no record holds nothing (ratio: no denominator)."""
    u = TRUTH[level].get(unit)
    if u is None:
        return None if code == "illegal_cultivated_ratio" else 0
    return u[code]


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("code", CODES)
def test_indicator_equals_the_planted_truth(run, code, level):
    got = values(run, code, level)
    assert got, f"no {code} values at level {level}"
    assert set(TRUTH[level]) <= set(got), sorted(set(TRUTH[level]) - set(got))
    n_records = {lvl: {} for lvl in LEVELS}
    for r in PLANTED["records"]:
        for lvl, unit in (("village", r["XZQDM"]), ("township", r["XZQDM"][:9]), ("county", "130599")):
            n_records[lvl][unit] = n_records[lvl].get(unit, 0) + 1
    for unit, value in got.items():
        want = expected(level, unit, code)
        if want is None:
            assert missing(value), (unit, value)
        elif code == "illegal_count":
            assert value == want, unit
        elif code == "illegal_cultivated_ratio":
            assert value == pytest.approx(want, abs=1e-3), unit
        else:  # sums of record areas rounded to 0.01 m²: allow that rounding once per record
            assert value == pytest.approx(want, abs=0.011 * max(1, n_records[level].get(unit, 0))), unit


def test_illegal_cultivated_ratio_never_exceeds_100_percent(run):
    for level in LEVELS:
        ratio = values(run, "illegal_cultivated_ratio", level)
        num = values(run, "illegal_cultivated_area", level)
        den = values(run, "change_cultivated_area", level)
        for unit, value in ratio.items():
            if missing(value):
                assert den.get(unit, 0) == 0, unit
                continue
            assert 0 <= value <= 100 + 1e-9, (level, unit, value)
            assert num[unit] <= den[unit] + 1e-6
    # the truth exercises both ends and the middle: a village at 100 %, one at 0 % of a positive denominator,
    # and a partial one (少批多占 counts only its unapproved 耕地)
    ratios = [u["illegal_cultivated_ratio"] for u in TRUTH["village"].values()
              if u["illegal_cultivated_ratio"] is not None]
    assert 100.0 in ratios and 0.0 in ratios and any(0 < x < 100 for x in ratios)


def test_planted_indicators_add_up_from_the_planted_records():
    """A second, independent reading of planted.yaml: sum the records here and compare with its indicators."""
    sums: dict = {}
    for r in PLANTED["records"]:
        for unit in (r["XZQDM"], r["XZQDM"][:9], "130599"):
            s = sums.setdefault(unit, {"n": 0, "ia": 0.0, "ica": 0.0, "cca": 0.0})
            if r["verdict"] in ("suspected_illegal", "partly_approved"):
                s["n"] += 1
                s["ia"] += r["area_unapproved"]
                s["ica"] += r["area_cultivated_unapproved"]
            if r["verdict"] != "other":
                s["cca"] += r["area_cultivated"]
    for level in LEVELS:
        for unit, u in TRUTH[level].items():
            s = sums.get(unit, {"n": 0, "ia": 0.0, "ica": 0.0, "cca": 0.0})
            assert u["illegal_count"] == s["n"]
            assert u["illegal_area"] == pytest.approx(s["ia"], abs=1e-6)
            assert u["illegal_cultivated_area"] == pytest.approx(s["ica"], abs=1e-6)
            assert u["change_cultivated_area"] == pytest.approx(s["cca"], abs=1e-6)
    county = TRUTH["county"]["130599"]
    assert county["illegal_count"] == sum(1 for r in PLANTED["records"] if r["illegal"])
    assert sum(u["illegal_count"] for u in TRUTH["township"].values()) == county["illegal_count"]

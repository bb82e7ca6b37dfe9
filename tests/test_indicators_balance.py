"""强制调平: rounded children sum exactly to their rounded parent at every level, each within one unit."""

from decimal import Decimal

import numpy as np
import pytest

from analysis.balance import apportion, balance_tree, convert_area, round_half_up


def tree(rng, n_townships, villages_per, scale):
    """county → townships → villages with random village values; parents are the sums of their children."""
    values, parents = {}, {}
    county = "130599"
    values[county] = 0.0
    parents[county] = None
    for t in range(n_townships):
        tc = f"{county}{100 + t:03d}"
        parents[tc] = county
        values[tc] = 0.0
        for v in range(int(rng.integers(1, villages_per + 1))):
            vc = f"{tc}{v + 1:03d}"
            parents[vc] = tc
            values[vc] = float(rng.random() * scale * rng.choice([1e-3, 1, 1e3]))
    for code in [c for c in values if len(c) == 9]:
        values[code] = sum(v for c, v in values.items() if len(c) == 12 and c.startswith(code))
    values[county] = sum(v for c, v in values.items() if len(c) == 9)
    return values, parents


def units(x: float, decimals: int) -> int:
    return int((Decimal(repr(x)).scaleb(decimals)).to_integral_value())


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("decimals,factor", [(2, 1), (4, Decimal(1) / Decimal(10000)), (2, Decimal(3) / 2000),
                                             (0, 1), (1, Decimal(1) / Decimal(10000))])
def test_children_sum_exactly_to_parents(seed, decimals, factor):
    rng = np.random.default_rng(seed)
    values, parents = tree(rng, int(rng.integers(1, 9)), 12, 1e5)
    rounded = balance_tree(values, parents, decimals, factor)
    for parent in values:
        kids = [c for c, p in parents.items() if p == parent]
        if kids:
            assert sum(units(rounded[k], decimals) for k in kids) == units(rounded[parent], decimals)
    unit = Decimal(1).scaleb(-decimals)
    for code, true in values.items():
        exact = Decimal(repr(true)) * Decimal(factor)
        assert abs(Decimal(repr(rounded[code])) - exact) < unit, code  # within one unit of the last digit


def test_thirds_go_to_the_largest_remainders_in_code_order():
    values = {"c": 1.0, "a": 1 / 3, "b": 1 / 3, "d": 1 / 3}
    parents = {"c": None, "a": "c", "b": "c", "d": "c"}
    out = balance_tree(values, parents, 2)
    assert out == {"c": 1.0, "a": 0.34, "b": 0.33, "d": 0.33}


def test_naive_rounding_would_not_balance_here():
    # 0.005 + 0.005 + 0.005 = 0.015 → county 0.02; naive half-up children 0.01 × 3 = 0.03
    values = {"k": 0.015, "x": 0.005, "y": 0.005, "z": 0.005}
    parents = {"k": None, "x": "k", "y": "k", "z": "k"}
    out = balance_tree(values, parents, 2)
    assert out["k"] == 0.02
    assert sorted(out[c] for c in "xyz") == [0.0, 0.01, 0.01]


def test_root_is_rounded_half_up_on_the_decimal_value():
    assert round_half_up(2.675, 2) == 2.68  # binary 2.67499999… would give 2.67
    assert round_half_up(0.125, 2) == 0.13
    assert round_half_up(-1.005, 2) == -1.01
    assert balance_tree({"r": 2.675}, {"r": None}, 2) == {"r": 2.68}


def test_units_convert_exactly():
    assert convert_area(10000.0, "ha") == 1.0
    assert convert_area(2000.0, "mu") == 3.0
    assert convert_area(666.67, "mu") == pytest.approx(1.000005)
    # 1 亩 = 2000/3 m²: a 3-亩 plot of 2000 m² balanced in 亩 with 2 decimals
    out = balance_tree({"p": 2000.0, "a": 1000.0, "b": 1000.0}, {"p": None, "a": "p", "b": "p"}, 2,
                       Decimal(3) / 2000)
    assert out == {"p": 3.0, "a": 1.5, "b": 1.5}


def test_inconsistent_parent_still_balances():
    # parent not the children's sum (e.g. an externally given total): balance still exact, spread round-robin
    out = apportion([Decimal("1.2"), Decimal("2.7"), Decimal("0.1")], 7)
    assert sum(out) == 7
    out = apportion([Decimal("1.2"), Decimal("2.7")], 1)
    assert sum(out) == 1

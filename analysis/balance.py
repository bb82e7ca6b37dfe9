"""强制调平: rounded parts that add up to the rounded total, at every level of the 县 → 乡 → 村 tree.

Rule. The root (the county) is rounded half-up at the reported precision. Each parent's rounded value is then
shared among its children by the largest-remainder method: every child gets its true value rounded *down*
at that precision, and the units still missing to reach the parent's rounded value go, one each, to the
children with the largest dropped fractions (ties: the order the children are given in, i.e. by unit code).
The children of each child are then balanced to that child's rounded value, down to the villages.

Guarantees, when each parent's true value is the sum of its children's (as indicator roll-ups are):
  * Σ rounded children == rounded parent, exactly, at every level;
  * every rounded value is its true value rounded down or up: within one unit of the last reported digit.
(Proof: Σ floor(cᵢ) ≤ floor(P) ≤ R ≤ ceil(P) ≤ Σ ceil(cᵢ), and Σ ceil − Σ floor is the number of children
with a non-zero fraction, so the missing units can always be handed out at most one per child.)
Should a parent not equal its children's sum, the balance still holds exactly; the missing units are then
spread round-robin over the children, largest remainder first, and the one-unit bound can no longer hold.

Arithmetic is done on integers of the last reported digit via ``decimal`` (from each float's shortest repr),
so 0.125 rounded to 2 places is 0.13, never 0.12 from binary noise.

Units: areas are computed in m² and converted before rounding — 公顷 = m² / 10 000, 亩 = m² × 3 / 2000
(1 亩 = 2000/3 m²). Each reported unit is balanced separately from the unrounded m² values, never from
another rounded unit.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from layers.errors import RuleError

# Area units: factor from m², Chinese name. 1 亩 = 2000/3 m² exactly.
AREA_UNITS: dict[str, tuple[Decimal, str]] = {
    "m2": (Decimal(1), "平方米"),
    "ha": (Decimal(1) / Decimal(10000), "公顷"),
    "mu": (Decimal(3) / Decimal(2000), "亩"),
}


def convert_area(value_m2: float, unit: str) -> float:
    """m² → ``unit`` (m2 | ha | mu).

    >>> convert_area(20000.0, "ha"), convert_area(20000.0, "mu")
    (2.0, 30.0)
    """
    if unit not in AREA_UNITS:
        raise RuleError(f"unknown area unit {unit!r}; use one of {sorted(AREA_UNITS)}")
    if value_m2 is None or (isinstance(value_m2, float) and math.isnan(value_m2)):
        return float("nan")
    return float(_dec(value_m2) * AREA_UNITS[unit][0])


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _scaled(value: float | Decimal, decimals: int, factor: Decimal = Decimal(1)) -> Decimal:
    """value × factor in units of the last reported digit (exact decimal arithmetic)."""
    v = value if isinstance(value, Decimal) else _dec(value)
    return (v * factor).scaleb(decimals)


def round_half_up(value: float, decimals: int) -> float:
    """Commercial rounding (四舍五入), exact on the decimal value a float prints as.

    >>> round_half_up(0.125, 2), round_half_up(2.675, 2), round_half_up(-0.125, 2)
    (0.13, 2.68, -0.13)
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return float("nan")
    units = _scaled(value, decimals).to_integral_value(ROUND_HALF_UP)
    return float(units.scaleb(-decimals))


def apportion(children: Sequence[Decimal], total_units: int) -> list[int]:
    """Integers (units of the last digit) close to ``children`` (already scaled) that sum to ``total_units``.

    Largest remainder: floor everything, hand the missing units to the largest fractions. If the total is
    outside [Σ floor, Σ ceil] (the parent is not the sum of its children) the difference is spread
    round-robin, largest remainder first (or smallest, when units must be taken away).
    """
    floors = [int(c.to_integral_value(ROUND_FLOOR)) for c in children]
    fractions = [c - f for c, f in zip(children, floors)]
    missing = total_units - sum(floors)
    if not children:
        if missing:
            raise RuleError(f"cannot share {total_units} units among no children")
        return []
    order = sorted(range(len(children)), key=lambda i: (-fractions[i], i))
    result = list(floors)
    if missing >= 0:
        for k in range(missing):
            result[order[k % len(order)]] += 1
    else:
        back = list(reversed(order))  # smallest fractions lose first
        for k in range(-missing):
            result[back[k % len(back)]] -= 1
    return result


def balance_tree(values: Mapping[Hashable, float], parents: Mapping[Hashable, Hashable | None],
                 decimals: int, factor: Decimal | float = Decimal(1)) -> dict[Hashable, float]:
    """Round every node's ``value × factor`` to ``decimals`` so children sum exactly to their parent.

    ``values``: node → true value (e.g. m²); ``parents``: node → parent node, or None for a root.
    Children are visited in sorted node order (unit codes), which fixes the tie-break. NaN values are
    returned as NaN and must not have children with numbers.
    """
    factor = factor if isinstance(factor, Decimal) else _dec(factor)
    children: dict[Hashable, list] = {}
    roots = []
    for node in values:
        parent = parents.get(node)
        if parent is None or parent not in values:
            roots.append(node)
        else:
            children.setdefault(parent, []).append(node)
    rounded_units: dict[Hashable, int | None] = {}
    stack = []
    for root in sorted(roots, key=str):
        v = values[root]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            rounded_units[root] = None
        else:
            rounded_units[root] = int(_scaled(v, decimals, factor).to_integral_value(ROUND_HALF_UP))
        stack.append(root)
    while stack:
        node = stack.pop()
        kids = sorted(children.get(node, []), key=str)
        if not kids:
            continue
        total = rounded_units[node]
        if total is None:
            raise RuleError(f"cannot balance the children of {node!r}: its value is missing")
        scaled = [_scaled(values[k], decimals, factor) for k in kids]
        for kid, units in zip(kids, apportion(scaled, total)):
            rounded_units[kid] = units
            stack.append(kid)
    return {node: (float("nan") if u is None else float(Decimal(u).scaleb(-decimals)))
            for node, u in rounded_units.items()}

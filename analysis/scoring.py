"""绩效自评表 scoring: target A, actual B, weight (分值) w → completion rate and score; totals; warnings.

Scoring rule (domain §8), with every edge case decided here once:

positive indicator (正向, larger is better): score = w · min(B / A, 1)
reverse indicator (逆向, smaller is better):  score = w · min(A / B, 1)

| case                         | positive                         | reverse                          |
|------------------------------|----------------------------------|----------------------------------|
| A > 0, B > 0                 | w · min(B/A, 1)                  | w · min(A/B, 1)                  |
| A > 0, B = 0                 | 0                                | w (nothing happened: target met) |
| A = 0, B ≥ 0 (positive)      | w (any B meets a zero target)    | —                                |
| A = 0, B = 0 (reverse)       | —                                | w                                |
| A = 0, B > 0 (reverse)       | —                                | 0 (a zero-tolerance target missed) |
| B < 0                        | 0 (no progress at all)           | w (B ≤ A: below the ceiling)     |
| B missing                    | 0, status 缺失, a warning         | 0, status 缺失, a warning         |
| A missing or A < 0           | RuleError: set a target ≥ 0; express decreases as reverse indicators |
| w < 0, or w missing          | RuleError                        | RuleError                        |

The completion rate (单项指标完成率) is min(B/A, 1) × 100 % (positive) or min(A/B, 1) × 100 % (reverse), with
the same edge cases (the limit where a division is by zero); it is what the score is w times. Scores never
exceed w and are never below 0. Scores are rounded half-up to 2 decimals for the table and the total is the
sum of the rounded scores, so the printed column adds up to the printed total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from layers.errors import RuleError

from .balance import round_half_up

POSITIVE, REVERSE = "positive", "reverse"
DIRECTIONS = {POSITIVE: "正向", REVERSE: "逆向"}

STATUS_OK, STATUS_PARTIAL, STATUS_MISSING = "完成", "未完成", "缺失"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Score:
    ratio: float | None  # completion 0..1 (capped), None when B is missing
    score: float  # w · ratio, rounded to 2 decimals
    status: str  # 完成 / 未完成 / 缺失
    note: str  # which rule applied, in words


def score_item(target, actual, weight, direction: str = POSITIVE, name: str = "") -> Score:
    """Score one row of the 绩效自评表 (see the module docstring for the edge cases)."""
    label = f"indicator {name!r}: " if name else ""
    if direction not in DIRECTIONS:
        raise RuleError(f"{label}direction {direction!r} is unknown; use positive or reverse")
    if _missing(weight):
        raise RuleError(f"{label}no weight (分值) set; give every row a weight ≥ 0")
    weight = float(weight)
    if weight < 0:
        raise RuleError(f"{label}weight {weight} is negative; weights (分值) must be ≥ 0")
    if _missing(target):
        raise RuleError(f"{label}no target value (A) set; give the 年度指标值 in the targets file")
    target = float(target)
    if target < 0:
        raise RuleError(f"{label}target {target} is negative; targets must be ≥ 0 — express a decrease as a "
                        "reverse indicator with a ceiling")
    if _missing(actual):
        return Score(None, 0.0, STATUS_MISSING, "实际完成值缺失, 记 0 分")
    actual = float(actual)
    if direction == POSITIVE:
        if target == 0 and actual >= 0:
            ratio, note = 1.0, "A = 0: 任何 B ≥ 0 均达标"
        elif actual <= 0:
            ratio, note = 0.0, "B ≤ 0, 记 0 分"
        else:
            ratio, note = min(actual / target, 1.0), "w × min(B/A, 1)"
    else:
        if actual <= target:
            ratio = 1.0
            note = "B ≤ A, 得满分" if actual > 0 else "B ≤ 0 ≤ A, 得满分"
        elif target == 0:
            ratio, note = 0.0, "A = 0 而 B > 0, 记 0 分"
        else:
            ratio, note = min(target / actual, 1.0), "w × min(A/B, 1)"
    score = round_half_up(weight * ratio, 2)
    score = min(max(score, 0.0), weight)
    return Score(ratio, score, STATUS_OK if ratio >= 1.0 else STATUS_PARTIAL, note)


THRESHOLD_OPS = {
    ">": lambda v, t: v > t,
    ">=": lambda v, t: v >= t,
    "<": lambda v, t: v < t,
    "<=": lambda v, t: v <= t,
}


@dataclass(frozen=True)
class Threshold:
    """A warning line on an indicator value, e.g. 违法占用耕地比例 ≥ 15 → 问责."""

    op: str  # > >= < <=
    value: float
    label: str  # e.g. 约谈 / 问责 / 预警
    severity: str = "warning"  # warning | critical

    def crossed(self, value) -> bool:
        if _missing(value):
            return False
        return THRESHOLD_OPS[self.op](float(value), self.value)

    def describe(self) -> str:
        return f"{self.op} {self.value:g}: {self.label}"


def parse_threshold(raw: dict, where: str) -> Threshold:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: a threshold must be a mapping like {{op: '>=', value: 15, label: 问责}}")
    op = str(raw.get("op", ">="))
    if op not in THRESHOLD_OPS:
        raise RuleError(f"{where}: threshold op {op!r} is unknown; use one of {sorted(THRESHOLD_OPS)}")
    try:
        value = float(raw["value"])
    except (KeyError, TypeError, ValueError):
        raise RuleError(f"{where}: threshold needs a numeric 'value', got {raw.get('value')!r}") from None
    severity = str(raw.get("severity", "warning"))
    if severity not in {"warning", "critical"}:
        raise RuleError(f"{where}: threshold severity {severity!r} is unknown; use warning or critical")
    return Threshold(op, value, str(raw.get("label", "预警")), severity)


def crossed_thresholds(value, thresholds: list[Threshold]) -> list[Threshold]:
    """The thresholds a value crosses, most severe last."""
    hits = [t for t in thresholds if t.crossed(value)]
    return sorted(hits, key=lambda t: (t.severity == "critical", abs(t.value)))


def total_score(scores: list[Score]) -> float:
    """Sum of the rounded item scores (so the table's column adds up to its total)."""
    return round_half_up(sum(s.score for s in scores), 2)


# --- the targets file (绩效自评表 definition) ---------------------------------------------------------------

SYMBOLS = {POSITIVE: "≥", REVERSE: "≤"}
_TARGET_KEYS = {"title", "unit_code", "area_unit", "total_weight", "items", "version"}
_ITEM_KEYS = {"level1", "level2", "level3", "indicator", "target", "weight", "direction", "unit_label", "symbol",
              "actual", "area_unit", "note", "thresholds"}


@dataclass(frozen=True)
class TargetItem:
    level1: str  # 一级指标, e.g. 产出指标
    level2: str  # 二级指标, e.g. 数量指标
    level3: str  # 三级指标 (the row's name)
    indicator: str | None  # registry code whose value is B; None → B is given (actual) or missing
    target: float  # A (年度指标值)
    weight: float  # w (分值)
    direction: str | None  # None → the registry's direction for the indicator (else positive)
    unit_label: str | None  # 单位 as printed (公顷, %, 个 …); None → from the indicator
    symbol: str | None  # ≥ / ≤ / = as printed; None → from the direction
    actual: float | None  # B given by hand (for rows no indicator computes, e.g. 满意度)
    area_unit: str | None  # m2 | ha | mu for area indicators (None → the file's area_unit)
    note: str
    thresholds: tuple[Threshold, ...]


@dataclass(frozen=True)
class Targets:
    title: str
    unit_code: str | None  # the 行政区 the table is for (None → the county)
    area_unit: str  # default area unit for area indicators
    total_weight: float
    items: tuple[TargetItem, ...]


def parse_targets(doc) -> Targets:
    """Check a targets mapping (data/targets.sample.yaml shows the format) and build Targets.

    Weights must add up to ``total_weight`` (default 100), else RuleError: a table whose 分值 do not add
    up cannot be compared with others.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list) or not doc["items"]:
        raise RuleError("targets: the file must hold a mapping with a non-empty 'items' list")
    bad = set(doc) - _TARGET_KEYS
    if bad:
        raise RuleError(f"targets: unknown key(s) {sorted(bad)}; allowed: {sorted(_TARGET_KEYS)}")
    area_unit = str(doc.get("area_unit", "ha"))
    if area_unit not in ("m2", "ha", "mu"):
        raise RuleError(f"targets: area_unit {area_unit!r} is unknown; use m2, ha or mu")
    items = []
    for k, raw in enumerate(doc["items"]):
        where = f"targets: items[{k}]"
        if not isinstance(raw, dict):
            raise RuleError(f"{where} must be a mapping")
        bad = set(raw) - _ITEM_KEYS
        if bad:
            raise RuleError(f"{where}: unknown key(s) {sorted(bad)}; allowed: {sorted(_ITEM_KEYS)}")
        for key in ("level1", "level2", "level3"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise RuleError(f"{where}: {key} (一级/二级/三级指标 text) is required")
        where = f"targets: item {raw['level3']!r}"
        if raw.get("indicator") is None and "actual" not in raw:
            raise RuleError(f"{where}: give 'indicator' (a registry code) or 'actual' (B by hand; null = missing)")
        direction = raw.get("direction")
        if direction is not None and direction not in DIRECTIONS:
            raise RuleError(f"{where}: direction {direction!r} is unknown; use positive or reverse")
        unit = raw.get("area_unit")
        if unit is not None and unit not in ("m2", "ha", "mu"):
            raise RuleError(f"{where}: area_unit {unit!r} is unknown; use m2, ha or mu")

        def number(key, required):
            value = raw.get(key)
            if value is None:
                if required:
                    raise RuleError(f"{where}: {key} is required (a number)")
                return None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RuleError(f"{where}: {key} must be a number, got {value!r}")
            return float(value)

        items.append(TargetItem(
            raw["level1"].strip(), raw["level2"].strip(), raw["level3"].strip(), raw.get("indicator"),
            number("target", True), number("weight", True), direction, raw.get("unit_label"), raw.get("symbol"),
            number("actual", False), unit, str(raw.get("note", "")),
            tuple(parse_threshold(t, f"{where} thresholds[{j}]") for j, t in enumerate(raw.get("thresholds") or []))))
    total_weight = float(doc.get("total_weight", 100))
    weights = sum(i.weight for i in items)
    if abs(weights - total_weight) > 1e-9:
        raise RuleError(f"targets: the weights (分值) add up to {weights:g}, not {total_weight:g}; "
                        "fix the weights or set total_weight")
    return Targets(str(doc.get("title", "绩效自评表")), None if doc.get("unit_code") is None
                   else str(doc["unit_code"]), area_unit, total_weight, tuple(items))

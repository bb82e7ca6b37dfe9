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

Other scoring rules, as data (``scoring:`` in the targets file, :class:`ScoringRule`):

* ``step`` — full marks from ``full_at`` on (default: the target A); below it, ``deduct`` points per step of
  ``step`` (in the indicator's unit), a started step counting as a whole one (``partial: ceil``; ``floor``
  counts whole steps only); never below ``min_score``. Reverse: steps above ``full_at``. Seed 000's
  预算执行率: full_at 100, step 1, deduct 0.5 → 99.89 % is one started step below → 10 − 0.5 = 9.5.
* ``bands`` — the first band the value reaches gives the points: positive ``{min: 95, score: 10}`` (B ≥ 95),
  reverse ``{max: 10, score: 10}`` (B ≤ 10); ``share:`` instead of ``score:`` gives a share of w; a value no
  band reaches scores ``min_score`` (0).
* any rule: ``max_score`` caps the points; ``zero_when: {op, value}`` gives 0 when B crosses the line (e.g.
  违法占用耕地比例 ≥ 15 → 0).

Targets per unit: an item's ``target`` is the target of the file's ``unit_code``; ``targets: {code: A}`` gives
the target of other units (a 乡镇 scored against its own, never the county's). A unit with no target of its own
shows 无目标 and is left out of the total (the table states the weight it was scored out of).
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


STATUS_NO_TARGET = "无目标"
RULE_KINDS = ("proportional", "step", "bands")
STEP_PARTIAL = ("ceil", "floor")


@dataclass(frozen=True)
class Band:
    bound: float  # min (positive) or max (reverse) value of the band
    points: float | None  # points, or
    share: float | None  # a share of the weight


@dataclass(frozen=True)
class ScoringRule:
    """How a row's score follows from A, B and w (module docstring)."""

    name: str = "proportional"
    kind: str = "proportional"
    full_at: float | None = None  # step: full marks from here (None → the target A)
    step: float = 1.0
    deduct: float = 0.0
    partial: str = "ceil"
    bands: tuple[Band, ...] = ()
    min_score: float = 0.0
    max_score: float | None = None
    zero_when: Threshold | None = None

    def describe(self) -> str:
        if self.kind == "step":
            full = "A" if self.full_at is None else f"{self.full_at:g}"
            text = (f"达到 {full} 得满分, 每偏离 {self.step:g} 扣 {self.deduct:g} 分"
                    f"（{'不足一档按一档计' if self.partial == 'ceil' else '按整档计'}）")
        elif self.kind == "bands":
            text = "分档计分: " + "; ".join(
                f"{b.bound:g} → {b.points:g} 分" if b.points is not None else f"{b.bound:g} → {b.share:.0%}"
                for b in self.bands)
        else:
            text = "w × min(B/A, 1)"
        if self.max_score is not None:
            text += f"; 最高 {self.max_score:g} 分"
        if self.zero_when is not None:
            text += f"; B {self.zero_when.op} {self.zero_when.value:g} 记 0 分"
        return text


PROPORTIONAL = ScoringRule()


@dataclass(frozen=True)
class Score:
    ratio: float | None  # completion 0..1 (capped), None when B is missing
    score: float | None  # points, rounded to 2 decimals (None: no target for this unit)
    status: str  # 完成 / 未完成 / 缺失 / 无目标
    note: str  # which rule applied, in words


def no_target(name: str = "") -> Score:
    return Score(None, None, STATUS_NO_TARGET, "本单位未设定目标, 不计分")


def score_item(target, actual, weight, direction: str = POSITIVE, name: str = "",
               rule: ScoringRule | None = None) -> Score:
    """Score one row of the 绩效自评表 under ``rule`` (default proportional; module docstring)."""
    base = _proportional(target, actual, weight, direction, name)
    rule = rule or PROPORTIONAL
    if base.status == STATUS_MISSING:
        return base
    weight, actual, target = float(weight), float(actual), float(target)
    if rule.kind == "step":
        points, note = _step_points(rule, target, actual, weight, direction)
    elif rule.kind == "bands":
        points, note = _band_points(rule, actual, weight, direction)
    else:
        points, note = base.score, base.note
    if rule.zero_when is not None and rule.zero_when.crossed(actual):
        points, note = 0.0, f"B {rule.zero_when.op} {rule.zero_when.value:g}, 记 0 分"
    if rule.max_score is not None and points > rule.max_score:
        points, note = rule.max_score, note + f"; 最高 {rule.max_score:g} 分"
    points = min(max(round_half_up(points, 2), 0.0), weight)
    if rule.kind == "proportional" and rule.zero_when is None and rule.max_score is None:
        return base
    status = STATUS_OK if points >= weight else STATUS_PARTIAL
    return Score(base.ratio, points, status, note)


def _step_points(rule: ScoringRule, target: float, actual: float, weight: float, direction: str):
    full = target if rule.full_at is None else rule.full_at
    gap = (full - actual) if direction == POSITIVE else (actual - full)
    if gap <= 1e-12:
        return weight, f"达到 {full:g}, 得满分"
    steps = math.ceil(gap / rule.step - 1e-9) if rule.partial == "ceil" else math.floor(gap / rule.step + 1e-9)
    points = max(weight - steps * rule.deduct, rule.min_score)
    side = "低于" if direction == POSITIVE else "高于"
    return points, (f"{side} {full:g} 共 {gap:g}, 计 {steps} 档 × {rule.deduct:g} 分"
                    f"（每档 {rule.step:g}{', 不足一档按一档计' if rule.partial == 'ceil' else ''}）, "
                    f"得 {weight:g} − {steps * rule.deduct:g}")


def _band_points(rule: ScoringRule, actual: float, weight: float, direction: str):
    for band in rule.bands:
        reached = actual >= band.bound - 1e-12 if direction == POSITIVE else actual <= band.bound + 1e-12
        if reached:
            points = band.points if band.points is not None else weight * band.share
            op = "≥" if direction == POSITIVE else "≤"
            return points, f"B {op} {band.bound:g}, 得 {points:g} 分"
    return rule.min_score, f"B 未达任何档次, 得 {rule.min_score:g} 分"


def _proportional(target, actual, weight, direction: str = POSITIVE, name: str = "") -> Score:
    """The proportional rule with every edge case of the module docstring."""
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
    """Sum of the rounded item scores (so the table's column adds up to its total); rows without a target for
    the unit (无目标) are left out."""
    return round_half_up(sum(s.score for s in scores if s.score is not None), 2)


# --- the targets file (绩效自评表 definition) ---------------------------------------------------------------

SYMBOLS = {POSITIVE: "≥", REVERSE: "≤"}
_TARGET_KEYS = {"title", "unit_code", "area_unit", "total_weight", "items", "version", "scoring"}
_ITEM_KEYS = {"level1", "level2", "level3", "indicator", "target", "targets", "weight", "direction", "unit_label",
              "symbol", "actual", "actuals", "area_unit", "note", "thresholds", "scoring"}
_RULE_KEYS = {"kind", "full_at", "step", "deduct", "partial", "bands", "min_score", "max_score", "zero_when",
              "note"}


def _rule_number(raw: dict, key: str, where: str, default=None, positive=False):
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(f"{where}: {key} must be a number, got {value!r}")
    if positive and value <= 0:
        raise RuleError(f"{where}: {key} must be > 0, got {value!r}")
    return float(value)


def parse_scoring_rule(name: str, raw, where: str) -> ScoringRule:
    """One named scoring rule of the targets file's ``scoring:`` section (module docstring)."""
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: a scoring rule is a mapping with kind: {' | '.join(RULE_KINDS)}")
    bad = set(raw) - _RULE_KEYS
    if bad:
        raise RuleError(f"{where}: unknown key(s) {sorted(bad)}; allowed: {sorted(_RULE_KEYS)}")
    kind = raw.get("kind", "proportional")
    if kind not in RULE_KINDS:
        raise RuleError(f"{where}: kind {kind!r} is unknown; use one of {list(RULE_KINDS)}")
    partial = raw.get("partial", "ceil")
    if partial not in STEP_PARTIAL:
        raise RuleError(f"{where}: partial {partial!r} is unknown; use ceil (a started step counts) or floor")
    bands = []
    if kind == "bands":
        raw_bands = raw.get("bands")
        if not isinstance(raw_bands, list) or not raw_bands:
            raise RuleError(f"{where}: kind bands needs a list bands: [{{min: 95, score: 10}}, …]")
        for j, b in enumerate(raw_bands):
            bw = f"{where} bands[{j}]"
            if not isinstance(b, dict) or len({"min", "max"} & set(b)) != 1 or len({"score", "share"} & set(b)) != 1:
                raise RuleError(f"{bw}: give one of min / max and one of score / share, e.g. {{min: 95, score: 10}}")
            bound = _rule_number(b, "min" if "min" in b else "max", bw)
            bands.append(Band(bound, _rule_number(b, "score", bw), _rule_number(b, "share", bw)))
    if kind == "step" and raw.get("deduct") is None:
        raise RuleError(f"{where}: kind step needs deduct: (points per step)")
    zero = raw.get("zero_when")
    return ScoringRule(
        name=name, kind=kind, full_at=_rule_number(raw, "full_at", where),
        step=_rule_number(raw, "step", where, 1.0, positive=True), deduct=_rule_number(raw, "deduct", where, 0.0),
        partial=partial, bands=tuple(bands), min_score=_rule_number(raw, "min_score", where, 0.0),
        max_score=_rule_number(raw, "max_score", where),
        zero_when=None if zero is None else parse_threshold(zero, f"{where} zero_when"))


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
    targets: tuple[tuple[str, float], ...] = ()  # per-unit targets: (unit code, A)
    actuals: tuple[tuple[str, float | None], ...] = ()  # per-unit hand-given B
    rule: ScoringRule = PROPORTIONAL

    def target_for(self, unit_code: str, file_unit: str | None) -> float | None:
        """A for ``unit_code``: its own entry in targets, else ``target`` when it is the file's unit; None when
        the unit has no target of its own (never another unit's)."""
        own = dict(self.targets)
        if unit_code in own:
            return own[unit_code]
        if file_unit is None or unit_code == file_unit:
            return self.target
        return None

    def actual_for(self, unit_code: str, file_unit: str | None) -> float | None:
        own = dict(self.actuals)
        if unit_code in own:
            return own[unit_code]
        return self.actual if (file_unit is None or unit_code == file_unit) else None


@dataclass(frozen=True)
class Targets:
    title: str
    unit_code: str | None  # the 行政区 the table is for (None → the county)
    area_unit: str  # default area unit for area indicators
    total_weight: float
    items: tuple[TargetItem, ...]
    rules: tuple[ScoringRule, ...] = ()


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
    raw_rules = doc.get("scoring") or {}
    if not isinstance(raw_rules, dict):
        raise RuleError("targets: scoring must map rule names to rules, e.g. {budget: {kind: step, …}}")
    rules = {"proportional": PROPORTIONAL}
    for name, raw_rule in raw_rules.items():
        rules[str(name)] = parse_scoring_rule(str(name), raw_rule, f"targets: scoring.{name}")
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

        def per_unit(key, allow_none):
            value = raw.get(key) or {}
            if not isinstance(value, dict):
                raise RuleError(f"{where}: {key} must map unit codes to numbers, e.g. {{\"130599100\": 5}}")
            out = []
            for code, v in value.items():
                if (v is None and not allow_none) or (v is not None and (isinstance(v, bool)
                                                                          or not isinstance(v, (int, float)))):
                    raise RuleError(f"{where}: {key}.{code} must be a number, got {v!r}")
                out.append((str(code).strip(), None if v is None else float(v)))
            return tuple(out)

        rule_name = raw.get("scoring", "proportional")
        if rule_name not in rules:
            raise RuleError(f"{where}: scoring {rule_name!r} is not a rule of the file; define it under scoring: "
                            f"(known: {sorted(rules)})")
        target = number("target", not raw.get("targets"))
        items.append(TargetItem(
            raw["level1"].strip(), raw["level2"].strip(), raw["level3"].strip(), raw.get("indicator"),
            target, number("weight", True), direction, raw.get("unit_label"), raw.get("symbol"),
            number("actual", False), unit, str(raw.get("note", "")),
            tuple(parse_threshold(t, f"{where} thresholds[{j}]") for j, t in enumerate(raw.get("thresholds") or [])),
            per_unit("targets", False), per_unit("actuals", True), rules[rule_name]))
    total_weight = float(doc.get("total_weight", 100))
    weights = sum(i.weight for i in items)
    if abs(weights - total_weight) > 1e-9:
        raise RuleError(f"targets: the weights (分值) add up to {weights:g}, not {total_weight:g}; "
                        "fix the weights or set total_weight")
    return Targets(str(doc.get("title", "绩效自评表")), None if doc.get("unit_code") is None
                   else str(doc["unit_code"]), area_unit, total_weight, tuple(items),
                   tuple(r for name, r in rules.items() if name != "proportional"))

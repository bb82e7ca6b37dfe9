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
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from layers.errors import RuleError

from .balance import round_half_up
from .validation import RuleModel, worded

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
            points = band.points if band.points is not None else weight * (band.share or 0.0)
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
def _number(value):
    """A number as YAML gives it (not a string of digits, not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r}")
    return float(value)


def _optional_number(value):
    return None if value is None else _number(value)


def _per_unit(allow_none: bool):
    def check(value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f'must map unit codes to numbers, e.g. {{"130599100": 5}}, got {value!r}')
        out = {}
        for code, v in value.items():
            if v is None and allow_none:
                out[str(code).strip()] = None
                continue
            try:
                out[str(code).strip()] = _number(v)
            except ValueError:
                raise ValueError(f"{code} must be a number, got {v!r}") from None
        return out
    return check


def _one_of(choices: tuple[str, ...], what: str):
    def check(value):
        if value not in choices:
            raise ValueError(f"{value!r} is unknown; use {' or '.join(choices)}" if len(choices) <= 3 else
                             f"{value!r} is unknown; use one of {list(choices)}")
        return value
    return check


Number = Annotated[float, BeforeValidator(_number)]
OptionalNumber = Annotated[float | None, BeforeValidator(_optional_number)]


class BandDoc(RuleModel):
    min: OptionalNumber = None
    max: OptionalNumber = None
    score: OptionalNumber = None
    share: OptionalNumber = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, raw):
        if not isinstance(raw, dict) or len({"min", "max"} & set(raw)) != 1 or len({"score", "share"} & set(raw)) != 1:
            raise ValueError("give one of min / max and one of score / share, e.g. {min: 95, score: 10}")
        return raw


class ScoringRuleDoc(RuleModel):
    kind: Annotated[str, AfterValidator(_one_of(RULE_KINDS, "kind"))] = "proportional"
    full_at: OptionalNumber = None
    step: Annotated[float, BeforeValidator(_number), Field(gt=0.0)] = 1.0
    deduct: OptionalNumber = None
    partial: Annotated[str, AfterValidator(_one_of(STEP_PARTIAL, "partial"))] = "ceil"
    bands: list[BandDoc] = Field(default_factory=list)
    min_score: Number = 0.0
    max_score: OptionalNumber = None
    zero_when: dict | None = None
    note: str = ""

    @model_validator(mode="after")
    def _complete(self):
        if self.kind == "bands" and not self.bands:
            raise ValueError("kind bands needs a list bands: [{min: 95, score: 10}, …]")
        if self.kind == "step" and self.deduct is None:
            raise ValueError("kind step needs deduct: (points per step)")
        return self


class TargetItemDoc(RuleModel):
    level1: Annotated[str, BeforeValidator(lambda v: _text_or_fail(v, "level1"))]
    level2: Annotated[str, BeforeValidator(lambda v: _text_or_fail(v, "level2"))]
    level3: Annotated[str, BeforeValidator(lambda v: _text_or_fail(v, "level3"))]
    indicator: str | None = None
    target: OptionalNumber = None
    targets: Annotated[dict[str, float], BeforeValidator(_per_unit(False))] = Field(default_factory=dict)
    weight: Number
    direction: Annotated[str | None, AfterValidator(lambda v: v if v is None else _one_of(
        tuple(DIRECTIONS), "direction")(v))] = None
    unit_label: str | None = None
    symbol: str | None = None
    actual: OptionalNumber = None
    actuals: Annotated[dict[str, float | None], BeforeValidator(_per_unit(True))] = Field(default_factory=dict)
    area_unit: Annotated[str | None, AfterValidator(lambda v: v if v is None else _one_of(
        ("m2", "ha", "mu"), "area_unit")(v))] = None
    note: str = ""
    thresholds: list[dict] = Field(default_factory=list)
    scoring: str = "proportional"

    @model_validator(mode="before")
    @classmethod
    def _b_from_somewhere(cls, raw):
        if isinstance(raw, dict) and raw.get("indicator") is None and "actual" not in raw:
            raise ValueError(f"item {raw.get('level3')!r}: give 'indicator' (a registry code) or 'actual' (B by "
                             "hand; null = missing)")
        if isinstance(raw, dict) and raw.get("target") is None and not raw.get("targets"):
            raise ValueError(f"item {raw.get('level3')!r}: target is required (a number), or targets: per unit")
        return raw


def _text_or_fail(value, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"(一级/二级/三级指标 text) is required, got {value!r}")
    return value.strip()


class TargetsDoc(RuleModel):
    title: str = "绩效自评表"
    unit_code: Annotated[str | None, BeforeValidator(lambda v: None if v is None else str(v).strip())] = None
    area_unit: Annotated[str, AfterValidator(_one_of(("m2", "ha", "mu"), "area_unit"))] = "ha"
    total_weight: Number = 100.0
    items: Annotated[list[TargetItemDoc], Field(min_length=1)]
    version: int | None = None
    scoring: dict[str, ScoringRuleDoc] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self):
        for item in self.items:
            if item.scoring != "proportional" and item.scoring not in self.scoring:
                raise ValueError(f"item {item.level3!r}: scoring {item.scoring!r} is not a rule of the file; define it "
                                 f"under scoring: (known: {sorted({'proportional', *self.scoring})})")
        weights = sum(i.weight for i in self.items)
        if abs(weights - self.total_weight) > 1e-9:
            raise ValueError(f"the weights (分值) add up to {weights:g}, not {self.total_weight:g}; fix the weights or "
                             "set total_weight")
        return self


def _rule_of(name: str, doc: ScoringRuleDoc, where: str) -> ScoringRule:
    return ScoringRule(
        name=name, kind=doc.kind, full_at=doc.full_at, step=doc.step, deduct=doc.deduct or 0.0,
        partial=doc.partial,
        bands=tuple(Band(b.min if b.min is not None else b.max, b.score, b.share)  # type: ignore[arg-type]
                    for b in doc.bands),
        min_score=doc.min_score, max_score=doc.max_score,
        zero_when=None if doc.zero_when is None else parse_threshold(doc.zero_when, f"{where} zero_when"))


def parse_scoring_rule(name: str, raw, where: str) -> ScoringRule:
    """One named scoring rule of the targets file's ``scoring:`` section (module docstring)."""
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: a scoring rule is a mapping with kind: {' | '.join(RULE_KINDS)}")
    try:
        doc = ScoringRuleDoc.model_validate(raw)
    except ValidationError as exc:
        raise RuleError(f"{where}: {worded(exc, ScoringRuleDoc)}") from None
    return _rule_of(name, doc, where)


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
    """Check a targets mapping (data/targets.sample.yaml shows the format; a typed model, :class:`TargetsDoc`) and
    build Targets. Weights must add up to ``total_weight`` (default 100), else RuleError: a table whose 分值 do not
    add up cannot be compared with others."""
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list) or not doc["items"]:
        raise RuleError("targets: the file must hold a mapping with a non-empty 'items' list")
    try:
        d = TargetsDoc.model_validate(doc)
    except ValidationError as exc:
        raise RuleError(f"targets: {worded(exc, TargetsDoc)}") from None
    rules = {"proportional": PROPORTIONAL,
             **{name: _rule_of(name, r, f"targets: scoring.{name}") for name, r in d.scoring.items()}}
    items = []
    for it in d.items:
        where = f"targets: item {it.level3!r}"
        items.append(TargetItem(
            it.level1, it.level2, it.level3, it.indicator, it.target, it.weight,  # type: ignore[arg-type]
            it.direction, it.unit_label, it.symbol, it.actual, it.area_unit, it.note,
            tuple(parse_threshold(t, f"{where} thresholds[{j}]") for j, t in enumerate(it.thresholds)),
            tuple(it.targets.items()), tuple(it.actuals.items()), rules[it.scoring]))
    return Targets(d.title, d.unit_code, d.area_unit, d.total_weight, tuple(items),
                   tuple(r for name, r in rules.items() if name != "proportional"))

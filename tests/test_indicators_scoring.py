"""绩效自评表 scoring: the edge-case table of analysis/scoring.py, the targets file, thresholds."""

import math

import pytest

from analysis.scoring import crossed_thresholds, parse_targets, parse_threshold, score_item, total_score
from layers.errors import RuleError

NAN = float("nan")


@pytest.mark.parametrize("direction,target,actual,weight,score,ratio,status", [
    # positive: w · min(B/A, 1)
    ("positive", 100, 95, 10, 9.5, 0.95, "未完成"),
    ("positive", 100, 120, 10, 10.0, 1.0, "完成"),       # capped at w
    ("positive", 64, 64, 15, 15.0, 1.0, "完成"),
    ("positive", 3, 1, 10, 3.33, 1 / 3, "未完成"),      # rounded half-up to 2 decimals
    ("positive", 100, 0, 10, 0.0, 0.0, "未完成"),       # B = 0
    ("positive", 100, -5, 10, 0.0, 0.0, "未完成"),      # B < 0: no progress
    ("positive", 0, 0, 10, 10.0, 1.0, "完成"),          # A = 0: any B ≥ 0 meets it
    ("positive", 0, 7, 10, 10.0, 1.0, "完成"),
    ("positive", 0, -1, 10, 0.0, 0.0, "未完成"),
    ("positive", 100, None, 10, 0.0, None, "缺失"),     # B missing
    ("positive", 100, NAN, 10, 0.0, None, "缺失"),
    # reverse: w · min(A/B, 1)
    ("reverse", 10, 5, 10, 10.0, 1.0, "完成"),
    ("reverse", 10, 20, 10, 5.0, 0.5, "未完成"),
    ("reverse", 10, 0, 10, 10.0, 1.0, "完成"),          # B = 0: nothing happened
    ("reverse", 0, 0, 10, 10.0, 1.0, "完成"),           # zero tolerance, met
    ("reverse", 0, 0.01, 10, 0.0, 0.0, "未完成"),       # zero tolerance, missed
    ("reverse", 10, -3, 10, 10.0, 1.0, "完成"),         # B < 0 ≤ A
    ("reverse", 10, None, 10, 0.0, None, "缺失"),
    ("positive", 100, 50, 0, 0.0, 0.5, "未完成"),       # weight 0
])
def test_edge_cases(direction, target, actual, weight, score, ratio, status):
    s = score_item(target, actual, weight, direction)
    assert s.score == score
    assert s.status == status
    if ratio is None:
        assert s.ratio is None
    else:
        assert s.ratio == pytest.approx(ratio)
    assert 0 <= s.score <= weight


@pytest.mark.parametrize("target,actual,weight,direction,message", [
    (-1, 5, 10, "positive", "negative"),
    (None, 5, 10, "positive", "no target"),
    (NAN, 5, 10, "reverse", "no target"),
    (10, 5, -1, "positive", "negative"),
    (10, 5, None, "positive", "no weight"),
    (10, 5, 10, "sideways", "direction"),
])
def test_invalid_rows_raise(target, actual, weight, direction, message):
    with pytest.raises(RuleError, match=message):
        score_item(target, actual, weight, direction, "x")


def test_total_is_the_sum_of_rounded_scores():
    scores = [score_item(3, 1, 10), score_item(3, 1, 10), score_item(3, 1, 10)]
    assert [s.score for s in scores] == [3.33, 3.33, 3.33]
    assert total_score(scores) == 9.99  # not 10.0: the column adds up to its total


def test_thresholds():
    ts = [parse_threshold({"op": ">=", "value": 10, "label": "约谈"}, "t"),
          parse_threshold({"op": ">=", "value": 15, "label": "问责", "severity": "critical"}, "t")]
    assert [t.label for t in crossed_thresholds(9.99, ts)] == []
    assert [t.label for t in crossed_thresholds(10, ts)] == ["约谈"]
    assert [t.label for t in crossed_thresholds(15, ts)] == ["约谈", "问责"]
    assert crossed_thresholds(None, ts) == [] and crossed_thresholds(math.nan, ts) == []
    with pytest.raises(RuleError, match="op"):
        parse_threshold({"op": "=>", "value": 1}, "t")


def _doc(weights=(60, 40)):
    return {"title": "t", "items": [
        {"level1": "产出指标", "level2": "数量指标", "level3": "调查图斑数", "indicator": "patches_checked",
         "target": 10, "weight": weights[0]},
        {"level1": "满意度指标", "level2": "服务对象满意度", "level3": "群众满意度", "actual": 95, "target": 90,
         "weight": weights[1], "unit_label": "%"},
    ]}


def test_targets_parse():
    t = parse_targets(_doc())
    assert [i.level3 for i in t.items] == ["调查图斑数", "群众满意度"]
    assert t.items[1].actual == 95 and t.total_weight == 100


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["items"][0].update(weight=50), "add up to 90"),
    (lambda d: d["items"][0].pop("level2"), "level2"),
    (lambda d: d["items"][1].pop("actual"), "indicator"),
    (lambda d: d["items"][0].update(target="many"), "number"),
    (lambda d: d.update(colour="red"), "unknown key"),
    (lambda d: d["items"][0].update(direction="up"), "direction"),
])
def test_targets_errors(mutate, message):
    doc = _doc()
    mutate(doc)
    with pytest.raises(RuleError, match=message):
        parse_targets(doc)


# --- scoring rules as data, targets per unit ------------------------------------------------------------------

def _rule(raw, name="r"):
    from analysis.scoring import parse_scoring_rule

    return parse_scoring_rule(name, raw, "test")


BUDGET = {"kind": "step", "full_at": 100, "step": 1, "deduct": 0.5, "partial": "ceil"}


@pytest.mark.parametrize("actual,score", [
    (99.89, 9.5),   # seed 000: 0.11 below 100 is one started point → 10 − 0.5
    (100, 10.0),
    (100.5, 10.0),
    (99.0, 9.5),    # exactly one point
    (98.99, 9.0),   # a second point started
    (90.0, 5.0),
    (70.0, 0.0),    # 15 points off the 10: floored at min_score 0
])
def test_step_rule_reproduces_the_seed_budget_row(actual, score):
    """The 财政 rule of seed 000 (预算执行率 99.89 % → 9.5 of 10), spelled out by hand for the other rows."""
    s = score_item(95, actual, 10, "positive", rule=_rule(BUDGET))
    assert s.score == score
    assert s.ratio == pytest.approx(min(actual / 95, 1))  # the 完成率 column still shows B/A


def test_step_rule_counting_whole_steps_only_and_reverse():
    floor = _rule({**BUDGET, "partial": "floor"})
    assert score_item(95, 99.89, 10, rule=floor).score == 10.0
    assert score_item(95, 98.5, 10, rule=floor).score == 9.5
    # reverse: 违法用地宗数 target 10, 1 point off per case above it
    cases = _rule({"kind": "step", "step": 1, "deduct": 1})
    assert [score_item(10, b, 10, "reverse", rule=cases).score for b in (8, 10, 11, 13, 25)] == [10, 10, 9, 7, 0]


def test_bands_caps_and_zero_rules():
    bands = _rule({"kind": "bands", "bands": [{"min": 95, "score": 10}, {"min": 90, "share": 0.8},
                                              {"min": 80, "score": 5}]})
    assert [score_item(100, b, 10, rule=bands).score for b in (97, 95, 92, 80, 79.9)] == [10, 10, 8, 5, 0]
    reverse_bands = _rule({"kind": "bands", "bands": [{"max": 10, "score": 10}, {"max": 15, "score": 6}]})
    assert [score_item(10, b, 10, "reverse", rule=reverse_bands).score for b in (9, 12, 16)] == [10, 6, 0]
    zero = _rule({"kind": "proportional", "zero_when": {"op": ">=", "value": 15}})
    assert score_item(10, 12, 10, "reverse", rule=zero).score == round(10 * 10 / 12, 2)
    s = score_item(10, 15, 10, "reverse", rule=zero)
    assert s.score == 0.0 and s.note == "B >= 15, 记 0 分"
    cap = _rule({"kind": "proportional", "max_score": 8})
    assert score_item(100, 100, 10, rule=cap).score == 8.0


@pytest.mark.parametrize("raw,message", [
    ({"kind": "ladder"}, "kind 'ladder' is unknown"),
    ({"kind": "step"}, "needs deduct"),
    ({"kind": "step", "deduct": 0.5, "step": 0}, "step must be > 0"),
    ({"kind": "bands", "bands": [{"min": 1}]}, "one of score / share"),
    ({"kind": "step", "deduct": 0.5, "partial": "round"}, "partial 'round'"),
])
def test_scoring_rule_errors(raw, message):
    with pytest.raises(RuleError, match=message):
        _rule(raw)


def test_an_item_names_an_undefined_rule():
    doc = _doc()
    doc["items"][0]["scoring"] = "budget"
    with pytest.raises(RuleError, match="scoring 'budget' is not a rule of the file"):
        parse_targets(doc)


def test_targets_per_unit_never_borrow_the_county_target():
    doc = _doc()
    doc["unit_code"] = "130599"
    doc["items"][0]["targets"] = {"130599100": 4}
    t = parse_targets(doc)
    item = t.items[0]
    assert item.target_for("130599", t.unit_code) == 10
    assert item.target_for("130599100", t.unit_code) == 4
    assert item.target_for("130599101", t.unit_code) is None  # no target of its own: 无目标
    assert t.items[1].target_for("130599100", t.unit_code) is None
    assert t.items[1].actual_for("130599100", t.unit_code) is None  # B by hand is the county's
    from analysis.scoring import no_target

    assert total_score([score_item(10, 5, 10), no_target()]) == 5.0

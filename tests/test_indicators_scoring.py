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

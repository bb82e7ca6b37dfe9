"""The status workflow as data (analysis/workflow.py + workflow.yaml): allowed and refused moves, with reasons."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml

from analysis.workflow import (
    DEFAULT_WORKFLOW_PATH,
    RoleError,
    TransitionError,
    load_workflow,
    match_states,
    parse_workflow,
)
from layers.errors import ConflictError, FieldError, RuleError


@pytest.fixture(scope="module")
def wf():
    return load_workflow()


def test_default_file_lists_the_domain_statuses(wf):
    assert list(wf.statuses) == ["待核查", "已核查", "立案", "整改中", "已整改", "销号"]
    assert wf.initial == "待核查"
    assert list(wf.judgements) == ["合法", "违法", "其他"]
    assert wf.statuses["销号"]["final"] is True


@pytest.mark.parametrize("status, judgement, to, new, role, note, evidence, name", [
    ("待核查", None, "已核查", "违法", "inspector", None, 0, "现场核查认定"),
    ("待核查", None, "已核查", "合法", "admin", "", 0, "现场核查认定"),
    ("已核查", "违法", "已核查", "其他", "inspector", "更正", 0, "更正认定"),
    ("已核查", "违法", "立案", None, "inspector", "立案查处", 0, "立案查处"),
    ("已核查", "合法", "销号", None, "inspector", "手续齐全", 0, "核查销号"),
    ("已核查", "其他", "销号", None, "inspector", "伪变化", 0, "核查销号"),
    ("立案", "违法", "整改中", None, "inspector", None, 0, "下达整改"),
    ("整改中", "违法", "已整改", None, "inspector", "已拆除", 1, "整改完成"),
    ("已整改", "违法", "销号", None, "inspector", "验收", 0, "整改销号"),
    ("已核查", "违法", "待核查", None, "admin", "认定有误", 0, "退回重新核查"),
])
def test_allowed_moves(wf, status, judgement, to, new, role, note, evidence, name):
    move = wf.check(status=status, judgement=judgement, to=to, new_judgement=new, role=role, note=note,
                    evidence_count=evidence)
    assert move.name == name
    assert wf.refusal(status=status, judgement=judgement, to=to, new_judgement=new, role=role, note=note,
                      evidence_count=evidence) is None


@pytest.mark.parametrize("status, judgement, to, new, role, note, evidence, error, words", [
    ("待核查", None, "立案", None, "inspector", "x", 0, TransitionError, "cannot move to 立案"),
    ("待核查", None, "销号", None, "admin", "x", 0, TransitionError, "allowed from here: → 已核查"),
    ("已核查", "违法", "销号", None, "inspector", "x", 0, TransitionError, "needs judgement 其他 / 合法"),
    ("已核查", "合法", "立案", None, "inspector", "x", 0, TransitionError, "needs judgement 违法"),
    ("销号", "合法", "待核查", None, "admin", "x", 0, TransitionError, "final"),
    ("整改中", "违法", "已整改", None, "inspector", "done", 0, TransitionError, "needs evidence"),
    ("已核查", "违法", "待核查", None, "inspector", "x", 0, RoleError, "needs role admin"),
    ("待核查", None, "已核查", "违法", "planner", None, 0, RoleError, "caller is planner"),
    ("待核查", None, "已核查", None, "inspector", None, 0, FieldError, "records a judgement"),
    ("待核查", None, "已核查", "非法", "inspector", None, 0, FieldError, "judgement '非法' is unknown"),
    ("已核查", "违法", "立案", "违法", "inspector", "x", 0, FieldError, "does not take a judgement"),
    ("已核查", "违法", "立案", None, "inspector", "  ", 0, FieldError, "needs a note"),
    ("已核查", "违法", "归档", None, "inspector", "x", 0, FieldError, "status '归档' is unknown"),
    ("奇怪", None, "已核查", "违法", "inspector", "x", 0, TransitionError, "does not know"),
])
def test_refused_moves_say_why(wf, status, judgement, to, new, role, note, evidence, error, words):
    with pytest.raises(error) as info:
        wf.check(status=status, judgement=judgement, to=to, new_judgement=new, role=role, note=note,
                 evidence_count=evidence, patch="patch X")
    assert words in str(info.value)
    assert wf.refusal(status=status, judgement=judgement, to=to, new_judgement=new, role=role, note=note,
                      evidence_count=evidence, patch="patch X") == str(info.value)


def test_transition_error_is_a_conflict():
    assert issubclass(TransitionError, ConflictError)


def test_allowed_moves_depend_on_role_and_judgement(wf):
    names = lambda moves: [m.name for m in moves]  # noqa: E731
    assert names(wf.allowed_moves("已核查", "违法", "inspector")) == ["更正认定", "立案查处"]
    assert names(wf.allowed_moves("已核查", "违法", "admin")) == ["更正认定", "立案查处", "退回重新核查"]
    assert names(wf.allowed_moves("已核查", "合法", "inspector")) == ["更正认定", "核查销号"]
    assert wf.allowed_moves("已核查", "违法", "planner") == []
    assert wf.allowed_moves("销号", "合法", "admin") == []
    assert wf.judgement_move("待核查").target == "已核查"
    assert wf.judgement_move("立案") is None


def test_judgement_is_kept_or_cleared(wf):
    keep = wf.check(status="已核查", judgement="违法", to="立案", new_judgement=None, role="inspector", note="x")
    assert wf.next_judgement(keep, "违法", None) == "违法"
    back = wf.check(status="已核查", judgement="违法", to="待核查", new_judgement=None, role="admin", note="x")
    assert wf.next_judgement(back, "违法", None) is None
    judge = wf.check(status="待核查", judgement=None, to="已核查", new_judgement="其他", role="inspector")
    assert wf.next_judgement(judge, None, "其他") == "其他"


def _doc():
    return yaml.safe_load(DEFAULT_WORKFLOW_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize("edit, words", [
    (lambda d: d.update(initial="新建"), "initial '新建'"),
    (lambda d: d.update(colour="red"), "unknown key(s) ['colour']"),
    (lambda d: d["transitions"].append({"from": "待核查", "to": "归档"}), "to '归档'"),
    (lambda d: d["transitions"].append({"from": "立案", "to": "销号", "role": "boss"}), "role 'boss'"),
    (lambda d: d["transitions"].append({"from": "立案", "to": "销号", "note": "maybe"}), "note 'maybe'"),
    (lambda d: d["transitions"].append({"from": "立案", "to": "销号", "when_judgement": ["非法"]}),
     "when_judgement"),
    (lambda d: d["transitions"].append(dict(d["transitions"][0])), "listed twice"),
    (lambda d: d["transitions"].append({"from": "立案", "to": "销号", "colour": 1}), "unknown key(s) ['colour']"),
    (lambda d: d.update(roles="admin"), "roles must be a list"),
    (lambda d: d.update(transitions=[]), "non-empty list"),
])
def test_malformed_workflow_files_are_refused(edit, words):
    doc = copy.deepcopy(_doc())
    edit(doc)
    with pytest.raises(RuleError) as info:
        parse_workflow(doc, "wf.yaml")
    assert words in str(info.value)
    assert "wf.yaml" in str(info.value)


def test_a_bureau_can_allow_more_moves():
    doc = _doc()
    doc["transitions"].append({"from": "立案", "to": "销号", "name": "撤案", "role": "admin", "note": "required"})
    wf = parse_workflow(doc)
    move = wf.check(status="立案", judgement="违法", to="销号", new_judgement=None, role="admin", note="撤案")
    assert move.name == "撤案"
    with pytest.raises(RoleError):
        wf.check(status="立案", judgement="违法", to="销号", new_judgement=None, role="inspector", note="撤案")


def test_match_states_by_jcbh_or_shared_source_id():
    # patches of a re-run: A kept its id; B's representative changed but it still holds the old id;
    # C is new; D merged two old cases (latest wins)
    patches = ["A", "B2", "C", "D"]
    sources = ['["A", "BG-1"]', '["B2", "B"]', '["C"]', '["D", "E", "F"]']
    states = {"case": ["A", "B", "E", "F"], "jcbh": ["A", "B", "E", "F"],
              "sources": ['["A"]', '["B"]', '["E"]', '["F"]'],
              "updated": ["2024-01-01", "2024-01-02", "2024-02-01", "2024-01-15"]}
    got = match_states(patches, sources, states["case"], states["jcbh"], states["sources"], states["updated"])
    assert got.tolist() == [0, 1, -1, 2]
    assert match_states([], [], [], [], []).tolist() == []
    assert isinstance(got, np.ndarray)

"""The enforcement workflow of a flagged patch (domain.md §6) as data: statuses, judgements, allowed moves.

待核查 → 已核查 (judgement 合法 / 违法 / 其他) → 立案 → 整改中 → 已整改 → 销号, plus the moves a bureau allows
(已核查 with 合法/其他 → 销号, re-judging, sending a patch back). The moves live in analysis/workflow.yaml; this
module parses them strictly and answers one question: may this patch, in this status with this judgement, be
moved to that status by a user with that role, with this note and this much evidence? If not, why not.

Pure: no I/O except :func:`load_workflow`, which the service calls with an explicit path (None → the packaged
default). Refusals are exceptions carrying the reason in words:

- :class:`TransitionError` (a ConflictError; HTTP 409): the move is not allowed from the patch's state;
- :class:`RoleError` (HTTP 403): the move needs a higher role;
- ``FieldError`` (HTTP 400): the request itself is malformed (unknown status or judgement, missing note …).

:func:`match_states` pairs workflow state rows with the patches of a (re-)analysis by JCBH or shared source ids,
so a re-run of ``yzt analyse`` keeps what staff recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from layers.errors import ConflictError, FieldError, YztError
from layers.yamlfile import read_yaml_file

from .validation import RuleModel, parse

DEFAULT_WORKFLOW_PATH = Path(__file__).with_name("workflow.yaml")


class TransitionError(ConflictError):
    """The requested move is not allowed from the patch's current status / judgement."""


class RoleError(YztError, PermissionError):
    """The requested move needs a higher role than the caller's."""


@dataclass(frozen=True)
class Transition:
    source: str
    target: str
    name: str
    role: str
    judgement: str = "forbidden"  # required | optional | forbidden
    when_judgement: tuple[str, ...] = ()
    note: str = "optional"  # required | optional
    evidence: str = "optional"  # required | optional
    clear_judgement: bool = False

    def as_dict(self) -> dict:
        return {"from": self.source, "to": self.target, "name": self.name, "role": self.role,
                "judgement": self.judgement, "when_judgement": list(self.when_judgement), "note": self.note,
                "evidence": self.evidence, "clear_judgement": self.clear_judgement}


@dataclass(frozen=True)
class Workflow:
    initial: str
    roles: tuple[str, ...]
    judgements: dict[str, str]  # 合法 → legal …
    statuses: dict[str, dict]  # 待核查 → {en, final}
    transitions: tuple[Transition, ...]
    document: dict = field(default_factory=dict, compare=False)

    # --- questions -----------------------------------------------------------------------------------
    def rank(self, role: str) -> int:
        return self.roles.index(role) + 1 if role in self.roles else 0

    def moves_from(self, status: str, judgement: str | None = None) -> list[Transition]:
        """Moves leaving ``status`` that the judgement allows (any role)."""
        return [t for t in self.transitions if t.source == status
                and (not t.when_judgement or (judgement or "") in t.when_judgement)]

    def allowed_moves(self, status: str, judgement: str | None, role: str) -> list[Transition]:
        """Moves the caller may make now (what the page offers as buttons)."""
        return [t for t in self.moves_from(status, judgement) if self.rank(role) >= self.rank(t.role)]

    def judgement_move(self, status: str) -> Transition | None:
        """The move that records an on-site judgement from ``status`` (待核查 → 已核查, 已核查 → 已核查 …)."""
        moves = [t for t in self.transitions if t.source == status and t.judgement == "required"]
        return moves[0] if moves else None

    def check(self, *, status: str, judgement: str | None, to: str, new_judgement: str | None, role: str,
              note: str | None = None, evidence_count: int = 0, patch: str = "the patch") -> Transition:
        """The transition to apply, or raise TransitionError / RoleError / FieldError with the reason."""
        if to not in self.statuses:
            raise FieldError(f"status {to!r} is unknown; statuses are {', '.join(self.statuses)}")
        if new_judgement is not None and new_judgement not in self.judgements:
            raise FieldError(f"judgement {new_judgement!r} is unknown; judgements are "
                             f"{', '.join(self.judgements)}")
        if status not in self.statuses:
            raise TransitionError(f"{patch} has status {status!r}, which the workflow does not know; an admin must "
                                  f"correct it (statuses: {', '.join(self.statuses)})")
        candidates = [t for t in self.transitions if t.source == status and t.target == to]
        if not candidates:
            raise TransitionError(f"{patch} is {status}: it cannot move to {to}; {self._options(status, judgement)}")
        fitting = [t for t in candidates if not t.when_judgement or (judgement or "") in t.when_judgement]
        if not fitting:
            needs = " / ".join(sorted({j for t in candidates for j in t.when_judgement}))
            raise TransitionError(f"{patch} is {status} with judgement {judgement or '（无）'}: {status} → {to} "
                                  f"needs judgement {needs}; {self._options(status, judgement)}")
        permitted = [t for t in fitting if self.rank(role) >= self.rank(t.role)]
        if not permitted:
            raise RoleError(f"{status} → {to} ({fitting[0].name}) needs role {fitting[0].role} or above; "
                            f"the caller is {role}")
        move = permitted[0]
        if move.judgement == "required" and not new_judgement:
            raise FieldError(f"{status} → {to} ({move.name}) records a judgement: give judgement = one of "
                             f"{', '.join(self.judgements)}")
        if move.judgement == "forbidden" and new_judgement:
            raise FieldError(f"{status} → {to} ({move.name}) does not take a judgement (got {new_judgement!r}); "
                             f"judgements are recorded by: {self._judging_moves()}")
        if move.note == "required" and not (note or "").strip():
            raise FieldError(f"{status} → {to} ({move.name}) needs a note (说明): say why")
        if move.evidence == "required" and evidence_count <= 0:
            raise TransitionError(f"{status} → {to} ({move.name}) needs evidence: upload at least one photo of the "
                                  f"site for {patch} since it became {status}, then retry")
        return move

    def refusal(self, **kwargs) -> str | None:
        """The reason :meth:`check` would refuse the move, None if it is allowed."""
        try:
            self.check(**kwargs)
        except (TransitionError, RoleError, FieldError) as exc:
            return str(exc)
        return None

    def next_judgement(self, move: Transition, current: str | None, given: str | None) -> str | None:
        if move.judgement in ("required", "optional") and given:
            return given
        return None if move.clear_judgement else current

    def _options(self, status: str, judgement: str | None) -> str:
        moves = self.moves_from(status, judgement)
        if not moves:
            final = self.statuses.get(status, {}).get("final")
            return "it is final (销号)" if final else "no move leaves it"
        return "allowed from here: " + "; ".join(f"→ {t.target} ({t.name})" for t in moves)

    def _judging_moves(self) -> str:
        return "; ".join(f"{t.source} → {t.target}" for t in self.transitions if t.judgement != "forbidden")

    def as_dict(self) -> dict:
        return {"initial": self.initial, "roles": list(self.roles), "judgements": dict(self.judgements),
                "statuses": {k: dict(v) for k, v in self.statuses.items()},
                "transitions": [t.as_dict() for t in self.transitions]}


# --- parsing ------------------------------------------------------------------------------------------------

class StatusDoc(RuleModel):
    en: str | None = None
    final: bool = False


class TransitionDoc(RuleModel):
    """One move of the workflow file (see analysis/workflow.yaml for the keys)."""

    from_: str = Field(alias="from")
    to: str
    name: str | None = None
    role: str | None = None
    judgement: Literal["required", "optional", "forbidden"] = "forbidden"
    when_judgement: list[str] = Field(default_factory=list)
    note: Literal["required", "optional"] = "optional"
    evidence: Literal["required", "optional"] = "optional"
    clear_judgement: bool = False

    @field_validator("when_judgement", mode="before")
    @classmethod
    def _none_is_empty(cls, v: object) -> object:
        return [] if v is None else v


class WorkflowDoc(RuleModel):
    """The workflow file: statuses, judgements, roles and the moves between statuses."""

    initial: str | None = None
    default_role: str | None = None
    roles: list[str]
    judgements: dict[str, str]
    statuses: dict[str, StatusDoc | None]
    transitions: list[TransitionDoc]

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, v: object) -> object:
        if not isinstance(v, dict):
            raise ValueError("the workflow must be a mapping with initial, roles, judgements, statuses, transitions")
        return v

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, v: object) -> object:
        if not isinstance(v, list) or not v or not all(isinstance(r, str) for r in v):
            raise ValueError(f"must be a list of role names, least first (got {v!r})")
        return v

    @field_validator("judgements", mode="before")
    @classmethod
    def _judgements(cls, v: object) -> object:
        if not isinstance(v, dict) or not v:
            raise ValueError(f"must map each 认定 value to its English meaning (got {v!r})")
        return {str(k): str(x) for k, x in v.items()}

    @field_validator("statuses", mode="before")
    @classmethod
    def _statuses(cls, v: object) -> object:
        if not isinstance(v, dict) or not v:
            raise ValueError(f"must map each status to {{en: …}} (got {v!r})")
        return {str(k): x for k, x in v.items()}

    @field_validator("transitions", mode="before")
    @classmethod
    def _transitions(cls, v: object) -> object:
        if not isinstance(v, list) or not v:
            raise ValueError("must be a non-empty list of {from, to, …}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> WorkflowDoc:
        statuses, roles = list(self.statuses), self.roles
        if self.initial not in self.statuses:
            raise ValueError(f"initial {self.initial!r} is not one of the statuses {statuses}")
        if self.default_role is not None and self.default_role not in roles:
            raise ValueError(f"default_role {self.default_role!r} is not one of the roles {roles}")
        for i, t in enumerate(self.transitions):
            label = f"transitions[{i}]"
            for key, value in (("from", t.from_), ("to", t.to)):
                if value not in self.statuses:
                    raise ValueError(f"{label}: {key} {value!r} is not one of the statuses {statuses}")
            if t.role is not None and t.role not in roles:
                raise ValueError(f"{label}: role {t.role!r} is not one of the roles {roles}")
            if any(j not in self.judgements for j in t.when_judgement):
                raise ValueError(f"{label}: when_judgement {t.when_judgement!r} must list judgements from "
                                 f"{list(self.judgements)}")
        keys = [(t.from_, t.to, tuple(t.when_judgement)) for t in self.transitions]
        dup = sorted({f"{a} → {b}" for a, b, w in keys if keys.count((a, b, w)) > 1})
        if dup:
            raise ValueError(f"transition(s) listed twice: {dup}")
        return self


def parse_workflow(doc, where: str = "<workflow>") -> Workflow:
    """A Workflow from its mapping (the YAML document); RuleError naming the key and value on any mistake."""
    d = parse(WorkflowDoc, doc, where)
    assert d.initial is not None  # checked by WorkflowDoc
    default_role = d.default_role or d.roles[0]
    statuses = {name: {"en": info.en if info is not None and info.en is not None else name,
                       "final": bool(info.final) if info is not None else False}
                for name, info in d.statuses.items()}
    transitions = tuple(Transition(
        source=t.from_, target=t.to, name=t.name or f"{t.from_} → {t.to}", role=t.role or default_role,
        judgement=t.judgement, when_judgement=tuple(t.when_judgement), note=t.note, evidence=t.evidence,
        clear_judgement=t.clear_judgement) for t in d.transitions)
    return Workflow(initial=d.initial, roles=tuple(d.roles), judgements=dict(d.judgements), statuses=statuses,
                    transitions=transitions, document=doc)


def load_workflow(path: str | Path | None = None) -> Workflow:
    """The workflow from a YAML file (None → analysis/workflow.yaml)."""
    path = Path(path) if path is not None else DEFAULT_WORKFLOW_PATH
    doc = read_yaml_file(path, "workflow", missing_hint=f"the default is {DEFAULT_WORKFLOW_PATH}")
    return parse_workflow(doc, str(path))


# --- matching workflow state to the patches of a (re-)analysis ----------------------------------------------

def _ids(value) -> list[str]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def match_states(patch_ids: Sequence[str], patch_sources: Iterable, state_keys: Sequence[str],
                 state_ids: Sequence[str], state_sources: Iterable, state_order: Sequence | None = None) -> np.ndarray:
    """For each patch, the index of the workflow state row that belongs to it, -1 if none.

    A state row belongs to a patch when its case key or JCBH equals the patch's JCBH, or when they share a
    source id (the ground change was re-issued, or merged differently by a later dedupe). When several rows fit
    (two cases merged into one ground change), the one latest in ``state_order`` (e.g. updated_at) wins.
    """
    n_states = len(state_keys)
    order = np.arange(n_states) if state_order is None else np.argsort(np.asarray(state_order, dtype=object),
                                                                         kind="stable")
    by_id: dict[str, int] = {}
    state_sources = list(state_sources)
    for row in (int(r) for r in order):  # later rows overwrite earlier: the latest state wins
        for key in {str(state_keys[row]), str(state_ids[row]), *_ids(state_sources[row])}:
            if key:
                by_id[key] = row
    out = np.full(len(patch_ids), -1, dtype=int)
    rank = {int(r): i for i, r in enumerate(order)}
    for i, (jc, sources) in enumerate(zip(patch_ids, patch_sources)):
        best = -1
        for key in [str(jc), *_ids(sources)]:
            row = by_id.get(key, -1)
            if row >= 0 and (best < 0 or rank[row] > rank[best]):
                best = row
        out[i] = best
    return out

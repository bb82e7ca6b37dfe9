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

import numpy as np

from layers.errors import ConflictError, FieldError, RuleError, YztError
from layers.yamlfile import read_yaml_file

DEFAULT_WORKFLOW_PATH = Path(__file__).with_name("workflow.yaml")
REQUIREMENT = ("required", "optional", "forbidden")


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

_TRANSITION_KEYS = {"from", "to", "name", "role", "judgement", "when_judgement", "note", "evidence",
                    "clear_judgement"}


def parse_workflow(doc, where: str = "<workflow>") -> Workflow:
    """A Workflow from its mapping (the YAML document); RuleError naming the key and value on any mistake."""
    if not isinstance(doc, dict):
        raise RuleError(f"{where}: the workflow must be a mapping with initial, roles, judgements, statuses, "
                        "transitions")
    unknown = set(doc) - {"initial", "default_role", "roles", "judgements", "statuses", "transitions"}
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {sorted(unknown)}")
    roles = doc.get("roles")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise RuleError(f"{where}: roles must be a list of role names, least first (got {roles!r})")
    judgements = doc.get("judgements")
    if not isinstance(judgements, dict) or not judgements:
        raise RuleError(f"{where}: judgements must map each 认定 value to its English meaning (got {judgements!r})")
    statuses = doc.get("statuses")
    if not isinstance(statuses, dict) or not statuses:
        raise RuleError(f"{where}: statuses must map each status to {{en: …}} (got {statuses!r})")
    clean_statuses = {}
    for name, info in statuses.items():
        info = info or {}
        if not isinstance(info, dict) or set(info) - {"en", "final"}:
            raise RuleError(f"{where}: status {name!r} must be {{en: NAME, final: true|false}} (got {info!r})")
        clean_statuses[str(name)] = {"en": str(info.get("en", name)), "final": bool(info.get("final", False))}
    initial = doc.get("initial")
    if initial not in clean_statuses:
        raise RuleError(f"{where}: initial {initial!r} is not one of the statuses {list(clean_statuses)}")
    default_role = doc.get("default_role", roles[0])
    if default_role not in roles:
        raise RuleError(f"{where}: default_role {default_role!r} is not one of the roles {roles}")
    raw = doc.get("transitions")
    if not isinstance(raw, list) or not raw:
        raise RuleError(f"{where}: transitions must be a non-empty list of {{from, to, …}}")
    transitions = []
    for i, t in enumerate(raw):
        label = f"{where}: transitions[{i}]"
        if not isinstance(t, dict):
            raise RuleError(f"{label} must be a mapping (got {t!r})")
        extra = set(t) - _TRANSITION_KEYS
        if extra:
            raise RuleError(f"{label}: unknown key(s) {sorted(extra)}; keys are {sorted(_TRANSITION_KEYS)}")
        for key in ("from", "to"):
            if t.get(key) not in clean_statuses:
                raise RuleError(f"{label}: {key} {t.get(key)!r} is not one of the statuses {list(clean_statuses)}")
        role = t.get("role", default_role)
        if role not in roles:
            raise RuleError(f"{label}: role {role!r} is not one of the roles {roles}")
        for key, allowed in (("judgement", REQUIREMENT), ("note", REQUIREMENT[:2]), ("evidence", REQUIREMENT[:2])):
            value = t.get(key, "forbidden" if key == "judgement" else "optional")
            if value not in allowed:
                raise RuleError(f"{label}: {key} {value!r} must be one of {list(allowed)}")
        when = t.get("when_judgement") or []
        if not isinstance(when, list) or any(j not in judgements for j in when):
            raise RuleError(f"{label}: when_judgement {when!r} must list judgements from {list(judgements)}")
        transitions.append(Transition(
            source=t["from"], target=t["to"], name=str(t.get("name") or f"{t['from']} → {t['to']}"), role=role,
            judgement=t.get("judgement", "forbidden"), when_judgement=tuple(when),
            note=t.get("note", "optional"), evidence=t.get("evidence", "optional"),
            clear_judgement=bool(t.get("clear_judgement", False))))
    keys = [(t.source, t.target, t.when_judgement) for t in transitions]
    dup = sorted({f"{a} → {b}" for a, b, w in keys if keys.count((a, b, w)) > 1})
    if dup:
        raise RuleError(f"{where}: transition(s) listed twice: {dup}")
    return Workflow(initial=initial, roles=tuple(roles), judgements={str(k): str(v) for k, v in judgements.items()},
                    statuses=clean_statuses, transitions=tuple(transitions), document=doc)


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
    for row in order:  # later rows overwrite earlier: the latest state wins
        for key in {str(state_keys[row]), str(state_ids[row]), *_ids(state_sources[row])}:
            if key:
                by_id[key] = int(row)
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

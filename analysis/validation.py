"""Typed models for the rule files bureaus edit (YAML read by layers.yamlfile), and one way to turn what pydantic
finds wrong into a RuleError that names the file, the key, the value and the remedy.

A rule file's model derives from :class:`RuleModel` (frozen, unknown keys refused). :func:`parse` validates a
document and raises RuleError with the first problem, worded for the person who edits the file::

    wf.yaml: transitions[4]: note 'maybe' must be one of ['required', 'optional']
    wf.yaml: unknown key(s) ['colour']; keys are ['initial', 'roles', …]

:func:`worded` words the problem as the analysis rules files (rules.yaml, the targets and the indicator registry)
always have: ``judgement.legal_min_share must be ≤ 1.0, got 1.5``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from layers.errors import RuleError

M = TypeVar("M", bound=BaseModel)


class RuleModel(BaseModel):
    """A section of a rule file: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _keys(model: type[BaseModel]) -> list[str]:
    return sorted((f.alias or name) for name, f in model.model_fields.items())


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model that holds the key at ``loc`` (None when the location leaves the models)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for name, f in current.model_fields.items() if (f.alias or name) == part), None)
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def message(exc: ValidationError, model: type[BaseModel]) -> str:
    """The first problem of ``exc`` in the words of the file: ``path: key value message``."""
    errors = exc.errors(include_url=False)
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        where = tuple(extra[0]["loc"][:-1])
        names = sorted({str(e["loc"][-1]) for e in extra if tuple(e["loc"][:-1]) == where})
        holder = _model_at(model, where)
        keys = f"; keys are {_keys(holder)}" if holder is not None else ""
        return f"{_path(where) + ': ' if where else ''}unknown key(s) {names}{keys}"
    e = errors[0]
    loc = tuple(e["loc"])
    text = e["msg"].removeprefix("Value error, ")
    if not loc:
        return text  # a check across the whole document names its own keys
    key_at = max((i for i, part in enumerate(loc) if not isinstance(part, int)), default=0)
    parent, key = _path(loc[:key_at]), loc[key_at]
    shown = f"{key}{_path(loc[key_at + 1:]) if loc[key_at + 1:] else ''}"
    prefix = f"{parent}: " if parent else ""
    if e["type"] == "missing":
        return f"{prefix}{shown} is required"
    if e["type"] == "value_error":  # our own check: its message says what is wrong with the value
        return f"{prefix}{shown} {text}"
    return f"{prefix}{shown} {e.get('input')!r}: {text}"


_WORDS = {
    "less_than_equal": lambda e: f"must be ≤ {e['ctx']['le']}, got {e['input']!r}",
    "greater_than_equal": lambda e: f"must be ≥ {e['ctx']['ge']}, got {e['input']!r}",
    "greater_than": lambda e: f"must be > {e['ctx']['gt']}, got {e['input']!r}",
    "int_from_float": lambda e: f"must be a whole number, got {e['input']!r}",
    "int_type": lambda e: f"must be a whole number, got {e['input']!r}",
    "float_type": lambda e: f"must be a number, got {e['input']!r}",
    "bool_type": lambda e: f"must be true or false, got {e['input']!r}",
    "literal_error": lambda e: f"must be one of {e['ctx']['expected']}, got {e['input']!r}",
    "model_type": lambda e: f"must be a mapping, got {e['input']!r}",
    "model_attributes_type": lambda e: f"must be a mapping, got {e['input']!r}",
    "list_type": lambda e: f"must be a list, got {e['input']!r}",
}


def worded(exc: ValidationError, model: type[BaseModel], missing_hint: str = "add it") -> str:
    """The first problem in the words of the analysis rule files (rules, targets, registry): the dotted key, the
    value and the remedy — ``judgement.legal_min_share must be ≤ 1.0, got 1.5``, ``dedupe has unknown keys
    ['colour']; allowed: […]``, ``survey_date is missing; add it (…)``."""
    errors = exc.errors(include_url=False)
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        where = tuple(p for p in extra[0]["loc"][:-1])
        names = sorted({str(e["loc"][-1]) for e in extra if tuple(e["loc"][:-1]) == where})
        holder = _model_at(model, where)
        allowed = _keys(holder) if holder is not None else []
        section = ".".join(str(p) for p in where)
        return (f"{section + ' has ' if section else ''}unknown keys {names}; allowed: {allowed}")
    e = errors[0]
    loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    key = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))
    if e["type"] == "value_error":
        text = e["msg"].removeprefix("Value error, ")
        return f"{key} {text}" if key else text
    if e["type"] == "missing":
        return f"{key} is missing; {missing_hint}"
    words = _WORDS.get(e["type"])
    text = words(e) if words else f"{e['msg']} (got {e.get('input')!r})"
    return f"{key} {text}".strip()



def parse(model: type[M], doc: Any, where: str) -> M:
    """``doc`` validated as ``model``; RuleError ``where: <the first problem>`` otherwise."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise RuleError(f"{where}: {message(exc, model)}") from None

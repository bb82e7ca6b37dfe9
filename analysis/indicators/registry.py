"""The indicator registry (analysis/indicators.yaml): indicators, params, code sets, options; checked when loaded."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

import pandas as pd
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from layers import fields as F
from layers.errors import RuleError

from ..scoring import DIRECTIONS, POSITIVE, Threshold, parse_threshold
from ..validation import RuleModel, worded
from .expression import Expression

LEVELS = ("county", "township", "village")
LEVEL_ZH = {"county": "县", "township": "乡镇", "village": "村"}
CODE_LENGTH = {"county": 6, "township": 9, "village": 12}
VALUE_UNITS = {"m2": "平方米", "count": "个", "percent": "%", "number": ""}
SURVEY_LAYERS = ("dltb", "dltb_prev")


@dataclass(frozen=True)
class Term:
    layer: str
    sum: Expression | None  # None: count records
    where: Expression | None
    attribute: str = "record"  # record | split


@dataclass(frozen=True)
class Param:
    code: str
    name: str
    unit: str
    value: float | None = None  # for every unit
    values: Mapping[str, float] = field(default_factory=dict)  # per unit code (overrides value)

    def series(self, index: pd.Index) -> pd.Series:
        base = float("nan") if self.value is None else float(self.value)
        return pd.Series([float(self.values.get(code, base)) for code in index], index=index, dtype=float)


@dataclass(frozen=True)
class Indicator:
    code: str
    name: str
    rule: str  # 口径 in words
    unit: str  # m2 | count | percent | number
    direction: str  # positive | reverse
    kind: str  # measure | builtin | formula
    group: str = ""
    terms: tuple[Term, ...] = ()
    builtin: str | None = None
    formula: Expression | None = None
    sources: tuple[str, ...] = ()
    target: float | None = None
    weight: float | None = None
    thresholds: tuple[Threshold, ...] = ()

    @property
    def additive(self) -> bool:
        return self.kind != "formula"

    @property
    def formula_text(self) -> str:
        if self.kind == "formula" and self.formula is not None:
            return self.formula.text
        if self.kind == "builtin":
            return f"builtin {self.builtin}"
        parts = []
        for t in self.terms:
            what = f"Σ {t.sum.text}" if t.sum is not None else "count"
            where = f" where {t.where.text}" if t.where is not None else ""
            split = " (split by village)" if t.attribute == "split" else ""
            parts.append(f"{what} over {t.layer}{where}{split}")
        return " + ".join(parts)


ILLEGAL_BASES = ("judgement", "verdict", "judgement_else_verdict")

PRECISION_DEFAULTS = {"m2": 2, "ha": 4, "mu": 2, "count": 0, "percent": 2, "number": 2}


@dataclass
class Registry:
    indicators: dict[str, Indicator]
    params: dict[str, Param]
    code_sets: dict[str, frozenset]
    options: dict
    precision: dict[str, int]
    id_fields: dict[str, str]
    attribution: dict[str, str]
    document: dict  # the effective (merged) registry mapping, for the run record

    def order(self) -> list[str]:
        """Indicator codes, formulas after everything they read (stable otherwise)."""
        done: list[str] = []
        state: dict[str, int] = {}

        def visit(code, chain):
            if state.get(code) == 2:
                return
            if state.get(code) == 1:
                raise RuleError(f"indicator formulas form a cycle: {' → '.join([*chain, code])}")
            state[code] = 1
            ind = self.indicators[code]
            if ind.kind == "formula":
                for name in sorted(ind.formula.names):
                    if name in self.indicators:
                        visit(name, [*chain, code])
            state[code] = 2
            done.append(code)

        for code in self.indicators:
            visit(code, [])
        return done

    def survey_columns(self, layer: str) -> list[str]:
        """The columns of a survey layer (dltb, dltb_prev) the indicators read: what prepare_survey and the
        built-ins use (codes, 扣除系数, the reported areas, the ellipsoidal area, the ids, the attribution
        field), and every name the registry's terms over that layer read. A superset is harmless (names that
        are not stored, or are derived, like ``category``, are not read); what is left out is text no
        indicator looks at (DLMC, QSDWMC, ZLDWMC …), which a county would otherwise read twice a run."""
        names = [F.FID, "BSM", "DLBM", "KCXS", "ZLDWDM", "TBMJ", "KCMJ", "TBDLMJ", F.AREA,
                 self.id_fields.get(layer, self.id_fields["default"]), self.attribution.get(layer, "ZLDWDM")]
        for ind in self.indicators.values():
            for term in ind.terms:
                if term.layer == layer:
                    names += [n for e in (term.sum, term.where) if e is not None for n in sorted(e.names)]
        return list(dict.fromkeys(names))

    def dependencies(self, code: str) -> set[str]:
        ind = self.indicators[code]
        if ind.kind != "formula" or ind.formula is None:
            return set()
        return {n for n in ind.formula.names if n in self.indicators}

    def sources_of(self, code: str) -> tuple[str, ...]:
        ind = self.indicators[code]
        if ind.kind != "formula":
            return ind.sources
        out: list[str] = []
        for dep in sorted(self.dependencies(code)):
            out += [s for s in self.sources_of(dep) if s not in out]
        return tuple(out)


def merge_registry_documents(base: dict, extension: dict) -> dict:
    """A bureau registry with ``extends: builtin`` on top of the built-in one.

    Mappings (options, precision, code_sets, params, id_fields, attribution) are updated key by key;
    indicators replace a built-in of the same code or are appended; ``disable: [code, …]`` drops built-ins.
    """
    merged = copy.deepcopy(base)
    for key in ("options", "precision", "code_sets", "params", "id_fields", "attribution"):
        if key in extension:
            if not isinstance(extension[key], dict):
                raise RuleError(f"registry: {key!r} must be a mapping")
            merged.setdefault(key, {}).update(copy.deepcopy(extension[key]))
    disabled = extension.get("disable", []) or []
    if not isinstance(disabled, list):
        raise RuleError("registry: 'disable' must be a list of indicator codes")
    known = {i.get("code") for i in merged.get("indicators", [])}
    for code in disabled:
        if code not in known:
            raise RuleError(f"registry: cannot disable {code!r}: no built-in indicator has that code")
    indicators = [i for i in merged.get("indicators", []) if i.get("code") not in set(disabled)]
    position = {i.get("code"): k for k, i in enumerate(indicators)}
    for item in extension.get("indicators", []) or []:
        code = item.get("code") if isinstance(item, dict) else None
        if code in position:
            indicators[position[code]] = copy.deepcopy(item)
        else:
            position[code] = len(indicators)
            indicators.append(copy.deepcopy(item))
    merged["indicators"] = indicators
    return merged


_TOP_KEYS = {"version", "extends", "disable", "options", "precision", "code_sets", "params", "id_fields",
             "attribution", "indicators"}

# --- the typed model of the registry file ---------------------------------------------------------------------

Expr = str | int | float | bool  # an expression as YAML gives it (checked by Expression)


def _number(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {value!r}")
    return float(value)


def _text(value):
    if not isinstance(value, str) or not value.strip():
        raise ValueError("(text) is required — every number shows its 口径")
    return value


def _choice(choices):
    def check(value):
        if value not in choices:
            raise ValueError(f"{value!r} is unknown; use one of {sorted(choices)}")
        return value
    return check


Number = Annotated[float | None, BeforeValidator(_number)]


def _names(*values: str):
    return Field(default_factory=lambda: list(values))


class OptionsDoc(RuleModel):
    """options: of the registry (defaults = OPTION_DEFAULTS)."""

    # flagged_patches: which patches count as 违法 (illegal): judgement | verdict | judgement_else_verdict
    illegal_basis: Annotated[str, AfterValidator(_choice(ILLEGAL_BASES))] = "judgement_else_verdict"
    prejudgement_illegal_verdicts: list[str] = _names("suspected_illegal", "partly_approved")
    # verdicts whose unapproved part is the illegal part (the rest of an illegal record is illegal whole)
    unapproved_part_verdicts: list[str] = _names("suspected_illegal", "partly_approved")
    # verdicts of the records that are new construction land (the 违法占用耕地比例 denominator), beside every
    # record counted illegal
    change_verdicts: list[str] = _names("legal", "partly_approved", "suspected_illegal")
    unchecked_statuses: list[str] = _names("待核查")
    judgement_field: str = "judgement"
    illegal_judgements: list[str] = _names("违法")
    illegal_statuses: list[str] = _names("立案", "整改中", "已整改")
    status_field: str = "status"
    verdict_field: str = "verdict"
    # overlays of two DLTB years: pieces smaller than this are digitising noise
    change_min_piece_m2: Annotated[float, BeforeValidator(_number), Field(ge=0.0)] = 1.0


OPTION_DEFAULTS: dict[str, object] = OptionsDoc().model_dump()


Decimals = Annotated[int, Field(ge=0, le=8, strict=True)]


class PrecisionDoc(RuleModel):
    m2: Decimals = PRECISION_DEFAULTS["m2"]
    ha: Decimals = PRECISION_DEFAULTS["ha"]
    mu: Decimals = PRECISION_DEFAULTS["mu"]
    count: Decimals = PRECISION_DEFAULTS["count"]
    percent: Decimals = PRECISION_DEFAULTS["percent"]
    number: Decimals = PRECISION_DEFAULTS["number"]


class ParamDoc(RuleModel):
    name: str | None = None
    unit: str = "number"
    value: Number = None
    values: dict[str, Annotated[float, BeforeValidator(_number)]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _some_value(cls, raw):
        if not isinstance(raw, dict) or ("value" not in raw and "values" not in raw):
            raise ValueError("needs 'value' (all units) or 'values' (per unit code)")
        return raw


class TermDoc(RuleModel):
    layer: str
    sum: Expr | None = None
    count: StrictBool = False
    where: Expr | None = None
    attribute: Annotated[str, AfterValidator(_choice(("record", "split")))] = "record"

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, raw):
        if not isinstance(raw, dict) or not isinstance(raw.get("layer"), str):
            raise ValueError("a term needs 'layer' and 'sum' (expression) or 'count: true'")
        if ("sum" in raw) == bool(raw.get("count")):
            raise ValueError("give either 'sum: <expression>' or 'count: true'")
        if raw.get("attribute") == "split" and raw.get("count"):
            raise ValueError("a count cannot be split between villages; use attribute: record")
        return raw


class IndicatorDoc(RuleModel):
    code: str
    name: Annotated[str, BeforeValidator(_text)]
    rule: Annotated[str, BeforeValidator(_text)]
    unit: Annotated[str, AfterValidator(_choice(VALUE_UNITS))] = "m2"
    direction: Annotated[str, AfterValidator(_choice(DIRECTIONS))] = POSITIVE
    group: str = ""
    measure: TermDoc | list[TermDoc] | None = None
    builtin: str | None = None
    formula: Expr | None = None
    sources: list[str] | None = None
    target: Number = None
    weight: Number = None
    thresholds: list[dict] = Field(default_factory=list)

    @field_validator("code")
    @classmethod
    def _identifier(cls, v):
        if not v.isidentifier():
            raise ValueError(f"{v!r} must be an identifier (letters, digits, _)")
        return v

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("measure", "builtin", "formula") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of measure / builtin / formula (got {kinds or 'none'})")
        if self.measure is not None and self.unit == "percent":
            raise ValueError("a measure is summed; a percentage must be a formula")
        return self


class RegistryDoc(RuleModel):
    version: int | None = None
    options: OptionsDoc = Field(default_factory=OptionsDoc)
    precision: PrecisionDoc = Field(default_factory=PrecisionDoc)
    code_sets: dict[str, Annotated[list[Annotated[str, BeforeValidator(str)]], Field(min_length=1)]] = Field(
        default_factory=dict)
    params: dict[str, ParamDoc] = Field(default_factory=dict)
    id_fields: dict[str, str] = Field(default_factory=dict)
    attribution: dict[str, str] = Field(default_factory=dict)
    indicators: Annotated[list[IndicatorDoc], Field(min_length=1)]


def parse_registry(document: dict, base: dict | None = None) -> Registry:
    """Check a registry mapping (the typed model :class:`RegistryDoc`) and build the Registry. ``base``: the
    built-in mapping for ``extends``."""
    if not isinstance(document, dict):
        raise RuleError("registry: the file must hold a mapping with an 'indicators' list")
    unknown = set(document) - _TOP_KEYS
    if unknown:
        raise RuleError(f"registry: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    if document.get("extends") is not None:
        if document["extends"] != "builtin":
            raise RuleError(f"registry: extends {document['extends']!r} is unknown; only 'builtin' is allowed")
        if base is None:
            raise RuleError("registry: 'extends: builtin' needs the built-in registry")
        document = merge_registry_documents(base, {k: v for k, v in document.items() if k != "extends"})
    elif document.get("disable"):
        raise RuleError("registry: 'disable' only makes sense together with 'extends: builtin'")
    try:
        doc = RegistryDoc.model_validate({k: v for k, v in document.items() if k not in ("extends", "disable")})
    except ValidationError as exc:
        raise RuleError(f"registry: {worded(exc, RegistryDoc)}") from None

    options: dict[str, object] = doc.options.model_dump()
    precision = doc.precision.model_dump()
    code_sets = {name: frozenset(values) for name, values in doc.code_sets.items()}
    params = {code: Param(code, p.name or code, p.unit, p.value, dict(p.values)) for code, p in doc.params.items()}
    id_fields = {"default": F.FID, **doc.id_fields}
    attribution = dict(doc.attribution)
    indicators: dict[str, Indicator] = {}
    for item in doc.indicators:
        ind = _indicator(item)
        if ind.code in indicators:
            raise RuleError(f"registry: indicator code {ind.code!r} appears twice")
        if ind.code in params or ind.code in code_sets:
            raise RuleError(f"registry: {ind.code!r} is both an indicator and a param / code set")
        indicators[ind.code] = ind
    registry = Registry(indicators, params, code_sets, options, precision, id_fields, attribution,
                        copy.deepcopy(document))
    for ind in indicators.values():  # formula names must resolve
        if ind.kind == "formula":
            assert ind.formula is not None
            unknown_names = ind.formula.names - set(indicators) - set(params) - set(code_sets)
            if unknown_names:
                raise RuleError(f"registry: indicator {ind.code!r} formula {ind.formula.text!r} reads unknown "
                                f"name(s) {sorted(unknown_names)}; use indicator codes or params")
    registry.order()  # raises on cycles
    return registry


def _indicator(d: IndicatorDoc) -> Indicator:
    """An Indicator from its checked document: expressions compiled, the built-in known, sources derived."""
    from .builtins import BUILTINS  # the built-in measures read the registry's types: import when parsing

    where = f"registry: indicator {d.code!r}"
    terms: tuple[Term, ...] = ()
    builtin = None
    formula = None
    sources: tuple[str, ...] = ()
    if d.measure is not None:
        items = d.measure if isinstance(d.measure, list) else [d.measure]
        terms = tuple(Term(t.layer, Expression(t.sum, f"{where} measure[{j}]") if t.sum is not None else None,
                           Expression(t.where, f"{where} measure[{j}]") if t.where is not None else None,
                           t.attribute) for j, t in enumerate(items))
        sources = tuple(dict.fromkeys(t.layer for t in terms))
        kind = "measure"
    elif d.builtin is not None:
        if d.builtin not in BUILTINS:
            raise RuleError(f"{where}: builtin {d.builtin!r} is unknown; known: {sorted(BUILTINS)}")
        builtin, sources, kind = d.builtin, BUILTINS[d.builtin][0], "builtin"
    else:
        formula, kind = Expression(d.formula, where), "formula"
    if d.sources is not None and kind != "formula" and list(d.sources) != list(sources):
        raise RuleError(f"{where}: sources {d.sources} do not match the layers the measure reads {list(sources)}")
    thresholds = tuple(parse_threshold(t, f"{where} thresholds[{j}]") for j, t in enumerate(d.thresholds))
    return Indicator(d.code, d.name.strip(), " ".join(d.rule.split()), d.unit, d.direction, kind, d.group, terms,
                     builtin, formula, sources, d.target, d.weight, thresholds)

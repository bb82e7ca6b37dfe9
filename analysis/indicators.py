"""Indicators (指标) per 村 / 乡镇 / 县, driven by a registry (analysis/indicators.yaml), with drill-down ids.

Pure: GeoDataFrames in (the store's layers, by role name), a long DataFrame out — one row per
(indicator, unit) with the true value, the balanced rounded values, the 口径 and the ids of the records
behind the number. Reading the registry file and the store, and writing the run, is services/indicators.py.

How a number is made
--------------------
* Every additive indicator (area, count) is computed per **village** from its contributions and rolled up:
  乡镇 = Σ its villages (code prefix 9 digits), 县 = Σ its 乡镇 (prefix 6). So Σ 村 = 乡 and Σ 乡 = 县 hold
  exactly for the true values; the rounded values are balanced by :mod:`analysis.balance` (强制调平).
* Village attribution of a record (``attribute: record``): DLTB by ``ZLDWDM[:12]``; the analysis outputs
  (flagged_patches, planning_conflicts) by their ``XZQDM`` (the village holding the largest share, set by
  `yzt analyse`); any other layer — or a row whose code is not a 12-digit code of the county — by the
  village polygon (xzq, XZQJB = village) that holds the largest share of its area, or the nearest one if it
  touches none. A case (监测图斑) is one unit of enforcement work: its count *and* its areas go whole to
  one village, so the count and the area of a village are made of the same records.
* ``attribute: split`` (areas only): the record's value is multiplied by the share of its area inside each
  village polygon; parts outside every village are not counted (they are not the county's land).
* Built-in overlay measures split by the DLTB patches themselves (each piece goes to the village of its
  DLTB patch), so they reconcile with 耕地面积 and the land categories to the square metre.
* Ratio indicators (``formula``) are computed at every unit from that unit's unrounded totals — never as
  sums or averages of the children's ratios — and rounded on their own; they are not balanced.

DLTB areas (口径)
-----------------
Exports carry TBMJ values that may differ from their geometry, so areas are recomputed from the stored
ellipsoidal area (``area_m2``): TBMJ = round(area_m2, 2), KCMJ = round(TBMJ × KCXS, 2) (田坎 deduction),
TBDLMJ = TBMJ − KCMJ, rounded half-up (四舍五入) in exact integer cents (KCXS to 6 decimals). The reported values stay available as TBMJ_reported / KCMJ_reported /
TBDLMJ_reported. Land-use statistics sum TBDLMJ; the 田坎 area KCMJ counts as 农用地 (1203 田坎).

The registry
------------
See analysis/indicators.yaml and docs/indicators.md. An indicator is one of
  ``measure``:  one term or a list of terms {layer, sum | count, where, attribute}, summed;
  ``builtin``:  a named overlay measure implemented here (BUILTINS);
  ``formula``:  an expression over other indicators and parameters, e.g. ``100 * a / b``.
``sum``, ``where`` and ``formula`` are written in a small safe expression language (parsed with ``ast``,
never ``eval``): numbers, strings, True/False/None, column / indicator / parameter / code-set names,
+ − × ÷, comparisons, ``in`` / ``not in`` a list or a code set, ``and`` / ``or`` / ``not``, and the
functions in FUNCTIONS. A division by zero gives no value (NaN), never infinity.
"""

from __future__ import annotations

import ast
import copy
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers import fields as F
from layers.area import ellipsoidal_area
from layers.codes import (
    CATEGORY_SANDIAO,
    CODE_SET_NAMES,
    CONSTRUCTION,
    SANDIAO,
    YDYH,
    crosswalk,
    detect_code_set,
    normalise_code,
    to_sandiao,
)
from layers.errors import CodeSetError, CRSError, FieldError, RuleError

from .balance import AREA_UNITS, balance_tree, round_half_up
from .changes import unchanged_mask
from .faces import disjoint_faces
from .overlay import overlay_pieces
from .scoring import DIRECTIONS, POSITIVE, Threshold, crossed_thresholds, parse_threshold

LEVELS = ("county", "township", "village")
LEVEL_ZH = {"county": "县", "township": "乡镇", "village": "村"}
CODE_LENGTH = {"county": 6, "township": 9, "village": 12}
VALUE_UNITS = {"m2": "平方米", "count": "个", "percent": "%", "number": ""}
SURVEY_LAYERS = ("dltb", "dltb_prev")

# --------------------------------------------------------------------------------------------------
# The expression language
# --------------------------------------------------------------------------------------------------


def _is_series(x) -> bool:
    return isinstance(x, pd.Series)


def _div(a, b):
    if _is_series(a) or _is_series(b):
        with np.errstate(divide="ignore", invalid="ignore"):
            out = a / b
        return out.replace([np.inf, -np.inf], np.nan) if _is_series(out) else out
    if b == 0 or _missing(a) or _missing(b):
        return float("nan")
    return a / b


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _prefix(x, text):
    if not _is_series(x):
        return x is not None and str(x).startswith(str(text))
    return x.astype("string").str.startswith(str(text)).fillna(False).astype(bool)


def _where(cond, a, b):
    index = next((v.index for v in (cond, a, b) if _is_series(v)), None)
    out = np.where(np.asarray(cond, dtype=bool), a, b)
    return pd.Series(out, index=index) if index is not None else out.item()


def _coalesce(x, default):
    return x.fillna(default) if _is_series(x) else (default if _missing(x) else x)


def _to_date(x):
    """Dates as datetimes (strings like 2022-05-01, dates, timestamps); unparseable → NaT."""
    if _is_series(x):
        return pd.to_datetime(x.astype("string"), errors="coerce")
    return pd.to_datetime(str(x), errors="coerce")


FUNCTIONS: dict[str, tuple[int, Callable]] = {
    # name: (number of arguments, implementation)
    "min": (2, lambda a, b: np.minimum(a, b)),
    "max": (2, lambda a, b: np.maximum(a, b)),
    "abs": (1, lambda a: np.abs(a)),
    "isnull": (1, lambda a: a.isna() if _is_series(a) else _missing(a)),
    "notnull": (1, lambda a: a.notna() if _is_series(a) else not _missing(a)),
    "prefix": (2, _prefix),
    "where": (3, _where),
    "coalesce": (2, _coalesce),
    "date": (1, _to_date),
}

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _div}
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge}


def _as_bool(x):
    if _is_series(x):
        return x.fillna(False).astype(bool)
    return bool(x) if not _missing(x) else False


class Expression:
    """A parsed, checked expression. ``names`` are the identifiers it reads (columns / indicators / …)."""

    def __init__(self, text, where: str):
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise RuleError(f"{where}: expected an expression, got {text!r}")
        self.text = str(text)
        self.where = where
        try:
            tree = ast.parse(self.text.strip(), mode="eval")
        except SyntaxError as exc:
            raise RuleError(f"{where}: cannot parse expression {self.text!r}: {exc.msg}") from None
        self.names: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def __repr__(self):
        return f"Expression({self.text!r})"

    def _fail(self, what: str):
        raise RuleError(f"{self.where}: {what} is not allowed in expression {self.text!r}; use numbers, "
                        f"names, + - * /, comparisons, in [...], and/or/not and the functions "
                        f"{sorted(FUNCTIONS)}")

    def _check(self, node):
        match node:
            case ast.Constant(value=v):
                if not (v is None or isinstance(v, (bool, int, float, str))):
                    self._fail(f"the constant {v!r}")
            case ast.Name(id=name):
                self.names.add(name)
            case ast.BinOp(op=op, left=left, right=right):
                if type(op) not in _BINOPS:
                    self._fail(f"the operator {type(op).__name__}")
                self._check(left)
                self._check(right)
            case ast.UnaryOp(op=op, operand=operand):
                if not isinstance(op, (ast.USub, ast.UAdd, ast.Not)):
                    self._fail(f"the operator {type(op).__name__}")
                self._check(operand)
            case ast.BoolOp(values=values):
                for v in values:
                    self._check(v)
            case ast.Compare(left=left, ops=ops, comparators=comps):
                self._check(left)
                for op, comp in zip(ops, comps):
                    if isinstance(op, (ast.In, ast.NotIn)):
                        if isinstance(comp, (ast.List, ast.Tuple, ast.Set)):
                            for elt in comp.elts:
                                if not isinstance(elt, ast.Constant):
                                    self._fail("a non-constant list element")
                        elif isinstance(comp, ast.Name):
                            self.names.add(comp.id)
                        else:
                            self._fail("'in' with something other than a list or a code-set name")
                    elif type(op) not in _CMPOPS:
                        self._fail(f"the comparison {type(op).__name__}")
                    else:
                        self._check(comp)
            case ast.Call(func=ast.Name(id=fname), args=args, keywords=kws):
                if fname not in FUNCTIONS:
                    self._fail(f"the function {fname!r}")
                if kws or len(args) != FUNCTIONS[fname][0]:
                    raise RuleError(f"{self.where}: {fname}() takes {FUNCTIONS[fname][0]} positional "
                                    f"argument(s) in {self.text!r}")
                for a in args:
                    self._check(a)
            case _:
                self._fail(type(node).__name__)

    def evaluate(self, resolve: Callable[[str], object]):
        """Evaluate with ``resolve(name)`` giving a Series, a scalar or (for ``in``) a collection."""
        return self._eval(self._tree, resolve)

    def _eval(self, node, resolve):
        match node:
            case ast.Constant(value=v):
                return v
            case ast.Name(id=name):
                return resolve(name)
            case ast.BinOp(op=op, left=left, right=right):
                return _BINOPS[type(op)](self._eval(left, resolve), self._eval(right, resolve))
            case ast.UnaryOp(op=op, operand=operand):
                v = self._eval(operand, resolve)
                if isinstance(op, ast.Not):
                    return ~_as_bool(v) if _is_series(v) else not _as_bool(v)
                return -v if isinstance(op, ast.USub) else v
            case ast.BoolOp(op=op, values=values):
                parts = [_as_bool(self._eval(v, resolve)) for v in values]
                out = parts[0]
                for p in parts[1:]:
                    out = (out & p) if isinstance(op, ast.And) else (out | p)
                return out
            case ast.Compare(left=left, ops=ops, comparators=comps):
                result = None
                current = self._eval(left, resolve)
                for op, comp in zip(ops, comps):
                    if isinstance(op, (ast.In, ast.NotIn)):
                        if isinstance(comp, ast.Name):
                            members = resolve(comp.id)
                            if not isinstance(members, (set, frozenset, list, tuple)):
                                raise RuleError(f"{self.where}: {comp.id!r} after 'in' is not a code set "
                                                f"in {self.text!r}")
                        else:
                            members = [e.value for e in comp.elts]
                        members = list(members)
                        hit = current.isin(members) if _is_series(current) else current in members
                        part = ~hit if isinstance(op, ast.NotIn) and _is_series(hit) else (
                            (not hit) if isinstance(op, ast.NotIn) else hit)
                        nxt = current
                    else:
                        nxt = self._eval(comp, resolve)
                        part = _CMPOPS[type(op)](current, nxt)
                    part = _as_bool(part)
                    result = part if result is None else (result & part)
                    current = nxt
                return result
            case ast.Call(func=ast.Name(id=fname), args=args):
                return FUNCTIONS[fname][1](*[self._eval(a, resolve) for a in args])
        raise RuleError(f"{self.where}: cannot evaluate {self.text!r}")  # pragma: no cover - checked


# --------------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------------

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
        if self.kind == "formula":
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


OPTION_DEFAULTS: dict[str, object] = {
    # flagged_patches: which patches count as 违法 (illegal)
    "illegal_basis": "judgement_else_verdict",  # judgement | verdict | judgement_else_verdict
    "prejudgement_illegal_verdicts": ["suspected_illegal", "partly_approved"],
    # verdicts whose unapproved part is the illegal part (the rest of an illegal record is illegal whole)
    "unapproved_part_verdicts": ["suspected_illegal", "partly_approved"],
    # verdicts of the records that are new construction land (the 违法占用耕地比例 denominator), beside every
    # record counted illegal
    "change_verdicts": ["legal", "partly_approved", "suspected_illegal"],
    "unchecked_statuses": ["待核查"],
    "judgement_field": "judgement",
    "illegal_judgements": ["违法"],
    "illegal_statuses": ["立案", "整改中", "已整改"],
    "status_field": "status",
    "verdict_field": "verdict",
    # overlays of two DLTB years: pieces smaller than this are digitising noise
    "change_min_piece_m2": 1.0,
}
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
                raise RuleError(f"indicator formulas form a cycle: {' → '.join(chain + [code])}")
            state[code] = 1
            ind = self.indicators[code]
            if ind.kind == "formula":
                for name in sorted(ind.formula.names):
                    if name in self.indicators:
                        visit(name, chain + [code])
            state[code] = 2
            done.append(code)

        for code in self.indicators:
            visit(code, [])
        return done

    def dependencies(self, code: str) -> set[str]:
        ind = self.indicators[code]
        if ind.kind != "formula":
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
_INDICATOR_KEYS = {"code", "name", "rule", "unit", "direction", "group", "measure", "builtin", "formula",
                   "sources", "target", "weight", "thresholds"}
_TERM_KEYS = {"layer", "sum", "count", "where", "attribute"}


def parse_registry(document: dict, base: dict | None = None) -> Registry:
    """Check a registry mapping and build the Registry. ``base``: the built-in mapping for ``extends``."""
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

    options = dict(OPTION_DEFAULTS)
    raw_options = document.get("options") or {}
    bad = set(raw_options) - set(OPTION_DEFAULTS)
    if bad:
        raise RuleError(f"registry: unknown option(s) {sorted(bad)}; known: {sorted(OPTION_DEFAULTS)}")
    options.update(raw_options)
    if options["illegal_basis"] not in ILLEGAL_BASES:
        raise RuleError(f"registry: options.illegal_basis {options['illegal_basis']!r} is unknown; "
                        f"use one of {list(ILLEGAL_BASES)}")
    for key in ("prejudgement_illegal_verdicts", "unchecked_statuses", "illegal_judgements", "illegal_statuses",
                "unapproved_part_verdicts", "change_verdicts"):
        if not isinstance(options[key], list):
            raise RuleError(f"registry: options.{key} must be a list, got {options[key]!r}")

    precision = dict(PRECISION_DEFAULTS)
    raw_precision = document.get("precision") or {}
    for key, value in raw_precision.items():
        if key not in PRECISION_DEFAULTS or not isinstance(value, int) or isinstance(value, bool) \
                or not 0 <= value <= 8:
            raise RuleError(f"registry: precision.{key} = {value!r}; give decimals 0–8 for one of "
                            f"{sorted(PRECISION_DEFAULTS)}")
        precision[key] = value

    code_sets: dict[str, frozenset] = {}
    for name, values in (document.get("code_sets") or {}).items():
        if not isinstance(values, list) or not values:
            raise RuleError(f"registry: code_sets.{name} must be a non-empty list")
        code_sets[name] = frozenset(str(v) for v in values)

    params: dict[str, Param] = {}
    for code, raw in (document.get("params") or {}).items():
        if not isinstance(raw, dict) or ("value" not in raw and "values" not in raw):
            raise RuleError(f"registry: params.{code} needs 'value' (all units) or 'values' (per unit code)")
        values = raw.get("values") or {}
        if not isinstance(values, dict):
            raise RuleError(f"registry: params.{code}.values must map unit codes to numbers")
        try:
            vals = {str(k): float(v) for k, v in values.items()}
            value = None if raw.get("value") is None else float(raw["value"])
        except (TypeError, ValueError):
            raise RuleError(f"registry: params.{code} has a non-numeric value") from None
        params[code] = Param(code, str(raw.get("name", code)), str(raw.get("unit", "number")), value, vals)

    id_fields = {"default": F.FID, **{str(k): str(v) for k, v in (document.get("id_fields") or {}).items()}}
    attribution = {str(k): str(v) for k, v in (document.get("attribution") or {}).items()}

    raw_list = document.get("indicators")
    if not isinstance(raw_list, list) or not raw_list:
        raise RuleError("registry: 'indicators' must be a non-empty list")
    indicators: dict[str, Indicator] = {}
    for k, raw in enumerate(raw_list):
        ind = _parse_indicator(raw, k)
        if ind.code in indicators:
            raise RuleError(f"registry: indicator code {ind.code!r} appears twice")
        if ind.code in params or ind.code in code_sets:
            raise RuleError(f"registry: {ind.code!r} is both an indicator and a param / code set")
        indicators[ind.code] = ind
    registry = Registry(indicators, params, code_sets, options, precision, id_fields, attribution,
                        copy.deepcopy(document))
    for ind in indicators.values():  # formula names must resolve
        if ind.kind == "formula":
            unknown = ind.formula.names - set(indicators) - set(params) - set(code_sets)
            if unknown:
                raise RuleError(f"registry: indicator {ind.code!r} formula {ind.formula.text!r} reads unknown "
                                f"name(s) {sorted(unknown)}; use indicator codes or params")
    registry.order()  # raises on cycles
    return registry


def _parse_indicator(raw, k: int) -> Indicator:
    where = f"registry: indicators[{k}]"
    if not isinstance(raw, dict):
        raise RuleError(f"{where} must be a mapping")
    code = raw.get("code")
    if not isinstance(code, str) or not code.isidentifier():
        raise RuleError(f"{where}: code {code!r} must be an identifier (letters, digits, _)")
    where = f"registry: indicator {code!r}"
    unknown = set(raw) - _INDICATOR_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_INDICATOR_KEYS)}")
    kinds = [key for key in ("measure", "builtin", "formula") if raw.get(key) is not None]
    if len(kinds) != 1:
        raise RuleError(f"{where}: give exactly one of measure / builtin / formula (got {kinds or 'none'})")
    kind = kinds[0]
    unit = raw.get("unit", "m2")
    if unit not in VALUE_UNITS:
        raise RuleError(f"{where}: unit {unit!r} is unknown; use one of {sorted(VALUE_UNITS)}")
    direction = raw.get("direction", POSITIVE)
    if direction not in DIRECTIONS:
        raise RuleError(f"{where}: direction {direction!r} is unknown; use positive or reverse")
    for key in ("name", "rule"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise RuleError(f"{where}: '{key}' (text) is required — every number shows its 口径")
    terms: tuple[Term, ...] = ()
    builtin = None
    formula = None
    sources: tuple[str, ...] = ()
    if kind == "measure":
        items = raw["measure"] if isinstance(raw["measure"], list) else [raw["measure"]]
        parsed = []
        for j, item in enumerate(items):
            tw = f"{where} measure[{j}]"
            if not isinstance(item, dict) or not isinstance(item.get("layer"), str):
                raise RuleError(f"{tw}: a term needs 'layer' and 'sum' (expression) or 'count: true'")
            bad = set(item) - _TERM_KEYS
            if bad:
                raise RuleError(f"{tw}: unknown key(s) {sorted(bad)}; allowed: {sorted(_TERM_KEYS)}")
            if ("sum" in item) == bool(item.get("count")):
                raise RuleError(f"{tw}: give either 'sum: <expression>' or 'count: true'")
            attribute = item.get("attribute", "record")
            if attribute not in ("record", "split"):
                raise RuleError(f"{tw}: attribute {attribute!r} is unknown; use record or split")
            if attribute == "split" and item.get("count"):
                raise RuleError(f"{tw}: a count cannot be split between villages; use attribute: record")
            parsed.append(Term(
                item["layer"],
                Expression(item["sum"], tw) if "sum" in item else None,
                Expression(item["where"], tw) if item.get("where") is not None else None,
                attribute,
            ))
        terms = tuple(parsed)
        sources = tuple(dict.fromkeys(t.layer for t in terms))
        if unit in ("percent",):
            raise RuleError(f"{where}: a measure is summed; a percentage must be a formula")
    elif kind == "builtin":
        builtin = raw["builtin"]
        if builtin not in BUILTINS:
            raise RuleError(f"{where}: builtin {builtin!r} is unknown; known: {sorted(BUILTINS)}")
        sources = BUILTINS[builtin][0]
    else:
        formula = Expression(raw["formula"], where)
    declared = raw.get("sources")
    if declared is not None and kind != "formula" and list(declared) != list(sources):
        raise RuleError(f"{where}: sources {declared} do not match the layers the measure reads {list(sources)}")
    thresholds = tuple(parse_threshold(t, f"{where} thresholds[{j}]")
                       for j, t in enumerate(raw.get("thresholds") or []))

    def number(key):
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RuleError(f"{where}: {key} must be a number, got {value!r}")
        return float(value)

    return Indicator(code, raw["name"].strip(), " ".join(raw["rule"].split()), unit, direction, kind,
                     str(raw.get("group", "")), terms, builtin, formula, sources, number("target"),
                     number("weight"), thresholds)


# --------------------------------------------------------------------------------------------------
# Layers, prepared
# --------------------------------------------------------------------------------------------------

def _require(gdf: pd.DataFrame, layer: str, columns: list[str]):
    missing = [c for c in columns if c not in gdf.columns]
    if missing:
        raise FieldError(f"layer {layer!r} lacks column(s) {missing} needed by the indicators; "
                         "re-ingest it with those fields mapped (or re-run yzt analyse)")


UNKNOWN_CATEGORY = "未识别地类"


def prepare_survey(gdf: gpd.GeoDataFrame, layer: str, notes: list[str] | None = None,
                   code_set: str | None = None) -> gpd.GeoDataFrame:
    """DLTB with recomputed TBMJ / KCMJ / TBDLMJ, normalised DLBM, 三类 category and village code.

    * ``code_set``: the layer's land-use code set as recorded at ingest (None → detected from the codes, and an
      undecidable layer is refused). A 用地用海 layer is read through the crosswalk: DLBM holds the 三调 code the
      registry's code lists use, DLBM_SOURCE the layer's own code; 二调 is refused.

    * Codes outside the 三调 table get category 未识别地类 (counted in no category; the registry's
      unknown_code_area shows them, so the categories still add up to the total) and a note naming them.
    * Exact duplicate patches (same geometry, same DLBM and KCXS — a patch exported twice) are counted once
      (the first, lowest yzt_fid), with a note; duplicates that disagree on DLBM or KCXS raise FieldError,
      since either land use could be the true one.
    """
    notes = notes if notes is not None else []
    _require(gdf, layer, ["DLBM", "ZLDWDM", F.AREA])
    out = gdf.copy()
    out["DLBM"] = out["DLBM"].map(normalise_code)
    if len(out):
        if code_set is None:
            code_set = detect_code_set(out["DLBM"].dropna(), where=f"layer {layer!r}")
        if code_set == YDYH:
            out["DLBM_SOURCE"] = out["DLBM"]
            out["DLBM"] = to_sandiao(out["DLBM"].to_numpy(dtype=object), YDYH)
            notes.append(f"{layer}: 用地用海 codes read through {crosswalk().label()}")
        elif code_set != SANDIAO:
            raise CodeSetError(f"layer {layer!r} uses {CODE_SET_NAMES[code_set]} codes; the indicators need "
                               "三调工作分类 or 用地用海 codes — convert the layer before ingest")
    for col in ("TBMJ", "KCMJ", "TBDLMJ"):
        if col in out.columns:
            out[f"{col}_reported"] = pd.to_numeric(out[col], errors="coerce")
    kcxs = pd.to_numeric(out["KCXS"], errors="coerce").fillna(0.0) if "KCXS" in out.columns else 0.0
    out["KCXS"] = kcxs
    if ((out["KCXS"] < 0) | (out["KCXS"] >= 1)).any():
        bad = out.loc[(out["KCXS"] < 0) | (out["KCXS"] >= 1), "KCXS"].head(3).tolist()
        raise FieldError(f"layer {layer!r} has KCXS values outside [0, 1), e.g. {bad}; fix the source")
    area = pd.to_numeric(out[F.AREA], errors="coerce")
    if area.isna().any():
        raise FieldError(f"layer {layer!r} has {int(area.isna().sum())} rows without {F.AREA}; re-ingest it")
    # exact integer arithmetic in cents, 四舍五入 (half-up): KCMJ = round(TBMJ × KCXS, 2) must not depend on
    # binary noise (1234.50 × 0.05 = 61.725 → 61.73)
    tbmj_cents = np.floor(area.to_numpy(dtype=float) * 100.0 + 0.5).astype(np.int64)
    kcxs_micro = np.round(out["KCXS"].to_numpy(dtype=float) * 1_000_000).astype(np.int64)
    kcmj_cents = (tbmj_cents * kcxs_micro + 500_000) // 1_000_000
    out["TBMJ"] = tbmj_cents / 100.0
    out["KCMJ"] = kcmj_cents / 100.0
    out["TBDLMJ"] = (tbmj_cents - kcmj_cents) / 100.0
    out["category"] = out["DLBM"].map(CATEGORY_SANDIAO).fillna(UNKNOWN_CATEGORY)
    unknown = out["category"] == UNKNOWN_CATEGORY
    if unknown.any():
        label = out["BSM"] if "BSM" in out.columns else out.index.to_series()
        codes = sorted(set(map(str, out.loc[unknown, "DLBM"])))
        ids = label[unknown].astype(str).tolist()[:5]
        notes.append(f"{layer}: {int(unknown.sum())} patch(es) with codes outside 三调 ({codes}; BSM {ids}) "
                     f"counted as {UNKNOWN_CATEGORY}, in none of the three categories")
    out = _drop_duplicate_patches(out, layer, notes)
    out["village"] = out["ZLDWDM"].astype("string").str.strip().str[:12]
    return out


def _drop_duplicate_patches(gdf: gpd.GeoDataFrame, layer: str, notes: list[str]) -> gpd.GeoDataFrame:
    if len(gdf) == 0:
        return gdf
    keys = pd.Series(shapely.to_wkb(shapely.normalize(np.asarray(gdf.geometry.values))), index=gdf.index)
    dup = keys.duplicated(keep=False)
    if not dup.any():
        return gdf
    label = gdf["BSM"].astype(str) if "BSM" in gdf.columns else pd.Series(gdf.index.astype(str), index=gdf.index)
    groups = gdf[dup].assign(_key=keys[dup]).groupby("_key", sort=False)
    for _, grp in groups:
        if grp["DLBM"].nunique() > 1 or grp["KCXS"].nunique() > 1:
            raise FieldError(f"layer {layer!r}: patches {label[grp.index].tolist()} have the same geometry but "
                             f"different DLBM / KCXS ({grp['DLBM'].tolist()}, {grp['KCXS'].tolist()}); remove the "
                             "wrong one before computing indicators")
    drop = keys.duplicated(keep="first")
    pairs = [label[grp.index].tolist() for _, grp in groups]
    notes.append(f"{layer}: {int(drop.sum())} exact duplicate patch(es) counted once: {pairs[:5]}")
    return gdf[~drop]


def prepare_patches(gdf: gpd.GeoDataFrame, options: dict) -> gpd.GeoDataFrame:
    """flagged_patches with ``checked`` (past 待核查), ``illegal`` (per options.illegal_basis) and the parts the
    enforcement indicators add up, each record on one basis (docs/indicators.md, 执法监管):

    * ``illegal_area_m2`` / ``illegal_cultivated_m2``: the illegal part of a record — its unapproved part
      (area_unapproved / area_cultivated_unapproved) when its verdict is one of options.unapproved_part_verdicts
      (未批先建, 少批多占: the approved part of a 少批多占 site is legal), else the whole record (a record judged
      违法 on site against a legal / other pre-judgement); 0 where the record is not illegal;
    * ``change_basis``: the record is new construction land — verdict in options.change_verdicts, or counted
      illegal — so 违法占用耕地 (a part of these records' 耕地) can never exceed 新增建设用地占用耕地.
    """
    status_field, verdict_field = options["status_field"], options["verdict_field"]
    _require(gdf, "flagged_patches", [status_field])
    out = gdf.copy()
    status = out[status_field].astype("string").str.strip()
    if status.isna().any():
        raise FieldError(f"flagged_patches has {int(status.isna().sum())} patches without a {status_field}; "
                         "every issued patch starts as 待核查 — re-run yzt analyse")
    unchecked = status.isin(options["unchecked_statuses"])
    out["checked"] = ~unchecked
    basis = options["illegal_basis"]
    jfield = options["judgement_field"]
    if basis in ("judgement", "judgement_else_verdict"):
        if jfield in out.columns:
            judged_illegal = out[jfield].astype("string").str.strip().isin(options["illegal_judgements"])
            judged = out[jfield].notna() & (out[jfield].astype("string").str.strip() != "")
        else:
            judged_illegal = pd.Series(False, index=out.index)
            judged = pd.Series(False, index=out.index)
            past_check = out["checked"] & ~status.isin(options["illegal_statuses"])
            if past_check.any():
                raise FieldError(
                    f"flagged_patches has {int(past_check.sum())} checked patches but no {jfield!r} column to "
                    f"say whether they were judged 违法; set options.judgement_field in the registry")
        by_status = status.isin(options["illegal_statuses"])
        illegal = judged_illegal | (by_status & ~judged)
        if basis == "judgement_else_verdict":
            _require(gdf, "flagged_patches", [verdict_field])
            pre = unchecked & out[verdict_field].isin(options["prejudgement_illegal_verdicts"])
            illegal = illegal | pre
    else:
        _require(gdf, "flagged_patches", [verdict_field])
        illegal = out[verdict_field].isin(options["prejudgement_illegal_verdicts"])
    out["illegal"] = illegal.fillna(False).astype(bool)
    need = ["area_m2", "area_cultivated", "area_unapproved", "area_cultivated_unapproved"]
    if verdict_field in out.columns and all(c in out.columns for c in need):
        part = out[verdict_field].isin(options["unapproved_part_verdicts"]).to_numpy()
        area = pd.to_numeric(out["area_m2"], errors="coerce").fillna(0.0)
        cult = pd.to_numeric(out["area_cultivated"], errors="coerce").fillna(0.0)
        un_area = pd.to_numeric(out["area_unapproved"], errors="coerce").fillna(0.0)
        un_cult = pd.to_numeric(out["area_cultivated_unapproved"], errors="coerce").fillna(0.0)
        ill = out["illegal"].to_numpy()
        out["illegal_area_m2"] = np.where(ill, np.where(part, un_area, area), 0.0)
        out["illegal_cultivated_m2"] = np.where(ill, np.where(part, un_cult, cult), 0.0)
        out["change_basis"] = out[verdict_field].isin(options["change_verdicts"]).to_numpy() | ill
    return out


# --------------------------------------------------------------------------------------------------
# Overlay
# --------------------------------------------------------------------------------------------------

def overlay_areas(left: gpd.GeoDataFrame, right: gpd.GeoDataFrame) -> pd.DataFrame:
    """Pieces of left ∩ right: columns left, right (positional), area_m2 (ellipsoidal, unrounded).

    The project's overlay engine (analysis.overlay.overlay_pieces) without geometry; CRSs must match.
    """
    if left.crs is None or right.crs is None or not left.crs.equals(right.crs):
        raise CRSError(f"overlay needs both layers in the same CRS, got {left.crs} and {right.crs}")
    if len(left) == 0 or len(right) == 0:
        return pd.DataFrame({"left": np.array([], int), "right": np.array([], int), "area_m2": []})
    pieces = overlay_pieces(left, right, keep_geometry=False)
    return pd.DataFrame({"left": np.asarray(pieces["left"], int), "right": np.asarray(pieces["right"], int),
                         "area_m2": np.asarray(pieces["area_m2"], float)})


# --------------------------------------------------------------------------------------------------
# Computing
# --------------------------------------------------------------------------------------------------

@dataclass
class Contribution:
    """Per-village values and the records behind them for one indicator."""

    values: pd.DataFrame  # village, value
    ids: pd.DataFrame  # village, layer, rid

    @staticmethod
    def empty() -> "Contribution":
        return Contribution(pd.DataFrame({"village": pd.Series([], dtype=object), "value": []}),
                            pd.DataFrame({"village": [], "layer": [], "rid": []}))

    @staticmethod
    def concat(parts: list["Contribution"]) -> "Contribution":
        if not parts:
            return Contribution.empty()
        return Contribution(pd.concat([p.values for p in parts], ignore_index=True),
                            pd.concat([p.ids for p in parts], ignore_index=True))


@dataclass
class IndicatorResult:
    values: pd.DataFrame  # long: one row per (indicator, unit)
    warnings: pd.DataFrame  # thresholds crossed
    skipped: dict[str, str]  # indicator → why it has no value (a layer is missing)
    notes: list[str]  # facts worth showing with the run (e.g. YJJBNT outside the survey coverage)
    id_fields: dict[str, str]  # layer → the column used as record id


class _Context:
    def __init__(self, layers: Mapping[str, gpd.GeoDataFrame], registry: Registry,
                 code_sets: Mapping[str, str | None] | None = None):
        self.raw = layers
        self.code_sets = dict(code_sets or {})
        self.registry = registry
        self.options = registry.options
        self.notes: list[str] = []
        self.id_fields: dict[str, str] = {}
        self._prepared: dict[str, gpd.GeoDataFrame] = {}
        self._villages_of: dict[str, pd.Series] = {}
        self._cache: dict[str, object] = {}
        xzq = layers.get("xzq")
        if xzq is None or len(xzq) == 0:
            raise FieldError("the store has no xzq (行政区) layer; ingest the administrative units first — "
                             "indicators are reported by 县 / 乡镇 / 村")
        self.units, self.villages = _units_from_xzq(xzq)
        self.counties = set(self.units.loc[self.units["level"] == "county", "code"])
        if not self.counties:
            self.counties = {c[:6] for c in self.units["code"]}

    def has(self, layer: str) -> bool:
        return layer in self.raw and self.raw[layer] is not None

    def layer(self, name: str) -> gpd.GeoDataFrame:
        if name not in self._prepared:
            gdf = self.raw[name].reset_index(drop=True)
            if name in SURVEY_LAYERS:
                gdf = prepare_survey(gdf, name, self.notes, self.code_sets.get(name)).reset_index(drop=True)
            elif name == "flagged_patches":
                gdf = prepare_patches(gdf, self.options)
            self._prepared[name] = gdf
        return self._prepared[name]

    def ids(self, name: str) -> pd.Series:
        key = f"ids:{name}"
        if key not in self._cache:
            self._cache[key] = self._ids(name)
        return self._cache[key]

    def _ids(self, name: str) -> pd.Series:
        gdf = self.layer(name)
        column = self.registry.id_fields.get(name, self.registry.id_fields["default"])
        if column in gdf.columns and gdf[column].notna().all() and gdf[column].is_unique:
            self.id_fields[name] = column
            values = gdf[column]
            return values.map(int) if pd.api.types.is_integer_dtype(values) else values.astype(str)
        self.id_fields[name] = "row"  # 1-based row number in the stored layer
        self.notes.append(f"{name}: no unique {column!r} column; record ids are 1-based row numbers")
        return pd.Series(np.arange(1, len(gdf) + 1), index=gdf.index).map(int)

    def valid_village(self, codes: pd.Series) -> pd.Series:
        codes = codes.astype("string").str.strip()
        return codes.str.fullmatch(r"\d{12}").fillna(False) & codes.str[:6].isin(self.counties).fillna(False)

    def village_of(self, name: str) -> pd.Series:
        """The village each record of a layer is attributed to (whole record)."""
        if name in self._villages_of:
            return self._villages_of[name]
        gdf = self.layer(name)
        default_field = "ZLDWDM" if name in SURVEY_LAYERS else "XZQDM"
        code_field = self.registry.attribution.get(name, default_field)
        result = pd.Series(pd.NA, index=gdf.index, dtype="string")
        if code_field in gdf.columns:
            codes = gdf[code_field].astype("string").str.strip().str[:12]
            ok = self.valid_village(codes)
            result[ok] = codes[ok]
        todo = result.isna()
        if todo.any():
            if name in SURVEY_LAYERS:
                bad = gdf.loc[todo, code_field].head(3).tolist()
                raise FieldError(f"layer {name!r} has {int(todo.sum())} patches whose {code_field} is not a "
                                 f"village code of the county (e.g. {bad}); correct ZLDWDM")
            result[todo] = self._largest_share(gdf[todo])
        self._villages_of[name] = result
        return result

    def _largest_share(self, gdf: gpd.GeoDataFrame) -> pd.Series:
        if len(self.villages) == 0:
            raise FieldError("xzq has no village polygons (XZQJB = village) to attribute records to")
        villages = self.villages.to_crs(gdf.crs) if not self.villages.crs.equals(gdf.crs) else self.villages
        pieces = overlay_areas(gdf, villages)
        out = pd.Series(pd.NA, index=gdf.index, dtype="string")
        if len(pieces):
            best = pieces.sort_values(["left", "area_m2"], ascending=[True, False]).drop_duplicates("left")
            out.iloc[best["left"].to_numpy()] = villages["code"].to_numpy()[best["right"].to_numpy()]
        rest = out.isna() & gdf.geometry.notna().to_numpy()
        if rest.any():
            near = gpd.sjoin_nearest(gdf.loc[rest, [gdf.geometry.name]], villages[["code", "geometry"]],
                                     how="left")
            near = near[~near.index.duplicated()]
            out[rest] = near["code"].astype("string")
            self.notes.append(f"{int(rest.sum())} record(s) touching no village polygon were attributed to the "
                              "nearest village")
        if out.isna().any():
            raise FieldError(f"{int(out.isna().sum())} record(s) have neither a village code nor a geometry")
        return out

    def split_shares(self, name: str) -> pd.DataFrame:
        """row (position), village, share of the record's area inside that village polygon."""
        key = f"split:{name}"
        if key not in self._cache:
            gdf = self.layer(name)
            villages = self.villages
            pieces = overlay_areas(gdf, villages)
            record_area = ellipsoidal_area(gdf.geometry.values, gdf.crs)
            with np.errstate(divide="ignore", invalid="ignore"):
                share = pieces["area_m2"].to_numpy() / record_area[pieces["left"].to_numpy()]
            self._cache[key] = pd.DataFrame({"row": pieces["left"].to_numpy(),
                                             "village": villages["code"].to_numpy()[pieces["right"].to_numpy()],
                                             "share": np.nan_to_num(share)})
        return self._cache[key]

    def resolver(self, gdf: pd.DataFrame, layer: str, where: str) -> Callable[[str], object]:
        code_sets = self.registry.code_sets

        def resolve(name: str):
            if name in gdf.columns:
                return gdf[name]
            if name in code_sets:
                return code_sets[name]
            raise RuleError(f"{where}: {name!r} is neither a column of layer {layer!r} nor a code set; "
                            f"columns: {sorted(c for c in gdf.columns if c != 'geometry')}")
        return resolve


def _units_from_xzq(xzq: gpd.GeoDataFrame) -> tuple[pd.DataFrame, gpd.GeoDataFrame]:
    _require(xzq, "xzq", ["XZQDM"])
    codes = xzq["XZQDM"].astype("string").str.strip()
    if "XZQJB" in xzq.columns:
        level = xzq["XZQJB"].astype("string").str.strip()
    else:
        level = pd.Series(pd.NA, index=xzq.index, dtype="string")
    by_length = codes.str.len().map({6: "county", 9: "township", 12: "village"})
    level = level.where(level.isin(LEVELS), by_length)
    if level.isna().any():
        bad = codes[level.isna()].head(3).tolist()
        raise FieldError(f"xzq has units of unknown level (XZQDM e.g. {bad}); give XZQJB county/township/village "
                         "or 6/9/12-digit codes")
    # 12-digit township codes padded with zeros (130599100000) → 9 digits; counties → 6
    n = level.map(CODE_LENGTH)
    codes = pd.Series([c[:k] for c, k in zip(codes, n)], index=xzq.index, dtype="string")
    names = xzq["XZQMC"].astype("string") if "XZQMC" in xzq.columns else codes
    units = pd.DataFrame({"code": codes.astype(str), "name": names.fillna(codes).astype(str),
                          "level": level.astype(str)})
    units = units.drop_duplicates("code").reset_index(drop=True)
    village_rows = (level == "village").to_numpy()
    villages = gpd.GeoDataFrame({"code": codes[village_rows].astype(str).to_numpy()},
                                geometry=xzq.geometry.values[village_rows], crs=xzq.crs)
    return units, villages


# --- built-in overlay measures ---------------------------------------------------------------------

def _yjjbnt_pieces(ctx: _Context) -> pd.DataFrame:
    if "yjjbnt" not in ctx._cache:
        yj, tb = ctx.layer("yjjbnt"), ctx.layer("dltb")
        if not yj.crs.equals(tb.crs):
            raise CRSError(f"yjjbnt ({yj.crs}) and dltb ({tb.crs}) are in different CRSs; re-ingest into one store")
        # YJJBNT polygons that overlap one another count their shared part once (analysis.faces)
        faces, face_ids = disjoint_faces(yj, ctx.ids("yjjbnt").to_numpy())
        pieces = overlay_areas(faces, tb)
        r = pieces["right"].to_numpy()
        pieces["village"] = ctx.village_of("dltb").to_numpy()[r]
        pieces["cultivated"] = tb["DLBM"].isin(ctx.registry.code_sets.get("cultivated", set())).to_numpy()[r]
        pieces["yj_id"] = face_ids[pieces["left"].to_numpy()] if len(pieces) else []
        pieces["tb_id"] = ctx.ids("dltb").to_numpy()[r]
        total = float(ellipsoidal_area(faces.geometry.values, yj.crs).sum())
        covered = float(pieces["area_m2"].sum())
        if total - covered > 1.0:
            ctx.notes.append(f"yjjbnt: {total - covered:.2f} m² of 永久基本农田 lie outside the DLTB coverage and "
                             "are not counted")
        ctx._cache["yjjbnt"] = pieces
    return ctx._cache["yjjbnt"]


def _yj_ids(p: pd.DataFrame) -> pd.DataFrame:
    """The YJJBNT ids behind the pieces (a piece under two overlapping polygons names both)."""
    return pd.DataFrame({"village": p["village"], "layer": "yjjbnt", "rid": p["yj_id"]}).explode("rid")


def _basic_farmland_area(ctx: _Context) -> Contribution:
    p = _yjjbnt_pieces(ctx)
    return Contribution(pd.DataFrame({"village": p["village"], "value": p["area_m2"]}), _yj_ids(p))


def _basic_farmland_cultivated_area(ctx: _Context) -> Contribution:
    p = _yjjbnt_pieces(ctx)
    p = p[p["cultivated"]]
    ids = pd.concat([_yj_ids(p), pd.DataFrame({"village": p["village"], "layer": "dltb", "rid": p["tb_id"]})])
    return Contribution(pd.DataFrame({"village": p["village"], "value": p["area_m2"]}), ids)


def _change_pieces(ctx: _Context) -> pd.DataFrame:
    if "change" not in ctx._cache:
        prev, cur = ctx.layer("dltb_prev"), ctx.layer("dltb")
        if not prev.crs.equals(cur.crs):
            raise CRSError(f"dltb_prev ({prev.crs}) and dltb ({cur.crs}) are in different CRSs")
        # a patch identical in both years (same DLBM, same geometry) cannot hold a change: leave the twins
        # out of the overlay, which then only sees the patches that moved (as analysis.changes does)
        same_prev, same_cur = unchanged_mask(prev, cur)
        keep_prev, keep_cur = np.flatnonzero(~same_prev), np.flatnonzero(~same_cur)
        pieces = overlay_areas(prev.iloc[keep_prev], cur.iloc[keep_cur])
        pieces["left"] = keep_prev[pieces["left"].to_numpy()]
        pieces["right"] = keep_cur[pieces["right"].to_numpy()]
        pieces = pieces[pieces["area_m2"] >= float(ctx.options["change_min_piece_m2"])].copy()
        left, right = pieces["left"].to_numpy(), pieces["right"].to_numpy()
        pieces["village"] = ctx.village_of("dltb").to_numpy()[right]
        pieces["prev_construction"] = (prev["category"] == CONSTRUCTION).to_numpy()[left]
        pieces["cur_construction"] = (cur["category"] == CONSTRUCTION).to_numpy()[right]
        pieces["prev_cultivated"] = prev["DLBM"].isin(ctx.registry.code_sets.get("cultivated", set())
                                                      ).to_numpy()[left]
        pieces["prev_kcxs"] = prev["KCXS"].to_numpy()[left]
        pieces["cur_kcxs"] = cur["KCXS"].to_numpy()[right]
        pieces["prev_id"] = ctx.ids("dltb_prev").to_numpy()[left]
        pieces["cur_id"] = ctx.ids("dltb").to_numpy()[right]
        ctx._cache["change"] = pieces
    return ctx._cache["change"]


def _change_contribution(p: pd.DataFrame, value: pd.Series) -> Contribution:
    ids = pd.concat([pd.DataFrame({"village": p["village"], "layer": "dltb", "rid": p["cur_id"]}),
                     pd.DataFrame({"village": p["village"], "layer": "dltb_prev", "rid": p["prev_id"]})])
    return Contribution(pd.DataFrame({"village": p["village"], "value": value}), ids)


def _new_construction_area(ctx: _Context) -> Contribution:
    p = _change_pieces(ctx)
    p = p[~p["prev_construction"] & p["cur_construction"]]
    return _change_contribution(p, p["area_m2"] * (1.0 - p["cur_kcxs"]))


def _new_construction_cultivated_area(ctx: _Context) -> Contribution:
    p = _change_pieces(ctx)
    p = p[p["prev_cultivated"] & p["cur_construction"]]
    return _change_contribution(p, p["area_m2"] * (1.0 - p["prev_kcxs"]))


# name → (source layers, function)
BUILTINS: dict[str, tuple[tuple[str, ...], Callable[[_Context], Contribution]]] = {
    "basic_farmland_area": (("yjjbnt", "dltb"), _basic_farmland_area),
    "basic_farmland_cultivated_area": (("yjjbnt", "dltb"), _basic_farmland_cultivated_area),
    "new_construction_area": (("dltb_prev", "dltb"), _new_construction_area),
    "new_construction_cultivated_area": (("dltb_prev", "dltb"), _new_construction_cultivated_area),
}


def _term_contribution(ctx: _Context, ind: Indicator, term: Term) -> Contribution:
    gdf = ctx.layer(term.layer)
    where = f"indicator {ind.code!r} (layer {term.layer!r})"
    resolve = ctx.resolver(gdf, term.layer, where)
    if term.where is not None:
        mask = term.where.evaluate(resolve)
        if not _is_series(mask):
            mask = pd.Series(bool(mask), index=gdf.index)
        mask = _as_bool(mask).to_numpy()
    else:
        mask = np.ones(len(gdf), dtype=bool)
    if term.sum is None:
        value = pd.Series(1.0, index=gdf.index)
    else:
        value = term.sum.evaluate(resolve)
        value = value if _is_series(value) else pd.Series(value, index=gdf.index)
        value = pd.to_numeric(value, errors="coerce").astype(float)
        bad = value[mask].isna()
        if bad.any():
            rows = ctx.ids(term.layer)[mask][bad.to_numpy()].head(3).tolist()
            raise FieldError(f"{where}: {term.sum.text!r} has no value for {int(bad.sum())} record(s) "
                             f"(e.g. ids {rows}); fill the field or exclude the rows with 'where'")
    ids = ctx.ids(term.layer)
    if term.attribute == "record":
        village = ctx.village_of(term.layer)
        return Contribution(
            pd.DataFrame({"village": village[mask].to_numpy(), "value": value[mask].to_numpy()}),
            pd.DataFrame({"village": village[mask].to_numpy(), "layer": term.layer, "rid": ids[mask].to_numpy()}))
    shares = ctx.split_shares(term.layer)
    shares = shares[mask[shares["row"].to_numpy()]]
    rows = shares["row"].to_numpy()
    return Contribution(
        pd.DataFrame({"village": shares["village"].to_numpy(), "value": value.to_numpy()[rows] *
                      shares["share"].to_numpy()}),
        pd.DataFrame({"village": shares["village"].to_numpy(), "layer": term.layer, "rid": ids.to_numpy()[rows]}))


def _id_lists(ids: pd.DataFrame) -> dict[str, dict[str, list]]:
    """unit code (village, township and county) → {layer: sorted unique ids}."""
    out: dict[str, dict[str, list]] = {}
    if len(ids) == 0:
        return out
    village = ids["village"].astype(str).tolist()
    layer = ids["layer"].astype(str).tolist()
    rid = [v.item() if hasattr(v, "item") else v for v in ids["rid"].tolist()]
    groups: dict[tuple[str, str], set] = {}
    for v, lyr, r in zip(village, layer, rid):
        groups.setdefault((v, lyr), set()).add(r)
    for n in (9, 6):  # 乡镇 and 县: unions of their villages
        for (v, lyr), members in list(groups.items()):
            if len(v) == 12:
                groups.setdefault((v[:n], lyr), set()).update(members)
    for (unit, lyr), members in sorted(groups.items()):
        out.setdefault(unit, {})[lyr] = sorted(members, key=lambda x: (isinstance(x, str), x))
    return out


def _merge_ids(parts: list[dict[str, list]]) -> dict[str, list]:
    out: dict[str, set] = {}
    for part in parts:
        for layer, values in part.items():
            out.setdefault(layer, set()).update(values)
    return {layer: sorted(values, key=lambda v: (isinstance(v, str), v)) for layer, values in sorted(out.items())}


def compute_indicators(layers: Mapping[str, gpd.GeoDataFrame], registry: Registry,
                       code_sets: Mapping[str, str | None] | None = None) -> IndicatorResult:
    """Every registered indicator for every unit (county, 乡镇, 村) of the xzq layer.

    ``layers``: the store's layers by name (absent layers may be missing or None: indicators that need
    them are reported in ``skipped``). ``code_sets``: the land-use code set of dltb / dltb_prev as recorded at
    ingest (missing → detected). Returns the long table described in :class:`IndicatorResult`.
    """
    ctx = _Context(layers, registry, code_sets)
    skipped: dict[str, str] = {}
    contributions: dict[str, Contribution] = {}
    order = registry.order()
    for code in order:
        ind = registry.indicators[code]
        if ind.kind == "formula":
            missing = [d for d in sorted(registry.dependencies(code)) if d in skipped]
            if missing:
                skipped[code] = f"reads {', '.join(missing)}, which could not be computed"
            continue
        absent = [s for s in ind.sources if not ctx.has(s)]
        if absent:
            skipped[code] = f"layer(s) {', '.join(absent)} not in the store"
            continue
        if ind.kind == "builtin":
            contributions[code] = BUILTINS[ind.builtin][1](ctx)
        else:
            contributions[code] = Contribution.concat([_term_contribution(ctx, ind, t) for t in ind.terms])

    units = _complete_units(ctx.units, [c.values["village"] for c in contributions.values()])
    index = pd.Index(units["code"].tolist(), name="unit_code")
    wide = pd.DataFrame(index=index)
    ids_by_unit: dict[str, dict[str, dict[str, list]]] = {}
    codes = units["code"].tolist()
    position = {c: k for k, c in enumerate(codes)}
    by_level = {lvl: [c for c, u in zip(codes, units["level"]) if u == lvl] for lvl in LEVELS}
    for code, contrib in contributions.items():
        column = np.zeros(len(codes))
        if len(contrib.values):  # villages: Σ contributions; 乡镇: Σ villages; 县: Σ 乡镇
            sums = contrib.values.groupby("village")["value"].sum()
            for village, v in zip(sums.index.astype(str), sums.to_numpy()):
                column[position[village]] += v
        for level, child_level, n in (("township", "village", 9), ("county", "township", 6)):
            for child in by_level[child_level]:
                column[position[child[:n]]] += column[position[child]]
        wide[code] = column
        ids_by_unit[code] = _id_lists(contrib.ids)

    for code in order:
        ind = registry.indicators[code]
        if ind.kind != "formula" or code in skipped:
            continue

        def resolve(name, _ind=ind):
            if name in wide.columns:
                return wide[name]
            if name in registry.params:
                return registry.params[name].series(index)
            if name in registry.code_sets:
                return registry.code_sets[name]
            raise RuleError(f"indicator {_ind.code!r}: {name!r} has no value")  # pragma: no cover - checked

        value = ind.formula.evaluate(resolve)
        value = value if _is_series(value) else pd.Series(value, index=index)
        wide[code] = pd.to_numeric(value, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
        deps = sorted(registry.dependencies(code))
        ids_by_unit[code] = {u: _merge_ids([ids_by_unit[d].get(u, {}) for d in deps]) for u in index}

    values = _long_table(wide, units, registry, ids_by_unit)
    warnings = _warnings(values, registry)
    return IndicatorResult(values, warnings, skipped, ctx.notes, dict(ctx.id_fields))


def _complete_units(units: pd.DataFrame, village_series: list[pd.Series]) -> pd.DataFrame:
    """Add villages met in the data but absent from xzq (and their township / county), named by code."""
    known = set(units["code"])
    extra = []
    for series in village_series:
        for code in pd.unique(series.astype(str)):
            for level, n in (("village", 12), ("township", 9), ("county", 6)):
                c = code[:n]
                if c not in known:
                    known.add(c)
                    extra.append({"code": c, "name": f"{c} (不在行政区图层中)", "level": level})
    if extra:
        units = pd.concat([units, pd.DataFrame(extra)], ignore_index=True)
    for level, n in (("township", 6), ("village", 9)):  # parents of xzq units must exist too
        for code in units.loc[units["level"] == level, "code"].tolist():
            parent = code[:n]
            if parent not in known:
                known.add(parent)
                parent_level = "county" if n == 6 else "township"
                units = pd.concat([units, pd.DataFrame([{"code": parent, "name": f"{parent} (不在行政区图层中)",
                                                         "level": parent_level}])], ignore_index=True)
    rank = units["level"].map({lvl: k for k, lvl in enumerate(LEVELS)})
    units = units.assign(_rank=rank).sort_values(["_rank", "code"]).drop(columns="_rank")
    parent_len = units["level"].map({"county": 0, "township": 6, "village": 9})
    units["parent_code"] = [c[:n] if n else None for c, n in zip(units["code"], parent_len)]
    return units.reset_index(drop=True)


def _long_table(wide: pd.DataFrame, units: pd.DataFrame, registry: Registry,
                ids_by_unit: dict[str, dict[str, dict[str, list]]]) -> pd.DataFrame:
    parents = dict(zip(units["code"], units["parent_code"]))
    precision = registry.precision
    codes = units["code"].tolist()
    levels, names, parent_codes = units["level"].tolist(), units["name"].tolist(), units["parent_code"].tolist()
    columns: dict[str, list] = {k: [] for k in (
        "indicator", "name", "level", "unit_code", "unit_name", "parent_code", "value", "unit", "value_m2",
        "value_ha", "value_mu", "value_rounded", "rule", "formula", "sources", "record_ids", "record_count")}
    nan = [float("nan")] * len(codes)
    for code in [c for c in registry.indicators if c in wide.columns]:
        ind = registry.indicators[code]
        values = dict(zip(codes, wide[code].tolist()))
        n = len(codes)
        columns["indicator"] += [code] * n
        columns["name"] += [ind.name] * n
        columns["level"] += levels
        columns["unit_code"] += codes
        columns["unit_name"] += names
        columns["parent_code"] += parent_codes
        columns["value"] += [values[u] for u in codes]
        columns["unit"] += [ind.unit] * n
        for area_unit in AREA_UNITS:
            if ind.unit == "m2":
                rounded = balance_tree(values, parents, precision[area_unit], AREA_UNITS[area_unit][0])
                columns[f"value_{area_unit}"] += [rounded[u] for u in codes]
            else:
                columns[f"value_{area_unit}"] += nan
        if ind.unit == "m2":
            columns["value_rounded"] += columns["value_m2"][-n:]
        elif ind.additive:  # counts and other sums balance like areas
            rounded = balance_tree(values, parents, precision[ind.unit])
            columns["value_rounded"] += [rounded[u] for u in codes]
        else:  # ratios: each rounded on its own
            columns["value_rounded"] += [round_half_up(values[u], precision.get(ind.unit, 2)) for u in codes]
        columns["rule"] += [ind.rule] * n
        columns["formula"] += [ind.formula_text] * n
        sources = list(registry.sources_of(code))
        columns["sources"] += [list(sources) for _ in codes]
        ids = [ids_by_unit.get(code, {}).get(u, {}) for u in codes]
        columns["record_ids"] += ids
        columns["record_count"] += [sum(len(v) for v in d.values()) for d in ids]
    out = pd.DataFrame(columns)
    out["value"] = out["value"].astype(float)
    return out


def _warnings(values: pd.DataFrame, registry: Registry) -> pd.DataFrame:
    rows = []
    for code, ind in registry.indicators.items():
        if not ind.thresholds:
            continue
        for _, row in values[values["indicator"] == code].iterrows():
            for t in crossed_thresholds(row["value"], list(ind.thresholds)):
                rows.append({"indicator": code, "name": ind.name, "level": row["level"],
                             "unit_code": row["unit_code"], "unit_name": row["unit_name"],
                             "value": row["value"], "value_rounded": row["value_rounded"], "unit": ind.unit,
                             "op": t.op, "threshold": t.value, "label": t.label, "severity": t.severity})
    columns = ["indicator", "name", "level", "unit_code", "unit_name", "value", "value_rounded", "unit", "op",
               "threshold", "label", "severity"]
    return pd.DataFrame(rows, columns=columns)


def wide_table(values: pd.DataFrame, level: str | None = None, area_unit: str = "ha") -> pd.DataFrame:
    """One row per unit, one column per indicator (areas in ``area_unit``, balanced), for reports."""
    if area_unit not in AREA_UNITS:
        raise RuleError(f"unknown area unit {area_unit!r}; use one of {sorted(AREA_UNITS)}")
    frame = values if level is None else values[values["level"] == level]
    shown = frame["value_rounded"].where(frame["unit"] != "m2", frame[f"value_{area_unit}"])
    table = frame.assign(shown=shown).pivot(index="unit_code", columns="indicator", values="shown")
    units = frame.drop_duplicates("unit_code").set_index("unit_code")[["unit_name", "level"]]
    order = list(dict.fromkeys(frame["indicator"]))
    table = units.join(table[order]).reset_index()
    return table

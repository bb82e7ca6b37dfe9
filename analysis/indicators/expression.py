"""The expression language of the registry: numbers, strings, names, + − × ÷, comparisons, in / not in, and /
or / not and a few functions; parsed with ast, never eval. A division by zero gives no value (NaN)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

import numpy as np
import pandas as pd

from layers.errors import RuleError


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

"""CQL2 text filters → store filters (layers.store.query), or a clear 400. The store compiles them to the SQL of
its backend; nothing here writes SQL.

Supported (the table is in docs/ogc.md):

- comparisons ``= <> < <= > >=`` between a property and a literal (or two properties of the same kind),
  ``LIKE`` / ``NOT LIKE`` (case-sensitive, ``%`` and ``_`` wildcards, ``\\`` escape), ``IN`` / ``NOT IN``,
  ``BETWEEN`` / ``NOT BETWEEN``, ``IS NULL`` / ``IS NOT NULL``, ``AND`` ``OR`` ``NOT``, ``INCLUDE`` / ``EXCLUDE``;
- spatial predicates of the geometry against a literal geometry (WKT, or ``BBOX(…)``): ``S_INTERSECTS``,
  ``S_DISJOINT``, ``S_CONTAINS``, ``S_WITHIN``, ``S_TOUCHES``, ``S_CROSSES``, ``S_OVERLAPS``, ``S_EQUALS``.
  Literal coordinates are in ``filter-crs`` (default CRS84, lon/lat), in that CRS's axis order.

Everything else (arithmetic, functions such as CASEI, temporal and array predicates, distance predicates,
comparing a text property with a number …) is refused with :class:`FilterError` naming the construct —
a filter is never silently ignored.

Literal geometries are carried into the store CRS here (their ``filter-crs`` and axis order, crs.py); a spatial
predicate that is a top-level conjunct also bounds the rows for the store's index (Expr.envelope).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

import pygeofilter.ast as A
import pygeofilter.values as V
import shapely
import shapely.geometry

from layers.store import query as Q

from ..errors import RequestError
from .crs import geometry_in_store, key_of_any
from .upstream import parse_cql2_text

SPATIAL_OPS = {
    A.GeometryIntersects: "intersects",
    A.GeometryDisjoint: "disjoint",
    A.GeometryContains: "contains",
    A.GeometryWithin: "within",
    A.GeometryTouches: "touches",
    A.GeometryCrosses: "crosses",
    A.GeometryOverlaps: "overlaps",
    A.GeometryEquals: "equals",
}
# With the literal on the left, the predicate turns into its converse.
CONVERSE = {"contains": "within", "within": "contains"}
COMPARE = {A.Equal: "=", A.NotEqual: "<>", A.LessThan: "<", A.LessEqual: "<=", A.GreaterThan: ">",
           A.GreaterEqual: ">="}
NUMERIC = {"int", "float"}


class FilterError(RequestError):
    """The filter cannot be parsed or evaluated exactly (HTTP 400 with this message)."""


# Bounds on what one filter may ask (every store must be able to compile it: SQLite before 3.46 overflows its
# parser stack some 45 parentheses deep, and Python recursion ends at 1 000).
MAX_FILTER_CHARS = 64 * 1024
MAX_OPERATORS = 256  # AND / OR / NOT
MAX_DEPTH = 20  # nested parentheses in the text; alternating AND / OR / NOT in the parsed filter
INT64 = (-(2**63), 2**63 - 1)
_OPERATOR = re.compile(r"\b(AND|OR|NOT)\b", re.IGNORECASE)
_QUOTED = re.compile(r"'(?:[^']|'')*'")


def check_size(text: str) -> None:
    """FilterError for a filter too long, with too many boolean operators or nested too deeply (before any
    parser sees it)."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"filter is {len(text):,} characters; at most {MAX_FILTER_CHARS:,}")
    bare = _QUOTED.sub("''", text)  # operators and parentheses inside string literals do not count
    ops = len(_OPERATOR.findall(bare))
    if ops > MAX_OPERATORS:
        raise FilterError(f"filter has {ops} AND / OR / NOT operators; at most {MAX_OPERATORS} (use IN (…) for a "
                          "list of values)")
    depth = deepest = 0
    for ch in bare:
        if ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth -= 1
    if deepest > MAX_DEPTH + 4:  # a WKT multipolygon adds three levels of its own
        raise FilterError(f"filter is nested {deepest} parentheses deep; at most {MAX_DEPTH}")


def parse(text: str):
    """Parse CQL2 text; FilterError with the position of the problem."""
    if not text or not text.strip():
        raise FilterError("filter is empty; give a CQL2 text expression such as DLBM = '0101'")
    check_size(text)
    try:
        return parse_cql2_text(text)
    except RecursionError:
        raise FilterError(f"filter is nested too deeply; at most {MAX_DEPTH} levels") from None
    except Exception as exc:  # lark raises several classes; all mean "not CQL2 text we understand"
        raise FilterError(f"filter {text[:200]!r} is not valid CQL2 text: {_short(exc)}") from None


def _depth(expr: Q.Expr) -> int:
    """Levels of the filter as a store writes it (a chain of one operator is one level), without recursion."""
    deepest = 0
    stack: list[tuple[Q.Expr, int]] = [(expr, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, (Q.And, Q.Or)):
            for child in (node.left, node.right):
                stack.append((child, level if type(child) is type(node) else level + 1))
        elif isinstance(node, Q.Not):
            stack.append((node.operand, level + 1))
    return deepest


def _short(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()
    first = msg[0] if msg else type(exc).__name__
    col = getattr(exc, "column", None)
    return f"{first} (column {col})" if col and "col" not in first else first


@dataclass
class _Ctx:
    columns: dict[str, str]  # property name → kind (str int float bool date datetime)
    storage_epsg: int
    filter_crs: str | int  # default CRS of literals without an SRID
    geometry_names: tuple[str, ...] = ("geometry",)


def translate(ast, columns: dict[str, str], storage_epsg: int, filter_crs="CRS84",
              geometry_names: tuple[str, ...] = ("geometry",)) -> Q.Expr:
    """A parsed CQL2 AST as a store filter over ``columns``; FilterError for anything unsupported.
    ``geometry_names``: the names that mean the feature's geometry (``geometry``, and the provider's geom_field)."""
    ctx = _Ctx(columns=columns, storage_epsg=int(storage_epsg), filter_crs=filter_crs,
               geometry_names=tuple(geometry_names))
    try:
        expr = _node(ast, ctx)
    except RecursionError:
        raise FilterError(f"filter is nested too deeply; at most {MAX_DEPTH} levels") from None
    depth = _depth(expr)
    if depth > MAX_DEPTH:
        raise FilterError(f"filter is nested {depth} levels deep (AND / OR / NOT); at most {MAX_DEPTH}")
    return expr


def property_equals(name: str, value: str, columns: dict[str, str]) -> Q.Expr:
    """``?NAME=value`` query parameters (queryables as parameters): equality on one property."""
    kind = columns[name]
    try:
        typed = _coerce_text(value, kind)
    except ValueError:
        raise FilterError(f"query parameter {name}={value!r}: {name} is {kind}; give a {kind} value") from None
    return Q.Compare(name, "=", typed)


def _coerce_text(value: str, kind: str):
    if kind == "int":
        if len(value) > 24:
            raise ValueError(value)
        integer = int(value)
        if not INT64[0] <= integer <= INT64[1]:
            raise ValueError(value)
        return integer
    if kind == "float":
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    if kind == "bool":
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(value)
        return value.lower() in ("true", "1")
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "datetime":
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


# --- nodes ------------------------------------------------------------------------------------------

def _node(n, ctx: _Ctx) -> Q.Expr:
    if isinstance(n, A.And):
        return Q.And(_node(n.lhs, ctx), _node(n.rhs, ctx))
    if isinstance(n, A.Or):
        return Q.Or(_node(n.lhs, ctx), _node(n.rhs, ctx))
    if isinstance(n, A.Not):
        return Q.Not(_node(n.sub_node, ctx))
    if isinstance(n, A.Include):
        return Q.Const(not n.not_)
    if isinstance(n, A.Comparison):
        return _comparison(n, ctx)
    if isinstance(n, A.Like):
        return _like(n, ctx)
    if isinstance(n, A.In):
        return _in(n, ctx)
    if isinstance(n, A.Between):
        return _between(n, ctx)
    if isinstance(n, A.IsNull):
        name, _ = _attribute(n.lhs, ctx, "IS NULL")
        return Q.IsNull(name, negate=bool(n.not_))
    if type(n) in SPATIAL_OPS:
        return _spatial(n, ctx)
    if isinstance(n, A.BBox):
        return _bbox(n, ctx)
    if isinstance(n, bool):
        return Q.Const(n)
    raise FilterError(f"{_describe(n)} is not supported in filters; supported: = <> < <= > >= LIKE IN BETWEEN "
                      "IS NULL AND OR NOT and S_INTERSECTS S_DISJOINT S_CONTAINS S_WITHIN S_TOUCHES S_CROSSES "
                      "S_OVERLAPS S_EQUALS BBOX against a literal geometry")


def _describe(n) -> str:
    if isinstance(n, A.Function):
        return f"function {n.name.upper()}()" + (" (CASEI)" if n.name.lower() == "lower" else "")
    if isinstance(n, A.Arithmetic):
        return f"arithmetic ({n.op.value})"
    if isinstance(n, A.TemporalPredicate):
        return f"temporal predicate {n.op.name}"
    if isinstance(n, A.ArrayPredicate):
        return f"array predicate {n.op.name}"
    if isinstance(n, (A.SpatialDistancePredicate,)):
        return f"distance predicate {n.op.name}"
    if isinstance(n, A.Relate):
        return "S_RELATE"
    if isinstance(n, A.Exists):
        return "EXISTS"
    return type(n).__name__


def _attribute(n, ctx: _Ctx, where: str) -> tuple[str, str]:
    if not isinstance(n, A.Attribute):
        raise FilterError(f"{where}: expected a property name, got {_describe_value(n)}")
    name = n.name
    if name in ctx.geometry_names:
        raise FilterError(f"{where}: the geometry can only be used in spatial predicates (S_INTERSECTS …)")
    if name not in ctx.columns:
        known = ", ".join(sorted(ctx.columns))
        raise FilterError(f"unknown property {name!r}; queryables of this collection: {known}")
    return name, ctx.columns[name]


def _describe_value(v) -> str:
    if isinstance(v, (A.Node, A.Function, A.Arithmetic)):
        return _describe(v)
    return repr(v)


def _is_literal(v) -> bool:
    return isinstance(v, (str, int, float, bool, dt.date, dt.datetime)) and not isinstance(v, A.Node)


def _literal_kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, dt.datetime):
        return "datetime"
    if isinstance(v, dt.date):
        return "date"
    if isinstance(v, str):
        return "str"
    return type(v).__name__


def _check_literal(name: str, kind: str, v, where: str):
    lk = _literal_kind(v)
    ok = (kind in NUMERIC and lk == "number") or (kind == lk) or (kind == "datetime" and lk == "date")
    if not ok:
        hint = ""
        if kind == "str" and lk == "number":
            hint = f"; {name} is text: quote the value ('{v}')"
        elif kind in NUMERIC and lk == "str":
            hint = f"; {name} is a number: write it without quotes"
        elif kind in ("date", "datetime") and lk == "str":
            hint = f"; write DATE('{v}') or TIMESTAMP('{v}')"
        raise FilterError(f"{where}: property {name} ({kind}) cannot be compared with {_shown(v)} ({lk}){hint}")
    if lk == "number" and not isinstance(v, bool):
        if isinstance(v, float) and not math.isfinite(v):
            raise FilterError(f"{where}: {_shown(v)} is not a finite number")
        if kind == "int" and isinstance(v, int) and not INT64[0] <= v <= INT64[1]:
            raise FilterError(f"{where}: {_shown(v)} is beyond the 64-bit integers {name} can hold")
        if kind == "float" and isinstance(v, int):
            try:
                v = float(v)
            except OverflowError:
                raise FilterError(f"{where}: {_shown(v)} is beyond the numbers {name} can hold") from None
    if kind == "datetime" and lk == "date" and not isinstance(v, dt.datetime):
        v = dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC)
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        try:
            v.astimezone(dt.UTC)
        except OverflowError:
            raise FilterError(f"{where}: {v.isoformat()} is outside the years 1–9999 once in UTC") from None
    return v


def _shown(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "…"


def _comparison(n, ctx: _Ctx) -> Q.Expr:
    op = COMPARE[type(n)]
    lhs, rhs = n.lhs, n.rhs
    if _is_literal(lhs) and isinstance(rhs, A.Attribute):  # 5 < TBMJ → TBMJ > 5
        lhs, rhs = rhs, lhs
        op = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(op, op)
    col, kind = _attribute(lhs, ctx, f"comparison {op}")
    if isinstance(rhs, A.Attribute):
        col2, kind2 = _attribute(rhs, ctx, f"comparison {op}")
        if not (kind == kind2 or (kind in NUMERIC and kind2 in NUMERIC)):
            raise FilterError(f"comparison {op}: {lhs.name} ({kind}) and {rhs.name} ({kind2}) have different kinds")
        return Q.CompareColumns(col, op, col2)
    if not _is_literal(rhs):
        raise FilterError(f"comparison {op}: {_describe_value(rhs)} is not supported; compare with a literal value")
    if kind == "bool" and op not in ("=", "<>"):
        raise FilterError(f"comparison {op}: {lhs.name} is boolean; use = or <>")
    return Q.Compare(col, op, _check_literal(lhs.name, kind, rhs, f"comparison {op}"))


def _like(n, ctx: _Ctx) -> Q.Expr:
    col, kind = _attribute(n.lhs, ctx, "LIKE")
    if kind != "str":
        raise FilterError(f"LIKE: property {n.lhs.name} is {kind}, LIKE needs a text property")
    if not isinstance(n.pattern, str):
        raise FilterError(f"LIKE: the pattern must be a quoted string, got {n.pattern!r}")
    if n.nocase:
        raise FilterError("case-insensitive LIKE (ILIKE / CASEI) is not supported; LIKE is case-sensitive")
    # CQL2 LIKE: '%' any string, '_' one character, '\\' escapes — the same as SQL LIKE … ESCAPE '\\'.
    # (pygeofilter's cql2-text parser labels the single-character wildcard '.', which is not CQL2.)
    return Q.Like(col, n.pattern, negate=bool(n.not_))


def _in(n, ctx: _Ctx) -> Q.Expr:
    col, kind = _attribute(n.lhs, ctx, "IN")
    if not n.sub_nodes:
        raise FilterError("IN: the list is empty")
    values = []
    for v in n.sub_nodes:
        if not _is_literal(v):
            raise FilterError(f"IN: list items must be literals, got {_describe_value(v)}")
        values.append(_check_literal(n.lhs.name, kind, v, "IN"))
    return Q.In(col, tuple(values), negate=bool(n.not_))


def _between(n, ctx: _Ctx) -> Q.Expr:
    col, kind = _attribute(n.lhs, ctx, "BETWEEN")
    for v in (n.low, n.high):
        if not _is_literal(v):
            raise FilterError(f"BETWEEN: bounds must be literals, got {_describe_value(v)}")
    lo = _check_literal(n.lhs.name, kind, n.low, "BETWEEN")
    hi = _check_literal(n.lhs.name, kind, n.high, "BETWEEN")
    return Q.Between(col, lo, hi, negate=bool(n.not_))


# --- spatial -----------------------------------------------------------------------------------------

def _is_geom_attr(v, ctx: _Ctx) -> bool:
    return isinstance(v, A.Attribute) and v.name in ctx.geometry_names


def _literal_geometry(v, ctx: _Ctx) -> shapely.Geometry:
    """A geometry literal in the store CRS (east, north)."""
    src = getattr(v, "yzt_source", None)
    if src is not None:  # what the client wrote, kept by our pygeoapi fix (upstream.modify_pygeofilter)
        gj, crs = src
    else:
        gj = v.geometry
        crs = gj.get("crs", {}).get("properties", {}).get("name") or ctx.filter_crs
    try:
        geom = shapely.geometry.shape({k: val for k, val in gj.items() if k != "crs"})
        key = crs if isinstance(crs, int) or crs == "CRS84" else key_of_any(crs)
        if key not in ("CRS84", 4490, ctx.storage_epsg):
            raise FilterError(f"geometry CRS {crs!r} is not served; use CRS84, EPSG:4490 or "
                              f"EPSG:{ctx.storage_epsg}")
        out = geometry_in_store(geom, key, ctx.storage_epsg)
    except RequestError as exc:
        raise FilterError(str(exc)) from None
    except Exception as exc:
        raise FilterError(f"geometry literal is not usable: {exc}") from None
    if not shapely.is_valid(out):
        out = shapely.make_valid(out)
    return out


def _spatial(n, ctx: _Ctx) -> Q.Expr:
    op = SPATIAL_OPS[type(n)]
    lhs, rhs = n.lhs, n.rhs
    if _is_geom_attr(rhs, ctx) and not _is_geom_attr(lhs, ctx):
        lhs, rhs = rhs, lhs
        op = CONVERSE.get(op, op)
    if not _is_geom_attr(lhs, ctx):
        raise FilterError(f"S_{op.upper()}: one argument must be the geometry property ('geometry')")
    if isinstance(rhs, (V.Geometry, V.Envelope)):
        return Q.Spatial(op, _literal_geometry(_as_geometry(rhs), ctx))
    raise FilterError(f"S_{op.upper()}: the other argument must be a literal geometry (WKT or ENVELOPE), "
                      f"got {_describe_value(rhs)}")


def _as_geometry(v):
    if isinstance(v, V.Envelope):
        g = V.Geometry(v.geometry)
        if hasattr(v, "yzt_source"):
            g.yzt_source = v.yzt_source
        return g
    return v


def _bbox(n, ctx: _Ctx) -> Q.Expr:
    if not _is_geom_attr(n.lhs, ctx):
        raise FilterError("BBOX: the first argument must be the geometry property ('geometry')")
    gj = shapely.geometry.mapping(shapely.box(n.minx, n.miny, n.maxx, n.maxy))
    lit = V.Geometry(gj)
    lit.yzt_source = (gj, n.crs or ctx.filter_crs)
    return Q.Spatial("intersects", _literal_geometry(lit, ctx))

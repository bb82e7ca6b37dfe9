"""CQL2 text filters → SQL for both stores (SQLite/GeoPackage and PostGIS), or a clear 400.

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

SQLite has no spatial functions here (this Python cannot load extensions), so spatial predicates become a
call to ``yzt_spatial(op, geom, literal_wkb)``, a function :mod:`services.ogc.engine` registers on each
connection (shapely, prepared literal), plus an R-tree pre-filter when the predicate is a top-level conjunct.
PostGIS gets ``ST_Intersects(geom, ST_GeomFromWKB(…, srid))`` and friends, which use the GiST index.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field

import pygeofilter.ast as A
import pygeofilter.values as V
import shapely
import shapely.geometry

from .crs import CRSParamError, geometry_in_store, key_of_any

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
# Every op except disjoint implies the envelopes intersect: usable as an index pre-filter.
IMPLIES_INTERSECTION = {"intersects", "contains", "within", "touches", "crosses", "overlaps", "equals"}
POSTGIS_FN = {op: f"ST_{op.capitalize()}" for op in SPATIAL_OPS.values()}
COMPARE = {A.Equal: "=", A.NotEqual: "<>", A.LessThan: "<", A.LessEqual: "<=", A.GreaterThan: ">",
           A.GreaterEqual: ">="}
NUMERIC = {"int", "float"}


_BOOLEAN_RULES = """
?condition: boolean_term
          | condition "OR"i boolean_term                                  -> or_

?boolean_term: boolean_factor
             | boolean_term "AND"i boolean_factor                        -> and_

?boolean_factor: predicate
               | "NOT"i boolean_factor                                    -> not_
               | "(" condition ")"
"""


@functools.lru_cache(maxsize=1)
def _parser():
    """pygeofilter's CQL2-text grammar and transformer with the boolean rules corrected.

    pygeofilter 0.4.0 gives AND and OR the same precedence (``A OR B AND C`` parses as ``(A OR B) AND C``)
    and allows NOT only before a single predicate (``NOT (A OR B)`` is a syntax error). CQL2 says: NOT binds
    tightest, then AND, then OR. Everything else (predicates, literals, WKT) is pygeofilter's.
    """
    import os

    import pygeofilter.parsers.cql2_text.parser as p
    from lark import Lark

    grammar = open(os.path.join(os.path.dirname(p.__file__), "grammar.lark"), encoding="utf-8").read()
    start = grammar.index("?condition: condition_1")
    end = grammar.index("?predicate:")
    grammar = grammar[:start] + _BOOLEAN_RULES + "\n" + grammar[end:]
    return Lark(grammar, parser="lalr", maybe_placeholders=False, transformer=p.CQLTransformer(),
                import_paths=[os.path.dirname(os.path.dirname(p.__file__))])


def parse_cql2_text(text: str):
    """Parse CQL2 text into pygeofilter's AST (drop-in for pygeofilter.parsers.cql2_text.parse)."""
    return _parser().parse(text)


class FilterError(ValueError):
    """The filter cannot be parsed or evaluated exactly (→ HTTP 400 with this message)."""


@dataclass
class SqlFilter:
    """A WHERE fragment with its parameters, for one dialect."""

    sql: str
    params: list = field(default_factory=list)
    envelope: tuple[float, float, float, float] | None = None  # every match intersects it (index pre-filter)
    spatial: bool = False  # uses yzt_spatial (SQLite) / ST_* (PostGIS)


def parse(text: str):
    """Parse CQL2 text; FilterError with the position of the problem."""
    if not text or not text.strip():
        raise FilterError("filter is empty; give a CQL2 text expression such as DLBM = '0101'")
    try:
        return parse_cql2_text(text)
    except Exception as exc:  # lark raises several classes; all mean "not CQL2 text we understand"
        raise FilterError(f"filter {text!r} is not valid CQL2 text: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    msg = str(exc).strip().splitlines()
    first = msg[0] if msg else type(exc).__name__
    col = getattr(exc, "column", None)
    return f"{first} (column {col})" if col and "col" not in first else first


@dataclass
class _Ctx:
    columns: dict[str, str]  # property name → kind (str int float bool date datetime)
    geom: str  # geometry column name in the store
    dialect: str  # "sqlite" | "postgis"
    storage_epsg: int
    filter_crs: str | int  # default CRS of literals without an SRID
    alias: str = "t"
    ph: str = "?"
    params: list = field(default_factory=list)
    spatial: bool = False


def translate(ast, columns: dict[str, str], geom: str, dialect: str, storage_epsg: int,
              filter_crs="CRS84", table_alias: str = "t") -> SqlFilter:
    """Translate a parsed CQL2 AST to SQL over ``table_alias``; FilterError for anything unsupported."""
    if dialect not in ("sqlite", "postgis"):
        raise ValueError(dialect)
    ctx = _Ctx(columns=columns, geom=geom, dialect=dialect, storage_epsg=int(storage_epsg),
               filter_crs=filter_crs, alias=table_alias, ph="?" if dialect == "sqlite" else "%s")
    sql = _node(ast, ctx)
    return SqlFilter(sql=sql, params=ctx.params, envelope=_envelope(ast, ctx), spatial=ctx.spatial)


def property_equals(name: str, value: str, columns: dict[str, str], dialect: str,
                    table_alias: str = "t") -> SqlFilter:
    """``?NAME=value`` query parameters (queryables as parameters): equality on one property."""
    kind = columns[name]
    ph = "?" if dialect == "sqlite" else "%s"
    try:
        typed = _coerce_text(value, kind)
    except ValueError:
        raise FilterError(f"query parameter {name}={value!r}: {name} is {kind}; give a {kind} value") from None
    return SqlFilter(sql=f'{table_alias}."{name}" = {ph}', params=[_param(typed, kind, dialect)])


def _coerce_text(value: str, kind: str):
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
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

def _node(n, ctx: _Ctx) -> str:
    if isinstance(n, A.And):
        return f"({_node(n.lhs, ctx)} AND {_node(n.rhs, ctx)})"
    if isinstance(n, A.Or):
        return f"({_node(n.lhs, ctx)} OR {_node(n.rhs, ctx)})"
    if isinstance(n, A.Not):
        return f"(NOT {_node(n.sub_node, ctx)})"
    if isinstance(n, A.Include):
        return "(1 = 0)" if n.not_ else "(1 = 1)"
    if isinstance(n, A.Comparison):
        return _comparison(n, ctx)
    if isinstance(n, A.Like):
        return _like(n, ctx)
    if isinstance(n, A.In):
        return _in(n, ctx)
    if isinstance(n, A.Between):
        return _between(n, ctx)
    if isinstance(n, A.IsNull):
        col, _ = _attribute(n.lhs, ctx, "IS NULL")
        return f"({col} IS {'NOT ' if n.not_ else ''}NULL)"
    if type(n) in SPATIAL_OPS:
        return _spatial(n, ctx)
    if isinstance(n, A.BBox):
        return _bbox(n, ctx)
    if isinstance(n, bool):
        return "(1 = 1)" if n else "(1 = 0)"
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
    if name in ("geometry", ctx.geom):
        raise FilterError(f"{where}: the geometry can only be used in spatial predicates (S_INTERSECTS …)")
    if name not in ctx.columns:
        known = ", ".join(sorted(ctx.columns))
        raise FilterError(f"unknown property {name!r}; queryables of this collection: {known}")
    return f'{ctx.alias}."{name}"', ctx.columns[name]


def _describe_value(v) -> str:
    if isinstance(v, A.Node) or isinstance(v, (A.Function, A.Arithmetic)):
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
        raise FilterError(f"{where}: property {name} ({kind}) cannot be compared with {v!r} ({lk}){hint}")
    if kind == "datetime" and lk == "date":
        v = dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC)
    return v


def _param(v, kind: str, dialect: str):
    if dialect == "sqlite":
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, dt.datetime):
            v = v if v.tzinfo else v.replace(tzinfo=dt.UTC)
            u = v.astimezone(dt.UTC)
            return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"
        if isinstance(v, dt.date):
            return v.isoformat()
        return v
    if isinstance(v, dt.datetime) and v.tzinfo is None:
        return v.replace(tzinfo=dt.UTC)
    return v


def _add(ctx: _Ctx, v, kind: str) -> str:
    ctx.params.append(_param(v, kind, ctx.dialect))
    return ctx.ph


def _comparison(n, ctx: _Ctx) -> str:
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
        return f"({col} {op} {col2})"
    if not _is_literal(rhs):
        raise FilterError(f"comparison {op}: {_describe_value(rhs)} is not supported; compare with a literal value")
    if kind == "bool" and op not in ("=", "<>"):
        raise FilterError(f"comparison {op}: {lhs.name} is boolean; use = or <>")
    v = _check_literal(lhs.name, kind, rhs, f"comparison {op}")
    return f"({col} {op} {_add(ctx, v, kind)})"


def _like(n, ctx: _Ctx) -> str:
    col, kind = _attribute(n.lhs, ctx, "LIKE")
    if kind != "str":
        raise FilterError(f"LIKE: property {n.lhs.name} is {kind}, LIKE needs a text property")
    if not isinstance(n.pattern, str):
        raise FilterError(f"LIKE: the pattern must be a quoted string, got {n.pattern!r}")
    if n.nocase:
        raise FilterError("case-insensitive LIKE (ILIKE / CASEI) is not supported; LIKE is case-sensitive")
    # CQL2 LIKE: '%' any string, '_' one character, '\\' escapes — the same as SQL LIKE … ESCAPE '\\'.
    # (pygeofilter's cql2-text parser labels the single-character wildcard '.', which is not CQL2.)
    pattern = n.pattern
    neg = "NOT " if n.not_ else ""
    return f"({col} {neg}LIKE {_add(ctx, pattern, 'str')} ESCAPE '\\')"


def _in(n, ctx: _Ctx) -> str:
    col, kind = _attribute(n.lhs, ctx, "IN")
    if not n.sub_nodes:
        raise FilterError("IN: the list is empty")
    phs = []
    for v in n.sub_nodes:
        if not _is_literal(v):
            raise FilterError(f"IN: list items must be literals, got {_describe_value(v)}")
        phs.append(_add(ctx, _check_literal(n.lhs.name, kind, v, "IN"), kind))
    return f"({col} {'NOT ' if n.not_ else ''}IN ({', '.join(phs)}))"


def _between(n, ctx: _Ctx) -> str:
    col, kind = _attribute(n.lhs, ctx, "BETWEEN")
    for v in (n.low, n.high):
        if not _is_literal(v):
            raise FilterError(f"BETWEEN: bounds must be literals, got {_describe_value(v)}")
    lo = _add(ctx, _check_literal(n.lhs.name, kind, n.low, "BETWEEN"), kind)
    hi = _add(ctx, _check_literal(n.lhs.name, kind, n.high, "BETWEEN"), kind)
    return f"({col} {'NOT ' if n.not_ else ''}BETWEEN {lo} AND {hi})"


# --- spatial -----------------------------------------------------------------------------------------

def _is_geom_attr(v, ctx: _Ctx) -> bool:
    return isinstance(v, A.Attribute) and v.name in ("geometry", ctx.geom)


def _literal_geometry(v, ctx: _Ctx) -> shapely.Geometry:
    """A geometry literal in the store CRS (east, north)."""
    src = getattr(v, "yzt_source", None)
    if src is not None:  # what the client wrote, kept by our pygeoapi hook (crs.modify_pygeofilter)
        gj, crs = src
    else:
        gj = v.geometry
        crs = gj.get("crs", {}).get("properties", {}).get("name") or ctx.filter_crs
    try:
        geom = shapely.geometry.shape({k: val for k, val in gj.items() if k != "crs"})
        key = crs if isinstance(crs, int) or crs == "CRS84" else key_of_any(crs)
        if key not in ("CRS84", 4490, ctx.storage_epsg):
            raise CRSParamError(f"geometry CRS {crs!r} is not served; use CRS84, EPSG:4490 or "
                                f"EPSG:{ctx.storage_epsg}")
        out = geometry_in_store(geom, key, ctx.storage_epsg)
    except CRSParamError as exc:
        raise FilterError(str(exc)) from None
    except Exception as exc:
        raise FilterError(f"geometry literal is not usable: {exc}") from None
    if not shapely.is_valid(out):
        out = shapely.make_valid(out)
    return out


def _spatial_sql(op: str, geom: shapely.Geometry, ctx: _Ctx) -> str:
    ctx.spatial = True
    col = f'{ctx.alias}."{ctx.geom}"'
    wkb = shapely.to_wkb(geom)
    if ctx.dialect == "sqlite":
        ctx.params += [op, wkb]
        return f"(yzt_spatial(?, {col}, ?) = 1)"
    ctx.params.append(wkb)
    return f"{POSTGIS_FN[op]}({col}, ST_GeomFromWKB(%s, {ctx.storage_epsg}))"


def _spatial(n, ctx: _Ctx) -> str:
    op = SPATIAL_OPS[type(n)]
    lhs, rhs = n.lhs, n.rhs
    if _is_geom_attr(rhs, ctx) and not _is_geom_attr(lhs, ctx):
        lhs, rhs = rhs, lhs
        op = CONVERSE.get(op, op)
    if not _is_geom_attr(lhs, ctx):
        raise FilterError(f"S_{op.upper()}: one argument must be the geometry property ('geometry')")
    if isinstance(rhs, (V.Geometry, V.Envelope)):
        return _spatial_sql(op, _literal_geometry(_as_geometry(rhs), ctx), ctx)
    raise FilterError(f"S_{op.upper()}: the other argument must be a literal geometry (WKT or ENVELOPE), "
                      f"got {_describe_value(rhs)}")


def _as_geometry(v):
    if isinstance(v, V.Envelope):
        g = V.Geometry(v.geometry)
        if hasattr(v, "yzt_source"):
            g.yzt_source = v.yzt_source
        return g
    return v


def _bbox(n, ctx: _Ctx) -> str:
    if not _is_geom_attr(n.lhs, ctx):
        raise FilterError("BBOX: the first argument must be the geometry property ('geometry')")
    gj = shapely.geometry.mapping(shapely.box(n.minx, n.miny, n.maxx, n.maxy))
    lit = V.Geometry(gj)
    lit.yzt_source = (gj, n.crs or ctx.filter_crs)
    return _spatial_sql("intersects", _literal_geometry(lit, ctx), ctx)


def _envelope(n, ctx: _Ctx):
    """Envelope every match must intersect, from spatial terms that are top-level conjuncts."""
    if isinstance(n, A.And):
        a, b = _envelope(n.lhs, ctx), _envelope(n.rhs, ctx)
        if a and b:
            return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
        return a or b
    if type(n) in SPATIAL_OPS and SPATIAL_OPS[type(n)] in IMPLIES_INTERSECTION:
        lit = n.rhs if not _is_geom_attr(n.rhs, ctx) else n.lhs
        if isinstance(lit, (V.Geometry, V.Envelope)):
            return tuple(float(v) for v in _literal_geometry(_as_geometry(lit), _quiet(ctx)).bounds)
    if isinstance(n, A.BBox):
        q = _quiet(ctx)
        _bbox(n, q)
        return tuple(float(v) for v in shapely.from_wkb(q.params[-1]).bounds)
    return None


def _quiet(ctx: _Ctx) -> _Ctx:
    return _Ctx(**{**ctx.__dict__, "params": []})


# --- the SQLite spatial function ---------------------------------------------------------------------

_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


def gpkg_wkb(blob: bytes) -> bytes | None:
    """Standard WKB inside a GeoPackage geometry blob (None for an empty geometry)."""
    if blob is None:
        return None
    if blob[:2] != b"GP":
        return bytes(blob)  # plain WKB (not a GeoPackage blob)
    flags = blob[3]
    if flags & 0b10000:  # empty
        return None
    return bytes(blob[8 + _ENVELOPE_BYTES[(flags >> 1) & 0b111]:])


@functools.lru_cache(maxsize=256)
def _prepared(wkb: bytes) -> shapely.Geometry:
    g = shapely.from_wkb(wkb)
    shapely.prepare(g)
    return g


def sqlite_spatial(op: str, blob: bytes | None, literal_wkb: bytes) -> int:
    """``yzt_spatial(op, geom, literal)`` for SQLite: 1 if the feature geometry and the literal satisfy op."""
    wkb = gpkg_wkb(blob)
    if wkb is None:
        return 1 if op == "disjoint" else 0
    lit = _prepared(bytes(literal_wkb))
    g = shapely.from_wkb(wkb)
    if op == "intersects":
        return int(shapely.intersects(lit, g))
    if op == "disjoint":
        return int(shapely.disjoint(lit, g))
    if op == "contains":  # the feature contains the literal
        return int(shapely.contains(g, lit))
    if op == "within":  # the feature lies within the literal
        return int(shapely.contains(lit, g))
    if op == "touches":
        return int(shapely.touches(lit, g))
    if op == "crosses":
        return int(shapely.crosses(g, lit))
    if op == "overlaps":
        return int(shapely.overlaps(g, lit))
    if op == "equals":
        return int(shapely.equals(g, lit))
    raise FilterError(f"spatial operator {op!r} is not supported")


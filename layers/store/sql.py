"""Filters (layers.store.query) compiled to the SQL of each backend: SQLite (GeoPackage) and PostgreSQL (PostGIS).

Two forms: with bound parameters (``params`` given: placeholders ``?`` / ``%s`` are written and the values
appended), for the connections the stores hold themselves; and with inline literals (``params=None``), for
statements that take no parameters (GDAL's SQL on a GeoPackage, PostgreSQL's COPY). Inline literals are
written by this module only, from typed values: text is quoted with its quotes doubled, numbers by ``repr``.

SQLite has no spatial functions here (this Python cannot load extensions): a spatial term becomes a call to
``yzt_spatial(op, geom, literal_wkb)``, which the GeoPackage reader registers on its connections
(gpkg_pages.py). PostGIS gets ``ST_Intersects(geom, ST_GeomFromWKB(…, srid))`` and friends (index-backed).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import shapely

from ..errors import StoreError
from .base import quote_ident
from .query import (
    COMPARISONS,
    ROW_ID,
    SPATIAL_OPS,
    And,
    Between,
    Compare,
    CompareColumns,
    Const,
    Expr,
    In,
    IsNull,
    Like,
    Not,
    Or,
    Spatial,
)

PK = "fid"  # the row id column of every layer and table, in both backends
GEOM = "geom"  # the geometry column of every layer, in both backends
DIALECTS = ("sqlite", "postgis")
POSTGIS_FN = {op: f"ST_{op.capitalize()}" for op in SPATIAL_OPS}


class _Writer:
    def __init__(self, dialect: str, alias: str | None, params: list | None, srid: int | None):
        if dialect not in DIALECTS:
            raise ValueError(f"dialect {dialect!r}")
        self.dialect, self.params, self.srid = dialect, params, srid
        self.prefix = f"{alias}." if alias else ""

    def column(self, name: str) -> str:
        return self.prefix + (PK if name == ROW_ID else quote_ident(name))

    def value(self, v: Any) -> str:
        if self.params is not None:
            self.params.append(_param(v, self.dialect))
            return "?" if self.dialect == "sqlite" else "%s"
        return _literal(v, self.dialect)

    def node(self, n: Expr) -> str:
        if isinstance(n, (And, Or)):
            # a chain of the same operator is written flat, (a OR b OR c …): SQLite's parser stack (100 entries
            # before 3.46) overflows on ((a OR b) OR c) … nested some 45 deep
            parts: list[str] = []
            stack: list[Expr] = [n]
            while stack:
                m = stack.pop()
                if type(m) is type(n):
                    assert isinstance(m, (And, Or))
                    stack += [m.right, m.left]
                else:
                    parts.append(self.node(m))  # left to right: the parameters follow the text
            return "(" + (" AND " if isinstance(n, And) else " OR ").join(parts) + ")"
        if isinstance(n, Not):
            return f"(NOT {self.node(n.operand)})"
        if isinstance(n, Const):
            return "(1 = 1)" if n.value else "(1 = 0)"
        if isinstance(n, Compare):
            _check_op(n.op)
            return f"({self.column(n.column)} {n.op} {self.value(n.value)})"
        if isinstance(n, CompareColumns):
            _check_op(n.op)
            return f"({self.column(n.left)} {n.op} {self.column(n.right)})"
        if isinstance(n, Like):
            neg = "NOT " if n.negate else ""
            return f"({self.column(n.column)} {neg}LIKE {self.value(n.pattern)} ESCAPE '\\')"
        if isinstance(n, In):
            if not n.values:
                return "(1 = 1)" if n.negate else "(1 = 0)"
            items = ", ".join(self.value(v) for v in n.values)
            return f"({self.column(n.column)} {'NOT ' if n.negate else ''}IN ({items}))"
        if isinstance(n, Between):
            lo, hi = self.value(n.low), self.value(n.high)
            return f"({self.column(n.column)} {'NOT ' if n.negate else ''}BETWEEN {lo} AND {hi})"
        if isinstance(n, IsNull):
            return f"({self.column(n.column)} IS {'NOT ' if n.negate else ''}NULL)"
        if isinstance(n, Spatial):
            return self.spatial(n)
        raise StoreError(f"filter node {type(n).__name__} cannot be compiled")

    def spatial(self, n: Spatial) -> str:
        if n.op not in SPATIAL_OPS:
            raise StoreError(f"spatial operator {n.op!r} is not supported; use one of {', '.join(SPATIAL_OPS)}")
        if self.params is None:
            raise StoreError("spatial filters are answered by the paged reader (store.pages()), not by read_layer")
        col = self.prefix + quote_ident(GEOM)
        wkb = shapely.to_wkb(n.geometry)
        if self.dialect == "sqlite":
            self.params += [n.op, wkb]
            return f"(yzt_spatial(?, {col}, ?) = 1)"
        self.params.append(wkb)
        return f"{POSTGIS_FN[n.op]}({col}, ST_GeomFromWKB(%s, {int(self.srid or 0)}))"


def _check_op(op: str) -> None:
    if op not in COMPARISONS:
        raise StoreError(f"comparison {op!r} is not one of {', '.join(COMPARISONS)}")


def compile_filter(expr: Expr, dialect: str, *, alias: str | None = None, params: list | None = None,
                   srid: int | None = None) -> str:
    """The SQL boolean expression of ``expr`` in ``dialect`` ("sqlite" | "postgis"), columns prefixed by
    ``alias``. With ``params`` (a list), values become placeholders appended to it; without, inline literals
    (spatial terms need parameters)."""
    return _Writer(dialect, alias, params, srid).node(expr)


def utc_text(value: dt.datetime) -> str:
    """A timestamp as the GeoPackage stores it: UTC, ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    v = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    u = v.astimezone(dt.UTC)
    return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"


def _param(v: Any, dialect: str) -> Any:
    if dialect == "sqlite":
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, dt.datetime):
            return utc_text(v)
        if isinstance(v, dt.date):
            return v.isoformat()
        return v
    if isinstance(v, dt.datetime) and v.tzinfo is None:
        return v.replace(tzinfo=dt.UTC)
    return v


def _literal(v: Any, dialect: str) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        if dialect == "sqlite":
            return "1" if v else "0"
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        if math.isfinite(v):
            return repr(v)
        if dialect == "sqlite":
            raise StoreError(f"value {v!r} cannot be compared in a GeoPackage; give a finite number")
        return f"'{v!r}'::double precision"
    if isinstance(v, dt.datetime):
        text = utc_text(v)
        return _quote(text) if dialect == "sqlite" else f"TIMESTAMPTZ {_quote(text)}"
    if isinstance(v, dt.date):
        return _quote(v.isoformat()) if dialect == "sqlite" else f"DATE {_quote(v.isoformat())}"
    if hasattr(v, "item"):  # numpy scalars
        return _literal(v.item(), dialect)
    return _quote(str(v))


def _quote(text: str) -> str:
    if "\x00" in text:
        raise StoreError("text values cannot hold NUL characters")
    return "'" + text.replace("'", "''") + "'"

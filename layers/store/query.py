"""What a read asks of a store, independent of the backend: a filter over attribute columns, a spatial
selection, ordering and paging — and what comes back (a Page).

A filter is a small tree of the node classes below. It names columns by their attribute names and carries
typed Python values (str, int, float, bool, date, aware datetime); geometry literals are shapely geometries in
the store CRS. The backends compile a tree to their own SQL (:func:`layers.store.sql.compile_filter`); nothing
outside ``layers/store`` writes SQL against a store.

>>> from layers.store.query import And, Compare, In
>>> where = And(Compare("DLBM", "=", "0101"), In("ZLDWDM", ("130599100", "130599101")))
>>> store.read_layer("dltb", where=where)                                 # doctest: +SKIP

``ROW_ID`` names a row's id in the store (1..n in write order, the OGC item id): ``In(ROW_ID, (3, 5))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely

ROW_ID = "#row"  # a row's id (1..n in write order); never an attribute name (those are letters, digits and _)

COMPARISONS = ("=", "<>", "<", "<=", ">", ">=")
SPATIAL_OPS = ("intersects", "disjoint", "contains", "within", "touches", "crosses", "overlaps", "equals")
# every op except disjoint implies that the envelopes meet: usable as an index pre-filter
IMPLIES_INTERSECTION = frozenset(SPATIAL_OPS) - {"disjoint"}

Box = tuple[float, float, float, float]


class Expr:
    """A filter node."""

    def envelope(self) -> Box | None:
        """A box every matching row's geometry meets (from spatial terms that are top-level conjuncts), or
        None when the filter does not bound the rows in space."""
        return None


@dataclass(frozen=True)
class Compare(Expr):
    """``column op value``; op is one of COMPARISONS."""

    column: str
    op: str
    value: Any


@dataclass(frozen=True)
class CompareColumns(Expr):
    """``left op right`` between two columns of comparable kinds."""

    left: str
    op: str
    right: str


@dataclass(frozen=True)
class Like(Expr):
    """Case-sensitive ``LIKE``: ``%`` any text, ``_`` one character, ``\\`` escapes (CQL2 and SQL alike)."""

    column: str
    pattern: str
    negate: bool = False


@dataclass(frozen=True)
class In(Expr):
    column: str
    values: tuple
    negate: bool = False


@dataclass(frozen=True)
class Between(Expr):
    column: str
    low: Any
    high: Any
    negate: bool = False


@dataclass(frozen=True)
class IsNull(Expr):
    column: str
    negate: bool = False


@dataclass(frozen=True)
class And(Expr):
    left: Expr
    right: Expr

    def envelope(self) -> Box | None:
        return intersect_boxes(self.left.envelope(), self.right.envelope())


@dataclass(frozen=True)
class Or(Expr):
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr


@dataclass(frozen=True)
class Const(Expr):
    """TRUE or FALSE (CQL2 INCLUDE / EXCLUDE)."""

    value: bool


@dataclass(frozen=True, eq=False)
class Spatial(Expr):
    """The row's geometry ``op`` a literal geometry (in the store CRS). ``contains``: the row's geometry contains
    the literal; ``within``: it lies within the literal."""

    op: str
    geometry: shapely.Geometry

    def envelope(self) -> Box | None:
        if self.op not in IMPLIES_INTERSECTION:
            return None
        minx, miny, maxx, maxy = (float(v) for v in self.geometry.bounds)
        return minx, miny, maxx, maxy


def as_box(values: Sequence[float]) -> Box:
    """Four numbers (minx, miny, maxx, maxy) as a Box of floats."""
    minx, miny, maxx, maxy = (float(v) for v in values)
    return minx, miny, maxx, maxy


def all_of(filters: Sequence[Expr]) -> Expr | None:
    """The conjunction of ``filters`` (None for none)."""
    out: Expr | None = None
    for f in filters:
        out = f if out is None else And(out, f)
    return out


def intersect_boxes(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def is_empty_box(box: Box | None) -> bool:
    return box is not None and (box[0] > box[2] or box[1] > box[3])


@dataclass(frozen=True)
class SpatialSelection:
    """Rows whose geometry intersects ``polygon`` (in the store CRS).

    ``outer`` is its envelope (for the index); ``inner`` an axis-parallel box inside it, or None: a row whose
    envelope lies within ``inner`` certainly intersects, so only the thin ring between the two boxes needs an
    exact geometry test. ``is_box``: the polygon is exactly its envelope.
    """

    polygon: shapely.Geometry
    outer: Box
    inner: Box | None
    is_box: bool = False


@dataclass(frozen=True)
class LayerInfo:
    """What a paged reader knows of one layer: its attribute columns (name → kind, in store order), geometry
    type, row count and extent (store CRS)."""

    name: str
    columns: dict[str, str]
    geometry_type: str
    total: int
    bounds: Box | None


@dataclass
class Page:
    """One page of rows: their ids (ROW_ID), attribute values in the order of ``columns``, geometries as WKB
    (None for a missing / empty geometry, or when geometry was not asked for), and the number of rows
    matching the request without limit / offset (None when not counted)."""

    ids: list[int]
    rows: list[tuple]
    geoms: list[bytes | None]
    columns: list[str]
    matched: int | None = None


@dataclass
class PageRequest:
    """One page of a layer: rows matching ``selection`` and ``where``, ordered by ``sortby`` [(column, "+"|"-")]
    then by ROW_ID, ``limit`` rows from ``offset``; ``columns`` to return; ``count`` = also count all matches."""

    selection: SpatialSelection | None = None
    where: Expr | None = None
    sortby: list[tuple[str, str]] = field(default_factory=list)
    limit: int = 10
    offset: int = 0
    columns: list[str] = field(default_factory=list)
    with_geometry: bool = True
    count: bool = True

    def envelope(self) -> Box | None:
        """The box every match lies in (the filter's and the selection's envelopes intersected), or None."""
        env = self.where.envelope() if self.where is not None else None
        if self.selection is not None:
            env = intersect_boxes(env, self.selection.outer)
        return env

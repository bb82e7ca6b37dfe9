"""Exact polygon overlay of large layers: the pieces of left ∩ right, their ellipsoidal areas, and coverage.

The pieces are those of ``geopandas.overlay(left, right, how="intersection", keep_geom_type=True)`` — the same
(left, right) pairs, the same polygons, areas equal to 1e-9 relative — computed several times faster:

1. **Candidates**: one bulk ``STRtree.query`` of the left bounds against the right layer (bounding boxes only).
2. **Local parts**: polygons with more than ``max_vertices`` coordinates (ecological red lines, development
   boundaries) are cut once into a loose quadtree of exact clipped parts (``_overlay_tiles``); each pair uses the
   smallest part whose box holds the other polygon. GEOS otherwise pays for every vertex of a 50 000-vertex
   red line on each 40-vertex patch it meets.
3. **Fast paths**, decided with prepared geometries on vectorised predicates, after a bounding-box test:
   right covers left → the piece *is* the left polygon; left covers right → the piece is the right polygon;
   not intersecting → no piece. Only the remaining pairs (polygons crossing each other's boundary) go through
   ``shapely.intersection``; nothing is snapped and no ``grid_size`` is used.
4. **Keep area only**: lines and points from touching are dropped, collections keep their polygons, and a
   piece needs a planar area > 0.
5. **Chunks**: candidate pairs are cut into chunks of whole left polygons; :func:`overlay_chunk` is a pure
   function of one chunk (geometries in, pieces out), run on a small thread pool — shapely releases the GIL —
   and could run unchanged on a distributed executor.

Areas are ellipsoidal (CGCS2000, m², unrounded) from :func:`layers.area.ellipsoidal_area`. Both layers must
share one CRS; a mismatch raises :class:`~layers.errors.CRSError` (geopandas only warns).
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.area import ellipsoidal_area
from layers.crs import to_crs
from layers.errors import CRSError, GeometryError

from ._overlay_tiles import build_tiles, locate, polygonal_part

DEFAULT_CHUNK_SIZE = 20_000  # candidate pairs per chunk
DEFAULT_MAX_VERTICES = 512  # polygons with more coordinates are cut into local parts
_POLYGONAL = (3, 6)  # shapely type ids of Polygon, MultiPolygon

__all__ = ["ChunkResult", "coverage", "overlay_area", "overlay_chunk", "overlay_pieces"]


@dataclass(frozen=True)
class ChunkResult:
    """Pieces of one chunk: ``pair`` positions (into the chunk's pair arrays) that gave a piece, its area, and
    its geometry (None when geometry was not asked for)."""

    pair: np.ndarray
    area_m2: np.ndarray
    geometry: np.ndarray | None


def overlay_chunk(left_geoms, right_geoms, pair_left, pair_right, *, crs, keep_geometry=True,
                  check_valid=True, left_ids=None, right_ids=None) -> ChunkResult:
    """Intersect the candidate pairs of one chunk. Pure: arrays in, arrays out; no shared state is mutated.

    ``left_geoms`` / ``right_geoms``: the chunk's polygons (each once); ``pair_left`` / ``pair_right``: positions
    into them, one per candidate pair. ``crs`` is the CRS of both (for the ellipsoidal area).
    ``left_ids`` / ``right_ids`` (optional) name the polygons in error messages.

    The right polygons are prepared on private copies: GEOS prepared geometries are not thread-safe
    (libgeos/geos#825), and the same right polygon may be in several chunks running at once.
    """
    left_geoms = np.asarray(left_geoms, dtype=object)
    right_geoms = np.asarray(right_geoms, dtype=object)
    pair_left = np.asarray(pair_left, dtype=np.int64)
    pair_right = np.asarray(pair_right, dtype=np.int64)
    if check_valid:
        _require_valid(left_geoms, "left", left_ids)
        _require_valid(right_geoms, "right", right_ids)
    n = len(pair_left)
    piece = np.full(n, None, dtype=object)
    if n == 0:
        return ChunkResult(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=object)
                           if keep_geometry else None)
    right_private = shapely.from_wkb(shapely.to_wkb(right_geoms))
    shapely.prepare(right_private)

    lg = left_geoms[pair_left]
    rg = right_private[pair_right]
    lb = shapely.bounds(left_geoms)[pair_left]
    rb = shapely.bounds(right_geoms)[pair_right]
    present = ~(shapely.is_missing(lg) | shapely.is_missing(rg))
    overlap = (present & (lb[:, 0] <= rb[:, 2]) & (rb[:, 0] <= lb[:, 2])
               & (lb[:, 1] <= rb[:, 3]) & (rb[:, 1] <= lb[:, 3]))

    # Classify with prepared predicates (they release the GIL; ``relate`` would hold it for its strings):
    # 1. right contains left properly — no boundary contact, the cheap common case → the piece is the left polygon
    inbox = overlap & (lb[:, 0] >= rb[:, 0]) & (lb[:, 2] <= rb[:, 2]) & (lb[:, 1] >= rb[:, 1]) & (lb[:, 3] <= rb[:, 3])
    idx = np.flatnonzero(inbox)
    idx = idx[shapely.contains_properly(rg[idx], lg[idx])]
    piece[idx] = lg[idx]
    rest = overlap.copy()
    rest[idx] = False
    # 2. apart → nothing
    idx = np.flatnonzero(rest)
    rest[idx[~shapely.intersects(rg[idx], lg[idx])]] = False
    # 3. right covers left, sharing part of its boundary (the rule for a patch inside a block dissolved from
    #    patches) → the left polygon. DE-9IM EI = EB = F on the prepared right polygon (RelateNG): half the
    #    cost of a prepared ``covers``, which falls back to a full relate whenever boundaries touch.
    idx = np.flatnonzero(rest & inbox)
    idx = idx[shapely.relate_pattern(rg[idx], lg[idx], "******FF*")]
    piece[idx] = lg[idx]
    rest[idx] = False
    # 4. interiors do not meet (II = F): they only touch → nothing, and no intersection returning a line
    idx = np.flatnonzero(rest)
    rest[idx[~shapely.relate_pattern(rg[idx], lg[idx], "T********")]] = False
    # 5. left covers right → the right polygon
    idx = np.flatnonzero(rest & (rb[:, 0] >= lb[:, 0]) & (rb[:, 2] <= lb[:, 2])
                        & (rb[:, 1] >= lb[:, 1]) & (rb[:, 3] <= lb[:, 3]))
    idx = idx[shapely.covers(lg[idx], rg[idx])]
    piece[idx] = right_geoms[pair_right[idx]]
    rest[idx] = False
    # 6. polygons crossing each other's boundary: the one exact overlay per pair
    idx = np.flatnonzero(rest)
    piece[idx] = polygonal_part(shapely.intersection(lg[idx], right_geoms[pair_right[idx]]))

    has = ~shapely.is_missing(piece)
    has[has] = shapely.area(piece[has]) > 0
    pair = np.flatnonzero(has)
    area = ellipsoidal_area(piece[pair], crs) if len(pair) else np.zeros(0)
    return ChunkResult(pair, area, piece[pair] if keep_geometry else None)


def overlay_pieces(left, right, *, workers: int = 2, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   keep_geometry: bool = True, check_valid: bool = True,
                   max_vertices: int = DEFAULT_MAX_VERTICES):
    """Pieces of left ∩ right with positive area: one row per (left, right) pair that overlaps.

    ``left`` / ``right``: GeoDataFrames or GeoSeries of polygons in the same CRS (a CGCS2000 Gauss-Krüger zone
    or EPSG:4490); missing or empty geometries give no pieces. Returns a GeoDataFrame with columns ``left`` and
    ``right`` (positional indexes, 0-based, into the inputs), ``area_m2`` (ellipsoidal, unrounded) and
    ``geometry`` (Polygon/MultiPolygon), sorted by (left, right); with ``keep_geometry=False`` a DataFrame
    without geometry (cheaper: see :func:`overlay_area`).

    ``workers``: threads (1 runs inline); ``chunk_size``: candidate pairs per chunk; ``check_valid``: refuse
    invalid input polygons (GeometryError) rather than return a wrong area — repair them at load;
    ``max_vertices``: polygons with more coordinates are cut into local parts (see module docs).
    """
    crs = _common_crs(left, right)
    lg = _polygons(left, "left")
    rg = _polygons(right, "right")
    if workers < 1:
        raise ValueError(f"workers={workers}: give at least 1 thread")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}: give at least 1 pair per chunk")

    li, ri = _candidates(lg, rg)
    if len(li) == 0:
        return _empty(crs, keep_geometry)

    # validity first, once per polygon that has a candidate (GEOS would cut an invalid polygon into nonsense)
    used_l, used_r = np.unique(li), np.unique(ri)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        if check_valid:  # once per polygon, on the pool
            _require_valid_parallel(lg, used_l, "left", pool, workers)
            _require_valid_parallel(rg, used_r, "right", pool, workers)
        return _overlay_pairs(lg, rg, li, ri, used_l, used_r, crs=crs, pool=pool, chunk_size=chunk_size,
                              keep_geometry=keep_geometry, max_vertices=max_vertices)
    finally:
        if pool is not None:
            pool.shutdown()


def _overlay_pairs(lg, rg, li, ri, used_l, used_r, *, crs, pool, chunk_size, keep_geometry, max_vertices):
    # local parts of large polygons, built once per layer
    ltiles = _tiles(lg, used_l, max_vertices)
    rtiles = _tiles(rg, used_r, max_vertices)
    lb, rb = shapely.bounds(lg), shapely.bounds(rg)
    lnode = locate(ltiles, li, rb[ri])
    rnode = locate(rtiles, ri, lb[li])

    # one id space per side: 0..n-1 the polygons, n + k the k-th quadtree node
    lpart = np.where(lnode >= 0, len(lg) + lnode, li)
    rpart = np.where(rnode >= 0, len(rg) + rnode, ri)
    lall = _with_nodes(lg, ltiles)
    rall = _with_nodes(rg, rtiles)
    lorig = _owners(len(lg), ltiles)
    rorig = _owners(len(rg), rtiles)

    bounds = _chunk_bounds(li, chunk_size)
    tasks = []
    for start, stop in itertools.pairwise(bounds):
        lp, rp = lpart[start:stop], rpart[start:stop]
        lu, lpos = np.unique(lp, return_inverse=True)
        ru, rpos = np.unique(rp, return_inverse=True)
        tasks.append(dict(left_geoms=lall[lu], right_geoms=rall[ru], pair_left=lpos, pair_right=rpos,
                          left_ids=lorig[lu], right_ids=rorig[ru], start=start))

    def run(task):
        start = task.pop("start")
        # validity was checked once per polygon above; quadtree parts come out of OverlayNG
        res = overlay_chunk(**task, crs=crs, keep_geometry=keep_geometry, check_valid=False)
        return start, res

    results = [run(t) for t in tasks] if pool is None or len(tasks) == 1 else list(pool.map(run, tasks))

    pair = np.concatenate([start + r.pair for start, r in results])
    area = np.concatenate([r.area_m2 for _, r in results])
    out = pd.DataFrame({"left": li[pair], "right": ri[pair], "area_m2": area})
    if not keep_geometry:
        return out
    geometry = np.concatenate([r.geometry for _, r in results]) if results else np.zeros(0, dtype=object)
    return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(geometry, crs=crs), crs=crs)


def overlay_area(left, right, *, workers: int = 2, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 check_valid: bool = True, max_vertices: int = DEFAULT_MAX_VERTICES) -> pd.DataFrame:
    """Ellipsoidal area of every overlapping (left, right) pair, without returning geometry.

    DataFrame ``left``, ``right`` (positional), ``area_m2``, sorted by (left, right). Same pieces as
    :func:`overlay_pieces`.
    """
    return overlay_pieces(left, right, workers=workers, chunk_size=chunk_size, keep_geometry=False,
                          check_valid=check_valid, max_vertices=max_vertices)


def coverage(left, right, *, workers: int = 2, chunk_size: int = DEFAULT_CHUNK_SIZE,
             keep_geometry: bool = False, check_valid: bool = True,
             max_vertices: int = DEFAULT_MAX_VERTICES):
    """How much of each left polygon the union of the right layer covers; overlapping rights count once.

    One row per left polygon (positional ``left``), columns:
    ``area_m2`` (the left polygon's ellipsoidal area), ``covered_m2`` (area of left ∩ ⋃right),
    ``uncovered_m2`` (area_m2 − covered_m2, never below 0), ``covered_share`` (covered_m2 / area_m2, 0 for a
    polygon without area), ``right_ids`` (list of positional right indexes with a piece of positive area,
    sorted), and with ``keep_geometry=True`` ``geometry`` = the covered part (None where nothing is covered).

    Examples: approved area of a monitoring patch where approvals overlap each other (counted once);
    area of a patch outside the urban development boundary (``uncovered_m2`` against CZKFBJ).
    """
    crs = _common_crs(left, right)
    lg = _polygons(left, "left")
    pieces = overlay_pieces(left, right, workers=workers, chunk_size=chunk_size, keep_geometry=True,
                            check_valid=check_valid, max_vertices=max_vertices)
    n = len(lg)
    area = np.zeros(n)
    present = ~shapely.is_missing(lg)
    area[present] = ellipsoidal_area(lg[present], crs)
    covered = np.zeros(n)
    union = np.full(n, None, dtype=object)
    ids: list[list[str]] = [[] for _ in range(n)]
    if len(pieces):
        pl = pieces["left"].to_numpy()
        pr = pieces["right"].to_numpy()
        pg = np.asarray(pieces.geometry.array, dtype=object)
        pa = pieces["area_m2"].to_numpy()
        starts = np.flatnonzero(np.r_[True, pl[1:] != pl[:-1]])
        stops = np.r_[starts[1:], len(pl)]
        single = (stops - starts) == 1
        s = starts[single]
        covered[pl[s]] = pa[s]
        union[pl[s]] = pg[s]
        multi = np.flatnonzero(~single)
        if len(multi):
            groups = [pg[starts[k]:stops[k]] for k in multi]

            def merge(batch):
                return [shapely.union_all(g) for g in batch]

            batches = np.array_split(np.arange(len(groups)), max(1, min(workers, len(groups))))
            if workers == 1 or len(batches) == 1:
                merged = merge(groups)
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    merged = [m for part in pool.map(lambda b: merge([groups[k] for k in b]), batches)
                              for m in part]
            merged = polygonal_part(np.asarray(merged, dtype=object))
            owners = pl[starts[multi]]
            ok = ~shapely.is_missing(merged)
            covered[owners[ok]] = ellipsoidal_area(merged[ok], crs)
            union[owners] = merged
        for a, b in zip(starts, stops):
            ids[pl[a]] = pr[a:b].tolist()
    covered = np.minimum(covered, area)  # a ulp of rounding must not cover more than the whole
    uncovered = np.maximum(area - covered, 0.0)
    share = np.divide(covered, area, out=np.zeros(n), where=area > 0)
    out = pd.DataFrame({"left": np.arange(n), "area_m2": area, "covered_m2": covered,
                        "uncovered_m2": uncovered, "covered_share": share, "right_ids": ids})
    if not keep_geometry:
        return out
    return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(union, crs=crs), crs=crs)


# ---------------------------------------------------------------------------------------------------------
# helpers

def _common_crs(left, right):
    lc, rc = getattr(left, "crs", None), getattr(right, "crs", None)
    if lc is None or rc is None:
        which = "left" if lc is None else "right"
        raise CRSError(f"overlay: the {which} layer has no CRS; set it (e.g. EPSG:4547) — areas need a "
                       "CGCS2000 Gauss-Krüger zone or EPSG:4490")
    lc, rc = to_crs(lc), to_crs(rc)
    if lc != rc:
        raise CRSError(f"overlay: CRS mismatch, left is {lc.to_string()!r} and right is {rc.to_string()!r}; "
                       "bring both layers into the store's CRS first (to_crs)")
    return lc


def _polygons(frame, side: str) -> np.ndarray:
    geoms = frame.geometry if isinstance(frame, gpd.GeoDataFrame) else frame
    geoms = np.asarray(getattr(geoms, "array", geoms), dtype=object)
    present = ~shapely.is_missing(geoms)
    type_id = shapely.get_type_id(geoms)
    bad = np.flatnonzero(present & ~np.isin(type_id, _POLYGONAL) & ~shapely.is_empty(geoms))
    if len(bad):
        kinds = sorted({shapely.get_type_id(geoms[k]).item() for k in bad[:50]})
        names = ", ".join(["Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString",
                           "MultiPolygon", "GeometryCollection"][k] for k in kinds)
        raise GeometryError(f"overlay: the {side} layer has {len(bad)} non-polygonal geometries ({names}) at "
                            f"positions {bad[:10].tolist()}; overlay takes polygons only — drop or buffer them")
    geoms = geoms.copy()
    geoms[shapely.is_empty(geoms)] = None
    return geoms


def _require_valid(geoms: np.ndarray, side: str, ids) -> None:
    present = ~shapely.is_missing(geoms)
    valid = np.ones(len(geoms), dtype=bool)
    valid[present] = shapely.is_valid(geoms[present])
    bad = np.flatnonzero(~valid)
    if len(bad):
        where = (np.asarray(ids)[bad] if ids is not None else bad)[:10].tolist()
        reason = shapely.is_valid_reason(geoms[bad[0]])
        raise GeometryError(f"overlay: {len(bad)} invalid {side} polygon(s) at positions {where} "
                            f"(first: {reason}); repair them at load (shapely.make_valid) before overlay")


def _candidates(lg: np.ndarray, rg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) positions whose bounding boxes intersect, sorted by left then right."""
    if len(lg) == 0 or len(rg) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    tree = shapely.STRtree(rg)
    li, ri = tree.query(lg)
    order = np.lexsort((ri, li))
    return li[order].astype(np.int64), ri[order].astype(np.int64)


def _require_valid_parallel(geoms, used, side, pool, workers) -> None:
    parts = np.array_split(used, workers) if pool is not None and len(used) > 10_000 else [used]
    check = lambda idx: _require_valid(geoms[idx], side, idx)  # noqa: E731
    for _ in (map(check, parts) if len(parts) == 1 else pool.map(check, parts)):
        pass


def _tiles(geoms, used, max_vertices):
    big = used[shapely.get_num_coordinates(geoms[used]) > max_vertices]
    if len(big) == 0:
        return None
    sub = np.full(len(geoms), None, dtype=object)
    sub[big] = geoms[big]
    return build_tiles(sub, max_vertices)


def _with_nodes(geoms, tiles):
    return geoms if tiles is None else np.concatenate([geoms, tiles.geometry])


def _owners(n, tiles):
    base = np.arange(n)
    return base if tiles is None else np.concatenate([base, tiles.owner])


def _chunk_bounds(li: np.ndarray, chunk_size: int) -> np.ndarray:
    """Cut points of the (left-sorted) pairs into chunks of ≈ chunk_size, never splitting a left polygon."""
    n = len(li)
    cuts = [0]
    target = chunk_size
    while target < n:
        # move the cut forward to the first pair of the next left polygon
        cut = int(np.searchsorted(li, li[target], side="left"))
        if cut <= cuts[-1]:
            cut = int(np.searchsorted(li, li[target], side="right"))
        if cut >= n:
            break
        cuts.append(cut)
        target = cut + chunk_size
    cuts.append(n)
    return np.asarray(cuts)


def _empty(crs, keep_geometry):
    out = pd.DataFrame({"left": np.zeros(0, dtype=np.int64), "right": np.zeros(0, dtype=np.int64),
                        "area_m2": np.zeros(0)})
    if not keep_geometry:
        return out
    return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries([], crs=crs), crs=crs)

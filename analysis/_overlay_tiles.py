"""Local parts of large polygons: a loose quadtree of clipped copies, so an overlay never touches far vertices.

GEOS intersects two polygons in time proportional to *all* their vertices, even when one is a 40-vertex
land-use patch and the other a 50 000-vertex ecological red line: the patch pays for the whole red line.
Here every polygon with more than ``max_vertices`` coordinates is cut, once, into nodes of a loose quadtree:

- level 0 is the polygon itself; its cell is the square of side S₀ = max(width, height) at its bounds' origin;
- a node at level k covers the cell (i, j) of side s_k = S₀ / 2^k, and its *loose box* is that cell widened
  by s_k / 2 on every side; its geometry is the parent's geometry ∩ the loose box (an exact OverlayNG
  intersection, never ``clip_by_rect``, which may return invalid output);
- a node is split into its four children while it has more than ``max_vertices`` coordinates.

For a query box Q (the other polygon's bounds) of size w ≤ s_k whose centre lies in cell (i, j), the loose box
of (k, i, j) contains Q. Because the other polygon lies inside Q, ``P ∩ other = node ∩ other`` exactly in
theory, and to a few ulps in floating point (the new vertices lie on the loose box, outside Q's interior).
Lookup takes the deepest existing node whose loose box contains Q; the root always does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

MAX_LEVEL = 16  # cells of S₀ / 65536: beyond that a part is small enough anyway
_SHIFT = MAX_LEVEL + 1  # bits per cell coordinate in a node key


@dataclass(frozen=True)
class Tiles:
    """Quadtree nodes of the large polygons of one layer.

    ``owner``: position (in the layer) of the polygon each node belongs to; ``level``, ``ci``, ``cj``: the cell;
    ``geometry``: polygonal part of the owner inside the node's loose box (None when that part is empty);
    ``origin`` / ``size``: per layer position, the root cell (NaN for polygons that are not tiled).
    Node keys (owner, level, ci, cj) are sorted, for vectorised lookup.
    """

    owner: np.ndarray
    level: np.ndarray
    ci: np.ndarray
    cj: np.ndarray
    geometry: np.ndarray
    origin_x: np.ndarray
    origin_y: np.ndarray
    size: np.ndarray
    keys: np.ndarray  # sorted int64 keys of the nodes, aligned with the arrays above

    def __len__(self) -> int:
        return len(self.owner)


def _key(owner, level, ci, cj) -> np.ndarray:
    return (((owner.astype(np.int64) * (MAX_LEVEL + 1) + level) << _SHIFT) + ci) << _SHIFT | cj


def polygonal_part(geoms: np.ndarray) -> np.ndarray:
    """The polygonal part of each geometry (None where it has no area): lines and points from touching go.

    Polygons and multipolygons pass unchanged; a GeometryCollection keeps its polygons (one → Polygon,
    several → MultiPolygon), like geopandas ``overlay(keep_geom_type=True)``; anything else becomes None.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = np.full(len(geoms), None, dtype=object)
    if len(geoms) == 0:
        return out
    type_id = shapely.get_type_id(geoms)
    keep = np.isin(type_id, (3, 6)) & ~shapely.is_empty(geoms)
    out[keep] = geoms[keep]
    coll = np.flatnonzero(type_id == 7)
    if len(coll):
        parts, owner = shapely.get_parts(geoms[coll], return_index=True)
        # nested collections do not come out of an overlay, but flatten once more to be safe
        parts, sub = shapely.get_parts(parts, return_index=True)
        owner = owner[sub]
        polys = np.isin(shapely.get_type_id(parts), (3, 6)) & ~shapely.is_empty(parts)
        parts, owner = parts[polys], owner[polys]
        if len(parts):
            parts, sub = shapely.get_parts(parts, return_index=True)  # multipolygons → polygons
            owner = owner[sub]
            counts = np.bincount(owner, minlength=len(coll))
            single = counts == 1
            first = np.searchsorted(owner, np.arange(len(coll)))
            out[coll[single]] = parts[first[single]]
            multi = np.flatnonzero(counts > 1)
            if len(multi):
                sel = np.isin(owner, multi)
                built = shapely.multipolygons(parts[sel], indices=np.searchsorted(multi, owner[sel]))
                out[coll[multi]] = built
    return out


def build_tiles(geoms: np.ndarray, max_vertices: int) -> Tiles | None:
    """Quadtree nodes for every geometry with more than ``max_vertices`` coordinates (None if there is none)."""
    n = len(geoms)
    ncoords = shapely.get_num_coordinates(geoms)
    big = np.flatnonzero(ncoords > max_vertices)
    if len(big) == 0:
        return None
    bounds = shapely.bounds(geoms[big])
    origin_x = np.full(n, np.nan)
    origin_y = np.full(n, np.nan)
    size = np.full(n, np.nan)
    origin_x[big], origin_y[big] = bounds[:, 0], bounds[:, 1]
    size[big] = np.maximum(np.maximum(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]), 1e-9)

    owners = [big]
    levels = [np.zeros(len(big), dtype=np.int64)]
    cis = [np.zeros(len(big), dtype=np.int64)]
    cjs = [np.zeros(len(big), dtype=np.int64)]
    geoms_out = [geoms[big]]
    counts = ncoords[big]
    level = 0
    cur_owner, cur_ci, cur_cj, cur_geom = big, cis[0], cjs[0], geoms[big]
    while level < MAX_LEVEL:
        split = counts > max_vertices
        if not split.any():
            break
        level += 1
        p_owner = np.repeat(cur_owner[split], 4)
        p_geom = np.repeat(cur_geom[split], 4)
        quad = np.tile(np.arange(4), split.sum())
        ci = np.repeat(cur_ci[split], 4) * 2 + (quad & 1)
        cj = np.repeat(cur_cj[split], 4) * 2 + (quad >> 1)
        s = size[p_owner] / (1 << level)
        xmin = origin_x[p_owner] + ci * s - s / 2
        ymin = origin_y[p_owner] + cj * s - s / 2
        boxes = shapely.box(xmin, ymin, xmin + 2 * s, ymin + 2 * s)
        child = polygonal_part(shapely.intersection(p_geom, boxes))
        counts = np.where(shapely.is_missing(child), 0, shapely.get_num_coordinates(child))
        owners.append(p_owner)
        levels.append(np.full(len(p_owner), level, dtype=np.int64))
        cis.append(ci)
        cjs.append(cj)
        geoms_out.append(child)
        # empty children are kept (a query landing there has nothing to intersect) but never split
        cur_owner, cur_ci, cur_cj, cur_geom = p_owner, ci, cj, child
    owner = np.concatenate(owners)
    lev = np.concatenate(levels)
    ci = np.concatenate(cis)
    cj = np.concatenate(cjs)
    geometry = np.concatenate(geoms_out)
    keys = _key(owner, lev, ci, cj)
    order = np.argsort(keys, kind="stable")
    return Tiles(owner[order], lev[order], ci[order], cj[order], geometry[order], origin_x, origin_y, size,
                 keys[order])


def locate(tiles: Tiles | None, owner: np.ndarray, query_bounds: np.ndarray) -> np.ndarray:
    """For each (owner polygon, query box): the node index whose loose box contains the box, or −1 if the
    owner is not tiled (use the polygon itself)."""
    result = np.full(len(owner), -1, dtype=np.int64)
    if tiles is None or len(owner) == 0:
        return result
    size = tiles.size[owner]
    tiled = np.flatnonzero(np.isfinite(size))
    if len(tiled) == 0:
        return result
    o = owner[tiled]
    qb = query_bounds[tiled]
    s0, x0, y0 = size[tiled], tiles.origin_x[o], tiles.origin_y[o]
    w = np.maximum(qb[:, 2] - qb[:, 0], qb[:, 3] - qb[:, 1])
    cx, cy = (qb[:, 0] + qb[:, 2]) / 2, (qb[:, 1] + qb[:, 3]) / 2
    with np.errstate(divide="ignore"):
        fit = np.floor(np.log2(s0 / np.maximum(w, 1e-300)))
    k = np.clip(fit, 0, MAX_LEVEL).astype(np.int64)
    found = np.full(len(o), -1, dtype=np.int64)
    pending = np.ones(len(o), dtype=bool)
    for level in range(MAX_LEVEL, -1, -1):
        sel = np.flatnonzero(pending & (k >= level))
        if len(sel) == 0:
            continue
        if level == 0:
            ci = cj = np.zeros(len(sel), dtype=np.int64)
        else:
            s = s0[sel] / (1 << level)
            ci = np.floor((cx[sel] - x0[sel]) / s).astype(np.int64)
            cj = np.floor((cy[sel] - y0[sel]) / s).astype(np.int64)
            inside = (ci >= 0) & (cj >= 0) & (ci < (1 << level)) & (cj < (1 << level))
            # verify containment of the query box in the loose box (guards against rounding)
            xmin = x0[sel] + ci * s - s / 2
            ymin = y0[sel] + cj * s - s / 2
            inside &= ((qb[sel, 0] >= xmin) & (qb[sel, 2] <= xmin + 2 * s)
                       & (qb[sel, 1] >= ymin) & (qb[sel, 3] <= ymin + 2 * s))
            sel, ci, cj = sel[inside], ci[inside], cj[inside]
        keys = _key(o[sel], np.full(len(sel), level, dtype=np.int64), ci, cj)
        pos = np.searchsorted(tiles.keys, keys)
        pos_c = np.minimum(pos, len(tiles.keys) - 1)
        hit = tiles.keys[pos_c] == keys
        found[sel[hit]] = pos_c[hit]
        pending[sel[hit]] = False
    result[tiled] = found
    return result

"""Which cells of a grid a polygon covers, and by how much: exact fractional coverage; cell areas in m².

``coverage_fractions`` gives, for a polygon and a window of a north-up grid, every cell with a non-zero share of
its area inside the polygon. Cells the polygon's boundary passes through get their exact share (shapely
intersection of the cell square with the polygon); every other cell is wholly in or out, decided by its centre
(GDAL rasterize). A self-check compares Σ share × cell area with the exact area of polygon ∩ window and, should
the boundary raster have missed a cell, recomputes with a widened boundary band — so the sum is exact to
floating point, not to the cell size.

Thousands of non-overlapping polygons in one block (a county's DLTB) take a block-wide path instead (GEOS
intersections of every boundary cell would cost ~60 µs each): whole cells from one rasterisation of all the
polygons, boundary cells measured on 4 × 4 sub-cells, and each polygon's boundary shares scaled so that its
total is its exact area. Areas stay exact; a share can be off by a small part of one boundary cell.

``cell_areas`` gives the area of the cells of each row in m²: constant on a projected grid (plane area in the
zone; ratios of such areas are what the weights need), and on a geographic grid the exact area of the
latitude/longitude quadrangle on the CGCS2000 ellipsoid, which shrinks with the cosine of the latitude.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.features import rasterize
from rasterio.windows import Window

from layers.crs import CGCS2000_A, CGCS2000_RF

_F = 1.0 / CGCS2000_RF
_E2 = _F * (2.0 - _F)
_E = np.sqrt(_E2)
_B = CGCS2000_A * (1.0 - _F)


def _authalic_q(phi: np.ndarray) -> np.ndarray:
    s = np.sin(phi)
    return (1 - _E2) * (s / (1 - _E2 * s * s) - (1 / (2 * _E)) * np.log((1 - _E * s) / (1 + _E * s)))


def cell_areas(transform: Affine, crs: CRS, row_off: int, nrows: int) -> np.ndarray:
    """Area (m²) of one cell in each of the rows ``row_off … row_off + nrows − 1``."""
    if crs.is_geographic:
        lat_top = transform.f + transform.e * (row_off + np.arange(nrows))
        lat_bottom = lat_top + transform.e
        dlon = np.radians(abs(transform.a))
        q = np.abs(_authalic_q(np.radians(lat_top)) - _authalic_q(np.radians(lat_bottom)))
        # area of a quadrangle on the ellipsoid: a² (1 − e²)/2 · Δλ · |Δq'| with q' as above (Snyder 1987, 3-12)
        return CGCS2000_A * CGCS2000_A * dlon * q / 2.0
    factor = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return np.full(nrows, abs(transform.a * transform.e) * factor * factor)


def _boxes(transform: Affine, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    x0 = transform.c + transform.a * cols
    y0 = transform.f + transform.e * rows
    return shapely.box(x0, y0 + transform.e, x0 + transform.a, y0)


def polygon_window(geom, transform: Affine, shape: tuple[int, int]) -> Window | None:
    """Whole-cell window of ``shape`` (rows, cols) covering the geometry's bounds; None if disjoint."""
    xmin, ymin, xmax, ymax = geom.bounds
    inv = ~transform
    c_a, r_a = inv @ (xmin, ymax)
    c_b, r_b = inv @ (xmax, ymin)
    c0, c1 = sorted((c_a, c_b))
    r0, r1 = sorted((r_a, r_b))
    c0, r0 = max(int(np.floor(c0)), 0), max(int(np.floor(r0)), 0)
    c1, r1 = min(int(np.ceil(c1)), shape[1]), min(int(np.ceil(r1)), shape[0])
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def coverage_fractions(geom, transform: Affine, shape: tuple[int, int]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(rows, cols, fractions) of the cells of a ``shape`` grid at ``transform`` that ``geom`` covers.

    Rows/cols index the grid; fractions are in (0, 1]. None when the polygon misses the grid.
    """
    if geom is None or geom.is_empty:
        return None
    win = polygon_window(geom, transform, shape)
    if win is None:
        return None
    r0, c0, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
    wt = transform @ Affine.translation(c0, r0)
    cell = abs(transform.a * transform.e)
    window_box = shapely.box(wt.c, wt.f + wt.e * h, wt.c + wt.a * w, wt.f)
    expected = shapely.area(shapely.intersection(geom, window_box))
    if expected <= 0:
        return None
    centre = rasterize([(geom, 1)], out_shape=(h, w), transform=wt, fill=0, all_touched=False, dtype="uint8")
    edge = rasterize([(geom.boundary, 1)], out_shape=(h, w), transform=wt, fill=0, all_touched=True,
                     dtype="uint8").astype(bool)
    shapely.prepare(geom)
    for widen in (0, 1, 2):
        if widen:
            grown = edge.copy()
            for _ in range(widen):
                g = grown.copy()
                g[1:, :] |= grown[:-1, :]
                g[:-1, :] |= grown[1:, :]
                g[:, 1:] |= grown[:, :-1]
                g[:, :-1] |= grown[:, 1:]
                grown = g
            band = grown
        else:
            band = edge
        inner = (centre == 1) & ~band
        er, ec = np.nonzero(band)
        boxes = _boxes(wt, er, ec)
        frac_edge = shapely.area(shapely.intersection(boxes, geom)) / cell
        ir, ic = np.nonzero(inner)
        got = (frac_edge.sum() + len(ir)) * cell
        if abs(got - expected) <= 1e-7 * max(expected, cell) * max(1.0, np.sqrt(len(er) + len(ir))):
            break
    else:  # pragma: no cover - the exact fallback: every touched cell computed exactly
        touched = rasterize([(geom, 1)], out_shape=(h, w), transform=wt, fill=0, all_touched=True, dtype="uint8")
        er, ec = np.nonzero(touched | edge)
        frac_edge = shapely.area(shapely.intersection(_boxes(wt, er, ec), geom)) / cell
        ir = ic = np.empty(0, dtype=np.int64)
    keep = frac_edge > 0
    rows = np.concatenate([ir, er[keep]]) + r0
    cols = np.concatenate([ic, ec[keep]]) + c0
    frac = np.concatenate([np.ones(len(ir)), np.minimum(frac_edge[keep], 1.0)])
    return rows, cols, frac


def iter_coverage(geoms, transform: Affine, shape: tuple[int, int], indices=None, disjoint: bool = False
                  ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(index, rows, cols, fractions) for each polygon of ``geoms`` that covers part of the grid.

    ``disjoint=True`` (polygons that do not overlap, e.g. DLTB patches or the 村 of one level) takes the
    block-wide path for blocks with many polygons (``_block_coverage``): whole cells by one rasterisation of all
    the polygons, boundary cells on sub-cells, each polygon's total scaled to its exact area."""
    geoms = np.asarray(geoms, dtype=object)
    idx = np.arange(len(geoms)) if indices is None else np.asarray(indices)
    if disjoint and len(idx) > 1:
        yield from _block_coverage(geoms, idx, transform, shape)
        return
    for i in idx:
        cov = coverage_fractions(geoms[i], transform, shape)
        if cov is not None:
            yield (int(i), *cov)


SUBCELLS = 4  # boundary cells of the block-wide path are measured on 4 × 4 sub-cells
EXACT_BELOW = 200  # blocks with fewer polygons than this take the exact per-polygon path


def _block_coverage(geoms, idx, transform: Affine, shape):
    """Block-wide coverage of non-overlapping polygons: cell-centre rasterisation for whole cells; boundary cells
    measured on SUBCELLS × SUBCELLS sub-cells; each polygon's boundary fractions then scaled so that its total
    equals its exact area in the window (so areas are exact, shares accurate to a small part of a cell)."""
    if len(idx) < EXACT_BELOW:
        for i in idx:
            cov = coverage_fractions(geoms[i], transform, shape)
            if cov is not None:
                yield (int(i), *cov)
        return
    h, w = shape
    cell = abs(transform.a * transform.e)
    polys = geoms[idx]
    s = SUBCELLS
    with rasterio.Env():
        ids = rasterize(((g, k + 1) for k, g in enumerate(polys)), out_shape=shape, transform=transform, fill=0,
                        all_touched=False, dtype="int32")
        edge = rasterize(((shapely.boundary(g), 1) for g in polys), out_shape=shape, transform=transform,
                         fill=0, all_touched=True, dtype="uint8").astype(bool)
    inner = (ids > 0) & ~edge
    ir, ic = np.nonzero(inner)
    ik = ids[ir, ic] - 1
    # boundary cells on sub-cells, in strips of rows to bound memory
    er_all, ec_all, ek_all, ef_all = [], [], [], []
    strip = max(1, 4_000_000 // (w * s * s))
    for r0 in range(0, h, strip):
        r1 = min(h, r0 + strip)
        er, ec = np.nonzero(edge[r0:r1])
        if not len(er):
            continue
        sub_tr = transform @ Affine.translation(0, r0) @ Affine.scale(1.0 / s)
        sub_shape = ((r1 - r0) * s, w * s)
        sel = shapely.intersects(polys, shapely.box(*_bbox(sub_tr, sub_shape)))
        with rasterio.Env():
            sub = rasterize(((g, k + 1) for k, g in zip(np.nonzero(sel)[0], polys[sel])), out_shape=sub_shape,
                            transform=sub_tr, fill=0, all_touched=False, dtype="int32")
        blocks = sub.reshape(r1 - r0, s, w, s)[er, :, ec, :].reshape(len(er), s * s)
        cell_ix = np.repeat(np.arange(len(er)), s * s)
        key = cell_ix * (len(polys) + 1) + blocks.ravel()
        uniq, counts = np.unique(key, return_counts=True)
        label = uniq % (len(polys) + 1)
        c = uniq // (len(polys) + 1)
        ok = label > 0
        er_all.append(er[c[ok]] + r0)
        ec_all.append(ec[c[ok]])
        ek_all.append(label[ok] - 1)
        ef_all.append(counts[ok] / float(s * s))
    er = np.concatenate(er_all) if er_all else np.empty(0, np.int64)
    ec = np.concatenate(ec_all) if ec_all else np.empty(0, np.int64)
    ek = np.concatenate(ek_all) if ek_all else np.empty(0, np.int64)
    ef = np.concatenate(ef_all) if ef_all else np.empty(0)
    # exact totals: scale each polygon's boundary fractions to its exact area in the window
    window_box = shapely.box(transform.c, transform.f + transform.e * h, transform.c + transform.a * w, transform.f)
    inside = shapely.contains_properly(window_box, polys)
    expected = np.where(inside, shapely.area(polys), 0.0)
    if (~inside).any():
        expected[~inside] = shapely.area(shapely.intersection(polys[~inside], window_box))
    # whole cells (centre rasterisation) and boundary cells that all sub-cells fill stay as they are; the
    # partial boundary shares are scaled so the polygon's total is its exact area
    full = ef >= 1.0
    whole = (np.bincount(ik, minlength=len(polys)) + np.bincount(ek[full], minlength=len(polys))) * cell
    part = np.bincount(ek[~full], weights=ef[~full], minlength=len(polys)) * cell
    factor = np.divide(expected - whole, part, out=np.ones(len(polys)), where=part > 0)
    ef = np.where(full, ef, ef * factor[ek])
    over = np.zeros(len(polys), bool)
    over[ek[ef > 1.0 + 1e-12]] = True  # scaling pushed a boundary cell above a whole cell
    bad = (((part == 0) & (np.abs(expected - whole) > 1e-9 * cell * np.maximum(1.0, whole / cell)))
           | (factor < 0) | (factor > 2) | over)
    rows = np.concatenate([ir, er])
    cols = np.concatenate([ic, ec])
    ks = np.concatenate([ik, ek])
    fr = np.concatenate([np.ones(len(ir)), ef])
    # a polygon the sub-cells missed (thinner than a sub-cell) or whose boundary share came out off: exact path
    order = np.argsort(ks, kind="stable")
    ks, rows, cols, fr = ks[order], rows[order], cols[order], fr[order]
    bounds = np.searchsorted(ks, np.arange(len(polys) + 1))
    for k in range(len(polys)):
        if bad[k]:
            cov = coverage_fractions(polys[k], transform, shape)
            if cov is not None:
                yield (int(idx[k]), *cov)
        elif bounds[k + 1] > bounds[k]:
            sl = slice(bounds[k], bounds[k + 1])
            yield (int(idx[k]), rows[sl], cols[sl], np.minimum(fr[sl], 1.0))


def _bbox(tr: Affine, shape) -> tuple[float, float, float, float]:
    x0, y0 = tr.c, tr.f
    x1, y1 = tr @ (shape[1], shape[0])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

"""入库质检 of the topology: overlaps inside one layer, gaps inside a survey coverage and against the county.

A survey layer (DLTB) is a coverage: its patches tile the county with no overlap and no gap. A control-line
layer (YJJBNT, STBHHX, CZKFBJ) need not cover anything, but its polygons must not overlap either: an area under
two of them would be counted twice by every sum. Each check returns Findings naming the ids and the areas
(ellipsoidal, m²) above the tolerance; nothing is changed here (the analysis counts a shared part once, see
analysis.faces).

Speed: GEOS's coverage validator (shapely.coverage_invalid_edges) finds the few patches whose edges do not
match their neighbours' in one pass over a county (0.4 s for 26 000 patches); exact pair tests only run on those.
The coverage's union, for the gaps, is GEOS's coverage union of the matching patches plus an ordinary union of
the rest.

A large survey layer can be validated in spatial partitions (``spatial_parts``, ``coverage_part``): the
validator judges a patch against the patches whose envelopes meet its own, so a partition that reads every row
whose envelope meets the box of its own rows gives each of its own rows the answer the whole layer gives; the
ellipsoidal area is a patch's own. services.jobs.ingest runs the partitions on dask.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .area import ellipsoidal_area
from .records import WARNING, Finding

MAX_LISTED = 200  # ids / pieces named in one finding's message detail (all ids stay in Finding.ids)


def overlapping_pairs(geoms: np.ndarray, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) of polygons whose interiors overlap (they intersect and do not merely touch).

    ``candidates``: only pairs with at least one row in it are tested (all rows when None)."""
    geoms = np.asarray(geoms, dtype=object)
    empty = np.zeros(0, dtype=int)
    if len(geoms) < 2:
        return empty, empty
    tree = shapely.STRtree(geoms)
    probe = np.arange(len(geoms)) if candidates is None else np.asarray(candidates, dtype=int)
    if len(probe) == 0:
        return empty, empty
    a, b = tree.query(geoms[probe], predicate="intersects")
    i, j = probe[a], b
    keep = i != j
    i, j = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
    if len(i) == 0:
        return empty, empty
    pairs = np.unique(np.column_stack([i, j]), axis=0)
    i, j = pairs[:, 0], pairs[:, 1]
    overlap = ~shapely.touches(geoms[i], geoms[j])
    return i[overlap], j[overlap]


def invalid_edges(geoms: np.ndarray) -> np.ndarray:
    """Mask of the polygons of a coverage whose edges do not match their neighbours' (GEOS coverage validator):
    the only ones that can overlap another or border a gap."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return np.zeros(0, dtype=bool)
    return ~shapely.is_empty(shapely.coverage_invalid_edges(geoms, gap_width=0.0))


@dataclass(frozen=True)
class SpatialPart:
    """One spatial partition of a layer: ``core``, the positions of the rows it answers for; ``rows``, those it
    reads (the core, every row whose envelope meets ``box`` — the envelope of the core rows but the very large
    ones — and the envelope neighbours of those very large ones)."""

    core: np.ndarray
    rows: np.ndarray
    box: tuple[float, float, float, float]


LARGE_ENVELOPE = 8.0  # × the layer's median envelope side: a patch read around by its own neighbours (a road)


def spatial_parts(geoms: np.ndarray, parts: int) -> list[SpatialPart]:
    """``geoms`` cut into ``parts`` spatial partitions of about equal row counts: a k-d split of the envelope
    centres, each cut across the longer side of the rows it splits, so every partition is compact. A partition
    reads every row whose envelope meets ``box``, the envelope of its own rows, so each of its rows has all
    its envelope neighbours at hand. Its own rows of a far larger envelope than the layer's usual (a road or a
    river across the county) stay out of the box, which they would stretch over the county; their neighbours
    are found one by one (an STRtree of those envelopes) and read as well. Every row is the core of exactly one
    partition."""
    geoms = np.asarray(geoms, dtype=object)
    bounds = shapely.bounds(geoms)
    centres = np.column_stack([(bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2])
    side = np.fmax(bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1])
    known = np.isfinite(side)
    large = known & (side > LARGE_ENVELOPE * np.median(side[known])) if known.any() else known
    around = _envelope_neighbours(geoms, bounds, np.flatnonzero(large))
    out = []
    for core in _kd_split(np.arange(len(geoms)), centres, max(1, min(int(parts), len(geoms)))):
        core = np.sort(core)
        b = bounds[core[known[core] & ~large[core]]]
        box = (float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())) \
            if len(b) else (np.nan,) * 4
        with np.errstate(invalid="ignore"):
            meets = ((bounds[:, 0] <= box[2]) & (bounds[:, 2] >= box[0])
                     & (bounds[:, 1] <= box[3]) & (bounds[:, 3] >= box[1]))
        for k in core[large[core]]:
            meets[around[k]] = True
        meets[core] = True
        out.append(SpatialPart(core, np.flatnonzero(meets), box))
    return out


def _envelope_neighbours(geoms: np.ndarray, bounds: np.ndarray, rows: np.ndarray) -> dict[int, np.ndarray]:
    """For each of ``rows``: every row whose envelope meets its envelope."""
    if len(rows) == 0:
        return {}
    tree = shapely.STRtree(shapely.box(*bounds[rows].T))
    present = np.flatnonzero(np.isfinite(bounds).all(axis=1))
    near, which = tree.query(geoms[present])  # no predicate: envelopes meeting, the validator's own test
    near, which = present[near], rows[which]
    order = np.argsort(which, kind="stable")
    near, which = near[order], which[order]
    starts = np.searchsorted(which, rows)
    ends = np.searchsorted(which, rows, side="right")
    return {int(r): near[a:e] for r, a, e in zip(rows, starts, ends)}


def _kd_split(idx: np.ndarray, centres: np.ndarray, parts: int) -> list[np.ndarray]:
    if parts <= 1 or len(idx) < 2:
        return [idx]
    c = centres[idx]
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(c, axis=0) - np.nanmin(c, axis=0) if np.isfinite(c).any() else np.zeros(2)
    axis = 0 if not spread[1] > spread[0] else 1
    left = parts // 2
    cut = int(round(len(idx) * left / parts))
    # the rows below the cut's value on one side (argpartition: no full sort); a row without an envelope (NaN)
    # goes to the far side
    ordered = idx[np.argpartition(c[:, axis], cut)] if 0 < cut < len(idx) else idx
    return _kd_split(ordered[:cut], centres, left) + _kd_split(ordered[cut:], centres, parts - left)


CORE = "yzt_core"  # column of a partition frame: the row is one the partition answers for


def coverage_part(frame: gpd.GeoDataFrame, crs) -> pd.DataFrame:
    """The coverage checks of one spatial partition (a GeoDataFrame of its rows, ``CORE`` marking its own,
    indexed by position in the layer): for each own row its ellipsoidal area and whether the validator finds
    an edge of it that does not match its neighbours' — the same functions the whole layer goes through."""
    geoms = np.asarray(frame.geometry.values, dtype=object)
    core = frame[CORE].to_numpy(dtype=bool)
    return pd.DataFrame({"area": ellipsoidal_area(geoms[core], crs), "invalid": invalid_edges(geoms)[core]},
                        index=frame.index[core])


def overlap_findings(gdf: gpd.GeoDataFrame, role: str, ids: np.ndarray, tolerance_m2: float,
                     check: str = "overlap", invalid: np.ndarray | None = None) -> list[Finding]:
    """One finding listing every pair of features of ``gdf`` that overlap by more than ``tolerance_m2``.

    ``invalid``: for a coverage (DLTB), the mask of invalid_edges: only those polygons are tested."""
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    if len(geoms) < 2:
        return []
    coverage = invalid is not None
    candidates = None
    if invalid is not None:
        candidates = np.flatnonzero(invalid)
        if len(candidates) == 0:
            return []
    i, j = overlapping_pairs(geoms, candidates)
    same = shapely.equals(geoms[i], geoms[j]) if len(i) else np.zeros(0, dtype=bool)
    i, j = i[~same], j[~same]  # an exact duplicate is its own finding (duplicate_geometry)
    if len(i) == 0:
        return []
    pieces = shapely.intersection(geoms[i], geoms[j])
    areas = ellipsoidal_area(_polygonal(pieces), gdf.crs)
    big = areas > tolerance_m2
    if not big.any():
        return []
    i, j, areas = i[big], j[big], areas[big]
    order = np.argsort(-areas, kind="stable")
    pairs = [f"{ids[a]} × {ids[b]} {ar:.2f} m²" for a, b, ar in zip(i[order], j[order], areas[order])]
    listed = "; ".join(pairs[:MAX_LISTED]) + (" …" if len(pairs) > MAX_LISTED else "")
    what = "patches overlap" if coverage else "polygons of this layer overlap one another"
    return [Finding(layer=role, check=check, severity=WARNING, ids=sorted({str(ids[k]) for k in np.r_[i, j]}),
                    count=int(len(i)),
                    message=f"{len(i)} pair(s) of {what} by more than {tolerance_m2:g} m² (in all "
                            f"{areas.sum():.2f} m²): {listed}; the analysis counts a shared part once — fix the "
                            "source so each place lies in one polygon")]


def coverage_union(geoms: np.ndarray, invalid: np.ndarray | None = None):
    """The union of a (nearly valid) coverage: GEOS coverage union of the patches whose edges match, plus an
    ordinary union of the others."""
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return shapely.Polygon()
    invalid = invalid_edges(geoms) if invalid is None else invalid
    parts = []
    if (~invalid).any():
        parts.append(shapely.coverage_union_all(geoms[~invalid]))
    if invalid.any():
        parts.append(shapely.union_all(geoms[invalid]))
    return parts[0] if len(parts) == 1 else shapely.union_all(parts)


def gap_findings(gdf: gpd.GeoDataFrame, role: str, ids: np.ndarray, tolerance_m2: float,
                 union=None) -> list[Finding]:
    """Holes inside a coverage (no patch covers them) larger than ``tolerance_m2``, with the patches around."""
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    if len(geoms) == 0:
        return []
    union = coverage_union(geoms) if union is None else union
    rings = [shapely.Polygon(r) for p in shapely.get_parts(union) for r in p.interiors]
    if not rings:
        return []
    # an island patch inside a ring is not a gap: take the ring minus the coverage
    holes = np.asarray(shapely.get_parts(_polygonal(shapely.difference(np.array(rings, dtype=object), union))),
                       dtype=object)
    if len(holes) == 0:
        return []
    areas = ellipsoidal_area(holes, gdf.crs)
    big = areas > tolerance_m2
    if not big.any():
        return []
    holes, areas = holes[big], areas[big]
    tree = shapely.STRtree(geoms)
    around = []  # the patches sharing an edge with the gap (a corner is not a border)
    for h in holes:
        near = tree.query(h, predicate="intersects")
        edge = shapely.length(shapely.intersection(shapely.boundary(geoms[near]), h)) > 0
        around.append(sorted({str(ids[k]) for k in near[edge]}))
    centres = shapely.centroid(holes)
    listed = "; ".join(f"{a:.2f} m² at ({c.x:.1f}, {c.y:.1f}) between {', '.join(n[:4])}"
                       for a, c, n in list(zip(areas, centres, around))[:MAX_LISTED])
    return [Finding(layer=role, check="gap", severity=WARNING, ids=sorted({x for n in around for x in n}),
                    count=int(len(holes)),
                    message=f"{len(holes)} gap(s) inside the layer larger than {tolerance_m2:g} m² (in all "
                            f"{areas.sum():.2f} m²) that no patch covers: {listed}; a survey layer must tile "
                            "the county")]


@dataclass(frozen=True)
class Coverage:
    """What the check against the county needs of a survey layer once its rows are written and let go
    (layers.ingest stages each layer, then drops it): its union, CRS and row count."""

    union: object
    crs: object
    rows: int

    @classmethod
    def of(cls, gdf: gpd.GeoDataFrame) -> Coverage:
        """The coverage of a survey layer loaded by layers.load (its union was kept in ``gdf.attrs``)."""
        union = gdf.attrs.pop(SURVEY_UNION, None)
        if union is None:
            union = coverage_union(np.asarray(gdf.geometry.values, dtype=object))
        return cls(union, gdf.crs, len(gdf))


def boundary_findings(coverage: Coverage, county, role: str, tolerance_m2: float) -> list[Finding]:
    """The county (xzq) area that no patch of the survey layer covers, and patch area outside the county."""
    union, crs = coverage.union, coverage.crs
    if coverage.rows == 0 or county is None or shapely.is_empty(county):
        return []
    # holes inside the coverage are gap findings of their own: compare the county with the filled coverage
    filled = shapely.union_all([shapely.Polygon(p.exterior) for p in shapely.get_parts(union)])
    out = []
    for what, part in (("county area not covered by any patch", shapely.difference(county, filled)),
                       ("patch area outside the county boundary", shapely.difference(union, county))):
        pieces = np.asarray(shapely.get_parts(_polygonal(np.array([part], dtype=object))[0]), dtype=object)
        if len(pieces) == 0:
            continue
        areas = ellipsoidal_area(pieces, crs)
        big = areas > tolerance_m2
        if not big.any():
            continue
        centres = shapely.centroid(pieces[big])
        listed = "; ".join(f"{a:.2f} m² at ({c.x:.1f}, {c.y:.1f})"
                           for a, c in list(zip(areas[big], centres))[:MAX_LISTED])
        out.append(Finding(layer=role, check="gap_xzq", severity=WARNING, count=int(big.sum()),
                           message=f"{int(big.sum())} piece(s) of {what} larger than {tolerance_m2:g} m² (in all "
                                   f"{areas[big].sum():.2f} m²): {listed}; the survey and the xzq boundary must "
                                   "cover the same land"))
    return out


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """The polygonal part of each geometry (an intersection of touching polygons may hold lines)."""
    geoms = np.asarray(geoms, dtype=object)
    mixed = shapely.get_type_id(geoms) == 7
    if not mixed.any():
        return geoms
    out = geoms.copy()
    for k in np.flatnonzero(mixed):
        parts = shapely.get_parts(geoms[k])
        parts = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
        out[k] = shapely.union_all(parts) if len(parts) else shapely.Polygon()
    return out


def county_boundary(xzq: gpd.GeoDataFrame | None):
    """The county polygon of an xzq layer: its county row(s), else the union of its 乡镇 / 村."""
    if xzq is None or len(xzq) == 0:
        return None
    level = xzq["XZQJB"].astype(str).to_numpy() if "XZQJB" in xzq.columns else np.array([""] * len(xzq))
    for wanted in ("county", "township", "village"):
        sel = level == wanted
        if sel.any():
            return shapely.union_all(np.asarray(xzq.geometry.values, dtype=object)[sel])
    return shapely.union_all(np.asarray(xzq.geometry.values, dtype=object))


SURVEY_UNION = "yzt_coverage_union"  # GeoDataFrame.attrs key: the survey layer's union, kept for the xzq check


def layer_findings(gdf: gpd.GeoDataFrame, role: str, ids: np.ndarray, options,
                   invalid: np.ndarray | None = None) -> list[Finding]:
    """The topology findings of one layer: overlaps and gaps of a survey coverage, overlaps inside a control
    line or planning-zone layer. A survey layer's union is kept in ``gdf.attrs`` for cross_layer_findings.
    ``invalid``: a survey layer's invalid_edges mask when it was computed already (in spatial partitions)."""
    if role in ("dltb", "dltb_prev"):
        geoms = np.asarray(gdf.geometry.values, dtype=object)
        invalid = invalid_edges(geoms) if invalid is None else np.asarray(invalid, dtype=bool)
        union = coverage_union(geoms, invalid)
        gdf.attrs[SURVEY_UNION] = union
        return (overlap_findings(gdf, role, ids, options.overlap_tolerance_m2, invalid=invalid)
                + gap_findings(gdf, role, ids, options.gap_tolerance_m2, union=union))
    if role in ("yjjbnt", "stbhhx", "czkfbj", "ghfq"):
        return overlap_findings(gdf, role, ids, options.overlap_tolerance_m2, check="self_overlap")
    return []


def cross_layer_findings(layers: dict, options) -> list[Finding]:
    """Findings between layers: the survey (dltb, dltb_prev) against the county boundary (xzq). A survey
    layer is its GeoDataFrame or, once written and let go, its :class:`Coverage`."""
    county = county_boundary(layers.get("xzq"))
    out: list[Finding] = []
    for role in ("dltb", "dltb_prev"):
        layer = layers.get(role)
        if layer is not None and county is not None:
            coverage = layer if isinstance(layer, Coverage) else Coverage.of(layer)
            out += boundary_findings(coverage, county, role, options.gap_tolerance_m2)
    return out

"""A county-size synthetic set for the overlay benchmark, shaped like real data (not boxes).

- ``dltb``: Voronoi cells (land-use patches) clipped to an irregular county boundary, edges segmentized to
  ~25 m (30–40 vertices a patch, as in 三调 data) and coordinates rounded to 1 mm so that neighbours share
  their vertices exactly, like a real coverage.
- ``yjjbnt``: permanent basic farmland drawn from the survey: groups of patches dissolved into blocks (so most
  boundaries coincide with patch edges), a quarter of the blocks pulled in by 1–6 m (boundaries drawn on older
  imagery: patches straddle them).
- ``stbhhx``: a few large, smooth ecological red-line polygons with thousands of vertices.
- ``czkfbj``: urban development boundaries around towns, hundreds of vertices each.
- ``approvals``: rotated, irregular approval polygons near towns, overlapping each other.

Coordinates are in EPSG:4547 (CGCS2000 3° GK zone 38, CM 114°E) around 115.0–115.3°E, 37.05–37.30°N.
"""

from __future__ import annotations

import numpy as np
import shapely

X0, Y0 = 589_000.0, 4_101_000.0  # south-west corner of the county's box, EPSG:4547 metres
WIDTH, HEIGHT = 27_000.0, 27_500.0
EPSG = 4547


def _boundary(rng) -> shapely.Polygon:
    t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    r = 1 + 0.07 * np.sin(5 * t + rng.uniform(0, 6)) + 0.04 * np.cos(11 * t + 1) + 0.015 * np.sin(37 * t)
    return shapely.Polygon(np.c_[X0 + WIDTH / 2 + 0.46 * WIDTH * r * np.cos(t),
                                 Y0 + HEIGHT / 2 + 0.46 * HEIGHT * r * np.sin(t)])


def _blob(rng, cx, cy, radius, n):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = rng.integers(2, 6, 3)
    ph = rng.uniform(0, 2 * np.pi, 3)
    r = radius * (1 + 0.25 * np.sin(k[0] * t + ph[0]) + 0.1 * np.sin(k[1] * 3 * t + ph[1])
                  + 0.02 * np.sin(k[2] * 17 * t + ph[2]))
    return shapely.Polygon(np.c_[cx + r * np.cos(t), cy + r * np.sin(t)])


def make_county(patches: int = 300_000, seed: int = 7) -> dict[str, np.ndarray]:
    """Geometry arrays by role (EPSG:4547). ``patches`` is the approximate number of DLTB patches."""
    rng = np.random.default_rng(seed)
    bnd = _boundary(rng)
    shapely.prepare(bnd)
    frac = shapely.area(bnd) / (WIDTH * HEIGHT)
    n = int(patches / frac * 1.002)
    pts = shapely.points(rng.uniform(X0, X0 + WIDTH, n), rng.uniform(Y0, Y0 + HEIGHT, n))
    frame = shapely.box(X0 - 100, Y0 - 100, X0 + WIDTH + 100, Y0 + HEIGHT + 100)
    vor = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=frame))
    inside = shapely.contains_properly(bnd, vor)
    edge = np.flatnonzero(~inside)
    cells = vor.copy()
    cells[edge] = shapely.intersection(vor[edge], bnd)
    cells = cells[np.isin(shapely.get_type_id(cells), (3,)) & (shapely.area(cells) > 1.0)]
    cells = shapely.segmentize(cells, 25.0)
    coords = shapely.get_coordinates(cells)
    cells = shapely.set_coordinates(cells, np.round(coords, 3))
    cells = cells[shapely.is_valid(cells)]

    # farmland blocks: dissolve patches grouped by a coarse tessellation
    m = max(len(cells) // 40, 8)
    seeds = shapely.points(rng.uniform(X0, X0 + WIDTH, m), rng.uniform(Y0, Y0 + HEIGHT, m))
    regions = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=frame))
    farmland = rng.random(len(regions)) < 0.45
    tree = shapely.STRtree(regions)
    ci, ri = tree.query(shapely.point_on_surface(cells), predicate="within")
    keep = farmland[ri] & (rng.random(len(ci)) < 0.85)  # a few patches in each block are not farmland
    ci, ri = ci[keep], ri[keep]
    order = np.argsort(ri, kind="stable")
    ci, ri = ci[order], ri[order]
    starts = np.flatnonzero(np.r_[True, ri[1:] != ri[:-1]])
    stops = np.r_[starts[1:], len(ri)]
    blocks = np.array([shapely.coverage_union_all(cells[ci[a:b]]) for a, b in zip(starts, stops)], dtype=object)
    blocks = shapely.get_parts(blocks)  # one polygon per contiguous block
    blocks = blocks[shapely.area(blocks) > 100]
    drift = rng.random(len(blocks)) < 0.25
    blocks[drift] = shapely.buffer(blocks[drift], -rng.uniform(1, 6, drift.sum()), join_style="mitre")
    blocks = shapely.get_parts(blocks[~shapely.is_empty(blocks)])
    yjjbnt = blocks[shapely.area(blocks) > 100]

    # ecological red line: a few large smooth polygons in the west
    stbhhx = np.array([
        shapely.intersection(_blob(rng, X0 + rng.uniform(0.1, 0.35) * WIDTH, Y0 + rng.uniform(0.2, 0.8) * HEIGHT,
                                   rng.uniform(1500, 3500), 6000), bnd) for _ in range(4)], dtype=object)
    stbhhx = shapely.get_parts(stbhhx)
    # urban development boundaries: town blobs
    towns = np.c_[X0 + rng.uniform(0.2, 0.9, 12) * WIDTH, Y0 + rng.uniform(0.15, 0.85, 12) * HEIGHT]
    czkfbj = np.array([shapely.intersection(_blob(rng, x, y, rng.uniform(400, 1600), 800), bnd)
                       for x, y in towns], dtype=object)
    czkfbj = shapely.get_parts(czkfbj)
    # approvals: irregular quadrilaterals near towns, overlapping each other now and then
    k = max(patches // 100, 20)
    town = rng.integers(0, len(towns), k)
    cx = towns[town, 0] + rng.normal(0, 1200, k)
    cy = towns[town, 1] + rng.normal(0, 1200, k)
    approvals = np.array([_blob(rng, x, y, rng.uniform(30, 120), int(rng.integers(8, 40)))
                          for x, y in zip(cx, cy)], dtype=object)
    approvals = approvals[shapely.within(approvals, bnd)]
    return {"dltb": cells, "yjjbnt": yjjbnt, "stbhhx": stbhhx, "czkfbj": czkfbj, "approvals": approvals}

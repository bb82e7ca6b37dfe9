"""Geometry building blocks of the sample-county generator, vectorised with shapely 2.

Everything works in plane metres of the store CRS (EPSG:4547). Coordinates that end up in files are
snapped to a 1 mm grid (``snap_mm``) so that every format (GeoPackage float64, FileGDB with a 1 mm
XY resolution and origin 0) stores them bit-identically and shared edges stay shared exactly.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely import Polygon

MM = 0.001


def snap_mm(geoms):
    """Round every coordinate to the millimetre (the FileGDB XY resolution the sample uses)."""
    return shapely.transform(geoms, lambda xy: np.round(xy, 3))


def smooth_noise(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, wavelength: float,
                 waves: int = 6) -> np.ndarray:
    """A smooth random field in [-1, 1] (sum of plane waves of about ``wavelength`` metres)."""
    total = np.zeros(np.shape(x))
    for _ in range(waves):
        angle = rng.uniform(0, 2 * math.pi)
        k = 2 * math.pi / (wavelength * rng.uniform(0.6, 1.6))
        phase = rng.uniform(0, 2 * math.pi)
        total += np.cos(k * (x * math.cos(angle) + y * math.sin(angle)) + phase)
    return total / math.sqrt(waves / 2.0) / 2.5


def star_outline(cx: float, cy: float, radius: float, rng: np.random.Generator, aspect: float = 1.0,
                 harmonics: int = 7, n: int = 720) -> Polygon:
    """A smooth irregular (star-shaped) outline: r(θ) = R·(1 + Σ aₖ sin(kθ + φₖ))."""
    theta = np.linspace(0, 2 * math.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, harmonics + 2):
        r += rng.uniform(0.02, 0.12) / math.sqrt(k - 1) * np.sin(k * theta + rng.uniform(0, 2 * math.pi))
    x = cx + radius * r * np.cos(theta) * aspect
    y = cy + radius * r * np.sin(theta)
    return shapely.make_valid(Polygon(np.column_stack([x, y])))


def jittered_grid(bounds: tuple[float, float, float, float], sx: float, sy: float, jitter: float,
                  rng: np.random.Generator, angle_deg: float = 0.0) -> np.ndarray:
    """Seeds on a (rotated) sx × sy grid covering ``bounds``, each moved by up to ``jitter`` of a spacing."""
    x0, y0, x1, y1 = bounds
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = math.hypot(x1 - x0, y1 - y0) / 2
    gx = np.arange(-half, half, sx)
    gy = np.arange(-half, half, sy)
    xx, yy = np.meshgrid(gx, gy)
    xx = xx + (np.arange(len(gy))[:, None] % 2) * sx * 0.5  # staggered rows: brick-like fields
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    pts[:, 0] += rng.uniform(-jitter, jitter, len(pts)) * sx
    pts[:, 1] += rng.uniform(-jitter, jitter, len(pts)) * sy
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    pts = pts @ rot.T + [cx, cy]
    keep = (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
    return pts[keep]


def voronoi_cells(seeds: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Voronoi cell of every seed, in seed order, snapped to the mm grid (shared vertices stay shared)."""
    frame = shapely.box(*bounds)
    cells = shapely.voronoi_polygons(shapely.multipoints(seeds), extend_to=frame, ordered=True)
    cells = np.asarray(shapely.get_parts(cells))
    return snap_mm(cells)


def meander(p0, p1, rng: np.random.Generator, amplitude: float, wavelength: float, step: float = 40.0):
    """A wandering line from p0 to p1 (sum of two sines across the chord)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    chord = p1 - p0
    length = float(np.hypot(*chord))
    n = max(int(length / step), 2)
    t = np.linspace(0, 1, n + 1)
    normal = np.array([-chord[1], chord[0]]) / length
    off = np.zeros_like(t)
    for k, amp in ((1.0, amplitude), (2.7, amplitude * 0.35)):
        off += amp * np.sin(2 * math.pi * k * t * length / wavelength + rng.uniform(0, 2 * math.pi))
    off *= np.sin(math.pi * t) ** 0.3  # pinned at the ends
    pts = p0 + np.outer(t, chord) + np.outer(off, normal)
    return shapely.linestrings(pts)


def strip(line, width: float):
    """A polygon strip of ``width`` metres along a line (flat ends, few vertices on bends)."""
    return shapely.buffer(line, width / 2.0, cap_style="flat", join_style="mitre", mitre_limit=3.0)


def cut_strips(cells: np.ndarray, strips: list[tuple[int, object]], halo: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut linear features (roads, river, canals) into a tessellation of cells, exactly.

    ``strips`` is a list of (kind, polygon) in priority order (the first kind wins where strips overlap).
    The boundaries of the affected cells and of the strips are noded together once and polygonised, so
    every new edge is shared by exactly the two faces beside it. Returns (geoms, cell_index, kind) where
    kind is -1 for the part of a cell outside every strip; cells untouched by strips are returned whole.

    Only the cells the strips touch are noded (snap-rounded to the mm grid). Snap rounding could in principle
    move an edge they share with an untouched neighbour (a vertex within 0.5 mm of it); the caller checks
    the result's coverage and, if needed, calls again with ``halo=True``, which also nodes the neighbours.
    """
    strip_geoms = np.array([g for _, g in strips], dtype=object)
    strip_kind = np.array([k for k, _ in strips])
    tree = shapely.STRtree(cells)
    hit = tree.query(strip_geoms, predicate="intersects")
    affected = np.unique(hit[1])
    region = affected
    if halo:  # neighbours too: snap rounding may touch their shared edges, never the halo's outer edges
        near = tree.query(cells[affected], predicate="intersects")
        region = np.unique(np.concatenate([affected, near[1]]))
    untouched = np.setdiff1d(np.arange(len(cells)), region)
    lines = np.concatenate([shapely.get_rings(cells[region]), shapely.get_rings(shapely.get_parts(strip_geoms))])
    noded = shapely.union_all(lines, grid_size=MM)  # one snap-rounded noding: every edge shared exactly
    faces = np.asarray(shapely.get_parts(shapely.polygonize(shapely.get_parts(noded))))
    faces = faces[shapely.area(faces) > 0]
    points = shapely.point_on_surface(faces)
    in_cell = shapely.STRtree(cells[region]).query(points, predicate="within")
    face_cell = np.full(len(faces), -1)
    face_cell[in_cell[0]] = region[in_cell[1]]
    keep = face_cell >= 0
    faces, points, face_cell = faces[keep], points[keep], face_cell[keep]
    face_kind = np.full(len(faces), -1)
    done = np.zeros(len(faces), bool)
    for i, geom in enumerate(strip_geoms):  # priority order
        inside = shapely.contains_xy(geom, shapely.get_x(points), shapely.get_y(points)) & ~done
        face_kind[inside] = strip_kind[i]
        done |= inside
    # merge faces of the same cell and kind (faces split only by another strip's outline)
    order = np.lexsort((face_kind, face_cell))
    faces, face_cell, face_kind = faces[order], face_cell[order], face_kind[order]
    key_change = np.r_[True, (face_cell[1:] != face_cell[:-1]) | (face_kind[1:] != face_kind[:-1])]
    group = np.cumsum(key_change) - 1
    merged = group_union(faces, group)
    first = np.flatnonzero(key_change)
    g_cell, g_kind = face_cell[first], face_kind[first]
    parts, part_of = shapely.get_parts(merged, return_index=True)
    geoms = np.concatenate([cells[untouched], parts])
    cell_index = np.concatenate([untouched, g_cell[part_of]])
    kinds = np.concatenate([np.full(len(untouched), -1), g_kind[part_of]])
    return geoms, cell_index, kinds


def group_union(geoms: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Union of geometries per group id (0..k-1, sorted), vectorised over groups (k-th members at a time).

    Members of a group share edges exactly, so a pairwise union is clean; groups of one are passed through.
    """
    n_groups = int(group.max()) + 1 if len(group) else 0
    starts = np.searchsorted(group, np.arange(n_groups))
    counts = np.bincount(group, minlength=n_groups)
    acc = geoms[starts].copy()
    rank = np.arange(len(group)) - starts[group]
    for k in range(1, int(counts.max()) if len(counts) else 0):
        sel = rank == k
        acc[group[sel]] = shapely.union(acc[group[sel]], geoms[sel])
    return acc


def coverage_dissolve(geoms: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dissolve a clean coverage by key (unique keys in sorted order, one (multi)polygon each)."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    out = np.empty(len(uniq), dtype=object)
    for i in range(len(uniq)):
        members = geoms[order[bounds[i]:bounds[i + 1]]]
        out[i] = members[0] if len(members) == 1 else shapely.coverage_union_all(members)
    return uniq, out


def rotated_rect(cx: float, cy: float, w: float, h: float, angle: float) -> Polygon:
    """A w × h rectangle centred on (cx, cy), long side w along ``angle`` (radians), snapped to mm."""
    c, s = math.cos(angle), math.sin(angle)
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    pts = corners @ np.array([[c, s], [-s, c]]) + [cx, cy]
    return snap_mm(Polygon(pts))


def rect_part(cx: float, cy: float, w: float, h: float, angle: float, t0: float, t1: float,
              grow: float = 0.0) -> Polygon:
    """The slice t0..t1 (fractions along the long side) of a rotated rectangle, grown outward by ``grow``."""
    c, s = math.cos(angle), math.sin(angle)
    u0 = -w / 2 + t0 * w - (grow if t0 <= 0 else 0.0)
    u1 = -w / 2 + t1 * w + (grow if t1 >= 1 else 0.0)
    corners = np.array([[u0, -h / 2 - grow], [u1, -h / 2 - grow], [u1, h / 2 + grow], [u0, h / 2 + grow]])
    pts = corners @ np.array([[c, s], [-s, c]]) + [cx, cy]
    return snap_mm(Polygon(pts))


def inset_polygon(rect: Polygon, inset: float, rng: np.random.Generator, jitter: float = 0.6) -> Polygon:
    """A hand-digitised looking copy of a rectangle, strictly inside it: the rectangle shrunk by ``inset``
    metres, with two extra vertices on each side pushed in by a further 0..``jitter`` metres."""
    inner = shapely.buffer(rect, -inset, join_style="mitre")
    pts = np.asarray(shapely.get_exterior_ring(inner).coords)[:-1]
    centre = pts.mean(axis=0)
    out = []
    for i in range(len(pts)):
        a, b = pts[i], pts[(i + 1) % len(pts)]
        side = (b - a) / np.hypot(*(b - a))
        normal = np.array([-side[1], side[0]])
        if np.dot(normal, centre - a) < 0:
            normal = -normal
        out.append(a)
        for t in (0.33, 0.67):
            out.append(a + t * (b - a) + normal * rng.uniform(0.05, jitter))
    return snap_mm(Polygon(out))


def moved(geom, dx: float = 0.0, dy: float = 0.0, rotate_deg: float = 0.0, scale: float = 1.0):
    """Translate / rotate / scale a polygon about its centroid (a re-digitised copy of the same change)."""
    c = shapely.centroid(geom)
    cx, cy = c.x, c.y
    a = math.radians(rotate_deg)
    ca, sa = math.cos(a), math.sin(a)

    def f(xy):
        x, y = (xy[:, 0] - cx) * scale, (xy[:, 1] - cy) * scale
        return np.column_stack([cx + x * ca - y * sa + dx, cy + x * sa + y * ca + dy])

    return snap_mm(shapely.transform(geom, f))


def bowtie(cx: float, cy: float, w: float, h: float) -> Polygon:
    """A self-intersecting 'bow-tie' ring (invalid): the corners of a w × h box in crossing order."""
    pts = [(cx - w / 2, cy - h / 2), (cx + w / 2, cy + h / 2), (cx + w / 2, cy - h / 2), (cx - w / 2, cy + h / 2)]
    return Polygon(np.round(pts, 3))


def fill_coverage_holes(geoms: np.ndarray, max_area: float = 1.0) -> tuple[np.ndarray, int]:
    """Merge every hole of a coverage (a place no polygon covers, enclosed by them) smaller than ``max_area``
    into the polygon it shares the longest edge with. Snap rounding while noding the strips leaves a few such
    slivers (hundredths of a m²) where a road crosses a cell corner; a survey layer must tile its county.
    Returns (geoms, number of holes filled)."""
    geoms = np.asarray(geoms, dtype=object).copy()
    union = shapely.union_all(geoms)
    holes = [shapely.Polygon(r) for p in shapely.get_parts(union) for r in p.interiors]
    holes = [h for h in holes if h.area <= max_area]
    if not holes:
        return geoms, 0
    tree = shapely.STRtree(geoms)
    for h in holes:
        near = tree.query(h, predicate="intersects")
        shared = shapely.length(shapely.intersection(shapely.boundary(geoms[near]), shapely.boundary(h)))
        k = int(near[int(np.argmax(shared))])
        merged = shapely.union(geoms[k], h)
        if merged.geom_type != "Polygon":  # pragma: no cover - a hole touching its neighbour at a point only
            continue
        geoms[k] = merged
    return geoms, len(holes)

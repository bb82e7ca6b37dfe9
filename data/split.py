"""Planted ground changes that cross several current DLTB patches (issue 10), and what is drawn on them.

The county above showed what the simple sites (one rectangle carved out of one parent patch) never do: a change
site crosses several current survey patches — a 村 boundary, a road beside a building — so the survey's change
pieces of ONE ground change are several current patches, each its own piece unit ``BG-<BSM>``; and later rounds
re-issue the change on another piece. The families planted here (``SPLIT_SITES``):

- ``layout: two`` — a rectangle straddling the shared edge of two adjacent parents P | Q (P holds 55–70 %): one
  piece per parent, each with its own new code;
- ``layout: road`` — as ``two``, and the part in P is cut again by a road strip (1004, ~8 m) along the P | Q edge:
  building | road | building, three pieces;
- ``layout: three`` — a rectangle across a 6 m field road (1006) and the fields on both sides: three parents;
- ``layout: halves`` — one rectangle in ONE parent cut into two halves that are two DIFFERENT ground changes
  (touching pairs whose survey pieces are adjacent).

``cross: village`` asks for parents in two different 村 (the record belongs whole to the village holding its
larger share); ``cross: patch`` for any two adjacent parents.

Monitoring patches (``mon``: source key of data.generate.ROUNDS, variant, file, 后时相 override):

- ``whole``: the rectangle inset by 1 m (hand-digitised look), ``whole_moved``: the same re-digitised 3.6 m off;
- ``piece:i[,j]``: the pieces i (, j) grown by DELTA m, inside the rectangle inset by 1 m — a patch that covers
  one piece mostly and reaches DELTA m into its neighbour. Two rounds' patches on different pieces of one site
  therefore overlap each other in a band ~2·DELTA m wide: far below the 0.5 overlap ratio, far above 1 m²;
- ``exact``: the change's own ground (a half of a ``halves`` rectangle).

Approvals (``approval``: kind, cover): ``full`` (rectangle grown 3 m), ``piece:i`` (piece i grown 1.5 m),
``exact`` (the half itself).

Everything here draws from its own random generator and runs after every older planted case, so the older
cases of the sample keep their geometry, ids and attributes.
"""

from __future__ import annotations

import math

import numpy as np
import shapely

from . import _shapes as sh

DELTA = 2.0  # how far a piece-covering monitoring patch reaches into the neighbouring piece (m)
ROAD_WIDTH = 8.0  # the road strip of the ``road`` layout (m)
MARGIN = 2.0  # the rectangle keeps this far from every parent edge except the ones it is meant to cross


def M(src: str, variant: str, file: str | None = None, hsx: str | None = None) -> dict:
    """A monitoring patch of a planted change: source key, geometry variant, file (None: the source's own
    file; "pc": the mixed-round file with PC / LY columns), 后时相 override (canonical text)."""
    return {"src": src, "variant": variant, "file": file, "hsx": hsx}


SPLIT_SITES = [
    # split sites: one ground change, several current patches --------------------------------------------
    dict(key="K1", kind="split_site", parent="farm", cross="village", layout="road", codes=("0601", "1004", "0601"),
         approval=None, mon=[M("sat1", "whole", "pc")], verdict="suspected_illegal"),
    dict(key="K2", kind="split_site", parent="ring", cross="patch", layout="two", codes=("05H1", "1004"),
         approval=("农用地转用", "piece:0"), mon=[M("sat2", "whole", "pc")], verdict="partly_approved"),
    dict(key="K3", kind="split_survey_only", parent="farm", cross="village", layout="two", codes=("0702", "1004"),
         approval=None, mon=[], verdict="suspected_illegal"),
    dict(key="K4", kind="split_camera_satellite", parent="farm", cross="village", layout="two",
         codes=("0601", "1004"), approval=None,
         mon=[M("sat2", "whole", "pc", hsx="2024-07"), M("camera", "piece:0")], verdict="suspected_illegal"),
    dict(key="K5", kind="split_site", parent="ring", cross="patch", layout="road", codes=("0701", "1004", "0701"),
         approval=("土地征收", "full"), mon=[M("drone", "whole")], verdict="legal"),
    dict(key="K6", kind="split_three_parents", parent="farm", cross="road", layout="three",
         codes=("05H1", "1004", "05H1"), approval=None, mon=[M("sat1", "whole", "pc")], verdict="suspected_illegal"),
    dict(key="K7", kind="split_reissued", parent="ring", cross="village", layout="two", codes=("0601", "0601"),
         approval=("农用地转用", "piece:1"), mon=[M("sat1", "whole", "pc"), M("sat2", "whole_moved", "pc")],
         verdict="partly_approved"),
    # re-issued in a later round on ANOTHER piece of the site ----------------------------------------------
    dict(key="R1", kind="reissue_other_piece", parent="farm", cross="village", layout="two", codes=("0601", "05H1"),
         approval=None, mon=[M("sat1", "piece:0", "pc"), M("sat2", "piece:1", "pc")], verdict="suspected_illegal"),
    dict(key="R2", kind="reissue_other_piece", parent="ring", cross="patch", layout="road",
         codes=("05H1", "1004", "05H1"), approval=("农用地转用", "piece:0"),
         mon=[M("sat1", "piece:0,1", "pc"), M("sat2", "piece:2", "pc")], verdict="partly_approved"),
    dict(key="R3", kind="reissue_other_piece", parent="ring", cross="village", layout="two", codes=("0701", "0701"),
         approval=("土地征收", "full"), mon=[M("sat1", "piece:0"), M("sat2", "piece:1")], verdict="legal"),
    dict(key="R4", kind="reissue_other_piece", parent="farm", cross="patch", layout="two", codes=("1004", "0601"),
         approval=None, mon=[M("sat1", "piece:1", "pc"), M("camera", "piece:0", "pc")], verdict="suspected_illegal"),
    # touching pairs whose survey pieces are adjacent: two changes each -------------------------------------
    dict(key="H1", kind="touching_pieces", parent="farm", cross=None, layout="halves", codes=("0601", "05H1"),
         halves=[dict(key="H1", approval=None, mon=[M("sat1", "exact", "pc")], verdict="suspected_illegal"),
                 dict(key="H2", approval=None, mon=[M("drone", "exact")], verdict="suspected_illegal")]),
    dict(key="H3", kind="touching_pieces", parent="ring", cross=None, layout="halves", codes=("0601", "0701"),
         halves=[dict(key="H3", approval=None, mon=[M("sat1", "exact", "pc")], verdict="suspected_illegal"),
                 dict(key="H4", approval=("农用地转用", "exact"), mon=[M("sat2", "exact", "pc")],
                      verdict="legal")]),
]


# --- placement ---------------------------------------------------------------------------------------------

def _edge_frame(line):
    """Midpoint and unit tangent of the longest part of a (multi)line."""
    merged = shapely.line_merge(line) if line.geom_type != "LineString" else line
    parts = shapely.get_parts(merged)
    part = parts[int(np.argmax(shapely.length(parts)))]
    length = part.length
    m = shapely.line_interpolate_point(part, 0.5, normalized=True)
    a = shapely.line_interpolate_point(part, max(0.0, length / 2 - 2.0))
    b = shapely.line_interpolate_point(part, min(length, length / 2 + 2.0))
    tx, ty = b.x - a.x, b.y - a.y
    norm = math.hypot(tx, ty) or 1.0
    return (m.x, m.y), (tx / norm, ty / norm), length


class SplitPlacer:
    """Finds parent pairs / triples for split sites; shares the used-patch bookkeeping of the older placer."""

    def __init__(self, t: dict, z: dict, geoms: np.ndarray, placer, rng: np.random.Generator, exclude: set[int],
                 candidates):
        self.t, self.z, self.geoms, self.placer, self.rng = t, z, geoms, placer, rng
        self.exclude = set(exclude)
        self.candidates = candidates  # callable(kind) -> indices (data.generate._candidates bound to t, z)
        self.tree = shapely.STRtree(geoms)
        self.cell = t["cell_size"]

    def _free(self, idx) -> np.ndarray:
        idx = np.asarray(idx, int)
        bad = self.placer.used | self.exclude
        return np.array([i for i in idx.tolist() if i not in bad], int)

    def _far_enough(self, x: float, y: float, gap: float) -> bool:
        return all(math.hypot(x - a, y - b) >= gap for a, b in self.placer.centres)

    def _sizes(self):
        """Rectangle sides to try (largest first), each site a little different: ~44–60 m × 34–46 m."""
        w = min(52.0 * self.rng.uniform(0.85, 1.15), max(16.0, 1.1 * self.cell))
        h = min(40.0 * self.rng.uniform(0.85, 1.15), max(12.0, 0.8 * self.cell))
        for f in (1.0, 0.8, 0.6, 0.45):
            yield round(w * f, 1), round(h * f, 1)

    def _check(self, rect, parents: list[int], min_piece: float, margin: float = MARGIN, cut_through=()) -> bool:
        """The rectangle meets exactly ``parents`` (each by ≥ min_piece m²), keeps MARGIN m inside their union,
        and leaves every parent in one piece (``cut_through``: in two pieces, e.g. a road the site crosses)."""
        hit = self.tree.query(rect, predicate="intersects")
        inter = shapely.area(shapely.intersection(self.geoms[hit], rect))
        hit = hit[inter > 1e-6]
        if sorted(hit.tolist()) != sorted(parents):
            return False
        union = shapely.union_all(self.geoms[parents])
        if union.geom_type != "Polygon" or not shapely.within(rect, shapely.buffer(union, -margin,
                                                                                    join_style="mitre")):
            return False
        for p in parents:
            piece = shapely.intersection(self.geoms[p], rect)
            rest = shapely.difference(self.geoms[p], rect)
            if piece.geom_type != "Polygon" or piece.area < min_piece:
                return False
            n_rest = len(shapely.get_parts(rest))
            if n_rest != (2 if p in cut_through else 1) or min(shapely.area(shapely.get_parts(rest))) < 10:
                return False
        return True

    def _gaps(self):
        """Distances kept from every other planted site: the placer's, relaxed for small counties."""
        g = self.placer.min_gap
        return [g, g / 2, g / 4, g / 8]

    def place_pair(self, kind: str, cross: str, margin: float = MARGIN) -> dict:
        """Two adjacent parents of ``kind`` (``cross: village``: in different 村) and a rectangle across their
        shared edge, P (the first parent) holding 55–70 % of it, ``margin`` m inside their other edges."""
        cand = self._free(self.candidates(kind))
        if not len(cand):
            raise RuntimeError(f"no free parent patch of kind {kind!r} for a split site")
        in_cand = np.zeros(len(self.geoms), bool)
        in_cand[cand] = True
        order = cand.copy()
        self.rng.shuffle(order)
        pairs = []
        for p in order[:3000].tolist():
            near = self.tree.query(self.geoms[p], predicate="touches")
            for q in near.tolist():
                if in_cand[q] and q != p:
                    pairs.append((p, q))
        for gap in self._gaps():
            for want_village in ((True, False) if cross == "village" else (False,)):
                share = float(self.rng.uniform(0.55, 0.7))
                for w, h in self._sizes():
                    for p, q in pairs:
                        if want_village and self.t["village"][q] == self.t["village"][p]:
                            continue
                        shared = shapely.intersection(shapely.boundary(self.geoms[p]), shapely.boundary(self.geoms[q]))
                        if shapely.length(shared) < h + 2 * margin + 6:
                            continue
                        (mx, my), (tx, ty), _ = _edge_frame(shared)
                        ux, uy = ty, -tx  # normal; make it point from P into Q
                        if shapely.contains_xy(self.geoms[p], mx + ux, my + uy):
                            ux, uy = -ux, -uy
                        cx, cy = mx + ux * (0.5 - share) * w, my + uy * (0.5 - share) * w
                        if not self._far_enough(cx, cy, gap):
                            continue
                        rect = sh.rotated_rect(cx, cy, w, h, math.atan2(uy, ux))
                        if self._check(rect, [p, q], min_piece=0.25 * w * h, margin=margin):
                            where = self._take(rect, [p, q], (cx, cy), w, h, math.atan2(uy, ux))
                            differ = self.t["village"][q] != self.t["village"][p]
                            where["cross"] = "village" if differ else "patch"
                            return where
        raise RuntimeError(f"no pair of adjacent {kind!r} patches for a split site (cross {cross!r})")

    def place_across_road(self, kind: str) -> dict:
        """A field road strip (1006) and the two ``kind`` fields beside it, with a rectangle across the road."""
        code = self.t["code"].astype(str)
        strips = self._free(np.flatnonzero((self.t["strip_kind"] == 3) & (code == "1006")))
        cand = set(self._free(self.candidates(kind)).tolist())
        order = strips.copy()
        self.rng.shuffle(order)
        for gap, (w, h) in ((g, wh) for g in self._gaps() for wh in self._sizes()):
            for s in order[:4000].tolist():
                g = self.geoms[s]
                pt = shapely.point_on_surface(g)
                ang = _orientation(g) + math.pi / 2  # across the road
                if not self._far_enough(pt.x, pt.y, gap):
                    continue
                rect = sh.rotated_rect(pt.x, pt.y, w, h, ang)
                hit = self.tree.query(rect, predicate="intersects")
                hit = [i for i in hit.tolist() if shapely.area(shapely.intersection(self.geoms[i], rect)) > 1e-6]
                sides = [i for i in hit if i != s]
                if len(sides) != 2 or not all(i in cand for i in sides):
                    continue
                # order the parents along the rectangle's long axis: first field, road, second field
                u = np.array([math.cos(ang), math.sin(ang)])
                proj = [float(np.dot(np.array(shapely.centroid(shapely.intersection(self.geoms[i], rect)).coords[0])
                                     - [pt.x, pt.y], u)) for i in sides]
                first, second = (sides[0], sides[1]) if proj[0] < proj[1] else (sides[1], sides[0])
                parents = [first, s, second]
                if self._check(rect, parents, min_piece=0.04 * w * h, cut_through=(s,)):
                    return self._take(rect, parents, (pt.x, pt.y), w, h, ang)
        raise RuntimeError(f"no field road between two {kind!r} patches for a split site")

    def place_halves(self, kind: str) -> dict:
        typical = min(45.0, 0.9 * self.cell * 0.45 + 5)
        need = typical * 1.3 + 5
        old_rng = self.placer.rng
        self.placer.rng = self.rng
        try:
            p, cx, cy, r = self.placer.place(kind, need)
        finally:
            self.placer.rng = old_rng
        angle = _orientation(self.geoms[p])
        hd = max(min(r - 5.0, need - 5.0) * self.rng.uniform(0.8, 1.0), min(6.0, 0.6 * r))
        h = 2 * hd / math.sqrt(1 + 2.2 * 2.2)
        w = h * 2.2
        rect = sh.rotated_rect(cx, cy, round(w, 1), round(h, 1), angle)
        return {"rect": rect, "parents": [p], "centre": (cx, cy), "w": round(w, 1), "h": round(h, 1),
                "angle": angle}

    def _take(self, rect, parents, centre, w, h, angle) -> dict:
        self.placer.used.update(parents)
        self.placer.centres.append(centre)
        return {"rect": rect, "parents": list(parents), "centre": centre, "w": w, "h": h, "angle": angle}


def _orientation(geom) -> float:
    mrr = shapely.minimum_rotated_rectangle(geom)
    pts = np.asarray(mrr.exterior.coords)
    e1, e2 = pts[1] - pts[0], pts[2] - pts[1]
    e = e1 if np.hypot(*e1) >= np.hypot(*e2) else e2
    return math.atan2(e[1], e[0])


# --- carving ---------------------------------------------------------------------------------------------

def cut_lines(site: dict, geoms: np.ndarray) -> list:
    """The extra lines that cut the rectangle into pieces (besides the parents' own edges)."""
    rect = site["rect"]
    if site["layout"] == "road":
        p, q = site["parents"]
        ppart = shapely.intersection(geoms[p], rect)
        qpart = shapely.intersection(geoms[q], rect)
        road = shapely.intersection(ppart, shapely.buffer(qpart, ROAD_WIDTH, join_style="mitre"))
        road = sh.snap_mm(shapely.intersection(road, rect))
        site["road"] = road
        return [shapely.get_exterior_ring(road)]
    if site["layout"] == "halves":
        cx, cy = site["centre"]
        half = sh.rect_part(cx, cy, site["w"], site["h"], site["angle"], 0.0, 0.5)
        site["half_a"] = half
        return [shapely.get_exterior_ring(half)]
    return []


def carve(site: dict, geoms: np.ndarray, neighbours_tree: shapely.STRtree) -> tuple[list, dict[int, object]]:
    """Node the parents' edges with the rectangle (and cut lines) once, on the mm grid; return the pieces in
    layout order and, per parent, what is left of it (a list of polygons, largest first: more than one only for
    the road of the ``three`` layout). Raises if the result would not be an exact coverage with the untouched
    neighbours."""
    rect = site["rect"]
    parents = site["parents"]
    lines = [*shapely.get_rings(geoms[parents]), shapely.get_exterior_ring(rect), *cut_lines(site, geoms)]
    noded = shapely.union_all(np.array(lines, dtype=object), grid_size=sh.MM)
    faces = np.asarray(shapely.get_parts(shapely.polygonize(shapely.get_parts(noded))))
    faces = faces[shapely.area(faces) > 1e-9]
    pts = shapely.point_on_surface(faces)
    owner = np.full(len(faces), -1)
    for k, p in enumerate(parents):
        owner[shapely.contains(geoms[p], pts)] = k
    if (owner < 0).any():  # a face outside every parent: holes of a parent polygonised (parents have none)
        keep = owner >= 0
        faces, pts, owner = faces[keep], pts[keep], owner[keep]
    inside = shapely.contains(rect, pts)
    label = np.zeros(len(faces), int)
    if site["layout"] == "road":  # the road strip lies in the first parent
        label[(owner == 0) & shapely.contains(site["road"], pts)] = 1
    elif site["layout"] == "halves":
        label[~shapely.contains(site["half_a"], pts)] = 1

    def merge(sel):
        g = faces[sel]
        return g[0] if len(g) == 1 else shapely.coverage_union_all(g)

    if site["layout"] == "two":
        keys = [(0, 0), (1, 0)]
    elif site["layout"] == "road":
        keys = [(0, 0), (0, 1), (1, 0)]
    elif site["layout"] == "three":
        keys = [(0, 0), (1, 0), (2, 0)]
    else:  # halves
        keys = [(0, 0), (0, 1)]
    pieces = []
    for k, lab in keys:
        sel = inside & (owner == k) & (label == lab)
        if not sel.any():
            raise RuntimeError(f"split site {site['key']}: piece {(k, lab)} is empty")
        piece = merge(sel)
        if piece.geom_type != "Polygon":
            raise RuntimeError(f"split site {site['key']}: piece {(k, lab)} is not one polygon")
        pieces.append((parents[k], piece))
    rests = {}
    for k, p in enumerate(parents):
        rest = merge(~inside & (owner == k))
        parts = sorted(shapely.get_parts(rest), key=lambda g: -g.area)
        if len(parts) > 1 and not (site["layout"] == "three" and k == 1):
            raise RuntimeError(f"split site {site['key']}: parent {p} falls apart")
        rests[p] = parts  # a road the site crosses is left in two parts: the larger keeps the parent's id
    # exact coverage with the untouched neighbours, and nothing lost
    new = np.array([g for _, g in pieces] + [g for parts in rests.values() for g in parts], dtype=object)
    near = np.setdiff1d(neighbours_tree.query(shapely.union_all(geoms[parents]), predicate="intersects"), parents)
    if not shapely.coverage_is_valid(np.concatenate([new, geoms[near]])):
        raise RuntimeError(f"split site {site['key']}: carving broke the coverage")
    before = float(shapely.area(shapely.union_all(geoms[parents])))
    after = float(shapely.area(shapely.union_all(new)))
    if abs(before - after) > 1e-6 or abs(shapely.area(new).sum() - before) > 1e-6:
        raise RuntimeError(f"split site {site['key']}: carving changed the parents' area")
    return pieces, rests


# --- what is drawn on the pieces ---------------------------------------------------------------------------

def piece_indices(variant: str) -> list[int]:
    return [int(x) for x in variant.split(":", 1)[1].split(",")]


def mon_geometry(change: dict, variant: str, rng: np.random.Generator):
    """Geometry of a monitoring patch on a planted change (see the module docstring)."""
    rect = change["rect"]
    if variant == "exact":
        return change["ground"]
    inset = sh.inset_polygon(rect, 1.0, rng)
    if variant == "whole":
        return inset
    if variant == "whole_moved":
        return sh.moved(inset, dx=3.0, dy=-2.0)
    if variant.startswith("piece:"):
        ground = shapely.union_all([change["pieces"][i] for i in piece_indices(variant)])
        # DELTA on sample-size sites; in proportion on the small sites of fine benchmark counties
        delta = DELTA if change["w"] >= 40.0 else DELTA * change["w"] / 40.0
        grown = shapely.buffer(ground, delta, join_style="mitre")
        g = shapely.intersection(grown, shapely.buffer(rect, -1.0, join_style="mitre"))
        return sh.snap_mm(shapely.make_valid(g))
    raise ValueError(variant)


def approval_geometry(change: dict, cover: str):
    rect = change["rect"]
    if cover == "full":
        return sh.snap_mm(shapely.buffer(rect, 3.0, join_style="mitre"))
    if cover == "exact":
        return change["ground"]
    if cover.startswith("piece:"):
        ground = shapely.union_all([change["pieces"][i] for i in piece_indices(cover)])
        return sh.snap_mm(shapely.buffer(ground, 1.5, join_style="mitre"))
    raise ValueError(cover)

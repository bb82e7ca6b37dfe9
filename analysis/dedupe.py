"""One ground change, one record: merge the issued monitoring patches and the survey's change pieces that
describe the same change on the ground.

Two kinds of input rows (column ``derived``):

* **issued patches** (``derived`` false): monitoring patches with a 监测编号 issued by a source (satellite,
  camera, drone …) in a round; the same change is issued again in later rounds and by other sources;
* **survey piece units** (``derived`` true): the changed pieces of dltb_prev → dltb under one current DLTB patch
  (analysis.changes). One change site crossing a 村 boundary, or holding a road beside a building, is several
  piece units, because the survey cuts it along its patch boundaries.

Patches are matched by geometry, never by id:

    overlap ratio(A, B) = area(A ∩ B) ÷ min(area A, area B)

A and B *match* when the ratio ≥ ``min_overlap_ratio`` (0.5). Two piece units are *adjacent* (one site) when
their boundaries share at least ``site_min_shared_edge_m`` of line.

Clustering, greedy and deterministic:

1. links named by the lists themselves first — an issued patch whose 上期监测编号 (SQJCBH) is the JCBH of
   another row re-issues it — then matches between issued patches, and between an issued patch and a piece
   unit, in order of decreasing ratio, join their clusters — unless the two clusters already hold issued
   patches of the same (SOURCE, ROUND): one source issues a change once per round, so two such patches are two
   changes;
2. then adjacent piece units, in order of decreasing shared length, join their clusters — unless (a) that
   would put two issued patches of one (SOURCE, ROUND) together, or (b) both clusters hold issued patches and
   none of the one overlaps one of the other by ``site_link_min_overlap_m2`` or more. A site is one change,
   so an uncovered piece joins the record of its neighbour; but two issued patches that merely touch stay two
   records even when the survey draws their ground as one site.

Piece units carry no (SOURCE, ROUND) key: one satellite patch covering three pieces of a site is one record.
Clusters that hold at most one issued patch cannot break either constraint: they are the connected
components of the match / adjacency graph (scipy.sparse.csgraph); the greedy order only runs inside the few
components that hold two or more issued patches.

The record:

- JCBH: the representative = the earliest *issued* member: earliest 后时相 HSX (a month-only date counts as the
  first of its month; an unknown date sorts after every known one), then natural order of ROUND, then
  ``source_order``, then JCBH. A record without an issued member takes the id of its largest piece unit
  (ties: the smallest id), e.g. ``BG-<BSM>``;
- source_ids: the issued members' JCBH in issue order, then the piece units' ids; sources (in source_order),
  rounds (natural order): distinct values over all members; n_sources; n_members; n_pieces (piece units);
- geometry (``geometry``): ``union`` (default) = the union of every member — the full extent any source or the
  survey reported; ``representative`` = the representative's outline; ``latest`` = the latest issued member's;
- HSX / QSX: the earliest of the members, as the member wrote it (month precision kept).

Ratios and overlaps use planar areas in the store's Gauss-Krüger CRS (a ratio of two areas of one place equals
the ellipsoidal one to 1e-9); a ratio within 1e-9 below the threshold counts as reaching it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from layers.errors import FieldError

from .common import as_text, json_list, parse_dates

_TOL = 1e-9
GEOMETRY_RULES = ("union", "representative", "latest")
RECORD_COLUMNS = ["JCBH", "source_ids", "sources", "rounds", "n_sources", "n_members", "n_pieces", "SOURCE",
                  "ROUND", "HSX", "QSX", "XZQDM", "TBLX"]


@dataclass
class DedupeReport:
    n_input: int
    n_output: int
    groups: list[list[str]] = field(default_factory=list)  # member lists of records with ≥ 2 members
    n_pieces: int = 0  # survey piece units among the input

    @property
    def n_merged(self) -> int:
        """Input rows absorbed into another record (n_input − n_output)."""
        return self.n_input - self.n_output

    def to_dict(self) -> dict:
        return {"n_input": self.n_input, "n_output": self.n_output, "n_merged": self.n_merged,
                "n_pieces": self.n_pieces, "groups": self.groups}


def natural_key(text: object) -> tuple:
    """Sort key comparing digit runs as numbers: '2024-2' < '2024-10'; '' sorts last."""
    text = str(text) if text is not None else ""
    if not text:
        return ((2, ""),)
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p != "")


def overlap_pairs(geoms: np.ndarray, min_ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) whose overlap ratio reaches ``min_ratio``; returns (i, j, ratio)."""
    i, j, inter, ratio = _intersecting_pairs(geoms)
    ok = (inter > 0) & (ratio >= min_ratio - _TOL)
    return i[ok], j[ok], ratio[ok]


def _intersecting_pairs(geoms: np.ndarray):
    """(i, j, area of i ∩ j, overlap ratio) for every pair i < j whose geometries intersect."""
    empty = np.array([], dtype=int)
    if len(geoms) < 2:
        return empty, empty, np.array([]), np.array([])
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    areas = shapely.area(geoms)
    inter = shapely.area(shapely.intersection(geoms[i], geoms[j]))
    smaller = np.minimum(areas[i], areas[j])
    ratio = np.divide(inter, smaller, out=np.zeros(len(i)), where=smaller > 0)
    return i, j, inter, ratio


def shared_edges(geoms: np.ndarray, min_length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) of polygons whose boundaries share at least ``min_length`` of line; (i, j, length)."""
    empty = np.array([], dtype=int)
    if len(geoms) < 2:
        return empty, empty, np.array([])
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    bounds = shapely.boundary(geoms)
    length = shapely.length(shapely.intersection(bounds[i], bounds[j]))
    ok = length >= min_length - _TOL
    return i[ok], j[ok], length[ok]


def cluster(n: int, edges: list[tuple[np.ndarray, np.ndarray, np.ndarray]], keys: list, *,
            linkable=None, constrained: np.ndarray | None = None) -> np.ndarray:
    """Cluster label (0..k-1, in order of first member) of each of n rows.

    ``edges``: passes of (i, j, strength); each pass is taken in order of decreasing strength, the passes in
    order. A join is refused when the two clusters share a key (``keys[k]`` is a hashable or None: None never
    clashes), or when ``linkable(pass, members_a, members_b)`` says no. ``constrained`` marks the rows a
    constraint can concern (default: the keyed ones); components holding fewer than two of them can never meet
    one and are labelled by their connected component directly.
    """
    if n == 0:
        return np.array([], dtype=int)
    all_i = np.concatenate([e[0] for e in edges]) if edges else np.array([], dtype=int)
    all_j = np.concatenate([e[1] for e in edges]) if edges else np.array([], dtype=int)
    graph = coo_matrix((np.ones(len(all_i)), (all_i, all_j)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    if constrained is None:
        constrained = np.array([k is not None for k in keys])
    per_comp = np.bincount(comp, weights=np.asarray(constrained, dtype=float), minlength=comp.max() + 1)
    roots = comp.copy()
    busy = np.flatnonzero(per_comp >= 2)
    if len(busy):
        in_busy = np.isin(comp, busy)
        parent = {int(x): int(x) for x in np.flatnonzero(in_busy)}
        members = {x: [x] for x in parent}
        key_sets = {x: ({keys[x]} if keys[x] is not None else set()) for x in parent}

        def find(x: int) -> int:
            root = x
            while parent[root] != root:
                root = parent[root]
            while parent[x] != root:
                parent[x], x = root, parent[x]
            return root

        for step, (ei, ej, strength) in enumerate(edges):
            sel = in_busy[ei] if len(ei) else np.zeros(0, dtype=bool)
            ei, ej, strength = ei[sel], ej[sel], strength[sel]
            order = np.lexsort((ej, ei, -strength))  # strongest first; ties in index order (deterministic)
            for a, b in zip(ei[order].tolist(), ej[order].tolist()):
                ra, rb = find(a), find(b)
                if ra == rb or key_sets[ra] & key_sets[rb]:
                    continue
                if linkable is not None and not linkable(step, members[ra], members[rb]):
                    continue
                keep, gone = min(ra, rb), max(ra, rb)
                parent[gone] = keep
                members[keep] += members.pop(gone)
                key_sets[keep] |= key_sets.pop(gone)
        for x in parent:
            roots[x] = n + find(x)  # offset: never equal to a component number
    _, labels = np.unique(roots, return_inverse=True)
    first = np.full(labels.max() + 1, n)
    np.minimum.at(first, labels, np.arange(n))
    return np.argsort(np.argsort(first))[labels]  # renumber in order of first member


def dedupe_patches(patches: gpd.GeoDataFrame, *, min_overlap_ratio: float = 0.5,
                   source_order: tuple[str, ...] | list[str] = (), geometry: str = "union",
                   site_min_shared_edge_m: float = 1.0, site_link_min_overlap_m2: float = 1.0,
                   ) -> tuple[gpd.GeoDataFrame, DedupeReport]:
    """Merge the rows describing the same ground change (see the module docstring for the rule).

    ``patches``: JCBH, geometry; optional derived (bool: a survey piece unit), SOURCE, ROUND, HSX, QSX, XZQDM,
    TBLX, SQJCBH (the 监测编号 a patch re-issues). Returns (one row per ground change, report); columns
    RECORD_COLUMNS + geometry.
    """
    n = len(patches)
    crs = patches.crs
    if geometry not in GEOMETRY_RULES:
        raise ValueError(f"dedupe geometry {geometry!r}: use one of {GEOMETRY_RULES}")
    if n == 0:
        empty = gpd.GeoDataFrame({c: [] for c in RECORD_COLUMNS}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
        return empty, DedupeReport(0, 0)
    if "JCBH" not in patches.columns:
        raise FieldError("patches lack the JCBH column (监测编号); map the monitoring layer's id to JCBH")
    geoms = np.asarray(patches.geometry.values)
    jcbh = as_text(patches["JCBH"])

    def col(name):
        return as_text(patches[name]) if name in patches.columns else np.array([""] * n, dtype=object)

    source, rnd, xzqdm, tblx = col("SOURCE"), col("ROUND"), col("XZQDM"), col("TBLX")
    hsx_text, qsx_text = col("HSX"), col("QSX")
    derived = (patches["derived"].fillna(False).to_numpy(dtype=bool) if "derived" in patches.columns
               else np.zeros(n, dtype=bool))
    # numpy datetimes (NaT = unknown; '2024-05' reads as 2024-05-01): per-cluster pandas indexing would dominate
    hsx = parse_dates(hsx_text).to_numpy(dtype="datetime64[s]")
    qsx = parse_dates(qsx_text).to_numpy(dtype="datetime64[s]")
    rank = {s: k for k, s in enumerate(source_order)}
    far = np.datetime64("9999-12-31", "s")
    hsx_key = np.where(np.isnat(hsx), far, hsx)
    areas = shapely.area(geoms)

    # 1. matches: issued–issued and issued–piece (pieces of one survey never overlap each other)
    i, j, inter, ratio = _intersecting_pairs(geoms)
    match = (inter > 0) & (ratio >= min_overlap_ratio - _TOL) & ~(derived[i] & derived[j])
    issued_pair = ~derived[i] & ~derived[j] & (inter >= site_link_min_overlap_m2 - _TOL)
    overlapping = set(zip(i[issued_pair].tolist(), j[issued_pair].tolist()))
    # 2. sites: adjacency of piece units
    pieces = np.flatnonzero(derived)
    si, sj, length = shared_edges(geoms[pieces], site_min_shared_edge_m)
    si, sj = pieces[si], pieces[sj]
    # explicit re-issue links (上期监测编号): strength 2, above every overlap ratio
    earlier = col("SQJCBH")
    row_of: dict[str, int] = {}
    for k in np.flatnonzero(~derived).tolist():
        row_of.setdefault(jcbh[k], k)
    link_pairs = sorted({(min(k, row_of[e]), max(k, row_of[e])) for k in range(n)
                         if not derived[k] and (e := earlier[k]) and e in row_of and row_of[e] != k})
    li = np.array([a for a, _ in link_pairs], dtype=int)
    lj = np.array([b for _, b in link_pairs], dtype=int)
    mi = np.concatenate([li, i[match]])
    mj = np.concatenate([lj, j[match]])
    mr = np.concatenate([np.full(len(li), 2.0), ratio[match]])
    keys = [(source[k], rnd[k]) if not derived[k] and source[k] and rnd[k] else None for k in range(n)]

    def linkable(step: int, a: list[int], b: list[int]) -> bool:
        if step == 0:
            return True
        ia = [x for x in a if not derived[x]]
        ib = [x for x in b if not derived[x]]
        if not ia or not ib:
            return True
        return any((min(p, q), max(p, q)) in overlapping for p in ia for q in ib)

    labels = cluster(n, [(mi, mj, mr), (si, sj, length)], keys, linkable=linkable, constrained=~derived)

    issue_key = [(hsx_key[k], natural_key(rnd[k]), rank.get(source[k], len(rank)), natural_key(jcbh[k]))
                 for k in range(n)]
    rows, groups = [], []
    members_of: dict[int, list[int]] = {}
    for k, label in enumerate(labels.tolist()):
        members_of.setdefault(label, []).append(k)
    for members in members_of.values():
        issued = sorted((k for k in members if not derived[k]), key=lambda k: issue_key[k])
        units = sorted((k for k in members if derived[k]), key=lambda k: natural_key(jcbh[k]))
        rep: int = issued[0] if issued else min(units, key=lambda k: (-round(float(areas[k]), 6),
                                                                       natural_key(jcbh[k])))
        ordered = issued + units
        src = sorted({source[k] for k in members if source[k]}, key=lambda s: (rank.get(s, len(rank)), s))
        rounds = sorted({rnd[k] for k in members if rnd[k]}, key=natural_key)
        ids = [jcbh[k] for k in ordered]
        if len(members) == 1 or geometry == "representative":
            geom = geoms[rep]
        elif geometry == "latest" and issued:
            geom = geoms[issued[-1]]
        else:
            geom = shapely.union_all(geoms[members])
        if len(members) > 1:
            groups.append(ids)
        first_hsx = min(members, key=lambda k: (hsx_key[k], issue_key[k]))
        first_qsx = [k for k in members if not np.isnat(qsx[k])]
        rows.append({
            "JCBH": jcbh[rep],
            "source_ids": json_list(ids),
            "sources": json_list(src),
            "rounds": json_list(rounds),
            "n_sources": len(src),
            "n_members": len(members),
            "n_pieces": len(units),
            "SOURCE": source[rep],
            "ROUND": rnd[rep],
            "HSX": hsx_text[first_hsx] or None if not np.isnat(hsx[first_hsx]) else None,
            "QSX": qsx_text[min(first_qsx, key=lambda k: qsx[k])] if first_qsx else None,
            "XZQDM": xzqdm[rep],
            "TBLX": tblx[rep] or next((tblx[k] for k in ordered if tblx[k]), ""),
            "geometry": geom,
        })
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs)
    return out, DedupeReport(n_input=n, n_output=len(out), groups=groups, n_pieces=int(derived.sum()))


def merged_groups(flagged: pd.DataFrame) -> list[list[str]]:
    """The source_ids lists of records that merged more than one patch (for reports)."""
    return [ids for ids in (json.loads(s) for s in flagged["source_ids"]) if len(ids) > 1]

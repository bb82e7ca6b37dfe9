"""Deduplication of monitoring patches: one ground change, one record.

The same ground change is issued again in later rounds and by other sources (satellite, camera, drone, the
survey's own change patches) under different ids. Patches are matched by geometry, never by id:

    overlap ratio(A, B) = area(A ∩ B) ÷ min(area A, area B)

A and B *match* when the ratio ≥ dedupe.min_overlap_ratio (default 0.5). Patches that merely touch (ratio 0)
or overlap by a sliver never match.

Clustering is transitive but safe. Matches are taken in order of decreasing ratio, and each joins the two
clusters (A~B and B~C put A, B, C together even if A and C do not overlap: B, reported by a source as one
change, spans both) — unless the two clusters already hold patches of the same source in the same round. One
source issues a ground change once per round, so two patches of one (SOURCE, ROUND) are two changes: a large
patch of another source covering both joins the one it overlaps most and the two never merge. (Patches with an
empty SOURCE or ROUND are not constrained.)

The merged record:
- JCBH: the representative = the earliest issued member: earliest 后时相 HSX, then the natural order of ROUND,
  then dedupe.source_order, then JCBH (change patches derived from the survey carry HSX = 12-31 of the DLTB
  year, so an in-year monitoring round comes first);
- source_ids / sources / rounds: every member's JCBH (in issue order), the distinct sources (in source_order),
  the distinct rounds (natural order); n_sources = number of distinct sources; n_members = patches merged;
- geometry (dedupe.geometry): ``union`` (default) = the union of the members, the full extent any source
  reported — never loses reported ground; ``representative`` = the representative's own outline; ``latest`` =
  the outline of the latest issued member (the most recent observation);
- HSX / QSX: the earliest 后时相 / 前时相 (when the change was first seen).

The ratio uses planar areas in the store's Gauss-Krüger CRS: a ratio of two areas of the same place, equal to
1e-9 with ellipsoidal areas. A ratio within 1e-9 below the threshold counts as reaching it, so a planted
boundary case of exactly 0.5 is not decided by floating-point noise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.errors import FieldError

from .judge import as_text, json_list, parse_dates

_TOL = 1e-9


@dataclass
class DedupeReport:
    n_input: int
    n_output: int
    groups: list[list[str]] = field(default_factory=list)  # JCBH lists of merged clusters (size ≥ 2)

    @property
    def n_merged(self) -> int:
        """Input patches absorbed into another record (n_input − n_output)."""
        return self.n_input - self.n_output

    def to_dict(self) -> dict:
        return {"n_input": self.n_input, "n_output": self.n_output, "n_merged": self.n_merged,
                "groups": self.groups}


def natural_key(text: str) -> tuple:
    """Sort key comparing digit runs as numbers: '2024-2' < '2024-10'; '' sorts last."""
    if not text:
        return ((2, ""),)
    parts = re.split(r"(\d+)", text)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts if p != "")


def overlap_pairs(geoms: np.ndarray, min_ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) whose overlap ratio reaches ``min_ratio``; returns (i, j, ratio)."""
    if len(geoms) < 2:
        empty = np.array([], dtype=int)
        return empty, empty, np.array([])
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms, predicate="intersects")
    keep = i < j
    i, j = i[keep], j[keep]
    areas = shapely.area(geoms)
    inter = shapely.area(shapely.intersection(geoms[i], geoms[j]))
    smaller = np.minimum(areas[i], areas[j])
    ratio = np.divide(inter, smaller, out=np.zeros(len(i)), where=smaller > 0)
    ok = (inter > 0) & (ratio >= min_ratio - _TOL)
    return i[ok], j[ok], ratio[ok]


def cluster(n: int, i: np.ndarray, j: np.ndarray, ratio: np.ndarray, keys: list) -> np.ndarray:
    """Cluster label (0..k-1, in order of first member) of each of n patches, joining matched pairs in order
    of decreasing ratio unless the two clusters share a (source, round) key (None keys never clash)."""
    parent = list(range(n))
    members_keys = [({keys[k]} if keys[k] is not None else set()) for k in range(n)]

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    order = np.lexsort((j, i, -ratio))  # highest ratio first; ties in index order (deterministic)
    for a, b in zip(i[order].tolist(), j[order].tolist()):
        ra, rb = find(a), find(b)
        if ra == rb or members_keys[ra] & members_keys[rb]:
            continue
        keep, gone = min(ra, rb), max(ra, rb)
        parent[gone] = keep
        members_keys[keep] |= members_keys[gone]
        members_keys[gone] = set()
    roots = np.array([find(x) for x in range(n)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels


GEOMETRY_RULES = ("union", "representative", "latest")


def dedupe_patches(patches: gpd.GeoDataFrame, *, min_overlap_ratio: float = 0.5,
                   source_order: tuple[str, ...] | list[str] = (), geometry: str = "union",
                   ) -> tuple[gpd.GeoDataFrame, DedupeReport]:
    """Merge patches describing the same ground change. See the module docstring for the rule.

    ``patches``: JCBH, geometry; optional SOURCE, ROUND, HSX, QSX, XZQDM, TBLX.
    Returns (one row per ground change, report). Output columns: JCBH, source_ids, sources, rounds,
    n_sources, n_members, SOURCE, ROUND, HSX, QSX, XZQDM, TBLX, geometry (the union).
    """
    n = len(patches)
    crs = patches.crs
    geoms = np.asarray(patches.geometry.values)
    if "JCBH" not in patches.columns and n:
        raise FieldError("patches lack the JCBH column (监测编号); map the monitoring layer's id to JCBH")
    jcbh = as_text(patches["JCBH"]) if n else np.array([], dtype=object)
    col = lambda name: as_text(patches[name]) if name in patches.columns else np.array([""] * n,  # noqa: E731
                                                                                                      dtype=object)
    source, rnd, xzqdm, tblx = col("SOURCE"), col("ROUND"), col("XZQDM"), col("TBLX")
    # numpy datetime arrays (NaT = unknown): per-cluster pandas indexing would dominate the run time
    hsx = parse_dates(patches["HSX"].to_numpy() if "HSX" in patches.columns else [None] * n
                      ).to_numpy(dtype="datetime64[s]")
    qsx = parse_dates(patches["QSX"].to_numpy() if "QSX" in patches.columns else [None] * n
                      ).to_numpy(dtype="datetime64[s]")

    if geometry not in GEOMETRY_RULES:
        raise ValueError(f"dedupe geometry {geometry!r}: use one of {GEOMETRY_RULES}")
    rank = {s: k for k, s in enumerate(source_order)}
    far = np.datetime64("9999-12-31", "s")
    hsx_key = np.where(np.isnat(hsx), far, hsx)
    order_key = [(hsx_key[k], natural_key(rnd[k]), rank.get(source[k], len(rank)), natural_key(jcbh[k]))
                 for k in range(n)]
    i, j, ratio = overlap_pairs(geoms, min_overlap_ratio)
    keys = [(source[k], rnd[k]) if source[k] and rnd[k] else None for k in range(n)]
    labels = cluster(n, i, j, ratio, keys) if n else np.array([], dtype=int)

    rows = []
    groups = []
    members_of: dict[int, list[int]] = {}
    for k, label in enumerate(labels.tolist()):
        members_of.setdefault(label, []).append(k)
    for members in members_of.values():
        members = sorted(members, key=lambda k: order_key[k])
        rep = members[0]
        src = sorted({source[k] for k in members if source[k]}, key=lambda s: (rank.get(s, len(rank)), s))
        rounds = sorted({rnd[k] for k in members if rnd[k]}, key=natural_key)
        ids = [jcbh[k] for k in members]
        if len(members) == 1 or geometry == "representative":
            geom = geoms[rep]
        elif geometry == "latest":
            geom = geoms[members[-1]]
        else:
            geom = shapely.union_all(geoms[members])
        if len(members) > 1:
            groups.append(ids)
        m_hsx = hsx[members][~np.isnat(hsx[members])]
        m_qsx = qsx[members][~np.isnat(qsx[members])]
        rows.append({
            "JCBH": jcbh[rep],
            "source_ids": json_list(ids),
            "sources": json_list(src),
            "rounds": json_list(rounds),
            "n_sources": len(src),
            "n_members": len(members),
            "SOURCE": source[rep],
            "ROUND": rnd[rep],
            "HSX": str(m_hsx.min().astype("datetime64[D]")) if len(m_hsx) else None,
            "QSX": str(m_qsx.min().astype("datetime64[D]")) if len(m_qsx) else None,
            "XZQDM": xzqdm[rep],
            "TBLX": tblx[rep],
            "geometry": geom,
        })
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=crs) if rows else gpd.GeoDataFrame(
        {c: [] for c in ["JCBH", "source_ids", "sources", "rounds", "n_sources", "n_members", "SOURCE", "ROUND",
                         "HSX", "QSX", "XZQDM", "TBLX"]}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    return out, DedupeReport(n_input=n, n_output=len(out), groups=groups)


def merged_groups(flagged: pd.DataFrame) -> list[list[str]]:
    """The source_ids lists of records that merged more than one patch (for reports)."""
    return [ids for ids in (json.loads(s) for s in flagged["source_ids"]) if len(ids) > 1]

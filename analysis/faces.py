"""A layer whose polygons overlap, cut into disjoint faces: each place counted once.

Control-line layers are drawn by hand and exported by province tools; two YJJBNT or CZKFBJ polygons sometimes
overlap (a polygon drawn twice, a boundary adjusted in one copy only). Every pair overlay would then count the
shared part once per polygon — 红线 × 开发边界 twice over. ``disjoint_faces`` cuts the overlapping polygons
along each other's boundaries: each face lies under a fixed set of polygons, and carries all their ids. Polygons
that overlap nothing are their own face, unchanged (the usual case costs one spatial self-join). The overlap
itself is reported at ingest (layers.topology, check ``self_overlap``).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from layers.topology import overlapping_pairs


def disjoint_faces(gdf: gpd.GeoDataFrame, ids: np.ndarray) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """(faces, ids per face): faces is a GeoDataFrame (the rows of ``gdf`` that overlap nothing, then one row per
    face of each overlapping group); ids per face is an object array of lists of ``ids``."""
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    n = len(geoms)
    single = np.empty(n, dtype=object)
    for k in range(n):
        single[k] = [ids[k]]
    if n < 2:
        return gdf, single
    i, j = overlapping_pairs(geoms)
    if len(i) == 0:
        return gdf, single
    involved = np.unique(np.r_[i, j])
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    faces, face_ids = [], []
    for g in np.unique(group[involved]):
        rows = np.flatnonzero(group == g)
        noded = shapely.union_all(shapely.boundary(geoms[rows]))  # noding: every crossing becomes a vertex
        cells = np.asarray(shapely.get_parts(shapely.polygonize(shapely.get_parts(noded))), dtype=object)
        points = shapely.point_on_surface(cells)
        cover = [rows[shapely.covers(geoms[rows], pt)]
                 for pt in points]
        by_set: dict[tuple, list] = {}
        for cell, members in zip(cells, cover):
            if len(members):
                by_set.setdefault(tuple(sorted(members.tolist())), []).append(cell)
        for members, parts in by_set.items():
            faces.append(parts[0] if len(parts) == 1 else shapely.union_all(parts))
            face_ids.append(sorted({str(ids[m]) for m in members}))
    keep = np.setdiff1d(np.arange(n), involved)
    out_geoms = np.concatenate([geoms[keep], np.array(faces, dtype=object)])
    out_ids = np.empty(len(out_geoms), dtype=object)
    for k, x in enumerate(list(single[keep]) + face_ids):
        out_ids[k] = x
    out = gpd.GeoDataFrame({"_face": np.arange(len(out_geoms))}, geometry=gpd.GeoSeries(out_geoms, crs=gdf.crs),
                           crs=gdf.crs)
    return out, out_ids

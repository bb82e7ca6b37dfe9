"""Geometry checks, vectorised over the whole layer (shapely 2 array API).

Polygon roles keep (multi)polygons only:
- missing / empty geometries are dropped (counted, ids listed);
- a few stray non-polygon features (points, lines) in a polygon layer are dropped and listed; a layer
  that is mostly not polygonal is refused (GeometryError) — it is the wrong file;
- geometry collections keep their polygonal parts;
- invalid polygons (self-intersections, bow-ties, ring errors) are repaired with
  ``shapely.make_valid(method="structure", keep_collapsed=False)``, which rebuilds the area a ring encloses
  and returns polygonal parts only; a polygon that collapses to nothing is dropped; each repair is counted
  and listed with the GEOS reason;
- exact duplicate geometries (equal after normalising vertex order) are reported and kept.
Point roles keep points: single-part multipoints become points; other types are refused.
Z / M values are dropped (analysis is 2-D).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import shapely

from .errors import GeometryError
from .fields import POINT_ROLES
from .records import INFO, WARNING, Finding

POLYGON, MULTIPOLYGON, POINT, MULTIPOINT, COLLECTION = 3, 6, 0, 4, 7
TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
              6: "MultiPolygon", 7: "GeometryCollection"}
CHUNK = 50_000
_EMPTY = shapely.from_wkt("POLYGON EMPTY")


@dataclass
class CleanResult:
    geoms: np.ndarray  # cleaned geometries of the kept rows
    keep: np.ndarray  # boolean mask over the input rows
    repaired: int = 0
    dropped_empty: int = 0
    duplicates: int = 0
    findings: list[Finding] = field(default_factory=list)


def chunked(func, geoms: np.ndarray, progress: bool, desc: str, dtype=object) -> np.ndarray:
    """func over the geometries, in chunks with a tqdm bar when asked for and the array is large."""
    if not progress or len(geoms) <= CHUNK:
        return func(geoms)
    from tqdm.auto import tqdm

    out = np.empty(len(geoms), dtype=dtype)
    with tqdm(total=len(geoms), desc=desc, unit="geoms") as bar:
        for start in range(0, len(geoms), CHUNK):
            out[start:start + CHUNK] = func(geoms[start:start + CHUNK])
            bar.update(min(CHUNK, len(geoms) - start))
    return out


def _polygonal_parts(geoms: np.ndarray) -> np.ndarray:
    """Keep only the polygonal parts of each geometry collection (from make_valid or from the source)."""
    out = geoms.copy()
    collection = shapely.get_type_id(geoms) == COLLECTION
    if not collection.any():
        return out
    idx = np.flatnonzero(collection)
    parts, owner = shapely.get_parts(geoms[idx], return_index=True)
    polygonal = np.isin(shapely.get_type_id(parts), (POLYGON, MULTIPOLYGON))
    flat, sub = shapely.get_parts(parts[polygonal], return_index=True)  # multipolygons → polygons
    result = np.full(len(idx), None, dtype=object)
    if len(flat):
        shapely.multipolygons(flat, indices=owner[polygonal][sub], out=result)
    result[shapely.is_missing(result)] = _EMPTY
    single = shapely.get_num_geometries(result) == 1
    result[single] = shapely.get_geometry(result[single], 0)
    out[idx] = result
    return out


def _repair(geoms: np.ndarray) -> np.ndarray:
    fixed = shapely.make_valid(geoms, method="structure", keep_collapsed=False)
    return _polygonal_parts(fixed)


def clean_geometries(geoms: np.ndarray, role: str, ids: np.ndarray, where: str,
                     progress: bool = False) -> CleanResult:
    """Check and repair a layer's geometries; see the module docstring for the rules."""
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    findings: list[Finding] = []
    if n and shapely.has_z(geoms).any():
        geoms = shapely.force_2d(geoms)
        findings.append(Finding(layer=role, check="z_dropped", severity=INFO, count=n,
                                message="Z values dropped: analysis is two-dimensional"))
    source_empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    type_id = np.where(source_empty, -1, shapely.get_type_id(geoms))
    keep = ~source_empty
    repaired = collapsed_count = 0
    if role in POINT_ROLES:
        single_multi = (type_id == MULTIPOINT) & (shapely.get_num_geometries(geoms) == 1)
        geoms = geoms.copy()
        geoms[single_multi] = shapely.get_geometry(geoms[single_multi], 0)
        type_id[single_multi] = POINT
        wrong = keep & (type_id != POINT)
        if wrong.any():
            kinds = Counter(TYPE_NAMES[t] for t in shapely.get_type_id(geoms[wrong]).tolist())
            raise GeometryError(f"{where}: {int(wrong.sum())} feature(s) are not points "
                                f"({', '.join(f'{k} ×{v}' for k, v in kinds.items())}; "
                                f"e.g. {ids[wrong][:5].tolist()}); a point layer is required — give one point "
                                "per camera")
    else:
        polygonal = np.isin(type_id, (POLYGON, MULTIPOLYGON, COLLECTION))
        wrong = keep & ~polygonal
        if wrong.any():
            names = sorted({TYPE_NAMES[t] for t in shapely.get_type_id(geoms[wrong]).tolist()})
            if wrong.sum() * 2 > keep.sum():
                raise GeometryError(f"{where}: {int(wrong.sum())} of {int(keep.sum())} features are not polygons "
                                    f"({', '.join(names)}; e.g. {ids[wrong][:5].tolist()}); "
                                    "this role needs a polygon layer — check the file")
            findings.append(Finding(layer=role, check="not_polygon", severity=WARNING, ids=ids[wrong].tolist(),
                                    count=int(wrong.sum()),
                                    message=f"{int(wrong.sum())} non-polygon feature(s) ({', '.join(names)}) dropped"))
            keep &= ~wrong
        collection = keep & (type_id == COLLECTION)
        if collection.any():
            geoms = geoms.copy()
            geoms[collection] = _polygonal_parts(geoms[collection])
        invalid = np.zeros(n, dtype=bool)
        invalid[keep] = ~shapely.is_valid(geoms[keep])
        if invalid.any():
            reasons = shapely.is_valid_reason(geoms[invalid])
            kinds = Counter(str(r).split("[")[0] for r in reasons)
            geoms = geoms.copy()
            geoms[invalid] = chunked(_repair, geoms[invalid], progress, f"repair {role}")
            repaired = int(invalid.sum())
            findings.append(Finding(
                layer=role, check="invalid_geometry_repaired", severity=WARNING, ids=ids[invalid].tolist(),
                count=repaired,
                message=f"{repaired} invalid polygon(s) repaired with make_valid (structure): "
                        + ", ".join(f"{k} ×{v}" for k, v in kinds.most_common())))
        collapsed = keep & shapely.is_empty(geoms)
        if collapsed.any():
            findings.append(Finding(layer=role, check="collapsed_on_repair", severity=WARNING,
                                    ids=ids[collapsed].tolist(), count=int(collapsed.sum()),
                                    message=f"{int(collapsed.sum())} polygon(s) enclose no area after repair; "
                                            "dropped"))
            keep &= ~collapsed
            collapsed_count = int(collapsed.sum())
    if source_empty.any():
        findings.append(Finding(layer=role, check="empty_geometry", severity=WARNING,
                                ids=ids[source_empty].tolist(), count=int(source_empty.sum()),
                                message=f"{int(source_empty.sum())} feature(s) without geometry dropped"))
    dropped_empty = int(source_empty.sum()) + collapsed_count
    kept = geoms[keep]
    duplicates = 0
    if len(kept):
        # cheap key first (bounds + vertex count); only rows sharing a key are compared exactly
        b = shapely.bounds(kept)
        key = pd.DataFrame({"x0": b[:, 0], "y0": b[:, 1], "x1": b[:, 2], "y1": b[:, 3],
                            "n": shapely.get_num_coordinates(kept)})
        candidate = np.flatnonzero(key.duplicated(keep=False).to_numpy())
        if len(candidate):
            wkb = pd.Series(shapely.to_wkb(shapely.normalize(kept[candidate])))
            dup_any = wkb.duplicated(keep=False).to_numpy()
            if dup_any.any():
                duplicates = int(wkb.duplicated(keep="first").sum())
                kept_ids = ids[keep][candidate]
                groups = pd.Series(kept_ids[dup_any]).groupby(wkb[dup_any].to_numpy(), sort=False).agg(list).tolist()
                findings.append(Finding(
                    layer=role, check="duplicate_geometry", severity=WARNING, count=duplicates,
                    ids=[i for g in groups for i in g],
                    message=f"{duplicates} feature(s) duplicate the geometry of another ({len(groups)} group(s): "
                            + "; ".join("=".join(map(str, g)) for g in groups[:5])
                            + ("; …" if len(groups) > 5 else "") + "); kept — check them"))
    return CleanResult(geoms=kept, keep=keep, repaired=repaired, dropped_empty=dropped_empty,
                       duplicates=duplicates, findings=findings)

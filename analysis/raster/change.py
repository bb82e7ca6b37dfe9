"""Change candidates from two co-registered multispectral images (前时相 / 后时相).

The steps, each on the full-resolution grid, block by block (an image of any size costs a few blocks of
memory):

1. Relative radiometric normalisation. Each band of the later image is matched to the earlier one by mean and
   standard deviation over pseudo-invariant pixels (iteratively: pixels that changed by more than 3 noise σ
   are left out of the next fit), which removes global exposure, haze and sensor-gain differences. The noise
   level of each band's difference is its MAD × 1.4826 over the invariant pixels, estimated at full
   resolution (a lattice of sample windows on large images).
2. Change measure, in noise standard deviations: ``cva`` — the change-vector magnitude √(mean_b d_b²) of the
   normalised per-band differences d_b; or ``ndvi`` — |ΔNDVI| over its noise level.
3. Threshold: a number from the rules, or Otsu's (1979) threshold on the full-resolution histogram of the
   logarithm of the measure, never below ``threshold_floor``. On the linear scale Otsu is pulled towards the
   huge no-change class (a χ-like bump near 1 σ) and the long, thin tail of real changes (10–30 σ) and sets
   the threshold far too high; on the log scale both classes have comparable spread — the usual remedy.
4. Morphological clean-up: opening (removes specks and strands narrower than 2r + 1 cells: sensor noise,
   mis-registration edges), then closing (fills holes and gaps). Blocks are read with a halo of
   2·(r_open + r_close) cells, so the result equals the whole-image computation.
5. Polygons by rasterio.features.shapes (4-connected regions) in pixel coordinates; pieces cut by block seams
   are merged exactly (integer coordinates), then placed by the image's transform.
6. False-alarm filters, in order, each counting what it removed: ``min_area`` (ellipsoidal area below
   ``min_area_m2``), ``illumination`` (darker, and the mean band vector kept its direction: the spectral angle
   between before and after is below ``illumination_max_angle`` — a cloud or building shadow; a brighter surface
   of the same spectral shape, e.g. new concrete on old, is kept), ``seasonal`` (vegetated at
   both dates: mean NDVI ≥ ``seasonal_min_ndvi`` before and after — crop and phenology differences). The
   speckle removed by step 4 is counted too: connected regions above the threshold that the clean-up erased.

The kept candidates come out in the monitoring layer's schema (JCBH "RS-<round>-0001" …, SOURCE "raster",
ROUND, QSX, HSX, TBLX, MJ) so they can be appended to the monitoring layer, where the analysis dedupes them
against the patches of other sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio.features import rasterize, shapes
from rasterio.windows import Window
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from layers.area import ellipsoidal_area
from layers.errors import CRSError
from layers.fields import AREA, FID, ROUND, SOURCE

from . import morphology
from .blocks import read_with_halo
from .rules import ChangeRules

RASTER_SOURCE = "raster"
FILTERS = ("speckle", "min_area", "illumination", "seasonal")
FILTER_TITLES = {
    "speckle": "形态学去噪 (opening/closing erased the region)",
    "min_area": "面积过小 (below the minimum area)",
    "illumination": "光照/阴影 (spectral shape unchanged)",
    "seasonal": "季节性植被变化 (vegetated at both dates)",
}
_LOG_FLOOR = 1e-3  # the measure's histogram is taken of log(max(measure, this))
_SAMPLE_LIMIT = 4_000_000
_FIT_PIXELS = 300_000  # pixels read whole for the statistics; above, a lattice of windows


@dataclass
class Normalisation:
    """after' = (after − mean_after) · scale + mean_before, per band; noise = robust σ of after' − before."""

    median_before: np.ndarray
    median_after: np.ndarray
    scale: np.ndarray
    bias: np.ndarray  # median of after' − before (≈ 0)
    noise: np.ndarray
    ndvi_bias: float
    ndvi_noise: float

    def to_dict(self) -> dict:
        return {k: (v.round(6).tolist() if isinstance(v, np.ndarray) else round(float(v), 6))
                for k, v in self.__dict__.items()}


@dataclass
class ChangeResult:
    candidates: gpd.GeoDataFrame  # kept, monitoring schema + diagnostics
    removed: gpd.GeoDataFrame  # cleaned candidates removed by a filter (column ``filter``)
    counts: dict  # raw_regions, speckle, after_cleanup, min_area, illumination, seasonal, kept
    threshold: float
    otsu_threshold: float | None
    normalisation: Normalisation
    histogram: tuple[np.ndarray, np.ndarray] | None = field(repr=False, default=None)

    def summary(self) -> dict:
        return {"threshold": round(self.threshold, 4),
                "otsu_threshold": None if self.otsu_threshold is None else round(self.otsu_threshold, 4),
                "counts": self.counts, "normalisation": self.normalisation.to_dict()}


# --- measure ---------------------------------------------------------------------------------------------

def _band_order(rules: ChangeRules) -> list[int]:
    b = rules.bands
    return [b["blue"], b["green"], b["red"], b["nir"]]


def _ndvi(stack: np.ndarray) -> np.ndarray:
    red, nir = stack[2], stack[3]
    den = nir + red
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (nir - red) / den, 0.0)


def _sample_windows(grid, side: int = 512, n: int = 16) -> list[Window]:
    if grid.width * grid.height <= _SAMPLE_LIMIT:
        return [Window(0, 0, grid.width, grid.height)]
    k = int(np.ceil(np.sqrt(n)))
    out = []
    for i in range(k):
        for j in range(k):
            r = int((i + 0.5) * grid.height / k - side / 2)
            c = int((j + 0.5) * grid.width / k - side / 2)
            r, c = min(max(r, 0), grid.height - side), min(max(c, 0), grid.width - side)
            out.append(Window(c, r, min(side, grid.width), min(side, grid.height)))
    return out


def _iqr(x: np.ndarray) -> float:
    q1, q3 = np.percentile(x, [25, 75])
    return float(q3 - q1)


def fit_normalisation(before, after, rules: ChangeRules, iterations: int = 3) -> Normalisation:
    """Relative radiometric normalisation of ``after`` to ``before`` on pseudo-invariant pixels.

    Per band, mean / standard-deviation matching (after' = (after − μa)·σb/σa + μb); then the pixels whose
    change measure exceeds 3 noise σ are dropped and the fit repeated (``iterations`` times), so the few per
    cent of pixels that really changed do not bend it. The noise level of each band is 1.4826 × the median
    absolute deviation of after' − before over the invariant pixels."""
    bands = _band_order(rules)
    bs, as_ = [], []
    for win in _sample_windows(before.grid):
        b = before.read(win, indexes=bands)
        a = after.read(win, indexes=bands)
        ok = np.isfinite(b).all(axis=0) & np.isfinite(a).all(axis=0)
        bs.append(b[:, ok])
        as_.append(a[:, ok])
    b = np.concatenate(bs, axis=1)
    a = np.concatenate(as_, axis=1)
    if b.shape[1] < 100:
        raise ValueError("the two images share fewer than 100 valid pixels; they do not overlap")
    if b.shape[1] > _FIT_PIXELS:  # a regular subsample is plenty for five numbers per band
        step = int(np.ceil(b.shape[1] / _FIT_PIXELS))
        b, a = b[:, ::step], a[:, ::step]
    keep = np.ones(b.shape[1], bool)
    norm = None
    for _ in range(max(iterations, 1)):
        bk, ak = b[:, keep], a[:, keep]
        mb, ma = bk.mean(axis=1), ak.mean(axis=1)
        sb, sa = bk.std(axis=1), ak.std(axis=1)
        scale = np.divide(sb, sa, out=np.ones(4), where=sa > 0)
        diff = (a - ma[:, None]) * scale[:, None] + mb[:, None] - b
        dk = diff[:, keep]
        bias = np.median(dk, axis=1)
        noise = 1.4826 * np.median(np.abs(dk - bias[:, None]), axis=1)
        noise = np.where(noise > 0, noise, 1.0)
        dn = _ndvi(ak * scale[:, None] + (mb - ma * scale)[:, None]) - _ndvi(bk)
        ndvi_bias = float(np.median(dn))
        ndvi_noise = float(1.4826 * np.median(np.abs(dn - ndvi_bias))) or 1.0
        norm = Normalisation(mb, ma, scale, bias, noise, ndvi_bias, ndvi_noise)
        d = (diff - bias[:, None]) / noise[:, None]
        keep = np.sqrt((d * d).mean(axis=0)) < 3.0
    assert norm is not None  # the loop runs at least once
    return norm


def normalise_after(after_stack: np.ndarray, norm: Normalisation) -> np.ndarray:
    return (after_stack - norm.median_after[:, None, None]) * norm.scale[:, None, None] \
        + norm.median_before[:, None, None]


def change_measure(before_stack: np.ndarray, after_stack: np.ndarray, norm: Normalisation,
                   measure: str = "cva") -> np.ndarray:
    """The change measure (noise σ units) of two (4, rows, cols) stacks ordered blue, green, red, nir; NaN where
    either image has no data."""
    a_n = normalise_after(after_stack, norm)
    if measure == "ndvi":
        m = np.abs(_ndvi(a_n) - _ndvi(before_stack) - norm.ndvi_bias) / norm.ndvi_noise
    else:
        d = (a_n - before_stack - norm.bias[:, None, None]) / norm.noise[:, None, None]
        m = np.sqrt((d * d).mean(axis=0))
    bad = ~(np.isfinite(before_stack).all(axis=0) & np.isfinite(after_stack).all(axis=0))
    m[bad] = np.nan
    return m


def otsu_threshold(counts: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold: the bin edge maximising the between-class variance of a histogram (in the histogram's
    own units)."""
    counts = np.asarray(counts, dtype="float64")
    centres = (edges[:-1] + edges[1:]) / 2
    total = counts.sum()
    if total == 0:
        raise ValueError("empty histogram: the images have no valid pixel in common")
    w0 = np.cumsum(counts)
    w1 = total - w0
    s0 = np.cumsum(counts * centres)
    mu0 = np.divide(s0, w0, out=np.zeros_like(s0), where=w0 > 0)
    mu1 = np.divide(s0[-1] - s0, w1, out=np.zeros_like(s0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    k = int(np.argmax(between[:-1]))
    return float(edges[k + 1])


# --- polygons --------------------------------------------------------------------------------------------

def _polygons_px(mask: np.ndarray, row_off: int, col_off: int) -> list:
    """4-connected regions of ``mask`` as polygons in whole-image pixel coordinates (x = col, y = row)."""
    if not mask.any():
        return []
    out = []
    for geom, _ in shapes(mask.astype("uint8"), mask=mask, connectivity=4, transform=Affine.identity()):
        poly = shapely.geometry.shape(geom)
        out.append(shapely.transform(poly, lambda xy: xy + np.array([col_off, row_off], dtype="float64")))
    return out


def _merge_seams(pieces: list, seams_x: set, seams_y: set) -> list:
    """Union pieces that share an edge across block seams (pixel coordinates, exact)."""
    if not pieces or (not seams_x and not seams_y):
        return pieces
    geoms = np.array(pieces, dtype=object)
    b = shapely.bounds(geoms)
    on_seam = np.zeros(len(geoms), bool)
    for x in seams_x:
        on_seam |= (b[:, 0] == x) | (b[:, 2] == x)
    for y in seams_y:
        on_seam |= (b[:, 1] == y) | (b[:, 3] == y)
    idx = np.nonzero(on_seam)[0]
    if len(idx) < 2:
        return pieces
    sub = geoms[idx]
    tree = shapely.STRtree(sub)
    left, right = tree.query(sub, predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    shared = shapely.length(shapely.intersection(sub[left], sub[right])) > 0
    n = len(sub)
    graph = coo_matrix((np.ones(int(shared.sum())), (left[shared], right[shared])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # groups in the order of their first piece, pieces in their own order
    _, first = np.unique(labels, return_index=True)
    merged = []
    for label in labels[np.sort(first)]:
        group = sub[labels == label]
        merged.append(group[0] if len(group) == 1 else shapely.union_all(group))
    rest = [geoms[i] for i in range(len(geoms)) if not on_seam[i]]
    return rest + merged


def _to_map(geoms, transform: Affine) -> np.ndarray:
    t = transform
    return shapely.transform(np.asarray(geoms, dtype=object),
                             lambda xy: np.column_stack([t.c + t.a * xy[:, 0] + t.b * xy[:, 1],
                                                         t.f + t.d * xy[:, 0] + t.e * xy[:, 1]]))


def _region_means(before, after, polys_px, norm: Normalisation, rules: ChangeRules, measure_fn):
    """Mean before / normalised-after band vectors and mean measure over each pixel-aligned polygon."""
    bands = _band_order(rules)
    rows = []
    for poly in polys_px:
        x0, y0, x1, y1 = (int(round(v)) for v in poly.bounds)
        win = Window(x0, y0, x1 - x0, y1 - y0)
        m = rasterize([(poly, 1)], out_shape=(y1 - y0, x1 - x0), transform=Affine.translation(x0, y0),
                      fill=0, dtype="uint8").astype(bool)
        b = before.read(win, indexes=bands)
        a = after.read(win, indexes=bands)
        ok = m & np.isfinite(b).all(axis=0) & np.isfinite(a).all(axis=0)
        a_n = normalise_after(a, norm)
        mb = b[:, ok].mean(axis=1)
        ma = a_n[:, ok].mean(axis=1)
        score = measure_fn(b[:, ok][:, :, None], a[:, ok][:, :, None]).mean()
        rows.append((mb, ma, score))
    return rows


def _spectral_angle(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 90.0
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))))


def _ndvi_of(vec: np.ndarray) -> float:
    den = vec[3] + vec[2]
    return float((vec[3] - vec[2]) / den) if den > 0 else 0.0


# --- the detector ----------------------------------------------------------------------------------------

def check_same_grid(before, after) -> None:
    gb, ga = before.grid, after.grid
    if not gb.crs.equals(ga.crs) or gb.shape != ga.shape or not gb.transform.almost_equals(ga.transform, 1e-9):
        raise CRSError(f"change detection needs co-registered images on one grid; before is {gb.shape} at "
                       f"{tuple(gb.transform)[:6]} in {gb.crs.name!r}, after {ga.shape} at {tuple(ga.transform)[:6]} "
                       f"in {ga.crs.name!r}: open the later image on the earlier image's grid")


def detect_changes(before, after, rules: ChangeRules | None = None, *, round_: str | None = None,
                   qsx: str | None = None, hsx: str | None = None, block: int | None = None) -> ChangeResult:
    """Change candidates between ``before`` and ``after`` (layers.raster sources on the same grid in a CGCS2000
    Gauss-Krüger zone). Returns kept candidates in the monitoring schema, the removed ones, and the counts."""
    rules = rules or ChangeRules()
    check_same_grid(before, after)
    grid = before.grid
    if not grid.crs.is_projected:
        raise CRSError("change detection runs on the store's projected grid; open the images in the store CRS")
    block = block or rules.block
    bands = _band_order(rules)
    norm = fit_normalisation(before, after, rules)

    def measure_fn(b, a):
        return change_measure(b, a, norm, rules.measure)

    # pass 1: full-resolution histogram of the measure
    parts = [measure_fn(before.read(w, indexes=bands), after.read(w, indexes=bands))
             for w in _sample_windows(grid)]
    sample = np.concatenate([s[np.isfinite(s)] for s in parts])
    top = max(float(np.quantile(sample, 0.9999)) * 1.5, 4.0 * rules.threshold_floor, 1.0)
    edges = np.linspace(np.log(_LOG_FLOOR), np.log(top), rules.histogram_bins + 1)
    counts = np.zeros(rules.histogram_bins, dtype="int64")
    if rules.threshold == "otsu":
        for win in grid.iter_windows(block):
            m = measure_fn(before.read(win, indexes=bands), after.read(win, indexes=bands))
            m = np.log(np.clip(m[np.isfinite(m)], _LOG_FLOOR, top))
            counts += np.histogram(m, bins=edges)[0]
        otsu = float(np.exp(otsu_threshold(counts, edges)))
        threshold = max(otsu, rules.threshold_floor)
    else:
        otsu = None
        threshold = float(rules.threshold)

    # pass 2: threshold, clean, polygonise per block with a halo
    halo = morphology.halo(rules.opening_radius, rules.closing_radius)
    raw_pieces, clean_pieces = [], []
    seams_x, seams_y = set(), set()
    for win in grid.iter_windows(block):
        r0, c0, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
        if c0 > 0:
            seams_x.add(float(c0))
        if r0 > 0:
            seams_y.add(float(r0))
        b = read_with_halo(before, win, halo, bands)
        a = read_with_halo(after, win, halo, bands)
        m = measure_fn(b, a)
        valid = np.isfinite(m)
        mask = valid & (np.nan_to_num(m, nan=0.0) > threshold)
        cleaned = morphology.clean(mask, rules.opening_radius, rules.closing_radius) & valid
        core = (slice(halo, halo + h), slice(halo, halo + w))
        raw_pieces += _polygons_px(mask[core], r0, c0)
        clean_pieces += _polygons_px(cleaned[core], r0, c0)
    raw = _merge_seams(raw_pieces, seams_x, seams_y)
    cleaned = _merge_seams(clean_pieces, seams_x, seams_y)

    # speckle: raw regions with no cell left after the clean-up
    speckle = 0
    if raw:
        if cleaned:
            tree = shapely.STRtree(np.array(cleaned, dtype=object))
            raw_arr = np.array(raw, dtype=object)
            li, ci = tree.query(raw_arr, predicate="intersects")
            inter = shapely.area(shapely.intersection(raw_arr[li], tree.geometries[ci])) > 0
            survived = np.zeros(len(raw), bool)
            survived[li[inter]] = True
            speckle = int((~survived).sum())
        else:
            speckle = len(raw)

    # attributes and filters
    crs = grid.crs
    geoms_map = _to_map(cleaned, grid.transform) if cleaned else np.array([], dtype=object)
    area = ellipsoidal_area(geoms_map, crs) if len(geoms_map) else np.array([])
    means = _region_means(before, after, cleaned, norm, rules, measure_fn)
    records = []
    for k in range(len(cleaned)):
        mb, ma, score = means[k]
        nb, na = _ndvi_of(mb), _ndvi_of(ma)
        angle = _spectral_angle(mb, ma)
        if area[k] < rules.min_area_m2:
            reason = "min_area"
        elif angle < rules.illumination_max_angle and ma.sum() < mb.sum():
            reason = "illumination"
        elif nb >= rules.seasonal_min_ndvi and na >= rules.seasonal_min_ndvi:
            reason = "seasonal"
        else:
            reason = None
        records.append({"area": area[k], "change_score": float(score), "ndvi_before": nb, "ndvi_after": na,
                        "spectral_angle": angle, "filter": reason,
                        "TBLX": rules.change_type(na - nb)})
    table = pd.DataFrame.from_records(records, columns=["area", "change_score", "ndvi_before", "ndvi_after",
                                                        "spectral_angle", "filter", "TBLX"])
    gdf = gpd.GeoDataFrame(table, geometry=list(geoms_map), crs=crs)
    n_counts = {"raw_regions": len(raw), "speckle": speckle, "after_cleanup": len(cleaned)}
    for f in FILTERS[1:]:
        n_counts[f] = int((gdf["filter"] == f).sum()) if len(gdf) else 0
    kept = gdf[gdf["filter"].isna()].copy() if len(gdf) else gdf.copy()
    n_counts["kept"] = len(kept)
    removed = gdf[gdf["filter"].notna()].copy() if len(gdf) else gdf.copy()
    candidates = _monitoring_schema(kept, round_=round_, qsx=qsx, hsx=hsx)
    return ChangeResult(candidates, removed.reset_index(drop=True), n_counts, float(threshold), otsu, norm,
                        (counts, edges))


def _monitoring_schema(kept: gpd.GeoDataFrame, *, round_, qsx, hsx) -> gpd.GeoDataFrame:
    """Kept candidates ordered north → south, west → east, numbered RS-<round>-0001 …"""
    round_ = round_ or (str(hsx)[:4] if hsx else RASTER_SOURCE)
    if len(kept):
        c = kept.geometry.representative_point()
        order = np.lexsort((np.round(c.x.to_numpy(), 3), -np.round(c.y.to_numpy(), 3)))
        kept = kept.iloc[order].reset_index(drop=True)
    n = len(kept)
    out = gpd.GeoDataFrame({
        "JCBH": [f"RS-{round_}-{i + 1:04d}" for i in range(n)],
        "QSX": [qsx] * n,
        "HSX": [hsx] * n,
        "TBLX": kept["TBLX"].to_numpy() if n else [],
        "MJ": np.round(kept["area"].to_numpy(), 2) if n else [],
        SOURCE: [RASTER_SOURCE] * n,
        ROUND: [round_] * n,
        "change_score": np.round(kept["change_score"].to_numpy(), 3) if n else [],
        "ndvi_before": np.round(kept["ndvi_before"].to_numpy(), 4) if n else [],
        "ndvi_after": np.round(kept["ndvi_after"].to_numpy(), 4) if n else [],
        "spectral_angle": np.round(kept["spectral_angle"].to_numpy(), 3) if n else [],
        FID: np.arange(1, n + 1),
        AREA: np.round(kept["area"].to_numpy(), 2) if n else [],
    }, geometry=kept.geometry.to_numpy() if n else [], crs=kept.crs)
    return out


def evaluate(candidates: gpd.GeoDataFrame, planted: gpd.GeoDataFrame, false_alarms: gpd.GeoDataFrame | None = None,
             min_overlap: float = 0.5) -> dict:
    """Object-level precision / recall of ``candidates`` against planted changes (same CRS).

    A planted change is detected when candidates cover at least ``min_overlap`` of its area; a candidate is a
    true positive when at least ``min_overlap`` of its area lies on planted changes."""
    if candidates.crs is not None and planted.crs is not None and not candidates.crs.equals(planted.crs):
        raise CRSError("evaluate: candidates and planted changes are in different CRSs")
    cand = candidates.geometry.to_numpy()
    plant = planted.geometry.to_numpy()
    union_c = shapely.union_all(cand) if len(cand) else shapely.Polygon()
    union_p = shapely.union_all(plant) if len(plant) else shapely.Polygon()
    covered = shapely.area(shapely.intersection(plant, union_c)) / shapely.area(plant) if len(plant) else np.array([])
    on_truth = shapely.area(shapely.intersection(cand, union_p)) / shapely.area(cand) if len(cand) else np.array([])
    detected = covered >= min_overlap
    tp = on_truth >= min_overlap
    out = {
        "planted": len(plant), "detected": int(detected.sum()), "candidates": len(cand),
        "true_positives": int(tp.sum()), "false_positives": int((~tp).sum()),
        "recall": float(detected.mean()) if len(plant) else 1.0,
        "precision": float(tp.mean()) if len(cand) else 1.0,
        "missed": [str(v) for v in planted.loc[~detected, "id"]] if "id" in planted and len(plant) else [],
    }
    if false_alarms is not None and len(false_alarms):
        fa = false_alarms.geometry.to_numpy()
        hit = shapely.area(shapely.intersection(fa, union_c)) > 0 if len(cand) else np.zeros(len(fa), bool)
        out["false_alarms_reported"] = [str(v) for v in false_alarms.loc[hit, "id"]] if "id" in false_alarms else int(
            hit.sum())
    return out

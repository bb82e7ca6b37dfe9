"""Generate the sample county's rasters (deterministic): a DEM, two 4-band images, and their truth.

    python -m data.generate_rasters            # writes into data/sample/, reading data/sample/manifest.yaml

Reads the sample county written by data/generate.py (county boundary, DLTB, monitoring patches) and writes:

- ``dem.tif``: Cloud-Optimised GeoTIFF, EPSG:4547, 10 m cells over the county, float32 metres (LERC, 5 cm
  max error). A gentle alluvial plain (≈ 0.04° fall to the east with low undulations) and, in the north-west,
  mesas and swells of known steepness (steepest 50°, 29.5°, 17.5°, 7.8°, 3.5°, 2.6°) so that every
  耕地坡度级别 (1–5) occurs.
- ``image_before.tif`` / ``image_after.tif``: COGs, EPSG:4547, 4 m cells, 4 bands (blue, green, red, near
  infra-red; uint8 DN = reflectance × 400), co-registered, covering a 3 km × 3 km scene chosen where the
  monitoring patches are densest. The ground is painted from the DLTB land use (per-patch tone and texture);
  each date has its own sensor noise and the later date its own gain/offset (exposure, haze) and a slightly
  greener vegetation.
- Planted changes (the later image): the monitoring patches that lie wholly in the scene (one planted change
  per ground change: patches of several sources that overlap are one change) become buildings, hardened
  ground or cleared soil; two more changes no monitoring patch reports.
- Planted false alarms: whole fields whose crop changed colour (seasonal, vegetated at both dates), cloud
  shadows (illumination), hot pixels and 2 × 2 pixel clusters (sensor noise), one-pixel strands along field
  edges (mis-registration), and very small changes (below the minimum area).
- ``raster_truth.yaml``: every planted change and false alarm (id, kind, geometry WKT in EPSG:4547, the JCBH
  of the monitoring patches it matches), and the number of each kind of artefact.
- ``rasters.yaml``: the manifest section for these rasters (to merge into manifest.yaml).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import rasterio
import shapely
import yaml
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.features import rasterize
from rasterio.shutil import copy as rio_copy
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

EPSG = 4547
DEM_RES = 10.0
IMG_RES = 4.0
SCENE = 3000.0  # scene side, m
SEED = 20240612
QSX, HSX = "2024-04-12", "2024-10-18"
DN_SCALE = 400.0

# reflectance (blue, green, red, nir) by DLBM prefix
SPECTRA = {
    "01": (0.040, 0.080, 0.050, 0.380),  # 耕地 (green crop)
    "02": (0.040, 0.070, 0.050, 0.300),  # 园地
    "03": (0.030, 0.060, 0.040, 0.300),  # 林地
    "04": (0.050, 0.090, 0.070, 0.280),  # 草地
    "11": (0.060, 0.060, 0.040, 0.020),  # 水域
    "12": (0.120, 0.130, 0.150, 0.190),  # 其他土地
    "built": (0.170, 0.175, 0.185, 0.210),  # 建设用地, roads
}
CHANGE_SPECTRA = {
    "building_blue_roof": (0.300, 0.260, 0.180, 0.220),  # 彩钢瓦
    "hardened_ground": (0.240, 0.245, 0.250, 0.270),  # 硬化地面
    "cleared_soil": (0.110, 0.140, 0.190, 0.230),  # 推土 / 裸土
}
SEASONAL_SPECTRUM = (0.055, 0.095, 0.085, 0.250)  # yellowing crop: NDVI ≈ 0.49
GAIN = np.array([1.06, 1.05, 1.04, 1.08])
OFFSET = np.array([-3.0, -2.0, -2.0, 1.0])
NOISE_DN = 1.5


def _spectrum(dlbm: str) -> tuple:
    code = str(dlbm or "")
    if code[:2] in SPECTRA:
        return SPECTRA[code[:2]]
    return SPECTRA["built"]


def _smooth(shape, rng, scale_px: float, amp: float) -> np.ndarray:
    """Smooth texture: a sum of a few plane waves."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype("float64")
    out = np.zeros(shape)
    for _ in range(5):
        a = rng.uniform(0, 2 * math.pi)
        k = 2 * math.pi / (scale_px * rng.uniform(0.5, 1.5))
        out += np.cos(k * (xx * math.cos(a) + yy * math.sin(a)) + rng.uniform(0, 2 * math.pi))
    return amp * out / 5


# --- DEM ---------------------------------------------------------------------------------------------------

# Hills anchored at the county's north-west corner (offsets in m). Mesas: height / (1 + exp((r − R) / w)),
# steepest (H / 4w) on a ring of radius R; Gaussian swells: height · exp(−r² / 2σ²).
MESAS = [  # (dx, dy, height, R, w)  → steepest slope
    (5200, -5200, 240.0, 650.0, 50.0),   # 50°: grade 5 on a ~180 m ring
    (8800, -3600, 170.0, 520.0, 75.0),   # 29.5°: grades 4–5
    (3400, -9200, 120.0, 800.0, 95.0),   # 17.5°: grade 4
    (9500, -8800, 60.0, 700.0, 110.0),   # 7.8°: grade 3
]
SWELLS = [  # (dx, dy, height, sigma) → steepest slope
    (6500, -12500, 45.0, 600.0),         # 2.6°: grade 2
    (12500, -5000, 70.0, 700.0),         # 3.5°: grade 2
]


def dem_surface(x: np.ndarray, y: np.ndarray, x0: float, y1: float) -> np.ndarray:
    """Elevation (m) at plane coordinates: plain + swells + hills anchored at the county's NW corner."""
    plain = 42.0 - 0.0006 * (x - x0) + 0.0002 * (y - y1)
    undulation = 2.5 * np.sin((x - x0) / 1900.0) * np.cos((y - y1) / 2600.0) + 1.2 * np.sin((x + y) / 1100.0)
    hills = np.zeros_like(x)
    for dx, dy, h, radius, w in MESAS:
        r = np.hypot(x - x0 - dx, y - y1 - dy)
        hills += h / (1.0 + np.exp(np.clip((r - radius) / w, -50, 50)))
    for dx, dy, h, s in SWELLS:
        hills += h * np.exp(-(((x - x0 - dx) ** 2 + (y - y1 - dy) ** 2) / (2 * s * s)))
    return plain + undulation + hills


def write_dem(path: Path, bounds) -> dict:
    x0 = math.floor(bounds[0] / DEM_RES) * DEM_RES - 200
    y0 = math.floor(bounds[1] / DEM_RES) * DEM_RES - 200
    x1 = math.ceil(bounds[2] / DEM_RES) * DEM_RES + 200
    y1 = math.ceil(bounds[3] / DEM_RES) * DEM_RES + 200
    w, h = int(round((x1 - x0) / DEM_RES)), int(round((y1 - y0) / DEM_RES))
    tr = Affine(DEM_RES, 0, x0, 0, -DEM_RES, y1)
    tmp = path.with_suffix(".tmp.tif")
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="float32", crs=f"EPSG:{EPSG}", transform=tr,
                   tiled=True, blockxsize=512, blockysize=512, nodata=-9999.0, compress="deflate")
    with rasterio.open(tmp, "w", **profile) as ds:
        for r in range(0, h, 512):
            rows = min(512, h - r)
            yy, xx = np.mgrid[r:r + rows, 0:w].astype("float64")
            x = x0 + (xx + 0.5) * DEM_RES
            y = y1 - (yy + 0.5) * DEM_RES
            ds.write(dem_surface(x, y, x0, y1).astype("float32"), 1, window=((r, r + rows), (0, w)))
        ds.update_tags(1, UNITS="metre", DESCRIPTION="sample DEM, elevation above sea level")
    rio_copy(tmp, path, driver="COG", compress="LERC_DEFLATE", max_z_error=0.05, blocksize=512,
             overview_resampling="average")
    tmp.unlink()
    return {"size": [w, h], "bounds": [x0, y0, x1, y1]}


# --- images ------------------------------------------------------------------------------------------------

def choose_scene(monitoring_geoms: np.ndarray, county) -> tuple[float, float, float, float]:
    """The SCENE × SCENE square (on the 4 m grid) holding the most monitoring patches wholly inside."""
    cents = shapely.centroid(monitoring_geoms)
    xs, ys = shapely.get_x(cents), shapely.get_y(cents)
    best, best_n = None, -1
    for cx, cy in zip(xs, ys):
        for ox in (-0.25, 0.0, 0.25):
            for oy in (-0.25, 0.0, 0.25):
                x0 = math.floor((cx - SCENE / 2 + ox * SCENE) / IMG_RES) * IMG_RES
                y0 = math.floor((cy - SCENE / 2 + oy * SCENE) / IMG_RES) * IMG_RES
                box = shapely.box(x0, y0, x0 + SCENE, y0 + SCENE)
                n = int(shapely.contains(box, monitoring_geoms).sum())
                if n > best_n or (n == best_n and (x0, y0) < best[:2]):
                    best, best_n = (x0, y0, x0 + SCENE, y0 + SCENE), n
    return best


def _fraction(geom, shape, tr, ss: int = 4) -> np.ndarray:
    """Share of each cell covered by geom (4 × 4 supersampling)."""
    fine = rasterize([(geom, 1)], out_shape=(shape[0] * ss, shape[1] * ss),
                     transform=tr @ Affine.scale(1 / ss), fill=0, dtype="uint8")
    return fine.reshape(shape[0], ss, shape[1], ss).mean(axis=(1, 3))


def _paint(scene: np.ndarray, frac: np.ndarray, spectrum, rng, texture: float = 0.01) -> None:
    sel = frac > 0
    for b in range(4):
        val = spectrum[b] * (1 + rng.normal(0, texture, sel.sum()))
        scene[b][sel] = scene[b][sel] * (1 - frac[sel]) + val * frac[sel]


def build_images(dltb, monitoring, scene_bounds, rng):
    """Scenes (reflectance) of both dates, the truth, and the sensor artefacts to add to the later DN."""
    x0, y0, x1, y1 = scene_bounds
    w = h = int(round(SCENE / IMG_RES))
    tr = Affine(IMG_RES, 0, x0, 0, -IMG_RES, y1)
    box = shapely.box(*scene_bounds)
    scene = np.zeros((4, h, w))
    # land use: per-patch tone and texture
    sub = dltb[dltb.intersects(box)]
    ids = np.zeros((h, w), dtype="int32")
    shapes_ = [(g, i + 1) for i, g in enumerate(sub.geometry.values)]
    if shapes_:
        ids = rasterize(shapes_, out_shape=(h, w), transform=tr, fill=0, dtype="int32")
    tone = rng.normal(1.0, 0.06, len(sub) + 1)
    spectra = np.array([SPECTRA["12"]] + [_spectrum(c) for c in sub["DLBM"].values])
    for b in range(4):
        scene[b] = spectra[ids, b] * tone[ids]
    tex = _smooth((h, w), rng, 60.0, 0.05)
    scene *= 1 + tex[None]
    before = scene.copy()
    after = scene.copy()
    after[3] *= np.where(np.isin(ids, np.nonzero([str(c)[:2] in ("01", "02", "03", "04")
                                                   for c in ["", *sub["DLBM"].values]])[0]), 1.03, 1.0)
    truth = {"planted_changes": [], "false_alarms": []}
    occupied = []
    # planted changes at the monitoring patches wholly inside (one per ground change)
    inside = monitoring[monitoring.within(shapely.buffer(box, -2 * IMG_RES))]
    groups = _overlap_groups(inside.geometry.values)
    kinds = list(CHANGE_SPECTRA)
    for n, members in enumerate(groups):
        geom = shapely.union_all(inside.geometry.values[members])
        kind = kinds[n % len(kinds)]
        _paint(after, _fraction(geom, (h, w), tr), CHANGE_SPECTRA[kind], rng)
        occupied.append(geom)
        truth["planted_changes"].append({"id": f"C{n + 1:02d}", "kind": kind,
                                         "jcbh": sorted(str(v) for v in inside["JCBH"].values[members]),
                                         "geometry": geom})
    # two changes no monitoring patch reports, on cultivated land away from everything else
    extra = 0
    cult = sub[sub["DLBM"].astype(str).str[:2] == "01"]
    for g in cult.geometry.values[rng.permutation(len(cult))]:
        if extra == 2:
            break
        c = g.representative_point()
        cand = shapely.box(c.x - 30, c.y - 22, c.x + 30, c.y + 22)
        if not cand.within(g) or not cand.within(box) or any(cand.distance(o) < 60 for o in occupied):
            continue
        extra += 1
        kind = kinds[(extra + 1) % len(kinds)]
        _paint(after, _fraction(cand, (h, w), tr), CHANGE_SPECTRA[kind], rng)
        occupied.append(cand)
        truth["planted_changes"].append({"id": f"C{len(truth['planted_changes']) + 1:02d}", "kind": kind,
                                         "jcbh": [], "geometry": cand})
    # seasonal: two whole fields change crop colour (still vegetated)
    fa = truth["false_alarms"]
    seasonal = 0
    for g in cult.geometry.values[rng.permutation(len(cult))]:
        if seasonal == 2:
            break
        if not g.within(box) or g.area < 3000 or any(g.distance(o) < 40 for o in occupied):
            continue
        seasonal += 1
        _paint(after, _fraction(g, (h, w), tr), SEASONAL_SPECTRUM, rng)
        occupied.append(g)
        fa.append({"id": f"F{len(fa) + 1:02d}", "kind": "seasonal", "geometry": g})
    # cloud shadows: the ground darkened, the spectrum kept
    for _shadow in range(2):
        for _ in range(200):
            cx, cy = rng.uniform(x0 + 300, x1 - 300), rng.uniform(y0 + 300, y1 - 300)
            ell = shapely.affinity.scale(shapely.Point(cx, cy).buffer(1, 64), 70, 45)
            if all(ell.distance(o) > 40 for o in occupied):
                break
        frac = _fraction(ell, (h, w), tr)
        after *= 1 - frac[None] * 0.5
        occupied.append(ell)
        fa.append({"id": f"F{len(fa) + 1:02d}", "kind": "illumination", "geometry": ell})
    # very small changes (a shed, a heap): real but below the minimum area
    for _small in range(3):
        for _ in range(200):
            cx = x0 + IMG_RES * rng.integers(100, w - 100)
            cy = y1 - IMG_RES * rng.integers(100, h - 100)
            sq = shapely.box(cx, cy - 12, cx + 12, cy)  # 3 × 3 cells, 144 m²
            if all(sq.distance(o) > 40 for o in occupied):
                break
        _paint(after, _fraction(sq, (h, w), tr), CHANGE_SPECTRA["hardened_ground"], rng)
        occupied.append(sq)
        fa.append({"id": f"F{len(fa) + 1:02d}", "kind": "small", "geometry": sq})
    artefacts = {"hot_pixels": [], "clusters": [], "strands": []}
    # hot pixels and 2 × 2 clusters (sensor noise), one-pixel strands (mis-registration), apart from the rest
    taken = np.zeros((h, w), bool)
    for o in occupied:
        taken |= _fraction(shapely.buffer(o, 12), (h, w), tr) > 0

    def free(r, c, hh, ww):
        return (r >= 2 and c >= 2 and r + hh + 2 <= h and c + ww + 2 <= w
                and not taken[r - 2:r + hh + 2, c - 2:c + ww + 2].any())

    for kind, n, size in (("hot_pixels", 40, (1, 1)), ("clusters", 12, (2, 2)), ("strands", 4, (1, 60))):
        placed = 0
        while placed < n:
            hh, ww = size if placed % 2 == 0 or kind != "strands" else size[::-1]
            r, c = int(rng.integers(0, h - hh)), int(rng.integers(0, w - ww))
            if not free(r, c, hh, ww):
                continue
            taken[r - 1:r + hh + 1, c - 1:c + ww + 1] = True
            artefacts[kind].append((r, c, hh, ww))
            placed += 1
    return before, after, tr, truth, artefacts


def _overlap_groups(geoms) -> list[list[int]]:
    """Indices of the geometries that overlap (by area, transitively), group by group in order of first member."""
    n = len(geoms)
    if not n:
        return []
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    keep = a < b
    a, b = a[keep], b[keep]
    overlap = shapely.area(shapely.intersection(geoms[a], geoms[b])) > 0
    graph = coo_matrix((np.ones(int(overlap.sum())), (a[overlap], b[overlap])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(int(label[i]), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def to_dn(scene: np.ndarray, rng, gain=None, offset=None) -> np.ndarray:
    dn = scene * DN_SCALE
    if gain is not None:
        dn = dn * gain[:, None, None] + offset[:, None, None]
    dn = dn + rng.normal(0, NOISE_DN, dn.shape)
    return np.clip(np.round(dn), 1, 255).astype("uint8")


def write_image(path: Path, dn: np.ndarray, tr: Affine, date: str) -> None:
    tmp = path.with_suffix(".tmp.tif")
    profile = dict(driver="GTiff", width=dn.shape[2], height=dn.shape[1], count=4, dtype="uint8",
                   crs=f"EPSG:{EPSG}", transform=tr, tiled=True, blockxsize=256, blockysize=256, nodata=0,
                   compress="deflate", interleave="pixel", photometric="minisblack")
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.write(dn)
        ds.update_tags(ACQUISITION_DATE=date, TIFFTAG_DATETIME=date.replace("-", ":") + " 10:30:00")
        for i, name in enumerate(("blue", "green", "red", "nir"), 1):
            ds.set_band_description(i, name)
        ds.colorinterp = [ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.undefined]
    rio_copy(tmp, path, driver="COG", compress="DEFLATE", predictor=2, blocksize=256,
             overview_resampling="average")
    tmp.unlink()


def generate(out: Path, manifest_path: Path) -> dict:
    from layers.load import load_role
    from layers.manifest import load_manifest

    manifest = load_manifest(manifest_path)
    rng = np.random.default_rng(SEED)
    xzq = load_role(manifest, "xzq", EPSG).gdf
    dltb = load_role(manifest, "dltb", EPSG).gdf
    monitoring = load_role(manifest, "monitoring", EPSG).gdf
    county = xzq[xzq["XZQDM"].astype(str).str.len() == 6]
    county_geom = shapely.union_all(county.geometry.values) if len(county) else shapely.union_all(dltb.geometry.values)
    dem_info = write_dem(out / "dem.tif", county_geom.bounds)
    scene_bounds = choose_scene(monitoring.geometry.values, county_geom)
    before, after, tr, truth, artefacts = build_images(dltb, monitoring, scene_bounds, rng)
    dn_before = to_dn(before, rng)
    dn_after = to_dn(after, rng, GAIN, OFFSET)
    for r, c, hh, ww in artefacts["hot_pixels"] + artefacts["clusters"]:
        dn_after[:, r:r + hh, c:c + ww] = np.clip(dn_after[:, r:r + hh, c:c + ww].astype(int) + 70, 1, 255)
    for r, c, hh, ww in artefacts["strands"]:
        dn_after[:, r:r + hh, c:c + ww] = np.clip(dn_after[:, r:r + hh, c:c + ww].astype(int) + 45, 1, 255)
    write_image(out / "image_before.tif", dn_before, tr, QSX)
    write_image(out / "image_after.tif", dn_after, tr, HSX)
    doc = {
        "crs": f"EPSG:{EPSG}",
        "scene": [float(v) for v in scene_bounds],
        "qsx": QSX, "hsx": HSX,
        "planted_changes": [{**{k: v for k, v in c.items() if k != "geometry"},
                             "area_m2": round(float(c["geometry"].area), 2), "wkt": shapely.to_wkt(c["geometry"],
                                                                                            rounding_precision=3)}
                            for c in truth["planted_changes"]],
        "false_alarms": [{**{k: v for k, v in f.items() if k != "geometry"},
                          "area_m2": round(float(f["geometry"].area), 2),
                          "wkt": shapely.to_wkt(f["geometry"], rounding_precision=3)} for f in truth["false_alarms"]],
        "sensor_artefacts": {k: len(v) for k, v in artefacts.items()},
        "artefact_cells": {k: [list(map(int, t)) for t in v] for k, v in artefacts.items()},
        "mesas": [dict(zip(("dx", "dy", "height", "radius", "w"), h)) for h in MESAS],
        "swells": [dict(zip(("dx", "dy", "height", "sigma"), h)) for h in SWELLS],
        "dem": dem_info,
    }
    (out / "raster_truth.yaml").write_text(
        "# Planted truth of the sample images (data/generate_rasters.py). Geometries: WKT in EPSG:4547.\n"
        + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=200), encoding="utf-8")
    (out / "rasters.yaml").write_text(
        "# Raster roles of the sample county (merge into manifest.yaml as its rasters: section).\n"
        + yaml.safe_dump({"rasters": {"dem": {"path": "dem.tif"}, "image_before": {"path": "image_before.tif"},
                                      "image_after": {"path": "image_after.tif"}}}, sort_keys=False),
        encoding="utf-8")
    return doc


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "sample")
    ap.add_argument("--manifest", type=Path, default=None)
    args = ap.parse_args(argv)
    doc = generate(args.out, args.manifest or args.out / "manifest.yaml")
    sizes = {p.name: round(p.stat().st_size / 1e6, 2) for p in sorted(args.out.glob("*.tif"))}
    print(f"rasters written to {args.out}: {sizes} MB; planted changes {len(doc['planted_changes'])}, "
          f"false alarms {len(doc['false_alarms'])}, sensor artefacts {doc['sensor_artefacts']}")


if __name__ == "__main__":
    main()

"""A synthetic province: N counties of the sample's kind, each in its own place, code and 3° zone, and the
``region.yaml`` that lists them (layers/region.py).

    .venv/bin/python -m data.generate --province 3 --patches 3000 --out DIR     # the tests' mini province
    .venv/bin/python -m data.generate --province 30 --patches 330000 --out DIR  # the benchmark (≈ 10 M patches)

County k is ``build_county(seed=seed + k, n_patches=P)`` — the sample county's generator, so every county has
the sample's layers, planted cases and defects — moved to its own place:

- centres on a grid of 0.30° × 0.26° cells around 115.5°E (the border of the 3° zones 38 and 39), so the
  counties never overlap, neighbours almost touch, and at least two zones are used whenever N ≥ 2;
- geometry translated in the plane from the sample's zone-38 position to the county centre in the county's
  own zone (EPSG:4547 or EPSG:4548), and stored there — each county keeps its own zone, as a bureau's does;
- every area field recomputed from the moved geometry (ellipsoidal, CGCS2000): TBMJ / KCMJ / TBDLMJ where they
  agreed with the geometry, the sample's planted area defects kept as the same relative error;
- the code 130599 replaced by the county's code in every text field (BSM, ZLDWDM, XZQDM, JCBH, ZDDM …) and the
  county's name in XZQMC.

Codes: province 130000 (样例省); 市 130500, 130600, … with up to 10 counties each (2 each when N ≤ 10, so even
the mini province has two cities); county j of 市 k is 13{05+k}{71+j}. ``planted.yaml`` is not written for
these counties: its truth is the sample's (docs/sample-data.md), the province tests compare the province run
with the single-county run of the same files instead.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import shapely
import yaml

from layers.area import ellipsoidal_area
from layers.crs import gk_epsg, zone_for_longitude

from . import generate as gen

PROVINCE_CODE, PROVINCE_NAME = "130000", "样例省"
CITY_NAMES = ["样例市", "示例市", "东平市", "西岭市", "南川市", "北原市", "中阳市", "新河市", "上林市", "下泉市"]
NAME_FIRST = "东西南北中上下前后新"
NAME_SECOND = "川岭泉河原阳丘林坪湖"
ZONE_BORDER_LON = 115.5  # zones 38 | 39
CELL_LON, CELL_LAT = 0.30, 0.26  # degrees between county centres (a county is ≤ 23 km across)
BASE_LAT = 37.175
AREA_FIELDS = {"yjjbnt": ["YJJBNTMJ"], "stbhhx": ["MJ"], "czkfbj": ["MJ"], "ghfq": ["MJ"], "approvals": ["PZMJ"],
               "parcels": ["MJ"], "monitoring": ["MJ"]}


def layout(n: int) -> list[dict]:
    """Code, name, 市, centre (lon, lat) and zone EPSG of each of ``n`` counties."""
    per_city = 2 if n <= 10 else 10
    ncols = max(2, math.ceil(math.sqrt(n)))
    out = []
    for k in range(n):
        city_k, j = divmod(k, per_city)
        city = f"13{5 + city_k:02d}00"
        row, col = divmod(k, ncols)
        lon = ZONE_BORDER_LON + (col - ncols / 2 + 0.5) * CELL_LON
        lat = BASE_LAT + row * CELL_LAT
        zone = zone_for_longitude(lon)
        out.append({"code": f"{city[:4]}{71 + j:02d}", "name": NAME_FIRST[k // 10 % 10] + NAME_SECOND[k % 10] + "县",
                    "city": city, "city_name": CITY_NAMES[city_k % len(CITY_NAMES)], "lon": lon, "lat": lat,
                    "epsg": gk_epsg(zone, prefixed=False), "index": k})
    return out


def _recode(frame: pd.DataFrame, code: str, name: str) -> pd.DataFrame:
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):  # text (not the geometry)
            out[col] = pd.Series([v.replace(gen.REGION_CODE, code).replace(gen.REGION_NAME, name)
                                  if isinstance(v, str) else v for v in s], index=s.index, dtype=s.dtype)
    return out


def relocate(county: gen.County, spot: dict) -> gen.County:
    """The county moved to ``spot`` (from layout): geometry in its zone, area fields recomputed, codes
    replaced. The County's planted truth is dropped (it describes the sample's place)."""
    epsg = int(spot["epsg"])
    x, y = pyproj.Transformer.from_crs(4490, epsg, always_xy=True).transform(spot["lon"], spot["lat"])
    # whole metres: the sample's coordinates lie on the millimetre grid the FileGDB layers keep, and stay on it
    dx, dy = round(x - gen.CENTRE[0]), round(y - gen.CENTRE[1])
    layers = {}
    for role, gdf in county.layers.items():
        old = gdf.geometry.values
        moved = shapely.transform(np.asarray(old, dtype=object), lambda c: c + np.array([dx, dy]))
        out = _recode(gdf, spot["code"], spot["name"]).set_geometry(moved).set_crs(epsg, allow_override=True)
        polygonal = role not in ("cameras",)
        if polygonal:
            before = ellipsoidal_area(np.asarray(old, dtype=object), gen.CRS)
            after = ellipsoidal_area(np.asarray(moved, dtype=object), f"EPSG:{epsg}")
            ratio = np.divide(after, before, out=np.ones_like(after), where=before > 0)
            if role in ("dltb", "dltb_prev"):
                out = _survey_areas(out, before, after, ratio)
            for field in AREA_FIELDS.get(role, []):
                if field in out.columns:
                    out[field] = np.round(out[field].to_numpy(float) * ratio, 2)
        layers[role] = out
    return gen.County(seed=county.seed, scale=county.scale, layers=layers, planted={},
                      ghfq_codes=county.ghfq_codes, timings=county.timings)


def _survey_areas(dltb, before, after, ratio):
    """TBMJ / KCMJ / TBDLMJ of the moved survey: recomputed where they agreed with the geometry, the planted
    defects (TBMJ far off, KCMJ ≠ round(TBMJ × KCXS)) kept as the same relative error."""
    tbmj, kcxs, kcmj = (dltb[c].to_numpy(float) for c in ("TBMJ", "KCXS", "KCMJ"))
    agreed = np.abs(tbmj - np.round(before, 2)) < 0.0051
    new_tbmj = np.where(agreed, np.round(after, 2), np.round(tbmj * ratio, 2))
    kc_agreed = np.abs(kcmj - np.round(tbmj * kcxs, 2)) < 0.0051
    new_kcmj = np.where(kc_agreed, np.round(new_tbmj * kcxs, 2), np.round(kcmj * ratio, 2))
    out = dltb.copy()
    out["TBMJ"], out["KCMJ"], out["TBDLMJ"] = new_tbmj, new_kcmj, np.round(new_tbmj - new_kcmj, 2)
    return out


def _write_one(out: Path, spot: dict, n: int, patches: int, seed: int) -> str:
    """County ``spot`` of the province into ``out/c<code>/``; its progress line."""
    t0 = time.perf_counter()
    county_seed = seed + spot["index"]
    for attempt in range(1, 4):
        try:
            built = gen.build_county(seed=county_seed, n_patches=patches, truth=False)
            break
        except (RuntimeError, shapely.errors.GEOSException):
            # a rare seed the sample generator cannot lay out (a GEOS TopologyException in the tessellation,
            # a planted site it cannot carve): the next seed of this county's own series, named in its manifest
            if attempt == 3:
                raise
            county_seed = seed + spot["index"] + 1000 * attempt
    county = relocate(built, spot)
    folder = out / f"c{spot['code']}"
    manifest_path = gen.write_county(county, folder)
    (folder / "planted.yaml").unlink(missing_ok=True)
    doc = yaml.safe_load(manifest_path.read_text(encoding="utf-8"))
    doc["region"] = {"code": spot["code"], "name": spot["name"]}
    header = (f"# {spot['name']} ({spot['code']}) of the synthetic province {PROVINCE_NAME} — generated by "
              f"`python -m data.generate --province {n} --patches {patches}` (seed {county_seed}); "
              "do not edit by hand.\n")
    manifest_path.write_text(header + gen._dump(doc), encoding="utf-8")
    return (f"{spot['code']} {spot['name']}: {len(county.layers['dltb'])} patches, EPSG:{spot['epsg']}, "
            f"{spot['lon']:.3f}°E {spot['lat']:.3f}°N ({time.perf_counter() - t0:.1f} s)")


def write_province(out: Path, n: int, patches: int, seed: int = gen.DEFAULT_SEED,
                   progress=print, jobs: int = 1) -> Path:
    """Write ``n`` counties of ``patches`` DLTB patches each into ``out/c<code>/`` and ``out/region.yaml``.

    Each county depends only on its seed and place, so ``jobs`` > 1 writes that many counties at once (one
    process each; a 330 000-patch county takes ~2 min and ~3 GB)."""
    if n < 1:
        raise ValueError(f"--province {n}: give at least one county")
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: give at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spots = layout(n)
    if jobs == 1:
        for spot in spots:
            progress(_write_one(out, spot, n, patches, seed))
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for done in as_completed([pool.submit(_write_one, out, spot, n, patches, seed) for spot in spots]):
                progress(done.result())
    return write_region_yaml(out, n, patches, spots)


def write_region_yaml(out: Path, n: int, patches: int, spots: list[dict] | None = None) -> Path:
    """``out/region.yaml`` for the province of ``n`` counties laid out by :func:`layout`."""
    spots = spots or layout(n)
    cities = {s["city"]: s["city_name"] for s in spots}
    region = {
        "region": {"code": PROVINCE_CODE, "name": PROVINCE_NAME, "level": "province"},
        "cities": [{"code": c, "name": name} for c, name in sorted(cities.items())],
        "counties": [f"c{s['code']}/manifest.yaml" for s in spots],
    }
    path = out / "region.yaml"
    path.write_text(f"# Synthetic province: {n} counties of about {patches} DLTB patches each, over zones "
                    f"{sorted({s['epsg'] for s in spots})} — generated by data/province.py; do not edit.\n"
                    + gen._dump(region), encoding="utf-8")
    return path

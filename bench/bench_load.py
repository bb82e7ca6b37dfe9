"""Benchmark: load a county-size DLTB (default 300 000 patches) through layers.load.load_role.

    .venv/bin/python bench/bench_load.py [--patches 300000] [--format gpkg|shp] [--out bench/out/load]

Builds jittered quadrilateral patches (≈ 30 vertices each after densifying, 0.5 % bow-ties) in EPSG:4526
(prefixed zone 38, so every vertex is transformed), writes them once, then times the load and prints the
figures: rows per second overall and the share of each stage. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layers.load import load_role, resolve_target_epsg
from layers.manifest import load_manifest


def build(n: int, seed: int = 1) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    step = 60.0
    i, j = np.divmod(np.arange(n), side)
    x0, y0 = 575_000.0 + i * step, 4_100_000.0 + j * step
    jitter = rng.uniform(-8, 8, (n, 4, 2))
    corners = np.stack([np.column_stack([x0, y0]), np.column_stack([x0 + step, y0]),
                        np.column_stack([x0 + step, y0 + step]), np.column_stack([x0, y0 + step])], axis=1)
    corners[:, :, :] += jitter * np.array([1, 1])
    bow = rng.random(n) < 0.005
    corners[bow] = corners[bow][:, [0, 2, 1, 3]]
    rings = np.concatenate([corners, corners[:, :1]], axis=1)
    polys = shapely.segmentize(shapely.polygons(rings), 8.0)
    polys[bow] = shapely.polygons(rings[bow])  # densified, a bow-tie would touch itself at a vertex
    codes = rng.choice(["0101", "0102", "0103", "0301", "0702", "1006", "1104", "0601"], n)
    kcxs = np.where(np.isin(codes, ["0101", "0102", "0103"]), 0.0734, 0.0)
    gdf = gpd.GeoDataFrame({"BSM": [f"1305992110{k:08d}" for k in range(n)], "DLBM": codes, "DLMC": "地类",
                            "ZLDWDM": "1305991000010000000", "ZLDWMC": "张庄村", "KCXS": kcxs},
                           geometry=polys, crs=4547)
    from layers.area import ellipsoidal_area

    tbmj = np.round(ellipsoidal_area(gdf.geometry.values, 4547), 2)
    gdf["TBMJ"] = tbmj
    gdf["KCMJ"] = np.round(tbmj * kcxs, 2)
    gdf["TBDLMJ"] = np.round(tbmj - gdf["KCMJ"], 2)
    return gdf.to_crs(4526)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=300_000)
    ap.add_argument("--format", choices=["gpkg", "shp"], default="gpkg")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "load")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"dltb_{args.patches}.{args.format}"
    path = args.out / name
    if not path.exists():
        t = time.perf_counter()
        gdf = build(args.patches)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gdf.to_file(path, **({"encoding": "gbk"} if args.format == "shp" else {"layer": "dltb"}))
        print(f"built and wrote {args.patches:,} patches in {time.perf_counter() - t:.1f} s → {path}")
    (args.out / "manifest.yaml").write_text(yaml.safe_dump(
        {"region": {"code": "130599"}, "crs": "auto", "layers": {"dltb": {"path": name}}}), encoding="utf-8")
    m = load_manifest(args.out / "manifest.yaml")
    t0 = time.perf_counter()
    target = resolve_target_epsg(m)
    t1 = time.perf_counter()
    c1 = time.process_time()
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    loaded = load_role(m, "dltb", target)
    if prof:
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    t2 = time.perf_counter()
    c2 = time.process_time()
    r = loaded.record
    print(f"resolve_target_epsg: {t1 - t0:.2f} s → EPSG:{target}")
    print(f"load_role dltb: {r.rows_read:,} rows in {t2 - t1:.1f} s ({r.rows_read / (t2 - t1):,.0f} rows/s); "
          f"repaired {r.repaired}, area mismatches {r.area_mismatches}, encoding {r.encoding}")
    print(f"CPU time {c2 - c1:.1f} s (wall/CPU {(t2 - t1) / (c2 - c1):.2f}: above 1 means the machine is busy; "
          "below 1, threads used both cores)")
    print(f"findings: {[(f.check, f.count) for f in loaded.findings]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

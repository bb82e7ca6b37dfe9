"""Overlay core side by side, in one run: ours, geopandas.overlay, PostGIS and DuckDB spatial on the same data.

    .venv/bin/python bench/bench_overlay.py                       # county size: 300 000 DLTB patches
    .venv/bin/python bench/bench_overlay.py --patches 30000       # quick
    .venv/bin/python bench/bench_overlay.py --engines ours,geopandas --repeat 3

Left = DLTB patches, right = the three control lines (YJJBNT + STBHHX + CZKFBJ in one layer); ``--right
approvals`` overlays approvals + monitoring patches instead. Data come from the project's generator
(``data.generate.build_county``, cached as GeoParquet under ``--cache``) or, with ``--data synth``, from
bench/synth_county.py. Every engine must return the same pieces (polygonal, area > 0) and the same total
area; mismatches are printed. Times exclude loading; each engine's best of ``--repeat`` runs is reported.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from analysis.overlay import overlay_pieces

EPSG = 4547


# ----------------------------------------------------------------------------------------------------- data

def load_layers(args) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, str]:
    cache = Path(args.cache) / f"{args.data}-{args.patches}-{args.seed}"
    roles = ["dltb", "yjjbnt", "stbhhx", "czkfbj", "approvals", "monitoring"]
    if not all((cache / f"{r}.parquet").exists() for r in roles):
        cache.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        if args.data == "generate":
            from data.generate import build_county

            county = build_county(seed=args.seed, n_patches=args.patches)
            layers = {r: county.layers[r][["geometry"]] for r in roles}
        else:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from synth_county import make_county

            geoms = make_county(args.patches, seed=args.seed)
            geoms["monitoring"] = geoms["approvals"][:0]
            layers = {r: gpd.GeoDataFrame(geometry=geoms[r], crs=EPSG) for r in roles}
        for r, g in layers.items():
            g.reset_index(drop=True).to_parquet(cache / f"{r}.parquet")
        print(f"generated {args.data} data in {time.perf_counter() - t:.0f} s → {cache}")
    layers = {r: gpd.read_parquet(cache / f"{r}.parquet") for r in roles}
    left = layers["dltb"].reset_index(drop=True)
    names = ["yjjbnt", "stbhhx", "czkfbj"] if args.right == "control" else ["approvals", "monitoring"]
    right = pd.concat([layers[n] for n in names], ignore_index=True)
    desc = " + ".join(f"{n} {len(layers[n])}" for n in names)
    return gpd.GeoDataFrame(left, crs=EPSG), gpd.GeoDataFrame(right, crs=EPSG), desc


# -------------------------------------------------------------------------------------------------- engines

def run_ours(left, right, args):
    out = overlay_pieces(left, right, workers=args.workers)
    return pd.DataFrame({"l": out["left"], "r": out["right"], "area": out.geometry.area})


def run_geopandas(left, right, args):
    lg = gpd.GeoDataFrame({"__l": np.arange(len(left))}, geometry=left.geometry.values, crs=EPSG)
    rg = gpd.GeoDataFrame({"__r": np.arange(len(right))}, geometry=right.geometry.values, crs=EPSG)
    out = gpd.overlay(lg, rg, how="intersection", keep_geom_type=True)
    out = out[out.area > 0]
    return pd.DataFrame({"l": out["__l"].to_numpy(), "r": out["__r"].to_numpy(), "area": out.area.to_numpy()})


POSTGIS_PLAIN = """
CREATE TABLE out_plain AS
SELECT a.id AS l, b.id AS r, g FROM l a JOIN r b ON ST_Intersects(a.geom, b.geom),
  LATERAL (SELECT ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 3) AS g) x
WHERE ST_Area(g) > 0"""

# a PostGIS expert's version: skip the overlay when one polygon lies wholly inside the other
POSTGIS_FAST = """
CREATE TABLE out_fast AS
SELECT a.id AS l, b.id AS r, g FROM l a JOIN r b ON ST_Intersects(a.geom, b.geom),
  LATERAL (SELECT CASE WHEN ST_CoveredBy(a.geom, b.geom) THEN a.geom
                       WHEN ST_CoveredBy(b.geom, a.geom) THEN b.geom
                       ELSE ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 3) END AS g) x
WHERE ST_Area(g) > 0"""


def postgis_setup(left, right, args):
    import psycopg

    try:
        from tests.pgcluster import start_cluster
    except ImportError as exc:  # pragma: no cover
        raise RuntimeError(f"tests.pgcluster not importable: {exc}") from None
    base = Path(tempfile.mkdtemp(prefix="yzt-bench-overlay-pg-", dir="/tmp"))
    os.chmod(base, 0o755)
    cluster = start_cluster(base)
    conn = psycopg.connect(cluster.url, autocommit=True)
    t = time.perf_counter()
    for name, frame in (("l", left), ("r", right)):
        conn.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, geom geometry(Geometry, {EPSG}))")
        ewkb = shapely.to_wkb(shapely.set_srid(frame.geometry.values, EPSG), hex=True, include_srid=True)
        with conn.cursor() as cur, cur.copy(f"COPY {name} (id, geom) FROM STDIN") as cp:
            for i, w in enumerate(ewkb):
                cp.write_row((i, w))
        conn.execute(f"CREATE INDEX ON {name} USING gist (geom)")
    conn.execute("VACUUM ANALYZE l")
    conn.execute("VACUUM ANALYZE r")
    workers = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0]
    print(f"PostGIS: loaded in {time.perf_counter() - t:.1f} s (COPY, GiST, VACUUM ANALYZE); "
          f"max_parallel_workers_per_gather={workers}")
    return cluster, conn


def run_postgis(conn, sql, table):
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(sql)
    rows = conn.execute(f"SELECT l, r, ST_Area(g) FROM {table}").fetchall()
    return pd.DataFrame(rows, columns=["l", "r", "area"])


def duckdb_setup(left, right):
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    try:
        con.execute("LOAD spatial")
        how = "LOAD spatial (installed extension)"
    except Exception:
        import duckdb_extension_spatial

        paths = glob.glob(os.path.join(os.path.dirname(duckdb_extension_spatial.__file__), "extensions", "*",
                                       "spatial.duckdb_extension"))
        if not paths:
            raise RuntimeError("duckdb-extension-spatial has no spatial.duckdb_extension file") from None
        con.execute(f"LOAD '{paths[0]}'")
        how = f"LOAD '{paths[0]}' (offline, from the duckdb-extension-spatial wheel)"
    t = time.perf_counter()
    for name, frame in (("l", left), ("r", right)):
        staged = pd.DataFrame({"id": np.arange(len(frame), dtype=np.int64),
                               "wkb": shapely.to_wkb(frame.geometry.values)})
        con.register("staged", staged)
        con.execute(f"CREATE TABLE {name} AS SELECT id, ST_GeomFromWKB(wkb) AS geom FROM staged")
        con.unregister("staged")
    print(f"DuckDB {duckdb.__version__}: {how}; loaded in {time.perf_counter() - t:.1f} s, "
          f"threads={con.execute('SELECT current_setting(' + repr('threads') + ')').fetchone()[0]}")
    return con


DUCK_PLAIN = """
CREATE OR REPLACE TABLE out_plain AS
SELECT l, r, g FROM (
  SELECT a.id AS l, b.id AS r, ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 3) AS g
  FROM l a JOIN r b ON ST_Intersects(a.geom, b.geom)) WHERE ST_Area(g) > 0"""

DUCK_FAST = """
CREATE OR REPLACE TABLE out_fast AS
SELECT l, r, g FROM (
  SELECT a.id AS l, b.id AS r,
         CASE WHEN ST_CoveredBy(a.geom, b.geom) THEN a.geom
              WHEN ST_CoveredBy(b.geom, a.geom) THEN b.geom
              ELSE ST_CollectionExtract(ST_Intersection(a.geom, b.geom), 3) END AS g
  FROM l a JOIN r b ON ST_Intersects(a.geom, b.geom)) WHERE ST_Area(g) > 0"""


def run_duckdb(con, sql, table):
    con.execute(sql)
    return con.execute(f"SELECT l, r, ST_Area(g) AS area FROM {table}").df()


# ------------------------------------------------------------------------------------------------------ main

def timed(fn, repeat):
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    LOADS.append(os.getloadavg()[0])
    return best, result


LOADS: list[float] = []  # 1-minute load average after each engine: > cores means the figures are noisy


def compare(name, got, ref):
    """Mismatches of ``got`` against the reference pieces (same pairs, same areas to 1e-9 relative)."""
    a = got.groupby(["l", "r"])["area"].sum()
    b = ref.groupby(["l", "r"])["area"].sum()
    only_a, only_b = a.index.difference(b.index), b.index.difference(a.index)
    msgs = []
    if len(only_a) or len(only_b):
        msgs.append(f"{len(only_a)} pairs only in {name}, {len(only_b)} only in ours "
                    f"(e.g. {list(only_a[:3]) + list(only_b[:3])}, areas "
                    f"{a.loc[only_a[:3]].round(6).tolist()} / {b.loc[only_b[:3]].round(6).tolist()})")
    common = a.index.intersection(b.index)
    rel = (a.loc[common] - b.loc[common]).abs() / b.loc[common].abs().clip(lower=1e-300)
    bad = rel[rel > 1e-9]
    if len(bad):
        msgs.append(f"{len(bad)} pieces differ by more than 1e-9 relative (max {rel.max():.2e})")
    return msgs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patches", type=int, default=300_000)
    ap.add_argument("--workers", type=int, default=2, help="threads for ours")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--engines", default="ours,geopandas,postgis,duckdb")
    ap.add_argument("--right", choices=["control", "approvals"], default="control")
    ap.add_argument("--data", choices=["generate", "synth"], default="generate")
    ap.add_argument("--seed", type=int, default=130599)
    ap.add_argument("--cache", default="/tmp/yzt-bench-overlay")
    args = ap.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]

    left, right, desc = load_layers(args)
    nl = int(shapely.get_num_coordinates(left.geometry.values).sum())
    nr = int(shapely.get_num_coordinates(right.geometry.values).sum())
    print(f"left: dltb {len(left)} patches ({nl} vertices); right: {desc} ({len(right)} polygons, {nr} vertices); "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")

    rows = []  # engine, seconds, result
    t, ours = timed(lambda: run_ours(left, right, args), args.repeat)
    rows.append((f"ours (overlay_pieces, {args.workers} threads)", t, ours))
    print(f"  ours: {t:.2f} s")
    if "geopandas" in engines:
        t, res = timed(lambda: run_geopandas(left, right, args), args.repeat)
        rows.append(("geopandas.overlay", t, res))
        print(f"  geopandas: {t:.2f} s")
    if "postgis" in engines:
        try:
            cluster, conn = postgis_setup(left, right, args)
            try:
                for label, sql, table in (("PostGIS ST_Intersection", POSTGIS_PLAIN, "out_plain"),
                                          ("PostGIS + ST_CoveredBy fast path", POSTGIS_FAST, "out_fast")):
                    t, res = timed(lambda sql=sql, table=table: run_postgis(conn, sql, table), args.repeat)
                    rows.append((label, t, res))
                    print(f"  {label}: {t:.2f} s")
            finally:
                conn.close()
                cluster.stop()
                shutil.rmtree(cluster.base_dir, ignore_errors=True)
        except Exception as exc:
            print(f"PostGIS skipped: {exc}")
    if "duckdb" in engines:
        try:
            con = duckdb_setup(left, right)
            for label, sql, table in (("DuckDB spatial ST_Intersection", DUCK_PLAIN, "out_plain"),
                                      ("DuckDB spatial + ST_CoveredBy fast path", DUCK_FAST, "out_fast")):
                t, res = timed(lambda sql=sql, table=table: run_duckdb(con, sql, table), args.repeat)
                rows.append((label, t, res))
                print(f"  {label}: {t:.2f} s")
            con.close()
        except Exception as exc:
            print(f"DuckDB spatial skipped: {exc}")

    ours_t = rows[0][1]
    print()
    print(f"{'engine':44s} {'seconds':>9s} {'pieces':>9s} {'total area (planar m²)':>24s} {'× ours':>8s} {'load':>5s}")
    for (name, t, res), load in zip(rows, LOADS):
        print(f"{name:44s} {t:9.2f} {len(res):9d} {res['area'].sum():24.3f} {t / ours_t:8.2f} {load:5.1f}")
    print()
    ok = True
    for name, _, res in rows[1:]:
        msgs = compare(name, res, ours)
        total_rel = abs(res["area"].sum() - ours["area"].sum()) / ours["area"].sum()
        if total_rel > 1e-9:
            msgs.append(f"total area differs by {total_rel:.2e} relative")
        for m in msgs:
            ok = False
            print(f"MISMATCH {name}: {m}")
    if ok:
        print("all engines: same pieces, same areas (1e-9 relative), same total area")
    others = [(n, t) for n, t, _ in rows[1:]]
    if others:
        gp = [t for n, t in others if n.startswith("geopandas")]
        rest = [(n, t) for n, t in others if not n.startswith("geopandas")]
        if gp:
            print(f"speed-up vs geopandas.overlay: {gp[0] / ours_t:.2f}× (target ≥ 4×)")
        if rest:
            name, fastest = min(rest, key=lambda x: x[1])
            print(f"speed-up vs the fastest other engine ({name}): {fastest / ours_t:.2f}× (target ≥ 1.3×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

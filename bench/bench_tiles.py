"""Benchmark: vector tiles (MVT, WebMercatorQuad) of the 300 000-patch county's DLTB, and imagery tiles.

Servers, each a uvicorn subprocess on 127.0.0.1 with 2 workers (the CPUs here):

- ``yzt-gpkg`` / ``yzt-postgis``: our OGC API Tiles on the GeoPackage / PostGIS store
  (``/ogc/collections/dltb/tiles/WebMercatorQuad/{z}/{y}/{x}``);
- ``tipg``: tipg (PyPI) serving the same PostGIS table (``/collections/bench.dltb/tiles/WebMercatorQuad/{z}/{x}/{y}``);
- ``floor``: the tiles our server made, written to disk beforehand and served as static files (the floor: no
  work but reading a file and sending it).

Tiles: every tile over the county at z10–z12 and a random sample at z13–z16 (the same for every server).
Runs: *cold* — each tile requested for the first time (1 client on one sample, 8 clients on another); *warm* —
the same tiles again, for ``--seconds`` each, with 1 and 8 clients (our servers answer from their cache; tipg
has none, PostgreSQL's buffers are warm). Prints p50 / p95 (ms), tiles/s, and ratios against tipg and the floor.

Imagery: a Cloud-Optimised GeoTIFF made here (``--cog-size`` pixels square, RGB, 2.5 m, EPSG:4547) served as
``basemap`` raster tiles (z13–z18), warm, 1 and 8 clients.

Data: the DLTB of ``python -m data.generate --county-size --patches N --out DIR`` (``--county DIR``; generated
there when missing). Not a test: ``.venv/bin/python bench/bench_tiles.py [--county /tmp/county300k]``.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ogc import Server, free_port  # noqa: E402

OUT = ROOT / "out" / "bench"
HALF = 20037508.342789244


def tile_of(lon, lat, z):
    n = 1 << z
    return int((lon + 180) / 360 * n), int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)


def tiles_over(extent84, zooms, per_zoom, seed):
    rng = random.Random(seed)
    out = []
    for z in zooms:
        x0, y1 = tile_of(extent84[0], extent84[1], z)
        x1, y0 = tile_of(extent84[2], extent84[3], z)
        every = [(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
        out += every if len(every) <= per_zoom else rng.sample(every, per_zoom)
    return out


def load_dltb(county: Path, n: int):
    import geopandas as gpd

    manifest = county / "manifest.yaml"
    if not manifest.is_file():
        print(f"generating the county ({n} patches) into {county} …", flush=True)
        subprocess.run([sys.executable, "-m", "data.generate", "--county-size", "--patches", str(n), "--out",
                        str(county)], cwd=ROOT, check=True)
    from layers.manifest import load_manifest

    spec = load_manifest(manifest).layers["dltb"]
    spec = spec[0] if isinstance(spec, list) else spec
    path = Path(spec.path)
    frame = gpd.read_parquet(path) if path.suffix == ".parquet" else gpd.read_file(path)
    keep = [c for c in ("BSM", "TBBH", "DLBM", "DLMC", "ZLDWDM", "TBMJ", "QSXZ", "KCXS") if c in frame.columns]
    return frame[[*keep, "geometry"]]


def build_stores(frame, pg_url: str, n: int):
    from layers.store import open_store

    epsg = frame.crs.to_epsg()
    meta = {"region_code": "130599", "region_name": "基准县", "epsg": str(epsg)}
    OUT.mkdir(parents=True, exist_ok=True)
    gpkg = OUT / f"tiles_county_{n}.gpkg"
    if not gpkg.is_file():
        t = time.perf_counter()
        with open_store(gpkg) as store:
            store.write_layers({"dltb": frame}, records=[], meta=meta)
        print(f"wrote {gpkg} in {time.perf_counter() - t:.1f} s", flush=True)
    url = f"{pg_url}?schema=bench"
    t = time.perf_counter()
    with open_store(url) as store:
        store.write_layers({"dltb": frame}, records=[], meta=meta)
    print(f"wrote PostGIS schema bench in {time.perf_counter() - t:.1f} s", flush=True)
    return gpkg, url


def make_cog(path: Path, size: int, extent_gk) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    if path.is_file():
        return path
    rng = np.random.default_rng(3)
    low = rng.integers(20, 200, (3, size // 64 + 1, size // 64 + 1)).astype(np.float32)
    res = 2.5
    x0 = extent_gk[0] + 2000
    y1 = extent_gk[3] - 2000
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:4547",
                       photometric="RGB", transform=from_origin(x0, y1, res, res), tiled=True, blockxsize=512,
                       blockysize=512,
                       compress="deflate") as dst:
        for r0 in range(0, size, 512):
            rows = min(512, size - r0)
            yy = (np.arange(r0, r0 + rows) / 64.0)
            xx = np.arange(size) / 64.0
            iy, ix = yy.astype(int), xx.astype(int)
            block = low[:, iy][:, :, ix] + rng.normal(0, 12, (3, rows, size))
            dst.write(np.clip(block, 1, 255).astype("uint8"), window=((r0, r0 + rows), (0, size)))
    subprocess.run([sys.executable, "-c", (
        "import rasterio, sys; from rasterio.shutil import copy;"
        f"copy(r'{tmp}', r'{path}', driver='COG', compress='DEFLATE', blocksize=512)")], check=True)
    tmp.unlink()
    return path


def fetch_all(port, paths, clients, keep=None) -> dict:
    """Each path once, shared among ``clients`` threads; latencies in ms. ``keep``: dict path → body."""
    lat, lock, todo = [], threading.Lock(), list(paths)

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                if not todo:
                    break
                path = todo.pop(0)
            t = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            dt = (time.perf_counter() - t) * 1000
            with lock:
                lat.append(dt)
                if keep is not None and resp.status == 200:
                    keep[path] = body
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return summary(lat, time.perf_counter() - t0)


def run_for(port, paths, clients, seconds) -> dict:
    lat, lock, counter = [], threading.Lock(), [0]
    stop_at = time.perf_counter() + seconds

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while time.perf_counter() < stop_at:
            with lock:
                path = paths[counter[0] % len(paths)]
                counter[0] += 1
            t = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            with lock:
                lat.append((time.perf_counter() - t) * 1000)
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return summary(lat, time.perf_counter() - t0)


def summary(lat, wall) -> dict:
    ms = sorted(lat)
    return {"n": len(ms), "p50": statistics.median(ms) if ms else float("nan"),
            "p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else float("nan"), "rps": len(ms) / wall}


def floor_app():
    """A static tile server (uvicorn --factory bench_tiles:floor_app): reads FLOOR_DIR/{z}/{x}/{y}.pbf."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    return Starlette(routes=[Mount("/t", StaticFiles(directory=os.environ["FLOOR_DIR"]))])


def start(name, args, env, ready, work) -> Server:
    port = free_port()
    args = [a.replace("{port}", str(port)) for a in args]
    env = {k: v.replace("{port}", str(port)) for k, v in env.items()}
    return Server(name, args, env, port, ready, work / f"{name}.log")


def uvicorn(app, workers, factory=False):
    return [sys.executable, "-m", "uvicorn", *(["--factory"] if factory else []), app, "--host", "127.0.0.1",
            "--port", "{port}", "--workers", str(workers), "--log-level", "warning", "--no-access-log"]


def vector_runs(args, ports, paths, sample_a, sample_b, work) -> None:
    """Cold and warm vector tile runs on every server, then the floor; prints the table."""
    rows = {}
    bodies = {}
    for name, port in ports.items():
        pa = [paths[name](*t) for t in sample_a]
        pb = [paths[name](*t) for t in sample_b]
        keep = {} if name == "yzt-gpkg" else None
        rows[(name, "cold", 1)] = fetch_all(port, pa, 1, keep)
        rows[(name, "cold", 8)] = fetch_all(port, pb, 8, keep)
        if keep is not None:
            bodies = keep
        fetch_all(port, pa + pb, 8)  # warm every worker's cache
        fetch_all(port, pa + pb, 8)
        for clients in (1, 8):
            rows[(name, "warm", clients)] = run_for(port, pa + pb, clients, args.seconds)
        for key in [k for k in rows if k[0] == name]:
            r = rows[key]
            print(f"{name:12} {key[1]} clients={key[2]}: n={r['n']:4d} p50={r['p50']:8.1f} ms "
                  f"p95={r['p95']:8.1f} ms {r['rps']:7.1f} tiles/s   (load {os.getloadavg()[0]:.1f})", flush=True)
    # the floor: our tiles as static files
    floor_dir = work / "floor"
    shutil.rmtree(floor_dir, ignore_errors=True)
    for (z, x, y) in sample_a + sample_b:
        data = bodies.get(paths["yzt-gpkg"](z, x, y), b"")
        p = floor_dir / str(z) / str(x) / f"{y}.pbf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    fp = free_port()
    command = [x.replace("{port}", str(fp)) for x in uvicorn("bench_tiles:floor_app", args.workers, True)]
    floor = Server("floor", command,
                   {"FLOOR_DIR": str(floor_dir), "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}"}, fp,
                   paths["floor"](*sample_a[0]), work / "floor.log")
    try:
        fa = [paths["floor"](*t) for t in sample_a + sample_b]
        fetch_all(fp, fa, 8)
        for clients in (1, 8):
            rows[("floor", "warm", clients)] = r = run_for(fp, fa, clients, args.seconds)
            print(f"{'floor':12} warm clients={clients}: n={r['n']:4d} p50={r['p50']:8.1f} ms p95={r['p95']:8.1f} ms "
                  f"{r['rps']:7.1f} tiles/s   (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        floor.stop()
    sizes = [len(b) for b in bodies.values()]
    print(f"\ntile sizes (ours): median {statistics.median(sizes) / 1024:.1f} KiB, max {max(sizes) / 1024:.1f} KiB")

    print("\n| server | run | clients | p50 ms | p95 ms | tiles/s | p95 × tipg | p95 × floor |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (name, run, clients), r in rows.items():
        tipg = rows.get(("tipg", run, clients))
        fl = rows.get(("floor", "warm", clients))
        rt = f"{r['p95'] / tipg['p95']:.2f}" if tipg else "—"
        rf = f"{r['p95'] / fl['p95']:.1f}" if fl and run == "warm" else "—"
        print(f"| {name} | {run} | {clients} | {r['p50']:.1f} | {r['p95']:.1f} | {r['rps']:.1f} | {rt} | {rf} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=300_000)
    ap.add_argument("--county", type=Path, default=Path("/tmp/county300k"))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--per-zoom", type=int, default=20, help="sampled tiles per zoom at z13–z16")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cog-size", type=int, default=8192)
    ap.add_argument("--imagery-only", action="store_true", help="skip the vector tiles")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="seconds to wait after start (the servers build the generalised DLTB: ~30 s per worker)")
    args = ap.parse_args()

    from services.ogc.crs import extent_crs84
    from services.pgcluster import start_cluster

    frame = load_dltb(args.county, args.patches)
    print(f"DLTB: {len(frame)} patches, EPSG:{frame.crs.to_epsg()}; load average {os.getloadavg()}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="yzt-bench-tiles-"))
    cluster = start_cluster(base)
    servers = []
    try:
        gpkg, pg_store = build_stores(frame, cluster.url, len(frame))
        extent_gk = tuple(frame.total_bounds)
        extent84 = extent_crs84(extent_gk, frame.crs.to_epsg())
        work = OUT / "tiles"
        work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work / "tile-cache", ignore_errors=True)  # cold means cold: no tile on disk either
        cog = make_cog(OUT / f"basemap_{args.cog_size}.cog.tif", args.cog_size, extent_gk)
        low = tiles_over(extent84, range(10, 13), 10_000, 1)
        sample_a = low + tiles_over(extent84, range(13, 17), args.per_zoom, 2)
        sample_b = tiles_over(extent84, range(13, 17), args.per_zoom, 3)
        ours_env = {"YZT_BASE_URL": "http://127.0.0.1:{port}", "YZT_WORKDIR": str(work), "PYTHONPATH": str(ROOT)}
        u = cluster.url
        paths = {
            "yzt-gpkg": lambda z, x, y: f"/ogc/collections/dltb/tiles/WebMercatorQuad/{z}/{y}/{x}",
            "yzt-postgis": lambda z, x, y: f"/ogc/collections/dltb/tiles/WebMercatorQuad/{z}/{y}/{x}",
            "tipg": lambda z, x, y: f"/collections/bench.dltb/tiles/WebMercatorQuad/{z}/{x}/{y}",
            "floor": lambda z, x, y: f"/t/{z}/{x}/{y}.pbf",
        }
        servers.append(start("yzt-gpkg", uvicorn("services.app:create_app", args.workers, True),
                             {**ours_env, "YZT_STORE": str(gpkg), "YZT_RASTERS": f'{{"basemap": "{cog}"}}'},
                             "/ogc/collections/dltb", work))
        if not args.imagery_only:
            servers.append(start("yzt-postgis", uvicorn("services.app:create_app", args.workers, True),
                             {**ours_env, "YZT_STORE": pg_store}, "/ogc/collections/dltb", work))
            servers.append(start("tipg", uvicorn("tipg.main:app", args.workers),
                             {"DATABASE_URL": u, "TIPG_DB_SCHEMAS": '["bench"]', "TIPG_DB_SPATIAL_EXTENT": "false",
                              "TIPG_DB_DATETIME_EXTENT": "false"}, "/collections", work))
        ports = {s.name: s.port for s in servers}
        time.sleep(args.settle)
        print(f"servers up ({args.workers} uvicorn workers each; {os.cpu_count()} CPUs); tiles: {len(sample_a)} "
              f"(z10–12 all, z13–16 {args.per_zoom} per zoom) + {len(sample_b)}; load average {os.getloadavg()}\n",
              flush=True)
        if not args.imagery_only:
            vector_runs(args, ports, paths, sample_a, sample_b, work)

        # imagery tiles
        import rasterio

        with rasterio.open(cog) as src:
            from rasterio.warp import transform_bounds

            b84 = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        rtiles = tiles_over(b84, range(13, 19), 40, 5)
        rp = [f"/api/rasters/basemap/tiles/{z}/{x}/{y}.png" for z, x, y in rtiles]
        port = ports["yzt-gpkg"]
        cold = fetch_all(port, rp, 1)
        run_for(port, rp, 8, 6.0)  # every worker holds every tile (the imagery cache is per process)
        print(f"\nimagery (COG {args.cog_size}² px, RGB, z13–18, {len(rp)} tiles): cold 1 client p50 "
              f"{cold['p50']:.1f} / p95 {cold['p95']:.1f} ms")
        for clients in (1, 8):
            r = run_for(port, rp, clients, args.seconds)
            print(f"imagery warm clients={clients}: p50 {r['p50']:.1f} ms, p95 {r['p95']:.1f} ms, "
                  f"{r['rps']:.1f} tiles/s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for s in servers:
            s.stop()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

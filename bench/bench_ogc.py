"""Benchmark: OGC API items requests on a county-size store (300 000 patches).

Serves the same dltb layer three ways, each as a uvicorn subprocess on 127.0.0.1:

- ``yzt-gpkg``: our app on the GeoPackage store;
- ``yzt-postgis``: our app on the PostGIS store;
- ``stock-pygeoapi``: stock pygeoapi 0.24 (``pygeoapi.starlette_app``) with its PostgreSQL provider on the very
  same PostGIS table (needs psycopg2-binary and GeoAlchemy2, which the stock provider imports).

and fires bbox pages of 100 features (``limit=100``, a random ~1 km box holding several hundred patches,
the same sequence for every server) from 1 and from 8 concurrent clients (threads with keep-alive HTTP
connections), for a fixed time each, after a 4 s warm-up with 8 connections per server and mix (so every
worker process has served requests before it is timed). Two request mixes:

- ``crs84``: the default request every OGC client sends — bbox in CRS84, output in CRS84;
- ``native``: ``bbox-crs`` = ``crs`` = EPSG:4547, the storage CRS (no reprojection anywhere).

Prints p50 / p95 latency (ms), requests/s and the throughput ratio against stock pygeoapi. Not a test: run
``.venv/bin/python bench/bench_ogc.py`` (first run builds the stores under out/bench/, ~2 minutes).
Options: --patches N, --seconds S, --workers W (uvicorn workers per server, default 2 = the CPUs here), --keep.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "out" / "bench"
EPSG = 4547
META = {"region_code": "130599", "region_name": "样例县", "epsg": str(EPSG), "zone": "38"}
CODES = ["0101", "0102", "0103", "0201", "0301", "0305", "0404", "0702", "1001", "1006", "1201", "1203"]
NAMES = ["水田", "水浇地", "旱地", "果园", "乔木林地", "灌木林地", "其他草地", "农村宅基地", "城镇村道路用地",
         "农村道路", "空闲地", "田坎"]
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GK_URI = f"http://www.opengis.net/def/crs/EPSG/0/{EPSG}"


# --- data --------------------------------------------------------------------------------------------------

def county_patches(n: int, seed: int = 7):
    """n irregular 18-vertex patches tiling a ~27 × 28 km county (115.00–115.30°E, 37.05–37.30°N)."""
    import geopandas as gpd
    import pandas as pd
    import pyproj
    import shapely

    rng = np.random.default_rng(seed)
    tr = pyproj.Transformer.from_crs(4490, EPSG, always_xy=True)
    x0, y0 = tr.transform(115.0, 37.05)
    x1, y1 = tr.transform(115.3, 37.30)
    cols = int(np.ceil(np.sqrt(n * (x1 - x0) / (y1 - y0))))
    rows = int(np.ceil(n / cols))
    w, h = (x1 - x0) / cols, (y1 - y0) / rows
    k = np.arange(n)
    cx = x0 + (k % cols + 0.5) * w
    cy = y0 + (k // cols + 0.5) * h
    v = 18
    ang = np.linspace(0, 2 * np.pi, v, endpoint=False)[None, :] + rng.uniform(0, 0.3, (n, 1))
    rad = rng.uniform(0.30, 0.48, (n, v))
    xs = cx[:, None] + np.cos(ang) * rad * w
    ys = cy[:, None] + np.sin(ang) * rad * h
    ring = np.stack([xs, ys], axis=-1)
    ring = np.concatenate([ring, ring[:, :1]], axis=1)
    geoms = shapely.polygons(ring)
    code = rng.integers(0, len(CODES), n)
    frame = pd.DataFrame({
        "BSM": [f"{i + 1:08d}" for i in range(n)],
        "TBBH": [str(i + 1) for i in range(n)],
        "DLBM": np.array(CODES)[code], "DLMC": np.array(NAMES)[code],
        "ZLDWDM": [f"130599{100 + (i % 12):03d}{1 + (i // 12) % 30:03d}0000000" for i in range(n)],
        "TBMJ": np.round(shapely.area(geoms), 2),
        "KCXS": np.where(code < 3, 0.05, 0.0),
        "SJNF": 2024,
        "yzt_fid": np.arange(1, n + 1),
    })
    frame["area_m2"] = frame["TBMJ"]
    return gpd.GeoDataFrame(frame, geometry=geoms, crs=EPSG), (x0, y0, x1, y1)


def build_stores(n: int, pg_url: str) -> tuple[Path, str, tuple]:
    from layers.store import open_store

    OUT.mkdir(parents=True, exist_ok=True)
    gpkg = OUT / f"county_{n}.gpkg"
    t = time.perf_counter()
    gdf, extent = county_patches(n)
    print(f"generated {n} patches in {time.perf_counter() - t:.1f} s", flush=True)
    if not gpkg.is_file():
        t = time.perf_counter()
        with open_store(gpkg) as store:
            store.write_layers({"dltb": gdf}, records=[], meta=META)
        print(f"wrote {gpkg} in {time.perf_counter() - t:.1f} s", flush=True)
    url = f"{pg_url}?schema=bench"
    t = time.perf_counter()
    with open_store(url) as store:
        store.write_layers({"dltb": gdf}, records=[], meta=META)
    print(f"wrote PostGIS schema bench in {time.perf_counter() - t:.1f} s", flush=True)
    return gpkg, url, extent


# --- servers -------------------------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name: str, args: list[str], env: dict, port: int, ready_path: str, log: Path):
        self.name, self.port, self.ready_path = name, port, ready_path
        self.log = open(log, "w")  # noqa: SIM115 - the server's log, open while it runs
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 180
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("GET", ready_path)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {log}")
            time.sleep(0.3)

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()


def start_ours(name: str, store: str, workers: int, workdir: Path) -> Server:
    port = free_port()
    env = {"YZT_STORE": store, "YZT_BASE_URL": f"http://127.0.0.1:{port}", "YZT_WORKDIR": str(workdir),
           "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "uvicorn", "--factory", "services.app:create_app", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return Server(name, args, env, port, "/ogc/collections/dltb", workdir / f"{name}.log")


def start_stock(pg_url: str, extent84: list[float], workers: int, workdir: Path) -> Server:
    import yaml

    port = free_port()
    u = urlsplit(pg_url)
    config = {
        "server": {"bind": {"host": "127.0.0.1", "port": port}, "url": f"http://127.0.0.1:{port}",
                   "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8", "languages": ["en-US"],
                   "limits": {"default_items": 10, "max_items": 10000}, "map": {"url": "", "attribution": ""},
                   "admin": False},
        "logging": {"level": "ERROR"},
        "metadata": {"identification": {"title": "stock", "description": "stock", "keywords": ["x"],
                                        "keywords_type": "theme", "terms_of_service": "", "url": "http://x"},
                     "license": {"name": "x", "url": "http://x"}, "provider": {"name": "x", "url": "http://x"},
                     "contact": {"name": "x", "email": "x@x", "url": "http://x", "role": "pointOfContact"}},
        "resources": {"dltb": {
            "type": "collection", "title": "dltb", "description": "dltb", "keywords": ["dltb"], "links": [],
            "extents": {"spatial": {"bbox": extent84, "crs": CRS84}},
            "providers": [{
                "type": "feature", "name": "PostgreSQL",
                "data": {"host": u.hostname, "port": u.port, "dbname": u.path.strip("/"), "user": u.username,
                         "password": "", "search_path": ["bench", "public"]},
                "id_field": "fid", "table": "dltb", "geom_field": "geom",
                "storage_crs": GK_URI, "crs": [CRS84, "http://www.opengis.net/def/crs/EPSG/0/4490", GK_URI]}]}},
    }
    cfg = workdir / "stock-config.yml"
    oas = workdir / "stock-openapi.yml"
    cfg.write_text(yaml.safe_dump(config, allow_unicode=True))
    env = {"PYGEOAPI_CONFIG": str(cfg), "PYGEOAPI_OPENAPI": str(oas)}
    cli = Path(sys.executable).with_name("pygeoapi")
    done = subprocess.run([str(cli), "openapi", "generate", str(cfg), "--output-file", str(oas)],
                          env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pygeoapi openapi generate failed: {done.stderr[-2000:]}")
    args = [sys.executable, "-m", "uvicorn", "pygeoapi.starlette_app:APP", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return Server("stock-pygeoapi", args, env, port, "/collections/dltb", workdir / "stock.log")


# --- load ------------------------------------------------------------------------------------------------------

def bbox_paths(prefix: str, extent_gk, mix: str, count: int, seed: int = 11, easting_first: bool = False) -> list[str]:
    """Request paths: random ~1.1 km × 1.1 km boxes inside the county, limit=100.

    ``easting_first``: write a GK bbox easting first. Stock pygeoapi passes a ``bbox-crs`` = storage CRS box
    straight to ST_MakeEnvelope(x, y …), i.e. it needs the GIS order instead of EPSG:4547's (northing,
    easting); we give it what it needs so that it returns the same features and does the same work."""
    import pyproj

    tr = pyproj.Transformer.from_crs(EPSG, 4490, always_xy=True)
    rng = random.Random(seed)
    x0, y0, x1, y1 = extent_gk
    out = []
    for _ in range(count):
        cx, cy = rng.uniform(x0 + 1000, x1 - 1000), rng.uniform(y0 + 1000, y1 - 1000)
        gx0, gy0, gx1, gy1 = cx - 550, cy - 550, cx + 550, cy + 550
        if mix == "crs84":
            lon0, lat0 = tr.transform(gx0, gy0)
            lon1, lat1 = tr.transform(gx1, gy1)
            q = {"bbox": f"{lon0:.6f},{lat0:.6f},{lon1:.6f},{lat1:.6f}", "limit": 100}
        elif easting_first:
            q = {"bbox": f"{gx0:.2f},{gy0:.2f},{gx1:.2f},{gy1:.2f}", "bbox-crs": GK_URI, "crs": GK_URI, "limit": 100}
        else:  # EPSG:4547 axis order: northing, easting
            q = {"bbox": f"{gy0:.2f},{gx0:.2f},{gy1:.2f},{gx1:.2f}", "bbox-crs": GK_URI, "crs": GK_URI, "limit": 100}
        out.append(f"{prefix}/collections/dltb/items?{urlencode(q)}")
    return out


def run_load(port: int, paths: list[str], clients: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    counter = [0]

    def worker(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.perf_counter() < stop_at:
            with lock:
                path = paths[counter[0] % len(paths)]
                counter[0] += 1
            t = time.perf_counter()
            try:
                conn.request("GET", path, headers={"Accept": "application/geo+json"})
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200 and body[:1] == b"{"
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            dt = time.perf_counter() - t
            with lock:
                if ok:
                    lat.append(dt)
                else:
                    errors[0] += 1
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    ms = sorted(v * 1000 for v in lat)
    return {"n": len(ms), "errors": errors[0], "p50": statistics.median(ms) if ms else float("nan"),
            "p95": ms[min(len(ms) - 1, int(0.95 * len(ms)))] if ms else float("nan"),
            "rps": len(ms) / wall}


def check_same(ports: dict[str, tuple[int, str]], paths_by: dict[str, list[str]]) -> None:
    """Do the servers return the same ids and numberMatched? (Stock pygeoapi returns nothing for a CRS84
    bbox on this data: it carries the box into EPSG:4547 as (northing, easting) and hands that to
    ST_MakeEnvelope as (x, y).)"""
    for i in range(5):
        seen = {}
        for name, (port, _) in ports.items():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("GET", paths_by[name][i])
            body = json.loads(conn.getresponse().read())
            seen[name] = (body.get("numberMatched"), [f["id"] for f in body["features"]])
            conn.close()
        values = list(seen.values())
        if any(v != values[0] for v in values):
            print(f"  ! request {i}: servers disagree: { {k: (v[0], v[1][:5]) for k, v in seen.items()} }")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=300_000)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the PostGIS cluster directory")
    args = ap.parse_args()

    from services.ogc.crs import extent_crs84
    from tests.pgcluster import start_cluster

    base = Path(tempfile.mkdtemp(prefix="yzt-bench-pg-"))
    cluster = start_cluster(base)
    servers: list[Server] = []
    try:
        gpkg, pg_store, extent_gk = build_stores(args.patches, cluster.url)
        work = OUT / "serve"
        work.mkdir(parents=True, exist_ok=True)
        extent84 = extent_crs84(extent_gk, EPSG)
        servers.append(start_ours("yzt-gpkg", str(gpkg), args.workers, work))
        servers.append(start_ours("yzt-postgis", pg_store, args.workers, work))
        servers.append(start_stock(cluster.url, extent84, args.workers, work))
        ports = {s.name: (s.port, "/ogc" if s.name.startswith("yzt") else "") for s in servers}
        print(f"\nservers up ({args.workers} uvicorn worker(s) each); machine: {os.cpu_count()} CPUs; "
              f"{args.seconds:.0f} s per run\n", flush=True)
        for mix in ("crs84", "native"):
            paths_by = {name: bbox_paths(prefix, extent_gk, mix, 2000, easting_first=name == "stock-pygeoapi")
                        for name, (_, prefix) in ports.items()}
            check_same(ports, paths_by)
            rows = {}
            for name, (port, _) in ports.items():  # warm every uvicorn worker of every server alike: 8 connections
                run_load(port, paths_by[name][-200:], 8, 4.0)
            for clients in (1, 8):
                for name, (port, _) in ports.items():
                    rows[(name, clients)] = r = run_load(port, paths_by[name], clients, args.seconds)
                    print(f"[{mix:6}] {name:15} clients={clients}: n={r['n']:5d} err={r['errors']} "
                          f"p50={r['p50']:8.1f} ms  p95={r['p95']:8.1f} ms  {r['rps']:7.1f} req/s", flush=True)
            print(f"\n  {mix}: bbox pages of 100 features")
            print(f"  {'server':15} {'clients':>7} {'p50 ms':>9} {'p95 ms':>9} {'req/s':>8} {'× stock':>8}")
            for clients in (1, 8):
                stock = rows[("stock-pygeoapi", clients)]["rps"]
                for name in ports:
                    r = rows[(name, clients)]
                    ratio = r["rps"] / stock if stock else float("inf")
                    print(f"  {name:15} {clients:7d} {r['p50']:9.1f} {r['p95']:9.1f} {r['rps']:8.1f} {ratio:8.1f}")
            print(flush=True)
    finally:
        for s in servers:
            s.stop()
        cluster.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Fixtures for the OGC API tests: a small synthetic region written through the store API to a GeoPackage and
to PostGIS, and the app served by a real uvicorn on a free 127.0.0.1 port (GDAL and OWSLib need HTTP).

The data (EPSG:4547, around 115.09–115.12°E, 37.14–37.16°N):
- ``dltb``: a 20 × 20 grid of 90 m squares with 10 m gaps; row k (fid k+1) has DLBM = CODES[k % 8],
  TBMJ = 8100 + k, KCXS null when k % 5 == 0, SJNF 2023/2024 alternating, ZLDWDM by k % 3.
- ``monitoring`` (dates), ``cameras`` (points), ``flagged_patches`` (Chinese text, JSON text, booleans).
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

X0, Y0, N = 597000.0, 4113000.0, 20
CODES = ["0101", "0102", "0103", "0201", "0301", "0702", "1001", "1201"]
NAMES = ["水田", "水浇地", "旱地", "果园", "乔木林地", "农村宅基地", "城镇村道路用地", "空闲地"]
META = {"region_code": "130599", "region_name": "样例县", "epsg": "4547", "zone": "38"}


def make_layers() -> dict[str, gpd.GeoDataFrame]:
    from layers.area import ellipsoidal_area

    rows, boxes = [], []
    for j in range(N):
        for i in range(N):
            k = j * N + i
            boxes.append(shapely.box(X0 + i * 100, Y0 + j * 100, X0 + i * 100 + 90, Y0 + j * 100 + 90))
            rows.append({"BSM": f"{k + 1:06d}", "DLBM": CODES[k % 8], "DLMC": NAMES[k % 8], "TBMJ": 8100.0 + k,
                         "KCXS": None if k % 5 == 0 else round(0.05 * (k % 3), 2), "SJNF": 2023 + (k % 2),
                         "ZLDWDM": f"13059910{k % 3}0010000000", "yzt_fid": k + 1})
    dltb = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=boxes, crs=4547)
    dltb["KCXS"] = dltb["KCXS"].astype(float)
    dltb["area_m2"] = np.round(ellipsoidal_area(dltb.geometry.values, dltb.crs), 2)
    monitoring = gpd.GeoDataFrame(
        {"JCBH": ["J1", "J2", "J3"], "QSX": [dt.date(2024, 1, 1), dt.date(2024, 3, 1), None],
         "HSX": [dt.date(2024, 6, 1)] * 3, "SOURCE": ["satellite", "camera", "drone"], "yzt_fid": [1, 2, 3]},
        geometry=[shapely.box(X0 + 10, Y0 + 10, X0 + 300, Y0 + 300),
                  shapely.box(X0 + 1000, Y0 + 1000, X0 + 1200, Y0 + 1100),
                  shapely.box(X0 + 500, Y0 + 1500, X0 + 700, Y0 + 1800)], crs=4547)
    cameras = gpd.GeoDataFrame({"SXTBH": ["C1", "C2"], "GD": [30.0, 45.5], "yzt_fid": [1, 2]},
                               geometry=[shapely.Point(X0 + 50, Y0 + 50), shapely.Point(X0 + 1500, Y0 + 1500)],
                               crs=4547)
    flagged = gpd.GeoDataFrame(
        {"JCBH": ["J1", "J2"], "source_ids": ['["J1"]', '["J2", "J9"]'], "verdict": ["suspected_illegal", "legal"],
         "verdict_zh": ["未批先建", "合法"], "reviewed": [False, True], "area_m2": [84100.0, 20000.0]},
        geometry=monitoring.geometry.iloc[:2].values, crs=4547)
    return {"dltb": dltb, "monitoring": monitoring, "cameras": cameras, "flagged_patches": flagged}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``uvicorn --factory services.app:create_app`` in a subprocess for one store (settings from YZT_ env).

    A subprocess, not a thread: GDAL (pyogrio) holds the GIL while it fetches, which would starve a server
    thread in the same process."""

    def __init__(self, store: str, workdir):
        import os
        import subprocess
        import sys
        from pathlib import Path

        import httpx

        root = Path(__file__).resolve().parent.parent
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.root}/ogc"
        env = {**os.environ, "YZT_STORE": str(store), "YZT_BASE_URL": self.root, "YZT_WORKDIR": str(workdir),
               "PYTHONPATH": str(root)}
        self.log = open(Path(workdir) / "uvicorn.log", "w")  # noqa: SIM115 - the child's log, open while it runs
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "services.app:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"], env=env, cwd=root, stdout=self.log,
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.base + "/collections", timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the OGC app did not start; see {self.log.name}")
            time.sleep(0.2)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except Exception:
                self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def ogc_layers():
    return make_layers()


@pytest.fixture(scope="session")
def ogc_gpkg(tmp_path_factory, ogc_layers) -> str:
    from layers.store import open_store

    path = tmp_path_factory.mktemp("ogc") / "store.gpkg"
    with open_store(path) as store:
        store.write_layers(ogc_layers, records=[], meta=META)
    return str(path)


@pytest.fixture(scope="session")
def ogc_pg(pg_url, ogc_layers) -> str:
    import psycopg

    from layers.store import open_store

    schema = f"ogc_{uuid.uuid4().hex[:10]}"
    url = f"{pg_url}?schema={schema}"
    with open_store(url) as store:
        store.write_layers(ogc_layers, records=[], meta=META)
    yield url
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def served_gpkg(ogc_gpkg, tmp_path_factory):
    s = Served(ogc_gpkg, tmp_path_factory.mktemp("ogc_work"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def served_pg(ogc_pg, tmp_path_factory):
    s = Served(ogc_pg, tmp_path_factory.mktemp("ogc_work_pg"))
    yield s
    s.stop()


@pytest.fixture(scope="session", params=["gpkg", "postgis"])
def served(request):
    """The app on the GeoPackage store and on the PostGIS store (each test runs against both)."""
    return request.getfixturevalue("served_gpkg" if request.param == "gpkg" else "served_pg")

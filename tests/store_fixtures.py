"""Helpers shared by the store and ingest tests: synthetic layers and load records in EPSG:4547."""

from __future__ import annotations

import datetime as dt

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.area import ellipsoidal_area
from layers.records import LoadRecord

EPSG = 4547
X0, Y0 = 520_000.0, 4_110_000.0
META = {"region_code": "130599", "region_name": "样例县", "epsg": str(EPSG), "zone": "38"}


def make_polygons(n: int, seed: int = 0) -> gpd.GeoDataFrame:
    """Irregular polygons (some with holes, some multi-part) with every column kind the store keeps."""
    rng = np.random.default_rng(seed)
    cx = X0 + rng.uniform(0, 20_000, n)
    cy = Y0 + rng.uniform(0, 20_000, n)
    geoms = []
    for i in range(n):
        k = 5 + i % 7
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(20, 60, k)
        ring = np.column_stack([cx[i] + r * np.cos(ang), cy[i] + r * np.sin(ang)]) + rng.uniform(0, 1e-3, (k, 2))
        poly = shapely.make_valid(shapely.Polygon(ring))
        if poly.geom_type != "Polygon":  # keep the biggest piece of a self-touching star
            poly = max((p for p in getattr(poly, "geoms", [poly]) if p.geom_type == "Polygon"), key=lambda p: p.area)
        if i % 5 == 0:
            poly = poly.difference(shapely.Point(cx[i], cy[i]).buffer(5))
        if i % 11 == 0:
            parts = [*getattr(poly, "geoms", [poly]), shapely.box(cx[i] + 100, cy[i], cx[i] + 110.123, cy[i] + 7.5)]
            poly = shapely.MultiPolygon(parts)
        geoms.append(shapely.make_valid(poly))
    geoms = [g if g.geom_type in ("Polygon", "MultiPolygon") else shapely.box(0, 0, 1, 1) for g in geoms]
    village = [f"1305991{i % 3:02d}{i % 7:03d}" for i in range(n)]
    frame = gpd.GeoDataFrame({
        "BSM": [f"13059921{i:010d}" for i in range(n)],
        "DLBM": rng.choice(["0101", "0102", "0103", "0702", "1201", "0603"], n),
        "ZLDWDM": [v + "0000000" for v in village],
        "ZLDWMC": rng.choice(["东关村", "西营村", "南街村（一组）", "O'Brien \"庄\"", "多行\n名称", ""], n),
        "TBMJ": np.round(rng.uniform(100, 9000, n), 2),
        "KCXS": rng.choice([0.0, 0.0325, 0.1214], n),
        "SJNF": np.full(n, 2024, dtype=np.int64),
        "GDPDJB": pd.array([None if i % 4 == 0 else i % 5 + 1 for i in range(n)], dtype="Int64"),
        "FRDBS": [None if i % 6 == 0 else "1" for i in range(n)],
        "QSX": [dt.date(2023, 1 + i % 12, 1 + i % 28) if i % 9 else None for i in range(n)],
        "checked": [bool(i % 2) for i in range(n)],
        "yzt_fid": np.arange(1, n + 1, dtype=np.int64),
    }, geometry=geoms, crs=EPSG)
    frame["area_m2"] = ellipsoidal_area(frame.geometry, EPSG)
    return frame


def make_points(n: int) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"SXTBH": [f"CAM{i:03d}" for i in range(n)], "GD": np.linspace(10, 40, n),
                             "yzt_fid": np.arange(1, n + 1)},
                            geometry=shapely.points(np.linspace(X0, X0 + 5000, n), np.full(n, Y0 + 123.456)),
                            crs=EPSG)


def record(layer: str, load_id: str, rows: int) -> LoadRecord:
    return LoadRecord(layer=layer, source_path=f"/src/{layer}.shp", source_layer=None, sha256="0" * 64,
                      source_crs="EPSG:4547", crs_resolution="prj", transformation="none", target_crs="EPSG:4547",
                      encoding="gbk", field_mapping={"DLBM": "地类编码", "TBMJ": "TBMJ"}, code_set="sandiao",
                      rows_read=rows, rows_written=rows, repaired=1, loaded_at="2025-01-01T00:00:00+00:00",
                      load_id=load_id, version="0.1.0")


def as_multi(geoms) -> np.ndarray:
    geoms = np.asarray(geoms, dtype=object)
    return np.array([shapely.MultiPolygon([g]) if g is not None and g.geom_type == "Polygon" else g
                     for g in geoms], dtype=object)


def assert_same_layer(got: gpd.GeoDataFrame, want: gpd.GeoDataFrame) -> None:
    assert list(got.columns) == [c for c in want.columns if c != "geometry"] + ["geometry"]  # geometry last
    assert len(got) == len(want)
    for col in want.columns:
        if col == "geometry":
            continue
        g, w = got[col].tolist(), want[col].tolist()
        norm = [None if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))) else v for v in w]
        normg = [None if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))) else v for v in g]
        assert normg == norm, col
    want_wkb = shapely.to_wkb(as_multi(want.geometry.values))
    got_wkb = shapely.to_wkb(np.asarray(got.geometry.values, dtype=object))
    assert (want_wkb == got_wkb).all()
    np.testing.assert_allclose(ellipsoidal_area(got.geometry, EPSG), want["area_m2"], rtol=0, atol=0.01)


def stage_tables(url: str) -> list[str]:
    """The stage tables (``_yzt_stage_…``) of the PostGIS schema of ``url``, as the server lists them."""
    import psycopg

    base, schema = url.split("?schema=")
    with psycopg.connect(base) as conn:
        return [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            r"WHERE n.nspname = %s AND c.relkind = 'r' AND c.relname LIKE '\_yzt\_stage\_%%' ORDER BY 1",
            (schema,))]

"""Tiny in-code fixtures for the layers tests: patches in the sample county's zone, written to tmp_path.

Everything is built in EPSG:4547 (CGCS2000 3° GK CM 114E, the sample county's store CRS) around
(590000, 4110000) ≈ 115.01°E 37.12°N, then written in whatever CRS / format / encoding a test needs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import shapely
import yaml
from pyproj import Transformer

from layers.manifest import load_manifest

X0, Y0 = 590_000.0, 4_110_000.0
TARGET = 4547
GEOD = pyproj.Geod(a=6378137.0, rf=298.257222101)


def patch_boxes(nx: int = 4, ny: int = 3, size: float = 90.0, step: float = 100.0) -> list:
    return [shapely.box(X0 + i * step, Y0 + j * step, X0 + i * step + size, Y0 + j * step + size)
            for j in range(ny) for i in range(nx)]


def county_polygon() -> shapely.Polygon:
    return shapely.box(X0 - 2000, Y0 - 2000, X0 + 3000, Y0 + 3000)


def geodesic_area(geom, epsg: int = TARGET) -> float:
    """Independent reference: pyproj.Geod on the CGCS2000 ellipsoid over a ring densified to 1 m."""
    tr = Transformer.from_crs(epsg, 4490, always_xy=True)
    total = 0.0
    for poly in shapely.get_parts(shapely.segmentize(geom, 1.0)):
        for k, ring in enumerate([poly.exterior, *poly.interiors]):
            xy = np.asarray(ring.coords)
            lon, lat = tr.transform(xy[:, 0], xy[:, 1])
            area, _ = GEOD.polygon_area_perimeter(lon, lat)
            total += abs(area) if k == 0 else -abs(area)
    return total


def xzq_frame(crs=4490) -> gpd.GeoDataFrame:
    gdf = gpd.GeoDataFrame({"XZQDM": ["130599"], "XZQMC": ["样例县"]}, geometry=[county_polygon()], crs=TARGET)
    return gdf.to_crs(crs)


def dltb_frame(n: int | None = None, boxes=None) -> gpd.GeoDataFrame:
    """Survey patches with consistent TBMJ / KCXS / KCMJ / TBDLMJ (TBMJ = the patch's ellipsoidal area)."""
    boxes = boxes if boxes is not None else patch_boxes()
    if n is not None:
        boxes = boxes[:n]
    n = len(boxes)
    tbmj = np.round([geodesic_area(b) for b in boxes], 2)
    kcxs = np.array([0.05 if i % 2 == 0 else 0.0 for i in range(n)])
    kcmj = np.round(tbmj * kcxs, 2)
    codes = ["0101", "0103", "0702", "1006", "0301", "05H1"]
    return gpd.GeoDataFrame({
        "BSM": [f"BSM{i + 1:04d}" for i in range(n)],
        "DLBM": [codes[i % len(codes)] for i in range(n)],
        "DLMC": [["水田", "旱地", "农村宅基地", "农村道路", "乔木林地", "商业服务业设施用地"][i % 6] for i in range(n)],
        "ZLDWDM": ["1305991000010000000"] * n,
        "ZLDWMC": ["张庄村"] * n,
        "TBMJ": tbmj, "KCXS": kcxs, "KCMJ": kcmj, "TBDLMJ": np.round(tbmj - kcmj, 2),
    }, geometry=boxes, crs=TARGET)


def write(gdf: gpd.GeoDataFrame, path: Path, **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.suffix == ".parquet":
            gdf.to_parquet(path)
        else:
            gdf.to_file(path, **kwargs)
    return path


def manifest(folder: Path, layers: dict, crs="auto", options=None, code="130599"):
    doc = {"region": {"code": code, "name": "样例县"}, "crs": crs, "layers": layers}
    if options:
        doc["options"] = options
    path = Path(folder) / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_manifest(path)


def write_xzq(folder: Path, crs=4490) -> Path:
    return write(xzq_frame(crs), Path(folder) / "xzq.gpkg", layer="xzq")


def coords_of(gdf) -> np.ndarray:
    return shapely.get_coordinates(np.asarray(gdf.geometry.values))

"""The sample county re-expressed the way bureau files really arrive (not committed; written on demand).

``write_messy_variants(out_dir)`` writes the same county so that ingesting it must give the same store as
data/sample (areas to 0.01 m², points to a few mm):

- dltb: a GBK shapefile with no .cpg (and language-driver byte 0 in the DBF header, so nothing declares the
  encoding), Chinese alias field names cut to the DBF's 10 bytes (地类编码, 图斑面积, 坐落单位代 …); four
  truncated names are mapped in the manifest's ``fields``, the rest resolve through layers.fields.ALIASES.
- yjjbnt: a shapefile with no .prj and 8-digit eastings (zone 38 prefixed, EPSG:4526 coordinates).
- stbhhx: Xian 1980 / 3-degree GK CM 114E (EPSG:2383), made by running the manifest's 7-parameter
  transformation (layers.datum.transformer_for) backwards; the loader runs it forwards.
- parcels: a GBK shapefile (declared by its .cpg) in EPSG:4526 (prefixed, with .prj), Chinese field names, with the same two bow-tie
  (self-intersecting) rings as the clean sample, so both repair to the same polygons.
- cameras: GeoJSON lon/lat in GCJ-02 (``coords: gcj02``), forward formula from layers.webcoords.
- every other role: the clean formats.

The negative variants each write a small manifest (xzq + one yjjbnt layer) whose yjjbnt must be handled as
NEGATIVE_VARIANTS says.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import shapely
from pyproj import Transformer

from layers.datum import transformer_for
from layers.manifest import DatumTransform
from layers.webcoords import wgs84_to_gcj02

# Xian 1980 → CGCS2000 7 parameters (coordinate frame; m, arc-seconds, ppm) of the kind a provincial
# surveying institute publishes for a county; plausible magnitudes, not an official set.
XIAN80_HELMERT = {"x": 24.953, "y": -122.982, "z": -93.471, "rx": 0.0212, "ry": -0.2498, "rz": -0.1345,
                  "s": 1.0712, "convention": "coordinate_frame"}
XIAN80_EPSG = 2383  # Xian 1980 / 3-degree Gauss-Kruger CM 114E (unprefixed)
DLTB_ALIASES = {  # standard code → field name in the messy DBF (≤ 10 bytes in GBK)
    "BSM": "标识码", "TBBH": "图斑编号", "DLBM": "地类编码", "DLMC": "地类名称", "QSXZ": "权属性质",
    "QSDWDM": "权属代码", "QSDWMC": "权属单位名", "ZLDWDM": "坐落单位代", "ZLDWMC": "坐落单位",
    "TBMJ": "图斑面积", "KCDLBM": "扣除地类编", "KCXS": "田坎系数", "KCMJ": "扣除面积", "TBDLMJ": "地类面积",
    "GDLX": "耕地类型", "GDPDJB": "坡度级别", "CZCSXM": "城镇村属性", "SJNF": "数据年份",
}
DLTB_MANIFEST_FIELDS = {"QSDWMC": "权属单位名", "ZLDWDM": "坐落单位代", "KCDLBM": "扣除地类编", "CZCSXM": "城镇村属性"}
PARCEL_ALIASES = {"ZDDM": "宗地代码", "TDYT": "土地用途", "GDRQ": "供地日期", "JGRQ": "竣工日期",
                  "PZWH": "批准文号", "XZQDM": "行政区代码", "MJ": "面积"}


def _county(county, seed, scale):
    if county is not None:
        return county
    from .generate import build_county, DEFAULT_SEED
    return build_county(seed=DEFAULT_SEED if seed is None else seed, scale=scale)


def _write_no_crs(gdf: gpd.GeoDataFrame, path: Path, **kwargs) -> None:
    """Write a layer without CRS on purpose (no .prj is the point of the variant)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        pyogrio.write_dataframe(gdf, path, **kwargs)
    path.with_suffix(".prj").unlink(missing_ok=True)


def _fresh(out_dir) -> Path:
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def _shift(geoms, fn):
    return shapely.transform(np.asarray(geoms, dtype=object), fn)


def blank_dbf_language(dbf: Path) -> None:
    """Zero the DBF header's language-driver byte (offset 29): nothing then declares the encoding."""
    with open(dbf, "r+b") as fh:
        fh.seek(29)
        fh.write(b"\x00")


def xian80_transformer() -> Transformer:
    """The forward transformation the messy manifest declares (Xian 1980 GK CM114E → EPSG:4547)."""
    return transformer_for(f"EPSG:{XIAN80_EPSG}", DatumTransform("helmert", dict(XIAN80_HELMERT)), "EPSG:4547")


def to_xian80(geoms) -> np.ndarray:
    """EPSG:4547 geometry → Xian 1980 GK CM114E coordinates, by the declared transformation run backwards."""
    tr = xian80_transformer()

    def inv(xy):
        # PROJ's inverse Helmert is a first-order approximation (sub-mm, not exact): refine by fixed-point
        # iteration on the forward map so that forward(result) reproduces the input to ~1e-9 m.
        x, y = tr.transform(xy[:, 0], xy[:, 1], direction="INVERSE")
        for _ in range(6):
            fx, fy = tr.transform(x, y)
            x, y = x + (xy[:, 0] - fx), y + (xy[:, 1] - fy)
        return np.column_stack([x, y])

    return _shift(geoms, inv)


def to_gcj02(points_4547) -> np.ndarray:
    """EPSG:4547 points → GCJ-02 lon/lat (CGCS2000 taken as WGS 84)."""
    tr = Transformer.from_crs(4547, 4490, always_xy=True)

    def fwd(xy):
        lon, lat = tr.transform(xy[:, 0], xy[:, 1])
        glon, glat = wgs84_to_gcj02(lon, lat)
        return np.column_stack([glon, glat])

    return _shift(points_4547, fwd)


def _clean_copy(county, out: Path, roles) -> dict:
    """Write roles in their clean formats (as data/sample does); returns manifest entries."""
    from .generate import FILES, _write, write_monitoring
    entries: dict = {}
    for role in roles:
        if role == "monitoring":
            entries["monitoring"] = write_monitoring(county.layers["monitoring"], out)
            continue
        name, layer, driver = FILES[role]
        gdf = county.layers[role]
        if role == "cameras":
            gdf = gdf.to_crs(4490)
        _write(gdf, out / name, layer, driver)
        entry = {"path": name, "layer": layer} if layer else name
        entries[role] = [entry] if role == "approvals" else entry
    return entries


def _manifest(out: Path, layers: dict, note: str) -> Path:
    from .generate import REGION_CODE, REGION_NAME, _dump
    doc = {"region": {"code": REGION_CODE, "name": REGION_NAME}, "crs": "auto", "layers": layers}
    path = out / "manifest.yaml"
    path.write_text(note + _dump(doc), encoding="utf-8")
    return path


def write_messy_variants(out_dir, county=None, *, seed: int | None = None, scale: float = 1.0) -> Path:
    """Write the messy re-expression of the county (see module docstring); returns its manifest path."""
    from .generate import public
    county = _county(county, seed, scale)
    out = _fresh(out_dir)
    L = county.layers
    layers = _clean_copy(county, out, ["xzq", "dltb_prev", "czkfbj", "ghfq", "approvals", "monitoring"])

    # dltb: GBK shapefile, no .cpg, blank language byte, alias / truncated names
    d = public(L["dltb"]).rename(columns=DLTB_ALIASES)
    pyogrio.write_dataframe(d, out / "dltb.shp", encoding="GBK")
    (out / "dltb.cpg").unlink(missing_ok=True)
    blank_dbf_language(out / "dltb.dbf")
    layers["dltb"] = {"path": "dltb.shp", "fields": dict(DLTB_MANIFEST_FIELDS)}

    # yjjbnt: no .prj, 8-digit (zone-prefixed) eastings
    y = public(L["yjjbnt"])
    y = gpd.GeoDataFrame(y.drop(columns="geometry"),
                         geometry=_shift(y.geometry.values, lambda xy: xy + [38_000_000.0, 0.0]), crs=None)
    _write_no_crs(y, out / "yjjbnt.shp", encoding="UTF-8")
    layers["yjjbnt"] = "yjjbnt.shp"

    # stbhhx: Xian 1980 GK CM114E, with the 7 parameters in the manifest
    s = public(L["stbhhx"])
    s = gpd.GeoDataFrame(s.drop(columns="geometry"), geometry=to_xian80(s.geometry.values),
                         crs=f"EPSG:{XIAN80_EPSG}")
    pyogrio.write_dataframe(s, out / "stbhhx_xian80.gpkg", layer="STBHHX")
    layers["stbhhx"] = {"path": "stbhhx_xian80.gpkg", "layer": "STBHHX",
                        "transform": {"helmert": dict(XIAN80_HELMERT)}}

    # parcels: prefixed zone-38 coordinates with .prj, Chinese field names, bow-ties kept
    z = public(L["parcels"]).rename(columns=PARCEL_ALIASES)
    z = gpd.GeoDataFrame(z.drop(columns="geometry"),
                         geometry=_shift(z.geometry.values, lambda xy: xy + [38_000_000.0, 0.0]), crs="EPSG:4526")
    pyogrio.write_dataframe(z, out / "zd.shp", encoding="GBK")  # with its .cpg: declared, unlike dltb
    layers["parcels"] = "zd.shp"

    # cameras: GCJ-02 lon/lat GeoJSON
    c = public(L["cameras"])
    c = gpd.GeoDataFrame(c.drop(columns="geometry"), geometry=to_gcj02(c.geometry.values), crs="OGC:CRS84")
    pyogrio.write_dataframe(c, out / "cameras_amap.geojson", driver="GeoJSON")
    layers["cameras"] = {"path": "cameras_amap.geojson", "coords": "gcj02"}

    order = ["xzq", "dltb", "dltb_prev", "yjjbnt", "stbhhx", "czkfbj", "ghfq", "approvals", "parcels",
             "monitoring", "cameras"]
    return _manifest(out, {k: layers[k] for k in order if k in layers},
                     "# 样例县, re-expressed messily (data/variants.py): must ingest to the same store as "
                     "data/sample.\n")


# ---------------------------------------------------------------------------------------------------------
# Negative variants: one bad yjjbnt beside the clean xzq
# ---------------------------------------------------------------------------------------------------------

def _negative(out_dir, county, seed, scale, name: str, yjjbnt_entry, writer) -> Path:
    county = _county(county, seed, scale)
    out = _fresh(out_dir)
    layers = _clean_copy(county, out, ["xzq"])
    from .generate import public
    writer(public(county.layers["yjjbnt"]), out)
    layers["yjjbnt"] = yjjbnt_entry
    info = NEGATIVE_VARIANTS[name]
    return _manifest(out, layers, f"# negative variant {name!r}: {info['description']}\n"
                                  f"# expected: {info['expect']}\n")


def write_wrong_zone_variant(out_dir, county=None, *, seed: int | None = None, scale: float = 1.0) -> Path:
    """yjjbnt whose coordinates are zone 39 (EPSG:4548) but whose file says EPSG:4547."""
    def writer(y, out):
        tr = Transformer.from_crs(4547, 4548, always_xy=True)
        geoms = _shift(y.geometry.values, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
        g = gpd.GeoDataFrame(y.drop(columns="geometry"), geometry=geoms, crs="EPSG:4547")
        pyogrio.write_dataframe(g, out / "yjjbnt.gpkg", layer="YJJBNT")
    return _negative(out_dir, county, seed, scale, "wrong_zone", {"path": "yjjbnt.gpkg", "layer": "YJJBNT"},
                     writer)


def write_swapped_axes_variant(out_dir, county=None, *, seed: int | None = None, scale: float = 1.0) -> Path:
    """yjjbnt with (northing, easting) stored as (x, y), labelled EPSG:4547."""
    def writer(y, out):
        geoms = _shift(y.geometry.values, lambda xy: xy[:, ::-1].copy())
        g = gpd.GeoDataFrame(y.drop(columns="geometry"), geometry=geoms, crs="EPSG:4547")
        pyogrio.write_dataframe(g, out / "yjjbnt.gpkg", layer="YJJBNT")
    return _negative(out_dir, county, seed, scale, "swapped_axes", {"path": "yjjbnt.gpkg", "layer": "YJJBNT"},
                     writer)


def write_no_prj_6digit_variant(out_dir, county=None, *, seed: int | None = None, scale: float = 1.0) -> Path:
    """yjjbnt shapefile without .prj and with 6-digit (unprefixed) eastings: the zone follows from the region."""
    def writer(y, out):
        g = gpd.GeoDataFrame(y.drop(columns="geometry"), geometry=y.geometry.values, crs=None)
        _write_no_crs(g, out / "yjjbnt.shp", encoding="UTF-8")
    return _negative(out_dir, county, seed, scale, "no_prj_6digit", "yjjbnt.shp", writer)


NEGATIVE_VARIANTS = {
    "wrong_zone": {
        "writer": write_wrong_zone_variant,
        "description": "yjjbnt coordinates are CGCS2000 zone 39 (CM 117°E, EPSG:4548) but the file declares "
                       "EPSG:4547 (zone 38); read as zone 38 they land near 112.1°E, ~270 km west of the county",
        "expect": "refused: CRSError (the layer's extent does not fall on the region 130599 / its xzq)",
        "error": "CRSError",
    },
    "swapped_axes": {
        "writer": write_swapped_axes_variant,
        "description": "yjjbnt stores (northing, easting) as (x, y) under EPSG:4547: x ≈ 4 110 000, "
                       "y ≈ 600 000",
        "expect": "refused: CRSError naming swapped axes (x looks like a northing, y like an easting)",
        "error": "CRSError",
    },
    "no_prj_6digit": {
        "writer": write_no_prj_6digit_variant,
        "description": "yjjbnt shapefile without .prj, 6-digit eastings (unprefixed zone 38, EPSG:4547 values)",
        "expect": "loads: the zone is resolved from the region (code 130599 / the xzq layer) → EPSG:4547; the "
                  "geometry equals the clean sample's",
        "error": None,
    },
}

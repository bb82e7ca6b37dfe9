"""The sample county re-expressed the way bureau files really arrive (not committed; written on demand).

``write_messy_variants(out_dir)`` writes the same county so that ingesting it must give the same store as
data/sample (areas to 0.01 m², points to a few mm):

- dltb: a GBK shapefile with no .cpg (and language-driver byte 0 in the DBF header, so nothing declares the
  encoding), Chinese alias field names cut to the DBF's 10 bytes (地类编码, 图斑面积, 坐落单位代 …); four
  truncated names are mapped in the manifest's ``fields``, the rest resolve through layers.fields.ALIASES.
- yjjbnt: a shapefile with no .prj and 8-digit eastings (zone 38 prefixed, EPSG:4526 coordinates).
- stbhhx: Xian 1980 / 3-degree GK CM 114E (EPSG:2383), made by running the manifest's 7-parameter
  transformation (layers.datum.transformer_for) backwards; the loader runs it forwards.
- parcels: a GBK shapefile (declared by its .cpg) in EPSG:4526 (prefixed, with .prj), Chinese field names, with the
  same two bow-tie (self-intersecting) rings as the clean sample, so both repair to the same polygons.
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
import pandas as pd
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
    from .generate import DEFAULT_SEED, build_county
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
                         geometry=_shift(y.geometry.values, lambda xy: xy + np.array([38_000_000.0, 0.0])), crs=None)
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
                         geometry=_shift(z.geometry.values, lambda xy: xy + np.array([38_000_000.0, 0.0])),
                         crs="EPSG:4526")
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


# ---------------------------------------------------------------------------------------------------------
# Issue 10 variants, derived from the committed sample's own files (nothing is regenerated: fast)
# ---------------------------------------------------------------------------------------------------------

def _sample_dir(source) -> Path:
    from .generate import SAMPLE_DIR
    return Path(source) if source is not None else SAMPLE_DIR


def _copy_sample(out: Path, source: Path) -> dict:
    """Copy the generator's own files of ``source`` into ``out`` (no rasters); returns its manifest (a dict)."""
    import yaml

    from .generate import own_files
    for name in own_files():
        src = source / name
        if src.is_dir():
            shutil.copytree(src, out / name)
        elif src.exists():
            shutil.copyfile(src, out / name)
    doc = yaml.safe_load((source / "manifest.yaml").read_text(encoding="utf-8"))
    doc.pop("rasters", None)
    return doc


def _write_manifest(out: Path, doc: dict, note: str) -> Path:
    from .generate import _dump
    path = out / "manifest.yaml"
    path.write_text(note + _dump(doc), encoding="utf-8")
    return path


def recode_ydyh(dltb: gpd.GeoDataFrame, rows=None) -> gpd.GeoDataFrame:
    """The DLTB written in 用地用海 codes through the crosswalk's designated reverse (layers.codes.from_sandiao):
    DLBM and KCDLBM recoded, DLMC renamed; codes neither set knows (the planted 1199) stay as they are.
    ``rows``: a boolean mask of the rows to recode (default: all)."""
    from layers.codes import YDYH_CODES, from_sandiao

    out = dltb.copy()
    sel = np.ones(len(out), bool) if rows is None else np.asarray(rows, bool)
    codes = out["DLBM"].to_numpy(dtype=object).copy()
    codes[sel] = from_sandiao(codes[sel])
    out["DLBM"] = codes
    names = out["DLMC"].to_numpy(dtype=object).copy()
    names[sel] = [YDYH_CODES.get(c, n) for c, n in zip(codes[sel], names[sel])]
    out["DLMC"] = names
    kc = out["KCDLBM"].to_numpy(dtype=object).copy()
    has = sel & pd.notna(kc)
    kc[has] = from_sandiao(kc[has])
    out["KCDLBM"] = kc
    return out


def write_codeset_twin(out_dir, *, both_years: bool = False, source=None) -> Path:
    """The sample county with its DLTB in 用地用海 codes (the 2023 → 2024 pair as real pairs come: the 2024 layer
    in 用地用海, the 2023 one in 三调; ``both_years``: both in 用地用海). Everything else is the sample's. Analysing
    it must give the same records (ids, members, verdicts, areas) and indicators as the sample."""
    source = _sample_dir(source)
    out = _fresh(out_dir)
    doc = _copy_sample(out, source)
    for role in ("dltb", "dltb_prev") if both_years else ("dltb",):
        name = doc["layers"][role] if isinstance(doc["layers"][role], str) else doc["layers"][role]["path"]
        gdf = gpd.read_parquet(source / name)
        recode_ydyh(gdf).to_parquet(out / name, compression="zstd", write_covering_bbox=False,
                                    schema_version="1.1.0")
    which = "both survey years" if both_years else "the 2024 survey (2023 stays 三调)"
    return _write_manifest(out, doc, f"# 样例县 with {which} coded in 用地用海 (data/variants.py write_codeset_twin): "
                                     "must analyse to the same records and indicators as data/sample.\n")


def _ambiguous_dltb(dltb: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The patches of the sample's DLTB whose codes exist in both sets (none tells the set), in the township
    holding most 0601 / 0702 patches (codes that mean other land uses in the two sets)."""
    from layers.codes import SANDIAO_CODES, YDYH_CODES, to_sandiao
    codes = dltb["DLBM"].astype(str)
    both = codes.isin([c for c in SANDIAO_CODES if c in YDYH_CODES])
    differs = both & pd.Series([to_sandiao([c], "ydyh")[0] != c for c in codes], index=dltb.index)
    town = dltb.loc[differs, "ZLDWDM"].str[:9].value_counts().index[0]
    return dltb[both & (dltb["ZLDWDM"].str[:9] == town)].reset_index(drop=True)


CODESET_NEGATIVES = {
    "mixed": {
        "description": "dltb with the patches of one 乡镇 in 用地用海 codes, the rest in 三调: both sets' telling "
                       "codes (05H1 / 08H2 / 1006 beside 0901 / 1207 / 17xx) in one layer",
        "expect": "refused: CodeSetError naming codes of each set",
        "error": "CodeSetError",
    },
    "undecidable": {
        "description": "dltb of one 乡镇 keeping only codes that exist in both sets (0103, 0601, 0702, 1003 …): "
                       "nothing tells the set, and 0601 / 0702 / 1003 mean other land uses in the two",
        "expect": "refused: CodeSetError naming the ambiguous codes and the remedy code_set:",
        "error": "CodeSetError",
    },
    "undecidable_declared": {
        "description": "the same layer with code_set: sandiao on it in the manifest",
        "expect": "loads as 三调",
        "error": None,
    },
}


def write_codeset_negative(out_dir, name: str, source=None) -> Path:
    """A manifest with the sample's xzq and one dltb layer as CODESET_NEGATIVES[name] says."""
    source = _sample_dir(source)
    out = _fresh(out_dir)
    doc = _copy_sample(out, source)
    dltb = gpd.read_parquet(source / "dltb_2024.parquet")
    if name == "mixed":
        town = sorted(dltb["ZLDWDM"].str[:9].unique())[1]
        dltb = recode_ydyh(dltb, rows=(dltb["ZLDWDM"].str[:9] == town).to_numpy())
    else:
        dltb = _ambiguous_dltb(dltb)
    dltb.to_parquet(out / "dltb_negative.parquet", write_covering_bbox=False, schema_version="1.1.0")
    entry = {"path": "dltb_negative.parquet"}
    if name == "undecidable_declared":
        entry["code_set"] = "sandiao"
    doc["layers"] = {"xzq": doc["layers"]["xzq"], "dltb": entry}
    info = CODESET_NEGATIVES[name]
    return _write_manifest(out, doc, f"# code-set variant {name!r}: {info['description']}\n"
                                     f"# expected: {info['expect']}\n")


# --- 入库质检: DLTB overlaps and gaps, the 0.01 m² rounding of TBMJ ------------------------------------------

QA_SMALL_AREA = (9.4348, 9.43495)  # the small patch's area: TBMJ 9.44 is off only by the rounding
QA_OPTIONS = {"area_tolerance": 0.001, "area_flag": 0.10}


def _small_quad(cx: float, cy: float, lo: float, hi: float):
    """A mm-grid rectangle near (cx, cy) whose ellipsoidal area lies in [lo, hi) (searched over its sides)."""
    from shapely import box

    from layers.area import ellipsoidal_area
    x0, y0 = round(cx, 3), round(cy, 3)
    for w in np.arange(3.000, 3.400, 0.001):
        h = round(lo / w, 3)
        for hh in (h - 0.001, h, h + 0.001):
            g = box(x0, y0, round(x0 + w, 3), round(y0 + hh, 3))
            a = float(ellipsoidal_area(np.array([g], dtype=object), "EPSG:4547")[0])
            if lo <= a < hi:
                return g, a
    raise RuntimeError("no mm-grid rectangle with the wanted area")  # pragma: no cover


def _free_patches(dltb: gpd.GeoDataFrame, planted: dict) -> np.ndarray:
    """Rows of 耕地 patches no planted case touches (the QA defects go there)."""
    taken = {c["BSM"] for c in planted["survey_changes"]}
    for k in ("area_mismatch", "kcmj_mismatch", "unknown_code"):
        taken |= set(planted["defects"]["dltb"][k])
    taken |= {x for pair in planted["defects"]["dltb"]["duplicate_geometry"] for x in pair}
    cult = dltb["DLBM"].isin(["0101", "0102", "0103"]).to_numpy()
    return np.flatnonzero(cult & ~dltb["BSM"].isin(taken).to_numpy())


def write_qa_variant(out_dir, source=None) -> Path:
    """The sample with 入库质检 defects planted in its 2024 DLTB (truth in qa_truth.yaml beside the manifest):

    - ``overlap``: a patch grown 8 m into its neighbour (the two overlap by that strip);
    - ``gap``: a patch pulled back 0.6 m from a neighbour along their shared edge (an uncovered sliver);
    - ``gap_xzq``: a patch on the county boundary pulled back 3 m from it (county area no patch covers);
    - ``small_rounding``: a new ~9.43 m² patch whose TBMJ (9.44) differs from its ellipsoidal area only by the
      0.01 m² rounding — must NOT be flagged; ``small_off``: one whose TBMJ is 0.03 m² off — flagged.
    """
    import yaml

    from layers.area import ellipsoidal_area

    from .generate import _dump
    source = _sample_dir(source)
    out = _fresh(out_dir)
    doc = _copy_sample(out, source)
    planted = yaml.safe_load((source / "planted.yaml").read_text(encoding="utf-8"))
    dltb = gpd.read_parquet(source / "dltb_2024.parquet")
    geoms = np.asarray(dltb.geometry.values, dtype=object).copy()
    bsm = dltb["BSM"].to_numpy()
    free = _free_patches(dltb, planted)
    free_set = set(free.tolist())
    tree = shapely.STRtree(geoms)
    county = shapely.union_all(geoms[:len(geoms) - 1])
    used: set[int] = set()

    def neighbour_pair(min_edge: float):
        for i in free.tolist():
            if i in used:
                continue
            for j in tree.query(geoms[i], predicate="touches").tolist():
                edge = shapely.length(shapely.intersection(shapely.boundary(geoms[i]), shapely.boundary(geoms[j])))
                if j in free_set and j not in used and edge >= min_edge:
                    near = set(tree.query(shapely.buffer(geoms[i], 20), predicate="intersects").tolist())
                    if not near & used:
                        used.update(near)
                        return i, j
        raise RuntimeError("no pair of free neighbouring patches")  # pragma: no cover

    def ell(g) -> float:
        return float(ellipsoidal_area(np.array([g], dtype=object), "EPSG:4547")[0])

    truth: dict = {"options": dict(QA_OPTIONS)}
    # overlap: i grows 8 m into j
    i, j = neighbour_pair(60.0)
    strip_ = shapely.intersection(shapely.buffer(geoms[i], 8.0, join_style="mitre"), geoms[j])
    geoms[i] = shapely.set_precision(shapely.union(geoms[i], strip_), 0.001)
    inter = shapely.intersection(geoms[i], geoms[j])
    truth["overlap"] = {"ids": sorted([str(bsm[i]), str(bsm[j])]), "area_m2": round(ell(inter), 2), "width_m": 8.0}
    # gap: k pulled back 0.6 m from l along their shared edge
    k, l_ = neighbour_pair(60.0)
    geoms[k] = shapely.set_precision(shapely.difference(geoms[k], shapely.buffer(geoms[l_], 0.6, join_style="mitre")),
                                     0.001)
    hole = shapely.difference(shapely.union(dltb.geometry.values[k], geoms[l_]), shapely.union(geoms[k], geoms[l_]))
    truth["gap"] = {"between": sorted([str(bsm[k]), str(bsm[l_])]), "area_m2": round(ell(hole), 2), "width_m": 0.6}
    # gap against the county boundary: a free patch on it pulled back 3 m
    ring = shapely.get_exterior_ring(shapely.get_parts(county)[0])  # the county's outer boundary
    edge_patches = [e for e in free.tolist() if e not in used and shapely.length(
        shapely.intersection(shapely.boundary(geoms[e]), ring)) >= 40]
    e = edge_patches[0]
    used.update(tree.query(shapely.buffer(geoms[e], 20), predicate="intersects").tolist())
    before = geoms[e]
    geoms[e] = shapely.set_precision(shapely.difference(before, shapely.buffer(ring, 3.0, join_style="mitre")), 0.001)
    truth["gap_xzq"] = {"patch": str(bsm[e]), "area_m2": round(ell(shapely.difference(before, geoms[e])), 2),
                        "width_m": 3.0}
    # two small patches carved out of free 耕地 patches (a shed on the field: 1202 设施农用地)
    rows, hosts = [], []
    for name, tbmj_of in (("small_rounding", lambda a: round(a, 2) + 0.01),
                          ("small_off", lambda a: round(a, 2) + 0.03)):
        host = next(h for h in free.tolist() if h not in used)
        hosts.append(host)
        used.update(tree.query(shapely.buffer(geoms[host], 20), predicate="intersects").tolist())
        c = shapely.point_on_surface(geoms[host])
        quad, a = _small_quad(c.x, c.y, *QA_SMALL_AREA)
        geoms[host] = shapely.difference(geoms[host], quad)
        row = dltb.iloc[host].copy()
        tbmj = round(tbmj_of(a), 2)
        row["BSM"] = f"{bsm[host][:10]}{99_000_000 + len(rows) + 1:08d}"
        row[["DLBM", "DLMC", "KCDLBM", "KCXS", "KCMJ", "TBMJ", "TBDLMJ"]] = ["1202", "设施农用地", None, 0.0, 0.0,
                                                                             tbmj, tbmj]
        row["geometry"] = quad
        rows.append(row)
        truth[name] = {"BSM": row["BSM"], "area_exact": a, "TBMJ": tbmj, "diff": round(tbmj - a, 6),
                       "flagged": name == "small_off"}
    out_gdf = gpd.GeoDataFrame(pd.concat([dltb.drop(columns="geometry"), pd.DataFrame(rows).drop(columns="geometry")],
                                         ignore_index=True),
                               geometry=list(geoms) + [r["geometry"] for r in rows], crs=dltb.crs)
    # keep TBMJ / KCMJ / TBDLMJ of the reshaped patches true to their new geometry (only the planted defects differ)
    for idx in [i, k, e, *hosts]:
        a = round(ell(out_gdf.geometry.values[idx]), 2)
        kc = float(out_gdf.at[idx, "KCXS"])
        out_gdf.loc[idx, ["TBMJ", "KCMJ", "TBDLMJ"]] = [a, round(a * kc, 2), round(a - round(a * kc, 2), 2)]
    out_gdf.to_parquet(out / "dltb_2024.parquet", write_covering_bbox=False, schema_version="1.1.0")
    doc["options"] = dict(QA_OPTIONS)
    (out / "qa_truth.yaml").write_text("# 入库质检 defects planted by data/variants.py write_qa_variant\n"
                                       + _dump(truth), encoding="utf-8")
    return _write_manifest(out, doc, "# 样例县 with 入库质检 defects in dltb (data/variants.py write_qa_variant); "
                                     "truth: qa_truth.yaml\n")


# --- datum transformations: conventions and control points (同名点) ---------------------------------------------

TRANSFORM_VARIANTS = {
    "helmert_no_convention": {
        "description": "stbhhx in Xian 1980 with the 7 parameters but no convention:",
        "expect": "refused: ManifestError naming convention: (the two conventions differ by metres to ~170 m)",
        "error": "ManifestError"},
    "four_param_no_convention": {
        "description": "stbhhx in Xian 1980 with four parameters (plane similarity) but no convention:",
        "expect": "refused: ManifestError naming convention:",
        "error": "ManifestError"},
    "helmert_checked": {
        "description": "the 7 parameters with convention: coordinate_frame, checked by 9 control points",
        "expect": "loads: residuals ~0 m; the layer equals the clean stbhhx",
        "error": None},
    "helmert_wrong_convention": {
        "description": "the same 7 parameters declared position_vector (the other convention), with the control points",
        "expect": "refused: CRSError, the control points are missed by more than max_residual_m",
        "error": "CRSError"},
    "estimate_four_param": {
        "description": "no parameters: estimate: four_param from 9 control points (a CSV file)",
        "expect": "loads: a plane similarity fitted by least squares, residuals of a few mm; the layer equals the "
                  "clean stbhhx within them",
        "error": None},
    "estimate_bad_point": {
        "description": "estimate: four_param from the control points, one of them 3 m off",
        "expect": "refused: CRSError naming the worst point",
        "error": "CRSError"},
}
FOUR_PARAM = {"dx": -18.372, "dy": 121.694, "rotation": 1.8364, "scale": -2.4105}  # what a parameter sheet gives


def control_points_4547(county_bounds) -> np.ndarray:
    """Nine 同名点 over the county (a 3 × 3 grid inside its bounding box), EPSG:4547 coordinates."""
    x0, y0, x1, y1 = county_bounds
    xs = np.linspace(x0 + 0.1 * (x1 - x0), x1 - 0.1 * (x1 - x0), 3)
    ys = np.linspace(y0 + 0.1 * (y1 - y0), y1 - 0.1 * (y1 - y0), 3)
    return np.round(np.array([(x, y) for y in ys for x in xs]), 3)


def write_transform_variant(out_dir, name: str, source=None) -> Path:
    """The sample's xzq and its stbhhx in Xian 1980 (EPSG:2383, made with the 7 parameters of XIAN80_HELMERT run
    backwards, as in the messy variant), under the transform entry TRANSFORM_VARIANTS[name] describes."""
    source = _sample_dir(source)
    out = _fresh(out_dir)
    doc = _copy_sample(out, source)
    st = pyogrio.read_dataframe(source / "sanqusanxian.gdb", layer="STBHHX")
    st = gpd.GeoDataFrame(st.drop(columns="geometry"), geometry=to_xian80(st.geometry.values),
                          crs=f"EPSG:{XIAN80_EPSG}")
    pyogrio.write_dataframe(st, out / "stbhhx_xian80.gpkg", layer="STBHHX")
    xzq = pyogrio.read_dataframe(source / "xzq.gdb", layer="XZQ")
    dst = control_points_4547(xzq.total_bounds)
    src = shapely.get_coordinates(to_xian80(shapely.points(dst)))
    rows = np.column_stack([src, dst])
    helmert = {k: v for k, v in XIAN80_HELMERT.items() if k != "convention"}
    if name == "helmert_no_convention":
        transform = {"helmert": helmert}
    elif name == "four_param_no_convention":
        transform = {"four_param": dict(FOUR_PARAM)}
    elif name in ("helmert_checked", "helmert_wrong_convention"):
        conv = "coordinate_frame" if name == "helmert_checked" else "position_vector"
        transform = {"helmert": {**helmert, "convention": conv},
                     "control_points": [[round(float(v), 4) for v in r] for r in rows]}
    elif name in ("estimate_four_param", "estimate_bad_point"):
        pts = rows.copy()
        if name == "estimate_bad_point":
            pts[4, 2] += 3.0  # the centre point's target easting is 3 m off
        lines = ["点号,E_src,N_src,E_dst,N_dst"] + [f"P{i + 1}," + ",".join(f"{v:.4f}" for v in r)
                                                  for i, r in enumerate(pts)]
        (out / "control_points.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        transform = {"estimate": "four_param", "control_points": "control_points.csv"}
    else:
        raise KeyError(name)
    doc["layers"] = {"xzq": doc["layers"]["xzq"],
                     "stbhhx": {"path": "stbhhx_xian80.gpkg", "layer": "STBHHX", "transform": transform}}
    info = TRANSFORM_VARIANTS[name]
    return _write_manifest(out, doc, f"# transform variant {name!r}: {info['description']}\n"
                                     f"# expected: {info['expect']}\n")

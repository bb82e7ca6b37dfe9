"""The bad-input corpus (issue 12): damaged files and malformed manifests, made here from a small good county
(no binary is committed). ``python -m tests.badinput OUT`` writes every case into OUT/<case>/ for a look by hand.

The good county: ``xzq.gpkg`` (EPSG:4490), ``dltb.shp`` (40 patches, GBK text) and ``cameras.geojson``
(3 points), with ``manifest.yaml``. Each case copies it, breaks one thing and says what the one-line error
must name — or, for input accepted by design, why (``accepted``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import shapely
import yaml

from tests.layers_fixtures import X0, Y0, dltb_frame, patch_boxes, write, write_xzq

LAYERS = {"xzq": {"path": "xzq.gpkg"}, "dltb": {"path": "dltb.shp"}, "cameras": {"path": "cameras.geojson"}}


def make_base(folder: Path) -> Path:
    """The good county; its manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_xzq(folder)
    write(dltb_frame(boxes=patch_boxes(8, 5)), folder / "dltb.shp", encoding="gbk")
    cams = gpd.GeoDataFrame({"SXTBH": ["C1", "C2", "C3"], "GD": [30.0, 45.5, 12.0]},
                            geometry=shapely.points([X0 + 50, X0 + 250, X0 + 450], [Y0 + 50, Y0 + 150, Y0 + 250]),
                            crs=4547)
    write(cams, folder / "cameras.geojson")
    return write_manifest(folder, LAYERS)


def write_manifest(folder: Path, layers: dict, **top) -> Path:
    doc = {"region": {"code": "130599", "name": "样例县"}, "crs": "auto", "layers": layers, **top}
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


@dataclass
class Case:
    name: str
    make: Callable[[Path], Path | None]  # breaks the copy in the folder; returns the manifest (None: the default)
    words: list[str] = field(default_factory=list)  # what the one-line error must contain
    accepted: str | None = None  # accepted by design: why
    args: tuple[str, ...] = ()


def _cut(path: Path, keep: float | int) -> None:
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    path.write_bytes(data[:n])


def _dbf_header(path: Path) -> tuple[int, int, int]:
    head = path.read_bytes()[:12]
    return struct.unpack("<I", head[4:8])[0], struct.unpack("<H", head[8:10])[0], struct.unpack("<H", head[10:12])[0]


def _geojson(folder: Path, features: list | str, crs: dict | None = None) -> None:
    doc = features if isinstance(features, str) else json.dumps(
        {"type": "FeatureCollection", "features": features, **({"crs": crs} if crs else {})}, ensure_ascii=False)
    (folder / "cameras.geojson").write_text(doc, encoding="utf-8")


def _point(x, y, **props) -> dict:
    return {"type": "Feature", "properties": {"SXTBH": "C9", "GD": 1.0, **props},
            "geometry": {"type": "Point", "coordinates": [x, y]}}


LON, LAT = 115.05, 37.14  # inside the good county (CRS84)


def _manifest_text(folder: Path, text: str | bytes) -> Path:
    path = folder / "manifest.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def _with(folder: Path, **changes) -> Path:
    doc = yaml.safe_load((folder / "manifest.yaml").read_text(encoding="utf-8"))
    for key, value in changes.items():
        if key in LAYERS:
            doc["layers"][key] = value
        else:
            doc[key] = value
    return _manifest_text(folder, yaml.safe_dump(doc, allow_unicode=True))


def _gpkg_empty_layer(folder: Path) -> None:
    con = sqlite3.connect(folder / "xzq.gpkg")
    con.execute("DROP TRIGGER IF EXISTS rtree_xzq_geom_delete")  # GDAL's R-tree trigger needs its own functions
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'xzq'").fetchall():
        con.execute(f'DROP TRIGGER "{name}"')
    con.execute("DELETE FROM xzq")
    con.commit()
    con.close()


def _zip(folder: Path, names: list[str]) -> Path:
    path = folder / "dltb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n in names:
            zf.write(folder / n, n)
    return path


def _zip_damaged(folder: Path) -> Path:
    path = _zip(folder, ["dltb.shp", "dltb.shx", "dltb.dbf", "dltb.prj", "dltb.cpg"])
    data = bytearray(path.read_bytes())
    i = data.find(b"dltb.dbf") + 60  # somewhere in the compressed bytes of the .dbf
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return _with(folder, dltb={"path": "dltb.zip"})


def _symlink_loop(folder: Path) -> Path:
    (folder / "dltb.shp").unlink()
    os.symlink("loop_b.shp", folder / "loop_a.shp")
    os.symlink("loop_a.shp", folder / "loop_b.shp")
    return _with(folder, dltb={"path": "loop_a.shp"})


def _dangling(folder: Path) -> Path:
    os.symlink("nowhere/dltb.shp", folder / "link.shp")
    return _with(folder, dltb={"path": "link.shp"})


def _shx_of_fewer(folder: Path) -> None:
    other = folder / "few"
    write(dltb_frame(boxes=patch_boxes(3, 2)), other / "dltb.shp", encoding="gbk")
    shutil.copyfile(other / "dltb.shx", folder / "dltb.shx")
    shutil.copyfile(other / "dltb.shp", folder / "dltb.shp")


def _dbf_extra_records(folder: Path) -> None:
    path = folder / "dltb.dbf"
    data = bytearray(path.read_bytes())
    n, header_len, record_len = _dbf_header(path)
    record = data[header_len:header_len + record_len]
    body = data[:header_len + n * record_len] + record * 5 + b"\x1a"
    body[4:8] = struct.pack("<I", n + 5)
    path.write_bytes(bytes(body))


def _nan_coordinates(folder: Path) -> None:
    (folder / "cameras.geojson").write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"SXTBH": "C1"}, '
        '"geometry": {"type": "Point", "coordinates": [NaN, 37.1]}}]}', encoding="utf-8")


BOMB = ("region: {code: '130599', name: 样例县}\ncrs: auto\n"
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
        "layers:\n  xzq: {path: xzq.gpkg, layer: *f}\n")


def cases() -> list[Case]:
    dbf, shp, shx = "dltb.dbf", "dltb.shp", "dltb.shx"
    out = [
        # --- shapefiles cut short or mismatched ---------------------------------------------------------
        Case("dbf_half", lambda f: _cut(f / dbf, 0.5), [dbf, "cut short", "export or copy"]),
        Case("dbf_one_record_short", lambda f: _cut(f / dbf, -100), [dbf, "cut short"]),
        Case("dbf_header_only", lambda f: _cut(f / dbf, _dbf_header(f / dbf)[1]), [dbf, "cut short"]),
        Case("dbf_31_bytes", lambda f: _cut(f / dbf, 31), [dbf, "not a DBF"]),
        Case("dbf_empty_file", lambda f: _cut(f / dbf, 0), [dbf, "not a DBF"]),
        Case("dbf_missing", lambda f: (f / dbf).unlink(), ["dltb.shp", ".dbf"]),
        Case("dbf_extra_records", _dbf_extra_records, [shx, dbf, "do not belong together"]),
        Case("shp_half", lambda f: _cut(f / shp, 0.5), [shp, "cut short"]),
        Case("shp_last_record_short", lambda f: _cut(f / shp, -7), [shp, "cut short"]),
        Case("shp_header_only", lambda f: _cut(f / shp, 100), [shp, "cut short"]),
        Case("shp_50_bytes", lambda f: _cut(f / shp, 50), [shp, "not a shapefile"]),
        Case("shp_empty_file", lambda f: _cut(f / shp, 0), [shp, "not a shapefile"]),
        Case("shp_garbage", lambda f: (f / shp).write_bytes(os.urandom(4096)), [shp, "not a shapefile"]),
        Case("shx_missing", lambda f: (f / shx).unlink(), ["dltb.shp", ".shx"]),
        Case("shx_half", lambda f: _cut(f / shx, 0.5), [shx, "cut short"]),
        Case("shx_empty_file", lambda f: _cut(f / shx, 0), [shx, "not a shapefile index"]),
        Case("shx_shp_of_another", _shx_of_fewer, [shx, dbf, "do not belong together"]),
        Case("prj_garbage", lambda f: (f / "dltb.prj").write_text("PROJCS[garbage", encoding="utf-8"), ["dltb"]),
        Case("dbf_bytes_not_text", lambda f: _dbf_poison(f / dbf), ["dltb", "neither valid UTF-8 nor GBK"]),
        Case("encoding_declared_wrong", lambda f: _with(f, dltb={"path": "dltb.shp", "encoding": "utf-8"}),
             ["dltb", "encoding: utf-8 does not decode"]),
        Case("encoding_unknown", lambda f: _with(f, dltb={"path": "dltb.shp", "encoding": "klingon"}),
             ["dltb", "unknown encoding 'klingon'"]),
        Case("cpg_says_utf8_for_gbk", lambda f: (f / "dltb.cpg").write_text("UTF-8", encoding="ascii"),
             accepted="the .cpg is wrong but the text decodes as GBK: stored decoded right, with an "
                      "encoding_cpg_mismatch warning (layers/read.py)"),
        Case("cpg_unknown_name", lambda f: (f / "dltb.cpg").write_text("FOO-99", encoding="ascii"),
             accepted="an unknown .cpg is ignored and the encoding detected (GBK), as a GIS would"),
        Case("prj_missing", lambda f: (f / "dltb.prj").unlink(),
             accepted="no .prj: the CRS is recognised from the coordinates (GK zone 38 of the region) and the "
                      "load record says so (crs_resolution)"),
        # --- zipped ----------------------------------------------------------------------------------------
        Case("zip_crc_damaged", _zip_damaged, ["dltb.zip", "damaged"]),
        Case("zip_cut_short", lambda f: (_zip(f, [shp, shx, dbf]), _cut(f / "dltb.zip", 0.6),
                                         _with(f, dltb={"path": "dltb.zip"}))[-1], ["dltb.zip"]),
        Case("zip_not_a_zip", lambda f: ((f / "dltb.zip").write_bytes(b"PK\x03\x04" + os.urandom(500)),
                                         _with(f, dltb={"path": "dltb.zip"}))[-1], ["dltb.zip"]),
        # --- GeoJSON -----------------------------------------------------------------------------------------
        Case("geojson_cut_short", lambda f: _cut(f / "cameras.geojson", 0.5), ["cameras.geojson"]),
        Case("geojson_empty_file", lambda f: _cut(f / "cameras.geojson", 0), ["cameras.geojson"]),
        Case("geojson_no_features", lambda f: _geojson(f, []), ["cameras", "required field SXTBH"]),
        Case("geojson_vertex_1e300", lambda f: _geojson(f, [_point(1e300, LAT)]),
             ["cameras", "not a real coordinate", "1e+300"]),
        Case("geojson_vertex_nan", _nan_coordinates, ["cameras"]),
        Case("geojson_nul_in_text", lambda f: _geojson(f, [_point(LON, LAT, SXTBH="C\u00009")]),
             ["cameras", "NUL"]),
        Case("geojson_not_utf8_nor_gbk", lambda f: (f / "cameras.geojson").write_bytes(
            b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"SXTBH": "\xff\xfe\xfd"},'
            b' "geometry": {"type": "Point", "coordinates": [115.05, 37.14]}}]}'),
             ["cameras.geojson", "neither UTF-8"]),
        Case("geojson_array_not_object", lambda f: _geojson(f, "[1, 2, 3]"), ["cameras.geojson"]),
        Case("geojson_unknown_crs", lambda f: _geojson(f, [_point(LON, LAT)],
                                                       {"type": "name", "properties": {"name": "EPSG:999999"}}),
             accepted="GeoJSON is CRS84 (RFC 7946): a legacy crs member naming no known CRS is ignored, as GDAL "
                      "does; coordinates outside the region would still be refused (geojson_far_outside_region)"),
        Case("geojson_all_geometries_null", lambda f: _geojson(f, [{"type": "Feature", "properties": {"SXTBH": "C"},
                                                                    "geometry": None}]),
             ["cameras", "usable geometry"]),
        Case("geojson_far_outside_region", lambda f: _geojson(f, [_point(-70.0, -30.0)]), ["cameras"]),
        # --- GeoPackage ------------------------------------------------------------------------------------
        Case("gpkg_half", lambda f: _cut(f / "xzq.gpkg", 0.5), ["xzq.gpkg"]),
        Case("gpkg_garbage", lambda f: (f / "xzq.gpkg").write_bytes(b"SQLite format 3\x00" + os.urandom(8192)),
             ["xzq.gpkg"]),
        Case("gpkg_empty_file", lambda f: _cut(f / "xzq.gpkg", 0), ["xzq.gpkg"]),
        Case("gpkg_wrong_layer", lambda f: _with(f, xzq={"path": "xzq.gpkg", "layer": "NOPE"}), ["xzq", "NOPE"]),
        Case("gpkg_empty_layer", _gpkg_empty_layer, ["xzq", "no features", "--allow-empty"]),
        Case("shp_no_records", lambda f: write(dltb_frame(boxes=patch_boxes(8, 5)).iloc[:0], f / "dltb.shp",
                                                encoding="gbk"),
             ["dltb", "no features", "--allow-empty"]),
        Case("shp_no_records_allowed", lambda f: write(dltb_frame(boxes=patch_boxes(8, 5)).iloc[:0],
                                                        f / "dltb.shp", encoding="gbk"), args=("--allow-empty",),
             accepted="--allow-empty says the empty layer is meant"),
        # --- manifests ---------------------------------------------------------------------------------------
        Case("manifest_alias_bomb", lambda f: _manifest_text(f, BOMB), ["manifest", "aliases expand"]),
        Case("manifest_20000_deep", lambda f: _manifest_text(f, "a: " + "[" * 20000 + "]" * 20000 + "\n"),
             ["manifest", "nested more than 100"]),
        Case("manifest_self_alias", lambda f: _manifest_text(f, "a: &x [1, *x]\n"), ["manifest", "refers to itself"]),
        Case("manifest_area_tolerance_abc", lambda f: _with(f, options={"area_tolerance": "abc"}),
             ["area_tolerance", "not a number"]),
        Case("manifest_unknown_option", lambda f: _with(f, options={"area_tolerence": 0.1}),
             ["'area_tolerence' is not an option"]),
        Case("manifest_a_list", lambda f: _manifest_text(f, "- just\n- a list\n"), ["manifest"]),
        Case("manifest_not_yaml", lambda f: _manifest_text(f, "layers: [\n"), ["manifest", "YAML"]),
        Case("manifest_not_utf8", lambda f: _manifest_text(f, "region: {code: '130599', name: 样例县}\n".encode("gbk")),
             ["manifest", "UTF-8"]),
        Case("manifest_empty", lambda f: _manifest_text(f, ""), ["manifest"]),
        Case("manifest_unknown_role", lambda f: _with(f, layers={**LAYERS, "roads": {"path": "x.shp"}}), ["roads"]),
        Case("manifest_missing_file", lambda f: _with(f, dltb={"path": "nope.shp"}), ["nope.shp", "does not exist"]),
        Case("manifest_unsupported_format", lambda f: ((f / "dltb.txt").write_text("x"),
                                                       _with(f, dltb={"path": "dltb.txt"}))[-1],
             ["dltb.txt", "unsupported format"]),
        Case("manifest_gdal_needs_driver", lambda f: ((f / "dltb.gpkg").write_text("not a geopackage"),
                                                      _with(f, dltb={"path": "dltb.gpkg"}))[-1],
             ["dltb.gpkg", "not recognized as being in a supported file format"]),
        Case("manifest_gdb_not_a_gdb", lambda f: ((f / "x.gdb").mkdir(), (f / "x.gdb" / "a").write_text("x"),
                                                  _with(f, xzq={"path": "x.gdb"}))[-1], ["x.gdb", "not recognized"]),
        Case("manifest_symlink_loop", _symlink_loop, ["loop_a.shp", "loops back on itself"]),
        Case("manifest_dangling_symlink", _dangling, ["link.shp", "symbolic link", "does not exist"]),
        Case("manifest_path_with_nul", lambda f: _with(f, dltb={"path": "dl\u0000tb.shp"}), ["dltb"]),
        Case("manifest_region_code_bad", lambda f: _with(f, region={"code": "13x599", "name": "x"}), ["13x599"]),
        Case("manifest_other_region", lambda f: _with(f, region={"code": "130598", "name": "邻县"}), ["130598"]),
        Case("manifest_crs_garbage", lambda f: _with(f, crs="EPSG:abc"), ["EPSG:abc"]),
        Case("manifest_path_is_folder", lambda f: ((f / "folder.shp").mkdir(),
                                                   _with(f, dltb={"path": "folder.shp"}))[-1], ["folder.shp"]),
    ]
    return out


def _dbf_poison(path: Path) -> None:
    """Bytes that are neither UTF-8 nor GBK in the first text value (0x80 and 0xFF are not GBK lead bytes)."""
    data = bytearray(path.read_bytes())
    n, header_len, record_len = _dbf_header(path)
    data[header_len + 1:header_len + 5] = b"\x80\xff\x80\xff"
    path.write_bytes(bytes(data))


def build(case: Case, base: Path, folder: Path) -> Path:
    """A copy of the good county in ``folder`` with ``case`` applied; the manifest to ingest."""
    shutil.copytree(base, folder, symlinks=True)
    made = case.make(folder)
    return made if isinstance(made, Path) and made.name == "manifest.yaml" else folder / "manifest.yaml"


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bad-input")
    base = out / "_good"
    make_base(base)
    for c in cases():
        build(c, base, out / c.name)
    print(f"{len(cases())} cases in {out}/")  # noqa: T201

"""Zipped sources, as bureaus deliver them: a .zip per layer, the shapefile in a sub-folder, GBK without .cpg,
several datasets in one zip, GBK member names from Windows zips; and every way a zip can be unusable."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from layers.check import check_manifest
from layers.errors import ManifestError, SourceError
from layers.ingest import ingest
from layers.load import load_role
from layers.manifest import LayerSpec
from layers.read import read_source, source_info
from layers.store import open_store
from services.cli import cli
from tests.layers_fixtures import dltb_frame, geodesic_area, manifest, patch_boxes, write, write_xzq, xzq_frame
from tests.test_store_atomic import assert_same_snapshot, snapshot

DLMC = ["水田", "旱地", "农村宅基地", "农村道路", "乔木林地", "商业服务业设施用地"] * 2
VILLAGES = ["张庄村", "李家庄村", "镕铧乡"] * 4  # 镕 and 铧 are outside GB2312 but in GBK
FOLDER = "2024年度变更/地类图斑"


def spec(path, **kw):
    return LayerSpec(role="dltb", path=Path(path), **kw)


def gbk_shapefile(folder: Path, name: str = "DLTB", n: int = 12, cpg: str | None = None) -> Path:
    """The survey patches as a GBK shapefile, without .cpg unless given (what ArcGIS on a Chinese Windows writes)."""
    gdf = dltb_frame(n)
    gdf["ZLDWMC"] = VILLAGES[:n]
    path = write(gdf, Path(folder) / f"{name}.shp", encoding="gbk")
    path.with_suffix(".cpg").unlink(missing_ok=True)
    if cpg is not None:
        path.with_suffix(".cpg").write_text(cpg)
    assert "李家庄村".encode("gbk") in path.with_suffix(".dbf").read_bytes()
    return path


def shapefile_members(shp: Path, folder: str = "", skip=()) -> dict[str, Path]:
    """arcname -> file for every file of the shapefile, inside ``folder`` of the zip."""
    prefix = f"{folder.strip('/')}/" if folder else ""
    return {prefix + f.name: f for f in sorted(shp.parent.iterdir())
            if f.stem == shp.stem and f.suffix.lower() not in skip}


def make_zip(path: Path, members: dict[str, Path | bytes], method=zipfile.ZIP_DEFLATED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", method) as zf:
        for arcname, content in members.items():
            if isinstance(content, Path) and content.is_dir():
                for f in sorted(content.rglob("*")):
                    if f.is_file():
                        zf.write(f, f"{arcname}/{f.relative_to(content).as_posix()}")
            elif isinstance(content, Path):
                zf.write(content, arcname)
            else:
                zf.writestr(arcname, content)
    return path


def legacy_gbk_zip(path: Path, shp: Path, folder: str) -> Path:
    """A zip as Windows Explorer / WinRAR on a Chinese system writes it: member names in GBK, no UTF-8 flag.
    zipfile cannot write that, so the names are written as ASCII placeholders of the same byte length and the
    bytes are swapped in afterwards (names are not covered by the CRC)."""
    gbk = folder.encode("gbk")
    placeholder = "Q" * len(gbk)
    make_zip(path, shapefile_members(shp, placeholder))
    raw = path.read_bytes()
    assert raw.count(placeholder.encode()) == 2 * len(list(shp.parent.glob(f"{shp.stem}.*")))
    path.write_bytes(raw.replace(placeholder.encode(), gbk))
    with zipfile.ZipFile(path) as zf:
        assert all(not i.flag_bits & 0x800 for i in zf.infolist())
    return path


def assert_same_frame(got, want):
    pd.testing.assert_frame_equal(got.drop(columns="geometry"), want.drop(columns="geometry"))
    assert (shapely.to_wkb(got.geometry.values) == shapely.to_wkb(want.geometry.values)).all()


# --- reading ------------------------------------------------------------------------------------------------

def test_gbk_shapefile_without_cpg_in_a_subfolder_reads_like_the_plain_one(tmp_path):
    shp = gbk_shapefile(tmp_path / "src")
    archive = make_zip(tmp_path / "dltb_2024.zip", shapefile_members(shp, FOLDER))
    data = read_source(spec(archive))
    plain = read_source(spec(shp))
    assert (data.encoding, data.encoding_origin) == ("gbk", "detected")
    assert data.gdf["DLMC"].tolist() == DLMC
    assert data.gdf["DLMC"].iloc[0] == "水田"
    assert data.gdf["ZLDWMC"].tolist() == VILLAGES
    assert_same_frame(data.gdf, plain.gdf)
    assert data.crs.to_epsg() == 4547 and data.crs_origin == "prj"
    assert data.member == f"{FOLDER}/DLTB.shp"
    assert data.location == f"{archive}!/{FOLDER}/DLTB.shp"
    assert data.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()  # the zip as given
    assert data.files == [archive]
    info = source_info(spec(archive))
    assert info.count == 12 and info.crs.to_epsg() == 4547
    assert info.bounds == pytest.approx(tuple(shapely.total_bounds(patch_boxes())))


def test_nineteen_digit_codes_keep_every_digit_inside_a_zip(tmp_path):
    gdf = dltb_frame(2)
    gdf["ZLDWDM"] = [1305991000010000000, 1305991000010000001]  # N(19,0): GDAL alone reads float64
    shp = write(gdf, tmp_path / "src" / "wide.shp", encoding="utf-8")
    archive = make_zip(tmp_path / "wide.zip", shapefile_members(shp, "x"))
    assert read_source(spec(archive)).gdf["ZLDWDM"].tolist() == ["1305991000010000000", "1305991000010000001"]


def test_legacy_gbk_member_names_from_windows_zips(tmp_path):
    shp = gbk_shapefile(tmp_path / "src")
    archive = legacy_gbk_zip(tmp_path / "三调.zip", shp, "地类图斑")
    data = read_source(spec(archive))
    assert data.member == "地类图斑/DLTB.shp"
    assert data.gdf["DLMC"].tolist() == DLMC
    assert read_source(spec(archive, member="地类图斑/dltb.shp")).gdf["ZLDWMC"].tolist() == VILLAGES
    with pytest.raises(SourceError, match=r"has no member 'JCTB.shp'; its vector datasets are 地类图斑/DLTB.shp;"):
        read_source(spec(archive, member="JCTB.shp"))


@pytest.mark.parametrize("cpg, encoding, origin", [("936", "gbk", "cpg"), ("GBK", "gbk", "cpg"),
                                                   ("UTF-8", "gbk", "detected")])
def test_cpg_inside_the_zip_counts_as_beside_a_plain_shapefile(tmp_path, cpg, encoding, origin):
    shp = gbk_shapefile(tmp_path / "src", cpg=cpg)
    archive = make_zip(tmp_path / "d.zip", shapefile_members(shp, "sub"))
    data = read_source(spec(archive))
    assert (data.encoding, data.encoding_origin) == (encoding, origin)
    assert data.gdf["ZLDWMC"].tolist() == VILLAGES
    if origin == "detected":  # the .cpg says UTF-8, the bytes are GBK: overruled and reported
        (finding,) = data.findings
        assert finding.check == "encoding_cpg_mismatch" and finding.message.startswith("DLTB.cpg says UTF-8")
    else:
        assert data.findings == []
    assert read_source(spec(archive, encoding="gb18030")).encoding_origin == "manifest"


def test_several_shapefiles_in_one_zip_need_member_or_layer(tmp_path):
    dltb = gbk_shapefile(tmp_path / "a", "DLTB", n=12)
    xzq = gbk_shapefile(tmp_path / "b", "XZQ", n=3)
    archive = make_zip(tmp_path / "sandiao.zip", {**shapefile_members(dltb, "三调/地类"),
                                                 **shapefile_members(xzq, "三调/行政区"),
                                                 "三调/说明.txt": "说明".encode()})
    with pytest.raises(SourceError) as err:
        read_source(spec(archive))
    assert str(err.value) == (f"layer 'dltb': {archive} holds 2 vector datasets "
                              "(三调/地类/DLTB.shp, 三调/行政区/XZQ.shp); "
                              "set member: <path inside the zip> in the manifest (or layer: <shapefile name>)")
    assert len(read_source(spec(archive, member="三调/行政区/XZQ.shp")).gdf) == 3
    assert len(read_source(spec(archive, member="xzq.shp")).gdf) == 3  # a file name unique in the zip will do
    assert read_source(spec(archive, member="三调\\地类\\DLTB.shp")).gdf["DLMC"].tolist() == DLMC
    assert read_source(spec(archive, layer="dltb")).gdf["DLMC"].tolist() == DLMC  # a shapefile's layer = its name
    with pytest.raises(SourceError, match=r"holds 2 vector datasets \(.*\) and none is a shapefile named 'JCTB'"):
        read_source(spec(archive, layer="JCTB"))
    with pytest.raises(SourceError, match=r"member: 三调/说明.txt in .* is a .txt file, not a vector dataset"):
        read_source(spec(archive, member="三调/说明.txt"))

    twice = make_zip(tmp_path / "two_years.zip", {**shapefile_members(dltb, "2023"), **shapefile_members(dltb, "2024")})
    with pytest.raises(SourceError,
                       match=r"several shapefiles named 'DLTB' \(2023/DLTB.shp, 2024/DLTB.shp\); set member:"):
        read_source(spec(twice, layer="DLTB"))
    with pytest.raises(SourceError, match=r"member: DLTB.shp matches several datasets .*; give its full path"):
        read_source(spec(twice, member="DLTB.shp"))
    assert read_source(spec(twice, member="2024/DLTB.shp")).member == "2024/DLTB.shp"


def test_filegdb_geopackage_and_geojson_inside_zips(tmp_path):
    gdf = dltb_frame(3)
    gdf["ZLDWMC"] = VILLAGES[:3]
    gdb = write(gdf, tmp_path / "src" / "sandiao.gdb", driver="OpenFileGDB", layer="DLTB")
    gpkg = tmp_path / "src" / "two.gpkg"
    write(gdf, gpkg, layer="DLTB")
    write(dltb_frame(2), gpkg, layer="XZQ")
    geojson = tmp_path / "src" / "gbk.geojson"
    geojson.write_bytes(gdf.to_crs(4490).to_json(ensure_ascii=False).encode("gbk"))

    zipped_gdb = make_zip(tmp_path / "sandiao.gdb.zip", {"交付/sandiao.gdb": gdb})
    data = read_source(spec(zipped_gdb))
    assert (data.driver, data.member, data.layer) == ("OpenFileGDB", "交付/sandiao.gdb", "DLTB")
    assert data.gdf["ZLDWMC"].tolist() == VILLAGES[:3] and data.gdf["DLMC"].tolist() == DLMC[:3]

    zipped_gpkg = make_zip(tmp_path / "gpkg.zip", {"two.gpkg": gpkg})
    with pytest.raises(SourceError, match=r"two.gpkg has several layers \(DLTB, XZQ\); set layer: <name>"):
        read_source(spec(zipped_gpkg))
    assert len(read_source(spec(zipped_gpkg, layer="XZQ")).gdf) == 2
    assert read_source(spec(zipped_gpkg, layer="DLTB")).gdf["ZLDWMC"].tolist() == VILLAGES[:3]

    zipped_json = make_zip(tmp_path / "json.zip", {"cams/gbk.geojson": geojson})
    data = read_source(spec(zipped_json))
    assert (data.encoding, data.encoding_origin) == ("gbk", "detected")
    assert data.gdf["ZLDWMC"].tolist() == VILLAGES[:3] and data.crs.to_epsg() == 4490


def test_macos_resource_forks_are_not_datasets(tmp_path):
    shp = gbk_shapefile(tmp_path / "src")
    junk = {f"__MACOSX/{FOLDER}/._{f.name}": b"\x00\x05\x16\x07" * 8 for f in shp.parent.iterdir()}
    archive = make_zip(tmp_path / "mac.zip", {**shapefile_members(shp, FOLDER), **junk,
                                             f"{FOLDER}/._DLTB.shp": b"\x00\x05\x16\x07"})
    assert read_source(spec(archive)).member == f"{FOLDER}/DLTB.shp"


# --- unusable zips: one clear error naming the zip and the problem ---------------------------------------

def _broken(kind: str, tmp_path: Path) -> Path:
    shp = gbk_shapefile(tmp_path / "src")
    target = tmp_path / "broken" / "dltb.zip"
    if kind == "not_a_zip":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"<html>404 Not Found</html>" * 20)
    elif kind == "truncated":
        full = make_zip(tmp_path / "full.zip", shapefile_members(shp, FOLDER))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    elif kind == "empty":
        make_zip(target, {})
    elif kind == "only_folders":
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w") as zf:
            zf.writestr(zipfile.ZipInfo("地类图斑/"), b"")
    elif kind == "missing_dbf":
        make_zip(target, shapefile_members(shp, FOLDER, skip={".dbf"}))
    elif kind == "missing_shx_dbf":
        make_zip(target, shapefile_members(shp, FOLDER, skip={".dbf", ".shx"}))
    elif kind == "no_vector_data":
        make_zip(target, {"readme.txt": b"see attachment", "统计表.xlsx": b"PK\x03\x04", f"{FOLDER}/DLTB.dbf":
                          shp.with_suffix(".dbf")})
    elif kind == "nested_zip":
        inner = make_zip(tmp_path / "inner.zip", shapefile_members(shp, FOLDER))
        make_zip(target, {"交付/地类图斑.zip": inner})
    elif kind == "bzip2":
        make_zip(target, shapefile_members(shp, FOLDER), method=zipfile.ZIP_BZIP2)
    elif kind == "password":  # zipfile cannot encrypt: set the "encrypted" flag in the local and central headers
        make_zip(target, shapefile_members(shp, FOLDER))
        raw = bytearray(target.read_bytes())
        for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = raw.find(signature)
            while at >= 0:
                raw[at + flag_at] |= 0x1
                at = raw.find(signature, at + 4)
        target.write_bytes(bytes(raw))
    elif kind == "parquet":
        frame = tmp_path / "d.parquet"
        write(dltb_frame(2), frame)
        make_zip(target, {"成果/dltb.parquet": frame})
    elif kind == "crc":  # one flipped byte in the stored .shp: GDAL alone would read a moved vertex
        make_zip(target, shapefile_members(shp, FOLDER), method=zipfile.ZIP_STORED)
        with zipfile.ZipFile(target) as zf:
            info = zf.getinfo(f"{FOLDER}/DLTB.shp")
        raw = bytearray(target.read_bytes())
        raw[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 200] ^= 0x40
        target.write_bytes(bytes(raw))
    return target


BROKEN = [
    ("not_a_zip", r"{zip} is not a readable zip archive \(File is not a zip file\); copy or download it again"),
    ("truncated", r"{zip} is not a readable zip archive \(.*\); copy or download it again"),
    ("empty", r"zip archive {zip} is empty; zip the layer's files"),
    ("only_folders", r"zip archive {zip} is empty"),
    ("missing_dbf", r"shapefile 2024年度变更/地类图斑/DLTB.shp in {zip} lacks its .dbf file\(s\); put all files of "
                    r"the shapefile \(.shp .shx .dbf .prj .cpg\) into the zip, in the same folder"),
    ("missing_shx_dbf", r"shapefile .*DLTB.shp in {zip} lacks its .shx and .dbf file\(s\)"),
    ("no_vector_data", r"{zip} holds no vector data "
                       r"\(files: 2024年度变更/地类图斑/DLTB.dbf, readme.txt, 统计表.xlsx\); "
                       r"give a zip holding a shapefile"),
    ("nested_zip", r"{zip} holds no vector data \(files: 交付/地类图斑.zip\); "
                   r"it holds zip files \(交付/地类图斑.zip\): "
                   r"extract the outer zip"),
    ("password", r"2024年度变更/地类图斑/DLTB.shp in {zip} is password-protected; zip the layer again without a "
                 r"password"),
    ("parquet", r"{zip} holds no vector data \(files: 成果/dltb.parquet\); GeoParquet \(成果/dltb.parquet\) is not "
                r"read inside a zip: extract it"),
    ("bzip2", r"2024年度变更/地类图斑/DLTB.shp in {zip} is compressed with bzip2, which GDAL cannot read in place; "
              r"zip the layer again with the standard Deflate method"),
    ("crc", r"zip archive {zip} is damaged: 2024年度变更/地类图斑/DLTB.shp fails its CRC-32 check .*; copy or "
            r"download the zip again"),
]


@pytest.mark.parametrize("kind, pattern", BROKEN, ids=[b[0] for b in BROKEN])
def test_unusable_zips_raise_one_clear_error(tmp_path, kind, pattern):
    archive = _broken(kind, tmp_path)
    expected = "^layer 'dltb': " + pattern.replace("{zip}", str(archive).replace(".", r"\."))
    with pytest.raises(SourceError, match=expected):
        read_source(spec(archive))


def test_missing_zip_and_member_on_a_plain_path(tmp_path):
    with pytest.raises(SourceError, match=r"file .*nothere.zip does not exist; fix path: in the manifest"):
        read_source(spec(tmp_path / "nothere.zip"))
    write_xzq(tmp_path)
    with pytest.raises(ManifestError, match=r"layers.xzq.member 'XZQ.shp' names a dataset inside a zip archive, but "
                                            r"path is xzq.gpkg; remove member: or point path: at the .zip"):
        manifest(tmp_path, {"xzq": {"path": "xzq.gpkg", "member": "XZQ.shp"}})


# --- loading, ingest, check -----------------------------------------------------------------------------------

def county_with_zip(folder: Path, zipped: bool = True, **dltb) -> tuple:
    """xzq (GeoPackage) and dltb: the GBK shapefile in a sub-folder of a zip (or the plain shapefile)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_xzq(folder)
    shp = gbk_shapefile(folder / "unzipped")
    archive = make_zip(folder / "dltb_2024.zip", shapefile_members(shp, FOLDER))
    source = {"path": archive.name, **dltb} if zipped else {"path": "unzipped/DLTB.shp"}
    return manifest(folder, {"xzq": {"path": "xzq.gpkg"}, "dltb": source}), archive, shp


def test_load_role_from_a_zip_equals_the_unzipped_shapefile(tmp_path):
    m_zip, archive, shp = county_with_zip(tmp_path)
    (tmp_path / "plain").mkdir()
    m_plain = manifest(tmp_path / "plain", {"xzq": {"path": str(tmp_path / "xzq.gpkg")},
                                           "dltb": {"path": str(shp)}})
    zipped, plain = load_role(m_zip, "dltb", 4547), load_role(m_plain, "dltb", 4547)
    assert_same_frame(zipped.gdf, plain.gdf)
    reference = [geodesic_area(b) for b in patch_boxes()]
    np.testing.assert_allclose(zipped.gdf["area_m2"], reference, atol=0.005)  # 0.01 m² at 2 decimals
    r = zipped.record
    assert r.source_path == f"{archive}!/{FOLDER}/DLTB.shp"
    assert r.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert r.encoding == "gbk (detected)" and r.crs_resolution == "prj" and r.rows_written == 12
    assert [f.check for f in zipped.findings] == [f.check for f in plain.findings]


def test_ingest_from_a_zip_stores_what_the_unzipped_shapefile_gives(tmp_path):
    m_zip, archive, shp = county_with_zip(tmp_path / "z")
    m_plain, _, _ = county_with_zip(tmp_path / "p", zipped=False)
    a = ingest(m_zip, str(tmp_path / "a.gpkg"), progress=False)
    b = ingest(m_plain, str(tmp_path / "b.gpkg"), progress=False)
    got, want = open_store(tmp_path / "a.gpkg").read_layer("dltb"), open_store(tmp_path / "b.gpkg").read_layer("dltb")
    assert got["DLMC"].tolist() == DLMC and got.loc[0, "DLMC"] == "水田" and got["ZLDWMC"].tolist() == VILLAGES
    np.testing.assert_allclose(got["area_m2"], want["area_m2"], rtol=0, atol=0.005)
    assert_same_frame(got, want)
    (record,) = [r for r in a.records if r.layer == "dltb"]
    stored = open_store(tmp_path / "a.gpkg").load_records("dltb").iloc[0]
    assert stored["source_path"] == record.source_path == f"{archive}!/{FOLDER}/DLTB.shp"
    assert stored["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert [s.rows_written for s in a.layers] == [s.rows_written for s in b.layers] == [1, 12]


@pytest.mark.parametrize("kind", ["missing_dbf", "crc", "not_a_zip"])
def test_a_failed_zip_ingest_leaves_the_store_unchanged(tmp_path, kind):
    m, archive, _ = county_with_zip(tmp_path)
    store_path = tmp_path / "out" / "store.gpkg"
    ingest(m, str(store_path), progress=False)
    before, file_bytes = snapshot(open_store(store_path)), store_path.read_bytes()
    broken = _broken(kind, tmp_path / kind)
    m2 = manifest(tmp_path, {"xzq": {"path": "xzq.gpkg"}, "dltb": {"path": str(broken)}})
    with pytest.raises(SourceError, match=rf"^layer 'dltb': .*{broken.name}"):
        ingest(m2, str(store_path), progress=False)
    assert_same_snapshot(snapshot(open_store(store_path)), before)
    assert store_path.read_bytes() == file_bytes


def test_check_reports_a_broken_zip_as_an_error_finding(tmp_path):
    m, _, _ = county_with_zip(tmp_path)
    assert check_manifest(m).ok
    broken = _broken("missing_dbf", tmp_path)
    m2 = manifest(tmp_path, {"xzq": {"path": "xzq.gpkg"}, "dltb": {"path": str(broken)}})
    report = check_manifest(m2)
    assert not report.ok
    (error,) = [f for f in report.findings if f.severity == "error"]
    assert (error.layer, error.check) == ("dltb", "source")
    assert error.message.startswith(f"layer 'dltb': shapefile {FOLDER}/DLTB.shp in {broken} lacks its .dbf file(s)")


# --- the CLI, end to end --------------------------------------------------------------------------------------

def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_ingest_and_check_a_manifest_pointing_at_zips(tmp_path):
    dltb = gbk_shapefile(tmp_path / "src", "DLTB", n=12)
    xzq_shp = tmp_path / "src" / "XZQ.shp"
    write(xzq_frame(4490), xzq_shp, encoding="gbk")
    xzq_shp.with_suffix(".cpg").unlink(missing_ok=True)
    archive = make_zip(tmp_path / "样例县_三调.zip", {**shapefile_members(dltb, "三调/地类图斑"),
                                                  **shapefile_members(xzq_shp, "三调/行政区")})
    (tmp_path / "manifest.yaml").write_text(
        "region: {code: '130599', name: 样例县}\n"
        "layers:\n"
        f"  xzq: {{path: {archive.name}, member: 三调/行政区/XZQ.shp}}\n"
        f"  dltb: {{path: {archive.name}, layer: DLTB}}\n", encoding="utf-8")
    store = tmp_path / "out" / "store.gpkg"

    code, out, err = run("check", tmp_path / "manifest.yaml", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ok"] and {lc["role"]: lc["source_path"] for lc in doc["layers"]} == {
        "xzq": f"{archive}!/三调/行政区/XZQ.shp", "dltb": f"{archive}!/三调/地类图斑/DLTB.shp"}

    code, out, err = run("ingest", tmp_path / "manifest.yaml", "--store", store, "--no-progress")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["xzq"], ["dltb"])}
    assert rows["dltb"][1:3] == ["12", "12"] and rows["xzq"][1:3] == ["1", "1"]
    stored = open_store(store)
    got = stored.read_layer("dltb")
    assert got["DLMC"].tolist() == DLMC and got["ZLDWMC"].tolist() == VILLAGES
    assert stored.read_layer("xzq")["XZQMC"].tolist() == ["样例县"]
    np.testing.assert_allclose(got["area_m2"], [geodesic_area(b) for b in patch_boxes()], atol=0.005)
    records = stored.load_records()
    assert set(records["sha256"]) == {hashlib.sha256(archive.read_bytes()).hexdigest()}

    # the bureau re-sends the zip without the layer's .dbf: one line, exit 2, store untouched
    before = store.read_bytes()
    make_zip(tmp_path / "样例县_三调.zip", {**shapefile_members(dltb, "三调/地类图斑", skip={".dbf"}),
                                         **shapefile_members(xzq_shp, "三调/行政区")})
    code, out, err = run("ingest", tmp_path / "manifest.yaml", "--store", store, "--no-progress")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert lines == [f"yzt: error: layer 'dltb': shapefile 三调/地类图斑/DLTB.shp in {archive} lacks its .dbf file(s); "
                     "put all files of the shapefile (.shp .shx .dbf .prj .cpg) into the zip, in the same folder"]
    assert store.read_bytes() == before
    code, out, err = run("check", tmp_path / "manifest.yaml")
    assert code == 1 and "lacks its .dbf file(s)" in out

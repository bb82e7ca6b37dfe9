"""Reading sources: formats, encodings (GBK / UTF-8 / .cpg), broken files, checksums, exact wide integers."""

import hashlib

import pyogrio
import pytest
import shapely

from layers.errors import EncodingError, SourceError
from layers.manifest import LayerSpec
from layers.read import read_source, sha256_of, source_info
from tests.layers_fixtures import dltb_frame, patch_boxes, write


def spec(path, **kw):
    return LayerSpec(role="dltb", path=path, **kw)


def chinese_frame():
    gdf = dltb_frame(3)
    gdf = gdf.rename(columns={"DLBM": "地类编码"})
    gdf["ZLDWMC"] = ["张庄村", "李家庄村", "镕铧乡"]  # 镕 and 铧 are outside GB2312 but in GBK
    return gdf


def write_shapefile(tmp_path, encoding, cpg: str | None = None, name="dltb"):
    path = write(chinese_frame(), tmp_path / f"{name}.shp", encoding=encoding)
    cpg_path = path.with_suffix(".cpg")
    if cpg is None:
        cpg_path.unlink(missing_ok=True)
    else:
        cpg_path.write_text(cpg)
    return path


def test_gbk_shapefile_without_cpg_is_detected_and_decoded(tmp_path):
    path = write_shapefile(tmp_path, "gbk")
    raw = path.with_suffix(".dbf").read_bytes()
    assert "李家庄村".encode("gbk") in raw and not path.with_suffix(".cpg").exists()
    data = read_source(spec(path))
    assert (data.encoding, data.encoding_origin) == ("gbk", "detected")
    assert data.gdf["ZLDWMC"].tolist() == ["张庄村", "李家庄村", "镕铧乡"]
    assert "地类编码" in data.gdf.columns
    assert data.gdf["DLMC"].tolist() == ["水田", "旱地", "农村宅基地"]


def test_utf8_shapefile_with_and_without_cpg(tmp_path):
    with_cpg = write_shapefile(tmp_path / "a", "utf-8", cpg="UTF-8")
    without = write_shapefile(tmp_path / "b", "utf-8", cpg=None)
    a, b = read_source(spec(with_cpg)), read_source(spec(without))
    assert (a.encoding, a.encoding_origin) == ("utf-8", "cpg")
    assert (b.encoding, b.encoding_origin) == ("utf-8", "detected")
    for data in (a, b):
        assert data.gdf["ZLDWMC"].tolist() == ["张庄村", "李家庄村", "镕铧乡"]
        # 地类编码 is 12 bytes in UTF-8: the DBF keeps 10, i.e. 地类编 and one byte of 码, which is dropped
        assert "地类编" in data.gdf.columns


@pytest.mark.parametrize("cpg", ["936", "GBK", "CP936", "ANSI 936"])
def test_cpg_naming_936_gbk(tmp_path, cpg):
    path = write_shapefile(tmp_path, "gbk", cpg=cpg)
    data = read_source(spec(path))
    assert (data.encoding, data.encoding_origin) == ("gbk", "cpg")
    assert data.gdf["ZLDWMC"].tolist() == ["张庄村", "李家庄村", "镕铧乡"]
    assert data.findings == []


def test_cpg_contradicted_by_the_bytes_falls_back_to_detection(tmp_path):
    path = write_shapefile(tmp_path, "gbk", cpg="UTF-8")
    data = read_source(spec(path))
    assert (data.encoding, data.encoding_origin) == ("gbk", "detected")
    assert data.gdf["ZLDWMC"].tolist() == ["张庄村", "李家庄村", "镕铧乡"]
    (finding,) = data.findings
    assert finding.check == "encoding_cpg_mismatch" and "dltb.cpg says UTF-8" in finding.message


def test_manifest_encoding_wins_and_is_verified(tmp_path):
    path = write_shapefile(tmp_path, "gbk")
    data = read_source(spec(path, encoding="gb18030"))
    assert (data.encoding, data.encoding_origin) == ("gb18030", "manifest")
    assert data.gdf["ZLDWMC"].tolist() == ["张庄村", "李家庄村", "镕铧乡"]
    with pytest.raises(EncodingError, match=r"layer 'dltb': encoding: utf-8 does not decode the text"):
        read_source(spec(path, encoding="utf-8"))


def test_undecodable_text_raises_with_the_remedy(tmp_path):
    gdf = dltb_frame(2)
    gdf["ZLDWMC"] = ["ÿþý", "abc"]  # latin-1 bytes FF FE FD: neither UTF-8 nor GB18030
    path = write(gdf, tmp_path / "bad.shp", encoding="ISO-8859-1")
    path.with_suffix(".cpg").unlink(missing_ok=True)
    with pytest.raises(EncodingError, match=r"neither valid UTF-8 nor GBK/GB18030 .*set encoding: in the manifest"):
        read_source(spec(path))
    data = read_source(spec(path, encoding="latin-1"))
    assert data.gdf["ZLDWMC"].tolist() == ["ÿþý", "abc"]


def test_nineteen_digit_codes_in_a_dbf_keep_every_digit(tmp_path):
    gdf = dltb_frame(2)
    gdf["ZLDWDM"] = [1305991000010000000, 1305991000010000001]  # written as N(19,0); GDAL reads float64
    path = write(gdf, tmp_path / "wide.shp", encoding="utf-8")
    assert pyogrio.read_dataframe(path)["ZLDWDM"].dtype == "float64"
    data = read_source(spec(path))
    assert data.gdf["ZLDWDM"].tolist() == ["1305991000010000000", "1305991000010000001"]


def test_geojson_gpkg_filegdb_geoparquet(tmp_path):
    gdf = chinese_frame()
    paths = {
        "geojson": write(gdf.to_crs(4490), tmp_path / "d.geojson", driver="GeoJSON"),
        "gpkg": write(gdf, tmp_path / "d.gpkg", layer="DLTB"),
        "gdb": write(gdf, tmp_path / "d.gdb", driver="OpenFileGDB", layer="DLTB"),
        "parquet": write(gdf, tmp_path / "d.parquet"),
    }
    for kind, path in paths.items():
        data = read_source(spec(path))
        assert data.gdf["ZLDWMC"].tolist() == ["张庄村", "李家庄村", "镕铧乡"], kind
        assert data.gdf["地类编码"].tolist() == ["0101", "0103", "0702"], kind
        assert data.crs.to_epsg() == (4490 if kind == "geojson" else 4547), kind
        assert len(data.gdf) == 3
    assert read_source(spec(paths["gdb"])).layer == "DLTB"
    assert [f.name for f in read_source(spec(paths["gdb"])).files] == sorted(
        f.name for f in paths["gdb"].rglob("*") if f.is_file())


def test_gbk_geojson_is_detected(tmp_path):
    gdf = chinese_frame().to_crs(4490)
    text = gdf.to_json(ensure_ascii=False)
    path = tmp_path / "gbk.geojson"
    path.write_bytes(text.encode("gbk"))
    data = read_source(spec(path))
    assert (data.encoding, data.encoding_origin) == ("gbk", "detected")
    assert data.gdf["ZLDWMC"].tolist() == ["张庄村", "李家庄村", "镕铧乡"]


def test_geopackage_layer_choice(tmp_path):
    path = tmp_path / "two.gpkg"
    write(dltb_frame(2), path, layer="DLTB")
    write(dltb_frame(3), path, layer="XZQ")
    with pytest.raises(SourceError, match=r"has several layers \(DLTB, XZQ\); set layer: <name> in the manifest"):
        read_source(spec(path))
    assert len(read_source(spec(path, layer="XZQ")).gdf) == 3
    assert read_source(spec(path, layer="dltb")).layer == "DLTB"  # case-insensitive match
    with pytest.raises(SourceError, match=r"has no layer 'JCTB'; its layers are DLTB, XZQ; fix layer:"):
        read_source(spec(path, layer="JCTB"))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(SourceError, match=r"layer 'dltb': file .*nothere.shp does not exist; fix path:"):
        read_source(spec(tmp_path / "nothere.shp"))
    path = write(dltb_frame(2), tmp_path / "x.shp")
    path.with_suffix(".dbf").unlink()
    with pytest.raises(SourceError, match=r"lacks its .dbf file\(s\); copy all files of the shapefile"):
        read_source(spec(path))
    broken = tmp_path / "broken.gpkg"
    broken.write_bytes(b"this is not a geopackage" * 10)
    with pytest.raises(SourceError, match=r"cannot (open|read) .*broken.gpkg.*(copy or export it again)"):
        read_source(spec(broken))
    with pytest.raises(SourceError, match=r"unsupported format '.csv'"):
        read_source(spec(tmp_path / "a.csv"))
    plain = tmp_path / "plain.parquet"
    dltb_frame(2).drop(columns="geometry").to_parquet(plain)
    with pytest.raises(SourceError, match=r"without GeoParquet 'geo' metadata"):
        read_source(spec(plain))


def test_sha256_single_file_and_shapefile_set(tmp_path):
    gpkg = write(dltb_frame(2), tmp_path / "d.gpkg", layer="d")
    assert sha256_of(gpkg) == hashlib.sha256(gpkg.read_bytes()).hexdigest()
    shp = write(dltb_frame(2), tmp_path / "s.shp", encoding="utf-8")
    before = sha256_of(shp)
    assert read_source(spec(shp)).sha256 == before
    shp.with_suffix(".prj").write_text(shp.with_suffix(".prj").read_text() + " ")
    assert sha256_of(shp) != before  # every sidecar counts, not only the .shp
    assert {p.suffix for p in read_source(spec(shp)).files} == {".shp", ".shx", ".dbf", ".prj", ".cpg"}


def test_source_info_is_cheap_metadata(tmp_path):
    path = write(dltb_frame(), tmp_path / "d.gpkg", layer="d")
    info = source_info(spec(path))
    assert info.count == 12 and info.crs.to_epsg() == 4547
    b = shapely.total_bounds(patch_boxes())
    assert info.bounds == pytest.approx(tuple(b))

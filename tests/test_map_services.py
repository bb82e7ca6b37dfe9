"""The map page's services on the analysed sample county: imagery tiles, glyphs, search, the 核查表 PDFs,
evidence photo checks (EXIF), 合规性审查 of uploaded 界址点 / shapefile sites, template exports, the colour table.
Expected values come from independent computations (rasterio warps, pyproj, the list API, pdftotext)."""

from __future__ import annotations

import datetime as dt
import io
import math
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

from tests.serve_fixtures import INSPECTOR, PLANNER, analysed_gpkg, bearer, client_for  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
H = bearer(PLANNER)
SITE = {"type": "Polygon", "coordinates": [[[115.165, 37.243], [115.167, 37.243], [115.167, 37.245],
                                            [115.165, 37.245], [115.165, 37.243]]]}


@pytest.fixture(scope="module")
def client(analysed_gpkg, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mapsvc")
    store = folder / "store.gpkg"
    shutil.copyfile(analysed_gpkg, store)
    return client_for(store, folder, manifest=SAMPLE / "manifest.yaml")


def pdf_text(data: bytes, tmp: Path) -> str:
    p = tmp / "x.pdf"
    p.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(p), "-"], capture_output=True, text=True, check=True).stdout


# --- imagery ------------------------------------------------------------------------------------------------

def test_raster_tiles_match_an_independent_warp(client):
    import rasterio
    from PIL import Image
    from rasterio.warp import Resampling, reproject

    listed = {r["role"]: r for r in client.get("/api/rasters", headers=H).json()["rasters"]}
    assert set(listed) == {"image_before", "image_after"}
    assert listed["image_after"]["date"] == "2024-10-18"
    lon0, lat0, lon1, lat1 = listed["image_after"]["bounds"]
    z = 17
    n = 1 << z
    x = int(((lon0 + lon1) / 2 + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians((lat0 + lat1) / 2))) / math.pi) / 2 * n)
    r = client.get(f"/api/rasters/image_after/tiles/{z}/{x}/{y}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))
    half, size = 20037508.342789244, 2 * 20037508.342789244 / n
    from affine import Affine

    dst = np.zeros((3, 256, 256), dtype=np.uint8)
    with rasterio.open(SAMPLE / "image_after.tif") as src:
        for i, band in enumerate((3, 2, 1)):  # red, green, blue of a blue-green-red-NIR image
            reproject(rasterio.band(src, band), dst[i], dst_transform=Affine(size / 256, 0, -half + x * size, 0,
                      -size / 256, half - y * size), dst_crs="EPSG:3857", resampling=Resampling.nearest)
    valid = img[..., 3] > 0
    assert valid.mean() > 0.99
    for i in range(3):  # a linear stretch of the same cells: where not clipped to 0 / 255, correlation ~1
        keep = valid & (img[..., i] > 0) & (img[..., i] < 255)
        assert keep.mean() > 0.5
        corr = np.corrcoef(img[..., i][keep].astype(float), dst[i][keep].astype(float))[0, 1]
        assert corr > 0.98
    etag = r.headers["etag"]
    assert client.get(f"/api/rasters/image_after/tiles/{z}/{x}/{y}.png",
                      headers={"If-None-Match": etag}).status_code == 304
    assert client.get(f"/api/rasters/image_after/tiles/{z}/0/0.png").status_code == 204  # outside the image
    assert client.get(f"/api/rasters/nope/tiles/{z}/{x}/{y}.png").status_code == 404


def test_glyphs_are_served_locally(client):
    r = client.get("/glyphs/Noto Sans CJK SC Regular/0-255.pbf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    glyphs = _glyphs(r.content)
    assert {ord(c) for c in "0123456789ABCxyz"} <= set(glyphs)
    w, h, bitmap = glyphs[ord("A")]
    assert len(bitmap) == (w + 6) * (h + 6) and w > 5 and h > 10
    assert client.get("/glyphs/x/1-2.pbf").status_code == 400


def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        if key & 7 == 0:
            v, i = _varint(buf, i)
        else:
            ln, i = _varint(buf, i)
            v, i = buf[i:i + ln], i + ln
        yield key >> 3, v


def _glyphs(data: bytes) -> dict:
    """{code point: (width, height, bitmap)} read with a protobuf reader written here."""
    out = {}
    for _, stack in _fields(data):
        for num, g in _fields(stack):
            if num == 3:
                f = dict(_fields(g))
                out[f[1]] = (f.get(3, 0), f.get(4, 0), f.get(2, b""))
    return out


# --- search -----------------------------------------------------------------------------------------------------

def test_search_finds_codes_and_names(client, analysed_gpkg):
    from layers.store import open_store

    store = open_store(analysed_gpkg)
    hit = client.get("/api/search", params={"q": "130599202410004"}, headers=H).json()["hits"][0]
    assert (hit["layer"], hit["id"]) == ("flagged_patches", "130599202410004")
    detail = client.get("/api/patches/130599202410004", headers=H).json()
    hb, db = hit["bbox"], detail["bbox"]  # the hit's box bounds the patch's (its corners carried to lon/lat)
    assert hb[0] <= db[0] + 1e-7 and hb[1] <= db[1] + 1e-7 and hb[2] >= db[2] - 1e-7 and hb[3] >= db[3] - 1e-7
    assert hb == pytest.approx(db, abs=1e-4)
    dltb = store.read_layer("dltb", columns=["TBBH", "BSM"], limit=1)
    for column in ("BSM",):
        value = str(dltb[column].iloc[0])
        hits = client.get("/api/search", params={"q": value}, headers=H).json()["hits"]
        assert hits[0]["id"] == value and hits[0]["layer"] == "dltb"
    zd = str(store.read_layer("parcels", columns=["ZDDM"], limit=1)["ZDDM"].iloc[0])
    assert client.get("/api/search", params={"q": zd}, headers=H).json()["hits"][0]["id"] == zd
    village = client.get("/api/search", params={"q": "东孟辛庄"}, headers=H).json()["hits"]
    assert [h["id"] for h in village] == ["东孟辛庄村"]
    assert client.get("/api/search", params={"q": "没有这个"}, headers=H).json()["hits"] == []
    assert client.get("/api/search", params={"q": "x"}).status_code == 401


# --- 核查表 ------------------------------------------------------------------------------------------------------

def test_patch_report_holds_the_patch(client, tmp_path):
    jcbh = "130599202410004"
    d = client.get(f"/api/patches/{jcbh}", headers=H).json()
    r = client.get(f"/api/patches/{jcbh}/report.pdf", headers=H)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    fonts = subprocess.run(["pdffonts", "-"], input=r.content, capture_output=True).stdout.decode()
    text = pdf_text(r.content, tmp_path)
    b = d["breakdown"]
    for needle in (jcbh, f"{b['area_m2']:,.2f}", f"{b['area_m2'] / (2000 / 3):,.2f} 亩", b["verdict_zh"],
                   d["location"]["village"], f"{b['land_use_before']['cultivated']:,.2f}", "前时相影像 2024-04-12",
                   "后时相影像 2024-10-18", d["workflow"]["status"]):
        assert needle in text, needle
    assert "NotoSansCJK" in fonts or "yes" in fonts
    assert client.get("/api/patches/NOPE/report.pdf", headers=H).status_code == 404
    assert client.get(f"/api/patches/{jcbh}/report.pdf").status_code == 401


def test_round_report_lists_the_round(client, tmp_path):
    want = [p["JCBH"] for p in client.get("/api/patches", params={"round": "2024-2", "limit": 1000},
                                           headers=H).json()["items"]]
    r = client.get("/api/rounds/2024-2/report.pdf", headers=H)
    assert r.status_code == 200
    assert sorted(r.headers["x-patches"].split(",")) == sorted(want)
    text = pdf_text(r.content, tmp_path)
    assert all(j in text for j in want) and text.count("卫片图斑实地核查表") >= len(want)
    bad = client.get("/api/rounds/1999-9/report.pdf", headers=H)
    assert bad.status_code == 404 and "2024-1" in bad.json()["description"]


def _jpeg(lon=None, lat=None, when=None, offset="+08:00") -> bytes:
    from PIL import Image

    img = Image.new("RGB", (64, 48), (120, 90, 60))
    exif = Image.Exif()
    if when is not None:
        sub = exif.get_ifd(0x8769)
        sub[36867] = when.strftime("%Y:%m:%d %H:%M:%S")
        sub[36881] = offset
    if lon is not None:
        def dms(v):
            d = int(v)
            m = int((v - d) * 60)
            return (float(d), float(m), round((v - d - m / 60) * 3600, 4))
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2], gps[3], gps[4] = "N", dms(lat), "E", dms(lon)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    return buf.getvalue()


def _upload(client, jcbh, data, taken_at, lon, lat):
    version = client.get(f"/api/patches/{jcbh}", headers=H).json()["workflow"]["version"]
    r = client.post(f"/api/patches/{jcbh}/evidence", headers={**bearer(INSPECTOR), "If-Match": f'"{version}"'},
                    files={"file": ("p.jpg", data, "image/jpeg")},
                    data={"taken_at": taken_at, "lon": str(lon), "lat": str(lat), "azimuth": "90"})
    assert r.status_code == 200, r.text
    return r.json()["audit"]["after"]["evidence"]["checks"]


def test_evidence_photos_are_checked_not_silently_accepted(client, analysed_gpkg):
    from layers.store import open_store

    jcbh = "130599202410005"
    d = client.get(f"/api/patches/{jcbh}", headers=H).json()
    geom = open_store(analysed_gpkg).read_layer("flagged_patches", where=f"\"JCBH\" = '{jcbh}'").geometry.iloc[0]
    c = shapely.centroid(shapely.geometry.shape(d["geometry"]))
    hsx = max(s["HSX"] for s in d["sources"] if s.get("HSX"))[:10]
    now = dt.datetime.now(dt.timezone(dt.timedelta(hours=8)))
    later = now.replace(tzinfo=None, microsecond=0) - dt.timedelta(days=2)
    assert later.date().isoformat() > hsx
    # on the patch, after the later image, EXIF agreeing with what was typed in: no flag
    ok = _upload(client, jcbh, _jpeg(c.x, c.y, later), later.strftime("%Y-%m-%dT%H:%M:%S+08:00"), c.x, c.y)
    assert ok["flags"] == [] and ok["checked_position"] == "exif" and ok["distance_m"] == 0.0
    # EXIF says 0.01° further east (~890 m): flagged as far from the patch and as disagreeing with the form
    far = _upload(client, jcbh, _jpeg(c.x + 0.01, c.y, later), later.strftime("%Y-%m-%dT%H:%M:%S+08:00"), c.x, c.y)
    codes = {f["code"] for f in far["flags"]}
    assert codes == {"far_from_patch", "exif_position_differs"}
    tr = Transformer.from_crs(4490, 4547, always_xy=True)
    px, py = tr.transform(c.x + 0.01, c.y)
    assert far["distance_m"] == pytest.approx(shapely.Point(px, py).distance(geom), abs=0.5)
    # taken before the later image date: it cannot show the change
    early = dt.datetime.fromisoformat(hsx if len(hsx) == 10 else hsx + "-01") - dt.timedelta(days=30)  # 2024-04 ok
    old = _upload(client, jcbh, _jpeg(c.x, c.y, early), early.strftime("%Y-%m-%dT%H:%M:%S+08:00"), c.x, c.y)
    assert {f["code"] for f in old["flags"]} == {"before_period", "too_old"}  # also more than 365 days old
    # no EXIF at all: the typed values are checked, and that is noted
    bare = _upload(client, jcbh, _jpeg(), later.strftime("%Y-%m-%dT%H:%M:%S+08:00"), c.x, c.y)
    assert bare["notes"] == ["no_exif_time", "no_exif_position"] and bare["flags"] == []
    listed = client.get(f"/api/patches/{jcbh}/evidence-checks", headers=H).json()["evidence"]
    assert sorted(len(e["flags"]) for e in listed) == [0, 0, 2, 2]


# --- 合规性审查 uploads -------------------------------------------------------------------------------------------

def _site_4547():
    tr = Transformer.from_crs(4490, 4547, always_xy=True)
    ring = SITE["coordinates"][0]
    return [tr.transform(lon, lat) for lon, lat in ring]


def test_jzd_file_gives_the_same_review_as_the_polygon(client):
    want = client.post("/api/review", json=SITE, headers=H).json()
    pts = _site_4547()
    rows = "\n".join(f"J{i + 1},1,{n:.4f},{38000000 + e:.4f}" for i, (e, n) in enumerate(pts))
    text = ("[属性描述]\n坐标系=2000国家大地坐标系\n几度分带=3\n投影类型=高斯克吕格\n计量单位=米\n带号=38\n"
            f"[地块坐标]\n{len(pts)},3.94,1,某项目用地,面,,工业用地,,@\n{rows}\n")
    r = client.post("/api/review/map", headers=H, files={"file": ("jzd.txt", text.encode("gbk"), "text/plain")})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["result"] == want["result"]
    assert got["site"]["area_m2"] == pytest.approx(want["site"]["area_m2"], abs=0.02)
    assert got["overlaps"]["yjjbnt"]["area_m2"] == pytest.approx(want["overlaps"]["yjjbnt"]["area_m2"], abs=0.02)
    assert got["source"]["epsg"] == 4526 and got["input"]["axis_order"] in ("easting,northing", "northing,easting")
    pieces = [f for f in got["pieces"]["features"] if f["properties"]["layer"] == "yjjbnt"]
    assert sum(f["properties"]["area_m2"] for f in pieces) == pytest.approx(want["overlaps"]["yjjbnt"]["area_m2"],
                                                                            abs=0.05)
    xian = text.replace("2000国家大地坐标系", "1980西安坐标系")
    bad = client.post("/api/review/map", headers=H, files={"file": ("jzd.txt", xian.encode("gbk"), "text/plain")})
    assert bad.status_code == 400 and "CGCS2000" in bad.json()["description"]
    swapped = "\n".join(f"J{i + 1},1,{38000000 + e:.4f},{n:.4f}" for i, (e, n) in enumerate(pts))
    bad = client.post("/api/review/map", headers=H, files={"file": ("jzd.txt", text.replace(rows, swapped).encode(),
                                                                       "text/plain")})
    assert bad.status_code == 400 and "X is the northing" in bad.json()["description"]


def test_zipped_shapefile_and_the_review_pdf(client, tmp_path):
    import geopandas as gpd

    want = client.post("/api/review", json=SITE, headers=H).json()
    folder = tmp_path / "shp"
    folder.mkdir()
    gpd.GeoDataFrame({"NAME": ["项目"]}, geometry=[shapely.Polygon(_site_4547())], crs=4547).to_file(
        folder / "site.shp", encoding="utf-8")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in folder.iterdir():
            zf.write(p, f"用地/{p.name}")
    r = client.post("/api/review/map", headers=H, files={"file": ("site.zip", buf.getvalue(), "application/zip")})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == want["result"]
    assert r.json()["site"]["area_m2"] == pytest.approx(want["site"]["area_m2"], abs=0.02)
    pdf = client.post("/api/review/report.pdf", headers=H, json=SITE)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = pdf_text(pdf.content, tmp_path)
    assert want["result"] in text and f"{want['site']['area_m2']:,.2f}" in text
    assert f"{want['overlaps']['yjjbnt']['area_m2']:,.2f}" in text
    junk = client.post("/api/review/map", headers=H, files={"file": ("x.zip", b"PK\x03\x04junk", "application/zip")})
    assert junk.status_code == 400


# --- exchange export and colours ----------------------------------------------------------------------------------

def test_exchange_template_export(client, tmp_path):
    import pyogrio

    items = client.get("/api/patches", params={"verdict": "suspected_illegal", "limit": 1000},
                       headers=H).json()["items"]
    r = client.get("/api/exchange/wpzf", params={"verdict": "suspected_illegal"}, headers=H)
    assert r.status_code == 200 and r.headers["x-records"] == str(len(items))
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        zf.extractall(tmp_path)
        assert zf.read("WPZFTB.cpg").decode().strip().upper() == "GBK"
    frame = pyogrio.read_dataframe(tmp_path / "WPZFTB.shp", encoding="GBK")
    assert str(frame.crs) == "EPSG:4490" and len(frame) == len(items)
    by = {p["JCBH"]: p for p in items}
    for _, row in frame.iterrows():
        p = by[row["JCBH"]]
        assert row["TBMJ"] == pytest.approx(round(p["area_m2"] * 3 / 2000, 4), abs=1e-4)
        assert row["XZDM"] == p["XZQDM"][:9] and row["CJMC"] == p["village"]
        assert row["YPJG"] == "未批先建" and row["HCJG"] in ("未核查", "违法", "合法", "其他")
    listed = client.get("/api/exchange", headers=H).json()["templates"]
    assert [t["id"] for t in listed] == ["wpzf"] and listed[0]["fields"][0]["name"] == "JCBH"
    assert client.get("/api/exchange/nope", headers=H).status_code == 404
    assert client.get("/api/exchange/wpzf", params={"bogus": 1}, headers=H).status_code == 400


def test_colour_table_covers_every_code(client):
    from layers.codes import SANDIAO_CODES

    cfg = client.get("/api/map").json()
    assert set(cfg["colors"]) == set(SANDIAO_CODES)
    members = [m["code"] for c in cfg["classes"] for m in c["members"]]
    assert sorted(members) == sorted(SANDIAO_CODES) and len(members) == len(set(members))
    assert cfg["colors"]["0101"] == "#f8d072" and "TD/T 1055" in cfg["color_source"]
    names = [layer["name"] for layer in cfg["layers"]]
    assert names[0] == "dltb" and names[-1] == "xzq"
    assert cfg["layers"][0]["detail_zoom"] > 10 and "properties=BSM" in cfg["layers"][0]["tiles"]


def test_ogc_items_html_is_readable(client):
    html = client.get("/ogc/collections/flagged_patches/items?f=html&limit=5").text
    assert 'class="table-scroll"' in html and 'class="items"' in html
    css = client.get("/ogc/static/ogc.css").text
    assert "white-space: nowrap" in css and "position: sticky" in css

"""OGC API – Tiles: MVT tiles decoded and checked against an independent computation (pyproj carries the stored
squares to Web Mercator, tile units computed here), on the GeoPackage and the PostGIS store; the tileset and
tile matrix set documents; ETags; errors; the generalised DLTB below its detail zoom; GDAL's OGC API driver."""

from __future__ import annotations

import math

import mapbox_vector_tile
import numpy as np
import pytest
import shapely
from pyproj import Transformer

from tests.ogc_fixtures import X0, Y0, N, ogc_gpkg, ogc_layers, ogc_pg, served_gpkg  # noqa: F401
from tests.serve_fixtures import analysed_gpkg, client_for  # noqa: F401

HALF = 20037508.342789244
MVT = "application/vnd.mapbox-vector-tile"


def tile_of(lon, lat, z):
    n = 1 << z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def bounds(z, x, y):
    size = 2 * HALF / (1 << z)
    return -HALF + x * size, HALF - (y + 1) * size, -HALF + (x + 1) * size, HALF - y * size


def expected_units(geoms_4547, z, x, y):
    """The squares in tile units (0…4096, y down), computed independently of layers/store/tiles.py."""
    tr = Transformer.from_crs(4547, 3857, always_xy=True)
    x0, y0, x1, y1 = bounds(z, x, y)
    out = []
    for g in geoms_4547:
        c = np.asarray(g.exterior.coords if g.geom_type == "Polygon" else g.geoms[0].exterior.coords)
        mx, my = tr.transform(c[:, 0], c[:, 1])
        out.append(shapely.Polygon(np.column_stack([(np.array(mx) - x0) / (x1 - x0) * 4096,
                                                    (y1 - np.array(my)) / (y1 - y0) * 4096])))
    return out


def decode(data):
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True}) if data else {}


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def client(request, tmp_path_factory):
    store = request.getfixturevalue("ogc_gpkg" if request.param == "gpkg" else "ogc_pg")
    return client_for(store, tmp_path_factory.mktemp("tiles"))


def grid_tile(z):
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0 + 1000, Y0 + 1000)
    return tile_of(lon, lat, z)


def test_tile_features_attributes_and_geometry(client, ogc_layers):
    z = 16
    x, y = grid_tile(z)
    r = client.get(f"/ogc/collections/dltb/tiles/WebMercatorQuad/{z}/{y}/{x}")
    assert r.status_code == 200 and r.headers["content-type"] == MVT
    layer = decode(r.content)["dltb"]
    assert layer["extent"] == 4096
    dltb = ogc_layers["dltb"]
    squares = expected_units(list(dltb.geometry.values), z, x, y)
    tile = shapely.box(0, 0, 4096, 4096)
    inside = {i + 1 for i, s in enumerate(squares) if s.intersects(tile)}
    near = {i + 1 for i, s in enumerate(squares) if s.intersects(shapely.box(-65, -65, 4161, 4161))}
    got = {f["id"] for f in layer["features"]}
    assert inside <= got <= near
    assert len(got) > 10
    checked = 0
    for f in layer["features"]:
        row = dltb.iloc[f["id"] - 1]
        assert f["properties"]["BSM"] == row["BSM"]
        assert f["properties"]["DLBM"] == row["DLBM"]
        assert f["properties"]["TBMJ"] == pytest.approx(row["TBMJ"])
        assert ("KCXS" in f["properties"]) == (not math.isnan(row["KCXS"]))  # MVT has no null: left out
        geom = shapely.geometry.shape(f["geometry"])
        want = squares[f["id"] - 1]
        if not want.within(tile):  # slivers in the buffer are clipped differently by ST_AsMVTGeom and GEOS
            continue
        checked += 1
        assert shapely.hausdorff_distance(geom, want) <= 1.5  # snapped to the unit grid, simplified by ≤ 1 unit
        assert abs(geom.area - want.area) <= want.length * 0.75  # snapping moves each edge by ≤ ½ unit
        # exterior rings clockwise on the screen (y down): positive shoelace area in tile units
        ring = np.asarray(geom.exterior.coords if geom.geom_type == "Polygon" else geom.geoms[0].exterior.coords)
        assert 0.5 * np.sum(ring[:-1, 0] * ring[1:, 1] - ring[1:, 0] * ring[:-1, 1]) > 0
    assert checked >= 10


def test_properties_etag_and_errors(client):
    z = 15
    x, y = grid_tile(z)
    url = f"/ogc/collections/dltb/tiles/WebMercatorQuad/{z}/{y}/{x}"
    r = client.get(url, params={"properties": "DLBM"})
    feats = decode(r.content)["dltb"]["features"]
    assert feats and all(set(f["properties"]) == {"DLBM"} for f in feats)
    etag = r.headers["etag"]
    again = client.get(url, params={"properties": "DLBM"}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag
    assert client.get(url).headers["etag"] != etag  # another representation, another tag
    far = client.get("/ogc/collections/dltb/tiles/WebMercatorQuad/15/100/100")
    assert far.status_code == 200 and far.content == b""
    assert client.get("/ogc/collections/dltb/tiles/WebMercatorQuad/3/9/1").status_code == 404
    assert client.get(f"/ogc/collections/nope/tiles/WebMercatorQuad/{z}/{y}/{x}").status_code == 404
    assert client.get(f"/ogc/collections/dltb/tiles/WorldCRS84Quad/{z}/{y}/{x}").status_code == 404
    bad = client.get(url, params={"properties": "NOPE"})
    assert bad.status_code == 400 and "NOPE" in bad.json()["description"]
    assert client.get(url, params={"foo": "1"}).status_code == 400
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform(X0 + 50, Y0 + 50)  # camera C1
    cx, cy = tile_of(lon, lat, z)
    pts = decode(client.get(f"/ogc/collections/cameras/tiles/WebMercatorQuad/{z}/{cy}/{cx}").content)
    assert pts["cameras"]["features"][0]["geometry"]["type"] == "Point"


def test_tileset_documents(client):
    ts = client.get("/ogc/collections/dltb/tiles/WebMercatorQuad").json()
    assert ts["dataType"] == "vector" and ts["crs"].endswith("/EPSG/0/3857")
    assert ts["tileMatrixSetURI"] == "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
    rels = {link["rel"]: link for link in ts["links"]}
    assert rels["item"]["href"].endswith("/collections/dltb/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}")
    assert rels["item"]["type"] == MVT
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"]["href"].endswith("/tileMatrixSets/WebMercatorQuad")
    x, y = grid_tile(16)
    lim = next(li for li in ts["tileMatrixSetLimits"] if li["tileMatrix"] == "16")
    assert lim["minTileCol"] <= x <= lim["maxTileCol"] and lim["minTileRow"] <= y <= lim["maxTileRow"]
    assert set(ts["layers"][0]["propertiesSchema"]["properties"]) >= {"BSM", "DLBM", "TBMJ"}
    assert ts["layers"][0]["propertiesSchema"]["properties"]["TBMJ"]["type"] == "number"
    sets = client.get("/ogc/collections/dltb/tiles").json()["tilesets"]
    assert [s["dataType"] for s in sets] == ["vector"]
    tms = client.get("/ogc/tileMatrixSets/WebMercatorQuad").json()
    assert tms["id"] == "WebMercatorQuad" and tms["crs"].endswith("/EPSG/0/3857")
    assert tms["tileMatrices"][16]["matrixWidth"] == 1 << 16
    coll = client.get("/ogc/collections/dltb").json()
    assert any(link["rel"] == "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector" for link in coll["links"])
    conf = client.get("/ogc/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt" in conf


def test_generalised_dltb_below_the_detail_zoom(analysed_gpkg, tmp_path):
    """At county scale the DLTB is served dissolved by DLBM: each class's area in the tile equals the sum of its
    patches' areas (carried to tile units independently) within the simplification's tolerance."""
    from layers.store import open_store

    c = client_for(analysed_gpkg, tmp_path)
    ts = c.get("/ogc/collections/dltb/tiles/WebMercatorQuad").json()
    detail = ts["yzt:generalisedBelow"]
    assert 10 < detail <= 14
    store = open_store(analysed_gpkg)
    dltb = store.read_layer("dltb", columns=["DLBM"])
    b = store.bounds("dltb")
    lon, lat = Transformer.from_crs(4547, 4326, always_xy=True).transform((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    z = detail - 2
    x, y = tile_of(lon, lat, z)
    layer = decode(c.get(f"/ogc/collections/dltb/tiles/WebMercatorQuad/{z}/{y}/{x}").content)["dltb"]
    assert all(f["properties"]["generalised"] is True for f in layer["features"])
    by_class: dict[str, float] = {}
    for f in layer["features"]:
        g = shapely.geometry.shape(f["geometry"]).intersection(shapely.box(0, 0, 4096, 4096))
        by_class[f["properties"]["DLBM"]] = by_class.get(f["properties"]["DLBM"], 0.0) + g.area
    tile = shapely.box(0, 0, 4096, 4096)
    for code in ("0103", "0102"):
        squares = expected_units([g for g, d in zip(dltb.geometry.values, dltb["DLBM"]) if d == code], z, x, y)
        want = sum(s.buffer(0).intersection(tile).area for s in squares)
        assert by_class[code] == pytest.approx(want, rel=0.03)
    # from the detail zoom on, each feature is a survey patch with its own attributes
    x, y = tile_of(lon, lat, detail + 2)
    url = f"/ogc/collections/dltb/tiles/WebMercatorQuad/{detail + 2}/{y}/{x}"
    feats = decode(c.get(url).content)["dltb"]["features"]
    assert feats and all("BSM" in f["properties"] and "generalised" not in f["properties"] for f in feats)


@pytest.mark.slow
def test_gdal_reads_the_tiles(served_gpkg, ogc_layers):
    """GDAL's OGC API driver. Its vector-tile branch compares the collection's CRS84 extent with the tile matrix
    in metres (GDAL 3.12), so the extent is given in EPSG:3857 with the MINX … MAXY open options."""
    import pyogrio

    tr = Transformer.from_crs(4547, 3857, always_xy=True)
    xs, ys = tr.transform([X0, X0 + N * 100], [Y0, Y0 + N * 100])
    opts = {"MINX": str(xs[0]), "MINY": str(ys[0]), "MAXX": str(xs[1]), "MAXY": str(ys[1])}
    url = f"OGCAPI:{served_gpkg.base}/collections/dltb"
    frame = pyogrio.read_dataframe(url, layer="Zoom level 16", **opts)
    assert str(frame.crs) == "EPSG:3857"
    assert set(frame["BSM"]) == set(ogc_layers["dltb"]["BSM"])  # every patch, from the tiles covering the extent
    row = frame[frame["BSM"] == "000001"].iloc[0]
    assert row["DLBM"] == ogc_layers["dltb"]["DLBM"].iloc[0]


def test_disk_cache_is_shared_and_follows_the_store(ogc_gpkg, tmp_path):
    """Tiles go to settings.workdir/tile-cache: another process (another app on the same workdir) reads them;
    a layer write (a new store file) starts a new version and drops the old tiles."""
    import shutil

    from layers.store import open_store

    store = tmp_path / "store.gpkg"
    shutil.copyfile(ogc_gpkg, store)
    z = 16
    x, y = grid_tile(z)
    url = f"/ogc/collections/dltb/tiles/WebMercatorQuad/{z}/{y}/{x}"
    first = client_for(store, tmp_path).get(url)
    files = list((tmp_path / "work" / "tile-cache").rglob("*.mvt"))
    assert len(files) == 1 and files[0].read_bytes() == first.content
    files[0].write_bytes(b"")  # what a second app serves comes from the disk cache
    assert client_for(store, tmp_path).get(url).content == b""
    with open_store(store) as s:  # a layer write replaces the file: a new version, recomputed tiles
        frame = s.read_layer("dltb")
        s.write_layers({"dltb": frame.iloc[:5]}, records=[])
    again = client_for(store, tmp_path).get(url)
    got = {f["id"] for f in decode(again.content).get("dltb", {"features": []})["features"]}
    assert got <= {1, 2, 3, 4, 5}
    assert len(list((tmp_path / "work" / "tile-cache").rglob("*.mvt"))) == 1

"""Both store backends: lossless round trip, reads by bbox / columns / where / page, metadata, records."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from layers.errors import CRSError, NotFoundError, StoreError
from layers.records import Finding
from layers.store import open_store
from tests.store_fixtures import EPSG, META, X0, Y0, assert_same_layer, make_points, make_polygons, record


@pytest.fixture(params=["gpkg", "postgis"])
def target(request, tmp_path):
    if request.param == "gpkg":
        return str(tmp_path / "sub" / "store.gpkg")
    return request.getfixturevalue("pg_schema_url")


def test_round_trip_is_lossless(target):
    dltb = make_polygons(600)
    cams = make_points(25)
    store = open_store(target)
    assert store.meta() == {} and store.layer_names() == []
    store.write_layers({"dltb": dltb, "cameras": cams}, [record("dltb", "L1", 600), record("cameras", "L1", 25)],
                       meta=META, findings=[Finding("dltb", "area_mismatch", "warning", "TBMJ 偏差 > 10 %",
                                                    ["13059921000000001"], 1)])
    assert store.layer_names() == ["cameras", "dltb"]
    assert store.meta() == META and store.epsg == EPSG
    got = store.read_layer("dltb")
    assert_same_layer(got, dltb)
    assert got.crs.to_epsg() == EPSG
    assert str(got["TBMJ"].dtype) == "float64" and str(got["SJNF"].dtype) == "int64"
    assert str(got["GDPDJB"].dtype) == "Int64" and str(got["checked"].dtype) == "bool"
    assert got.loc[3, "ZLDWMC"] == dltb.loc[3, "ZLDWMC"]
    points = store.read_layer("cameras")
    assert (shapely.to_wkb(points.geometry.values) == shapely.to_wkb(cams.geometry.values)).all()
    assert points["SXTBH"].tolist() == cams["SXTBH"].tolist()
    assert store.geometry_type("dltb") == "MultiPolygon" and store.geometry_type("cameras") == "Point"
    assert store.schema("dltb") == {"BSM": "str", "DLBM": "str", "ZLDWDM": "str", "ZLDWMC": "str",
                                    "TBMJ": "float", "KCXS": "float", "SJNF": "int", "GDPDJB": "int",
                                    "FRDBS": "str", "QSX": "date", "checked": "bool", "yzt_fid": "int",
                                    "area_m2": "float"}
    assert store.bounds("dltb") == pytest.approx(tuple(dltb.total_bounds), abs=1e-9)
    records = store.load_records()
    assert records["layer"].tolist() == ["dltb", "cameras"]
    assert records.loc[0, "field_mapping"] == {"DLBM": "地类编码", "TBMJ": "TBMJ"}
    assert records.loc[0, "rows_written"] == 600 and records.loc[0, "repaired"] == 1
    findings = store.findings()
    assert findings.to_dict("records") == [{"load_id": "L1", "layer": "dltb", "check": "area_mismatch",
                                            "severity": "warning", "message": "TBMJ 偏差 > 10 %",
                                            "ids": ["13059921000000001"], "count": 1}]


def test_bbox_columns_where_and_paging(target):
    dltb = make_polygons(400, seed=3)
    store = open_store(target)
    store.write_layers({"dltb": dltb}, [record("dltb", "L1", 400)], meta=META)
    bbox = (X0 + 5_000, Y0 + 5_000, X0 + 12_000, Y0 + 9_000)
    env = shapely.bounds(dltb.geometry.values)
    expect = np.flatnonzero((env[:, 2] >= bbox[0]) & (env[:, 0] <= bbox[2])
                            & (env[:, 3] >= bbox[1]) & (env[:, 1] <= bbox[3]))
    assert 20 < len(expect) < 400
    got = store.read_layer("dltb", bbox=bbox)
    assert got["BSM"].tolist() == dltb["BSM"].iloc[expect].tolist()
    assert store.count("dltb", bbox=bbox) == len(expect)
    sub = store.read_layer("dltb", columns=["BSM", "TBMJ"], where="\"DLBM\" IN ('0101', '0102') AND \"TBMJ\" > 2000")
    mask = dltb["DLBM"].isin(["0101", "0102"]) & (dltb["TBMJ"] > 2000)
    assert list(sub.columns) == ["BSM", "TBMJ", "geometry"]
    assert sub["BSM"].tolist() == dltb.loc[mask, "BSM"].tolist()
    assert store.count("dltb", where="\"DLBM\" IN ('0101', '0102') AND \"TBMJ\" > 2000") == int(mask.sum())
    pages = [store.read_layer("dltb", bbox=bbox, limit=7, offset=o) for o in range(0, len(expect) + 7, 7)]
    assert pd.concat(pages)["BSM"].tolist() == got["BSM"].tolist()
    assert len(store.read_layer("dltb", limit=0)) == 0
    empty = store.read_layer("dltb", bbox=(0, 0, 1, 1))
    assert len(empty) == 0 and list(empty.columns) == list(got.columns)
    with pytest.raises(StoreError, match="no column"):
        store.read_layer("dltb", columns=["NOPE"])
    with pytest.raises(StoreError):
        store.read_layer("dltb", where='"NOPE" = 1')
    with pytest.raises(NotFoundError, match="xzq"):
        store.read_layer("xzq")
    with pytest.raises(StoreError, match="bbox"):
        store.read_layer("dltb", bbox=(1, 1, 0, 0))


def test_bbox_is_exact_at_the_millimetre(target):
    """Index boxes are float32 (±0.25 m at 4 000 km): the filter re-checks the envelope in double precision."""
    pts = gpd.GeoDataFrame({"SXTBH": ["in", "edge", "out"]},
                           geometry=shapely.points([X0 + 10.0, X0 + 20.0, X0 + 20.001], [Y0 + 5.0] * 3), crs=EPSG)
    store = open_store(target)
    store.write_layers({"cameras": pts}, [], meta=META)
    got = store.read_layer("cameras", bbox=(X0, Y0, X0 + 20.0, Y0 + 10.0))
    assert got["SXTBH"].tolist() == ["in", "edge"]
    assert store.count("cameras", bbox=(X0 + 20.0005, Y0, X0 + 30, Y0 + 10.0)) == 1


def test_partial_write_replaces_only_given_layers_and_keeps_history(target):
    store = open_store(target)
    first = make_polygons(50, seed=1)
    store.write_layers({"dltb": first, "yjjbnt": make_polygons(30, seed=2)},
                       [record("dltb", "L1", 50), record("yjjbnt", "L1", 30)], meta=META)
    second = make_polygons(80, seed=4)
    store.write_layers({"dltb": second}, [record("dltb", "L2", 80)], meta={**META, "last_load_id": "L2"})
    assert store.count("dltb") == 80 and store.count("yjjbnt") == 30
    assert_same_layer(store.read_layer("dltb"), second)
    assert store.load_records()["load_id"].tolist() == ["L1", "L1", "L2"]
    assert store.load_records("dltb")["load_id"].tolist() == ["L1", "L2"]
    assert store.meta()["last_load_id"] == "L2" and store.meta()["region_code"] == "130599"


def test_store_refuses_another_region_or_crs(target):
    store = open_store(target)
    store.write_layers({"cameras": make_points(3)}, [], meta=META)
    with pytest.raises(StoreError, match="holds region 130599"):
        store.check_region("130600", EPSG)
    with pytest.raises(StoreError, match="EPSG:4547"):
        store.check_region("130599", 4546)
    with pytest.raises(StoreError, match="holds region 130599"):
        store.write_layers({"cameras": make_points(3)}, [], meta={**META, "region_code": "130600"})
    with pytest.raises(CRSError, match="EPSG:4547"):
        store.write_layers({"cameras": make_points(3).to_crs(4490)}, [])
    assert store.count("cameras") == 3


def test_plain_tables(target):
    store = open_store(target)
    store.write_layers({"cameras": make_points(3)}, [], meta=META)
    runs = pd.DataFrame({"run_id": ["r1", "r2"], "counts": [{"flagged": 3}, {"flagged": 5}],
                         "started_at": pd.to_datetime(["2025-01-02 03:04:05.678", "2025-01-03 00:00:00"],
                                                      format="ISO8601"),
                         "n": [1, 2], "share": [0.25, None]})
    store.write_tables({"analysis_runs": runs})
    assert store.table_names() == ["analysis_runs"] and store.layer_names() == ["cameras"]
    got = store.read_table("analysis_runs")
    assert got["run_id"].tolist() == ["r1", "r2"]
    assert got["counts"].tolist() == ['{"flagged": 3}', '{"flagged": 5}']
    assert got["started_at"].tolist() == [pd.Timestamp("2025-01-02 03:04:05.678", tz="UTC"),
                                          pd.Timestamp("2025-01-03", tz="UTC")]
    assert got["share"].iloc[0] == 0.25 and np.isnan(got["share"].iloc[1])
    assert store.read_table("analysis_runs", columns=["n"], where='"n" > 1')["n"].tolist() == [2]
    assert store.count("analysis_runs") == 2
    store.write_tables({"analysis_runs": runs.iloc[:1]})
    assert store.read_table("analysis_runs")["run_id"].tolist() == ["r1"]
    with pytest.raises(StoreError, match="spatial layer"):
        store.write_tables({"cameras": runs})
    with pytest.raises(StoreError, match="plain table"):
        store.write_layers({"analysis_runs": make_points(2)}, [])
    with pytest.raises(NotFoundError):
        store.read_table("workflow")


@pytest.mark.parametrize("name", ["bad name", "yzt_meta", "rtree_x", "1abc", "x" * 64])
def test_unusable_names_are_refused(target, name):
    store = open_store(target)
    with pytest.raises(StoreError, match="name"):
        store.write_layers({name: make_points(2)}, [], meta=META)
    assert store.layer_names() == []


def test_open_store_forms(tmp_path):
    from layers.store.gpkg import GeoPackageStore
    from layers.store.postgis import PostGISStore

    store = open_store(tmp_path / "a" / "b" / "s.gpkg")
    assert isinstance(store, GeoPackageStore) and (tmp_path / "a" / "b").is_dir()
    pg = open_store("postgresql://u:secret@db.example:5433/gis?schema=county_130599&sslmode=disable")
    assert isinstance(pg, PostGISStore) and pg.schema_name == "county_130599"
    assert "secret" not in pg.url
    assert open_store("postgresql://u@h/db").schema_name == "yzt"
    for bad in ["store.sqlite", "http://example.com/x.gpkg", "", "mysql://u@h/db"]:
        with pytest.raises(StoreError, match="gpkg"):
            open_store(bad)
    with pytest.raises(StoreError, match="schema"):
        open_store("postgresql://u@h/db?schema=Bad-Name")


def test_bbox_and_where_together(target):
    """A bbox read with a where clause (how a partition reads its neighbours) returns exactly the rows both
    select, in stored order."""
    dltb = make_polygons(400, seed=5)
    store = open_store(target)
    store.write_layers({"dltb": dltb}, [record("dltb", "L1", 400)], meta=META)
    bbox = (X0 + 3_000, Y0 + 2_000, X0 + 11_000, Y0 + 8_000)
    env = shapely.bounds(dltb.geometry.values)
    inside = (env[:, 2] >= bbox[0]) & (env[:, 0] <= bbox[2]) & (env[:, 3] >= bbox[1]) & (env[:, 1] <= bbox[3])
    keep = inside & ~dltb["DLBM"].isin(["0101", "0102"]).to_numpy()
    assert 10 < keep.sum() < inside.sum()
    got = store.read_layer("dltb", bbox=bbox, where="NOT (\"DLBM\" IN ('0101', '0102'))")
    assert got["BSM"].tolist() == dltb["BSM"][keep].tolist()


def _gpkg_blob(geom, envelope: str) -> bytes:
    """A GeoPackage geometry blob by hand (GPKG 1.3 §2.1.3): magic, version, flags, srs id, envelope, WKB."""
    import struct

    wkb = shapely.to_wkb(geom, byte_order=1)
    empty = shapely.is_empty(geom)
    if envelope == "none":
        code, env = 0, b""
    else:
        b = [float("nan")] * 4 if envelope == "nan" else shapely.bounds(geom).tolist()
        code, env = 1, struct.pack("<4d", b[0], b[2], b[1], b[3])
    flags = 1 | (code << 1) | (0x10 if empty else 0)
    return b"GP" + bytes([0, flags]) + struct.pack("<i", 4523) + env + wkb


@pytest.mark.parametrize("envelope", ["xy", "none"])
def test_envelope_test_of_a_gpkg_blob(envelope):
    """The GeoPackage bbox test reads the blob's envelope, or the WKB when the writer left the envelope out;
    empty and missing geometries never meet a box."""
    from layers.store.gpkg_sqlite import envelope_meets

    square = shapely.box(10.0, 20.0, 11.0, 21.0)
    blob = _gpkg_blob(square, envelope)
    assert envelope_meets(blob, 11.0, 21.0, 12.0, 22.0) == 1  # touching the corner counts
    assert envelope_meets(blob, 0.0, 0.0, 9.999, 30.0) == 0
    assert envelope_meets(blob, 10.5, 0.0, 10.6, 19.999) == 0
    assert envelope_meets(_gpkg_blob(shapely.Polygon(), envelope), -1e9, -1e9, 1e9, 1e9) == 0
    assert envelope_meets(_gpkg_blob(shapely.Polygon(), "nan"), -1e9, -1e9, 1e9, 1e9) == 0
    assert envelope_meets(None, -1e9, -1e9, 1e9, 1e9) == 0


def test_read_near_unites_many_boxes_in_stored_order(target):
    """read_near = the rows whose envelope meets one of the boxes, each once, in stored order — checked against
    the envelopes computed here; a box touching a row's envelope at an edge counts, float32 index boxes do
    not widen the answer."""
    dltb = make_polygons(400, seed=11)
    store = open_store(target)
    store.write_layers({"dltb": dltb}, [record("dltb", "L1", 400)], meta=META)
    env = shapely.bounds(dltb.geometry.values)
    rng = np.random.default_rng(4)
    boxes = [(X0 + x, Y0 + y, X0 + x + w, Y0 + y + h) for x, y, w, h in
             zip(rng.uniform(0, 15_000, 40), rng.uniform(0, 15_000, 40), rng.uniform(0, 2_500, 40),
                 rng.uniform(0, 2_500, 40))]
    row = 17
    boxes.append((env[row, 2], env[row, 3], env[row, 2] + 1.0, env[row, 3] + 1.0))  # touches row 17's corner
    boxes.append((env[row, 2] + 0.001, env[row, 1], env[row, 2] + 0.002, env[row, 3]))  # 1 mm right of it
    boxes.append(boxes[0])  # a repeated box adds nothing
    expect = [i for i in range(len(dltb)) if any(env[i, 2] >= a and env[i, 0] <= c and env[i, 3] >= b and
                                                 env[i, 1] <= d for a, b, c, d in boxes)]
    assert row in expect and 20 < len(expect) < 400
    got = store.read_near("dltb", boxes, columns=["BSM"])
    assert list(got.columns) == ["BSM", "geometry"]
    assert got["BSM"].tolist() == dltb["BSM"].iloc[expect].tolist()
    assert len(store.read_near("dltb", [])) == 0
    with pytest.raises(StoreError, match="bbox"):
        store.read_near("dltb", [(1, 1, 0, 0)])


def test_postgis_writes_tables_frozen_and_lz4(pg_schema_url):
    """A written table's pages are all-visible and all-frozen (COPY FREEZE: no hint bits for readers to set,
    nothing for autovacuum to freeze), and a large value is TOASTed with lz4 — checked by the server itself
    (pg_visibility, pg_column_compression), on the table as committed."""
    import psycopg

    from layers.store.postgis import parse_url

    store = open_store(pg_schema_url)
    store.write_layers({"dltb": make_polygons(3000)}, [record("dltb", "L1", 3000)], meta=META)
    ids = pd.DataFrame({"run_id": ["r1"], "record_ids": [",".join(f"1305992100{k:07d}" for k in range(20000))]})
    store.write_tables({"indicator_values": ids})
    conninfo, schema, _ = parse_url(pg_schema_url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_visibility")
        pages, visible, frozen = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE all_visible), count(*) FILTER (WHERE all_frozen) "
            f"FROM pg_visibility_map('\"{schema}\".dltb')").fetchone()
        lz4 = conn.execute(f"SELECT pg_column_compression(record_ids) FROM \"{schema}\".indicator_values").fetchone()
    assert pages > 10 and visible == pages and frozen == pages
    assert lz4 == ("lz4",)
    assert store.read_table("indicator_values")["record_ids"].iloc[0].endswith("13059921000019999")


def test_postgis_store_refuses_a_database_not_encoded_in_utf8(pg_cluster, monkeypatch):
    """A bureau's database created EUC_CN (PostgreSQL's only Chinese server encoding, GB 2312) cannot hold
    characters that layers and the store's own findings hold (m², ×, rare place names): a write is refused
    before anything is created, with one message naming the encoding and the remedy; the same layer and
    finding then go into a UTF8 database and come back unchanged — also from a client whose environment asks
    for GBK (PGCLIENTENCODING, common on Chinese desktops): the store's sessions speak UTF-8 regardless."""
    import psycopg

    with psycopg.connect(pg_cluster.url_for("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE yzt_euc_cn ENCODING 'EUC_CN' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    with psycopg.connect(pg_cluster.url_for("yzt_euc_cn"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    layer = make_polygons(60)
    layer["ZLDWMC"] = [["东关村", "西营村", "南街村（一组）", ""][i % 4] for i in range(60)]
    gap = Finding("dltb", "gap", "warning", "县界内 3.20 m² 无图斑覆盖", ["13059921000000001"], 1)
    euc = open_store(pg_cluster.url_for("yzt_euc_cn") + "?schema=euc")
    with pytest.raises(StoreError, match=r"encoded EUC_CN; the store needs a UTF8 database .* ENCODING 'UTF8'"):
        euc.write_layers({"dltb": layer}, [record("dltb", "L1", 60)], meta=META, findings=[gap])
    with psycopg.connect(pg_cluster.url_for("yzt_euc_cn"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'euc'").fetchone()[0] == 0
    monkeypatch.setenv("PGCLIENTENCODING", "GBK")
    utf8 = open_store(pg_cluster.url + "?schema=utf8_text")
    utf8.write_layers({"dltb": layer}, [record("dltb", "L1", 60)], meta=META, findings=[gap])
    assert utf8.read_layer("dltb")["ZLDWMC"].tolist() == layer["ZLDWMC"].tolist()
    assert utf8.findings()["message"].tolist() == ["县界内 3.20 m² 无图斑覆盖"]

"""The store's filters (layers.store.query) and paged reader, on both backends with the same tests: each filter
selects what the same predicate selects on the frame written (computed with pandas and shapely, independently of
the SQL), pages are stable, counts exact, and text is never spliced into SQL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import shapely

from layers.errors import NotFoundError, StoreError
from layers.store import open_reader, open_store
from layers.store.query import (
    ROW_ID,
    And,
    Between,
    Compare,
    CompareColumns,
    Const,
    In,
    IsNull,
    Like,
    Not,
    Or,
    PageRequest,
    Spatial,
    SpatialSelection,
)
from tests.store_fixtures import META, X0, Y0, make_polygons

N = 60


@pytest.fixture(params=["gpkg", "postgis"])
def store_url(request, tmp_path):
    url = str(tmp_path / "store.gpkg") if request.param == "gpkg" else request.getfixturevalue("pg_schema_url")
    with open_store(url) as store:
        store.write_layers({"dltb": make_polygons(N, seed=5)}, records=[], meta=META)
    return url


@pytest.fixture(scope="module")
def frame():
    return make_polygons(N, seed=5)


def ids(mask) -> list[int]:
    """Row ids (1..n in write order) where ``mask`` holds."""
    return [i + 1 for i in np.flatnonzero(np.asarray(mask))]


FILTERS = {
    "equal": (Compare("DLBM", "=", "0101"), lambda f: f["DLBM"] == "0101"),
    "not equal, int": (Compare("SJNF", "<>", 2023), lambda f: f["SJNF"] != 2023),
    "greater, float": (Compare("TBMJ", ">", 4000.5), lambda f: f["TBMJ"] > 4000.5),
    "like": (Like("BSM", "130599210000000_1"), lambda f: f["BSM"].str.fullmatch(r"130599210000000.1")),
    "not like": (Like("ZLDWDM", "%0010000000", negate=True), lambda f: ~f["ZLDWDM"].str.endswith("0010000000")),
    "in": (In("DLBM", ("0102", "1201")), lambda f: f["DLBM"].isin(["0102", "1201"])),
    "not in": (In("DLBM", ("0102", "1201"), negate=True), lambda f: ~f["DLBM"].isin(["0102", "1201"])),
    "between": (Between("TBMJ", 1000.0, 3000.0), lambda f: f["TBMJ"].between(1000.0, 3000.0)),
    "is null": (IsNull("QSX"), lambda f: f["QSX"].isna()),
    "is not null": (IsNull("GDPDJB", negate=True), lambda f: f["GDPDJB"].notna()),
    "date": (Compare("QSX", ">=", dt.date(2023, 6, 1)),
             lambda f: f["QSX"].map(lambda d: d is not None and d >= dt.date(2023, 6, 1))),
    "bool": (Compare("checked", "=", True), lambda f: f["checked"]),
    "two columns": (CompareColumns("TBMJ", "<", "area_m2"), lambda f: f["TBMJ"] < f["area_m2"]),
    "and / or / not": (Or(And(Compare("DLBM", "=", "0101"), Not(Compare("checked", "=", True))),
                          Compare("TBMJ", "<", 500.0)),
                       lambda f: ((f["DLBM"] == "0101") & ~f["checked"]) | (f["TBMJ"] < 500.0)),
    "const": (Const(False), lambda f: np.zeros(len(f), bool)),
    "row ids": (In(ROW_ID, (3, 7, 11)), lambda f: np.isin(np.arange(1, len(f) + 1), [3, 7, 11])),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_read_layer_filters_like_pandas(store_url, frame, name):
    where, expected = FILTERS[name]
    got = open_store(store_url).read_layer("dltb", where=where, columns=["BSM"])
    assert got["BSM"].tolist() == frame.loc[np.asarray(expected(frame), bool), "BSM"].tolist()


@pytest.mark.parametrize("name", list(FILTERS))
def test_pages_filter_like_pandas(store_url, frame, name):
    where, expected = FILTERS[name]
    want = ids(expected(frame))
    page = open_reader(store_url).page("dltb", PageRequest(where=where, limit=5, offset=1, columns=["BSM"]))
    assert page.matched == len(want)
    assert page.ids == want[1:6]
    assert [r[0] for r in page.rows] == [frame["BSM"].iloc[i - 1] for i in want[1:6]]


def test_text_values_are_never_spliced_into_sql(store_url, frame):
    store = open_store(store_url)
    nasty = ["O'Brien \"庄\"", "x'); DROP TABLE dltb; --", "多行\n名称", "%", "_"]
    got = store.read_layer("dltb", where=In("ZLDWMC", tuple(nasty)), columns=["ZLDWMC"])
    assert got["ZLDWMC"].tolist() == frame.loc[frame["ZLDWMC"].isin(nasty), "ZLDWMC"].tolist()
    assert store.count("dltb") == N  # the table is still there
    page = open_reader(store_url).page("dltb", PageRequest(where=Compare("ZLDWMC", "=", nasty[0]), columns=[]))
    assert page.matched == int((frame["ZLDWMC"] == nasty[0]).sum()) > 0


def test_spatial_filters_and_selection(store_url, frame):
    reader = open_reader(store_url)
    area = shapely.box(X0 + 2000, Y0 + 2000, X0 + 9000, Y0 + 7000)
    geoms = frame.geometry.values
    for op, expected in (("intersects", shapely.intersects(geoms, area)),
                         ("within", shapely.within(geoms, area)),
                         ("disjoint", shapely.disjoint(geoms, area))):
        page = reader.page("dltb", PageRequest(where=Spatial(op, area), limit=1000, columns=[]))
        assert page.ids == ids(expected), op
    # a selection (the bbox path): exact geometry test, also through a thin inner box
    poly = shapely.Polygon([(X0 + 1000, Y0 + 1000), (X0 + 15000, Y0 + 3000), (X0 + 12000, Y0 + 16000)])
    inner = (X0 + 8000, Y0 + 5000, X0 + 10000, Y0 + 7000)
    assert poly.covers(shapely.box(*inner))
    selection = SpatialSelection(poly, tuple(poly.bounds), inner)
    page = reader.page("dltb", PageRequest(selection=selection, limit=1000, columns=["BSM"]))
    assert page.ids == ids(shapely.intersects(geoms, poly))
    # both together, sorted by a column
    page = reader.page("dltb", PageRequest(selection=selection, where=Compare("DLBM", "=", "0101"),
                                           sortby=[("TBMJ", "-")], limit=1000, columns=["TBMJ"]))
    both = np.asarray(shapely.intersects(geoms, poly) & (frame["DLBM"] == "0101"))
    want = frame[both].sort_values("TBMJ", ascending=False)
    assert [r[0] for r in page.rows] == pytest.approx(want["TBMJ"].tolist())


def test_get_a_row_and_its_geometry(store_url, frame):
    reader = open_reader(store_url)
    values, wkb = reader.get("dltb", 7, ["BSM", "TBMJ"])
    assert values[0] == frame["BSM"].iloc[6] and float(values[1]) == pytest.approx(frame["TBMJ"].iloc[6])
    assert shapely.from_wkb(wkb).equals(frame.geometry.iloc[6])
    assert reader.get("dltb", N + 1, ["BSM"]) is None
    with pytest.raises(NotFoundError, match="layer 'nope' is not in store"):
        reader.get("nope", 1, [])


def test_the_reader_follows_the_store(store_url):
    reader = open_reader(store_url)
    generation = reader.generation
    with open_store(store_url) as store:
        store.write_layers({"cameras": make_polygons(3, seed=1)}, records=[])
    reader._next_check = 0.0  # PostGIS looks at its catalog at most every 2 s
    reader.refresh()
    assert "cameras" in reader.layers and reader.layers["cameras"].total == 3
    assert reader.generation > generation


def test_spatial_filters_need_the_paged_reader(store_url):
    with pytest.raises(StoreError, match="paged reader"):
        open_store(store_url).read_layer("dltb", where=Spatial("intersects", shapely.box(0, 0, 1, 1)))


def test_plain_tables_take_filters_too(store_url):
    store = open_store(store_url)
    store.write_tables({"runs": pd.DataFrame({"run_id": ["a", "b", "c"], "n": [1, 2, 3]})})
    got = store.read_table("runs", where=Or(Compare("run_id", "=", "a"), Compare("n", ">", 2)))
    assert got["run_id"].tolist() == ["a", "c"]

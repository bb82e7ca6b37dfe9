"""CQL2 text filters really filter: each case returns exactly the ids an independent pandas / shapely
evaluation of the same data gives, on the GeoPackage and on the PostGIS store."""

from __future__ import annotations

import httpx
import numpy as np
import pyproj
import pytest
import shapely

from tests.ogc_fixtures import (  # noqa: F401
    CODES,
    X0,
    Y0,
    N,
    ogc_gpkg,
    ogc_layers,
    ogc_pg,
    served,
    served_gpkg,
    served_pg,
)


def ids(mask) -> list[int]:
    return [int(i) + 1 for i in np.flatnonzero(np.asarray(mask))]


def lonlat_polygon(coords_gk):
    tr = pyproj.Transformer.from_crs(4547, 4490, always_xy=True)
    return [tr.transform(x, y) for x, y in coords_gk]


# A polygon given in lon/lat (CRS84); the expected ids come from the same polygon's vertices carried to GK.
POLY_GK = [(X0 + 150, Y0 + 150), (X0 + 450, Y0 + 150), (X0 + 450, Y0 + 350), (X0 + 150, Y0 + 150)]
POLY_LL = lonlat_polygon(POLY_GK)
POLY_WKT = "POLYGON((" + ", ".join(f"{x!r} {y!r}" for x, y in POLY_LL) + "))"
POLY_GK_WKT = "POLYGON((" + ", ".join(f"{y!r} {x!r}" for x, y in POLY_GK) + "))"  # northing, easting

CASES = [
    ("DLBM = '0101'", lambda d: d.DLBM == "0101"),
    ("DLBM <> '0101'", lambda d: d.DLBM != "0101"),
    ("TBMJ < 8110", lambda d: d.TBMJ < 8110),
    ("TBMJ > 8490.5", lambda d: d.TBMJ > 8490.5),
    ("TBMJ >= 8490 AND TBMJ <= 8495", lambda d: (d.TBMJ >= 8490) & (d.TBMJ <= 8495)),
    ("8490 < TBMJ", lambda d: d.TBMJ > 8490),
    ("DLMC LIKE '水%'", lambda d: d.DLMC.str.startswith("水")),
    ("DLMC LIKE '_地'", lambda d: d.DLMC.str.len().eq(2) & d.DLMC.str.endswith("地")),
    ("DLMC NOT LIKE '%地'", lambda d: ~d.DLMC.str.endswith("地")),
    ("ZLDWDM LIKE '1305991010%'", lambda d: d.ZLDWDM.str.startswith("1305991010")),
    ("DLBM IN ('0101', '1201')", lambda d: d.DLBM.isin(["0101", "1201"])),
    ("DLBM NOT IN ('0101', '1201')", lambda d: ~d.DLBM.isin(["0101", "1201"])),
    ("TBMJ BETWEEN 8200 AND 8210", lambda d: d.TBMJ.between(8200, 8210)),
    ("TBMJ NOT BETWEEN 8110 AND 8490", lambda d: ~d.TBMJ.between(8110, 8490)),
    ("KCXS IS NULL", lambda d: d.KCXS.isna()),
    ("KCXS IS NOT NULL AND KCXS > 0.06", lambda d: d.KCXS.notna() & (d.KCXS > 0.06)),
    ("DLBM = '0101' OR SJNF = 2024", lambda d: (d.DLBM == "0101") | (d.SJNF == 2024)),
    ("NOT (DLBM = '0101' OR SJNF = 2024)", lambda d: ~((d.DLBM == "0101") | (d.SJNF == 2024))),
    ("(DLBM = '0102' OR DLBM = '0103') AND NOT KCXS IS NULL AND TBMJ < 8200",
     lambda d: d.DLBM.isin(["0102", "0103"]) & d.KCXS.notna() & (d.TBMJ < 8200)),
    ("yzt_fid = area_m2", lambda d: d.yzt_fid == d.area_m2),
    # CQL2 precedence: NOT, then AND, then OR (pygeofilter 0.4.0 alone would read ((A OR B) AND C))
    ("DLBM = '0101' OR DLBM = '0102' AND TBMJ < 8200",
     lambda d: (d.DLBM == "0101") | ((d.DLBM == "0102") & (d.TBMJ < 8200))),
    ("NOT DLBM = '0101' AND SJNF = 2023", lambda d: (d.DLBM != "0101") & (d.SJNF == 2023)),
]


@pytest.mark.parametrize("text, want", CASES, ids=[c[0] for c in CASES])
def test_attribute_filters(served, ogc_layers, text, want):
    d = ogc_layers["dltb"]
    r = httpx.get(served.base + "/collections/dltb/items", params={"filter": text, "limit": 1000}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = ids(want(d))
    assert [f["id"] for f in body["features"]] == expected
    assert body["numberMatched"] == len(expected)


def test_spatial_filters(served, ogc_layers):
    g = ogc_layers["dltb"].geometry.values
    tr = pyproj.Transformer.from_crs(4490, 4547, always_xy=True)
    lit = shapely.Polygon([tr.transform(x, y) for x, y in POLY_LL])  # vertex by vertex, as the server does

    def run(text, **extra):
        r = httpx.get(served.base + "/collections/dltb/items", params={"filter": text, "limit": 1000, **extra},
                      timeout=60)
        assert r.status_code == 200, r.text
        return [f["id"] for f in r.json()["features"]]

    inter = ids(shapely.intersects(g, lit))
    assert 3 < len(inter) < 40
    assert run(f"S_INTERSECTS(geometry, {POLY_WKT})") == inter
    assert run(f"S_INTERSECTS(geometry, {POLY_WKT}) AND DLBM = '0101'") == \
        [i for i in inter if ogc_layers["dltb"].DLBM.iloc[i - 1] == "0101"]
    assert run(f"S_INTERSECTS(geometry, {POLY_WKT}) OR BSM = '000400'") == sorted(set(inter) | {400})
    assert run(f"NOT S_INTERSECTS(geometry, {POLY_WKT})") == ids(~shapely.intersects(g, lit))
    assert run(f"S_DISJOINT(geometry, {POLY_WKT})") == ids(shapely.disjoint(g, lit))
    assert run(f"S_WITHIN(geometry, {POLY_WKT})") == ids(shapely.within(g, lit))
    # the same polygon given in the GK zone (northing, easting) through filter-crs
    assert run(f"S_INTERSECTS(geometry, {POLY_GK_WKT})",
               **{"filter-crs": "http://www.opengis.net/def/crs/EPSG/0/4547"}) == \
        ids(shapely.intersects(g, shapely.Polygon(POLY_GK)))
    # BBOX in lon/lat
    lon0, lat0 = POLY_LL[0]
    lon1, lat1 = POLY_LL[2]
    box_gk = shapely.Polygon([tr.transform(x, y) for x, y in
                              [(lon0, lat0), (lon1, lat0), (lon1, lat1), (lon0, lat1), (lon0, lat0)]])
    got = run(f"BBOX(geometry, {lon0!r}, {lat0!r}, {lon1!r}, {lat1!r})")
    assert got == ids(shapely.intersects(g, box_gk))


def test_filter_with_bbox_and_paging(served, ogc_layers):
    d = ogc_layers["dltb"]
    text = "DLBM IN ('0101', '0102') AND TBMJ > 8300"
    want = ids(d.DLBM.isin(["0101", "0102"]) & (d.TBMJ > 8300))
    got, url, params = [], served.base + "/collections/dltb/items", {"filter": text, "limit": 10}
    while url:
        body = httpx.get(url, params=params, timeout=60).json()
        params = None
        assert body["numberMatched"] == len(want) == 49
        got += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    assert got == want


def test_dates_booleans_and_queryable_parameters(served):
    def run(coll, **params):
        r = httpx.get(served.base + f"/collections/{coll}/items", params=params, timeout=60)
        assert r.status_code == 200, r.text
        return [f["id"] for f in r.json()["features"]]

    assert run("monitoring", filter="QSX < DATE('2024-02-01')") == [1]
    assert run("monitoring", filter="QSX IS NULL") == [3]
    assert run("monitoring", filter="HSX BETWEEN DATE('2024-05-01') AND DATE('2024-07-01')") == [1, 2, 3]
    assert run("flagged_patches", filter="reviewed = true") == [2]
    assert run("flagged_patches", filter="verdict_zh = '未批先建'") == [1]
    assert run("flagged_patches", filter="source_ids LIKE '%J9%'") == [2]
    assert run("dltb", DLBM="0101", limit=1000) == [k + 1 for k in range(N * N) if CODES[k % 8] == "0101"]
    assert run("dltb", SJNF="2024", DLBM="0102", limit=1000) == [k + 1 for k in range(N * N) if k % 8 == 1]

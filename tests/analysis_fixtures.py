"""A tiny hand-made region for the analysis tests (boxes in metres, EPSG:4547).

The region lies at the central meridian (easting 500 000, within 300 m of it), where the Gauss-Krüger scale
factor is 1 to 2e-9: ellipsoidal areas equal the plane areas of the boxes to far better than 0.01 m², so every
expected area below is computed by hand from the box sides.

Cells of 100 m × 100 m (x to the right, y up, offsets from X0, Y0):

    y 100–200:  c4 [0,100]      c5 [100,200]    c6 [200,300]
    y   0–100:  c1 [0,100]      c2 [100,200]    c3 [200,300]

dltb_prev: c1 0103 旱地 (KCXS 0.1, village V1), c2 0103 (KCXS 0, V3), c3 0301 乔木林地 (V2), c4 1206 裸土地 (V2),
           c5 0601 工业 (V4), c6 0404 其他草地 (V4).
dltb:      c1a [0,50]×[0,100] 0103 (KCXS 0.1) + c1b [50,100]×[0,100] 0601; c2 0702; c3a [200,250]×[0,100] 1206 +
           c3b [250,300]×[0,100] 0301; c4 0601; c5 0601 (unchanged, same BSM); c6 0508.
"""

from __future__ import annotations

import geopandas as gpd
from shapely.geometry import box

X0, Y0 = 500_000.0, 4_100_000.0
CRS = "EPSG:4547"
V1, V2, V3, V4 = "130599100001", "130599100002", "130599100003", "130599101001"


def b(x1, y1, x2, y2):
    """A box given in offsets (metres) from (X0, Y0)."""
    return box(X0 + x1, Y0 + y1, X0 + x2, Y0 + y2)


def layer(rows: list[dict], crs: str = CRS) -> gpd.GeoDataFrame:
    if not rows:
        return gpd.GeoDataFrame(geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    return gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "g"} for r in rows],
                            geometry=[r["g"] for r in rows], crs=crs)


def zl(village: str) -> str:
    return village + "0000000"


def dltb_prev() -> gpd.GeoDataFrame:
    return layer([
        dict(BSM="P-c1", DLBM="0103", KCXS=0.1, ZLDWDM=zl(V1), g=b(0, 0, 100, 100)),
        dict(BSM="P-c2", DLBM="0103", KCXS=0.0, ZLDWDM=zl(V3), g=b(100, 0, 200, 100)),
        dict(BSM="P-c3", DLBM="0301", KCXS=0.0, ZLDWDM=zl(V2), g=b(200, 0, 300, 100)),
        dict(BSM="P-c4", DLBM="1206", KCXS=0.0, ZLDWDM=zl(V2), g=b(0, 100, 100, 200)),
        dict(BSM="P-c5", DLBM="0601", KCXS=0.0, ZLDWDM=zl(V4), g=b(100, 100, 200, 200)),
        dict(BSM="P-c6", DLBM="0404", KCXS=0.0, ZLDWDM=zl(V4), g=b(200, 100, 300, 200)),
    ])


def dltb() -> gpd.GeoDataFrame:
    return layer([
        dict(BSM="C-c1a", DLBM="0103", KCXS=0.1, ZLDWDM=zl(V1), g=b(0, 0, 50, 100)),
        dict(BSM="C-c1b", DLBM="0601", KCXS=0.0, ZLDWDM=zl(V1), g=b(50, 0, 100, 100)),
        dict(BSM="C-c2", DLBM="0702", KCXS=0.0, ZLDWDM=zl(V3), g=b(100, 0, 200, 100)),
        dict(BSM="C-c3a", DLBM="1206", KCXS=0.0, ZLDWDM=zl(V2), g=b(200, 0, 250, 100)),
        dict(BSM="C-c3b", DLBM="0301", KCXS=0.0, ZLDWDM=zl(V2), g=b(250, 0, 300, 100)),
        dict(BSM="C-c4", DLBM="0601", KCXS=0.0, ZLDWDM=zl(V2), g=b(0, 100, 100, 200)),
        dict(BSM="P-c5", DLBM="0601", KCXS=0.0, ZLDWDM=zl(V4), g=b(100, 100, 200, 200)),
        dict(BSM="C-c6", DLBM="0508", KCXS=0.0, ZLDWDM=zl(V4), g=b(200, 100, 300, 200)),
    ])


def yjjbnt() -> gpd.GeoDataFrame:
    return layer([dict(BSM="Y1", g=b(0, 0, 60, 100)), dict(BSM="Y2", g=b(100, 0, 200, 40))])


def stbhhx() -> gpd.GeoDataFrame:
    return layer([dict(BSM="S1", g=b(260, 0, 300, 50))])


def czkfbj() -> gpd.GeoDataFrame:
    return layer([dict(BSM="Z1", g=b(100, 100, 200, 200)), dict(BSM="Z2", g=b(0, 100, 50, 200))])


def approvals() -> gpd.GeoDataFrame:
    return layer([
        dict(PZWH="P1", PZLX="农用地转用", PZRQ="2024-03-01", g=b(50, 0, 100, 100)),
        dict(PZWH="P2", PZLX="土地征收", PZRQ="2024-04-01", g=b(50, 0, 100, 100)),  # same land as P1
        dict(PZWH="P3", PZLX="临时用地", PZRQ="2024-02-01", g=b(200, 0, 250, 100)),
        dict(PZWH="P4", PZLX="农用地转用", PZRQ="2025-06-01", g=b(0, 100, 100, 200)),  # after survey_date
        dict(PZWH="P5", PZLX="农用地转用", PZRQ="2024-01-01", g=b(200, 100, 300, 150)),
    ])


def monitoring() -> gpd.GeoDataFrame:
    def m(jcbh, g, hsx="2024-06-30"):
        return dict(JCBH=jcbh, SOURCE="satellite", ROUND="2024-1", HSX=hsx, g=g)

    return layer([
        m("M1", b(50, 10, 100, 90)),     # legal: P1 ∪ P2 cover it
        m("M2", b(200, 110, 300, 190)),  # partly approved: P5 covers half
        m("M3", b(100, 20, 200, 80)),    # suspected illegal: no approval
        m("M4", b(200, 10, 250, 90)),    # other: 临时用地 P3
        m("M5", b(10, 10, 18, 18)),      # other: 64 m² < 100 m²
        m("M6", b(260, 10, 290, 40)),    # other: still 0301 乔木林地
        m("M7", b(0, 120, 100, 180)),    # suspected illegal: P4 dated after survey_date
        m("M9", b(90, 10, 200, 30)),     # partly approved 200 / 2200; village V3 holds the larger share
    ])


def villages() -> gpd.GeoDataFrame:
    return layer([dict(XZQDM="130599100001", XZQJB="village", g=b(-100, -100, 150, 300)),
                  dict(XZQDM="130599100002", XZQJB="village", g=b(150, -100, 400, 300)),
                  dict(XZQDM="130599100", XZQJB="township", g=b(-100, -100, 400, 300))])


def region() -> dict[str, gpd.GeoDataFrame]:
    return {"dltb": dltb(), "dltb_prev": dltb_prev(), "yjjbnt": yjjbnt(), "stbhhx": stbhhx(),
            "czkfbj": czkfbj(), "approvals": approvals(), "monitoring": monitoring(), "xzq": villages()}

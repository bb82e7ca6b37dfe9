"""Standard field codes per layer role, their Chinese names, and the aliases found in bureau exports.

The codes (DLBM, TBMJ, ZLDWDM …) are data: they stay exactly as the standards write them, and every
module refers to them through this one module. Field names are mapped to these codes at load time,
never later.
"""

from __future__ import annotations

from dataclasses import dataclass

# Columns yizhangtu adds to every stored layer.
FID = "yzt_fid"  # stable row id within a stored layer, 1..n in source order
AREA = "area_m2"  # ellipsoidal area on the CGCS2000 ellipsoid, m², 2 decimals
SOURCE = "SOURCE"  # monitoring: satellite / camera / drone / survey …
ROUND = "ROUND"  # monitoring: issuing round, e.g. 2024-Q2


@dataclass(frozen=True)
class Field:
    code: str
    zh: str
    en: str
    kind: str = "str"  # str | float | int | date


FIELDS: dict[str, Field] = {
    f.code: f
    for f in [
        Field("BSM", "标识码", "feature identifier", "str"),
        Field("YSDM", "要素代码", "feature class code"),
        Field("XZQDM", "行政区代码", "administrative unit code (6 county / 9 township / 12 village digits)"),
        Field("XZQMC", "行政区名称", "administrative unit name"),
        Field("XZQJB", "行政区级别", "level: county / township / village"),
        Field("TBBH", "图斑编号", "patch number"),
        Field("DLBM", "地类编码", "land-use code"),
        Field("DLMC", "地类名称", "land-use name"),
        Field("QSXZ", "权属性质", "ownership type"),
        Field("QSDWDM", "权属单位代码", "owner unit code"),
        Field("QSDWMC", "权属单位名称", "owner unit name"),
        Field("ZLDWDM", "坐落单位代码", "location unit code (village code + 7 digits)"),
        Field("ZLDWMC", "坐落单位名称", "location unit name"),
        Field("TBMJ", "图斑面积", "patch area (ellipsoidal, m²)", "float"),
        Field("KCDLBM", "扣除地类编码", "deducted land-use code (田坎 1203)"),
        Field("KCXS", "扣除地类系数", "deduction coefficient (田坎 share)", "float"),
        Field("KCMJ", "扣除地类面积", "deducted area = round(TBMJ × KCXS, 2)", "float"),
        Field("TBDLMJ", "图斑地类面积", "land-use area = TBMJ − KCMJ", "float"),
        Field("GDLX", "耕地类型", "cultivated-land type (TT 梯田 / PD 坡地)"),
        Field("GDPDJB", "耕地坡度级别", "cultivated-land slope grade 1–5"),
        Field("XZDWKD", "线状地物宽度", "linear feature width", "float"),
        Field("TBXHDM", "图斑细化代码", "patch refinement code"),
        Field("TBXHMC", "图斑细化名称", "patch refinement name"),
        Field("ZZSXDM", "种植属性代码", "planting attribute code"),
        Field("ZZSXMC", "种植属性名称", "planting attribute name"),
        Field("GDDB", "耕地等别", "cultivated-land grade"),
        Field("FRDBS", "飞入地标识", "enclave flag"),
        Field("CZCSXM", "城镇村属性码", "urban/village attribute code (201 城市 … 205 风景名胜)"),
        Field("SJNF", "数据年份", "data year", "int"),
        Field("MSSM", "描述说明", "remarks"),
        Field("YJJBNTTBBH", "永久基本农田图斑编号", "permanent basic farmland patch number"),
        Field("YJJBNTMJ", "永久基本农田面积", "permanent basic farmland area", "float"),
        Field("MJ", "面积", "area", "float"),
        Field("GHFQDM", "规划分区代码", "planning zone code"),
        Field("GHFQMC", "规划分区名称", "planning zone name"),
        Field("HXLX", "红线类型", "red-line type"),
        Field("PZWH", "批准文号", "approval document number"),
        Field("DZJGH", "电子监管号", "electronic supervision number"),
        Field("PZLX", "批准类型", "approval kind: 农用地转用 / 土地征收 / 供地 / 临时用地 / 设施农用地备案"),
        Field("PZRQ", "批准日期", "approval date", "date"),
        Field("PZMJ", "批准面积", "approved area", "float"),
        Field("ZDDM", "宗地代码", "cadastral parcel code"),
        Field("TDYT", "土地用途", "parcel land use"),
        Field("GDRQ", "供地日期", "supply date", "date"),
        Field("JGRQ", "竣工日期", "completion / start-of-use date", "date"),
        Field("JCBH", "监测编号", "monitoring patch number"),
        Field("QSX", "前时相", "earlier image date", "date"),
        Field("HSX", "后时相", "later image date", "date"),
        Field("TBLX", "图斑类型", "change type"),
        Field("SXTBH", "摄像头编号", "camera id"),
        Field("GD", "高度", "mounting height above ground, m", "float"),
        Field("KSJL", "可视距离", "view range, m", "float"),
        Field("FWJ", "方位角", "azimuth of view centre, degrees", "float"),
        Field("SPJ", "水平视场角", "horizontal field of view, degrees", "float"),
        Field(SOURCE, "来源", "issuing source (satellite / camera / drone / survey)"),
        Field("SQJCBH", "上期监测编号", "the 监测编号 this patch re-issues (a later round's link to an earlier patch)"),
        Field(ROUND, "批次", "issuing round"),
    ]
}

# Roles and their fields: required ones are checked at load; optional ones are kept when present.
ROLES: dict[str, dict] = {
    "xzq": {
        "zh": "行政区",
        "required": ["XZQDM", "XZQMC"],
        "optional": ["XZQJB", "BSM"],
    },
    "dltb": {
        "zh": "地类图斑 (年度变更调查)",
        "required": ["BSM", "DLBM", "ZLDWDM", "TBMJ"],
        "optional": ["TBBH", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWMC", "KCDLBM", "KCXS", "KCMJ",
                     "TBDLMJ", "GDLX", "GDPDJB", "XZDWKD", "TBXHDM", "TBXHMC", "ZZSXDM", "ZZSXMC",
                     "GDDB", "FRDBS", "CZCSXM", "SJNF", "MSSM", "YSDM"],
    },
    "dltb_prev": {  # the same survey, one year earlier: the same fields
        "zh": "上一年度地类图斑",
        "required": ["BSM", "DLBM", "ZLDWDM", "TBMJ"],
        "optional": ["TBBH", "DLMC", "QSXZ", "QSDWDM", "QSDWMC", "ZLDWMC", "KCDLBM", "KCXS", "KCMJ",
                     "TBDLMJ", "GDLX", "GDPDJB", "XZDWKD", "TBXHDM", "TBXHMC", "ZZSXDM", "ZZSXMC",
                     "GDDB", "FRDBS", "CZCSXM", "SJNF", "MSSM", "YSDM"],
    },
    "yjjbnt": {
        "zh": "永久基本农田",
        "required": ["BSM"],
        "optional": ["XZQDM", "YJJBNTTBBH", "DLBM", "YJJBNTMJ", "ZLDWDM"],
    },
    "stbhhx": {
        "zh": "生态保护红线",
        "required": ["BSM"],
        "optional": ["XZQDM", "MJ", "HXLX"],
    },
    "czkfbj": {
        "zh": "城镇开发边界",
        "required": ["BSM"],
        "optional": ["XZQDM", "GHFQDM", "GHFQMC", "MJ"],
    },
    "ghfq": {
        "zh": "规划分区",
        "required": ["GHFQDM"],
        "optional": ["BSM", "XZQDM", "GHFQMC", "MJ"],
    },
    "approvals": {
        "zh": "用地审批",
        "required": ["PZWH", "PZLX"],
        "optional": ["DZJGH", "PZRQ", "PZMJ", "XZQDM", "BSM"],
    },
    "parcels": {
        "zh": "宗地",
        "required": ["ZDDM"],
        "optional": ["TDYT", "GDRQ", "JGRQ", "PZWH", "DZJGH", "XZQDM", "MJ"],
    },
    "monitoring": {
        "zh": "监测图斑",
        "required": ["JCBH"],
        "optional": ["XZQDM", "QSX", "HSX", "TBLX", "MJ", SOURCE, ROUND, "SQJCBH"],
    },
    "cameras": {
        "zh": "监控摄像头",
        "required": ["SXTBH"],
        "optional": ["GD", "KSJL", "FWJ", "SPJ", "XZQDM"],
    },
}

# Roles whose geometry is points; all others are polygons.
POINT_ROLES = {"cameras"}
# Roles whose patches carry TBMJ / KCXS checks.
SURVEY_ROLES = {"dltb", "dltb_prev"}
# Raster roles (issue: rasters); paths only, handled by analysis/raster code.
RASTER_ROLES = {"dem", "image_before", "image_after", "landcover", "basemap"}  # basemap: an offline orthophoto mosaic

# Aliases seen in exports: Chinese names, lower-case, and 10-character DBF truncations.
# Keys are compared after str.strip().upper(); values are standard codes.
ALIASES: dict[str, str] = {
    **{f.zh: f.code for f in FIELDS.values()},
    "地类代码": "DLBM",
    "地类": "DLMC",
    "图斑面积(平方米)": "TBMJ",
    "面积(平方米)": "MJ",
    "面积": "MJ",
    "扣除系数": "KCXS",
    "田坎系数": "KCXS",
    "扣除面积": "KCMJ",
    "地类面积": "TBDLMJ",
    "坐落代码": "ZLDWDM",
    "坐落单位": "ZLDWMC",
    "权属代码": "QSDWDM",
    "行政区划代码": "XZQDM",
    "行政代码": "XZQDM",
    "行政区名": "XZQMC",
    "行政区划名称": "XZQMC",
    "坡度级别": "GDPDJB",
    "批准文号": "PZWH",
    "批文号": "PZWH",
    "审批文号": "PZWH",
    "监管号": "DZJGH",
    "批准类型": "PZLX",
    "审批类型": "PZLX",
    "用地类型": "PZLX",
    "批准时间": "PZRQ",
    "监测图斑编号": "JCBH",
    "图斑编码": "JCBH",
    "前时相时间": "QSX",
    "后时相时间": "HSX",
    "前时相日期": "QSX",
    "后时相日期": "HSX",
    "QSXSJ": "QSX",
    "HSXSJ": "HSX",
    "QSJ": "QSX",
    "HSJ": "HSX",
    # monitoring lists: round (批次) and source (来源) columns as bureaus name them
    "原监测编号": "SQJCBH",
    "原图斑编号": "SQJCBH",
    "上轮监测编号": "SQJCBH",
    "上期图斑编号": "SQJCBH",
    "关联监测编号": "SQJCBH",
    "YJCBH": "SQJCBH",
    "PC": ROUND,
    "JCPC": ROUND,
    "监测批次": ROUND,
    "下发批次": ROUND,
    "LY": SOURCE,
    "SJLY": SOURCE,
    "JCLY": SOURCE,
    "数据来源": SOURCE,
    "监测来源": SOURCE,
    "图斑来源": SOURCE,
    "变化类型": "TBLX",
    "宗地编码": "ZDDM",
    "用途": "TDYT",
    "供地时间": "GDRQ",
    "摄像头ID": "SXTBH",
    "点位编号": "SXTBH",
    "高程": "GD",
    "分区代码": "GHFQDM",
    "分区名称": "GHFQMC",
    # DBF truncations (10 characters) of the longer codes
    "YJJBNTTBBH": "YJJBNTTBBH",
    "YJJBNTTBB": "YJJBNTTBBH",
    "YJJBNTMJ": "YJJBNTMJ",
}


# SOURCE values as monitoring lists write them → the source names the rules use (dedupe.source_order).
SOURCE_VALUES: dict[str, str] = {
    "卫片": "satellite", "卫星": "satellite", "卫星遥感": "satellite", "遥感": "satellite", "卫片执法": "satellite",
    "遥感监测": "satellite", "satellite": "satellite",
    "摄像头": "camera", "视频": "camera", "视频监控": "camera", "铁塔": "camera", "铁塔视频": "camera",
    "监控": "camera", "高空瞭望": "camera", "camera": "camera",
    "无人机": "drone", "航拍": "drone", "无人机航拍": "drone", "drone": "drone",
    "变更调查": "survey", "年度变更调查": "survey", "调查": "survey", "survey": "survey",
}


def standard_source(value) -> str | None:
    """A monitoring SOURCE value in the rules' vocabulary: 卫片 → satellite, 摄像头 → camera, 无人机 → drone,
    变更调查 → survey; other values are kept (stripped; ASCII lower-cased)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    if not text:
        return None
    return SOURCE_VALUES.get(text, SOURCE_VALUES.get(text.lower(), text.lower() if text.isascii() else text))


def standard_name(name: str) -> str | None:
    """Return the standard field code for a source field name, or None if unknown.

    >>> standard_name("地类编码"), standard_name("dlbm"), standard_name("YJJBNTTBB")
    ('DLBM', 'DLBM', 'YJJBNTTBBH')
    """
    key = name.strip()
    if key.upper() in FIELDS:
        return key.upper()
    if key in ALIASES:
        return ALIASES[key]
    if key.upper() in ALIASES:
        return ALIASES[key.upper()]
    return None

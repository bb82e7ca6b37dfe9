"""Land-use code sets: 三调工作分类 (extends GB/T 21010-2017), 二调 (GB/T 21010-2007 3-digit codes) and
用地用海分类 (from 2024). A layer's code set is detected at load, stored, and never mixed silently.

The tables here are facts of the standards. Which codes count as construction land for a given
statistic is a *rule* that bureaus tune; the analysis rules file starts from ``CATEGORY_SANDIAO`` below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CodeSetError

SANDIAO = "sandiao"  # 三调工作分类 4-character codes (0101, 05H1 …)
ERDIAO = "erdiao"  # 二调 3-digit codes (011, 012 …)
YDYH = "ydyh"  # 用地用海分类 (0101 水田, 07 居住用地, 0701 城镇住宅用地 …)

CODE_SET_NAMES = {SANDIAO: "三调工作分类", ERDIAO: "二调土地分类", YDYH: "国土空间调查、规划、用途管制用地用海分类"}

# 三调工作分类: code -> name
SANDIAO_CODES: dict[str, str] = {
    "0101": "水田", "0102": "水浇地", "0103": "旱地",
    "0201": "果园", "0202": "茶园", "0203": "橡胶园", "0204": "其他园地",
    "0301": "乔木林地", "0302": "竹林地", "0303": "红树林地", "0304": "森林沼泽", "0305": "灌木林地",
    "0306": "灌丛沼泽", "0307": "其他林地",
    "0401": "天然牧草地", "0402": "沼泽草地", "0403": "人工牧草地", "0404": "其他草地",
    "05H1": "商业服务业设施用地", "0508": "物流仓储用地",
    "0601": "工业用地", "0602": "采矿用地", "0603": "盐田",
    "0701": "城镇住宅用地", "0702": "农村宅基地",
    "08H1": "机关团体新闻出版用地", "08H2": "科教文卫用地", "0809": "公用设施用地", "0810": "公园与绿地",
    "09": "特殊用地",
    "1001": "铁路用地", "1002": "轨道交通用地", "1003": "公路用地", "1004": "城镇村道路用地",
    "1005": "交通服务场站用地", "1006": "农村道路", "1007": "机场用地", "1008": "港口码头用地",
    "1009": "管道运输用地",
    "1101": "河流水面", "1102": "湖泊水面", "1103": "水库水面", "1104": "坑塘水面", "1105": "沿海滩涂",
    "1106": "内陆滩涂", "1107": "沟渠", "1108": "沼泽地", "1109": "水工建筑用地", "1110": "冰川及永久积雪",
    "1201": "空闲地", "1202": "设施农用地", "1203": "田坎", "1204": "盐碱地", "1205": "沙地",
    "1206": "裸土地", "1207": "裸岩石砾地",
}

# Three land categories for the 三调 code set (domain.md §3). 0303 0304 0306 0402 0603 1105 1106 1108
# are 湿地 in the 三调 sense; for the three-category statistic they fall as listed here.
CULTIVATED = frozenset({"0101", "0102", "0103"})
CONSTRUCTION_SANDIAO = frozenset({
    "05H1", "0508", "0601", "0602", "0603", "0701", "0702", "08H1", "08H2", "0809", "0810", "09",
    "1001", "1002", "1003", "1004", "1005", "1007", "1008", "1009", "1109", "1201",
})
UNUSED_SANDIAO = frozenset({"0404", "1101", "1102", "1105", "1106", "1108", "1110", "1204", "1205", "1206",
                            "1207"})
AGRICULTURAL_SANDIAO = frozenset(
    c for c in SANDIAO_CODES
    if c[:2] in {"01", "02", "03"} and c not in CONSTRUCTION_SANDIAO and c not in UNUSED_SANDIAO
) | frozenset({"0401", "0402", "0403", "1006", "1103", "1104", "1107", "1202", "1203"})

AGRICULTURAL, CONSTRUCTION, UNUSED = "农用地", "建设用地", "未利用地"
CATEGORY_SANDIAO: dict[str, str] = {
    **{c: AGRICULTURAL for c in AGRICULTURAL_SANDIAO},
    **{c: CONSTRUCTION for c in CONSTRUCTION_SANDIAO},
    **{c: UNUSED for c in UNUSED_SANDIAO},
}

# 二调 (GB/T 21010-2007) codes: 3-digit second-level codes.
ERDIAO_CODES: dict[str, str] = {
    "011": "水田", "012": "水浇地", "013": "旱地", "021": "果园", "022": "茶园", "023": "其他园地",
    "031": "有林地", "032": "灌木林地", "033": "其他林地", "041": "天然牧草地", "042": "人工牧草地",
    "043": "其他草地", "051": "批发零售用地", "052": "住宿餐饮用地", "053": "商务金融用地", "054": "其他商服用地",
    "061": "工业用地", "062": "采矿用地", "063": "仓储用地", "071": "城镇住宅用地", "072": "农村宅基地",
    "081": "机关团体用地", "082": "新闻出版用地", "083": "科教用地", "084": "医卫慈善用地", "085": "文体娱乐用地",
    "086": "公共设施用地", "087": "公园与绿地", "088": "风景名胜设施用地", "091": "军事设施用地",
    "092": "使领馆用地", "093": "监教场所用地", "094": "宗教用地", "095": "殡葬用地", "101": "铁路用地",
    "102": "公路用地", "103": "街巷用地", "104": "农村道路", "105": "机场用地", "106": "港口码头用地",
    "107": "管道运输用地", "111": "河流水面", "112": "湖泊水面", "113": "水库水面", "114": "坑塘水面",
    "115": "沿海滩涂", "116": "内陆滩涂", "117": "沟渠", "118": "水工建筑用地", "119": "冰川及永久积雪",
    "121": "空闲地", "122": "设施农用地", "123": "田坎", "124": "盐碱地", "125": "沼泽地", "126": "沙地",
    "127": "裸地",
}

# 用地用海分类 (《国土空间调查、规划、用途管制用地用海分类指南》, 自然资发〔2023〕234号): first and second level codes
# (and the third-level codes surveys use), as the 年度国土变更调查 writes them from 2024 (1207 城镇村道路用地 is the
# survey's extension of 城镇道路用地).
YDYH_CODES: dict[str, str] = {
    "01": "耕地", "0101": "水田", "0102": "水浇地", "0103": "旱地",
    "02": "园地", "0201": "果园", "0202": "茶园", "0203": "橡胶园地", "0204": "油料园地", "0205": "其他园地",
    "03": "林地", "0301": "乔木林地", "0302": "竹林地", "0303": "灌木林地", "0304": "其他林地",
    "04": "草地", "0401": "天然牧草地", "0402": "人工牧草地", "0403": "其他草地",
    "05": "湿地", "0501": "森林沼泽", "0502": "灌丛沼泽", "0503": "沼泽草地", "0504": "其他沼泽地",
    "0505": "沿海滩涂", "0506": "内陆滩涂", "0507": "红树林地",
    "06": "农业设施建设用地", "0601": "乡村道路用地", "060101": "村道用地", "060102": "村庄内部道路用地",
    "0602": "种植设施建设用地", "0603": "畜禽养殖设施建设用地", "0604": "水产养殖设施建设用地",
    "07": "居住用地", "0701": "城镇住宅用地", "0702": "城镇社区服务设施用地", "0703": "农村宅基地",
    "0704": "农村社区服务设施用地",
    "08": "公共管理与公共服务用地", "0801": "机关团体用地", "0802": "科研用地", "0803": "文化用地",
    "0804": "教育用地", "0805": "体育用地", "0806": "医疗卫生用地", "0807": "社会福利用地",
    "09": "商业服务业用地", "0901": "商业用地", "0902": "商务金融用地", "0903": "娱乐用地",
    "0904": "其他商业服务业用地",
    "10": "工矿用地", "1001": "工业用地", "1002": "采矿用地", "1003": "盐田",
    "11": "仓储用地", "1101": "物流仓储用地", "1102": "储备库用地",
    "12": "交通运输用地", "1201": "铁路用地", "1202": "公路用地", "1203": "机场用地", "1204": "港口码头用地",
    "1205": "管道运输用地", "1206": "城市轨道交通用地", "1207": "城镇村道路用地", "1208": "交通场站用地",
    "1209": "其他交通设施用地",
    "13": "公用设施用地", "1301": "供水用地", "1302": "排水用地", "1303": "供电用地", "1304": "供燃气用地",
    "1305": "供热用地", "1306": "通信用地", "1307": "邮政用地", "1308": "广播电视设施用地", "1309": "环卫用地",
    "1310": "消防用地", "1311": "干渠", "1312": "水工设施用地", "1313": "其他公用设施用地",
    "14": "绿地与开敞空间用地", "1401": "公园绿地", "1402": "防护绿地", "1403": "广场用地",
    "15": "特殊用地", "1501": "军事设施用地", "1502": "使领馆用地", "1503": "宗教用地", "1504": "文物古迹用地",
    "1505": "监教场所用地", "1506": "殡葬用地", "1507": "其他特殊用地",
    "16": "留白用地",
    "17": "陆地水域", "1701": "河流水面", "1702": "湖泊水面", "1703": "水库水面", "1704": "坑塘水面",
    "1705": "沟渠", "1706": "冰川及常年积雪",
    "23": "其他土地", "2301": "空闲地", "2302": "田坎", "2303": "田间道", "2304": "盐碱地", "2305": "沙地",
    "2306": "裸土地", "2307": "裸岩石砾地",
}

CODE_TABLES = {SANDIAO: SANDIAO_CODES, ERDIAO: ERDIAO_CODES, YDYH: YDYH_CODES}

# Codes that exist only in one set: the evidence used to tell the sets apart.
_SANDIAO_ONLY = frozenset(c for c in SANDIAO_CODES if c not in YDYH_CODES) | {"05H1", "08H1", "08H2"}
_YDYH_ONLY = frozenset(c for c in YDYH_CODES if c not in SANDIAO_CODES)


def normalise_code(value) -> str | None:
    """Tidy one DLBM value: strip, drop a trailing '.0' from numeric exports, restore a lost leading zero.

    >>> normalise_code(303.0), normalise_code(" 0101 "), normalise_code("5H1"), normalise_code(None)
    ('0303', '0101', '05H1', None)

    A three-digit value that is a 二调 code stays as it is (101 is 二调 铁路用地, not 三调 0101 without its zero).
    """
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = str(value).strip().upper()
    if not text or text in {"NAN", "NONE"}:
        return None
    if text.endswith(".0"):
        text = text[:-2]
    if len(text) == 3 and text not in ERDIAO_CODES and ("0" + text) in SANDIAO_CODES:
        text = "0" + text  # 4-character code exported as a number (0101 -> 101)
    if len(text) == 1:
        text = "0" + text
    return text


def normalise_codes(values: pd.Series) -> pd.Series:
    """normalise_code over a column (object dtype, None for no code), computed once per distinct value: a
    county's 300 000 patches hold a few dozen codes."""
    values = values.astype(object)
    table = {u: normalise_code(u) for u in pd.unique(values) if not pd.isna(u)}
    out = values.map(table)
    return pd.Series(out.to_numpy(dtype=object, na_value=None), index=values.index, dtype=object)


def detect_code_set(codes: Iterable, declared: str | None = None, where: str = "the layer") -> str:
    """Decide which code set a column of DLBM values uses, from the codes as a whole.

    * 3-digit codes beside 4-character ones, or codes that exist only in 三调 (05H1, 08H2, 1006 …) beside codes
      that exist only in 用地用海 (0703, 0901, 1207, 17xx, 23xx …): the layer mixes sets — CodeSetError naming
      example codes of each.
    * Codes that tell the set (only in one of them) decide it.
    * No telling code: when some code means a different land use in the two sets (0601 工业用地 in 三调,
      乡村道路用地 in 用地用海; 0702 农村宅基地 / 城镇社区服务设施用地 …), the set cannot be told and reading it in the
      wrong one would change the numbers — CodeSetError naming those codes, unless ``declared`` (the
      manifest's ``code_set:``) says which. When every code means the same in both (0101 水田 …), 三调.
    * ``declared`` must agree with the telling codes, else CodeSetError.
    """
    values = {c for c in (normalise_code(v) for v in codes) if c}
    if declared is not None and declared not in CODE_TABLES:
        raise CodeSetError(f"{where}: code_set {declared!r} is unknown; use one of {', '.join(CODE_TABLES)}")
    if not values:
        if declared is not None:
            return declared
        raise CodeSetError(f"{where}: no land-use codes (DLBM) to detect a code set from; check the field mapping")
    three_digit = {v for v in values if len(v) == 3 and v.isdigit()}
    others = values - three_digit
    if three_digit and others:
        raise CodeSetError(
            f"{where}: land-use codes mix 二调 3-digit codes (e.g. {sorted(three_digit)[:3]}) with 4-character codes "
            f"(e.g. {sorted(others)[:3]}); convert the layer to one code set before loading"
        )
    if three_digit:
        found = ERDIAO
        if declared is not None and declared != found:
            raise CodeSetError(f"{where}: code_set: {declared} is declared but the codes are 二调 3-digit codes "
                               f"(e.g. {sorted(three_digit)[:3]}); fix code_set: in the manifest")
        return found
    sandiao_hits = others & _SANDIAO_ONLY
    ydyh_hits = others & _YDYH_ONLY
    if sandiao_hits and ydyh_hits:
        raise CodeSetError(
            f"{where}: land-use codes mix 三调 codes (e.g. {sorted(sandiao_hits)[:3]}) with 用地用海 codes "
            f"(e.g. {sorted(ydyh_hits)[:3]}); convert the layer to one code set before loading"
        )
    telling = YDYH if ydyh_hits else SANDIAO if sandiao_hits else None
    if declared is not None:
        if telling is not None and telling != declared:
            hits = sorted(ydyh_hits or sandiao_hits)[:5]
            raise CodeSetError(f"{where}: code_set: {declared} is declared but codes {hits} exist only in "
                               f"{CODE_SET_NAMES[telling]}; fix code_set: in the manifest (or the codes)")
        return declared
    if telling is not None:
        return telling
    differing = sorted(v for v in others if v in SANDIAO_CODES and v in YDYH_CODES and _differs(v))
    if differing:
        examples = "; ".join(f"{c} = {SANDIAO_CODES[c]} (三调) or {YDYH_CODES[c]} (用地用海)" for c in differing[:4])
        raise CodeSetError(
            f"{where}: cannot tell whether the land-use codes are 三调 or 用地用海: no code belongs to one set only, "
            f"and {', '.join(differing[:10])} mean different land uses in the two ({examples}); set "
            "code_set: sandiao or code_set: ydyh on the layer in the manifest")
    return SANDIAO


def _differs(code: str) -> bool:
    """True when a code present in both sets stands for a different land use in each (through the crosswalk)."""
    return crosswalk().codes.get(code, code) != code


# --- the crosswalk 用地用海 → 三调 (data: layers/crosswalk_ydyh.yaml) ----------------------------------------------

CROSSWALK_PATH = Path(__file__).with_name("crosswalk_ydyh.yaml")


@dataclass(frozen=True)
class Crosswalk:
    version: int
    codes: dict[str, str]  # 用地用海 code → 三调 code
    reverse: dict[str, str]  # 三调 code → the 用地用海 code it is written as
    sha256: str

    def label(self) -> str:
        return f"{CROSSWALK_PATH.name} v{self.version} (sha256 {self.sha256[:12]})"


@lru_cache(maxsize=1)
def crosswalk() -> Crosswalk:
    """The packaged crosswalk, checked: every target is a 三调 code, every source a 用地用海 code, and the reverse
    table round-trips (to_sandiao(from_sandiao(c)) == c for every 三调 code)."""
    import yaml

    raw_bytes = CROSSWALK_PATH.read_bytes()
    doc = yaml.safe_load(raw_bytes.decode("utf-8"))
    codes = {str(k): str(v) for k, v in doc["codes"].items()}
    reverse = {str(k): str(v) for k, v in doc["reverse"].items()}
    bad = [f"{k}→{v}" for k, v in codes.items() if k not in YDYH_CODES or v not in SANDIAO_CODES]
    bad += [f"reverse {k}→{v}" for k, v in reverse.items()
            if k not in SANDIAO_CODES or codes.get(v) != k]
    missing = sorted(set(SANDIAO_CODES) - set(reverse))
    if bad or missing:  # a packaging error, not a user's
        raise CodeSetError(f"crosswalk {CROSSWALK_PATH}: inconsistent entries {bad[:5]}; 三调 codes without a "
                           f"reverse: {missing[:5]}")
    return Crosswalk(int(doc["version"]), codes, reverse, hashlib.sha256(raw_bytes).hexdigest())


UNMAPPED_PREFIX = "ydyh:"  # a 用地用海 code the crosswalk does not map: no rule list holds it (unclassified)


def to_sandiao(codes, code_set: str) -> np.ndarray:
    """The 三调 codes the rules are written in, for DLBM values of ``code_set``.

    三调 values are returned as they are; 用地用海 values through the crosswalk (a 3rd-level code not listed falls
    back to its 4-character parent); a 用地用海 code the crosswalk does not map becomes ``ydyh:<code>``, which no
    rule list holds, so the analysis reports it as unclassified instead of guessing. 二调 codes are refused.
    """
    arr = np.asarray(codes, dtype=object)
    if code_set in (None, SANDIAO):
        return arr
    if code_set == ERDIAO:
        raise CodeSetError("二调 (3-digit) land-use codes cannot be analysed: convert the layer to 三调 or 用地用海 "
                           "codes before ingest")
    if code_set != YDYH:
        raise CodeSetError(f"code set {code_set!r} is unknown; use one of {', '.join(CODE_TABLES)}")
    table = crosswalk().codes

    def one(c):
        if c is None or c == "" or (isinstance(c, float) and np.isnan(c)):
            return c
        c = str(c)
        hit = table.get(c) or (table.get(c[:4]) if len(c) > 4 else None)
        return hit if hit is not None else UNMAPPED_PREFIX + c

    lookup = {c: one(c) for c in pd.unique(arr)}
    return np.array([lookup[c] for c in arr], dtype=object)


def from_sandiao(codes, code_set: str = YDYH) -> np.ndarray:
    """三调 codes written in ``code_set`` (the crosswalk's designated reverse); unknown codes stay as they are."""
    arr = np.asarray(codes, dtype=object)
    if code_set == SANDIAO:
        return arr
    if code_set != YDYH:
        raise CodeSetError(f"cannot write codes in {code_set!r}; use sandiao or ydyh")
    table = crosswalk().reverse
    return np.array([table.get(c, c) if isinstance(c, str) else c for c in arr], dtype=object)


def unknown_codes(codes: pd.Series, code_set: str) -> pd.Series:
    """Boolean mask of values that are not codes of ``code_set`` (empty values count as unknown).

    Each distinct value is normalised once, so a 300k-row column costs a handful of calls, not 300k.
    """
    known = set(CODE_TABLES[code_set])
    verdict = {value: normalise_code(value) not in known for value in codes.dropna().unique()}
    return codes.map(verdict).fillna(True).astype(bool)


def code_name(code: str, code_set: str = SANDIAO) -> str | None:
    return CODE_TABLES.get(code_set or SANDIAO, SANDIAO_CODES).get(code)

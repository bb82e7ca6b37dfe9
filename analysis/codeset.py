"""Survey layers in either land-use code set, read through the rules' code set.

The rules (analysis/rules.yaml) and the indicator registry classify land by 三调 codes. A DLTB coded in
用地用海 (年度变更调查 from 2024) is translated through the versioned crosswalk of layers/crosswalk_ydyh.yaml
before any rule sees it; its own codes stay beside the translation (column DLBM_SOURCE) for display, so
records and reports show the codes the bureau's data carries. 二调 codes are refused.
"""

from __future__ import annotations

import geopandas as gpd

from layers.codes import CODE_SET_NAMES, SANDIAO, YDYH, crosswalk, to_sandiao
from layers.errors import CodeSetError

SOURCE_CODES = "DLBM_SOURCE"


def to_rule_codes(gdf: gpd.GeoDataFrame | None, code_set: str | None, layer: str) -> gpd.GeoDataFrame | None:
    """``gdf`` with DLBM in 三调 codes and, for a 用地用海 layer, its own codes in DLBM_SOURCE.

    ``code_set`` is the set recorded for the layer at ingest (None = 三调, the default of older stores)."""
    if gdf is None or code_set in (None, SANDIAO) or "DLBM" not in gdf.columns:
        return gdf
    if code_set != YDYH:
        raise CodeSetError(f"layer {layer!r} uses {CODE_SET_NAMES.get(code_set, code_set)} codes, which the rules "
                           "cannot read; convert it to 三调 or 用地用海 codes and ingest it again")
    out = gdf.copy()
    out[SOURCE_CODES] = out["DLBM"]
    out["DLBM"] = to_sandiao(out["DLBM"].to_numpy(dtype=object), YDYH)
    return out


def crosswalk_label(code_sets: dict[str, str | None]) -> str | None:
    """The crosswalk a run used (its file, version and checksum), or None when no layer needed it."""
    return crosswalk().label() if YDYH in code_sets.values() else None

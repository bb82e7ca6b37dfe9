"""Land classes of DLTB codes under the rules: 耕地 / other 农用地 / 建设用地 / 未利用地, or unclassified."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from layers.errors import FieldError

from .common import as_text, id_column
from .rules import Rules

UNCLASSIFIED = "unclassified"
CATEGORIES = ("cultivated", "agri_other", "construction", "unused", UNCLASSIFIED)


def land_categories(codes: np.ndarray, rules: Rules, layer: str | None = None) -> np.ndarray:
    """Category per DLBM code: cultivated / agri_other / construction / unused, or 'unclassified' for a code
    the rules do not list (a known source defect: it is reported on its own, never guessed into a category)."""
    lookup = {c: rules.category(c) or UNCLASSIFIED for c in set(codes)}
    return np.array([lookup[c] for c in codes], dtype=object)


def unclassified_rows(gdf: gpd.GeoDataFrame | None, rules: Rules, layer: str) -> list[tuple[int, str, str]]:
    """(position, code, id) of the patches whose DLBM the rules do not classify, in row order."""
    if gdf is None or len(gdf) == 0 or "DLBM" not in gdf.columns:
        return []
    codes = as_text(gdf["DLBM"])
    bad = np.flatnonzero(land_categories(codes, rules, layer) == UNCLASSIFIED)
    if not len(bad):
        return []
    ids = id_column(gdf, ("BSM",), layer)
    return [(int(r), codes[r] or "(empty)", str(ids[r])) for r in bad]


def unclassified_patches(gdf: gpd.GeoDataFrame | None, rules: Rules, layer: str) -> dict[str, list[str]]:
    """{code: [ids]} of the patches whose DLBM the rules do not classify (for the run report)."""
    return listed_by_code(unclassified_rows(gdf, rules, layer))


def listed_by_code(rows) -> dict[str, list[str]]:
    """{code: [ids]} from (key, code, id) rows in row order: codes in the order they first appear."""
    out: dict[str, list[str]] = {}
    for _, code, i in rows:
        out.setdefault(code, []).append(i)
    return out


def kcxs_values(gdf: gpd.GeoDataFrame, layer: str, ids: np.ndarray) -> np.ndarray:
    """田坎 coefficient per row (0 where absent); values outside [0, 1) raise FieldError naming the BSMs."""
    if "KCXS" not in gdf.columns:
        return np.zeros(len(gdf))
    k = pd.to_numeric(gdf["KCXS"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    bad = (k < 0) | (k >= 1)
    if bad.any():
        raise FieldError(f"layer {layer!r}: KCXS must lie in [0, 1), got {k[bad][:5].tolist()} for BSM "
                         f"{ids[bad][:5].tolist()}; a percentage needs dividing by 100")
    return k

"""The flagged_patches record: its columns, the verdict names, rounding for output, and carrying the enforcement
workflow's columns over from a previous run."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd

from .common import as_text

LEGAL, PARTLY, ILLEGAL, OTHER = "legal", "partly_approved", "suspected_illegal", "other"
VERDICT_ZH = {LEGAL: "合法", PARTLY: "少批多占", ILLEGAL: "未批先建", OTHER: "其他"}
INITIAL_STATUS = "待核查"

# Output columns of flagged_patches, in order (run_id is added by the service that writes them).
FLAGGED_COLUMNS = [
    "JCBH", "source_ids", "sources", "rounds", "n_sources", "n_issued", "n_pieces", "QSX", "HSX", "XZQDM", "area_m2",
    "area_cultivated", "area_tiankan", "area_agri_other", "area_construction", "area_unused",
    "area_unclassified", "orig_dlbm",
    "orig_layer", "orig_ids", "now_dlbm", "area_yjjbnt", "yjjbnt_ids", "area_stbhhx", "stbhhx_ids",
    "area_outside_czkfbj", "czkfbj_ids", "area_approved", "area_compliant", "approval_ids", "approved_share",
    "area_unapproved", "area_cultivated_unapproved",
    "verdict", "verdict_zh", "verdict_reason", "status", "judgement", "version",
]
# Columns the enforcement workflow owns: a re-run keeps their values (see carry_over_status).
WORKFLOW_COLUMNS = ["status", "judgement", "version"]
AREA_COLUMNS = ["area_m2", "area_cultivated", "area_tiankan", "area_agri_other", "area_construction",
                "area_unused", "area_unclassified", "area_yjjbnt", "area_stbhhx", "area_outside_czkfbj",
                "area_approved", "area_compliant", "area_unapproved", "area_cultivated_unapproved"]


def round_areas(gdf: gpd.GeoDataFrame, columns=AREA_COLUMNS) -> gpd.GeoDataFrame:
    """Round area columns to 0.01 m² and shares to 4 decimals, for output."""
    out = gdf.copy()
    for col in columns:
        if col in out.columns:
            out[col] = out[col].astype(float).round(2)
    if "approved_share" in out.columns:
        out["approved_share"] = out["approved_share"].astype(float).round(4)
    return out


def carry_over_status(new: gpd.GeoDataFrame, old: pd.DataFrame | None) -> tuple[gpd.GeoDataFrame, int]:
    """Keep what the enforcement workflow recorded on records judged before.

    A new record inherits the workflow columns (status, judgement, version, and every column of the old
    flagged_patches that the analysis does not write, e.g. who/when of the last transition) from the previous
    record whose JCBH is the same, or, failing that, one whose source_ids it shares (the ground change was
    re-issued or merged differently). Staff judgements are never reset by a re-run. Returns (records, number of
    records that inherited).
    """
    if old is None or len(old) == 0 or "status" not in old.columns:
        return new, 0
    owned = (set(FLAGGED_COLUMNS) - set(WORKFLOW_COLUMNS)) | {"run_id", "geometry", "fid", "yzt_fid"}
    carried_cols = [c for c in old.columns if c not in owned and c != getattr(old, "_geometry_column_name", None)]
    old = pd.DataFrame(old).reset_index(drop=True)
    by_id: dict[str, int] = {}
    src = old["source_ids"] if "source_ids" in old.columns else pd.Series(["[]"] * len(old))
    for row, (jc, members) in enumerate(zip(as_text(old["JCBH"]), src)):
        by_id.setdefault(jc, row)
        try:
            members = json.loads(members) if isinstance(members, str) else list(members or [])
        except (TypeError, ValueError):
            members = []
        for m in members:
            by_id.setdefault(str(m), row)
    match = np.full(len(new), -1)
    for i, (jc, members) in enumerate(zip(new["JCBH"], new["source_ids"])):
        row = by_id.get(jc, -1)
        if row < 0:
            for m in json.loads(members):
                row = by_id.get(m, -1)
                if row >= 0:
                    break
        match[i] = row
    out = new.copy()
    hit = match >= 0
    for col in carried_cols:
        values = out[col].to_numpy(dtype=object).copy() if col in out.columns else np.array([None] * len(out),
                                                                                            dtype=object)
        values[hit] = old[col].to_numpy(dtype=object)[match[hit]]
        out[col] = values
    if "version" in out.columns:
        out["version"] = pd.to_numeric(out["version"], errors="coerce").fillna(1).astype(int)
    if "status" in out.columns:
        status = out["status"].to_numpy(dtype=object)
        status[pd.isna(status) | (status == "")] = INITIAL_STATUS
        out["status"] = status
    return out, int(hit.sum())

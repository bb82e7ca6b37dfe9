"""Exports of flagged patches with their judgements and history: GeoPackage, zipped shapefile (UTF-8 or GBK,
with .cpg and a fields.txt naming the shortened fields) and xlsx."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from layers.errors import EncodingError

from ..jobs.patches import Patches
from ..plain import plain

SHP_FIELDS = {
    "JCBH": "JCBH", "case_id": "CASE_ID", "source_ids": "SRC_IDS", "sources": "SOURCES", "rounds": "ROUNDS",
    "n_sources": "N_SOURCES", "XZQDM": "XZQDM", "village": "XZQMC", "township": "XZMC", "area_m2": "AREA_M2",
    "area_cultivated": "AREA_CULT", "area_tiankan": "AREA_TK", "area_agri_other": "AREA_AGRI",
    "area_construction": "AREA_CONS", "area_unused": "AREA_UNUSE", "area_unclassified": "AREA_UNCL",
    "orig_dlbm": "ORIG_DLBM", "now_dlbm": "NOW_DLBM", "area_yjjbnt": "AREA_YJJBN", "area_stbhhx": "AREA_STBHH",
    "area_outside_czkfbj": "AREA_OUTCZ", "area_approved": "AREA_APPR", "area_compliant": "AREA_COMP",
    "approved_share": "APPR_SHARE", "approval_ids": "APPR_IDS", "verdict": "VERDICT", "verdict_zh": "VERDICT_ZH",
    "verdict_reason": "REASON", "status": "STATUS", "judgement": "JUDGEMENT", "version": "VERSION", "note": "NOTE",
    "updated_at": "UPD_AT", "updated_by": "UPD_BY", "run_id": "RUN_ID",
}
# Characters of our own texts that GBK lacks, and what the GBK shapefile writes instead.
GBK_SUBSTITUTES = {"m²": "平方米", "²": "2", "³": "3"}
XLSX_HEADERS = {
    "JCBH": "监测编号", "case_id": "案件编号", "XZQDM": "行政区代码(村)", "village": "村", "township": "乡镇",
    "area_m2": "图斑面积(m²)", "area_cultivated": "占耕地(m²)", "area_tiankan": "田坎(m²)",
    "area_agri_other": "其他农用地(m²)", "area_construction": "建设用地(m²)", "area_unused": "未利用地(m²)",
    "area_unclassified": "未分类(m²)", "orig_dlbm": "原地类", "now_dlbm": "现地类", "area_yjjbnt": "永久基本农田(m²)",
    "area_stbhhx": "生态保护红线内(m²)", "area_outside_czkfbj": "城镇开发边界外(m²)", "area_approved": "批准覆盖(m²)",
    "area_compliant": "临时/设施农用地覆盖(m²)", "approved_share": "批准覆盖比例", "approval_ids": "批准文号",
    "verdict": "预判(代码)", "verdict_zh": "预判结论", "verdict_reason": "预判理由", "status": "状态",
    "judgement": "核查认定", "version": "版本", "note": "最近说明", "updated_at": "最近更新(UTC)",
    "updated_by": "更新人", "sources": "来源", "rounds": "批次", "source_ids": "合并的监测编号", "n_sources": "来源数",
    "run_id": "分析运行",
}
EXPORT_COLUMNS = list(XLSX_HEADERS)


def export_frame(frame: pd.DataFrame, p: Patches, idx: np.ndarray) -> gpd.GeoDataFrame:
    cols = [c for c in EXPORT_COLUMNS if c in frame.columns]
    out = frame.iloc[idx][cols].copy()
    for c in cols:
        if out[c].map(lambda v: isinstance(v, list)).any():
            out[c] = [json.dumps(v, ensure_ascii=False) for v in out[c]]
    out["version"] = out["version"].astype("int64")
    geoms = p.frame.geometry.values[idx]
    return gpd.GeoDataFrame(out.reset_index(drop=True), geometry=list(geoms), crs=p.frame.crs)


def _truncate_bytes(text: str, limit: int, encoding: str) -> str:
    data = text.encode(encoding)
    if len(data) <= limit:
        return text
    return data[:limit].decode(encoding, errors="ignore")


def export_gpkg(gdf: gpd.GeoDataFrame, history: pd.DataFrame, folder: Path) -> Path:
    import pyogrio

    path = folder / "flagged_patches.gpkg"
    pyogrio.write_dataframe(gdf, path, layer="flagged_patches", driver="GPKG", promote_to_multi=True)
    if len(history):
        pyogrio.write_dataframe(history, path, layer="workflow_history", driver="GPKG", append=False)
    return path


def export_shp(gdf: gpd.GeoDataFrame, encoding: str, folder: Path) -> Path:
    import pyogrio

    codec = {"utf-8": "UTF-8", "gbk": "GBK"}[encoding]
    out = gdf.rename(columns={c: SHP_FIELDS.get(c, c[:10]) for c in gdf.columns if c != "geometry"})
    for c in out.columns:
        if c == "geometry" or not (out[c].dtype == object or pd.api.types.is_string_dtype(out[c])):
            continue
        values: list[str | None] = []
        for v in out[c]:
            if v is None or (isinstance(v, float) and math.isnan(v)):
                values.append(None)
                continue
            text = str(v)
            if codec == "GBK":
                for plain, gbk in GBK_SUBSTITUTES.items():
                    text = text.replace(plain, gbk)
                try:
                    text.encode("gbk")
                except UnicodeEncodeError as exc:
                    raise EncodingError(f"field {c} value {text[:30]!r} has character {text[exc.start]!r} that GBK "
                                        "cannot encode; export with encoding=utf-8") from None
            values.append(_truncate_bytes(text, 254, "gbk" if codec == "GBK" else "utf-8"))
        out[c] = values
    shp_dir = folder / "shp"
    shp_dir.mkdir()
    pyogrio.write_dataframe(out, shp_dir / "flagged_patches.shp", driver="ESRI Shapefile", encoding=codec,
                            promote_to_multi=True)
    lines = ["shapefile field\tfull name\tdescription"] + [
        f"{SHP_FIELDS[c]}\t{c}\t{XLSX_HEADERS.get(c, '')}" for c in gdf.columns if c in SHP_FIELDS]
    lines.append("")
    lines.append(f"encoding: {codec} (see flagged_patches.cpg); text longer than 254 bytes is cut in the .dbf — "
                 "the full text is in the gpkg / xlsx exports")
    (shp_dir / "fields.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = folder / f"flagged_patches_shp_{encoding}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(shp_dir.iterdir()):
            zf.write(f, f.name)
    return path


def export_xlsx(gdf: gpd.GeoDataFrame, history: pd.DataFrame, meta: dict, folder: Path) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = "图斑核查"
    cols = [c for c in EXPORT_COLUMNS if c in gdf.columns]
    ws.append([XLSX_HEADERS[c] for c in cols])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for _, r in gdf[cols].iterrows():
        ws.append([plain(r[c]) for c in cols])
    for col, c in enumerate(cols, start=1):
        if c.startswith("area_"):
            for row in range(2, ws.max_row + 1):
                ws.cell(row, col).number_format = "0.00"
    ws.freeze_panes = "B2"
    hs = wb.create_sheet("操作记录")
    hcols = ["seq", "at", "user", "role", "action", "JCBH", "from_status", "to_status", "from_judgement",
             "to_judgement", "version_before", "version_after", "note", "evidence_id"]
    hs.append(["序号", "时间(UTC)", "用户", "角色", "操作", "监测编号", "原状态", "新状态", "原认定", "新认定",
               "原版本",
               "新版本", "说明", "举证"])
    for cell in hs[1]:
        cell.font = Font(bold=True)
    for _, r in history.iterrows():
        hs.append([plain(r.get(c)) for c in hcols])
    info = wb.create_sheet("说明")
    for k, v in meta.items():
        info.append([k, v if isinstance(v, (str, int, float)) or v is None else json.dumps(v, ensure_ascii=False)])
    path = folder / "flagged_patches.xlsx"
    wb.save(path)
    return path


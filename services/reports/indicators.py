"""Indicator tables from a stored run: JSON, CSV, Markdown and xlsx (one sheet per level, 口径说明, 预警,
运行记录). Every area is shown balanced (强制调平) in the chosen unit; every value keeps its 口径."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd

from analysis.balance import AREA_UNITS
from analysis.indicators import LEVEL_ZH, LEVELS, wide_table
from analysis.scoring import DIRECTIONS
from layers.errors import RuleError

from ..jobs.indicators import AREA_UNIT_ZH, IndicatorRun, clean_number, levels, value_unit_label

FORMATS = ("json", "csv", "xlsx", "md")
_LEVEL_ZH = {"province": "省", "city": "市", **LEVEL_ZH}  # a province roll-up (services/jobs/region.py) adds 市, 省


def _levels(run, level: str | None) -> list[str]:
    """The levels a ``level`` argument selects in ``run``: a county run has 县 / 乡镇 / 村, a province roll-up
    (its ``levels`` attribute) 省 and 市 above them."""
    known = tuple(getattr(run, "levels", LEVELS))
    if known == LEVELS:
        return levels(level)
    if level is None:
        return list(known)
    if level not in known:
        raise RuleError(f"level {level!r} is unknown; use one of {list(known)}")
    return [level]

def _fmt(value, decimals: int | None = None) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "—"
    if decimals is None:
        return f"{value:,.10g}" if abs(value) < 1e15 else str(value)
    return f"{value:,.{decimals}f}"


def _decimals(run: IndicatorRun, unit: str, area_unit: str) -> int:
    precision = run.registry.precision if run.registry else {}
    key = area_unit if unit == "m2" else unit
    return int(precision.get(key, 2))


def long_records(run: IndicatorRun, level: str | None, area_unit: str, with_ids: bool = True) -> list[dict]:
    rows = []
    for _, r in run.values[run.values["level"].isin(_levels(run, level))].iterrows():
        row = {
            "run_id": run.run_id, "indicator": r["indicator"], "name": r["name"], "level": r["level"],
            "unit_code": r["unit_code"], "unit_name": r["unit_name"], "value": clean_number(r["value"]),
            "unit": r["unit"], "value_rounded": clean_number(r["value_rounded"]),
            "value_m2": clean_number(r["value_m2"]), "value_ha": clean_number(r["value_ha"]),
            "value_mu": clean_number(r["value_mu"]),
            "rule": r["rule"], "formula": r["formula"], "sources": list(r["sources"]),
            "record_count": int(r["record_count"]),
        }
        if with_ids:
            row["record_ids"] = r["record_ids"]
        rows.append(row)
    return rows


def export_json(run: IndicatorRun, level: str | None = None, area_unit: str = "ha") -> str:
    doc = {"run": _run_summary(run), "values": long_records(run, level, area_unit),
           "warnings": _warning_records(run, level)}
    return json.dumps(doc, ensure_ascii=False, indent=1, default=str)


def export_csv(run: IndicatorRun, level: str | None = None, area_unit: str = "ha") -> str:
    rows = long_records(run, level, area_unit, with_ids=False)
    buf = io.StringIO()
    fields = ["run_id", "indicator", "name", "level", "unit_code", "unit_name", "value", "unit", "value_rounded",
              "value_m2", "value_ha", "value_mu", "record_count", "rule", "formula", "sources"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        row = dict(row, sources=";".join(row["sources"]))
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    return "\ufeff" + buf.getvalue()  # BOM: Excel opens the Chinese text as UTF-8


def _run_summary(run: IndicatorRun) -> dict:
    m = {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in run.meta.items()}
    return {"run_id": run.run_id, "started_at": m.get("started_at"), "finished_at": m.get("finished_at"),
            "registry_sha256": m.get("registry_sha256"), "analysis_run_id": m.get("analysis_run_id"),
            "input_loads": json.loads(m.get("input_loads") or "{}"), "skipped": json.loads(m.get("skipped") or "{}"),
            "notes": json.loads(m.get("notes") or "[]"), "id_fields": json.loads(m.get("id_fields") or "{}"),
            **({"county_runs": json.loads(str(m["county_runs"])), "region_run_id": m.get("region_run_id")}
               if m.get("county_runs") else {})}


def _warning_records(run: IndicatorRun, level: str | None, area_unit: str | None = None) -> list[dict]:
    """Warnings of the run; with ``area_unit``, area values and thresholds are shown in that unit
    (``shown``, ``shown_threshold``, ``shown_unit``) beside the stored m² values."""
    if run.warnings is None or len(run.warnings) == 0:
        return []
    w = run.warnings[run.warnings["level"].isin(_levels(run, level))]
    balanced = run.values.set_index(["indicator", "unit_code"])
    out = []
    for r in w.to_dict("records"):
        rec = {k: (clean_number(v) if k in ("value", "value_rounded", "threshold") else v) for k, v in r.items()
               if k != "run_id"}
        if area_unit is not None:
            if rec["unit"] == "m2":
                rec["shown"] = clean_number(balanced.loc[(rec["indicator"], rec["unit_code"]), f"value_{area_unit}"])
                rec["shown_threshold"] = float(AREA_UNITS[area_unit][0]) * rec["threshold"]
            else:
                rec["shown"], rec["shown_threshold"] = rec["value_rounded"], rec["threshold"]
            rec["shown_unit"] = value_unit_label(rec["unit"], area_unit)
        out.append(rec)
    return out


def report_tables(run: IndicatorRun, level: str, area_unit: str) -> list[tuple[str, pd.DataFrame, list[int]]]:
    """Per indicator group: a table with one row per unit and Chinese headers (名称(单位)), and the number
    of decimals of each indicator column (the reported precision)."""
    values = run.values[run.values["level"] == level]
    if len(values) == 0:
        return []
    wide = wide_table(values, level, area_unit)
    meta = values.drop_duplicates("indicator").set_index("indicator")
    groups: dict[str, list[str]] = {}
    for code in meta.index:
        group = run.registry.indicators[code].group if run.registry and code in run.registry.indicators else ""
        groups.setdefault(group or "指标", []).append(code)
    out = []
    for group, codes in groups.items():
        table = wide[["unit_code", "unit_name", *codes]].copy()
        table.columns = ["行政区代码", "行政区名称"] + [
            f"{meta.loc[c, 'name']}({value_unit_label(meta.loc[c, 'unit'], area_unit)})" for c in codes]
        out.append((group, table, [_decimals(run, meta.loc[c, "unit"], area_unit) for c in codes]))
    return out


def export_markdown(run: IndicatorRun, level: str | None = None, area_unit: str = "ha") -> str:
    lines = [f"# 指标统计 (run {run.run_id})", ""]
    m = {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in run.meta.items()}
    lines += [f"- 计算时间: {m.get('finished_at')}; 指标库 sha256: `{str(m.get('registry_sha256'))[:16]}…`; "
              f"分析运行: {m.get('analysis_run_id') or '—'}",
              f"- 面积单位: {AREA_UNIT_ZH[area_unit]}; 面积已强制调平 (村之和 = 乡镇, 乡镇之和 = 县"
              + ("; 县之和 = 市, 市之和 = 省" if "province" in _levels(run, None) else "") + "); "
              "比率按各级汇总值计算",
              ""]
    skipped = json.loads(m.get("skipped") or "{}")
    for level_name in _levels(run, level):
        for group, table, decimals in report_tables(run, level_name, area_unit):
            lines += [f"## {_LEVEL_ZH[level_name]}级 · {group}", "", _md_table(table, decimals), ""]
    warnings = _warning_records(run, level, area_unit)
    if warnings:
        lines += ["## 预警", "", "| 指标 | 行政区 | 值 | 阈值 | 预警 |", "|---|---|---:|---|---|"]
        for w in warnings:
            lines.append(f"| {w['name']} | {w['unit_name']} ({w['unit_code']}) | {_fmt(w['shown'])} {w['shown_unit']} "
                         f"| {w['op']} {w['shown_threshold']:g} | {w['label']} |")
        lines.append("")
    lines += ["## 口径", ""]
    for code in dict.fromkeys(run.values["indicator"]):
        r = run.values[run.values["indicator"] == code].iloc[0]
        lines.append(f"- **{r['name']}** (`{code}`, {value_unit_label(r['unit'], area_unit)}): {r['rule']} "
                     f"— 数据: {', '.join(r['sources'])}")
    if skipped:
        lines += ["", "## 未计算的指标", ""]
        lines += [f"- `{code}`: {why}" for code, why in skipped.items()]
    return "\n".join(lines) + "\n"


def _md_table(table: pd.DataFrame, decimals: list[int]) -> str:
    head = "| " + " | ".join(table.columns) + " |"
    sep = "|" + "|".join(["---", "---"] + ["---:"] * (len(table.columns) - 2)) + "|"
    rows = []
    for _, r in table.iterrows():
        cells = [str(r.iloc[0]), str(r.iloc[1])] + [_fmt(v, d) for v, d in zip(r.iloc[2:], decimals)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *rows])


def export_xlsx(run: IndicatorRun, path: str | Path, level: str | None = None, area_unit: str = "ha") -> Path:
    """Workbook: one sheet per level (values, not formulas), 口径说明, 预警, 运行记录."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    wb.remove(wb.active)
    bold = Font(bold=True)
    for level_name in _levels(run, level):
        ws = wb.create_sheet(f"{_LEVEL_ZH[level_name]}级指标")
        ws.append([f"{_LEVEL_ZH[level_name]}级指标统计表 (面积单位: {AREA_UNIT_ZH[area_unit]}; run {run.run_id})"])
        ws.cell(1, 1).font = bold
        for group, table, decimals in report_tables(run, level_name, area_unit):
            ws.append([])
            ws.append([group])
            ws.cell(ws.max_row, 1).font = bold
            ws.append(list(table.columns))
            for cell in ws[ws.max_row]:
                cell.font = bold
                cell.alignment = Alignment(wrap_text=True)
            for _, r in table.iterrows():
                ws.append([str(r.iloc[0]), str(r.iloc[1])] + [clean_number(v) for v in r.iloc[2:]])
                for col, d in enumerate(decimals, start=3):
                    ws.cell(ws.max_row, col).number_format = "0" if d == 0 else "0." + "0" * d
        ws.column_dimensions["A"].width = 16
        ws.column_dimensions["B"].width = 14
    ws = wb.create_sheet("口径说明")
    ws.append(["指标代码", "指标名称", "单位", "方向", "口径", "计算式", "数据来源"])
    for cell in ws[1]:
        cell.font = bold
    for code in dict.fromkeys(run.values["indicator"]):
        r = run.values[run.values["indicator"] == code].iloc[0]
        ind = run.registry.indicators.get(code) if run.registry else None
        ws.append([code, r["name"], value_unit_label(r["unit"], area_unit),
                   DIRECTIONS.get(ind.direction, "") if ind else "", r["rule"], r["formula"],
                   ", ".join(r["sources"])])
    ws.column_dimensions["E"].width = 80
    ws = wb.create_sheet("预警")
    ws.append(["指标", "级别", "行政区代码", "行政区名称", "值", "单位", "阈值", "预警", "程度"])
    for cell in ws[1]:
        cell.font = bold
    for w in _warning_records(run, level, area_unit):
        ws.append([w["name"], _LEVEL_ZH.get(w["level"], w["level"]), w["unit_code"], w["unit_name"],
                   w["shown"], w["shown_unit"], f"{w['op']} {w['shown_threshold']:g}", w["label"], w["severity"]])
    ws = wb.create_sheet("运行记录")
    for key, value in _run_summary(run).items():
        ws.append([key, value if isinstance(value, str) or value is None
                   else json.dumps(value, ensure_ascii=False, default=str)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def export_values(run: IndicatorRun, fmt: str, *, level: str | None = None, area_unit: str = "ha",
                  out: str | Path | None = None) -> str | Path:
    """Export in ``fmt``; returns the text (json/csv/md) or the written path (xlsx, or when ``out`` is given)."""
    if fmt not in FORMATS:
        raise RuleError(f"format {fmt!r} is unknown; use one of {list(FORMATS)}")
    if area_unit not in AREA_UNITS:
        raise RuleError(f"area unit {area_unit!r} is unknown; use one of {sorted(AREA_UNITS)}")
    if fmt == "xlsx":
        if out is None:
            raise RuleError("xlsx output needs --out FILE.xlsx")
        return export_xlsx(run, out, level, area_unit)
    text = {"json": export_json, "csv": export_csv, "md": export_markdown}[fmt](run, level, area_unit)
    if out is not None:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path
    return text


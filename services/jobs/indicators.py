"""Indicator runs: read the store, compute (analysis.indicators), record the run, export tables.

A run is stored in three plain tables of the store, so that any number can later be traced to its inputs:

* ``indicator_runs``: run_id, started_at, finished_at, as_of (unused, kept for the record: the run date),
  registry_path, registry_sha256, registry (JSON of the effective registry), input_loads (JSON: layer →
  load_id, sha256, loaded_at, rows), analysis_run_id, skipped (JSON), notes (JSON), id_fields (JSON),
  counts (JSON), version.
* ``indicator_values``: run_id, indicator, name, level, unit_code, unit_name, parent_code, value (true, m² /
  count / %), unit, value_m2 / value_ha / value_mu (balanced, areas only), value_rounded, rule (口径), formula,
  sources (JSON), record_ids (JSON {layer: [ids]}), record_count.
* ``indicator_warnings``: run_id, indicator, name, level, unit_code, unit_name, value, value_rounded, unit, op,
  threshold, label, severity.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.balance import AREA_UNITS
from analysis.indicators import LEVEL_ZH, LEVELS, VALUE_UNITS, Registry, compute_indicators, parse_registry, wide_table
from analysis.scoring import DIRECTIONS, SYMBOLS, Targets, crossed_thresholds, parse_targets, score_item, total_score
from layers.errors import NotFoundError, RuleError, StoreError
from layers.store import open_store
from layers.store.base import Store
from layers.yamlfile import read_yaml_file

BUILTIN_REGISTRY = Path(__file__).resolve().parent.parent / "analysis" / "indicators.yaml"
RUNS, VALUES, WARNINGS = "indicator_runs", "indicator_values", "indicator_warnings"
ANALYSIS_LAYERS = ("flagged_patches", "planning_conflicts")
FORMATS = ("json", "csv", "xlsx", "md")
AREA_UNIT_ZH = {k: v[1] for k, v in AREA_UNITS.items()}


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("yizhangtu")
    except Exception:  # pragma: no cover - not installed
        return "0"


# --- registry ---------------------------------------------------------------------------------------------

def load_registry(path: str | Path | None = None) -> tuple[Registry, str]:
    """The registry (built-in, or a bureau file, possibly ``extends: builtin``) and its sha256.

    The sha256 is taken over the canonical JSON of the effective registry, so the same indicators give the
    same hash whether written as a full file or as an extension of the built-in one.
    """
    builtin = read_yaml_file(BUILTIN_REGISTRY, "built-in indicator registry")
    doc = builtin if path is None else read_yaml_file(Path(path), "indicator registry")
    registry = parse_registry(doc, base=builtin)
    canonical = json.dumps(registry.document, ensure_ascii=False, sort_keys=True, default=str)
    return registry, hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- a run -------------------------------------------------------------------------------------------------

@dataclass
class IndicatorRun:
    run_id: str
    meta: dict  # the indicator_runs row
    values: pd.DataFrame  # indicator_values rows of this run (record_ids as dicts)
    warnings: pd.DataFrame
    registry: Registry | None = None


def _needed_layers(registry: Registry) -> set[str]:
    needed = {"xzq"}
    for ind in registry.indicators.values():
        needed.update(ind.sources)
    return needed


def _latest_loads(store: Store, layers: list[str]) -> dict:
    records = store.load_records()
    out = {}
    if len(records) == 0:
        return out
    for layer in layers:
        rows = records[records["layer"] == layer]
        if len(rows):
            r = rows.iloc[-1]
            out[layer] = {k: (None if pd.isna(r.get(k)) else (r.get(k).item() if hasattr(r.get(k), "item")
                                                              else r.get(k)))
                          for k in ("load_id", "sha256", "loaded_at", "rows_written", "source_path", "target_crs")
                          if k in rows.columns}
    return out


def _analysis_run(store: Store, layers: dict) -> str | None:
    ids = set()
    for name in ANALYSIS_LAYERS:
        gdf = layers.get(name)
        if gdf is not None and "run_id" in gdf.columns:
            ids.update(str(v) for v in gdf["run_id"].dropna().unique())
    if len(ids) > 1:
        raise StoreError(f"flagged_patches / planning_conflicts come from different analysis runs {sorted(ids)}; "
                         "re-run yzt analyse so both are from one run")
    if ids:
        return ids.pop()
    try:
        runs = store.read_table("analysis_runs")
    except NotFoundError:
        return None
    return None if len(runs) == 0 else str(runs["run_id"].iloc[-1])


def run_indicators(store: Store | str | Path, registry_path: str | Path | None = None, *,
                   save: bool = True, now: dt.datetime | None = None) -> IndicatorRun:
    """Compute every indicator from the store, record the run in the store (unless ``save`` is False)."""
    store = open_store(store)
    registry, sha = load_registry(registry_path)
    started = (now or dt.datetime.now(dt.timezone.utc)).isoformat(timespec="seconds")
    present = set(store.layer_names())
    names = sorted(_needed_layers(registry) & present)
    layers = {name: store.read_layer(name) for name in names}
    loads = _latest_loads(store, names)  # analysis outputs carry a load record too (load_id = run_id)
    analysis_run_id = _analysis_run(store, layers)
    result = compute_indicators(layers, registry)
    run_id = uuid.uuid4().hex
    finished = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta = {
        "run_id": run_id, "started_at": started, "finished_at": finished,
        "registry_path": str(registry_path or BUILTIN_REGISTRY), "registry_sha256": sha,
        "registry": json.dumps(registry.document, ensure_ascii=False, sort_keys=True, default=str),
        "input_loads": json.dumps(loads, ensure_ascii=False, sort_keys=True, default=str),
        "analysis_run_id": analysis_run_id,
        "skipped": json.dumps(result.skipped, ensure_ascii=False, sort_keys=True),
        "notes": json.dumps(result.notes, ensure_ascii=False),
        "id_fields": json.dumps(result.id_fields, ensure_ascii=False, sort_keys=True),
        "counts": json.dumps({"indicators": int(result.values["indicator"].nunique()) if len(result.values) else 0,
                              "units": int(result.values["unit_code"].nunique()) if len(result.values) else 0,
                              "warnings": int(len(result.warnings))}),
        "version": _version(),
    }
    values = result.values.copy()
    values.insert(0, "run_id", run_id)
    warnings = result.warnings.copy()
    warnings.insert(0, "run_id", run_id)
    run = IndicatorRun(run_id, meta, values, warnings, registry)
    if save:
        save_run(store, run)
    return run


def _values_for_store(values: pd.DataFrame) -> pd.DataFrame:
    out = values.copy()
    out["record_ids"] = [json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in out["record_ids"]]
    out["sources"] = [json.dumps(list(v), ensure_ascii=False) for v in out["sources"]]
    for col in ("value", "value_m2", "value_ha", "value_mu", "value_rounded"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    out["record_count"] = out["record_count"].astype("int64")
    out["parent_code"] = out["parent_code"].astype(object).where(out["parent_code"].notna(), None)
    return out


def _append(store: Store, name: str, frame: pd.DataFrame) -> pd.DataFrame:
    try:
        old = store.read_table(name)
    except NotFoundError:
        return frame
    if len(old) == 0:
        return frame
    return pd.concat([old, frame], ignore_index=True)


def save_run(store: Store, run: IndicatorRun) -> None:
    """Append the run to indicator_runs / indicator_values / indicator_warnings (one atomic write)."""
    tables = {
        RUNS: _append(store, RUNS, pd.DataFrame([run.meta])),
        VALUES: _append(store, VALUES, _values_for_store(run.values)),
        WARNINGS: _append(store, WARNINGS, run.warnings.astype({"value": float, "threshold": float})
                          if len(run.warnings) else run.warnings),
    }
    store.write_tables(tables)


def load_run(store: Store | str | Path, run_id: str | None = None) -> IndicatorRun:
    """A stored run (the latest when ``run_id`` is None). NotFoundError if there is none."""
    store = open_store(store)
    try:
        runs = store.read_table(RUNS)
    except NotFoundError:
        raise NotFoundError(f"store {store.url} holds no indicator run yet; run `yzt indicators --store …` "
                            "first") from None
    if run_id is None:
        if len(runs) == 0:
            raise NotFoundError(f"store {store.url} holds no indicator run yet; run `yzt indicators` first")
        meta = runs.iloc[-1].to_dict()
    else:
        hit = runs[runs["run_id"] == run_id]
        if len(hit) == 0:
            raise NotFoundError(f"indicator run {run_id!r} is not in store {store.url}; runs: "
                                f"{', '.join(runs['run_id'].tail(5))}")
        meta = hit.iloc[-1].to_dict()
    rid = meta["run_id"]
    values = store.read_table(VALUES)
    values = values[values["run_id"] == rid].reset_index(drop=True)
    values["record_ids"] = [json.loads(v) if isinstance(v, str) else {} for v in values["record_ids"]]
    values["sources"] = [json.loads(v) if isinstance(v, str) else [] for v in values["sources"]]
    try:
        warnings = store.read_table(WARNINGS)
        warnings = warnings[warnings["run_id"] == rid].reset_index(drop=True)
    except NotFoundError:
        warnings = pd.DataFrame()
    registry = parse_registry(json.loads(meta["registry"]))
    return IndicatorRun(rid, meta, values, warnings, registry)


def latest_or_new_run(store: Store, run_id: str | None = None, registry_path=None) -> IndicatorRun:
    """The given run, else the latest stored run, else a new run (stored)."""
    if run_id is not None:
        return load_run(store, run_id)
    try:
        return load_run(store)
    except NotFoundError:
        return run_indicators(store, registry_path)


def drill_down(store: Store | str | Path, indicator: str, unit_code: str, run_id: str | None = None) -> dict:
    """The ids of the records behind one number: {layer: [ids]} (plus the value and its 口径)."""
    run = load_run(store, run_id)
    hit = run.values[(run.values["indicator"] == indicator) & (run.values["unit_code"] == str(unit_code))]
    if len(hit) == 0:
        raise NotFoundError(f"run {run.run_id} has no value of {indicator!r} for unit {unit_code!r}")
    row = hit.iloc[0]
    return {"run_id": run.run_id, "indicator": indicator, "unit_code": str(unit_code), "value": row["value"],
            "unit": row["unit"], "rule": row["rule"], "record_ids": row["record_ids"]}


# --- exports ------------------------------------------------------------------------------------------------

def _levels(level: str | None) -> list[str]:
    if level is None:
        return list(LEVELS)
    if level not in LEVELS:
        raise RuleError(f"level {level!r} is unknown; use one of {list(LEVELS)}")
    return [level]


def _unit_label(unit: str, area_unit: str) -> str:
    return AREA_UNIT_ZH[area_unit] if unit == "m2" else VALUE_UNITS.get(unit, unit)


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
    for _, r in run.values[run.values["level"].isin(_levels(level))].iterrows():
        row = {
            "run_id": run.run_id, "indicator": r["indicator"], "name": r["name"], "level": r["level"],
            "unit_code": r["unit_code"], "unit_name": r["unit_name"], "value": _none(r["value"]),
            "unit": r["unit"], "value_rounded": _none(r["value_rounded"]),
            "value_m2": _none(r["value_m2"]), "value_ha": _none(r["value_ha"]), "value_mu": _none(r["value_mu"]),
            "rule": r["rule"], "formula": r["formula"], "sources": list(r["sources"]),
            "record_count": int(r["record_count"]),
        }
        if with_ids:
            row["record_ids"] = r["record_ids"]
        rows.append(row)
    return rows


def _none(v):
    return None if v is None or (isinstance(v, float) and pd.isna(v)) else float(v)


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
            "notes": json.loads(m.get("notes") or "[]"), "id_fields": json.loads(m.get("id_fields") or "{}")}


def _warning_records(run: IndicatorRun, level: str | None, area_unit: str | None = None) -> list[dict]:
    """Warnings of the run; with ``area_unit``, area values and thresholds are shown in that unit
    (``shown``, ``shown_threshold``, ``shown_unit``) beside the stored m² values."""
    if run.warnings is None or len(run.warnings) == 0:
        return []
    w = run.warnings[run.warnings["level"].isin(_levels(level))]
    balanced = run.values.set_index(["indicator", "unit_code"])
    out = []
    for r in w.to_dict("records"):
        rec = {k: (_none(v) if k in ("value", "value_rounded", "threshold") else v) for k, v in r.items()
               if k != "run_id"}
        if area_unit is not None:
            if rec["unit"] == "m2":
                rec["shown"] = _none(balanced.loc[(rec["indicator"], rec["unit_code"]), f"value_{area_unit}"])
                rec["shown_threshold"] = float(AREA_UNITS[area_unit][0]) * rec["threshold"]
            else:
                rec["shown"], rec["shown_threshold"] = rec["value_rounded"], rec["threshold"]
            rec["shown_unit"] = _unit_label(rec["unit"], area_unit)
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
        table = wide[["unit_code", "unit_name"] + codes].copy()
        table.columns = ["行政区代码", "行政区名称"] + [
            f"{meta.loc[c, 'name']}({_unit_label(meta.loc[c, 'unit'], area_unit)})" for c in codes]
        out.append((group, table, [_decimals(run, meta.loc[c, "unit"], area_unit) for c in codes]))
    return out


def export_markdown(run: IndicatorRun, level: str | None = None, area_unit: str = "ha") -> str:
    lines = [f"# 指标统计 (run {run.run_id})", ""]
    m = {k: (None if isinstance(v, float) and pd.isna(v) else v) for k, v in run.meta.items()}
    lines += [f"- 计算时间: {m.get('finished_at')}; 指标库 sha256: `{str(m.get('registry_sha256'))[:16]}…`; "
              f"分析运行: {m.get('analysis_run_id') or '—'}",
              f"- 面积单位: {AREA_UNIT_ZH[area_unit]}; 面积已强制调平 (村之和 = 乡镇, 乡镇之和 = 县); 比率按各级汇总值计算",
              ""]
    skipped = json.loads(m.get("skipped") or "{}")
    for level_name in _levels(level):
        for group, table, decimals in report_tables(run, level_name, area_unit):
            lines += [f"## {LEVEL_ZH[level_name]}级 · {group}", "", _md_table(table, decimals), ""]
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
        lines.append(f"- **{r['name']}** (`{code}`, {_unit_label(r['unit'], area_unit)}): {r['rule']} "
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
    for level_name in _levels(level):
        ws = wb.create_sheet(f"{LEVEL_ZH[level_name]}级指标")
        ws.append([f"{LEVEL_ZH[level_name]}级指标统计表 (面积单位: {AREA_UNIT_ZH[area_unit]}; run {run.run_id})"])
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
                ws.append([str(r.iloc[0]), str(r.iloc[1])] + [_none(v) for v in r.iloc[2:]])
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
        ws.append([code, r["name"], _unit_label(r["unit"], area_unit),
                   DIRECTIONS.get(ind.direction, "") if ind else "", r["rule"], r["formula"],
                   ", ".join(r["sources"])])
    ws.column_dimensions["E"].width = 80
    ws = wb.create_sheet("预警")
    ws.append(["指标", "级别", "行政区代码", "行政区名称", "值", "单位", "阈值", "预警", "程度"])
    for cell in ws[1]:
        cell.font = bold
    for w in _warning_records(run, level, area_unit):
        ws.append([w["name"], LEVEL_ZH.get(w["level"], w["level"]), w["unit_code"], w["unit_name"],
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


# --- 绩效自评表 ---------------------------------------------------------------------------------------------

def load_targets(path: str | Path) -> Targets:
    return parse_targets(read_yaml_file(Path(path), "targets"))


@dataclass
class SelfEvaluation:
    title: str
    unit_code: str
    unit_name: str
    run_id: str
    rows: pd.DataFrame  # one row per item
    total: float
    total_weight: float
    warnings: list[dict]


def self_evaluate(run: IndicatorRun, targets: Targets, unit_code: str | None = None) -> SelfEvaluation:
    """Fill B from the run for the targets' unit, score every row, total, and list the warnings."""
    values = run.values
    if unit_code is None:
        unit_code = targets.unit_code
    if unit_code is None:
        counties = values.loc[values["level"] == "county", "unit_code"].unique()
        if len(counties) != 1:
            raise RuleError(f"the run covers counties {list(counties)}; set unit_code in the targets file")
        unit_code = str(counties[0])
    unit_rows = values[values["unit_code"] == unit_code]
    if len(unit_rows) == 0:
        raise RuleError(f"unit {unit_code!r} is not in run {run.run_id}; give a 县/乡镇/村 code of the store")
    unit_name = str(unit_rows["unit_name"].iloc[0])
    by_code = unit_rows.set_index("indicator")
    registry = run.registry
    rows, scores, warnings = [], [], []
    for item in targets.items:
        ind = registry.indicators.get(item.indicator) if (registry and item.indicator) else None
        if item.indicator is not None and ind is None:
            raise RuleError(f"targets: item {item.level3!r} names indicator {item.indicator!r}, which the run's "
                            f"registry does not have; known: {sorted(registry.indicators) if registry else []}")
        direction = item.direction or (ind.direction if ind else "positive")
        area_unit = item.area_unit or targets.area_unit
        if item.indicator is not None:
            if item.indicator in by_code.index:
                r = by_code.loc[item.indicator]
                actual = r[f"value_{area_unit}"] if r["unit"] == "m2" else r["value_rounded"]
                actual = _none(actual)
                unit = r["unit"]
            else:  # skipped in this run (a layer missing)
                actual, unit = None, ind.unit
            unit_label = item.unit_label or _unit_label(unit, area_unit)
            source = f"{ind.name} ({item.indicator})"
        else:
            actual, unit_label, source = item.actual, item.unit_label or "", "填报"
        s = score_item(item.target, actual, item.weight, direction, item.level3)
        scores.append(s)
        thresholds = list(item.thresholds) + (list(ind.thresholds) if ind else [])
        hits = crossed_thresholds(actual, thresholds)
        for t in hits:
            warnings.append({"item": item.level3, "value": actual, "op": t.op, "threshold": t.value,
                             "label": t.label, "severity": t.severity})
        if s.status == "缺失":
            warnings.append({"item": item.level3, "value": None, "op": "", "threshold": None,
                             "label": "实际完成值缺失", "severity": "warning"})
        rows.append({
            "一级指标": item.level1, "二级指标": item.level2, "三级指标": item.level3,
            "分值": item.weight, "符号": item.symbol or SYMBOLS[direction], "年度指标值": item.target,
            "单位": unit_label, "实际完成值": actual,
            "完成率": None if s.ratio is None else round(s.ratio * 100, 2), "得分": s.score,
            "方向": DIRECTIONS[direction], "说明": "; ".join(x for x in (s.note, item.note) if x),
            "数据来源": source, "预警": "、".join(t.label for t in hits),
        })
    return SelfEvaluation(targets.title, unit_code, unit_name, run.run_id, pd.DataFrame(rows),
                          total_score(scores), targets.total_weight, warnings)


SELFEVAL_HEADER_1 = ["一级指标", "二级指标", "三级指标", "分值", "年度指标值（A）", "", "", "实际完成值（B）",
                     "单项指标完成率(%)", "得分", "预警", "说明"]
SELFEVAL_HEADER_2 = ["", "", "", "", "符号", "值", "单位", "", "", "", "", ""]


def selfeval_xlsx(ev: SelfEvaluation, path: str | Path) -> Path:
    """The 绩效自评表 in the layout of the seed tables: 一级/二级/三级指标, 分值, 年度指标值 (符号 值 单位),
    实际完成值, 完成率, 得分; merged 一级/二级 cells; a 自评总得分 row. Values only, no formulas."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Border, Font, Side

    wb = Workbook()
    ws = wb.active
    ws.title = "绩效自评表"
    thin = Side(style="thin")
    border = Border(left=thin, right=thin, top=thin, bottom=thin)
    center = Alignment(horizontal="center", vertical="center", wrap_text=True)
    ncol = len(SELFEVAL_HEADER_1)
    ws.append([f"{ev.title} ({ev.unit_name} {ev.unit_code})"])
    ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=ncol)
    ws.cell(1, 1).font = Font(bold=True, size=14)
    ws.cell(1, 1).alignment = center
    ws.append(SELFEVAL_HEADER_1)
    ws.append(SELFEVAL_HEADER_2)
    for col in range(1, ncol + 1):
        if col not in (5, 6, 7):
            ws.merge_cells(start_row=2, start_column=col, end_row=3, end_column=col)
    ws.merge_cells(start_row=2, start_column=5, end_row=2, end_column=7)
    first = 4
    rows = ev.rows
    level1_weight = rows.groupby("一级指标", sort=False)["分值"].sum()
    for _, r in rows.iterrows():
        ws.append([f"{r['一级指标']} ({level1_weight[r['一级指标']]:g})", r["二级指标"], r["三级指标"],
                   float(r["分值"]), r["符号"], float(r["年度指标值"]), r["单位"],
                   None if r["实际完成值"] is None else float(r["实际完成值"]),
                   None if r["完成率"] is None else float(r["完成率"]), float(r["得分"]), r["预警"], r["说明"]])
    # merge runs of equal 一级 / 二级 cells, as the seed tables do
    for col, keys in ((1, ["一级指标"]), (2, ["一级指标", "二级指标"])):
        start = first
        for k in range(1, len(rows) + 1):
            end_of_run = k == len(rows) or any(rows.iloc[k][c] != rows.iloc[k - 1][c] for c in keys)
            if end_of_run:
                row_end = first + k - 1
                if row_end > start:
                    ws.merge_cells(start_row=start, start_column=col, end_row=row_end, end_column=col)
                start = row_end + 1
    ws.append(["自评总得分", "", "", float(ev.total_weight), "", "", "", None, None, float(ev.total), "", ""])
    total_row = ws.max_row
    ws.merge_cells(start_row=total_row, start_column=1, end_row=total_row, end_column=3)
    for row in ws.iter_rows(min_row=2, max_row=total_row, max_col=ncol):
        for cell in row:
            cell.border = border
            cell.alignment = center
    for row in (2, 3, total_row):
        for col in range(1, ncol + 1):
            ws.cell(row, col).font = Font(bold=True)
    for col, width in zip("ABCDEFGHIJKL", (14, 14, 26, 8, 6, 12, 8, 14, 12, 8, 20, 36)):
        ws.column_dimensions[col].width = width
    info = wb.create_sheet("说明")
    info.append(["行政区", f"{ev.unit_name} ({ev.unit_code})"])
    info.append(["指标运行 run_id", ev.run_id])
    info.append(["评分规则", "正向: 得分 = 分值 × min(B/A, 1); 逆向: 得分 = 分值 × min(A/B, 1); 得分不超过分值; "
                         "A = 0 的正向指标 B ≥ 0 即满分; A = 0 的逆向指标 B = 0 满分, B > 0 记 0 分; B 缺失记 0 分"])
    for w in ev.warnings:
        info.append(["预警", f"{w['item']}: {w['label']}"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def selfeval_markdown(ev: SelfEvaluation) -> str:
    lines = [f"# {ev.title}", "", f"行政区: {ev.unit_name} ({ev.unit_code}); 指标运行: `{ev.run_id}`", "",
             "| 一级指标 | 二级指标 | 三级指标 | 分值 | 年度指标值（A） | 实际完成值（B） | 完成率(%) | 得分 | 预警 |",
             "|---|---|---|---:|---|---:|---:|---:|---|"]
    previous = (None, None)
    for _, r in ev.rows.iterrows():
        l1 = r["一级指标"] if r["一级指标"] != previous[0] else ""
        l2 = r["二级指标"] if (r["一级指标"], r["二级指标"]) != previous else ""
        previous = (r["一级指标"], r["二级指标"])
        target = f"{r['符号']} {_fmt(r['年度指标值'])} {r['单位']}".strip()
        lines.append(f"| {l1} | {l2} | {r['三级指标']} | {_fmt(r['分值'])} | {target} | {_fmt(r['实际完成值'])} "
                     f"| {_fmt(r['完成率'])} | {_fmt(r['得分'], 2)} | {r['预警']} |")
    lines.append(f"| **自评总得分** | | | {_fmt(ev.total_weight)} | | | | **{_fmt(ev.total, 2)}** | |")
    if ev.warnings:
        lines += ["", "**预警**", ""]
        lines += [f"- {w['item']}: {w['label']}" for w in ev.warnings]
    lines += ["", "评分: 正向 得分 = 分值 × min(B/A, 1); 逆向 得分 = 分值 × min(A/B, 1); 得分不超过分值; "
              "边界情形见 docs/indicators.md。"]
    return "\n".join(lines) + "\n"

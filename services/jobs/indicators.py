"""Indicator runs: read the store, compute (analysis.indicators), record the run; drill-down; the 绩效自评表 scores.

The tables and workbooks made from a run are reports (services/reports/indicators.py, selfeval.py).

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

import datetime as dt
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import analysis
import data
from analysis.balance import AREA_UNITS
from analysis.indicators import LEVELS, SURVEY_LAYERS, VALUE_UNITS, Registry, compute_indicators, parse_registry
from analysis.indicators.compute import finish_indicators, merge_parts
from analysis.scoring import (
    DIRECTIONS,
    STATUS_NO_TARGET,
    SYMBOLS,
    Targets,
    crossed_thresholds,
    no_target,
    parse_targets,
    score_item,
    total_score,
)
from layers import fields as F
from layers.errors import FieldError, NotFoundError, RuleError, StoreError
from layers.store import open_store
from layers.store.base import Store
from layers.yamlfile import read_yaml_file

BUILTIN_REGISTRY = Path(analysis.__file__).resolve().parent / "indicators.yaml"
DATA_DIR = Path(data.__file__).resolve().parent  # holds targets.sample.yaml
RUNS, VALUES, WARNINGS = "indicator_runs", "indicator_values", "indicator_warnings"
ANALYSIS_LAYERS = ("flagged_patches", "planning_conflicts")
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
    out: dict[str, dict] = {}
    if len(records) == 0:
        return out
    for layer in layers:
        rows = records[records["layer"] == layer]
        if len(rows):
            r = rows.iloc[-1]
            out[layer] = {k: (None if pd.isna(r.get(k)) else (r.get(k).item() if hasattr(r.get(k), "item")
                                                              else r.get(k)))
                          for k in ("load_id", "sha256", "loaded_at", "rows_written", "source_path", "target_crs",
                                    "code_set")
                          if k in rows.columns}
    return out


def _analysis_run(store: Store, layers: dict) -> str | None:
    ids: set[str] = set()
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


def read_columns(store: Store, registry: Registry, name: str) -> list[str] | None:
    """The stored columns of layer ``name`` the indicators read: a survey layer's that the registry needs
    (Registry.survey_columns, yzt_fid first), every column of the other layers (None)."""
    if name not in SURVEY_LAYERS:
        return None
    stored = store.schema(name)
    return [c for c in dict.fromkeys([F.FID, *registry.survey_columns(name)]) if c in stored]


def run_indicators(store: Store | str | Path, registry_path: str | Path | None = None, *,
                   save: bool = True, now: dt.datetime | None = None, client=None,
                   rows_per_partition: int | None = None) -> IndicatorRun:
    """Compute every indicator from the store, record the run in the store (unless ``save`` is False).

    With a dask ``client`` and ``rows_per_partition``, a county of more DLTB patches than that is computed in
    spatial partitions on the cluster (services/jobs/partitions.py) — the same values and ids as the whole
    county; the run records the partitions (or why it ran whole) in ``partitions``. ``client`` may also be a
    function returning a context that yields one (``distributed.worker_client`` in a county task): it is
    entered only once the plan has partitions, so a county that runs whole never leaves its worker's thread
    (a seceded task frees the thread for another county's task — memory the worker was not sized for)."""
    store = open_store(store)
    registry, sha = load_registry(registry_path)
    started = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    present = set(store.layer_names())
    names = sorted(_needed_layers(registry) & present)
    plan: list = []
    why = "whole county (no partitioning asked)"
    if client is not None and rows_per_partition:
        from .partitions import plan_partitions

        plan, why = plan_partitions(store, registry, rows_per_partition, names)
    read = [n for n in names if not (plan and n in SURVEY_LAYERS)]  # partitions read the survey layers themselves
    layers = {name: store.read_layer(name, columns=read_columns(store, registry, name)) for name in read}
    loads = _latest_loads(store, names)  # analysis outputs carry a load record too (load_id = run_id)
    analysis_run_id = _analysis_run(store, layers)
    code_sets: dict[str, str | None] = {name: loads.get(name, {}).get("code_set") for name in ("dltb", "dltb_prev")
                                        if name in names}
    if plan:
        from .partitions import client_context, compute_partitions, whole_layer_code_sets

        # a code set not recorded at ingest is detected once over the whole layer, as the whole-county run does
        code_sets = whole_layer_code_sets(store, code_sets)
        with client_context(client) as cluster:
            parts = compute_partitions(cluster, plan, store.url, registry, names, code_sets)
        result = finish_indicators(merge_parts(parts), registry)
    else:
        result = compute_indicators(layers, registry, code_sets=code_sets)
    run_id = uuid.uuid4().hex
    finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    meta = {
        "run_id": run_id, "started_at": started, "finished_at": finished,
        "registry_path": str(registry_path or BUILTIN_REGISTRY), "registry_sha256": sha,
        "registry": json.dumps(registry.document, ensure_ascii=False, sort_keys=True, default=str),
        "input_loads": json.dumps(loads, ensure_ascii=False, sort_keys=True, default=str),
        "analysis_run_id": analysis_run_id,
        "skipped": json.dumps(result.skipped, ensure_ascii=False, sort_keys=True),
        "notes": json.dumps(result.notes, ensure_ascii=False),
        "id_fields": json.dumps(result.id_fields, ensure_ascii=False, sort_keys=True),
        "partitions": json.dumps({"count": len(plan), "why": why, "rows_per_partition": rows_per_partition,
                                  "partitions": [p.describe() for p in plan]}, ensure_ascii=False),
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



def levels(level: str | None) -> list[str]:
    """The levels a ``level`` argument selects (None → all three); RuleError for an unknown one."""
    if level is None:
        return list(LEVELS)
    if level not in LEVELS:
        raise RuleError(f"level {level!r} is unknown; use one of {list(LEVELS)}")
    return [level]


def value_unit_label(unit: str, area_unit: str) -> str:
    """The label of a value unit (an area in ``area_unit``: 公顷 / 亩 / 平方米)."""
    return AREA_UNIT_ZH[area_unit] if unit == "m2" else VALUE_UNITS.get(unit, unit)


def clean_number(v):
    """None for None / NaN, else the value as a float."""
    return None if v is None or (isinstance(v, float) and pd.isna(v)) else float(v)


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
    scored_weight: float | None = None  # Σ weights of the rows with a target for this unit (None: all rows)


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
    rows: list[dict] = []
    scores: list = []
    warnings: list[dict] = []
    file_unit = targets.unit_code
    if file_unit is None:  # a file without unit_code is the county's
        counties = values.loc[values["level"] == "county", "unit_code"].unique()
        file_unit = str(counties[0]) if len(counties) == 1 else None
    known_units = set(values["unit_code"].astype(str))
    for item in targets.items:
        strangers = sorted({code for code, _ in (*item.targets, *item.actuals)} - known_units)
        if strangers:  # a typo, or a 乡镇 merged away: its target would silently never be used
            warnings.append({"item": item.level3, "value": None, "op": "", "threshold": None,
                             "label": f"目标中的行政区代码不在本次指标运行中: {', '.join(strangers)} "
                                      "(核对 targets 文件)",
                             "severity": "warning"})
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
                actual = clean_number(actual)
                unit = r["unit"]
            else:  # skipped in this run (a layer missing)
                assert ind is not None  # an unknown indicator was refused above
                actual, unit = None, ind.unit
            unit_label = item.unit_label or value_unit_label(unit, area_unit)
            source = f"{ind.name if ind else item.indicator} ({item.indicator})"
        else:
            actual, unit_label, source = item.actual_for(unit_code, file_unit), item.unit_label or "", "填报"
        target = item.target_for(unit_code, file_unit)
        if target is None:
            s = no_target(item.level3)
        else:
            s = score_item(target, actual, item.weight, direction, item.level3, rule=item.rule)
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
            "分值": item.weight, "符号": item.symbol or SYMBOLS[direction], "年度指标值": target,
            "单位": unit_label, "实际完成值": actual,
            "完成率": None if s.ratio is None else round(s.ratio * 100, 2), "得分": s.score,
            "方向": DIRECTIONS[direction], "说明": "; ".join(x for x in (s.note, item.note) if x),
            "计分规则": item.rule.describe() if target is not None else "",
            "数据来源": source, "预警": "、".join(t.label for t in hits),
        })
    scored = sum(item.weight for item, s in zip(targets.items, scores) if s.status != STATUS_NO_TARGET)
    return SelfEvaluation(targets.title, unit_code, unit_name, run.run_id, pd.DataFrame(rows),
                          total_score(scores), targets.total_weight, warnings,
                          scored_weight=None if scored == targets.total_weight else scored)





# --- one store's runs and targets, as the HTTP API serves them ------------------------------------------------

NO_RUN = ("no indicator run is stored yet: run `yzt indicators --store STORE` or POST /api/indicators/runs "
          "(admin)")


class IndicatorDesk:
    """The indicator runs of one store and the 绩效自评表 targets files a bureau offers (``targets.NAME.yaml``
    in ``targets_dir``, default the project's data/ folder with targets.sample.yaml)."""

    def __init__(self, store: Store, targets_dir: str | Path | None = None):
        self.store = store
        self.targets_dir = Path(targets_dir) if targets_dir else DATA_DIR

    def run(self, run_id: str | None) -> IndicatorRun:
        """A stored run (the latest for None); FieldError for a malformed id, NotFoundError for none."""
        if run_id is not None and not re.fullmatch(r"[0-9a-f]{32}", run_id):
            raise FieldError(f"run_id={run_id!r} is malformed (32 hexadecimal digits)")
        try:
            return load_run(self.store, run_id)
        except NotFoundError as exc:
            raise NotFoundError(NO_RUN if run_id is None else str(exc)) from None

    def targets(self, name: str) -> Targets:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise FieldError(f"targets={name!r}: give the name of a targets file (letters, digits, _ and -), "
                               f"e.g. sample for targets.sample.yaml")
        path = self.targets_dir / f"targets.{name}.yaml"
        if not path.is_file():
            known = sorted(p.name[len("targets."):-len(".yaml")] for p in self.targets_dir.glob("targets.*.yaml"))
            raise NotFoundError(f"targets {name!r}: there is no {path.name} in {self.targets_dir}; known: "
                                f"{', '.join(known) or 'none'}")
        return load_targets(path)

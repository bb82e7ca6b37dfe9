"""The indicators over HTTP: values by level, drill-down to the records behind a value, the 绩效自评表.

Reads the indicator runs that ``yzt indicators`` (or ``POST /api/indicators/runs``) stored in the store — every
number comes with its 口径, the run id and the ids of its records (services/jobs/indicators.py).

- ``GET  /api/indicators?level=county|township|village&area_unit=ha|mu|m2&unit=CODE&run_id=RUN`` [planner]
- ``GET  /api/indicators/runs`` [planner]; ``POST /api/indicators/runs`` [admin] computes and stores a new run
- ``GET  /api/indicators/{code}/drilldown?unit=CODE&layer=&limit=&offset=&run_id=`` [planner]
- ``GET  /api/selfeval?targets=NAME&unit=CODE&run_id=`` [planner] — the 绩效自评表 as JSON
- ``GET  /api/selfeval.xlsx?targets=NAME&unit=CODE&run_id=`` [planner] — as a workbook
- ``POST /api/selfeval.xlsx`` [planner] — the same with the targets document (YAML or JSON) in the body

``targets=NAME`` names ``targets.NAME.yaml`` in the targets folder (``settings.targets_dir``, else the project's
data/ folder, which holds ``targets.sample.yaml``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from analysis.balance import AREA_UNITS
from analysis.indicators import LEVEL_ZH, LEVELS
from analysis.scoring import Targets, parse_targets
from layers.errors import NotFoundError
from layers.store.query import ROW_ID, In
from layers.yamlfile import load_yaml_text

from ..errors import RequestError
from ..jobs import indicators as jobs
from ..jobs.patches import LIST_COLUMNS, json_list
from ..plain import plain, plain_record
from ..reports.indicators import long_records, report_tables
from ..reports.selfeval import selfeval_xlsx as write_selfeval_xlsx
from .deps import Admin, AppSettings, Desk, Page, Planner, only_params, read_body
from .models import ERROR_RESPONSES, Strict

router = APIRouter(prefix="/api", tags=["indicators 指标"], responses=ERROR_RESPONSES)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLSX_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {XLSX: {"schema": {"type": "string", "format": "binary"}}}}}


class RunSummary(Strict):
    run_id: str
    started_at: str | None
    finished_at: str | None
    registry_sha256: str | None
    analysis_run_id: str | None
    skipped: dict[str, Any]
    notes: list[Any]
    id_fields: dict[str, Any]


class IndicatorValue(Strict):
    run_id: str
    indicator: str
    name: str
    level: str
    unit_code: str
    unit_name: str | None
    value: float | None
    unit: str
    value_rounded: float | None
    value_m2: float | None
    value_ha: float | None
    value_mu: float | None
    rule: str | None = Field(description="口径")
    formula: str | None
    sources: list[str]
    record_count: int


class IndicatorTable(Strict):
    level: str
    level_zh: str
    group: str
    columns: list[str]
    decimals: list[int]
    rows: list[list[Any]]


class IndicatorsOut(Strict):
    run: RunSummary
    level: str | None
    area_unit: str
    values: list[IndicatorValue]
    tables: list[IndicatorTable]
    warnings: list[dict[str, Any]]


class RunRow(Strict):
    run_id: str
    started_at: str | None
    finished_at: str | None
    analysis_run_id: str | None
    registry_sha256: str | None


class RunsOut(Strict):
    runs: list[RunRow]


class NewRun(Strict):
    run: RunSummary
    values: int
    warnings: int


class DrilldownLayer(Strict):
    id_field: str | None
    total: int
    ids: list[Any]
    records: list[dict[str, Any]]


class Drilldown(Strict):
    run_id: str
    indicator: str
    unit_code: str
    value: float | None
    unit: str
    rule: str | None
    limit: int
    offset: int
    layers: dict[str, DrilldownLayer]


class SelfEvaluationOut(Strict):
    title: str
    unit_code: str
    unit_name: str
    run_id: str
    rows: list[dict[str, Any]] = Field(description="one row per 三级指标: 分值, 年度指标值, 实际完成值, 完成率, 得分 …")
    total: float | None
    total_weight: float | None
    scored_weight: float | None = Field(None, description="Σ 分值 of the rows with a target for this unit, when "
                                                          "some rows are 无目标 (the total is out of this)")
    warnings: list[dict[str, Any]]


# --- parameters -----------------------------------------------------------------------------------------------

def unit_code(raw: str | None, name: str = "unit") -> str | None:
    if raw is None:
        return None
    text = raw.strip()
    if not re.fullmatch(r"\d{6}|\d{9}|\d{12}", text):
        raise RequestError(f"{name}={raw!r} must be a 6-digit 县, 9-digit 乡镇 or 12-digit 村 code")
    return text


def level_param(level: str | None) -> str | None:
    if level is None:
        return None
    if level not in LEVELS:
        raise RequestError(f"level={level!r} is unknown; use one of {', '.join(LEVELS)} "
                           f"({', '.join(LEVEL_ZH.values())})")
    return level


def area_unit_param(unit: str) -> str:
    if unit not in AREA_UNITS:
        raise RequestError(f"area_unit={unit!r} is unknown; use one of {', '.join(sorted(AREA_UNITS))}")
    return unit


def summary(run) -> dict:
    m = plain_record(run.meta)
    return {"run_id": run.run_id, "started_at": m.get("started_at"), "finished_at": m.get("finished_at"),
            "registry_sha256": m.get("registry_sha256"), "analysis_run_id": m.get("analysis_run_id"),
            "skipped": json.loads(m.get("skipped") or "{}"), "notes": json.loads(m.get("notes") or "[]"),
            "id_fields": json.loads(m.get("id_fields") or "{}")}


def selfeval_body(ev) -> dict:
    return {"title": ev.title, "unit_code": ev.unit_code, "unit_name": ev.unit_name, "run_id": ev.run_id,
            "rows": [plain_record(r) for r in ev.rows.to_dict("records")], "total": plain(ev.total),
            "total_weight": plain(ev.total_weight), "scored_weight": plain(ev.scored_weight),
            "warnings": [plain_record(w) for w in ev.warnings]}


def evaluate(desk, targets: Targets, unit: str | None, run_id: str | None):
    return jobs.self_evaluate(desk.run(run_id), targets, unit_code(unit))


def xlsx_response(ev) -> Response:
    folder = Path(tempfile.mkdtemp(prefix="yzt-selfeval-"))
    try:
        data = write_selfeval_xlsx(ev, folder / "selfeval.xlsx").read_bytes()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    return Response(data, media_type=XLSX, headers={
        "Content-Disposition": f'attachment; filename="selfeval_{ev.unit_code}_{stamp}.xlsx"'})


# --- routes ---------------------------------------------------------------------------------------------------

@router.get("/indicators", summary="indicator values by level (县 / 乡镇 / 村) of the latest (or a given) run",
            response_model=IndicatorsOut,
            dependencies=[Depends(only_params("level", "area_unit", "unit", "indicator", "run_id"))])
def indicators(who: Planner, desk: Desk,
               level: str | None = Query(None, description="county, township or village (default: all)"),
               area_unit: str = Query("ha", description="ha (公顷), mu (亩) or m2"),
               unit: str | None = Query(None, description="only this 行政区 code"),
               indicator: str | None = Query(None, description="only this indicator code"),
               run_id: str | None = None):
    level = level_param(level)
    area_unit = area_unit_param(area_unit)
    code = unit_code(unit)
    run = desk.run(run_id)
    if indicator is not None and indicator not in set(run.values["indicator"]):
        raise RequestError(f"indicator={indicator!r} is not in run {run.run_id}; indicators: "
                           f"{', '.join(dict.fromkeys(run.values['indicator']))}")
    rows = long_records(run, level, area_unit, with_ids=False)
    if code is not None:
        rows = [r for r in rows if r["unit_code"] == code]
        if not rows:
            raise NotFoundError(f"unit {code} has no values in run {run.run_id} at level {level or 'any'}")
    if indicator is not None:
        rows = [r for r in rows if r["indicator"] == indicator]
    tables = []
    for lv in ([level] if level else list(LEVELS)):
        for group, table, decimals in report_tables(run, lv, area_unit):
            if code is not None:
                table = table[table["行政区代码"] == code]
            rows_out = [[plain(v) for v in r] for r in table.itertuples(index=False)]
            tables.append({"level": lv, "level_zh": LEVEL_ZH[lv], "group": group, "columns": list(table.columns),
                           "decimals": decimals, "rows": rows_out})
    warnings = run.warnings
    if warnings is not None and len(warnings):
        w = warnings[warnings["level"].isin([level] if level else list(LEVELS))]
        if code is not None:
            w = w[w["unit_code"] == code]
        warn_rows = [plain_record(r, drop=("run_id",)) for r in w.to_dict("records")]
    else:
        warn_rows = []
    return {"run": summary(run), "level": level, "area_unit": area_unit, "values": rows, "tables": tables,
            "warnings": warn_rows}


@router.get("/indicators/runs", summary="stored indicator runs, newest last", response_model=RunsOut)
def runs(who: Planner, desk: Desk):
    try:
        table = desk.store.read_table(jobs.RUNS, columns=["run_id", "started_at", "finished_at", "analysis_run_id",
                                                          "registry_sha256"])
    except NotFoundError:
        return {"runs": []}
    return {"runs": [plain_record(r) for r in table.to_dict("records")]}


@router.post("/indicators/runs", summary="compute the indicators now and store the run (admin)", status_code=201,
             response_model=NewRun)
async def new_run(who: Admin, desk: Desk, settings: AppSettings):
    run = await run_in_threadpool(jobs.run_indicators, desk.store, settings.registry_file)
    return {"run": summary(run), "values": int(len(run.values)), "warnings": int(len(run.warnings))}


@router.get("/indicators/{code}/drilldown", summary="the records behind one value", response_model=Drilldown,
            dependencies=[Depends(only_params("unit", "layer", "limit", "offset", "run_id"))])
def drilldown(code: str, who: Planner, desk: Desk, page: Page,
              unit: str = Query(..., description="行政区代码 of the value"),
              layer: str | None = Query(None, description="only this source layer"),
              run_id: str | None = None):
    unit_code_ = unit_code(unit) or ""  # unit is required
    run = desk.run(run_id)
    if code not in set(run.values["indicator"]):
        raise NotFoundError(f"indicator {code!r} is not in run {run.run_id}; indicators: "
                            f"{', '.join(dict.fromkeys(run.values['indicator']))}")
    found = jobs.drill_down(desk.store, code, unit_code_, run.run_id)
    id_fields = summary(run)["id_fields"]
    record_ids: dict = found["record_ids"] or {}
    if layer is not None and layer not in record_ids:
        raise RequestError(f"layer={layer!r}: the value of {code} for {unit_code_} comes from "
                           f"{', '.join(record_ids) or 'no layer'}")
    present = set(desk.store.layer_names())
    out_layers = {}
    for name, ids in record_ids.items():
        if layer is not None and name != layer:
            continue
        field = id_fields.get(name)
        rows = list(ids)[page.offset:page.offset + page.limit]
        records: list[dict] = []
        if rows and name in present and field:
            column = ROW_ID if field == "row" else field  # "row": the row's id in the store
            values = tuple(int(i) if isinstance(i, (int, float)) and not isinstance(i, bool) else str(i)
                           for i in rows)
            frame = desk.store.read_layer(name, where=In(column, values))
            frame = pd.DataFrame(frame.drop(columns=frame.geometry.name))
            for col in LIST_COLUMNS:  # stored as JSON text; served as arrays, as /api/patches serves them
                if col in frame.columns:
                    frame[col] = [json_list(v) for v in frame[col]]
            by_id = {str(r[column]): plain_record(r) for r in frame.to_dict("records")}
            records = [by_id[str(i)] for i in values if str(i) in by_id]  # in the order of ids
        out_layers[name] = {"id_field": field, "total": len(ids), "ids": rows, "records": records}
    return {"run_id": found["run_id"], "indicator": code, "unit_code": unit_code_, "value": plain(found["value"]),
            "unit": found["unit"], "rule": found["rule"], "limit": page.limit, "offset": page.offset,
            "layers": out_layers}


@router.get("/selfeval", summary="the 绩效自评表 as JSON", response_model=SelfEvaluationOut,
            dependencies=[Depends(only_params("targets", "unit", "run_id"))])
def selfeval(who: Planner, desk: Desk, targets: str = Query(...), unit: str | None = None, run_id: str | None = None):
    return selfeval_body(evaluate(desk, desk.targets(targets), unit, run_id))


@router.get("/selfeval.xlsx", summary="the 绩效自评表 as an xlsx workbook", response_class=Response,
            responses=XLSX_RESPONSE, dependencies=[Depends(only_params("targets", "unit", "run_id"))])
def selfeval_xlsx(who: Planner, desk: Desk, targets: str = Query(...), unit: str | None = None,
                  run_id: str | None = None):
    return xlsx_response(evaluate(desk, desk.targets(targets), unit, run_id))


@router.post("/selfeval.xlsx", summary="the 绩效自评表 for targets sent in the body (YAML or JSON)",
             response_class=Response, responses=XLSX_RESPONSE,
             dependencies=[Depends(only_params("unit", "run_id"))],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/yaml": {"schema": {"type": "string"}},
                 "application/json": {"schema": {"type": "object"}}}}})
async def selfeval_xlsx_post(request: Request, who: Planner, desk: Desk, settings: AppSettings,
                             unit: str | None = None, run_id: str | None = None):
    body = await read_body(request, settings.max_body_bytes, "the targets document")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(f"the body is not UTF-8 text: {exc}") from None
    try:
        doc = load_yaml_text(text, "it", RequestError) if body.strip() else None
    except RequestError as exc:
        raise RequestError(f"the body is not a YAML / JSON targets document: {exc}") from None
    if doc is None:
        raise RequestError("the body is empty: send the targets document (see data/targets.sample.yaml)")
    targets = parse_targets(doc)
    ev = await run_in_threadpool(evaluate, desk, targets, unit, run_id)
    return await run_in_threadpool(xlsx_response, ev)

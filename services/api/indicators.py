"""The indicators over HTTP: values by level, drill-down to the records behind a value, the 绩效自评表.

Reads the indicator runs that ``yzt indicators`` (or ``POST /api/indicators/runs``) stored in the store —
every number comes with its 口径, the run id and the ids of its records (services/indicators.py).

- ``GET  /api/indicators?level=county|township|village&area_unit=ha|mu|m2&unit=CODE&run_id=RUN`` [planner]
- ``GET  /api/indicators/runs`` [planner]; ``POST /api/indicators/runs`` [admin] computes and stores a new run
- ``GET  /api/indicators/{code}/drilldown?unit=CODE&layer=&limit=&offset=&run_id=`` [planner]
- ``GET  /api/selfeval?targets=NAME&unit=CODE&run_id=`` [planner] — the 绩效自评表 as JSON
- ``GET  /api/selfeval.xlsx?targets=NAME&unit=CODE&run_id=`` [planner] — as a workbook
- ``POST /api/selfeval.xlsx`` [planner] — the same with the targets document (YAML or JSON) in the body

``targets=NAME`` names ``targets.NAME.yaml`` in the targets folder (``settings.targets_dir`` when the setting
exists, else the project's data/ folder, which holds ``targets.sample.yaml``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from analysis.balance import AREA_UNITS
from analysis.indicators import LEVEL_ZH, LEVELS
from analysis.scoring import parse_targets
from layers.errors import NotFoundError, RuleError
from layers.store import open_store

from . import indicators as svc
from .auth import require
from .errors import PayloadTooLarge, RequestError, refuse_unknown_params
from .settings import Principal

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
NO_RUN = ("no indicator run is stored yet: run `yzt indicators --store STORE` or POST /api/indicators/runs "
          "(admin)")


def _clean(v):
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "item"):
        v = v.item()
        return None if isinstance(v, float) and math.isnan(v) else v
    return v


def _unit_code(raw: str | None, name: str = "unit") -> str | None:
    if raw is None:
        return None
    text = raw.strip()
    if not re.fullmatch(r"\d{6}|\d{9}|\d{12}", text):
        raise RequestError(f"{name}={raw!r} must be a 6-digit 县, 9-digit 乡镇 or 12-digit 村 code")
    return text


class IndicatorsApi:
    def __init__(self, settings):
        self.settings = settings
        self.store = open_store(settings.store)
        folder = getattr(settings, "targets_dir", None)
        self.targets_dir = Path(folder) if folder else DATA_DIR

    def run(self, run_id: str | None):
        if run_id is not None and not re.fullmatch(r"[0-9a-f]{32}", run_id):
            raise RequestError(f"run_id={run_id!r} is malformed (32 hexadecimal digits)")
        try:
            return svc.load_run(self.store, run_id)
        except NotFoundError as exc:
            raise NotFoundError(NO_RUN if run_id is None else str(exc)) from None

    def targets(self, name: str):
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise RequestError(f"targets={name!r}: give the name of a targets file (letters, digits, _ and -), "
                               f"e.g. sample for targets.sample.yaml")
        path = self.targets_dir / f"targets.{name}.yaml"
        if not path.is_file():
            known = sorted(p.name[len("targets."):-len(".yaml")] for p in self.targets_dir.glob("targets.*.yaml"))
            raise NotFoundError(f"targets {name!r}: there is no {path.name} in {self.targets_dir}; known: "
                                f"{', '.join(known) or 'none'}")
        return svc.load_targets(path)


def _levels_param(level: str | None) -> str | None:
    if level is None:
        return None
    if level not in LEVELS:
        raise RequestError(f"level={level!r} is unknown; use one of {', '.join(LEVELS)} "
                           f"({', '.join(LEVEL_ZH.values())})")
    return level


def _area_unit(unit: str) -> str:
    if unit not in AREA_UNITS:
        raise RequestError(f"area_unit={unit!r} is unknown; use one of {', '.join(sorted(AREA_UNITS))}")
    return unit


def _summary(run) -> dict:
    m = {k: _clean(v) for k, v in run.meta.items()}
    return {"run_id": run.run_id, "started_at": m.get("started_at"), "finished_at": m.get("finished_at"),
            "registry_sha256": m.get("registry_sha256"), "analysis_run_id": m.get("analysis_run_id"),
            "skipped": json.loads(m.get("skipped") or "{}"), "notes": json.loads(m.get("notes") or "[]"),
            "id_fields": json.loads(m.get("id_fields") or "{}")}


def _selfeval_body(ev) -> dict:
    rows = [{k: _clean(v) for k, v in r.items()} for r in ev.rows.to_dict("records")]
    return {"title": ev.title, "unit_code": ev.unit_code, "unit_name": ev.unit_name, "run_id": ev.run_id,
            "rows": rows, "total": _clean(ev.total), "total_weight": _clean(ev.total_weight),
            "warnings": [{k: _clean(v) for k, v in w.items()} for w in ev.warnings]}


def install(app: FastAPI, settings) -> None:
    api = IndicatorsApi(settings)
    app.state.indicators_api = api
    router = APIRouter(prefix="/api", tags=["indicators 指标"])
    planner, admin = require("planner"), require("admin")

    @router.get("/indicators", summary="indicator values by level (县 / 乡镇 / 村) of the latest (or a given) run")
    def indicators(request: Request, who: Principal = Depends(planner),
                   level: str | None = Query(None, description="county, township or village (default: all)"),
                   area_unit: str = Query("ha", description="ha (公顷), mu (亩) or m2"),
                   unit: str | None = Query(None, description="only this 行政区 code"),
                   indicator: str | None = Query(None, description="only this indicator code"),
                   run_id: str | None = None):
        refuse_unknown_params(request.query_params, {"level", "area_unit", "unit", "indicator", "run_id"})
        level = _levels_param(level)
        area_unit = _area_unit(area_unit)
        code = _unit_code(unit)
        run = api.run(run_id)
        if indicator is not None and indicator not in set(run.values["indicator"]):
            raise RequestError(f"indicator={indicator!r} is not in run {run.run_id}; indicators: "
                               f"{', '.join(dict.fromkeys(run.values['indicator']))}")
        rows = svc.long_records(run, level, area_unit, with_ids=False)
        if code is not None:
            rows = [r for r in rows if r["unit_code"] == code]
            if not rows:
                raise NotFoundError(f"unit {code} has no values in run {run.run_id} at level {level or 'any'}")
        if indicator is not None:
            rows = [r for r in rows if r["indicator"] == indicator]
        tables = []
        for lv in ([level] if level else list(LEVELS)):
            for group, table, decimals in svc.report_tables(run, lv, area_unit):
                if code is not None:
                    table = table[table["行政区代码"] == code]
                tables.append({"level": lv, "level_zh": LEVEL_ZH[lv], "group": group,
                               "columns": list(table.columns), "decimals": decimals,
                               "rows": [[_clean(v) for v in r] for r in table.itertuples(index=False)]})
        warnings = run.warnings
        if warnings is not None and len(warnings):
            w = warnings[warnings["level"].isin([level] if level else list(LEVELS))]
            if code is not None:
                w = w[w["unit_code"] == code]
            warn_rows = [{k: _clean(v) for k, v in r.items() if k != "run_id"} for r in w.to_dict("records")]
        else:
            warn_rows = []
        return {"run": _summary(run), "level": level, "area_unit": area_unit, "values": rows, "tables": tables,
                "warnings": warn_rows}

    @router.get("/indicators/runs", summary="stored indicator runs, newest last")
    def runs(who: Principal = Depends(planner)):
        try:
            table = api.store.read_table(svc.RUNS, columns=["run_id", "started_at", "finished_at",
                                                             "analysis_run_id", "registry_sha256"])
        except NotFoundError:
            return {"runs": []}
        return {"runs": [{k: _clean(v) for k, v in r.items()} for r in table.to_dict("records")]}

    @router.post("/indicators/runs", summary="compute the indicators now and store the run (admin)", status_code=201)
    async def new_run(who: Principal = Depends(admin)):
        run = await run_in_threadpool(svc.run_indicators, api.store, getattr(settings, "registry_file", None))
        return {"run": _summary(run), "values": int(len(run.values)), "warnings": int(len(run.warnings))}

    @router.get("/indicators/{code}/drilldown", summary="the records behind one value")
    def drilldown(code: str, request: Request, who: Principal = Depends(planner),
                  unit: str = Query(..., description="行政区代码 of the value"),
                  layer: str | None = Query(None, description="only this source layer"),
                  limit: int = Query(100, ge=1, le=settings.page_limit_max), offset: int = Query(0, ge=0),
                  run_id: str | None = None):
        refuse_unknown_params(request.query_params, {"unit", "layer", "limit", "offset", "run_id"})
        unit_code = _unit_code(unit)
        run = api.run(run_id)
        if code not in set(run.values["indicator"]):
            raise NotFoundError(f"indicator {code!r} is not in run {run.run_id}; indicators: "
                                f"{', '.join(dict.fromkeys(run.values['indicator']))}")
        found = svc.drill_down(api.store, code, unit_code, run.run_id)
        id_fields = _summary(run)["id_fields"]
        record_ids: dict = found["record_ids"] or {}
        if layer is not None and layer not in record_ids:
            raise RequestError(f"layer={layer!r}: the value of {code} for {unit_code} comes from "
                               f"{', '.join(record_ids) or 'no layer'}")
        present = set(api.store.layer_names())
        out_layers = {}
        for name, ids in record_ids.items():
            if layer is not None and name != layer:
                continue
            field = id_fields.get(name)
            page = list(ids)[offset:offset + limit]
            records: list[dict] = []
            if page and name in present and field:
                column = "fid" if field == "row" else field
                literal = ", ".join(str(int(i)) if isinstance(i, (int, float)) and not isinstance(i, bool)
                                    else "'" + str(i).replace("'", "''") + "'" for i in page)
                frame = api.store.read_layer(name, where=f'"{column}" IN ({literal})')
                frame = pd.DataFrame(frame.drop(columns=frame.geometry.name))
                records = [{k: _clean(v) for k, v in r.items()} for r in frame.to_dict("records")]
            out_layers[name] = {"id_field": field, "total": len(ids), "ids": page, "records": records}
        return {"run_id": found["run_id"], "indicator": code, "unit_code": unit_code, "value": _clean(found["value"]),
                "unit": found["unit"], "rule": found["rule"], "limit": limit, "offset": offset, "layers": out_layers}

    def _evaluate(targets, unit: str | None, run_id: str | None):
        run = api.run(run_id)
        return svc.self_evaluate(run, targets, _unit_code(unit))

    @router.get("/selfeval", summary="the 绩效自评表 as JSON")
    def selfeval(request: Request, who: Principal = Depends(planner), targets: str = Query(...),
                 unit: str | None = None, run_id: str | None = None):
        refuse_unknown_params(request.query_params, {"targets", "unit", "run_id"})
        return _selfeval_body(_evaluate(api.targets(targets), unit, run_id))

    def _xlsx(ev) -> Response:
        folder = Path(tempfile.mkdtemp(prefix="yzt-selfeval-"))
        try:
            path = svc.selfeval_xlsx(ev, folder / "selfeval.xlsx")
            data = path.read_bytes()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
        return Response(data, media_type=XLSX, headers={
            "Content-Disposition": f'attachment; filename="selfeval_{ev.unit_code}_{stamp}.xlsx"'})

    @router.get("/selfeval.xlsx", summary="the 绩效自评表 as an xlsx workbook")
    def selfeval_xlsx(request: Request, who: Principal = Depends(planner), targets: str = Query(...),
                      unit: str | None = None, run_id: str | None = None):
        refuse_unknown_params(request.query_params, {"targets", "unit", "run_id"})
        return _xlsx(_evaluate(api.targets(targets), unit, run_id))

    @router.post("/selfeval.xlsx", summary="the 绩效自评表 for targets sent in the body (YAML or JSON)")
    async def selfeval_xlsx_post(request: Request, who: Principal = Depends(planner), unit: str | None = None,
                                 run_id: str | None = None):
        refuse_unknown_params(request.query_params, {"unit", "run_id"})
        body = await request.body()
        if len(body) > settings.max_upload_bytes:
            raise PayloadTooLarge(f"the targets document is larger than {settings.max_upload_bytes:,} bytes")
        try:
            doc = yaml.safe_load(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            raise RequestError(f"the body is not a YAML / JSON targets document: {exc}") from None
        if doc is None:
            raise RequestError("the body is empty: send the targets document (see data/targets.sample.yaml)")
        try:
            targets = parse_targets(doc)
        except RuleError:
            raise
        ev = await run_in_threadpool(_evaluate, targets, unit, run_id)
        return await run_in_threadpool(_xlsx, ev)

    app.include_router(router)

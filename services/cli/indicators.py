"""`yzt indicators`, `yzt selfeval`, `yzt charts`: indicator runs, the 绩效自评表 and report charts."""

from __future__ import annotations

import json
from pathlib import Path

import click

from layers.errors import RuleError
from layers.store import open_store

from ..jobs import indicators as jobs
from ..jobs.region import DEFAULT_PARTITION_ROWS
from ..reports.indicators import FORMATS, export_values
from .options import (
    area_unit_opt,
    force_opt,
    out_file_option,
    partition_rows_opt,
    run_id_opt,
    scheduler_opt,
    store_opt,
    worker_memory_opt,
    workers_opt,
)


def _emit(result, out):
    if out is None:
        click.echo(result, nl=False)
    else:
        click.echo(f"wrote {result}", err=True)


@click.command("indicators")
@store_opt
@click.option("--level", type=click.Choice(["province", "city", "county", "township", "village"]), default=None,
              help="only this level (default: all; province and city for a province store)")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="md", show_default=True)
@out_file_option("output file (required for xlsx; default: standard output)")
@area_unit_opt
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="indicator registry YAML (default: the built-in analysis/indicators.yaml)")
@click.option("--run-id", default=None, metavar="RUN", help="export this stored run instead of computing a new one")
@workers_opt
@scheduler_opt
@worker_memory_opt
@force_opt
@partition_rows_opt(DEFAULT_PARTITION_ROWS)
def indicators(store, level, fmt, out, area_unit, registry, run_id, workers, scheduler, worker_memory, force,
               partition_rows):
    """Compute the indicators by 县/乡镇/村, store the run (留痕), and export it.

    A province STORE: each county's run (where its inputs changed, on dask), then the roll-up 村 → 乡 → 县 → 市 →
    省 with 强制调平 at every level, stored in the region schema; ``--level province|city|county …``.
    One large county: ``--partition-rows N --workers 2`` computes it in spatial partitions on a local cluster."""
    from layers.store.province import is_region_store

    if is_region_store(store):
        from . import region

        region.indicators(store, level, fmt, out, area_unit, registry, run_id, workers, scheduler, force,
                          DEFAULT_PARTITION_ROWS if partition_rows is None else partition_rows, worker_memory)
        return
    from .region import refuse_county_options

    refuse_county_options(None, None, force, f"{store} is one county's store")
    if (workers is not None or scheduler is not None or worker_memory is not None) and partition_rows is None:
        raise RuleError("--workers / --scheduler / --worker-memory apply to one county's indicators only with "
                        "--partition-rows N (a large county in spatial partitions on dask); without it a county "
                        "runs in one process")
    if level in ("province", "city"):
        raise RuleError(f"--level {level} needs a province store (yzt ingest region.yaml --store …); {store} "
                        "holds one county")
    s = open_store(store)
    if run_id is not None:
        if registry is not None:
            raise RuleError("--run-id exports a stored run with its own registry; drop --registry")
        run = jobs.load_run(s, run_id)
    elif partition_rows is not None:
        from .region import cluster

        with cluster(workers, scheduler, worker_memory) as client:
            run = jobs.run_indicators(s, registry, client=client, rows_per_partition=partition_rows)
        click.echo(f"partitions: {json.loads(run.meta['partitions'])['why']}", err=True)
    else:
        run = jobs.run_indicators(s, registry)
    if run_id is None:
        skipped = json.loads(run.meta["skipped"])
        click.echo(f"indicator run {run.run_id}: {run.values['indicator'].nunique()} indicators, "
                   f"{run.values['unit_code'].nunique()} units, {len(run.warnings)} warnings"
                   + (f"; not computed: {', '.join(sorted(skipped))}" if skipped else ""), err=True)
    _emit(export_values(run, fmt, level=level, area_unit=area_unit, out=out), out)


@click.command("selfeval")
@store_opt
@click.option("--targets", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="targets and weights YAML (see data/targets.sample.yaml)")
@click.option("--format", "fmt", type=click.Choice(["xlsx", "md"]), default="md", show_default=True)
@out_file_option("output file (required for xlsx; default: standard output)")
@click.option("--unit", "unit_code", default=None, help="行政区代码 (default: the targets file's, else the county)")
@run_id_opt
def selfeval(store, targets, fmt, out, unit_code, run_id):
    """Fill and score the 绩效自评表 from an indicator run."""
    from ..reports.selfeval import selfeval_markdown, selfeval_xlsx

    target_doc = jobs.load_targets(targets)
    run = jobs.latest_or_new_run(open_store(store), run_id)
    ev = jobs.self_evaluate(run, target_doc, unit_code)
    out_of = ev.total_weight if ev.scored_weight is None else ev.scored_weight
    click.echo(f"自评总得分 {ev.total:.2f} / {out_of:g} ({ev.unit_name}, run {run.run_id}); "
               f"{len(ev.warnings)} 预警", err=True)
    if fmt == "xlsx":
        if out is None:
            raise RuleError("xlsx output needs --out FILE.xlsx")
        _emit(selfeval_xlsx(ev, out), out)
        return
    text = selfeval_markdown(ev)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        _emit(out, out)
    else:
        _emit(text, None)


@click.command("charts")
@store_opt
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder for the chart files")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default="png", show_default=True)
@area_unit_opt
@run_id_opt
def charts(store, out_dir, fmt, area_unit, run_id):
    """Draw the report charts (耕地 / 地类 / 预判结论 by 乡镇, 冲突 by kind) with Chinese labels.

    A province STORE: the same by 市 and by 县, from its latest roll-up (or --run-id)."""
    from layers.store.province import is_region_store

    from ..reports.charts import draw_charts, draw_region_charts

    if is_region_store(store):
        from ..jobs.region import load_rollup

        for path in draw_region_charts(load_rollup(store, run_id), out_dir, fmt=fmt, area_unit=area_unit):
            click.echo(str(path))
        return

    s = open_store(store)
    run = jobs.latest_or_new_run(s, run_id)
    conflicts = None
    if "planning_conflicts" in s.layer_names():
        conflicts = s.read_layer("planning_conflicts")
        if run.meta.get("analysis_run_id") and "run_id" in conflicts.columns:
            conflicts = conflicts[conflicts["run_id"].astype(str) == str(run.meta["analysis_run_id"])]
    for path in draw_charts(run, out_dir, fmt=fmt, area_unit=area_unit, conflicts=conflicts):
        click.echo(str(path))

"""`yzt indicators`, `yzt selfeval`, `yzt charts`: indicator runs, the 绩效自评表 and report charts."""

from __future__ import annotations

from pathlib import Path

import json

import click

from layers.errors import RuleError
from layers.store import open_store

from . import indicators as svc

STORE_HELP = "the store: a .gpkg path or postgresql://…?schema=…"


def register(cli: click.Group) -> None:
    cli.add_command(indicators_command)
    cli.add_command(selfeval_command)
    cli.add_command(charts_command)


def _emit(result, out):
    if out is None:
        click.echo(result, nl=False)
    else:
        click.echo(f"wrote {result}", err=True)


@click.command("indicators")
@click.option("--store", "store_url", required=True, help=STORE_HELP)
@click.option("--level", type=click.Choice(["county", "township", "village"]), default=None,
              help="only this level (default: all three)")
@click.option("--format", "fmt", type=click.Choice(list(svc.FORMATS)), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="output file (required for xlsx; default: standard output)")
@click.option("--area-unit", type=click.Choice(["ha", "mu", "m2"]), default="ha", show_default=True,
              help="area unit of the md/xlsx tables (json/csv carry all three)")
@click.option("--registry", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="indicator registry YAML (default: the built-in analysis/indicators.yaml)")
@click.option("--run-id", default=None, help="export this stored run instead of computing a new one")
def indicators_command(store_url, level, fmt, out, area_unit, registry, run_id):
    """Compute the indicators by 县/乡镇/村, store the run (留痕), and export it."""
    store = open_store(store_url)
    if run_id is not None:
        if registry is not None:
            raise RuleError("--run-id exports a stored run with its own registry; drop --registry")
        run = svc.load_run(store, run_id)
    else:
        run = svc.run_indicators(store, registry)
        skipped = json.loads(run.meta["skipped"])
        click.echo(f"indicator run {run.run_id}: {run.values['indicator'].nunique()} indicators, "
                   f"{run.values['unit_code'].nunique()} units, {len(run.warnings)} warnings"
                   + (f"; not computed: {', '.join(sorted(skipped))}" if skipped else ""), err=True)
    _emit(svc.export_values(run, fmt, level=level, area_unit=area_unit, out=out), out)


@click.command("selfeval")
@click.option("--store", "store_url", required=True, help=STORE_HELP)
@click.option("--targets", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="targets and weights YAML (see data/targets.sample.yaml)")
@click.option("--format", "fmt", type=click.Choice(["xlsx", "md"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="output file (required for xlsx; default: standard output)")
@click.option("--unit", "unit_code", default=None, help="行政区代码 (default: the targets file's, else the county)")
@click.option("--run-id", default=None, help="indicator run to use (default: the latest; a new run if none)")
def selfeval_command(store_url, targets, fmt, out, unit_code, run_id):
    """Fill and score the 绩效自评表 from an indicator run."""
    target_doc = svc.load_targets(targets)
    store = open_store(store_url)
    run = svc.latest_or_new_run(store, run_id)
    ev = svc.self_evaluate(run, target_doc, unit_code)
    click.echo(f"自评总得分 {ev.total:.2f} / {ev.total_weight:g} ({ev.unit_name}, run {run.run_id}); "
               f"{len(ev.warnings)} 预警", err=True)
    if fmt == "xlsx":
        if out is None:
            raise RuleError("xlsx output needs --out FILE.xlsx")
        _emit(svc.selfeval_xlsx(ev, out), out)
        return
    text = svc.selfeval_markdown(ev)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        _emit(out, out)
    else:
        _emit(text, None)


@click.command("charts")
@click.option("--store", "store_url", required=True, help=STORE_HELP)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder for the chart files")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default="png", show_default=True)
@click.option("--area-unit", type=click.Choice(["ha", "mu", "m2"]), default="ha", show_default=True)
@click.option("--run-id", default=None, help="indicator run to chart (default: the latest; a new run if none)")
def charts_command(store_url, out_dir, fmt, area_unit, run_id):
    """Draw the report charts (耕地 / 地类 / 预判结论 by 乡镇, 冲突 by kind) with Chinese labels."""
    from .charts import draw_charts

    store = open_store(store_url)
    run = svc.latest_or_new_run(store, run_id)
    conflicts = None
    if "planning_conflicts" in store.layer_names():
        conflicts = store.read_layer("planning_conflicts")
        if run.meta.get("analysis_run_id") and "run_id" in conflicts.columns:
            conflicts = conflicts[conflicts["run_id"].astype(str) == str(run.meta["analysis_run_id"])]
    files = draw_charts(run, out_dir, fmt=fmt, area_unit=area_unit, conflicts=conflicts)
    for path in files:
        click.echo(str(path))

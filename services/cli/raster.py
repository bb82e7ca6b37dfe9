"""`yzt raster …`: slope grades of 耕地 from the DEM, change candidates from two images, zonal statistics, camera
coverage (the work is in services/jobs/rasters.py).

    yzt raster info     --manifest M
    yzt raster slope    --manifest M --store S             → tables raster_slope_grades, raster_findings
    yzt raster change   --manifest M [--store S --as-monitoring] [--round R] [--out F.gpkg] [--truth T.yaml]
    yzt raster zonal    RASTER --store S --layer dltb|xzq [--stat mean|majority|share] [--level village]
    yzt raster coverage --manifest M --store S             → tables raster_camera_coverage, raster_camera_views
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd
import rasterio

from analysis.raster.change import FILTER_TITLES, FILTERS, evaluate
from analysis.raster.zonal import STATS
from layers.errors import NotFoundError
from layers.fields import ROUND
from layers.manifest import load_manifest
from layers.raster import open_raster
from layers.store import open_store

from ..jobs import rasters as jobs
from .options import manifest_opt, rules_option, store_opt, store_option, table_format_option

rules_opt = rules_option("raster rules", "analysis/raster/rules.yaml")


def _echo_table(frame: pd.DataFrame, fmt: str) -> None:
    if fmt == "json":
        click.echo(frame.to_json(orient="records", force_ascii=False))
    elif fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    else:
        with pd.option_context("display.max_rows", 200, "display.width", 200, "display.max_columns", 30):
            click.echo(frame.to_string(index=False))


@click.group("raster")
@click.pass_context
def raster(ctx):
    """Rasters: slope grades from the DEM, change candidates, zonal statistics, camera coverage."""
    # bound GDAL's block cache (default: 5 % of physical memory) so a county DEM streams in < 2 GB
    ctx.with_resource(rasterio.Env(GDAL_CACHEMAX=jobs.GDAL_CACHE_BYTES))


@raster.command("info")
@manifest_opt
def info(manifest):
    """Describe the manifest's raster roles (CRS, size, tiling, overviews)."""
    parsed = load_manifest(manifest)
    if not parsed.rasters:
        raise NotFoundError(f"manifest {manifest} has no rasters: section")
    for role in parsed.rasters:
        with open_raster(parsed, role) as src:
            click.echo(json.dumps(src.describe(), ensure_ascii=False))


@raster.command("slope")
@manifest_opt
@store_opt
@rules_opt
def slope(manifest, store, rules_path):
    """耕地坡度级别 (GDPDJB) of every 耕地 patch from the DEM; disagreements become 入库质检 findings."""
    rules = jobs.load_raster_rules(rules_path)
    parsed = load_manifest(manifest)
    with open_store(store) as s:
        table, findings, run_id = jobs.grade_slopes(parsed, s, rules)
    graded = table["grade_dem"].notna()
    click.echo(f"耕地 patches: {len(table)}, graded from the DEM: {int(graded.sum())}")
    by = table[graded].groupby("grade_dem").agg(patches=("BSM", "size"), area_m2=("area_m2", "sum"))
    for grade, row in by.iterrows():
        click.echo(f"  grade {grade}: {int(row['patches'])} patches, {row['area_m2'] / 1e4:.2f} ha")
    for f in findings:
        click.echo(f"{f.severity}: {f.check}: {f.message}")
    click.echo(f"written: tables {jobs.SLOPE_TABLE}, {jobs.FINDINGS_TABLE} (run {run_id})")


@raster.command("change")
@manifest_opt
@store_option(required=False, help="store (its CRS; needed for --as-monitoring)")
@click.option("--as-monitoring", is_flag=True, help="append the candidates to the store's monitoring layer")
@click.option("--round", "round_", default=None, help="ROUND of the candidates (default: later image's year)")
@click.option("--qsx", default=None, help="earlier image date (default: from the image's tags)")
@click.option("--hsx", default=None, help="later image date (default: from the image's tags)")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="write candidates (layer candidates) and removed ones (layer removed) to this GeoPackage")
@click.option("--truth", "truth_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="raster_truth.yaml: report precision / recall against planted changes")
@rules_opt
def change(manifest, store, as_monitoring, round_, qsx, hsx, out_path, truth_path, rules_path):
    """Change candidates between image_before and image_after, with what each false-alarm filter removed."""
    rules = jobs.load_raster_rules(rules_path)
    parsed = load_manifest(manifest)
    if as_monitoring and not store:
        raise click.UsageError("--as-monitoring needs --store")
    s = open_store(store) if store else None
    try:
        epsg = jobs.change_epsg(parsed, s)
        result = jobs.run_change(parsed, rules, epsg, round_=round_, qsx=qsx, hsx=hsx)
        cand = result.candidates
        round_ = cand[ROUND].iloc[0] if len(cand) else (round_ or "raster")
        c = result.counts
        otsu = result.otsu_threshold if result.otsu_threshold is None else round(result.otsu_threshold, 3)
        click.echo(f"threshold {result.threshold:.3f} σ (Otsu {otsu}, floor {rules.change.threshold_floor}); "
                   f"regions above it: {c['raw_regions']}")
        for f in FILTERS:
            click.echo(f"  removed by {f:<12} {c[f]:>5}   {FILTER_TITLES[f]}")
        click.echo(f"candidates kept: {c['kept']} ({cand['MJ'].sum() / 1e4:.2f} ha)" if len(cand) else
                   "candidates kept: 0")
        if truth_path:
            planted, false_alarms = jobs.read_truth(Path(truth_path), cand.crs or f"EPSG:{epsg}")
            ev = evaluate(cand, planted, false_alarms)
            click.echo(f"against {truth_path}: precision {ev['precision']:.3f}, recall {ev['recall']:.3f} "
                       f"({ev['detected']}/{ev['planted']} planted changes found, {ev['false_positives']} "
                       f"false candidates; planted false alarms reported: {ev.get('false_alarms_reported')})")
        if out_path:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            cand.to_file(out_path, layer="candidates", driver="GPKG")
            if len(result.removed):
                result.removed.to_file(out_path, layer="removed", driver="GPKG")
            click.echo(f"written: {out_path}")
        if s is not None:
            jobs.record_change_run(s, result, round_)
        if as_monitoring:
            removed, added = jobs.append_to_monitoring(s, cand, round_)
            click.echo(f"monitoring: {added} raster candidates of round {round_} appended (SOURCE raster), "
                       f"{removed} earlier ones of that round replaced; `yzt analyse` dedupes them")
    finally:
        if s is not None:
            s.close()


@raster.command("zonal")
@click.argument("raster_path", type=click.Path(exists=True, dir_okay=False))
@store_opt
@click.option("--layer", type=click.Choice(["dltb", "xzq"]), required=True)
@click.option("--stat", "stats", type=click.Choice(list(STATS)), multiple=True, default=("mean",))
@click.option("--level", type=click.Choice(list(jobs.LEVELS)), default="village", help="xzq level (default 村)")
@click.option("--band", type=int, default=1)
@click.option("--crs", default=None, help="the raster's CRS when the file has none (EPSG:45xx)")
@table_format_option()
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="write CSV here")
def zonal(raster_path, store, layer, stats, level, band, crs, fmt, out_path):
    """Zonal statistics of a raster (any CGCS2000 GeoTIFF) by DLTB patch or by 村 / 乡 / 县."""
    with open_store(store) as s:
        out = jobs.run_zonal(raster_path, s, layer, stats, level=level, band=band, crs=crs)
    if out_path:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(out_path, index=False, encoding="utf-8")
        click.echo(f"written: {out_path} ({len(out)} rows)")
    else:
        _echo_table(out, fmt)


@raster.command("coverage")
@manifest_opt
@store_opt
@table_format_option()
@rules_opt
def coverage(manifest, store, fmt, rules_path):
    """Camera viewsheds over the DEM and the share of 耕地 (net of 田坎) they see, by 乡."""
    rules = jobs.load_raster_rules(rules_path)
    parsed = load_manifest(manifest)
    with open_store(store) as s:
        by, _ = jobs.store_coverage(parsed, s, rules)
    _echo_table(by, fmt)
    if fmt == "table":
        click.echo(f"written: tables {jobs.COVERAGE_TABLE}, {jobs.CAMERA_TABLE}")

"""`yzt analyse --store STORE [--rules FILE]`: pre-judge monitoring patches and find planning conflicts."""

from __future__ import annotations

import json

import click

from .options import force_opt, json_opt, rules_option, scheduler_opt, store_opt, workers_opt


@click.command("analyse")
@store_opt
@rules_option("rules", "analysis/rules.yaml; see docs/analysis.md")
@workers_opt
@scheduler_opt
@force_opt
@json_opt
def analyse(store, rules_path, workers, scheduler, force, as_json):
    """Pre-judge monitoring patches (卫片预判), dedupe them, and find planning conflicts.

    Writes the layers flagged_patches and planning_conflicts and appends a row to the analysis_runs
    table of STORE. A province STORE (yzt ingest region.yaml): every county whose inputs changed, on dask.
    """
    from layers.store.province import is_region_store

    from ..jobs.analyse import run_analysis, summary_text

    if is_region_store(store):
        from . import region

        region.analyse(store, rules_path, workers, scheduler, force, as_json)
        return
    from .region import refuse_county_options

    refuse_county_options(workers, scheduler, force, f"{store} is one county's store")
    result = run_analysis(store, rules_path=rules_path, workers=workers or 2)
    if as_json:
        click.echo(json.dumps({"run_id": result.run_id, "store": result.store_url, "rules": result.rules_path,
                               "rules_sha256": result.rules_sha256, "seconds": result.seconds,
                               "timings": result.timings, "cpu_timings": result.cpu_timings,
                               "dedupe_groups": result.dedupe.groups, **result.counts()},
                              ensure_ascii=False, indent=2))
    else:
        click.echo(summary_text(result))

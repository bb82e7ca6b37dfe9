"""`yzt analyse --store STORE [--rules FILE]`: pre-judge monitoring patches and find planning conflicts."""

from __future__ import annotations

import json

import click

from layers.errors import RuleError

from ..jobs.region import DEFAULT_PARTITION_ROWS
from .options import (
    force_opt,
    json_opt,
    partition_rows_opt,
    rules_option,
    scheduler_opt,
    store_opt,
    worker_memory_opt,
    workers_opt,
)


@click.command("analyse")
@store_opt
@rules_option("rules", "analysis/rules.yaml; see docs/analysis.md")
@workers_opt
@scheduler_opt
@worker_memory_opt
@force_opt
@partition_rows_opt(DEFAULT_PARTITION_ROWS)
@json_opt
def analyse(store, rules_path, workers, scheduler, worker_memory, force, partition_rows, as_json):
    """Pre-judge monitoring patches (卫片预判), dedupe them, and find planning conflicts.

    Writes the layers flagged_patches and planning_conflicts and appends a row to the analysis_runs
    table of STORE. A province STORE (yzt ingest region.yaml): every county whose inputs changed, on dask.
    One large county: ``--partition-rows N --workers 2`` reads its survey layers in spatial partitions on a
    local cluster (the same records).
    """
    from layers.store.province import is_region_store

    from ..jobs.analyse import run_analysis, summary_text

    if is_region_store(store):
        from . import region

        region.analyse(store, rules_path, workers, scheduler, force, as_json,
                       DEFAULT_PARTITION_ROWS if partition_rows is None else partition_rows, worker_memory)
        return
    from .region import _echo, cluster, refuse_county_options

    if partition_rows is not None:  # --workers / --scheduler: the dask cluster of the partitions
        refuse_county_options(None, None, force, f"{store} is one county's store")
        with cluster(workers, scheduler, worker_memory) as client:
            result = run_analysis(store, rules_path=rules_path, client=client, rows_per_partition=partition_rows)
        _echo(f"partitions: {result.partitions['why']}")
    else:
        if worker_memory is not None:
            raise RuleError("--worker-memory sizes dask workers: give it with --partition-rows N (a large county "
                            "in spatial partitions) or for a province store")
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

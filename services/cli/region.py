"""The province forms of `yzt ingest`, `yzt analyse` and `yzt indicators` (a region.yaml, a province store):
the counties run on dask.distributed (services/jobs/region.py); the commands' county forms are unchanged."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

import click

from layers.errors import YztError

if TYPE_CHECKING:
    from ..jobs.region import RollupRun


def _echo(text: str) -> None:
    click.echo(text, err=True)


def _finish(result, as_json: bool) -> None:
    click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if as_json else result.to_text())
    if result.failed:
        raise SystemExit(1)


def refuse_county_options(workers, scheduler, force, what: str) -> None:
    if scheduler is not None or force:
        raise YztError(f"--scheduler and --force apply to a province (a region.yaml or a province store); {what}")


def cluster(workers, scheduler, worker_memory: str | None):
    """The dask client of a command: a running cluster, or a local one of ``workers`` with ``worker_memory``."""
    from ..jobs.region import region_cluster

    if worker_memory is not None and scheduler is not None:
        raise YztError("--worker-memory sizes the workers of a local cluster; a running cluster (--scheduler) "
                       "has the memory its `dask worker --memory-limit` gave it")
    return region_cluster(workers, scheduler, memory_limit=worker_memory or "4GiB", echo=_echo)


def ingest(manifest, store, workers, scheduler, force, no_progress, as_json, worker_memory=None,
           rows_per_partition: int | None = None) -> None:
    from ..jobs.region import ingest_region

    with cluster(workers, scheduler, worker_memory) as client:
        result = ingest_region(manifest, store, client, force=force, progress=not no_progress,
                               rows_per_partition=rows_per_partition)
    _finish(result, as_json)


def analyse(store, rules_path, workers, scheduler, force, as_json, rows_per_partition: int | None = None,
            worker_memory=None) -> None:
    from ..jobs.region import analyse_region

    with cluster(workers, scheduler, worker_memory) as client:
        result = analyse_region(store, client, rules_path=rules_path, force=force,
                                rows_per_partition=rows_per_partition)
    _finish(result, as_json)


def indicators(store, level, fmt, out, area_unit, registry, run_id, workers, scheduler, force,
               rows_per_partition: int | None = None, worker_memory=None) -> None:
    from ..jobs.region import indicators_region, load_rollup
    from ..reports.indicators import export_values

    rollup: RollupRun | None
    if run_id is not None:
        rollup = load_rollup(store, run_id)
    else:
        with cluster(workers, scheduler, worker_memory) as client:
            result, rollup = indicators_region(store, client, registry_path=registry, force=force,
                                               rows_per_partition=rows_per_partition)
        _echo(result.to_text())
        if rollup is None:
            raise SystemExit(1)
        _echo(f"roll-up {rollup.run_id}: {rollup.values['indicator'].nunique()} indicators, "
              f"{rollup.values['unit_code'].nunique()} units (省 → 村), {len(rollup.warnings)} warnings")
    text = export_values(cast(Any, rollup), fmt, level=level, area_unit=area_unit, out=out)
    if out is None:
        click.echo(text, nl=False)
    else:
        _echo(f"wrote {text}")

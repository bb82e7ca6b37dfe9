"""`yzt ingest` and `yzt check`: load a region's layers into a store, or run the 入库质检 without writing.

    yzt ingest data/sample/manifest.yaml --store out/sample/store.gpkg
    yzt ingest manifest.yaml --store "postgresql://yzt@db:5432/gis?schema=county_130599" --role monitoring
    yzt check data/sample/manifest.yaml [--json]
    yzt ingest DIR/region.yaml --store "postgresql://yzt@db:5432/gis?schema=prov" [--workers N | --scheduler ADDR]

Exit codes: 0 done / no error findings; 1 `check` found errors; 2 a YztError (one line on stderr).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..jobs.region import DEFAULT_PARTITION_ROWS
from .options import (
    force_opt,
    json_opt,
    manifest_arg,
    partition_rows_opt,
    scheduler_opt,
    store_opt,
    worker_memory_opt,
    workers_opt,
)


@click.command("ingest")
@manifest_arg
@store_opt
@click.option("--role", "roles", multiple=True, metavar="ROLE",
              help="ingest only this role (repeatable); the store's other layers stay as they are")
@click.option("--no-progress", is_flag=True, help="no progress bars on stderr")
@click.option("--allow-empty", is_flag=True,
              help="let a layer with no features replace a stored layer that has some (refused otherwise)")
@workers_opt
@scheduler_opt
@worker_memory_opt
@force_opt
@partition_rows_opt(DEFAULT_PARTITION_ROWS, "loads its layers as tasks of their own")
@json_opt
def ingest(manifest: Path, store: str, roles: tuple[str, ...], no_progress: bool, allow_empty: bool,
           workers: int | None, scheduler: str | None, worker_memory: str | None, force: bool,
           partition_rows: int | None, as_json: bool) -> None:
    """Load every layer of MANIFEST into STORE in one atomic write (入库).

    Any error (unreadable or damaged file, unknown CRS, missing required field, another region in the store,
    an empty layer in place of a stored one …) stops before anything is written: the store keeps its previous
    content.

    MANIFEST may be a region set (region.yaml listing county manifests): every county is then ingested into
    its own schema of the PostGIS province STORE, county by county on dask (docs/scale.md); counties whose
    inputs did not change are skipped. A county of more DLTB patches than --partition-rows loads each layer
    as a task of its own on the cluster; so does one county's manifest given --partition-rows N with
    --workers or --scheduler (a PostGIS STORE).
    """
    from layers.region import is_region_file

    from ..jobs.ingest import load

    if is_region_file(manifest):
        from . import region

        if roles or allow_empty:
            from layers.errors import YztError

            raise YztError("--role and --allow-empty re-ingest layers of one county: give that county's "
                           "manifest.yaml and its store (the province store's county schema)")
        region.ingest(manifest, store, workers, scheduler, force, no_progress, as_json, worker_memory,
                      DEFAULT_PARTITION_ROWS if partition_rows is None else partition_rows)
        return
    if partition_rows is not None:  # one large county: its layers on the dask cluster
        from .region import cluster, refuse_county_options

        refuse_county_options(None, None, force, f"{manifest} is one county's manifest")
        with cluster(workers, scheduler, worker_memory) as client:
            result = load(manifest, store, roles=list(roles) or None, progress=not no_progress,
                          allow_empty=allow_empty, client=client, rows_per_partition=partition_rows)
    else:
        if workers is not None or scheduler is not None or worker_memory is not None or force:
            from layers.errors import YztError

            raise YztError(f"--workers, --scheduler, --worker-memory and --force apply to a region set "
                           f"(region.yaml), or to one county with --partition-rows N; {manifest} is one county's "
                           "manifest")
        result = load(manifest, store, roles=list(roles) or None, progress=not no_progress,
                      allow_empty=allow_empty)
    click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) if as_json else result.to_text())


@click.command("check")
@manifest_arg
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def check(manifest: Path, as_json: bool) -> None:
    """Run the 入库质检 on MANIFEST without writing anything.

    Exit 0 when no finding is an error, 1 when some are (the report says which and why).
    """
    from ..jobs.ingest import check as check_manifest

    report = check_manifest(manifest)
    click.echo(report.to_json() if as_json else report.to_text())
    sys.exit(0 if report.ok else 1)

"""Options and arguments that several commands share, declared once (as rasterio's rio/options.py does): the
same name, the same parameter, the same help text wherever they appear."""

from __future__ import annotations

from pathlib import Path

import click

STORE_HELP = ("the region's store: a .gpkg path (created if absent) or postgresql://user@host:port/db?schema=name; "
              "default $YZT_STORE")


def store_option(required: bool = True, help: str = STORE_HELP):
    """``--store STORE`` (parameter ``store``), also read from $YZT_STORE."""
    return click.option("--store", "store", envvar="YZT_STORE", required=required, metavar="STORE", help=help)


store_opt = store_option()

manifest_arg = click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))

manifest_opt = click.option("--manifest", "manifest", required=True, metavar="MANIFEST",
                            type=click.Path(exists=True, dir_okay=False, path_type=Path),
                            help="the region's manifest (manifest.yaml): layers and rasters")

json_opt = click.option("--json", "as_json", is_flag=True, help="print the result as JSON instead of text")

workers_opt = click.option("--workers", type=click.IntRange(1, 64), default=None,
                           help="one county: threads for the overlays (default 2); a province (region.yaml or a "
                                "province store), or one county with --partition-rows: dask worker processes of a "
                                "local cluster (default 2)")

scheduler_opt = click.option("--scheduler", default=None, metavar="ADDRESS",
                             help="a province: run the counties on this running dask cluster (tcp://host:8786) "
                                  "instead of a local one")

force_opt = click.option("--force", is_flag=True,
                         help="a province: redo every county, even those whose inputs did not change")

area_unit_opt = click.option("--area-unit", type=click.Choice(["ha", "mu", "m2"]), default="ha", show_default=True,
                             help="area unit of the tables (公顷, 亩, m²)")

run_id_opt = click.option("--run-id", default=None, metavar="RUN",
                          help="indicator run to use (default: the latest; a new run if none)")


def out_file_option(help: str = "output file (default: standard output)"):
    return click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        metavar="FILE", help=help)


def rules_option(what: str, default: str):
    """``--rules FILE``: a rules YAML replacing the packaged default."""
    return click.option("--rules", "rules_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        metavar="FILE", help=f"{what} YAML (default: the packaged {default})")


def table_format_option(default: str = "table"):
    return click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default=default,
                        show_default=True, help="how to print the table")


def partition_rows_opt(default: int, what: str = "computes in spatial partitions (whole 乡镇)"):
    """``--partition-rows N``: a large county split on dask (``what`` says how)."""
    return click.option("--partition-rows", type=click.IntRange(1000, None), default=None, metavar="N",
                        help=f"a county of more than N DLTB patches {what} on dask — the same results; a "
                             f"province: default {default}, one county: with --workers (dask workers, then) or "
                             "--scheduler")


def _memory(ctx, param, value):
    if value is None:
        return None
    from dask.utils import parse_bytes

    try:
        if parse_bytes(value) < 2**28:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a memory size of at least 256 MiB; give e.g. 8GiB") from None
    return value


worker_memory_opt = click.option(
    "--worker-memory", default=None, metavar="SIZE", callback=_memory,
    help="memory per worker of the local dask cluster (default 4GiB; the nanny restarts a worker past it): a "
         "county of about 1 M DLTB patches ingests in 2.8 GB, a larger one may need more (docs/scale.md §6)")

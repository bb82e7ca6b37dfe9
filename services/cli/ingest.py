"""`yzt ingest` and `yzt check`: load a region's layers into a store, or run the 入库质检 without writing.

    yzt ingest data/sample/manifest.yaml --store out/sample/store.gpkg
    yzt ingest manifest.yaml --store "postgresql://yzt@db:5432/gis?schema=county_130599" --role monitoring
    yzt check data/sample/manifest.yaml [--json]

Exit codes: 0 done / no error findings; 1 `check` found errors; 2 a YztError (one line on stderr).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

STORE_HELP = ("where to store: a .gpkg path (created if absent) or postgresql://user@host:port/db?schema=name; "
              "default from $YZT_STORE")


def register(cli: click.Group) -> None:
    @cli.command("ingest")
    @click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--store", "store_target", envvar="YZT_STORE", required=True, metavar="STORE", help=STORE_HELP)
    @click.option("--role", "roles", multiple=True, metavar="ROLE",
                  help="ingest only this role (repeatable); the store's other layers stay as they are")
    @click.option("--no-progress", is_flag=True, help="no progress bars on stderr")
    @click.option("--json", "as_json", is_flag=True, help="print the result as JSON instead of the table")
    def ingest_command(manifest: Path, store_target: str, roles: tuple[str, ...], no_progress: bool,
                       as_json: bool) -> None:
        """Load every layer of MANIFEST into STORE in one atomic write (入库).

        Any error (unreadable file, unknown CRS, missing required field, another region in the store …)
        stops before anything is written: the store keeps its previous content.
        """
        from layers.ingest import ingest
        from layers.manifest import load_manifest
        from layers.store import open_store

        parsed = load_manifest(manifest)
        with open_store(store_target) as store:
            result = ingest(parsed, store, roles=list(roles) or None, progress=not no_progress)
        if as_json:
            click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        else:
            click.echo(result.to_text())

    @cli.command("check")
    @click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
    def check_command(manifest: Path, as_json: bool) -> None:
        """Run the 入库质检 on MANIFEST without writing anything.

        Exit 0 when no finding is an error, 1 when some are (the report says which and why).
        """
        from layers.check import check_manifest
        from layers.manifest import load_manifest

        report = check_manifest(load_manifest(manifest))
        click.echo(report.to_json() if as_json else report.to_text())
        sys.exit(0 if report.ok else 1)

"""The `yzt` command line. Each stage registers its commands from its own module (cli_*.py).

Errors derived from YztError become one line on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import sys

import click

from layers.errors import YztError


class YztGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except YztError as exc:
            click.echo(f"yzt: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=YztGroup)
@click.version_option(package_name="yizhangtu")
def cli():
    """yizhangtu (一张图): ingest a region's layers, pre-judge monitoring patches, compute indicators, serve."""


def _register():
    import importlib

    for name in ("cli_ingest", "cli_analyse", "cli_indicators", "cli_raster", "cli_serve", "cli_demo"):
        try:
            module = importlib.import_module(f"services.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"services.{name}":
                continue  # stage not installed in this build
            raise
        module.register(cli)


_register()


def main():
    cli()


if __name__ == "__main__":
    main()

"""The `yzt` command line. Each stage registers its commands from its own module (cli_*.py), imported
only when one of its commands runs, so `yzt ingest` does not pay for the web stack.

Errors derived from YztError become one line on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from layers.errors import YztError

# command name -> module in services/ that registers it
COMMANDS = {
    "demo": "cli_demo",
    "check": "cli_ingest",
    "ingest": "cli_ingest",
    "analyse": "cli_analyse",
    "indicators": "cli_indicators",
    "selfeval": "cli_indicators",
    "charts": "cli_indicators",
    "raster": "cli_raster",
    "serve": "cli_serve",
}


class YztGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        module_name = COMMANDS.get(name)
        if module_name is None:
            return None
        module = importlib.import_module(f"services.{module_name}")
        holder = click.Group()
        module.register(holder)
        return holder.commands.get(name)

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


def main():
    cli()


if __name__ == "__main__":
    main()

"""The `yzt` command line. One module per command group (ingest.py: check and ingest; analyse.py;
indicators.py: indicators, selfeval, charts; raster.py; serve.py; demo.py), each defining its click commands at
module level; the options they share are declared once in options.py. A command's module is imported only when
it runs, so `yzt ingest` does not pay for the web stack. The work itself is done by services/jobs.

Errors derived from YztError become one line on stderr and exit code 2 — never a traceback.

A new command: a click command in the module of its group (or a new module), one line in COMMANDS.
"""

from __future__ import annotations

import importlib
import sys

import click

from layers.errors import YztError

# command name → "module:attribute" in services/cli
COMMANDS = {
    "demo": "demo:demo",
    "check": "ingest:check",
    "ingest": "ingest:ingest",
    "analyse": "analyse:analyse",
    "indicators": "indicators:indicators",
    "selfeval": "indicators:selfeval",
    "charts": "indicators:charts",
    "raster": "raster:raster",
    "serve": "serve:serve",
    "token": "token:token",
}


class YztGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        where = COMMANDS.get(name)
        if where is None:
            return None
        module, attribute = where.split(":")
        return getattr(importlib.import_module(f"services.cli.{module}"), attribute)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except YztError as exc:  # one line, whatever the message holds (a YAML error spans several)
            text = "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
            click.echo(f"yzt: error: {text}", err=True)
            sys.exit(2)


@click.group(cls=YztGroup)
@click.version_option(package_name="yizhangtu")
def cli():
    """yizhangtu (一张图): ingest a region's layers, pre-judge monitoring patches, compute indicators, serve."""


def main():
    cli()

"""`yzt serve --store STORE`: one FastAPI app (OGC API, patch workbench, 合规性审查, indicators, web page) on the
embedded GeoPackage store or on PostGIS alike, run by uvicorn."""

from __future__ import annotations

from pathlib import Path

import click

from .options import store_opt


@click.command("serve")
@store_opt
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--tokens-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="the tokens file written by `yzt token add` (re-read when it changes); merged with YZT_TOKENS")
@click.option("--base-url", default=None, help="public URL of the app root (default http://HOST:PORT)")
@click.option("--anonymous-read/--no-anonymous-read", default=None,
              help="open the read-only OGC API to callers without a token (default: YZT_ANONYMOUS_READ, on)")
@click.option("--evidence-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for uploaded evidence photos (default: YZT_EVIDENCE_DIR, out/evidence)")
@click.option("--manifest", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="region manifest whose rasters: section names the imagery served as tiles")
@click.option("--raster", "rasters", multiple=True, metavar="ROLE=PATH",
              help="a raster served as tiles: image_before, image_after, basemap (orthophoto mosaic), dem")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
def serve(store, host, port, tokens_file, base_url, anonymous_read, evidence_dir, manifest, rasters, log_level):
    """Serve STORE over HTTP: /ogc (OGC API Features), /api (workbench, review, indicators), / (the map).

    Settings not given here come from YZT_* environment variables (services/settings.py).
    """
    import uvicorn

    from layers.store import open_store

    from ..app import create_app
    from ..settings import Settings

    overrides = {"store": store, "base_url": base_url or f"http://{host}:{port}"}
    if tokens_file is not None:
        overrides["tokens_file"] = tokens_file
    if anonymous_read is not None:
        overrides["anonymous_read"] = anonymous_read
    if evidence_dir is not None:
        overrides["evidence_dir"] = evidence_dir
    if manifest is not None:
        overrides["manifest"] = manifest
    if rasters:
        pairs = {}
        for item in rasters:
            role, sep, path = item.partition("=")
            if not sep or not role or not path:
                raise click.BadParameter(f"{item!r}: give ROLE=PATH, e.g. basemap=ortho_2024.tif",
                                         param_hint="--raster")
            pairs[role.strip()] = Path(path)
        overrides["rasters"] = pairs
    settings = Settings(**overrides)
    from layers.store.province import RegionStore, is_region_store

    if is_region_store(settings.store):  # a province: its counties' layers as one set of collections
        with RegionStore(settings.store) as region:
            counties = region.counties()
        layers = sorted({name for c in counties for name in open_store(region.county_url(c)).layer_names()})
        click.echo(f"yzt serve: province of {len(counties)} counties; the workbench is scoped by each token's unit",
                   err=True)
    else:
        with open_store(settings.store) as s:  # fail now, in one line, if the store is unusable
            layers = s.layer_names()
    if not layers:
        click.echo(f"yzt serve: warning: store {store} holds no layers yet; run `yzt ingest` first", err=True)
    app = create_app(settings)
    click.echo(f"yzt serve: {len(layers)} layers from {store} at {settings.base_url} "
               f"(OGC API {settings.ogc_prefix}, map /, API reference /api.html)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)

"""The HTTP API under /api: one router per concern, each route with its response model (so /openapi.json is
true), the caller's role checked by a dependency (services/auth.py), every error from the one table in
services/errors.py.

- session.py     GET /api/me, /api/workflow
- patches.py     the patch workbench: list, detail, judgement, transition, evidence, export
- audit.py       the audit log and its hash-chain check
- review.py      合规性审查 of a GeoJSON site
- indicators.py  indicator values, drill-down, runs, the 绩效自评表
- config.py      what the web page needs to start

The map desk (docs/map.md) adds modules that install their routes with ``install(app, settings)``:

- rasters.py       imagery tiles (image_before / image_after / basemap) read by window from COG
- map.py           the map page's configuration (layers, 三调 colours, legend)
- glyphs.py        MapLibre glyph PBFs from the installed Noto CJK
- search.py        监测编号 / 图斑编号 / 宗地代码 / 村名 → zoom
- reports.py       核查表 PDFs per patch and per round
- review_files.py  合规性审查 of uploaded 界址点 files and zipped shapefiles, and its PDF
- exchange.py      flagged patches through an exchange field-mapping template
(tiles.py is the OGC API – Tiles part of /ogc, installed by services/ogc/app.py.)

A new router goes in its own module here and into ROUTERS; the jobs it calls live in services/jobs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

from fastapi import FastAPI

from analysis.workflow import load_workflow
from layers.errors import RuleError
from layers.store import open_store

from ..jobs.indicators import IndicatorDesk
from ..jobs.patches import PatchBook
from ..jobs.review import Reviewer
from ..jobs.workflow import AuditSeal, open_patch_workflow
from ..settings import Settings
from . import (
    audit,
    config,
    exchange,
    glyphs,
    indicators,
    openapi,
    patches,
    rasters,
    reports,
    review,
    review_files,
    search,
    session,
)
from . import map as map_page

LOGGER = logging.getLogger("yizhangtu.api")
ROUTERS = (session.router, patches.router, audit.router, review.router, indicators.router, config.router)
PROVINCE_ROUTERS = (session.router, patches.router, audit.router)
MAP_MODULES = (rasters, map_page, glyphs, search, reports, review_files, exchange)


def audit_seal(settings: Settings) -> AuditSeal:
    """The audit chain's key — settings.audit_key, else the file settings.audit_key_file, else
    ``<workdir>/audit.key`` (made on first use, readable by its owner only) — and the anchor file of its head
    beside the key file (``<workdir>/audit-anchor.json`` for a key given inline)."""
    if settings.audit_key is not None:
        key = settings.audit_key.get_secret_value().encode("utf-8")
        if len(key) < 16:
            raise RuleError("settings.audit_key is shorter than 16 characters; use a long random key, e.g. "
                            "python -c 'import secrets; print(secrets.token_hex(32))'")
        return AuditSeal(key, Path(settings.workdir) / "audit-anchor.json")
    path = Path(settings.audit_key_file or Path(settings.workdir) / "audit.key")
    if not path.exists():
        if settings.audit_key_file is not None:
            raise RuleError(f"audit key file {str(path)!r} does not exist; create it (e.g. python -c 'import "
                            f"secrets; print(secrets.token_hex(32))' > {path}; chmod 600 {path}) or unset "
                            "audit_key_file")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32) + "\n")
            LOGGER.warning("audit key created at %s: keep it (the audit chain cannot be verified without it) and "
                           "outside the store's folder; set YZT_AUDIT_KEY_FILE to use another", path)
    try:
        key = path.read_text(encoding="utf-8").strip().encode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleError(f"audit key file {str(path)!r} cannot be read: {exc}") from None
    if len(key) < 16:
        raise RuleError(f"audit key file {str(path)!r} holds fewer than 16 characters; put a long random key in it")
    return AuditSeal(key, path.with_name(path.stem + "-anchor.json"))


def install(app: FastAPI, settings: Settings) -> None:
    """Build the jobs the routes share (kept in ``app.state``, read by services/api/deps.py) and include every
    router."""
    from layers.store.province import is_region_store

    if is_region_store(settings.store):  # a province: the OGC collections span its counties; the workbench is
        from ..jobs.units import UnitBooks  # each county's own, scoped by the caller's unit

        app.state.patch_book = UnitBooks(settings.store, load_workflow(settings.workflow_file), audit_seal(settings))
        for router in PROVINCE_ROUTERS:  # 合规性审查, indicators and the map desk: on each county's own store
            app.include_router(router)
        return
    # each job its own store object: on PostGIS, its own connection
    book = PatchBook(open_patch_workflow(settings.store, load_workflow(settings.workflow_file), audit_seal(settings)))
    app.state.patch_book = book
    app.state.reviewer = Reviewer(open_store(settings.store), settings.review_rules_file, settings.rules_file)
    app.state.indicator_desk = IndicatorDesk(open_store(settings.store), settings.targets_dir)
    try:  # repair the layer mirror if a re-analysis raced with a change (no write when all agree)
        fixed = book.flow.sync_layer()
        if fixed:
            LOGGER.warning("workflow: %d flagged_patches rows re-synchronised from workflow_state", fixed)
    except Exception as exc:
        LOGGER.info("workflow: layer mirror not synchronised at start (%s)", exc)
    for router in ROUTERS:
        app.include_router(router)
    for module in MAP_MODULES:
        module.install(app, settings)
    openapi.install(app)

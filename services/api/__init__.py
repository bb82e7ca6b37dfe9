"""The HTTP API under /api: one router per concern, each route with its response model (so /openapi.json is
true), the caller's role checked by a dependency (services/auth.py), every error from the one table in
services/errors.py.

- session.py     GET /api/me, /api/workflow
- patches.py     the patch workbench: list, detail, judgement, transition, evidence, export
- audit.py       the audit log and its hash-chain check
- review.py      合规性审查 of a GeoJSON site
- indicators.py  indicator values, drill-down, runs, the 绩效自评表
- config.py      what the web page needs to start

A new router goes in its own module here and into ROUTERS; the jobs it calls live in services/jobs.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from analysis.workflow import load_workflow
from layers.store import open_store

from ..jobs.indicators import IndicatorDesk
from ..jobs.patches import PatchBook
from ..jobs.review import Reviewer
from ..jobs.workflow import open_patch_workflow
from ..settings import Settings
from . import audit, config, indicators, patches, review, session

LOGGER = logging.getLogger("yizhangtu.api")
ROUTERS = (session.router, patches.router, audit.router, review.router, indicators.router, config.router)


def install(app: FastAPI, settings: Settings) -> None:
    """Build the jobs the routes share (kept in ``app.state``, read by services/api/deps.py) and include every
    router."""
    # each job its own store object: on PostGIS, its own connection
    book = PatchBook(open_patch_workflow(settings.store, load_workflow(settings.workflow_file)))
    app.state.patch_book = book
    app.state.reviewer = Reviewer(open_store(settings.store), settings.review_rules_file, settings.rules_file)
    app.state.indicator_desk = IndicatorDesk(open_store(settings.store), settings.targets_dir)
    try:  # repair the layer mirror if a re-analysis raced with a change (no write when all agree)
        fixed = book.flow.sync_layer()
        if fixed:
            LOGGER.warning("workflow: %d flagged_patches rows re-synchronised from workflow_state", fixed)
    except Exception as exc:
        LOGGER.info("workflow: layer mirror not synchronised at start (%s)", exc)
    app.add_middleware(patches.UploadLimit, limit=settings.max_upload_bytes)
    for router in ROUTERS:
        app.include_router(router)

"""入库: check a region's manifest (质检, nothing written) or load its layers into a store (one atomic write)."""

from __future__ import annotations

from pathlib import Path

from layers.check import CheckReport, check_manifest
from layers.ingest import IngestResult, ingest
from layers.manifest import load_manifest
from layers.store import open_store


def check(manifest_path: str | Path) -> CheckReport:
    """The 入库质检 report of the manifest at ``manifest_path``; nothing is written."""
    return check_manifest(load_manifest(manifest_path))


def load(manifest_path: str | Path, store_target: str | Path, *, roles: list[str] | None = None,
         progress: bool = True, allow_empty: bool = False) -> IngestResult:
    """Load every layer (or only ``roles``) of the manifest into the store, in one atomic write: any error
    stops before anything is written and the store keeps its previous content. An empty layer does not
    replace a stored one that has features unless ``allow_empty``."""
    manifest = load_manifest(manifest_path)
    with open_store(store_target) as store:
        return ingest(manifest, store, roles=roles or None, progress=progress, allow_empty=allow_empty)

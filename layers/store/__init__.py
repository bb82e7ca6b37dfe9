"""Stores: the embedded GeoPackage (default) and PostGIS, behind one interface — the only code that knows how
a store is laid out (tables, ids, geometry columns, indexes, triggers) or writes SQL against it.

- :func:`open_store` → :class:`base.Store`: layers, plain tables, load records, region meta;
  filters for reads are built from :mod:`layers.store.query`.
- :func:`open_reader` → :class:`pages.PagedReader`: a page of a layer at a time, fast (the OGC API).
- :func:`open_workflow_tables` → :class:`workflow.WorkflowTables`: the enforcement workflow's state, audit and
  evidence tables, changed in transactions that hold the store's writer lock.

>>> open_store("out/sample/store.gpkg")                       # doctest: +SKIP
>>> open_store("postgresql://yzt@db:5432/gis?schema=yzt")     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoreError
from .base import Store

if TYPE_CHECKING:
    from .pages import PagedReader
    from .workflow import WorkflowTables

ACCEPTED = "a path ending in .gpkg (GeoPackage) or postgresql://user@host:port/database?schema=name (PostGIS)"


def open_store(target: str | Path | Store) -> Store:
    """Open (or prepare to create) the store at ``target``.

    - a filesystem path ending in ``.gpkg`` → GeoPackageStore (file and parent folder created on first write);
    - ``postgresql://…`` or ``postgres://…`` → PostGISStore (schema from ``?schema=``, default ``yzt``).
    Anything else raises StoreError naming the value and the accepted forms.
    """
    if isinstance(target, Store):
        return target
    if isinstance(target, Path):
        text = str(target)
    elif isinstance(target, str):
        text = target.strip()
    else:
        raise StoreError(f"store {target!r} is neither a path nor a URL; give {ACCEPTED}")
    if not text:
        raise StoreError(f"store location is empty; give {ACCEPTED}")
    lowered = text.lower()
    if lowered.startswith(("postgresql://", "postgres://")):
        from .postgis import PostGISStore

        return PostGISStore(text)
    if "://" in text:
        raise StoreError(f"store {text!r}: unsupported URL scheme; give {ACCEPTED}")
    if lowered.endswith(".gpkg"):
        from .gpkg import GeoPackageStore

        return GeoPackageStore(text)
    raise StoreError(f"store {text!r} is not a GeoPackage path or a PostGIS URL; give {ACCEPTED}")


def is_postgis(target: str | Path | Store) -> bool:
    """True for a PostGIS store URL (or store)."""
    if isinstance(target, Store):
        return target.url.lower().startswith(("postgresql://", "postgres://"))
    return str(target).strip().lower().startswith(("postgresql://", "postgres://"))


def open_reader(target: str | Path) -> PagedReader:
    """A paged reader of the store at ``target`` (it keeps connections open: one per store per process)."""
    open_store(target)  # the same checks and messages as open_store
    if is_postgis(target):
        from .postgis_pages import PostGISPages
        from .province import is_region_store

        if is_region_store(str(target).strip()):  # a province: every county's layers, in lon/lat
            from .province_pages import ProvincePages

            return ProvincePages(str(target).strip())

        return PostGISPages(str(target).strip())
    from .gpkg_pages import GeoPackagePages

    return GeoPackagePages(str(target))


def open_workflow_tables(target: str | Path | Store) -> WorkflowTables:
    """The workflow tables of the store at ``target``."""
    store = open_store(target)
    if is_postgis(store):
        from .postgis_workflow import PostGISWorkflowTables

        return PostGISWorkflowTables(store)  # type: ignore[arg-type]
    from .gpkg_workflow import GeoPackageWorkflowTables

    return GeoPackageWorkflowTables(store)


__all__ = ["ACCEPTED", "Store", "is_postgis", "open_reader", "open_store", "open_workflow_tables"]

"""Stores: the embedded GeoPackage (default) and PostGIS, behind one interface (see base.Store).

>>> open_store("out/sample/store.gpkg")                       # doctest: +SKIP
>>> open_store("postgresql://yzt@db:5432/gis?schema=yzt")     # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from ..errors import StoreError
from .base import Store

ACCEPTED = "a path ending in .gpkg (GeoPackage) or postgresql://user@host:port/database?schema=name (PostGIS)"


def open_store(target: str | Path) -> Store:
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


__all__ = ["open_store", "Store", "ACCEPTED"]

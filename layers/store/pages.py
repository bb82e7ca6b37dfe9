"""Paged reads of a store's layers, for request paths that need one page fast (the OGC API's items).

``Store.read_layer`` reads frames; a page needs less and sooner: the ids matching a spatial selection and a
filter in id order, an exact count of all matches, and a few rows — from connections kept open between
requests. :func:`layers.store.open_reader` gives the reader of a store (GeoPackage: gpkg_pages.py, PostGIS:
postgis_pages.py); both answer the same request with the same rows.

Selection by a SpatialSelection is exact: a row matches when its *geometry* intersects the polygon, not merely
its envelope.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..errors import NotFoundError, StoreError
from . import open_store
from .query import LayerInfo, Page, PageRequest


class PagedReader(ABC):
    """The layers of one store, read a page at a time. Thread-safe; one per store per process is enough."""

    dialect: str
    url: str
    storage_epsg: int
    meta: dict[str, str]
    layers: dict[str, LayerInfo]
    generation = 0  # +1 whenever the layers were read again: their set, columns, counts or extents may differ

    def __init__(self, url: str):
        self.url = url
        self.load_layers()

    def refresh(self) -> None:
        """Read the layers again if the store changed since they were read (cheap: call it per request)."""

    def load_layers(self) -> None:
        """Read the region meta and every layer's columns, type, row count and extent from the store."""
        self._load_layers()
        self.generation += 1

    def _load_layers(self) -> None:
        with open_store(self.url) as store:
            meta = store.meta()
            if not meta.get("epsg"):
                raise StoreError(f"store {self.url} has no EPSG in its meta: ingest a region first (yzt ingest)")
            self.storage_epsg = int(meta["epsg"])
            self.meta = meta
            self.layers = {
                name: LayerInfo(name=name, columns=dict(store.schema(name)), geometry_type=store.geometry_type(name),
                                total=int(store.count(name)), bounds=store.bounds(name))
                for name in store.layer_names()
            }

    def info(self, layer: str) -> LayerInfo:
        try:
            return self.layers[layer]
        except KeyError:
            raise NotFoundError(f"layer {layer!r} is not in store {self.url}; layers: "
                                f"{', '.join(sorted(self.layers)) or 'none'}") from None

    @abstractmethod
    def page(self, layer: str, request: PageRequest) -> Page:
        """One page of ``layer`` (see PageRequest)."""

    @abstractmethod
    def get(self, layer: str, row_id: int, columns: list[str], with_geometry: bool = True
            ) -> tuple[tuple, bytes | None] | None:
        """(attribute values in the order of ``columns``, WKB or None) of one row, None if there is no such row."""

    def close(self) -> None:
        pass


def order_by(sortby: list[tuple[str, str]], alias: str) -> str:
    """ORDER BY terms: the requested columns, then the row id (a stable order)."""
    from .base import quote_ident
    from .sql import PK

    parts = [f"{alias}.{quote_ident(name)} {'DESC' if order == '-' else 'ASC'}" for name, order in sortby]
    parts.append(f"{alias}.{PK} ASC")
    return ", ".join(parts)

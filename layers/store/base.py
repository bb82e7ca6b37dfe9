"""The interface every store implements.

A store holds, for one region, every layer in the region's CGCS2000 3° GK zone (unprefixed EPSG:4534–4554)
plus a load record per layer, plus plain tables (workflow, audit, indicator runs) written by later stages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import geopandas as gpd
import pandas as pd

from ..records import LoadRecord

META_TABLE = "yzt_meta"  # key/value: region_code, region_name, epsg, zone, created_at …
LOAD_TABLE = "yzt_load_records"  # one row per (load_id, layer); history kept


class Store(ABC):
    """A region's layers in one place. Writes of a batch of layers are atomic: all or nothing."""

    url: str

    # --- region metadata -------------------------------------------------------------------------
    @abstractmethod
    def meta(self) -> dict[str, str]:
        """Region metadata (region_code, region_name, epsg, zone, …); {} for a new store."""

    # --- layers ----------------------------------------------------------------------------------
    @abstractmethod
    def layer_names(self) -> list[str]:
        """Names of the spatial layers present."""

    @abstractmethod
    def read_layer(self, name: str, bbox: tuple[float, float, float, float] | None = None,
                   columns: list[str] | None = None, where: str | None = None) -> gpd.GeoDataFrame:
        """Read a layer in the store CRS; bbox is in the store CRS. Raises NotFoundError if absent."""

    @abstractmethod
    def write_layers(self, layers: Mapping[str, gpd.GeoDataFrame], records: list[LoadRecord],
                     meta: Mapping[str, str] | None = None) -> None:
        """Replace the given layers (and append their load records, update meta) atomically.

        On any failure, or interruption, the store is left exactly as before and readable.
        """

    @abstractmethod
    def load_records(self, layer: str | None = None) -> pd.DataFrame:
        """All load records (history), newest last; optionally for one layer."""

    # --- plain tables ----------------------------------------------------------------------------
    @abstractmethod
    def read_table(self, name: str) -> pd.DataFrame:
        """Read a non-spatial table. Raises NotFoundError if absent."""

    @abstractmethod
    def write_tables(self, tables: Mapping[str, pd.DataFrame]) -> None:
        """Replace the given non-spatial tables atomically."""

    def close(self) -> None:  # pragma: no cover - trivial default
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""Helpers the province tests send to dask workers (importable by the worker processes)."""

from __future__ import annotations

import os
import signal

from distributed import WorkerPlugin


class KillDuringWrite(WorkerPlugin):
    """Kill the worker process (SIGKILL) in the middle of a county's PostGIS write: after the first layer's old
    table was dropped and the new one renamed, inside the write's transaction — once, while ``marker`` exists."""

    name = "yzt-kill-during-write"

    def __init__(self, marker: str, schema: str):
        self.marker = marker
        self.schema = schema

    def setup(self, worker) -> None:
        from layers.store import postgis

        real = postgis.PostGISStore._swap
        marker, schema = self.marker, self.schema

        def swap(store, conn, tmp, name, entry):
            real(store, conn, tmp, name, entry)
            if store.schema_name != schema:
                return
            try:
                os.unlink(marker)
            except FileNotFoundError:
                return
            os.kill(os.getpid(), signal.SIGKILL)

        postgis.PostGISStore._swap = swap


class KillAfterStaging(WorkerPlugin):
    """Kill the worker process (SIGKILL) right after a layer task of a county's ingest committed its stage table
    and before it hands the table over — once, while ``marker`` exists: the table is in the database, and the
    process that was to publish it never hears of it."""

    name = "yzt-kill-after-staging"

    def __init__(self, marker: str, schema: str, role: str = "dltb"):
        self.marker = marker
        self.schema = schema
        self.role = role

    def setup(self, worker) -> None:
        from layers.store import postgis

        real = postgis._PostGISStaging.hand_over
        marker, schema, role = self.marker, self.schema, self.role

        def hand_over(staging):
            if staging.pg.schema_name == schema and any(name == role for _, name, _ in staging.staged):
                try:
                    os.unlink(marker)
                except FileNotFoundError:
                    return real(staging)
                os.kill(os.getpid(), signal.SIGKILL)
            return real(staging)

        postgis._PostGISStaging.hand_over = hand_over

"""入库: check a region's manifest (质检, nothing written) or load its layers into a store (one atomic write).

A large county on dask (``client`` and ``rows_per_partition`` given, a PostGIS store, more DLTB patches than
``rows_per_partition``): each layer is loaded, checked and staged by a task of its own on the cluster — the
same ``layers.ingest.load_and_stage`` the one-process ingest runs role after role — into the staging the
calling process holds open; the caller then publishes them all in its one transaction. Inside a survey layer
of more rows than ``rows_per_partition``, the geometry work that is local to a patch and its neighbours — the
ellipsoidal areas and GEOS's coverage validation — runs in spatial partitions of at most that many rows
(their count rounded up to a multiple of the cluster's threads), dealt to the layer task's worker and the idle
ones, a dask-geopandas GeoDataFrame on the same cluster (``PartitionedCoverage``). The layer task secedes
while the others' run, so its worker could start another task meanwhile: a survey layer's task therefore
holds the worker resource ``yzt-survey`` (one per worker: region_cluster's workers have it; `dask worker
--resources yzt-survey=1` for a cluster of one's own), and no worker ever holds two whole survey layers. On a cluster
whose workers do not all offer it, or of no more threads than the county has survey layers to load, each
survey layer is checked whole in its task.
The findings, the records and the stored rows are those of the one-process ingest
(tests/test_ingest_layer_tasks.py, tests/test_coverage_partitions.py, tests/test_region_province.py).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.check import CheckReport, check_manifest
from layers.errors import YztError
from layers.fields import SURVEY_ROLES
from layers.ingest import (
    IngestPlan,
    IngestResult,
    StagedLayer,
    ingest,
    ingest_result,
    load_and_stage,
    plan_ingest,
    publish_ingest,
)
from layers.manifest import Manifest, load_manifest
from layers.store import Store, is_postgis, open_store
from layers.topology import CORE, coverage_part, spatial_parts


def check(manifest_path: str | Path) -> CheckReport:
    """The 入库质检 report of the manifest at ``manifest_path``; nothing is written."""
    return check_manifest(load_manifest(manifest_path))


def load(manifest_path: str | Path, store_target: str | Path, *, roles: list[str] | None = None,
         progress: bool = True, allow_empty: bool = False, client=None,
         rows_per_partition: int | None = None) -> IngestResult:
    """Load every layer (or only ``roles``) of the manifest into the store, in one atomic write: any error
    stops before anything is written and the store keeps its previous content. An empty layer does not
    replace a stored one that has features unless ``allow_empty``.

    ``client`` (a dask Client, or ``distributed.worker_client`` in a county task) and ``rows_per_partition``:
    a county of more DLTB patches than that, in a PostGIS store, loads its layers on the cluster, one task
    per layer (module docstring); any other loads them here, one after the other."""
    manifest = load_manifest(manifest_path)
    with open_store(store_target) as store:
        rows = survey_rows(manifest) if client is not None and rows_per_partition else 0
        if rows_per_partition and rows > rows_per_partition:
            if not is_postgis(store):
                raise YztError(f"{store.url}: a county of {rows:,} DLTB patches loads its layers on several "
                               "workers only into a PostGIS store; ingest it without --partition-rows")
            return _load_on_cluster(manifest, store, str(store_target), client, roles, allow_empty, progress,
                                    rows_per_partition)
        return ingest(manifest, store, roles=roles or None, progress=progress, allow_empty=allow_empty)


def survey_rows(manifest: Manifest) -> int:
    """The DLTB patches of the manifest, counted from the sources' headers (nothing read)."""
    return _rows(manifest, "dltb")


def _rows(manifest: Manifest, role: str) -> int:
    """A role's features by its sources' headers; 0 for a source that cannot tell (its task will say why)."""
    from layers.read import source_info

    try:
        return sum(source_info(spec).count for spec in manifest.layers.get(role, []))
    except YztError:
        return 0


SURVEY_SLOT = "yzt-survey"  # dask worker resource: one survey layer task at a time on a worker


def slotted_threads(cluster) -> int:
    """The threads of ``cluster`` when every worker offers the ``SURVEY_SLOT`` resource, else 0: survey layers
    are checked in spatial partitions only when some thread is left beside the survey layers loading (module
    docstring)."""
    info = getattr(cluster, "scheduler_info", None)
    workers = info().get("workers", {}) if callable(info) else {}
    if not all((w.get("resources") or {}).get(SURVEY_SLOT, 0) >= 1 for w in workers.values()):
        return 0
    return sum(w.get("nthreads", 0) for w in workers.values())


def survey_parts(rows: int, rows_per_partition: int | None) -> int:
    """The spatial partitions of a survey layer's coverage checks: ⌈rows / rows_per_partition⌉ (1: whole)."""
    return max(1, -(-rows // rows_per_partition)) if rows_per_partition else 1


def _load_on_cluster(manifest: Manifest, store: Store, target: str, client, roles, allow_empty: bool,
                     progress: bool = False, rows_per_partition: int | None = None) -> IngestResult:
    """``target``: the store URL as given — with its password, which ``store.url`` leaves out and the workers
    need to connect."""
    from .partitions import client_context

    started = time.monotonic()
    plan = plan_ingest(manifest, store, roles or None, allow_empty)
    rows = {role: _rows(manifest, role) for role in plan.roles}
    with store.staged_layers(plan.meta) as staging:  # holds the staging's lock until it publishes or fails
        stage_id = staging.id
        with client_context(client) as cluster:
            # cells only where a thread is left beside the survey layers: on as many threads as survey layers,
            # each layer's task keeps its own worker busy, and the slot would only hold the other layers back
            split = slotted_threads(cluster) > sum(role in SURVEY_ROLES for role in plan.roles)
            # the largest layers first: dask starts tasks in the order they come, and a survey layer left for
            # last would run alone while the other workers idle
            futures = {}
            for role in sorted(plan.roles, key=lambda r: -rows[r]):
                survey = split and role in SURVEY_ROLES
                futures[role] = cluster.submit(
                    stage_role, plan, target, role, stage_id, survey_parts(rows[role], rows_per_partition)
                    if survey else 1, pure=False, resources={SURVEY_SLOT: 1} if survey else None,
                    key=f"yzt-ingest-{manifest.region_code}-{role}-{uuid.uuid4().hex[:8]}")
            try:
                if progress:
                    _progress(list(futures.values()), {f.key: r for r, f in futures.items()})
                staged: list[StagedLayer] = cluster.gather([futures[role] for role in plan.roles])  # role order
            except BaseException:
                cluster.cancel(list(futures.values()))  # a task still running finds the staging gone, drops its table
                raise
        for layer in staged:
            staging.adopt([layer.entry])
        t = time.monotonic()
        records, findings = publish_ingest(plan, staged, staging)
        write_seconds = sum(s.write_seconds for s in staged) + time.monotonic() - t
    return ingest_result(plan, store, staged, records, findings, time.monotonic() - started, write_seconds,
                         layer_tasks=len(staged))


def _progress(futures: list, roles: dict) -> None:
    """A bar on stderr over the layer tasks as they finish (a failed one ends it: gather raises its error)."""
    import sys

    from distributed import as_completed
    from tqdm import tqdm

    with tqdm(total=len(futures), unit="layer", desc="load on dask", file=sys.stderr, leave=False) as bar:
        for future in as_completed(futures):
            bar.set_postfix_str(roles.get(future.key, ""))
            bar.update()
            if future.status != "finished":
                return


def stage_role(plan: IngestPlan, store_url: str, role: str, stage_id: str, parts: int = 1) -> StagedLayer:
    """On a worker: load, check and stage one role into the staging ``stage_id`` and hand its table over.
    ``parts`` > 1: a survey layer's areas and coverage validation run in that many spatial partitions."""
    try:
        with open_store(store_url) as store, store.join_staging(plan.meta, stage_id) as staging:
            staged = load_and_stage(plan, role, store, staging,
                                    coverage_checks=PartitionedCoverage(parts) if parts > 1 else None)
            (staged.entry,) = staging.hand_over()
        return staged
    except YztError as exc:
        # the message is the whole story: the error travels without the chain behind it (a GDAL error in that
        # chain does not unpickle, and dask would then deliver a bare Exception in place of the YztError)
        exc.__context__ = exc.__cause__ = None
        raise


class PartitionedCoverage:
    """A survey layer's ellipsoidal areas and coverage validation in ``parts`` spatial partitions
    (layers.topology.spatial_parts: compact cells of about equal row counts, each with the rows around it that
    the validator compares its own with), those dealt to other workers as a dask-geopandas GeoDataFrame on the
    cluster the layer task runs on, each partition through layers.topology.coverage_part — the functions the
    whole layer goes through, so each row gets the same answer (``_on_cluster``). Called outside a dask
    worker (a stand-in client), the partitions run here, one after the other."""

    def __init__(self, parts: int):
        self.parts = parts

    def __call__(self, geoms: np.ndarray, epsg: int) -> tuple[np.ndarray, np.ndarray, int]:
        on_worker = _on_worker()
        parts = self.parts
        if on_worker:  # a multiple of the cluster's threads, so that each gets the same share
            from distributed import get_client

            threads = sum(w.get("nthreads", 1) for w in get_client().scheduler_info().get("workers", {}).values())
            parts = -(-parts // max(threads, 1)) * max(threads, 1)
        cut = spatial_parts(geoms, parts)
        crs = f"EPSG:{epsg}"
        frames = [gpd.GeoDataFrame({CORE: np.isin(p.rows, p.core), "geometry": geoms[p.rows]}, index=p.rows,
                                   geometry="geometry", crs=crs) for p in cut]
        if on_worker:
            result = self._on_cluster(frames, cut, crs)
        else:
            result = pd.concat([coverage_part(frame, crs) for frame in frames])
        result = result.sort_index()
        if not np.array_equal(result.index.to_numpy(), np.arange(len(geoms))):
            raise RuntimeError("the spatial partitions of a coverage check lost or repeated a row")
        return result["area"].to_numpy(dtype=float), result["invalid"].to_numpy(dtype=bool), len(cut)

    @staticmethod
    def _on_cluster(frames: list[gpd.GeoDataFrame], cut, crs: str) -> pd.DataFrame:
        """The partitions dealt round this worker and the workers with nothing to do; this worker's share in
        this task's own thread, the others' on theirs meanwhile; then the task secedes until they are done.
        A worker busy with a task (another survey layer's load) gets none: it would hold this layer's
        partitions beside its own, and this task would wait for it. With no worker idle, every partition runs
        here, one after the other — the whole layer's work, cut in cells."""
        import dask.dataframe as dd
        import dask_geopandas
        from distributed import get_client, get_worker, rejoin, secede

        client = get_client()
        here = get_worker().address
        ring = [here, *sorted(a for a, keys in client.processing().items() if a != here and not keys)]
        away = [i for i in range(len(frames)) if i % len(ring)]
        futures = []
        if away:
            # scattered from a task, the partitions stay on this worker: each is computed where it is dealt,
            # and its worker fetches it at once (work stealing alone moved them late and unevenly)
            layer = dask_geopandas.from_dask_dataframe(
                dd.from_delayed(client.scatter([frames[i] for i in away]), meta=frames[0].iloc[:0],
                                verify_meta=False))
            layer.spatial_partitions = gpd.GeoSeries([shapely.box(*cut[i].box) for i in away], crs=crs)
            meta = pd.DataFrame({"area": pd.Series(dtype=float), "invalid": pd.Series(dtype=bool)})
            parts = layer.map_partitions(coverage_part, crs, meta=meta).to_delayed()
            futures = [client.compute(part, workers=[ring[i % len(ring)]], allow_other_workers=True)
                       for i, part in zip(away, parts)]
        done = []
        for i in range(len(frames)):
            if i not in away:
                done.append(coverage_part(frames[i], crs))
            frames[i] = None  # let it go: a scattered one is the worker's now
        if futures:
            secede()
            try:
                done += client.gather(futures)
            finally:
                rejoin()
        return pd.concat(done)


def _on_worker() -> bool:
    try:
        from distributed import get_worker

        get_worker()
        return True
    except (ImportError, ValueError):
        return False

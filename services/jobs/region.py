"""Province runs: ingest, analyse and indicators for every county of a region set, county by county on
dask.distributed, then the 村 → 乡 → 县 → 市 → 省 roll-up.

    with region_cluster(workers=2) as client:                       # or scheduler="tcp://host:8786"
        result = ingest_region("DIR/region.yaml", "postgresql://…?schema=prov", client)
        result = analyse_region("postgresql://…?schema=prov", client)
        result, rollup = indicators_region("postgresql://…?schema=prov", client)

Each county is one dask task that calls the SAME function as the single-county command on the county's own
store (layers/store/province.py: schema ``<region schema>_<code>``): ``services.jobs.ingest.load``,
``services.jobs.analyse.run_analysis``, ``services.jobs.indicators.run_indicators``. So a county's records and
indicators are exactly what ``yzt ingest|analyse|indicators --store <county URL>`` gives. A county of more than
``rows_per_partition`` DLTB patches splits on the same cluster (its task secedes meanwhile): its ingest one task per
layer (services/jobs/ingest.py), its analysis and indicators in spatial partitions of whole 乡镇
(services/jobs/analyse_partitions.py, services/jobs/partitions.py).

Re-runs redo only what changed. Before it works, a task computes the county's input checksum for its stage:

- ingest: the county manifest's bytes, the SHA-256 of every source file, the yizhangtu version;
- analyse: the rules' SHA-256, the load id of every input layer in the county store, the version;
- indicators: the registry's SHA-256, the load id of every input layer (flagged_patches': the analysis run),
  the workflow columns of flagged_patches (status, judgement, version), the version;

and skips the county when the region's state table says that stage completed with the same checksum and the
county store still shows that stage's output (its last load id / analysis run / indicator run). The state row is
written after the county's own write committed, so a county killed in between is simply done again.

Failures: a county whose data is wrong (a YztError: a bad manifest, a damaged file) is reported with its
message and not retried (it would fail the same way); any other exception (a lost connection, a worker out of
memory) is retried ``retries`` times by dask; a worker that dies is replaced by its nanny and its county
rescheduled by the scheduler (``distributed.scheduler.allowed-failures``). Either way the other counties go
on, and each county's write is one transaction of its own store: a county is never half written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from layers.errors import NotFoundError, StoreError, YztError
from layers.region import RegionSet, load_region, manifest_checksum
from layers.store import open_store
from layers.store.province import RegionStore

STAGES = ("ingest", "analyse", "indicators")
DEFAULT_WORKERS = 2
DEFAULT_PARTITION_ROWS = 500_000  # a county of more DLTB patches is analysed and computes its indicators in
# spatial partitions
ROLLUP_RUNS, ROLLUP_VALUES, ROLLUP_WARNINGS = "rollup_runs", "rollup_values", "rollup_warnings"


def _version() -> str:
    from layers.load import package_version

    return package_version()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _sha(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\0")
    return digest.hexdigest()


# --- the cluster -----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def region_cluster(workers: int | None = None, scheduler: str | None = None, *, memory_limit: str | None = "4GiB",
                   dashboard: str = ":0", echo: Callable[[str], None] | None = None) -> Iterator:
    """A dask.distributed Client: on the running cluster at ``scheduler`` (tcp://host:8786), else on a
    LocalCluster of ``workers`` worker processes with one thread each (``memory_limit`` per worker: the nanny
    restarts a worker that goes past it, and its county is rescheduled). ``echo`` gets the dashboard address."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler is not None and workers is not None:
        raise YztError("give either --workers N (a local cluster) or --scheduler ADDRESS (a running one), not both")
    cluster = None
    try:
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout="20s")
            except OSError as exc:
                raise YztError(f"cannot reach the dask scheduler {scheduler}: {exc}; start it with "
                               "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1 "
                               "--resources yzt-survey=1`") from None
        else:
            from .ingest import SURVEY_SLOT

            cluster = LocalCluster(n_workers=workers or DEFAULT_WORKERS, threads_per_worker=1, processes=True,
                                   memory_limit=memory_limit, dashboard_address=dashboard,
                                   silence_logs=logging.ERROR, resources={SURVEY_SLOT: 1})
            client = Client(cluster)
    except ImportError as exc:  # pragma: no cover - a broken install
        raise YztError(f"dask.distributed is not installed ({exc}); run make setup") from None
    if echo is not None:
        from dask.utils import format_bytes

        workers_info = client.scheduler_info().get("workers", {})
        limits = {w.get("memory_limit") for w in workers_info.values()}
        memory = f"; {format_bytes(limits.pop())} per worker" if len(limits) == 1 and None not in limits else ""
        echo(f"dask: {len(workers_info)} worker(s) at {client.scheduler.address}{memory}; dashboard "
             f"{client.dashboard_link}")
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# --- one county, one stage (these run on the workers) ----------------------------------------------------------

@dataclass
class CountyOutcome:
    county: str
    stage: str
    status: str  # done | skipped | failed
    input_key: str | None = None
    output_id: str | None = None
    seconds: float = 0.0
    worker: str | None = None
    error: str | None = None
    summary: dict = field(default_factory=dict)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def _run_county(region_url: str, county: str, stage: str, key_of: Callable[[str], str],
                done_marker: Callable[[str], str | None], work: Callable[[str], tuple[str, dict]],
                force: bool) -> CountyOutcome:
    """The frame every county task shares: checksum, skip if done, work, record the state."""
    started, t0, worker = _now(), time.perf_counter(), _worker_name()
    with RegionStore(region_url) as region:
        url = region.county_url(county)
        try:
            key = key_of(url)
            previous = region.state_of(county, stage)
            if (not force and previous and previous["status"] == "done" and previous["input_key"] == key
                    and previous["output_id"] and done_marker(url) == previous["output_id"]):
                return CountyOutcome(county, stage, "skipped", key, previous["output_id"], 0.0, worker)
            output_id, summary = work(url)
        except YztError as exc:  # the county's data: reported, not retried
            region.record(county, stage, status="failed", error=str(exc), seconds=time.perf_counter() - t0,
                          worker=worker, started_at=started)
            return CountyOutcome(county, stage, "failed", None, None, time.perf_counter() - t0, worker, str(exc))
        except Exception as exc:  # anything else: recorded, then raised for dask to retry
            with contextlib.suppress(Exception):
                region.record(county, stage, status="failed", error=f"{type(exc).__name__}: {exc}",
                              seconds=time.perf_counter() - t0, worker=worker, started_at=started)
            raise
        seconds = time.perf_counter() - t0
        region.record(county, stage, status="done", input_key=key, output_id=output_id, seconds=seconds,
                      worker=worker, started_at=started)
        return CountyOutcome(county, stage, "done", key, output_id, seconds, worker, summary=summary)


def _store_meta(url: str, key: str) -> str | None:
    try:
        with open_store(url) as store:
            return store.meta().get(key)
    except YztError:
        return None


def ingest_county(region_url: str, county: str, manifest_path: str, force: bool = False,
                  rows_per_partition: int | None = DEFAULT_PARTITION_ROWS) -> CountyOutcome:
    """Ingest one county's manifest into its schema with services.jobs.ingest.load (the single-county path);
    a county of more than ``rows_per_partition`` DLTB patches loads its layers as tasks of their own on the
    same cluster (the county task secedes while they run, then publishes them in one transaction)."""
    from layers.manifest import load_manifest

    from .ingest import load

    def key_of(url: str) -> str:
        return manifest_checksum(load_manifest(manifest_path), _version())

    def work(url: str) -> tuple[str, dict]:
        if rows_per_partition and _worker_name() != "local":
            from distributed import worker_client

            result = load(manifest_path, url, progress=False, client=worker_client,
                          rows_per_partition=rows_per_partition)
        else:
            result = load(manifest_path, url, progress=False)
        with RegionStore(region_url) as region:
            from layers.crs import zone_of_gk_epsg

            zone = zone_of_gk_epsg(result.target_epsg)
            region.set_county_crs(county, result.target_epsg, zone[0] if zone else None)
        return result.load_id, {"epsg": result.target_epsg, "seconds": round(result.seconds, 2),
                                "write_seconds": round(result.write_seconds, 2), "layer_tasks": result.layer_tasks,
                                "coverage_partitions": {s.role: s.partitions for s in result.layers if s.partitions},
                                "rows": {s.role: s.rows_written for s in result.layers},
                                "warnings": sum(f.severity == "warning" for f in result.findings)}

    return _run_county(region_url, county, "ingest", key_of, lambda url: _store_meta(url, "last_load_id"), work,
                       force)


def _input_loads(url: str, layers) -> dict[str, str | None]:
    with open_store(url) as store:
        try:
            records = store.load_records()
        except NotFoundError:
            return {}
    out: dict[str, str | None] = {}
    for name in layers:
        rows = records[records["layer"] == name] if len(records) else records
        if len(rows):
            out[name] = str(rows["load_id"].iloc[-1])
    return out


def analyse_county(region_url: str, county: str, rules_path: str | None = None, force: bool = False,
                   threads: int = 1, rows_per_partition: int | None = DEFAULT_PARTITION_ROWS) -> CountyOutcome:
    """Analyse one county with services.jobs.analyse.run_analysis (the single-county path); a county of more
    than ``rows_per_partition`` DLTB patches reads its survey layers in spatial partitions on the same cluster
    (services/jobs/analyse_partitions.py: the county task secedes while its partitions run)."""
    from analysis.rules import load_rules

    from .analyse import READ_COLUMNS, run_analysis

    rules = load_rules(rules_path)

    def key_of(url: str) -> str:
        loads = _input_loads(url, READ_COLUMNS)
        if "dltb" not in loads:
            raise NotFoundError(f"county {county} has no dltb layer; ingest the region first")
        return _sha("analyse", rules.sha256(), loads, _version())

    def work(url: str) -> tuple[str, dict]:
        if rows_per_partition and _worker_name() != "local":
            from distributed import worker_client

            # as indicators_county: the task secedes only when its county is split
            result = run_analysis(url, rules, rules_path=rules_path, workers=threads, client=worker_client,
                                  rows_per_partition=rows_per_partition)
        else:
            result = run_analysis(url, rules, rules_path=rules_path, workers=threads)
        return result.run_id, {"seconds": result.seconds, "timings": result.timings,
                               "flagged_patches": len(result.flagged), "planning_conflicts": len(result.conflicts),
                               "partitions": result.partitions["count"]}

    return _run_county(region_url, county, "analyse", key_of, lambda url: _store_meta(url, "analysis_run_id"),
                       work, force)


def _workflow_digest(url: str) -> str:
    """The columns the enforcement workflow changes on flagged_patches (a judgement changes indicators)."""
    with open_store(url) as store:
        if "flagged_patches" not in store.layer_names():
            return ""
        cols = [c for c in ("JCBH", "status", "judgement", "version") if c in store.schema("flagged_patches")]
        frame = pd.DataFrame(store.read_layer("flagged_patches", columns=cols)).drop(columns="geometry")
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


def _latest_indicator_run(url: str) -> str | None:
    from .indicators import RUNS

    try:
        with open_store(url) as store:
            runs = store.read_table(RUNS, columns=["run_id"])
    except YztError:
        return None
    return None if len(runs) == 0 else str(runs["run_id"].iloc[-1])


def indicators_county(region_url: str, county: str, registry_path: str | None = None,
                      force: bool = False, rows_per_partition: int | None = DEFAULT_PARTITION_ROWS) -> CountyOutcome:
    """Compute and store one county's indicator run with services.jobs.indicators.run_indicators; a county of
    more than ``rows_per_partition`` DLTB patches in spatial partitions on the same cluster
    (services/jobs/partitions.py: the county task secedes while its partitions run)."""
    from .indicators import _needed_layers, load_registry, run_indicators

    registry, sha = load_registry(registry_path)
    layers = sorted(_needed_layers(registry))

    def key_of(url: str) -> str:
        return _sha("indicators", sha, _input_loads(url, layers), _workflow_digest(url), _version())

    def work(url: str) -> tuple[str, dict]:
        if rows_per_partition and _worker_name() != "local":
            from distributed import worker_client

            # the task secedes (worker_client) only when the county is split: a county computed whole keeps its
            # thread, so a worker never runs more counties at once than it has threads
            run = run_indicators(url, registry_path, client=worker_client, rows_per_partition=rows_per_partition)
        else:
            run = run_indicators(url, registry_path)
        return run.run_id, {"indicators": int(run.values["indicator"].nunique()),
                            "units": int(run.values["unit_code"].nunique()), "warnings": len(run.warnings),
                            "partitions": json.loads(run.meta["partitions"])["count"]}

    return _run_county(region_url, county, "indicators", key_of, _latest_indicator_run, work, force)


# --- the whole province ------------------------------------------------------------------------------------------

@dataclass
class RegionRunResult:
    run_id: str
    stage: str
    store: str
    started_at: str
    seconds: float
    outcomes: list[CountyOutcome]
    dashboard: str | None = None

    @property
    def failed(self) -> list[CountyOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def counts(self) -> dict[str, int]:
        return {s: sum(o.status == s for o in self.outcomes) for s in ("done", "skipped", "failed")}

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, "stage": self.stage, "store": self.store, "started_at": self.started_at,
                "seconds": round(self.seconds, 2), "counts": self.counts(), "dashboard": self.dashboard,
                "counties": [asdict(o) for o in self.outcomes]}

    def to_text(self) -> str:
        c = self.counts()
        lines = [f"{self.stage} {self.store}: {len(self.outcomes)} counties — {c['done']} done, {c['skipped']} "
                 f"unchanged (skipped), {c['failed']} failed — {self.seconds:.1f} s (run {self.run_id})"]
        for o in sorted(self.outcomes, key=lambda o: o.county):
            detail = o.error if o.status == "failed" else (o.output_id or "")
            lines.append(f"  {o.county}  {o.status:<8} {o.seconds:>8.1f} s  {o.worker or '':<22} {detail}")
        if self.failed:
            lines.append(f"{len(self.failed)} county(ies) failed; fix them and run the command again: the others "
                         "are kept and skipped")
        return "\n".join(lines)


def whole_county_slots(client, counties, rows_per_partition: int | None) -> dict[str, dict[str, int]]:
    """The worker resource each county's ingest task holds: ``yzt-survey`` for a county that loads whole on its
    worker (no more DLTB patches than ``rows_per_partition``), when the cluster checks survey layers in spatial
    partitions. A large county's survey layer tasks hold the slot while they wait seceded; a whole county
    loads survey layers too, so it may not start beside one of them on the same worker."""
    from layers.fields import SURVEY_ROLES
    from layers.manifest import load_manifest

    from .ingest import SURVEY_SLOT, slotted_threads, survey_rows

    if not rows_per_partition or slotted_threads(client) <= len(SURVEY_ROLES):  # no large county checks in cells
        return {}
    slots = {}
    for c in counties:
        try:
            whole = survey_rows(load_manifest(c.manifest_path)) <= rows_per_partition
        except YztError:  # its task reports the manifest's error
            whole = False
        if whole:
            slots[c.code] = {SURVEY_SLOT: 1}
    return slots


def _submit_all(client, stage: str, tasks: list[tuple[str, Callable, tuple]], retries: int,
                progress: bool, resources: dict[str, dict[str, int]] | None = None) -> list[CountyOutcome]:
    """Submit one task per county, collect as they finish (a progress bar on stderr), never stop at a failure.
    ``resources``: the worker resources a county's task holds, by county code."""
    from distributed import as_completed

    futures = {}
    for county, fn, args in tasks:
        future = client.submit(fn, *args, key=f"yzt-{stage}-{county}-{uuid.uuid4().hex[:8]}", pure=False,
                               retries=retries, resources=(resources or {}).get(county))
        futures[future] = county
    outcomes: list[CountyOutcome] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(futures), unit="county", desc=stage, file=sys.stderr)
    try:
        for future in as_completed(list(futures)):
            county = futures[future]
            if future.status == "finished":
                outcome = future.result()
            else:  # retries used up, or the worker running it died too often (KilledWorker)
                exc = future.exception()
                outcome = CountyOutcome(county, stage, "failed", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(Exception), RegionStore(tasks[0][2][0]) as region:
                    region.record(county, stage, status="failed", error=outcome.error)
            outcomes.append(outcome)
            if bar is not None:
                bar.set_postfix_str(f"{county} {outcome.status}")
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    return outcomes


def _finish(region: RegionStore, stage: str, started: str, t0: float, outcomes, client) -> RegionRunResult:
    result = RegionRunResult(uuid.uuid4().hex, stage, region.url, started, time.perf_counter() - t0, outcomes,
                             dashboard=getattr(client, "dashboard_link", None))
    region.add_run(result.run_id, stage, started, {"seconds": round(result.seconds, 2), "counts": result.counts(),
                                                   "counties": [asdict(o) for o in outcomes]})
    return result


def ingest_region(region_path: str | Path, store_url: str, client, *, force: bool = False, retries: int = 2,
                  progress: bool = True, only: list[str] | None = None,
                  rows_per_partition: int | None = DEFAULT_PARTITION_ROWS) -> RegionRunResult:
    """Register the region set in the province store and ingest every county (or ``only`` these); a county of
    more than ``rows_per_partition`` DLTB patches loads its layers on several workers."""
    region_set: RegionSet = load_region(region_path)
    region = RegionStore(store_url)
    units = region_set.units()
    for u in units:
        if u["level"] == "county":
            u["manifest"] = str(region_set.county(u["code"]).manifest_path)
    region.register(region_set.code, region_set.name, region_set.level, units, str(region_set.path))
    started, t0 = _now(), time.perf_counter()
    counties = [c for c in region_set.counties if only is None or c.code in only]
    tasks = [(c.code, ingest_county, (store_url, c.code, str(c.manifest_path), force, rows_per_partition))
             for c in counties]
    outcomes = _submit_all(client, "ingest", tasks, retries, progress,
                           resources=whole_county_slots(client, counties, rows_per_partition))
    try:
        return _finish(region, "ingest", started, t0, outcomes, client)
    finally:
        region.close()


def analyse_region(store_url: str, client, *, rules_path: str | Path | None = None, force: bool = False,
                   retries: int = 2, progress: bool = True,
                   rows_per_partition: int | None = DEFAULT_PARTITION_ROWS) -> RegionRunResult:
    with RegionStore(store_url) as region:
        counties = region.counties()
        started, t0 = _now(), time.perf_counter()
        rules = str(rules_path) if rules_path is not None else None
        tasks = [(c, analyse_county, (store_url, c, rules, force, 1, rows_per_partition)) for c in counties]
        outcomes = _submit_all(client, "analyse", tasks, retries, progress)
        return _finish(region, "analyse", started, t0, outcomes, client)


@dataclass
class RollupRun:
    """A province roll-up, shaped like an indicator run (services/jobs/indicators.IndicatorRun) so the same
    reports export it; ``values`` hold every level from 省 to 村."""

    run_id: str
    meta: dict
    values: pd.DataFrame
    warnings: pd.DataFrame
    registry: object | None = None
    levels: tuple[str, ...] = ("province", "city", "county", "township", "village")


def indicators_region(store_url: str, client, *, registry_path: str | Path | None = None, force: bool = False,
                      retries: int = 2, progress: bool = True,
                      rows_per_partition: int | None = DEFAULT_PARTITION_ROWS
                      ) -> tuple[RegionRunResult, RollupRun | None]:
    """Each county's indicator run (computed where its inputs changed), then the roll-up to 市 and 省, stored in
    the region schema. No roll-up while a county has no run (it is reported failed)."""
    with RegionStore(store_url) as region:
        counties = region.counties()
        started, t0 = _now(), time.perf_counter()
        registry = str(registry_path) if registry_path is not None else None
        tasks = [(c, indicators_county, (store_url, c, registry, force, rows_per_partition)) for c in counties]
        outcomes = _submit_all(client, "indicators", tasks, retries, progress)
        result = _finish(region, "indicators", started, t0, outcomes, client)
        if result.failed:
            return result, None
        rollup = rollup_region(region, {o.county: o.output_id for o in outcomes}, registry_path, result.run_id)
        return result, rollup


def rollup_region(region: RegionStore, county_runs: dict[str, str | None], registry_path, region_run_id: str
                  ) -> RollupRun:
    """Read each county's run (unrounded values), roll up to 市 and 省 with 强制调平, store and return it."""
    from analysis.rollup import rollup_indicators

    from .indicators import VALUES, load_registry

    started = _now()
    registry, sha = load_registry(registry_path)
    columns = ["run_id", "indicator", "level", "unit_code", "unit_name", "parent_code", "value", "unit",
               "record_count"]
    frames = {}
    for county, run_id in sorted(county_runs.items()):
        if run_id is None:
            raise StoreError(f"county {county} has no indicator run; run yzt indicators on the province again")
        with open_store(region.county_url(county)) as store:
            from layers.store.query import Compare

            frames[county] = store.read_table(VALUES, columns=columns, where=Compare("run_id", "=", run_id))
    units = region.units()
    result = rollup_indicators(frames, units[["code", "name", "level", "parent_code"]], registry)
    run_id = uuid.uuid4().hex
    meta = {"run_id": run_id, "started_at": started, "finished_at": _now(),
            "region_code": region.meta().get("region_code"),
            "registry_path": str(registry_path or "builtin"), "registry_sha256": sha,
            "registry": json.dumps(registry.document, ensure_ascii=False, sort_keys=True, default=str),
            "county_runs": json.dumps(county_runs, sort_keys=True), "region_run_id": region_run_id,
            "skipped": json.dumps(result.skipped, ensure_ascii=False, sort_keys=True),
            "notes": json.dumps(result.notes, ensure_ascii=False), "version": _version()}
    values = result.values.copy()
    values.insert(0, "run_id", run_id)
    warnings = result.warnings.copy()
    warnings.insert(0, "run_id", run_id)
    _save_rollup(region, meta, values, warnings)
    return RollupRun(run_id, meta, values, warnings, registry)


def _rollup_store(region: RegionStore):
    return open_store(region._target)


def _save_rollup(region: RegionStore, meta: dict, values: pd.DataFrame, warnings: pd.DataFrame) -> None:
    stored = values.copy()
    stored["record_ids"] = [json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in stored["record_ids"]]
    stored["sources"] = [json.dumps(list(v), ensure_ascii=False) for v in stored["sources"]]
    for col in ("value", "value_m2", "value_ha", "value_mu", "value_rounded"):
        stored[col] = pd.to_numeric(stored[col], errors="coerce").astype(float)
    stored["parent_code"] = stored["parent_code"].astype(object).where(stored["parent_code"].notna(), None)
    with _rollup_store(region) as store:
        def append(name, frame):
            try:
                old = store.read_table(name)
            except NotFoundError:
                return frame
            return frame if len(old) == 0 else pd.concat([old, frame], ignore_index=True)

        store.write_tables({ROLLUP_RUNS: append(ROLLUP_RUNS, pd.DataFrame([meta])),
                            ROLLUP_VALUES: append(ROLLUP_VALUES, stored),
                            ROLLUP_WARNINGS: append(ROLLUP_WARNINGS, warnings.astype(
                                {"value": float, "threshold": float}) if len(warnings) else warnings)})


def load_rollup(store_url: str, run_id: str | None = None) -> RollupRun:
    """A stored roll-up (the latest when ``run_id`` is None)."""
    from analysis.indicators import parse_registry

    with RegionStore(store_url) as region:
        region.require()
        store = _rollup_store(region)
    with store:
        try:
            runs = store.read_table(ROLLUP_RUNS)
        except NotFoundError:
            raise NotFoundError(f"province store {store.url} holds no roll-up yet; run yzt indicators --store …"
                                ) from None
        hit = runs if run_id is None else runs[runs["run_id"] == run_id]
        if len(hit) == 0:
            raise NotFoundError(f"roll-up {run_id!r} is not in {store.url}")
        meta = hit.iloc[-1].to_dict()
        values = store.read_table(ROLLUP_VALUES)
        values = values[values["run_id"] == meta["run_id"]].reset_index(drop=True)
        try:
            warnings = store.read_table(ROLLUP_WARNINGS)
            warnings = warnings[warnings["run_id"] == meta["run_id"]].reset_index(drop=True)
        except NotFoundError:
            warnings = pd.DataFrame()
    values["record_ids"] = [json.loads(v) if isinstance(v, str) else {} for v in values["record_ids"]]
    values["sources"] = [json.loads(v) if isinstance(v, str) else [] for v in values["sources"]]
    return RollupRun(meta["run_id"], meta, values, warnings, parse_registry(json.loads(meta["registry"])))


def region_drill_down(store_url: str, indicator: str, unit_code: str, run_id: str | None = None) -> dict:
    """What makes a province number: above the county, the children (市 / 县) with their values and the county
    runs behind them; at a county and below, the county run's own drill-down (the records' ids)."""
    from .indicators import drill_down

    run = load_rollup(store_url, run_id)
    v = run.values
    hit = v[(v["indicator"] == indicator) & (v["unit_code"] == str(unit_code))]
    if len(hit) == 0:
        raise NotFoundError(f"roll-up {run.run_id} has no value of {indicator!r} for unit {unit_code!r}")
    row = hit.iloc[0]
    county_runs = json.loads(run.meta["county_runs"])
    out = {"run_id": run.run_id, "indicator": indicator, "unit_code": str(unit_code), "level": row["level"],
           "value": row["value"], "value_rounded": row["value_rounded"], "unit": row["unit"], "rule": row["rule"]}
    if row["level"] in ("province", "city"):
        kids = v[(v["indicator"] == indicator) & (v["parent_code"] == str(unit_code))]
        out["children"] = [{"unit_code": k["unit_code"], "unit_name": k["unit_name"], "level": k["level"],
                            "value": k["value"], "value_rounded": k["value_rounded"]} for _, k in kids.iterrows()]
        out["county_runs"] = {c: r for c, r in county_runs.items() if c.startswith(_prefix(str(unit_code)))}
        return out
    county = str(unit_code)[:6]
    with RegionStore(store_url) as region:
        url = region.county_url(county)
    inner = drill_down(url, indicator, str(unit_code), county_runs[county])
    out.update(county=county, county_run_id=inner["run_id"], record_ids=inner["record_ids"])
    return out


def _prefix(code: str) -> str:
    """The code prefix shared by a unit's counties: 省 XX0000 → XX, 市 XXXX00 → XXXX, 县 → itself."""
    if code.endswith("0000"):
        return code[:2]
    if code.endswith("00"):
        return code[:4]
    return code


def unit_prefix(code: str | None) -> str:
    """Public: the 行政区代码 prefix a unit covers ('' for None: everything)."""
    return "" if not code else _prefix(str(code)[:6]) + str(code)[6:]

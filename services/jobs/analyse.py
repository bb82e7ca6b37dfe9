"""`yzt analyse`: read a region's layers from the store, pre-judge the monitoring patches, find the planning
conflicts, and write flagged_patches, planning_conflicts and one analysis_runs row.

Order of work:
1. read the layers (only the columns the rules need) and the newest load id of each;
2. change patches from dltb_prev → dltb (when both exist and change_patches.enabled);
3. dedupe monitoring patches + change patches (one ground change, one record);
4. judge each ground change; keep the workflow columns (status, judgement, version …) of records judged
   before, matched by JCBH or a shared source id;
5. planning conflicts, each named by its stable conflict_id (analysis.conflicts.conflict_ids);
6. write flagged_patches + planning_conflicts, their load records (load_id = the run id), the run id / rules
   checksum in the store meta and the run appended to analysis_runs in ONE atomic write_layers call: a kill at
   any point leaves the previous run whole.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from analysis.changes import derive_change_patches, duplicate_mask, geometry_keys
from analysis.codeset import crosswalk_label, to_rule_codes
from analysis.conflicts import CONFLICT_COLUMNS, KINDS, find_conflicts
from analysis.cover import villages_of
from analysis.dedupe import DedupeReport, dedupe_patches
from analysis.judge import judge_patches
from analysis.landuse import unclassified_patches
from analysis.records import VERDICT_ZH, carry_over_status, round_areas
from analysis.rules import DEFAULT_RULES_PATH, Rules, load_rules
from layers.errors import NotFoundError
from layers.records import LoadRecord
from layers.store import open_store
from layers.store.base import Store

RUNS_TABLE = "analysis_runs"
SURVEY_LAYERS = ("dltb", "dltb_prev")
FLAGGED, CONFLICTS = "flagged_patches", "planning_conflicts"

# Columns read per layer (those present in the store are read; geometry always comes along).
READ_COLUMNS = {
    "dltb": ["BSM", "DLBM", "ZLDWDM", "KCXS", "SJNF"],
    "dltb_prev": ["BSM", "DLBM", "ZLDWDM", "KCXS", "SJNF"],
    "monitoring": ["JCBH", "SOURCE", "ROUND", "QSX", "HSX", "XZQDM", "TBLX", "SQJCBH"],
    "approvals": ["PZWH", "DZJGH", "PZLX", "PZRQ"],
    "parcels": ["ZDDM", "TDYT", "GDRQ", "JGRQ"],
    "yjjbnt": ["BSM"],
    "stbhhx": ["BSM"],
    "czkfbj": ["BSM"],
    "ghfq": ["BSM", "GHFQDM"],
    "xzq": ["XZQDM", "XZQJB"],
}


@dataclass
class AnalysisResult:
    run_id: str
    started_at: str
    finished_at: str
    store_url: str
    rules_path: str
    rules_sha256: str
    flagged: gpd.GeoDataFrame
    conflicts: gpd.GeoDataFrame
    dedupe: DedupeReport
    n_monitoring: int
    n_change_patches: int
    carried_over: int
    skipped: dict[str, str]
    input_load_ids: dict[str, str | None]
    seconds: float
    cpu_timings: dict[str, float] = field(default_factory=dict)
    duplicates_ignored: dict[str, list[str]] = field(default_factory=dict)
    unclassified: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    code_sets: dict[str, str | None] = field(default_factory=dict)  # land-use code set per survey layer
    crosswalk: str | None = None  # the 用地用海 → 三调 crosswalk used, when a layer needed it
    partitions: dict = field(default_factory=dict)  # count, why, and each partition's 乡镇 and DLTB rows

    def counts(self) -> dict:
        verdicts = self.flagged["verdict"].value_counts().to_dict() if len(self.flagged) else {}
        kinds = {}
        if len(self.conflicts):
            grouped = self.conflicts.groupby("kind")["area_m2"].agg(["count", "sum"])
            kinds = {k: {"count": int(r["count"]), "area_m2": round(float(r["sum"]), 2)}
                     for k, r in grouped.iterrows()}
        return {
            "monitoring_patches": self.n_monitoring,
            "change_patches": self.n_change_patches,
            "dedupe_input": self.dedupe.n_input,
            "flagged_patches": len(self.flagged),
            "merged": self.dedupe.n_merged,
            "merged_groups": len(self.dedupe.groups),
            "by_verdict": {v: int(verdicts.get(v, 0)) for v in VERDICT_ZH},
            "status_carried_over": self.carried_over,
            "planning_conflicts": len(self.conflicts),
            "conflicts_by_kind": {k: kinds.get(k, {"count": 0, "area_m2": 0.0}) for k in KINDS},
            "conflicts_not_checked": self.skipped,
            "duplicate_patches_ignored": self.duplicates_ignored,
            "unclassified_codes": self.unclassified,
            "survey_pieces": self.dedupe.n_pieces,
            "code_sets": self.code_sets,
            "crosswalk": self.crosswalk,
            "partitions": self.partitions,
        }


def _read(store: Store, name: str, present: set[str]) -> gpd.GeoDataFrame | None:
    if name not in present:
        return None
    available = set(store.schema(name))
    columns = [c for c in READ_COLUMNS[name] if c in available]
    return store.read_layer(name, columns=columns)


def _read_all(store: Store, present: set[str], workers: int) -> dict[str, gpd.GeoDataFrame | None]:
    """Every layer of READ_COLUMNS, read by ``workers`` threads (decoding WKB and Arrow releases the GIL: the
    two 300 000-patch surveys load side by side), largest layers first."""
    from concurrent.futures import ThreadPoolExecutor

    order = sorted(READ_COLUMNS, key=lambda n: n not in ("dltb", "dltb_prev"))
    if workers <= 1:
        return {name: _read(store, name, present) for name in READ_COLUMNS}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="yzt-read") as pool:
        futures = {name: pool.submit(_read, store, name, present) for name in order}
        return {name: futures[name].result() for name in READ_COLUMNS}


def _latest_load_ids(store: Store, names, column: str = "load_id") -> dict[str, str | None]:
    """The newest load record's ``column`` per layer name (load_id, code_set …)."""
    try:
        records = store.load_records()
    except NotFoundError:
        return {}
    out = {}
    if len(records) and "layer" in records.columns and column in records.columns:
        for name in names:
            rows = records[records["layer"] == name]
            if len(rows):
                value = rows[column].iloc[-1]
                out[name] = None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run_analysis(store_target, rules: Rules | None = None, *, rules_path: str | Path | None = None,
                 workers: int = 2, write: bool = True, client=None,
                 rows_per_partition: int | None = None) -> AnalysisResult:
    """Run the whole analysis on the store at ``store_target`` (path / URL / Store) and write the results.

    ``rules``: already loaded rules, else loaded from ``rules_path`` (None → the packaged default).

    With a dask ``client`` and ``rows_per_partition``, a county of more DLTB patches than that reads its
    survey layers in spatial partitions on the cluster (services/jobs/analyse_partitions.py) — the same
    records as the whole county; the run records the partitions (or why it ran whole). ``client`` may be a
    function returning a context that yields one (``distributed.worker_client``): it is entered only when
    the plan has partitions.
    """
    t0 = time.perf_counter()
    started = _now()
    timings: dict[str, float] = {}
    cpu_timings: dict[str, float] = {}
    mark = [t0, time.process_time()]

    def lap(name):  # wall and CPU seconds (all threads) per stage
        now, cpu = time.perf_counter(), time.process_time()
        timings[name] = round(now - mark[0], 3)
        cpu_timings[name] = round(cpu - mark[1], 3)
        mark[0], mark[1] = now, cpu

    if rules is None:
        rules = load_rules(rules_path)
    rules_label = str(rules_path) if rules_path is not None else str(DEFAULT_RULES_PATH)
    run_id = uuid.uuid4().hex
    store = open_store(store_target)
    present = set(store.layer_names())
    if "dltb" not in present:
        raise NotFoundError(f"store {store.url} has no dltb layer (地类图斑); ingest the region first: "
                            "yzt ingest MANIFEST --store STORE")
    plan: list = []
    why = "whole county (no partitioning asked)"
    if client is not None and rows_per_partition:
        from .analyse_partitions import plan_analysis

        plan, why = plan_analysis(store, rows_per_partition, present)
    code_sets = dict(_latest_load_ids(store, ["dltb", "dltb_prev"], "code_set"))
    survey = None  # the survey layers' share of the work, when it was done in partitions
    if plan:
        layers = _read_all(store, present - set(SURVEY_LAYERS), workers)
        crs = store.read_layer("dltb", limit=0, columns=[]).crs
        lap("read")
        survey = _in_partitions(store, plan, rules, code_sets, client, crs)
        ignored, unclassified = survey.ignored, survey.unclassified
        keys: dict[str, np.ndarray] = {}
        lap("partitions")
    else:
        layers = _read_all(store, present, workers)
        keys, ignored = _survey_ready(layers, code_sets)
        unclassified = {name: found for name in SURVEY_LAYERS
                        if (found := unclassified_patches(layers[name], rules, name))}
        assert layers["dltb"] is not None  # present, checked above
        crs = layers["dltb"].crs
    monitoring = layers["monitoring"]
    villages = villages_of(layers["xzq"])
    input_ids = _latest_load_ids(store, [n for n in READ_COLUMNS if n in present])
    old_flagged = store.read_layer(FLAGGED) if FLAGGED in present else None
    if survey is None:
        lap("read")

    # 1. the ground changes: monitoring patches + change patches of the survey ---------------------------
    parts = []
    n_monitoring = 0
    if monitoring is not None and len(monitoring):
        n_monitoring = len(monitoring)
        parts.append(monitoring.drop(columns=[c for c in ("yzt_fid", "area_m2") if c in monitoring.columns])
                     .assign(derived=False))
    n_changes = 0
    changes = None
    if survey is not None:
        changes = survey.changes
    elif layers["dltb_prev"] is not None and rules.changes_enabled:
        changes = derive_change_patches(layers["dltb_prev"], layers["dltb"], rules, workers=workers,
                                        prev_keys=keys.get("dltb_prev"), curr_keys=keys.get("dltb"))
    if changes is not None and len(changes):
        n_changes = len(changes)
        parts.append(changes[["JCBH", "SOURCE", "ROUND", "HSX", "XZQDM", "TBLX", "derived", "geometry"]])
    lap("changes")
    if parts:
        patches = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=crs)
    else:
        patches = gpd.GeoDataFrame({"JCBH": []}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    merged, report = dedupe_patches(patches, min_overlap_ratio=rules.dedupe_min_overlap_ratio,
                                    source_order=rules.source_order, geometry=rules.dedupe_geometry,
                                    site_min_shared_edge_m=rules.site_min_shared_edge_m,
                                    site_link_min_overlap_m2=rules.site_link_min_overlap_m2)
    lap("dedupe")
    if survey is not None:  # the survey rows the judgement and idle_land look at: those near sites and parcels
        _read_near_survey(store, layers, present, code_sets, [merged, patches], layers["parcels"])
        lap("near")
    dltb, dltb_prev = layers["dltb"], layers["dltb_prev"]

    # 2. judge ------------------------------------------------------------------------------------------
    flagged = judge_patches(merged, dltb=dltb, dltb_prev=dltb_prev, approvals=layers["approvals"],
                            yjjbnt=layers["yjjbnt"], stbhhx=layers["stbhhx"], czkfbj=layers["czkfbj"],
                            villages=villages, rules=rules, workers=workers)
    flagged = round_areas(flagged)
    flagged, carried = carry_over_status(flagged, old_flagged)
    flagged.insert(flagged.columns.get_loc("geometry"), "run_id", run_id)
    lap("judge")

    # 3. planning conflicts ----------------------------------------------------------------------------
    conflicts, skipped = find_conflicts(rules=rules, dltb=dltb, yjjbnt=layers["yjjbnt"], stbhhx=layers["stbhhx"],
                                        czkfbj=layers["czkfbj"], ghfq=layers["ghfq"],
                                        approvals=layers["approvals"], parcels=layers["parcels"],
                                        villages=villages, workers=workers,
                                        survey=None if survey is None else survey.conflicts)
    conflicts = conflicts.set_crs(crs, allow_override=True) if conflicts.crs is None else conflicts
    conflicts["area_m2"] = conflicts["area_m2"].astype(float).round(2)
    conflicts["run_id"] = run_id
    conflicts = conflicts[[*CONFLICT_COLUMNS, "run_id", "geometry"]]
    lap("conflicts")

    finished = _now()
    result = AnalysisResult(
        run_id=run_id, started_at=started, finished_at=finished, store_url=store.url, rules_path=rules_label,
        rules_sha256=rules.sha256(), flagged=flagged, conflicts=conflicts, dedupe=report,
        n_monitoring=n_monitoring, n_change_patches=n_changes, carried_over=carried, skipped=skipped,
        input_load_ids=input_ids, seconds=0.0, timings=timings, cpu_timings=cpu_timings,
        duplicates_ignored=ignored, unclassified=unclassified, code_sets=code_sets,
        crosswalk=crosswalk_label(code_sets),
        partitions={"count": len(plan), "why": why, "partitions": [p.describe() for p in plan]})
    if write:
        _write(store, result, rules, crs)
        _sync_workflow(store)
        lap("write")
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _survey_ready(layers: dict, code_sets: dict[str, str | None]) -> tuple[dict, dict[str, list[str]]]:
    """The survey layers in ``layers`` as the rules read them, in place: 用地用海 codes through the crosswalk
    (rules read 三调 codes), and the later copies of an exactly duplicated patch set aside (they would count
    their area twice). Returns the geometry keys of the rows kept and the ids set aside, per layer."""
    keys: dict[str, np.ndarray] = {}
    ignored: dict[str, list[str]] = {}
    for name in SURVEY_LAYERS:
        layers[name] = to_rule_codes(layers[name], code_sets.get(name), name)
        gdf = layers[name]
        if gdf is not None and len(gdf):
            keys[name] = geometry_keys(gdf)
            dup = duplicate_mask(gdf, keys[name])
            if dup.any():
                ids = gdf["BSM"].astype(str).to_numpy()[dup] if "BSM" in gdf.columns else np.flatnonzero(dup) + 1
                ignored[name] = [str(x) for x in ids]
                layers[name] = gdf[~dup].reset_index(drop=True)
                keys[name] = keys[name][~dup]
    return keys, ignored


def _in_partitions(store: Store, plan: list, rules: Rules, code_sets: dict, client, crs):
    """The survey layers' share of the analysis, computed in the plan's partitions on the cluster."""
    from .analyse_partitions import compute_analysis_partitions, merge_analysis_parts
    from .partitions import client_context

    # the code sets as recorded at ingest (none recorded: 三调, as analysis.codeset reads it in the whole run)
    with client_context(client) as cluster:
        parts = compute_analysis_partitions(cluster, plan, store.url, rules, READ_COLUMNS, code_sets)
    return merge_analysis_parts(parts, crs)


def _read_near_survey(store: Store, layers: dict, present: set[str], code_sets: dict, sites, parcels) -> None:
    """Into ``layers``: the survey rows near the sites and their member patches (dltb, dltb_prev) and near the
    parcels (dltb), made ready as the whole-county run makes its layers (:func:`_survey_ready`): the judgement
    and idle_land pick the rows near what they judge (analysis.common.near) from these as from the whole."""
    from .analyse_partitions import read_near

    geoms = np.concatenate([np.asarray(g.geometry.values, dtype=object) for g in sites])
    with_parcels = geoms if parcels is None else np.concatenate([geoms, np.asarray(parcels.geometry.values)])
    layers["dltb"] = read_near(store, "dltb", with_parcels, READ_COLUMNS["dltb"])
    if "dltb_prev" in present:
        layers["dltb_prev"] = read_near(store, "dltb_prev", geoms, READ_COLUMNS["dltb_prev"])
    _survey_ready(layers, code_sets)


def _record(name: str, result: AnalysisResult, rows_read: int, rows_written: int, crs) -> LoadRecord:
    epsg = crs.to_epsg()
    return LoadRecord(
        layer=name, source_path=f"yzt analyse (rules {result.rules_path})", source_layer=None,
        sha256=result.rules_sha256, source_crs=f"EPSG:{epsg}", crs_resolution="analysis output",
        transformation="none", target_crs=f"EPSG:{epsg}", encoding=None,
        field_mapping={"inputs": result.input_load_ids}, code_set="sandiao", rows_read=rows_read,
        rows_written=rows_written, loaded_at=result.finished_at, load_id=result.run_id, version=_version())


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("yizhangtu")
    except Exception:
        return "0+source"


def _sync_workflow(store: Store) -> None:
    """Copy the enforcement workflow's statuses onto the freshly written flagged_patches, so a judgement
    recorded while this run was computing is not hidden until the next app start."""
    from .workflow import open_patch_workflow

    open_patch_workflow(store).sync_layer()


def _write(store: Store, result: AnalysisResult, rules: Rules, crs) -> None:
    """The result layers, their load records and the run's row in analysis_runs: ONE atomic write, so a run
    is stored whole or not at all (never layers whose run_id names no run)."""
    records = [_record(FLAGGED, result, result.dedupe.n_input, len(result.flagged), crs),
               _record(CONFLICTS, result, 0, len(result.conflicts), crs)]
    row = pd.DataFrame([{
        "run_id": result.run_id,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "rules": rules.to_json(),
        "rules_sha256": result.rules_sha256,
        "rules_path": result.rules_path,
        "input_load_ids": json.dumps(result.input_load_ids, ensure_ascii=False, sort_keys=True),
        "counts": json.dumps(result.counts(), ensure_ascii=False),
    }])
    try:
        previous = store.read_table(RUNS_TABLE)
    except NotFoundError:
        previous = None
    runs = row if previous is None or len(previous) == 0 else pd.concat(
        [previous.astype(object), row.astype(object)], ignore_index=True)
    store.write_layers({FLAGGED: result.flagged, CONFLICTS: result.conflicts}, records=records,
                       meta={"analysis_run_id": result.run_id, "analysis_rules_sha256": result.rules_sha256},
                       tables={RUNS_TABLE: runs})


def summary_text(result: AnalysisResult) -> str:
    """The human summary printed by `yzt analyse`."""
    c = result.counts()
    lines = [
        f"yzt analyse: run {result.run_id} on {result.store_url}",
        f"  rules: {result.rules_path} (sha256 {result.rules_sha256[:12]}…)",
        f"  monitoring patches: {c['monitoring_patches']}; change patches dltb_prev → dltb: {c['change_patches']} "
        "(survey piece units, one per current patch; a site's units form one record)",
        f"  dedupe: {c['dedupe_input']} patches → {c['flagged_patches']} ground changes "
        f"({c['merged']} merged in {c['merged_groups']} groups)",
        "  flagged_patches by verdict:",
    ]
    for v, zh in VERDICT_ZH.items():
        lines.append(f"    {zh:<6} {v:<18} {c['by_verdict'][v]:>7}")
    if result.partitions.get("count"):
        lines.append(f"  survey layers read in {result.partitions['why']}")
    if result.crosswalk:
        sets = ", ".join(f"{k} {v}" for k, v in result.code_sets.items() if v)
        lines.append(f"  land-use codes: {sets}; 用地用海 read through {result.crosswalk}")
    for name, ids in result.duplicates_ignored.items():
        lines.append(f"  {name}: {len(ids)} exact duplicate patch(es) set aside (BSM {', '.join(ids[:5])})")
    for name, found in result.unclassified.items():
        listed = "; ".join(f"{code}: BSM {', '.join(ids[:3])}{' …' if len(ids) > 3 else ''}"
                           for code, ids in found.items())
        lines.append(f"  {name}: DLBM not in the rules' land classes, reported as unclassified ({listed})")
    if c["status_carried_over"]:
        lines.append(f"  workflow status kept from the previous run: {c['status_carried_over']} records")
    lines.append("  planning_conflicts by kind:")
    for kind, zh in KINDS.items():
        k = c["conflicts_by_kind"][kind]
        if kind in result.skipped:
            lines.append(f"    {kind:<28} not checked (no {result.skipped[kind]} layer)  {zh}")
        else:
            lines.append(f"    {kind:<28} {k['count']:>7} {k['area_m2']:>16,.2f} m²  {zh}")
    lines.append(f"  wrote {FLAGGED} ({c['flagged_patches']}), {CONFLICTS} ({c['planning_conflicts']}), "
                 f"{RUNS_TABLE} in {result.seconds:.1f} s")
    return "\n".join(lines)

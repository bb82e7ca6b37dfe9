"""A large county's analysis in spatial partitions on dask.distributed (dask-geopandas), equal to the
whole-county run record for record.

The partitions are those of the indicators (services/jobs/partitions.py: runs of whole 乡镇 along a Hilbert
curve; a partition owns the survey rows whose ZLDWDM lies in its 乡镇). What needs the whole survey layers is
computed in the partitions, by the functions the whole-county run uses, over each partition's own rows and
the rows around them (every survey row whose envelope meets the box of its 乡镇, both years):

- the exact duplicate survey patches set aside (analysis.changes.duplicate_mask: a copy filed in another
  乡镇 has the same envelope, so it is among the rows read);
- the change patches dltb_prev → dltb of its own current patches (derive_change_patches with ``report``: a
  change patch is one current patch and the previous-year patches under it);
- the planning conflicts with a DLTB patch on one side (analysis.conflicts.survey_conflicts over its own
  patches: each record comes from one patch);
- the survey codes the rules do not classify.

The county task then does what is county-wide and small: it merges the parts in the order the whole run lists
them (each record carries the stored position of its DLTB patch), dedupes the monitoring and change patches
into sites (one union-find over the county), judges each site against the survey rows *near* the sites (read by
box, :func:`read_near`; the judgement only ever looks at those) and finds the remaining conflicts (control
line pairs, parcels, approvals, idle land against the survey rows near the parcels). So no process holds a
whole survey layer. A county runs whole when its survey layers lack the stable row id yzt_fid (the order of the
records).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from analysis.changes import ORDER_KEY, derive_change_patches, duplicate_mask, geometry_keys
from analysis.codeset import to_rule_codes
from analysis.conflicts import control_faces, merge_survey_conflicts, survey_conflicts
from analysis.landuse import listed_by_code, unclassified_rows
from analysis.rules import Rules
from layers import fields as F
from layers.store import open_store
from layers.store.base import Store

from .partitions import (
    Partition,
    check_loads,
    fits_one,
    others_filter,
    plan_townships,
    read_owned,
    stored_columns,
    township_boxes,
    with_surroundings,
)

SURVEY = ("dltb", "dltb_prev")
CONTROLS = ("yjjbnt", "stbhhx", "czkfbj")
ID_FIELD = "BSM"


def plan_analysis(store: Store, rows_per_partition: int, present: set[str]) -> tuple[list[Partition], str]:
    """The partitions of the county's analysis, or ``[]`` and why it runs whole."""
    survey = [name for name in SURVEY if name in present]
    if "dltb" not in survey:
        return [], "no dltb layer"
    small = fits_one(store, rows_per_partition)  # most counties: decided by a row count, nothing read
    if small:
        return [], small
    for name in survey:
        if F.FID not in store.schema(name):
            return [], f"{name} has no {F.FID} column (the stored order of its rows)"
        if ID_FIELD not in store.schema(name):
            return [], f"{name} has no {ID_FIELD} column: the whole run names its patches by row number"
        ids = store.read_attributes(name, [ID_FIELD])[ID_FIELD]
        if ids.isna().any() or (ids.astype(str).str.strip() == "").any():
            return [], f"{name} has patches without {ID_FIELD}: the whole run names them by row number"
    # the records are listed by the stored order of their patches (yzt_fid); a BSM may repeat, as in the
    # whole run (the conflict_ids of a kind are given over the merged kind)
    return plan_townships(store, rows_per_partition, {name: F.FID for name in survey})


@dataclass
class AnalysisPart:
    """What one partition found among the survey rows it owns; every list keyed by the rows' yzt_fid."""

    index: int
    changes: gpd.GeoDataFrame  # change patches of its current patches, ORDER_KEY = the patch's yzt_fid
    conflicts: list[gpd.GeoDataFrame]  # survey_conflicts with order keys
    ignored: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # duplicate copies set aside
    unclassified: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # (fid, code, id)


def survey_part(index: int, frames: Mapping[str, gpd.GeoDataFrame], owned: Mapping[str, np.ndarray],
                controls: Mapping[str, gpd.GeoDataFrame], rules: Rules, code_sets: Mapping[str, str | None],
                workers: int = 1) -> AnalysisPart:
    """One partition's part, from its survey rows and their surroundings (``frames``, in stored order, with
    yzt_fid; ``owned`` marks its own rows) and the control lines whole — the steps of the whole-county run
    (services/jobs/analyse.run_analysis) that read the survey layers, over the owned rows."""
    survey, keys, fids, mine = {}, {}, {}, {}
    ignored: dict[str, list[tuple[int, str]]] = {}
    unclassified: dict[str, list[tuple[int, str, str]]] = {}
    for name, gdf in frames.items():
        fid = gdf[F.FID].to_numpy(dtype=np.int64)
        ready = to_rule_codes(gdf.drop(columns=[F.FID]), code_sets.get(name), name)
        assert ready is not None
        gdf = ready
        k = geometry_keys(gdf)
        dup = duplicate_mask(gdf, k)
        gone = np.flatnonzero(dup & owned[name])
        if len(gone):  # named as run_analysis names them
            ignored[name] = [(int(fid[i]), str(gdf[ID_FIELD].iloc[i])) for i in gone]
        keep = ~dup
        survey[name] = gdf[keep].reset_index(drop=True)
        keys[name], fids[name], mine[name] = k[keep], fid[keep], np.asarray(owned[name], bool)[keep]
        found = unclassified_rows(survey[name][mine[name]], rules, name)
        if found:
            own_fids = fids[name][mine[name]]
            unclassified[name] = [(int(own_fids[r]), code, i) for r, code, i in found]
    dltb, prev = survey["dltb"], survey.get("dltb_prev")
    if prev is not None and rules.changes_enabled:
        changes = derive_change_patches(prev, dltb, rules, workers=workers, prev_keys=keys["dltb_prev"],
                                        curr_keys=keys["dltb"], report=mine["dltb"], order=fids["dltb"])
    else:
        changes = gpd.GeoDataFrame({ORDER_KEY: []}, geometry=gpd.GeoSeries([], crs=dltb.crs), crs=dltb.crs)
    lines, line_ids = control_faces({n: g for n, g in controls.items() if g is not None})
    own = dltb[mine["dltb"]].reset_index(drop=True)
    conflicts = survey_conflicts(own, lines, line_ids, rules, czkfbj=controls.get("czkfbj"), workers=workers,
                                 order=fids["dltb"][mine["dltb"]])
    return AnalysisPart(index, changes, conflicts, ignored, unclassified)


def _stored_list(store: Store, layer: str, columns: list[str], fid: bool = True) -> list[str]:
    out = stored_columns(store, layer, columns, fid)
    assert out is not None  # columns is a list
    return out


# --- on the workers --------------------------------------------------------------------------------------------

def analysis_part(partition: Partition, owned_dltb: gpd.GeoDataFrame, store_url: str, rules: Rules,
                  columns: Mapping[str, list[str]], code_sets: Mapping[str, str | None]) -> AnalysisPart:
    """One partition's :class:`AnalysisPart`, read from the store by the worker: its survey rows and their
    surroundings, the control lines whole."""
    with open_store(store_url) as store:
        check_loads(store, partition, "analyse")
        present = set(store.layer_names())
        owned = {"dltb": owned_dltb}
        if "dltb_prev" in present and "dltb_prev" in columns:
            owned["dltb_prev"] = store.read_layer("dltb_prev", where=partition.where("dltb_prev"),
                                                  columns=_stored_list(store, "dltb_prev", columns["dltb_prev"]))
        boxes = township_boxes(owned)
        frames, masks = {}, {}
        for name, rows in owned.items():
            frames[name], masks[name] = with_surroundings(store, name, rows, boxes, others_filter(partition, name))
        controls = {name: store.read_layer(name, columns=_stored_list(store, name, columns[name], fid=False))
                    for name in CONTROLS if name in present and name in columns}
    return survey_part(partition.index, frames, masks, controls, rules, code_sets)


def compute_analysis_partitions(client, plan: list[Partition], store_url: str, rules: Rules,
                                columns: Mapping[str, list[str]], code_sets: Mapping[str, str | None]
                                ) -> list[AnalysisPart]:
    """Every partition's part on the cluster: the owned DLTB as a dask-geopandas GeoDataFrame whose partitions
    the workers read, then one analysis_part task on each."""
    import dask
    import dask.dataframe as dd
    import dask_geopandas

    with open_store(store_url) as store:
        wanted = _stored_list(store, "dltb", columns["dltb"])
        meta = store.read_layer("dltb", limit=0, columns=wanted)
    # the column list goes in through partial: from_map would take a columns= keyword as its own projection
    frames = dd.from_map(functools.partial(read_owned, columns=wanted), plan, store_url=store_url, meta=meta,
                         enforce_metadata=False, label="yzt-dltb-partition")
    dltb = dask_geopandas.from_dask_dataframe(frames, geometry=meta.geometry.name)
    tasks = [dask.delayed(analysis_part, pure=False)(p, part, store_url, rules, dict(columns), dict(code_sets))
             for p, part in zip(plan, dltb.to_delayed())]
    return list(client.gather(client.compute(tasks)))


# --- in the county task ----------------------------------------------------------------------------------------

@dataclass
class MergedSurvey:
    changes: gpd.GeoDataFrame  # change patches of the whole county, in the whole run's order
    conflicts: list[gpd.GeoDataFrame]  # the survey kinds' records, one frame per kind
    ignored: dict[str, list[str]]
    unclassified: dict[str, dict[str, list[str]]]


def merge_analysis_parts(parts: list[AnalysisPart], crs) -> MergedSurvey:
    """The parts as the whole-county run would have them: listed by the stored order of their survey rows."""
    frames = [p.changes for p in parts if len(p.changes)]
    if frames:
        changes = pd.concat(frames, ignore_index=True).sort_values(ORDER_KEY, kind="stable")
        changes = gpd.GeoDataFrame(changes.drop(columns=[ORDER_KEY]).reset_index(drop=True), geometry="geometry",
                                   crs=crs)
    else:
        changes = gpd.GeoDataFrame({"JCBH": []}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    ignored: dict[str, list[str]] = {}
    unclassified: dict[str, dict[str, list[str]]] = {}
    for name in SURVEY:
        gone = sorted(x for p in parts for x in p.ignored.get(name, []))
        if gone:
            ignored[name] = [i for _, i in gone]
        found = listed_by_code(sorted(x for p in parts for x in p.unclassified.get(name, [])))
        if found:
            unclassified[name] = found
    return MergedSurvey(changes, merge_survey_conflicts([p.conflicts for p in parts]), ignored, unclassified)


def read_near(store: Store, layer: str, geoms: np.ndarray, columns: list[str]) -> gpd.GeoDataFrame:
    """Every row of ``layer`` whose envelope meets the envelope of one of ``geoms``, in stored order, with
    ``columns`` (those stored): exactly what analysis.common.near picks from the whole layer, in one query
    (Store.read_near)."""
    geoms = np.asarray(geoms, dtype=object)
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    boxes = sorted({tuple(float(v) for v in b) for b in shapely.bounds(geoms)}) if len(geoms) else []
    return store.read_near(layer, boxes, columns=_stored_list(store, layer, columns, fid=False))

"""A large county's indicator run in spatial partitions on dask.distributed (dask-geopandas), equal to the
whole-county run value for value and id for id; the plan and the reads the partitioned analysis
(services/jobs/analyse_partitions.py) shares.

A partition is a run of neighbouring 乡镇 (ordered along a Hilbert curve through their centres in xzq), cut so
that each holds about ``rows_per_partition`` DLTB patches. It **owns** the survey rows (dltb, dltb_prev) whose
ZLDWDM lies in its 乡镇 and reports the villages of those 乡镇; every village of the county is reported by
exactly one partition (villages of a 乡镇 no survey row names go to the first).

Each partition is computed on a worker, from the county store, by the same pure function as the whole county
(:func:`analysis.indicators.compute.indicator_parts`):

- its owned DLTB rows are a partition of a dask-geopandas GeoDataFrame (``dask.dataframe.from_map`` over the
  plan): read by the worker that computes the partition, never shipped through the client;
- the survey rows *around* them — every row whose envelope meets the box of the owned rows — are read too, so
  that each overlay of an owned row (YJJBNT pieces, the change pieces against dltb_prev, the twins of
  unchanged patches, duplicate patches) sees exactly what it sees in the whole county; the small layers
  (xzq, yjjbnt, flagged_patches …) are read whole;
- only the owned villages' contributions are kept; sums are taken in value order, so a village's sum does not
  depend on the order the rows were read in; notes that count rows count owned rows only and add up.

The parts merge (:func:`analysis.indicators.compute.merge_parts`) and finish (乡镇 and 县 sums, ratios,
强制调平, warnings) in the county task. A county is not partitioned — it runs whole — when it is small, or
when an indicator could not be split by the ZLDWDM of its survey rows (a ``split`` term on a survey layer, an
attribution field other than ZLDWDM), or when a survey layer lacks a unique id column (its record ids would
then be row numbers, which a partition does not know); :func:`plan_partitions` says which.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from analysis.indicators import SURVEY_LAYERS, Registry
from analysis.indicators.compute import IndicatorParts, indicator_parts
from layers import fields as F
from layers.errors import StoreError, YztError
from layers.store import open_store
from layers.store.base import Store
from layers.store.query import And, Expr, In, IsNull, Not, Or

ATTRIBUTION_FIELD = "ZLDWDM"


def township_of(value) -> str | None:
    """The 乡镇 a survey row belongs to, from its raw ZLDWDM (as the indicators read it: stripped, 9 digits)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value).strip()[:9]


@dataclass(frozen=True)
class Partition:
    """The 乡镇 one partition reports, and the raw ZLDWDM values of the survey rows it owns."""

    index: int
    townships: tuple[str, ...]
    values: tuple[tuple[str, tuple[str, ...]], ...]  # (survey layer, owned raw ZLDWDM values)
    nulls: bool  # owns the survey rows without ZLDWDM
    default: bool  # reports the villages of 乡镇 that no partition names
    named: frozenset[str]  # every 乡镇 some partition names
    rows: int  # owned DLTB rows
    loads: tuple[tuple[str, str], ...] = ()  # (survey layer, load id) the plan was made from

    def where(self, layer: str) -> Expr:
        """The filter that reads the rows of ``layer`` this partition owns."""
        owned = dict(self.values).get(layer, ())
        expr: Expr = In(ATTRIBUTION_FIELD, tuple(owned))
        return Or(expr, IsNull(ATTRIBUTION_FIELD)) if self.nulls else expr

    def owns(self, villages: np.ndarray) -> np.ndarray:
        mine = set(self.townships)
        township = [str(v)[:9] for v in villages]
        return np.array([t in mine or (self.default and t not in self.named) for t in township], dtype=bool)

    def describe(self) -> dict:
        return {"index": self.index, "townships": list(self.townships), "dltb_rows": self.rows}


def _splittable(registry: Registry, survey: list[str]) -> str | None:
    """Why the registry's indicators cannot be split by the survey rows' ZLDWDM (None: they can)."""
    for layer in survey:
        field = registry.attribution.get(layer, ATTRIBUTION_FIELD)
        if field != ATTRIBUTION_FIELD:
            return f"{layer} is attributed to villages by {field}, not {ATTRIBUTION_FIELD}"
    for ind in registry.indicators.values():
        for term in ind.terms:
            if term.layer in survey and term.attribute == "split":
                return f"indicator {ind.code!r} splits {term.layer} records by village polygon"
    return None


def _hilbert_order(store: Store, townships: list[str]) -> list[str]:
    """The 乡镇 along a Hilbert curve through the centres of their xzq polygons (villages when the 乡镇
    polygon is missing); 乡镇 xzq does not draw come last, by code."""
    try:
        xzq = store.read_layer("xzq", columns=["XZQDM"])
    except YztError:  # no xzq: the indicators will say so; the order is only a matter of compactness
        return sorted(townships)
    codes = xzq["XZQDM"].astype(str).str.strip()
    centres = xzq.geometry.representative_point()
    frame = pd.DataFrame({"township": codes.str[:9].where(codes.str.len() >= 9), "x": centres.x, "y": centres.y})
    frame = frame[frame["township"].isin(townships)].groupby("township")[["x", "y"]].mean()
    if len(frame) == 0:
        return sorted(townships)
    points = gpd.GeoSeries(gpd.points_from_xy(frame["x"], frame["y"]), index=frame.index)
    distance = points.hilbert_distance() if len(points) > 1 else pd.Series([0], index=frame.index)
    placed = [str(t) for t in distance.sort_values(kind="stable").index]
    return placed + sorted(set(townships) - set(placed))


def _load_ids(store: Store, layers) -> tuple[tuple[str, str], ...]:
    records = store.load_records()
    out = []
    for layer in layers:
        rows = records[records["layer"] == layer] if len(records) else records
        out.append((layer, str(rows["load_id"].iloc[-1]) if len(rows) else ""))
    return tuple(out)


def plan_partitions(store: Store, registry: Registry, rows_per_partition: int,
                    layers: list[str] | None = None) -> tuple[list[Partition], str]:
    """The partitions of the county's indicator run, or ``[]`` and why it runs whole."""
    if rows_per_partition < 1:
        raise ValueError(f"rows per partition {rows_per_partition}: give at least 1")
    present = set(store.layer_names()) if layers is None else set(layers)
    survey = [name for name in SURVEY_LAYERS if name in present]
    if "dltb" not in survey:
        return [], "no dltb layer"
    reason = _splittable(registry, survey) or fits_one(store, rows_per_partition)
    if reason:
        return [], reason
    return plan_townships(store, rows_per_partition,
                          {layer: registry.id_fields.get(layer, registry.id_fields["default"]) for layer in survey})


def fits_one(store: Store, rows_per_partition: int) -> str | None:
    """Why the county runs whole when its DLTB fits one partition (a row count: no column is read)."""
    if rows_per_partition < 1:
        raise ValueError(f"rows per partition {rows_per_partition}: give at least 1")
    n = store.count("dltb")
    return f"{n} DLTB patches fit one partition of {rows_per_partition}" if n <= rows_per_partition else None


def plan_townships(store: Store, rows_per_partition: int, id_fields: Mapping[str, str]
                   ) -> tuple[list[Partition], str]:
    """Runs of whole 乡镇 holding about ``rows_per_partition`` DLTB patches each, owning the rows of the survey
    layers ``id_fields`` names (dltb first) by their ZLDWDM; or ``[]`` and why the county runs whole. Each
    survey layer needs a unique, non-empty id in its ``id_fields`` column: a partition names its records by
    it, and only the whole layer would know row numbers."""
    if rows_per_partition < 1:
        raise ValueError(f"rows per partition {rows_per_partition}: give at least 1")
    survey = list(id_fields)
    raw: dict[str, pd.Series] = {}
    for layer in survey:
        id_field = id_fields[layer]
        columns = list(dict.fromkeys([ATTRIBUTION_FIELD, id_field]))
        try:
            frame = store.read_attributes(layer, columns)
        except YztError:  # a column is missing: the whole-county run reports it
            return [], f"{layer} lacks {' or '.join(columns)}"
        ids = frame[id_field]
        if ids.isna().any() or not ids.is_unique or (ids.astype(str).str.strip() == "").any():
            return [], (f"{layer} has no unique {id_field}: its record ids are row numbers, which only the whole "
                        "layer knows")
        raw[layer] = frame[ATTRIBUTION_FIELD]
    n_dltb = len(raw["dltb"])
    k = math.ceil(n_dltb / rows_per_partition)
    if k < 2:
        return [], f"{n_dltb} DLTB patches fit one partition of {rows_per_partition}"
    counts: dict[str | None, int] = {}
    for value, n in raw["dltb"].value_counts(dropna=False).items():
        t = township_of(value)
        counts[t] = counts.get(t, 0) + int(n)
    for layer in survey:  # 乡镇 only the previous year names still need an owner
        for value in pd.unique(raw[layer]):
            counts.setdefault(township_of(value), 0)
    named = sorted(t for t in counts if t is not None)
    order = _hilbert_order(store, named)
    groups: list[list[str]] = [[] for _ in range(k)]
    filled = 0
    target = n_dltb / k
    for t in order:  # contiguous runs of the curve: a 乡镇 goes where the middle of its patches falls
        groups[min(k - 1, int((filled + counts[t] / 2) // target))].append(t)
        filled += counts[t]
    groups = [g for g in groups if g]
    values_by_layer = {layer: pd.unique(raw[layer].dropna()).tolist() for layer in survey}
    loads = _load_ids(store, survey)
    partitions = []
    for i, group in enumerate(groups):
        mine = set(group)
        values = tuple((layer, tuple(sorted(str(v) for v in vals if township_of(v) in mine)))
                       for layer, vals in values_by_layer.items())
        partitions.append(Partition(i, tuple(group), values, nulls=(i == 0 and None in counts), default=(i == 0),
                                    named=frozenset(named), rows=sum(counts[t] for t in group), loads=loads))
    sizes = [p.rows for p in partitions]
    return partitions, (f"{len(partitions)} partitions of {min(sizes)}–{max(sizes)} DLTB patches (whole 乡镇, "
                        f"aiming at {round(target)})")


def whole_layer_code_sets(store: Store, code_sets: Mapping[str, str | None]) -> dict[str, str | None]:
    """The land-use code set of each survey layer: as recorded at ingest, else detected from the whole layer's
    DLBM exactly as prepare_survey would (a partition's rows alone could read as another set)."""
    from layers.codes import detect_code_set, normalise_codes

    out = dict(code_sets)
    for layer, known in code_sets.items():
        if known is None:
            codes = normalise_codes(store.read_attributes(layer, ["DLBM"])["DLBM"]).dropna()
            out[layer] = detect_code_set(codes, where=f"layer {layer!r}") if len(codes) else None
    return out


def client_context(client):
    """``client`` as a context manager: a dask Client as it is, a context factory (worker_client) entered."""
    if callable(client) and not hasattr(client, "compute"):
        return client()
    return contextlib.nullcontext(client)


# --- on the workers --------------------------------------------------------------------------------------------

def check_loads(store: Store, partition: Partition, stage: str) -> None:
    """StoreError when a survey layer was re-ingested since the plan (its rows would belong to no plan)."""
    if partition.loads and _load_ids(store, [layer for layer, _ in partition.loads]) != partition.loads:
        what = "indicators were" if stage == "indicators" else "analysis was"
        raise StoreError(f"the survey layers of {store.url} were re-ingested while their {what} being computed; "
                         f"run yzt {stage} again")


def read_owned(partition: Partition, store_url: str, layer: str = "dltb", columns: list[str] | None = None
               ) -> gpd.GeoDataFrame:
    """The rows of ``layer`` the partition owns (one partition of the dask-geopandas frame); ``columns``: those
    of them that are stored (all when None; the stable row id yzt_fid always comes along)."""
    with open_store(store_url) as store:
        return store.read_layer(layer, where=partition.where(layer), columns=stored_columns(store, layer, columns))


def stored_columns(store: Store, layer: str, columns: list[str] | None, fid: bool = True) -> list[str] | None:
    """Those of ``columns`` that ``layer`` stores (None: all), with the stable row id yzt_fid first when
    ``fid``."""
    if columns is None:
        return None
    available = store.schema(layer)
    return [c for c in dict.fromkeys([*([F.FID] if fid else []), *columns]) if c in available]


def township_boxes(owned: Mapping[str, gpd.GeoDataFrame]) -> list[tuple[float, float, float, float]]:
    """One box per 乡镇 around the owned rows of both survey years (a partition's 乡镇 may lie apart, and a
    乡镇 xzq does not draw is placed last on the curve: one box over them all could cover the county)."""
    frames = [pd.DataFrame({"township": [township_of(v) or "" for v in o[ATTRIBUTION_FIELD]],
                            "minx": b[:, 0], "miny": b[:, 1], "maxx": b[:, 2], "maxy": b[:, 3]})
              for o in owned.values() if len(o) for b in [o.geometry.bounds.to_numpy()]]
    if not frames:
        return []
    by = pd.concat(frames).dropna().groupby("township")
    boxes = pd.concat([by["minx"].min(), by["miny"].min(), by["maxx"].max(), by["maxy"].max()], axis=1)
    return [(float(a), float(b), float(c), float(d)) for a, b, c, d in boxes.itertuples(index=False)]


def others_filter(partition: Partition, layer: str) -> Expr:
    """The filter that reads the rows of ``layer`` the partition does not own."""
    mine = partition.where(layer)
    # NOT (ZLDWDM IN …) is not true for a NULL ZLDWDM: those rows are the first partition's (nulls)
    return And(Not(mine), Not(IsNull(ATTRIBUTION_FIELD))) if partition.nulls else \
        Or(Not(mine), IsNull(ATTRIBUTION_FIELD))


def with_surroundings(store: Store, layer: str, owned: gpd.GeoDataFrame, boxes, others: Expr
                      ) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Owned rows and every row of ``layer`` whose envelope meets one of ``boxes``, in stored order; which are
    owned. ``others`` selects the rows the partition does not own: an owned row is read once. The columns
    read are those of ``owned``."""
    columns = [c for c in owned.columns if c != owned.geometry.name]
    frame = pd.concat([owned, *(store.read_layer(layer, bbox=box, where=others, columns=columns)
                                for box in boxes)], ignore_index=True)
    frame = frame.drop_duplicates(F.FID).sort_values(F.FID, kind="stable").reset_index(drop=True)
    return gpd.GeoDataFrame(frame, geometry=owned.geometry.name, crs=owned.crs), \
        frame[F.FID].isin(set(owned[F.FID])).to_numpy()


def partition_parts(partition: Partition, owned_dltb: gpd.GeoDataFrame, store_url: str, registry_doc: dict,
                    layer_names: list[str], code_sets: Mapping[str, str | None],
                    columns: Mapping[str, list[str] | None] | None = None) -> IndicatorParts:
    """One partition's :class:`IndicatorParts`: its owned survey rows and their surroundings, the small layers
    whole, through the same indicator_parts as the whole county. ``registry_doc``: the effective registry the
    county task loaded (a worker never re-reads the file); ``columns``: the survey layers' columns to read
    (services.jobs.indicators.read_columns: those the whole county reads)."""
    from analysis.indicators import parse_registry

    registry = parse_registry(registry_doc)
    with open_store(store_url) as store:
        check_loads(store, partition, "indicators")
        layers = {name: store.read_layer(name) for name in layer_names if name not in SURVEY_LAYERS}
        owned = {"dltb": owned_dltb}
        for name in layer_names:
            if name in SURVEY_LAYERS and name != "dltb":
                owned[name] = store.read_layer(name, where=partition.where(name),
                                               columns=(columns or {}).get(name))
        boxes = township_boxes(owned)
        masks = {}
        for name, rows in owned.items():
            layers[name], masks[name] = with_surroundings(store, name, rows, boxes, others_filter(partition, name))
    return indicator_parts(layers, registry, code_sets, owned=masks, owns=partition.owns)


def compute_partitions(client, plan: list[Partition], store_url: str, registry: Registry,
                       layer_names: list[str], code_sets: Mapping[str, str | None]) -> list[IndicatorParts]:
    """Every partition's parts on the cluster: the owned DLTB as a dask-geopandas GeoDataFrame whose partitions
    the workers read, then one partition_parts task on each."""
    import dask
    import dask.dataframe as dd
    import dask_geopandas

    from .indicators import read_columns

    with open_store(store_url) as store:
        columns = {name: read_columns(store, registry, name) for name in layer_names if name in SURVEY_LAYERS}
        meta = store.read_layer("dltb", limit=0, columns=columns.get("dltb"))
    # the columns go in a partial: from_map's own ``columns`` keyword means a projection of the frame
    frames = dd.from_map(functools.partial(read_owned, columns=columns.get("dltb")), plan, store_url=store_url,
                         meta=meta, enforce_metadata=False, label="yzt-dltb-partition")
    dltb = dask_geopandas.from_dask_dataframe(frames, geometry=meta.geometry.name)
    tasks = [dask.delayed(partition_parts, pure=False)(p, part, store_url, registry.document, layer_names,
                                                          dict(code_sets), columns)
             for p, part in zip(plan, dltb.to_delayed())]
    return list(client.gather(client.compute(tasks)))

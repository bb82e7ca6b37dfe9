"""compute_indicators: every indicator for every unit, with the ids of the records behind each value."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from layers.errors import FieldError, RuleError

from .builtins import BUILTINS
from .context import Contribution, IndicatorResult, _Context
from .expression import _as_bool, _is_series
from .prepare import merge_notes, note_texts
from .registry import LEVELS, Indicator, Registry, Term
from .tables import _complete_units, _long_table, _warnings


def _term_contribution(ctx: _Context, ind: Indicator, term: Term) -> Contribution:
    gdf = ctx.layer(term.layer)
    where = f"indicator {ind.code!r} (layer {term.layer!r})"
    resolve = ctx.resolver(gdf, term.layer, where)
    if term.where is not None:
        mask = term.where.evaluate(resolve)
        if not _is_series(mask):
            mask = pd.Series(bool(mask), index=gdf.index)
        mask = _as_bool(mask).to_numpy()
    else:
        mask = np.ones(len(gdf), dtype=bool)
    if term.sum is None:
        value = pd.Series(1.0, index=gdf.index)
    else:
        value = term.sum.evaluate(resolve)
        value = value if _is_series(value) else pd.Series(value, index=gdf.index)
        value = pd.to_numeric(value, errors="coerce").astype(float)
        bad = value[mask].isna()
        if bad.any():
            rows = ctx.ids(term.layer)[mask][bad.to_numpy()].head(3).tolist()
            raise FieldError(f"{where}: {term.sum.text!r} has no value for {int(bad.sum())} record(s) "
                             f"(e.g. ids {rows}); fill the field or exclude the rows with 'where'")
    ids = ctx.ids(term.layer)
    if term.attribute == "record":
        village = ctx.village_of(term.layer)
        return Contribution(
            pd.DataFrame({"village": village[mask].to_numpy(), "value": value[mask].to_numpy()}),
            pd.DataFrame({"village": village[mask].to_numpy(), "layer": term.layer, "rid": ids[mask].to_numpy()}))
    shares = ctx.split_shares(term.layer)
    shares = shares[mask[shares["row"].to_numpy()]]
    rows = shares["row"].to_numpy()
    return Contribution(
        pd.DataFrame({"village": shares["village"].to_numpy(), "value": value.to_numpy()[rows] *
                      shares["share"].to_numpy()}),
        pd.DataFrame({"village": shares["village"].to_numpy(), "layer": term.layer, "rid": ids.to_numpy()[rows]}))


def _sorted_ids(values) -> list:
    """Ids sorted, numbers before text (a layer's id field may mix them): a plain sort when they compare."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda v: (isinstance(v, str), v))


def _id_lists(ids: pd.DataFrame) -> dict[str, dict[str, list]]:
    """unit code (village, township and county) → {layer: sorted unique ids}."""
    out: dict[str, dict[str, list]] = {}
    if len(ids) == 0:
        return out
    if pd.api.types.is_integer_dtype(ids["rid"]) and not ids["rid"].isna().any():
        packed = _int_id_lists(ids)
        if packed is not None:
            return packed
    village = ids["village"].astype(str).tolist()
    layer = ids["layer"].astype(str).tolist()
    rid = [v.item() if hasattr(v, "item") else v for v in ids["rid"].tolist()]
    groups: dict[tuple[str, str], set] = {}
    for v, lyr, r in zip(village, layer, rid):
        groups.setdefault((v, lyr), set()).add(r)
    for n in (9, 6):  # 乡镇 and 县: unions of their villages
        for (v, lyr), members in list(groups.items()):
            if len(v) == 12:
                groups.setdefault((v[:n], lyr), set()).update(members)
    for (unit, lyr), members in sorted(groups.items()):
        out.setdefault(unit, {})[lyr] = _sorted_ids(members)
    return out


_ID_BITS = 40  # ids below 2**40 (1.1e12); then 6 bits of layer and 17 of unit: 63 bits of an int64


def _int_id_lists(ids: pd.DataFrame) -> dict[str, dict[str, list]] | None:
    """_id_lists for integer ids (yzt_fid, the default) in numpy: each (unit, layer, id) packed into one int64
    whose order is the output's (units and layers ranked by name), one sort. The same units in the same
    order and the same sorted lists as the Python sets; None when the ids do not fit the packing."""
    vcode, villages = pd.factorize(ids["village"].astype(str))
    lcode, layers = pd.factorize(ids["layer"].astype(str), sort=True)
    rid = ids["rid"].to_numpy(dtype=np.int64)
    units = sorted({str(v) for v in villages} | {str(v)[:n] for v in villages if len(v) == 12 for n in (9, 6)})
    if len(units) >= 1 << 17 or len(layers) >= 1 << 6 or rid.min() < 0 or rid.max() >= 1 << _ID_BITS:
        return None
    rank = {u: k for k, u in enumerate(units)}
    keys = [(np.array([rank[str(v)] for v in villages], dtype=np.int64)[vcode], lcode, rid)]
    twelve = np.array([len(v) == 12 for v in villages])[vcode]
    for n in (9, 6):  # 乡镇 and 县: unions of their villages
        of = np.array([rank.get(str(v)[:n], 0) for v in villages], dtype=np.int64)
        keys.append((of[vcode[twelve]], lcode[twelve], rid[twelve]))
    packed = np.sort(np.concatenate([(u << (_ID_BITS + 6)) | (lc.astype(np.int64) << _ID_BITS) | r
                                     for u, lc, r in keys]))
    packed = packed[np.r_[True, packed[1:] != packed[:-1]]]  # (np.unique hashes: 5× slower on this)
    group = packed >> _ID_BITS
    starts = np.r_[0, np.flatnonzero(group[1:] != group[:-1]) + 1]
    values = packed & ((1 << _ID_BITS) - 1)
    out: dict[str, dict[str, list]] = {}
    for start, stop in zip(starts, np.r_[starts[1:], len(packed)]):
        out.setdefault(units[int(group[start] >> 6)], {})[str(layers[int(group[start] & 63)])] = \
            values[start:stop].tolist()
    return out


def _merge_ids(parts: list[dict[str, list]]) -> dict[str, list]:
    out: dict[str, set] = {}
    for part in parts:
        for layer, values in part.items():
            out.setdefault(layer, set()).update(values)
    return {layer: _sorted_ids(values) for layer, values in sorted(out.items())}


@dataclass
class IndicatorParts:
    """What compute_indicators knows per village before it rolls up: everything a spatial partition of the
    county contributes. Parts of disjoint villages merge (:func:`merge_parts`) into the whole county's, and
    :func:`finish_indicators` makes the long table from either — the single-county path is one part.

    ``sums``: indicator → the village's Σ of contributions (summed in value order, so the same records give
    the same sum whatever order they were read in); ``ids``: indicator → {unit: {layer: sorted ids}} for the
    villages and 乡镇 of the part and the county's share; ``villages``: the village codes met in the data."""

    units: pd.DataFrame
    skipped: dict[str, str]
    sums: dict[str, pd.Series]
    ids: dict[str, dict[str, dict[str, list]]]
    villages: list[str]
    notes: list
    id_fields: dict[str, str]


def _village_sums(values: pd.DataFrame) -> pd.Series:
    """Σ value per village, the addends taken in (village, value) order: a sum that does not depend on the
    order the records came in (partitions read them in another order than the whole county)."""
    if len(values) == 0:
        return pd.Series([], dtype=float, index=pd.Index([], dtype=object, name="village"))
    ordered = values[["village", "value"]].astype({"village": str}).sort_values(["village", "value"], kind="stable")
    return ordered.groupby("village", sort=True)["value"].sum()


def indicator_parts(layers: Mapping[str, gpd.GeoDataFrame], registry: Registry,
                    code_sets: Mapping[str, str | None] | None = None, *,
                    owned: Mapping[str, np.ndarray] | None = None,
                    owns: Callable[[np.ndarray], np.ndarray] | None = None) -> IndicatorParts:
    """The per-village contributions of every measure and built-in indicator (formulas wait for the finish).

    ``owned`` / ``owns``: a spatial partition (analysis.indicators.context._Context); only the villages it owns
    are kept, so that partitions covering every village once add up to the county."""
    ctx = _Context(layers, registry, code_sets, owned=owned, owns=owns)
    skipped: dict[str, str] = {}
    contributions: dict[str, Contribution] = {}
    for code in registry.order():
        ind = registry.indicators[code]
        if ind.kind == "formula":
            missing = [d for d in sorted(registry.dependencies(code)) if d in skipped]
            if missing:
                skipped[code] = f"reads {', '.join(missing)}, which could not be computed"
            continue
        absent = [s for s in ind.sources if not ctx.has(s)]
        if absent:
            skipped[code] = f"layer(s) {', '.join(absent)} not in the store"
            continue
        if ind.kind == "builtin":
            contrib = BUILTINS[str(ind.builtin)][1](ctx)
        else:
            contrib = Contribution.concat([_term_contribution(ctx, ind, t) for t in ind.terms])
        if owns is not None:
            contrib = Contribution(contrib.values[ctx.owned_villages(contrib.values["village"].astype(str))],
                                   contrib.ids[ctx.owned_villages(contrib.ids["village"].astype(str))])
        contributions[code] = contrib
    villages = sorted({str(v) for c in contributions.values() for v in pd.unique(c.values["village"].astype(str))})
    return IndicatorParts(ctx.units, skipped, {code: _village_sums(c.values) for code, c in contributions.items()},
                          {code: _id_lists(c.ids) for code, c in contributions.items()}, villages, ctx.notes,
                          dict(ctx.id_fields))


def merge_parts(parts: list[IndicatorParts]) -> IndicatorParts:
    """Parts of disjoint villages (and 乡镇) as one: sums and ids side by side, the county's ids united."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    sums = {code: pd.concat([p.sums[code] for p in parts if code in p.sums]).sort_index() for code in first.sums}
    ids: dict[str, dict[str, dict[str, list]]] = {}
    for code in first.sums:
        merged: dict[str, dict[str, list]] = {}
        for p in parts:
            for unit, by_layer in p.ids.get(code, {}).items():
                merged[unit] = _merge_ids([merged[unit], by_layer]) if unit in merged else by_layer
        ids[code] = dict(sorted(merged.items()))
    id_fields: dict[str, str] = {}
    for p in parts:
        id_fields.update(p.id_fields)
    return IndicatorParts(first.units, first.skipped, sums, ids,
                          sorted({v for p in parts for v in p.villages}), merge_notes([p.notes for p in parts]),
                          id_fields)


def finish_indicators(parts: IndicatorParts, registry: Registry) -> IndicatorResult:
    """Villages → 乡镇 → 县 sums, the formula indicators, balanced long table and warnings."""
    skipped = parts.skipped
    units = _complete_units(parts.units, [pd.Series(parts.villages, dtype=object)])
    index = pd.Index(units["code"].tolist(), name="unit_code")
    wide = pd.DataFrame(index=index)
    ids_by_unit: dict[str, dict[str, dict[str, list]]] = {}
    codes = units["code"].tolist()
    position = {c: k for k, c in enumerate(codes)}
    by_level = {lvl: [c for c, u in zip(codes, units["level"]) if u == lvl] for lvl in LEVELS}
    for code, sums in parts.sums.items():
        column = np.zeros(len(codes))
        for village, v in zip(sums.index.astype(str), sums.to_numpy()):  # villages: Σ contributions
            column[position[village]] += v
        for child_level, n in (("village", 9), ("township", 6)):  # 乡镇: Σ villages; 县: Σ 乡镇
            for child in by_level[child_level]:
                column[position[child[:n]]] += column[position[child]]
        wide[code] = column
        ids_by_unit[code] = parts.ids[code]

    order = registry.order()
    for code in order:
        ind = registry.indicators[code]
        if ind.kind != "formula" or code in skipped:
            continue

        def resolve(name, _ind=ind):
            if name in wide.columns:
                return wide[name]
            if name in registry.params:
                return registry.params[name].series(index)
            if name in registry.code_sets:
                return registry.code_sets[name]
            raise RuleError(f"indicator {_ind.code!r}: {name!r} has no value")  # pragma: no cover - checked

        assert ind.formula is not None  # a formula indicator
        value = ind.formula.evaluate(resolve)
        value = value if _is_series(value) else pd.Series(value, index=index)
        wide[code] = pd.to_numeric(value, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
        deps = sorted(registry.dependencies(code))
        ids_by_unit[code] = {u: _merge_ids([ids_by_unit[d].get(u, {}) for d in deps]) for u in index}

    values = _long_table(wide, units, registry, ids_by_unit)
    warnings = _warnings(values, registry)
    return IndicatorResult(values, warnings, skipped, note_texts(parts.notes), dict(parts.id_fields))


def compute_indicators(layers: Mapping[str, gpd.GeoDataFrame], registry: Registry,
                       code_sets: Mapping[str, str | None] | None = None) -> IndicatorResult:
    """Every registered indicator for every unit (county, 乡镇, 村) of the xzq layer.

    ``layers``: the store's layers by name (absent layers may be missing or None: indicators that need
    them are reported in ``skipped``). ``code_sets``: the land-use code set of dltb / dltb_prev as recorded at
    ingest (missing → detected). Returns the long table described in :class:`IndicatorResult`. The same as
    :func:`finish_indicators` over the merged :func:`indicator_parts` of partitions that cover the county.
    """
    return finish_indicators(indicator_parts(layers, registry, code_sets), registry)

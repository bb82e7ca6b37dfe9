"""Roll-ups 村 → 乡 → 县 → 市 → 省: the counties' indicator runs summed up a region's tree, balanced at every level.

    result = rollup_indicators({"130571": values_a, "130572": values_b}, units, registry)

``county_values``: per county, the long table of its own indicator run (analysis.indicators.compute_indicators,
as stored in ``indicator_values``): indicator, level (county / township / village), unit_code, unit_name,
parent_code, value (unrounded), record_count. ``units``: the region's 省 / 市 / 县 (code, name, level,
parent_code), as layers/region.py lists them.

The rules are the county run's, one level further up:

- **sums**: an additive indicator (a measure or a built-in: areas, counts) of a 市 is the sum of its counties'
  unrounded values, of the 省 the sum of its 市 (never of rounded figures);
- **ratios** (formula indicators) are evaluated at every level from that level's own unrounded totals and the
  registry's params for that unit, exactly as the county run evaluates them for 县 / 乡 / 村 — never averaged
  from the children. Values of 县 and below are the county runs' own, unchanged;
- **强制调平** (analysis.balance.balance_tree) over the whole tree from the 省 down to the 村: the 省 is
  rounded half-up and each parent's rounded value shared among its children by largest remainder, in 公顷,
  亩 and m² separately, counts too — so Σ 村 = 乡, Σ 乡 = 县, Σ 县 = 市, Σ 市 = 省 exactly in every reported unit;
- an indicator some county could not compute (a layer missing there) has no value above that county: a sum
  with a missing part would be wrong, so the 市 and 省 rows are left out and the reason is in ``skipped``.

Rounded values of a county in the roll-up may differ by one last digit from the county's own table: there the
county is the root and rounded half-up; here it is a child, balanced to its 市 (both are within one unit of
the true value; docs/indicators.md). The unrounded values are identical.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.balance import AREA_UNITS, balance_tree, round_half_up
from analysis.indicators import Registry
from analysis.scoring import crossed_thresholds
from layers.errors import RuleError

REGION_LEVELS = ("province", "city")
ALL_LEVELS = ("province", "city", "county", "township", "village")
LEVEL_ZH = {"province": "省", "city": "市", "county": "县", "township": "乡镇", "village": "村"}
VALUE_COLUMNS = ["indicator", "name", "level", "unit_code", "unit_name", "parent_code", "value", "unit", "value_m2",
                 "value_ha", "value_mu", "value_rounded", "rule", "formula", "sources", "record_ids",
                 "record_count", "county"]


@dataclass
class RollupResult:
    values: pd.DataFrame  # VALUE_COLUMNS, every level
    warnings: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)  # indicator → why it has no 市 / 省 value
    notes: list[str] = field(default_factory=list)


def _units(county_values: Mapping[str, pd.DataFrame], units: pd.DataFrame) -> pd.DataFrame:
    """Every unit of the tree: the region's 省 / 市 (from ``units``), the counties and their 乡 / 村 (from the runs),
    with their parents; counties hang under their 市 (or the region itself for a city region)."""
    region = units[units["level"].isin(REGION_LEVELS)]
    county_parent = dict(zip(units.loc[units["level"] == "county", "code"],
                             units.loc[units["level"] == "county", "parent_code"]))
    rows = [dict(code=r.code, name=r.name, level=r.level, parent_code=r.parent_code) for r in region.itertuples()]
    for county, frame in sorted(county_values.items()):
        if county not in county_parent:
            raise RuleError(f"county {county} has an indicator run but is not in the region's units; register it")
        one = frame.drop_duplicates("unit_code")
        own = one[one["unit_code"] == county]
        if len(own) == 0:
            raise RuleError(f"the indicator run of county {county} has no county row (unit {county}); its xzq layer "
                            "names another county")
        for r in one.itertuples():
            parent = county_parent[county] if r.level == "county" else r.parent_code
            rows.append(dict(code=str(r.unit_code), name=r.unit_name, level=r.level, parent_code=parent))
    out = pd.DataFrame(rows).drop_duplicates("code")
    rank = out["level"].map({lvl: k for k, lvl in enumerate(ALL_LEVELS)})
    return out.assign(_rank=rank).sort_values(["_rank", "code"]).drop(columns="_rank").reset_index(drop=True)


def rollup_indicators(county_values: Mapping[str, pd.DataFrame], units: pd.DataFrame,
                      registry: Registry) -> RollupResult:
    """The long table of every indicator at every level of the region (see the module docstring)."""
    if not county_values:
        raise RuleError("no county run to roll up")
    tree = _units(county_values, units)
    codes = tree["code"].tolist()
    parents = dict(zip(tree["code"], tree["parent_code"]))
    level_of = dict(zip(tree["code"], tree["level"]))
    region_codes = [c for c in codes if level_of[c] in REGION_LEVELS]
    index = pd.Index(codes, name="unit_code")
    frames = pd.concat([f.assign(county=c) for c, f in county_values.items()], ignore_index=True)
    frames["unit_code"] = frames["unit_code"].astype(str)
    skipped: dict[str, str] = {}
    notes: list[str] = []
    present = set(frames["indicator"])
    wide = pd.DataFrame(index=index)
    counts = pd.DataFrame(index=index)
    for code in registry.indicators:
        if code not in present:
            skipped[code] = "no county computed it"
            continue
        rows = frames[frames["indicator"] == code]
        missing = sorted(set(county_values) - set(rows["county"]))
        column = pd.Series(np.nan, index=index, dtype=float)
        column.loc[rows["unit_code"].to_numpy()] = rows["value"].astype(float).to_numpy()
        wide[code] = column
        n = pd.Series(0, index=index, dtype="int64")
        n.loc[rows["unit_code"].to_numpy()] = rows["record_count"].astype("int64").to_numpy()
        counts[code] = n
        if missing:
            skipped[code] = f"not computed in county(ies) {', '.join(missing)}: no 市 / 省 value"
    # sums, bottom-up over the region's levels: counties → 市 → 省 (a city region: counties → 市)
    for level in ("city", "province"):
        for code in [c for c in region_codes if level_of[c] == level]:
            kids = [c for c in codes if parents.get(c) == code]
            for ind_code, ind in registry.indicators.items():
                if ind_code not in wide.columns or ind.kind == "formula" or ind_code in skipped:
                    continue
                wide.at[code, ind_code] = float(np.sum(wide.loc[kids, ind_code].to_numpy(float)))
                counts.at[code, ind_code] = int(counts.loc[kids, ind_code].sum())
    # ratios: from each region unit's own totals
    region_index = pd.Index(region_codes, name="unit_code")
    for code in registry.order():
        ind = registry.indicators[code]
        if ind.kind != "formula" or code not in wide.columns or code in skipped:
            continue

        def resolve(name, _ind=ind):
            if name in wide.columns:
                return wide.loc[region_index, name]
            if name in registry.params:
                return registry.params[name].series(region_index)
            if name in registry.code_sets:
                return registry.code_sets[name]
            raise RuleError(f"indicator {_ind.code!r}: {name!r} has no value in the roll-up")

        if any(d in skipped for d in registry.dependencies(code)):
            skipped[code] = "reads an indicator that has no 市 / 省 value"
            continue
        assert ind.formula is not None  # kind == 'formula'
        value = ind.formula.evaluate(resolve)
        value = value if isinstance(value, pd.Series) else pd.Series(value, index=region_index)
        value = pd.to_numeric(value, errors="coerce").astype(float).replace([np.inf, -np.inf], np.nan)
        wide.loc[region_index, code] = value.to_numpy()
        deps = sorted(registry.dependencies(code))
        counts.loc[region_index, code] = counts.loc[region_index, deps].sum(axis=1) if deps else 0

    values = _long(wide, counts, tree, parents, registry, skipped, frames)
    warnings = _warnings(values, registry)
    return RollupResult(values, warnings, skipped, notes)


def _long(wide, counts, tree, parents, registry: Registry, skipped, frames) -> pd.DataFrame:
    codes = tree["code"].tolist()
    names = dict(zip(tree["code"], tree["name"]))
    level_of = dict(zip(tree["code"], tree["level"]))
    county_of = {c: (c[:6] if level_of[c] not in REGION_LEVELS else None) for c in codes}
    precision = registry.precision
    out: dict[str, list] = {k: [] for k in VALUE_COLUMNS}
    for code, ind in registry.indicators.items():
        if code not in wide.columns:
            continue
        # units with a value: a skipped indicator keeps its county-and-below rows only
        keep = [c for c in codes if not (code in skipped and level_of[c] in REGION_LEVELS)]
        values = {c: float(wide.at[c, code]) for c in keep}
        tree_parents = {c: (parents.get(c) if parents.get(c) in values else None) for c in keep}
        n = len(keep)
        rounded: dict[str, dict] = {}
        for area_unit in AREA_UNITS:
            if ind.unit == "m2":
                rounded[area_unit] = balance_tree(values, tree_parents, precision[area_unit],
                                                  AREA_UNITS[area_unit][0])
        if ind.unit == "m2":
            shown = rounded["m2"]
        elif ind.additive:
            shown = balance_tree(values, tree_parents, precision[ind.unit])
        else:
            shown = {c: round_half_up(values[c], precision.get(ind.unit, 2)) for c in keep}
        out["indicator"] += [code] * n
        out["name"] += [ind.name] * n
        out["level"] += [level_of[c] for c in keep]
        out["unit_code"] += keep
        out["unit_name"] += [names[c] for c in keep]
        out["parent_code"] += [parents.get(c) for c in keep]
        out["value"] += [values[c] for c in keep]
        out["unit"] += [ind.unit] * n
        for area_unit in AREA_UNITS:
            out[f"value_{area_unit}"] += [rounded[area_unit][c] if ind.unit == "m2" else float("nan") for c in keep]
        out["value_rounded"] += [shown[c] for c in keep]
        out["rule"] += [ind.rule] * n
        out["formula"] += [ind.formula_text] * n
        sources = list(registry.sources_of(code))
        out["sources"] += [list(sources) for _ in keep]
        out["record_ids"] += [{} for _ in keep]  # the records are in the county runs (county_run_id)
        out["record_count"] += [int(counts.at[c, code]) for c in keep]
        out["county"] += [county_of[c] for c in keep]
    frame = pd.DataFrame(out)
    frame["value"] = frame["value"].astype(float)
    return frame


def _warnings(values: pd.DataFrame, registry: Registry) -> pd.DataFrame:
    rows = []
    for code, ind in registry.indicators.items():
        if not ind.thresholds:
            continue
        for r in values[values["indicator"] == code].itertuples():
            for t in crossed_thresholds(r.value, list(ind.thresholds)):
                rows.append({"indicator": code, "name": ind.name, "level": r.level, "unit_code": r.unit_code,
                             "unit_name": r.unit_name, "value": r.value, "value_rounded": r.value_rounded,
                             "unit": ind.unit, "op": t.op, "threshold": t.value, "label": t.label,
                             "severity": t.severity})
    columns = ["indicator", "name", "level", "unit_code", "unit_name", "value", "value_rounded", "unit", "op",
               "threshold", "label", "severity"]
    return pd.DataFrame(rows, columns=columns)

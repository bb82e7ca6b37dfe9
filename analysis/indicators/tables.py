"""The long table of values (balanced, with 口径 and drill-down ids), warnings, and the wide table per level."""

from __future__ import annotations

import pandas as pd

from layers.errors import RuleError

from ..balance import AREA_UNITS, balance_tree, round_half_up
from ..scoring import crossed_thresholds
from .registry import LEVELS, Registry


def _complete_units(units: pd.DataFrame, village_series: list[pd.Series]) -> pd.DataFrame:
    """Add villages met in the data but absent from xzq (and their township / county), named by code."""
    known = set(units["code"])
    extra = []
    for series in village_series:
        for code in pd.unique(series.astype(str)):
            for level, n in (("village", 12), ("township", 9), ("county", 6)):
                c = code[:n]
                if c not in known:
                    known.add(c)
                    extra.append({"code": c, "name": f"{c} (不在行政区图层中)", "level": level})
    if extra:
        units = pd.concat([units, pd.DataFrame(extra)], ignore_index=True)
    for level, n in (("township", 6), ("village", 9)):  # parents of xzq units must exist too
        for code in units.loc[units["level"] == level, "code"].tolist():
            parent = code[:n]
            if parent not in known:
                known.add(parent)
                parent_level = "county" if n == 6 else "township"
                units = pd.concat([units, pd.DataFrame([{"code": parent, "name": f"{parent} (不在行政区图层中)",
                                                         "level": parent_level}])], ignore_index=True)
    rank = units["level"].map({lvl: k for k, lvl in enumerate(LEVELS)})
    units = units.assign(_rank=rank).sort_values(["_rank", "code"]).drop(columns="_rank")
    parent_len = units["level"].map({"county": 0, "township": 6, "village": 9})
    units["parent_code"] = [c[:n] if n else None for c, n in zip(units["code"], parent_len)]
    return units.reset_index(drop=True)


def _long_table(wide: pd.DataFrame, units: pd.DataFrame, registry: Registry,
                ids_by_unit: dict[str, dict[str, dict[str, list]]]) -> pd.DataFrame:
    parents = dict(zip(units["code"], units["parent_code"]))
    precision = registry.precision
    codes = units["code"].tolist()
    levels, names, parent_codes = units["level"].tolist(), units["name"].tolist(), units["parent_code"].tolist()
    columns: dict[str, list] = {k: [] for k in (
        "indicator", "name", "level", "unit_code", "unit_name", "parent_code", "value", "unit", "value_m2",
        "value_ha", "value_mu", "value_rounded", "rule", "formula", "sources", "record_ids", "record_count")}
    nan = [float("nan")] * len(codes)
    for code in [c for c in registry.indicators if c in wide.columns]:
        ind = registry.indicators[code]
        values = dict(zip(codes, wide[code].tolist()))
        n = len(codes)
        columns["indicator"] += [code] * n
        columns["name"] += [ind.name] * n
        columns["level"] += levels
        columns["unit_code"] += codes
        columns["unit_name"] += names
        columns["parent_code"] += parent_codes
        columns["value"] += [values[u] for u in codes]
        columns["unit"] += [ind.unit] * n
        for area_unit in AREA_UNITS:
            if ind.unit == "m2":
                rounded = balance_tree(values, parents, precision[area_unit], AREA_UNITS[area_unit][0])
                columns[f"value_{area_unit}"] += [rounded[u] for u in codes]
            else:
                columns[f"value_{area_unit}"] += nan
        if ind.unit == "m2":
            columns["value_rounded"] += columns["value_m2"][-n:]
        elif ind.additive:  # counts and other sums balance like areas
            rounded = balance_tree(values, parents, precision[ind.unit])
            columns["value_rounded"] += [rounded[u] for u in codes]
        else:  # ratios: each rounded on its own
            columns["value_rounded"] += [round_half_up(values[u], precision.get(ind.unit, 2)) for u in codes]
        columns["rule"] += [ind.rule] * n
        columns["formula"] += [ind.formula_text] * n
        sources = list(registry.sources_of(code))
        columns["sources"] += [list(sources) for _ in codes]
        ids = [ids_by_unit.get(code, {}).get(u, {}) for u in codes]
        columns["record_ids"] += ids
        columns["record_count"] += [sum(len(v) for v in d.values()) for d in ids]
    out = pd.DataFrame(columns)
    out["value"] = out["value"].astype(float)
    return out


def _warnings(values: pd.DataFrame, registry: Registry) -> pd.DataFrame:
    rows = []
    for code, ind in registry.indicators.items():
        if not ind.thresholds:
            continue
        for _, row in values[values["indicator"] == code].iterrows():
            for t in crossed_thresholds(row["value"], list(ind.thresholds)):
                rows.append({"indicator": code, "name": ind.name, "level": row["level"],
                             "unit_code": row["unit_code"], "unit_name": row["unit_name"],
                             "value": row["value"], "value_rounded": row["value_rounded"], "unit": ind.unit,
                             "op": t.op, "threshold": t.value, "label": t.label, "severity": t.severity})
    columns = ["indicator", "name", "level", "unit_code", "unit_name", "value", "value_rounded", "unit", "op",
               "threshold", "label", "severity"]
    return pd.DataFrame(rows, columns=columns)


def wide_table(values: pd.DataFrame, level: str | None = None, area_unit: str = "ha") -> pd.DataFrame:
    """One row per unit, one column per indicator (areas in ``area_unit``, balanced), for reports."""
    if area_unit not in AREA_UNITS:
        raise RuleError(f"unknown area unit {area_unit!r}; use one of {sorted(AREA_UNITS)}")
    frame = values if level is None else values[values["level"] == level]
    shown = frame["value_rounded"].where(frame["unit"] != "m2", frame[f"value_{area_unit}"])
    table = frame.assign(shown=shown).pivot(index="unit_code", columns="indicator", values="shown")
    units = frame.drop_duplicates("unit_code").set_index("unit_code")[["unit_name", "level"]]
    order = list(dict.fromkeys(frame["indicator"]))
    table = units.join(table[order]).reset_index()
    return table

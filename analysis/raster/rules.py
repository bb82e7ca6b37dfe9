"""The raster rules (rules.yaml beside this module): validated into frozen dataclasses.

``default_rules()`` reads the packaged defaults; ``parse_rules(doc)`` validates a document a caller has read
(the CLI reads a user's file and passes its parsed contents). Unknown keys and impossible values raise
RuleError naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from importlib import resources

import yaml

from layers.errors import RuleError


@dataclass(frozen=True)
class SlopeRules:
    grade_breaks: tuple[float, ...] = (2.0, 6.0, 15.0, 25.0)
    cultivated: tuple[str, ...] = ("0101", "0102", "0103")
    min_dem_share: float = 0.5
    block: int = 1024


@dataclass(frozen=True)
class ChangeType:
    name: str
    min_delta_ndvi: float | None = None
    max_delta_ndvi: float | None = None

    def matches(self, delta: float) -> bool:
        if self.min_delta_ndvi is not None and not delta >= self.min_delta_ndvi:
            return False
        if self.max_delta_ndvi is not None and not delta <= self.max_delta_ndvi:
            return False
        return True


@dataclass(frozen=True)
class ChangeRules:
    bands: dict = field(default_factory=lambda: {"blue": 1, "green": 2, "red": 3, "nir": 4})
    measure: str = "cva"
    threshold: str | float = "otsu"
    threshold_floor: float = 3.5
    histogram_bins: int = 2048
    opening_radius: int = 1
    closing_radius: int = 1
    min_area_m2: float = 200.0
    illumination_max_angle: float = 3.0
    seasonal_min_ndvi: float = 0.3
    block: int = 1024
    change_types: tuple[ChangeType, ...] = (ChangeType("植被减少", max_delta_ndvi=-0.2),
                                            ChangeType("植被增加", min_delta_ndvi=0.2), ChangeType("光谱变化"))

    def change_type(self, delta_ndvi: float) -> str:
        for t in self.change_types:
            if t.matches(delta_ndvi):
                return t.name
        return "其他"


@dataclass(frozen=True)
class ViewshedRules:
    target_height: float = 0.0
    earth_curvature: bool = True
    refraction_coefficient: float = 0.13
    default_height: float = 30.0
    default_range: float = 3000.0
    algorithm: str = "r2"


@dataclass(frozen=True)
class RasterRules:
    slope: SlopeRules = field(default_factory=SlopeRules)
    change: ChangeRules = field(default_factory=ChangeRules)
    viewshed: ViewshedRules = field(default_factory=ViewshedRules)
    version: int = 1


def _section(cls, raw, name: str, convert: dict):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise RuleError(f"raster rules: {name} must be a mapping")
    known = {f.name for f in fields(cls)}
    extra = set(raw) - known
    if extra:
        raise RuleError(f"raster rules: unknown key(s) {sorted(extra)} in {name}; allowed: {sorted(known)}")
    values = {}
    for key, val in raw.items():
        try:
            values[key] = convert[key](val) if key in convert else val
        except (TypeError, ValueError) as exc:
            raise RuleError(f"raster rules: {name}.{key} = {val!r} is invalid ({exc})") from None
    return cls(**values)


def _positive(v) -> float:
    v = float(v)
    if not v > 0:
        raise ValueError("must be > 0")
    return v


def _non_negative_int(v) -> int:
    if int(v) != float(v) or int(v) < 0:
        raise ValueError("must be a whole number ≥ 0")
    return int(v)


def _threshold(v):
    if isinstance(v, str):
        if v != "otsu":
            raise ValueError('use "otsu" or a number')
        return v
    return _positive(v)


def _bands(v) -> dict:
    if not isinstance(v, dict) or set(v) != {"blue", "green", "red", "nir"}:
        raise ValueError("give blue, green, red and nir band numbers")
    return {k: int(b) for k, b in v.items()}


def _breaks(v) -> tuple[float, ...]:
    b = tuple(float(x) for x in v)
    if len(b) != 4 or list(b) != sorted(set(b)) or b[0] <= 0:
        raise ValueError("four increasing positive angles, e.g. [2, 6, 15, 25]")
    return b


def _change_types(v) -> tuple[ChangeType, ...]:
    out = []
    for item in v:
        if not isinstance(item, dict) or "name" not in item or set(item) - {"name", "min_delta_ndvi",
                                                                              "max_delta_ndvi"}:
            raise ValueError("each change type has name and optional min_delta_ndvi / max_delta_ndvi")
        out.append(ChangeType(str(item["name"]),
                              None if item.get("min_delta_ndvi") is None else float(item["min_delta_ndvi"]),
                              None if item.get("max_delta_ndvi") is None else float(item["max_delta_ndvi"])))
    return tuple(out)


def _measure(v) -> str:
    if v not in ("cva", "ndvi"):
        raise ValueError("use cva or ndvi")
    return v


def _algorithm(v) -> str:
    if v not in ("r2", "r3"):
        raise ValueError("use r2 (rays to the perimeter, fast) or r3 (exact line of sight to every cell)")
    return v


def _fraction(v) -> float:
    v = float(v)
    if not 0 <= v <= 1:
        raise ValueError("must be between 0 and 1")
    return v


def parse_rules(doc: dict | None) -> RasterRules:
    doc = doc or {}
    if not isinstance(doc, dict):
        raise RuleError("raster rules must be a YAML mapping with slope / change / viewshed sections")
    extra = set(doc) - {"version", "slope", "change", "viewshed"}
    if extra:
        raise RuleError(f"raster rules: unknown section(s) {sorted(extra)}; use slope, change, viewshed")
    slope = _section(SlopeRules, doc.get("slope"), "slope", {
        "grade_breaks": _breaks, "cultivated": lambda v: tuple(str(x) for x in v),
        "min_dem_share": _fraction, "block": lambda v: int(_positive(v))})
    change = _section(ChangeRules, doc.get("change"), "change", {
        "bands": _bands, "measure": _measure, "threshold": _threshold, "threshold_floor": float,
        "histogram_bins": lambda v: int(_positive(v)), "opening_radius": _non_negative_int,
        "closing_radius": _non_negative_int, "min_area_m2": float, "illumination_max_angle": float,
        "seasonal_min_ndvi": float, "block": lambda v: int(_positive(v)), "change_types": _change_types})
    viewshed = _section(ViewshedRules, doc.get("viewshed"), "viewshed", {
        "target_height": float, "earth_curvature": bool, "refraction_coefficient": float,
        "default_height": _positive, "default_range": _positive, "algorithm": _algorithm})
    return RasterRules(slope=slope, change=change, viewshed=viewshed, version=int(doc.get("version", 1)))


def default_rules_text() -> str:
    return resources.files(__package__).joinpath("rules.yaml").read_text(encoding="utf-8")


def default_rules() -> RasterRules:
    """The packaged defaults (analysis/raster/rules.yaml)."""
    return parse_rules(yaml.safe_load(default_rules_text()))

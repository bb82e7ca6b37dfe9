"""The raster rules (rules.yaml beside this module), as typed models (pydantic, frozen).

``default_rules()`` reads the packaged defaults; ``parse_rules(doc)`` validates a document a caller has read
(the CLI reads a user's file and passes its parsed contents). Unknown keys and impossible values raise
RuleError naming the key.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from ..validation import RuleModel, parse

Code = Annotated[str, BeforeValidator(str)]  # land-use codes: YAML may give 101 for "0101" — kept as written


class SlopeRules(RuleModel):
    grade_breaks: tuple[float, float, float, float] = (2.0, 6.0, 15.0, 25.0)
    cultivated: tuple[Code, ...] = ("0101", "0102", "0103")
    min_dem_share: Annotated[float, Field(ge=0, le=1)] = 0.5
    block: PositiveInt = 1024

    @field_validator("grade_breaks")
    @classmethod
    def _increasing(cls, b: tuple[float, ...]) -> tuple[float, ...]:
        if list(b) != sorted(set(b)) or b[0] <= 0:
            raise ValueError("must be four increasing positive angles, e.g. [2, 6, 15, 25]")
        return b


class ChangeType(RuleModel):
    name: str
    min_delta_ndvi: float | None = None
    max_delta_ndvi: float | None = None

    def matches(self, delta: float) -> bool:
        if self.min_delta_ndvi is not None and not delta >= self.min_delta_ndvi:
            return False
        return self.max_delta_ndvi is None or delta <= self.max_delta_ndvi


class ChangeRules(RuleModel):
    bands: dict[str, int] = Field(default_factory=lambda: {"blue": 1, "green": 2, "red": 3, "nir": 4})
    measure: Literal["cva", "ndvi"] = "cva"
    threshold: Literal["otsu"] | PositiveFloat = "otsu"
    threshold_floor: float = 3.5
    histogram_bins: PositiveInt = 2048
    opening_radius: NonNegativeInt = 1
    closing_radius: NonNegativeInt = 1
    min_area_m2: float = 200.0
    illumination_max_angle: float = 3.0
    seasonal_min_ndvi: float = 0.3
    block: PositiveInt = 1024
    change_types: tuple[ChangeType, ...] = (ChangeType(name="植被减少", max_delta_ndvi=-0.2),
                                            ChangeType(name="植被增加", min_delta_ndvi=0.2),
                                            ChangeType(name="光谱变化"))

    @field_validator("bands")
    @classmethod
    def _four_bands(cls, v: dict[str, int]) -> dict[str, int]:
        if set(v) != {"blue", "green", "red", "nir"}:
            raise ValueError("must give the blue, green, red and nir band numbers")
        return v

    def change_type(self, delta_ndvi: float) -> str:
        for t in self.change_types:
            if t.matches(delta_ndvi):
                return t.name
        return "其他"


class ViewshedRules(RuleModel):
    target_height: float = 0.0
    earth_curvature: bool = True
    refraction_coefficient: float = 0.13
    default_height: PositiveFloat = 30.0
    default_range: PositiveFloat = 3000.0
    # r2: rays to the perimeter (fast); r3: an exact line of sight to every cell
    algorithm: Literal["r2", "r3"] = "r2"


class RasterRules(RuleModel):
    slope: SlopeRules = Field(default_factory=lambda: SlopeRules())
    change: ChangeRules = Field(default_factory=lambda: ChangeRules())
    viewshed: ViewshedRules = Field(default_factory=lambda: ViewshedRules())
    version: int = 1

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, v: object) -> object:
        if not isinstance(v, dict):
            raise ValueError("must be a YAML mapping with slope / change / viewshed sections")
        return v

    @field_validator("slope", "change", "viewshed", mode="before")
    @classmethod
    def _empty_section(cls, v: object) -> object:
        return {} if v is None else v


def parse_rules(doc: dict | None) -> RasterRules:
    """The raster rules of a document (None → the defaults); RuleError naming the key on any mistake."""
    return parse(RasterRules, doc or {}, "raster rules")


def default_rules_text() -> str:
    return resources.files(__package__).joinpath("rules.yaml").read_text(encoding="utf-8")


def default_rules() -> RasterRules:
    """The packaged defaults (analysis/raster/rules.yaml)."""
    return parse_rules(yaml.safe_load(default_rules_text()))

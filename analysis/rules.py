"""The analysis rules: which codes count as construction, tolerances, thresholds, conflict tables.

The rules are data (analysis/rules.yaml is the documented default); this module loads a rules mapping,
checks every key, and returns a frozen :class:`Rules`. It reads no file itself except through
:func:`load_rules`, which the services layer calls with an explicit path (or none, for the packaged default).

Validation is strict — a typed model of the file (:class:`RulesDoc`, pydantic): an unknown key, a wrong type, an
unknown land-use code or an impossible threshold raises :class:`layers.errors.RuleError` naming the dotted key and
the value, because a wrong number would follow. Keys added after version 1 was published
(change_patches.site_min_shared_edge_m, dedupe.site_link_min_overlap_m2) are optional, with their defaults written
into the stored rules.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from layers.codes import CODE_TABLES, SANDIAO
from layers.errors import RuleError
from layers.yamlfile import read_yaml_file

from .validation import RuleModel, worded

MISSING_HINT = "add it (see analysis/rules.yaml for the default and its meaning)"

DEFAULT_RULES_PATH = Path(__file__).with_name("rules.yaml")

DATE_RULES = ("survey_date", "hsx", "any")


@dataclass(frozen=True)
class ZoneUseConflict:
    zone: str  # GHFQDM prefix
    zone_zh: str
    uses: tuple[str, ...]  # TDYT prefixes
    reason: str

    def matches(self, zone_code: str, use_code: str) -> bool:
        return zone_code.startswith(self.zone) and any(use_code.startswith(u) for u in self.uses)


@dataclass(frozen=True)
class Rules:
    code_set: str
    survey_date: dt.date
    cultivated: frozenset[str]
    construction: frozenset[str]
    agricultural: frozenset[str]
    unused: frozenset[str]
    legal_kinds: tuple[str, ...]
    compliant_kinds: tuple[str, ...]
    approval_date_rule: str
    legal_min_share: float
    partial_min_share: float
    pseudo_min_area_m2: float
    unchanged_min_share: float | None
    changes_enabled: bool
    change_sliver_m2: float
    change_source: str
    change_id_prefix: str
    dedupe_min_overlap_ratio: float
    source_order: tuple[str, ...]
    dedupe_geometry: str
    conflict_min_area_m2: float
    outside_czkfbj_exempt: frozenset[str]
    zone_use: tuple[ZoneUseConflict, ...]
    approve_kinds: tuple[str, ...]
    supply_kinds: tuple[str, ...]
    unsupplied_min_share: float
    idle_years: int
    idle_check_dltb: bool
    idle_unbuilt_codes: frozenset[str]
    idle_max_built_share: float
    source: dict  # the mapping the rules were built from (normalised), for the run record
    site_min_shared_edge_m: float = 1.0
    site_link_min_overlap_m2: float = 1.0

    # --- derived views ---------------------------------------------------------------------------
    def category(self, code: str) -> str | None:
        """'cultivated' | 'agri_other' | 'construction' | 'unused' | None for a DLBM code."""
        if code in self.cultivated:
            return "cultivated"
        if code in self.construction:
            return "construction"
        if code in self.agricultural:
            return "agri_other"
        if code in self.unused:
            return "unused"
        return None

    def known_codes(self) -> frozenset[str]:
        return self.construction | self.agricultural | self.unused

    def to_dict(self) -> dict:
        """The rules as loaded (normalised plain data: dates as ISO strings, lists sorted where unordered)."""
        return self.source

    def to_json(self) -> str:
        return json.dumps(self.source, ensure_ascii=False, sort_keys=True)

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()


# --- loading ---------------------------------------------------------------------------------------

def load_rules(path: str | Path | None = None) -> Rules:
    """Load and validate a rules YAML file; ``None`` loads the packaged default (analysis/rules.yaml)."""
    path = Path(path) if path is not None else DEFAULT_RULES_PATH
    raw = read_yaml_file(path, "rules",
                         missing_hint=f"give an existing YAML file (the default is {DEFAULT_RULES_PATH})")
    return rules_from_dict(raw, where=str(path))


def default_rules() -> Rules:
    return load_rules(None)


def _normalise(value):
    """Plain-data copy for the run record: dates → ISO strings, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


# --- the typed model of the file --------------------------------------------------------------------------

Share = Annotated[float, Field(ge=0.0, le=1.0, strict=True)]
Area = Annotated[float, Field(ge=0.0, strict=True)]


def _texts(value) -> list[str]:
    """A YAML list of names or codes as stripped strings (a code written 601 stays visible as '601')."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"must be a list, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ValueError(f"must list strings, got item {item!r}")
        out.append(str(item).strip())
    if len(set(out)) != len(out):
        raise ValueError(f"lists {sorted({x for x in out if out.count(x) > 1})} more than once")
    return out


def _nonempty(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("must not be empty")
    return value


def _text(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value.strip()


Names = Annotated[list[str], BeforeValidator(_texts)]
SomeNames = Annotated[list[str], BeforeValidator(_texts), AfterValidator(_nonempty)]
Text = Annotated[str, BeforeValidator(_text)]


class LandClassesDoc(RuleModel):
    cultivated: SomeNames
    construction: SomeNames
    agricultural: SomeNames
    unused: SomeNames

    @model_validator(mode="after")
    def _one_category_each(self):
        groups = {"construction": set(self.construction), "agricultural": set(self.agricultural),
                  "unused": set(self.unused)}
        for a, b in (("construction", "agricultural"), ("construction", "unused"), ("agricultural", "unused")):
            both = sorted(groups[a] & groups[b])
            if both:
                raise ValueError(f"land_classes.{a} and land_classes.{b} both list {both}; a code belongs to one "
                                 "category")
        extra = sorted(set(self.cultivated) - groups["agricultural"])
        if extra:
            raise ValueError(f"land_classes.cultivated lists {extra} which land_classes.agricultural lacks; 耕地 is "
                             "农用地")
        return self


class ApprovalsDoc(RuleModel):
    legal_kinds: SomeNames
    compliant_kinds: Names
    date_rule: Literal["survey_date", "hsx", "any"]

    @model_validator(mode="after")
    def _disjoint(self):
        both = sorted(set(self.legal_kinds) & set(self.compliant_kinds))
        if both:
            raise ValueError(f"approvals.compliant_kinds and approvals.legal_kinds both list {both}")
        return self


class JudgementDoc(RuleModel):
    legal_min_share: Share
    partial_min_share: Share

    @model_validator(mode="after")
    def _ordered(self):
        if not 0 < self.partial_min_share < self.legal_min_share:
            raise ValueError(f"judgement.partial_min_share must satisfy 0 < partial_min_share < legal_min_share, "
                             f"got {self.partial_min_share} and {self.legal_min_share}")
        return self


class PseudoChangeDoc(RuleModel):
    min_area_m2: Area
    unchanged_min_share: Share | None

    @field_validator("unchanged_min_share")
    @classmethod
    def _majority(cls, v):
        if v is not None and v <= 0.5:
            raise ValueError(f"must be > 0.5 (a majority of the patch unchanged) or null, got {v}")
        return v


class ChangePatchesDoc(RuleModel):
    enabled: StrictBool
    sliver_m2: Area
    source: Text
    id_prefix: Text
    site_min_shared_edge_m: Annotated[float, Field(gt=0.0, strict=True)] = 1.0


class DedupeDoc(RuleModel):
    min_overlap_ratio: Share
    source_order: Names
    geometry: Literal["union", "representative", "latest"]
    site_link_min_overlap_m2: Annotated[float, Field(gt=0.0, strict=True)] = 1.0

    @field_validator("min_overlap_ratio")
    @classmethod
    def _positive(cls, v):
        if v <= 0:
            raise ValueError("must be > 0: with 0, patches that merely touch would merge")
        return v


class ZoneUseDoc(RuleModel):
    zone: Annotated[str, BeforeValidator(lambda v: str(v).strip())]
    zone_zh: Text
    uses: SomeNames
    reason: Text


class ConflictsDoc(RuleModel):
    min_area_m2: Area
    outside_czkfbj_exempt: Names
    zone_use: list[ZoneUseDoc] = Field(default_factory=list)


class SupplyDoc(RuleModel):
    approve_kinds: SomeNames
    supply_kinds: Names
    unsupplied_min_share: Share


class IdleDoc(RuleModel):
    years: Annotated[int, Field(ge=0, le=50, strict=True)]
    check_dltb: StrictBool
    unbuilt_codes: Names
    max_built_share: Share


def _date(value):
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    if isinstance(value, dt.date):
        return value
    raise ValueError(f"must be a date YYYY-MM-DD, got {value!r}")


class RulesDoc(RuleModel):
    version: Literal[1]
    code_set: Literal["sandiao", "erdiao", "ydyh"]
    survey_date: Annotated[dt.date, BeforeValidator(_date)]
    land_classes: LandClassesDoc
    approvals: ApprovalsDoc
    judgement: JudgementDoc
    pseudo_change: PseudoChangeDoc
    change_patches: ChangePatchesDoc
    dedupe: DedupeDoc
    conflicts: ConflictsDoc
    supply: SupplyDoc
    idle: IdleDoc

    @model_validator(mode="after")
    def _codes_of_the_set(self):
        if self.code_set != SANDIAO:
            raise ValueError(f"code_set {self.code_set!r}: only the 三调 code set (sandiao) has land-class rules so "
                             "far; a DLTB in 用地用海 is read through the crosswalk (layers/crosswalk_ydyh.yaml)")
        table = CODE_TABLES[self.code_set]
        lc = self.land_classes
        for key, codes in (("land_classes.cultivated", lc.cultivated), ("land_classes.construction", lc.construction),
                           ("land_classes.agricultural", lc.agricultural), ("land_classes.unused", lc.unused),
                           ("conflicts.outside_czkfbj_exempt", self.conflicts.outside_czkfbj_exempt),
                           ("idle.unbuilt_codes", self.idle.unbuilt_codes)):
            bad = sorted(c for c in codes if c not in table)
            if bad:
                raise ValueError(f"{key} lists codes that are not land-use codes of the code set: {bad} (quote codes "
                                 "like \"0101\" so YAML keeps the leading zero)")
        missing = sorted(set(table) - set(lc.construction) - set(lc.agricultural) - set(lc.unused))
        if missing:
            raise ValueError(f"land_classes.construction / agricultural / unused leave codes {missing} unclassified; "
                             "put each code of the code set in one category")
        not_construction = sorted(set(self.conflicts.outside_czkfbj_exempt) - set(lc.construction))
        if not_construction:
            raise ValueError(f"conflicts.outside_czkfbj_exempt lists {not_construction}, which are not construction "
                             "codes")
        return self


def rules_from_dict(raw, where: str = "<mapping>") -> Rules:
    """Validate a rules mapping (as read from YAML) and build :class:`Rules`."""
    if not isinstance(raw, dict):
        raise RuleError(f"rules {where}: the file must be a YAML mapping of sections, got {type(raw).__name__}")
    try:
        doc = RulesDoc.model_validate(raw)
    except ValidationError as exc:
        raise RuleError(f"rules {where}: {worded(exc, RulesDoc, MISSING_HINT)}") from None
    lc = doc.land_classes
    source = _normalise(doc.model_dump(mode="json"))
    return Rules(
        code_set=doc.code_set, survey_date=doc.survey_date,
        cultivated=frozenset(lc.cultivated), construction=frozenset(lc.construction),
        agricultural=frozenset(lc.agricultural), unused=frozenset(lc.unused),
        legal_kinds=tuple(doc.approvals.legal_kinds), compliant_kinds=tuple(doc.approvals.compliant_kinds),
        approval_date_rule=doc.approvals.date_rule,
        legal_min_share=doc.judgement.legal_min_share, partial_min_share=doc.judgement.partial_min_share,
        pseudo_min_area_m2=doc.pseudo_change.min_area_m2, unchanged_min_share=doc.pseudo_change.unchanged_min_share,
        changes_enabled=doc.change_patches.enabled, change_sliver_m2=doc.change_patches.sliver_m2,
        change_source=doc.change_patches.source, change_id_prefix=doc.change_patches.id_prefix,
        dedupe_min_overlap_ratio=doc.dedupe.min_overlap_ratio, source_order=tuple(doc.dedupe.source_order),
        dedupe_geometry=doc.dedupe.geometry,
        conflict_min_area_m2=doc.conflicts.min_area_m2,
        outside_czkfbj_exempt=frozenset(doc.conflicts.outside_czkfbj_exempt),
        zone_use=tuple(ZoneUseConflict(zone=z.zone, zone_zh=z.zone_zh, uses=tuple(z.uses), reason=z.reason)
                       for z in doc.conflicts.zone_use),
        approve_kinds=tuple(doc.supply.approve_kinds), supply_kinds=tuple(doc.supply.supply_kinds),
        unsupplied_min_share=doc.supply.unsupplied_min_share,
        idle_years=doc.idle.years, idle_check_dltb=doc.idle.check_dltb,
        idle_unbuilt_codes=frozenset(doc.idle.unbuilt_codes), idle_max_built_share=doc.idle.max_built_share,
        source=source, site_min_shared_edge_m=doc.change_patches.site_min_shared_edge_m,
        site_link_min_overlap_m2=doc.dedupe.site_link_min_overlap_m2,
    )


def rules_as_dict(rules: Rules) -> dict:
    """Every field of the built rules (for debugging and docs)."""
    return _normalise(asdict(rules))

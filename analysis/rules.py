"""The analysis rules: which codes count as construction, tolerances, thresholds, conflict tables.

The rules are data (analysis/rules.yaml is the documented default); this module loads a rules mapping,
checks every key, and returns a frozen :class:`Rules`. It reads no file itself except through
:func:`load_rules`, which the services layer calls with an explicit path (or none, for the packaged default).

Validation is strict: an unknown key, a wrong type, an unknown land-use code or an impossible threshold
raises :class:`layers.errors.RuleError` naming the key and the value, because a wrong number would follow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path


from layers.codes import CODE_SET_NAMES, CODE_TABLES, SANDIAO
from layers.errors import RuleError
from layers.yamlfile import read_yaml_file

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
    raw = read_yaml_file(path, "rules", missing_hint=f"give an existing YAML file (the default is {DEFAULT_RULES_PATH})")
    return rules_from_dict(raw, where=str(path))


def default_rules() -> Rules:
    return load_rules(None)


_TOP_KEYS = {"version", "code_set", "survey_date", "land_classes", "approvals", "judgement", "pseudo_change",
             "change_patches", "dedupe", "conflicts", "supply", "idle"}
_SECTION_KEYS = {
    "land_classes": {"cultivated", "construction", "agricultural", "unused"},
    "approvals": {"legal_kinds", "compliant_kinds", "date_rule"},
    "judgement": {"legal_min_share", "partial_min_share"},
    "pseudo_change": {"min_area_m2", "unchanged_min_share"},
    "change_patches": {"enabled", "sliver_m2", "source", "id_prefix", "site_min_shared_edge_m"},
    "dedupe": {"min_overlap_ratio", "source_order", "geometry", "site_link_min_overlap_m2"},
    "conflicts": {"min_area_m2", "outside_czkfbj_exempt", "zone_use"},
    "supply": {"approve_kinds", "supply_kinds", "unsupplied_min_share"},
    "idle": {"years", "check_dltb", "unbuilt_codes", "max_built_share"},
}


class _Reader:
    """Typed access to one section of the rules mapping; every error names the dotted key."""

    def __init__(self, data: dict, where: str, prefix: str = ""):
        self.data, self.where, self.prefix = data, where, prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, msg: str):
        raise RuleError(f"rules {self.where}: {self.key(name)} {msg}")

    def get(self, name: str):
        if name not in self.data:
            self.fail(name, "is missing; add it (see analysis/rules.yaml for the default and its meaning)")
        return self.data[name]

    def number(self, name: str, lo: float | None = None, hi: float | None = None, allow_none=False,
               integer=False) -> float | int | None:
        value = self.get(name)
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(name, f"must be a number, got {value!r}")
        if integer and int(value) != value:
            self.fail(name, f"must be a whole number, got {value!r}")
        if lo is not None and value < lo:
            self.fail(name, f"must be ≥ {lo}, got {value!r}")
        if hi is not None and value > hi:
            self.fail(name, f"must be ≤ {hi}, got {value!r}")
        return int(value) if integer else float(value)

    def boolean(self, name: str) -> bool:
        value = self.get(name)
        if not isinstance(value, bool):
            self.fail(name, f"must be true or false, got {value!r}")
        return value

    def text(self, name: str, choices=None) -> str:
        value = self.get(name)
        if not isinstance(value, str) or not value.strip():
            self.fail(name, f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(name, f"must be one of {list(choices)}, got {value!r}")
        return value.strip()

    def strings(self, name: str, allow_empty=True) -> tuple[str, ...]:
        value = self.get(name)
        if value is None and allow_empty:
            return ()
        if not isinstance(value, list):
            self.fail(name, f"must be a list, got {value!r}")
        out = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                self.fail(name, f"must list strings, got item {item!r}")
            out.append(str(item).strip())
        if not out and not allow_empty:
            self.fail(name, "must not be empty")
        if len(set(out)) != len(out):
            dup = sorted({x for x in out if out.count(x) > 1})
            self.fail(name, f"lists {dup} more than once")
        return tuple(out)

    def section(self, name: str) -> _Reader:
        value = self.get(name)
        if not isinstance(value, dict):
            self.fail(name, f"must be a mapping, got {value!r}")
        allowed = _SECTION_KEYS.get(name)
        if allowed is not None:
            extra = set(value) - allowed
            if extra:
                self.fail(name, f"has unknown keys {sorted(extra)}; allowed: {sorted(allowed)}")
        return _Reader(value, self.where, f"{self.prefix}{name}.")


def _codes(reader: _Reader, name: str, table: dict, allow_empty=False) -> frozenset[str]:
    codes = reader.strings(name, allow_empty=allow_empty)
    bad = sorted(c for c in codes if c not in table)
    if bad:
        reader.fail(name, f"lists codes that are not land-use codes of the code set: {bad} (quote codes like "
                          f"\"0101\" so YAML keeps the leading zero)")
    return frozenset(codes)


def _normalise(value):
    """Plain-data copy for the run record: dates → ISO strings, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


# Keys added after version 1 was first published: optional, with these defaults (written into the stored rules).
_DEFAULTS = {("change_patches", "site_min_shared_edge_m"): 1.0, ("dedupe", "site_link_min_overlap_m2"): 1.0}


def rules_from_dict(raw, where: str = "<mapping>") -> Rules:
    """Validate a rules mapping (as read from YAML) and build :class:`Rules`."""
    if not isinstance(raw, dict):
        raise RuleError(f"rules {where}: the file must be a YAML mapping of sections, got {type(raw).__name__}")
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for (section, key), default in _DEFAULTS.items():
        if isinstance(raw.get(section), dict):
            raw[section].setdefault(key, default)
    extra = set(raw) - _TOP_KEYS
    if extra:
        raise RuleError(f"rules {where}: unknown keys {sorted(extra)}; allowed: {sorted(_TOP_KEYS)}")
    top = _Reader(raw, where)
    version = top.get("version")
    if version != 1:
        top.fail("version", f"must be 1 (this yizhangtu reads rules version 1), got {version!r}")
    code_set = top.text("code_set", choices=list(CODE_SET_NAMES))
    if code_set != SANDIAO:
        top.fail("code_set", f"{code_set!r}: only the 三调 code set (sandiao) has land-class rules so far; "
                             "convert the DLTB to 三调 codes")
    table = CODE_TABLES[code_set]

    survey = top.get("survey_date")
    if isinstance(survey, str):
        try:
            survey = dt.date.fromisoformat(survey)
        except ValueError:
            top.fail("survey_date", f"must be a date YYYY-MM-DD, got {survey!r}")
    if isinstance(survey, dt.datetime):
        survey = survey.date()
    if not isinstance(survey, dt.date):
        top.fail("survey_date", f"must be a date YYYY-MM-DD, got {survey!r}")

    lc = top.section("land_classes")
    cultivated = _codes(lc, "cultivated", table)
    construction = _codes(lc, "construction", table)
    agricultural = _codes(lc, "agricultural", table)
    unused = _codes(lc, "unused", table)
    for a_name, a, b_name, b in [("construction", construction, "agricultural", agricultural),
                                 ("construction", construction, "unused", unused),
                                 ("agricultural", agricultural, "unused", unused)]:
        both = sorted(a & b)
        if both:
            lc.fail(a_name, f"and land_classes.{b_name} both list {both}; a code belongs to one category")
    if not cultivated <= agricultural:
        lc.fail("cultivated", f"lists {sorted(cultivated - agricultural)} which land_classes.agricultural "
                              "lacks; 耕地 is 农用地")
    missing = sorted(set(table) - (construction | agricultural | unused))
    if missing:
        lc.fail("construction", f"/ agricultural / unused leave codes {missing} unclassified; put each code "
                                "of the code set in one category")

    ap = top.section("approvals")
    legal_kinds = ap.strings("legal_kinds", allow_empty=False)
    compliant_kinds = ap.strings("compliant_kinds")
    both = sorted(set(legal_kinds) & set(compliant_kinds))
    if both:
        ap.fail("compliant_kinds", f"and approvals.legal_kinds both list {both}")
    date_rule = ap.text("date_rule", choices=DATE_RULES)

    jd = top.section("judgement")
    legal_min = jd.number("legal_min_share", 0.0, 1.0)
    partial_min = jd.number("partial_min_share", 0.0, 1.0)
    if not 0 < partial_min < legal_min:
        jd.fail("partial_min_share", f"must satisfy 0 < partial_min_share < legal_min_share, got {partial_min} "
                                     f"and {legal_min}")

    ps = top.section("pseudo_change")
    min_area = ps.number("min_area_m2", 0.0)
    unchanged = ps.number("unchanged_min_share", 0.0, 1.0, allow_none=True)
    if unchanged is not None and unchanged <= 0.5:
        ps.fail("unchanged_min_share", f"must be > 0.5 (a majority of the patch unchanged) or null, "
                                       f"got {unchanged}")

    ch = top.section("change_patches")
    changes_enabled = ch.boolean("enabled")
    sliver = ch.number("sliver_m2", 0.0)
    change_source = ch.text("source")
    id_prefix = ch.text("id_prefix")
    site_edge = ch.number("site_min_shared_edge_m", 0.0)
    if site_edge <= 0:
        ch.fail("site_min_shared_edge_m", "must be > 0: with 0, pieces touching at a corner would form one site")

    dd = top.section("dedupe")
    ratio = dd.number("min_overlap_ratio", 0.0, 1.0)
    if ratio <= 0:
        dd.fail("min_overlap_ratio", "must be > 0: with 0, patches that merely touch would merge")
    source_order = dd.strings("source_order")
    dedupe_geometry = dd.text("geometry", choices=("union", "representative", "latest"))
    site_link = dd.number("site_link_min_overlap_m2", 0.0)
    if site_link <= 0:
        dd.fail("site_link_min_overlap_m2", "must be > 0: with 0, issued patches that merely touch would merge "
                                            "through a site")

    cf = top.section("conflicts")
    conflict_min = cf.number("min_area_m2", 0.0)
    exempt = _codes(cf, "outside_czkfbj_exempt", table, allow_empty=True)
    not_construction = sorted(exempt - construction)
    if not_construction:
        cf.fail("outside_czkfbj_exempt", f"lists {not_construction}, which are not construction codes")
    zone_use_raw = cf.get("zone_use") or []
    if not isinstance(zone_use_raw, list):
        cf.fail("zone_use", f"must be a list of {{zone, zone_zh, uses, reason}}, got {zone_use_raw!r}")
    zone_use = []
    for i, item in enumerate(zone_use_raw):
        if not isinstance(item, dict) or set(item) - {"zone", "zone_zh", "uses", "reason"}:
            cf.fail(f"zone_use[{i}]", f"must be a mapping with keys zone, zone_zh, uses, reason; got {item!r}")
        r = _Reader(item, where, f"conflicts.zone_use[{i}].")
        zone_use.append(ZoneUseConflict(zone=str(r.get("zone")).strip(), zone_zh=r.text("zone_zh"),
                                        uses=r.strings("uses", allow_empty=False), reason=r.text("reason")))

    sp = top.section("supply")
    approve_kinds = sp.strings("approve_kinds", allow_empty=False)
    supply_kinds = sp.strings("supply_kinds")
    unsupplied_min = sp.number("unsupplied_min_share", 0.0, 1.0)

    idl = top.section("idle")
    idle_years = idl.number("years", 0, 50, integer=True)
    idle_check = idl.boolean("check_dltb")
    unbuilt_codes = _codes(idl, "unbuilt_codes", table, allow_empty=True)
    max_built = idl.number("max_built_share", 0.0, 1.0)

    source = _normalise(raw)
    return Rules(
        code_set=code_set, survey_date=survey,
        cultivated=cultivated, construction=construction, agricultural=agricultural, unused=unused,
        legal_kinds=legal_kinds, compliant_kinds=compliant_kinds, approval_date_rule=date_rule,
        legal_min_share=legal_min, partial_min_share=partial_min,
        pseudo_min_area_m2=min_area, unchanged_min_share=unchanged,
        changes_enabled=changes_enabled, change_sliver_m2=sliver, change_source=change_source,
        change_id_prefix=id_prefix,
        dedupe_min_overlap_ratio=ratio, source_order=source_order, dedupe_geometry=dedupe_geometry,
        conflict_min_area_m2=conflict_min, outside_czkfbj_exempt=exempt, zone_use=tuple(zone_use),
        approve_kinds=approve_kinds, supply_kinds=supply_kinds, unsupplied_min_share=unsupplied_min,
        idle_years=idle_years, idle_check_dltb=idle_check, idle_unbuilt_codes=unbuilt_codes,
        idle_max_built_share=max_built,
        source=source, site_min_shared_edge_m=site_edge, site_link_min_overlap_m2=site_link,
    )


def rules_as_dict(rules: Rules) -> dict:
    """Every field of the built rules (for debugging and docs)."""
    return _normalise(asdict(rules))

"""合规性审查: a proposed site (one polygon) against the control lines, the planning zones and the current land use.

Pure: the site and the layers come in (all in the store's CGCS2000 Gauss-Krüger CRS), a JSON-ready answer goes
out — the site's overlap with every layer (areas, shares, the ids of the features met) and a pass / fail per
rule. The rules are data (analysis/review.yaml, parsed strictly by :func:`parse_review_rules`). Every area is
ellipsoidal (layers.area.ellipsoidal_area); rounding to 0.01 m² happens only in the answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import shapely
from pydantic import Field, field_validator, model_validator

from layers.area import ellipsoidal_area
from layers.codes import SANDIAO_CODES
from layers.errors import GeometryError
from layers.yamlfile import read_yaml_file

from .common import as_text, id_column
from .landuse import UNCLASSIFIED, kcxs_values, land_categories
from .rules import Rules
from .validation import RuleModel, parse

DEFAULT_REVIEW_PATH = Path(__file__).with_name("review.yaml")
LAYERS = ("yjjbnt", "stbhhx", "czkfbj", "ghfq", "dltb")
MEASURES = {"inside": ("yjjbnt", "stbhhx", "czkfbj", "ghfq", "dltb"), "outside": ("yjjbnt", "stbhhx", "czkfbj",
                                                                                  "ghfq", "dltb"),
            "zones": ("ghfq",), "categories": ("dltb",)}
CATEGORIES = ("cultivated", "agri_other", "construction", "unused")
CATEGORY_ZH = {"cultivated": "耕地", "agri_other": "其他农用地", "construction": "建设用地", "unused": "未利用地",
               UNCLASSIFIED: "未分类"}
ID_FIELDS = {"yjjbnt": ("BSM", "YJJBNTTBBH"), "stbhhx": ("BSM",), "czkfbj": ("BSM",), "ghfq": ("BSM",),
             "dltb": ("BSM",)}


@dataclass(frozen=True)
class ReviewRule:
    id: str
    title: str
    layer: str
    measure: str
    max_m2: float
    severity: str = "fail"
    zones: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReviewRules:
    tolerance_m2: float
    layer_titles: dict[str, str]
    rules: tuple[ReviewRule, ...]
    document: dict

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.document, ensure_ascii=False, sort_keys=True, default=str)
                              .encode("utf-8")).hexdigest()


class ReviewRuleDoc(RuleModel):
    """One rule of the review rules file (analysis/review.yaml)."""

    id: str
    title: str | None = None
    layer: str | None = None
    measure: Literal["inside", "outside", "zones", "categories"]
    max_m2: float = Field(0.0, ge=0)
    severity: Literal["fail", "warn"] = "fail"
    zones: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not v:
            raise ValueError("must be a unique non-empty text")
        return v

    @field_validator("zones", "categories", mode="before")
    @classmethod
    def _none_is_empty(cls, v: object) -> object:
        return [] if v is None else v

    @model_validator(mode="after")
    def _fits_its_measure(self) -> ReviewRuleDoc:
        where = f"({self.id})"
        if self.layer not in MEASURES[self.measure]:
            raise ValueError(f"{where}: measure {self.measure} works on layer(s) {list(MEASURES[self.measure])}, "
                             f"not {self.layer!r}")
        if self.measure == "zones" and not self.zones:
            raise ValueError(f"{where}: measure zones needs zones: [GHFQDM prefixes]")
        if self.measure == "categories" and (not self.categories or set(self.categories) - set(CATEGORIES)):
            raise ValueError(f"{where}: categories {self.categories!r} must list some of {list(CATEGORIES)}")
        return self


class ReviewRulesDoc(RuleModel):
    """The review rules file: a tolerance, the layers' titles, the rules."""

    version: int | None = None
    tolerance_m2: float = Field(0.0, ge=0)
    layers: dict[str, str] = Field(default_factory=dict)
    rules: list[ReviewRuleDoc]

    @model_validator(mode="before")
    @classmethod
    def _a_mapping(cls, v: object) -> object:
        if not isinstance(v, dict):
            raise ValueError("the review rules must be a mapping with tolerance_m2, layers, rules")
        return v

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, v: object) -> object:
        v = {} if v is None else v
        if isinstance(v, dict):
            bad = sorted(set(map(str, v)) - set(LAYERS))
            if bad:
                raise ValueError(f"{bad} are not reviewed; layers are {list(LAYERS)}")
            return {str(k): str(x) for k, x in v.items()}
        return v

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, v: object) -> object:
        if not isinstance(v, list) or not v:
            raise ValueError("must be a non-empty list")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> ReviewRulesDoc:
        seen: set[str] = set()
        for i, r in enumerate(self.rules):
            if r.id in seen:
                raise ValueError(f"rules[{i}]: id {r.id!r} must be a unique non-empty text")
            seen.add(r.id)
        return self


def parse_review_rules(doc, where: str = "<review rules>") -> ReviewRules:
    d = parse(ReviewRulesDoc, doc, where)
    titles = {name: name for name in LAYERS} | d.layers
    rules = tuple(ReviewRule(id=r.id, title=r.title or r.id, layer=str(r.layer), measure=r.measure,
                             max_m2=float(r.max_m2), severity=r.severity, zones=tuple(str(z) for z in r.zones),
                             categories=tuple(r.categories)) for r in d.rules)
    return ReviewRules(float(d.tolerance_m2), titles, rules, doc)


def load_review_rules(path: str | Path | None = None) -> ReviewRules:
    path = Path(path) if path is not None else DEFAULT_REVIEW_PATH
    doc = read_yaml_file(path, "review rules", missing_hint=f"the default is {DEFAULT_REVIEW_PATH}")
    return parse_review_rules(doc, str(path))


def _r(x: float) -> float:
    return round(float(x) + 0.0, 2)


def _polygonal(g):
    """The polygonal part of an intersection (lines and points of a touching boundary dropped), None if none."""
    if g is None or g.is_empty:
        return None
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    return shapely.multipolygons([q for p in parts for q in shapely.get_parts(p)]) if parts else None


def _pieces(site, layer: gpd.GeoDataFrame, crs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row positions, piece geometries, piece areas m²) of the site ∩ each feature of ``layer``."""
    rows = np.sort(layer.sindex.query(site, predicate="intersects"))
    pieces = np.array([_polygonal(p) for p in
                       shapely.intersection(np.asarray(layer.geometry.values, dtype=object)[rows], site)], dtype=object)
    keep = np.array([p is not None for p in pieces], dtype=bool)
    rows, pieces = rows[keep], pieces[keep]
    areas = ellipsoidal_area(pieces, crs) if len(pieces) else np.zeros(0)
    return rows, pieces, areas


def review_site(site, crs, layers: dict[str, gpd.GeoDataFrame | None], rules: ReviewRules, land: Rules,
                region=None, zone_names: dict[str, str] | None = None) -> dict:
    """Review one site (Polygon / MultiPolygon in ``crs``) against ``layers``; ``region`` (the county) bounds it.

    The parts of the site outside ``region`` are not reviewed (the store knows nothing there) and their area is
    reported as ``area_outside_region_m2``.
    """
    if site is None or site.is_empty or site.geom_type not in ("Polygon", "MultiPolygon"):
        raise GeometryError("the site must be a non-empty Polygon or MultiPolygon")
    if not site.is_valid:
        raise GeometryError(f"the site polygon is invalid ({shapely.is_valid_reason(site)}); fix the ring "
                            "(no self-intersection, rings closed) and send it again")
    total = float(ellipsoidal_area(np.array([site], dtype=object), crs)[0])
    outside_region = 0.0
    if region is not None:
        inside = shapely.intersection(site, region)
        if inside.is_empty or inside.area <= 0:
            raise GeometryError("the site lies outside the region held by this store; send a polygon inside it")
        site = _polygonal(inside)
        if site is None:
            raise GeometryError("the site only touches the region held by this store; send a polygon inside it")
        outside_region = max(0.0, total - float(ellipsoidal_area(np.array([site], dtype=object), crs)[0]))
    area = float(ellipsoidal_area(np.array([site], dtype=object), crs)[0])
    overlaps: dict[str, dict] = {}
    inside_area: dict[str, float] = {}
    zone_area: dict[str, float] = {}
    category_area: dict[str, float] = {}
    for name in LAYERS:
        gdf = layers.get(name)
        title = rules.layer_titles.get(name, name)
        if gdf is None:
            overlaps[name] = {"title": title, "checked": False, "reason": f"the store has no {name} layer"}
            continue
        rows, pieces, areas = _pieces(site, gdf, crs)
        ids = id_column(gdf.iloc[rows], ID_FIELDS[name], name) if len(rows) else np.array([], dtype=object)
        union = shapely.union_all(pieces) if len(pieces) else None
        covered = float(ellipsoidal_area(np.array([union], dtype=object), crs)[0]) if union is not None else 0.0
        inside_area[name] = min(covered, area)
        entry = {"title": title, "checked": True, "area_m2": _r(inside_area[name]),
                 "share": round(inside_area[name] / area, 6) if area > 0 else 0.0}
        if name in ("yjjbnt", "stbhhx", "czkfbj"):
            entry["features"] = [{"id": str(i), "area_m2": _r(a)} for i, a in zip(ids, areas)]
            if name == "czkfbj":
                entry["outside_m2"] = _r(max(0.0, area - inside_area[name]))
        elif name == "ghfq":
            codes = as_text(gdf["GHFQDM"].to_numpy()[rows]) if "GHFQDM" in gdf.columns else np.array([""] * len(rows))
            names = as_text(gdf["GHFQMC"].to_numpy()[rows]) if "GHFQMC" in gdf.columns else codes
            by: dict[str, list] = {}
            for c, n, a in zip(codes, names, areas):
                rec = by.setdefault(c, [(zone_names or {}).get(c) or n, 0.0])
                rec[1] += a
            zone_area = {c: v[1] for c, v in by.items()}
            entry["zones"] = [{"GHFQDM": c, "name": v[0], "area_m2": _r(v[1])} for c, v in sorted(by.items())]
        else:  # dltb
            codes = as_text(gdf["DLBM"].to_numpy()[rows])
            kcxs = kcxs_values(gdf.iloc[rows], name, ids) if len(rows) else np.zeros(0)
            cats = land_categories(codes, land, name) if len(rows) else np.array([], dtype=object)
            net = areas * (1.0 - kcxs)
            by_code: dict[str, list] = {}
            for c, cat, a, n in zip(codes, cats, areas, net):
                rec = by_code.setdefault(c, [cat, 0.0, 0.0])
                rec[1] += a
                rec[2] += n
            for cat, n in zip(cats, net):
                category_area[cat] = category_area.get(cat, 0.0) + n
            entry["by_code"] = [{"DLBM": c, "DLMC": SANDIAO_CODES.get(c, ""), "category": v[0],
                                 "category_zh": CATEGORY_ZH.get(v[0], v[0]), "area_m2": _r(v[1]),
                                 "land_area_m2": _r(v[2])} for c, v in sorted(by_code.items())]
            entry["by_category"] = {cat: {"title": CATEGORY_ZH.get(cat, cat), "land_area_m2": _r(v)}
                                    for cat, v in sorted(category_area.items())}
            entry["tiankan_m2"] = _r(float((areas * kcxs).sum()))
        overlaps[name] = entry

    results = []
    for rule in rules.rules:
        if overlaps[rule.layer].get("checked") is False:
            results.append({"id": rule.id, "title": rule.title, "layer": rule.layer, "measure": rule.measure,
                            "value_m2": None, "limit_m2": rule.max_m2, "severity": rule.severity, "passed": None,
                            "result": "未检查", "message": f"未检查: 数据库中没有 {rule.layer} 图层"})
            continue
        if rule.measure == "inside":
            value = inside_area[rule.layer]
        elif rule.measure == "outside":
            value = max(0.0, area - inside_area[rule.layer])
        elif rule.measure == "zones":
            value = sum(a for c, a in zone_area.items() if c.startswith(rule.zones))
        else:
            value = sum(category_area.get(c, 0.0) for c in rule.categories)
        value = float(value)
        ok = bool(value <= rule.max_m2 + rules.tolerance_m2)
        title = rules.layer_titles[rule.layer]
        what = {"inside": f"位于{title}内", "outside": f"位于{title}外",
                "zones": f"位于规划分区 {'/'.join(rule.zones)} 内",
                "categories": f"占用{'、'.join(CATEGORY_ZH[c] for c in rule.categories)}"}[rule.measure]
        verdict = "通过" if ok else ("不通过" if rule.severity == "fail" else "提示")
        results.append({"id": rule.id, "title": rule.title, "layer": rule.layer, "measure": rule.measure,
                        "value_m2": _r(value), "limit_m2": rule.max_m2, "severity": rule.severity, "passed": ok,
                        "result": verdict,
                        "message": f"{what} {value:.2f} m²"
                                   f"（允许 ≤ {rule.max_m2:g} m²，容差 {rules.tolerance_m2:g} m²）："
                                   f"{verdict}"})
    failed = [r for r in results if r["passed"] is False and r["severity"] == "fail"]
    unchecked = [r for r in results if r["passed"] is None]
    notices = [r for r in results if r["passed"] is False and r["severity"] == "warn"]
    overall = "不通过" if failed else ("无法判断" if unchecked else ("通过 (有提示)" if notices else "通过"))
    return {
        "site": {"area_m2": _r(total), "reviewed_area_m2": _r(area), "area_outside_region_m2": _r(outside_region)},
        "overlaps": overlaps,
        "rules": results,
        "passed": not failed and not unchecked,
        "result": overall,
        "failed": [r["id"] for r in failed],
        "tolerance_m2": rules.tolerance_m2,
        "rules_sha256": rules.sha256(),
    }

"""Turn one manifest role into a clean GeoDataFrame in the store CRS, with its LoadRecord and findings.

    target = resolve_target_epsg(manifest)            # e.g. 4547
    loaded = load_role(manifest, "dltb", target)       # LoadedLayer(role, gdf, record, findings)

The stages, each in its own module: read.py (formats, encodings, checksums) → normalise.py (field names,
value types) → georef.py (source CRS, datum, web coordinates, region plausibility) → geometry.py (repair,
empties, duplicates) → here: land-use code set, ellipsoidal area, survey-area checks, the LoadRecord.
Errors that make a layer unusable raise YztError subclasses; everything else becomes a Finding and the
layer loads. Nothing is written anywhere.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .area import ellipsoidal_area
from .codes import CODE_SET_NAMES, SANDIAO, YDYH, crosswalk, detect_code_set, unknown_codes
from .crs import gk_epsg, to_crs, zone_for_longitude, zone_of_gk_epsg
from .errors import CRSError, FieldError, GeometryError, ManifestError, YztError
from .fields import AREA, FID, FIELDS, ROLES, ROUND, SOURCE, SURVEY_ROLES
from .geometry import chunked, clean_geometries
from .georef import Georef, Region, RegionSurvey, georeference, survey_region
from .normalise import ID_FIELDS, as_object, map_fields, mapping_findings, normalise_attributes, row_ids
from .read import SourceData, read_source, source_files
from .records import INFO, WARNING, Finding, LoadRecord
from .topology import layer_findings

LARGE_LAYER = 50_000  # rows above which progress bars are shown (when progress=True)
_AREA_EPS = 1e-6  # float slack on top of the 0.005 m² half-unit of 2-decimal values


@dataclass
class LoadedLayer:
    role: str
    gdf: gpd.GeoDataFrame  # target CRS; yzt_fid, standard columns, area_m2, geometry
    record: LoadRecord
    findings: list[Finding]
    partitions: int = 0  # spatial partitions a survey layer's coverage checks ran in (0: the whole layer at once)


# (geometries in the target CRS, its EPSG) -> (ellipsoidal area, invalid_edges mask, partitions): a survey
# layer's coverage checks computed elsewhere, services.jobs.ingest's spatial partitions on dask
CoverageChecks = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, int]]


@dataclass
class _Context:
    """Work shared by the roles of one manifest (check_manifest builds it once)."""

    survey: RegionSurvey
    code_sets: dict[str, str | None] = field(default_factory=dict)
    # True: the caller compares dltb_prev's code set with dltb's once both are loaded (peer_code_set_findings);
    # layers.ingest does, so a county whose layers load on several workers gets the same finding
    peer_later: bool = False
    # a survey layer's area and coverage validation, when not computed here over the whole layer
    coverage_checks: CoverageChecks | None = None


_SURVEYS: dict[tuple, RegionSurvey] = {}  # region surveys by manifest content and file times


def _cached_survey(manifest) -> RegionSurvey:
    """survey_region, remembered while the manifest and its files are unchanged (ingest asks once per role)."""
    def stamp(path: Path):
        try:
            return tuple(f.stat().st_mtime_ns for f in source_files(Path(path)))
        except (OSError, YztError):
            return None

    key = (str(manifest.path), tuple((role, str(s.path), s.member, s.layer, s.crs, s.coords, stamp(s.path))
                                     for role, specs in manifest.layers.items() for s in specs))
    if key not in _SURVEYS:
        if len(_SURVEYS) > 16:
            _SURVEYS.clear()
        _SURVEYS[key] = survey_region(manifest)
    return _SURVEYS[key]


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("yizhangtu")
    except Exception:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        if pyproject.is_file():
            match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.M)
            if match:
                return match.group(1)
        return "unknown"


# --- the store CRS -----------------------------------------------------------------------------------------

def _target_from_survey(manifest, survey: RegionSurvey) -> int:
    if survey.ambiguous:
        groups = "; ".join(f"{', '.join(g)} near {_box_text(survey.boxes, g)}" for g in survey.groups)
        raise CRSError(f"the layers disagree on where the region is ({groups}); fix the misplaced layer's crs:, "
                       "or set crs: EPSG:45xx at the top of the manifest")
    if survey.region is None:
        raise CRSError("cannot choose the region's 3° zone: no layer has a CRS (.prj) or 8-digit eastings; set "
                       "crs: EPSG:45xx at the top of the manifest (or crs: on a layer)")
    lon, _ = survey.region.centre
    return gk_epsg(zone_for_longitude(lon), prefixed=False)


def _box_text(boxes, roles) -> str:
    lon = np.mean([(boxes[r][0] + boxes[r][2]) / 2 for r in roles])
    lat = np.mean([(boxes[r][1] + boxes[r][3]) / 2 for r in roles])
    return f"{lon:.2f}°E {lat:.2f}°N"


def resolve_target_epsg(manifest, _survey: RegionSurvey | None = None) -> int:
    """The store's EPSG: the region's unprefixed CGCS2000 3° GK zone (4534–4554).

    ``crs: auto`` → the zone whose central meridian is nearest the centre of the region's extent (the xzq
    layer's, else the other placeable layers'). An explicit ``crs:`` must be a CGCS2000 3° GK zone; a
    prefixed one (4513–4533) is taken as its unprefixed twin, since the store keeps unprefixed eastings.
    """
    if manifest.crs != "auto":
        code = to_crs(manifest.crs).to_epsg()
        zone = zone_of_gk_epsg(code) if code else None
        if zone is None:
            raise CRSError(f"crs: {manifest.crs} is not a CGCS2000 3° Gauss-Krüger zone; use EPSG:4534–4554 "
                           "(e.g. EPSG:4547 for CM 114°E) or crs: auto")
        return gk_epsg(zone[0], prefixed=False)
    return _target_from_survey(manifest, _survey or _cached_survey(manifest))


# --- one source of a role --------------------------------------------------------------------------------

@dataclass
class _Part:
    spec: object
    data: SourceData
    attrs: pd.DataFrame
    geoms: np.ndarray
    ids: np.ndarray
    mapping: dict[str, str]
    georef: Georef
    findings: list[Finding]


def _where(spec, several: bool) -> str:
    return f"layer '{spec.role}'" + (f" ({Path(spec.path).name})" if several else "")


MAX_COORDINATE = 1e9  # metres or degrees: any real coordinate in China's CRSs is far below (GK eastings < 5e7)


def check_values(frame: pd.DataFrame, where: str, source: str) -> None:
    """FieldError for a NUL character in a text value or a column name: SQLite and GDAL end a string at NUL,
    so the value would be stored cut short without a word."""
    for column in frame.columns:
        if isinstance(column, str) and "\x00" in column:
            raise FieldError(f"{where} ({source}): column name {column!r} holds a NUL character; rename the column")
        series = frame[column]
        if column == "geometry" or not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        has_nul = series.astype("string").str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
        if has_nul.any():
            row = int(np.flatnonzero(has_nul)[0])
            value = str(series.iloc[row])
            raise FieldError(f"{where} ({source}): {int(has_nul.sum())} value(s) of {column} hold a NUL character "
                             f"(row {row + 1}: {value[:40]!r}); a NUL would cut the text short — remove it from the "
                             "source")


def check_coordinates(geoms: np.ndarray, ids: np.ndarray, where: str, source: str) -> None:
    """GeometryError for a vertex that is not finite or lies beyond any real coordinate (1e300 …): it would
    make the layer's extent and spatial index meaningless (an R-tree bound of inf)."""
    present = np.flatnonzero(~shapely.is_missing(geoms))
    if not len(present):
        return
    coords = shapely.get_coordinates(geoms[present])
    bad = ~(np.abs(coords) <= MAX_COORDINATE).all(axis=1)  # NaN and ±inf compare False
    if bad.any():
        _, index = shapely.get_coordinates(geoms[present], return_index=True)  # which feature: only when needed
        k = int(np.flatnonzero(bad)[0])
        row = int(present[index[k]])
        x, y = coords[k]
        n = len(np.unique(index[bad]))
        raise GeometryError(f"{where} ({source}): {n} feature(s) have a vertex that is not a real coordinate "
                            f"(feature {ids[row]}: ({x:g}, {y:g})); fix the geometry in the source")


def _load_part(spec, role: str, target_epsg: int, region: Region | None, progress: bool, where: str) -> _Part:
    data = read_source(spec, progress=progress, where=where)
    source = data.location
    check_values(data.gdf, where, source)
    findings = list(data.findings)
    fmap = map_fields(list(data.gdf.columns), role, spec.fields, where)
    attrs, value_findings = normalise_attributes(data.gdf, role, fmap, where)
    findings += mapping_findings(role, fmap) + value_findings
    mapping = dict(fmap.mapping)
    if role == "xzq" and "XZQJB" not in mapping:
        mapping["XZQJB"] = "(from the length of XZQDM)"
    if role == "monitoring":
        for code, value, key in ((SOURCE, spec.source, "source"), (ROUND, spec.round, "round")):
            if value is not None:
                attrs[code] = value
                mapping[code] = f"(manifest {key}: {value})"
    ids = row_ids(attrs.get(ID_FIELDS.get(role)), len(attrs))
    geoms = np.asarray(data.gdf.geometry.values, dtype=object)
    check_coordinates(geoms, ids, where, source)
    if len(geoms) and shapely.has_z(geoms).any():
        geoms = shapely.force_2d(geoms)
        findings.append(Finding(layer=role, check="z_dropped", severity=INFO, count=len(geoms),
                                message="Z values dropped: analysis is two-dimensional"))
    geoms, georef = georeference(spec, geoms, data.crs, data.crs_origin, target_epsg, region, ids, where)
    return _Part(spec, data, attrs, geoms, ids, mapping, georef, findings + georef.findings)


# --- checks on the assembled layer -------------------------------------------------------------------------

def _ids(ids: np.ndarray, mask) -> list:
    return [str(v) for v in ids[np.asarray(mask, dtype=bool)]]


def _code_findings(gdf: pd.DataFrame, role: str, ids: np.ndarray,
                   declared: str | None = None) -> tuple[str | None, list[Finding]]:
    if "DLBM" not in gdf.columns or not gdf["DLBM"].notna().any():
        return declared, []
    code_set = detect_code_set(gdf["DLBM"].dropna().unique(), declared, where=f"layer '{role}'")
    findings = []
    bad = unknown_codes(gdf["DLBM"], code_set).to_numpy(dtype=bool)
    if bad.any():
        values = sorted({str(v) for v in gdf["DLBM"][bad]})
        findings.append(Finding(
            layer=role, check="unknown_code", severity=WARNING, ids=_ids(ids, bad), count=int(bad.sum()),
            message=f"{int(bad.sum())} patch(es) have DLBM values that are not {CODE_SET_NAMES[code_set]} codes "
                    f"({', '.join(values[:10])}{' …' if len(values) > 10 else ''}); correct them in the source"))
    if "KCDLBM" in gdf.columns and gdf["KCDLBM"].notna().any():
        kc = gdf["KCDLBM"]
        bad_kc = (kc.notna() & unknown_codes(kc, code_set)).to_numpy(dtype=bool)
        if bad_kc.any():
            findings.append(Finding(layer=role, check="unknown_code", severity=WARNING, ids=_ids(ids, bad_kc),
                                    count=int(bad_kc.sum()),
                                    message=f"{int(bad_kc.sum())} KCDLBM value(s) are not {CODE_SET_NAMES[code_set]} "
                                            f"codes ({', '.join(sorted(set(kc[bad_kc]))[:10])})"))
    return code_set, findings


ROUNDING_SLACK_M2 = 0.01  # TBMJ is given to 0.01 m², and the exporter rounded its own computation: one unit
AREA_METHOD_SLACK = 1e-6  # relative: two correct ellipsoidal area computations agree far better than this


def _survey_findings(gdf: pd.DataFrame, role: str, ids: np.ndarray, options,
                     exact_area: np.ndarray | None = None) -> tuple[int, list[Finding]]:
    """TBMJ against the ellipsoidal area; KCMJ = round(TBMJ × KCXS, 2); TBDLMJ = TBMJ − KCMJ.

    A patch is listed when |TBMJ − area| exceeds both the relative tolerance and what the 0.01 m² rounding of
    TBMJ allows (one unit, 0.01 m², plus 1e-6 of the area): a 9.43 m² patch off by its last digit is not a
    finding, whatever the relative tolerance is set to."""
    findings = []
    tbmj = gdf["TBMJ"].astype(float).to_numpy()
    area = gdf[AREA].astype(float).to_numpy() if exact_area is None else np.asarray(exact_area, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.abs(tbmj - area)
        rel = diff / area
    known = np.isfinite(rel) & (diff > ROUNDING_SLACK_M2 + AREA_METHOD_SLACK * area + _AREA_EPS)
    small = known & (rel > options.area_tolerance) & (rel <= options.area_flag)
    large = known & (rel > options.area_flag)
    if small.any():
        findings.append(Finding(
            layer=role, check="area_mismatch", severity=WARNING, ids=_ids(ids, small), count=int(small.sum()),
            message=f"{int(small.sum())} patch(es): TBMJ differs from the ellipsoidal area by "
                    f"{options.area_tolerance:.2%}–{options.area_flag:.0%} (up to {np.nanmax(rel[small]):.2%}); "
                    "TBMJ kept as in the source, analysis uses area_m2"))
    if large.any():
        worst = int(np.flatnonzero(large)[np.argmax(rel[large])])
        findings.append(Finding(
            layer=role, check="area_large_discrepancy", severity=WARNING, ids=_ids(ids, large),
            count=int(large.sum()),
            message=f"{int(large.sum())} patch(es): large discrepancy, TBMJ differs from the ellipsoidal area by "
                    f"more than {options.area_flag:.0%} (worst {ids[worst]}: TBMJ {tbmj[worst]:.2f} vs "
                    f"{area[worst]:.2f} m²); TBMJ kept, analysis uses area_m2"))
    if "KCXS" in gdf.columns:
        kcxs = gdf["KCXS"].astype(float).to_numpy()
        out_of_range = np.isfinite(kcxs) & ((kcxs < 0) | (kcxs >= 1))
        if out_of_range.any():
            findings.append(Finding(layer=role, check="kcxs_out_of_range", severity=WARNING,
                                    ids=_ids(ids, out_of_range), count=int(out_of_range.sum()),
                                    message=f"{int(out_of_range.sum())} KCXS value(s) outside [0, 1) "
                                            f"(e.g. {kcxs[out_of_range][0]:g}); KCXS is a share, not a percentage"))
        if "KCMJ" in gdf.columns:
            kcmj = gdf["KCMJ"].astype(float).to_numpy()
            with np.errstate(invalid="ignore"):
                bad = np.abs(kcmj - tbmj * kcxs) > 0.005 + _AREA_EPS
            if bad.any():
                findings.append(Finding(layer=role, check="kcmj_mismatch", severity=WARNING, ids=_ids(ids, bad),
                                        count=int(bad.sum()),
                                        message=f"{int(bad.sum())} patch(es): KCMJ ≠ round(TBMJ × KCXS, 2)"))
    if "KCMJ" in gdf.columns and "TBDLMJ" in gdf.columns:
        kcmj = gdf["KCMJ"].astype(float).to_numpy()
        tbdlmj = gdf["TBDLMJ"].astype(float).to_numpy()
        with np.errstate(invalid="ignore"):
            bad = np.abs(tbdlmj - (tbmj - kcmj)) > 0.005 + _AREA_EPS
        if bad.any():
            findings.append(Finding(layer=role, check="tbdlmj_mismatch", severity=WARNING, ids=_ids(ids, bad),
                                    count=int(bad.sum()),
                                    message=f"{int(bad.sum())} patch(es): TBDLMJ ≠ TBMJ − KCMJ (to 0.01 m²)"))
    return int(small.sum() + large.sum()), findings


def _value_findings(gdf: pd.DataFrame, role: str, ids: np.ndarray, region_code: str) -> list[Finding]:
    findings = []
    for code in ROLES[role]["required"]:
        if code in gdf.columns:
            empty = gdf[code].isna().to_numpy()
            if empty.any():
                findings.append(Finding(layer=role, check="missing_value", severity=WARNING, ids=_ids(ids, empty),
                                        count=int(empty.sum()),
                                        message=f"{int(empty.sum())} record(s) have no {code} (required)"))
    for code in ("XZQDM", "ZLDWDM"):
        if code in gdf.columns:
            values = gdf[code]
            foreign = values.map(lambda v: v is not None and not (str(v).startswith(region_code)
                                                                  or region_code.startswith(str(v))))
            foreign = foreign.to_numpy(dtype=bool)
            if foreign.any():
                examples = sorted({str(v) for v in values[foreign]})[:5]
                findings.append(Finding(layer=role, check="foreign_unit_code", severity=WARNING,
                                        ids=_ids(ids, foreign), count=int(foreign.sum()),
                                        message=f"{int(foreign.sum())} {code} value(s) are not in region "
                                                f"{region_code} (e.g. {', '.join(examples)})"))
    if "JCBH" in gdf.columns or "PZWH" in gdf.columns or "ZDDM" in gdf.columns:
        key = next(c for c in ("JCBH", "PZWH", "ZDDM") if c in gdf.columns)
        cols = [key] + [c for c in (ROUND, SOURCE) if c in gdf.columns]
        dup = gdf.duplicated(subset=cols, keep=False).to_numpy() & gdf[key].notna().to_numpy()
        if dup.any():
            findings.append(Finding(layer=role, check="duplicate_id", severity=INFO, ids=_ids(ids, dup),
                                    count=int(dup.sum()),
                                    message=f"{int(dup.sum())} record(s) share a {key} with another record"))
    return findings


def _peer_code_set(manifest, role: str) -> str | None:
    """The code set of the other survey layer (dltb for dltb_prev), from its DLBM column alone."""
    specs = manifest.layers.get(role)
    if not specs:
        return None
    try:
        data = read_source(specs[0], geometry=False, where=f"layer '{role}'")
        fmap = map_fields(list(data.gdf.columns), role, specs[0].fields, f"layer '{role}'")
        values = data.gdf[fmap.mapping["DLBM"]].dropna()
        return detect_code_set(pd.unique(values.astype(object)), specs[0].code_set) if len(values) else None
    except YztError:
        return None


def peer_code_set_findings(manifest, role: str, code_sets: Mapping[str, str | None]) -> list[Finding]:
    """dltb_prev's code set against dltb's: a finding on dltb_prev when they differ (info when the crosswalk
    bridges them). ``code_sets``: the sets of the survey layers loaded so far; dltb's, when it was not loaded,
    is read from its file. Only dltb_prev carries the finding, whichever of the two loaded first."""
    code_set = code_sets.get(role)
    if role != "dltb_prev" or code_set is None:
        return []
    peer = "dltb"
    peer_set = code_sets[peer] if peer in code_sets else _peer_code_set(manifest, peer)
    if peer_set is None or peer_set == code_set:
        return []
    sets = {role: code_set, peer: peer_set}
    bridged = set(sets.values()) == {SANDIAO, YDYH}
    return [Finding(
        layer=role, check="code_set_mismatch", severity=INFO if bridged else WARNING, count=1,
        message=f"dltb_prev uses {CODE_SET_NAMES[sets['dltb_prev']]} codes but dltb uses "
                f"{CODE_SET_NAMES[sets['dltb']]}; "
                + (f"the analysis reconciles them through the crosswalk {crosswalk().label()}" if bridged
                   else "change detection between them compares different code sets — convert one "
                        "before analysis"))]


def _join(values, sep: str = "; ") -> str:
    seen = list(dict.fromkeys(str(v) for v in values if v is not None and str(v) != ""))
    return sep.join(seen)


# --- the public entry point -------------------------------------------------------------------------------

def load_role(manifest, role: str, target_epsg: int, progress: bool = False, *,
              _context: _Context | None = None) -> LoadedLayer:
    """Read, map, georeference and check every source of ``role``; one GeoDataFrame in EPSG:target_epsg."""
    if role not in ROLES:
        raise ManifestError(f"unknown layer role {role!r}; roles are {', '.join(ROLES)}")
    specs = manifest.layers.get(role)
    if not specs:
        raise ManifestError(f"manifest {manifest.path} has no layer for role '{role}'; add layers: {role}: "
                            "{path: …}")
    if zone_of_gk_epsg(int(target_epsg)) is None:
        raise CRSError(f"target EPSG:{target_epsg} is not a CGCS2000 3° Gauss-Krüger zone (EPSG:4534–4554)")
    context = _context or _Context(_cached_survey(manifest))
    several = len(specs) > 1
    parts = [_load_part(spec, role, target_epsg, context.survey.region, progress, _where(spec, several))
             for spec in specs]
    where = f"layer '{role}'"
    if several:
        attrs = pd.concat([p.attrs for p in parts], ignore_index=True)
        for column in attrs.columns:  # a field absent from one source comes back as NaN: make it None
            if not pd.api.types.is_numeric_dtype(attrs[column]):
                attrs[column] = as_object(attrs[column])
    else:
        attrs = parts[0].attrs.reset_index(drop=True)
    geoms = np.concatenate([p.geoms for p in parts]) if several else parts[0].geoms
    ids = np.concatenate([p.ids for p in parts]) if several else parts[0].ids
    findings = [f for p in parts for f in p.findings]
    rows_read = len(attrs)
    show = progress and rows_read > LARGE_LAYER

    clean = clean_geometries(geoms, role, ids, where, progress=show)
    findings += clean.findings
    if rows_read and not clean.keep.any():
        raise GeometryError(f"{where}: none of its {rows_read} features has a usable geometry; check the file")
    if not rows_read:
        findings.append(Finding(layer=role, check="empty_layer", severity=WARNING, count=0,
                                message=f"{where} has no features"))
    attrs = attrs.loc[clean.keep].reset_index(drop=True)
    ids = ids[clean.keep]
    columns = [c for c in ROLES[role]["required"] + ROLES[role]["optional"] if c in attrs.columns]
    if role == "monitoring":
        for code in (SOURCE, ROUND):
            if code not in attrs.columns:
                attrs[code] = None
                columns.append(code)
            empty = attrs[code].isna().to_numpy()
            if empty.any():
                findings.append(Finding(layer=role, check="missing_value", severity=WARNING, ids=_ids(ids, empty),
                                        count=int(empty.sum()),
                                        message=f"{int(empty.sum())} monitoring patch(es) have no {code} "
                                                f"({FIELDS[code].zh}); if the file has a column for it, map it: "
                                                f"fields: {{{code}: <column>}} (a file that mixes rounds or "
                                                f"sources needs the column); if the whole file is one "
                                                f"{code.lower()}, set {code.lower()}: on its entry in the manifest"))
    gdf = gpd.GeoDataFrame(attrs[columns], geometry=gpd.GeoSeries(clean.geoms, crs=f"EPSG:{target_epsg}"))
    gdf.insert(0, FID, np.arange(1, len(gdf) + 1, dtype=np.int64))
    invalid, partitions = None, 0
    if len(gdf) and role in SURVEY_ROLES and context.coverage_checks is not None:
        area, invalid, partitions = context.coverage_checks(clean.geoms, target_epsg)
    elif len(gdf) and role not in ("cameras",):
        area = chunked(lambda g: ellipsoidal_area(g, target_epsg), clean.geoms, show, f"area {role}", dtype=float)
    else:
        area = np.zeros(len(gdf))
    gdf.insert(len(gdf.columns) - 1, AREA, np.round(area, 2))

    code_set, code_findings = _code_findings(gdf, role, ids, specs[0].code_set)
    findings += code_findings
    if role in ("dltb", "dltb_prev") and code_set is not None:
        context.code_sets[role] = code_set
        if not context.peer_later:
            findings += peer_code_set_findings(manifest, role, context.code_sets)
    area_mismatches = 0
    if role in SURVEY_ROLES and len(gdf):
        area_mismatches, survey = _survey_findings(gdf, role, ids, manifest.options, exact_area=area)
        findings += survey
    findings += _value_findings(gdf, role, ids, manifest.region_code)
    findings += layer_findings(gdf, role, ids, manifest.options, invalid=invalid)

    record = LoadRecord(
        layer=role,
        source_path=";".join(p.data.location for p in parts),  # a zipped source: <zip>!/<member>
        source_layer=_join((p.data.layer for p in parts), ";") or None,
        sha256=";".join(p.data.sha256 for p in parts),
        source_crs=_join(p.georef.source_crs for p in parts),
        crs_resolution=_join((p.georef.resolution for p in parts), " | "),
        transformation=_join((p.georef.transformation for p in parts), " | "),
        target_crs=f"EPSG:{target_epsg}",
        encoding=_join((p.data.encoding + (f" ({p.data.encoding_origin})") for p in parts), "; "),
        field_mapping=_merge_mappings([p.mapping for p in parts]),
        code_set=code_set,
        rows_read=rows_read,
        rows_written=len(gdf),
        repaired=clean.repaired,
        dropped_empty=clean.dropped_empty,
        duplicates=clean.duplicates,
        area_mismatches=area_mismatches,
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
        load_id=uuid.uuid4().hex,
        version=package_version(),
    )
    for f in findings:
        f.layer = role
    return LoadedLayer(role=role, gdf=gdf, record=record, findings=findings, partitions=partitions)


def _merge_mappings(mappings: list[dict]) -> dict:
    merged: dict[str, str] = {}
    for code in dict.fromkeys(c for m in mappings for c in m):
        merged[code] = _join((m.get(code) for m in mappings), ";")
    return merged

"""Raster jobs: slope grades of 耕地 from the DEM, change candidates from two images, zonal statistics, camera
coverage. Each reads the store and the manifest's rasters, calls analysis/raster, and returns tables; the
commands (services/cli/raster.py) write them and print them.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import yaml

from analysis.raster.change import detect_changes
from analysis.raster.rules import RasterRules, default_rules, parse_rules
from analysis.raster.slope import patch_grades
from analysis.raster.viewshed import camera_coverage
from analysis.raster.zonal import zonal_stats
from layers.area import ellipsoidal_area
from layers.errors import FieldError, NotFoundError, StoreError
from layers.fields import AREA, FID, ROUND, SOURCE
from layers.raster import RasterSource, open_raster
from layers.records import INFO, WARNING, Finding, LoadRecord
from layers.yamlfile import read_yaml_file

SLOPE_TABLE = "raster_slope_grades"
FINDINGS_TABLE = "raster_findings"
COVERAGE_TABLE = "raster_camera_coverage"
CAMERA_TABLE = "raster_camera_views"
CHANGE_RUNS_TABLE = "raster_change_runs"
GDAL_CACHE_BYTES = 512 * 2**20


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def load_raster_rules(path: str | Path | None) -> RasterRules:
    if path is None:
        return default_rules()
    return parse_rules(read_yaml_file(path, "raster rules"))


def _store_epsg(store) -> int:
    epsg = store.epsg
    if not epsg:
        raise StoreError(f"store {store.url} is empty; run yzt ingest first")
    return int(epsg)


def _cultivated(store, codes) -> gpd.GeoDataFrame:
    dltb = store.read_layer("dltb")
    return dltb[dltb["DLBM"].astype(str).isin(codes)].copy()


def _norm_grade(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        return str(int(float(text)))
    except ValueError:
        return text


# --- slope -------------------------------------------------------------------------------------------------

def run_slope(manifest, store, rules: RasterRules) -> tuple[pd.DataFrame, list[Finding]]:
    """Slope grade of every 耕地 patch (DEM on its own grid, patches brought to the DEM's CRS) and the
    findings: recorded GDPDJB ≠ DEM grade, GDPDJB missing, no DEM under the patch."""
    epsg = _store_epsg(store)
    patches = _cultivated(store, rules.slope.cultivated)
    with open_raster(manifest, "dem") as dem:  # native grid: slope is computed on the DEM's own cells
        geoms = patches.geometry if dem.grid.crs.equals(patches.crs) else patches.geometry.to_crs(dem.grid.crs)
        res = patch_grades(dem, geoms, breaks=rules.slope.grade_breaks, block=rules.slope.block)
        dem_path = str(dem.path)
    res.loc[res["dem_share"] < rules.slope.min_dem_share, "grade"] = np.nan
    table = pd.DataFrame({
        "BSM": patches["BSM"].astype(str).to_numpy(), FID: patches[FID].to_numpy(),
        "ZLDWDM": patches["ZLDWDM"].astype(str).to_numpy() if "ZLDWDM" in patches else None,
        "DLBM": patches["DLBM"].astype(str).to_numpy(),
        "GDPDJB": [_norm_grade(v) for v in (patches["GDPDJB"] if "GDPDJB" in patches else [None] * len(patches))],
        "grade_dem": [None if np.isnan(g) else str(int(g)) for g in res["grade"]],
    })
    for k in range(1, 6):
        table[f"share_{k}"] = res[f"share_{k}"].round(4).to_numpy()
    table["mean_slope"] = res["mean_slope"].round(3).to_numpy()
    table["dem_share"] = res["dem_share"].round(4).to_numpy()
    table["area_m2"] = np.round(patches[AREA].to_numpy(dtype=float), 2) if AREA in patches else np.round(
        ellipsoidal_area(patches.geometry.values, f"EPSG:{epsg}"), 2)
    table["agrees"] = [(g is not None and r is not None and g == r)
                       for g, r in zip(table["GDPDJB"], table["grade_dem"])]
    table["dem"] = dem_path
    table["computed_at"] = _now()
    findings = []
    has = table["GDPDJB"].notna() & table["grade_dem"].notna()
    bad = table[has & ~table["agrees"]]
    if len(bad):
        pairs = bad.groupby(["GDPDJB", "grade_dem"]).size()
        detail = ", ".join(f"{a}→{b}: {n}" for (a, b), n in pairs.items())
        findings.append(Finding("dltb", "slope_grade_mismatch", WARNING,
                                f"{len(bad)} 耕地 patches carry a GDPDJB (耕地坡度级别) that differs from the grade of "
                                f"the DEM ({Path(dem_path).name}) by area-weighted majority (recorded→DEM: {detail}); "
                                "check the patches or the DEM", ids=bad["BSM"].tolist(), count=len(bad)))
    missing = table[table["GDPDJB"].isna()]
    if len(missing):
        findings.append(Finding("dltb", "slope_grade_missing", WARNING,
                                f"{len(missing)} 耕地 patches have no GDPDJB; the DEM grade is in {SLOPE_TABLE}",
                                ids=missing["BSM"].tolist(), count=len(missing)))
    nodem = table[table["grade_dem"].isna()]
    if len(nodem):
        findings.append(Finding("dltb", "slope_no_dem", INFO,
                                f"{len(nodem)} 耕地 patches are less than {rules.slope.min_dem_share:.0%} covered by "
                                "the DEM and got no grade; extend the DEM", ids=nodem["BSM"].tolist(),
                                count=len(nodem)))
    return table, findings


def _findings_frame(findings: list[Finding], run_id: str) -> pd.DataFrame:
    return pd.DataFrame([{**{k: v for k, v in f.to_dict().items() if k != "ids"},
                          "ids": json.dumps(f.ids, ensure_ascii=False), "run_id": run_id, "created_at": _now()}
                         for f in findings],
                        columns=["layer", "check", "severity", "message", "count", "ids", "run_id", "created_at"])


# --- change ------------------------------------------------------------------------------------------------

def _image_date(src: RasterSource) -> str | None:
    tags = src.dataset.tags()
    for key in ("ACQUISITION_DATE", "TIFFTAG_DATETIME"):
        if key in tags:
            return tags[key][:10].replace(":", "-")
    return None


def run_change(manifest, rules: RasterRules, target_epsg: int, *, round_: str | None = None, qsx=None, hsx=None,
               block: int | None = None):
    """Open both images on one grid in the store CRS (the later image warped onto the earlier's grid when
    they differ) and detect changes."""
    spec = manifest.rasters.get("image_after")
    if spec is None:
        raise NotFoundError(f"manifest {manifest.path} has no rasters.image_after; add it (path: image_after.tif)")
    # the later image is read on the earlier image's grid (warped only where the grids differ)
    with open_raster(manifest, "image_before", target_epsg) as before, \
            RasterSource(spec.path, f"EPSG:{target_epsg}", crs=spec.crs, role="image_after",
                         grid=before.grid) as after:
        qsx = qsx or _image_date(before)
        hsx = hsx or _image_date(after)
        return detect_changes(before, after, rules.change, round_=round_, qsx=qsx, hsx=hsx, block=block)


def villages_for(geoms: gpd.GeoSeries, xzq: gpd.GeoDataFrame) -> list[str | None]:
    """12-digit village code holding the largest share of each geometry (None outside every village)."""
    villages = xzq[xzq["XZQDM"].astype(str).str.len() == 12]
    if not len(villages):
        return [None] * len(geoms)
    tree = shapely.STRtree(villages.geometry.values)
    gi, vi = tree.query(geoms.values, predicate="intersects")
    if not len(gi):
        return [None] * len(geoms)
    area = shapely.area(shapely.intersection(geoms.values[gi], villages.geometry.values[vi]))
    frame = pd.DataFrame({"g": gi, "code": villages["XZQDM"].astype(str).to_numpy()[vi], "a": area})
    best = frame.sort_values(["g", "a", "code"], ascending=[True, False, True]).drop_duplicates("g")
    out: list[str | None] = [None] * len(geoms)
    for g, code in zip(best["g"], best["code"]):
        out[int(g)] = code
    return out


def append_to_monitoring(store, candidates: gpd.GeoDataFrame, round_: str) -> tuple[int, int]:
    """Replace this round's raster rows of the monitoring layer with ``candidates``; (removed, added)."""
    epsg = _store_epsg(store)
    try:
        mon = store.read_layer("monitoring")
    except NotFoundError:
        mon = gpd.GeoDataFrame({"JCBH": pd.Series(dtype=str)}, geometry=[], crs=f"EPSG:{epsg}")
    old = (mon[SOURCE].astype(str) == "raster") & (mon[ROUND].astype(str) == str(round_)) if SOURCE in mon else \
        np.zeros(len(mon), bool)
    keep = mon[~np.asarray(old)].copy()
    new = candidates.copy()
    try:
        new["XZQDM"] = villages_for(new.geometry, store.read_layer("xzq", columns=["XZQDM"]))
    except NotFoundError:
        new["XZQDM"] = None
    gname = mon.geometry.name
    cols = [c for c in mon.columns if c != gname] or ["JCBH"]
    for c in ("JCBH", "XZQDM", "QSX", "HSX", "TBLX", "MJ", SOURCE, ROUND, FID, AREA):
        if c not in cols:
            cols.append(c)
    attrs = pd.DataFrame(new.drop(columns=new.geometry.name))
    for c in cols:
        if c not in attrs:
            attrs[c] = None
        if c in keep and pd.api.types.is_datetime64_any_dtype(keep[c]):
            attrs[c] = pd.to_datetime(attrs[c])
    new = gpd.GeoDataFrame(attrs[cols], geometry=gpd.GeoSeries(new.geometry.values, crs=f"EPSG:{epsg}"))
    if gname != new.geometry.name:
        new = new.rename_geometry(gname)
    keep = keep.reindex(columns=[*cols, gname])
    merged = gpd.GeoDataFrame(pd.concat([keep, new], ignore_index=True), geometry=gname, crs=f"EPSG:{epsg}")
    merged[FID] = np.arange(1, len(merged) + 1)
    record = LoadRecord(layer="monitoring", source_path=f"yzt raster change (round {round_})", source_layer=None,
                        sha256="", source_crs=f"EPSG:{epsg}", crs_resolution="raster grid",
                        transformation="none", target_crs=f"EPSG:{epsg}", encoding=None,
                        field_mapping={"raster_candidates": int(len(new))}, code_set=None,
                        rows_read=int(len(mon)), rows_written=int(len(merged)), loaded_at=_now(),
                        load_id=str(uuid.uuid4()), version="")
    store.write_layers({"monitoring": merged}, [record])
    return int(np.asarray(old).sum()), len(new)


def read_truth(path: Path, crs) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))

    def frame(items):
        return gpd.GeoDataFrame({"id": [i["id"] for i in items], "kind": [i["kind"] for i in items]},
                                geometry=shapely.from_wkt([i["wkt"] for i in items]), crs=crs)

    return frame(doc.get("planted_changes", [])), frame(doc.get("false_alarms", []))


# --- zonal / coverage --------------------------------------------------------------------------------------

LEVELS = {"county": 6, "township": 9, "village": 12}


def run_zonal(raster_path, store, layer: str, stats, *, level: str = "village", band: int = 1,
              role: str = "raster", crs=None) -> pd.DataFrame:
    epsg = _store_epsg(store)
    polys = store.read_layer(layer)
    if layer == "xzq":
        polys = polys[polys["XZQDM"].astype(str).str.len() == LEVELS[level]]
    with RasterSource(raster_path, f"EPSG:{epsg}", crs=crs, role=role,
                      resampling="nearest" if set(stats) & {"majority", "share"} else "bilinear") as src:
        if band < 1 or band > src.count:
            raise FieldError(f"raster {raster_path} has {src.count} band(s); --band {band} does not exist")
        res = zonal_stats(src, polys.geometry, stats, band=band)
    keys = [c for c in ("XZQDM", "XZQMC", "BSM", "DLBM", FID) if c in polys]
    out = pd.concat([polys[keys].reset_index(drop=True), res.reset_index(drop=True)], axis=1)
    out["area_m2"] = np.round(ellipsoidal_area(polys.geometry.values, f"EPSG:{epsg}"), 2)
    return out


def run_coverage(manifest, store, rules: RasterRules):
    epsg = _store_epsg(store)
    cams = store.read_layer("cameras")
    cult = _cultivated(store, rules.slope.cultivated)
    kcxs = pd.to_numeric(cult["KCXS"], errors="coerce").fillna(0.0).to_numpy() if "KCXS" in cult else 0.0
    area = cult[AREA].to_numpy(dtype=float) if AREA in cult else ellipsoidal_area(cult.geometry.values,
                                                                                   f"EPSG:{epsg}")
    cult["net_area_m2"] = area * (1.0 - kcxs)
    town = cult["ZLDWDM"].astype(str).str[:9]
    with open_raster(manifest, "dem", epsg) as dem:
        result = camera_coverage(dem, cams, cult, town.to_numpy(), rules.viewshed)
    xzq = store.read_layer("xzq", columns=["XZQDM", "XZQMC"])
    towns = xzq[xzq["XZQDM"].astype(str).str.len() == 9]
    names = dict(zip(towns["XZQDM"].astype(str), towns["XZQMC"].astype(str)))
    by = result.by_township
    by.insert(1, "XZQMC", [names.get(str(c), "") for c in by["XZQDM"]])
    # cameras standing in each township
    if len(towns) and len(cams):
        tree = shapely.STRtree(towns.geometry.values)
        ci, ti = tree.query(cams.geometry.values, predicate="within")
        counts = pd.Series(towns["XZQDM"].astype(str).to_numpy()[ti]).value_counts()
        by.insert(2, "cameras", [int(counts.get(str(c), 0)) for c in by["XZQDM"]])
    total = pd.DataFrame([{"XZQDM": manifest.region_code, "XZQMC": manifest.region_name,
                           "cameras": int(len(cams)), "cultivated_m2": by["cultivated_m2"].sum(),
                           "visible_m2": by["visible_m2"].sum()}])
    total["visible_share"] = total["visible_m2"] / total["cultivated_m2"].where(total["cultivated_m2"] > 0)
    by = pd.concat([by, total], ignore_index=True)
    for c in ("cultivated_m2", "visible_m2"):
        by[c] = by[c].round(2)
    by["visible_share"] = by["visible_share"].fillna(0).round(4)
    return by, result.by_camera


# --- runs that write their tables ------------------------------------------------------------------------------

def grade_slopes(manifest, store, rules: RasterRules) -> tuple[pd.DataFrame, list[Finding], str]:
    """run_slope, and its table and findings written to the store (tables raster_slope_grades,
    raster_findings) under a new run id: (table, findings, run id)."""
    run_id = str(uuid.uuid4())
    table, findings = run_slope(manifest, store, rules)
    table["run_id"] = run_id
    store.write_tables({SLOPE_TABLE: table, FINDINGS_TABLE: _findings_frame(findings, run_id)})
    return table, findings, run_id


def record_change_run(store, result, round_) -> None:
    """Append a change detection run (round, threshold, summary) to the raster_change_runs table."""
    run = pd.DataFrame([{"run_at": _now(), "round": round_, "threshold": result.threshold,
                         "summary": json.dumps(result.summary(), ensure_ascii=False)}])
    try:
        runs = pd.concat([store.read_table(CHANGE_RUNS_TABLE), run], ignore_index=True)
    except NotFoundError:
        runs = run
    store.write_tables({CHANGE_RUNS_TABLE: runs})


def store_coverage(manifest, store, rules: RasterRules) -> tuple[pd.DataFrame, pd.DataFrame]:
    """run_coverage, written to the tables raster_camera_coverage and raster_camera_views."""
    by, cams = run_coverage(manifest, store, rules)
    stamp = _now()
    store.write_tables({COVERAGE_TABLE: by.assign(computed_at=stamp), CAMERA_TABLE: cams.assign(computed_at=stamp)})
    return by, cams


def change_epsg(manifest, store) -> int:
    """The CRS the change candidates are made in: the store's, else the one the manifest resolves to."""
    if store is not None:
        return _store_epsg(store)
    from layers.load import resolve_target_epsg

    return resolve_target_epsg(manifest)

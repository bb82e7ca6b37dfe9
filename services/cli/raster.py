"""`yzt raster …`: slope grades of 耕地 from the DEM, change candidates from two images, zonal statistics, camera
coverage. The orchestration (read the store and the manifest's rasters, call analysis/raster, write tables)
lives here as plain functions the commands call (and tests use).

    yzt raster info     --manifest M
    yzt raster slope    --manifest M --store S             → tables raster_slope_grades, raster_findings
    yzt raster change   --manifest M [--store S --as-monitoring] [--round R] [--out F.gpkg] [--truth T.yaml]
    yzt raster zonal    RASTER --store S --layer dltb|xzq [--stat mean|majority|share] [--level village]
    yzt raster coverage --manifest M --store S             → tables raster_camera_coverage, raster_camera_views
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import click
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
import yaml

from analysis.raster.change import FILTER_TITLES, FILTERS, detect_changes, evaluate
from analysis.raster.rules import RasterRules, default_rules, parse_rules
from analysis.raster.slope import patch_grades
from analysis.raster.viewshed import camera_coverage
from analysis.raster.zonal import STATS, zonal_stats
from layers.area import ellipsoidal_area
from layers.errors import FieldError, NotFoundError, StoreError
from layers.fields import AREA, FID, ROUND, SOURCE
from layers.manifest import load_manifest
from layers.raster import RasterSource, open_raster
from layers.records import WARNING, INFO, Finding, LoadRecord
from layers.store import open_store
from layers.yamlfile import read_yaml_file

SLOPE_TABLE = "raster_slope_grades"
FINDINGS_TABLE = "raster_findings"
COVERAGE_TABLE = "raster_camera_coverage"
CAMERA_TABLE = "raster_camera_views"
CHANGE_RUNS_TABLE = "raster_change_runs"
GDAL_CACHE_BYTES = 512 * 2**20


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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
    table["agrees"] = [(g is not None and r is not None and g == r) for g, r in zip(table["GDPDJB"], table["grade_dem"])]
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
    with open_raster(manifest, "image_before", target_epsg) as before:
        # the later image is read on the earlier image's grid (warped only where the grids differ)
        with RasterSource(spec.path, f"EPSG:{target_epsg}", crs=spec.crs, role="image_after",
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
    out = [None] * len(geoms)
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
    keep = keep.reindex(columns=cols + [gname])
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


# --- commands ----------------------------------------------------------------------------------------------

def _echo_table(frame: pd.DataFrame, fmt: str) -> None:
    if fmt == "json":
        click.echo(frame.to_json(orient="records", force_ascii=False))
    elif fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    else:
        with pd.option_context("display.max_rows", 200, "display.width", 200, "display.max_columns", 30):
            click.echo(frame.to_string(index=False))


def register(cli) -> None:
    @cli.group("raster")
    @click.pass_context
    def raster(ctx):
        """Rasters: slope grades from the DEM, change candidates, zonal statistics, camera coverage."""
        # bound GDAL's block cache (default: 5 % of physical memory) so a county DEM streams in < 2 GB
        ctx.with_resource(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))

    rules_opt = click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None,
                             help="raster rules YAML (default: analysis/raster/rules.yaml)")

    @raster.command("info")
    @click.option("--manifest", "manifest_path", required=True, type=click.Path(exists=True, dir_okay=False))
    def info(manifest_path):
        """Describe the manifest's raster roles (CRS, size, tiling, overviews)."""
        manifest = load_manifest(manifest_path)
        if not manifest.rasters:
            raise NotFoundError(f"manifest {manifest_path} has no rasters: section")
        for role in manifest.rasters:
            with open_raster(manifest, role) as src:
                click.echo(json.dumps(src.describe(), ensure_ascii=False))

    @raster.command("slope")
    @click.option("--manifest", "manifest_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--store", "store_path", required=True)
    @rules_opt
    def slope(manifest_path, store_path, rules_path):
        """耕地坡度级别 (GDPDJB) of every 耕地 patch from the DEM; disagreements become 入库质检 findings."""
        rules = load_raster_rules(rules_path)
        manifest = load_manifest(manifest_path)
        run_id = str(uuid.uuid4())
        with open_store(store_path) as store:
            table, findings = run_slope(manifest, store, rules)
            table["run_id"] = run_id
            store.write_tables({SLOPE_TABLE: table, FINDINGS_TABLE: _findings_frame(findings, run_id)})
        graded = table["grade_dem"].notna()
        click.echo(f"耕地 patches: {len(table)}, graded from the DEM: {int(graded.sum())}")
        by = table[graded].groupby("grade_dem").agg(patches=("BSM", "size"), area_m2=("area_m2", "sum"))
        for grade, row in by.iterrows():
            click.echo(f"  grade {grade}: {int(row['patches'])} patches, {row['area_m2'] / 1e4:.2f} ha")
        for f in findings:
            click.echo(f"{f.severity}: {f.check}: {f.message}")
        click.echo(f"written: tables {SLOPE_TABLE}, {FINDINGS_TABLE} (run {run_id})")

    @raster.command("change")
    @click.option("--manifest", "manifest_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--store", "store_path", default=None, help="store (its CRS; needed for --as-monitoring)")
    @click.option("--as-monitoring", is_flag=True, help="append the candidates to the store's monitoring layer")
    @click.option("--round", "round_", default=None, help="ROUND of the candidates (default: later image's year)")
    @click.option("--qsx", default=None, help="earlier image date (default: from the image's tags)")
    @click.option("--hsx", default=None, help="later image date (default: from the image's tags)")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
                  help="write candidates (layer candidates) and removed ones (layer removed) to this GeoPackage")
    @click.option("--truth", "truth_path", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="raster_truth.yaml: report precision / recall against planted changes")
    @rules_opt
    def change(manifest_path, store_path, as_monitoring, round_, qsx, hsx, out_path, truth_path, rules_path):
        """Change candidates between image_before and image_after, with what each false-alarm filter removed."""
        rules = load_raster_rules(rules_path)
        manifest = load_manifest(manifest_path)
        if as_monitoring and not store_path:
            raise click.UsageError("--as-monitoring needs --store")
        store = open_store(store_path) if store_path else None
        try:
            if store is not None:
                epsg = _store_epsg(store)
            else:
                from layers.load import resolve_target_epsg

                epsg = resolve_target_epsg(manifest)
            result = run_change(manifest, rules, epsg, round_=round_, qsx=qsx, hsx=hsx)
            cand = result.candidates
            round_ = cand[ROUND].iloc[0] if len(cand) else (round_ or "raster")
            c = result.counts
            click.echo(f"threshold {result.threshold:.3f} σ (Otsu {result.otsu_threshold if result.otsu_threshold is None else round(result.otsu_threshold, 3)}, "
                       f"floor {rules.change.threshold_floor}); regions above it: {c['raw_regions']}")
            for f in FILTERS:
                click.echo(f"  removed by {f:<12} {c[f]:>5}   {FILTER_TITLES[f]}")
            click.echo(f"candidates kept: {c['kept']} ({cand['MJ'].sum() / 1e4:.2f} ha)" if len(cand) else
                       "candidates kept: 0")
            if truth_path:
                planted, false_alarms = read_truth(Path(truth_path), cand.crs or f"EPSG:{epsg}")
                ev = evaluate(cand, planted, false_alarms)
                click.echo(f"against {truth_path}: precision {ev['precision']:.3f}, recall {ev['recall']:.3f} "
                           f"({ev['detected']}/{ev['planted']} planted changes found, {ev['false_positives']} "
                           f"false candidates; planted false alarms reported: {ev.get('false_alarms_reported')})")
            if out_path:
                Path(out_path).parent.mkdir(parents=True, exist_ok=True)
                cand.to_file(out_path, layer="candidates", driver="GPKG")
                if len(result.removed):
                    result.removed.to_file(out_path, layer="removed", driver="GPKG")
                click.echo(f"written: {out_path}")
            if store is not None:
                run = pd.DataFrame([{"run_at": _now(), "round": round_, "threshold": result.threshold,
                                     "summary": json.dumps(result.summary(), ensure_ascii=False)}])
                try:
                    runs = pd.concat([store.read_table(CHANGE_RUNS_TABLE), run], ignore_index=True)
                except NotFoundError:
                    runs = run
                store.write_tables({CHANGE_RUNS_TABLE: runs})
            if as_monitoring:
                removed, added = append_to_monitoring(store, cand, round_)
                click.echo(f"monitoring: {added} raster candidates of round {round_} appended (SOURCE raster), "
                           f"{removed} earlier ones of that round replaced; `yzt analyse` dedupes them")
        finally:
            if store is not None:
                store.close()

    @raster.command("zonal")
    @click.argument("raster_path", type=click.Path(exists=True, dir_okay=False))
    @click.option("--store", "store_path", required=True)
    @click.option("--layer", type=click.Choice(["dltb", "xzq"]), required=True)
    @click.option("--stat", "stats", type=click.Choice(list(STATS)), multiple=True, default=("mean",))
    @click.option("--level", type=click.Choice(list(LEVELS)), default="village", help="xzq level (default 村)")
    @click.option("--band", type=int, default=1)
    @click.option("--crs", default=None, help="the raster's CRS when the file has none (EPSG:45xx)")
    @click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
    @click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None, help="write CSV here")
    def zonal(raster_path, store_path, layer, stats, level, band, crs, fmt, out_path):
        """Zonal statistics of a raster (any CGCS2000 GeoTIFF) by DLTB patch or by 村 / 乡 / 县."""
        with open_store(store_path) as store:
            out = run_zonal(raster_path, store, layer, stats, level=level, band=band, crs=crs)
        if out_path:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            out.to_csv(out_path, index=False, encoding="utf-8")
            click.echo(f"written: {out_path} ({len(out)} rows)")
        else:
            _echo_table(out, fmt)

    @raster.command("coverage")
    @click.option("--manifest", "manifest_path", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--store", "store_path", required=True)
    @click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
    @rules_opt
    def coverage(manifest_path, store_path, fmt, rules_path):
        """Camera viewsheds over the DEM and the share of 耕地 (net of 田坎) they see, by 乡."""
        rules = load_raster_rules(rules_path)
        manifest = load_manifest(manifest_path)
        with open_store(store_path) as store:
            by, cams = run_coverage(manifest, store, rules)
            stamp = _now()
            store.write_tables({COVERAGE_TABLE: by.assign(computed_at=stamp),
                                CAMERA_TABLE: cams.assign(computed_at=stamp)})
        _echo_table(by, fmt)
        if fmt == "table":
            click.echo(f"written: tables {COVERAGE_TABLE}, {CAMERA_TABLE}")

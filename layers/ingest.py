"""入库: load every role of a manifest, then write them all to the store in ONE atomic write.

    result = ingest(load_manifest("data/sample/manifest.yaml"), open_store("out/store.gpkg"))
    print(result.to_text())

Order of work: ``plan_ingest`` resolves the store CRS (``resolve_target_epsg``) and refuses a store that holds
another region or CRS; ``load_and_stage`` loads one role with ``load_role``, checks it and stages it into the
store (any YztError aborts before anything is published), then lets its rows go; ``publish_ingest`` adds the
checks between layers and publishes every staged layer, its LoadRecord (one ``load_id`` for the whole run), the
入库质检 findings and the region metadata in one transaction. ``roles=[…]`` re-ingests only those layers; the
others stay. services.jobs.ingest runs the same three steps with ``load_and_stage`` as one dask task per role.
"""

from __future__ import annotations

import sys
import time
import unicodedata
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .crs import central_meridian, zone_of_gk_epsg
from .errors import ManifestError, SourceError
from .fields import ROLES
from .georef import RegionSurvey, survey_region
from .load import (
    CoverageChecks,
    LoadedLayer,
    _Context,
    load_role,
    package_version,
    peer_code_set_findings,
    resolve_target_epsg,
)
from .manifest import Manifest
from .records import ERROR, INFO, WARNING, Finding, LoadRecord
from .store import Store, open_store
from .topology import Coverage, cross_layer_findings


@dataclass
class LayerSummary:
    """What one stored layer became: counts and how its CRS was reached."""

    role: str
    rows_read: int
    rows_written: int
    repaired: int
    dropped_empty: int
    duplicates: int
    area_mismatches: int
    warnings: int
    infos: int
    source_crs: str
    crs_resolution: str
    transformation: str
    code_set: str | None
    partitions: int = 0  # spatial partitions its coverage checks ran in on dask (0: the whole layer at once)


@dataclass
class IngestResult:
    store: str
    region_code: str
    region_name: str
    target_epsg: int
    load_id: str
    layers: list[LayerSummary]
    records: list[LoadRecord]
    findings: list[Finding]
    seconds: float = 0.0  # whole run
    write_seconds: float = 0.0  # of which the atomic store write
    untouched: list[str] = field(default_factory=list)  # layers already in the store and not re-ingested
    layer_tasks: int = 0  # layers loaded as tasks of their own on a dask cluster (0: all in this process)

    def to_dict(self) -> dict:
        return {"store": self.store, "region_code": self.region_code, "region_name": self.region_name,
                "target_epsg": self.target_epsg, "load_id": self.load_id, "seconds": round(self.seconds, 2),
                "write_seconds": round(self.write_seconds, 2), "layer_tasks": self.layer_tasks,
                "layers": [asdict(s) for s in self.layers], "untouched": self.untouched,
                "findings": [f.to_dict() for f in self.findings]}

    def to_text(self, max_findings: int = 30) -> str:
        """The summary `yzt ingest` prints: one row per layer, then the warnings."""
        zone = zone_of_gk_epsg(self.target_epsg)
        crs_text = f"EPSG:{self.target_epsg}"
        if zone:
            crs_text += f" (CGCS2000 3° GK zone {zone[0]}, CM {central_meridian(zone[0]):g}°E)"
        lines = [f"入库 ingest {self.region_name} ({self.region_code}) → {crs_text}",
                 f"store {self.store}   load_id {self.load_id}   {self.seconds:.1f} s "
                 + (f"(layers loaded as {self.layer_tasks} dask tasks; writing {self.write_seconds:.1f} s in all)"
                    if self.layer_tasks else
                    f"(load {self.seconds - self.write_seconds:.1f} s, write {self.write_seconds:.1f} s)"), ""]
        header = ["layer", "rows", "read", "repaired", "dropped", "dup", "area≠", "warn", "info",
                  "source CRS (how known) → transformation"]
        rows: list[list] = [[s.role, s.rows_written, s.rows_read, s.repaired, s.dropped_empty, s.duplicates,
                             s.area_mismatches, s.warnings, s.infos,
                             f"{s.source_crs} ({s.crs_resolution}) → {s.transformation}"]
                for s in self.layers]
        widths = [max(_width(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
        for r in [header, *rows]:
            cells = [_pad(r[0], widths[0])] + [_pad(r[i], widths[i], right=True) for i in range(1, len(widths))]
            lines.append("  ".join([*cells, str(r[-1])]).rstrip())
        split = [f"{s.role} in {s.partitions}" for s in self.layers if s.partitions]
        if split:
            lines.append(f"areas and coverage checked in spatial partitions: {', '.join(split)}")
        if self.untouched:
            lines.append(f"kept as stored: {', '.join(self.untouched)}")
        shown = [f for f in self.findings if f.severity in (ERROR, WARNING)]
        n_warn = sum(f.severity == WARNING for f in self.findings)
        n_info = sum(f.severity == INFO for f in self.findings)
        lines += ["", f"{len(self.layers)} layer(s), {sum(s.rows_written for s in self.layers)} rows written; "
                      f"{n_warn} warning(s), {n_info} info (stored in yzt_findings; `yzt check` lists all)"]
        for f in shown[:max_findings]:
            lines.append(f"  [{f.severity}] {f.layer}/{f.check}: {f.message}")
        if len(shown) > max_findings:
            lines.append(f"  … and {len(shown) - max_findings} more")
        return "\n".join(lines)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in str(text))


def _pad(text, width: int, right: bool = False) -> str:
    fill = " " * max(width - _width(str(text)), 0)
    return fill + str(text) if right else str(text) + fill


def _select_roles(manifest: Manifest, roles) -> list[str]:
    available = [r for r in ROLES if r in manifest.layers]
    if roles is None:
        return available
    roles = list(dict.fromkeys(roles))
    unknown = [r for r in roles if r not in manifest.layers]
    if unknown:
        raise ManifestError(f"role(s) {', '.join(map(repr, unknown))} not in manifest {manifest.path}; "
                            f"it has: {', '.join(available)}")
    if not roles:
        raise ManifestError("no role given: omit --role to ingest every layer of the manifest")
    return [r for r in ROLES if r in roles]


def ingest(manifest: Manifest, store: Store | str | Path, roles=None, progress: bool = True,
           allow_empty: bool = False) -> IngestResult:
    """Load ``roles`` (default: all) of ``manifest`` and replace them in ``store`` atomically.

    A layer that comes out empty never replaces a stored layer that has features, unless ``allow_empty``.
    Raises the loader's YztError (nothing written) or StoreError (store left as it was).
    """
    if isinstance(store, Store):
        return _ingest(manifest, store, roles, progress, allow_empty)
    with open_store(store) as opened:
        return _ingest(manifest, opened, roles, progress, allow_empty)


def refuse_emptying(store: Store, loaded, manifest: Manifest) -> None:
    """SourceError if a loaded layer has no features where the store's layer of that role has some."""
    stored = set(store.layer_names())
    for layer in loaded:
        if len(layer.gdf) or layer.role not in stored:
            continue
        held = store.count(layer.role)
        if held:
            raise SourceError(f"layer '{layer.role}' ({layer.record.source_path}) has no features, and the store's "
                              f"{layer.role} holds {held:,}: the empty layer would replace it. Check the file "
                              "(an export or copy that stopped early?); to empty the layer on purpose, ingest with "
                              "--allow-empty")


@dataclass
class IngestPlan:
    """What every layer of one ingest shares: the roles, the store CRS, the load id, the meta the publish
    sets. Picklable: a county whose layers load on several dask workers sends it with each layer's task."""

    manifest: Manifest
    roles: list[str]
    epsg: int
    load_id: str
    meta: dict[str, str]
    survey: RegionSurvey
    allow_empty: bool = False


@dataclass
class StagedLayer:
    """One role loaded, checked and staged: its LoadedLayer with the frame let go (no rows), what the
    cross-layer check keeps of it (xzq's frame, a survey layer's Coverage) and the seconds its staging took.
    ``entry``: the stage table, when it was staged by another process than the one that publishes."""

    layer: LoadedLayer
    kept: object | None
    write_seconds: float
    entry: tuple | None = None


def plan_ingest(manifest: Manifest, store: Store, roles=None, allow_empty: bool = False) -> IngestPlan:
    """Select the roles, resolve the store CRS, refuse a store of another region or CRS; nothing is read
    beyond the sources' extents and nothing is written."""
    selected = _select_roles(manifest, roles)
    survey = survey_region(manifest)
    epsg = resolve_target_epsg(manifest, survey)
    store.check_region(manifest.region_code, epsg)
    load_id = uuid.uuid4().hex
    current = store.meta()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    zone = zone_of_gk_epsg(epsg)
    meta = {"region_code": manifest.region_code, "region_name": manifest.region_name, "epsg": str(epsg),
            "crs": f"EPSG:{epsg}", "zone": str(zone[0]) if zone else "", "created_at": current.get("created_at", now),
            "updated_at": now, "version": package_version(), "last_load_id": load_id,
            "manifest": str(manifest.path)}
    return IngestPlan(manifest, selected, epsg, load_id, meta, survey, allow_empty)


def load_and_stage(plan: IngestPlan, role: str, store: Store, staging, progress: bool = False,
                   coverage_checks: CoverageChecks | None = None) -> StagedLayer:
    """Load, check and stage one role, then let its rows go: the unit of work of an ingest, the same whether
    the roles run one after the other (``ingest``) or on several dask workers (services.jobs.ingest).
    ``coverage_checks``: how a survey layer's areas and coverage validation are computed when not over the
    whole layer here (services.jobs.ingest: in spatial partitions on the cluster)."""
    context = _Context(plan.survey, peer_later=True, coverage_checks=coverage_checks)
    layer = load_role(plan.manifest, role, plan.epsg, progress=progress, _context=context)
    layer.record.load_id = plan.load_id
    if not plan.allow_empty:
        refuse_emptying(store, [layer], plan.manifest)
    kept: object | None = None
    if role in ("dltb", "dltb_prev", "xzq"):
        kept = layer.gdf if role == "xzq" else Coverage.of(layer.gdf)
    t = time.monotonic()
    staging.stage(role, layer.gdf)
    seconds = time.monotonic() - t
    # an empty copy: a slice (iloc[:0]) would be a view keeping every row of the layer alive
    return StagedLayer(LoadedLayer(layer.role, layer.gdf.iloc[:0].copy(), layer.record, layer.findings,
                                   layer.partitions), kept, seconds)


def publish_ingest(plan: IngestPlan, staged: list[StagedLayer], staging) -> tuple[list[LoadRecord], list[Finding]]:
    """The checks between layers (dltb_prev's code set against dltb's, the survey against the county), then
    every staged layer published with its record and the findings in one transaction. ``staged`` in role
    order."""
    code_sets = {s.layer.role: s.layer.record.code_set for s in staged
                 if s.layer.role in ("dltb", "dltb_prev") and s.layer.record.code_set is not None}
    for s in staged:
        if s.layer.role == "dltb_prev":
            s.layer.findings.extend(peer_code_set_findings(plan.manifest, "dltb_prev", code_sets))
    records = [s.layer.record for s in staged]
    findings = [f for s in staged for f in s.layer.findings]
    kept = {s.layer.role: s.kept for s in staged if s.kept is not None}
    findings += cross_layer_findings(kept, plan.manifest.options)
    staging.publish(records, findings)
    return records, findings


def ingest_result(plan: IngestPlan, store: Store, staged: list[StagedLayer], records: list[LoadRecord],
                  findings: list[Finding], seconds: float, write_seconds: float, layer_tasks: int = 0) -> IngestResult:
    summaries = []
    for s in staged:
        layer, r = s.layer, s.layer.record
        summaries.append(LayerSummary(
            role=layer.role, rows_read=r.rows_read, rows_written=r.rows_written, repaired=r.repaired,
            dropped_empty=r.dropped_empty, duplicates=r.duplicates, area_mismatches=r.area_mismatches,
            warnings=sum(f.severity == WARNING for f in layer.findings),
            infos=sum(f.severity == INFO for f in layer.findings), source_crs=r.source_crs,
            crs_resolution=r.crs_resolution, transformation=r.transformation, code_set=r.code_set,
            partitions=layer.partitions))
    untouched = [n for n in store.layer_names() if n not in plan.roles]
    manifest = plan.manifest
    return IngestResult(store=store.url, region_code=manifest.region_code, region_name=manifest.region_name,
                        target_epsg=plan.epsg, load_id=plan.load_id, layers=summaries, records=records,
                        findings=findings, seconds=seconds, write_seconds=write_seconds, untouched=untouched,
                        layer_tasks=layer_tasks)


def _ingest(manifest: Manifest, store: Store, roles, progress: bool, allow_empty: bool = False) -> IngestResult:
    started = time.monotonic()
    plan = plan_ingest(manifest, store, roles, allow_empty)
    staged: list[StagedLayer] = []
    write_seconds = 0.0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan.roles), unit="layer", file=sys.stderr, desc="load", leave=False)
    try:
        # each layer is staged as soon as it is loaded and let go (PostGIS writes it into a stage table;
        # the GeoPackage keeps it): one layer in memory at a time, the store unchanged until publish
        with store.staged_layers(plan.meta) as staging:
            for role in plan.roles:
                if bar is not None:
                    bar.set_description(f"load {role}")
                staged.append(load_and_stage(plan, role, store, staging, progress=progress))
                write_seconds += staged[-1].write_seconds
                if bar is not None:
                    bar.update()
            if bar is not None:
                sys.stderr.write(f"publishing {len(staged)} layer(s) in {store.url} …\n")
            t = time.monotonic()
            records, findings = publish_ingest(plan, staged, staging)
            write_seconds += time.monotonic() - t
    finally:
        if bar is not None:
            bar.close()
    return ingest_result(plan, store, staged, records, findings, time.monotonic() - started, write_seconds)

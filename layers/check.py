"""入库质检: run every load step of a manifest without writing anything, and report.

    report = check_manifest(load_manifest("data/sample/manifest.yaml"))
    print(report.to_text()); report.ok

Each layer is loaded exactly as `yzt ingest` would load it (layers.load.load_role). A layer that cannot be
loaded gives one finding of severity "error" carrying the same one-line message ingest would raise;
everything else is a warning or info finding. ``ok`` is True when there is no error.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from .codes import CODE_SET_NAMES
from .errors import (
    CodeSetError,
    CRSError,
    EncodingError,
    FieldError,
    GeometryError,
    ManifestError,
    SourceError,
    YztError,
)
from .fields import ROLES
from .georef import survey_region
from .load import _Context, load_role, package_version, resolve_target_epsg
from .records import ERROR, INFO, WARNING, Finding
from .topology import cross_layer_findings

_ERROR_CHECKS = [(EncodingError, "encoding"), (SourceError, "source"), (FieldError, "fields"),
                 (CodeSetError, "code_set"), (CRSError, "crs"), (GeometryError, "geometry"),
                 (ManifestError, "manifest")]
SEVERITY_ZH = {ERROR: "错误 error", WARNING: "警告 warning", INFO: "提示 info"}


def _error_check(exc: YztError) -> str:
    return next((name for cls, name in _ERROR_CHECKS if isinstance(exc, cls)), "load")


@dataclass
class LayerCheck:
    """One role's outcome: its LoadRecord's facts, or the error that stopped it."""

    role: str
    status: str  # ok | error
    rows_read: int | None = None
    rows_written: int | None = None
    source_path: str | None = None
    source_crs: str | None = None
    crs_resolution: str | None = None
    transformation: str | None = None
    encoding: str | None = None
    code_set: str | None = None
    field_mapping: dict = field(default_factory=dict)
    repaired: int = 0
    dropped_empty: int = 0
    duplicates: int = 0
    area_mismatches: int = 0
    error: str | None = None


@dataclass
class CheckReport:
    manifest: str
    region_code: str
    region_name: str
    target_epsg: int | None
    region_extent: str | None
    layers: list[LayerCheck]
    findings: list[Finding]
    checked_at: str
    version: str

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for f in self.findings if f.severity == s) for s in (ERROR, WARNING, INFO)}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["counts"] = self.counts()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_text(self, max_ids: int = 10) -> str:
        c = self.counts()
        lines = [
            "入库质检报告 / ingest check report",
            f"清单 manifest: {self.manifest}",
            f"区域 region:   {self.region_name} ({self.region_code}); "
            f"store CRS {'EPSG:' + str(self.target_epsg) if self.target_epsg else '(unresolved)'}",
        ]
        if self.region_extent:
            lines.append(f"范围 extent:   {self.region_extent}")
        verdict = "可以入库 ready to ingest" if self.ok else "不能入库 NOT ready: fix the errors below"
        lines.append(f"结论 result:   {verdict} — {c[ERROR]} error(s), {c[WARNING]} warning(s), {c[INFO]} info")
        lines.append("")
        widths = [(14, False), (7, False), (8, True), (8, True), (26, False), (10, False), (6, True), (6, True),
                  (6, True), (8, True)]

        def row(values) -> str:
            return "".join(_pad(v, w, r) if not r else _pad(v, w, r) + " " for v, (w, r) in zip(values, widths))

        header = row(["图层 layer", "状态", "读入 in", "入库 out", "源坐标系 source CRS", "地类编码", "修复",
                      "空", "重复", "面积差"])
        lines += [header.rstrip(), "-" * _width(header.rstrip())]
        for lc in self.layers:
            if lc.status == "ok":
                lines.append(row([lc.role, "ok", lc.rows_read, lc.rows_written, _cut(lc.source_crs, 25),
                                  lc.code_set or "-", lc.repaired, lc.dropped_empty, lc.duplicates,
                                  lc.area_mismatches]).rstrip())
            else:
                lines.append(row([lc.role, "ERROR", "-", "-", ROLES.get(lc.role, {}).get("zh", "")]).rstrip())
        lines.append("")
        lines.append("坐标与编码 CRS resolution, transformation, encoding:")
        for lc in self.layers:
            if lc.status != "ok":
                continue
            lines.append(f"  {lc.role}: {lc.source_crs} [{lc.crs_resolution}] → EPSG:{self.target_epsg}; "
                         f"{lc.transformation}; encoding {lc.encoding}"
                         + (f"; 地类编码 {CODE_SET_NAMES.get(lc.code_set, lc.code_set)}" if lc.code_set else ""))
        lines.append("")
        lines.append("问题清单 findings:")
        if not self.findings:
            lines.append("  (none)")
        order = {ERROR: 0, WARNING: 1, INFO: 2}
        for f in sorted(self.findings, key=lambda f: (order.get(f.severity, 3), list(ROLES).index(f.layer)
                                                      if f.layer in ROLES else 99)):
            count = f" ×{f.count}" if f.count else ""
            lines.append(f"  [{SEVERITY_ZH.get(f.severity, f.severity)}] {f.layer} · {f.check}{count}: {f.message}")
            if f.ids and f.check not in ("fields_dropped",):
                shown = ", ".join(str(i) for i in f.ids[:max_ids])
                more = f" … (+{len(f.ids) - max_ids} more)" if len(f.ids) > max_ids else ""
                lines.append(f"      ids: {shown}{more}")
        lines.append("")
        lines.append(f"checked {self.checked_at} by yizhangtu {self.version}")
        return "\n".join(lines)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text, width: int, right: bool = False) -> str:
    text = str(text)
    fill = " " * max(width - _width(text), 0)
    return fill + text if right else text + fill


def _cut(text: str | None, width: int) -> str:
    text = text or "-"
    return text if len(text) <= width else text[:width - 1] + "…"


def _check_rasters(manifest) -> list[Finding]:
    findings = []
    for role, spec in manifest.rasters.items():
        path = Path(spec.path)
        if not path.is_file():
            findings.append(Finding(layer=role, check="source", severity=ERROR, count=1,
                                    message=f"raster '{role}': file {path} does not exist; fix path: in the manifest"))
            continue
        try:
            import rasterio

            with rasterio.open(path) as src:
                if src.crs is None and spec.crs is None:
                    findings.append(Finding(layer=role, check="crs", severity=ERROR, count=1,
                                            message=f"raster '{role}' ({path.name}) has no CRS; set crs: in the "
                                                    "manifest"))
        except Exception as exc:
            findings.append(Finding(layer=role, check="source", severity=ERROR, count=1,
                                    message=f"raster '{role}': cannot read {path}: {exc}; copy or export it again"))
    return findings


def check_manifest(manifest, progress: bool = False) -> CheckReport:
    """Run every load step for every role of the manifest, write nothing, and collect the findings."""
    findings: list[Finding] = []
    layers: list[LayerCheck] = []
    survey = survey_region(manifest)
    target = None
    try:
        target = resolve_target_epsg(manifest, survey)
    except YztError as exc:
        findings.append(Finding(layer="manifest", check=_error_check(exc), severity=ERROR, count=1,
                                message=str(exc)))
    context = _Context(survey)
    kept = {}  # the layers the cross-layer checks compare
    for role in ROLES:
        if role not in manifest.layers:
            continue
        if target is None:
            layers.append(LayerCheck(role=role, status="error", error="store CRS unresolved"))
            continue
        try:
            loaded = load_role(manifest, role, target, progress=progress, _context=context)
        except YztError as exc:
            findings.append(Finding(layer=role, check=_error_check(exc), severity=ERROR, count=1,
                                    message=str(exc)))
            layers.append(LayerCheck(role=role, status="error", error=str(exc)))
            continue
        if role in ("xzq", "dltb", "dltb_prev"):
            kept[role] = loaded.gdf
        r = loaded.record
        layers.append(LayerCheck(
            role=role, status="ok", rows_read=r.rows_read, rows_written=r.rows_written, source_path=r.source_path,
            source_crs=r.source_crs, crs_resolution=r.crs_resolution, transformation=r.transformation,
            encoding=r.encoding, code_set=r.code_set, field_mapping=r.field_mapping, repaired=r.repaired,
            dropped_empty=r.dropped_empty, duplicates=r.duplicates, area_mismatches=r.area_mismatches))
        findings += loaded.findings
    findings += cross_layer_findings(kept, manifest.options)
    findings += _check_rasters(manifest)
    region = survey.region.describe() if survey.region is not None else None
    return CheckReport(manifest=str(manifest.path), region_code=manifest.region_code,
                       region_name=manifest.region_name, target_epsg=target, region_extent=region, layers=layers,
                       findings=findings, checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
                       version=package_version())

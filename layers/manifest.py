"""The region manifest: one YAML file that describes a bureau's region and its layers by role.

```yaml
region:
  code: "130599"          # 行政区代码 of the county (6 digits) or city
  name: 样例县
crs: auto                 # or EPSG:4547: the CGCS2000 3° GK zone the store keeps geometry in
options:                  # optional; defaults shown
  area_tolerance: 0.001   # relative |TBMJ − ellipsoidal area| / area above which a patch is listed
  area_flag: 0.10         # relative difference reported as a large discrepancy (exports >10 % off)
layers:
  dltb:
    path: dltb.shp        # relative to the manifest's folder
    layer: DLTB           # layer inside a GeoPackage / FileGDB (optional when the file has one layer)
    crs: EPSG:4526        # optional: overrides / replaces a missing .prj
    encoding: gbk         # optional: wins over detection
    fields: {DLBM: 地类代码}  # optional: standard code -> source field name
    code_set: sandiao     # optional: sandiao (三调) | ydyh (用地用海) | erdiao; needed only when the codes cannot tell
    transform:            # optional: datum transformation for Xian 1980 / Beijing 1954 sources
      helmert: {x: 0, y: 0, z: 0, rx: 0, ry: 0, rz: 0, s: 0, convention: coordinate_frame}
      # or four_param: {dx: 0, dy: 0, rotation: 0, scale: 0, convention: position_vector}
      #    (metres, arc-seconds, ppm; in the plane); convention: is required for helmert and four_param
      # or pipeline: "+proj=pipeline …"
      # or estimate: four_param | helmert   (the parameters are fitted to the control points)
      control_points: points.csv   # optional: 同名点 pairs "E_src,N_src,E_dst,N_dst" (or a YAML list of 4 numbers)
      max_residual_m: 0.5          # residuals above this refuse the layer
  monitoring:             # a role may list several sources (rounds, satellite / camera / drone)
    - {path: wp_2024_1.gpkg, source: satellite, round: 2024-1}
    - {path: camera_2024.geojson, source: camera, round: 2024-1, coords: gcj02}
  yjjbnt:                 # a .zip as delivered: read in place; member: picks a dataset when it holds several
    path: 三区三线.zip
    member: 永久基本农田/YJJBNT.shp   # path inside the zip (or just YJJBNT.shp when unique)
rasters:                  # optional
  dem: {path: dem.tif}
```
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ManifestError
from .fields import RASTER_ROLES, ROLES
from .yamlfile import load_yaml_text

MULTI_ROLES = {"monitoring", "approvals"}  # roles that may come from several files
WEB_COORDS = {"gcj02", "bd09"}

HELMERT_KEYS = {"x", "y", "z", "rx", "ry", "rz", "s"}
FOUR_PARAM_KEYS = {"dx", "dy", "rotation", "scale"}


CONVENTIONS = ("coordinate_frame", "position_vector")
DEFAULT_MAX_RESIDUAL_M = 0.5
CODE_SETS = ("sandiao", "ydyh", "erdiao")


@dataclass(frozen=True)
class DatumTransform:
    """A datum transformation given by the bureau: exactly one of helmert / four_param / pipeline, or
    ``estimate`` (helmert / four_param fitted to the control points by least squares).

    ``control_points``: (n, 4) rows E_src, N_src, E_dst, N_dst — 同名点 in the source CRS's plane and in the
    CGCS2000 plane of the same projection (zone); with given parameters they are checked, with ``estimate`` they
    are fitted; residuals above ``max_residual_m`` refuse the layer."""

    kind: str  # "helmert" | "four_param" | "pipeline"
    params: dict
    pipeline: str | None = None
    estimate: bool = False
    control_points: tuple[tuple[float, float, float, float], ...] = ()
    control_source: str | None = None  # where the points came from (file name or "manifest")
    max_residual_m: float = DEFAULT_MAX_RESIDUAL_M

    def describe(self) -> str:
        if self.kind == "pipeline":
            return f"PROJ pipeline: {self.pipeline}"
        items = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        fitted = f" (fitted to {len(self.control_points)} control points)" if self.estimate else ""
        return f"{self.kind}: {items}{fitted}"

    def with_params(self, params: dict) -> DatumTransform:
        return DatumTransform(self.kind, params, self.pipeline, self.estimate, self.control_points,
                              self.control_source, self.max_residual_m)


@dataclass(frozen=True)
class LayerSpec:
    role: str
    path: Path
    layer: str | None = None
    crs: str | None = None
    encoding: str | None = None
    fields: dict[str, str] = field(default_factory=dict)  # standard code -> source field name
    transform: DatumTransform | None = None
    source: str | None = None  # monitoring: satellite / camera / drone / survey
    round: str | None = None  # monitoring: issuing round
    coords: str | None = None  # gcj02 / bd09 for web-map coordinates
    member: str | None = None  # the dataset inside a .zip path: "地类图斑/DLTB.shp", "sandiao.gdb"
    code_set: str | None = None  # sandiao / ydyh / erdiao when the codes alone cannot tell


@dataclass(frozen=True)
class Options:
    area_tolerance: float = 0.001
    area_flag: float = 0.10
    overlap_tolerance_m2: float = 1.0  # overlaps between patches of one layer above this are 质检 findings
    gap_tolerance_m2: float = 1.0  # holes between DLTB patches / against the county boundary above this


@dataclass(frozen=True)
class Manifest:
    path: Path
    region_code: str
    region_name: str
    crs: str  # "auto" or "EPSG:nnnn"
    layers: dict[str, list[LayerSpec]]
    rasters: dict[str, LayerSpec]
    options: Options

    @property
    def folder(self) -> Path:
        return self.path.parent

    def specs(self):
        """All vector layer specs, in role order."""
        for role in ROLES:
            yield from self.layers.get(role, [])


def _parse_transform(raw, where: str, folder: Path | None = None) -> DatumTransform | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ManifestError(f"{where}.transform must be a mapping with one of helmert, four_param, pipeline, "
                            "estimate")
    raw = dict(raw)
    points_raw = raw.pop("control_points", None)
    max_res = raw.pop("max_residual_m", DEFAULT_MAX_RESIDUAL_M)
    try:
        max_res = float(max_res)
    except (TypeError, ValueError):
        raise ManifestError(f"{where}.transform.max_residual_m = {max_res!r} is not a number (metres)") from None
    if not (max_res > 0):
        raise ManifestError(f"{where}.transform.max_residual_m = {max_res} must be > 0 (metres)")
    points, points_source = _parse_control_points(points_raw, f"{where}.transform.control_points", folder)
    kinds = [k for k in raw if k in ("helmert", "four_param", "pipeline", "estimate")]
    unknown = [k for k in raw if k not in ("helmert", "four_param", "pipeline", "estimate")]
    if unknown:
        raise ManifestError(f"{where}.transform: unknown key(s) {sorted(unknown)}; use one of helmert, four_param, "
                            "pipeline, estimate, plus control_points / max_residual_m")
    if len(kinds) != 1:
        raise ManifestError(f"{where}.transform must have exactly one of helmert, four_param, pipeline, estimate")
    kind, value = kinds[0], raw[kinds[0]]

    def make(kind_: str, params_: dict, pipeline: str | None = None, estimate: bool = False) -> DatumTransform:
        return DatumTransform(kind_, params_, pipeline, estimate, points, points_source, max_res)

    if kind == "pipeline":
        if not isinstance(value, str) or "+proj" not in value:
            raise ManifestError(f"{where}.transform.pipeline must be a PROJ pipeline string, got {value!r}")
        return make("pipeline", {}, value)
    if kind == "estimate":
        if value not in ("helmert", "four_param"):
            raise ManifestError(f"{where}.transform.estimate {value!r}: use helmert or four_param")
        need = 3 if value == "helmert" else 2
        if len(points) < need + 1:
            raise ManifestError(f"{where}.transform.estimate: {value} needs at least {need + 1} control points "
                                f"(同名点, {need} to fit and more to check the fit); got {len(points)}")
        return make(value, {"convention": "position_vector"}, estimate=True)
    if not isinstance(value, dict):
        raise ManifestError(f"{where}.transform.{kind} must be a mapping of parameters")
    needed = HELMERT_KEYS if kind == "helmert" else FOUR_PARAM_KEYS
    missing = needed - set(value)
    unknown_keys = set(value) - needed - {"convention"}
    if missing:
        raise ManifestError(f"{where}.transform.{kind} lacks {sorted(missing)}")
    if unknown_keys:
        raise ManifestError(f"{where}.transform.{kind} has unknown keys {sorted(unknown_keys)}")
    if "convention" not in value:
        raise ManifestError(
            f"{where}.transform.{kind} has no convention:; the two rotation conventions differ by ~170 m over a "
            "county — add convention: coordinate_frame (rotation of the axes, the usual Chinese / ISO 19111 "
            "'coordinate frame rotation') or convention: position_vector (rotation of the points), as the "
            "parameter sheet states; give control_points: to have them checked")
    params = {}
    for key, val in value.items():
        if key == "convention":
            if val not in CONVENTIONS:
                raise ManifestError(
                    f"{where}.transform.{kind}.convention {val!r}: use coordinate_frame or position_vector")
            params[key] = val
            continue
        try:
            params[key] = float(val)
        except (TypeError, ValueError):
            raise ManifestError(f"{where}.transform.{kind}.{key} = {val!r} is not a number") from None
        if not math.isfinite(params[key]):
            raise ManifestError(f"{where}.transform.{kind}.{key} = {val!r} is not a finite number")
    return make(kind, params)


def _parse_control_points(raw, where: str, folder: Path | None) -> tuple[tuple, str | None]:
    """同名点 pairs from a YAML list of [E_src, N_src, E_dst, N_dst] or a CSV / TXT file of such rows (comma,
    semicolon, tab or space separated; a header line and a leading point-name column are allowed)."""
    if raw is None:
        return (), None
    source = "manifest"
    if isinstance(raw, str):
        path = Path(raw)
        if not path.is_absolute() and folder is not None:
            path = folder / path
        if not path.is_file():
            raise ManifestError(f"{where}: file {path} does not exist")
        rows = []
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            nums = []
            for token in re.split(r"[,;\t ]+", line.strip()):
                try:
                    nums.append(float(token))
                except ValueError:
                    continue  # a header word or a point name
            if len(nums) >= 4:
                rows.append(nums[-4:])
        raw, source = rows, path.name
    if not isinstance(raw, list) or not raw:
        raise ManifestError(f"{where} must be a file name or a list of [E_src, N_src, E_dst, N_dst]")
    out = []
    for i, row in enumerate(raw):
        try:
            values = tuple(float(v) for v in row)
        except (TypeError, ValueError):
            raise ManifestError(f"{where}[{i}] = {row!r}: give four numbers E_src, N_src, E_dst, N_dst") from None
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ManifestError(f"{where}[{i}] = {row!r}: give four finite numbers E_src, N_src, E_dst, N_dst")
        out.append(values)
    return tuple(out), source


def _parse_crs(value, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int):
        return f"EPSG:{value}"
    text = str(value).strip()
    if re.fullmatch(r"\d{4,5}", text):
        return f"EPSG:{text}"
    if not re.fullmatch(r"(?i)epsg:\d{4,5}", text):
        raise ManifestError(f"{where}.crs {value!r}: write an EPSG code such as EPSG:4547")
    return text.upper()


def _parse_layer(role: str, raw, folder: Path, where: str) -> LayerSpec:
    if isinstance(raw, str):
        raw = {"path": raw}
    if not isinstance(raw, dict) or "path" not in raw:
        raise ManifestError(f"{where} needs a path")
    known = {"path", "layer", "crs", "encoding", "fields", "transform", "source", "round", "coords", "member",
             "code_set"}
    extra = set(raw) - known
    if extra:
        raise ManifestError(f"{where} has unknown keys {sorted(extra)}; allowed: {sorted(known)}")
    if "\x00" in str(raw["path"]):
        raise ManifestError(f"{where}.path {str(raw['path'])!r} holds a NUL character; write the file's name plainly")
    path = Path(str(raw["path"]))
    if not path.is_absolute():
        path = folder / path
    fields = raw.get("fields") or {}
    if not isinstance(fields, dict):
        raise ManifestError(f"{where}.fields must map standard codes to source field names")
    member = raw.get("member")
    if member is not None and (not str(member).strip() or path.suffix.lower() != ".zip"):
        raise ManifestError(f"{where}.member {member!r} names a dataset inside a zip archive, but path is {path.name}; "
                            "remove member: or point path: at the .zip")
    coords = raw.get("coords")
    if coords is not None and str(coords).lower() not in WEB_COORDS:
        raise ManifestError(f"{where}.coords {coords!r}: use gcj02 or bd09 (or omit for real coordinates)")
    code_set = raw.get("code_set")
    if code_set is not None and str(code_set).lower() not in CODE_SETS:
        raise ManifestError(f"{where}.code_set {code_set!r}: use sandiao (三调), ydyh (用地用海) or erdiao (二调)")
    return LayerSpec(
        role=role,
        path=path,
        layer=None if raw.get("layer") is None else str(raw["layer"]),
        crs=_parse_crs(raw.get("crs"), where),
        encoding=None if raw.get("encoding") is None else str(raw["encoding"]).lower(),
        fields={str(k).upper(): str(v) for k, v in fields.items()},
        transform=_parse_transform(raw.get("transform"), where, folder),
        source=None if raw.get("source") is None else str(raw["source"]),
        round=None if raw.get("round") is None else str(raw["round"]),
        coords=None if coords is None else str(coords).lower(),
        member=None if member is None else str(member).strip(),
        code_set=None if code_set is None else str(code_set).lower(),
    )


def parse_manifest(doc: dict, path: Path) -> Manifest:
    """Validate a manifest document (already parsed from YAML) and resolve its paths."""
    if not isinstance(doc, dict):
        raise ManifestError(f"manifest {path} must be a YAML mapping with region and layers")
    region = doc.get("region")
    if not isinstance(region, dict) or "code" not in region:
        raise ManifestError(f"manifest {path}: region.code (行政区代码) is required")
    code = str(region["code"]).strip()
    if not re.fullmatch(r"\d{6}(\d{3}(\d{3})?)?", code):
        raise ManifestError(f"manifest {path}: region.code {code!r} must be a 6-, 9- or 12-digit 行政区代码")
    crs = doc.get("crs", "auto")
    crs = "auto" if str(crs).lower() == "auto" else _parse_crs(crs, "crs")
    layers_raw = doc.get("layers")
    if not isinstance(layers_raw, dict) or not layers_raw:
        raise ManifestError(f"manifest {path}: layers must map roles ({', '.join(ROLES)}) to files")
    folder = path.parent
    layers: dict[str, list[LayerSpec]] = {}
    for role, raw in layers_raw.items():
        if role not in ROLES:
            raise ManifestError(f"manifest {path}: unknown layer role {role!r}; roles are {', '.join(ROLES)}")
        entries = raw if isinstance(raw, list) else [raw]
        if len(entries) > 1 and role not in MULTI_ROLES:
            raise ManifestError(f"manifest {path}: role {role!r} takes one file, got {len(entries)}")
        layers[role] = [_parse_layer(role, e, folder, f"layers.{role}" + (f"[{i}]" if isinstance(raw, list) else ""))
                        for i, e in enumerate(entries)]
    rasters: dict[str, LayerSpec] = {}
    for role, raw in (doc.get("rasters") or {}).items():
        if role not in RASTER_ROLES:
            raise ManifestError(f"manifest {path}: unknown raster role {role!r}; roles are {sorted(RASTER_ROLES)}")
        rasters[role] = _parse_layer(role, raw, folder, f"rasters.{role}")
    opt_raw = doc.get("options") or {}
    if not isinstance(opt_raw, dict):
        raise ManifestError(f"manifest {path}: options must be a mapping such as {{area_tolerance: 0.001}}, "
                            f"got {opt_raw!r}")
    known = Options.__dataclass_fields__
    values = {}
    for key, value in opt_raw.items():
        if key not in known:
            raise ManifestError(f"manifest {path}: options: {key!r} is not an option; options are "
                                f"{', '.join(known)}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number) or number < 0:
            raise ManifestError(f"manifest {path}: options: {key}: {value!r} is not a number ≥ 0; write e.g. "
                                f"{key}: {getattr(Options, key)}")
        values[key] = number
    options = Options(**values)
    return Manifest(path=path, region_code=code, region_name=str(region.get("name", code)), crs=crs or "auto",
                    layers=layers, rasters=rasters, options=options)


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest file; raise ManifestError naming what is wrong."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest {path} is not valid UTF-8 YAML: {exc}; save it as UTF-8") from None
    except OSError as exc:
        raise ManifestError(f"manifest {path} cannot be read: {exc.strerror}") from None
    doc = load_yaml_text(text, f"manifest {path}", ManifestError)
    return parse_manifest(doc, path)

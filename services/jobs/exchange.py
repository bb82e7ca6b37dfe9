"""Export of flagged patches through a field-mapping template (data/exchange/*.yaml): our fields → a target
schema (names, titles, types, units, widths) and file format (shapefile zip, GeoPackage, xlsx, csv).

The template is data a bureau edits; every key is checked and a bad one is refused with the key and the fix.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd

from layers.errors import RuleError
from layers.yamlfile import read_yaml_file

TEMPLATES = Path(__file__).resolve().parents[2] / "data" / "exchange"
UNITS = {"m2": 1.0, "mu": 3.0 / 2000.0, "ha": 1e-4}
FORMATS = {"shp": "application/zip", "gpkg": "application/geopackage+sqlite3",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "csv": "text/csv"}
FIELD_KEYS = {"name", "title", "from", "type", "width", "decimals", "unit", "prefix", "join", "map", "default"}


@dataclass
class Field:
    name: str
    title: str
    source: str
    type: str = "str"
    width: int | None = None
    decimals: int | None = None
    unit: str | None = None
    prefix: int | None = None
    join: str = "；"
    mapping: dict = field(default_factory=dict)
    default: object = None


@dataclass
class Template:
    id: str
    name: str
    format: str
    encoding: str
    layer: str
    crs: str
    fields: list[Field]
    description: str = ""


def list_templates(folder: Path = TEMPLATES) -> list[str]:
    return sorted(p.stem for p in Path(folder).glob("*.yaml"))


def load_template(template_id: str, folder: Path = TEMPLATES) -> Template:
    path = Path(folder) / f"{template_id}.yaml"
    if not path.is_file() or "/" in template_id or template_id.startswith("."):
        from layers.errors import NotFoundError

        raise NotFoundError(f"export template {template_id!r} not found; templates: "
                            f"{', '.join(list_templates(folder))}")
    doc = read_yaml_file(path, "export template") or {}
    where = f"export template {path.name}"
    fmt = str(doc.get("format", "shp"))
    if fmt not in FORMATS:
        raise RuleError(f"{where}: format {fmt!r}; use one of {', '.join(FORMATS)}")
    enc = str(doc.get("encoding", "utf-8")).lower()
    if enc not in ("utf-8", "gbk"):
        raise RuleError(f"{where}: encoding {enc!r}; use gbk or utf-8")
    crs = str(doc.get("crs", "EPSG:4490"))
    if crs not in ("EPSG:4490", "store"):
        raise RuleError(f"{where}: crs {crs!r}; use EPSG:4490 or store")
    fields = []
    for i, f in enumerate(doc.get("fields") or []):
        unknown = sorted(set(f) - FIELD_KEYS)
        if unknown:
            raise RuleError(f"{where}: field {i + 1} has unknown key(s) {', '.join(unknown)}; keys: "
                            f"{', '.join(sorted(FIELD_KEYS))}")
        for key in ("name", "from"):
            if key not in f:
                raise RuleError(f"{where}: field {i + 1} needs {key}:")
        if f.get("type", "str") not in ("str", "float", "int"):
            raise RuleError(f"{where}: field {f['name']}: type {f['type']!r}; use str, float or int")
        if f.get("unit") is not None and f["unit"] not in UNITS:
            raise RuleError(f"{where}: field {f['name']}: unit {f['unit']!r}; use {', '.join(UNITS)}")
        if fmt == "shp" and len(str(f["name"])) > 10:
            raise RuleError(f"{where}: field name {f['name']!r} is longer than the 10 characters a shapefile allows")
        fields.append(Field(name=str(f["name"]), title=str(f.get("title", f["name"])), source=str(f["from"]),
                            type=f.get("type", "str"), width=f.get("width"), decimals=f.get("decimals"),
                            unit=f.get("unit"), prefix=f.get("prefix"), join=str(f.get("join", "；")),
                            mapping={str(k): v for k, v in (f.get("map") or {}).items()}, default=f.get("default")))
    if not fields:
        raise RuleError(f"{where}: no fields")
    return Template(id=template_id, name=str(doc.get("name", template_id)), format=fmt, encoding=enc,
                    layer=str(doc.get("layer", "export")), crs=crs, fields=fields,
                    description=str(doc.get("description", "")))


def _empty(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or (isinstance(v, list) and not v)


def convert(value, f: Field):
    if isinstance(value, list):
        value = f.join.join(str(f.mapping.get(str(x), x)) for x in value)
    elif not _empty(value) and f.mapping:
        value = f.mapping.get(str(value), value)
    if _empty(value) or value == "":
        value = f.default
        if value is None:
            return None
    if f.type == "float":
        v = float(value) * UNITS[f.unit or "m2"]
        return round(v, f.decimals) if f.decimals is not None else v
    if f.type == "int":
        return int(round(float(value)))
    text = str(value)
    if f.prefix:
        text = text[: int(f.prefix)]
    return text


def apply_template(t: Template, frame: pd.DataFrame, geoms, crs) -> gpd.GeoDataFrame:
    missing = sorted({f.source for f in t.fields} - set(frame.columns))
    if missing:
        raise RuleError(f"export template {t.id}: field(s) {', '.join(missing)} are not patch fields; available: "
                        f"{', '.join(sorted(frame.columns))}")
    out = pd.DataFrame({f.name: [convert(v, f) for v in frame[f.source]] for f in t.fields})
    gdf = gpd.GeoDataFrame(out, geometry=list(geoms), crs=crs)
    if t.crs == "EPSG:4490":
        gdf = gdf.to_crs(4490)
    return gdf


def write(t: Template, gdf: gpd.GeoDataFrame) -> tuple[bytes, str, str]:
    """(bytes, media type, file extension)."""
    import pyogrio

    with tempfile.TemporaryDirectory(prefix="yzt-exchange-") as tmp:
        folder = Path(tmp)
        if t.format == "shp":
            codec = "GBK" if t.encoding == "gbk" else "UTF-8"
            for f in t.fields:
                if f.type == "str":
                    gdf[f.name] = [None if v is None else _fit(str(v), f.width or 254, t.encoding) for v in gdf[f.name]]
            pyogrio.write_dataframe(gdf, folder / f"{t.layer}.shp", driver="ESRI Shapefile", encoding=codec,
                                    promote_to_multi=True)
            lines = ["字段\t名称\t来源"] + [f"{f.name}\t{f.title}\t{f.source}" for f in t.fields]
            (folder / "字段说明.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for p in sorted(folder.iterdir()):
                    zf.write(p, p.name)
            return buf.getvalue(), FORMATS["shp"], "zip"
        if t.format == "gpkg":
            path = folder / "export.gpkg"
            pyogrio.write_dataframe(gdf, path, layer=t.layer, driver="GPKG", promote_to_multi=True)
            return path.read_bytes(), FORMATS["gpkg"], "gpkg"
        table = pd.DataFrame(gdf.drop(columns="geometry"))
        table.columns = [f"{f.title}({f.name})" for f in t.fields]
        if t.format == "csv":
            return table.to_csv(index=False).encode("utf-8-sig"), FORMATS["csv"], "csv"
        buf = io.BytesIO()
        table.to_excel(buf, index=False, sheet_name=t.layer[:31])
        return buf.getvalue(), FORMATS["xlsx"], "xlsx"


def _fit(text: str, width: int, encoding: str) -> str:
    """Text cut to ``width`` bytes in the shapefile's encoding (never mid-character)."""
    enc = "gbk" if encoding == "gbk" else "utf-8"
    text = text.replace("m²", "平方米") if enc == "gbk" else text
    try:
        data = text.encode(enc)
    except UnicodeEncodeError as exc:
        raise RuleError(f"value {text[:30]!r} has a character GBK cannot encode ({text[exc.start]!r}); set "
                        "encoding: utf-8 in the template") from None
    return data[:width].decode(enc, errors="ignore")


def describe(t: Template) -> dict:
    return {"id": t.id, "name": t.name, "description": t.description, "format": t.format, "encoding": t.encoding,
            "crs": t.crs, "fields": [{"name": f.name, "title": f.title, "from": f.source, "type": f.type}
                                     for f in t.fields]}


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)

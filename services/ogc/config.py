"""The pygeoapi configuration and OpenAPI document, generated from the store at app start.

One collection per stored layer (xzq, dltb, …, flagged_patches, planning_conflicts …), titled in Chinese and
English, with its extent from the store, storage CRS = the store's GK zone, and the served CRS list
(CRS84 first, EPSG:4490, EPSG:<zone>). Both documents are also written to ``settings.workdir``
(``pygeoapi-config.yml``, ``pygeoapi-openapi.json``) so they can be inspected or fed to pygeoapi's own tools.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from layers.fields import ROLES
from layers.store.pages import PagedReader

from .crs import CRS84, epsg_uri, extent_crs84, supported_uris

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PROVIDER = "services.ogc.provider.StoreProvider"

# English titles of the roles (the Chinese ones live in layers.fields.ROLES) and of the analysis layers.
TITLES: dict[str, tuple[str, str]] = {
    "xzq": ("行政区", "Administrative units (county, townships, villages)"),
    "dltb": ("地类图斑 (年度变更调查)", "Land-use survey patches (annual change survey)"),
    "dltb_prev": ("上一年度地类图斑", "Land-use survey patches, previous year"),
    "yjjbnt": ("永久基本农田", "Permanent basic farmland"),
    "stbhhx": ("生态保护红线", "Ecological protection red line"),
    "czkfbj": ("城镇开发边界", "Urban development boundary"),
    "ghfq": ("规划分区", "Planning zones"),
    "approvals": ("用地审批", "Land-use approvals"),
    "parcels": ("宗地", "Cadastral parcels"),
    "monitoring": ("监测图斑", "Monitoring patches (satellite / camera / drone)"),
    "cameras": ("监控摄像头", "Monitoring cameras"),
    "flagged_patches": ("变化图斑研判结果", "Flagged ground changes, pre-judged against approvals and control lines"),
    "planning_conflicts": ("规划冲突图斑", "Planning conflicts (control-line overlaps and violations)"),
}


def title_of(name: str) -> tuple[str, str]:
    if name in TITLES:
        return TITLES[name]
    zh = ROLES.get(name, {}).get("zh", name)
    return zh, name.replace("_", " ")


def build_config(reader: PagedReader, base_url: str, prefix: str, limit_max: int) -> dict:
    """The pygeoapi configuration (a dict) for every layer of the store behind ``reader``."""
    url = base_url.rstrip("/") + "/" + prefix.strip("/")
    epsg = reader.storage_epsg
    region = reader.meta.get("region_name") or reader.meta.get("region_code") or ""
    crs_list = supported_uris(epsg)
    resources = {}
    for name, info in sorted(reader.layers.items()):
        zh, en = title_of(name)
        bbox = extent_crs84(info.bounds, epsg) if info.bounds else [-180.0, -90.0, 180.0, 90.0]
        resources[name] = {
            "type": "collection",
            "title": f"{zh} {en}",
            "description": (f"{zh}（{region}，{info.total} 个要素，存储坐标系 EPSG:{epsg}）。"
                            f"{en} of {region}: {info.total} features, stored in EPSG:{epsg}, "
                            f"geometry type {info.geometry_type}."),
            "keywords": [name, zh, en, "一张图"],
            "links": [],
            "extents": {"spatial": {"bbox": [round(v, 9) for v in bbox], "crs": CRS84}},
            "limits": {"default_items": 10, "max_items": int(limit_max), "on_exceed": "error"},
            "providers": [{
                "type": "feature",
                "name": PROVIDER,
                "data": reader.url,
                "table": name,
                "id_field": "id",  # the feature id: the row's id in the store (1..n in write order)
                "storage_crs": epsg_uri(epsg),
                "crs": list(crs_list),
            }],
        }
    return {
        "server": {
            "bind": {"host": "127.0.0.1", "port": 8000},
            "url": url,
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "languages": ["zh", "en"],
            "gzip": False,
            "cors": True,
            "pretty_print": False,
            "admin": False,
            "limits": {"default_items": 10, "max_items": int(limit_max), "on_exceed": "error"},
            "map": {"url": "", "attribution": ""},
            "templates": {"path": str(TEMPLATES), "static": str(STATIC)},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {
                "title": f"一张图 OGC API — {region}".strip(" —"),
                "description": "yizhangtu 一张图: planning, survey, approval and monitoring layers of the region "
                               "as OGC API Features collections (CRS84, EPSG:4490, "
                               f"EPSG:{epsg}; CQL2 filters).",
                "keywords": ["一张图", "国土空间规划", "OGC API Features", "CGCS2000"],
                "keywords_type": "theme",
                "terms_of_service": "",
                "url": url,
            },
            "license": {"name": "Apache-2.0", "url": f"{url}/"},
            "provider": {"name": "yizhangtu", "url": f"{url}/"},
            "contact": {"name": "yizhangtu", "position": "", "address": "", "city": "", "stateorprovince": "",
                        "postalcode": "", "country": "CN", "phone": "", "fax": "", "email": "",
                        "url": f"{url}/", "hours": "", "instructions": "", "role": "pointOfContact"},
        },
        "resources": resources,
    }


# --- OpenAPI ------------------------------------------------------------------------------------------

def build_openapi(config: dict) -> dict:
    """pygeoapi's OpenAPI document for ``config`` with every external ``$ref`` made local, made true to what
    this service serves (:func:`truthful`)."""
    from pygeoapi.openapi import get_oas

    return truthful(localise_refs(get_oas(copy.deepcopy(config))))


# --- what the document says, as this service answers it ---------------------------------------------------

EXCEPTION: dict = {"type": "object", "required": ["code", "description"],
             "properties": {"code": {"type": "string"}, "type": {"type": "string"}, "description": {"type": "string"}}}
HTML: dict = {"text/html": {"schema": {"type": "string"}}}
OBJECT: dict = {"type": "object"}
FEATURES: dict = {"type": "object", "required": ["type", "features"],
            "properties": {"type": {"type": "string", "enum": ["FeatureCollection"]},
                           "features": {"type": "array", "items": {"type": "object"}},
                           "numberMatched": {"type": "integer", "minimum": 0},
                           "numberReturned": {"type": "integer", "minimum": 0},
                           "links": {"type": "array", "items": {"type": "object"}}}}
FEATURE: dict = {"type": "object", "required": ["type", "geometry", "properties"],
           "properties": {"type": {"type": "string", "enum": ["Feature"]},
                          "id": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}}
ERRORS = {"400": "a parameter is malformed or not served (its value and the remedy in the description)",
          "401": "a token that is not known or has expired, or none while anonymous_read is off",
          "404": "no such collection or feature",
          "429": "too many unknown tokens from this address; see Retry-After"}
FILTER_PARAMETERS = [
    {"name": "filter", "in": "query", "required": False, "style": "form", "explode": False,
     "description": "CQL2 text filter on the queryables (docs/ogc.md lists what is supported)",
     "schema": {"type": "string"}},
    {"name": "filter-lang", "in": "query", "required": False, "style": "form", "explode": False,
     "schema": {"type": "string", "enum": ["cql2-text"]}},
    {"name": "filter-crs", "in": "query", "required": False, "style": "form", "explode": False,
     "description": "CRS of the filter's geometry literals (default CRS84)", "schema": {"type": "string"}},
]
NOT_SERVED = {"datetime", "vendorSpecificParameters"}  # datetime: no collection has a temporal property


def _kind(path: str) -> str:
    if path == "/":
        return "landing"
    if path == "/openapi":
        return "openapi"
    if path.endswith("/items/{featureId}"):
        return "item"
    for tail in ("/items", "/queryables", "/schema"):
        if path.endswith(tail):
            return tail[1:]
    return "document"


def _success(kind: str) -> dict:
    content: dict[str, dict]
    if kind == "openapi":
        content = {"application/vnd.oai.openapi+json;version=3.0": {"schema": OBJECT}, **HTML}
    elif kind in ("queryables", "schema"):
        content = {"application/schema+json": {"schema": OBJECT}, **HTML}
    elif kind in ("items", "item"):
        body = FEATURES if kind == "items" else FEATURE
        content = {"application/geo+json": {"schema": body}, "application/ld+json": {"schema": OBJECT}, **HTML}
    else:
        content = {"application/json": {"schema": OBJECT}, "application/ld+json": {"schema": OBJECT}, **HTML}
    return {"description": "successful operation", "content": content}


def _parameter(p: dict, components: dict) -> dict | None:
    """A parameter as an inline object (a ``$ref`` resolved), None when it is not served."""
    ref = p.get("$ref")
    if ref:
        kind, name = ref.split("/", 3)[2:]
        if kind == "schemas":  # pygeoapi refers to a *schema* as a parameter (sortby): not OpenAPI
            p = {"name": name, "in": "query", "required": False, "style": "form", "explode": False,
                 "description": "comma-separated properties, each with an optional + or - (descending)",
                 "schema": {"type": "string"}}
        else:
            p = copy.deepcopy(components.get("parameters", {}).get(name) or {})
    else:
        p = copy.deepcopy(p)
    if not p.get("name") or p["name"] in NOT_SERVED:
        return None
    schema = p.get("schema") or {}
    if p["name"] == "f" and "enum" in schema:  # f=csv answers 400: not offered
        schema["enum"] = [v for v in schema["enum"] if v != "csv"]
    return p


def truthful(oas: dict) -> dict:
    """The OpenAPI document as this service answers: GET only (the API is read-only: POST / OPTIONS are not
    served), every parameter an inline parameter object (no schema ``$ref`` standing for one, so the document
    is valid OpenAPI 3.0), parameters not served left out (datetime, f=csv), the filter parameters declared,
    and each operation's answers declared with the types it sends (JSON, GeoJSON, JSON-LD, HTML, JSON
    Schema) and its errors (400, 401, 404, 429) as OGC API exceptions."""
    components = oas.setdefault("components", {})
    for path, item in oas.get("paths", {}).items():
        for method in [m for m in item if m in ("put", "post", "delete", "options", "head", "patch", "trace")]:
            del item[method]
        op = item.get("get")
        if op is None:
            continue
        kind = _kind(path)
        params = [q for q in (_parameter(p, components) for p in op.get("parameters", [])) if q is not None]
        if kind == "items":
            params += copy.deepcopy(FILTER_PARAMETERS)
        seen, unique = set(), []
        for q in params:
            if (q["name"], q["in"]) not in seen:
                seen.add((q["name"], q["in"]))
                unique.append(q)
        op["parameters"] = unique
        responses = {"200": _success(kind)}
        for code, text in ERRORS.items():
            if code == "404" and kind in ("landing", "openapi", "document") and "/collections/" not in path:
                continue
            responses[code] = {"description": text,
                               "content": {"application/json": {"schema": EXCEPTION}, **HTML}}
        op["responses"] = responses
    for unused in ("vendorSpecificParameters",):
        components.get("parameters", {}).pop(unused, None)
    return oas


_STUB_PARAMETERS = {
    "bbox": {"name": "bbox", "in": "query", "required": False, "style": "form", "explode": False,
             "description": "Features whose geometry intersects the box (4 or 6 numbers, bbox-crs axis order).",
             "schema": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}}},
    "limit": {"name": "limit", "in": "query", "required": False, "style": "form", "explode": False,
              "description": "Number of features per page.",
              "schema": {"type": "integer", "minimum": 1, "default": 10}},
    "datetime": {"name": "datetime", "in": "query", "required": False, "style": "form", "explode": False,
                 "schema": {"type": "string"}},
    "featureId": {"name": "featureId", "in": "path", "required": True, "schema": {"type": "string"}},
    "collectionId": {"name": "collectionId", "in": "path", "required": True, "schema": {"type": "string"}},
}


def localise_refs(oas: dict) -> dict:
    """Rewrite ``$ref``s that point online (schemas.opengis.net …) to local components with generic
    definitions, so the document validates and tools resolve it offline."""
    comps = oas.setdefault("components", {})

    def local(ref: str) -> str:
        url, _, frag = ref.partition("#")
        if frag.startswith("/components/"):
            _, _, kind, name = frag.split("/", 3)
        else:
            kind, name = "schemas", Path(url).stem or "external"
        name = name.replace("/", "_")
        bucket = comps.setdefault(kind, {})
        if name not in bucket:
            if kind == "responses":
                bucket[name] = {"description": name,
                                "content": {"application/json": {"schema": {"type": "object"}}}}
            elif kind == "parameters":
                bucket[name] = copy.deepcopy(_STUB_PARAMETERS.get(name) or {
                    "name": name, "in": "query", "required": False, "schema": {"type": "string"}})
            else:
                bucket[name] = {"type": "object"}
        return f"#/components/{kind}/{name}"

    def walk(node):
        if isinstance(node, dict):
            for k, v in list(node.items()):
                if k == "$ref" and isinstance(v, str) and not v.startswith("#"):
                    node[k] = local(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(oas)
    # the stubs themselves may not contain refs; one more pass for safety
    walk(comps)
    return oas


def write_documents(config: dict, openapi: dict, workdir: Path) -> tuple[Path, Path]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "pygeoapi-config.yml"
    oas_path = workdir / "pygeoapi-openapi.json"
    cfg_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    oas_path.write_text(json.dumps(openapi, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
    return cfg_path, oas_path

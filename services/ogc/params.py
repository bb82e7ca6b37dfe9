"""Checks of an OGC API request before pygeoapi sees it: every parameter validated, and a 400 naming the bad
value (unknown parameter, malformed bbox, unknown CRS, limit out of range, a filter we cannot evaluate …) —
pygeoapi would otherwise ignore some of them or answer a vague "Bad CQL text"."""

from __future__ import annotations

import math
import re

from layers.store.pages import PagedReader

from ..errors import RequestError
from . import cql
from .crs import box_in_store, check_served, crs_key, supported_uris

ITEMS_PARAMS = {"bbox", "bbox-crs", "crs", "f", "lang", "limit", "offset", "resulttype", "datetime", "sortby",
                "properties", "skipGeometry", "q", "filter", "filter-lang", "filter-crs"}
ITEM_PARAMS = {"crs", "f", "lang"}
FORMATS = {"json", "html", "jsonld"}
LANG = re.compile(r"^[A-Za-z]{1,8}([-_][A-Za-z0-9]{1,8})*$")


# --- request validation ---------------------------------------------------------------------------------

MAX_OFFSET = 2**53 - 1  # the largest integer every JSON client reads exactly


def _int(params, name: str, lo: int, hi: int | None, default: int | None = None):
    raw = params.get(name)
    if raw is None:
        return default
    try:
        if len(raw.strip()) > 20:
            raise ValueError(raw)
        value = int(raw)
    except ValueError:
        shown = raw if len(raw) <= 40 else raw[:37] + "…"
        raise RequestError(f"{name}={shown!r} is not an integer{' in range' if raw.strip().isdigit() else ''}; "
                           f"give an integer {lo}…{hi if hi is not None else MAX_OFFSET}") from None
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}…{hi}" if hi is not None else f"≥ {lo}"
        raise RequestError(f"{name}={value} is out of range: give an integer {rng}")
    return value


def _crs_param(params, name: str, storage_epsg: int) -> str | int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        key = crs_key(raw)
        check_served(key, storage_epsg)
    except RequestError as exc:
        raise RequestError(f"{name}: {exc}. Served CRSs: {', '.join(supported_uris(storage_epsg))}") from None
    return key


def parse_bbox(raw: str) -> list[float]:
    parts = raw.split(",")
    if len(parts) not in (4, 6):
        raise RequestError(f"bbox={raw!r} must have 4 numbers (min1,min2,max1,max2 in the axis order of bbox-crs) "
                           "or 6 with heights")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise RequestError(f"bbox={raw!r}: every value must be a number") from None
    if not all(math.isfinite(v) for v in values):
        raise RequestError(f"bbox={raw!r}: values must be finite numbers")
    n = len(values) // 2
    lo, hi = values[:n], values[n:]
    for axis, (a, b) in enumerate(zip(lo, hi), start=1):
        if a > b:
            raise RequestError(f"bbox={raw!r}: the lower value of axis {axis} ({a}) exceeds the upper ({b}); "
                               "give the lower corner first (boxes across the antimeridian are not supported)")
    return values


def check_items_request(params, reader: PagedReader, layer: str, limit_max: int) -> None:
    """Validate an items request; RequestError (400) naming the problem. ``params``: the query parameters."""
    info = reader.info(layer)
    epsg = reader.storage_epsg
    unknown = sorted(k for k in params if k not in ITEMS_PARAMS and k not in info.columns)
    if unknown:
        raise RequestError(f"unknown query parameter(s) {', '.join(unknown)}; allowed: "
                           f"{', '.join(sorted(ITEMS_PARAMS))} and the queryables of {layer!r} as equality filters")
    for key in params:
        if len(params.getlist(key)) > 1:
            raise RequestError(f"query parameter {key!r} is given more than once")
    f = params.get("f")
    if f is not None and f not in FORMATS:
        raise RequestError(f"f={f!r} is not offered; use json, html or jsonld")
    _int(params, "limit", 1, limit_max)
    _int(params, "offset", 0, MAX_OFFSET)
    if params.get("resulttype") not in (None, "results", "hits"):
        raise RequestError(f"resulttype={params['resulttype']!r}: use results or hits")
    if params.get("skipGeometry") not in (None, "true", "false", "True", "False"):
        raise RequestError(f"skipGeometry={params['skipGeometry']!r}: use true or false")
    _crs_param(params, "crs", epsg)
    bbox_crs = _crs_param(params, "bbox-crs", epsg)
    if "bbox" in params:
        values = parse_bbox(params["bbox"])
        try:
            box_in_store(values, bbox_crs or "CRS84", epsg)
        except RequestError as exc:
            raise RequestError(f"bbox={params['bbox']!r}: {exc}") from None
    elif bbox_crs is not None:
        raise RequestError("bbox-crs is given without bbox")
    if "datetime" in params:
        raise RequestError(f"collection {layer!r} has no temporal property: drop datetime and filter on a date "
                           "property instead, e.g. filter=HSX >= DATE('2024-01-01')")
    if "q" in params:
        raise RequestError("free-text search (q) is not supported; use filter")
    fields = info.columns
    for name in ("properties",):
        if name in params:
            bad = [p for p in params[name].split(",") if p not in fields]
            if bad:
                raise RequestError(f"properties: unknown {', '.join(bad)}; available: {', '.join(fields)}")
    if "sortby" in params:
        for item in params["sortby"].split(","):
            prop = item[1:] if item[:1] in "+-" else item
            if prop not in fields:
                raise RequestError(f"sortby: unknown property {prop!r}; available: {', '.join(fields)}")
    lang = params.get("filter-lang")
    if lang not in (None, "cql2-text", "cql-text"):
        raise RequestError(f"filter-lang={lang!r} is not supported; GET filters are cql2-text")
    filter_crs = _crs_param(params, "filter-crs", epsg) or "CRS84"
    if "filter" in params:
        try:
            ast = cql.parse(params["filter"])
            cql.translate(ast, fields, epsg, filter_crs=filter_crs)
        except cql.FilterError as exc:
            raise RequestError(f"filter: {exc}") from None
    elif "filter-crs" in params or "filter-lang" in params:
        raise RequestError("filter-crs / filter-lang are given without filter")
    for name in params:
        if name in fields:
            try:
                cql.property_equals(name, params[name], fields)
            except cql.FilterError as exc:
                raise RequestError(str(exc)) from None


def check_item_request(params, reader: PagedReader) -> None:
    unknown = sorted(k for k in params if k not in ITEM_PARAMS)
    if unknown:
        raise RequestError(f"unknown query parameter(s) {', '.join(unknown)}; allowed: "
                           f"{', '.join(sorted(ITEM_PARAMS))}")
    f = params.get("f")
    if f is not None and f not in FORMATS:
        raise RequestError(f"f={f!r} is not offered; use json, html or jsonld")
    _crs_param(params, "crs", reader.storage_epsg)



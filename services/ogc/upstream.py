"""Where pygeoapi (0.24.0, pinned) and pygeofilter (0.4.0) are wrong or slow for us, the smallest fix, in one
place. Each fix replaces one module-level helper that pygeoapi's items handler calls; :func:`install` refuses to
start on a pygeoapi without these names, so an upgrade cannot silently drop one. Each has a test that shows the
upstream behaviour it corrects (tests/test_ogc_upstream.py — an upgrade that fixes it makes that test fail, and
the fix can go) and its upstream patch, diff and issue text, in docs/upstream/.

- ``api.itemtypes.transform_bbox`` → :func:`transform_bbox`: pygeoapi builds a PROJ transformer per request
  (≈1 s for CGCS2000 ↔ CRS84) and carries a bbox by its two corners; ours caches the transformer and keeps the
  bbox as sent, so the provider selects exactly (pygeoapi-transformer-per-request.md,
  pygeoapi-bbox-two-corners.md).
- ``api.itemtypes.modify_pygeofilter`` → :func:`modify_pygeofilter`: the same per-request transformer for filter
  geometries; ours also keeps each literal as written (pygeoapi-transformer-per-request.md).
- ``crs.get_crs``, ``provider.base.get_crs`` → :func:`get_crs`: a new CRS object per call, three per items
  request, ≈1.5 ms each (pygeoapi-transformer-per-request.md).
- ``api.itemtypes.parse_cql2_text`` → :func:`parse_cql2_text`: pygeofilter gives AND and OR the same
  precedence and rejects ``NOT (…)`` (pygeofilter-boolean-precedence.md).
- ``api.itemtypes.to_json`` → :func:`to_json`: ``json.dumps`` of every coordinate; orjson writes the same JSON
  values about ten times faster (pygeoapi-to-json-orjson.md).
- ``api.API.get_exception`` → :func:`get_exception`: pygeoapi logs every exception it answers at ERROR with
  the traceback — a client's malformed filter fills the server log like a crash; ours logs a 4xx at INFO
  in one line and keeps ERROR with the traceback for 5xx (pygeoapi-4xx-logged-as-error.md).
"""

from __future__ import annotations

import functools
import logging
import threading

import numpy as np
import orjson
import pyproj
import shapely
import shapely.geometry

from ..errors import RequestError
from .crs import _north_first, key_of_any, transform_xy

_ORIGINAL: dict[str, object] = {}


# --- get_crs: one CRS object per URI -------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _get_crs_cached(uri: str):
    return original("pygeoapi.crs.get_crs")(uri)


def get_crs(crs):
    """Drop-in for ``pygeoapi.crs.get_crs``: the same pyproj CRS, built once per URI (pyproj CRS objects are
    immutable and thread-safe since pyproj 3.1)."""
    if isinstance(crs, str):
        return _get_crs_cached(crs)
    return original("pygeoapi.crs.get_crs")(crs)


# --- to_json: orjson ------------------------------------------------------------------------------------------

def to_json(dict_: dict, pretty: bool = False) -> str:
    """Drop-in for ``pygeoapi.util.to_json`` as the items handlers use it: the same JSON values, and the same
    ``<`` / ``>`` escaping pygeoapi applies. Non-ASCII text is written as UTF-8 rather than ``\\uXXXX``
    escapes (the same JSON string). Pretty output, or a value orjson cannot write (an integer beyond 64 bits),
    goes to pygeoapi's own function."""
    from pygeoapi.util import json_serial  # pygeoapi.util itself is not patched
    from pygeoapi.util import to_json as pygeoapi_to_json

    if pretty:
        return pygeoapi_to_json(dict_, pretty)
    try:
        text = orjson.dumps(dict_, default=json_serial, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return pygeoapi_to_json(dict_, pretty)
    return text.replace("<", "&lt;").replace(">", "&gt;")


# --- CQL2 text: AND before OR, NOT before both ----------------------------------------------------------------

_BOOLEAN_RULES = """
?condition: boolean_term
          | condition "OR"i boolean_term                                  -> or_

?boolean_term: boolean_factor
             | boolean_term "AND"i boolean_factor                        -> and_

?boolean_factor: predicate
               | "NOT"i boolean_factor                                    -> not_
               | "(" condition ")"
"""


@functools.lru_cache(maxsize=1)
def _parser():
    """pygeofilter's CQL2-text grammar and transformer with the boolean rules corrected.

    pygeofilter 0.4.0 gives AND and OR the same precedence (``A OR B AND C`` parses as ``(A OR B) AND C``)
    and allows NOT only before a single predicate (``NOT (A OR B)`` is a syntax error). CQL2 says: NOT binds
    tightest, then AND, then OR. Everything else (predicates, literals, WKT) is pygeofilter's.
    """
    import os

    import pygeofilter.parsers.cql2_text.parser as p
    from lark import Lark

    with open(os.path.join(os.path.dirname(p.__file__), "grammar.lark"), encoding="utf-8") as f:
        grammar = f.read()
    start = grammar.index("?condition: condition_1")
    end = grammar.index("?predicate:")
    grammar = grammar[:start] + _BOOLEAN_RULES + "\n" + grammar[end:]
    return Lark(grammar, parser="lalr", maybe_placeholders=False, transformer=p.CQLTransformer(),
                import_paths=[os.path.dirname(os.path.dirname(p.__file__))])


def parse_cql2_text(text: str):
    """Parse CQL2 text into pygeofilter's AST (drop-in for pygeofilter.parsers.cql2_text.parse)."""
    return _parser().parse(text)


# --- bbox and filter geometries: cached transformers, the geometry as the client sent it ---------------------

class RequestBBox(list):
    """The bbox pygeoapi hands to a provider (already in the storage CRS, as pygeoapi computes it), which also
    remembers the bbox as the client sent it, so our provider can select exactly in the client's CRS."""

    source: tuple[list[float], str]


class _AxisAwareTransformer:
    """CRS84 / EPSG:4490 / GK-zone transformations in pyproj's ``always_xy`` semantics, built from the cached
    (east, north) transformers: CRS84 is taken as CGCS2000 lon/lat (PROJ's ballpark, i.e. the identity)."""

    def __init__(self, src, dst, always_xy: bool):
        self.src, self.dst, self.always_xy = src, dst, always_xy

    def transform(self, a, b, *rest):
        """(a, b[, z]) → the same in the target CRS; heights pass through unchanged."""
        x, y = (a, b) if self.always_xy or not _north_first(self.src) else (b, a)
        x, y = transform_xy(np.asarray(x, dtype=float), np.asarray(y, dtype=float), self.src, self.dst)
        out = (x, y) if self.always_xy or not _north_first(self.dst) else (y, x)
        if np.ndim(a) == 0:
            out = (float(out[0]), float(out[1]))
        return (*out, *rest)


def _cgcs2000_family(key) -> bool:
    if key == "CRS84":
        return True
    try:
        crs = pyproj.CRS.from_epsg(int(key))
    except Exception:
        return False
    from layers.crs import DATUM_CGCS2000, datum_of

    return datum_of(crs) == DATUM_CGCS2000


@functools.lru_cache(maxsize=64)
def _authority_transformer(src_uri: str, dst_uri: str, always_xy: bool):
    src: str | int | None
    dst: str | int | None
    try:
        src, dst = key_of_any(src_uri), key_of_any(dst_uri)
    except (RequestError, ValueError, IndexError):
        src = dst = None
    if src is not None and _cgcs2000_family(src) and _cgcs2000_family(dst):
        return _AxisAwareTransformer(src, dst, always_xy)
    from pygeoapi.crs import get_crs

    return pyproj.Transformer.from_crs(get_crs(src_uri), get_crs(dst_uri), always_xy=always_xy)


def transform_bbox(bbox: list, from_crs, to_crs, always_xy: bool = False) -> list:
    """Drop-in for ``pygeoapi.crs.transform_bbox``: same result, cached transformer, source kept."""
    tr = _authority_transformer(str(from_crs), str(to_crs), bool(always_xy))
    n = len(bbox) // 2
    out = RequestBBox(list(tr.transform(*bbox[:n])) + list(tr.transform(*bbox[n:])))
    out.source = (list(bbox), str(from_crs))
    return out


def modify_pygeofilter(ast_tree, *, filter_crs_uri: str, storage_crs_uri: str | None = None,
                       geometry_column_name: str | None = None):
    """Drop-in for ``pygeoapi.crs.modify_pygeofilter``: same result, cached transformer; every geometry
    literal also keeps ``yzt_source`` = (GeoJSON as the client wrote it, its CRS)."""
    from copy import deepcopy

    import pygeofilter.ast
    import pygeofilter.values

    tree = deepcopy(ast_tree)
    if isinstance(tree, pygeofilter.ast.BBox) and tree.crs is None:
        tree.crs = filter_crs_uri

    def walk(node):
        try:
            subs = node.get_sub_nodes()
        except AttributeError:
            return
        for sub in subs:
            if isinstance(sub, pygeofilter.values.Geometry):
                given = sub.geometry.get("crs", {}).get("properties", {}).get("name")
                src = given or filter_crs_uri
                sub.yzt_source = (deepcopy(sub.geometry), src)
                if storage_crs_uri:
                    tr = _authority_transformer(str(src), str(storage_crs_uri), False)
                    geom = shapely.geometry.shape(sub.geometry)

                    def fn(c, tr=tr):
                        x, y = tr.transform(c[:, 0], c[:, 1])
                        return np.column_stack([x, y])

                    sub.geometry = shapely.geometry.mapping(shapely.transform(geom, fn))
                    key = key_of_any(storage_crs_uri)
                    name = "urn:ogc:def:crs:OGC:1.3:CRS84" if key == "CRS84" else f"urn:ogc:def:crs:EPSG::{key}"
                    sub.geometry["crs"] = {"properties": {"name": name}}
            elif isinstance(sub, pygeofilter.values.Envelope):
                sub.yzt_source = (deepcopy(sub.geometry), filter_crs_uri)
            elif isinstance(sub, pygeofilter.ast.Attribute) and sub.name == "geometry" and geometry_column_name:
                sub.name = geometry_column_name
            else:
                if isinstance(sub, pygeofilter.ast.BBox) and sub.crs is None:
                    sub.crs = filter_crs_uri  # BBOX(…) coordinates are in filter-crs
                walk(sub)

    walk(tree)
    return tree


# --- a client's error is not a server error in the log ----------------------------------------------------------

LOGGER = logging.getLogger("yizhangtu.ogc")
_QUIET = threading.local()


class _QuietClientErrors(logging.Filter):
    """Drops pygeoapi's own log record of an exception while :func:`get_exception` answers a 4xx."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_QUIET, "on", False)


def get_exception(self, status, headers, format_, code, description):
    """Drop-in for ``pygeoapi.api.API.get_exception``: the same answer; a 4xx logged at INFO in one line (the
    client's mistake), a 5xx left to pygeoapi (ERROR with the traceback)."""
    fn = original("pygeoapi.api.API.get_exception")
    if int(status) >= 500:
        return fn(self, status, headers, format_, code, description)
    _QUIET.on = True
    try:
        answer = fn(self, status, headers, format_, code, description)
    finally:
        _QUIET.on = False
    LOGGER.info("OGC API %s %s: %s", int(status), code, description)
    return answer


# --- installing ------------------------------------------------------------------------------------------------

def install() -> None:
    """Install the replacements listed in the module docstring (idempotent)."""
    if _ORIGINAL:  # installed already
        return
    import pygeoapi.api as pygeoapi_api
    import pygeoapi.api.itemtypes as itemtypes
    import pygeoapi.crs as pygeoapi_crs
    import pygeoapi.provider.base as provider_base

    targets = [(itemtypes, "transform_bbox", transform_bbox), (itemtypes, "modify_pygeofilter", modify_pygeofilter),
               (itemtypes, "parse_cql2_text", parse_cql2_text), (itemtypes, "to_json", to_json),
               (pygeoapi_crs, "get_crs", get_crs), (provider_base, "get_crs", get_crs),
               (pygeoapi_api.API, "get_exception", get_exception)]

    def qualified(owner, name: str) -> str:
        prefix = owner.__name__ if not isinstance(owner, type) else f"{owner.__module__}.{owner.__qualname__}"
        return f"{prefix}.{name}"

    for owner, name, _ in targets:
        if not callable(getattr(owner, name, None)):
            raise RuntimeError(f"{qualified(owner, name)} is gone: this pygeoapi version is not the pinned 0.24; "
                               "review services/ogc/upstream.py and docs/upstream/ before upgrading")
    for owner, name, ours in targets:
        _ORIGINAL[qualified(owner, name)] = getattr(owner, name)
        setattr(owner, name, ours)
    logging.getLogger("pygeoapi.api").addFilter(_QuietClientErrors())


def original(qualified_name: str):
    """The upstream function a fix replaced (``"pygeoapi.crs.get_crs"`` …), also after :func:`install`."""
    if qualified_name in _ORIGINAL:
        return _ORIGINAL[qualified_name]
    module, _, name = qualified_name.rpartition(".")
    import importlib

    return getattr(importlib.import_module(module), name)

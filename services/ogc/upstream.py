"""Where we replace pygeoapi's own helpers, all in one place (pygeoapi 0.24.0 is pinned).

:func:`install_pygeoapi_hooks` swaps five module-level helpers of pygeoapi for ours (get_crs in both modules
that import it). Each returns what pygeoapi's would (or what it should: the CQL2 parser); they differ in being
cached or faster. Nothing else of pygeoapi is changed, and the function refuses to start on a pygeoapi without
these names, so an upgrade cannot silently drop one.

| pygeoapi helper | ours | why |
|---|---|---|
| ``api.itemtypes.transform_bbox`` | crs.transform_bbox | cached transformer (pygeoapi builds one per request, ≈1 s for CGCS2000 ↔ CRS84); keeps the bbox as sent, so the provider selects exactly |
| ``api.itemtypes.modify_pygeofilter`` | crs.modify_pygeofilter | the same for filter geometries |
| ``api.itemtypes.parse_cql2_text`` | cql.parse_cql2_text | pygeofilter 0.4.0 gets AND/OR precedence wrong and rejects ``NOT (…)`` |
| ``crs.get_crs``, ``provider.base.get_crs`` | :func:`get_crs` | the same CRS object from a cache (three are built per items request, ≈1.5 ms each) |
| ``api.itemtypes.to_json`` | :func:`to_json` | orjson: the same JSON values about ten times faster than ``json.dumps`` |
"""

from __future__ import annotations

import functools

import orjson

_ORIGINAL: dict[str, object] = {}


@functools.lru_cache(maxsize=64)
def _get_crs_cached(uri: str):
    return _ORIGINAL["get_crs"](uri)


def get_crs(crs):
    """Drop-in for ``pygeoapi.crs.get_crs``: the same pyproj CRS, built once per URI (pyproj CRS objects are
    immutable and thread-safe since pyproj 3.1)."""
    if isinstance(crs, str):
        return _get_crs_cached(crs)
    return _ORIGINAL["get_crs"](crs)


def to_json(dict_: dict, pretty: bool = False) -> str:
    """Drop-in for ``pygeoapi.util.to_json`` as the items handlers use it: the same JSON values, and the same
    ``<`` / ``>`` escaping pygeoapi applies. Non-ASCII text is written as UTF-8 rather than ``\\uXXXX``
    escapes (the same JSON string). Pretty output, or a value orjson cannot write (an integer beyond 64 bits),
    goes to pygeoapi's own function."""
    from pygeoapi.util import json_serial, to_json as pygeoapi_to_json  # pygeoapi.util itself is not patched

    if pretty:
        return pygeoapi_to_json(dict_, pretty)
    try:
        text = orjson.dumps(dict_, default=json_serial, option=orjson.OPT_NON_STR_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return pygeoapi_to_json(dict_, pretty)
    return text.replace("<", "&lt;").replace(">", "&gt;")


_INSTALLED = False


def install_pygeoapi_hooks() -> None:
    """Install the replacements listed in the module docstring (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    import pygeoapi.api.itemtypes as itemtypes
    import pygeoapi.crs as pygeoapi_crs
    import pygeoapi.provider.base as provider_base

    from .cql import parse_cql2_text
    from .crs import modify_pygeofilter, transform_bbox

    targets = [(itemtypes, "transform_bbox", transform_bbox), (itemtypes, "modify_pygeofilter", modify_pygeofilter),
               (itemtypes, "parse_cql2_text", parse_cql2_text), (itemtypes, "to_json", to_json),
               (pygeoapi_crs, "get_crs", get_crs), (provider_base, "get_crs", get_crs)]
    for module, name, _ in targets:
        if not callable(getattr(module, name, None)):
            raise RuntimeError(f"{module.__name__}.{name} is gone: this pygeoapi version is not the pinned 0.24; "
                               "review services/ogc/hooks.py before upgrading")
    _ORIGINAL["get_crs"] = pygeoapi_crs.get_crs
    for module, name, ours in targets:
        setattr(module, name, ours)
    _INSTALLED = True

"""OGC API Features: pygeoapi mounted inside the FastAPI app at ``settings.ogc_prefix``.

Every layer of the store (and every analysis result layer) is a collection, served by pygeoapi's API
object with our provider plugin (provider.StoreProvider). We do not import ``pygeoapi.starlette_app``: it
reads one global configuration from ``PYGEOAPI_CONFIG`` at import time, so two apps (two stores, as in
the tests) could not live in one process. Instead :func:`create_ogc_app` builds a Starlette app with the
same routes over a ``pygeoapi.api.API`` made from the configuration generated for this store
(config.py, written to ``settings.workdir`` as well).

Before pygeoapi sees an items request, :func:`check_items_request` validates every parameter and answers
400 with a JSON body naming the bad value (unknown parameter, malformed bbox, unknown CRS, limit out of
range, a filter we cannot evaluate …): pygeoapi would otherwise ignore some of them or answer a vague
"Bad CQL text".
"""

from __future__ import annotations

import logging
import math
import re
import threading
from http import HTTPStatus
from types import SimpleNamespace

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import cql
from .config import STATIC, build_config, build_openapi, write_documents
from .crs import CRSParamError, check_served, crs_key, supported_uris
from .engine import SPLICE, Splice, engine_for
from .hooks import install_pygeoapi_hooks

LOGGER = logging.getLogger(__name__)

ITEMS_PARAMS = {"bbox", "bbox-crs", "crs", "f", "lang", "limit", "offset", "resulttype", "datetime", "sortby",
                "properties", "skipGeometry", "q", "filter", "filter-lang", "filter-crs"}
ITEM_PARAMS = {"crs", "f", "lang"}
FORMATS = {"json", "html", "jsonld"}
LANG = re.compile(r"^[A-Za-z]{1,8}([-_][A-Za-z0-9]{1,8})*$")


class OgcError(Exception):
    def __init__(self, status: int, code: str, description: str):
        super().__init__(description)
        self.status, self.code, self.description = status, code, description


def error_response(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"code": code, "type": code, "description": description}, status_code=status)


# --- request validation ---------------------------------------------------------------------------------

def _int(params, name: str, lo: int, hi: int | None, default: int | None = None):
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise OgcError(400, "InvalidParameterValue", f"{name}={raw!r} is not an integer") from None
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo}…{hi}" if hi is not None else f"≥ {lo}"
        raise OgcError(400, "InvalidParameterValue", f"{name}={value} is out of range: give an integer {rng}")
    return value


def _crs_param(params, name: str, storage_epsg: int) -> str | int | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        key = crs_key(raw)
        check_served(key, storage_epsg)
    except CRSParamError as exc:
        raise OgcError(400, "InvalidParameterValue",
                       f"{name}: {exc}. Served CRSs: {', '.join(supported_uris(storage_epsg))}") from None
    return key


def parse_bbox(raw: str) -> list[float]:
    parts = raw.split(",")
    if len(parts) not in (4, 6):
        raise OgcError(400, "InvalidParameterValue",
                       f"bbox={raw!r} must have 4 numbers (min1,min2,max1,max2 in the axis order of bbox-crs) "
                       "or 6 with heights")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise OgcError(400, "InvalidParameterValue", f"bbox={raw!r}: every value must be a number") from None
    if not all(math.isfinite(v) for v in values):
        raise OgcError(400, "InvalidParameterValue", f"bbox={raw!r}: values must be finite numbers")
    n = len(values) // 2
    lo, hi = values[:n], values[n:]
    for axis, (a, b) in enumerate(zip(lo, hi), start=1):
        if a > b:
            raise OgcError(400, "InvalidParameterValue",
                           f"bbox={raw!r}: the lower value of axis {axis} ({a}) exceeds the upper ({b}); "
                           "give the lower corner first (boxes across the antimeridian are not supported)")
    return values


def check_items_request(params, engine, layer: str, limit_max: int) -> None:
    """Validate an items request; OgcError (400) naming the problem. ``params``: the query parameters."""
    info = engine.layers[layer]
    epsg = engine.storage_epsg
    unknown = sorted(k for k in params.keys() if k not in ITEMS_PARAMS and k not in info.columns)
    if unknown:
        raise OgcError(400, "InvalidParameterValue",
                       f"unknown query parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(ITEMS_PARAMS))} "
                       f"and the queryables of {layer!r} as equality filters")
    for key in params.keys():
        if len(params.getlist(key)) > 1:
            raise OgcError(400, "InvalidParameterValue", f"query parameter {key!r} is given more than once")
    f = params.get("f")
    if f is not None and f not in FORMATS:
        raise OgcError(400, "InvalidParameterValue", f"f={f!r} is not offered; use json, html or jsonld")
    _int(params, "limit", 1, limit_max)
    _int(params, "offset", 0, None)
    if params.get("resulttype") not in (None, "results", "hits"):
        raise OgcError(400, "InvalidParameterValue", f"resulttype={params['resulttype']!r}: use results or hits")
    if params.get("skipGeometry") not in (None, "true", "false", "True", "False"):
        raise OgcError(400, "InvalidParameterValue", f"skipGeometry={params['skipGeometry']!r}: use true or false")
    _crs_param(params, "crs", epsg)
    bbox_crs = _crs_param(params, "bbox-crs", epsg)
    if "bbox" in params:
        values = parse_bbox(params["bbox"])
        from .crs import box_in_store

        try:
            box_in_store(values, bbox_crs or "CRS84", epsg)
        except CRSParamError as exc:
            raise OgcError(400, "InvalidParameterValue", f"bbox={params['bbox']!r}: {exc}") from None
    elif bbox_crs is not None:
        raise OgcError(400, "InvalidParameterValue", "bbox-crs is given without bbox")
    if "datetime" in params:
        raise OgcError(400, "InvalidParameterValue",
                       f"collection {layer!r} has no temporal property: drop datetime and filter on a date property "
                       "instead, e.g. filter=HSX >= DATE('2024-01-01')")
    if "q" in params:
        raise OgcError(400, "InvalidParameterValue", "free-text search (q) is not supported; use filter")
    fields = info.columns
    for name in ("properties",):
        if name in params:
            bad = [p for p in params[name].split(",") if p not in fields]
            if bad:
                raise OgcError(400, "InvalidParameterValue",
                               f"properties: unknown {', '.join(bad)}; available: {', '.join(fields)}")
    if "sortby" in params:
        for item in params["sortby"].split(","):
            prop = item[1:] if item[:1] in "+-" else item
            if prop not in fields:
                raise OgcError(400, "InvalidParameterValue",
                               f"sortby: unknown property {prop!r}; available: {', '.join(fields)}")
    lang = params.get("filter-lang")
    if lang not in (None, "cql2-text", "cql-text"):
        raise OgcError(400, "InvalidParameterValue",
                       f"filter-lang={lang!r} is not supported; GET filters are cql2-text")
    filter_crs = _crs_param(params, "filter-crs", epsg) or "CRS84"
    if "filter" in params:
        try:
            ast = cql.parse(params["filter"])
            cql.translate(ast, fields, "geom", engine.dialect, epsg, filter_crs=filter_crs)
        except cql.FilterError as exc:
            raise OgcError(400, "InvalidParameterValue", f"filter: {exc}") from None
    elif "filter-crs" in params or "filter-lang" in params:
        raise OgcError(400, "InvalidParameterValue", "filter-crs / filter-lang are given without filter")
    for name in params.keys():
        if name in fields:
            try:
                cql.property_equals(name, params[name], fields, engine.dialect)
            except cql.FilterError as exc:
                raise OgcError(400, "InvalidParameterValue", str(exc)) from None


def check_item_request(params, engine) -> None:
    unknown = sorted(k for k in params.keys() if k not in ITEM_PARAMS)
    if unknown:
        raise OgcError(400, "InvalidParameterValue",
                       f"unknown query parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(ITEM_PARAMS))}")
    f = params.get("f")
    if f is not None and f not in FORMATS:
        raise OgcError(400, "InvalidParameterValue", f"f={f!r} is not offered; use json, html or jsonld")
    _crs_param(params, "crs", engine.storage_epsg)


# --- response adjustments ------------------------------------------------------------------------------

# What this service implements: pygeoapi declares every class its modules could serve (processes, tiles,
# create/replace/delete …); we keep the ones we serve and add the filter classes we do implement.
CONFORMANCE_PREFIXES = (
    "http://www.opengis.net/spec/ogcapi-common-1/", "http://www.opengis.net/spec/ogcapi-common-2/",
    "http://www.opengis.net/spec/ogcapi-features-1/", "http://www.opengis.net/spec/ogcapi-features-2/",
    "http://www.opengis.net/spec/ogcapi-features-3/",
)
CONFORMANCE_EXTRA = [
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
]


def honest_conformance(request, headers, content):
    import json

    doc = json.loads(content)
    keep = [c for c in doc.get("conformsTo", []) if c.startswith(CONFORMANCE_PREFIXES)
            and "ogcapi-features-4" not in c]
    doc["conformsTo"] = sorted(set(keep) | set(CONFORMANCE_EXTRA))
    return headers, json.dumps(doc, separators=(",", ":"))


def closed_queryables(request, headers, content):
    """Queryables are closed: a filter on any other name is refused (400)."""
    import json

    doc = json.loads(content)
    doc["additionalProperties"] = False
    return headers, json.dumps(doc, separators=(",", ":"))


def link_header(request, headers, content, base: str):
    """RFC 8288 Link header with the self / alternate representations of an items page."""
    from urllib.parse import urlencode

    params = [(k, v) for k, v in request.query_params.multi_items() if k != "f"]
    links = []
    for f, rel, mime in (("json", "self", "application/geo+json"), ("html", "alternate", "text/html")):
        links.append(f'<{base}?{urlencode([*params, ("f", f)])}>; rel="{rel}"; type="{mime}"')
    # the queryables of the collection (OGC API Features Part 3, /req/queryables/get-queryables-uris)
    links.append(f'<{base.rsplit("/", 1)[0]}/queryables>; rel=http://www.opengis.net/def/rel/ogc/1.0/queryables; '
                 'type="application/schema+json"')
    headers["Link"] = ", ".join(links)
    return headers, content


# --- the Starlette app -----------------------------------------------------------------------------------

def _to_response(headers: dict, status: int, content) -> Response:
    response = Response(content, status_code=int(status))
    response.headers.update(headers or {})
    return response


def create_ogc_app(settings) -> Starlette:
    """The OGC API for the store in ``settings.store`` (a Starlette app to mount at ``settings.ogc_prefix``)."""
    from pygeoapi.api import API, APIRequest
    import pygeoapi.api as core_api
    import pygeoapi.api.itemtypes as itemtypes_api
    import pygeoapi.api.processes as processes_api
    import pygeoapi.api.tiles as tiles_api

    install_pygeoapi_hooks()
    engine = engine_for(str(settings.store))
    limit_max = settings.page_limit_max
    served = SimpleNamespace(generation=None, config=None, api=None)
    build_lock = threading.Lock()

    def build(generation) -> None:
        """pygeoapi's configuration, OpenAPI document and API object for the layers the engine has now."""
        config = build_config(engine, settings.base_url, settings.ogc_prefix, limit_max)
        openapi = build_openapi(config)
        write_documents(config, openapi, settings.workdir)
        root_level = logging.getLogger().level
        api = API(config, openapi)
        logging.getLogger().setLevel(root_level)  # pygeoapi's setup_logger must not change the app's logging
        logging.getLogger("pygeoapi").setLevel(logging.ERROR)  # it logs every 4xx and routine fallbacks
        served.config, served.api, served.generation = config, api, generation

    def current() -> SimpleNamespace:
        """The served documents, rebuilt when the store's layers changed (a layer ingested, an analysis
        written): new collections appear and counts / extents follow without a restart."""
        engine.refresh()
        generation = engine.generation
        if generation != served.generation:
            with build_lock:
                if generation != served.generation:
                    build(generation)
        return served

    current()

    def wants_html(request: Request) -> bool:
        f = request.query_params.get("f")
        if f is not None:
            return f == "html"
        accept = request.headers.get("accept", "")
        return "text/html" in accept and "json" not in accept

    def fail(request: Request, status: int, code: str, description: str) -> Response:
        if wants_html(request):
            headers, status, content = served.api.get_exception(status, {}, "html", code, description)
            return Response(content, status_code=int(status), media_type="text/html")
        return error_response(status, code, description)

    async def run(request: Request, fn, *args, check=None, format_check=True, post=None, splice=False) -> Response:
        try:
            lang = request.query_params.get("lang")
            if lang is not None and not LANG.match(lang):
                raise OgcError(400, "InvalidParameterValue", f"lang={lang!r} is not a language tag such as zh-CN or en")
            api = current().api
            if check is not None:
                check(request.query_params)
            api_request = await APIRequest.from_starlette(request, api.locales)
            if format_check and not api_request.is_valid():
                headers, status, content = api.get_format_exception(api_request)
            else:
                geometry_text = Splice() if splice and api_request.format in (None, "json") else None
                token = SPLICE.set(geometry_text)
                try:
                    headers, status, content = await run_in_threadpool(fn, api, api_request, *args)
                finally:
                    SPLICE.reset(token)
                if geometry_text is not None and geometry_text.texts and isinstance(content, str):
                    content = geometry_text.apply(content)
                if post is not None and int(status) == 200 and "json" in str(headers.get("Content-Type", "")):
                    headers, content = post(request, headers, content)
        except OgcError as exc:
            return fail(request, exc.status, exc.code, exc.description)
        except Exception:  # a bug, not the client's fault: log it, answer 500 with a JSON body
            LOGGER.exception("OGC API request %s failed", request.url)
            return error_response(500, "ServerError", "internal error; the server log has the details")
        return _to_response(headers, status, content)

    def collection_of(request: Request) -> str:
        cid = request.path_params["collection_id"]
        resources = current().config["resources"]
        if cid not in engine.layers or cid not in resources:
            raise OgcError(404, "NotFound", f"collection {cid!r} not found; collections: "
                                            f"{', '.join(sorted(resources))}")
        return cid

    async def landing(request):
        return await run(request, core_api.landing_page)

    async def openapi_doc(request):
        return await run(request, core_api.openapi_)

    async def conformance(request):
        return await run(request, core_api.conformance, post=honest_conformance)

    async def collections(request):
        return await run(request, core_api.describe_collections)

    def per_collection(handler):
        """A route under /collections/{collection_id}: the collection must exist (else 404), then handler."""
        async def route(request):
            try:
                cid = collection_of(request)
            except OgcError as exc:
                return fail(request, exc.status, exc.code, exc.description)
            return await handler(request, cid)

        return route

    @per_collection
    async def collection(request, cid):
        return await run(request, core_api.describe_collections, cid)

    @per_collection
    async def queryables(request, cid):
        return await run(request, itemtypes_api.get_collection_queryables, cid, post=closed_queryables)

    @per_collection
    async def schema(request, cid):
        return await run(request, core_api.get_collection_schema, cid)

    @per_collection
    async def items(request, cid):
        return await run(request, itemtypes_api.get_collection_items, cid, format_check=False,
                         check=lambda p: check_items_request(p, engine, cid, limit_max), splice=True,
                         post=lambda r, h, c: link_header(r, h, c, f"{served.api.base_url}/collections/{cid}/items"))

    @per_collection
    async def item(request, cid):
        return await run(request, itemtypes_api.get_collection_item, cid, request.path_params["item_id"],
                         check=lambda p: check_item_request(p, engine), splice=True)

    async def processes(request):
        return await run(request, processes_api.describe_processes, None)

    async def tilematrixsets(request):
        return await run(request, tiles_api.tilematrixsets)

    async def http_error(request, exc: HTTPException):
        text = {404: "no such OGC API resource; start at the landing page",
                405: "method not allowed; the OGC API is read-only (GET)"}.get(exc.status_code, str(exc.detail))
        return fail(request, exc.status_code, HTTPStatus(exc.status_code).phrase.replace(" ", ""),
                    f"{request.method} {request.url.path}: {text}")

    routes = [
        Route("/", landing),
        Route("/openapi", openapi_doc),
        Route("/conformance", conformance),
        Route("/collections", collections),
        Route("/collections/{collection_id}", collection),
        Route("/collections/{collection_id}/queryables", queryables),
        Route("/collections/{collection_id}/schema", schema),
        Route("/collections/{collection_id}/items", items),
        Route("/collections/{collection_id}/items/{item_id}", item),
        Route("/processes", processes),
        Route("/TileMatrixSets", tilematrixsets),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.engine = engine
    app.state.served = served  # .config, .api: the documents being served (rebuilt when the layers change)
    return app


def install(app, settings) -> None:
    """Mount the OGC API at ``settings.ogc_prefix`` (called by services.app.create_app)."""
    sub = create_ogc_app(settings)
    app.state.ogc = sub
    app.mount(settings.ogc_prefix, sub)

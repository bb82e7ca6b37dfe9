"""OGC API Features: pygeoapi's API over our store, as a Starlette app mounted at ``settings.ogc_prefix``.

Every layer of the store (and every analysis result layer) is a collection, served by pygeoapi's API functions
with our provider plugin (provider.StoreProvider, registered by dotted path in the generated configuration,
config.py). We do not import ``pygeoapi.starlette_app``: it reads one global configuration from
``PYGEOAPI_CONFIG`` at import time, so two apps (two stores, as in the tests) could not live in one process.
The routes here are pygeoapi's own handlers, except two that pygeoapi gets wrong for this service:

- ``/conformance``: pygeoapi declares classes we do not serve (create-replace-delete …) and lacks the filter
  classes we do; ours lists exactly what is implemented (CONFORMANCE);
- ``/collections/{id}/queryables``: ours says the list is closed (``additionalProperties: false``), since a
  filter on any other name is refused.

Before pygeoapi sees an items request, params.check_items_request validates every parameter. Errors are
mapped to HTTP by the one table in services/errors.py and rendered as OGC API exceptions (JSON, or HTML when
the client asked for HTML). pygeoapi's own helpers that are wrong or slow are replaced in upstream.py.
"""

from __future__ import annotations

import logging
import threading
from http import HTTPStatus
from urllib.parse import urlencode

import pygeoapi.api as core_api
import pygeoapi.api.itemtypes as itemtypes_api
import pygeoapi.api.processes as processes_api
import pygeoapi.api.tiles as tiles_api
from pygeoapi import l10n
from pygeoapi.api import API, APIRequest
from pygeoapi.util import render_j2_template
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from layers.errors import NotFoundError, YztError

from ..errors import MethodNotAllowed, RequestError, status_of
from ..settings import Settings
from . import upstream
from .config import STATIC, build_config, build_openapi, write_documents
from .params import LANG, check_item_request, check_items_request
from .provider import fields_of, reader_for

LOGGER = logging.getLogger(__name__)

# What this service implements (pygeoapi's list declares every class its modules could serve).
CONFORMANCE = [
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/landing-page",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
]
QUERYABLES_PARAMS = {"f", "lang", "properties", "profile"}


class OgcService:
    """The store's reader and the pygeoapi documents and API object built for its layers, rebuilt when the
    layers change (a layer ingested, an analysis written): new collections appear, counts and extents follow,
    without a restart."""

    def __init__(self, settings: Settings):
        upstream.install()
        # pygeoapi offers its CSV formatter on every feature collection (links rel=alternate f=csv); this
        # service does not serve CSV (params.FORMATS: f=csv answers 400), so it must not link to it either
        from pygeoapi.plugin import PLUGINS

        PLUGINS["formatter"].pop("CSV", None)
        self.settings = settings
        self.reader = reader_for(str(settings.store))
        self.generation: int | None = None
        self.config: dict = {}
        self.api: API | None = None
        self._lock = threading.Lock()
        self.current()

    def _build(self, generation: int) -> None:
        s = self.settings
        config = build_config(self.reader, s.base_url, s.ogc_prefix, s.page_limit_max)
        openapi = build_openapi(config)
        write_documents(config, openapi, s.workdir)
        root_level = logging.getLogger().level
        api = API(config, openapi)
        logging.getLogger().setLevel(root_level)  # pygeoapi's setup_logger must not change the app's logging
        logging.getLogger("pygeoapi").setLevel(logging.ERROR)  # it logs every 4xx and routine fallbacks
        self.config, self.api, self.generation = config, api, generation

    def current(self) -> API:
        """pygeoapi's API object for the layers the store has now."""
        self.reader.refresh()
        generation = self.reader.generation
        if generation != self.generation:
            with self._lock:
                if generation != self.generation:
                    self._build(generation)
        assert self.api is not None
        return self.api

    def collection(self, request: Request) -> str:
        """The collection a request names; NotFoundError (404) if the store has no such layer."""
        cid = request.path_params["collection_id"]
        self.current()  # a layer written since the last request is a collection now
        resources = self.config["resources"]
        if cid not in self.reader.layers or cid not in resources:
            raise NotFoundError(f"collection {cid!r} not found; collections: {', '.join(sorted(resources))}")
        return cid


def service(request: Request) -> OgcService:
    return request.app.state.service


# --- responses and errors ---------------------------------------------------------------------------------

def wants_html(request: Request) -> bool:
    f = request.query_params.get("f")
    if f is not None:
        return f == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept and "json" not in accept


def error_response(request: Request, status: int, code: str, description: str, headers=None) -> Response:
    """An OGC API exception: pygeoapi's exception page for HTML, else JSON ``{code, type, description}``."""
    api = service(request).api
    if wants_html(request) and api is not None:
        _, _, content = api.get_exception(status, {}, "html", code, description)
        return Response(content, status_code=status, media_type="text/html", headers=headers)
    return JSONResponse({"code": code, "type": code, "description": description}, status_code=status,
                        headers=headers)


async def yzt_error(request: Request, exc: Exception) -> Response:
    status, code = status_of(exc)
    return error_response(request, status, code, str(exc), getattr(exc, "headers", None))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error: YztError = MethodNotAllowed(f"{request.method} {request.url.path}: method not allowed; the OGC API "
                                           "is read-only (GET)")
    elif exc.status_code == 404:
        error = NotFoundError(f"{request.method} {request.url.path}: no such OGC API resource; start at the "
                              "landing page")
    else:  # pragma: no cover - Starlette raises only the two above here
        return error_response(request, exc.status_code, HTTPStatus(exc.status_code).phrase.replace(" ", ""),
                              f"{request.method} {request.url.path}: {exc.detail}")
    return await yzt_error(request, error)


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug, not the client's fault: a JSON 500 (Starlette then re-raises it, so the server logs the traceback)."""
    return JSONResponse({"code": "ServerError", "type": "ServerError",
                         "description": "internal error; the server log has the details"}, status_code=500)


def to_response(headers: dict, status: int, content) -> Response:
    response = Response(content, status_code=int(status))
    response.headers.update(headers or {})
    if int(status) >= 400 and not response.headers.get("content-type", "").startswith("text/html"):
        # pygeoapi labels an exception with the requested format (f=jsonld → application/ld+json); the body
        # is the OGC API exception, plain JSON
        response.headers["content-type"] = "application/json"
    return response


def link_header(request: Request, headers: dict, base: str) -> None:
    """RFC 8288 Link header with the self / alternate representations of an items page and its queryables."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "f"]
    links = []
    for f, rel, mime in (("json", "self", "application/geo+json"), ("html", "alternate", "text/html")):
        links.append(f'<{base}?{urlencode([*params, ("f", f)])}>; rel="{rel}"; type="{mime}"')
    # the queryables of the collection (OGC API Features Part 3, /req/queryables/get-queryables-uris)
    links.append(f'<{base.rsplit("/", 1)[0]}/queryables>; rel="http://www.opengis.net/def/rel/ogc/1.0/queryables"; '
                 'type="application/schema+json"')
    headers["Link"] = ", ".join(links)


async def api_request(request: Request, api: API) -> APIRequest:
    lang = request.query_params.get("lang")
    if lang is not None and not LANG.match(lang):
        raise RequestError(f"lang={lang!r} is not a language tag such as zh-CN or en")
    return await APIRequest.from_starlette(request, api.locales)


async def run(request: Request, fn, *args, format_check: bool = True) -> tuple[dict, int, str]:
    """pygeoapi's handler ``fn(api, api_request, *args)`` in a worker thread: (headers, status, content)."""
    api = service(request).current()
    req = await api_request(request, api)
    if format_check and not req.is_valid():
        return api.get_format_exception(req)
    return await run_in_threadpool(fn, api, req, *args)


# --- routes -----------------------------------------------------------------------------------------------

async def landing(request: Request) -> Response:
    return to_response(*await run(request, core_api.landing_page))


async def openapi_doc(request: Request) -> Response:
    return to_response(*await run(request, core_api.openapi_))


async def conformance(request: Request) -> Response:
    api = service(request).current()
    req = await api_request(request, api)
    if not req.is_valid():
        return to_response(*api.get_format_exception(req))
    from services.api.tiles import CONFORMANCE as TILES_CONFORMANCE

    doc = {"conformsTo": sorted(set(CONFORMANCE) | set(TILES_CONFORMANCE))}
    headers = req.get_response_headers(**api.api_headers)
    if req.format == "html":
        content = render_j2_template(api.tpl_config, api.config["server"]["templates"], "conformance.html",
                                              doc, req.locale)
        return to_response(headers, 200, content)
    return to_response(headers, 200, upstream.to_json(doc))


def with_tile_links(request: Request, answer: tuple[dict, int, str]) -> tuple[dict, int, str]:
    """A collection document (or the list) with the links to its vector tiles (OGC API – Tiles)."""
    from services.api.tiles import add_tile_links

    headers, status, content = answer
    if int(status) == 200 and "json" in str(headers.get("Content-Type", "")):
        content = add_tile_links(content, service(request).current().base_url)
    return headers, status, content


async def collections(request: Request) -> Response:
    return to_response(*with_tile_links(request, await run(request, core_api.describe_collections)))


async def collection(request: Request) -> Response:
    cid = service(request).collection(request)
    return to_response(*with_tile_links(request, await run(request, core_api.describe_collections, cid)))


async def queryables(request: Request) -> Response:
    svc = service(request)
    cid = svc.collection(request)
    api = svc.current()
    unknown = sorted(set(request.query_params) - QUERYABLES_PARAMS)
    if unknown:
        raise RequestError(f"unknown query parameter(s) {', '.join(unknown)}; allowed: "
                           f"{', '.join(sorted(QUERYABLES_PARAMS))}")
    req = await api_request(request, api)
    if not req.is_valid():
        return to_response(*api.get_format_exception(req))
    fields = fields_of(svc.reader.info(cid).columns)
    wanted = [p for p in (request.query_params.get("properties") or "").split(",") if p]
    unknown_props = sorted(set(wanted) - set(fields))
    if unknown_props:
        raise RequestError(f"properties: unknown {', '.join(unknown_props)}; available: {', '.join(fields)}")
    title = l10n.translate(svc.config["resources"][cid]["title"], req.locale)
    doc_id = f"{api.get_collections_url()}/{cid}/queryables"
    if request.query_params:
        doc_id += "?" + urlencode(list(request.query_params.multi_items()))
    props: dict = {"geometry": {"format": "geometry-any", "x-ogc-role": "primary-geometry"}}
    for name, spec in fields.items():
        if not wanted or name in wanted:
            props[name] = {"title": name, **spec}
    doc = {"type": "object", "title": title, "properties": props,
           "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": doc_id,
           "additionalProperties": False}  # a filter on any other name is refused
    headers = req.get_response_headers(**api.api_headers)
    if req.format == "html":
        doc.update(collections_path=api.get_collections_url(), dataset_path=f"{api.get_collections_url()}/{cid}")
        content = render_j2_template(api.tpl_config, api.get_dataset_templates(cid),
                                              "collections/queryables.html", doc, req.locale)
        return to_response(headers, 200, content)
    headers["Content-Type"] = "application/schema+json"
    return to_response(headers, 200, upstream.to_json(doc))


async def schema(request: Request) -> Response:
    cid = service(request).collection(request)
    return to_response(*await run(request, core_api.get_collection_schema, cid))


async def items(request: Request) -> Response:
    svc = service(request)
    cid = svc.collection(request)
    check_items_request(request.query_params, svc.reader, cid, svc.settings.page_limit_max)
    headers, status, content = await run(request, itemtypes_api.get_collection_items, cid, format_check=False)
    if int(status) == 200 and "json" in str(headers.get("Content-Type", "")):
        link_header(request, headers, f"{svc.current().base_url}/collections/{cid}/items")
    return to_response(*as_geojson(headers, status, content))


def as_geojson(headers: dict, status: int, content) -> tuple[dict, int, str]:
    """Features are GeoJSON: pygeoapi labels them application/json, their links (and OGC API Features §7.15)
    say application/geo+json."""
    if int(status) == 200 and str(headers.get("Content-Type", "")).startswith("application/json"):
        headers = {**headers, "Content-Type": "application/geo+json"}
    return headers, status, content


async def item(request: Request) -> Response:
    svc = service(request)
    cid = svc.collection(request)
    check_item_request(request.query_params, svc.reader)
    return to_response(*as_geojson(*await run(request, itemtypes_api.get_collection_item, cid,
                                              request.path_params["item_id"])))


async def processes(request: Request) -> Response:
    return to_response(*await run(request, processes_api.describe_processes, None))


async def tilematrixsets(request: Request) -> Response:
    return to_response(*await run(request, tiles_api.tilematrixsets))


ROUTES = [
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


def create_ogc_app(settings: Settings) -> Starlette:
    """The OGC API for the store in ``settings.store`` (a Starlette app to mount at ``settings.ogc_prefix``),
    with the vector tiles of every collection (services/api/tiles.py) beside the features."""
    from pathlib import Path

    from services.api.tiles import TileService, tile_routes

    ogc = OgcService(settings)
    tiles = TileService(ogc.reader, cache_dir=Path(settings.workdir) / "tile-cache")
    app = Starlette(routes=[*tile_routes(tiles, lambda: ogc.current().base_url), *ROUTES],
                    exception_handlers={YztError: yzt_error, HTTPException: http_error, Exception: server_error})
    app.state.service = ogc
    app.state.tiles = tiles
    return app

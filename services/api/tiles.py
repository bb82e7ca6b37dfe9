"""OGC API – Tiles for every vector collection: Mapbox Vector Tiles in WebMercatorQuad, made from the store on
the fly (layers/store/tiles.py), cached in memory, with ETags.

Routes (inside the OGC API app, so under ``settings.ogc_prefix``):

- ``/tileMatrixSets`` and ``/tileMatrixSets/WebMercatorQuad`` — the tile matrix set (OGC TMS 2.0 JSON, from
  morecantile);
- ``/collections/{id}/tiles`` — the tilesets of a collection (one: vector, WebMercatorQuad);
- ``/collections/{id}/tiles/WebMercatorQuad`` — the tileset: data type, CRS, tile matrix set and its limits
  over the collection's extent, the layer and its properties schema, and the tile URL template;
- ``/collections/{id}/tiles/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}`` — one tile
  (``application/vnd.mapbox-vector-tile``; an empty tile is 0 bytes with status 200), ``properties=a,b`` to
  keep only some attributes.

Every tile carries a strong ETag (a hash of its bytes); ``If-None-Match`` gives 304. Tiles are cached per store
version (the GeoPackage file's identity — layer writes replace the file; the PostGIS catalogue's table oids), so a
re-ingest or a re-analysis is seen at once: in memory (256 MB per process) and on disk under
``settings.workdir/tile-cache`` (shared by all uvicorn workers, kept across restarts; the previous version's
tiles are dropped when a new version's first tile is written). ``flagged_patches`` is never cached: the workflow
changes its status column in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
from collections import OrderedDict
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from layers.codes import SANDIAO_CODES
from layers.errors import NotFoundError, YztError
from layers.store.tiles import (
    EXTENT,
    MAX_ZOOM,
    WEB_MERCATOR,
    Overview,
    TileLayer,
    check_tile,
    detail_zoom,
    open_tile_reader,
    transformer,
)

LOGGER = logging.getLogger("yizhangtu.tiles")
TMS_ID = "WebMercatorQuad"
TMS_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
MVT = "application/vnd.mapbox-vector-tile"
REL_TILESETS_VECTOR = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
REL_TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/tms/2.0/conf/tilematrixset",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset",
]
# Coverage layers served dissolved by this class column below their detail zoom (layers/store/tiles.Overview).
OVERVIEW_COLUMNS = {"dltb": "DLBM", "dltb_prev": "DLBM"}
NEVER_CACHED = {"flagged_patches"}  # the workflow writes status / judgement / version in place
CACHE_BYTES = 256 * 1024 * 1024
PREWARM_MIN = 50_000  # layers with an overview and at least this many features get it built at start
SCHEMA_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "date": "string",
                "datetime": "string"}


class TileCache:
    """A byte-bounded LRU of tiles: key → (bytes, etag)."""

    def __init__(self, limit: int = CACHE_BYTES):
        self.limit, self.size = limit, 0
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return hit

    def put(self, key, value) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self.size += len(value[0]) + 200
            while self.size > self.limit and self._items:
                _, old = self._items.popitem(last=False)
                self.size -= len(old[0]) + 200


def etag_of(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'


class TileService:
    """Tiles of the layers the OGC engine knows (``engine.layers``: columns, counts, extents)."""

    def __init__(self, engine, cache_bytes: int = CACHE_BYTES, cache_dir=None):
        self.engine = engine
        self.url = engine.url
        self.reader = open_tile_reader(engine.url)
        self.cache = TileCache(cache_bytes)
        # tiles also go to disk, shared by every uvicorn worker and kept across restarts (per store version)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._overviews: dict = {}
        self._overview_lock = threading.Lock()
        # the generalised DLTB takes seconds to build on a county (30 s for 300 000 patches on 2 busy cores):
        # a large layer's is built when the app starts rather than on the first map view
        if any(name in engine.layers and engine.layers[name].total >= PREWARM_MIN for name in OVERVIEW_COLUMNS):
            threading.Thread(target=self.prewarm, name="yzt-tiles-prewarm", daemon=True).start()

    def prewarm(self) -> None:
        try:
            version = self.version()
            for name in OVERVIEW_COLUMNS:
                if name in self.engine.layers and self.engine.layers[name].total >= PREWARM_MIN:
                    ov = self.overview(name, version)
                    for z in range(max(0, self.detail_from(name) - 4), self.detail_from(name)):
                        ov.at_zoom(z)
        except Exception as exc:
            LOGGER.info("tiles: overview not prebuilt (%s)", exc)

    # --- store version -----------------------------------------------------------------------------------
    def version(self) -> tuple:
        """Changes whenever a layer may have changed (cache keys carry it)."""
        self.engine.refresh()
        if getattr(self.engine, "dialect", "") == "sqlite":
            st = os.stat(self.url)
            # layer writes replace the file (copy-on-write: a new inode); the only in-place writes are the
            # workflow tables and the status mirror of flagged_patches, which is never cached
            return ("gpkg", st.st_ino, st.st_dev, self.engine.generation)
        return ("pg", self.engine.generation)

    def disk_version(self) -> str:
        """The store version as a folder name that every process computes alike."""
        if getattr(self.engine, "dialect", "") == "sqlite":
            st = os.stat(self.url)
            raw = f"gpkg-{st.st_ino}-{st.st_dev}"
        else:
            raw = f"pg-{getattr(self.engine, '_signature', None)!r}"
        meta = getattr(self.engine, "meta", {}) or {}  # an inode can be reused: the load and analysis ids too
        raw += f"-{meta.get('last_load_id')}-{meta.get('analysis_run_id')}"
        store = hashlib.blake2b(str(self.url).encode(), digest_size=6).hexdigest()
        return f"{store}/{hashlib.blake2b(raw.encode(), digest_size=10).hexdigest()}"

    def _disk_path(self, name, z, x, y, columns) -> Path | None:
        if self.cache_dir is None:
            return None
        props = hashlib.blake2b(",".join(columns).encode(), digest_size=6).hexdigest()
        return self.cache_dir / self.disk_version() / name / str(z) / str(x) / f"{y}-{props}.mvt"

    def _disk_put(self, path: Path, data: bytes) -> None:
        try:
            version_dir = path.parents[3]  # …/store/version/layer/z/x/y.mvt
            if not version_dir.is_dir():  # a new store version: drop the tiles of the previous ones
                for old in version_dir.parent.glob("*"):
                    shutil.rmtree(old, ignore_errors=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:  # a full or read-only disk only costs speed
            LOGGER.warning("tiles: cannot write the disk cache (%s)", exc)

    def layer(self, name: str) -> TileLayer:
        from layers.store.province_pages import ProvincePages

        if isinstance(self.engine, ProvincePages):  # each county's tiles come from its own schema
            raise NotFoundError(f"vector tiles of a province are served per county: serve a county's store "
                                f"(…?schema={self.engine._region.schema}_<code>) for {name!r} tiles")
        info = self.engine.layers.get(name)
        if info is None:
            raise NotFoundError(f"collection {name!r} not found; collections: {', '.join(sorted(self.engine.layers))}")
        return TileLayer(name=name, columns=dict(info.columns), epsg=int(self.engine.storage_epsg))

    def bounds_3857(self, name: str):
        info = self.engine.layers[name]
        if not info.bounds:
            return None
        x0, y0, x1, y1 = info.bounds
        tr = transformer(self.engine.storage_epsg, WEB_MERCATOR)
        xs, ys = tr.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
        return min(xs), min(ys), max(xs), max(ys)

    def detail_from(self, name: str) -> int:
        """The zoom from which the layer is cut from its features (0 unless it has an overview)."""
        if name not in OVERVIEW_COLUMNS or OVERVIEW_COLUMNS[name] not in self.engine.layers[name].columns:
            return 0
        return detail_zoom(self.engine.layers[name].total, self.bounds_3857(name))

    def overview(self, name: str, version) -> Overview:
        key = (version, name)
        with self._overview_lock:
            ov = self._overviews.get(key)
            if ov is None:
                layer = self.layer(name)
                column = OVERVIEW_COLUMNS[name]
                values, geoms = self.reader.read_all(layer, column)
                ov = Overview.build(values, geoms, layer.epsg, column, names=SANDIAO_CODES)
                self._overviews = {k: v for k, v in self._overviews.items() if k[0] == version}
                self._overviews[key] = ov
            return ov

    # --- one tile --------------------------------------------------------------------------------------------
    def tile(self, name: str, z: int, x: int, y: int, properties: list[str] | None = None) -> tuple[bytes, str]:
        check_tile(z, x, y)
        layer = self.layer(name)
        if properties is None:
            columns = list(layer.columns)
        else:
            unknown = [p for p in properties if p not in layer.columns]
            if unknown:
                from services.errors import RequestError

                raise RequestError(f"properties: unknown {', '.join(unknown)}; available: {', '.join(layer.columns)}")
            columns = properties
        version = self.version()
        key = (version, name, z, x, y, tuple(columns))
        cacheable = name not in NEVER_CACHED
        disk = self._disk_path(name, z, x, y, columns) if cacheable else None
        if cacheable:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            if disk is not None and disk.is_file():
                data = disk.read_bytes()
                value = (data, etag_of(data))
                self.cache.put(key, value)
                return value
        if z < self.detail_from(name):
            data = self.overview(name, version).mvt(name, z, x, y)
        else:
            data = self.reader.mvt(layer, z, x, y, columns)
        value = (data, etag_of(data))
        if cacheable:
            self.cache.put(key, value)
            if disk is not None:
                self._disk_put(disk, data)
        return value

    # --- documents ---------------------------------------------------------------------------------------------
    def limits(self, name: str, zooms: tuple[int, ...] = tuple(range(23))) -> list[dict]:
        b = self.bounds_3857(name)
        if b is None:
            return []
        import math

        from layers.store.tiles import HALF

        out = []
        for z in zooms:
            n = 1 << z
            size = 2 * HALF / n

            def col(v, n=n, size=size):
                return min(n - 1, max(0, int(math.floor((v + HALF) / size))))

            def row(v, n=n, size=size):
                return min(n - 1, max(0, int(math.floor((HALF - v) / size))))

            out.append({"tileMatrix": str(z), "minTileRow": row(b[3]), "maxTileRow": row(b[1]),
                        "minTileCol": col(b[0]), "maxTileCol": col(b[2])})
        return out

    def tileset(self, name: str, base: str) -> dict:
        info = self.engine.layers[name]
        coll = f"{base}/collections/{name}"
        from services.ogc.crs import extent_crs84

        bbox = extent_crs84(info.bounds, self.engine.storage_epsg) if info.bounds else None
        detail = self.detail_from(name)
        props = {c: {"type": SCHEMA_TYPES.get(k, "string"), **({"format": "date"} if k == "date" else {}),
                     **({"format": "date-time"} if k == "datetime" else {})} for c, k in info.columns.items()}
        doc = {
            "title": f"{name} (vector tiles, {TMS_ID})",
            "dataType": "vector",
            "crs": f"http://www.opengis.net/def/crs/EPSG/0/{WEB_MERCATOR}",
            "tileMatrixSetURI": TMS_URI,
            "tileMatrixSetLimits": self.limits(name),
            "layers": [{"id": name, "dataType": "vector", "geometryDimension": _dimension(info.geometry_type),
                        "minTileMatrix": "0", "maxTileMatrix": str(MAX_ZOOM),
                        "propertiesSchema": {"type": "object", "properties": props}}],
            "links": [
                {"rel": "self", "type": "application/json", "title": "this tileset",
                 "href": f"{coll}/tiles/{TMS_ID}?f=json"},
                {"rel": REL_TILING_SCHEME, "type": "application/json", "title": TMS_ID,
                 "href": f"{base}/tileMatrixSets/{TMS_ID}"},
                {"rel": "item", "type": MVT, "title": "Mapbox vector tile", "templated": True,
                 "href": f"{coll}/tiles/{TMS_ID}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}"},
                {"rel": "collection", "type": "application/json", "href": coll},
            ],
            "yzt:extent": EXTENT,
            "yzt:generalisedBelow": detail,
        }
        if detail:
            doc["description"] = (f"Below tile matrix {detail} the features are dissolved by "
                                  f"{OVERVIEW_COLUMNS[name]} (generalised; property generalised=true); from {detail} "
                                  "on each feature is a tile feature with its own id and attributes.")
        if bbox:
            doc["boundingBox"] = {"lowerLeft": bbox[:2], "upperRight": bbox[2:],
                                  "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}
        return doc

    def tilesets(self, name: str, base: str) -> dict:
        coll = f"{base}/collections/{name}"
        return {"tilesets": [{
            "title": f"{name} (vector tiles, {TMS_ID})", "dataType": "vector",
            "crs": f"http://www.opengis.net/def/crs/EPSG/0/{WEB_MERCATOR}", "tileMatrixSetURI": TMS_URI,
            "links": [{"rel": "self", "type": "application/json", "href": f"{coll}/tiles/{TMS_ID}"},
                      {"rel": REL_TILING_SCHEME, "type": "application/json",
                       "href": f"{base}/tileMatrixSets/{TMS_ID}"},
                      {"rel": "item", "type": MVT, "templated": True,
                       "href": f"{coll}/tiles/{TMS_ID}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}"}]}],
            "links": [{"rel": "self", "type": "application/json", "href": f"{coll}/tiles"}]}


def _dimension(geometry_type: str) -> int:
    g = (geometry_type or "").lower()
    return 0 if "point" in g else 1 if "line" in g else 2


def tile_matrix_set() -> dict:
    import morecantile

    doc = morecantile.tms.get(TMS_ID).model_dump(exclude_none=True, mode="json")
    doc["id"] = TMS_ID
    return doc


def collection_links(base: str, name: str) -> list[dict]:
    """The links a collection document gets: its vector tilesets."""
    return [{"rel": REL_TILESETS_VECTOR, "type": "application/json", "title": "vector tilesets",
             "href": f"{base}/collections/{name}/tiles"}]


def add_tile_links(content: str, base: str) -> str:
    """A collection (or collections) document with the tileset links added."""
    doc = json.loads(content)
    colls = doc.get("collections") if isinstance(doc.get("collections"), list) else [doc]
    for c in colls:
        if isinstance(c, dict) and "id" in c:
            c.setdefault("links", []).extend(collection_links(base, c["id"]))
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


# --- routes (inside the OGC API app) ----------------------------------------------------------------------------

def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"code": code, "type": code, "description": description}, status_code=status)


def tile_routes(service: TileService, base_of) -> list[Route]:
    """Starlette routes of OGC API Tiles; ``base_of()`` gives the OGC API's public base URL."""

    def known(request: Request) -> str:
        cid = request.path_params["collection_id"]
        info = service.engine.layers.get(cid)
        if info is None:
            raise NotFoundError(f"collection {cid!r} not found; collections: "
                                f"{', '.join(sorted(service.engine.layers))}")
        return cid

    def tms_known(request: Request) -> None:
        tms = request.path_params.get("tms")
        if tms is not None and tms != TMS_ID:
            raise NotFoundError(f"tile matrix set {tms!r} is not offered; use {TMS_ID}")

    def guarded(handler):
        async def route(request: Request):
            try:
                service.engine.refresh()
                tms_known(request)
                return await handler(request)
            except YztError as exc:
                from services.errors import status_of

                status, code = status_of(exc)
                return _error(status, code, str(exc))
            except Exception:  # a bug: logged, 500 with a JSON body
                LOGGER.exception("tiles request %s failed", request.url)
                return _error(500, "ServerError", "internal error; the server log has the details")
        return route

    @guarded
    async def matrix_sets(request):
        base = base_of()
        return JSONResponse({"tileMatrixSets": [{
            "id": TMS_ID, "title": "Google Maps Compatible for the World", "uri": TMS_URI,
            "links": [{"rel": REL_TILING_SCHEME, "type": "application/json",
                       "href": f"{base}/tileMatrixSets/{TMS_ID}"}]}]})

    @guarded
    async def matrix_set(request):
        return JSONResponse(tile_matrix_set())

    @guarded
    async def tilesets(request):
        return JSONResponse(service.tilesets(known(request), base_of()))

    @guarded
    async def tileset(request):
        return JSONResponse(service.tileset(known(request), base_of()))

    @guarded
    async def tile(request):
        cid = known(request)
        try:
            z, y, x = (int(request.path_params[k]) for k in ("z", "y", "x"))
        except ValueError:
            from services.errors import RequestError

            raise RequestError("tileMatrix, tileRow and tileCol must be integers") from None
        unknown = sorted(set(request.query_params) - {"properties", "f"})
        if unknown:
            from services.errors import RequestError

            raise RequestError(f"unknown query parameter(s) {', '.join(unknown)}; tiles take properties and f")
        f = request.query_params.get("f")
        if f not in (None, "mvt"):
            from services.errors import RequestError

            raise RequestError(f"f={f!r}: tiles are served as mvt only")
        raw = request.query_params.get("properties")
        props = [p for p in raw.split(",") if p] if raw is not None else None
        data, etag = await run_in_threadpool(service.tile, cid, z, x, y, props)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=MVT, headers=headers)

    return [
        Route("/tileMatrixSets", matrix_sets),
        Route("/tileMatrixSets/{tms}", matrix_set),
        Route("/collections/{collection_id}/tiles", tilesets),
        Route("/collections/{collection_id}/tiles/{tms}", tileset),
        Route("/collections/{collection_id}/tiles/{tms}/{z}/{y}/{x}", tile),
    ]

"""Paged reads across the counties of a province store: one collection per layer over every county.

Each county keeps its layers in its own 3° zone (layers/store/province.py); this reader presents them as one
store whose storage CRS is CGCS2000 geographic, held as (longitude, latitude) like every store's (east,
north): a selection or a spatial filter in lon/lat is carried into each county's zone (the box densified
along its edges, so its curved image is followed), each county is asked through its own PostGIS reader (the
GiST index of its zone), and the rows come back with their geometry in lon/lat. A request that crosses county
and zone borders gets the rows of every county it touches, in one stable order: county code, then row id.

Row ids: ``<county code> × 10¹⁰ + <row id in the county>`` (e.g. 1305720000000042), unique in the province,
within JavaScript's exact integers.

Columns: those every county's layer has, with the same kind (a column one county lacks cannot be filtered
across the province). Counts are exact (each county counts its matches); with ``sortby`` the page is merged
from each county's first ``offset + limit`` rows.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq

import numpy as np
import pyproj
import shapely

from ..crs import CGCS2000_GEOGRAPHIC
from ..errors import NotFoundError, StoreError
from .pages import PagedReader
from .postgis_pages import PostGISPages
from .province import RegionStore
from .query import Expr, LayerInfo, Page, PageRequest, Spatial, SpatialSelection, as_box, is_empty_box

ID_FACTOR = 10 ** 10
DENSIFY_DEG = 0.001  # ≈ 100 m: a lon/lat edge is followed to well under a millimetre in the zone


@functools.lru_cache(maxsize=64)
def _transformer(src: int, dst: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def _carry(geom, src: int, dst: int, densify: float | None = None):
    if densify:
        geom = shapely.segmentize(geom, densify)
    tr = _transformer(src, dst)
    return shapely.transform(geom, lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1])))


def _carry_filter(expr: Expr | None, dst: int) -> Expr | None:
    """The filter with every spatial literal carried from lon/lat into ``dst``."""
    if expr is None:
        return None
    if isinstance(expr, Spatial):
        return Spatial(expr.op, _carry(expr.geometry, CGCS2000_GEOGRAPHIC, dst, DENSIFY_DEG))
    if dataclasses.is_dataclass(expr):
        changes = {f.name: _carry_filter(getattr(expr, f.name), dst) for f in dataclasses.fields(expr)
                   if isinstance(getattr(expr, f.name), Expr)}
        return dataclasses.replace(expr, **changes) if changes else expr
    return expr


def _lonlat_bounds(bounds, epsg: int):
    minx, miny, maxx, maxy = bounds
    t = np.linspace(0.0, 1.0, 33)
    xs = np.concatenate([minx + (maxx - minx) * t, np.full_like(t, maxx), minx + (maxx - minx) * t,
                         np.full_like(t, minx)])
    ys = np.concatenate([np.full_like(t, miny), miny + (maxy - miny) * t, np.full_like(t, maxy),
                         miny + (maxy - miny) * t])
    lon, lat = _transformer(epsg, CGCS2000_GEOGRAPHIC).transform(xs, ys)
    return float(np.min(lon)), float(np.min(lat)), float(np.max(lon)), float(np.max(lat))


def _overlaps(a, b) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


class ProvincePages(PagedReader):
    """The layers of every county of a province store, read a page at a time (see the module docstring)."""

    dialect = "postgis"

    def __init__(self, url: str):
        self._region = RegionStore(url)
        self._region.require()
        self._readers: dict[str, PostGISPages] = {}
        self._generations: dict[str, int] = {}
        self._lonlat: dict[tuple[str, str], tuple] = {}
        super().__init__(url)

    def _open_counties(self) -> None:
        for code in self._region.counties():
            if code in self._readers:
                continue
            try:
                self._readers[code] = PostGISPages(self._region.county_url(code))
            except StoreError:  # not ingested yet: served once it is
                continue

    def _load_layers(self) -> None:
        self._open_counties()
        meta = self._region.meta()
        self.storage_epsg = CGCS2000_GEOGRAPHIC
        self.meta = {**meta, "epsg": str(CGCS2000_GEOGRAPHIC), "counties": ",".join(sorted(self._readers))}
        layers: dict[str, LayerInfo] = {}
        self._lonlat = {}
        for code, reader in sorted(self._readers.items()):
            self._generations[code] = reader.generation
            for name, info in reader.layers.items():
                if info.bounds is not None:
                    self._lonlat[(code, name)] = _lonlat_bounds(info.bounds, reader.storage_epsg)
                box = self._lonlat.get((code, name))
                held = layers.get(name)
                if held is None:
                    layers[name] = LayerInfo(name, dict(info.columns), info.geometry_type, info.total, box)
                    continue
                columns = {c: k for c, k in held.columns.items() if info.columns.get(c) == k}
                gtype = held.geometry_type if held.geometry_type == info.geometry_type else "Geometry"
                bounds = held.bounds if box is None else box if held.bounds is None else (
                    min(held.bounds[0], box[0]), min(held.bounds[1], box[1]), max(held.bounds[2], box[2]),
                    max(held.bounds[3], box[3]))
                layers[name] = LayerInfo(name, columns, gtype, held.total + info.total, bounds)
        self.layers = layers

    def refresh(self) -> None:
        for reader in self._readers.values():
            reader.refresh()
        known = set(self._readers)
        self._open_counties()
        if set(self._readers) != known or any(r.generation != self._generations.get(c)
                                              for c, r in self._readers.items()):
            self.load_layers()

    # --- a request, county by county ---------------------------------------------------------------------------
    def _counties_for(self, layer: str, request: PageRequest) -> list[tuple[str, PostGISPages]]:
        env = request.envelope()
        out = []
        for code, reader in sorted(self._readers.items()):
            if layer not in reader.layers:
                continue
            box = self._lonlat.get((code, layer))
            if env is not None and (box is None or not _overlaps(env, box)):
                continue
            out.append((code, reader))
        return out

    @staticmethod
    def _local(request: PageRequest, reader: PostGISPages, **changes) -> PageRequest:
        epsg = reader.storage_epsg
        selection = None
        if request.selection is not None:
            poly = _carry(request.selection.polygon, CGCS2000_GEOGRAPHIC, epsg, DENSIFY_DEG)
            shapely.prepare(poly)
            selection = SpatialSelection(poly, as_box(poly.bounds), None, False)
        return dataclasses.replace(request, selection=selection, where=_carry_filter(request.where, epsg),
                                   **changes)

    def _lonlat_wkb(self, geoms: list[bytes | None], epsg: int) -> list[bytes | None]:
        present = [i for i, g in enumerate(geoms) if g is not None]
        if not present:
            return geoms
        carried = _carry(shapely.from_wkb([geoms[i] for i in present]), epsg, CGCS2000_GEOGRAPHIC)
        out = list(geoms)
        for i, wkb in zip(present, shapely.to_wkb(carried)):
            out[i] = wkb
        return out

    def page(self, layer: str, request: PageRequest) -> Page:
        info = self.info(layer)
        unknown = [c for c in request.columns if c not in info.columns]
        if unknown:
            raise StoreError(f"{layer!r} has no column(s) {unknown} in every county; columns: "
                             f"{', '.join(info.columns)}")
        if is_empty_box(request.envelope()):
            return Page([], [], [], request.columns, 0 if request.count else None)
        counties = self._counties_for(layer, request)
        if request.sortby:
            return self._sorted_page(layer, request, counties)
        ids: list[int] = []
        rows: list[tuple] = []
        geoms: list[bytes | None] = []
        skip, want, matched = request.offset, request.limit, 0
        for code, reader in counties:
            local = self._local(request, reader, limit=0, offset=0, count=True)
            n = reader.page(layer, local).matched or 0
            matched += n
            if want > 0 and skip < n:
                part = reader.page(layer, self._local(request, reader, limit=want, offset=skip, count=False))
                ids += [int(code) * ID_FACTOR + i for i in part.ids]
                rows += part.rows
                geoms += self._lonlat_wkb(part.geoms, reader.storage_epsg) if request.with_geometry else part.geoms
                want -= len(part.ids)
                skip = 0
            else:
                skip = max(0, skip - n)
        return Page(ids, rows, geoms, request.columns, matched if request.count else None)

    def _sorted_page(self, layer: str, request: PageRequest, counties) -> Page:
        """Each county's first offset + limit rows in the requested order, merged (then county, row id)."""
        keyed = []
        matched = 0
        cols = list(dict.fromkeys([*request.columns, *(c for c, _ in request.sortby)]))
        for code, reader in counties:
            part = reader.page(layer, self._local(request, reader, columns=cols, limit=request.offset + request.limit,
                                                  offset=0, count=True))
            matched += part.matched or 0
            geoms = self._lonlat_wkb(part.geoms, reader.storage_epsg) if request.with_geometry else part.geoms
            for i, row, g in zip(part.ids, part.rows, geoms):
                keyed.append((_sort_key(dict(zip(cols, row)), request.sortby), int(code) * ID_FACTOR + i,
                              tuple(row[cols.index(c)] for c in request.columns), g))
        chosen = heapq.nsmallest(request.offset + request.limit, keyed, key=lambda r: (r[0], r[1]))
        chosen = chosen[request.offset:]
        return Page([r[1] for r in chosen], [r[2] for r in chosen], [r[3] for r in chosen], request.columns,
                    matched if request.count else None)

    def get(self, layer, row_id, columns, with_geometry=True):
        self.info(layer)
        code, fid = divmod(int(row_id), ID_FACTOR)
        reader = self._readers.get(f"{code:06d}")
        if reader is None or layer not in reader.layers:
            return None
        row = reader.get(layer, fid, columns, with_geometry)
        if row is None:
            return None
        values, wkb = row
        if wkb is not None:
            wkb = self._lonlat_wkb([wkb], reader.storage_epsg)[0]
        return values, wkb

    def county_of(self, row_id: int) -> str:
        code = f"{int(row_id) // ID_FACTOR:06d}"
        if code not in self._readers:
            raise NotFoundError(f"row {row_id} names county {code}, which this province does not serve")
        return code

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._region.close()


class _Desc:
    """Reverses the order of a value (for descending sort keys of any type)."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, other):
        return other.v < self.v

    def __eq__(self, other):
        return self.v == other.v


def _sort_key(row: dict, sortby) -> tuple:
    # NULLs last for ascending, as PostgreSQL orders them; first for descending
    key: list[tuple] = []
    for column, order in sortby:
        v = row[column]
        if order == "-":
            key.append((0 if v is None else 1, _Desc(v) if v is not None else _Desc(0)))
        else:
            key.append((1 if v is None else 0, v if v is not None else 0))
    return tuple(key)

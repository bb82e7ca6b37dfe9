"""Search for the map: ``GET /api/search?q=…`` finds 监测编号 (JCBH, merged source ids too), 图斑编号 / 标识码
(TBBH, BSM of the current DLTB), 宗地代码 (ZDDM) and 村 / 乡镇 names (XZQMC), and answers each hit with its
CRS84 bounding box to zoom to.

Exact matches come first, then prefix matches, then (for names) matches anywhere; at most ``limit`` hits.
"""

from __future__ import annotations

import numpy as np
import shapely
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel

from layers.store import open_store

from ..errors import RequestError, refuse_unknown_params
from .deps import Planner

# (layer, column, kind, label columns): searched in this order
TARGETS = [
    ("flagged_patches", "JCBH", "监测图斑", ("JCBH", "verdict_zh", "status")),
    ("dltb", "TBBH", "地类图斑", ("TBBH", "BSM", "DLMC")),
    ("dltb", "BSM", "地类图斑", ("BSM", "TBBH", "DLMC")),
    ("parcels", "ZDDM", "宗地", ("ZDDM", "TDYT")),
    ("xzq", "XZQMC", "行政区", ("XZQMC", "XZQDM")),
]


class Hit(BaseModel):
    kind: str
    layer: str
    field: str
    id: str
    label: str
    bbox: list[float]  # CRS84


class SearchResult(BaseModel):
    q: str
    hits: list[Hit]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _like(text: str, before: str, after: str) -> str:
    """A LIKE pattern literal: ``before`` + text (its % _ \\ escaped with \\) + ``after``."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return _literal(before + escaped + after)


def search(store, q: str, limit: int) -> list[dict]:
    from layers.store.tiles import transformer

    present = set(store.layer_names())
    epsg = store.epsg
    if not epsg:
        return []  # an empty store: nothing to find
    to_lonlat = transformer(epsg, 4490)
    hits: list[dict] = []
    seen = set()
    for layer, column, kind, label_cols in TARGETS:
        if layer not in present or len(hits) >= limit:
            continue
        schema = store.schema(layer)
        if column not in schema:
            continue
        col = f'"{column}"'
        if column == "XZQMC":
            where = f"{col} LIKE {_like(q, '%', '%')} ESCAPE '\\'"
        else:
            where = f"{col} = {_literal(q)} OR {col} LIKE {_like(q, '', '%')} ESCAPE '\\'"
        if layer == "flagged_patches" and "source_ids" in schema:  # a merged source's id finds its record
            where += f" OR \"source_ids\" LIKE {_like(q, '%', '%')} ESCAPE '\\'"
        cols = [c for c in dict.fromkeys((column, *label_cols)) if c in schema]
        frame = store.read_layer(layer, columns=cols, where=where, limit=limit * 4)
        if len(frame) == 0:
            continue
        values = frame[column].astype(str).to_numpy()
        rank = np.where(values == q, 0, np.where(np.char.startswith(values.astype(str), q), 1, 2))
        order = np.argsort(rank, kind="stable")
        geoms = np.asarray(frame.geometry.values, dtype=object)
        for i in order:
            key = (layer, values[i])
            if key in seen:
                continue
            seen.add(key)
            b = shapely.bounds(geoms[i])
            xs, ys = to_lonlat.transform([b[0], b[2], b[0], b[2]], [b[1], b[1], b[3], b[3]])
            label = " · ".join(str(frame[c].iloc[i]) for c in label_cols if c in frame.columns
                               and frame[c].iloc[i] is not None and str(frame[c].iloc[i]) != "nan")
            hits.append({"kind": kind, "layer": layer, "field": column, "id": values[i], "label": label,
                         "bbox": [round(min(xs), 7), round(min(ys), 7), round(max(xs), 7), round(max(ys), 7)]})
            if len(hits) >= limit:
                break
    return hits


def install(app: FastAPI, settings) -> None:
    store = open_store(settings.store)
    router = APIRouter(prefix="/api", tags=["map"])

    @router.get("/search", response_model=SearchResult,
                summary="find a 监测编号, 图斑编号 / 标识码, 宗地代码 or 村名 and its extent")
    def find(request: Request, who: Planner,
             q: str = Query(..., min_length=1, max_length=64), limit: int = Query(10, ge=1, le=50)):
        refuse_unknown_params(request.query_params, {"q", "limit"})
        text = q.strip()
        if not text:
            raise RequestError("q is blank: give a 监测编号, 图斑编号, 宗地代码 or 村名")
        return {"q": text, "hits": search(store, text, limit)}

    app.include_router(router)

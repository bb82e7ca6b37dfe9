"""Built-in overlay measures (永久基本农田, 新增建设用地 …): each piece goes to the village of its DLTB patch, so
they reconcile with the land statistics to the square metre."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from layers.area import ellipsoidal_area
from layers.codes import (
    CONSTRUCTION,
)
from layers.errors import CRSError

from ..changes import unchanged_mask
from ..faces import disjoint_faces
from .context import Contribution, _Context, overlay_areas
from .prepare import CountNote


def _reported_rows(ctx: _Context) -> np.ndarray:
    """Positions of the DLTB patches whose village this run reports: every patch for the whole county; in a
    partition its own, so that an overlay skips the surrounding patches whose pieces it would drop anyway (a
    piece is computed pair by pair: leaving a patch out changes no other piece)."""
    village = ctx.village_of("dltb").to_numpy()
    return np.flatnonzero(ctx.owned_villages(village)) if ctx.owns is not None else np.arange(len(village))


def _yjjbnt_pieces(ctx: _Context) -> pd.DataFrame:
    if "yjjbnt" not in ctx._cache:
        yj, tb = ctx.layer("yjjbnt"), ctx.layer("dltb")
        if not yj.crs.equals(tb.crs):
            raise CRSError(f"yjjbnt ({yj.crs}) and dltb ({tb.crs}) are in different CRSs; re-ingest into one store")
        # YJJBNT polygons that overlap one another count their shared part once (analysis.faces)
        faces, face_ids = disjoint_faces(yj, ctx.ids("yjjbnt").to_numpy())
        rows = _reported_rows(ctx)  # a piece is reported with its DLTB patch's village
        pieces = overlay_areas(faces, tb.iloc[rows])
        pieces["right"] = rows[pieces["right"].to_numpy()]
        r = pieces["right"].to_numpy()
        pieces["village"] = ctx.village_of("dltb").to_numpy()[r]
        pieces["cultivated"] = tb["DLBM"].isin(ctx.registry.code_sets.get("cultivated", set())).to_numpy()[r]
        pieces["yj_id"] = face_ids[pieces["left"].to_numpy()] if len(pieces) else []
        pieces["tb_id"] = ctx.ids("dltb").to_numpy()[r]
        mine = ctx.owned_villages(pieces["village"].to_numpy())
        ctx.notes.append(CountNote("outside_coverage", "yjjbnt",
                                   total=math.fsum(ellipsoidal_area(faces.geometry.values, yj.crs)),
                                   covered=tuple(pieces["area_m2"].to_numpy()[mine].tolist())))
        ctx._cache["yjjbnt"] = pieces
    return ctx._cache["yjjbnt"]


def _yj_ids(p: pd.DataFrame) -> pd.DataFrame:
    """The YJJBNT ids behind the pieces (a piece under two overlapping polygons names both)."""
    return pd.DataFrame({"village": p["village"], "layer": "yjjbnt", "rid": p["yj_id"]}).explode("rid")


def _basic_farmland_area(ctx: _Context) -> Contribution:
    p = _yjjbnt_pieces(ctx)
    return Contribution(pd.DataFrame({"village": p["village"], "value": p["area_m2"]}), _yj_ids(p))


def _basic_farmland_cultivated_area(ctx: _Context) -> Contribution:
    p = _yjjbnt_pieces(ctx)
    p = p[p["cultivated"]]
    ids = pd.concat([_yj_ids(p), pd.DataFrame({"village": p["village"], "layer": "dltb", "rid": p["tb_id"]})])
    return Contribution(pd.DataFrame({"village": p["village"], "value": p["area_m2"]}), ids)


def _change_pieces(ctx: _Context) -> pd.DataFrame:
    if "change" not in ctx._cache:
        prev, cur = ctx.layer("dltb_prev"), ctx.layer("dltb")
        if not prev.crs.equals(cur.crs):
            raise CRSError(f"dltb_prev ({prev.crs}) and dltb ({cur.crs}) are in different CRSs")
        # a patch identical in both years (same DLBM, same geometry) cannot hold a change: leave the twins
        # out of the overlay, which then only sees the patches that moved (as analysis.changes does)
        same_prev, same_cur = unchanged_mask(prev, cur)
        keep_prev = np.flatnonzero(~same_prev)
        keep_cur = np.intersect1d(np.flatnonzero(~same_cur), _reported_rows(ctx), assume_unique=True)
        pieces = overlay_areas(prev.iloc[keep_prev], cur.iloc[keep_cur])
        pieces["left"] = keep_prev[pieces["left"].to_numpy()]
        pieces["right"] = keep_cur[pieces["right"].to_numpy()]
        pieces = pieces[pieces["area_m2"] >= float(ctx.options["change_min_piece_m2"])].copy()
        left, right = pieces["left"].to_numpy(), pieces["right"].to_numpy()
        pieces["village"] = ctx.village_of("dltb").to_numpy()[right]
        pieces["prev_construction"] = (prev["category"] == CONSTRUCTION).to_numpy()[left]
        pieces["cur_construction"] = (cur["category"] == CONSTRUCTION).to_numpy()[right]
        pieces["prev_cultivated"] = prev["DLBM"].isin(ctx.registry.code_sets.get("cultivated", set())
                                                      ).to_numpy()[left]
        pieces["prev_kcxs"] = prev["KCXS"].to_numpy()[left]
        pieces["cur_kcxs"] = cur["KCXS"].to_numpy()[right]
        pieces["prev_id"] = ctx.ids("dltb_prev").to_numpy()[left]
        pieces["cur_id"] = ctx.ids("dltb").to_numpy()[right]
        ctx._cache["change"] = pieces
    return ctx._cache["change"]


def _change_contribution(p: pd.DataFrame, value: pd.Series) -> Contribution:
    ids = pd.concat([pd.DataFrame({"village": p["village"], "layer": "dltb", "rid": p["cur_id"]}),
                     pd.DataFrame({"village": p["village"], "layer": "dltb_prev", "rid": p["prev_id"]})])
    return Contribution(pd.DataFrame({"village": p["village"], "value": value}), ids)


def _new_construction_area(ctx: _Context) -> Contribution:
    p = _change_pieces(ctx)
    p = p[~p["prev_construction"] & p["cur_construction"]]
    return _change_contribution(p, p["area_m2"] * (1.0 - p["cur_kcxs"]))


def _new_construction_cultivated_area(ctx: _Context) -> Contribution:
    p = _change_pieces(ctx)
    p = p[p["prev_cultivated"] & p["cur_construction"]]
    return _change_contribution(p, p["area_m2"] * (1.0 - p["prev_kcxs"]))


# name → (source layers, function)
BUILTINS: dict[str, tuple[tuple[str, ...], Callable[[_Context], Contribution]]] = {
    "basic_farmland_area": (("yjjbnt", "dltb"), _basic_farmland_area),
    "basic_farmland_cultivated_area": (("yjjbnt", "dltb"), _basic_farmland_cultivated_area),
    "new_construction_area": (("dltb_prev", "dltb"), _new_construction_area),
    "new_construction_cultivated_area": (("dltb_prev", "dltb"), _new_construction_cultivated_area),
}

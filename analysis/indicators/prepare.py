"""The layers as the indicators read them: DLTB with recomputed TBMJ / KCMJ / TBDLMJ and its 三类 category (either
code set), flagged_patches with checked / illegal and the illegal parts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers import fields as F
from layers.codes import (
    CATEGORY_SANDIAO,
    CODE_SET_NAMES,
    SANDIAO,
    YDYH,
    crosswalk,
    detect_code_set,
    normalise_codes,
    to_sandiao,
)
from layers.errors import CodeSetError, FieldError


def _require(gdf: pd.DataFrame, layer: str, columns: list[str]):
    missing = [c for c in columns if c not in gdf.columns]
    if missing:
        raise FieldError(f"layer {layer!r} lacks column(s) {missing} needed by the indicators; "
                         "re-ingest it with those fields mapped (or re-run yzt analyse)")


UNKNOWN_CATEGORY = "未识别地类"


def prepare_survey(gdf: gpd.GeoDataFrame, layer: str, notes: list | None = None,
                   code_set: str | None = None, owned: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """DLTB with recomputed TBMJ / KCMJ / TBDLMJ, normalised DLBM, 三类 category and village code.

    * ``code_set``: the layer's land-use code set as recorded at ingest (None → detected from the codes, and an
      undecidable layer is refused). A 用地用海 layer is read through the crosswalk: DLBM holds the 三调 code the
      registry's code lists use, DLBM_SOURCE the layer's own code; 二调 is refused.

    * Codes outside the 三调 table get category 未识别地类 (counted in no category; the registry's
      unknown_code_area shows them, so the categories still add up to the total) and a note naming them.
    * Exact duplicate patches (same geometry, same DLBM and KCXS — a patch exported twice) are counted once
      (the first, lowest yzt_fid), with a note; duplicates that disagree on DLBM or KCXS raise FieldError,
      since either land use could be the true one.
    * ``owned`` (one flag per row; spatial partitions, services/jobs/indicators.py): the rows this partition
      answers for. ``gdf`` then also holds rows around them that other partitions own; the notes count owned
      rows only (a duplicate group belongs to the partition owning its kept row), so that the partitions'
      notes add up to the whole county's (:class:`CountNote`).
    """
    notes = notes if notes is not None else []
    _require(gdf, layer, ["DLBM", "ZLDWDM", F.AREA])
    out = gdf.copy()
    out["DLBM"] = normalise_codes(out["DLBM"])
    if len(out):
        if code_set is None:
            code_set = detect_code_set(out["DLBM"].dropna(), where=f"layer {layer!r}")
        if code_set == YDYH:
            out["DLBM_SOURCE"] = out["DLBM"]
            out["DLBM"] = to_sandiao(out["DLBM"].to_numpy(dtype=object), YDYH)
            notes.append(f"{layer}: 用地用海 codes read through {crosswalk().label()}")
        elif code_set != SANDIAO:
            raise CodeSetError(f"layer {layer!r} uses {CODE_SET_NAMES[code_set]} codes; the indicators need "
                               "三调工作分类 or 用地用海 codes — convert the layer before ingest")
    for col in ("TBMJ", "KCMJ", "TBDLMJ"):
        if col in out.columns:
            out[f"{col}_reported"] = pd.to_numeric(out[col], errors="coerce")
    kcxs = pd.to_numeric(out["KCXS"], errors="coerce").fillna(0.0) if "KCXS" in out.columns else 0.0
    out["KCXS"] = kcxs
    if ((out["KCXS"] < 0) | (out["KCXS"] >= 1)).any():
        bad = out.loc[(out["KCXS"] < 0) | (out["KCXS"] >= 1), "KCXS"].head(3).tolist()
        raise FieldError(f"layer {layer!r} has KCXS values outside [0, 1), e.g. {bad}; fix the source")
    area = pd.to_numeric(out[F.AREA], errors="coerce")
    if area.isna().any():
        raise FieldError(f"layer {layer!r} has {int(area.isna().sum())} rows without {F.AREA}; re-ingest it")
    # exact integer arithmetic in cents, 四舍五入 (half-up): KCMJ = round(TBMJ × KCXS, 2) must not depend on
    # binary noise (1234.50 × 0.05 = 61.725 → 61.73)
    tbmj_cents = np.floor(area.to_numpy(dtype=float) * 100.0 + 0.5).astype(np.int64)
    kcxs_micro = np.round(out["KCXS"].to_numpy(dtype=float) * 1_000_000).astype(np.int64)
    kcmj_cents = (tbmj_cents * kcxs_micro + 500_000) // 1_000_000
    out["TBMJ"] = tbmj_cents / 100.0
    out["KCMJ"] = kcmj_cents / 100.0
    out["TBDLMJ"] = (tbmj_cents - kcmj_cents) / 100.0
    out["category"] = out["DLBM"].map(CATEGORY_SANDIAO).fillna(UNKNOWN_CATEGORY)
    owned_rows = pd.Series(True if owned is None else np.asarray(owned, bool), index=out.index)
    unknown = (out["category"] == UNKNOWN_CATEGORY) & owned_rows
    if unknown.any():
        label = _labels(out)
        order = _order(out)
        notes.append(CountNote("unknown_codes", layer, int(unknown.sum()),
                               [(int(o), lb) for o, lb in zip(order[unknown], label[unknown])][:5],
                               frozenset(map(str, out.loc[unknown, "DLBM"]))))
    out = _drop_duplicate_patches(out, layer, notes, owned_rows)
    out["village"] = out["ZLDWDM"].astype("string").str.strip().str[:12]
    return out


def _labels(gdf: pd.DataFrame) -> pd.Series:
    """How a note names a patch: its BSM, else its row id in the store (yzt_fid), else its position."""
    if "BSM" in gdf.columns:
        return gdf["BSM"].astype(str)
    if F.FID in gdf.columns:
        return gdf[F.FID].astype(str)
    return pd.Series(np.arange(len(gdf)).astype(str), index=gdf.index)


def _order(gdf: pd.DataFrame) -> pd.Series:
    """A row's place in the stored layer (notes list examples in this order)."""
    if F.FID in gdf.columns:
        return pd.to_numeric(gdf[F.FID], errors="coerce").fillna(-1).astype(np.int64)
    return pd.Series(np.arange(len(gdf)), index=gdf.index)


@dataclass
class CountNote:
    """A note whose count and examples add up over the spatial partitions of a county (they are merged with
    :meth:`add`, then written once with :meth:`text`); the single-county path makes one from the whole layer.

    ``examples``: (place in the stored layer, example) — the note shows the first five in stored order."""

    kind: str  # unknown_codes | duplicates | outside_coverage
    layer: str
    count: int = 0
    examples: list = field(default_factory=list)
    codes: frozenset = frozenset()
    total: float = 0.0  # outside_coverage: the layer's area (the same in every partition)
    covered: tuple[float, ...] = ()  # … and the pieces of it DLTB covers (Σ over partitions, exactly rounded)

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.layer

    def add(self, other: CountNote) -> CountNote:
        return CountNote(self.kind, self.layer, self.count + other.count, sorted(self.examples + other.examples),
                         self.codes | other.codes, max(self.total, other.total), self.covered + other.covered)

    def text(self) -> str | None:
        first = [e for _, e in sorted(self.examples)[:5]]
        if self.kind == "unknown_codes":
            return (f"{self.layer}: {self.count} patch(es) with codes outside 三调 ({sorted(self.codes)}; BSM "
                    f"{first}) counted as {UNKNOWN_CATEGORY}, in none of the three categories")
        if self.kind == "duplicates":
            return f"{self.layer}: {self.count} exact duplicate patch(es) counted once: {first}"
        if self.kind == "outside_coverage":
            outside = self.total - math.fsum(self.covered)
            return (f"{self.layer}: {outside:.2f} m² of 永久基本农田 lie outside the DLTB coverage and are not "
                    "counted") if outside > 1.0 else None
        raise ValueError(f"unknown note kind {self.kind!r}")  # pragma: no cover - the kinds above


def merge_notes(parts: list[list]) -> list:
    """The notes of several partitions as one list: texts once each (in first-seen order), CountNotes of one
    kind and layer added up in the place of the first."""
    out: list = []
    where: dict = {}
    for notes in parts:
        for note in notes:
            key = note.key if isinstance(note, CountNote) else note
            if key not in where:
                where[key] = len(out)
                out.append(note)
            elif isinstance(note, CountNote):
                out[where[key]] = out[where[key]].add(note)
    return out


def note_texts(notes: list) -> list[str]:
    """The notes as texts, sorted (most begin with their layer): the same list however the rows were split."""
    return sorted({t for t in ((n.text() if isinstance(n, CountNote) else n) for n in notes) if t is not None})


def _drop_duplicate_patches(gdf: gpd.GeoDataFrame, layer: str, notes: list,
                            owned: pd.Series) -> gpd.GeoDataFrame:
    if len(gdf) == 0:
        return gdf
    keys = pd.Series(shapely.to_wkb(shapely.normalize(np.asarray(gdf.geometry.values))), index=gdf.index)
    dup = keys.duplicated(keep=False)
    if not dup.any():
        return gdf
    label = _labels(gdf)
    groups = gdf[dup].assign(_key=keys[dup]).groupby("_key", sort=False)
    for _, grp in groups:
        if grp["DLBM"].nunique() > 1 or grp["KCXS"].nunique() > 1:
            raise FieldError(f"layer {layer!r}: patches {label[grp.index].tolist()} have the same geometry but "
                             f"different DLBM / KCXS ({grp['DLBM'].tolist()}, {grp['KCXS'].tolist()}); remove the "
                             "wrong one before computing indicators")
    drop = keys.duplicated(keep="first")
    order = _order(gdf)
    # a group is the note of the partition that owns its kept (first) row
    groups_owned = [grp for _, grp in groups if owned[grp.index[0]]]
    if groups_owned:
        notes.append(CountNote("duplicates", layer, sum(len(grp) - 1 for grp in groups_owned),
                               [(int(order[grp.index[0]]), label[grp.index].tolist()) for grp in groups_owned]))
    return gdf[~drop]


def prepare_patches(gdf: gpd.GeoDataFrame, options: dict) -> gpd.GeoDataFrame:
    """flagged_patches with ``issued``, ``checked`` (past 待核查), ``illegal`` (per options.illegal_basis) and the
    parts the enforcement indicators add up, each record on one basis (docs/indicators.md, 执法监管):

    * ``issued``: the record holds at least one issued monitoring patch (``n_issued`` > 0, written by yzt analyse);
      a change only the annual survey found was never 下发 and is not counted in 下发图斑数 / 调查率;

    * ``illegal_area_m2`` / ``illegal_cultivated_m2``: the illegal part of a record — its unapproved part
      (area_unapproved / area_cultivated_unapproved) when its verdict is one of options.unapproved_part_verdicts
      (未批先建, 少批多占: the approved part of a 少批多占 site is legal), else the whole record (a record judged
      违法 on site against a legal / other pre-judgement); 0 where the record is not illegal;
    * ``change_basis``: the record is new construction land — verdict in options.change_verdicts, or counted
      illegal — so 违法占用耕地 (a part of these records' 耕地) can never exceed 新增建设用地占用耕地.
    """
    status_field, verdict_field = options["status_field"], options["verdict_field"]
    _require(gdf, "flagged_patches", [status_field])
    out = gdf.copy()
    status = out[status_field].astype("string").str.strip()
    if status.isna().any():
        raise FieldError(f"flagged_patches has {int(status.isna().sum())} patches without a {status_field}; "
                         "every issued patch starts as 待核查 — re-run yzt analyse")
    unchecked = status.isin(options["unchecked_statuses"])
    out["checked"] = ~unchecked
    if "n_issued" not in out.columns:
        raise FieldError("flagged_patches has no n_issued column (written by an older yzt analyse), so the issued "
                         "patches cannot be told from changes only the survey found; re-run yzt analyse "
                         "(statuses and judgements are kept)")
    out["issued"] = pd.to_numeric(out["n_issued"], errors="coerce").fillna(0).to_numpy() > 0
    basis = options["illegal_basis"]
    jfield = options["judgement_field"]
    if basis in ("judgement", "judgement_else_verdict"):
        if jfield in out.columns:
            judged_illegal = out[jfield].astype("string").str.strip().isin(options["illegal_judgements"])
            judged = out[jfield].notna() & (out[jfield].astype("string").str.strip() != "")
        else:
            judged_illegal = pd.Series(False, index=out.index)
            judged = pd.Series(False, index=out.index)
            past_check = out["checked"] & ~status.isin(options["illegal_statuses"])
            if past_check.any():
                raise FieldError(
                    f"flagged_patches has {int(past_check.sum())} checked patches but no {jfield!r} column to "
                    f"say whether they were judged 违法; set options.judgement_field in the registry")
        by_status = status.isin(options["illegal_statuses"])
        illegal = judged_illegal | (by_status & ~judged)
        if basis == "judgement_else_verdict":
            _require(gdf, "flagged_patches", [verdict_field])
            pre = unchecked & out[verdict_field].isin(options["prejudgement_illegal_verdicts"])
            illegal = illegal | pre
    else:
        _require(gdf, "flagged_patches", [verdict_field])
        illegal = out[verdict_field].isin(options["prejudgement_illegal_verdicts"])
    out["illegal"] = illegal.fillna(False).astype(bool)
    need = ["area_m2", "area_cultivated", "area_unapproved", "area_cultivated_unapproved"]
    if verdict_field in out.columns and all(c in out.columns for c in need):
        part = out[verdict_field].isin(options["unapproved_part_verdicts"]).to_numpy()
        area = pd.to_numeric(out["area_m2"], errors="coerce").fillna(0.0)
        cult = pd.to_numeric(out["area_cultivated"], errors="coerce").fillna(0.0)
        un_area = pd.to_numeric(out["area_unapproved"], errors="coerce").fillna(0.0)
        un_cult = pd.to_numeric(out["area_cultivated_unapproved"], errors="coerce").fillna(0.0)
        ill = out["illegal"].to_numpy()
        out["illegal_area_m2"] = np.where(ill, np.where(part, un_area, area), 0.0)
        out["illegal_cultivated_m2"] = np.where(ill, np.where(part, un_cult, cult), 0.0)
        out["change_basis"] = out[verdict_field].isin(options["change_verdicts"]).to_numpy() | ill
    return out

"""What an indicator run shares: the units of the xzq layer, village attribution of every record, the prepared
layers, overlays."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from layers.area import ellipsoidal_area
from layers.errors import CRSError, FieldError, RuleError

from ..overlay import overlay_pieces
from .prepare import _require, prepare_patches, prepare_survey
from .registry import CODE_LENGTH, LEVELS, SURVEY_LAYERS, Registry


def overlay_areas(left: gpd.GeoDataFrame, right: gpd.GeoDataFrame) -> pd.DataFrame:
    """Pieces of left ∩ right: columns left, right (positional), area_m2 (ellipsoidal, unrounded).

    The project's overlay engine (analysis.overlay.overlay_pieces) without geometry; CRSs must match.
    """
    if left.crs is None or right.crs is None or not left.crs.equals(right.crs):
        raise CRSError(f"overlay needs both layers in the same CRS, got {left.crs} and {right.crs}")
    if len(left) == 0 or len(right) == 0:
        return pd.DataFrame({"left": np.array([], int), "right": np.array([], int), "area_m2": []})
    pieces = overlay_pieces(left, right, keep_geometry=False)
    return pd.DataFrame({"left": np.asarray(pieces["left"], int), "right": np.asarray(pieces["right"], int),
                         "area_m2": np.asarray(pieces["area_m2"], float)})


# --------------------------------------------------------------------------------------------------
# Computing
# --------------------------------------------------------------------------------------------------

@dataclass
class Contribution:
    """Per-village values and the records behind them for one indicator."""

    values: pd.DataFrame  # village, value
    ids: pd.DataFrame  # village, layer, rid

    @staticmethod
    def empty() -> Contribution:
        return Contribution(pd.DataFrame({"village": pd.Series([], dtype=object), "value": []}),
                            pd.DataFrame({"village": [], "layer": [], "rid": []}))

    @staticmethod
    def concat(parts: list[Contribution]) -> Contribution:
        if not parts:
            return Contribution.empty()
        return Contribution(pd.concat([p.values for p in parts], ignore_index=True),
                            pd.concat([p.ids for p in parts], ignore_index=True))


@dataclass
class IndicatorResult:
    values: pd.DataFrame  # long: one row per (indicator, unit)
    warnings: pd.DataFrame  # thresholds crossed
    skipped: dict[str, str]  # indicator → why it has no value (a layer is missing)
    notes: list[str]  # facts worth showing with the run (e.g. YJJBNT outside the survey coverage)
    id_fields: dict[str, str]  # layer → the column used as record id


class _Context:
    """``owned`` (a spatial partition of the county, services/jobs/indicators.py): per survey layer, which of
    its rows the partition answers for (the others are its surroundings, read so that every overlay of an owned
    row is complete); ``owns`` tells the villages whose values the partition reports. None: the whole county."""

    def __init__(self, layers: Mapping[str, gpd.GeoDataFrame], registry: Registry,
                 code_sets: Mapping[str, str | None] | None = None, *,
                 owned: Mapping[str, np.ndarray] | None = None,
                 owns: Callable[[np.ndarray], np.ndarray] | None = None):
        self.raw = layers
        self.code_sets = dict(code_sets or {})
        self.registry = registry
        self.options = registry.options
        self.owned = dict(owned or {})
        self.owns = owns
        self.notes: list = []  # texts and CountNotes (prepare.py)
        self.id_fields: dict[str, str] = {}
        self._prepared: dict[str, gpd.GeoDataFrame] = {}
        self._villages_of: dict[str, pd.Series] = {}
        self._cache: dict[str, object] = {}
        xzq = layers.get("xzq")
        if xzq is None or len(xzq) == 0:
            raise FieldError("the store has no xzq (行政区) layer; ingest the administrative units first — "
                             "indicators are reported by 县 / 乡镇 / 村")
        self.units, self.villages = _units_from_xzq(xzq)
        self.counties = set(self.units.loc[self.units["level"] == "county", "code"])
        if not self.counties:
            self.counties = {c[:6] for c in self.units["code"]}

    def has(self, layer: str) -> bool:
        return layer in self.raw and self.raw[layer] is not None

    def layer(self, name: str) -> gpd.GeoDataFrame:
        if name not in self._prepared:
            gdf = self.raw[name].reset_index(drop=True)
            if name in SURVEY_LAYERS:
                gdf = prepare_survey(gdf, name, self.notes, self.code_sets.get(name),
                                     owned=self.owned.get(name)).reset_index(drop=True)
            elif name == "flagged_patches":
                gdf = prepare_patches(gdf, self.options)
            self._prepared[name] = gdf
        return self._prepared[name]

    def ids(self, name: str) -> pd.Series:
        key = f"ids:{name}"
        if key not in self._cache:
            self._cache[key] = self._ids(name)
        return self._cache[key]

    def _ids(self, name: str) -> pd.Series:
        gdf = self.layer(name)
        column = self.registry.id_fields.get(name, self.registry.id_fields["default"])
        if column in gdf.columns and gdf[column].notna().all() and gdf[column].is_unique:
            self.id_fields[name] = column
            values = gdf[column]
            return values.map(int) if pd.api.types.is_integer_dtype(values) else values.astype(str)
        self.id_fields[name] = "row"  # 1-based row number in the stored layer
        self.notes.append(f"{name}: no unique {column!r} column; record ids are 1-based row numbers")
        return pd.Series(np.arange(1, len(gdf) + 1), index=gdf.index).map(int)

    def owned_villages(self, villages) -> np.ndarray:
        """Which of these village codes the partition reports (all of them for the whole county)."""
        villages = np.asarray(villages, dtype=object)
        return np.ones(len(villages), bool) if self.owns is None else np.asarray(self.owns(villages), bool)

    def valid_village(self, codes: pd.Series) -> pd.Series:
        codes = codes.astype("string").str.strip()
        return codes.str.fullmatch(r"\d{12}").fillna(False) & codes.str[:6].isin(self.counties).fillna(False)

    def village_of(self, name: str) -> pd.Series:
        """The village each record of a layer is attributed to (whole record)."""
        if name in self._villages_of:
            return self._villages_of[name]
        gdf = self.layer(name)
        default_field = "ZLDWDM" if name in SURVEY_LAYERS else "XZQDM"
        code_field = self.registry.attribution.get(name, default_field)
        result = pd.Series(pd.NA, index=gdf.index, dtype="string")
        if code_field in gdf.columns:
            codes = gdf[code_field].astype("string").str.strip().str[:12]
            ok = self.valid_village(codes)
            result[ok] = codes[ok]
        todo = result.isna()
        if todo.any():
            if name in SURVEY_LAYERS:
                bad = gdf.loc[todo, code_field].head(3).tolist()
                raise FieldError(f"layer {name!r} has {int(todo.sum())} patches whose {code_field} is not a "
                                 f"village code of the county (e.g. {bad}); correct ZLDWDM")
            result[todo] = self._largest_share(gdf[todo])
        self._villages_of[name] = result
        return result

    def _largest_share(self, gdf: gpd.GeoDataFrame) -> pd.Series:
        if len(self.villages) == 0:
            raise FieldError("xzq has no village polygons (XZQJB = village) to attribute records to")
        villages = self.villages.to_crs(gdf.crs) if not self.villages.crs.equals(gdf.crs) else self.villages
        pieces = overlay_areas(gdf, villages)
        out = pd.Series(pd.NA, index=gdf.index, dtype="string")
        if len(pieces):
            best = pieces.sort_values(["left", "area_m2"], ascending=[True, False]).drop_duplicates("left")
            out.iloc[best["left"].to_numpy()] = villages["code"].to_numpy()[best["right"].to_numpy()]
        rest = out.isna() & gdf.geometry.notna().to_numpy()
        if rest.any():
            near = gpd.sjoin_nearest(gdf.loc[rest, [gdf.geometry.name]], villages[["code", "geometry"]],
                                     how="left")
            near = near[~near.index.duplicated()]
            out[rest] = near["code"].astype("string")
            self.notes.append(f"{int(rest.sum())} record(s) touching no village polygon were attributed to the "
                              "nearest village")
        if out.isna().any():
            raise FieldError(f"{int(out.isna().sum())} record(s) have neither a village code nor a geometry")
        return out

    def split_shares(self, name: str) -> pd.DataFrame:
        """row (position), village, share of the record's area inside that village polygon."""
        key = f"split:{name}"
        if key not in self._cache:
            gdf = self.layer(name)
            villages = self.villages
            pieces = overlay_areas(gdf, villages)
            record_area = ellipsoidal_area(gdf.geometry.values, gdf.crs)
            with np.errstate(divide="ignore", invalid="ignore"):
                share = pieces["area_m2"].to_numpy() / record_area[pieces["left"].to_numpy()]
            self._cache[key] = pd.DataFrame({"row": pieces["left"].to_numpy(),
                                             "village": villages["code"].to_numpy()[pieces["right"].to_numpy()],
                                             "share": np.nan_to_num(share)})
        return self._cache[key]

    def resolver(self, gdf: pd.DataFrame, layer: str, where: str) -> Callable[[str], object]:
        code_sets = self.registry.code_sets

        def resolve(name: str):
            if name in gdf.columns:
                return gdf[name]
            if name in code_sets:
                return code_sets[name]
            raise RuleError(f"{where}: {name!r} is neither a column of layer {layer!r} nor a code set; "
                            f"columns: {sorted(c for c in gdf.columns if c != 'geometry')}")
        return resolve


def _units_from_xzq(xzq: gpd.GeoDataFrame) -> tuple[pd.DataFrame, gpd.GeoDataFrame]:
    _require(xzq, "xzq", ["XZQDM"])
    codes = xzq["XZQDM"].astype("string").str.strip()
    if "XZQJB" in xzq.columns:
        level = xzq["XZQJB"].astype("string").str.strip()
    else:
        level = pd.Series(pd.NA, index=xzq.index, dtype="string")
    by_length = codes.str.len().map({6: "county", 9: "township", 12: "village"})
    level = level.where(level.isin(LEVELS), by_length)
    if level.isna().any():
        bad = codes[level.isna()].head(3).tolist()
        raise FieldError(f"xzq has units of unknown level (XZQDM e.g. {bad}); give XZQJB county/township/village "
                         "or 6/9/12-digit codes")
    # 12-digit township codes padded with zeros (130599100000) → 9 digits; counties → 6
    n = level.map(CODE_LENGTH)
    codes = pd.Series([c[:k] for c, k in zip(codes, n)], index=xzq.index, dtype="string")
    names = xzq["XZQMC"].astype("string") if "XZQMC" in xzq.columns else codes
    units = pd.DataFrame({"code": codes.astype(str), "name": names.fillna(codes).astype(str),
                          "level": level.astype(str)})
    units = units.drop_duplicates("code").reset_index(drop=True)
    village_rows = (level == "village").to_numpy()
    villages = gpd.GeoDataFrame({"code": codes[village_rows].astype(str).to_numpy()},
                                geometry=xzq.geometry.values[village_rows], crs=xzq.crs)
    return units, villages

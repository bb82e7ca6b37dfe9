"""Indicators (指标) per 村 / 乡镇 / 县, driven by a registry (analysis/indicators.yaml), with drill-down ids.

The package, one module per job: expression.py (the expression language), registry.py (the registry and its
check), prepare.py (DLTB and flagged_patches as the indicators read them), context.py (units and village
attribution), builtins.py (built-in overlay measures), compute.py (compute_indicators), tables.py (the long and
wide tables).

Pure: GeoDataFrames in (the store's layers, by role name), a long DataFrame out — one row per
(indicator, unit) with the true value, the balanced rounded values, the 口径 and the ids of the records
behind the number. Reading the registry file and the store, and writing the run, is services/indicators.py.

How a number is made
--------------------
* Every additive indicator (area, count) is computed per **village** from its contributions and rolled up:
  乡镇 = Σ its villages (code prefix 9 digits), 县 = Σ its 乡镇 (prefix 6). So Σ 村 = 乡 and Σ 乡 = 县 hold
  exactly for the true values; the rounded values are balanced by :mod:`analysis.balance` (强制调平).
* Village attribution of a record (``attribute: record``): DLTB by ``ZLDWDM[:12]``; the analysis outputs
  (flagged_patches, planning_conflicts) by their ``XZQDM`` (the village holding the largest share, set by
  `yzt analyse`); any other layer — or a row whose code is not a 12-digit code of the county — by the
  village polygon (xzq, XZQJB = village) that holds the largest share of its area, or the nearest one if it
  touches none. A case (监测图斑) is one unit of enforcement work: its count *and* its areas go whole to
  one village, so the count and the area of a village are made of the same records.
* ``attribute: split`` (areas only): the record's value is multiplied by the share of its area inside each
  village polygon; parts outside every village are not counted (they are not the county's land).
* Built-in overlay measures split by the DLTB patches themselves (each piece goes to the village of its
  DLTB patch), so they reconcile with 耕地面积 and the land categories to the square metre.
* Ratio indicators (``formula``) are computed at every unit from that unit's unrounded totals — never as
  sums or averages of the children's ratios — and rounded on their own; they are not balanced.

DLTB areas (口径)
-----------------
Exports carry TBMJ values that may differ from their geometry, so areas are recomputed from the stored
ellipsoidal area (``area_m2``): TBMJ = round(area_m2, 2), KCMJ = round(TBMJ × KCXS, 2) (田坎 deduction),
TBDLMJ = TBMJ − KCMJ, rounded half-up (四舍五入) in exact integer cents (KCXS to 6 decimals). The reported values
stay available as TBMJ_reported / KCMJ_reported / TBDLMJ_reported. Land-use statistics sum TBDLMJ; the 田坎
area KCMJ counts as 农用地 (1203 田坎).

The registry
------------
See analysis/indicators.yaml and docs/indicators.md. An indicator is one of
  ``measure``:  one term or a list of terms {layer, sum | count, where, attribute}, summed;
  ``builtin``:  a named overlay measure implemented here (BUILTINS);
  ``formula``:  an expression over other indicators and parameters, e.g. ``100 * a / b``.
``sum``, ``where`` and ``formula`` are written in a small safe expression language (parsed with ``ast``,
never ``eval``): numbers, strings, True/False/None, column / indicator / parameter / code-set names,
+ − × ÷, comparisons, ``in`` / ``not in`` a list or a code set, ``and`` / ``or`` / ``not``, and the
functions in FUNCTIONS. A division by zero gives no value (NaN), never infinity.
"""

from .builtins import BUILTINS
from .compute import compute_indicators
from .context import Contribution, IndicatorResult, overlay_areas
from .expression import FUNCTIONS, Expression
from .prepare import UNKNOWN_CATEGORY, prepare_patches, prepare_survey
from .registry import (
                       CODE_LENGTH,
                       ILLEGAL_BASES,
                       LEVEL_ZH,
                       LEVELS,
                       OPTION_DEFAULTS,
                       PRECISION_DEFAULTS,
                       SURVEY_LAYERS,
                       VALUE_UNITS,
                       Indicator,
                       Param,
                       Registry,
                       Term,
                       merge_registry_documents,
                       parse_registry,
)
from .tables import wide_table

__all__ = ["BUILTINS", "CODE_LENGTH", "FUNCTIONS", "ILLEGAL_BASES", "LEVELS", "LEVEL_ZH", "OPTION_DEFAULTS",
           "PRECISION_DEFAULTS", "SURVEY_LAYERS", "UNKNOWN_CATEGORY", "VALUE_UNITS", "Contribution", "Expression",
           "Indicator", "IndicatorResult", "Param", "Registry", "Term", "compute_indicators",
           "merge_registry_documents", "overlay_areas", "parse_registry", "prepare_patches", "prepare_survey",
           "wide_table"]

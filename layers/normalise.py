"""Field names and values: map a source's columns to the standard codes of its role, and coerce the values.

Mapping order, per standard field of the role:
1. the manifest's ``fields: {CODE: source name}`` (the source name must exist, else FieldError);
2. a source column named exactly the code (any case: ``dlbm``);
3. an alias from ``layers.fields.ALIASES`` (Chinese names such as 地类编码, known variants);
4. a source name cut by the DBF's 10-byte limit that is the start of exactly one code or Chinese name of
   the role (e.g. 永久基本农田图 → 永久基本农田图斑编号).
Columns that map to nothing the role keeps are dropped and reported (info). A missing required field is a
FieldError naming the role, the field, the fields present and the manifest remedy.

Values: land-use codes (DLBM, KCDLBM) through ``codes.normalise_codes`` (303 → "0303"); identifier codes
(BSM, XZQDM, ZLDWDM …) as text without a trailing ".0"; a floating-point column holding codes beyond 2⁵³
has lost digits and is refused; areas and coefficients as float; SJNF as integer; dates as ISO
``YYYY-MM-DD`` text (``YYYY-MM`` for a month-only date; see ``_dates`` for the forms read). Values that cannot be
read become empty and are listed in a finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .codes import normalise_codes
from .errors import FieldError
from .fields import ALIASES, FIELDS, ROLES, ROUND, SOURCE, standard_name, standard_source
from .records import INFO, WARNING, Finding

CODE_FIELDS = {"DLBM", "KCDLBM"}  # land-use codes: leading zeros restored
# The field whose value names a record in findings, per role (the row number when absent / empty).
ID_FIELDS = {
    "xzq": "XZQDM", "dltb": "BSM", "dltb_prev": "BSM", "yjjbnt": "BSM", "stbhhx": "BSM", "czkfbj": "BSM",
    "ghfq": "BSM", "approvals": "PZWH", "parcels": "ZDDM", "monitoring": "JCBH", "cameras": "SXTBH",
}
XZQJB_BY_LENGTH = {6: "county", 9: "township", 12: "village"}
XZQJB_VALUES = {"county": "county", "township": "township", "village": "village", "县": "county",
                "县级": "county", "区县": "county", "乡": "township", "镇": "township", "乡镇": "township",
                "乡级": "township", "村": "village", "村级": "village", "行政村": "village", "社区": "village"}
_FLOAT_EXACT = 2 ** 53
_STRING = pd.StringDtype("pyarrow")  # vectorised string kernels


def role_fields(role: str) -> list[str]:
    spec = ROLES[role]
    return list(spec["required"]) + list(spec["optional"])


@dataclass
class FieldMapping:
    mapping: dict[str, str]  # standard code -> source column, in role field order
    dropped: list[str] = field(default_factory=list)  # source columns not kept
    notes: list[str] = field(default_factory=list)  # why some were dropped (ambiguity, other roles' fields)


def _present(columns: list[str]) -> str:
    return ", ".join(columns) if columns else "(none)"


def _truncation_match(name: str, wanted: list[str]) -> str | None:
    """A name cut at the DBF's 10-byte limit → the one role field it starts (code, Chinese name or alias)."""
    key = name.strip()
    if len(key.encode("utf-8")) < 9 and len(key.encode("gb18030")) < 9:
        return None
    if len(key) < 3:
        return None
    hits = set()
    for code in wanted:
        names = [code, FIELDS[code].zh] + [a for a, c in ALIASES.items() if c == code]
        if any(n.upper().startswith(key.upper()) and n.upper() != key.upper() for n in names):
            hits.add(code)
    return hits.pop() if len(hits) == 1 else None


def map_fields(columns: list[str], role: str, spec_fields: dict[str, str], where: str) -> FieldMapping:
    """Decide which source column feeds each standard field of ``role``."""
    wanted = role_fields(role)
    columns = [c for c in columns if c != "geometry"]
    mapping: dict[str, str] = {}
    used: set[str] = set()
    notes: list[str] = []
    folded = {c.strip().upper(): c for c in columns}
    code: str | None
    for code, source in spec_fields.items():
        if code not in FIELDS:
            raise FieldError(f"{where}: fields: maps unknown standard field {code!r}; standard fields of "
                             f"'{role}' are {', '.join(wanted)}")
        if code not in wanted:
            raise FieldError(f"{where}: fields: maps {code}, which role '{role}' does not keep; its fields are "
                             f"{', '.join(wanted)}")
        column = source if source in columns else folded.get(source.strip().upper())
        if column is None:
            raise FieldError(f"{where}: fields: maps {code} to {source!r}, but the source has no such field; "
                             f"fields present: {_present(columns)}")
        mapping[code] = column
        used.add(column)
    # exact codes first, then aliases, then truncations: a better match is never displaced by a worse one
    for rank in ("exact", "alias", "truncated"):
        for column in columns:
            if column in used:
                continue
            if rank == "exact":
                code = column.strip().upper() if column.strip().upper() in FIELDS else None
            elif rank == "alias":
                code = standard_name(column)
            else:
                code = _truncation_match(column, [w for w in wanted if w not in mapping])
            if code is None:
                continue
            if code not in wanted:
                if rank != "truncated":
                    notes.append(f"{column} ({code}) is not a field of '{role}'")
                    used.add(column)
                continue
            if code in mapping:
                notes.append(f"{column} also looks like {code}; {mapping[code]} is used")
                used.add(column)
                continue
            mapping[code] = column
            used.add(column)
    missing = [c for c in ROLES[role]["required"] if c not in mapping and c not in (SOURCE, ROUND)]
    if missing:
        code = missing[0]
        raise FieldError(
            f"{where}: required field {code} ({FIELDS[code].zh}) not found; fields present: {_present(columns)}; "
            f"map it in the manifest: fields: {{{code}: <source field name>}}")
    ordered = {code: mapping[code] for code in wanted if code in mapping}
    dropped = [c for c in columns if c not in ordered.values()]
    return FieldMapping(ordered, dropped, notes)


# --- value coercion -------------------------------------------------------------------------------------

def row_ids(values: pd.Series | None, n: int) -> np.ndarray:
    """Readable record ids: the id field's value, or '#<row>' (1-based source row) where it is empty."""
    rows = np.array([f"#{i + 1}" for i in range(n)], dtype=object)
    if values is None:
        return rows
    text = values.astype(object).where(values.notna(), None).to_numpy()
    return np.where(pd.isna(text) | (text == ""), rows, text.astype(str) if len(text) else text)


def as_object(series: pd.Series) -> pd.Series:
    """An object Series with None for missing values (pandas 3 would otherwise infer str with NaN)."""
    return pd.Series(series.to_numpy(dtype=object, na_value=None), index=series.index, dtype=object)


def _text(series: pd.Series, code: str, where: str) -> pd.Series:
    return as_object(_text_values(series, code, where))


def _text_values(series: pd.Series, code: str, where: str) -> pd.Series:
    """Identifier / name text: integral numbers without '.0', stripped strings, None for empty. Vectorised
    (pandas string operations), as layers run to hundreds of thousands of rows."""
    s = series
    if pd.api.types.is_bool_dtype(s):
        s = s.astype(object)
    if pd.api.types.is_float_dtype(s):
        finite = s.dropna()
        if len(finite) and (finite.abs() >= _FLOAT_EXACT).any():
            raise FieldError(
                f"{where}: field {code} holds codes as floating-point numbers beyond 2^53 (e.g. {finite.iloc[0]:.0f}); "
                f"their last digits are lost — re-export {code} as a text field")
        if len(finite) and (finite == np.floor(finite)).all():
            s = s.astype("Int64")
    if pd.api.types.is_integer_dtype(s):
        return s.astype("Int64").astype(_STRING)
    if pd.api.types.is_datetime64_any_dtype(s):
        return s.dt.strftime("%Y-%m-%d")
    text = s.astype(_STRING).str.strip()
    text = text.mask(text == "")
    decimal = text.str.contains(".", regex=False).fillna(False).to_numpy(dtype=bool)
    if decimal.any():  # "130599100001.0" from a spreadsheet round trip
        text = text.copy()
        text[decimal] = text[decimal].str.replace(r"^(\d+)\.0+$", r"\1", regex=True)
    return text


def _numeric_codes(series: pd.Series) -> pd.Series:
    """Land-use codes exported as numbers lost their leading zero: 0101 → 101, 011 (二调) → 11, 09 → 9.

    A column with 4-digit values or no 2-digit ones holds 4-character codes (三调 / 用地用海): 101 → 0101,
    9 → 09. A column with 2-digit values and no 4-digit ones holds 二调 3-digit codes: 11 → 011."""
    values = series.astype(float)
    whole = values.dropna()
    erdiao = not (whole >= 1000).any() and ((whole >= 10) & (whole < 100)).any()

    def restore(v: float):
        if v != int(v):
            return str(v)
        v = int(v)
        if erdiao:
            return f"{v:03d}" if v < 100 else str(v)
        return f"{v:04d}" if 100 <= v < 1000 else (f"{v:02d}" if v < 10 else str(v))

    table = {v: restore(v) for v in whole.unique()}
    return as_object(values.map(table))


def _codes(series: pd.Series, code: str, where: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        series = _numeric_codes(series)
    else:
        series = _text(series, code, where)
    return normalise_codes(series)


def _numbers(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Float values and a mask of non-empty inputs that were not numbers."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype(float), np.zeros(len(series), dtype=bool)
    text = series.astype(_STRING).str.strip().str.replace(",", "", regex=False)
    text = text.mask(text == "")
    values = pd.to_numeric(text, errors="coerce").astype(float)
    bad = (text.notna() & values.isna()).to_numpy(dtype=bool)
    return values, bad


EXCEL_SERIAL_RANGE = (20_000, 80_000)  # 1954-10-03 … 2119-01-10 in the 1900 date system
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")  # serial 1 = 1900-01-01 (Excel's 1900 leap-year bug absorbed)


def _dates(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """ISO text and a mask of non-empty inputs that are not dates.

    Read: ``YYYY-MM-DD``, ``YYYY/M/D``, ``YYYY.M.D``, ``YYYYMMDD``, ``YYYY年M月D日`` (with a time part or not),
    datetimes, Excel serial numbers (1900 date system, 20000–80000) → ``YYYY-MM-DD``; and the month-only forms
    ``YYYY-MM``, ``YYYY/M``, ``YYYYMM``, ``YYYY年M月`` → ``YYYY-MM``, kept at month precision (monitoring lists
    often give only the month of the image).
    """
    if pd.api.types.is_datetime64_any_dtype(series):
        return as_object(series.dt.strftime("%Y-%m-%d")), np.zeros(len(series), bool)
    original = series
    out = pd.Series([None] * len(series), index=series.index, dtype=object)
    numeric = pd.to_numeric(series, errors="coerce") if not pd.api.types.is_bool_dtype(series) else \
        pd.Series(np.nan, index=series.index)
    serial = numeric.notna() & numeric.between(*EXCEL_SERIAL_RANGE)  # a fraction is the time of day
    if serial.any():
        days = pd.to_timedelta(np.floor(numeric[serial]).astype("int64"), unit="D")
        out[serial] = (_EXCEL_EPOCH + days).dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    rest = ~serial
    if pd.api.types.is_float_dtype(series):  # 20230301.0, 202303.0 (a fraction elsewhere is not a date)
        series = series.where(series == np.floor(series)).astype("Int64")
    text = series[rest].astype(_STRING).str.strip()
    text = text.mask(text == "")
    text = text.str.replace(r"^(\d{4})年(\d{1,2})月(?:(\d{1,2})日)?", lambda m: "-".join(
        g for g in m.groups() if g), regex=True)
    text = text.str.split(r"[T ]", n=1, regex=True).str[0]
    text = text.str.replace(r"[./]", "-", regex=True)
    text = text.str.replace(r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3", regex=True)
    text = text.str.replace(r"^(\d{4})(\d{2})$", r"\1-\2", regex=True)
    day = pd.to_datetime(text.where(text.str.count("-") == 2), format="%Y-%m-%d", errors="coerce")
    month = pd.to_datetime(text.where(text.str.count("-") == 1) + "-01", format="%Y-%m-%d", errors="coerce")
    values = day.dt.strftime("%Y-%m-%d").where(day.notna(), month.dt.strftime("%Y-%m"))
    out[rest] = values.astype(object).where(values.notna(), None).to_numpy(dtype=object)
    given = original.notna() & (original.astype(_STRING).str.strip() != "").fillna(False)
    bad = (given & out.isna()).to_numpy(dtype=bool)
    return as_object(out), bad


def normalise_attributes(gdf: pd.DataFrame, role: str, fmap: FieldMapping,
                         where: str) -> tuple[pd.DataFrame, list[Finding]]:
    """The standard columns of ``role`` from the mapped source columns, with coerced values."""
    out = pd.DataFrame(index=gdf.index)
    findings: list[Finding] = []
    bad_values: dict[str, np.ndarray] = {}
    for code, source in fmap.mapping.items():
        series = gdf[source]
        kind = FIELDS[code].kind
        if code in CODE_FIELDS:
            out[code] = _codes(series, code, where)
        elif kind == "str":
            out[code] = _text(series, code, where)
        elif kind == "float":
            out[code], bad = _numbers(series)
            bad_values[code] = bad
        elif kind == "int":
            values, bad = _numbers(series)
            frac = values.notna() & (values != np.floor(values.fillna(0)))
            bad = bad | frac.to_numpy()
            out[code] = values.where(~frac).astype("Int64")
            bad_values[code] = bad
        elif kind == "date":
            out[code], bad = _dates(series)
            bad_values[code] = bad
    if role == "xzq":
        out["XZQJB"] = _xzqjb(out, fmap)
    if SOURCE in out.columns:
        out[SOURCE] = as_object(out[SOURCE].map(standard_source))
    ids = row_ids(out.get(ID_FIELDS.get(role)), len(out))
    for code, bad in bad_values.items():
        if bad.any():
            examples = gdf[fmap.mapping[code]].astype(object)[bad].head(3).tolist()
            findings.append(Finding(
                layer=role, check="bad_value", severity=WARNING, ids=ids[bad].tolist(), count=int(bad.sum()),
                message=f"{int(bad.sum())} value(s) of {code} ({fmap.mapping[code]}) are not "
                        f"{'dates' if FIELDS[code].kind == 'date' else 'numbers'} (e.g. {examples}); stored empty"))
    return out, findings


def _xzqjb(out: pd.DataFrame, fmap: FieldMapping) -> pd.Series:
    """XZQJB as county / township / village: mapped from the source's values, else from XZQDM's length."""
    by_length = as_object(out["XZQDM"].map(lambda v: None if v is None else XZQJB_BY_LENGTH.get(len(v))))
    if "XZQJB" not in fmap.mapping:
        return by_length
    given = as_object(out["XZQJB"].map(lambda v: None if v is None else XZQJB_VALUES.get(str(v).strip().lower())))
    return as_object(given.where(given.notna(), by_length))


def mapping_findings(role: str, fmap: FieldMapping) -> list[Finding]:
    findings = []
    if fmap.dropped:
        findings.append(Finding(layer=role, check="fields_dropped", severity=INFO, count=len(fmap.dropped),
                                ids=list(fmap.dropped),
                                message=f"source fields not kept for '{role}': {', '.join(fmap.dropped)}"
                                        + (f" ({'; '.join(fmap.notes)})" if fmap.notes else "")))
    return findings

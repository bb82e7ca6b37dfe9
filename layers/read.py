"""Read one source file into a GeoDataFrame with its text decoded, its CRS as found, and its checksum.

Formats: Shapefile (.shp + sidecars), GeoPackage (.gpkg), GeoJSON (.geojson / .json), FileGDB (.gdb folder,
OpenFileGDB driver) and GeoParquet (.parquet). Nothing is renamed or transformed here: normalise.py maps
the fields, georef.py the coordinates.

Encodings. GeoPackage, FileGDB and GeoParquet store UTF-8 by definition. A shapefile's DBF stores bytes in
whatever code page the exporting tool used; Chinese exports are GBK (cp936) or UTF-8, and the .cpg sidecar
is often missing. The rule, strictly without mojibake:

1. ``encoding:`` in the manifest wins (and must decode every text value strictly, else EncodingError);
2. else the .cpg sidecar, if it names an encoding that decodes every text value strictly;
3. else detection from the DBF bytes themselves: every non-ASCII text value (and field name) must decode
   strictly as UTF-8, or else strictly as GB18030 (a superset of GBK); when both succeed, the reading with
   the larger share of CJK ideographs wins. If neither decodes, EncodingError: set ``encoding:``.

GeoJSON gets the same treatment over the file's bytes (RFC 7946 says UTF-8; Chinese tools still write GBK).

Shapefile numeric fields wider than 15 digits (e.g. 19-digit ZLDWDM written as N(19,0)) are read by GDAL
as floating point and would lose their last digits; their exact text is taken from the DBF bytes instead.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from pyproj import CRS

from .errors import EncodingError, SourceError
from .records import WARNING, Finding

SHAPEFILE, GEOPACKAGE, GEOJSON, FILEGDB, GEOPARQUET = "ESRI Shapefile", "GPKG", "GeoJSON", "OpenFileGDB", "GeoParquet"
FORMATS = {".shp": SHAPEFILE, ".gpkg": GEOPACKAGE, ".geojson": GEOJSON, ".json": GEOJSON, ".gdb": FILEGDB,
           ".parquet": GEOPARQUET, ".geoparquet": GEOPARQUET}
SHAPEFILE_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
CHUNK_ROWS = 50_000  # read in chunks of this size (with a progress bar) above this row count

# .cpg contents → Python codec. "ANSI"/"OEM" name the writer's system code page: no information.
_CPG_NAMES = {
    "UTF-8": "utf-8", "UTF8": "utf-8", "65001": "utf-8",
    "936": "gbk", "CP936": "gbk", "GBK": "gbk", "GB2312": "gbk", "ANSI 936": "gbk", "MS936": "gbk",
    "GB18030": "gb18030", "54936": "gb18030", "CP54936": "gb18030",
    "950": "big5", "BIG5": "big5", "CP950": "big5",
    "1252": "cp1252", "ANSI 1252": "cp1252", "ISO-8859-1": "latin-1", "88591": "latin-1", "8859_1": "latin-1",
}
@dataclass
class SourceInfo:
    """What can be known of a source without reading its features: CRS, extent, row count."""

    path: Path
    driver: str
    layer: str | None
    crs: CRS | None
    bounds: tuple[float, float, float, float] | None
    count: int


@dataclass
class SourceData:
    """A source read as found: decoded columns, geometry, the CRS it declares, and its provenance."""

    path: Path
    driver: str
    layer: str | None
    gdf: gpd.GeoDataFrame
    crs: CRS | None  # declared by .prj / embedded metadata; None when absent
    crs_origin: str  # "prj" | "embedded" | "none"
    encoding: str  # utf-8 / gbk / gb18030 / ascii / …
    encoding_origin: str  # manifest / cpg / detected / format
    files: list[Path]
    sha256: str
    findings: list[Finding] = field(default_factory=list)


# --- files and checksums --------------------------------------------------------------------------------

def source_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SourceError(
            f"{path}: unsupported format {suffix or '(no extension)'!r}; give a Shapefile (.shp), GeoPackage "
            "(.gpkg), GeoJSON (.geojson), FileGDB (.gdb folder) or GeoParquet (.parquet)")
    return FORMATS[suffix]


def _sidecar(path: Path, suffix: str) -> Path | None:
    """The shapefile sidecar with this suffix, matching case-insensitively (DLTB.SHP + dltb.dbf exist)."""
    for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
        if candidate.is_file():
            return candidate
    stem = path.stem.lower()
    for other in path.parent.iterdir():
        if other.stem.lower() == stem and other.suffix.lower() == suffix and other.is_file():
            return other
    return None


def source_files(path: Path) -> list[Path]:
    """Every file whose bytes make up the source: a shapefile's sidecars, all files of a .gdb folder."""
    driver = source_format(path)
    if driver == SHAPEFILE:
        return [p for p in (_sidecar(path, s) for s in SHAPEFILE_SIDECARS) if p is not None]
    if driver == FILEGDB:
        return sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    return [path]


def sha256_of(path: Path) -> str:
    """SHA-256 of a source. One file: the file's own digest (what `sha256sum` prints). Several files
    (shapefile, .gdb): the digest over, for each file in name order, its relative name, a NUL byte, its
    length as 8 little-endian bytes and its content."""
    files = source_files(path)
    if len(files) == 1 and files[0] == path:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    base = path if path.is_dir() else path.parent
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda p: p.relative_to(base).as_posix().lower()):
        digest.update(f.relative_to(base).as_posix().lower().encode() + b"\0")
        digest.update(f.stat().st_size.to_bytes(8, "little"))
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _check_exists(path: Path, where: str) -> str:
    driver = source_format(path)
    if driver == FILEGDB:
        if not path.is_dir():
            raise SourceError(f"{where}: FileGDB folder {path} does not exist; give the path of the .gdb folder")
        return driver
    if not path.is_file():
        raise SourceError(f"{where}: file {path} does not exist; fix path: in the manifest "
                          "(relative paths start at the manifest's folder)")
    if driver == SHAPEFILE:
        missing = [s for s in (".shx", ".dbf") if _sidecar(path, s) is None]
        if missing:
            raise SourceError(f"{where}: shapefile {path} lacks its {' and '.join(missing)} file(s); copy all "
                              "files of the shapefile (.shp .shx .dbf .prj .cpg) into the same folder")
    return driver


# --- layers inside containers ---------------------------------------------------------------------------

def choose_layer(path: Path, driver: str, wanted: str | None, where: str) -> str | None:
    """The layer to read from a GeoPackage / FileGDB: ``wanted`` if given, else the only spatial layer."""
    if driver not in (GEOPACKAGE, FILEGDB):
        return None
    try:
        listed = pyogrio.list_layers(path)
    except Exception as exc:
        raise SourceError(f"{where}: cannot open {path}: {exc}; check the file is complete (copy or export it "
                          "again)") from None
    names = [str(n) for n, _ in listed]
    spatial = [str(n) for n, gtype in listed if gtype is not None]
    if wanted is not None:
        if wanted in names:
            return wanted
        folded = {n.lower(): n for n in names}
        if wanted.lower() in folded:
            return folded[wanted.lower()]
        raise SourceError(f"{where}: {path} has no layer {wanted!r}; its layers are {', '.join(names) or 'none'}; "
                          "fix layer: in the manifest")
    if len(spatial) == 1:
        return spatial[0]
    if not spatial:
        raise SourceError(f"{where}: {path} holds no spatial layer (layers: {', '.join(names) or 'none'})")
    raise SourceError(f"{where}: {path} has several layers ({', '.join(spatial)}); set layer: <name> in the "
                      "manifest to choose one")


# --- DBF bytes: encoding detection and exact wide numbers ------------------------------------------------

@dataclass
class _DbfField:
    name: bytes
    kind: str
    offset: int
    width: int
    decimals: int


def _dbf_layout(dbf: Path) -> tuple[np.ndarray, list[_DbfField]]:
    """The DBF's records as an (n, record_length) uint8 array (memory-mapped) and its field descriptors."""
    size = dbf.stat().st_size
    if size < 32:
        raise SourceError(f"{dbf} is not a DBF file (only {size} bytes); export the shapefile again")
    with open(dbf, "rb") as fh:
        head = fh.read(32)
        n_records = int.from_bytes(head[4:8], "little")
        header_len = int.from_bytes(head[8:10], "little")
        record_len = int.from_bytes(head[10:12], "little")
        descriptors = fh.read(max(header_len - 32, 0))
    fields, offset = [], 1  # byte 0 of each record is the deletion flag
    for i in range(0, len(descriptors) - 31, 32):
        d = descriptors[i:i + 32]
        if d[0] == 0x0D:
            break
        f = _DbfField(d[:11].split(b"\0", 1)[0], chr(d[11]), offset, d[16], d[17])
        fields.append(f)
        offset += f.width
    available = max((size - header_len) // record_len, 0) if record_len else 0
    n = min(n_records, available)
    if n == 0:
        return np.zeros((0, max(record_len, 1)), dtype=np.uint8), fields
    records = np.memmap(dbf, dtype=np.uint8, mode="r", offset=header_len, shape=(n, record_len))
    return records, fields


def _column_bytes(records: np.ndarray, f: _DbfField) -> np.ndarray:
    col = np.ascontiguousarray(records[:, f.offset:f.offset + f.width])
    return col.view(f"S{f.width}").ravel()


def _nonascii_text(dbf: Path) -> list[bytes]:
    """Distinct text bytes (field names and character values) that contain a non-ASCII byte."""
    records, fields = _dbf_layout(dbf)
    values = [f.name for f in fields if any(b >= 0x80 for b in f.name)]
    for f in fields:
        if f.kind != "C" or len(records) == 0:
            continue
        block = records[:, f.offset:f.offset + f.width]
        rows = np.flatnonzero((block >= 0x80).any(axis=1))
        if rows.size:
            uniques = np.unique(_column_bytes(records[rows], f))
            values.extend(v.rstrip(b" \0") for v in uniques.tolist())
    return values


def _decodes(values: list[bytes], codec: str) -> tuple[bool, bytes | None]:
    """True if every value decodes strictly; a character cut off at a value's end (fixed-width DBF fields
    truncate by bytes) is tolerated. Returns (ok, first offending value)."""
    for v in values:
        try:
            v.decode(codec)
        except UnicodeDecodeError as exc:
            # "unexpected end of data" / "incomplete multibyte sequence" at the very end is a truncation
            if exc.end >= len(v) and exc.start >= len(v) - 3 and "invalid" not in exc.reason:
                continue
            return False, v
        except LookupError:
            raise EncodingError(f"unknown encoding {codec!r}; use utf-8, gbk or gb18030") from None
    return True, None


def decode_bytes(value: bytes, codec: str) -> str:
    """Strict decode, except that a character cut off at the end (fixed-width DBF fields) is dropped."""
    codec = "utf-8" if codec == "ascii" else codec
    try:
        return value.decode(codec)
    except UnicodeDecodeError as exc:
        if exc.end >= len(value) and exc.start >= len(value) - 3 and "invalid" not in exc.reason:
            return value[:exc.start].decode(codec)
        raise EncodingError(f"text {value[:24]!r} is not valid {codec}; set encoding: in the manifest") from None


def _decode_frame(gdf, codec: str):
    """Decode the latin-1 (byte-transparent) strings GDAL returned: column names and text values."""
    if codec in ("latin-1",):
        return gdf

    def fix(text):
        return decode_bytes(text.encode("latin-1"), codec) if isinstance(text, str) else text

    renamed = {c: fix(c) for c in gdf.columns if isinstance(c, str) and not c.isascii()}
    if renamed:
        gdf = gdf.rename(columns=renamed)
    for column in gdf.columns:
        series = gdf[column]
        if column == "geometry" or not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            continue
        present = series.dropna()
        if present.empty:
            continue
        non_ascii = ~present.map(lambda v: v.isascii() if isinstance(v, str) else True).to_numpy(dtype=bool)
        if not non_ascii.any():
            continue
        table = {u: fix(u) for u in pd.unique(present[non_ascii])}
        values = series.astype(object).copy()
        idx = present.index[non_ascii]
        values.loc[idx] = present[non_ascii].map(table).to_numpy()
        gdf[column] = values
    return gdf


def _cjk_share(values: list[bytes], codec: str) -> float:
    text = "".join(v.decode(codec, errors="ignore") for v in values)
    non_ascii = [c for c in text if ord(c) >= 0x80]
    if not non_ascii:
        return 0.0
    cjk = sum(1 for c in non_ascii if "CJK" in unicodedata.name(c, "") or 0x3000 <= ord(c) <= 0x303F
              or 0xFF00 <= ord(c) <= 0xFFEF)
    return cjk / len(non_ascii)


def detect_encoding(values: list[bytes], where: str) -> str:
    """'ascii', 'utf-8', 'gbk' or 'gb18030' for these bytes, never a guess that would give mojibake."""
    if not values:
        return "ascii"
    utf8_ok, _ = _decodes(values, "utf-8")
    gbk_ok, _ = _decodes(values, "gbk")
    gb_ok, bad = (True, None) if gbk_ok else _decodes(values, "gb18030")
    chinese = "gbk" if gbk_ok else "gb18030"
    if utf8_ok and gb_ok:
        return "utf-8" if _cjk_share(values, "utf-8") >= _cjk_share(values, chinese) else chinese
    if utf8_ok:
        return "utf-8"
    if gb_ok:
        return chinese
    sample = bad[:24] if bad is not None else b""
    raise EncodingError(f"{where}: text is neither valid UTF-8 nor GBK/GB18030 (e.g. bytes {sample!r}); "
                        "set encoding: in the manifest (e.g. encoding: big5)")


def _canonical(codec: str, where: str) -> str:
    try:
        name = codecs.lookup(codec).name
    except LookupError:
        raise EncodingError(f"{where}: unknown encoding {codec!r}; use utf-8, gbk or gb18030") from None
    return {"utf-8": "utf-8", "gbk": "gbk", "gb18030": "gb18030", "gb2312": "gbk", "cp936": "gbk",
            "iso8859-1": "latin-1", "latin-1": "latin-1", "ascii": "ascii"}.get(name, name)


def _shapefile_encoding(path: Path, declared: str | None, where: str) -> tuple[str, str, list[Finding]]:
    """(codec, origin, findings) for a shapefile, per the rules in the module docstring."""
    dbf = _sidecar(path, ".dbf")
    values = _nonascii_text(dbf)
    if declared:
        codec = _canonical(declared, where)
        ok, bad = _decodes(values, codec)
        if not ok:
            raise EncodingError(f"{where}: encoding: {declared} does not decode the text (e.g. bytes {bad[:24]!r}); "
                                f"remove encoding: to let yizhangtu detect it, or give the right one")
        return codec, "manifest", []
    findings: list[Finding] = []
    cpg = _sidecar(path, ".cpg")
    if cpg is not None:
        raw = cpg.read_bytes().decode("ascii", errors="replace").strip().upper()
        codec = _CPG_NAMES.get(raw)
        if codec is None:
            try:
                codec = _canonical(raw.lower(), where) if raw else None
            except EncodingError:
                codec = None
        if codec is not None:
            ok, bad = _decodes(values, codec)
            if ok:
                return codec, "cpg", []
            detected = detect_encoding(values, where)
            findings.append(Finding(layer="", check="encoding_cpg_mismatch", severity=WARNING, count=1,
                                    message=f"{cpg.name} says {raw} but the text is not valid {codec} "
                                            f"(e.g. bytes {bad[:24]!r}); decoded as {detected} instead — fix or "
                                            f"delete the .cpg, or set encoding: {detected} in the manifest"))
            return detected, "detected", findings
    return detect_encoding(values, where), "detected", findings


def _exact_wide_integers(path: Path, gdf: pd.DataFrame, codec: str) -> None:
    """Replace floating columns of wide integer DBF fields (N(16+, 0)) by their exact digits as text."""
    dbf = _sidecar(path, ".dbf")
    records, fields = _dbf_layout(dbf)
    if len(records) != len(gdf):
        return
    for f in fields:
        if f.kind not in ("N", "F") or f.decimals != 0 or f.width < 16:
            continue
        name = decode_bytes(f.name, codec)
        if name not in gdf.columns or not pd.api.types.is_float_dtype(gdf[name]):
            continue
        text = pd.Series(_column_bytes(records, f)).str.decode("ascii", errors="replace").str.strip()
        text = text.where(text.str.fullmatch(r"[+-]?\d+"), None)
        gdf[name] = text.values


# --- reading --------------------------------------------------------------------------------------------

def _read_ogr(source, layer, encoding, n_rows: int, progress: bool, desc: str,
              geometry: bool = True) -> gpd.GeoDataFrame:
    kwargs = {"layer": layer, "use_arrow": True, "read_geometry": geometry}
    if encoding:
        kwargs["encoding"] = encoding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # GDAL notes about measured geometries etc.
        if not progress or n_rows <= CHUNK_ROWS or not isinstance(source, Path) or not geometry:
            return pyogrio.read_dataframe(source, **kwargs)
        from tqdm.auto import tqdm

        parts = []
        with tqdm(total=n_rows, desc=f"read {desc}", unit="rows") as bar:
            for start in range(0, n_rows, CHUNK_ROWS):
                part = pyogrio.read_dataframe(source, skip_features=start, max_features=CHUNK_ROWS, **kwargs)
                parts.append(part)
                bar.update(len(part))
        gdf = pd.concat(parts, ignore_index=True)
        return gpd.GeoDataFrame(gdf, geometry=parts[0].geometry.name, crs=parts[0].crs)


def _geojson_bytes(path: Path, declared: str | None, where: str) -> tuple[bytes | Path, str, str]:
    """The GeoJSON as UTF-8 (a re-encoded buffer if the file is not UTF-8), its encoding and origin."""
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if declared:
        codec = _canonical(declared, where)
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as exc:
            raise EncodingError(f"{where}: encoding: {declared} does not decode {path.name} at byte {exc.start}; "
                                "remove encoding: to let yizhangtu detect it, or give the right one") from None
        return (path if codec in ("utf-8", "ascii") else text.encode("utf-8")), codec, "manifest"
    try:
        raw.decode("utf-8")
        return path, "utf-8", "format"
    except UnicodeDecodeError:
        pass
    for codec in ("gbk", "gb18030"):
        try:
            return raw.decode(codec).encode("utf-8"), codec, "detected"
        except UnicodeDecodeError:
            continue
    raise EncodingError(f"{where}: {path.name} is neither UTF-8 nor GBK/GB18030 text; set encoding: in the "
                        "manifest")


def _open_error(where: str, path: Path, exc: Exception) -> SourceError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SourceError(f"{where}: cannot read {path}: {text}; check that the file is complete and not corrupted "
                       "(copy or export it again)")


def source_info(spec, where: str | None = None) -> SourceInfo:
    """CRS, extent and row count of a source without reading its features (cheap: headers / metadata)."""
    where = where or f"layer '{spec.role}'"
    path = Path(spec.path)
    driver = _check_exists(path, where)
    if driver == GEOPARQUET:
        quick = _parquet_info(path)
        if quick is not None:
            return quick
        gdf = _read_parquet(path, where, columns=[])
        bounds = tuple(map(float, gdf.total_bounds)) if len(gdf) else None
        return SourceInfo(path, driver, None, gdf.crs, bounds, len(gdf))
    layer = choose_layer(path, driver, spec.layer, where)
    target: bytes | Path = path
    if driver == GEOJSON:
        target, _, _ = _geojson_bytes(path, spec.encoding, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            info = pyogrio.read_info(target, layer=layer, force_total_bounds=True,
                                     **({"encoding": "ISO-8859-1"} if driver == SHAPEFILE else {}))
    except Exception as exc:
        raise _open_error(where, path, exc) from None
    crs = CRS.from_user_input(info["crs"]) if info.get("crs") else None
    bounds = info.get("total_bounds")
    count = int(info.get("features") or 0)
    if bounds is None or count == 0 or not np.all(np.isfinite(bounds)):
        bounds = None
    return SourceInfo(path, driver, layer, crs, None if bounds is None else tuple(map(float, bounds)), count)


def _parquet_info(path: Path) -> SourceInfo | None:
    """CRS, bbox and row count from GeoParquet metadata alone, when the writer recorded a bbox."""
    try:
        import json

        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        geo = json.loads((meta.metadata or {}).get(b"geo", b"{}"))
        column = geo["columns"][geo["primary_column"]]
        bbox = column.get("bbox")
        if not bbox or len(bbox) != 4:
            return None
        crs = column.get("crs", "OGC:CRS84")  # absent crs means OGC:CRS84 (GeoParquet spec)
        crs = None if crs is None else CRS.from_user_input(crs)
        bounds = tuple(float(v) for v in bbox) if meta.num_rows else None
        return SourceInfo(path, GEOPARQUET, None, crs, bounds, int(meta.num_rows))
    except Exception:
        return None


def _read_parquet(path: Path, where: str, columns=None) -> gpd.GeoDataFrame:
    try:
        return gpd.read_parquet(path, columns=columns)
    except ValueError as exc:
        if "geo" in str(exc).lower() and "metadata" in str(exc).lower():
            raise SourceError(f"{where}: {path} is a Parquet file without GeoParquet 'geo' metadata; write it "
                              "with geopandas.GeoDataFrame.to_parquet or GDAL") from None
        raise _open_error(where, path, exc) from None
    except Exception as exc:
        raise _open_error(where, path, exc) from None


def read_source(spec, progress: bool = False, where: str | None = None, geometry: bool = True) -> SourceData:
    """Read the file a LayerSpec names: decoded columns, geometry in source coordinates, declared CRS.

    ``geometry=False`` reads the attribute table only (``gdf`` is then a plain DataFrame)."""
    where = where or f"layer '{spec.role}'"
    path = Path(spec.path)
    driver = _check_exists(path, where)
    findings: list[Finding] = []
    layer = None
    if driver == GEOPARQUET:
        gdf = _read_parquet(path, where)
        encoding, enc_origin = "utf-8", "format"
    else:
        layer = choose_layer(path, driver, spec.layer, where)
        source: bytes | Path = path
        gdal_encoding = None
        if driver == SHAPEFILE:
            encoding, enc_origin, findings = _shapefile_encoding(path, spec.encoding, where)
            gdal_encoding = "ISO-8859-1"  # byte-transparent: text is decoded below, in Python
        elif driver == GEOJSON:
            source, encoding, enc_origin = _geojson_bytes(path, spec.encoding, where)
        else:
            encoding, enc_origin = "utf-8", "format"
        try:
            n_rows = int(pyogrio.read_info(source, layer=layer, **({"encoding": gdal_encoding} if gdal_encoding
                                                                    else {}))["features"]) if progress else 0
            gdf = _read_ogr(source if isinstance(source, Path) else io.BytesIO(source), layer, gdal_encoding,
                            n_rows, progress, f"{spec.role} {path.name}", geometry)
        except (EncodingError, SourceError):
            raise
        except Exception as exc:
            raise _open_error(where, path, exc) from None
        if driver == SHAPEFILE:
            gdf = _decode_frame(gdf, encoding)
            _exact_wide_integers(path, gdf, encoding)
    for f in findings:
        f.layer = spec.role
    if isinstance(gdf, gpd.GeoDataFrame) and gdf.geometry.name != "geometry":
        gdf = gdf.rename_geometry("geometry")
    crs = getattr(gdf, "crs", None)
    if driver == SHAPEFILE:
        origin = "prj" if crs is not None else "none"
    else:
        origin = "embedded" if crs is not None else "none"
    return SourceData(path=path, driver=driver, layer=layer, gdf=gdf, crs=crs, crs_origin=origin,
                      encoding=encoding, encoding_origin=enc_origin, files=source_files(path),
                      sha256=sha256_of(path) if geometry else "", findings=findings)

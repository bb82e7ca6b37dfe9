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

Zip archives, the way bureaus deliver layers: ``path:`` may name a .zip holding one vector dataset (a
shapefile with its sidecars, a .gdb folder, a GeoPackage or a GeoJSON file), at any folder depth; with several,
``member:`` (the path inside the zip) or ``layer:`` (a shapefile's name) chooses. GDAL reads it in place
through /vsizip/ (no extraction); the DBF and .cpg bytes for the encoding rules above are read from the zip,
so detection is the same as for a plain shapefile. GBK member names (Windows zips without the UTF-8 flag)
are recovered for messages and ``member:``. GDAL does not check the zip's CRC-32s, so every member of the
chosen dataset is decompressed once by ``zipfile`` first: a damaged zip is refused, never read with a moved
vertex. The checksum is the zip file's own SHA-256; the load record names ``<zip>!/<member>``.

Shapefile numeric fields wider than 15 digits (e.g. 19-digit ZLDWDM written as N(19,0)) are read by GDAL
as floating point and would lose their last digits; their exact text is taken from the DBF bytes instead.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import io
import os
import re
import unicodedata
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

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
ZIP_SUFFIX = ".zip"
ZIP_FORMATS = {".shp": SHAPEFILE, ".gpkg": GEOPACKAGE, ".geojson": GEOJSON}  # found without member:
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}  # the compression methods GDAL's /vsizip/ reads
_ZIP_METHOD_NAMES = {9: "Deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 95: "xz", 98: "PPMd", 99: "AES"}
_LISTED = 12  # names shown in a message before "… (+n more)"

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


def _box(values) -> tuple[float, float, float, float]:
    xmin, ymin, xmax, ymax = (float(v) for v in values)
    return xmin, ymin, xmax, ymax


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
    member: str | None = None  # the dataset inside a zip archive (path = the .zip), e.g. "地类图斑/DLTB.shp"

    @property
    def location(self) -> str:
        """The source as the load record names it: the path, or ``<zip>!/<member>``."""
        return str(self.path) if self.member is None else f"{self.path}!/{self.member}"


# --- files and checksums --------------------------------------------------------------------------------

def source_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SourceError(
            f"{path}: unsupported format {suffix or '(no extension)'!r}; give a Shapefile (.shp), GeoPackage "
            "(.gpkg), GeoJSON (.geojson), FileGDB (.gdb folder), GeoParquet (.parquet) or a .zip of one of them")
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
    """Every file whose bytes make up the source: a shapefile's sidecars, all files of a .gdb folder, the zip."""
    if path.suffix.lower() == ZIP_SUFFIX:
        return [path]
    driver = source_format(path)
    if driver == SHAPEFILE:
        return [p for p in (_sidecar(path, s) for s in SHAPEFILE_SIDECARS) if p is not None]
    if driver == FILEGDB:
        return sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    return [path]


def sha256_of(path: Path) -> str:
    """SHA-256 of a source. One file (a .zip too): the file's own digest (what `sha256sum` prints). Several files
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


def _missing(path: Path, where: str, what: str) -> SourceError:
    """The error for a path that cannot be opened: a symbolic link loop or a dangling link said as such."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return SourceError(f"{where}: {path} is a symbolic link that loops back on itself (ELOOP); point it at "
                               "the real file, or give that file's path in the manifest")
        if path.is_symlink():
            return SourceError(f"{where}: {path} is a symbolic link to {os.readlink(path)!r}, which does not exist; "
                               "fix the link or the path: in the manifest")
        if exc.errno == errno.EACCES:
            return SourceError(f"{where}: {path} cannot be opened: permission denied; let this user read it")
    return SourceError(f"{where}: {what} {path} does not exist; fix path: in the manifest (relative paths start at "
                       "the manifest's folder)")


def _check_exists(path: Path, where: str) -> str:
    driver = source_format(path)
    if not path.exists():
        raise _missing(path, where, "FileGDB folder" if driver == FILEGDB else "file")
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
    return _choose_layer(_Source(path, driver, where=where), wanted, where)


def _choose_layer(src: _Source, wanted: str | None, where: str) -> str | None:
    if src.driver not in (GEOPACKAGE, FILEGDB):
        return None
    path = src.label
    try:
        listed = pyogrio.list_layers(src.gdal_path)
    except Exception as exc:
        raise _open_error(where, path, exc) from None
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


# --- where the bytes are: a plain file / folder, or one dataset inside a zip ----------------------------

@dataclass(frozen=True)
class _ZipEntry:
    info: zipfile.ZipInfo
    name: str  # decoded name (GBK names of Windows zips recovered), for messages and member:

    @property
    def raw(self) -> str:
        """The name zipfile and GDAL's /vsizip/ address the member by (CP437 reading of legacy names)."""
        return self.info.filename


@dataclass
class _ZipDataset:
    driver: str
    name: str  # decoded path inside the zip: "地类图斑/DLTB.shp", "sandiao.gdb"
    inner: str  # the raw path GDAL opens
    entries: list[_ZipEntry]


@dataclass
class _Source:
    """Where a source's bytes are: a file or .gdb folder, or one vector dataset inside a zip archive."""

    path: Path  # as the manifest names it: the file, the .gdb folder or the .zip
    driver: str
    member: str | None = None  # the dataset inside the zip (decoded), None for a plain source
    entries: tuple[_ZipEntry, ...] = ()  # the zip members that make up the dataset
    inner: str | None = None  # raw member path GDAL opens
    where: str = ""
    _dbf: bytes | None = field(default=None, repr=False)

    @property
    def zipped(self) -> bool:
        return self.member is not None

    @property
    def gdal_path(self) -> Path | str:
        return f"/vsizip/{{{self.path}}}/{self.inner}" if self.zipped else self.path

    @property
    def label(self) -> str:
        return f"{self.path}!/{self.member}" if self.zipped else str(self.path)

    def sidecar(self, suffix: str) -> _ZipEntry | Path | None:
        """A shapefile sidecar (case-insensitive): a path, or the zip member."""
        if not self.zipped:
            return _sidecar(self.path, suffix)
        stem = str(PurePosixPath(self.inner or "").with_suffix("")).lower()
        return next((e for e in self.entries if e.raw.lower() == stem + suffix), None)

    def sidecar_name(self, suffix: str) -> str | None:
        found = self.sidecar(suffix)
        return None if found is None else (found.name if isinstance(found, Path) else found.name.rsplit("/", 1)[-1])

    def sidecar_bytes(self, suffix: str) -> bytes | None:
        found = self.sidecar(suffix)
        if found is None:
            return None
        return found.read_bytes() if isinstance(found, Path) else self._read(found)

    def dbf(self) -> Path | bytes:
        """The shapefile's DBF: its path (memory-mapped by the readers), or its bytes from the zip."""
        found: Path | bytes | None = _sidecar(self.path, ".dbf") if not self.zipped else self._dbf
        if found is None and self.zipped:
            found = self._dbf = self.sidecar_bytes(".dbf")
        if found is None:
            raise SourceError(f"{self.label}: the shapefile has no .dbf beside it; copy every file of the shapefile "
                              "(.shp, .shx, .dbf, .prj, .cpg)")
        return found

    def read_bytes(self) -> bytes:
        """The bytes of a one-file source (GeoJSON)."""
        return self._read(self.entries[0]) if self.zipped else self.path.read_bytes()

    def verify(self) -> None:
        """Decompress every member of the dataset once, so zipfile checks each CRC-32. GDAL's /vsizip/ does not:
        a flipped byte in a zipped .shp would be read as a moved vertex and a wrong area."""
        if not self.zipped:
            return
        if self.driver == SHAPEFILE:
            self.dbf()  # read whole (and checked): the encoding rules need it anyway
        skip = self.sidecar(".dbf") if self._dbf is not None else None
        current = self.entries[0]
        try:
            with zipfile.ZipFile(self.path) as zf:
                for entry in self.entries:
                    if entry is skip:
                        continue
                    current = entry
                    with zf.open(entry.info) as fh:
                        while fh.read(1 << 22):
                            pass
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            raise self._damaged(current, exc) from None

    def _read(self, entry: _ZipEntry) -> bytes:
        try:
            with zipfile.ZipFile(self.path) as zf:
                return zf.read(entry.info)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            raise self._damaged(entry, exc) from None

    def _damaged(self, entry: _ZipEntry, exc: Exception) -> SourceError:
        text = str(exc)
        problem = ("fails its CRC-32 check (its bytes are not the ones that were zipped)" if "CRC" in text
                   else f"cannot be decompressed ({_first_line(exc)})")
        return SourceError(f"{self.where}: zip archive {self.path} is damaged: {entry.name} {problem}; copy or "
                           "download the zip again")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _names(names) -> str:
    names = list(names)
    shown = ", ".join(names[:_LISTED])
    return shown + (f" … (+{len(names) - _LISTED} more)" if len(names) > _LISTED else "")


def _decoded_name(info: zipfile.ZipInfo) -> str:
    """A member's name as its author wrote it. Names without the UTF-8 flag are bytes in the zipping machine's
    code page, which zipfile (and GDAL) read as CP437; Chinese Windows tools write GBK there."""
    name = info.filename
    if info.flag_bits & 0x800 or name.isascii():
        return name
    raw = name.encode("cp437")
    for codec in ("utf-8", "gb18030"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return name


def _zip_entries(path: Path, where: str) -> list[_ZipEntry]:
    """The zip's files (no folders, no macOS __MACOSX/ and ._ resource forks), or SourceError."""
    if not path.is_file():
        raise SourceError(f"{where}: file {path} does not exist; fix path: in the manifest (relative paths start at "
                          "the manifest's folder)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise SourceError(f"{where}: {path} is not a readable zip archive ({_first_line(exc)}); copy or download "
                          "it again (an interrupted copy leaves a truncated zip), or zip the layer again") from None
    entries = []
    for info in infos:
        if info.is_dir():
            continue
        name = _decoded_name(info)
        parts = name.split("/")
        if "__MACOSX" in parts or parts[-1].startswith("._"):
            continue
        entries.append(_ZipEntry(info, name))
    return entries


def _zip_datasets(entries: list[_ZipEntry]) -> list[_ZipDataset]:
    """The vector datasets in a zip, at any depth: shapefiles (with the sidecars beside them), .gdb folders,
    GeoPackages and .geojson files."""
    gdbs: dict[str, _ZipDataset] = {}
    shapes: dict[str, list[_ZipEntry]] = {}
    singles = []
    for e in entries:
        parts, raw_parts = e.name.split("/"), e.raw.split("/")
        k = next((i for i, part in enumerate(parts[:-1]) if part.lower().endswith(".gdb")), None)
        if k is not None:
            key = "/".join(raw_parts[:k + 1])
            gdbs.setdefault(key, _ZipDataset(FILEGDB, "/".join(parts[:k + 1]), key, [])).entries.append(e)
            continue
        suffix = PurePosixPath(e.name).suffix.lower()
        if suffix in SHAPEFILE_SIDECARS:
            shapes.setdefault(str(PurePosixPath(e.raw).with_suffix("")).lower(), []).append(e)
        elif suffix in ZIP_FORMATS:
            singles.append(_ZipDataset(ZIP_FORMATS[suffix], e.name, e.raw, [e]))
    found = list(gdbs.values()) + singles
    for group in shapes.values():
        shp = next((e for e in group if e.name.lower().endswith(".shp")), None)
        if shp is not None:
            found.append(_ZipDataset(SHAPEFILE, shp.name, shp.raw, [shp] + [e for e in group if e is not shp]))
    return sorted(found, key=lambda d: d.name.lower())


def _zip_member(path: Path, entries, datasets, member: str, where: str) -> _ZipDataset:
    """The dataset ``member:`` names: its path inside the zip (any case, / or \\), or a file name unique in it."""
    want = member.strip().replace("\\", "/").strip("/")
    want = want[2:] if want.startswith("./") else want
    low = want.lower()

    def base(name: str) -> str:
        return name.rsplit("/", 1)[-1].lower()

    hits = [d for d in datasets if low in (d.name.lower(), d.inner.lower())]
    if not hits and "/" not in low:
        hits = [d for d in datasets if base(d.name) == low]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise SourceError(f"{where}: member: {member} matches several datasets in {path} "
                          f"({_names(d.name for d in hits)}); give its full path inside the zip")
    files = [e for e in entries if low in (e.name.lower(), e.raw.lower())]
    if not files and "/" not in low:
        files = [e for e in entries if base(e.name) == low]
    if len(files) == 1 and PurePosixPath(files[0].name).suffix.lower() in (".json", ".geojson"):
        return _ZipDataset(GEOJSON, files[0].name, files[0].raw, files)
    if files:
        kind = PurePosixPath(files[0].name).suffix.lower() or "(no extension)"
        raise SourceError(f"{where}: member: {member} in {path} is a {kind} file, not a vector dataset; name a .shp, "
                          ".gpkg or .geojson file or a .gdb folder inside the zip")
    raise SourceError(f"{where}: {path} has no member {member!r}; its vector datasets are "
                      f"{_names(d.name for d in datasets) or 'none'}; fix member: in the manifest")


def _locate_in_zip(path: Path, member: str | None, layer: str | None, where: str) -> _Source:
    entries = _zip_entries(path, where)
    if not entries:
        raise SourceError(f"{where}: zip archive {path} is empty; zip the layer's files (a shapefile's .shp .shx .dbf "
                          ".prj .cpg, a .gdb folder or a .gpkg) again")
    datasets = _zip_datasets(entries)
    if member is not None:
        chosen = _zip_member(path, entries, datasets, member, where)
    elif len(datasets) == 1:
        chosen = datasets[0]
    elif not datasets:
        nested = [e.name for e in entries if e.name.lower().endswith(ZIP_SUFFIX)]
        parquet = [e.name for e in entries if PurePosixPath(e.name).suffix.lower() in (".parquet", ".geoparquet")]
        if nested:
            hint = f"; it holds zip files ({_names(nested)}): extract the outer zip and point path: at the inner one"
        elif parquet:
            hint = f"; GeoParquet ({_names(parquet)}) is not read inside a zip: extract it and point path: at it"
        else:
            hint = ("; give a zip holding a shapefile (.shp .shx .dbf .prj .cpg), a .gdb folder, a GeoPackage or a "
                    "GeoJSON file")
        listed = _names(sorted((e.name for e in entries), key=str.lower))
        raise SourceError(f"{where}: {path} holds no vector data (files: {listed}){hint}")
    else:
        named = [d for d in datasets if layer is not None and d.driver == SHAPEFILE
                 and PurePosixPath(d.name).stem.lower() == layer.lower()]
        if len(named) == 1:
            chosen = named[0]
        elif named:
            raise SourceError(f"{where}: {path} holds several shapefiles named {layer!r} "
                              f"({_names(d.name for d in named)}); set member: <path inside the zip> in the manifest")
        else:
            none_named = f" and none is a shapefile named {layer!r}" if layer is not None else ""
            raise SourceError(f"{where}: {path} holds {len(datasets)} vector datasets "
                              f"({_names(d.name for d in datasets)}){none_named}; set member: <path inside the zip> "
                              "in the manifest (or layer: <shapefile name>)")
    for e in chosen.entries:
        if e.info.flag_bits & 0x1:
            raise SourceError(f"{where}: {e.name} in {path} is password-protected; zip the layer again without a "
                              "password")
        if e.info.compress_type not in ZIP_METHODS:
            method = _ZIP_METHOD_NAMES.get(e.info.compress_type, f"method {e.info.compress_type}")
            raise SourceError(f"{where}: {e.name} in {path} is compressed with {method}, which GDAL cannot read in "
                              "place; zip the layer again with the standard Deflate method (e.g. 7-Zip: -mm=Deflate)")
    src = _Source(path, chosen.driver, member=chosen.name, entries=tuple(chosen.entries), inner=chosen.inner,
                  where=where)
    if chosen.driver == SHAPEFILE:
        missing = [s for s in (".shx", ".dbf") if src.sidecar(s) is None]
        if missing:
            raise SourceError(f"{where}: shapefile {chosen.name} in {path} lacks its {' and '.join(missing)} file(s); "
                              "put all files of the shapefile (.shp .shx .dbf .prj .cpg) into the zip, in the same "
                              "folder")
    return src


def _locate(spec, where: str) -> _Source:
    """The source a LayerSpec names, checked to exist and be complete (a zip: the dataset chosen in it)."""
    path = Path(spec.path)
    member = getattr(spec, "member", None)
    if path.suffix.lower() == ZIP_SUFFIX:
        return _locate_in_zip(path, member, spec.layer, where)
    if member is not None:
        raise SourceError(f"{where}: member: {member} is only for a .zip path, and path is {path}; remove member:")
    return _Source(path, _check_exists(path, where), where=where)


# --- DBF bytes: encoding detection and exact wide numbers ------------------------------------------------

@dataclass
class _DbfField:
    name: bytes
    kind: str
    offset: int
    width: int
    decimals: int


def _dbf_layout(dbf: Path | bytes, name: str = "") -> tuple[np.ndarray, list[_DbfField]]:
    """The DBF's records as an (n, record_length) uint8 array (memory-mapped, or a view of the bytes read from a
    zip) and its field descriptors."""
    size = dbf.stat().st_size if isinstance(dbf, Path) else len(dbf)
    if size < 32:
        shown = name or (str(dbf) if isinstance(dbf, Path) else "the DBF")
        raise SourceError(f"{shown} is not a DBF file (only {size} bytes); export the shapefile again")
    if not isinstance(dbf, Path):
        head = bytes(dbf[:32])
        header_len = int.from_bytes(head[8:10], "little")
        descriptors = bytes(dbf[32:max(header_len, 32)])
    else:
        with open(dbf, "rb") as fh:
            head = fh.read(32)
            header_len = int.from_bytes(head[8:10], "little")
            descriptors = fh.read(max(header_len - 32, 0))
    n_records = int.from_bytes(head[4:8], "little")
    record_len = int.from_bytes(head[10:12], "little")
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
    if not isinstance(dbf, Path):
        records = np.frombuffer(dbf, dtype=np.uint8, count=n * record_len, offset=header_len).reshape(n, record_len)
    else:
        records = np.memmap(dbf, dtype=np.uint8, mode="r", offset=header_len, shape=(n, record_len))
    return records, fields


def _column_bytes(records: np.ndarray, f: _DbfField) -> np.ndarray:
    col = np.ascontiguousarray(records[:, f.offset:f.offset + f.width])
    return col.view(f"S{f.width}").ravel()


def _nonascii_text(dbf: Path | bytes, name: str = "") -> list[bytes]:
    """Distinct text bytes (field names and character values) that contain a non-ASCII byte."""
    records, fields = _dbf_layout(dbf, name)
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


def _shapefile_encoding(src: _Source, declared: str | None, where: str) -> tuple[str, str, list[Finding]]:
    """(codec, origin, findings) for a shapefile, plain or zipped, per the rules in the module docstring."""
    values = _nonascii_text(src.dbf(), src.label)
    codec: str | None
    if declared:
        codec = _canonical(declared, where)
        ok, bad = _decodes(values, codec)
        if not ok:
            raise EncodingError(f"{where}: encoding: {declared} does not decode the text "
                                f"(e.g. bytes {(bad or b'')[:24]!r}); remove encoding: to let yizhangtu detect it, "
                                "or give the right one")
        return codec, "manifest", []
    findings: list[Finding] = []
    cpg = src.sidecar_bytes(".cpg")
    if cpg is not None:
        raw = cpg.decode("ascii", errors="replace").strip().upper()
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
                                    message=f"{src.sidecar_name('.cpg')} says {raw} but the text is not valid "
                                            f"{codec} (e.g. bytes {(bad or b'')[:24]!r}); decoded as {detected} "
                                            f"instead — fix or delete the .cpg, or set encoding: {detected} "
                                            "in the manifest"))
            return detected, "detected", findings
    return detect_encoding(values, where), "detected", findings


def _exact_wide_integers(src: _Source, gdf: pd.DataFrame, codec: str) -> None:
    """Replace floating columns of wide integer DBF fields (N(16+, 0)) by their exact digits as text."""
    records, fields = _dbf_layout(src.dbf(), src.label)
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
        if not progress or n_rows <= CHUNK_ROWS or not isinstance(source, (Path, str)) or not geometry:
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


def _geojson_bytes(src: _Source, declared: str | None, where: str) -> tuple[bytes | Path, str, str]:
    """The GeoJSON as UTF-8 (the file, or a buffer: re-encoded if it is not UTF-8, or read from a zip), its
    encoding and origin."""
    raw = src.read_bytes()
    path = src.path if not src.zipped else Path(src.member or "")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    as_is = raw if src.zipped else src.path  # GDAL reads a plain UTF-8 file itself
    if declared:
        codec = _canonical(declared, where)
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as exc:
            raise EncodingError(f"{where}: encoding: {declared} does not decode {path.name} at byte {exc.start}; "
                                "remove encoding: to let yizhangtu detect it, or give the right one") from None
        return (as_is if codec in ("utf-8", "ascii") else text.encode("utf-8")), codec, "manifest"
    try:
        raw.decode("utf-8")
        return as_is, "utf-8", "format"
    except UnicodeDecodeError:
        pass
    for codec in ("gbk", "gb18030"):
        try:
            return raw.decode(codec).encode("utf-8"), codec, "detected"
        except UnicodeDecodeError:
            continue
    raise EncodingError(f"{where}: {path.name} is neither UTF-8 nor GBK/GB18030 text; set encoding: in the "
                        "manifest")


def _open_error(where: str, path: Path | str, exc: Exception) -> SourceError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # GDAL's advice to "specify the driver by prefixing the file path with '<DRIVER>:'" is for GDAL users; a
    # manifest names files, not drivers: that sentence goes
    sentences = [t for t in re.split(r"(?<=[.;])\s+", text) if "prefix" not in t.lower() and "driver" not in t.lower()]
    text = " ".join(sentences).strip().rstrip(".;, ") or "not a readable file of its format"
    if str(path) in text:
        text = text.replace(f"'{path}'", "it").replace(str(path), "it")
    return SourceError(f"{where}: cannot read {path}: {text}; check that the file is complete and not corrupted "
                       "(copy or export it again)")


def _head_and_size(src: _Source, suffix: str, n: int) -> tuple[bytes, int, bytes | None] | None:
    """(first ``n`` bytes, size, whole content if it was read) of a shapefile part, None if it is absent."""
    found = src.sidecar(suffix) if suffix != ".shp" or src.zipped else src.path
    if found is None:
        return None
    if isinstance(found, Path):
        with open(found, "rb") as fh:
            return fh.read(n), found.stat().st_size, None
    data = src._read(found)
    return data[:n], len(data), data


def check_shapefile(src: _Source, where: str) -> None:
    """SourceError if the .shp, .shx and .dbf of a shapefile disagree with their own headers or with each
    other: a file cut short (a copy interrupted, a download stopped) reads as fewer rows in GDAL, silently
    for a .dbf and with a mere warning for a .shp — a damaged layer must not be stored in place of a good one."""
    stem = src.member or src.path.name
    base = stem.rsplit(".", 1)[0]
    remedy = "export or copy the shapefile again (all of its .shp, .shx and .dbf)"
    shp = _head_and_size(src, ".shp", 100)
    if shp is None:
        raise SourceError(f"{where}: {stem} is missing; {remedy}")
    head, size, _ = shp
    if size < 100 or int.from_bytes(head[0:4], "big") != 9994:
        raise SourceError(f"{where}: {stem} is not a shapefile (no shapefile header in its first 100 bytes, "
                          f"{size:,} bytes in all); {remedy}")
    declared = int.from_bytes(head[24:28], "big") * 2
    if size < declared:
        raise SourceError(f"{where}: {stem} is cut short: its header says {declared:,} bytes, the file has "
                          f"{size:,}; {remedy}")
    n_shapes = None
    shx = _head_and_size(src, ".shx", 100)
    if shx is not None:
        xhead, xsize, xdata = shx
        xdeclared = int.from_bytes(xhead[24:28], "big") * 2 if len(xhead) >= 28 else 0
        if xsize < 100 or int.from_bytes(xhead[0:4], "big") != 9994:
            raise SourceError(f"{where}: {base}.shx is not a shapefile index ({xsize:,} bytes); {remedy}")
        if xsize < xdeclared:
            raise SourceError(f"{where}: {base}.shx is cut short: its header says {xdeclared:,} bytes, the file "
                              f"has {xsize:,}; {remedy}")
        n_shapes = max(xdeclared - 100, 0) // 8
        if n_shapes:
            found = src.sidecar(".shx")
            if xdata is None and isinstance(found, Path):
                with open(found, "rb") as fh:
                    fh.seek(100 + 8 * (n_shapes - 1))
                    last = fh.read(8)
            else:
                last = (xdata or b"")[100 + 8 * (n_shapes - 1):100 + 8 * n_shapes]
            if len(last) == 8:
                end = (int.from_bytes(last[0:4], "big") + 4 + int.from_bytes(last[4:8], "big")) * 2
                if end > size:
                    raise SourceError(f"{where}: {stem} is cut short: its record {n_shapes:,} ends at byte {end:,}, "
                                      f"the file has {size:,}; {remedy}")
    dbf = _head_and_size(src, ".dbf", 32)
    if dbf is not None:
        dhead, dsize, _ = dbf
        if dsize < 32:
            raise SourceError(f"{where}: {base}.dbf is not a DBF file (only {dsize} bytes); {remedy}")
        n_records = int.from_bytes(dhead[4:8], "little")
        header_len = int.from_bytes(dhead[8:10], "little")
        record_len = int.from_bytes(dhead[10:12], "little")
        expected = header_len + n_records * record_len
        if dsize < expected:
            whole = max(dsize - header_len, 0) // record_len if record_len else 0
            raise SourceError(f"{where}: {base}.dbf is cut short: its header says {n_records:,} records "
                              f"({expected:,} bytes), the file has {dsize:,} bytes ({whole:,} whole records); "
                              f"{remedy}")
        if n_shapes is not None and n_shapes != n_records:
            raise SourceError(f"{where}: {base}.shx indexes {n_shapes:,} shapes but {base}.dbf holds {n_records:,} "
                              f"records: the files do not belong together or one is damaged; {remedy}")


def source_info(spec, where: str | None = None) -> SourceInfo:
    """CRS, extent and row count of a source without reading its features (cheap: headers / metadata)."""
    where = where or f"layer '{spec.role}'"
    src = _locate(spec, where)
    path, driver = src.path, src.driver
    if driver == SHAPEFILE:
        check_shapefile(src, where)
    if driver == GEOPARQUET:
        quick = _parquet_info(path)
        if quick is not None:
            return quick
        gdf = _read_parquet(path, where, columns=[])
        return SourceInfo(path, driver, None, gdf.crs, _box(gdf.total_bounds) if len(gdf) else None, len(gdf))
    layer = _choose_layer(src, spec.layer, where)
    target: bytes | Path | str = src.gdal_path
    if driver == GEOJSON:
        target, _, _ = _geojson_bytes(src, spec.encoding, where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            info = pyogrio.read_info(target, layer=layer, force_total_bounds=True,
                                     **({"encoding": "ISO-8859-1"} if driver == SHAPEFILE else {}))
    except Exception as exc:
        raise _open_error(where, src.label, exc) from None
    crs = CRS.from_user_input(info["crs"]) if info.get("crs") else None
    bounds = info.get("total_bounds")
    count = int(info.get("features") or 0)
    if bounds is None or count == 0 or not np.all(np.isfinite(bounds)):
        bounds = None
    return SourceInfo(path, driver, layer, crs, None if bounds is None else _box(bounds), count)


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
        return SourceInfo(path, GEOPARQUET, None, crs, _box(bbox) if meta.num_rows else None, int(meta.num_rows))
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
    src = _locate(spec, where)
    src.verify()  # a zipped dataset: every member's CRC-32, before GDAL reads it
    path, driver = src.path, src.driver
    if driver == SHAPEFILE:
        check_shapefile(src, where)
    findings: list[Finding] = []
    layer = None
    if driver == GEOPARQUET:
        gdf = _read_parquet(path, where)
        encoding, enc_origin = "utf-8", "format"
    else:
        layer = _choose_layer(src, spec.layer, where)
        source: bytes | Path | str = src.gdal_path
        gdal_encoding = None
        if driver == SHAPEFILE:
            encoding, enc_origin, findings = _shapefile_encoding(src, spec.encoding, where)
            gdal_encoding = "ISO-8859-1"  # byte-transparent: text is decoded below, in Python
        elif driver == GEOJSON:
            source, encoding, enc_origin = _geojson_bytes(src, spec.encoding, where)
            raw = source if isinstance(source, bytes) else Path(source).read_bytes()
            if re.search(rb"\\u0000", raw, re.IGNORECASE):  # GDAL would end the text there, without a word
                raise SourceError(f"{where}: {src.label} holds a NUL character (\\u0000) in a text value; a NUL "
                                  "would cut the text short — remove it from the file")
        else:
            encoding, enc_origin = "utf-8", "format"
        try:
            n_rows = int(pyogrio.read_info(source, layer=layer, **({"encoding": gdal_encoding} if gdal_encoding
                                                                    else {}))["features"]) if progress else 0
            gdf = _read_ogr(io.BytesIO(source) if isinstance(source, bytes) else source, layer, gdal_encoding,
                            n_rows, progress, f"{spec.role} {src.member or path.name}", geometry)
        except (EncodingError, SourceError):
            raise
        except Exception as exc:
            raise _open_error(where, src.label, exc) from None
        if driver == SHAPEFILE:
            gdf = _decode_frame(gdf, encoding)
            _exact_wide_integers(src, gdf, encoding)
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
                      sha256=sha256_of(path) if geometry else "", findings=findings, member=src.member)

"""A region set: the counties of a 市 or 省 and the units they form, from one ``region.yaml``.

```yaml
region: {code: "130000", name: 样例省, level: province}   # or level: city with a 市 code (…00)
cities:                                                   # province only: the 市 (code → name)
  - {code: "130500", name: 样例市}
  - {code: "130600", name: 示例市}
counties:                                                 # each county's own manifest (docs/ingest.md)
  - c130501/manifest.yaml                                 # its 市 from its code: 130501 → 130500
  - {manifest: c130602/manifest.yaml, city: "130600"}     # or named (a 直管县, a renumbered county)
counties_dir: more/                                       # optional: every */manifest.yaml one folder down
```

Paths are relative to the region file. Each county keeps its own manifest, its own 3° Gauss-Krüger zone
and its own store (docs/scale.md); the region set only says which counties there are and which 市 / 省 they
roll up into. Codes follow GB/T 2260: 省 ``XX0000``, 市 ``XXXX00``, 县 six digits not ending in ``00``; a
county's 市 is the first four digits of its code unless ``city:`` says otherwise, and every county of a
province starts with the province's two digits. Anything else is refused with the value and the remedy.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ManifestError
from .manifest import Manifest, load_manifest
from .yamlfile import read_yaml_file

LEVELS = ("province", "city", "county")
_CODE = re.compile(r"^\d{6}$")


@dataclass(frozen=True)
class CountyEntry:
    code: str  # 6-digit 行政区代码
    name: str
    manifest_path: Path
    city: str  # the 市 code it rolls up into (the region's own code for a city region)


@dataclass(frozen=True)
class RegionSet:
    path: Path
    code: str
    name: str
    level: str  # province | city
    cities: dict[str, str]  # 市 code → name (province) / {code: name} of the region itself (city)
    counties: tuple[CountyEntry, ...]

    def county(self, code: str) -> CountyEntry:
        for c in self.counties:
            if c.code == code:
                return c
        raise ManifestError(f"county {code!r} is not in region set {self.path}; counties: "
                            f"{', '.join(c.code for c in self.counties)}")

    def units(self) -> list[dict]:
        """Every unit above the townships: (code, name, level, parent_code), parents first, by code."""
        rows = [{"code": self.code, "name": self.name, "level": self.level, "parent_code": None}]
        if self.level == "province":
            rows += [{"code": c, "name": n, "level": "city", "parent_code": self.code}
                     for c, n in sorted(self.cities.items())]
        rows += [{"code": c.code, "name": c.name, "level": "county", "parent_code": c.city}
                 for c in sorted(self.counties, key=lambda c: c.code)]
        return rows

    def manifest(self, code: str) -> Manifest:
        return load_manifest(self.county(code).manifest_path)


def is_region_file(path: str | Path) -> bool:
    """True when the YAML at ``path`` is a region set (it lists ``counties`` or ``counties_dir``), not one
    county's manifest."""
    p = Path(path)
    if not p.is_file():
        return False
    try:  # the bounded loader: a manifest nested 20 000 deep is refused by load_manifest, not a RecursionError here
        doc = read_yaml_file(p, "manifest", error=ManifestError)
    except ManifestError:
        return False
    return isinstance(doc, dict) and ("counties" in doc or "counties_dir" in doc)


def _code(value, where: str) -> str:
    text = str(value).strip() if value is not None else ""
    if not _CODE.match(text):
        raise ManifestError(f"{where} = {value!r} is not a 6-digit 行政区代码 (GB/T 2260); write it quoted, "
                            "e.g. \"130500\"")
    return text


def load_region(path: str | Path) -> RegionSet:
    """Read and check a region set; ManifestError names the first problem and its remedy."""
    path = Path(path).resolve()
    doc = read_yaml_file(path, "region set", missing_hint="give the path of a region.yaml", error=ManifestError)
    if not isinstance(doc, dict):
        raise ManifestError(f"region set {path} must be a mapping with region:, cities: and counties:")
    unknown = sorted(set(doc) - {"region", "cities", "counties", "counties_dir"})
    if unknown:
        raise ManifestError(f"region set {path}: unknown key(s) {unknown}; allowed: region, cities, counties, "
                            "counties_dir")
    region = doc.get("region")
    if not isinstance(region, dict):
        raise ManifestError(f"region set {path} needs region: {{code: \"130000\", name: …, level: province}}")
    code = _code(region.get("code"), "region.code")
    name = str(region.get("name") or "").strip()
    if not name:
        raise ManifestError(f"region set {path}: region.name is missing (e.g. 样例省)")
    level = str(region.get("level") or ("province" if code.endswith("0000") else "city"))
    if level == "province" and not code.endswith("0000"):
        raise ManifestError(f"region.code {code} is not a 省 code (XX0000); use level: city for a 市")
    if level == "city" and (not code.endswith("00") or code.endswith("0000")):
        raise ManifestError(f"region.code {code} is not a 市 code (XXXX00, not XX0000)")
    if level not in ("province", "city"):
        raise ManifestError(f"region.level {level!r} is unknown; use province or city")

    cities: dict[str, str] = {}
    raw_cities = doc.get("cities") or []
    if level == "city":
        if raw_cities:
            raise ManifestError("a city region set lists its counties directly; drop cities:")
        cities = {code: name}
    else:
        if not isinstance(raw_cities, list) or not raw_cities:
            raise ManifestError(f"region set {path}: a province needs cities: [{{code: \"{code[:2]}0100\", "
                                "name: …}, …]")
        for k, item in enumerate(raw_cities):
            if not isinstance(item, dict):
                raise ManifestError(f"cities[{k}] must be {{code: …, name: …}}")
            c = _code(item.get("code"), f"cities[{k}].code")
            if not c.endswith("00") or c.endswith("0000") or c[:2] != code[:2]:
                raise ManifestError(f"cities[{k}].code {c} is not a 市 code of province {code} "
                                    f"({code[:2]}XX00)")
            if c in cities:
                raise ManifestError(f"cities: {c} is listed twice")
            cities[c] = str(item.get("name") or c)

    entries: list[tuple[Path, str | None, str]] = []
    for k, item in enumerate(doc.get("counties") or []):
        where = f"counties[{k}]"
        if isinstance(item, str):
            entries.append((path.parent / item, None, where))
        elif isinstance(item, dict) and "manifest" in item:
            extra = sorted(set(item) - {"manifest", "city"})
            if extra:
                raise ManifestError(f"{where}: unknown key(s) {extra}; allowed: manifest, city")
            city = _code(item["city"], f"{where}.city") if item.get("city") is not None else None
            entries.append((path.parent / str(item["manifest"]), city, where))
        else:
            raise ManifestError(f"{where} must be a manifest path or {{manifest: …, city: …}}")
    if doc.get("counties_dir"):
        folder = path.parent / str(doc["counties_dir"])
        if not folder.is_dir():
            raise ManifestError(f"counties_dir {folder} is not a folder")
        found = sorted(folder.glob("*/manifest.yaml"))
        if not found:
            raise ManifestError(f"counties_dir {folder} holds no */manifest.yaml")
        entries += [(p, None, f"counties_dir {p.parent.name}") for p in found]
    if not entries:
        raise ManifestError(f"region set {path} lists no county: add counties: [c130501/manifest.yaml, …]")

    counties: list[CountyEntry] = []
    seen: dict[str, Path] = {}
    for manifest_path, city, where in entries:
        manifest_path = manifest_path.resolve()
        if not manifest_path.is_file():
            raise ManifestError(f"{where}: county manifest {manifest_path} does not exist")
        m = load_manifest(manifest_path)
        c = _code(m.region_code, f"{manifest_path}: region.code")
        if c.endswith("00"):
            raise ManifestError(f"{manifest_path}: region.code {c} is a 市/省 code; a county manifest names its 县 "
                                "(six digits not ending in 00)")
        if c in seen:
            raise ManifestError(f"county {c} is listed twice ({seen[c]} and {manifest_path}); each county once")
        seen[c] = manifest_path
        if c[:2] != code[:2]:
            raise ManifestError(f"county {c} ({manifest_path}) is not in {level} {code}: its code must start with "
                                f"{code[:2] if level == 'province' else code[:4]}")
        if level == "city":
            if city is not None and city != code:
                raise ManifestError(f"{where}: city {city} is not this region ({code})")
            if c[:4] != code[:4] and city is None:
                raise ManifestError(f"county {c} is not in city {code} by its code; add city: \"{code}\" to its "
                                    "entry if it belongs here")
            city = code
        else:
            city = city or f"{c[:4]}00"
            if city not in cities:
                raise ManifestError(f"county {c} ({manifest_path}) belongs to city {city}, which region.yaml "
                                    f"does not list; add {{code: \"{city}\", name: …}} under cities:")
        counties.append(CountyEntry(c, m.region_name, manifest_path, city))
    empty = sorted(set(cities) - {c.city for c in counties})
    if empty:
        raise ManifestError(f"cities {empty} have no county in region set {path}; drop them or add their counties")
    return RegionSet(path, code, name, level, cities, tuple(sorted(counties, key=lambda c: c.code)))


def manifest_checksum(manifest: Manifest, version: str) -> str:
    """SHA-256 over what an ingest of ``manifest`` reads: the manifest file's bytes, every source file of
    every layer (layers.read.sha256_of) and the software version. Equal checksums → the same store."""
    from .read import sha256_of

    digest = hashlib.sha256()
    digest.update(b"yizhangtu " + version.encode())
    digest.update(manifest.path.read_bytes())
    for spec in manifest.specs():
        digest.update(f"\n{spec.role} {spec.path.name} {spec.layer} {spec.member}\n".encode())
        digest.update(sha256_of(spec.path).encode())
    return digest.hexdigest()

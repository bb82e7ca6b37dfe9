"""Sites for 合规性审查 as bureaus exchange them: a 界址点坐标 text file or a zipped shapefile → one polygon
(GeoJSON in CRS84) and a note on what was read.

界址点坐标文件 (the 国土资源部 报部 / 勘测定界 exchange text, ``.txt``; GBK or UTF-8)::

    [属性描述]
    坐标系=2000国家大地坐标系
    几度分带=3
    投影类型=高斯克吕格
    计量单位=米
    带号=38
    [地块坐标]
    5,12345.67,1,某项目用地,面,,工业用地,,@
    J1,1,4120426.549,38599634.769
    J2,1,4120479.869,38599694.962
    …

Each 地块 starts with a header line ending in ``@`` (点数, 面积, 地块号, 名称, 图形属性, 图幅号, 用途, 地类编码);
each point row is ``点号,圈号,X,Y`` with **X the northing and Y the easting** (metres, Gauss-Krüger; the easting
may carry the zone number). 圈号 1 is the outer ring, 2, 3 … holes. Only CGCS2000 (2000国家大地坐标系) is
accepted; 西安80 / 北京54 need a datum transformation first (domain.md §5) and are refused with that remedy.

Zipped shapefile: one polygon layer (the largest if several); its ``.prj`` must be CGCS2000 (geographic or a GK
zone) or WGS 84; without ``.prj`` the coordinates must reveal it (degrees, or an 8-digit zone-prefixed easting),
else the caller gives ``crs``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import shapely

from layers.errors import CRSError, GeometryError, SourceError

CGCS2000_NAMES = ("2000国家大地坐标系", "CGCS2000", "CGCS 2000", "国家2000", "2000坐标系", "中国2000")
OTHER_DATUMS = {"西安80": "Xian 1980", "1980西安": "Xian 1980", "西安1980": "Xian 1980", "北京54": "Beijing 1954",
                "1954北京": "Beijing 1954", "北京1954": "Beijing 1954"}


def gk_epsg(zone: int, width: int, prefixed: bool) -> int:
    """The CGCS2000 Gauss-Krüger EPSG code of a zone (3° zones 25–45, 6° zones 13–23)."""
    if width == 3:
        if not 25 <= zone <= 45:
            raise CRSError(f"带号={zone} is not a 3° zone of China (25–45)")
        return (4513 if prefixed else 4534) + zone - 25
    if width == 6:
        if not 13 <= zone <= 23:
            raise CRSError(f"带号={zone} is not a 6° zone of China (13–23)")
        return (4491 if prefixed else 4502) + zone - 13
    raise CRSError(f"几度分带={width}: give 3 or 6")


def _decode(data: bytes) -> str:
    for enc in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    raise SourceError("the coordinate file is neither UTF-8 nor GBK text")


def parse_jzd(data: bytes) -> tuple[dict, str, dict]:
    """(GeoJSON MultiPolygon in the file's GK CRS as [easting, northing], 'EPSG:n', info) of a 界址点 file."""
    text = _decode(data)
    attrs: dict[str, str] = {}
    section = None
    parcels: list[dict] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        m = re.fullmatch(r"\[(.+)\]", line)
        if m:
            section = m.group(1).strip()
            continue
        if section == "属性描述":
            key, sep, value = line.partition("=")
            if sep:
                attrs[key.strip()] = value.strip()
            continue
        if section != "地块坐标":
            continue
        if line.endswith("@"):
            head = [p.strip() for p in line.rstrip("@").split(",")]
            parcels.append({"name": head[3] if len(head) > 3 else "", "id": head[2] if len(head) > 2 else "",
                            "use": head[6] if len(head) > 6 else "", "rings": {}})
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            raise SourceError(f"line {n}: {raw!r} is not 点号,圈号,X,Y")
        if not parcels:
            parcels.append({"name": "", "id": "", "use": "", "rings": {}})
        try:
            ring, x, y = int(float(parts[1])), float(parts[2]), float(parts[3])
        except ValueError:
            raise SourceError(f"line {n}: {raw!r}: 圈号, X and Y must be numbers") from None
        parcels[-1]["rings"].setdefault(ring, []).append((y, x))  # X northing, Y easting → (easting, northing)
    if not parcels or not any(p["rings"] for p in parcels):
        raise SourceError("no 界址点 rows found: the file needs a [地块坐标] section with rows 点号,圈号,X,Y")
    datum = attrs.get("坐标系", "")
    for name, datum_en in OTHER_DATUMS.items():
        if name in datum:
            raise CRSError(f"坐标系={datum} ({datum_en}) is not accepted: convert the coordinates to CGCS2000 "
                           "(2000国家大地坐标系) with the bureau's datum parameters first")
    if datum and not any(n in datum for n in CGCS2000_NAMES):
        raise CRSError(f"坐标系={datum!r} is not recognised; the file must be in 2000国家大地坐标系 (CGCS2000)")
    eastings = np.array([e for p in parcels for r in p["rings"].values() for e, _ in r])
    northings = np.array([nn for p in parcels for r in p["rings"].values() for _, nn in r])
    # northings in China lie between 2 and 6 million metres and never carry a zone prefix
    if (northings >= 1e7).any() or (northings < 1e6).any():
        raise SourceError("the X column holds eastings: in a 界址点 file X is the northing and Y the easting "
                          "(swap the columns)")
    width = int(float(attrs.get("几度分带") or 3))
    prefixed = bool((eastings >= 1e7).all())
    zone = attrs.get("带号")
    if prefixed:
        zones = set((eastings // 1e6).astype(int))
        if len(zones) != 1:
            raise SourceError(f"the eastings carry several zone numbers {sorted(zones)}")
        found = zones.pop()
        if zone and int(float(zone)) != found:
            raise CRSError(f"带号={zone} but the eastings carry zone {found}")
        zone = found
    if not zone:
        raise CRSError("the file gives no 带号 and its eastings carry no zone number: add 带号=NN to [属性描述]")
    epsg = gk_epsg(int(float(zone)), width, prefixed)
    polys = []
    for p in parcels:
        rings = [p["rings"][k] for k in sorted(p["rings"])]
        if not rings or len(rings[0]) < 3:
            raise GeometryError(f"地块 {p['id'] or p['name']!r} has fewer than 3 界址点")
        closed = [r if r[0] == r[-1] else [*r, r[0]] for r in rings]
        polys.append([[list(map(float, pt)) for pt in ring] for ring in closed])
    info = {"format": "界址点坐标文件", "parcels": [{"id": p["id"], "name": p["name"], "use": p["use"],
                                               "points": sum(len(r) for r in p["rings"].values())} for p in parcels],
            "datum": datum or "2000国家大地坐标系 (assumed)", "zone": int(float(zone)), "zone_width": width,
            "epsg": epsg}
    return {"type": "MultiPolygon", "coordinates": polys}, f"EPSG:{epsg}", info


def parse_zip(data: bytes, crs: str | None = None) -> tuple[dict, str, dict]:
    """(GeoJSON geometry, crs name for the review, info) of a zipped shapefile's polygons."""
    import zipfile

    import pyogrio

    with tempfile.TemporaryDirectory(prefix="yzt-site-") as tmp:
        path = Path(tmp) / "site.zip"
        path.write_bytes(data)
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                shps = [n for n in zf.namelist() if n.lower().endswith(".shp")]
        except zipfile.BadZipFile:
            raise SourceError("the upload is not a zip file; zip the shapefile (.shp .shx .dbf .prj) or send a "
                              "界址点 .txt") from None
        if bad:
            raise SourceError(f"the zip member {bad!r} is damaged (CRC mismatch); zip the files again")
        if not shps:
            raise SourceError("the zip holds no .shp; zip the shapefile's .shp .shx .dbf .prj together")
        best = None
        for name in shps:
            frame = pyogrio.read_dataframe(f"/vsizip/{path}/{name}")
            frame = frame[frame.geometry.notna() & frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
            if len(frame) and (best is None or frame.geometry.area.sum() > best[1].geometry.area.sum()):
                best = (name, frame)
        if best is None:
            raise GeometryError("the shapefile holds no polygons; the review needs the site's polygon(s)")
        name, frame = best
    geom = shapely.union_all(np.asarray(frame.geometry.values, dtype=object))
    coords = shapely.get_coordinates(geom)
    info = {"format": "shapefile (zip)", "member": name, "features": int(len(frame))}
    if frame.crs is not None:
        from pyproj import CRS

        c = CRS.from_user_input(frame.crs)
        epsg = c.to_epsg()
        datum = c.datum.name if c.datum else ""
        if "2000" in datum or "China" in datum:
            if epsg is None:
                raise CRSError(f"the shapefile's .prj ({c.name}) is CGCS2000 but has no EPSG code; give crs=EPSG:45xx")
            if epsg == 4490:  # lon, lat in the shapefile → CRS84 order for the review
                info["crs"] = "EPSG:4490"
                return shapely.geometry.mapping(geom), "OGC:CRS84", info
            info["crs"] = f"EPSG:{epsg}"
            return shapely.geometry.mapping(geom), f"EPSG:{epsg}", info
        if epsg == 4326 or "1984" in datum:
            info["crs"] = "EPSG:4326 (taken as CGCS2000, centimetres)"
            if not c.is_geographic:
                geom = shapely.transform(geom, _to_lonlat(c))
            return shapely.geometry.mapping(geom), "OGC:CRS84", info
        raise CRSError(f"the shapefile is in {c.name} (datum {datum}); convert it to CGCS2000 first (other datums "
                       "need the bureau's transformation parameters)")
    if crs:
        info["crs"] = f"{crs} (given)"
        return shapely.geometry.mapping(geom), crs, info
    if (np.abs(coords[:, 0]) <= 180).all() and (np.abs(coords[:, 1]) <= 90).all():
        info["crs"] = "CRS84 (no .prj; degrees)"
        return shapely.geometry.mapping(geom), "OGC:CRS84", info
    east = coords[:, 0] if np.median(coords[:, 0]) < np.median(coords[:, 1]) else coords[:, 1]
    if (east >= 1e7).all() and len(set((east // 1e6).astype(int))) == 1:
        zone = int(east[0] // 1e6)
        epsg = gk_epsg(zone, 3 if zone >= 25 else 6, True)
        info["crs"] = f"EPSG:{epsg} (no .prj; zone {zone} from the eastings)"
        return shapely.geometry.mapping(geom), f"EPSG:{epsg}", info
    raise CRSError("the shapefile has no .prj and 6-digit eastings that do not reveal the zone; add the .prj or "
                   "give crs=EPSG:45xx")


def _to_lonlat(crs):
    from pyproj import Transformer

    tr = Transformer.from_crs(crs, "OGC:CRS84", always_xy=True)
    return lambda c: np.column_stack(tr.transform(c[:, 0], c[:, 1]))


def parse_site_file(filename: str, data: bytes, crs: str | None = None) -> tuple[dict, str, dict]:
    name = (filename or "").lower()
    if data[:4] == b"PK\x03\x04" or name.endswith(".zip"):
        return parse_zip(data, crs)
    if name.endswith((".txt", ".csv")) or b"[" in data[:64]:
        return parse_jzd(data)
    raise SourceError(f"file {filename!r}: send a zipped shapefile (.zip) or a 界址点坐标 text file (.txt)")

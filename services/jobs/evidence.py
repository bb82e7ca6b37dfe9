"""Evidence photos (举证照片): read their EXIF time and GPS position, and check them against the patch.

A photo is never silently accepted when it cannot show what it claims. It is *flagged* (kept, with the reason
stated in the audit log, the patch detail and the 核查表) when:

- ``far_from_patch`` — it was taken farther than ``max_distance_m`` (setting ``evidence_max_distance_m``,
  200 m) from the patch polygon (position from EXIF GPS when the photo has it, else the one typed in);
- ``before_period`` — it was taken before the patch's later image date (后时相 HSX): it cannot show the change;
- ``too_old`` — it was taken more than ``max_age_days`` (``evidence_max_age_days``, 365) before the upload;
- ``exif_time_differs`` / ``exif_position_differs`` — the EXIF time or GPS position disagree with the ones typed
  in by more than 10 minutes / 30 m (the EXIF values are the ones checked);
- ``no_exif_time`` / ``no_exif_position`` (notes, not flags) — the photo carries no EXIF time / GPS; the typed
  values are checked instead.

EXIF times without ``OffsetTimeOriginal`` are taken as China Standard Time (UTC+08:00) [practice].
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

import shapely

CST = dt.timezone(dt.timedelta(hours=8))
TIME_TOLERANCE = dt.timedelta(minutes=10)
POSITION_TOLERANCE_M = 30.0
FLAGS = {
    "far_from_patch": "拍摄位置距图斑 {distance:.0f} m，超过允许的 {limit:.0f} m",
    "before_period": "拍摄时间 {taken} 早于后时相 {hsx}，不能反映变化后的现状",
    "too_old": "拍摄时间 {taken} 早于上传前 {days} 天",
    "exif_time_differs": "照片 EXIF 拍摄时间 {exif} 与填报时间 {declared} 不一致",
    "exif_position_differs": "照片 EXIF 位置与填报位置相距 {distance:.0f} m",
}


def _rational(v) -> float:
    try:
        return float(v)
    except TypeError:
        num, den = v
        return float(num) / float(den)


def _dms(values, ref) -> float | None:
    try:
        d, m, s = (_rational(x) for x in values)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = d + m / 60.0 + s / 3600.0
    return -value if str(ref).upper() in ("S", "W") else value


def read_exif(path: Path) -> dict:
    """{'taken_at': aware datetime or None, 'lon', 'lat', 'azimuth': floats or None} of a JPEG / PNG / WebP."""
    from PIL import ExifTags, Image, UnidentifiedImageError

    out: dict[str, Any] = {"taken_at": None, "lon": None, "lat": None, "azimuth": None}
    try:
        with Image.open(path) as img:
            exif = img.getexif()
    except (UnidentifiedImageError, OSError):
        return out
    if not exif:
        return out
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    stamp = sub.get(36867) or exif.get(306)  # DateTimeOriginal, else DateTime
    if stamp:
        try:
            naive = dt.datetime.strptime(str(stamp).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
            offset = sub.get(36881)  # OffsetTimeOriginal, e.g. "+08:00"
            tz = CST
            if offset:
                sign = -1 if str(offset).startswith("-") else 1
                hh, mm = str(offset).lstrip("+-").split(":")
                tz = dt.timezone(sign * dt.timedelta(hours=int(hh), minutes=int(mm)))
            out["taken_at"] = naive.replace(tzinfo=tz)
        except ValueError:
            pass
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    if gps and 2 in gps and 4 in gps:
        out["lat"] = _dms(gps[2], gps.get(1, "N"))
        out["lon"] = _dms(gps[4], gps.get(3, "E"))
    if gps and 17 in gps:
        with contextlib.suppress(TypeError, ValueError, ZeroDivisionError):
            out["azimuth"] = _rational(gps[17]) % 360.0
    return out


def _metres(lon: float, lat: float, epsg: int):
    from layers.store.tiles import transformer

    x, y = transformer(4490, epsg).transform(lon, lat)
    return shapely.Point(x, y)


def check_evidence(path: Path | None, declared: dict, patch_geom, epsg: int, hsx: list[str],
                   uploaded_at: dt.datetime, max_distance_m: float, max_age_days: int) -> dict:
    """The checks of one evidence file: EXIF found, distance to the patch, flags (codes and messages)."""
    exif = read_exif(path) if path is not None and Path(path).is_file() else \
        {"taken_at": None, "lon": None, "lat": None, "azimuth": None}
    declared_at = dt.datetime.fromisoformat(str(declared["taken_at"]).replace("Z", "+00:00"))
    flags, notes = [], []
    taken = exif["taken_at"] or declared_at
    if exif["taken_at"] is None:
        notes.append("no_exif_time")
    elif abs(exif["taken_at"] - declared_at) > TIME_TOLERANCE:
        flags.append(("exif_time_differs", {"exif": exif["taken_at"].isoformat(), "declared": declared_at.isoformat()}))
    d_point = _metres(float(declared["lon"]), float(declared["lat"]), epsg)
    if exif["lon"] is None or exif["lat"] is None:
        notes.append("no_exif_position")
        point = d_point
    else:
        point = _metres(exif["lon"], exif["lat"], epsg)
        gap = float(shapely.distance(point, d_point))
        if gap > POSITION_TOLERANCE_M:
            flags.append(("exif_position_differs", {"distance": gap}))
    distance = float(shapely.distance(point, patch_geom)) if patch_geom is not None else None
    if distance is not None and distance > max_distance_m:
        flags.append(("far_from_patch", {"distance": distance, "limit": max_distance_m}))
    later = max((str(h)[:10] for h in hsx if h), default=None)
    if later and taken.astimezone(CST).date().isoformat() < later:
        flags.append(("before_period", {"taken": taken.astimezone(CST).strftime("%Y-%m-%d %H:%M"), "hsx": later}))
    if uploaded_at - taken > dt.timedelta(days=max_age_days):
        flags.append(("too_old", {"taken": taken.astimezone(CST).strftime("%Y-%m-%d"), "days": max_age_days}))
    return {
        "exif": {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in exif.items()},
        "checked_position": "exif" if exif["lon"] is not None else "declared",
        "distance_m": None if distance is None else round(distance, 1),
        "flags": [{"code": c, "message": FLAGS[c].format(**v)} for c, v in flags],
        "notes": notes,
        "accepted_without_flags": not flags,
    }


def checks_for_upload(bench, settings, jcbh: str, path: Path, meta: dict) -> dict:
    """The checks of a photo being uploaded to patch ``jcbh`` (recorded with the evidence in the audit log)."""
    frame, p = bench.current()
    i = bench.locate(jcbh, frame)
    geom = p.frame.geometry.iloc[i]
    hsx = []
    ids = list(frame["source_ids"].iloc[i]) if "source_ids" in frame.columns else []
    if ids and "monitoring" in bench.store.layer_names() and "HSX" in bench.store.schema("monitoring"):
        literal = ", ".join("'" + str(s).replace("'", "''") + "'" for s in ids)
        rows = bench.store.read_layer("monitoring", columns=["HSX"], where=f'"JCBH" IN ({literal})')
        hsx = [str(v)[:10] for v in rows["HSX"] if v is not None and str(v) not in ("NaT", "nan", "None")]
    image = str(meta.get("content_type", "")).startswith("image/")
    return check_evidence(path if image else None, meta, geom, p.epsg, hsx, dt.datetime.now(dt.UTC),
                          settings.evidence_max_distance_m, settings.evidence_max_age_days)

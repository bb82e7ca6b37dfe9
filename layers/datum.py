"""Datum transformations from Xian 1980 / Beijing 1954 to CGCS2000, as bureaus give them.

PROJ only knows a "ballpark" (null) transformation between these datums and CGCS2000, wrong by tens of
metres to 100+ m. Bureaus convert with local parameter sets; this module turns such a set into an explicit
PROJ pipeline from the source CRS to the target CGCS2000 CRS, and nothing else: no set, no transformation.

- helmert (7 parameters, Bursa-Wolf): applied to geocentric coordinates on the source datum's ellipsoid,
  giving CGCS2000 geocentric coordinates. x, y, z in metres; rx, ry, rz in arc-seconds; s in ppm;
  convention coordinate_frame (default, the usual Chinese convention) or position_vector.
- four_param (plane similarity): applied in the source CRS's plane coordinates (easting E, northing N, metres):
      E' = dx + (1 + scale·1e-6) · (E·cosθ − N·sinθ)
      N' = dy + (1 + scale·1e-6) · (E·sinθ + N·cosθ),   θ = rotation in arc-seconds
  and (E', N') are read as CGCS2000 coordinates in the *same* projection parameters (same zone and false
  easting) as the source CRS. Only valid for a projected source.
- pipeline: a PROJ pipeline string taking source coordinates to target coordinates, used as given.
"""

from __future__ import annotations

import math
import warnings

from pyproj import CRS, Transformer

from .crs import CGCS2000_A, CGCS2000_RF, datum_of, to_crs, DATUM_CGCS2000
from .errors import CRSError
from .manifest import DatumTransform


def _to_dict(crs: CRS) -> dict:
    with warnings.catch_warnings():  # the PROJ-string export warns about datum loss: we drop it on purpose
        warnings.simplefilter("ignore", UserWarning)
        return crs.to_dict()


def _proj_params(crs: CRS) -> str:
    """The projection/ellipsoid part of a CRS as PROJ parameters, without datum shift terms."""
    d = _to_dict(crs)
    drop = {"towgs84", "nadgrids", "no_defs", "type", "units", "datum", "wktext"}
    parts = []
    for key, value in d.items():
        if key in drop:
            continue
        parts.append(f"+{key}" if value is True else f"+{key}={value}")
    ell = crs.ellipsoid
    parts = [p for p in parts if not p.startswith(("+ellps=", "+a=", "+b=", "+rf=", "+f="))]
    parts.append(f"+a={ell.semi_major_metre!r} +rf={ell.inverse_flattening!r}")
    return " ".join(parts)


def _cgcs2000_params(crs: CRS) -> str:
    """PROJ parameters of a CGCS2000 CRS (projected or geographic) with the CGCS2000 ellipsoid."""
    d = _to_dict(crs)
    drop = {"towgs84", "nadgrids", "no_defs", "type", "units", "datum", "wktext", "ellps", "a", "b", "rf", "f"}
    parts = [f"+{k}" if v is True else f"+{k}={v}" for k, v in d.items() if k not in drop]
    parts.append(f"+a={CGCS2000_A!r} +rf={CGCS2000_RF!r}")
    return " ".join(parts)


def _step(params: str, inverse: bool = False) -> str:
    if params.startswith("+proj=longlat"):
        # geographic: PROJ pipelines work in radians for longlat steps, with unitconvert around them
        return ("+step +proj=unitconvert +xy_in=deg +xy_out=rad" if not inverse else
                "+step +proj=unitconvert +xy_in=rad +xy_out=deg")
    return f"+step {'+inv ' if inverse else ''}{params}"


def build_pipeline(source_crs, transform: DatumTransform, target_crs) -> str:
    """PROJ pipeline string: source CRS coordinates → target CGCS2000 CRS coordinates.

    Coordinates are (easting, northing) for projected CRSs and (lon, lat) in degrees for geographic ones.
    """
    src, dst = to_crs(source_crs), to_crs(target_crs)
    if datum_of(dst) != DATUM_CGCS2000:
        raise CRSError(f"target CRS {dst.name!r} is not CGCS2000")
    if transform.kind == "pipeline":
        return transform.pipeline
    src_params = _proj_params(src)
    dst_params = _cgcs2000_params(dst)
    steps = ["+proj=pipeline"]
    if transform.kind == "four_param":
        if not src.is_projected:
            raise CRSError(f"four_param parameters need a projected source CRS, got {src.name!r}; "
                           "use helmert parameters for geographic sources")
        p = transform.params
        # affine: E' = dx + k cosθ E − k sinθ N ; N' = dy + k sinθ E + k cosθ N
        theta = math.radians(p["rotation"] / 3600.0)
        k = 1.0 + p["scale"] * 1e-6
        xx, xy = k * math.cos(theta), -k * math.sin(theta)
        yx, yy = k * math.sin(theta), k * math.cos(theta)
        steps.append(f"+step +proj=affine +xoff={p['dx']!r} +yoff={p['dy']!r} "
                     f"+s11={xx!r} +s12={xy!r} +s21={yx!r} +s22={yy!r}")
        # now CGCS2000 plane coordinates in the source projection; go to the target CRS
        same_proj_cgcs = _cgcs2000_params(src)
        steps.append(_step(same_proj_cgcs, inverse=True) if src.is_projected else "")
        steps.append(_step(dst_params) if dst.is_projected else _step("+proj=longlat", inverse=True))
        return " ".join(s for s in steps if s)
    # helmert
    p = transform.params
    if src.is_projected:
        steps.append(_step(src_params, inverse=True))
    else:
        steps.append(_step("+proj=longlat"))
    ell = src.ellipsoid
    steps.append(f"+step +proj=cart +a={ell.semi_major_metre!r} +rf={ell.inverse_flattening!r}")
    steps.append(f"+step +proj=helmert +x={p['x']!r} +y={p['y']!r} +z={p['z']!r} +rx={p['rx']!r} "
                 f"+ry={p['ry']!r} +rz={p['rz']!r} +s={p['s']!r} +convention={p['convention']}")
    steps.append(f"+step +inv +proj=cart +a={CGCS2000_A!r} +rf={CGCS2000_RF!r}")
    if dst.is_projected:
        steps.append(_step(dst_params))
    else:
        steps.append(_step("+proj=longlat", inverse=True))
    return " ".join(steps)


def transformer_for(source_crs, transform: DatumTransform, target_crs) -> Transformer:
    """A pyproj Transformer applying build_pipeline (x = easting/lon, y = northing/lat)."""
    pipeline = build_pipeline(source_crs, transform, target_crs)
    try:
        return Transformer.from_pipeline(pipeline)
    except Exception as exc:
        raise CRSError(f"cannot build the datum transformation {transform.describe()}: {exc}") from None

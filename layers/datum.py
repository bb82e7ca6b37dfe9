"""Datum transformations from Xian 1980 / Beijing 1954 to CGCS2000, as bureaus give them.

PROJ only knows a "ballpark" (null) transformation between these datums and CGCS2000, wrong by tens of
metres to 100+ m. Bureaus convert with local parameter sets; this module turns such a set into an explicit
PROJ pipeline from the source CRS to the target CGCS2000 CRS, and nothing else: no set, no transformation.

- helmert (7 parameters, Bursa-Wolf): applied to geocentric coordinates on the source datum's ellipsoid,
  giving CGCS2000 geocentric coordinates. x, y, z in metres; rx, ry, rz in arc-seconds; s in ppm;
  convention coordinate_frame (rotation of the axes: the usual Chinese and ISO 19111 "coordinate frame
  rotation", EPSG method 1032) or position_vector (rotation of the points, EPSG 1033). The two differ in the
  sign of the rotations: over a county that is ~170 m, so the manifest must name it (no default).
- four_param (plane similarity): applied in the source CRS's plane coordinates (easting E, northing N, metres),
  with θ = rotation in arc-seconds, k = 1 + scale·1e-6:
      position_vector   (rotates the points counter-clockwise by θ):
          E' = dx + k · (E·cosθ − N·sinθ)      N' = dy + k · (E·sinθ + N·cosθ)
      coordinate_frame  (rotates the axes by θ, i.e. the points by −θ; this is the usual Chinese four-parameter
          formula x' = Δx + k(x·cosα + y·sinα) … when it is written with x = northing, y = easting):
          E' = dx + k · (E·cosθ + N·sinθ)      N' = dy + k · (−E·sinθ + N·cosθ)
  and (E', N') are read as CGCS2000 coordinates in the *same* projection parameters (same zone and false
  easting) as the source CRS. Only valid for a projected source.
- pipeline: a PROJ pipeline string taking source coordinates to target coordinates, used as given.

Control points (同名点: E, N in the source plane and E, N in the CGCS2000 plane of the same projection) check a
given parameter set, or — with ``estimate:`` — give one: :func:`fit_four_param` and :func:`fit_helmert` solve
the linear least-squares problem, :func:`control_residuals` applies the resulting pipeline to the source points
and returns the distance to each target point; :func:`checked_transform` refuses a set whose largest residual
exceeds ``max_residual_m``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from pyproj import CRS, Transformer

from .crs import CGCS2000_A, CGCS2000_RF, DATUM_CGCS2000, datum_of, to_crs
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
    assert ell is not None  # every CRS the manifest can name has an ellipsoid
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
        assert transform.pipeline is not None  # parsed with its string
        return transform.pipeline
    src_params = _proj_params(src)
    dst_params = _cgcs2000_params(dst)
    steps = ["+proj=pipeline"]
    if transform.kind == "four_param":
        if not src.is_projected:
            raise CRSError(f"four_param parameters need a projected source CRS, got {src.name!r}; "
                           "use helmert parameters for geographic sources")
        p = transform.params
        # affine: E' = dx + k cosθ E − k sinθ N ; N' = dy + k sinθ E + k cosθ N (position vector);
        # the coordinate-frame convention rotates the other way
        sign = -1.0 if p.get("convention") == "coordinate_frame" else 1.0
        theta = sign * math.radians(p["rotation"] / 3600.0)
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
    assert ell is not None  # every CRS the manifest can name has an ellipsoid
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


# --- control points: check or fit a parameter set ---------------------------------------------------------

def control_target_crs(source_crs) -> CRS:
    """The CGCS2000 CRS with the projection parameters of ``source_crs`` (where the control points' target
    coordinates are given)."""
    from pyproj.crs import ProjectedCRS

    src = to_crs(source_crs)
    if not src.is_projected:
        raise CRSError(f"control points need a projected source CRS (plane coordinates), got {src.name!r}")
    conversion = src.coordinate_operation
    assert conversion is not None  # a projected CRS has its conversion
    return ProjectedCRS(conversion=conversion, geodetic_crs=CRS.from_epsg(4490), name=f"CGCS2000 / {conversion.name}")


def control_residuals(source_crs, transform: DatumTransform) -> np.ndarray:
    """Distance (m) between each control point's transformed source position and its target position."""
    pts = np.asarray(transform.control_points, dtype=float).reshape(-1, 4)
    if not len(pts):
        return np.zeros(0)
    t = transformer_for(source_crs, transform, control_target_crs(source_crs))
    e, n = t.transform(pts[:, 0], pts[:, 1])
    return np.hypot(np.asarray(e) - pts[:, 2], np.asarray(n) - pts[:, 3])


def fit_four_param(points) -> dict:
    """Least-squares plane similarity (position-vector convention) from (n, 4) rows E, N, E', N'.

    E' = dx + a·E − b·N, N' = dy + b·E + a·N is linear in (dx, dy, a, b); coordinates are centred first so the
    normal equations stay well conditioned. Returns {dx, dy, rotation (″), scale (ppm), convention}."""
    pts = np.asarray(points, dtype=float).reshape(-1, 4)
    c = pts[:, :2].mean(axis=0)
    e, n = pts[:, 0] - c[0], pts[:, 1] - c[1]
    rows = np.zeros((2 * len(pts), 4))
    rows[0::2] = np.column_stack([np.ones_like(e), np.zeros_like(e), e, -n])
    rows[1::2] = np.column_stack([np.zeros_like(e), np.ones_like(e), n, e])
    rhs = np.empty(2 * len(pts))
    rhs[0::2], rhs[1::2] = pts[:, 2], pts[:, 3]
    (tx, ty, a, b), *_ = np.linalg.lstsq(rows, rhs, rcond=None)
    # back from centred source coordinates: E' = tx + a(E − cE) − b(N − cN)
    dx = tx - a * c[0] + b * c[1]
    dy = ty - b * c[0] - a * c[1]
    k, theta = math.hypot(a, b), math.atan2(b, a)
    return {"dx": float(dx), "dy": float(dy), "rotation": math.degrees(theta) * 3600.0,
            "scale": (k - 1.0) * 1e6, "convention": "position_vector"}


def fit_helmert(source_crs, points) -> dict:
    """Least-squares 7-parameter Bursa-Wolf set (position-vector convention, small rotations) from control points
    given as plane coordinates: the source points are taken to geocentric coordinates on the source datum's
    ellipsoid, the targets to CGCS2000 geocentric coordinates; X' − X = T + s·X + R×X is linear in the seven
    parameters. Returns {x, y, z (m), rx, ry, rz (″), s (ppm), convention}."""
    src = to_crs(source_crs)
    pts = np.asarray(points, dtype=float).reshape(-1, 4)
    ell = src.ellipsoid
    assert ell is not None  # every CRS the manifest can name has an ellipsoid
    to_src_cart = Transformer.from_pipeline(
        "+proj=pipeline " + _step(_proj_params(src), inverse=True)
        + f" +step +proj=cart +a={ell.semi_major_metre!r} +rf={ell.inverse_flattening!r}")
    to_dst_cart = Transformer.from_pipeline(
        "+proj=pipeline " + _step(_cgcs2000_params(src), inverse=True)
        + f" +step +proj=cart +a={CGCS2000_A!r} +rf={CGCS2000_RF!r}")
    x0, y0, z0 = (np.asarray(v) for v in to_src_cart.transform(pts[:, 0], pts[:, 1], np.zeros(len(pts))))
    x1, y1, z1 = (np.asarray(v) for v in to_dst_cart.transform(pts[:, 2], pts[:, 3], np.zeros(len(pts))))
    # unknowns: tx ty tz rx ry rz s (rotations in radians, s as a ratio); position vector:
    # dX = tx + s·X − rz·Y + ry·Z ; dY = ty + rz·X + s·Y − rx·Z ; dZ = tz − ry·X + rx·Y + s·Z
    m = len(pts)
    a = np.zeros((3 * m, 7))
    one, zero = np.ones(m), np.zeros(m)
    a[0::3] = np.column_stack([one, zero, zero, zero, z0, -y0, x0])
    a[1::3] = np.column_stack([zero, one, zero, -z0, zero, x0, y0])
    a[2::3] = np.column_stack([zero, zero, one, y0, -x0, zero, z0])
    rhs = np.empty(3 * m)
    rhs[0::3], rhs[1::3], rhs[2::3] = x1 - x0, y1 - y0, z1 - z0
    scale = np.array([1, 1, 1, 1e-6, 1e-6, 1e-6, 1e-6])  # balance the columns (metres vs radians)
    sol, *_ = np.linalg.lstsq(a * scale, rhs, rcond=None)
    tx, ty, tz, rx, ry, rz, s = sol * scale
    arcsec = math.degrees(1.0) * 3600.0
    return {"x": float(tx), "y": float(ty), "z": float(tz), "rx": float(rx * arcsec), "ry": float(ry * arcsec),
            "rz": float(rz * arcsec), "s": float(s * 1e6), "convention": "position_vector"}


def checked_transform(source_crs, transform: DatumTransform, where: str) -> tuple[DatumTransform, str | None]:
    """The transform to apply (fitted when ``estimate``), and a note on its control-point residuals.

    Refuses (CRSError) a set whose largest residual exceeds ``max_residual_m``, naming the worst point and the
    likely cause (a wrong rotation convention shows as tens to hundreds of metres)."""
    if not transform.control_points:
        return transform, None
    pts = np.asarray(transform.control_points, dtype=float)
    if transform.estimate:
        params = fit_four_param(pts) if transform.kind == "four_param" else fit_helmert(source_crs, pts)
        transform = transform.with_params(params)
    res = control_residuals(source_crs, transform)
    worst = int(np.argmax(res))
    rms = float(np.sqrt(np.mean(res ** 2)))
    note = (f"control points ({transform.control_source}, {len(res)}): residual RMS {rms:.3f} m, max "
            f"{res[worst]:.3f} m (point {worst + 1})")
    if res[worst] > transform.max_residual_m:
        hint = (" — a residual this large usually means the rotation convention is the other one "
                "(coordinate_frame vs position_vector), or the control points are in other coordinates"
                if res[worst] > 10 * transform.max_residual_m else "")
        raise CRSError(f"{where}: the datum transformation {transform.describe()} misses its control points by up "
                       f"to {res[worst]:.3f} m (point {worst + 1}; RMS {rms:.3f} m), more than max_residual_m "
                       f"{transform.max_residual_m:g} m{hint}; check the parameters and convention: in the manifest")
    return transform, note

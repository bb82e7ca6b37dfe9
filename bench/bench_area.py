"""Ellipsoidal area of 300k patches: ours (vectorised) vs pyproj.Geod per polygon and a pyproj LAEA pipeline.

    .venv/bin/python bench/bench_area.py [--patches 300000] [--vertices 16]
"""

import argparse
import time

import numpy as np
import pyproj
import shapely
from pyproj import Transformer

from layers.area import ellipsoidal_area


def make(n, vertices, seed=1):
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(460_000, 540_000, n), rng.uniform(4_100_000, 4_140_000, n)
    t = np.linspace(0, 2 * np.pi, vertices + 1)[:-1]
    r = rng.uniform(30, 90, (n, 1)) * (1 + 0.3 * np.sin(3 * t)[None, :])
    ring = np.stack([cx[:, None] + r * np.cos(t), cy[:, None] + r * np.sin(t)], -1)
    return shapely.polygons(np.concatenate([ring, ring[:, :1]], 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=300_000)
    ap.add_argument("--vertices", type=int, default=16)
    args = ap.parse_args()
    polys = make(args.patches, args.vertices)
    best = min(_time(lambda: ellipsoidal_area(polys, 4547)) for _ in range(3))
    ours = ellipsoidal_area(polys, 4547)

    tr = Transformer.from_pipeline("+proj=pipeline +step +inv +proj=tmerc +lon_0=114 +x_0=500000 +ellps=GRS80 "
                                   "+step +proj=laea +lat_0=37.2 +lon_0=115 +ellps=GRS80")

    def laea():
        c = shapely.get_coordinates(polys)
        x, y = tr.transform(c[:, 0], c[:, 1])
        return shapely.area(shapely.set_coordinates(polys.copy(), np.column_stack([x, y])))

    t_laea = _time(laea)
    geod = pyproj.Geod(a=6378137.0, rf=298.257222101)
    to_ll = Transformer.from_crs(4547, 4490, always_xy=True)
    sample = polys[:20_000]

    def per_polygon():
        out = []
        for p in sample:
            xy = np.asarray(p.exterior.coords)
            lon, lat = to_ll.transform(xy[:, 0], xy[:, 1])
            out.append(abs(geod.polygon_area_perimeter(lon, lat)[0]))
        return np.array(out)

    t_geod = _time(per_polygon) * len(polys) / len(sample)
    ref = per_polygon()
    err = np.max(np.abs(ours[: len(ref)] - ref) / ref)
    print(f"{len(polys)} patches × {args.vertices} vertices")
    print(f"{'method':42s} {'seconds':>9s} {'ratio':>7s}")
    print(f"{'yizhangtu ellipsoidal_area (vectorised)':42s} {best:9.3f} {1.0:7.1f}")
    print(f"{'pyproj pipeline to LAEA + shapely.area':42s} {t_laea:9.3f} {t_laea / best:7.1f}")
    print(f"{'pyproj.Geod per polygon (extrapolated)':42s} {t_geod:9.3f} {t_geod / best:7.1f}")
    print(f"max relative difference to pyproj.Geod: {err:.2e}")


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()

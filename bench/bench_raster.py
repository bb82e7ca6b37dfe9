"""Benchmark: stream slope grades over a county DEM at 5 m (30 000 × 30 000 cells) without loading it.

    .venv/bin/python bench/bench_raster.py [--size 30000] [--block 1024] [--keep DIR]

Writes a tiled, compressed GeoTIFF DEM (EPSG:4547, 5 m, float32) block by block into a temporary folder, then
runs the slope-grade pass of analysis.raster.slope over it block by block (one-cell halo), accumulating a
grade histogram, and prints the cells per second and the peak resident memory (must stay below 2 GB; the DEM
is 3.35 GiB as float32). GDAL's block cache is bounded at 512 MB, as in the `yzt raster` commands. Not a
test: figures only.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.raster.slope import iter_slope_blocks, slope_grades
from layers.raster import RasterSource


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_dem(path: Path, size: int, cell: float = 5.0, block: int = 256) -> None:
    tr = Affine(cell, 0, 590_000.0, 0, -cell, 4_130_000.0)
    with rasterio.Env(GDAL_CACHEMAX=256 * 2**20), rasterio.open(path, "w", driver="GTiff", width=size, height=size,
                                                               count=1, dtype="float32",
                       crs="EPSG:4547", transform=tr, tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate", predictor=3, nodata=-9999.0, BIGTIFF="YES") as ds:
        for r in range(0, size, block):
            rows = min(block, size - r)
            yy, xx = np.mgrid[r:r + rows, 0:size].astype("float32")
            z = (50 + 0.002 * xx + 400 * np.sin(xx / 900.0) * np.cos(yy / 1300.0) ** 2
                 + 60 * np.sin((xx + yy) / 211.0) + 120 * np.sin(xx / 97.0) * np.sin(yy / 131.0)
                 ).astype("float32")
            ds.write(z, 1, window=((r, r + rows), (0, size)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=30_000)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--keep", type=Path, default=None, help="write the DEM here and keep it")
    args = ap.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="yzt-bench-raster-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"dem_{args.size}.tif"
    try:
        t0 = time.perf_counter()
        if not path.exists():  # written by a child process: its memory is not the streaming pass's
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                pool.apply(write_dem, (path, args.size))
        t1 = time.perf_counter()
        print(f"DEM {args.size} × {args.size} cells at 5 m ({args.size ** 2 * 4 / 2 ** 30:.2f} GiB as float32), "
              f"file {path.stat().st_size / 2 ** 20:.0f} MiB, written in {t1 - t0:.1f} s")
        hist = np.zeros(6, dtype=np.int64)
        t2 = time.perf_counter()
        # GDAL's block cache defaults to 5 % of physical memory; yzt raster commands bound it to 512 MB too
        with rasterio.Env(GDAL_CACHEMAX=512 * 2**20), RasterSource(path, "EPSG:4547", role="dem") as dem:
            for _, slope in iter_slope_blocks(dem, args.block):
                g = slope_grades(slope)
                ok = np.isfinite(g)
                hist += np.bincount(g[ok].astype(np.int64), minlength=6)
        t3 = time.perf_counter()
        cells = args.size ** 2
        print(f"slope + grades streamed in {t3 - t2:.1f} s ({cells / (t3 - t2) / 1e6:.1f} M cells/s), "
              f"block {args.block} with a 1-cell halo")
        print("cells by grade: " + ", ".join(f"{k}: {hist[k] / cells:.1%}" for k in range(1, 6)))
        peak = peak_rss_mb()
        print(f"peak RSS {peak:.0f} MB ({'below' if peak < 2048 else 'ABOVE'} the 2 GB limit)")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Reading blocks with a halo from a raster source (a layers.raster RasterSource / ArrayRaster)."""

from __future__ import annotations

import numpy as np
from rasterio.windows import Window


def read_with_halo(source, window: Window, halo: int, indexes=1) -> np.ndarray:
    """The window's cells plus ``halo`` cells each side, NaN where the halo falls off the grid.

    ``indexes``: an int gives a 2-D array, a list a 3-D (bands, rows, cols) array."""
    g = source.grid
    r0, c0 = int(window.row_off), int(window.col_off)
    r1, c1 = r0 + int(window.height), c0 + int(window.width)
    rr0, cc0 = max(r0 - halo, 0), max(c0 - halo, 0)
    rr1, cc1 = min(r1 + halo, g.height), min(c1 + halo, g.width)
    data = source.read(Window(cc0, rr0, cc1 - cc0, rr1 - rr0), indexes=indexes)
    shape = (int(window.height) + 2 * halo, int(window.width) + 2 * halo)
    out = np.full(data.shape[:-2] + shape, np.nan)
    out[..., rr0 - r0 + halo:rr1 - r0 + halo, cc0 - c0 + halo:cc1 - c0 + halo] = data
    return out

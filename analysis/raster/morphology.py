"""Binary morphology with a (2r + 1) × (2r + 1) square: erosion, dilation, opening, closing.

scipy.ndimage is used when it is installed; otherwise the same operations run in numpy (separable running
AND / OR over shifted copies). Both give identical results (tested), with the same border conventions:
outside the array counts as background for dilation and for the erosion of an opening, and as foreground for
the erosion of a closing — so a closing never eats into changes that touch the image edge.
"""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - depends on the environment
    from scipy import ndimage as _ndi
except ImportError:  # pragma: no cover
    _ndi = None

HAVE_SCIPY = _ndi is not None


def _shift_reduce(mask: np.ndarray, r: int, axis: int, op, border: bool) -> np.ndarray:
    if r <= 0:
        return mask.copy()
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    padded = np.pad(mask, pad, constant_values=border)
    n = mask.shape[axis]
    out: np.ndarray | None = None
    for k in range(2 * r + 1):
        sl = [slice(None), slice(None)]
        sl[axis] = slice(k, k + n)
        part = padded[tuple(sl)]
        out = part.copy() if out is None else op(out, part)
    assert out is not None  # the loop runs at least once
    return out


def erode(mask: np.ndarray, r: int, border: bool = False, use_scipy: bool | None = None) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if r <= 0:
        return mask.copy()
    if (HAVE_SCIPY if use_scipy is None else use_scipy):
        return _ndi.binary_erosion(mask, structure=np.ones((2 * r + 1, 2 * r + 1), bool), border_value=int(border))
    return _shift_reduce(_shift_reduce(mask, r, 0, np.logical_and, border), r, 1, np.logical_and, border)


def dilate(mask: np.ndarray, r: int, use_scipy: bool | None = None) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if r <= 0:
        return mask.copy()
    if (HAVE_SCIPY if use_scipy is None else use_scipy):
        return _ndi.binary_dilation(mask, structure=np.ones((2 * r + 1, 2 * r + 1), bool), border_value=0)
    return _shift_reduce(_shift_reduce(mask, r, 0, np.logical_or, False), r, 1, np.logical_or, False)


def opening(mask: np.ndarray, r: int, use_scipy: bool | None = None) -> np.ndarray:
    """Removes foreground specks and strands narrower than 2r + 1 cells."""
    return dilate(erode(mask, r, False, use_scipy), r, use_scipy)


def closing(mask: np.ndarray, r: int, use_scipy: bool | None = None) -> np.ndarray:
    """Fills holes and gaps narrower than 2r + 1 cells."""
    return erode(dilate(mask, r, use_scipy), r, True, use_scipy)


def clean(mask: np.ndarray, open_r: int, close_r: int, use_scipy: bool | None = None) -> np.ndarray:
    """Opening then closing. Depends on cells within 2·(open_r + close_r) of each cell (the block halo)."""
    return closing(opening(mask, open_r, use_scipy), close_r, use_scipy)


def halo(open_r: int, close_r: int) -> int:
    return 2 * (open_r + close_r)

"""Glyph PBFs for MapLibre labels, made from an installed font (Noto Sans CJK SC from Debian fonts-noto-cjk).

MapLibre draws text from signed-distance-field (SDF) glyphs fetched as protocol-buffer files, 256 code points
each (``{fontstack}/{start}-{end}.pbf``). Nothing may download at run time, so the glyphs are made here: each
glyph is rendered at 24 px with a 3 px border (Pillow), its SDF computed with an exact Euclidean distance
transform (scipy) — 8 px radius, edge at 0.75, as TinySDF and node-fontnik do — and the metrics written with
the same conventions MapLibre uses for the glyphs it renders itself (``top`` = ascent − 27). CJK ideographs
are drawn by the browser (``localIdeographFontFamily``); the ranges made at setup cover Latin, digits,
punctuation and full-width forms. Any other range is rendered on request.

``python -m services.jobs.glyphs --out DIR`` writes the default ranges (scripts/setup.sh runs it).
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import threading
from pathlib import Path

import numpy as np

SIZE = 24
BUFFER = 3
RADIUS = 8.0
CUTOFF = 0.25
TOP_ADJUSTMENT = 27
FONT_STACK = "Noto Sans CJK SC Regular"
DEFAULT_RANGES = (0, 256, 8192, 12288, 65280)  # Latin, Latin-1; general punctuation; CJK symbols; full-width
FALLBACK_FONT = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2)
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def font_file() -> tuple[str, int]:
    """(path, face index) of Noto Sans CJK SC, asked from fontconfig."""
    try:
        out = subprocess.run(["fc-match", "-f", "%{file}:%{index}", "Noto Sans CJK SC"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        path, _, index = out.rpartition(":")
        if path and "CJK" in path and Path(path).is_file():
            return path, int(index or 0)
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    if Path(FALLBACK_FONT[0]).is_file():
        return FALLBACK_FONT
    raise FileNotFoundError("Noto Sans CJK SC is not installed: apt-get install fonts-noto-cjk (scripts/setup.sh)")


@functools.lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    path, index = font_file()
    return ImageFont.truetype(path, SIZE, index=index)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint((number << 3) | wire) + payload


def _uint(number: int, value: int) -> bytes:
    return _field(number, 0, _varint(int(value)))


def _sint(number: int, value: int) -> bytes:
    return _field(number, 0, _varint((int(value) << 1) ^ (int(value) >> 31)))


def _bytes(number: int, value: bytes) -> bytes:
    return _field(number, 2, _varint(len(value)) + value)


def sdf(coverage: np.ndarray) -> np.ndarray:
    """An 8-bit SDF of a glyph's coverage (0…1): 255 deep inside, 191 on the edge, 0 far outside."""
    from scipy import ndimage

    inside = coverage >= 0.5
    if not inside.any():
        return np.zeros(coverage.shape, dtype=np.uint8)
    outside_d = ndimage.distance_transform_edt(~inside)
    inside_d = ndimage.distance_transform_edt(inside)
    # sub-pixel edge: shift by the coverage of the boundary pixels (TinySDF does the same with its grey levels)
    d = np.where(inside, -(inside_d - 0.5) - (coverage - 0.5), outside_d - 0.5 + (0.5 - coverage).clip(0, 0.5))
    return np.clip(np.round(255 - 255 * (d / RADIUS + CUTOFF)), 0, 255).astype(np.uint8)


def glyph(code: int) -> bytes | None:
    """The protobuf ``glyph`` message of one code point, None if the font has no drawing for it."""
    from PIL import Image, ImageDraw

    font = _font()
    ch = chr(code)
    advance = int(round(font.getlength(ch)))
    x0, y0, x1, y1 = font.getbbox(ch, anchor="ls")
    width, height = max(0, x1 - x0), max(0, y1 - y0)
    if width == 0 or height == 0:  # space and other blanks: metrics only
        return (_uint(1, code) + _bytes(2, b"") + _uint(3, 0) + _uint(4, 0) + _sint(5, 0)
                + _sint(6, -TOP_ADJUSTMENT) + _uint(7, advance))
    img = Image.new("L", (width + 2 * BUFFER, height + 2 * BUFFER), 0)
    ImageDraw.Draw(img).text((BUFFER - x0, BUFFER - y0), ch, font=font, fill=255, anchor="ls")
    bitmap = sdf(np.asarray(img, dtype=np.float32) / 255.0)
    return (_uint(1, code) + _bytes(2, bitmap.tobytes()) + _uint(3, width) + _uint(4, height) + _sint(5, x0)
            + _sint(6, -y0 - TOP_ADJUSTMENT) + _uint(7, advance))


def glyph_range(start: int, stack: str = FONT_STACK) -> bytes:
    """The PBF of code points start … start + 255 (start a multiple of 256)."""
    if start < 0 or start % 256 or start > 65280:
        raise ValueError(f"glyph range start {start} must be a multiple of 256 in 0…65280")
    from PIL import ImageFont  # noqa: F401 - fail early without Pillow

    font = _font()
    glyphs = b""
    with _LOCK:  # Pillow's FreeType face is not thread-safe
        cmap = _codepoints()
        for code in range(start, start + 256):
            if code in cmap and code >= 32:
                g = glyph(code)
                if g is not None:
                    glyphs += _bytes(3, g)
    del font
    stack_msg = _bytes(1, stack.encode()) + _bytes(2, f"{start}-{start + 255}".encode()) + glyphs
    return _bytes(1, stack_msg)


@functools.lru_cache(maxsize=1)
def _codepoints() -> frozenset:
    from fontTools.ttLib import TTCollection, TTFont

    path, index = font_file()
    font = TTCollection(path).fonts[index] if path.endswith(".ttc") else TTFont(path)
    return frozenset(font.getBestCmap())


def write_ranges(out: Path, starts=DEFAULT_RANGES, stack: str = FONT_STACK) -> list[Path]:
    folder = Path(out) / stack
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in starts:
        path = folder / f"{start}-{start + 255}.pbf"
        path.write_bytes(glyph_range(start, stack))
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="write MapLibre glyph PBFs from the installed Noto Sans CJK SC")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    paths = write_ranges(args.out)
    print(f"glyphs: {len(paths)} ranges of {FONT_STACK!r} in {args.out}")  # noqa: T201 - setup's script
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

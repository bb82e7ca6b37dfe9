"""MapLibre glyphs, served locally: ``GET /glyphs/{fontstack}/{start}-{end}.pbf``.

The ranges made at setup (services/jobs/glyphs.py → services/web/glyphs/) are served from disk; any other range
is rendered from the installed font on first request and kept in memory. Every font stack name is answered
with Noto Sans CJK SC (the one font the page uses).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response

from ..errors import RequestError
from ..jobs.glyphs import FONT_STACK, glyph_range

GENERATED = Path(__file__).resolve().parent.parent / "web" / "glyphs" / FONT_STACK
_CACHE: dict[int, bytes] = {}
_LOCK = threading.Lock()


def glyph_pbf(start: int) -> bytes:
    path = GENERATED / f"{start}-{start + 255}.pbf"
    if path.is_file():
        return path.read_bytes()
    with _LOCK:
        if start not in _CACHE:
            _CACHE[start] = glyph_range(start)
        return _CACHE[start]


def install(app: FastAPI, settings) -> None:
    router = APIRouter(tags=["web"])

    @router.get("/glyphs/{fontstack}/{name}", include_in_schema=False)
    def glyphs(fontstack: str, name: str):
        m = re.fullmatch(r"(\d+)-(\d+)\.pbf", name)
        if not m or int(m.group(2)) != int(m.group(1)) + 255 or int(m.group(1)) % 256 or int(m.group(1)) > 65280:
            raise RequestError(f"glyph range {name!r}: give START-END.pbf with START a multiple of 256 and "
                               "END = START + 255")
        return Response(glyph_pbf(int(m.group(1))), media_type="application/x-protobuf",
                        headers={"Cache-Control": "public, max-age=86400"})

    app.include_router(router)

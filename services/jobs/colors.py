"""The 三调 cartographic colour table (data/sandiao_colors.yaml): DLBM → colour, and the 一级 / 二级 legend."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from layers.codes import SANDIAO_CODES
from layers.errors import RuleError
from layers.yamlfile import read_yaml_file

COLOR_TABLE = Path(__file__).resolve().parents[2] / "data" / "sandiao_colors.yaml"
FALLBACK = "#cccccc"


@functools.lru_cache(maxsize=4)
def load_colors(path: Path = COLOR_TABLE) -> dict:
    """{'source', 'colors': {DLBM: '#rrggbb'}, 'classes': [{code, name, members: [{code, name, color}]}]}."""
    doc = read_yaml_file(Path(path), "colour table", missing_hint="restore data/sandiao_colors.yaml") or {}
    colors = {str(k): str(v) for k, v in (doc.get("colors") or {}).items()}
    bad = [k for k, v in colors.items() if not re.fullmatch(r"#[0-9a-fA-F]{6}", v)]
    if bad:
        raise RuleError(f"colour table {path}: {', '.join(bad)} must be '#rrggbb'")
    unknown = sorted(set(colors) - set(SANDIAO_CODES))
    if unknown:
        raise RuleError(f"colour table {path}: {', '.join(unknown)} are not 三调 codes")
    classes = []
    for c in doc.get("classes") or []:
        members = [{"code": m, "name": SANDIAO_CODES.get(m, m), "color": colors.get(m, FALLBACK)}
                   for m in c.get("members", [])]
        classes.append({"code": str(c["code"]), "name": str(c["name"]), "color": members[0]["color"] if members
                        else FALLBACK, "members": members})
    return {"source": doc.get("source", ""), "colors": colors, "classes": classes}


def color_of(code: str | None) -> str:
    return load_colors()["colors"].get(str(code or ""), FALLBACK)

"""The house rules that keep the three rooms apart, checked by walking each package's imports with ast."""

import ast
import re
from pathlib import Path

import pytest

from layers.fields import FIELDS

ROOT = Path(__file__).resolve().parent.parent
# a room may import only the rooms listed for it
ALLOWED = {"layers": {"layers"}, "analysis": {"analysis", "layers"},
           "services": {"services", "analysis", "layers", "data"}}
ROOMS = {"layers", "analysis", "services", "data"}


def imported_rooms(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & ROOMS
    return found


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_imports_go_one_way(room):
    offenders = {}
    for path in sorted((ROOT / room).rglob("*.py")):
        bad = imported_rooms(path) - ALLOWED[room]
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


@pytest.mark.parametrize("room", ["layers", "analysis"])
def test_only_services_read_the_environment(room):
    readers = [str(p.relative_to(ROOT)) for p in sorted((ROOT / room).rglob("*.py"))
               if "os.environ" in p.read_text(encoding="utf-8") or "getenv(" in p.read_text(encoding="utf-8")]
    assert readers == []


def test_readme_glossary_lists_every_field_code():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in readme.splitlines() if line.startswith("| ") and line.count("|") >= 5}
    missing = {code: f.zh for code, f in FIELDS.items() if rows.get(code) != f.zh}
    assert missing == {}


# How a store is laid out (tables, ids, geometry columns, indexes, SQL) is known in layers/store only.
LAYOUT = re.compile(r"\bSELECT\s|\bINSERT\s+INTO\b|\bUPDATE\s+\S+\s+SET\b|\bCREATE\s+(TABLE|INDEX|TRIGGER)\b|"
                    r"gpkg_contents|gpkg_geometry_columns|rtree_|\bimport (sqlite3|psycopg)\b|\bST_[A-Z][A-Za-z]+\(")


@pytest.mark.parametrize("room", ["services", "analysis", "layers"])
def test_only_layers_store_knows_the_store_layout(room):
    offenders = {}
    for path in sorted((ROOT / room).rglob("*.py")):
        if path.is_relative_to(ROOT / "layers" / "store"):
            continue
        found = sorted({m.group(0).strip() for m in LAYOUT.finditer(path.read_text(encoding="utf-8"))})
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


HTTP_OR_CLI = {"fastapi", "starlette", "click", "uvicorn", "pygeoapi"}


@pytest.mark.parametrize("room", ["jobs", "reports"])
def test_jobs_and_reports_speak_neither_http_nor_cli(room):
    """services/jobs and services/reports are the use cases and their documents: no web framework, no click,
    and nothing from the doors (api, cli, ogc, web) or from the HTTP error table."""
    offenders = {}
    doors = {"services.api", "services.cli", "services.ogc", "services.web", "services.errors", "services.auth"}
    for path in sorted((ROOT / "services" / room).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: services.<room>.<module> → resolve against services/
                    base = ["services", room][: max(0, 2 - node.level + 1)]
                    names = [".".join([*base, node.module] if node.module else base)]
                else:
                    names = [node.module or ""]
            else:
                continue
            found |= {n for n in names if n.split(".")[0] in HTTP_OR_CLI or n.startswith(tuple(doors))}
        if found:
            offenders[str(path.relative_to(ROOT))] = sorted(found)
    assert offenders == {}

"""The bad-input corpus (issue 12, item 3 and the damaged-input parts of item 7): every case of tests/badinput.py
is ingested with `yzt ingest` over a store that already holds the good county. A refused case: exit 2, one line
on stderr naming the file (and what is wrong), and the store byte for byte as it was, with no file left beside
it. A case accepted by design: exit 0, and the case says why.

Before issue 12 a .dbf cut in half stored 99 of 200 rows, a .shp cut in half dropped 101 rows with a warning,
an empty layer replaced a full one, a vertex at 1e300 and a NUL in a text value were stored, a 20 000-deep
manifest and `area_tolerance: abc` ended in tracebacks, and a symbolic link loop was reported as missing.
"""

from __future__ import annotations

import hashlib
import shutil

import pytest
from click.testing import CliRunner

from services.cli import cli
from tests.badinput import Case, build, cases, make_base

CASES = cases()


def test_the_corpus_has_at_least_fifty_refusals():
    assert len([c for c in CASES if c.accepted is None]) >= 50
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """The good county and a store holding it."""
    root = tmp_path_factory.mktemp("badinput")
    base = root / "good"
    manifest = make_base(base)
    store = root / "store" / "store.gpkg"
    result = CliRunner().invoke(cli, ["ingest", str(manifest), "--store", str(store), "--no-progress"])
    assert result.exit_code == 0, result.output
    return base, store


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, good, tmp_path):
    base, good_store = good
    store_dir = tmp_path / "store"
    shutil.copytree(good_store.parent, store_dir)
    store = store_dir / good_store.name
    before = _digest(store_dir)
    manifest = build(case, base, tmp_path / "src")
    result = CliRunner().invoke(cli, ["ingest", str(manifest), "--store", str(store), "--no-progress", *case.args])
    if case.accepted is not None:
        assert result.exit_code == 0, (case.accepted, result.output)
        return
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yzt: error: "), result.stderr
    assert "Traceback" not in result.output
    assert "DRIVER" not in lines[0] and "prefix" not in lines[0], lines[0]  # GDAL's advice is for GDAL users
    for words in case.words:
        assert words in lines[0], (words, lines[0])
    assert _digest(store_dir) == before  # the store byte for byte as it was, nothing left beside it

"""The upstream behaviour each fix in services/ogc/upstream.py corrects, asserted on the upstream code itself
(docs/upstream/ has the patches). When an upgrade of pygeoapi or pygeofilter fixes one, its test here fails:
then the fix, this test and its page in docs/upstream/ can go."""

from __future__ import annotations

import pyproj
import pytest
import shapely

from services.ogc import upstream
from services.ogc.crs import box_in_store

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
E4547 = "http://www.opengis.net/def/crs/EPSG/0/4547"
BOX = [115.06, 37.20, 115.072, 37.21]  # about 1 km, 3° from the zone's central meridian


@pytest.fixture
def count_transformers(monkeypatch):
    calls = []
    real = pyproj.Transformer.from_crs

    def counting(*args, **kwargs):
        calls.append(args[:2])
        return real(*args, **kwargs)

    monkeypatch.setattr(pyproj.Transformer, "from_crs", counting)
    return calls


def test_upstream_builds_a_transformer_per_call(count_transformers):
    transform_bbox = upstream.original("pygeoapi.crs.transform_bbox")
    first = transform_bbox(BOX, CRS84, E4547)
    second = transform_bbox(BOX, CRS84, E4547)
    assert first == second
    assert len(count_transformers) == 2  # upstream: one new transformer per request
    count_transformers.clear()
    ours = [upstream.transform_bbox(BOX, CRS84, E4547) for _ in range(3)]
    assert all(list(b) == pytest.approx(first, abs=1e-6) for b in ours)  # the same numbers pygeoapi computes
    assert len(count_transformers) <= 1  # ours: built once, then reused


def test_upstream_get_crs_builds_a_new_crs_per_call():
    get_crs = upstream.original("pygeoapi.crs.get_crs")
    assert get_crs(E4547) == get_crs(E4547)
    assert get_crs(E4547) is not get_crs(E4547)  # upstream: a new CRS object every call
    assert upstream.get_crs(E4547) is upstream.get_crs(E4547)


def test_upstream_carries_a_bbox_by_its_corners():
    """pygeoapi's box is the two transformed corners (EPSG:4547 axis order: northing, easting); the exact image of
    the CRS84 box, turned by the meridian convergence, pokes out of it, so features there would be missed."""
    transform_bbox = upstream.original("pygeoapi.crs.transform_bbox")
    n0, e0, n1, e1 = transform_bbox(BOX, CRS84, E4547)
    tr = pyproj.Transformer.from_crs(4490, 4547)  # authority order both sides: (lat, lon) → (northing, easting)
    assert (n0, e0) == pytest.approx(tr.transform(BOX[1], BOX[0]), abs=1e-6)  # lower-left corner only
    assert (n1, e1) == pytest.approx(tr.transform(BOX[3], BOX[2]), abs=1e-6)  # upper-right corner only
    upstream_box = shapely.box(e0, n0, e1, n1)
    exact = box_in_store(BOX, "CRS84", 4547).polygon
    missed = exact.difference(upstream_box)
    assert not upstream_box.covers(exact)
    assert missed.area > 10_000  # m²: the two slivers of a 1 km box pygeoapi's provider never sees
    # our selection covers the requested area: the exact polygon, whose envelope holds every corner
    ox0, oy0, ox1, oy1 = box_in_store(BOX, "CRS84", 4547).outer
    assert ox0 <= e0 and oy0 <= n0 and ox1 >= e1 and oy1 >= n1


def test_upstream_cql2_and_or_precedence():
    from lark.exceptions import LarkError
    from pygeofilter.ast import And, Not, Or
    from pygeofilter.parsers.cql2_text import parse

    text = "AA = 1 OR BB = 2 AND CC = 3"
    theirs = parse(text)
    assert isinstance(theirs, And) and isinstance(theirs.lhs, Or)  # upstream: (AA = 1 OR BB = 2) AND CC = 3
    with pytest.raises(LarkError):
        parse("NOT (AA = 1 OR BB = 2)")  # upstream: NOT only before a single predicate
    ours = upstream.parse_cql2_text(text)
    assert isinstance(ours, Or) and isinstance(ours.rhs, And)  # CQL2: AA = 1 OR (BB = 2 AND CC = 3)
    assert isinstance(upstream.parse_cql2_text("NOT (AA = 1 OR BB = 2)"), Not)


def test_upstream_to_json_uses_json_dumps(monkeypatch):
    import pygeoapi.util

    calls = []
    real = pygeoapi.util.json.dumps
    monkeypatch.setattr(pygeoapi.util.json, "dumps", lambda *a, **k: calls.append(1) or real(*a, **k))
    doc = {"type": "FeatureCollection", "features": [{"geometry": {"coordinates": [[115.10019606394621, 37.1]]}}]}
    assert pygeoapi.util.to_json(doc) == real(doc, separators=(",", ":"))
    assert calls == [1]  # upstream: the stdlib encoder writes every coordinate
    calls.clear()
    assert upstream.to_json(doc) == real(doc, separators=(",", ":"))  # the same text from orjson
    assert calls == []


def test_install_replaces_the_helpers_pygeoapi_calls():
    import pygeoapi.api.itemtypes as itemtypes
    import pygeoapi.crs as pygeoapi_crs
    import pygeoapi.provider.base as provider_base

    upstream.install()
    assert itemtypes.transform_bbox is upstream.transform_bbox
    assert itemtypes.modify_pygeofilter is upstream.modify_pygeofilter
    assert itemtypes.parse_cql2_text is upstream.parse_cql2_text
    assert itemtypes.to_json is upstream.to_json
    assert pygeoapi_crs.get_crs is upstream.get_crs and provider_base.get_crs is upstream.get_crs
    from pygeoapi.util import to_json as stock_to_json

    assert upstream.original("pygeoapi.api.itemtypes.to_json") is stock_to_json


def test_upstream_logs_a_400_as_an_error_with_its_traceback(caplog):
    """pygeoapi's get_exception logs any answered exception at ERROR with the traceback being handled."""
    from pygeoapi.api import API

    class Fake:
        def __init__(self):
            self.tpl_config, self.config, self.pretty_print = {}, {"server": {"templates": {}}}, False

    upstream.install()
    get_exception = upstream.original("pygeoapi.api.API.get_exception")
    assert get_exception is not API.get_exception  # ours is installed
    logger = __import__("logging").getLogger("pygeoapi.api")
    filters = list(logger.filters)
    for f in filters:  # look at upstream alone: without our filter
        logger.removeFilter(f)
    try:
        with caplog.at_level("INFO", logger="pygeoapi.api"):
            try:
                raise ValueError("bbox='x' is malformed")
            except ValueError:
                _, status, _ = get_exception(Fake(), 400, {}, "json", "InvalidParameterValue", "bbox='x'")
    finally:
        for f in filters:
            logger.addFilter(f)
    assert status == 400
    record = next(r for r in caplog.records if r.name == "pygeoapi.api")
    assert record.levelname == "ERROR" and record.exc_info is not None

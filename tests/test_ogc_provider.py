"""Our pygeoapi provider plugin, called the way pygeoapi calls it: errors carry the status and code of the one
table in services/errors.py (never pygeoapi's generic 500 "query error"), and answers are GeoJSON features."""

from __future__ import annotations

import pytest
from pygeoapi.provider.base import ProviderGenericError

from layers.errors import NotFoundError, StoreError
from services.errors import RequestError
from services.ogc.cql import FilterError
from services.ogc.provider import StoreProvider, provider_error
from services.ogc.upstream import parse_cql2_text
from tests.ogc_fixtures import N, ogc_gpkg, ogc_layers  # noqa: F401


@pytest.mark.parametrize("exc, status, code", [
    (RequestError("bad"), 400, "InvalidParameterValue"),
    (FilterError("bad filter"), 400, "InvalidParameterValue"),
    (NotFoundError("no such feature"), 404, "NotFound"),
    (StoreError("database down"), 503, "StoreUnavailable"),
])
def test_provider_errors_carry_the_status_of_the_one_table(exc, status, code):
    error = provider_error(exc)
    assert isinstance(error, ProviderGenericError)
    assert (error.http_status_code, error.ogc_exception_code, error.message) == (status, code, str(exc))


def _provider(store) -> StoreProvider:
    return StoreProvider({"type": "feature", "name": "services.ogc.provider.StoreProvider", "data": str(store),
                          "table": "dltb", "id_field": "id"})


def test_query_and_get_as_pygeoapi_calls_them(ogc_gpkg):
    p = _provider(ogc_gpkg)
    assert p.get_fields()["TBMJ"] == {"type": "number"}
    page = p.query(offset=2, limit=3, properties=[("DLBM", "0101")], select_properties=["BSM"])
    assert page["numberMatched"] == N * N // 8
    assert [f["id"] for f in page["features"]] == [17, 25, 33]  # every 8th row is 0101: rows 1, 9, 17, …
    assert page["features"][0]["properties"] == {"BSM": "000017"}
    assert p.get(17)["properties"]["DLBM"] == "0101"


@pytest.mark.parametrize("call, status", [
    (lambda p: p.get("abc"), 404),
    (lambda p: p.get(10 ** 6), 404),
    (lambda p: p.query(filterq=parse_cql2_text("NOPE = 1")), 400),
    (lambda p: p.query(datetime_="2024-01-01"), 400),
])
def test_bad_queries_are_provider_errors_with_their_status(ogc_gpkg, call, status):
    with pytest.raises(ProviderGenericError) as info:
        call(_provider(ogc_gpkg))
    assert info.value.http_status_code == status


def test_a_layer_that_is_gone_is_404(ogc_gpkg):
    with pytest.raises(ProviderGenericError) as info:
        StoreProvider({"type": "feature", "name": "x", "data": str(ogc_gpkg), "table": "nope"})
    assert info.value.http_status_code == 404 and "no longer in the store" in info.value.message


def test_a_new_layer_is_served_without_listing_the_collections_first(tmp_path):
    """The first request after a write may be an items request of the new layer (not /collections)."""
    from fastapi.testclient import TestClient

    from layers.store import open_store
    from services.ogc.app import create_ogc_app
    from services.settings import Settings
    from tests.ogc_fixtures import META, make_layers

    layers = make_layers()
    store = tmp_path / "store.gpkg"
    with open_store(store) as s:
        s.write_layers({"dltb": layers["dltb"]}, records=[], meta=META)
    client = TestClient(create_ogc_app(Settings(store=str(store), workdir=tmp_path / "work")))
    assert client.get("/collections/cameras/items").status_code == 404
    with open_store(store) as s:
        s.write_layers({"cameras": layers["cameras"]}, records=[])
    r = client.get("/collections/cameras/items")
    assert r.status_code == 200, r.text
    assert [f["properties"]["SXTBH"] for f in r.json()["features"]] == ["C1", "C2"]

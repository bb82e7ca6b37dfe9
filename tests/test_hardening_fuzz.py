"""Fuzzing both published API descriptions with schemathesis (issue 12, item 8): every operation of the app's
/openapi.json and of the OGC API's /ogc/openapi is called with generated requests (valid and invalid), and
every answer must conform to the document — no 5xx, the status declared for the operation, the content type
declared, the body valid against the declared schema, the declared headers present. The documents
themselves must be valid OpenAPI (openapi-spec-validator): 3.1 for the app (FastAPI), 3.0 for the OGC API.

CI runs at least 1 000 generated requests per document (derandomised: the same cases every run);
YZT_FUZZ_EXAMPLES=<n> sets the examples per operation, YZT_FUZZ_SCALE=<k> multiplies them (bench/bench_hardening.py
runs 4 × and prints the figures).
Before issue 12 the OGC document was not valid OpenAPI 3.0 ($ref to a schema as a parameter), advertised POST
and OPTIONS it does not serve and a CSV link that answers 400, and the app's document declared no security
scheme and only 200 / 422 where the API answers 400, 401, 403, 404, 412, 428 …
"""

from __future__ import annotations

import contextlib
import os
import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serve_fixtures import ADMIN, analysed_gpkg, bearer, client_for  # noqa: F401

EXAMPLES = int(os.environ.get("YZT_FUZZ_EXAMPLES", "0"))
SCALE = int(os.environ.get("YZT_FUZZ_SCALE", "1"))  # bench/bench_hardening.py: 4 × what CI runs
CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_client(analysed_gpkg, tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    store = work / "store.gpkg"
    shutil.copyfile(analysed_gpkg, store)
    return client_for(store, work, raise_server_exceptions=False, auth_max_failures=0)


@pytest.fixture(scope="module")
def app_schema(fuzz_client):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_client.app)


@pytest.fixture(scope="module")
def ogc_schema(fuzz_client):
    return schemathesis.openapi.from_asgi("/ogc/openapi?f=json", fuzz_client.app)


def test_the_documents_are_valid_openapi(fuzz_client):
    from openapi_spec_validator import OpenAPIV30SpecValidator, OpenAPIV31SpecValidator

    app_doc = fuzz_client.get("/openapi.json").json()
    ogc_doc = fuzz_client.get("/ogc/openapi?f=json").json()
    assert app_doc["openapi"].startswith("3.1") and ogc_doc["openapi"].startswith("3.0")
    errors = [str(e)[:300] for e in OpenAPIV31SpecValidator(app_doc).iter_errors()]
    assert errors == []
    errors = [str(e)[:300] for e in OpenAPIV30SpecValidator(ogc_doc).iter_errors()]
    assert errors == []


def fuzz(schema, per_operation: int, headers: dict | None = None) -> tuple[int, list[str]]:
    """Call every operation of ``schema`` with generated requests — half fitting the document, half not — and
    check each answer; (requests made, distinct failures). Schemathesis' pytest plugin is not used: its lazy
    fixture loader does not run on pytest 9."""
    from hypothesis import Phase, given
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    calls = 0
    failures: dict[str, str] = {}
    n = EXAMPLES or per_operation * SCALE

    def check_operation(operation, mode, count) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=count, deadline=None, derandomize=True, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), print_blob=False)
        def run(case):
            nonlocal calls
            calls += 1
            response = case.call(headers=headers)
            try:
                case.validate_response(response, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as exc:  # one entry per operation and kind of failure
                text = " ".join(str(exc).split())
                key = f"{operation.label} [{response.status_code}] {text[:160]}"
                failures.setdefault(key, f"{key} — e.g. {case.method} {case.formatted_path} "
                                         f"query={case.query} body={str(case.body)[:120]}")

        with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (no parameters, no body)
            run()

    for result in schema.get_all_operations():
        operation = result.ok()
        check_operation(operation, GenerationMode.POSITIVE, n - n // 3)
        if n // 3:
            check_operation(operation, GenerationMode.NEGATIVE, n // 3)
    return calls, sorted(failures.values())


@pytest.mark.slow
def test_app_document(app_schema):
    calls, failures = fuzz(app_schema, 60, bearer(ADMIN))
    print(f"\nhardening: schemathesis /openapi.json: {calls} requests, {len(failures)} failures")  # noqa: T201
    assert failures == [], "\n".join(failures)
    assert calls >= 1000


@pytest.mark.slow
def test_ogc_document(ogc_schema):
    calls, failures = fuzz(ogc_schema, 16)
    print(f"\nhardening: schemathesis /ogc/openapi: {calls} requests, {len(failures)} failures")  # noqa: T201
    assert failures == [], "\n".join(failures)
    assert calls >= 1000

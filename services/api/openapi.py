"""The app's /openapi.json, made to tell the truth (FastAPI's document, finished here once per app):

- **security**: the two ways a token is sent (``Authorization: Bearer`` and ``X-API-Key``) are declared
  schemes; every operation whose route needs a role says so (``security``), one that reads the token when
  given says it is optional (``{}`` among its requirements);
- **errors**: every operation declares the statuses it can answer with their body (ErrorBody): 400, 401
  (a wrong token is refused on every /api route), 403, 404, 422, 429 (too many wrong tokens) — and 413 on
  every route that takes a body, 409 / 412 / 428 on the workbench writes, 415 where a file or a typed body is
  sent; FastAPI's default 422 body (HTTPValidationError) is replaced by ours, which is what the API sends;
- **schemas**: a response schema written inline with ``$defs`` (a model's own JSON schema) is hoisted into
  ``components/schemas`` so its ``$ref``s resolve in the document.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .models import ErrorBody

ERROR = {"$ref": "#/components/schemas/ErrorBody"}
SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <token> (`yzt token add`)"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "the same token as a header"},
}
ALWAYS = {400: "a parameter, header or body is malformed", 401: "a token that is not known or has expired, or "
          "none where one is needed", 403: "the caller's role does not allow it", 404: "no such record",
          422: "a JSON body that does not fit its schema", 429: "too many unknown tokens from this address; "
          "see Retry-After"}
WITH_BODY = {413: "the body is larger than the limit (settings.max_body_bytes / max_upload_bytes)",
             415: "a body or file of a type this route does not take"}
WORKBENCH_WRITES = {409: "the workflow does not allow this move", 412: "If-Match names a version that is no "
                    "longer current (the body names who changed it)", 428: "If-Match is missing"}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def _hoist_defs(node: Any, schemas: dict) -> Any:
    """Move inline ``$defs`` into components/schemas, rewriting ``#/$defs/X`` to ``#/components/schemas/X``."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if defs:
            for name, schema in defs.items():
                schemas.setdefault(name, _hoist_defs(schema, schemas))
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                out[key] = "#/components/schemas/" + value[len("#/$defs/"):]
            else:
                out[key] = _hoist_defs(value, schemas)
        return out
    if isinstance(node, list):
        return [_hoist_defs(v, schemas) for v in node]
    return node


def _route_auth(app: FastAPI) -> dict[tuple[str, str], str]:
    """(path, method) → "required" / "optional" from each route's dependencies (services/auth.py)."""
    from fastapi import routing
    from fastapi.openapi.utils import _get_api_route_for_openapi  # how get_openapi itself walks the routes

    out: dict[tuple[str, str], str] = {}
    for context in routing.iter_route_contexts(app.routes):
        route = _get_api_route_for_openapi(context)
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        names: list[str] = []
        stack = [dependant]
        while stack:
            d = stack.pop()
            names.append(getattr(d.call, "__name__", ""))
            stack += d.dependencies
        kind = "required" if any(n.startswith("require_") for n in names) else \
            "optional" if "optional_principal" in names else None
        if kind:
            for method in getattr(route, "methods", ()) or ():
                out[(route.path_format, method.lower())] = kind  # type: ignore[union-attr]
    return out


def finish(doc: dict, app: FastAPI) -> dict:
    doc = copy.deepcopy(doc)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
    components["securitySchemes"] = SCHEMES
    auth = _route_auth(app)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            responses = op.setdefault("responses", {})
            codes = dict(ALWAYS)
            if method in ("post", "put", "patch"):
                codes.update(WITH_BODY)
                if path.startswith("/api/patches/"):
                    codes.update(WORKBENCH_WRITES)
            for code, text in codes.items():
                key = str(code)
                if key not in responses or code == 422:
                    responses[key] = {"description": text, "content": {"application/json": {"schema": ERROR}}}
            kind = auth.get((path, method))
            if kind == "required":
                op["security"] = [{"bearer": []}, {"apiKey": []}]
            elif kind == "optional":
                op["security"] = [{"bearer": []}, {"apiKey": []}, {}]
            else:
                op["security"] = [{"bearer": []}, {"apiKey": []}, {}] if path.startswith("/api") else []
    doc = _hoist_defs(doc, schemas)
    doc["components"]["schemas"] = schemas
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def install(app: FastAPI) -> None:
    """Serve the finished document at /openapi.json (built on first request, then kept)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                              description=app.description or None)
            app.openapi_schema = finish(doc, app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

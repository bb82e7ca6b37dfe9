"""HTTP errors: ONE table maps each YztError subclass to a status code and an error code, for /api and /ogc
alike (tipg / titiler style). /api answers JSON ``{"code": …, "description": …}``; /ogc renders the same status
and code as an OGC API exception (JSON or HTML, services/ogc/app.py).

Nothing below ``services/`` knows about HTTP: ``layers`` and ``analysis`` raise YztError subclasses whose messages
name the bad value and the remedy, and this module turns them into responses. The errors that only exist at the
HTTP boundary (a missing token, a stale version, an upload too large …) are defined here.

Bad input is never a 500: request validation errors become 400 (parameters, headers, malformed JSON) or 422
(a well-formed JSON body that does not fit the schema), Starlette's HTTPExceptions (unknown route, wrong method)
keep their status with a JSON body, and anything unexpected is logged with its traceback and answered 500
with a request id to find it in the log.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from analysis.workflow import RoleError
from layers.errors import (
    CodeSetError,
    ConflictError,
    CRSError,
    EncodingError,
    FieldError,
    GeometryError,
    ManifestError,
    NotFoundError,
    OutsideUnitError,
    RuleError,
    SourceError,
    StoreError,
    YztError,
)

from .jobs.workflow import StaleVersionError

LOGGER = logging.getLogger("yizhangtu.http")


# --- errors that exist only at the HTTP boundary ----------------------------------------------------------

class RequestError(YztError, ValueError):
    """A request parameter, header or body is malformed (bad bbox, unknown filter value …)."""


def refuse_unknown_params(query_params: Iterable[str], allowed: set[str]) -> None:
    """RequestError (400) naming every query parameter an endpoint does not take: a misspelt filter must not
    be silently ignored."""
    unknown = sorted(set(query_params) - allowed)
    if unknown:
        raise RequestError(f"unknown query parameter(s) {', '.join(unknown)}; this endpoint takes "
                           f"{', '.join(sorted(allowed))}")


class AuthenticationError(YztError, PermissionError):
    """No token where one is needed, or a token that is not known."""


class PermissionDenied(YztError, PermissionError):
    """The caller's role does not allow the action."""


class PreconditionRequired(YztError, ValueError):
    """A write without If-Match: the caller must say which version it changes."""


class MethodNotAllowed(YztError, PermissionError):
    """The resource exists but does not take this method (the OGC API and the audit log are read-only)."""

    def __init__(self, message: str, allow: str = "GET"):
        super().__init__(message)
        self.headers = {"Allow": allow}


class PayloadTooLarge(YztError, ValueError):
    """An upload or body larger than settings.max_upload_bytes / settings.max_body_bytes."""


class TooManyAttempts(YztError, PermissionError):
    """Too many unknown tokens from one client address (settings.auth_max_failures)."""

    def __init__(self, message: str, retry_after: int = 60):
        super().__init__(message)
        self.headers = {"Retry-After": str(int(retry_after))}


class UnsupportedMediaType(YztError, ValueError):
    """An upload whose type is not accepted (evidence must be a photo or a PDF …)."""


# --- THE table: exception class → (HTTP status, code) -------------------------------------------------------
# Looked up along the exception's MRO, so the most specific class listed wins (StaleVersionError before
# ConflictError). Every YztError subclass the code raises must resolve here; YztError itself is the fallback.
STATUS_CODES: dict[type[Exception], tuple[int, str]] = {
    RequestError: (400, "InvalidParameterValue"),
    AuthenticationError: (401, "Unauthorized"),
    PermissionDenied: (403, "Forbidden"),
    RoleError: (403, "Forbidden"),  # a workflow move above the caller's role
    OutsideUnitError: (403, "Forbidden"),  # another county than the caller's unit (services/jobs/units.py)
    NotFoundError: (404, "NotFound"),
    MethodNotAllowed: (405, "MethodNotAllowed"),
    StaleVersionError: (412, "PreconditionFailed"),
    ConflictError: (409, "Conflict"),  # illegal state transition (analysis.workflow.TransitionError) and races
    PayloadTooLarge: (413, "PayloadTooLarge"),
    TooManyAttempts: (429, "TooManyRequests"),
    UnsupportedMediaType: (415, "UnsupportedMediaType"),
    PreconditionRequired: (428, "PreconditionRequired"),
    CRSError: (400, "InvalidCRS"),
    GeometryError: (400, "InvalidGeometry"),
    FieldError: (400, "InvalidParameterValue"),
    CodeSetError: (400, "InvalidParameterValue"),
    RuleError: (400, "InvalidParameterValue"),
    ManifestError: (400, "InvalidParameterValue"),
    EncodingError: (400, "EncodingError"),
    SourceError: (400, "InvalidInput"),
    StoreError: (503, "StoreUnavailable"),
    YztError: (400, "BadRequest"),
}


def status_of(exc: BaseException) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500, "InternalError"


def error_body(code: str, description: str, **extra: Any) -> dict:
    return {"code": code, "description": description, **extra}


def error_response(exc: YztError) -> JSONResponse:
    """The JSON response for a YztError (also used by middleware, where exception handlers do not run)."""
    status, code = status_of(exc)
    headers = dict(getattr(exc, "headers", {}) or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="yizhangtu"')
    return JSONResponse(error_body(code, str(exc), **(getattr(exc, "extra", {}) or {})), status_code=status,
                        headers=headers)


# --- request validation ------------------------------------------------------------------------------------

_WHERE = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie",
          "body": "body"}


def _describe(err: dict) -> tuple[str, str]:
    loc = list(err.get("loc") or [])
    where = _WHERE.get(str(loc[0]), str(loc[0])) if loc else "request"
    name = ".".join(str(p) for p in loc[1:])
    label = f"{where} {name!r}" if name else where
    message = err.get("msg", "is invalid")
    if err.get("type") == "json_invalid":
        where_at = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
        detail = (err.get("ctx") or {}).get("error")
        return "body", f"is not valid JSON{where_at}" + (f": {detail}" if detail else "")
    if err.get("type") == "missing":
        message = "is required"
    elif "input" in err and err.get("type") not in ("json_invalid",):
        shown = repr(err["input"])
        if len(shown) > 80:
            shown = shown[:77] + "…"
        message = f"{message} (got {shown})"
    return label, message


def validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    described = [_describe(e) for e in errors]
    body_schema = any((e.get("loc") or [""])[0] == "body" and e.get("type") != "json_invalid" for e in errors)
    status = 422 if body_schema else 400
    text = "; ".join(f"{label}: {msg}" for label, msg in described)
    return JSONResponse(error_body("InvalidParameterValue" if status == 400 else "UnprocessableEntity", text,
                                   errors=[{"location": label, "message": msg} for label, msg in described]),
                        status_code=status)


# --- the handlers (/api; the OGC API renders the same table its own way, services/ogc/app.py) ---------------

async def yzt_error(request: Request, exc: Exception) -> Response:
    status, _ = status_of(exc)
    if status >= 500:
        LOGGER.error("%s %s: %s", request.method, request.url.path, exc)
    assert isinstance(exc, YztError)
    return error_response(exc)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return validation_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) with a JSON body."""
    assert isinstance(exc, StarletteHTTPException)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    description = exc.detail if isinstance(exc.detail, str) else phrase
    if exc.status_code == 404 and description == phrase:
        description = f"no resource at {request.url.path}; see /api for the endpoints"
    elif exc.status_code == 405:
        description = f"method {request.method} is not allowed on {request.url.path}"
    return JSONResponse(error_body(phrase.replace(" ", ""), description), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def unexpected(request: Request, exc: Exception) -> Response:  # pragma: no cover - a bug
    """A bug: logged with its traceback and a request id, answered 500 with the id."""
    request_id = uuid.uuid4().hex[:12]
    LOGGER.exception("unexpected error %s on %s %s", request_id, request.method, request.url.path)
    return JSONResponse(error_body("InternalError", f"internal error {request_id}; the server log has the "
                                                    "traceback — please report it"), status_code=500)


def install(app: FastAPI) -> None:
    """Register the /api handlers on the app (called first by services.app.create_app)."""
    app.add_exception_handler(YztError, yzt_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)

"""What the routes share, as FastAPI dependencies: the caller's role, the settings, the per-app jobs (built once
by :func:`services.api.install` and kept in ``app.state``), paging, and a guard against misspelt parameters."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from pydantic import BaseModel

from ..auth import optional_principal, require
from ..errors import PayloadTooLarge, RequestError, refuse_unknown_params
from ..jobs.indicators import IndicatorDesk
from ..jobs.patches import PatchBook
from ..jobs.review import Reviewer
from ..jobs.units import scoped
from ..settings import Principal, Settings

Planner = Annotated[Principal, Depends(require("planner"))]
Inspector = Annotated[Principal, Depends(require("inspector"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Anyone = Annotated[Principal, Depends(optional_principal)]


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_patch_book(request: Request, who: Annotated[Principal, Depends(optional_principal)]) -> PatchBook:
    """The patches the caller may see: the store's, within the caller's unit; on a province store the book of
    the caller's county (or of ``?county=``, within their unit) — services/jobs/units.py."""
    books = request.app.state.patch_book
    county = request.query_params.get("county")
    if isinstance(books, PatchBook):
        return scoped(books, who, county)
    return books.for_caller(who, county)


def get_reviewer(request: Request) -> Reviewer:
    return request.app.state.reviewer


def get_indicator_desk(request: Request) -> IndicatorDesk:
    return request.app.state.indicator_desk


AppSettings = Annotated[Settings, Depends(get_settings)]
Book = Annotated[PatchBook, Depends(get_patch_book)]
Review = Annotated[Reviewer, Depends(get_reviewer)]
Desk = Annotated[IndicatorDesk, Depends(get_indicator_desk)]


def only_params(*sources: type[BaseModel] | str | Iterable[str]) -> Callable[[Request], None]:
    """A dependency refusing (400) every query parameter not declared by the given models / names: a misspelt
    filter must not be silently ignored. Declare a route's parameters once and list them here."""
    allowed: set[str] = set()
    for source in sources:
        if isinstance(source, str):
            allowed.add(source)
        elif isinstance(source, type) and issubclass(source, BaseModel):
            allowed |= set(source.model_fields)
        else:
            allowed |= set(source)

    def dependency(request: Request) -> None:
        refuse_unknown_params(request.query_params, allowed)

    return dependency


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int


MAX_OFFSET = 2**53 - 1  # the largest integer every JSON client reads exactly


def paging(request: Request, limit: int = Query(100, ge=1, description="rows per page (≤ settings.page_limit_max)"),
           offset: int = Query(0, ge=0, le=MAX_OFFSET)) -> Paging:
    most = request.app.state.settings.page_limit_max
    if limit > most:
        raise RequestError(f"query parameter 'limit': Input should be less than or equal to {most} (got {limit})")
    return Paging(limit, offset)


Page = Annotated[Paging, Depends(paging)]


MAX_JSON_DEPTH = 64  # nested arrays / objects in a JSON body (GeoJSON needs four)


def parse_json(body: bytes, what: str = "the body") -> Any:
    """The JSON value of a request body; RequestError naming what is wrong (not UTF-8, not JSON, nested deeper
    than MAX_JSON_DEPTH levels)."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(f"{what} is not UTF-8 text") from None
    except RecursionError:
        raise RequestError(f"{what} is nested too deeply; at most {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:
        raise RequestError(f"{what} is not valid JSON: {exc}") from None
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise RequestError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]
    return doc


async def read_body(request: Request, limit: int, what: str = "the body") -> bytes:
    """The request body, refused (413) as soon as it exceeds ``limit`` bytes — by its Content-Length before
    anything is read, else while it streams in."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"{what} is {int(length):,} bytes; the limit is {limit:,} (settings.max_upload_bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"{what} is larger than {limit:,} bytes (settings.max_upload_bytes)")
    return bytes(body)

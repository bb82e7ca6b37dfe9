"""The audit log (全过程留痕) over HTTP: ``GET /api/audit`` [planner], newest first with filters and paging;
``GET /api/audit/verify`` [admin], the hash chain checked. The log cannot be edited or deleted through the API
(PUT / PATCH / DELETE answer 405)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from ..errors import MethodNotAllowed, RequestError
from .deps import Admin, Book, Page, Planner, only_params
from .models import ERROR_RESPONSES, AuditEntry, Strict

router = APIRouter(prefix="/api", tags=["workbench 图斑核查"], responses=ERROR_RESPONSES)
ACTIONS = ("judgement", "transition", "evidence")


class AuditPage(Strict):
    total: int
    limit: int
    offset: int
    items: list[AuditEntry]


class AuditCheck(Strict):
    rows: int
    ok: bool
    first_bad_seq: int | None = Field(description="the first row found wrong (after the last one left when rows "
                                                  "were deleted from the end)")
    reason: str | None
    keyed: bool = Field(description="the chain is sealed with the service's audit key (HMAC-SHA-256)")
    head_seq: int | None = Field(description="the last row according to the sealed head (workflow_head)")
    anchored: bool = Field(description="the head recorded in the anchor file outside the store was found")
    states: int = Field(description="workflow_state rows checked against their last audit row")


@router.get("/audit", summary="the audit log, newest first", response_model=AuditPage,
            dependencies=[Depends(only_params("user", "jcbh", "action", "since", "limit", "offset"))])
def audit(who: Planner, book: Book, page: Page, user: str | None = None, jcbh: str | None = None,
          action: str | None = Query(None, description=", ".join(ACTIONS)),
          since: str | None = Query(None, description="ISO 8601 UTC, e.g. 2024-07-01T00:00:00Z")) -> dict:
    if action is not None and action not in ACTIONS:
        raise RequestError(f"action={action!r} is unknown; use judgement, transition or evidence")
    if since is not None:
        try:
            when = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
            when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
            since = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            raise RequestError(f"since={since[:40]!r} is not an ISO 8601 time, e.g. 2024-07-01T00:00:00Z") from None
        except OverflowError:
            raise RequestError(f"since={since[:40]!r} lies outside the years 1–9999 once in UTC") from None
    rows, total = book.flow.audit(user=user, jcbh=jcbh, action=action, since=since, limit=page.limit,
                                  offset=page.offset)
    return {"total": total, "limit": page.limit, "offset": page.offset, "items": rows}


@router.get("/audit/verify", summary="check the audit chain, its sealed head and the workflow states",
            response_model=AuditCheck, dependencies=[Depends(only_params())])
def audit_verify(who: Admin, book: Book) -> dict:
    return book.flow.verify_audit()


def read_only(request: Request) -> None:
    raise MethodNotAllowed(f"{request.method} {request.url.path}: the audit log is append-only; it cannot be "
                           "edited or deleted", allow="GET")


for _method in ("PUT", "PATCH", "DELETE"):  # the audit log cannot be edited or deleted through the API
    router.add_api_route("/audit", read_only, methods=[_method], include_in_schema=False)
    router.add_api_route("/audit/{seq}", read_only, methods=[_method], include_in_schema=False)

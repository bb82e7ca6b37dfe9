"""Who is calling, and what the workflow allows: ``GET /api/me`` and ``GET /api/workflow`` (open to anyone; the
page draws its buttons from them)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import Field

from ..settings import RANK
from .deps import Anyone, Book
from .models import ERROR_RESPONSES, Move, Strict

router = APIRouter(prefix="/api", tags=["workbench 图斑核查"], responses=ERROR_RESPONSES)


class Me(Strict):
    user: str
    role: str = Field(description="planner, inspector, admin, or anonymous without a token")
    can_judge: bool


class StatusInfo(Strict):
    en: str
    final: bool


class WorkflowOut(Strict):
    initial: str
    roles: list[str]
    judgements: dict[str, str]
    statuses: dict[str, StatusInfo]
    transitions: list[Move]


@router.get("/me", summary="who the presented token belongs to", response_model=Me)
def me(who: Anyone) -> dict:
    return {"user": who.user, "role": who.role, "can_judge": RANK.get(who.role, 0) >= RANK["inspector"]}


@router.get("/workflow", summary="the status workflow: statuses, judgements, allowed moves", response_model=WorkflowOut)
def workflow(book: Book) -> dict:
    return book.workflow.as_dict()

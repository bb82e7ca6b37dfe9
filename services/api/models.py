"""Response bodies that more than one router returns (each router declares its own beside its routes).

Every model refuses keys it does not declare (``extra="forbid"``): a route that returns more than its model
says fails its tests instead of sending an OpenAPI document that is not true.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

BINARY = {"schema": {"type": "string", "format": "binary"}}  # a file body in the OpenAPI document


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(Strict):
    """Every error of /api: a code and a sentence naming the bad value and the remedy."""

    code: str = Field(description="InvalidParameterValue, NotFound, Unauthorized, Forbidden, Conflict, …")
    description: str
    errors: list[dict[str, str]] | None = Field(None, description="request validation: one entry per bad input")
    current_version: int | None = Field(None, description="412: the patch's current version (also in ETag)")


class Move(Strict):
    """A move of the enforcement workflow (analysis/workflow.yaml)."""

    from_: str = Field(alias="from")
    to: str
    name: str
    role: str
    judgement: str = Field(description="required | optional | forbidden")
    when_judgement: list[str]
    note: str
    evidence: str
    clear_judgement: bool

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class AuditEntry(Strict):
    """One row of the append-only audit log (留痕): who, when, what, the state before and after."""

    seq: int
    at: str
    user: str
    role: str
    action: str = Field(description="judgement, transition or evidence")
    case_id: str | None
    JCBH: str | None
    from_status: str | None
    to_status: str | None
    from_judgement: str | None
    to_judgement: str | None
    version_before: int | None
    version_after: int | None
    note: str | None
    evidence_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    prev_hash: str
    hash: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (400, "a parameter, header or body is malformed"), (401, "no token, or a token that is not known"),
        (403, "the caller's role does not allow it"), (404, "no such record"),
        (422, "a JSON body that does not fit its schema"))}
